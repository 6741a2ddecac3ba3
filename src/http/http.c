/* http: the libmicrohttpd daemons and everything about a request before a
 * handler runs: limits on connections, request line, headers and body, the
 * route table and the checks its flags ask for (authentication, CSRF,
 * Origin), the stream cap, /healthz and /metrics, and the access log.
 * struct request and its helpers live in request.c, the matcher in
 * route.c, static files in files.c, the API handlers in api_*.c, the
 * stream endpoints (stream cap, resume point) in streams.c, each
 * connection's context (deadline watch, per-address count, the TLS
 * terminator's byte count) in conns.c, the
 * transports in ws.c, sse.c, longpoll.c.
 *
 * One daemon per listen address, each with its own pool of worker threads
 * (http_threads) on poll() (see DAEMON_FLAGS); with tls-listen, one more
 * without a listening socket, fed the TLS terminator's socketpairs by
 * http_tls_add(). Its connections carry a struct reply_conn (HSTS) and get
 * Secure cookies. Async chat commands suspend the connection and resume it from
 * the store's writer thread, so no worker thread ever waits for a commit.
 *
 * Every error natter sends is JSON. libmicrohttpd still answers a few
 * requests itself, with its own HTML, before any callback of ours runs: an
 * unparsable request line or header (400), a malformed Content-Length or
 * chunk (400) or one beyond 2^64 (413), a request line or headers that do
 * not fit in the connection's memory pool (414/431; our own JSON limits,
 * URI_MAX and HEADERS_MAX, sit below it), an unsupported HTTP version
 * (505). At its connection limit it closes new connections unanswered. */
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

struct http_conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* --- origin checks
 * ------------------------------------------------------------ */

/* An Origin is acceptable if it is listed in allowed-origin, or if it is
 * this server as the browser reached it: the scheme natter serves this
 * connection with (https on a connection from the TLS terminator, http on
 * a plain one) and the Host header. So https://host on a plain connection
 * (or http://host over TLS) is a different origin and refused. A proxy in
 * front that terminates TLS makes browsers send https://host over plain
 * HTTP: list that origin in allowed-origin. X-Forwarded-Proto is not
 * consulted: any client can send it, and natter has no setting that says
 * which proxy to believe. */
static bool origin_allowed(struct request *req, const char *origin)
{
	const struct config *cfg = req->srv->cfg;
	for (unsigned i = 0; i < cfg->norigins; i++)
		if (!strcasecmp(origin, cfg->allowed_origins[i]))
			return true;
	const char *host = request_header(req, MHD_HTTP_HEADER_HOST);
	if (!host)
		return false;
	const char *scheme = req->tls ? "https://" : "http://";
	size_t n = strlen(scheme);
	return !strncasecmp(origin, scheme, n) && !strcasecmp(origin + n, host);
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
	const char *site = request_header(req, "Sec-Fetch-Site");
	if (site && !strcasecmp(site, "cross-site"))
		return false;
	const char *origin = request_header(req, "Origin");
	return !origin || origin_allowed(req, origin);
}

/* --- small endpoints
 * ---------------------------------------------------------------- */

/* --- routing ------------------------------------------------------------- */

/* The bus, with bus = redis://..., is reported, never judged: without it
 * only typing and presence stay on their node, so the node stays in the
 * balancer. */
static enum MHD_Result healthz_reply(struct request *req, unsigned status,
				     json_t *body)
{
	bool bus_ok = false;
	const char *bus = chat_cluster_bus(req->srv->chat, &bus_ok);
	if (bus) {
		json_object_set_new(body, "bus", json_string(bus));
		json_object_set_new(body, "bus_ok", json_boolean(bus_ok));
	}
	return reply_json(req->conn, &req->log, status, body);
}

/* 503 while the store's disk is full (chat_storage_full): the one
 * condition that makes this node refuse what it exists for. */
static enum MHD_Result serve_healthz(struct request *req)
{
	bool reachable = true;
	const char *backend = chat_store_backend(req->srv->chat, &reachable);
	if (chat_storage_full(req->srv->chat)) {
		json_t *body =
		    json_pack("{s:s, s:s, s:s, s:s}", "status", "unhealthy",
			      "error", "storage_full", "message",
			      "the database's disk is full; writes are refused",
			      "store", backend);
		return healthz_reply(req, 503, body);
	}
	/* a node cut off from its database server: the balancer sends
	 * clients elsewhere; open streams stay, and it recovers by itself */
	if (!reachable) {
		json_t *body = json_pack(
		    "{s:s, s:s, s:s, s:s}", "status", "unhealthy", "error",
		    "store_unavailable", "message",
		    "the database cannot be reached; writes are refused",
		    "store", backend);
		return healthz_reply(req, 503, body);
	}
	return healthz_reply(
	    req, 200,
	    json_pack("{s:s, s:s}", "status", "ok", "store", backend));
}

static enum MHD_Result serve_index(struct request *req)
{
	return files_serve(req, req->http->web_root, "index.html");
}

static enum MHD_Result not_found(struct request *req)
{
	return reply_error(req->conn, &req->log, 404, "not_found",
			   "no such path");
}

static enum MHD_Result serve_static(struct request *req, const char *rest)
{
	return *rest ? files_serve(req, req->http->web_root, rest)
		     : not_found(req);
}

/* Authenticated, but no such endpoint under /api/. */
static enum MHD_Result api_not_found(struct request *req)
{
	return reply_error(req->conn, &req->log, 404, "not_found",
			   "no such API endpoint");
}

#define AUTH ROUTE_AUTH
#define CSRF ROUTE_CSRF
#define STREAM ROUTE_STREAM

/* Every path natter answers. Order matters only where patterns overlap:
 * the first pattern that matches a path owns it, so the catch-alls under
 * /api/ and at the root come after everything they cover. */
static const struct route routes[] = {
    {"POST", "/api/register", 0, api_register, NULL},
    {"POST", "/api/login", 0, api_login, NULL},
    {"POST", "/api/logout", AUTH | CSRF, api_logout, NULL},
    {"GET", "/api/me", AUTH, api_me_get, NULL},
    {"PATCH", "/api/me", AUTH | CSRF, api_me_patch, NULL},
    {"GET", "/api/presence", AUTH, api_presence_get, NULL},
    {"POST", "/api/activity", AUTH | CSRF, api_activity, NULL},
    {"PUT", "/api/me/avatar", AUTH | CSRF, api_me_avatar_put, NULL},
    {"DELETE", "/api/me/avatar", AUTH | CSRF, api_me_avatar_delete, NULL},
    {"POST", "/api/me/avatar", AUTH | CSRF | STREAM, api_me_avatar_form, NULL},
    {"POST", "/api/client-report", AUTH | CSRF, api_client_report, NULL},
    {"GET", "/api/search", AUTH, api_search, NULL},
    {"GET", "/api/rooms", AUTH, api_rooms_list, NULL},
    {"POST", "/api/rooms", AUTH | CSRF, api_rooms_create, NULL},
    {"POST", "/api/rooms/{room}/join", AUTH | CSRF, NULL, api_room_join},
    {"POST", "/api/rooms/{room}/invites", AUTH | CSRF, NULL, api_room_invite},
    {"GET", "/api/invites", AUTH, api_invites_list, NULL},
    {"POST", "/api/rooms/{room}/read", AUTH | CSRF, NULL, api_room_read},
    {"POST", "/api/dms", AUTH | CSRF, api_dms_open, NULL},
    {"POST", "/api/rooms/{room}/leave", AUTH | CSRF, NULL, api_room_leave},
    {"POST", "/api/rooms/{room}/typing", AUTH | CSRF, NULL, api_typing},
    {"GET", "/api/rooms/{room}/members", AUTH, NULL, api_room_members},
    {"PUT", "/api/rooms/{room}/moderators/{user}", AUTH | CSRF, NULL,
     api_room_moderator_put},
    {"DELETE", "/api/rooms/{room}/moderators/{user}", AUTH | CSRF, NULL,
     api_room_moderator_delete},
    {"POST", "/api/rooms/{room}/kicks", AUTH | CSRF, NULL, api_room_kick},
    {"POST", "/api/rooms/{room}/bans", AUTH | CSRF, NULL, api_room_ban},
    {"GET", "/api/rooms/{room}/bans", AUTH, NULL, api_room_bans},
    {"DELETE", "/api/rooms/{room}/bans/{user}", AUTH | CSRF, NULL,
     api_room_unban},
    {"POST", "/api/rooms/{room}/mutes", AUTH | CSRF, NULL, api_room_mute},
    {"GET", "/api/admin/audit", AUTH, api_admin_audit, NULL},
    {"GET", "/api/admin/stats", AUTH, api_admin_stats, NULL},
    {"GET", "/api/admin/users", AUTH, api_admin_users, NULL},
    {"PUT", "/api/admin/users/{user}/admin", AUTH | CSRF, NULL,
     api_admin_grant},
    {"DELETE", "/api/admin/users/{user}/admin", AUTH | CSRF, NULL,
     api_admin_revoke},
    {"POST", "/api/admin/users/{user}/disable", AUTH | CSRF, NULL,
     api_admin_user_disable},
    {"POST", "/api/admin/users/{user}/enable", AUTH | CSRF, NULL,
     api_admin_user_enable},
    {"DELETE", "/api/rooms/{room}/mutes/{user}", AUTH | CSRF, NULL,
     api_room_unmute},
    {"GET", "/api/rooms/{room}/messages", AUTH, NULL, api_history},
    {"POST", "/api/rooms/{room}/messages", AUTH | CSRF, NULL, api_send},
    {"PATCH", "/api/rooms/{room}/messages/{id}", AUTH | CSRF, NULL,
     api_message_edit},
    {"DELETE", "/api/rooms/{room}/messages/{id}", AUTH | CSRF, NULL,
     api_message_delete},
    {"PUT", "/api/rooms/{room}/messages/{id}/reactions/{emoji}", AUTH | CSRF,
     NULL, api_reaction_put},
    {"DELETE", "/api/rooms/{room}/messages/{id}/reactions/{emoji}", AUTH | CSRF,
     NULL, api_reaction_delete},
    {"OPTIONS", "/api/uploads", 0, api_upload_options, NULL},
    {"POST", "/api/uploads", AUTH | CSRF, api_upload_create, NULL},
    {"OPTIONS", "/api/uploads/{id}", 0, NULL, api_upload_options_id},
    {"GET", "/api/uploads/{id}", AUTH, NULL, api_upload_get},
    {"PATCH", "/api/uploads/{id}", AUTH | CSRF | STREAM, NULL,
     api_upload_patch},
    {"DELETE", "/api/uploads/{id}", AUTH | CSRF, NULL, api_upload_delete},
    {"POST", "/api/rooms/{room}/files", AUTH | CSRF | STREAM, NULL,
     api_room_file},
    {NULL, "/api/**", AUTH | CSRF, api_not_found, NULL},
    {"GET", "/ws", ROUTE_TOKEN | ROUTE_ORIGIN, serve_ws, NULL},
    {"GET", "/events", ROUTE_TOKEN, serve_sse, NULL},
    {"GET", "/poll", ROUTE_TOKEN, serve_poll, NULL},
    {"GET", "/files/{id}/{name}", AUTH, NULL, api_file_get},
    {"GET", "/healthz", 0, serve_healthz, NULL},
    {"GET", "/metrics", 0, serve_metrics, NULL},
    {"GET", "/", 0, serve_index, NULL},
    {"GET", "/static/**", 0, NULL, serve_static},
    {"GET", "/**", 0, not_found, NULL},
};

#undef AUTH
#undef CSRF
#undef STREAM

/* Whether url's route streams its body (ROUTE_STREAM) on this
 * connection: not where a plain request is redirected to HTTPS. */
static bool route_streams(struct request *req, struct http *h, const char *url)
{
	struct route_match m;
	if (!req->tls && h->srv->cfg->http_redirect &&
	    atomic_load(&h->https_port))
		return false;
	return route_match(routes, ARRAY_LEN(routes), req->method, url, &m) ==
		   ROUTE_FOUND &&
	       (m.route->flags & ROUTE_STREAM);
}

const struct route *http_routes(size_t *n)
{
	*n = ARRAY_LEN(routes);
	return routes;
}

static enum MHD_Result method_not_allowed(struct request *req,
					  const char *allow)
{
	const struct reply_header h[] = {{"Allow", allow}};
	return reply_error_headers(req->conn, &req->log, 405,
				   "method_not_allowed",
				   "method not allowed here", h, 1);
}

/* Find the route, make the checks its flags ask for, in this order (the
 * order decides which error a request with several problems gets): a
 * session where every method of the path needs one (401), the CSRF check
 * for state-changing methods (403), the method (405), a session or
 * ?token= (401), the Origin (403), a valid {room} (404), then the handler.
 * Runs again for a request resumed after an async command: each check is
 * cheap and gives the same answer. */
static enum MHD_Result route(struct request *req, const char *url)
{
	struct route_match m;
	enum route_result rr =
	    route_match(routes, ARRAY_LEN(routes), req->method, url, &m);
	if (rr == ROUTE_BAD_PATH || rr == ROUTE_NO_PATH)
		return not_found(req);
	const struct route *r = m.route;
	unsigned flags = r ? r->flags : m.flags_any;
	req->route_idx = r ? (unsigned)(r - routes) + 1 : 0;

	int auth = 0;
	if (((m.flags_all | (r ? r->flags : 0)) & ROUTE_AUTH) && !req->authed &&
	    (auth = request_auth(req)) < 0)
		return auth == -2 ? request_chat_error(req, CHAT_EUNAVAILABLE)
		       : req->disabled
			   ? request_disabled(req, req->disabled_reason)
			   : reply_error(req->conn, &req->log, 401,
					 "unauthorized",
					 "log in first (cookie or "
					 "Authorization: Bearer)");
	if ((flags & ROUTE_CSRF) && !route_method_is_read(req->method) &&
	    !csrf_ok(req))
		return reply_error(req->conn, &req->log, 403, "csrf",
				   "cross-site request refused");
	if (!r)
		return method_not_allowed(req, m.allow);
	if ((r->flags & ROUTE_TOKEN) && !req->authed &&
	    (auth = request_auth(req)) < 0 &&
	    (auth == -2 || (auth = request_auth_query(req)) < 0))
		return auth == -2 ? request_chat_error(req, CHAT_EUNAVAILABLE)
		       : req->disabled
			   ? request_disabled(req, req->disabled_reason)
			   : reply_error(req->conn, &req->log, 401,
					 "unauthorized", "log in first");
	if (r->flags & ROUTE_ORIGIN) {
		/* Browsers always send Origin with a WebSocket handshake: a
		 * foreign one is cross-site WebSocket hijacking. */
		const char *origin = request_header(req, "Origin");
		if (origin && !origin_allowed(req, origin))
			return reply_error(req->conn, &req->log, 403,
					   "bad_origin",
					   "this Origin may not connect");
	}
	if (strstr(r->pattern, "{room}") && !name_valid(m.arg))
		return request_chat_error(req, CHAT_ENOROOM);
	_Static_assert(sizeof(req->params) == sizeof(m.param),
		       "request params mirror the route's");
	memcpy(req->params, m.param, sizeof(req->params));
	req->nparams = m.nparams;
	if (r->fn)
		return r->fn(req);
	return r->arg_fn(req, m.rest ? m.rest : m.arg);
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
	const char *host = request_header(req, MHD_HTTP_HEADER_HOST);
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
	const struct reply_header loc_h[] = {
	    {MHD_HTTP_HEADER_LOCATION, loc.data}};
	enum MHD_Result ret = reply_empty(req->conn, &req->log, 308, loc_h, 1);
	buf_fini(&loc);
	return ret;
}

void http_set_https_port(struct http *h, unsigned port)
{
	atomic_store(&h->https_port, port);
}

/* --- libmicrohttpd callbacks
 * ----------------------------------------------------------------- */

/* Whether a Content-Length value announces more than max bytes: any run
 * of digits too long for a uint64_t does. Other values are left to
 * libmicrohttpd, which refuses them. */
static bool length_over(const char *s, uint64_t max)
{
	uint64_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - 9) / 10)
			return true;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	return v > max;
}

static enum MHD_Result body_too_large(struct request *req)
{
	req->body_too_big = true;
	return reply_error(req->conn, &req->log, 413, "body_too_large",
			   "the request body is over the size limit");
}

/* Our own limits on the request line and headers, well below what fits in
 * libmicrohttpd's per-connection memory (32 KiB by default), so that a
 * client over them gets a JSON 414 or 431. What does not fit at all is
 * still answered by libmicrohttpd itself (see the top of this file). */
#define URI_MAX 8192
#define HEADERS_MAX 16384

static enum MHD_Result add_length(void *cls, enum MHD_ValueKind kind,
				  const char *key, const char *value)
{
	size_t *total = cls;
	(void)kind;
	*total += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* Whether the request line or the headers are over our limits; if so the
 * 414 or 431 is queued (before the body: libmicrohttpd then reads none of
 * it and closes the connection). */
static bool request_too_long(struct request *req, const char *url)
{
	size_t uri = strlen(url), headers = 0;
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_length,
				  &uri);
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_length,
				  &headers);
	if (uri > URI_MAX)
		reply_error(req->conn, &req->log, 414, "uri_too_long",
			    "the request URI is over 8 KiB");
	else if (headers > HEADERS_MAX)
		reply_error(req->conn, &req->log, 431, "headers_too_large",
			    "the request headers are over 16 KiB");
	else
		return false;
	req->body_too_big = true; /* so that nothing else answers */
	return true;
}

/* Set by a worker thread just before it returns MHD_NO on purpose, so that
 * on_mhd_log (called at once on the same thread) does not report it as an
 * internal error. */
static _Thread_local bool quiet_close;

/* How much of an oversized body is still read (and dropped) after the 413,
 * so that a client busy sending it gets to read the answer instead of a
 * reset; past this the connection is closed mid-body. */
#define BODY_LINGER_MAX (256 * 1024)

/* A body that passes max-body after its headers were accepted (chunked,
 * or longer than announced). libmicrohttpd 0.9.75 accepts a response only
 * before the body or after all of it, so the 413 is written to the socket
 * here (the TLS terminator's socketpair for a TLS client, so it is
 * encrypted like any answer), the write side is shut, and the body is not
 * buffered any more: body_linger drops at most BODY_LINGER_MAX more bytes,
 * then the connection is closed. */
static enum MHD_Result body_cut(struct request *req, size_t *upload_size)
{
	static const char body[] =
	    "{\"error\":\"body_too_large\",\"message\":\"the request body "
	    "is over the size limit\"}";
	char head[512];
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 413 Content Too Large\r\n"
			 "Connection: close\r\n"
			 "Content-Type: application/json; charset=utf-8\r\n"
			 "Cache-Control: no-store\r\n"
			 "X-Content-Type-Options: nosniff\r\n"
			 "Referrer-Policy: no-referrer\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 sizeof(body) - 1, body);
	req->body_too_big = true;
	req->log.status = 413;
	*upload_size = 0;
	if (req->body.data)
		secure_zero(req->body.data, req->body.len);
	buf_fini(&req->body);
	if (!ci || n <= 0 || (size_t)n >= sizeof(head) ||
	    send(ci->connect_fd, head, (size_t)n,
		 MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		quiet_close = true;
		return MHD_NO;
	}
	req->log.bytes = sizeof(body) - 1;
	shutdown(ci->connect_fd, SHUT_WR);
	return MHD_YES;
}

static enum MHD_Result body_linger(struct request *req, size_t n,
				   size_t *upload_size)
{
	*upload_size = 0;
	req->body_dropped += n;
	if (req->body_dropped <= BODY_LINGER_MAX)
		return MHD_YES;
	quiet_close = true;
	return MHD_NO;
}

/* The connections natter holds: libmicrohttpd's, and WebSockets, which
 * leave it after the upgrade. */
static unsigned connections_open(struct http *h)
{
	return atomic_load(&h->conns) +
	       (unsigned)atomic_load(
		   &h->srv->metrics.connections[TRANSPORT_WS]);
}

/* Past the busy mark a new request is better refused with a 503 the
 * client understands than served (connection_limits). */
static bool connections_busy(struct http *h)
{
	return connections_open(h) > h->busy_mark;
}

/* libmicrohttpd's accept policy: past the close mark, close at once. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr,
				 socklen_t addrlen)
{
	struct http *h = cls;
	(void)addrlen;
	if (connections_open(h) >= h->close_mark) {
		metrics_inc(h->srv->metrics.rejected_busy);
		return MHD_NO;
	}
	/* At twice connections-per-address, one address's flood is closed
	 * as soon as accepted (between the cap and this, answered 429). */
	unsigned cap = h->srv->cfg->connections_per_address;
	char text[64];
	if (cap && h->srv->limit) {
		conn_addr_text(addr, text, sizeof(text));
		if (text[0] &&
		    limit_conns_addr(h->srv->limit, text) >= 2 * cap) {
			metrics_inc(h->srv->metrics.conns_refused_addr[1]);
			return MHD_NO;
		}
	}
	return MHD_YES;
}

/* 429 too_many_connections, and the connection closed: its address holds
 * more than connections-per-address. Counted. */
static enum MHD_Result too_many_connections(struct request *req)
{
	const struct reply_header h[] = {{"Retry-After", "5"},
					 {"Connection", "close"}};
	metrics_inc(req->srv->metrics.conns_refused_addr[0]);
	req->body_too_big = true; /* read no body: the connection ends */
	return reply_error_headers(req->conn, &req->log, 429,
				   "too_many_connections",
				   "too many open connections from this "
				   "address; close some or try again shortly",
				   h, 2);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct request *req = *con_cls;
	quiet_close = false;
	if (!req) {
		req = request_new(h->srv, c, method, url, &h->suspended);
		req->http = h;
		struct http_conn *hc = conn_of(c);
		req->tls = hc && hc->tls;
		*con_cls = req;
		if (hc) {
			const char *te = MHD_lookup_connection_value(
			    c, MHD_HEADER_KIND,
			    MHD_HTTP_HEADER_TRANSFER_ENCODING);
			const char *len = MHD_lookup_connection_value(
			    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
			deadline_conn_headers(h->deadline, &hc->dl,
					      te || (len && strcmp(len, "0")));
		}
		if (request_too_long(req, url))
			return MHD_YES; /* answered; no body is read */
		if (connections_busy(h))
			return answer_busy(req, true);
		if (hc && hc->over)
			return too_many_connections(req);
		/* A streaming route's checks and handler run now: the body
		 * goes to the handler's sink as it arrives (uploads). */
		if (route_streams(req, h, url)) {
			req->streaming = true;
			return route(req, url);
		}
		/* Refuse an announced oversized body before reading it. */
		const char *cl = MHD_lookup_connection_value(
		    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (!cl || !length_over(cl, h->srv->cfg->max_body))
			return MHD_YES;
		return body_too_large(req);
	}
	if (*upload_size) {
		struct http_conn *hc = conn_of(c);
		if (hc)
			deadline_conn_body(h->deadline, &hc->dl, *upload_size);
		if (req->body_too_big)
			return body_linger(req, *upload_size, upload_size);
		if (req->streaming) {
			if (req->sink && !req->sink_err)
				req->sink_err =
				    req->sink(req, upload, *upload_size);
			/* answered before the body, or the sink refused:
			 * the rest is dropped (within the linger bound) */
			if (!req->sink || req->sink_err)
				return body_linger(req, *upload_size,
						   upload_size);
			*upload_size = 0;
			return MHD_YES;
		}
		if (req->body.len + *upload_size > h->srv->cfg->max_body)
			return body_cut(req, upload_size);
		buf_append(&req->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->body_too_big) {
		/* The 413 went out from body_cut: no second answer. */
		quiet_close = true;
		return MHD_NO;
	}
	struct http_conn *hc = conn_of(c);
	if (hc)
		deadline_conn_busy(h->deadline, &hc->dl);
	if (req->phase == REQ_READY)
		atomic_fetch_sub(&h->suspended, 1);
	if (!req->tls && h->srv->cfg->http_redirect &&
	    atomic_load(&h->https_port))
		return redirect_https(req, h, url);
	return route(req, url);
}

void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
		       enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct request *req = *con_cls;
	if (!req)
		return;
	metrics_inc(h->srv->metrics.requests);
	if (req->log.status >= 400)
		metrics_inc(h->srv->metrics.errors);
	histo_observe_us(&h->route_hist[req->route_idx],
			 request_elapsed_us(req));
	log_access(req->method, req->path,
		   req->log.status ? req->log.status : 499, req->log.bytes,
		   request_elapsed_us(req), req->addr);
	longpoll_request_done(req->poll_state);
	if (req->stream_slot)
		limit_stream_release(h->srv->limit, req->user_id, req->addr);
	request_free(req);
	*con_cls = NULL;
	/* A keep-alive connection waits for its next request's headers. */
	struct http_conn *hc = conn_of(c);
	if (hc && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		deadline_conn_idle(h->deadline, &hc->dl);
}

/* libmicrohttpd's own messages. Setting TCP_NODELAY/TCP_CORK fails on the
 * socketpairs the TLS terminator hands over, and then MHD also warns that
 * it could not "push the data": harmless there (AF_UNIX has no Nagle), so
 * not shown. */
void http_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (quiet_close && strstr(msg, "Application reported internal error")) {
		quiet_close = false;
		return;
	}
	if (strstr(msg, "TCP_NODELAY") || strstr(msg, "TCP_CORK") ||
	    strstr(msg, "TCP_NOPUSH") ||
	    strstr(msg, "Failed to push the data from buffers"))
		return;
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* A client closing a stream mid-response is ordinary for SSE; one
	 * gone mid-request is ordinary too (and is how the deadline checker
	 * ends a slow one, which it logs itself). */
	if (strstr(msg, "no longer available") ||
	    strstr(msg, "Failed to send") ||
	    strstr(msg, "detected connection closure"))
		log_debug("libmicrohttpd: %s", msg);
	else
		log_warn("libmicrohttpd: %s", msg);
}

/* --- start and stop
 * ----------------------------------------------------------------------------
 */

/* Descriptors natter needs besides its connections: listeners, the epoll
 * and event descriptors of the loops and daemons, SQLite's (database, WAL,
 * shared memory, the read pool), the log. */
#define FD_RESERVE 64
/* The width of each band below libmicrohttpd's connection limit (see
 * connection_limits). */
#define LIMIT_BAND 32

/* Connection limits that always leave descriptors in reserve, and a clear
 * answer at each step. libmicrohttpd 0.9.75 at its own connection limit
 * stops accepting, and past the process's descriptor limit accept()
 * fails: either way new clients hang in the backlog and never hear why.
 * So its limit (the stream cap plus room for ordinary requests) never
 * exceeds what the descriptor limit leaves after FD_RESERVE, and natter
 * steps in before it: from close_mark on, new connections are closed as
 * soon as they are accepted (on_accept), and from busy_mark on, requests
 * are answered 503 busy with Retry-After. The band between close_mark and
 * the limit absorbs worker threads that fill unevenly. WebSockets count:
 * they keep a descriptor after leaving libmicrohttpd. A TLS client holds
 * two more (its socketpair), which the TLS terminator's own cap bounds. */
static void connection_limits(struct http *h)
{
	struct rlimit rl;
	unsigned fds = 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		fds = rl.rlim_cur > 1000000 ? 1000000 : (unsigned)rl.rlim_cur;
	unsigned budget = fds > 2 * FD_RESERVE ? fds - FD_RESERVE : fds / 2;
	h->conn_limit = h->max_streams + 256;
	if (h->conn_limit > budget)
		h->conn_limit = budget;
	/* libmicrohttpd wants at least one connection per worker thread */
	if (h->conn_limit < h->srv->cfg->http_threads)
		h->conn_limit = h->srv->cfg->http_threads;
	h->close_mark = h->conn_limit > 4 * LIMIT_BAND
			    ? h->conn_limit - LIMIT_BAND
			    : h->conn_limit * 3 / 4;
	h->busy_mark = h->close_mark > 2 * LIMIT_BAND
			   ? h->close_mark - LIMIT_BAND
			   : h->close_mark / 2;
}

/* poll(), not epoll: libmicrohttpd 0.9.75's epoll loop (MHD_epoll) reads
 * edge-triggered events 128 at a time and, after a full batch, calls
 * epoll_wait() again with the daemon's whole timeout (up to the 120 s
 * connection timeout) while the connections of the first batch wait
 * unprocessed in its ready list. If nothing else happens on that worker
 * (its other connections are all in that batch or waiting), their requests
 * sit unread in the socket buffers until the timeout: the long-poll stall
 * under load (a burst of re-polls after a delivery). poll() is level-
 * triggered and waits with a zero timeout whenever work is pending.
 * Suspended connections (waiting polls, SSE streams, upgraded WebSockets)
 * are not in its set, so it stays small. */
#define DAEMON_FLAGS                                                           \
	(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |                      \
	 MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG)

/* Each connection's memory pool (request line, headers, the response's
 * header) is libmicrohttpd's default, 32 KiB from the worker's malloc
 * arena. A WebSocket's is freed at the upgrade, beside longer-lived
 * allocations, so thousands of upgrades leave the workers' arenas holding
 * megabytes of free but resident pages; main.c's malloc_trim gives them
 * back. (A pool above 32 KiB would be its own mmap(), but an mmap() and a
 * munmap() per connection take the process's mm lock against every
 * thread's page faults, and a reconnect storm showed it in latency.) */

/* The daemon for TLS connections: like the plain ones (keep them in step),
 * but with no listening socket; the terminator adds each connection. */
static int start_tls_daemon(struct http *h, char *err, size_t errlen)
{
	const struct config *cfg = h->srv->cfg;
	if (cfg->hsts_max_age_s) {
		snprintf(h->hsts, sizeof(h->hsts), "max-age=%u",
			 cfg->hsts_max_age_s);
		h->tls_hsts = h->hsts;
	}
	h->tls_daemon = MHD_start_daemon(
	    DAEMON_FLAGS | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC, 0, on_accept,
	    h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, h,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
	    MHD_OPTION_CONNECTION_LIMIT, h->conn_limit,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
	    MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, h,
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
	atomic_init(&h->conns, 0);
	pthread_mutex_init(&h->pend_mu, NULL);
	char resolved[PATH_MAX];
	if (!realpath(cfg->web_root, resolved)) {
		snprintf(err, errlen, "web-root '%s': %s", cfg->web_root,
			 strerror(errno));
		goto fail;
	}
	h->web_root = xstrdup(resolved);
	h->route_hist = xcalloc(ARRAY_LEN(routes) + 1, sizeof(*h->route_hist));
	for (size_t i = 0; i <= ARRAY_LEN(routes); i++)
		histo_init(&h->route_hist[i]);
	h->max_streams = cfg->max_connections;
	connection_limits(h);
	const struct deadline_rules rules = {
	    .header_ms = (int64_t)cfg->header_timeout_s * 1000,
	    .min_rate = cfg->body_min_rate};
	h->deadline = deadline_new(&rules, &srv->metrics.deadline_headers,
				   &srv->metrics.deadline_body);

	for (unsigned i = 0; i < cfg->nlisten; i++) {
		struct addr a;
		char why[256];
		if (addr_parse(cfg->listen[i], &a, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "listen %s", why);
			goto fail;
		}
		unsigned flags = DAEMON_FLAGS;
		if (a.ss.ss_family == AF_INET6)
			flags |= MHD_USE_IPv6;
		struct MHD_Daemon *d = MHD_start_daemon(
		    flags, 0, on_accept, h, on_request, h,
		    MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, h,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss,
		    MHD_OPTION_THREAD_POOL_SIZE,
		    (unsigned int)cfg->http_threads,
		    MHD_OPTION_CONNECTION_LIMIT, h->conn_limit,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
		    MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, h,
		    MHD_OPTION_NOTIFY_CONNECTION, on_notify, h,
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
	if (cfg->metrics_listen && http_metrics_start(h, err, errlen) < 0)
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
	if (h->metrics_daemon)
		MHD_stop_daemon(h->metrics_daemon);
	deadline_free(h->deadline);
	conns_pending_free(h);
	pthread_mutex_destroy(&h->pend_mu);
	free(h->route_hist);
	free(h->web_root);
	free(h);
}
