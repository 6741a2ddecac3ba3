/* test_sse: the SSE transport through sse.h, served by a real libmicrohttpd
 * daemon on a loopback port with natter's flags (thread pool, epoll,
 * suspend/resume), fed by the real bus and events. A raw socket plays the
 * browser and decodes the chunked stream, so a test can also stop reading
 * (a slow consumer) or leave mid-stream. The test thread is the shard's
 * event loop: it drains the shard after every publish; one real loop runs
 * the streams' timers (heartbeats, stall cuts). */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/bus.h"
#include "model/event.h"
#include "net/loop.h"
#include "util/metrics.h"
#include "transport/sse.h"
#include "util/util.h"

#define ROOM 1
#define USER 7

struct fixture {
	struct bus *bus;
	struct bus_shard *shard;
	struct metrics m;
	struct sse *sse;
	struct loop *lp;
	struct MHD_Daemon *d;
	uint16_t port;
	int64_t next_id;
};

/* --- the server side ------------------------------------------------------ */

static int no_history(void *arg, int64_t user_id, int64_t after, size_t limit,
		      struct event ***out, size_t *n)
{
	(void)arg;
	(void)user_id;
	(void)after;
	(void)limit;
	*out = NULL;
	*n = 0;
	return 0;
}

static void on_wake(void *arg)
{
	(void)arg; /* the test drains after each publish */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	static int marker;
	struct fixture *fx = cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;

	if (!*con_cls) { /* headers only: wait for the complete request */
		*con_cls = &marker;
		return MHD_YES;
	}
	struct transport_client cl = {.user_id = USER};
	snprintf(cl.username, sizeof(cl.username), "alice");
	snprintf(cl.addr, sizeof(cl.addr), "127.0.0.1");
	int64_t since = -1;
	const char *s =
	    MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
	if (s)
		assert_int_equal(parse_i64(s, &since), 0);
	return sse_handle(fx->sse, c, NULL, &cl, since);
}

static struct fixture *fixture_new(unsigned heartbeat_s, size_t queue_max)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	metrics_init(&fx->m);
	fx->bus = bus_new(1000, 1000, 0, no_history, NULL);
	bus_member_add(fx->bus, ROOM, USER);
	fx->shard = bus_shard_new(fx->bus, on_wake, NULL);
	fx->lp = loop_new("test-sse");
	assert_non_null(fx->lp);
	assert_int_equal(loop_start(fx->lp), 0);
	fx->sse = sse_new(fx->bus, &fx->m, heartbeat_s, queue_max, &fx->lp, 1);
	assert_non_null(fx->sse);

	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx->d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE,
	    0, NULL, NULL, on_request, fx, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
	    (unsigned int)4, MHD_OPTION_END);
	assert_non_null(fx->d);
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(fx->d, MHD_DAEMON_INFO_BIND_PORT);
	assert_non_null(di);
	fx->port = di->port;
	return fx;
}

/* natter's shutdown order: sse_free (no stream stays suspended), then the
 * daemon (destroys what is left), then the loop and the bus. */
static void fixture_free(struct fixture *fx)
{
	sse_free(fx->sse);
	MHD_stop_daemon(fx->d);
	assert_int_equal(bus_subscriber_count(fx->bus), 0);
	assert_int_equal(atomic_load(&fx->m.connections[TRANSPORT_SSE]), 0);
	loop_stop(fx->lp);
	loop_free(fx->lp);
	bus_shard_free(fx->shard);
	bus_free(fx->bus);
	free(fx);
}

static int teardown(void **state)
{
	fixture_free(*state);
	return 0;
}

static int setup_default(void **state)
{
	*state = fixture_new(30, 1 << 20);
	return 0;
}

static void publish(struct fixture *fx, size_t text_len)
{
	int64_t id = ++fx->next_id;
	char *text = xmalloc(text_len + 1);
	memset(text, 'x', text_len);
	text[text_len] = '\0';
	struct buf json;
	buf_init(&json);
	buf_printf(&json,
		   "{\"id\":%lld,\"type\":\"message\",\"room\":\"lobby\","
		   "\"from\":\"alice\",\"text\":\"%s\"}",
		   (long long)id, text);
	struct event *ev =
	    event_new(id, EVENT_MESSAGE, ROOM, USER, json.data, json.len);
	bus_publish(fx->bus, ev);
	event_unref(ev);
	bus_shard_drain(fx->shard);
	buf_fini(&json);
	free(text);
}

/* Wait up to ms for a counter to reach want. */
static bool wait_count(atomic_uint_fast64_t *v, uint64_t want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (atomic_load(v) == want)
			return true;
		usleep(10000);
	}
	return atomic_load(v) == want;
}

/* --- the client side: a browser on a raw socket --------------------------- */

struct client {
	int fd;
	struct buf raw;	 /* bytes received, not yet decoded */
	struct buf head; /* status line and headers */
	struct buf body; /* the decoded stream */
	bool have_head;
	bool ended; /* the terminating chunk arrived */
	bool closed;
};

static void client_open(struct client *cl, struct fixture *fx,
			const char *query, int rcvbuf)
{
	memset(cl, 0, sizeof(*cl));
	buf_init(&cl->raw);
	buf_init(&cl->head);
	buf_init(&cl->body);
	cl->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(cl->fd >= 0);
	if (rcvbuf > 0)
		setsockopt(cl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			   sizeof(rcvbuf));
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(fx->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(cl->fd, (struct sockaddr *)&sa, sizeof(sa)),
			 0);
	char req[256];
	int n = snprintf(req, sizeof(req),
			 "GET /events%s HTTP/1.1\r\nHost: localhost\r\n"
			 "Accept: text/event-stream\r\n\r\n",
			 query);
	assert_int_equal(write(cl->fd, req, (size_t)n), n);
}

static void client_close(struct client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = -1;
	buf_fini(&cl->raw);
	buf_fini(&cl->head);
	buf_fini(&cl->body);
}

/* Move what can be decoded from raw into head/body. */
static void client_decode(struct client *cl)
{
	if (!cl->raw.data)
		return;
	if (!cl->have_head) {
		char *end = strstr(cl->raw.data, "\r\n\r\n");
		if (!end)
			return;
		size_t n = (size_t)(end - cl->raw.data) + 4;
		buf_append(&cl->head, cl->raw.data, n);
		buf_consume(&cl->raw, n);
		cl->have_head = true;
		if (!strstr(cl->head.data, "chunked")) {
			/* an error answer: plain body */
			buf_append(&cl->body, cl->raw.data, cl->raw.len);
			buf_consume(&cl->raw, cl->raw.len);
			cl->ended = true;
		}
	}
	while (cl->have_head && !cl->ended) {
		char *eol = strstr(cl->raw.data, "\r\n");
		if (!eol)
			return;
		size_t size = strtoul(cl->raw.data, NULL, 16);
		size_t hdr = (size_t)(eol - cl->raw.data) + 2;
		if (cl->raw.len < hdr + size + 2)
			return;
		buf_append(&cl->body, cl->raw.data + hdr, size);
		buf_consume(&cl->raw, hdr + size + 2);
		if (size == 0)
			cl->ended = true;
	}
}

/* Read until the body holds needle (NULL: until the stream ends or the
 * server closes), for at most ms. */
static bool client_wait(struct client *cl, const char *needle, int ms)
{
	int64_t until = mono_ms() + ms;
	for (;;) {
		client_decode(cl);
		const char *body = cl->body.data ? cl->body.data : "";
		if (needle && strstr(body, needle))
			return true;
		if (cl->ended || cl->closed)
			return !needle;
		int left = (int)(until - mono_ms());
		if (left <= 0)
			return false;
		struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
		if (poll(&pfd, 1, left) <= 0)
			continue;
		char tmp[65536];
		ssize_t n = read(cl->fd, tmp, sizeof(tmp));
		if (n <= 0)
			cl->closed = true;
		else
			buf_append(&cl->raw, tmp, (size_t)n);
	}
}

/* Wait for needle and drop the body up to its end (keeps a fast reader's
 * body, and the search, short). */
static bool client_take(struct client *cl, const char *needle, int ms)
{
	if (!client_wait(cl, needle, ms))
		return false;
	const char *at = strstr(cl->body.data, needle);
	buf_consume(&cl->body, (size_t)(at - cl->body.data) + strlen(needle));
	return true;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* --- tests ---------------------------------------------------------------- */

static void test_stream_opens(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	client_open(&cl, fx, "", 0);
	assert_true(client_wait(&cl, "event: hello\n", 3000));
	assert_true(client_wait(&cl, "\"transport\":\"sse\"}\n\n", 3000));
	assert_non_null(strstr(cl.head.data, "HTTP/1.1 200"));
	assert_non_null(strstr(cl.head.data, "Content-Type: text/event-stream; "
					     "charset=utf-8\r\n"));
	assert_non_null(
	    strstr(cl.head.data, "Cache-Control: no-cache, no-transform\r\n"));
	assert_non_null(strstr(cl.head.data, "X-Accel-Buffering: no\r\n"));

	/* A padding comment of at least 2 KiB comes first. */
	assert_int_equal(cl.body.data[0], ':');
	size_t spaces = strspn(cl.body.data + 1, " ");
	assert_true(spaces >= 2048);
	const char *retry = strstr(cl.body.data, "\nretry: 2000\n\n");
	const char *hello =
	    strstr(cl.body.data, "\nevent: hello\ndata: {\"cursor\":0,"
				 "\"recovered\":true,"
				 "\"transport\":\"sse\"}\n\n");
	assert_non_null(retry);
	assert_non_null(hello);
	assert_true(retry < hello);
	assert_null(strstr(cl.body.data, "id:")); /* hello has no id */
	assert_int_equal(atomic_load(&fx->m.connections[TRANSPORT_SSE]), 1);
	assert_int_equal(atomic_load(&fx->m.connections_total[TRANSPORT_SSE]),
			 1);
	client_close(&cl);
}

static void test_live_events_in_order(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	client_open(&cl, fx, "", 0);
	assert_true(client_wait(&cl, "\"transport\":\"sse\"}\n\n", 3000));
	for (int i = 0; i < 3; i++)
		publish(fx, 5);
	assert_true(client_wait(&cl, "id: 3\n", 3000));
	assert_true(client_wait(&cl, "xxxxx\"}\n\n", 3000));
	const char *e1 =
	    strstr(cl.body.data, "id: 1\nevent: message\ndata: {\"id\":1,");
	const char *e2 = strstr(cl.body.data, "id: 2\n");
	const char *e3 = strstr(cl.body.data, "id: 3\n");
	assert_non_null(e1);
	assert_true(e1 < e2 && e2 < e3);
	assert_true(wait_count(&fx->m.delivered[TRANSPORT_SSE], 3, 2000));
	client_close(&cl);
}

static void test_replay_after_cursor(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	for (int i = 0; i < 3; i++)
		publish(fx, 5);
	client_open(&cl, fx, "?since=1", 0);
	assert_true(client_wait(&cl, "id: 3\n", 3000));
	assert_non_null(
	    strstr(cl.body.data, "{\"cursor\":3,\"recovered\":true,"));
	assert_null(strstr(cl.body.data, "id: 1\n"));
	assert_true(strstr(cl.body.data, "event: hello") <
		    strstr(cl.body.data, "id: 2\n"));
	client_close(&cl);
}

static void test_future_cursor_is_400(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	client_open(&cl, fx, "?since=99", 0);
	assert_true(client_wait(&cl, "}", 3000));
	assert_non_null(strstr(cl.head.data, "HTTP/1.1 400"));
	assert_non_null(strstr(cl.body.data, "\"error\":\"bad_cursor\""));
	assert_int_equal(atomic_load(&fx->m.connections_total[TRANSPORT_SSE]),
			 0);
	assert_int_equal(bus_subscriber_count(fx->bus), 0);
	client_close(&cl);
}

static int setup_heartbeat(void **state)
{
	*state = fixture_new(1, 1 << 20);
	return 0;
}

static void test_heartbeat_when_idle(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	client_open(&cl, fx, "", 0);
	assert_true(client_wait(&cl, "\"transport\":\"sse\"}\n\n", 3000));
	assert_true(client_wait(&cl, "\n: hb\n\n", 3500));
	client_close(&cl);
}

/* Heartbeats are due heartbeat_s after the last bytes went out, not at
 * some later tick; and heartbeats alone (no events) notice a client that
 * left within two of them (the write after its close fails): what
 * --max-connections relies on to free the slot (cli.sh). */
static void test_heartbeats_on_time_notice_leaver(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	client_open(&cl, fx, "", 0);
	assert_true(client_wait(&cl, "\"transport\":\"sse\"}\n\n", 3000));
	int64_t t0 = mono_ms();
	for (int i = 1; i <= 3; i++) {
		assert_true(client_take(&cl, ": hb\n\n", 3000));
		int64_t at = mono_ms() - t0;
		assert_true(at >= i * 1000 - 50);
		assert_true(at < i * 1000 + 400);
	}
	close(cl.fd);
	cl.fd = -1;
	t0 = mono_ms();
	atomic_uint_fast64_t *open = &fx->m.connections[TRANSPORT_SSE];
	while (atomic_load(open) && mono_ms() - t0 < 5000)
		usleep(10000);
	assert_int_equal(atomic_load(open), 0);
	assert_true(mono_ms() - t0 < 2500);
	client_close(&cl);
}

static void test_client_leaves(void **state)
{
	struct fixture *fx = *state;
	struct client cl;

	client_open(&cl, fx, "", 0);
	assert_true(client_wait(&cl, "\"transport\":\"sse\"}\n\n", 3000));
	assert_int_equal(bus_subscriber_count(fx->bus), 1);
	close(cl.fd);
	cl.fd = -1;
	/* The server notices on its next write: an event or a heartbeat. */
	atomic_uint_fast64_t *open = &fx->m.connections[TRANSPORT_SSE];
	for (int i = 0; i < 50 && atomic_load(open); i++) {
		publish(fx, 10);
		usleep(100000);
	}
	assert_int_equal(atomic_load(&fx->m.connections[TRANSPORT_SSE]), 0);
	assert_int_equal(bus_subscriber_count(fx->bus), 0);
	client_close(&cl);
}

static int setup_small_queue(void **state)
{
	*state = fixture_new(30, 16384);
	return 0;
}

static void test_slow_consumer_is_ended(void **state)
{
	struct fixture *fx = *state;
	struct client slow, fast;

	client_open(&slow, fx, "", 4096);
	client_open(&fast, fx, "", 0);
	assert_true(client_wait(&slow, "\"transport\":\"sse\"}\n\n", 3000));
	assert_true(client_wait(&fast, "\"transport\":\"sse\"}\n\n", 3000));

	/* slow stops reading; fast keeps up. Socket buffers absorb a lot
	 * before the server's queue fills, so publish until it does. */
	int n = 0;
	while (n < 20000 &&
	       atomic_load(&fx->m.slow_disconnects[TRANSPORT_SSE]) == 0) {
		publish(fx, 2000);
		n++;
		char want[32];
		snprintf(want, sizeof(want), "id: %d\n", n);
		assert_true(client_take(&fast, want, 3000));
	}
	assert_int_equal(atomic_load(&fx->m.slow_disconnects[TRANSPORT_SSE]),
			 1);
	publish(fx, 2000); /* dropped for slow, not for fast */
	char last[32];
	snprintf(last, sizeof(last), "id: %d\n", n + 1);
	assert_true(client_take(&fast, last, 3000));
	assert_false(fast.ended);

	/* slow reads again: what was queued, then the end of the stream,
	 * whose last event is complete (a browser resumes after it). */
	assert_true(client_wait(&slow, NULL, 10000));
	assert_true(slow.ended);
	assert_null(strstr(slow.body.data, last));
	size_t len = slow.body.len;
	assert_true(len >= 2 && slow.body.data[len - 1] == '\n' &&
		    slow.body.data[len - 2] == '\n');
	assert_true(count(slow.body.data, "\ndata: {\"id\":") >= 1);
	assert_true(wait_count(&fx->m.connections[TRANSPORT_SSE], 1, 3000));
	client_close(&slow);
	client_close(&fast);
}

static void test_free_ends_streams(void **state)
{
	struct fixture *fx = *state;
	struct client a, b;

	client_open(&a, fx, "", 0);
	client_open(&b, fx, "", 0);
	assert_true(client_wait(&a, "\"transport\":\"sse\"}\n\n", 3000));
	assert_true(client_wait(&b, "\"transport\":\"sse\"}\n\n", 3000));
	publish(fx, 10);
	sse_free(fx->sse); /* while both are idle: suspended */
	fx->sse = NULL;
	assert_true(client_wait(&a, NULL, 3000));
	assert_true(client_wait(&b, NULL, 3000));
	assert_true(a.ended && b.ended);
	assert_non_null(strstr(a.body.data, "id: 1\n"));
	assert_true(wait_count(&fx->m.connections[TRANSPORT_SSE], 0, 3000));
	client_close(&a);
	client_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_stream_opens, setup_default,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_live_events_in_order,
					    setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_replay_after_cursor,
					    setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_future_cursor_is_400,
					    setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_when_idle,
					    setup_heartbeat, teardown),
	    cmocka_unit_test_setup_teardown(
		test_heartbeats_on_time_notice_leaver, setup_heartbeat,
		teardown),
	    cmocka_unit_test_setup_teardown(test_client_leaves, setup_default,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_slow_consumer_is_ended,
					    setup_small_queue, teardown),
	    cmocka_unit_test_setup_teardown(test_free_ends_streams,
					    setup_default, teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
