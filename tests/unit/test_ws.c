/* test_ws: the WebSocket transport through its public header. A real MHD
 * daemon on 127.0.0.1:0 hands /ws to ws_handle(); two real loops carry the
 * connections; a raw TCP client writes scripted, masked frames (split into
 * 1-byte writes where it matters) and parses the server's frames by hand.
 *
 * bus, chat, event and reply are replaced at link time: this file defines
 * every symbol ws.o takes from them, so the archive's bus.o, chat.o,
 * event.o and reply.o are never pulled in. The fake bus delivers on the
 * subscriber's loop with a "shard lock" held, as the real one does; the
 * fake chat completes sends when the test says so, from the test thread,
 * as the store's writer thread would. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport/ws.h"
#include "transport/ws_frame.h"
#include "util/util.h"

/* --- fake event ----------------------------------------------------------- */

struct event {
	atomic_int refs;
	int64_t id;
	enum event_type type; /* EVENT_MESSAGE (0) unless a test sets it */
	char *json;
	size_t len;
};

static struct event *fake_event(int64_t id, const char *json)
{
	struct event *ev = calloc(1, sizeof(*ev));
	atomic_init(&ev->refs, 1);
	ev->id = id;
	ev->json = strdup(json);
	ev->len = strlen(json);
	return ev;
}

struct event *event_ref(struct event *ev)
{
	atomic_fetch_add(&ev->refs, 1);
	return ev;
}

void event_unref(struct event *ev)
{
	if (ev && atomic_fetch_sub(&ev->refs, 1) == 1) {
		free(ev->json);
		free(ev);
	}
}

int64_t event_id(const struct event *ev)
{
	return ev->id;
}

void event_delivery_observe(const struct event *ev, struct histo *h,
			    struct histo *sent)
{
	(void)ev, (void)h, (void)sent;
}

const char *event_json(const struct event *ev, size_t *len)
{
	*len = ev->len;
	return ev->json;
}

enum event_type event_type(const struct event *ev)
{
	return ev->type;
}

/* --- fake bus ---------------------------------------------------------------
 */

struct bus_shard {
	struct loop *lp;
};

struct bus_sub {
	struct bus_sub *next;
	unsigned long id;
	struct bus_shard *shard;
	const struct bus_sub_ops *ops;
	void *arg;
	int64_t user_id, since;
};

static pthread_mutex_t bus_mu = PTHREAD_MUTEX_INITIALIZER; /* "shard lock" */
static struct bus_sub *subs;
static unsigned long next_sub_id = 1;
static int fake_sub_err;
static struct event *fake_replay;
static atomic_int nsubs;

struct bus_sub *bus_subscribe(struct bus_shard *shard, int64_t user_id,
			      int64_t since, const struct bus_sub_ops *ops,
			      void *arg, int *err)
{
	if (fake_sub_err) {
		*err = fake_sub_err;
		return NULL;
	}
	assert_true(loop_is_current(shard->lp));
	struct bus_sub *s = calloc(1, sizeof(*s));
	s->shard = shard;
	s->ops = ops;
	s->arg = arg;
	s->user_id = user_id;
	s->since = since;
	pthread_mutex_lock(&bus_mu);
	s->id = next_sub_id++;
	s->next = subs;
	subs = s;
	struct bus_resume r = {.cursor = 41, .recovered = since <= 41};
	ops->hello(arg, &r);
	if (fake_replay && since >= 0)
		ops->deliver(arg, fake_replay);
	pthread_mutex_unlock(&bus_mu);
	atomic_fetch_add(&nsubs, 1);
	return s;
}

/* The history-pool path (bus.h, replay.h): taken only when a test sets
 * history_busy, and then the pool is full. */
static atomic_bool history_busy;

bool bus_history_needed(struct bus *bus, int64_t since)
{
	(void)bus;
	return atomic_load(&history_busy) && since >= 0;
}

struct bus_prefetch *bus_prefetch_new(int64_t user_id, int64_t since)
{
	(void)user_id, (void)since;
	return NULL; /* opaque to ws */
}

void bus_prefetch_free(struct bus_prefetch *p)
{
	(void)p;
}

struct bus_sub *bus_subscribe_prefetched(struct bus_shard *shard,
					 struct bus_prefetch *p,
					 const struct bus_sub_ops *ops,
					 void *arg, int *err)
{
	(void)shard, (void)p, (void)ops, (void)arg, (void)err;
	fail_msg("no history pool in this test");
	return NULL;
}

int replay_submit(struct replay *r, int64_t user_id, struct bus_prefetch *p,
		  replay_done_fn done, void *arg)
{
	(void)r, (void)user_id, (void)p, (void)done, (void)arg;
	return REPLAY_EBUSY;
}

/* The place taken before the upgrade: refused only when a test says so.
 * places counts those held; every one must end in a submit or a release
 * (test_history_busy: the pool stopping after the upgrade). */
static atomic_bool pool_full_now;
static atomic_int places;

int replay_reserve(struct replay *r, int64_t user_id)
{
	(void)r, (void)user_id;
	if (atomic_load(&pool_full_now))
		return REPLAY_EBUSY;
	atomic_fetch_add(&places, 1);
	return 0;
}

void replay_release(struct replay *r, int64_t user_id)
{
	(void)r, (void)user_id;
	assert_true(atomic_fetch_sub(&places, 1) > 0);
}

int replay_submit_reserved(struct replay *r, int64_t user_id,
			   struct bus_prefetch *p, replay_done_fn done,
			   void *arg)
{
	(void)p, (void)done, (void)arg;
	replay_release(r, user_id); /* as the real pool does when stopping */
	return REPLAY_EBUSY;
}

unsigned replay_retry_after(const struct replay *r)
{
	(void)r;
	return 7;
}

void bus_unsubscribe(struct bus_sub *sub)
{
	if (!sub)
		return;
	assert_true(loop_is_current(sub->shard->lp));
	pthread_mutex_lock(&bus_mu);
	for (struct bus_sub **p = &subs; *p; p = &(*p)->next) {
		if (*p == sub) {
			*p = sub->next;
			break;
		}
	}
	pthread_mutex_unlock(&bus_mu);
	free(sub);
	atomic_fetch_sub(&nsubs, 1);
}

struct deliver_task {
	unsigned long sub_id;
	struct event *ev;
	unsigned count;
};

static void deliver_task(void *arg)
{
	struct deliver_task *t = arg;
	pthread_mutex_lock(&bus_mu);
	for (struct bus_sub *s = subs; s; s = s->next)
		if (s->id == t->sub_id)
			for (unsigned i = 0; i < t->count; i++)
				s->ops->deliver(s->arg, t->ev);
	pthread_mutex_unlock(&bus_mu);
	event_unref(t->ev);
	free(t);
}

/* Deliver ev count times (in one loop task) to every live subscriber. */
static void fake_publish_n(struct event *ev, unsigned count)
{
	pthread_mutex_lock(&bus_mu);
	for (struct bus_sub *s = subs; s; s = s->next) {
		struct deliver_task *t = calloc(1, sizeof(*t));
		t->sub_id = s->id;
		t->ev = event_ref(ev);
		t->count = count;
		loop_post(s->shard->lp, deliver_task, t);
	}
	pthread_mutex_unlock(&bus_mu);
}

/* --- fake chat ------------------------------------------------------------ */

static pthread_mutex_t chat_mu = PTHREAD_MUTEX_INITIALIZER;
static chat_done_fn pending_done;
static void *pending_arg;
static char last_room[64], last_text[256], last_client_id[80];
static atomic_int typing_calls;

int chat_send(struct chat *c, const struct chat_user *u, const char *room,
	      const char *text, size_t len, const char *client_id,
	      chat_done_fn done, void *arg)
{
	(void)c;
	assert_string_equal(u->username, "alice");
	if (strcmp(room, "nope") == 0)
		return CHAT_ENOROOM;
	pthread_mutex_lock(&chat_mu);
	snprintf(last_room, sizeof(last_room), "%s", room);
	snprintf(last_text, sizeof(last_text), "%.*s", (int)len, text);
	snprintf(last_client_id, sizeof(last_client_id), "%s",
		 client_id ? client_id : "");
	assert_null(pending_done);
	pending_done = done;
	pending_arg = arg;
	pthread_mutex_unlock(&chat_mu);
	return CHAT_OK;
}

int chat_typing(struct chat *c, const struct chat_user *u, const char *room)
{
	(void)c;
	(void)u;
	(void)room;
	atomic_fetch_add(&typing_calls, 1);
	return CHAT_OK;
}

/* The other commands the WebSocket may dispatch (core/cmd.c); not used. */
/* The activity report (presence): nothing to see here. */
int chat_activity(struct chat *c, const struct chat_user *u)
{
	(void)c, (void)u;
	return CHAT_OK;
}

/* A muted sender: what is left of the mute (cmd asks on CHAT_EMUTED). */
int chat_room_quota(struct chat *c, const struct chat_user *u,
		    int64_t *retry_after_s)
{
	(void)c, (void)u;
	*retry_after_s = 0;
	return CHAT_OK;
}

int64_t chat_mute_left(struct chat *c, const struct chat_user *u,
		       const char *room)
{
	(void)c, (void)u, (void)room;
	return 42;
}

/* A send reaches chat as a message event (its whole input: a reply's
 * reply_to too); the fake takes it as chat_send. */
int chat_event(struct chat *c, const struct chat_user *u, enum event_type type,
	       const struct evtype_input *in, chat_done_fn done, void *arg)
{
	if (type == EVENT_MESSAGE)
		return chat_send(c, u, in->room, in->text, in->len,
				 in->client_id, done, arg);
	return CHAT_EINTERNAL;
}

const char *chat_err_code(int err)
{
	return err == CHAT_ENOROOM ? "no_such_room" : "internal";
}

const char *chat_err_message(int err)
{
	return err == CHAT_ENOROOM ? "no such room" : "internal error";
}

static bool chat_has_pending(void)
{
	pthread_mutex_lock(&chat_mu);
	bool p = pending_done != NULL;
	pthread_mutex_unlock(&chat_mu);
	return p;
}

/* What the store's writer thread does once the message is committed. */
static void fake_commit(struct event *ev)
{
	pthread_mutex_lock(&chat_mu);
	chat_done_fn done = pending_done;
	void *arg = pending_arg;
	pending_done = NULL;
	pthread_mutex_unlock(&chat_mu);
	assert_non_null(done);
	struct chat_result res = {.err = CHAT_OK, .ev = ev};
	done(arg, &res);
}

/* --- fake reply
 * --------------------------------------------------------------- */

void reply_add_common_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

enum MHD_Result reply_queue(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, struct MHD_Response *r)
{
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	if (log)
		log->status = status;
	return ret;
}

enum MHD_Result reply_busy(struct MHD_Connection *c, struct reply_log *log,
			   unsigned retry_after_s)
{
	char body[128];
	int n =
	    snprintf(body, sizeof(body),
		     "{\"error\":\"busy\",\"retry_after\":%u}", retry_after_s);
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    (size_t)n, body, MHD_RESPMEM_MUST_COPY);
	return reply_queue(c, log, 503, r);
}

enum MHD_Result reply_error(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const char *code,
			    const char *message)
{
	char body[256];
	int n =
	    snprintf(body, sizeof(body),
		     "{\"error\":\"%s\",\"message\":\"%s\"}", code, message);
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    (size_t)n, body, MHD_RESPMEM_MUST_COPY);
	reply_add_common_headers(r);
	return reply_queue(c, log, status, r);
}

/* --- fixture: loops, ws server, MHD daemon -------------------------------- */

#define NLOOPS 2

struct fixture {
	struct loop *loops[NLOOPS];
	struct bus_shard shard_objs[NLOOPS];
	struct bus_shard *shards[NLOOPS];
	struct metrics metrics;
	struct ws_server *ws;
	struct MHD_Daemon *mhd;
	uint16_t port;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	struct fixture *f = cls;
	static int marker;
	(void)version;
	(void)upload;
	(void)upload_size;

	if (!*req_cls) {
		*req_cls = &marker;
		return MHD_YES;
	}
	if (strcmp(url, "/ws") != 0 || strcmp(method, "GET") != 0)
		return reply_error(c, NULL, 404, "not_found", "no");
	struct transport_client cl = {.user_id = 7};
	strcpy(cl.username, "alice");
	strcpy(cl.addr, "127.0.0.1");
	int64_t since = -1;
	const char *s =
	    MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
	if (s)
		since = atoll(s);
	return ws_handle(f->ws, c, NULL, &cl, since);
}

static int fixture_start(void **state, size_t send_queue_max, unsigned ping_s)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char name[16];

	fake_sub_err = 0;
	fake_replay = NULL;
	for (int i = 0; i < NLOOPS; i++) {
		snprintf(name, sizeof(name), "test-loop%d", i);
		f->loops[i] = loop_new(name);
		assert_non_null(f->loops[i]);
		f->shard_objs[i].lp = f->loops[i];
		f->shards[i] = &f->shard_objs[i];
	}
	struct ws_config cfg = {
	    .loops = f->loops,
	    .shards = f->shards,
	    .nloops = NLOOPS,
	    .chat = (struct chat *)f, /* opaque to ws; the fake ignores it */
	    .replay = (struct replay *)f, /* likewise */
	    .metrics = &f->metrics,
	    .send_queue_max = send_queue_max,
	    .ping_s = ping_s,
	};
	f->ws = ws_server_new(&cfg);
	assert_non_null(f->ws);
	for (int i = 0; i < NLOOPS; i++)
		assert_int_equal(loop_start(f->loops[i]), 0);

	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->mhd =
	    MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
				 MHD_ALLOW_UPGRADE | MHD_USE_ITC,
			     0, NULL, NULL, on_request, f, MHD_OPTION_SOCK_ADDR,
			     &sin, MHD_OPTION_END);
	assert_non_null(f->mhd);
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(f->mhd, MHD_DAEMON_INFO_BIND_PORT);
	f->port = info->port;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return fixture_start(state, 1 << 20, 0);
}

static int setup_small_queue(void **state)
{
	return fixture_start(state, 10000, 0);
}

static int setup_ping(void **state)
{
	return fixture_start(state, 1 << 20, 1);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ws_server_free(f->ws); /* before MHD stops: see ws.c */
	MHD_stop_daemon(f->mhd);
	for (int i = 0; i < NLOOPS; i++) {
		loop_stop(f->loops[i]);
		loop_free(f->loops[i]);
	}
	assert_int_equal(atomic_load(&nsubs), 0);
	free(f);
	return 0;
}

static bool wait_until(bool (*cond)(void *), void *arg, int ms)
{
	for (int i = 0; i < ms / 5; i++) {
		if (cond(arg))
			return true;
		usleep(5000);
	}
	return cond(arg);
}

static bool no_ws_connections(void *arg)
{
	struct fixture *f = arg;
	return atomic_load(&f->metrics.connections[TRANSPORT_WS]) == 0;
}

/* --- raw client ------------------------------------------------------------
 */

struct cli {
	int fd;
	unsigned char buf[65536];
	size_t len;
	int status;
	char head[2048];
};

static const char *default_hs =
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n";

/* Connect, send the request (plus extra bytes in the same write), read the
 * response head. Returns the status code; c->buf keeps what followed. */
static int cli_open(struct cli *c, uint16_t port, const char *target,
		    const char *headers, const void *extra, size_t extra_len)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)),
			 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	char req[1024];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", target,
			 headers);
	char all[2048];
	memcpy(all, req, (size_t)n);
	if (extra_len)
		memcpy(all + n, extra, extra_len);
	assert_int_equal(write(c->fd, all, (size_t)n + extra_len),
			 (ssize_t)((size_t)n + extra_len));

	for (;;) {
		struct pollfd p = {c->fd, POLLIN, 0};
		assert_int_equal(poll(&p, 1, 5000), 1);
		ssize_t r =
		    read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		assert_true(r > 0);
		c->len += (size_t)r;
		unsigned char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (!end)
			continue;
		size_t hl = (size_t)(end - c->buf) + 4;
		snprintf(c->head, sizeof(c->head), "%.*s", (int)hl,
			 (char *)c->buf);
		memmove(c->buf, c->buf + hl, c->len - hl);
		c->len -= hl;
		c->status = atoi(c->head + 9);
		return c->status;
	}
}

static void cli_close(struct cli *c)
{
	close(c->fd);
}

/* A masked client frame, by ws_frame's writer (no copy of it here). */
static size_t frame_build(unsigned char *out, int fin, int opcode,
			  const void *payload, size_t len)
{
	static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
	size_t h = ws_frame_header(out, (unsigned)opcode, fin, len, mask);
	memcpy(out + h, payload, len);
	ws_frame_mask(out + h, len, mask, 0);
	return h + len;
}

static void cli_write(struct cli *c, const void *p, size_t n, bool split)
{
	const unsigned char *b = p;
	if (!split) {
		assert_int_equal(write(c->fd, b, n), (ssize_t)n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(write(c->fd, b + i, 1), 1);
		usleep(200);
	}
}

static void cli_send(struct cli *c, int opcode, const char *s, bool split)
{
	unsigned char f[8192];
	size_t n = frame_build(f, 1, opcode, s, strlen(s));
	cli_write(c, f, n, split);
}

/* Read one server frame: its payload length, *opcode (with 0x80 set when
 * FIN) and out (NUL-terminated); -1 on EOF or timeout. */
static int cli_frame(struct cli *c, int *opcode, char *out, size_t cap,
		     int timeout_ms)
{
	for (;;) {
		if (c->len >= 2) {
			size_t need = 2, plen = c->buf[1] & 0x7f;
			if (plen == 126)
				need += 2;
			else if (plen == 127)
				need += 8;
			if (c->len >= need) {
				if (plen == 126)
					plen =
					    (size_t)c->buf[2] << 8 | c->buf[3];
				else if (plen == 127) {
					plen = 0;
					for (int i = 0; i < 8; i++)
						plen =
						    plen << 8 | c->buf[2 + i];
				}
				assert_int_equal(c->buf[1] & 0x80, 0);
				if (c->len >= need + plen) {
					assert_true(plen < cap);
					*opcode = c->buf[0] & 0x8f;
					memcpy(out, c->buf + need, plen);
					out[plen] = '\0';
					memmove(c->buf, c->buf + need + plen,
						c->len - need - plen);
					c->len -= need + plen;
					return (int)plen;
				}
			}
		}
		struct pollfd p = {c->fd, POLLIN, 0};
		if (poll(&p, 1, timeout_ms) != 1)
			return -1;
		ssize_t r =
		    read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

/* Next text frame, skipping pings. */
static int cli_text(struct cli *c, char *out, size_t cap)
{
	int op;
	for (;;) {
		int n = cli_frame(c, &op, out, cap, 5000);
		if (n < 0)
			return -1;
		if ((op & 0x0f) == 0x9)
			continue;
		assert_int_equal(op, 0x81);
		return n;
	}
}

/* The next frame must be a close: its code. */
static int cli_close_code(struct cli *c)
{
	char p[256];
	int op;
	for (;;) {
		int n = cli_frame(c, &op, p, sizeof(p), 5000);
		if (n < 0)
			return -1;
		if ((op & 0x0f) == 0x8)
			return n >= 2 ? ((unsigned char)p[0] << 8 |
					 (unsigned char)p[1])
				      : 1005;
	}
}

static bool cli_eof(struct cli *c)
{
	char b[256];
	for (;;) {
		struct pollfd p = {c->fd, POLLIN, 0};
		if (poll(&p, 1, 5000) != 1)
			return false;
		ssize_t r = read(c->fd, b, sizeof(b));
		if (r <= 0)
			return true;
	}
}

static void open_ws(struct fixture *f, struct cli *c, const char *target)
{
	char hello[256];
	assert_int_equal(cli_open(c, f->port, target, default_hs, NULL, 0),
			 101);
	assert_int_equal(cli_text(c, hello, sizeof(hello)) > 0, 1);
	assert_non_null(strstr(hello, "\"type\":\"hello\""));
}

/* --- tests -------------------------------------------------------------------
 */

static void test_accept_key(void **state)
{
	char out[29];
	(void)state;
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

	assert_int_equal(ws_accept_key(NULL, out), -1);
	assert_int_equal(ws_accept_key("", out), -1);
	assert_int_equal(ws_accept_key("abc", out), -1);
	/* 15 and 17 bytes */
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25j", out), -1);
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQAA", out), -1);
	/* not base64, stray bits, whitespace */
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25j*Q==", out), -1);
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZR==", out), -1);
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25j ZQ=", out), -1);
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", out), -1);
}

static void test_handshake(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	assert_int_equal(cli_open(&c, f->port, "/ws", default_hs, NULL, 0),
			 101);
	assert_non_null(strstr(c.head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
	assert_non_null(strcasestr(c.head, "\r\nUpgrade: websocket\r\n"));
	char *conn = strcasestr(c.head, "\r\nConnection:");
	assert_non_null(conn);
	assert_null(strcasestr(conn + 2, "\r\nConnection:"));
	assert_non_null(strcasestr(c.head, "\r\nConnection: Upgrade\r\n"));
	char hello[256];
	assert_true(cli_text(&c, hello, sizeof(hello)) > 0);
	assert_string_equal(hello, "{\"type\":\"hello\",\"cursor\":41,"
				   "\"recovered\":true,\"transport\":\"ws\"}");
	assert_int_equal(atomic_load(&f->metrics.connections[TRANSPORT_WS]), 1);
	assert_int_equal(
	    atomic_load(&f->metrics.connections_total[TRANSPORT_WS]), 1);
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));

	/* tokens are case-insensitive lists */
	assert_int_equal(
	    cli_open(&c, f->port, "/ws",
		     "Upgrade: foo, WebSocket\r\n"
		     "Connection: UPGRADE\r\n"
		     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: 13\r\n",
		     NULL, 0),
	    101);
	cli_close(&c);
}

static void test_handshake_errors(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	assert_int_equal(cli_open(&c, f->port, "/ws", "", NULL, 0), 426);
	assert_non_null(strstr(c.head, "Sec-WebSocket-Version: 13"));
	cli_close(&c);
	assert_int_equal(
	    cli_open(&c, f->port, "/ws",
		     "Upgrade: websocket\r\n"
		     "Connection: keep-alive\r\n"
		     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: 13\r\n",
		     NULL, 0),
	    426);
	cli_close(&c);
	assert_int_equal(
	    cli_open(&c, f->port, "/ws",
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: 8\r\n",
		     NULL, 0),
	    426);
	assert_non_null(strstr(c.head, "Sec-WebSocket-Version: 13"));
	cli_close(&c);
	assert_int_equal(cli_open(&c, f->port, "/ws",
				  "Upgrade: websocket\r\n"
				  "Connection: Upgrade\r\n"
				  "Sec-WebSocket-Key: c2hvcnQ=\r\n"
				  "Sec-WebSocket-Version: 13\r\n",
				  NULL, 0),
			 400);
	cli_close(&c);
	assert_int_equal(
	    atomic_load(&f->metrics.connections_total[TRANSPORT_WS]), 0);
}

static bool event_idle(void *arg)
{
	struct event *ev = arg;
	return atomic_load(&ev->refs) == 1;
}

static void test_events_by_reference(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[8192];
	const char *json = "{\"id\":42,\"type\":\"message\",\"room\":\"lobby\","
			   "\"from\":\"bob\",\"text\":\"hi\"}";
	struct event *ev = fake_event(42, json);

	open_ws(f, &c, "/ws");
	fake_publish_n(ev, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
		assert_string_equal(buf, json);
	}
	/* Every frame's reference is released once wslay took the bytes. */
	assert_true(wait_until(event_idle, ev, 3000));
	assert_int_equal(atomic_load(&f->metrics.delivered[TRANSPORT_WS]), 3);

	/* Larger than wslay's 4 KiB send buffer: fragments, same bytes. */
	char *big = malloc(10001);
	memset(big, 'x', 10000);
	big[10000] = '\0';
	memcpy(big, "{\"id\":43,\"t\":\"", 14);
	memcpy(big + 9998, "\"}", 2);
	struct event *ev2 = fake_event(43, big);
	fake_publish_n(ev2, 1);
	char *got = malloc(20000);
	size_t total = 0;
	int op, n, frames = 0;
	do {
		n = cli_frame(&c, &op, got + total, 20000 - total, 5000);
		assert_true(n > 0);
		assert_int_equal(op & 0x0f, frames ? 0x0 : 0x1);
		total += (size_t)n;
		frames++;
	} while (!(op & 0x80));
	assert_int_equal(total, 10000);
	assert_memory_equal(got, big, 10000);
	assert_true(frames > 1);
	free(got);
	event_unref(ev2);
	free(big);
	cli_close(&c);
	assert_true(wait_until(event_idle, ev, 3000));
	event_unref(ev);
}

static void test_replay_on_subscribe(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[512];
	struct event *ev = fake_event(40, "{\"id\":40}");

	fake_replay = ev;
	assert_int_equal(
	    cli_open(&c, f->port, "/ws?since=39", default_hs, NULL, 0), 101);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"recovered\":true"));
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"id\":40}");
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
	fake_replay = NULL;
	event_unref(ev);
}

static bool pending_send(void *arg)
{
	(void)arg;
	return chat_has_pending();
}

static void test_split_send_and_ack(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[1024];

	open_ws(f, &c, "/ws");
	cli_send(&c, 0x1,
		 "{\"op\":\"send\",\"room\":\"lobby\",\"text\":\"h\\u00e9llo\","
		 "\"client_id\":\"c-1\"}",
		 true);
	assert_true(wait_until(pending_send, NULL, 3000));
	assert_string_equal(last_room, "lobby");
	assert_string_equal(last_text, "h\xc3\xa9llo");
	assert_string_equal(last_client_id, "c-1");
	assert_int_equal(atomic_load(&f->metrics.sends), 1);

	struct event *ev = fake_event(50, "{\"id\":50,\"type\":\"message\"}");
	fake_commit(ev);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"ack\",\"client_id\":\"c-1\","
				 "\"id\":50,\"event\":{\"id\":50,"
				 "\"type\":\"message\"}}");
	assert_int_equal(atomic_load(&f->metrics.acks), 1);

	/* A synchronous chat error comes back with the client_id. */
	cli_send(&c, 0x1,
		 "{\"op\":\"send\",\"room\":\"nope\",\"text\":\"x\","
		 "\"client_id\":\"c-2\"}",
		 false);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"error\",\"client_id\":\"c-2\","
				 "\"error\":\"no_such_room\","
				 "\"message\":\"no such room\"}");
	cli_close(&c);
	assert_true(wait_until(event_idle, ev, 3000));
	event_unref(ev);
}

static void test_extra_in(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[256];
	unsigned char fr[64];
	size_t n = frame_build(fr, 1, 0x1, "{\"op\":\"ping\"}", 13);

	/* The command travels in the same segment as the handshake. */
	assert_int_equal(cli_open(&c, f->port, "/ws", default_hs, fr, n), 101);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0); /* hello */
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"pong\"}");
	cli_close(&c);
}

static void expect_error(struct cli *c, const char *code)
{
	char buf[512], want[64];
	assert_true(cli_text(c, buf, sizeof(buf)) > 0);
	snprintf(want, sizeof(want), "\"error\":\"%s\"", code);
	assert_non_null(strstr(buf, want));
	assert_non_null(strstr(buf, "\"type\":\"error\""));
}

static void test_bad_commands_keep_connection(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[256];

	open_ws(f, &c, "/ws");
	cli_send(&c, 0x1, "{\"op\":\"dance\"}", false);
	expect_error(&c, "unknown_op");
	cli_send(&c, 0x1, "{\"op\":", false);
	expect_error(&c, "bad_json");
	cli_send(&c, 0x1, "[1,2]", false);
	expect_error(&c, "bad_json");
	cli_send(&c, 0x1, "{\"room\":\"x\"}", false);
	expect_error(&c, "invalid");
	cli_send(&c, 0x1, "{\"op\":\"send\",\"room\":\"lobby\"}", false);
	expect_error(&c, "invalid");
	cli_send(&c, 0x1, "{\"op\":\"send\",\"room\":1,\"text\":\"x\"}", false);
	expect_error(&c, "invalid");
	cli_send(&c, 0x1, "{\"op\":\"typing\",\"room\":\"lobby\"}", false);
	cli_send(&c, 0x1, "{\"op\":\"ping\"}", false);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"pong\"}");
	assert_int_equal(atomic_load(&typing_calls), 1);
	assert_int_equal(atomic_load(&f->metrics.errors), 6);
	assert_int_equal(atomic_load(&f->metrics.connections[TRANSPORT_WS]), 1);
	cli_close(&c);
}

static void test_oversized_1009(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	size_t len = WS_MESSAGE_MAX + 1;
	char *big = malloc(len + 1);
	unsigned char *fr = malloc(len + 16);

	memset(big, 'a', len);
	big[len] = '\0';
	open_ws(f, &c, "/ws");
	size_t n = frame_build(fr, 1, 0x1, big, len);
	cli_write(&c, fr, n, false);
	assert_int_equal(cli_close_code(&c), 1009);
	assert_true(cli_eof(&c));
	cli_close(&c);

	/* Two fragments that only together exceed the limit. */
	open_ws(f, &c, "/ws");
	n = frame_build(fr, 0, 0x1, big, 10000);
	cli_write(&c, fr, n, false);
	n = frame_build(fr, 1, 0x0, big, 10000);
	cli_write(&c, fr, n, false);
	assert_int_equal(cli_close_code(&c), 1009);
	cli_close(&c);
	free(fr);
	free(big);
	assert_true(wait_until(no_ws_connections, f, 3000));
}

static void test_invalid_utf8_1007(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	open_ws(f, &c, "/ws");
	cli_send(&c, 0x1, "{\"op\":\"ping\",\"x\":\"\xc3\x28\"}", true);
	assert_int_equal(cli_close_code(&c), 1007);
	assert_true(cli_eof(&c));
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
}

static void test_protocol_errors_close(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	/* 64-bit length for a 20000-byte payload: not minimal */
	static const unsigned char nonminimal[] = {0x81, 0xff, 0, 0,	0,
						   0,	 0,    0, 0x4e, 0x20};
	/* reserved opcode 3 */
	static const unsigned char reserved[] = {0x83, 0x80, 0, 0, 0, 0};

	open_ws(f, &c, "/ws");
	cli_write(&c, nonminimal, sizeof(nonminimal), false);
	assert_int_equal(cli_close_code(&c), 1002); /* not wslay's empty one */
	assert_true(cli_eof(&c));
	cli_close(&c);

	open_ws(f, &c, "/ws");
	cli_write(&c, reserved, sizeof(reserved), false);
	assert_int_equal(cli_close_code(&c), 1002);
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
}

/* Each protocol error closes with 1002 (not wslay's empty close), and a
 * header announcing 2^40 bytes with 1009 at once: neither the rest of the
 * frame nor a ping timeout is waited for. */
static void test_protocol_errors_1002_and_huge_1009(void **state)
{
	struct fixture *f = *state;
	static const struct {
		unsigned char b[14];
		size_t n;
		int code;
	} cases[] = {
	    {{0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4}, 8, 1002}, /* ping > 125 */
	    {{0x09, 0x80, 1, 2, 3, 4}, 6, 1002},	     /* ping, no FIN */
	    {{0x88, 0x81, 1, 2, 3, 4, 0x55}, 7, 1002},	     /* 1-byte close */
	    {{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1}, 10, 1002}, /* top bit */
	    {{0x8b, 0x80, 1, 2, 3, 4}, 6, 1002}, /* reserved opcode */
	    {{0xc1, 0x80, 1, 2, 3, 4}, 6, 1002}, /* RSV1 */
	    {{0x81, 0x02, 'h', 'i'}, 4, 1002},	 /* unmasked */
	    {{0x81, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, 1009},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cli c;
		char p[256];
		int op;
		open_ws(f, &c, "/ws");
		int64_t t0 = mono_ms();
		cli_write(&c, cases[i].b, cases[i].n, i % 2 == 0);
		int n;
		do
			n = cli_frame(&c, &op, p, sizeof(p), 2000);
		while (n >= 0 && (op & 0x0f) != 0x8);
		assert_true(n >= 2);
		assert_int_equal((unsigned char)p[0] << 8 | (unsigned char)p[1],
				 cases[i].code);
		assert_string_equal(p + 2, cases[i].code == 1009
					       ? "message too big"
					       : "protocol error");
		assert_true(mono_ms() - t0 < 1000);
		assert_true(cli_eof(&c));
		cli_close(&c);
	}
	assert_true(wait_until(no_ws_connections, f, 3000));
}

static void test_binary_1003(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	open_ws(f, &c, "/ws");
	cli_send(&c, 0x2, "bin", false);
	assert_int_equal(cli_close_code(&c), 1003);
	cli_close(&c);
}

static void test_client_close(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	open_ws(f, &c, "/ws");
	assert_int_equal(atomic_load(&nsubs), 1);
	cli_send(&c, 0x8,
		 "\x03\xe8"
		 "bye",
		 false);
	assert_int_equal(cli_close_code(&c), 1000);
	assert_true(cli_eof(&c));
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
	assert_int_equal(atomic_load(&nsubs), 0);
}

static void test_slow_consumer(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char json[2100];

	memset(json, 'x', sizeof(json) - 1);
	json[sizeof(json) - 1] = '\0';
	memcpy(json, "{\"id\":1,\"t\":\"", 13);
	memcpy(json + sizeof(json) - 3, "\"}", 2);
	struct event *ev = fake_event(1, json);

	open_ws(f, &c, "/ws");
	/* 10 x 2 KiB in one go against a 10000-byte queue. */
	fake_publish_n(ev, 10);
	assert_int_equal(cli_close_code(&c), 1008);
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 5000));
	assert_int_equal(
	    atomic_load(&f->metrics.slow_disconnects[TRANSPORT_WS]), 1);
	assert_true(wait_until(event_idle, ev, 3000));
	event_unref(ev);
}

static void test_bad_cursor(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[256];

	fake_sub_err = BUS_EFUTURE;
	assert_int_equal(
	    cli_open(&c, f->port, "/ws?since=99", default_hs, NULL, 0), 101);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"error\":\"bad_cursor\""));
	assert_int_equal(cli_close_code(&c), 1008);
	cli_close(&c);

	fake_sub_err = BUS_EHISTORY;
	assert_int_equal(
	    cli_open(&c, f->port, "/ws?since=1", default_hs, NULL, 0), 101);
	assert_int_equal(cli_close_code(&c), 1011);
	cli_close(&c);
	fake_sub_err = 0;
	assert_true(wait_until(no_ws_connections, f, 3000));
}

/* A cursor that needs history while the pool is full: "busy", when to try
 * again, and close 1013; nothing is read on the loop. */
static void test_history_busy(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[256];

	int subs_before = atomic_load(&nsubs);
	atomic_store(&history_busy, true);
	assert_int_equal(
	    cli_open(&c, f->port, "/ws?since=1", default_hs, NULL, 0), 101);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"error\":\"busy\""));
	assert_non_null(strstr(buf, "\"retry_after\":7"));
	assert_int_equal(cli_close_code(&c), 1013);
	cli_close(&c);
	atomic_store(&history_busy, false);
	assert_int_equal(atomic_load(&nsubs), subs_before); /* never */
	assert_true(wait_until(no_ws_connections, f, 3000));
	assert_int_equal(atomic_load(&places), 0); /* the place was used */
}

/* The pool is full already when the handshake comes: 503 before the
 * upgrade, no connection made, nothing subscribed. */
static void test_history_busy_before_upgrade(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	int subs_before = atomic_load(&nsubs);
	atomic_store(&history_busy, true);
	atomic_store(&pool_full_now, true);
	assert_int_equal(
	    cli_open(&c, f->port, "/ws?since=1", default_hs, NULL, 0), 503);
	cli_close(&c);
	assert_int_equal(atomic_load(&nsubs), subs_before);
	/* from now on (no history needed) it is not refused */
	assert_int_equal(cli_open(&c, f->port, "/ws", default_hs, NULL, 0),
			 101);
	cli_close(&c);
	atomic_store(&pool_full_now, false);
	atomic_store(&history_busy, false);
	assert_true(wait_until(no_ws_connections, f, 3000));
	assert_int_equal(atomic_load(&places), 0); /* none taken */
}

static void test_late_ack(void **state)
{
	struct fixture *f = *state;
	struct cli c;

	open_ws(f, &c, "/ws");
	cli_send(&c, 0x1, "{\"op\":\"send\",\"room\":\"lobby\",\"text\":\"x\"}",
		 false);
	assert_true(wait_until(pending_send, NULL, 3000));
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
	/* The connection is gone; its ack must find it marked dead. */
	struct event *ev = fake_event(60, "{\"id\":60}");
	fake_commit(ev);
	assert_true(wait_until(event_idle, ev, 3000));
	event_unref(ev);
}

static bool no_framers(void *arg)
{
	struct fixture *f = arg;
	return atomic_load(&f->metrics.ws_framers) == 0;
}

static bool one_framer(void *arg)
{
	struct fixture *f = arg;
	return atomic_load(&f->metrics.ws_framers) == 1;
}

/* An idle connection holds no wslay context; one is made for a half-read
 * frame or an unfinished fragmented message and kept exactly that long;
 * deliveries to a parked connection need none. */
static void test_idle_connection_parks_wslay(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[256];
	unsigned char fr[128];
	int op;

	open_ws(f, &c, "/ws");
	assert_true(wait_until(no_framers, f, 3000));

	struct event *ev = fake_event(60, "{\"id\":60,\"type\":\"message\"}");
	fake_publish_n(ev, 1);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"id\":60,\"type\":\"message\"}");
	assert_int_equal(atomic_load(&f->metrics.ws_framers), 0);

	/* Half a frame (inside the header, then inside the payload). */
	size_t n = frame_build(fr, 1, 0x1, "{\"op\":\"ping\"}", 13);
	cli_write(&c, fr, 3, false);
	assert_true(wait_until(one_framer, f, 3000));
	usleep(50000);
	assert_int_equal(atomic_load(&f->metrics.ws_framers), 1);
	cli_write(&c, fr + 3, 6, false);
	usleep(50000);
	assert_int_equal(atomic_load(&f->metrics.ws_framers), 1);
	cli_write(&c, fr + 9, n - 9, false);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"pong\"}");
	assert_true(wait_until(no_framers, f, 3000));

	/* A fragmented message with a ping between its fragments: the
	 * context stays until the final fragment. */
	n = frame_build(fr, 0, 0x1, "{\"op\":", 6);
	cli_write(&c, fr, n, false);
	n = frame_build(fr, 1, 0x9, "hb", 2);
	cli_write(&c, fr, n, false);
	assert_int_equal(cli_frame(&c, &op, buf, sizeof(buf), 3000), 2);
	assert_int_equal(op, 0x8a); /* the pong, while the message is open */
	assert_string_equal(buf, "hb");
	assert_int_equal(atomic_load(&f->metrics.ws_framers), 1);
	n = frame_build(fr, 1, 0x0, "\"ping\"}", 7);
	cli_write(&c, fr, n, false);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"pong\"}");
	assert_true(wait_until(no_framers, f, 3000));

	/* A 16-bit length header split byte by byte. */
	char big[300];
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"op\":\"ping\"", 12);
	big[sizeof(big) - 1] = '}';
	unsigned char bf[512];
	n = frame_build(bf, 1, 0x1, big, sizeof(big));
	cli_write(&c, bf, n, true);
	assert_true(cli_text(&c, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "{\"type\":\"pong\"}");
	assert_true(wait_until(no_framers, f, 3000));

	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
	assert_int_equal(atomic_load(&f->metrics.ws_framers), 0);
	assert_true(wait_until(event_idle, ev, 3000));
	event_unref(ev);
}

static void test_ping_and_timeout(void **state)
{
	struct fixture *f = *state;
	struct cli c;
	char buf[64];
	int op;

	open_ws(f, &c, "/ws");
	assert_true(cli_frame(&c, &op, buf, sizeof(buf), 4000) >= 0);
	assert_int_equal(op, 0x89);
	/* Silent client: cut after two ping intervals. */
	assert_true(cli_eof(&c));
	cli_close(&c);
	assert_true(wait_until(no_ws_connections, f, 3000));
}

static void test_server_free_sends_1001(void **state)
{
	struct fixture *f = *state;
	struct cli c[3];

	for (int i = 0; i < 3; i++)
		open_ws(f, &c[i], "/ws");
	ws_server_free(f->ws);
	f->ws = NULL;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(cli_close_code(&c[i]), 1001);
		cli_close(&c[i]);
	}
	assert_int_equal(atomic_load(&f->metrics.connections[TRANSPORT_WS]), 0);
}

/* Regression: a connection set up in the same loop batch as the shutdown
 * task used to leave a flush task that ran after the server was freed. */
static void test_free_right_after_upgrade(void **state)
{
	(void)state;
	for (int i = 0; i < 30; i++) {
		void *st;
		struct cli c;
		fixture_start(&st, 1 << 20, 0);
		struct fixture *f = st;
		assert_int_equal(
		    cli_open(&c, f->port, "/ws", default_hs, NULL, 0), 101);
		ws_server_free(f->ws);
		f->ws = NULL;
		cli_close(&c);
		teardown(&st);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept_key),
	    cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handshake_errors, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_events_by_reference, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_replay_on_subscribe, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_split_send_and_ack, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_extra_in, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_commands_keep_connection,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_1009, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_utf8_1007, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_protocol_errors_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_protocol_errors_1002_and_huge_1009, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_binary_1003, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_consumer,
					    setup_small_queue, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_cursor, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_history_busy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_history_busy_before_upgrade,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_late_ack, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idle_connection_parks_wslay,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ping_and_timeout, setup_ping,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_server_free_sends_1001, setup,
					    teardown),
	    cmocka_unit_test(test_free_right_after_upgrade),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
