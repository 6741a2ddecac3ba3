/* streams: the stream endpoints (GET /ws, /events, /poll): the resume
 * point (since / Last-Event-ID), the per-user stream cap and the server's
 * max_streams, a "busy" answer with Retry-After, then the hand-over to the
 * transport (ws.c, sse.c, longpoll.c).
 *
 * It deliberately does not do: authentication, Origin and CSRF checks
 * (the route table's flags, in http.c), or anything of the transports
 * themselves. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "http/api.h"
#include "http/deadline.h"
#include "core/auth.h"
#include "http/files.h"
#include "http/http.h"
#include "http/http_internal.h"
#include "util/addr.h"
#include "util/log.h"
#include "http/request.h"
#include "http/route.h"

/* --- transports
 * ----------------------------------------------------------------------- */

/* since from the query (or Last-Event-ID, which wins): 0 with -1 meaning
 * "from now", or -1 after answering 400. */
static int parse_since(struct request *req, bool sse, int64_t *since,
		       enum MHD_Result *ret)
{
	const char *s = sse ? request_header(req, "Last-Event-ID") : NULL;
	if (!s || !*s)
		s = request_arg(req, "since");
	*since = -1;
	if (!s || !*s)
		return 0;
	if (parse_i64(s, since) < 0 || *since < 0) {
		*ret = reply_error(req->conn, &req->log, 400, "bad_cursor",
				   "since must be a non-negative event id");
		return -1;
	}
	return 0;
}

/* 503 busy, counted; close: also end the connection (at the connection
 * limit, where the slot itself is what is short). */
enum MHD_Result answer_busy(struct request *req, bool close)
{
	const struct reply_header h[] = {{"Retry-After", "5"},
					 {"Connection", "close"}};
	metrics_inc(req->srv->metrics.rejected_busy);
	return reply_error_headers(req->conn, &req->log, 503, "busy",
				   close ? "the server is at its connection "
					   "limit; try again shortly"
					 : "too many open streams; try again "
					   "shortly",
				   h, close ? 2 : 1);
}

/* A slot of the server's stream cap (max-connections) and the per-user
 * and per-address ones, checked and reserved at once (limit.h), so the
 * cap holds exactly however many handshakes race for it: 0, or -1 after
 * answering 503 busy at the server's cap, 429 too_many_streams with
 * Retry-After at the others (counted). */
int stream_slot(struct request *req, enum MHD_Result *ret)
{
	struct limit *l = req->srv->limit;
	int rc = l ? limit_stream_acquire(l, req->user_id, req->addr)
		   : LIMIT_STREAM_OK;
	if (rc == LIMIT_STREAM_OK)
		return 0;
	if (rc == LIMIT_STREAM_SERVER) {
		*ret = answer_busy(req, false);
		return -1;
	}
	bool user = rc == LIMIT_STREAM_USER;
	metrics_inc(req->srv->metrics.streams_refused[user ? 0 : 1]);
	log_debug("stream refused at the %s cap addr=%s user=%s",
		  user ? "user" : "address", req->addr, req->username);
	*ret = reply_retry(req->conn, &req->log, 429, "too_many_streams",
			   user ? "too many open streams for this user; close "
				  "some tabs or try again shortly"
				: "too many open streams from this address; "
				  "try again shortly",
			   5);
	return -1;
}

/* What /ws, /events and /poll share once the router has authenticated
 * the client: the shutdown and stream-cap refusals, and the cursor. 0 with
 * cl and since filled, or -1 after answering. A resumed long-poll (which
 * already holds its stream and its slot) is not refused. The stream-cap
 * slot is the WebSocket's to release (cl->limit) or, for SSE and
 * long-poll, the request's (on_completed). */
static int stream_open(struct request *req, bool sse, bool ws,
		       struct transport_client *cl, int64_t *since,
		       enum MHD_Result *ret)
{
	struct http *h = req->http;
	if (req->poll_state == NULL && atomic_load(&h->closing)) {
		*ret = reply_error(req->conn, &req->log, 503, "shutting_down",
				   "the server is shutting down");
		return -1;
	}
	if (parse_since(req, sse, since, ret) < 0)
		return -1;
	if (req->poll_state == NULL && stream_slot(req, ret) < 0)
		return -1;
	memset(cl, 0, sizeof(*cl));
	if (req->poll_state == NULL && req->srv->limit) {
		if (ws)
			cl->limit = req->srv->limit;
		else
			req->stream_slot = true;
	}
	cl->user_id = req->user_id;
	snprintf(cl->username, sizeof(cl->username), "%s", req->username);
	snprintf(cl->addr, sizeof(cl->addr), "%s", req->addr);
	return 0;
}

enum MHD_Result serve_ws(struct request *req)
{
	struct transport_client cl;
	int64_t since;
	enum MHD_Result ret = MHD_YES;
	if (stream_open(req, false, true, &cl, &since, &ret) < 0)
		return ret;
	ret = ws_handle(req->srv->ws, req->conn, &req->log, &cl, since);
	struct http_conn *hc = conn_of(req->conn);
	if (req->log.status == 101 && hc) /* the socket is the loop's now */
		deadline_conn_exempt(req->http->deadline, &hc->dl);
	return ret;
}

enum MHD_Result serve_sse(struct request *req)
{
	struct transport_client cl;
	int64_t since;
	enum MHD_Result ret = MHD_YES;
	if (stream_open(req, true, false, &cl, &since, &ret) < 0)
		return ret;
	return sse_handle(req->srv->sse, req->conn, &req->log, &cl, since);
}

enum MHD_Result serve_poll(struct request *req)
{
	struct transport_client cl;
	int64_t since;
	enum MHD_Result ret = MHD_YES;
	if (stream_open(req, false, false, &cl, &since, &ret) < 0)
		return ret;
	const struct config *cfg = req->srv->cfg;
	int64_t timeout = cfg->poll_timeout_default_s;
	const char *t = request_arg(req, "timeout");
	if (t && (parse_i64(t, &timeout) < 0 || timeout < 0 ||
		  timeout > cfg->poll_timeout_max_s)) {
		char msg[80];
		snprintf(msg, sizeof(msg), "timeout must be 0 to %u seconds",
			 cfg->poll_timeout_max_s);
		return reply_error(req->conn, &req->log, 400, "bad_parameter",
				   msg);
	}
	return longpoll_handle(req->srv->poll, req->conn, &req->log, &cl, since,
			       (unsigned)timeout, &req->poll_state);
}
