/* http/metrics: GET /metrics (Prometheus text): the counters of
 * util/metrics, the bus's gauges and the request-duration histograms by
 * route row; where it is served (the ordinary listeners, or only
 * metrics-listen's own small daemon) and who may read it (anyone who can
 * reach it, or only with "Authorization: Bearer <metrics-token>"). It
 * counts nothing itself: http.c observes each finished request into
 * struct http's route_hist. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "http/http_internal.h"
#include "http/route.h"
#include "util/addr.h"
#include "util/log.h"

static enum MHD_Result serve_text(struct request *req, const char *ctype,
				  struct buf *b)
{
	size_t len = b->len;
	struct MHD_Response *r =
	    MHD_create_response_from_buffer_with_free_callback(
		len, b->data ? b->data : xstrdup(""), free);
	b->data = NULL;
	MHD_add_response_header(r, "Content-Type", ctype);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	req->log.bytes = len;
	return reply_queue(req->conn, &req->log, 200, r);
}

/* natter_http_request_duration_seconds by route row: the pattern, never
 * the raw path (so a label per room or user cannot grow without bound). */
static void routes_render(struct http *h, struct buf *b)
{
	size_t nroutes;
	const struct route *routes = http_routes(&nroutes);
	histo_header(b, "natter_http_request_duration_seconds",
		     "HTTP requests from their headers to the end of their "
		     "answer, by route (streams last as long as they stay "
		     "open).");
	for (size_t i = 0; i <= nroutes; i++) {
		struct histo_snap seen = {0};
		histo_snap_add(&seen, &h->route_hist[i]);
		if (!histo_snap_total(&seen))
			continue; /* a route never asked for: no series */
		char label[160];
		if (i == 0)
			snprintf(label, sizeof(label),
				 "method=\"\",route=\"unmatched\"");
		else
			snprintf(
			    label, sizeof(label), "method=\"%s\",route=\"%s\"",
			    routes[i - 1].method ? routes[i - 1].method : "",
			    routes[i - 1].pattern);
		histo_render(&h->route_hist[i], b,
			     "natter_http_request_duration_seconds", label);
	}
}

/* Whether the request carries "Authorization: Bearer <metrics-token>",
 * compared in constant time. */
static bool metrics_token_ok(struct request *req, const char *token)
{
	const char *a = request_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!a || strncasecmp(a, "Bearer ", 7))
		return false;
	a += 7;
	size_t n = strlen(token), m = strlen(a);
	unsigned char diff = n != m;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(token[i] ^ (i < m ? a[i] : 0));
	return !diff;
}

/* /metrics: on the ordinary listeners unless metrics-listen gives it one
 * of its own, and only with the metrics-token when one is set. */
enum MHD_Result serve_metrics(struct request *req)
{
	const struct config *cfg = req->srv->cfg;
	if (cfg->metrics_listen && !req->metrics_port)
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "no such path");
	if (cfg->metrics_token && !metrics_token_ok(req, cfg->metrics_token)) {
		const struct reply_header h[] = {
		    {"WWW-Authenticate", "Bearer"}};
		return reply_error_headers(req->conn, &req->log, 401,
					   "unauthorized",
					   "/metrics needs Authorization: "
					   "Bearer <metrics-token>",
					   h, 1);
	}
	struct buf b;
	buf_init(&b);
	metrics_render(&req->srv->metrics, &b);
	buf_printf(&b,
		   "# HELP natter_bus_subscribers Live bus subscribers.\n"
		   "# TYPE natter_bus_subscribers gauge\n"
		   "natter_bus_subscribers %zu\n"
		   "# HELP natter_last_event_id Newest event id.\n"
		   "# TYPE natter_last_event_id gauge\n"
		   "natter_last_event_id %lld\n"
		   "# HELP natter_presence_published_total Presence changes "
		   "published (each one event to the peers of the user).\n"
		   "# TYPE natter_presence_published_total counter\n"
		   "natter_presence_published_total %llu\n",
		   bus_subscriber_count(req->srv->bus),
		   (long long)bus_last_id(req->srv->bus),
		   (unsigned long long)chat_presence_published(req->srv->chat));
	routes_render(req->http, &b);
	return serve_text(req, "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* The metrics-listen daemon: GET /metrics and nothing else. */
static enum MHD_Result on_metrics_request(void *cls, struct MHD_Connection *c,
					  const char *url, const char *method,
					  const char *version,
					  const char *upload,
					  size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct request *req = *con_cls;
	(void)version;
	(void)upload;
	if (!req) {
		req = request_new(h->srv, c, method, url, &h->suspended);
		req->http = h;
		req->metrics_port = true;
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_size) { /* a body is never wanted here */
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics"))
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "this listener serves /metrics only");
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		const struct reply_header allow[] = {{"Allow", "GET, HEAD"}};
		return reply_error_headers(req->conn, &req->log, 405,
					   "method_not_allowed",
					   "method not allowed here", allow, 1);
	}
	return serve_metrics(req);
}

/* metrics-listen: one small daemon of its own, so a firewall (or a
 * loopback address) can keep /metrics from the clients' listeners. */
int http_metrics_start(struct http *h, char *err, size_t errlen)
{
	const struct config *cfg = h->srv->cfg;
	struct addr a;
	char why[256];
	if (addr_parse(cfg->metrics_listen, &a, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "metrics-listen %s", why);
		return -1;
	}
	unsigned flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
	if (a.ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->metrics_daemon =
	    MHD_start_daemon(flags, 0, NULL, NULL, on_metrics_request, h,
			     MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, h,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)16,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
			     MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, h,
			     MHD_OPTION_LISTENING_ADDRESS_REUSE,
			     (unsigned int)1, MHD_OPTION_END);
	if (!h->metrics_daemon) {
		snprintf(err, errlen,
			 "metrics-listen '%s': cannot start the metrics server "
			 "(address in use or not available?)",
			 cfg->metrics_listen);
		return -1;
	}
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(h->metrics_daemon, MHD_DAEMON_INFO_BIND_PORT);
	log_info("metrics listening addr=%s port=%u", cfg->metrics_listen,
		 di ? di->port : 0);
	return 0;
}
