/* http: the libmicrohttpd daemons and everything about a request before a
 * handler runs: reading the body (bounded), routing, authentication, the
 * CSRF/Origin checks, the connection cap, static files, and the access
 * log. API handlers live in api.c; transports in ws.c, sse.c, longpoll.c.
 *
 * One daemon per listen address, each with its own pool of worker threads
 * (http_threads) on epoll; with tls-listen, one more without a listening
 * socket, fed the TLS terminator's socketpairs by http_tls_add(). Its
 * connections carry a struct reply_conn (HSTS) and get Secure cookies.
 * Async chat commands suspend the connection and resume it from the
 * store's writer thread, so no worker thread ever waits for a commit. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "http/api.h"
#include "core/auth.h"
#include "http/http.h"
#include "util/log.h"
#include "http/request.h"

struct http {
	struct server *srv;
	struct MHD_Daemon *daemons[CONFIG_MAX_LISTEN];
	unsigned ndaemons;
	char *web_root; /* resolved, no trailing slash */
	unsigned max_streams;
	atomic_int suspended; /* requests waiting for an async command */
	atomic_bool closing;  /* set by http_quiesce: no new streams */
	/* TLS: the daemon behind the terminator, and http-redirect. */
	struct MHD_Daemon *tls_daemon;
	struct reply_conn tls_reply; /* every TLS connection's context */
	char hsts[32];
	atomic_uint https_port; /* redirect target; 0 until known */
};

static const char CSP[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

static int64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* --- request helpers (request.h) ------------------------------------------ */

const char *request_arg(struct request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
					   name);
}

static const char *header(struct request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

static int auth_token(struct request *req, const char *token)
{
	size_t len = strlen(token);
	if (len == 0 || len > 128)
		return -1;
	auth_token_hash(token, len, req->token_hash);
	int64_t uid;
	char name[33];
	if (auth_session_user(req->srv->store, req->token_hash, now_ms(), &uid,
			      name) != STORE_OK)
		return -1;
	req->user_id = uid;
	snprintf(req->username, sizeof(req->username), "%s", name);
	req->authed = true;
	return 0;
}

int request_auth(struct request *req)
{
	const char *h = header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (h && !strncasecmp(h, "Bearer ", 7))
		return auth_token(req, h + 7);
	const char *cookie = MHD_lookup_connection_value(
	    req->conn, MHD_COOKIE_KIND, SESSION_COOKIE);
	if (cookie && auth_token(req, cookie) == 0) {
		req->via_cookie = true;
		return 0;
	}
	return -1;
}

json_t *request_json(struct request *req, enum MHD_Result *answered)
{
	const char *ctype = header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ctype || strncasecmp(ctype, "application/json", 16) ||
	    (ctype[16] && ctype[16] != ';' && ctype[16] != ' ')) {
		*answered = reply_error(req->conn, &req->log, 415,
					"unsupported_media_type",
					"send Content-Type: application/json");
		return NULL;
	}
	json_error_t jerr;
	json_t *obj = json_loadb(req->body.data ? req->body.data : "",
				 req->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(obj)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "the body must be a JSON object%s%s",
			 obj ? "" : ": ", obj ? "" : jerr.text);
		json_decref(obj);
		*answered =
		    reply_error(req->conn, &req->log, 400, "bad_json", msg);
		return NULL;
	}
	return obj;
}

void request_suspend(struct request *req)
{
	req->phase = REQ_WAITING;
	atomic_fetch_add(req->suspended, 1);
	MHD_suspend_connection(req->conn);
}

void request_chat_done(void *arg, const struct chat_result *res)
{
	struct request *req = arg;
	req->result = *res;
	if (res->ev)
		event_ref(res->ev);
	req->phase = REQ_READY;
	MHD_resume_connection(req->conn);
}

void request_started(struct request *req, int rc)
{
	if (rc == CHAT_OK)
		return;
	struct chat_result res = {.err = rc};
	request_chat_done(req, &res);
}

/* The HTTP status of each chat error: chat knows no HTTP. */
static const struct {
	int err;
	unsigned status;
} chat_statuses[] = {
    {CHAT_OK, 200},	     {CHAT_EINVAL, 422},     {CHAT_ETOOLONG, 422},
    {CHAT_ENOROOM, 404},     {CHAT_ENOTMEMBER, 403}, {CHAT_EEXISTS, 409},
    {CHAT_EINTERNAL, 500},   {CHAT_ECLOSED, 503},
};

unsigned request_chat_status(int err)
{
	for (size_t i = 0; i < ARRAY_LEN(chat_statuses); i++)
		if (chat_statuses[i].err == err)
			return chat_statuses[i].status;
	return 500; /* anything else is an internal error */
}

enum MHD_Result request_chat_error(struct request *req, int err)
{
	return reply_error(req->conn, &req->log, request_chat_status(err),
			   chat_err_code(err), chat_err_message(err));
}

void request_set_cookie(struct request *req, struct MHD_Response *r,
			const char *token)
{
	char cookie[256];
	if (token)
		snprintf(cookie, sizeof(cookie),
			 SESSION_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; "
					"SameSite=Lax%s",
			 token, (long long)req->srv->cfg->session_ttl_s,
			 req->tls ? "; Secure" : "");
	else
		snprintf(cookie, sizeof(cookie),
			 SESSION_COOKIE "=; Path=/; Max-Age=0; HttpOnly; "
					"SameSite=Lax%s",
			 req->tls ? "; Secure" : "");
	MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
	secure_zero(cookie, sizeof(cookie));
}

/* --- origin checks
 * ------------------------------------------------------------ */

/* An Origin is acceptable if it is the request's own host (same origin) or
 * listed in allowed-origin. */
static bool origin_allowed(struct request *req, const char *origin)
{
	const struct config *cfg = req->srv->cfg;
	for (unsigned i = 0; i < cfg->norigins; i++)
		if (!strcasecmp(origin, cfg->allowed_origins[i]))
			return true;
	const char *host = header(req, MHD_HTTP_HEADER_HOST);
	if (!host)
		return false;
	const char *rest = NULL;
	if (!strncasecmp(origin, "http://", 7))
		rest = origin + 7;
	else if (!strncasecmp(origin, "https://", 8))
		rest = origin + 8;
	return rest && !strcasecmp(rest, host);
}

/* CSRF: a state-changing request authenticated by cookie must come from
 * our own pages. Browsers send Origin on every cross-site POST (and
 * Sec-Fetch-Site); curl sends neither and authenticates with a bearer token
 * or a cookie jar, which is not a cross-site request. Bearer-authenticated
 * requests are not exposed to CSRF at all. */
static bool csrf_ok(struct request *req)
{
	if (!req->via_cookie)
		return true;
	const char *site = header(req, "Sec-Fetch-Site");
	if (site && !strcasecmp(site, "cross-site"))
		return false;
	const char *origin = header(req, "Origin");
	return !origin || origin_allowed(req, origin);
}

/* --- static files
 * ----------------------------------------------------------------- */

static const char *mime_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".mjs", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".json", "application/json"},
	    {".webmanifest", "application/manifest+json"},
	    {".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(path, '.');
	if (dot)
		for (size_t i = 0; i < ARRAY_LEN(types); i++)
			if (!strcmp(dot, types[i].ext))
				return types[i].type;
	return "application/octet-stream";
}

static enum MHD_Result serve_file(struct request *req, struct http *h,
				  const char *rel)
{
	/* rel has no "..", no leading dot segments and no empty segments. */
	for (const char *p = rel; *p; p++)
		if ((p == rel || p[-1] == '/') && (*p == '.' || *p == '/'))
			return reply_error(req->conn, &req->log, 404,
					   "not_found", "no such file");
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", h->web_root, rel) >=
	    (int)sizeof(path))
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "no such file");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "no such file");
	}
	struct MHD_Response *r =
	    MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", mime_type(path));
	MHD_add_response_header(r, "Content-Security-Policy", CSP);
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	req->log.bytes = (uint64_t)st.st_size;
	return reply_queue(req->conn, &req->log, 200, r);
}

/* --- small endpoints
 * ---------------------------------------------------------------- */

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

static enum MHD_Result serve_metrics(struct request *req)
{
	struct buf b;
	buf_init(&b);
	metrics_render(&req->srv->metrics, &b);
	buf_printf(&b,
		   "# HELP natter_bus_subscribers Live bus subscribers.\n"
		   "# TYPE natter_bus_subscribers gauge\n"
		   "natter_bus_subscribers %zu\n"
		   "# HELP natter_last_event_id Newest event id.\n"
		   "# TYPE natter_last_event_id gauge\n"
		   "natter_last_event_id %lld\n",
		   bus_subscriber_count(req->srv->bus),
		   (long long)bus_last_id(req->srv->bus));
	return serve_text(req, "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* --- transports
 * ----------------------------------------------------------------------- */

static unsigned open_streams(struct server *srv)
{
	unsigned n = 0;
	for (int i = 0; i < TRANSPORT_N; i++)
		n += (unsigned)atomic_load(&srv->metrics.connections[i]);
	return n;
}

/* since from the query (or Last-Event-ID, which wins): 0 with -1 meaning
 * "from now", or -1 after answering 400. */
static int parse_since(struct request *req, bool sse, int64_t *since,
		       enum MHD_Result *ret)
{
	const char *s = sse ? header(req, "Last-Event-ID") : NULL;
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

static enum MHD_Result transport(struct request *req, struct http *h,
				 enum transport_kind kind)
{
	if (!req->authed) {
		const char *token = request_arg(req, "token");
		if (!(token && auth_token(req, token) == 0))
			return reply_error(req->conn, &req->log, 401,
					   "unauthorized", "log in first");
	}
	if (kind == TRANSPORT_WS) {
		/* Browsers always send Origin with a WebSocket handshake: a
		 * foreign one is cross-site WebSocket hijacking. */
		const char *origin = header(req, "Origin");
		if (origin && !origin_allowed(req, origin))
			return reply_error(req->conn, &req->log, 403,
					   "bad_origin",
					   "this Origin may not connect");
	}
	if (req->poll_state == NULL && atomic_load(&h->closing))
		return reply_error(req->conn, &req->log, 503, "shutting_down",
				   "the server is shutting down");
	if (req->poll_state == NULL &&
	    open_streams(req->srv) >= h->max_streams) {
		metrics_inc(req->srv->metrics.rejected_busy);
		struct MHD_Response *r = MHD_create_response_from_buffer(
		    0, NULL, MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, "Retry-After", "5");
		return reply_queue(req->conn, &req->log, 503, r);
	}
	enum MHD_Result ret = MHD_YES;
	int64_t since;
	if (parse_since(req, kind == TRANSPORT_SSE, &since, &ret) < 0)
		return ret;
	struct transport_client cl = {.user_id = req->user_id};
	snprintf(cl.username, sizeof(cl.username), "%s", req->username);
	snprintf(cl.addr, sizeof(cl.addr), "%s", req->addr);
	switch (kind) {
	case TRANSPORT_WS:
		return ws_handle(req->srv->ws, req->conn, &req->log, &cl,
				 since);
	case TRANSPORT_SSE:
		return sse_handle(req->srv->sse, req->conn, &req->log, &cl,
				  since);
	default: {
		const struct config *cfg = req->srv->cfg;
		int64_t timeout = cfg->poll_timeout_default_s;
		const char *t = request_arg(req, "timeout");
		if (t && (parse_i64(t, &timeout) < 0 || timeout < 0 ||
			  timeout > cfg->poll_timeout_max_s)) {
			char msg[80];
			snprintf(msg, sizeof(msg),
				 "timeout must be 0 to %u seconds",
				 cfg->poll_timeout_max_s);
			return reply_error(req->conn, &req->log, 400,
					   "bad_parameter", msg);
		}
		return longpoll_handle(req->srv->poll, req->conn, &req->log,
				       &cl, since, (unsigned)timeout,
				       &req->poll_state);
	}
	}
}

/* --- routing
 * ------------------------------------------------------------------------------
 */

static enum MHD_Result method_not_allowed(struct request *req,
					  const char *allow)
{
	json_t *body = json_pack("{s:s, s:s}", "error", "method_not_allowed",
				 "message", "method not allowed here");
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct MHD_Response *r =
	    MHD_create_response_from_buffer_with_free_callback(strlen(text),
							       text, free);
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	MHD_add_response_header(r, "Allow", allow);
	return reply_queue(req->conn, &req->log, 405, r);
}

static bool is(const char *a, const char *b)
{
	return !strcmp(a, b);
}

/* Split "/api/rooms/NAME/messages" into its segments: their number, or -1
 * for more than 5 segments or a segment of 64 bytes or more. A trailing
 * slash is ignored. */
static int split_path(const char *path, char seg[5][64])
{
	int n = 0;
	const char *p = path;
	while (*p == '/')
		p++;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (n == 5 || len >= 64)
			return -1;
		memcpy(seg[n], p, len);
		seg[n][len] = '\0';
		n++;
		if (!e)
			break;
		p = e + 1;
	}
	return n;
}

static enum MHD_Result route_api(struct request *req, const char *m,
				 char seg[5][64], int n)
{
	bool get = is(m, "GET") || is(m, "HEAD"), post = is(m, "POST");
	const char *what = n > 1 ? seg[1] : "";

	/* Routes open to anyone. */
	if (n == 2 && is(what, "register"))
		return post ? api_register(req)
			    : method_not_allowed(req, "POST");
	if (n == 2 && is(what, "login"))
		return post ? api_login(req) : method_not_allowed(req, "POST");

	if (!req->authed && request_auth(req) < 0)
		return reply_error(
		    req->conn, &req->log, 401, "unauthorized",
		    "log in first (cookie or Authorization: Bearer)");
	if (!get && !csrf_ok(req))
		return reply_error(req->conn, &req->log, 403, "csrf",
				   "cross-site request refused");

	if (n == 2 && is(what, "logout"))
		return post ? api_logout(req) : method_not_allowed(req, "POST");
	if (n == 2 && is(what, "me")) {
		if (get)
			return api_me_get(req);
		return is(m, "PATCH") ? api_me_patch(req)
				      : method_not_allowed(req, "GET, PATCH");
	}
	if (n == 2 && is(what, "client-report"))
		return post ? api_client_report(req)
			    : method_not_allowed(req, "POST");
	if (n == 2 && is(what, "search"))
		return get ? api_search(req) : method_not_allowed(req, "GET");
	if (n == 2 && is(what, "rooms")) {
		if (get)
			return api_rooms_list(req);
		return post ? api_rooms_create(req)
			    : method_not_allowed(req, "GET, POST");
	}
	if (n == 4 && is(what, "rooms")) {
		const char *room = seg[2], *op = seg[3];
		if (is(op, "join"))
			return post ? api_room_join(req, room)
				    : method_not_allowed(req, "POST");
		if (is(op, "leave"))
			return post ? api_room_leave(req, room)
				    : method_not_allowed(req, "POST");
		if (is(op, "typing"))
			return post ? api_typing(req, room)
				    : method_not_allowed(req, "POST");
		if (is(op, "members"))
			return get ? api_room_members(req, room)
				   : method_not_allowed(req, "GET");
		if (is(op, "messages")) {
			if (get)
				return api_history(req, room);
			return post ? api_send(req, room)
				    : method_not_allowed(req, "GET, POST");
		}
	}
	return reply_error(req->conn, &req->log, 404, "not_found",
			   "no such API endpoint");
}

static enum MHD_Result route(struct request *req, struct http *h,
			     const char *url)
{
	const char *m = req->method;
	bool get = is(m, "GET") || is(m, "HEAD");
	char seg[5][64];
	int n = split_path(url, seg);
	if (n < 0)
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "no such path");

	if (n >= 1 && is(seg[0], "api"))
		return route_api(req, m, seg, n);
	if (n == 1 &&
	    (is(seg[0], "ws") || is(seg[0], "events") || is(seg[0], "poll"))) {
		if (!get)
			return method_not_allowed(req, "GET");
		if (!req->authed)
			request_auth(req);
		enum transport_kind k = is(seg[0], "ws")       ? TRANSPORT_WS
					: is(seg[0], "events") ? TRANSPORT_SSE
							       : TRANSPORT_POLL;
		return transport(req, h, k);
	}
	if (n == 1 && is(seg[0], "healthz"))
		return get ? reply_json_text(req->conn, &req->log, 200,
					     "{\"status\":\"ok\"}", 15)
			   : method_not_allowed(req, "GET");
	if (n == 1 && is(seg[0], "metrics"))
		return get ? serve_metrics(req)
			   : method_not_allowed(req, "GET");
	if (!get)
		return method_not_allowed(req, "GET");
	if (n == 0)
		return serve_file(req, h, "index.html");
	if (is(seg[0], "static") && strlen(url) > 8)
		return serve_file(req, h, url + 8);
	return reply_error(req->conn, &req->log, 404, "not_found",
			   "no such path");
}

/* --- TLS: redirect, the terminator's daemon
 * ------------------------------------------------- */

/* Percent-encode s into b, keeping unreserved characters (and '/' when
 * slash). */
static void url_encode(struct buf *b, const char *s, bool slash)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch) ||
		    (slash && ch == '/'))
			buf_append(b, s, 1);
		else
			buf_printf(b, "%%%02X", ch);
	}
}

static enum MHD_Result append_arg(void *cls, enum MHD_ValueKind kind,
				  const char *key, const char *value)
{
	struct buf *b = cls;
	(void)kind;
	buf_puts(b, strchr(b->data, '?') ? "&" : "?");
	url_encode(b, key, false);
	if (value) {
		buf_puts(b, "=");
		url_encode(b, value, false);
	}
	return MHD_YES;
}

/* http-redirect: the same host, path and query on the HTTPS port; 308 so
 * that a POST stays a POST. */
static enum MHD_Result redirect_https(struct request *req, struct http *h,
				      const char *url)
{
	const char *host = header(req, MHD_HTTP_HEADER_HOST);
	size_t len = 0;
	if (host && host[0] == '[') {
		const char *end = strchr(host, ']');
		len = end ? (size_t)(end - host) + 1 : 0;
	} else if (host) {
		len = strcspn(host, ":");
	}
	bool ok = len > 0 && len < 256;
	for (size_t i = 0; ok && i < len; i++)
		ok = isalnum((unsigned char)host[i]) ||
		     strchr(".-[]:", host[i]) != NULL;
	if (!ok)
		return reply_error(req->conn, &req->log, 400, "bad_host",
				   "a Host header is needed to redirect to "
				   "HTTPS");
	struct buf loc;
	buf_init(&loc);
	buf_printf(&loc, "https://%.*s", (int)len, host);
	unsigned port = atomic_load(&h->https_port);
	if (port != 443)
		buf_printf(&loc, ":%u", port);
	url_encode(&loc, url, true);
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, append_arg,
				  &loc);
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, loc.data);
	buf_fini(&loc);
	return reply_queue(req->conn, &req->log, 308, r);
}

/* Every connection the TLS terminator hands over gets the shared context
 * that marks it as TLS (request.tls, HSTS in reply_queue). */
static void on_tls_notify(void *cls, struct MHD_Connection *c,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct http *h = cls;
	(void)c;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		*socket_context = &h->tls_reply;
}

int http_tls_add(void *arg, int fd, const struct sockaddr *addr,
		 socklen_t addrlen)
{
	struct http *h = arg;
	return MHD_add_connection(h->tls_daemon, fd, addr, addrlen) == MHD_YES
		   ? 0
		   : -1;
}

void http_set_https_port(struct http *h, unsigned port)
{
	atomic_store(&h->https_port, port);
}

/* --- libmicrohttpd callbacks
 * ----------------------------------------------------------------- */

static void client_addr(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	out[0] = '\0';
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  out, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)len);
	else
		snprintf(out, len, "local");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct request *req = *con_cls;
	if (!req) {
		req = xcalloc(1, sizeof(*req));
		req->srv = h->srv;
		req->conn = c;
		req->suspended = &h->suspended;
		req->method = method;
		req->path = xstrdup(url);
		req->start_us = now_us();
		client_addr(c, req->addr, sizeof(req->addr));
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		    c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		req->tls = ci && ci->socket_context; /* see on_tls_notify */
		buf_init(&req->body);
		*con_cls = req;
		/* Refuse an announced oversized body before reading it. */
		const char *cl = MHD_lookup_connection_value(
		    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		int64_t n;
		if (cl && parse_i64(cl, &n) == 0 &&
		    (uint64_t)n > h->srv->cfg->max_body)
			req->body_too_big = true;
		else
			return MHD_YES;
	}
	if (*upload_size) {
		if (!req->body_too_big &&
		    req->body.len + *upload_size <= h->srv->cfg->max_body)
			buf_append(&req->body, upload, *upload_size);
		else
			req->body_too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->body_too_big)
		return reply_error(c, &req->log, 413, "body_too_large",
				   "the request body is over the size limit");
	if (req->phase == REQ_READY)
		atomic_fetch_sub(&h->suspended, 1);
	if (!req->tls && h->srv->cfg->http_redirect &&
	    atomic_load(&h->https_port))
		return redirect_https(req, h, url);
	return route(req, h, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct request *req = *con_cls;
	if (!req)
		return;
	metrics_inc(h->srv->metrics.requests);
	if (req->log.status >= 400)
		metrics_inc(h->srv->metrics.errors);
	log_access(req->method, req->path,
		   req->log.status ? req->log.status : 499, req->log.bytes,
		   now_us() - req->start_us, req->addr);
	longpoll_request_done(req->poll_state);
	event_unref(req->result.ev);
	if (req->body.data)
		secure_zero(req->body.data, req->body.len);
	buf_fini(&req->body);
	secure_zero(req->token, sizeof(req->token));
	free(req->path);
	free(req);
	*con_cls = NULL;
}

/* libmicrohttpd's own messages. Setting TCP_NODELAY/TCP_CORK fails on the
 * socketpairs the TLS terminator hands over, and then MHD also warns that
 * it could not "push the data": harmless there (AF_UNIX has no Nagle), so
 * not shown. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (strstr(msg, "TCP_NODELAY") || strstr(msg, "TCP_CORK") ||
	    strstr(msg, "TCP_NOPUSH") ||
	    strstr(msg, "Failed to push the data from buffers"))
		return;
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* A client closing a stream mid-response is ordinary for SSE. */
	if (strstr(msg, "no longer available") || strstr(msg, "Failed to send"))
		log_debug("libmicrohttpd: %s", msg);
	else
		log_warn("libmicrohttpd: %s", msg);
}

/* --- start and stop
 * ----------------------------------------------------------------------------
 */

/* "127.0.0.1:8080", "[::1]:8080", "localhost:8080" -> sockaddr. */
static int resolve(const char *spec, struct sockaddr_storage *ss,
		   socklen_t *len, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon) {
		snprintf(err, errlen, "listen '%s': expected ADDR:PORT", spec);
		return -1;
	}
	size_t hl = (size_t)(colon - spec);
	if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
		spec++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, errlen, "listen '%s': address too long", spec);
		return -1;
	}
	memcpy(host, spec, hl);
	host[hl] = '\0';
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE},
			*res = NULL;
	int rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen '%s': %s", spec,
			 gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

#define DAEMON_FLAGS                                                           \
	(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |                     \
	 MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG)

/* The daemon for TLS connections: like the plain ones (keep them in step),
 * but with no listening socket; the terminator adds each connection. */
static int start_tls_daemon(struct http *h, char *err, size_t errlen)
{
	const struct config *cfg = h->srv->cfg;
	if (cfg->hsts_max_age_s) {
		snprintf(h->hsts, sizeof(h->hsts), "max-age=%u",
			 cfg->hsts_max_age_s);
		h->tls_reply.hsts = h->hsts;
	}
	h->tls_daemon = MHD_start_daemon(
	    DAEMON_FLAGS | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC, 0, NULL,
	    NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(h->max_streams + 256),
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	    MHD_OPTION_NOTIFY_CONNECTION, on_tls_notify, h, MHD_OPTION_END);
	if (!h->tls_daemon) {
		snprintf(err, errlen, "cannot start the HTTP server for TLS");
		return -1;
	}
	return 0;
}

struct http *http_start(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->cfg;
	struct http *h = xcalloc(1, sizeof(*h));
	h->srv = srv;
	atomic_init(&h->suspended, 0);
	atomic_init(&h->closing, false);
	atomic_init(&h->https_port, 0);
	char resolved[PATH_MAX];
	if (!realpath(cfg->web_root, resolved)) {
		snprintf(err, errlen, "web-root '%s': %s", cfg->web_root,
			 strerror(errno));
		goto fail;
	}
	h->web_root = xstrdup(resolved);
	h->max_streams = cfg->max_connections;

	for (unsigned i = 0; i < cfg->nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen;
		if (resolve(cfg->listen[i], &ss, &sslen, err, errlen) < 0)
			goto fail;
		unsigned flags = DAEMON_FLAGS;
		if (ss.ss_family == AF_INET6)
			flags |= MHD_USE_IPv6;
		struct MHD_Daemon *d = MHD_start_daemon(
		    flags, 0, NULL, NULL, on_request, h,
		    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		    MHD_OPTION_THREAD_POOL_SIZE,
		    (unsigned int)cfg->http_threads,
		    MHD_OPTION_CONNECTION_LIMIT,
		    (unsigned int)(h->max_streams + 256),
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
		    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
		    MHD_OPTION_END);
		if (!d) {
			snprintf(err, errlen,
				 "listen '%s': cannot start the HTTP server "
				 "(address in use or not available?)",
				 cfg->listen[i]);
			goto fail;
		}
		h->daemons[h->ndaemons++] = d;
		const union MHD_DaemonInfo *di =
		    MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
		log_info("listening addr=%s port=%u", cfg->listen[i],
			 di ? di->port : 0);
	}
	if (cfg->ntls_listen && start_tls_daemon(h, err, errlen) < 0)
		goto fail;
	return h;
fail:
	http_stop(h);
	return NULL;
}

void http_quiesce(struct http *h)
{
	if (!h)
		return;
	atomic_store(&h->closing, true);
	for (unsigned i = 0; i < h->ndaemons; i++) {
		MHD_socket s = MHD_quiesce_daemon(h->daemons[i]);
		if (s != MHD_INVALID_SOCKET)
			close(s);
	}
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	/* Let requests waiting for a commit get their answer first. */
	for (int i = 0; i < 300 && atomic_load(&h->suspended) > 0; i++)
		usleep(10000);
	for (unsigned i = 0; i < h->ndaemons; i++)
		MHD_stop_daemon(h->daemons[i]);
	if (h->tls_daemon)
		MHD_stop_daemon(h->tls_daemon);
	free(h->web_root);
	free(h);
}
