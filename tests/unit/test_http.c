/* test_http: the http module in-process, through http.h, with every real
 * module behind it, wired the way src/main.c wires them (config from an
 * argv, store on a temporary database under $NATTER_TEST_TMP, auth, bus,
 * chat, one loop and shard, ws, sse, longpoll) and shut down in main's
 * order. A tiny client sends raw HTTP/1.1 requests over TCP with
 * "Connection: close" and reads until the server closes.
 *
 * It covers routing (404, 405 with Allow, path segment limits), body limits
 * (413 announced and streamed, 415, 400 bad_json), accounts (register with
 * its cookie, bearer and cookie authentication), the async send path
 * (suspend, commit, resume), static files (security headers, no escaping
 * the web root), /metrics and client reports, CSRF for cookie-authenticated
 * writes, and the checks done before handing /ws, /events and /poll to
 * their transports. The transports themselves have their own tests. */

#define _GNU_SOURCE /* strcasestr */

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testdir.h"
#include "http/http.h"
#include "util/log.h"
#include "http/request.h"
#include "http/server.h"

#define IO_TIMEOUT_S 30 /* per read or write; valgrind is slow */
#define MIB (1024 * 1024)
#define COOKIE_NAME "natter_session" /* part of the wire contract */

/* --- the server, built once for the whole group --------------------------- */

struct wake {
	struct loop *loop;
	struct bus_shard *shard;
};

static struct {
	char dir[512];
	char db[600];
	char listen[64];
	char host[64]; /* what clients send as Host */
	int port;
	struct config cfg;
	struct server srv;
	struct wake *wakes;
	struct http *http;
	char token[128]; /* bob's bearer token, registered in setup */
} hx;

/* A port nobody listens on right now (it may be taken before we bind it
 * again; acceptable in a test). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void load_member(void *arg, int64_t room_id, int64_t user_id)
{
	bus_member_add(arg, room_id, user_id);
}

static void drain_task(void *arg)
{
	bus_shard_drain(arg);
}

static void wake_shard(void *arg)
{
	struct wake *w = arg;
	loop_post(w->loop, drain_task, w->shard);
}

/* --- a raw HTTP/1.1 client ------------------------------------------------ */

struct resp {
	int status;
	char *head; /* status line and headers, NUL-terminated */
	char *body; /* de-chunked, NUL-terminated */
	size_t body_len;
};

static void resp_fini(struct resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Decode a chunked body in place: its new length, or -1 if malformed. */
static long dechunk(char *body, size_t len)
{
	size_t in = 0, out = 0;
	for (;;) {
		char *end;
		unsigned long n = strtoul(body + in, &end, 16);
		char *crlf = strstr(end, "\r\n");
		if (end == body + in || !crlf)
			return -1;
		in = (size_t)(crlf + 2 - body);
		if (n == 0)
			return (long)out;
		if (in + n + 2 > len)
			return -1;
		memmove(body + out, body + in, n);
		out += n;
		in += n + 2;
	}
}

/* Send a request and read the response until the server closes: 0, or -1
 * with a message on stderr. */
static int http_raw(const char *req, size_t len, struct resp *r)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)hx.port)};
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	struct buf in;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(r, 0, sizeof(*r));
	buf_init(&in);
	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "connect: %s\n", strerror(errno));
		goto fail;
	}
	/* A server may answer before reading everything (413): read anyway. */
	write_all(fd, req, len);
	for (;;) {
		char chunk[16384];
		ssize_t k = recv(fd, chunk, sizeof(chunk), 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && in.len == 0) {
			fprintf(stderr, "recv: %s\n", strerror(errno));
			goto fail;
		}
		if (k <= 0)
			break;
		buf_append(&in, chunk, (size_t)k);
	}
	close(fd);
	fd = -1;

	char *sep = in.data ? strstr(in.data, "\r\n\r\n") : NULL;
	if (!sep || sscanf(in.data, "HTTP/1.%*d %d", &r->status) != 1) {
		fprintf(stderr, "malformed response: '%s'\n",
			in.data ? in.data : "");
		goto fail;
	}
	r->head = xstrndup(in.data, (size_t)(sep + 2 - in.data));
	size_t off = (size_t)(sep + 4 - in.data);
	r->body_len = in.len - off;
	r->body = xstrndup(in.data + off, r->body_len);
	if (strcasestr(r->head, "\r\nTransfer-Encoding: chunked\r\n")) {
		long n = dechunk(r->body, r->body_len);
		if (n < 0) {
			fprintf(stderr, "malformed chunked body\n");
			goto fail;
		}
		r->body_len = (size_t)n;
		r->body[n] = '\0';
	}
	buf_fini(&in);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	buf_fini(&in);
	resp_fini(r);
	return -1;
}

/* headers: extra header lines, each ending in \r\n (may be NULL). body NULL
 * sends no Content-Length. */
static int http_try(struct resp *r, const char *method, const char *path,
		    const char *headers, const char *body)
{
	struct buf req;
	buf_init(&req);
	buf_printf(&req,
		   "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s",
		   method, path, hx.host, headers ? headers : "");
	if (body)
		buf_printf(&req, "Content-Length: %zu\r\n", strlen(body));
	buf_puts(&req, "\r\n");
	if (body)
		buf_puts(&req, body);
	int rc = http_raw(req.data, req.len, r);
	buf_fini(&req);
	return rc;
}

static void http(struct resp *r, const char *method, const char *path,
		 const char *headers, const char *body)
{
	if (http_try(r, method, path, headers, body) < 0)
		fail_msg("%s %s: no HTTP response", method, path);
}

/* A header's value (first occurrence), or NULL; caller frees. */
static char *header(const struct resp *r, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p;
	     p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (!strncasecmp(line, name, n) && line[n] == ':') {
			const char *v = line + n + 1;
			while (*v == ' ')
				v++;
			const char *end = strstr(v, "\r\n");
			return xstrndup(v, end ? (size_t)(end - v) : strlen(v));
		}
	}
	return NULL;
}

static void assert_status(const struct resp *r, int status)
{
	if (r->status != status)
		fail_msg("status %d, want %d; body: %s", r->status, status,
			 r->body);
}

static void assert_header(const struct resp *r, const char *name,
			  const char *want)
{
	char *v = header(r, name);
	if (!v)
		fail_msg("no %s header in:\n%s", name, r->head);
	assert_string_equal(v, want);
	free(v);
}

static void assert_header_has(const struct resp *r, const char *name,
			      const char *part)
{
	char *v = header(r, name);
	if (!v)
		fail_msg("no %s header in:\n%s", name, r->head);
	if (!strstr(v, part))
		fail_msg("%s: '%s' lacks '%s'", name, v, part);
	free(v);
}

static json_t *body_json(const struct resp *r)
{
	json_error_t jerr;
	json_t *obj = json_loadb(r->body, r->body_len, 0, &jerr);
	if (!json_is_object(obj))
		fail_msg("body is not a JSON object: '%s'", r->body);
	return obj;
}

static const char *json_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v))
		fail_msg("'%s' is not a string member", key);
	return json_string_value(v);
}

/* status, and the JSON error code of an error answer */
static void assert_error(const struct resp *r, int status, const char *code)
{
	assert_status(r, status);
	assert_header_has(r, "Content-Type", "application/json");
	json_t *obj = body_json(r);
	assert_string_equal(json_str(obj, "error"), code);
	assert_true(strlen(json_str(obj, "message")) > 0);
	json_decref(obj);
}

static char *bearer(const char *token)
{
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "Authorization: Bearer %s\r\n", token);
	return b.data;
}

static const char *const JSON_CT = "Content-Type: application/json\r\n";

/* --- group setup and teardown --------------------------------------------- */

static int register_user(const char *name, char *token, size_t len)
{
	char body[256];
	struct resp r;
	snprintf(body, sizeof(body),
		 "{\"username\":\"%s\",\"password\":\"correct horse\"}", name);
	if (http_try(&r, "POST", "/api/register", JSON_CT, body) < 0)
		return -1;
	json_t *obj = json_loadb(r.body, r.body_len, 0, NULL);
	json_t *t = json_object_get(obj, "token");
	int rc = -1;
	if (r.status == 201 && json_is_string(t)) {
		snprintf(token, len, "%s", json_string_value(t));
		rc = 0;
	} else {
		fprintf(stderr, "register %s: %d %s\n", name, r.status, r.body);
	}
	json_decref(obj);
	resp_fini(&r);
	return rc;
}

static int server_start(void **state)
{
	(void)state;
	char err[512] = "";

	signal(SIGPIPE, SIG_IGN);
	if (testdir_make(hx.dir, sizeof(hx.dir), "test_http") < 0)
		return -1;
	snprintf(hx.db, sizeof(hx.db), "%s/natter.db", hx.dir);
	hx.port = free_port();
	if (hx.port < 0)
		return -1;
	snprintf(hx.listen, sizeof(hx.listen), "127.0.0.1:%d", hx.port);
	snprintf(hx.host, sizeof(hx.host), "127.0.0.1:%d", hx.port);

	const char *argv[] = {
	    "natterd",	   "--listen",
	    hx.listen,	   "--db",
	    hx.db,	   "--db-dir",
	    testdir_db(),  "--web-root",
	    testdir_web(), "--argon2-memory-kib",
	    "1024",	   "--argon2-time",
	    "1",	   "--http-threads",
	    "2",	   "--loops",
	    "1",	   "--log-level",
	    "warn",
	};
	if (config_load(&hx.cfg, (int)ARRAY_LEN(argv), (char **)argv, err,
			sizeof(err)) != 0) {
		fprintf(stderr, "config_load: %s\n", err);
		return -1;
	}
	struct config *cfg = &hx.cfg;
	if (log_open(cfg->log_file, cfg->log_level) < 0)
		return -1;
	if (cfg->max_connections == 0) /* main derives it from RLIMIT_NOFILE */
		cfg->max_connections = 64;

	struct server *srv = &hx.srv;
	srv->cfg = cfg;
	metrics_init(&srv->metrics);
	struct store_config sc = {
	    .path = cfg->db_path,
	    .db_dir = cfg->db_dir,
	    .sync_full = cfg->db_sync_full,
	    .commit_interval_ms = cfg->commit_interval_ms,
	    .commit_batch_max = cfg->commit_batch_max,
	    .readers = cfg->http_threads + 2,
	    .session_cache_ms = cfg->session_cache_ms,
	};
	srv->store = store_open(&sc, err, sizeof(err));
	if (!srv->store) {
		fprintf(stderr, "store_open: %s\n", err);
		return -1;
	}
	struct auth_config ac = {
	    .memory_kib = cfg->argon2_memory_kib,
	    .time_cost = cfg->argon2_time,
	    .parallelism = cfg->argon2_parallelism,
	    .fail_max = cfg->login_fail_max,
	    .fail_window_s = cfg->login_fail_window_s,
	};
	srv->auth = auth_new(&ac);
	if (!srv->auth)
		return -1;
	srv->bus = bus_new(cfg->ring_size, cfg->replay_max,
			   store_last_event_id(srv->store), store_events_after,
			   srv->store);
	if (store_members_each(srv->store, load_member, srv->bus) < 0)
		return -1;
	srv->chat = chat_new(srv->store, srv->bus, NULL);

	srv->nloops = cfg->loops;
	srv->loops = xcalloc(srv->nloops, sizeof(*srv->loops));
	srv->shards = xcalloc(srv->nloops, sizeof(*srv->shards));
	hx.wakes = xcalloc(srv->nloops, sizeof(*hx.wakes));
	for (unsigned i = 0; i < srv->nloops; i++) {
		char name[16];
		snprintf(name, sizeof(name), "loop%u", i);
		srv->loops[i] = loop_new(name);
		if (!srv->loops[i])
			return -1;
		hx.wakes[i].loop = srv->loops[i];
		srv->shards[i] =
		    bus_shard_new(srv->bus, wake_shard, &hx.wakes[i]);
		hx.wakes[i].shard = srv->shards[i];
	}
	struct ws_config wc = {
	    .loops = srv->loops,
	    .shards = srv->shards,
	    .nloops = srv->nloops,
	    .bus = srv->bus,
	    .chat = srv->chat,
	    .metrics = &srv->metrics,
	    .send_queue_max = cfg->send_queue_max,
	    .ping_s = cfg->ws_ping_s,
	};
	srv->ws = ws_server_new(&wc);
	for (unsigned i = 0; i < srv->nloops; i++)
		if (loop_start(srv->loops[i]) < 0)
			return -1;
	srv->sse = sse_new(srv->bus, &srv->metrics, cfg->sse_heartbeat_s,
			   cfg->send_queue_max, srv->loops, srv->nloops);
	srv->poll = longpoll_new(srv->bus, &srv->metrics, cfg->send_queue_max,
				 srv->loops, srv->nloops);

	hx.http = http_start(srv, err, sizeof(err));
	if (!hx.http) {
		fprintf(stderr, "http_start: %s\n", err);
		return -1;
	}
	/* bob is the account most tests act as */
	return register_user("bob", hx.token, sizeof(hx.token));
}

static int server_stop(void **state)
{
	(void)state;
	struct server *srv = &hx.srv;

	/* main's order */
	http_quiesce(hx.http);
	ws_server_free(srv->ws);
	longpoll_free(srv->poll);
	sse_free(srv->sse);
	http_stop(hx.http);
	store_close(srv->store);
	for (unsigned i = 0; i < srv->nloops; i++)
		loop_stop(srv->loops[i]);
	for (unsigned i = 0; i < srv->nloops; i++) {
		bus_shard_free(srv->shards[i]);
		loop_free(srv->loops[i]);
	}
	chat_free(srv->chat);
	bus_free(srv->bus);
	auth_free(srv->auth);
	free(hx.wakes);
	free(srv->shards);
	free(srv->loops);
	log_close();
	config_fini(&hx.cfg);
	testdir_remove(hx.dir);
	return 0;
}

/* --- routing -------------------------------------------------------------- */

static void test_healthz(void **state)
{
	(void)state;
	struct resp r;

	http(&r, "GET", "/healthz", NULL, NULL);
	assert_status(&r, 200);
	/* it names the store's backend (cluster nodes: "postgresql") */
	assert_string_equal(r.body, "{\"status\":\"ok\",\"store\":\"sqlite\"}");
	assert_header_has(&r, "Content-Type", "application/json");
	assert_header(&r, "X-Content-Type-Options", "nosniff");
	resp_fini(&r);

	http(&r, "GET", "/healthz/", NULL, NULL); /* trailing slash */
	assert_status(&r, 200);
	resp_fini(&r);

	http(&r, "POST", "/healthz", NULL, "");
	assert_error(&r, 405, "method_not_allowed");
	assert_header(&r, "Allow", "GET");
	resp_fini(&r);
}

static void test_not_found(void **state)
{
	(void)state;
	struct resp r;
	char *auth = bearer(hx.token);

	http(&r, "GET", "/no/such/thing", NULL, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);
	http(&r, "GET", "/nope", NULL, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);
	/* the API authenticates before it looks for the endpoint */
	http(&r, "GET", "/api/nope", NULL, NULL);
	assert_error(&r, 401, "unauthorized");
	resp_fini(&r);
	http(&r, "GET", "/api/nope", auth, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);
	free(auth);
}

static void test_method_not_allowed(void **state)
{
	(void)state;
	struct resp r;
	char *auth = bearer(hx.token);

	http(&r, "GET", "/api/register", NULL, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_header(&r, "Allow", "POST");
	resp_fini(&r);
	http(&r, "DELETE", "/api/me", auth, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_header(&r, "Allow", "GET, PATCH");
	resp_fini(&r);
	http(&r, "PUT", "/api/rooms", auth, "{}");
	assert_status(&r, 405);
	assert_header(&r, "Allow", "GET, POST");
	resp_fini(&r);
	http(&r, "POST", "/poll", auth, "");
	assert_status(&r, 405);
	assert_header(&r, "Allow", "GET");
	resp_fini(&r);
	http(&r, "POST", "/", NULL, "");
	assert_status(&r, 405);
	assert_header(&r, "Allow", "GET");
	resp_fini(&r);
	free(auth);
}

static void test_path_limits(void **state)
{
	(void)state;
	struct resp r;
	char *auth = bearer(hx.token);
	char path[256];
	char seg[80];

	/* a valid route, as a control */
	http(&r, "GET", "/api/rooms/lobby/messages", auth, NULL);
	assert_status(&r, 200);
	resp_fini(&r);

	/* eight segments reach the API router; nine never get that far */
	http(&r, "GET", "/api/rooms/lobby/messages/x/y/z/w", auth, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);
	http(&r, "GET", "/api/rooms/lobby/messages/x/y/z/w/v", auth, NULL);
	assert_error(&r, 404, "not_found");
	assert_non_null(strstr(r.body, "no such path"));
	resp_fini(&r);
	http(&r, "GET", "/a/b/c/d/e/f/g/h/i", NULL, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);

	/* a 63-byte segment is routed (no such room); 64 bytes is refused */
	memset(seg, 'r', 63);
	seg[63] = '\0';
	snprintf(path, sizeof(path), "/api/rooms/%s/messages", seg);
	http(&r, "GET", path, auth, NULL);
	assert_error(&r, 404, "no_such_room");
	resp_fini(&r);
	memset(seg, 'r', 64);
	seg[64] = '\0';
	snprintf(path, sizeof(path), "/api/rooms/%s/messages", seg);
	http(&r, "GET", path, auth, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);
	snprintf(path, sizeof(path), "/%s", seg);
	http(&r, "GET", path, NULL, NULL);
	assert_error(&r, 404, "not_found");
	resp_fini(&r);
	free(auth);
}

/* --- bodies --------------------------------------------------------------- */

static void test_body_too_large_announced(void **state)
{
	(void)state;
	struct resp r;
	char req[512];

	/* refused on the headers alone: no body is sent */
	int n = snprintf(req, sizeof(req),
			 "POST /api/register HTTP/1.1\r\nHost: %s\r\n"
			 "Connection: close\r\n"
			 "Content-Type: application/json\r\n"
			 "Content-Length: %d\r\n\r\n",
			 hx.host, 2 * MIB);
	assert_int_equal(http_raw(req, (size_t)n, &r), 0);
	assert_error(&r, 413, "body_too_large");
	resp_fini(&r);

	n = snprintf(req, sizeof(req),
		     "POST /api/register HTTP/1.1\r\nHost: %s\r\n"
		     "Connection: close\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n",
		     hx.host, hx.cfg.max_body + 1);
	assert_int_equal(http_raw(req, (size_t)n, &r), 0);
	assert_error(&r, 413, "body_too_large");
	resp_fini(&r);
}

static void test_body_limit_exact_and_streamed(void **state)
{
	(void)state;
	struct resp r;
	size_t max = hx.cfg.max_body;
	struct buf req;

	/* exactly max-body bytes are read and reach the handler (415) */
	buf_init(&req);
	buf_printf(&req,
		   "POST /api/register HTTP/1.1\r\nHost: %s\r\n"
		   "Connection: close\r\nContent-Type: text/plain\r\n"
		   "Content-Length: %zu\r\n\r\n",
		   hx.host, max);
	buf_reserve(&req, max);
	memset(req.data + req.len, 'x', max);
	req.len += max;
	req.data[req.len] = '\0';
	assert_int_equal(http_raw(req.data, req.len, &r), 0);
	assert_error(&r, 415, "unsupported_media_type");
	resp_fini(&r);
	buf_fini(&req);

	/* a chunked body that grows past max-body is cut off: 413 */
	char *chunk = xmalloc(65536);
	memset(chunk, 'y', 65536);
	buf_init(&req);
	buf_printf(&req,
		   "POST /api/register HTTP/1.1\r\nHost: %s\r\n"
		   "Connection: close\r\nContent-Type: application/json\r\n"
		   "Transfer-Encoding: chunked\r\n\r\n",
		   hx.host);
	for (size_t sent = 0; sent <= max; sent += 65536) {
		buf_puts(&req, "10000\r\n");
		buf_append(&req, chunk, 65536);
		buf_puts(&req, "\r\n");
	}
	buf_puts(&req, "0\r\n\r\n");
	assert_int_equal(http_raw(req.data, req.len, &r), 0);
	assert_error(&r, 413, "body_too_large");
	resp_fini(&r);
	buf_fini(&req);
	free(chunk);
}

static void test_unsupported_media_type(void **state)
{
	(void)state;
	struct resp r;
	const char *body =
	    "{\"username\":\"carol\",\"password\":\"correct horse\"}";

	http(&r, "POST", "/api/register", "Content-Type: text/plain\r\n", body);
	assert_error(&r, 415, "unsupported_media_type");
	resp_fini(&r);
	http(&r, "POST", "/api/register", NULL, body);
	assert_error(&r, 415, "unsupported_media_type");
	resp_fini(&r);
	http(&r, "POST", "/api/register", "Content-Type: application/jsonx\r\n",
	     body);
	assert_error(&r, 415, "unsupported_media_type");
	resp_fini(&r);
	http(&r, "POST", "/api/register",
	     "Content-Type: application/x-www-form-urlencoded\r\n",
	     "username=carol&password=correct+horse");
	assert_error(&r, 415, "unsupported_media_type");
	resp_fini(&r);
}

static void test_bad_json(void **state)
{
	(void)state;
	struct resp r;
	const char *bad[] = {
	    "{\"username\":",	    /* truncated */
	    "{username:\"carol\"}", /* not JSON */
	    "",
	    "[\"carol\",\"correct horse\"]", /* not an object */
	    "\"carol\"",
	    "{\"username\":\"carol\",\"username\":\"dave\","
	    "\"password\":\"correct horse\"}", /* duplicate key */
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		http(&r, "POST", "/api/register", JSON_CT, bad[i]);
		assert_error(&r, 400, "bad_json");
		resp_fini(&r);
	}
	/* parameters after the media type are fine */
	http(&r, "POST", "/api/register",
	     "Content-Type: application/json; charset=utf-8\r\n", "{");
	assert_error(&r, 400, "bad_json");
	resp_fini(&r);
}

/* --- accounts ------------------------------------------------------------- */

static void test_register(void **state)
{
	(void)state;
	struct resp r;

	http(&r, "POST", "/api/register", JSON_CT,
	     "{\"username\":\"alice\",\"password\":\"correct horse\"}");
	assert_status(&r, 201);
	json_t *obj = body_json(&r);
	const char *token = json_str(obj, "token");
	assert_int_equal(strlen(token), AUTH_TOKEN_LEN);
	json_t *user = json_object_get(obj, "user");
	assert_string_equal(json_str(user, "username"), "alice");

	char *cookie = header(&r, "Set-Cookie");
	assert_non_null(cookie);
	char want[128];
	snprintf(want, sizeof(want), COOKIE_NAME "=%s;", token);
	assert_true(!strncmp(cookie, want, strlen(want)));
	assert_non_null(strstr(cookie, "; Path=/"));
	assert_non_null(strstr(cookie, "; HttpOnly"));
	assert_non_null(strstr(cookie, "; SameSite=Lax"));
	assert_null(strstr(cookie, "Secure")); /* plain HTTP */
	free(cookie);
	assert_header(&r, "Cache-Control", "no-store");
	json_decref(obj);
	resp_fini(&r);

	/* usernames are unique ignoring case */
	http(&r, "POST", "/api/register", JSON_CT,
	     "{\"username\":\"ALICE\",\"password\":\"correct horse\"}");
	assert_error(&r, 409, "username_taken");
	resp_fini(&r);
}

static void test_me_auth(void **state)
{
	(void)state;
	struct resp r;
	char *auth = bearer(hx.token);
	char cookie[256];

	http(&r, "GET", "/api/me", auth, NULL);
	assert_status(&r, 200);
	json_t *obj = body_json(&r);
	assert_string_equal(json_str(obj, "username"), "bob");
	json_decref(obj);
	resp_fini(&r);

	http(&r, "GET", "/api/me", NULL, NULL);
	assert_error(&r, 401, "unauthorized");
	resp_fini(&r);
	http(&r, "GET", "/api/me",
	     "Authorization: Bearer "
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
	     NULL);
	assert_error(&r, 401, "unauthorized");
	resp_fini(&r);
	http(&r, "GET", "/api/me", "Authorization: Bearer \r\n", NULL);
	assert_error(&r, 401, "unauthorized");
	resp_fini(&r);

	snprintf(cookie, sizeof(cookie), "Cookie: " COOKIE_NAME "=%s\r\n",
		 hx.token);
	http(&r, "GET", "/api/me", cookie, NULL);
	assert_status(&r, 200);
	resp_fini(&r);
	http(&r, "GET", "/api/me", "Cookie: " COOKIE_NAME "=nope\r\n", NULL);
	assert_error(&r, 401, "unauthorized");
	resp_fini(&r);
	free(auth);
}

/* The async path: the request is suspended while the writer commits. */
static void test_send_message(void **state)
{
	(void)state;
	struct resp r;
	char headers[256];
	snprintf(headers, sizeof(headers), "Authorization: Bearer %s\r\n%s",
		 hx.token, JSON_CT);

	http(&r, "POST", "/api/rooms/lobby/messages", headers,
	     "{\"text\":\"hello from http\",\"client_id\":\"h-1\"}");
	assert_status(&r, 201);
	json_t *obj = body_json(&r);
	json_t *ev = json_object_get(obj, "event");
	assert_string_equal(json_str(ev, "text"), "hello from http");
	assert_string_equal(json_str(ev, "from"), "bob");
	json_int_t id = json_integer_value(json_object_get(ev, "id"));
	assert_true(id > 0);
	assert_null(json_object_get(obj, "duplicate"));
	json_decref(obj);
	resp_fini(&r);

	/* a retry answers 200 with the first event */
	http(&r, "POST", "/api/rooms/lobby/messages", headers,
	     "{\"text\":\"hello from http\",\"client_id\":\"h-1\"}");
	assert_status(&r, 200);
	obj = body_json(&r);
	assert_true(json_is_true(json_object_get(obj, "duplicate")));
	ev = json_object_get(obj, "event");
	assert_int_equal(json_integer_value(json_object_get(ev, "id")), id);
	json_decref(obj);
	resp_fini(&r);

	/* synchronous chat errors resume at once */
	http(&r, "POST", "/api/rooms/nosuch/messages", headers,
	     "{\"text\":\"hi\"}");
	assert_error(&r, 404, "no_such_room");
	resp_fini(&r);
	http(&r, "POST", "/api/rooms/lobby/messages", headers,
	     "{\"text\":\"   \"}");
	assert_error(&r, 422, "invalid");
	resp_fini(&r);

	/* the message is in history */
	http(&r, "GET", "/api/rooms/lobby/messages", headers, NULL);
	assert_status(&r, 200);
	assert_non_null(strstr(r.body, "hello from http"));
	resp_fini(&r);
}

/* --- static files --------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[4096];
	size_t n;

	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len = b.len;
	return b.data ? b.data : xstrdup("");
}

static void test_static_index(void **state)
{
	(void)state;
	struct resp r;
	char path[1024];
	size_t len;

	snprintf(path, sizeof(path), "%s/index.html", testdir_web());
	char *want = slurp(path, &len);
	http(&r, "GET", "/", NULL, NULL);
	assert_status(&r, 200);
	assert_header(&r, "Content-Type", "text/html; charset=utf-8");
	assert_header_has(&r, "Content-Security-Policy", "default-src 'self'");
	assert_header_has(&r, "Content-Security-Policy",
			  "frame-ancestors 'none'");
	assert_header(&r, "X-Content-Type-Options", "nosniff");
	assert_int_equal(r.body_len, len);
	assert_memory_equal(r.body, want, len);
	resp_fini(&r);
	free(want);

	http(&r, "GET", "/static/index.html", NULL, NULL);
	assert_status(&r, 200);
	assert_int_equal(r.body_len, len);
	resp_fini(&r);
	http(&r, "GET", "/static/app.js", NULL, NULL);
	assert_status(&r, 200);
	assert_header(&r, "Content-Type", "text/javascript; charset=utf-8");
	assert_header(&r, "X-Content-Type-Options", "nosniff");
	resp_fini(&r);
}

static void test_static_confined(void **state)
{
	(void)state;
	struct resp r;
	const char *paths[] = {
	    "/static/../README.md",	/* exists above the web root */
	    "/static/%2e%2e/README.md", /* the same, escaped */
	    "/static/../web/index.html",
	    "/static/sub/../../README.md",
	    "/static/.hidden",
	    "/static/./index.html", /* exists, behind a dot segment */
	    "/static//index.html",  /* empty segment */
	    "/static/nope.js",
	    "/static/",
	    "/static",
	    "/index.html", /* files live under /static/ */
	};
	for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
		http(&r, "GET", paths[i], NULL, NULL);
		if (r.status != 404)
			fail_msg("GET %s: %d, want 404", paths[i], r.status);
		assert_error(&r, 404, "not_found");
		resp_fini(&r);
	}
}

/* --- metrics and client reports ------------------------------------------- */

static void test_metrics(void **state)
{
	(void)state;
	struct resp r;

	http(&r, "GET", "/metrics", NULL, NULL);
	assert_status(&r, 200);
	assert_header_has(&r, "Content-Type", "text/plain");
	assert_non_null(
	    strstr(r.body, "natter_connections{transport=\"ws\"} "));
	assert_non_null(
	    strstr(r.body, "natter_connections{transport=\"sse\"} "));
	assert_non_null(strstr(r.body, "natter_http_requests_total "));
	assert_non_null(strstr(r.body, "natter_last_event_id "));
	assert_non_null(
	    strstr(r.body, "natter_client_transport_total{transport=\"sse\","
			   "reason=\"ws_timeout\"} 0\n"));
	resp_fini(&r);
}

static void test_client_report(void **state)
{
	(void)state;
	struct resp r;
	char headers[256];
	snprintf(headers, sizeof(headers), "Authorization: Bearer %s\r\n%s",
		 hx.token, JSON_CT);

	http(&r, "POST", "/api/client-report", JSON_CT,
	     "{\"transport\":\"sse\",\"reason\":\"ws_timeout\"}");
	assert_error(&r, 401, "unauthorized");
	resp_fini(&r);
	http(&r, "POST", "/api/client-report", headers,
	     "{\"transport\":\"pigeon\",\"reason\":\"ws_timeout\"}");
	assert_error(&r, 422, "invalid_field");
	resp_fini(&r);

	http(&r, "POST", "/api/client-report", headers,
	     "{\"transport\":\"sse\",\"reason\":\"ws_timeout\"}");
	assert_status(&r, 204);
	assert_int_equal(r.body_len, 0);
	resp_fini(&r);

	http(&r, "GET", "/metrics", NULL, NULL);
	assert_status(&r, 200);
	assert_non_null(
	    strstr(r.body, "natter_client_transport_total{transport=\"sse\","
			   "reason=\"ws_timeout\"} 1\n"));
	assert_non_null(strstr(r.body,
			       "natter_client_transport_total{transport=\"ws\","
			       "reason=\"ws_timeout\"} 0\n"));
	resp_fini(&r);
}

/* --- CSRF and Origin ------------------------------------------------------ */

static void test_csrf(void **state)
{
	(void)state;
	struct resp r;
	char h[512];
	const char *report = "{\"transport\":\"poll\"}";

	/* cookie + foreign Origin: refused */
	snprintf(h, sizeof(h),
		 "Cookie: " COOKIE_NAME "=%s\r\n%s"
		 "Origin: http://evil.example\r\n",
		 hx.token, JSON_CT);
	http(&r, "POST", "/api/client-report", h, report);
	assert_error(&r, 403, "csrf");
	resp_fini(&r);

	/* cookie + a cross-site fetch without Origin: refused */
	snprintf(h, sizeof(h),
		 "Cookie: " COOKIE_NAME "=%s\r\n%s"
		 "Sec-Fetch-Site: cross-site\r\n",
		 hx.token, JSON_CT);
	http(&r, "POST", "/api/client-report", h, report);
	assert_error(&r, 403, "csrf");
	resp_fini(&r);

	/* cookie + our own Origin, or none: fine */
	snprintf(h, sizeof(h),
		 "Cookie: " COOKIE_NAME "=%s\r\n%sOrigin: http://%s\r\n",
		 hx.token, JSON_CT, hx.host);
	http(&r, "POST", "/api/client-report", h, report);
	assert_status(&r, 204);
	resp_fini(&r);
	snprintf(h, sizeof(h), "Cookie: " COOKIE_NAME "=%s\r\n%s", hx.token,
		 JSON_CT);
	http(&r, "POST", "/api/client-report", h, report);
	assert_status(&r, 204);
	resp_fini(&r);

	/* a bearer token is no ambient credential: any Origin */
	snprintf(h, sizeof(h),
		 "Authorization: Bearer %s\r\n%s"
		 "Origin: http://evil.example\r\n",
		 hx.token, JSON_CT);
	http(&r, "POST", "/api/client-report", h, report);
	assert_status(&r, 204);
	resp_fini(&r);

	/* reads are not state-changing */
	snprintf(h, sizeof(h),
		 "Cookie: " COOKIE_NAME "=%s\r\n"
		 "Origin: http://evil.example\r\n",
		 hx.token);
	http(&r, "GET", "/api/me", h, NULL);
	assert_status(&r, 200);
	resp_fini(&r);
}

/* --- transports: what http checks before handing over --------------------- */

static void test_transport_unauthenticated(void **state)
{
	(void)state;
	struct resp r;
	const char *paths[] = {"/events",
			       "/poll",
			       "/poll?timeout=0",
			       "/ws",
			       "/events?token=nope",
			       "/poll?token=nope"};

	for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
		http(&r, "GET", paths[i], NULL, NULL);
		if (r.status != 401)
			fail_msg("GET %s: %d, want 401", paths[i], r.status);
		assert_error(&r, 401, "unauthorized");
		resp_fini(&r);
	}
}

static void test_ws_foreign_origin(void **state)
{
	(void)state;
	struct resp r;
	char h[512];

	snprintf(h, sizeof(h),
		 "Authorization: Bearer %s\r\n"
		 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		 "Origin: http://evil.example\r\n",
		 hx.token);
	http(&r, "GET", "/ws", h, NULL);
	assert_error(&r, 403, "bad_origin");
	resp_fini(&r);

	/* the same with a token in the query */
	snprintf(h, sizeof(h), "/ws?token=%s", hx.token);
	http(&r, "GET", h, "Origin: https://evil.example\r\n", NULL);
	assert_error(&r, 403, "bad_origin");
	resp_fini(&r);
}

static void test_poll_parameters(void **state)
{
	(void)state;
	struct resp r;
	char *auth = bearer(hx.token);
	const char *bad_since[] = {"/poll?since=abc", "/poll?since=-1",
				   "/poll?since=1x",
				   "/poll?since=99999999999999999999"};

	for (size_t i = 0; i < ARRAY_LEN(bad_since); i++) {
		http(&r, "GET", bad_since[i], auth, NULL);
		assert_error(&r, 400, "bad_cursor");
		resp_fini(&r);
	}
	const char *bad_timeout[] = {"/poll?timeout=999", "/poll?timeout=-1",
				     "/poll?timeout=abc", "/poll?timeout=56"};
	for (size_t i = 0; i < ARRAY_LEN(bad_timeout); i++) {
		http(&r, "GET", bad_timeout[i], auth, NULL);
		assert_error(&r, 400, "bad_parameter");
		resp_fini(&r);
	}
	/* Last-Event-ID is validated like since for SSE */
	char h[512];
	snprintf(h, sizeof(h), "%sLast-Event-ID: x1\r\n", auth);
	http(&r, "GET", "/events", h, NULL);
	assert_error(&r, 400, "bad_cursor");
	resp_fini(&r);

	/* a valid poll that does not wait is handed over and answered */
	http(&r, "GET", "/poll?since=0&timeout=0", auth, NULL);
	assert_status(&r, 200);
	json_t *obj = body_json(&r);
	assert_true(json_is_array(json_object_get(obj, "events")));
	assert_true(json_is_integer(json_object_get(obj, "cursor")));
	json_decref(obj);
	resp_fini(&r);
	free(auth);
}

/* Each chat error's HTTP status (moved here from test_chat: chat knows no
 * HTTP). */
static void test_chat_error_status(void **state)
{
	(void)state;
	static const struct {
		int err;
		unsigned status;
	} want[] = {
	    {CHAT_OK, 200},	      {CHAT_EINVAL, 422},
	    {CHAT_ETOOLONG, 422},     {CHAT_ENOROOM, 404},
	    {CHAT_ENOTMEMBER, 403},   {CHAT_EEXISTS, 409},
	    {CHAT_EINTERNAL, 500},    {CHAT_ECLOSED, 503},
	    {CHAT_EFORBIDDEN, 403},   {CHAT_ENOUSER, 404},
	    {CHAT_EBANNED, 403},      {CHAT_ENOTBANNED, 404},
	    {CHAT_ENOSUBJECT, 422},   {CHAT_ENOMSG, 404},
	    {CHAT_ENOTAUTHOR, 403},   {CHAT_EDELETED, 409},
	    {CHAT_EFIXED, 409},	      {CHAT_EFULL, 507},
	    {CHAT_EUNAVAILABLE, 503},
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_int_equal(request_chat_status(want[i].err),
				 want[i].status);
	/* anything else is an internal error */
	const int unknown[] = {1, -50, -99, 12345};
	for (size_t i = 0; i < ARRAY_LEN(unknown); i++)
		assert_int_equal(request_chat_status(unknown[i]), 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chat_error_status),
	    cmocka_unit_test(test_healthz),
	    cmocka_unit_test(test_not_found),
	    cmocka_unit_test(test_method_not_allowed),
	    cmocka_unit_test(test_path_limits),
	    cmocka_unit_test(test_body_too_large_announced),
	    cmocka_unit_test(test_body_limit_exact_and_streamed),
	    cmocka_unit_test(test_unsupported_media_type),
	    cmocka_unit_test(test_bad_json),
	    cmocka_unit_test(test_register),
	    cmocka_unit_test(test_me_auth),
	    cmocka_unit_test(test_send_message),
	    cmocka_unit_test(test_static_index),
	    cmocka_unit_test(test_static_confined),
	    cmocka_unit_test(test_metrics),
	    cmocka_unit_test(test_client_report),
	    cmocka_unit_test(test_csrf),
	    cmocka_unit_test(test_transport_unauthenticated),
	    cmocka_unit_test(test_ws_foreign_origin),
	    cmocka_unit_test(test_poll_parameters),
	};
	return cmocka_run_group_tests(tests, server_start, server_stop);
}
