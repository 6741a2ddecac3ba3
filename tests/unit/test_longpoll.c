/* test_longpoll: the long-poll transport through longpoll.h, served by a
 * real libmicrohttpd daemon with natter's flags (thread pool, epoll,
 * suspend/resume) and the request-completed hook http uses, fed by the real
 * bus, with two real event loops running the polls' timers (stream.c). A
 * raw socket plays the client, keep-alive included. The test thread is the
 * shard's loop: it drains the shard after every publish.
 *
 * It checks what the timer threads used to guarantee and the loops' timers
 * now do: a waiting poll is answered with an empty batch at its timeout
 * (not before, not much after), an event wakes a waiting poll at once,
 * longpoll_free answers every waiting poll, many polls spread over the
 * loops all time out, and a keep-alive connection's next poll is read and
 * answered every time. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/bus.h"
#include "model/event.h"
#include "net/loop.h"
#include "transport/longpoll.h"
#include "util/metrics.h"
#include "util/util.h"

#define ROOM 1
#define USER 7
#define NLOOPS 2

struct fixture {
	struct bus *bus;
	struct bus_shard *shard;
	struct metrics m;
	struct loop *loops[NLOOPS];
	struct longpoll *lp;
	struct MHD_Daemon *d;
	uint16_t port;
	int64_t next_id;
};

/* What http keeps per request for long-poll. */
struct req {
	void *poll_state;
};

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
	struct fixture *fx = cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;

	if (!*con_cls) { /* headers only: wait for the complete request */
		*con_cls = xcalloc(1, sizeof(struct req));
		return MHD_YES;
	}
	struct req *r = *con_cls;
	struct transport_client cl = {.user_id = USER};
	snprintf(cl.username, sizeof(cl.username), "alice");
	snprintf(cl.addr, sizeof(cl.addr), "127.0.0.1");
	int64_t since = -1, timeout = 0;
	const char *s =
	    MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
	if (s)
		assert_int_equal(parse_i64(s, &since), 0);
	s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout");
	if (s)
		assert_int_equal(parse_i64(s, &timeout), 0);
	return longpoll_handle(fx->lp, c, NULL, &cl, since, (unsigned)timeout,
			       &r->poll_state);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;
	(void)cls;
	(void)c;
	(void)toe;
	if (!r)
		return;
	longpoll_request_done(r->poll_state);
	free(r);
	*con_cls = NULL;
}

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	metrics_init(&fx->m);
	fx->bus = bus_new(1000, 1000, 0, no_history, NULL);
	bus_member_add(fx->bus, ROOM, USER);
	fx->shard = bus_shard_new(fx->bus, on_wake, NULL);
	for (int i = 0; i < NLOOPS; i++) {
		fx->loops[i] = loop_new("test-poll");
		assert_non_null(fx->loops[i]);
		assert_int_equal(loop_start(fx->loops[i]), 0);
	}
	fx->lp = longpoll_new(fx->bus, &fx->m, 1 << 20, fx->loops, NLOOPS);
	assert_non_null(fx->lp);

	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx->d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE,
	    0, NULL, NULL, on_request, fx, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
	    (unsigned int)4, MHD_OPTION_NOTIFY_COMPLETED, on_completed, fx,
	    MHD_OPTION_END);
	assert_non_null(fx->d);
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(fx->d, MHD_DAEMON_INFO_BIND_PORT);
	assert_non_null(di);
	fx->port = di->port;
	*state = fx;
	return 0;
}

/* natter's order: longpoll_free (no poll stays suspended), the daemon,
 * then the loops and the bus. lp may be NULL if a test freed it. */
static int teardown(void **state)
{
	struct fixture *fx = *state;
	longpoll_free(fx->lp);
	MHD_stop_daemon(fx->d);
	assert_int_equal(bus_subscriber_count(fx->bus), 0);
	assert_int_equal(atomic_load(&fx->m.connections[TRANSPORT_POLL]), 0);
	for (int i = 0; i < NLOOPS; i++) {
		loop_stop(fx->loops[i]);
		loop_free(fx->loops[i]);
	}
	bus_shard_free(fx->shard);
	bus_free(fx->bus);
	free(fx);
	return 0;
}

static void publish(struct fixture *fx)
{
	int64_t id = ++fx->next_id;
	char json[160];
	int n = snprintf(json, sizeof(json),
			 "{\"id\":%lld,\"type\":\"message\",\"room\":\"lobby\","
			 "\"from\":\"alice\",\"text\":\"m%lld\"}",
			 (long long)id, (long long)id);
	struct event *ev =
	    event_new(id, EVENT_MESSAGE, ROOM, USER, json, (size_t)n);
	bus_publish(fx->bus, ev);
	event_unref(ev);
	bus_shard_drain(fx->shard);
}

/* --- a client on a raw socket ------------------------------------------- */

static int client_connect(struct fixture *fx)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(fx->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void client_send(int fd, int64_t since, unsigned timeout_s)
{
	char req[256];
	int n = snprintf(req, sizeof(req),
			 "GET /poll?since=%lld&timeout=%u HTTP/1.1\r\n"
			 "Host: localhost\r\n\r\n",
			 (long long)since, timeout_s);
	assert_int_equal(write(fd, req, (size_t)n), n);
}

/* Read one whole response (Content-Length) within ms: its body in out, or
 * false on timeout or EOF. */
static bool client_answer(int fd, char *out, size_t cap, int ms)
{
	char buf[8192];
	size_t len = 0;
	int64_t until = mono_ms() + ms;

	for (;;) {
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (end) {
			const char *cl = strstr(buf, "Content-Length: ");
			assert_non_null(cl);
			size_t blen = strtoul(cl + 16, NULL, 10);
			size_t hlen = (size_t)(end - buf) + 4;
			if (len >= hlen + blen) {
				assert_true(blen < cap);
				assert_non_null(strstr(buf, "HTTP/1.1 200"));
				memcpy(out, buf + hlen, blen);
				out[blen] = '\0';
				assert_int_equal(len, hlen + blen);
				return true;
			}
		}
		int left = (int)(until - mono_ms());
		if (left <= 0)
			return false;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return false;
		len += (size_t)n;
	}
}

static bool no_polls_waiting(void *arg)
{
	struct fixture *fx = arg;
	return atomic_load(&fx->m.connections[TRANSPORT_POLL]) == 0;
}

static bool polls_waiting(struct fixture *fx, uint64_t n, int ms)
{
	for (int i = 0; i < ms / 5; i++) {
		if (atomic_load(&fx->m.connections[TRANSPORT_POLL]) == n)
			return true;
		usleep(5000);
	}
	return atomic_load(&fx->m.connections[TRANSPORT_POLL]) == n;
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

/* --- tests -------------------------------------------------------------- */

static void test_timeout_answers_empty(void **state)
{
	struct fixture *fx = *state;
	char body[4096];

	int fd = client_connect(fx);
	int64_t t0 = mono_ms();
	client_send(fd, 0, 1);
	assert_true(client_answer(fd, body, sizeof(body), 4000));
	int64_t took = mono_ms() - t0;
	assert_string_equal(body,
			    "{\"events\":[],\"cursor\":0,\"recovered\":true}");
	assert_true(took >= 1000);
	assert_true(took < 2500);
	close(fd);
	assert_true(wait_until(no_polls_waiting, fx, 2000));
}

static void test_event_wakes_waiting_poll(void **state)
{
	struct fixture *fx = *state;
	char body[4096];

	int fd = client_connect(fx);
	client_send(fd, 0, 20);
	assert_true(polls_waiting(fx, 1, 2000));
	usleep(50 * 1000);
	int64_t t0 = mono_ms();
	publish(fx);
	assert_true(client_answer(fd, body, sizeof(body), 3000));
	assert_true(mono_ms() - t0 < 1000);
	assert_non_null(strstr(body, "\"text\":\"m1\""));
	assert_non_null(strstr(body, "\"cursor\":1,"));
	close(fd);
	assert_true(wait_until(no_polls_waiting, fx, 2000));
}

static void test_free_answers_waiting_polls(void **state)
{
	struct fixture *fx = *state;
	char body[4096];
	int fds[5];

	for (int i = 0; i < 5; i++) {
		fds[i] = client_connect(fx);
		client_send(fds[i], 0, 30);
	}
	assert_true(polls_waiting(fx, 5, 2000));
	usleep(50 * 1000);
	int64_t t0 = mono_ms();
	longpoll_free(fx->lp);
	fx->lp = NULL;
	for (int i = 0; i < 5; i++) {
		assert_true(client_answer(fds[i], body, sizeof(body), 3000));
		assert_string_equal(
		    body, "{\"events\":[],\"cursor\":0,\"recovered\":true}");
		close(fds[i]);
	}
	assert_true(mono_ms() - t0 < 2000);
}

/* Polls spread over both loops, with 1 and 2 s deadlines in a mixed order:
 * none answered before its time, all soon after it (generous upper bounds:
 * the machine may be busy). */
static void test_many_timeouts_over_loops(void **state)
{
	struct fixture *fx = *state;
	enum { N = 40 };
	int fds[N];
	char body[4096];

	int64_t t0 = mono_ms();
	for (int i = 0; i < N; i++) {
		fds[i] = client_connect(fx);
		client_send(fds[i], 0, i % 2 ? 2 : 1);
	}
	for (int i = 0; i < N; i += 2) {
		assert_true(client_answer(fds[i], body, sizeof(body), 5000));
		int64_t took = mono_ms() - t0;
		assert_true(took >= 1000 && took < 2900);
	}
	for (int i = 1; i < N; i += 2) {
		assert_true(client_answer(fds[i], body, sizeof(body), 5000));
		int64_t took = mono_ms() - t0;
		assert_true(took >= 2000 && took < 4500);
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
	assert_true(wait_until(no_polls_waiting, fx, 2000));
}

/* One keep-alive connection, polling again at once after each answer, an
 * event published shortly after each request: every next GET /poll is
 * read and answered with its event (no wake-up is lost on the way). */
static void test_keepalive_polls_again(void **state)
{
	struct fixture *fx = *state;
	char body[4096], want[64];
	int64_t cursor = 0;

	int fd = client_connect(fx);
	for (int i = 1; i <= 50; i++) {
		client_send(fd, cursor, 10);
		if (i % 2)
			usleep(2000); /* sometimes waiting, sometimes not yet */
		publish(fx);
		assert_true(client_answer(fd, body, sizeof(body), 3000));
		snprintf(want, sizeof(want), "\"text\":\"m%d\"", i);
		assert_non_null(strstr(body, want));
		cursor = i;
	}
	close(fd);
	assert_true(wait_until(no_polls_waiting, fx, 2000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_timeout_answers_empty, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_event_wakes_waiting_poll,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_answers_waiting_polls,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_timeouts_over_loops,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keepalive_polls_again, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
