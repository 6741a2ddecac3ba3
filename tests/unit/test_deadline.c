/* test_deadline: the header and body rules (deadline_judge), and the
 * sweep closing exactly the offenders, through socketpairs: a closed
 * connection's peer reads end-of-stream, the others do not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/deadline.h"
#include "util/util.h"

static const struct deadline_rules rules = {.header_ms = 10000,
					    .min_rate = 1000};

static void test_judge(void **state)
{
	(void)state;
	/* headers: 10 s from the start of the phase */
	assert_int_equal(deadline_judge(&rules, DEADLINE_HEADERS, 0, 0, 9999),
			 DEADLINE_OK);
	assert_int_equal(deadline_judge(&rules, DEADLINE_HEADERS, 0, 0, 10000),
			 DEADLINE_SLOW_HEADERS);
	/* body: a grace of 10 s, then 1000 bytes/s on average */
	assert_int_equal(deadline_judge(&rules, DEADLINE_BODY, 0, 0, 9999),
			 DEADLINE_OK);
	assert_int_equal(deadline_judge(&rules, DEADLINE_BODY, 0, 9999, 10000),
			 DEADLINE_SLOW_BODY);
	assert_int_equal(deadline_judge(&rules, DEADLINE_BODY, 0, 10000, 10000),
			 DEADLINE_OK);
	assert_int_equal(deadline_judge(&rules, DEADLINE_BODY, 0, 59000, 60000),
			 DEADLINE_SLOW_BODY);
	/* no rule while answering or after an upgrade, however long */
	assert_int_equal(
	    deadline_judge(&rules, DEADLINE_BUSY, 0, 0, INT64_C(1) << 40),
	    DEADLINE_OK);
	assert_int_equal(
	    deadline_judge(&rules, DEADLINE_EXEMPT, 0, 0, INT64_C(1) << 40),
	    DEADLINE_OK);
	/* min_rate 0: no body rule */
	const struct deadline_rules norate = {.header_ms = 10000};
	assert_int_equal(
	    deadline_judge(&norate, DEADLINE_BODY, 0, 0, INT64_C(1) << 40),
	    DEADLINE_OK);
}

static bool peer_closed(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static void test_sweep(void **state)
{
	(void)state;
	atomic_uint_fast64_t slow_h = 0, slow_b = 0;
	struct deadline *d = deadline_new(&rules, &slow_h, &slow_b);
	enum { N = 5 };
	int sv[N][2];
	struct deadline_conn dc[N];
	for (int i = 0; i < N; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
		deadline_conn_add(d, &dc[i], sv[i][0]);
	}
	deadline_conn_headers(d, &dc[1], true); /* body, slow */
	deadline_conn_headers(d, &dc[2], true); /* body, fast enough */
	deadline_conn_body(d, &dc[2], 1000000);
	deadline_conn_headers(d, &dc[3], false); /* being answered */
	deadline_conn_exempt(d, &dc[4]);	 /* upgraded */
	deadline_conn_idle(d, &dc[4]);		 /* stays exempt */

	int64_t now = mono_ms();
	assert_int_equal(deadline_sweep(d, now + 1000), 0);
	assert_int_equal(deadline_sweep(d, now + 11000), 2);
	assert_true(peer_closed(sv[0][1]));
	assert_true(peer_closed(sv[1][1]));
	assert_false(peer_closed(sv[2][1]));
	assert_false(peer_closed(sv[3][1]));
	assert_false(peer_closed(sv[4][1]));
	assert_int_equal(atomic_load(&slow_h), 1);
	assert_int_equal(atomic_load(&slow_b), 1);
	/* closed once: a later sweep or phase report does not revive it */
	deadline_conn_idle(d, &dc[0]);
	assert_int_equal(deadline_sweep(d, now + 30000), 0);
	/* a finished request waits for the next headers */
	deadline_conn_idle(d, &dc[3]);
	assert_int_equal(deadline_sweep(d, mono_ms() + 10001), 1);
	assert_true(peer_closed(sv[3][1]));
	/* removed: never touched again */
	deadline_conn_remove(d, &dc[2]);
	assert_int_equal(deadline_sweep(d, now + 100000), 0);
	assert_false(peer_closed(sv[2][1]));
	for (int i = 0; i < N; i++) {
		if (i != 2)
			deadline_conn_remove(d, &dc[i]);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	deadline_free(d);
}

/* Over TCP, a keep-alive connection between requests is idle, not slow:
 * its deadline starts with the first byte of its next request. */
static void test_keepalive_idle(void **state)
{
	(void)state;
	atomic_uint_fast64_t slow_h = 0, slow_b = 0;
	struct deadline *d = deadline_new(&rules, &slow_h, &slow_b);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int s = accept(l, NULL, NULL);
	assert_true(s >= 0);

	struct deadline_conn dc;
	deadline_conn_add(d, &dc, s);
	deadline_conn_headers(d, &dc, false);
	deadline_conn_idle(d, &dc); /* the request was answered */
	int64_t now = mono_ms();
	assert_int_equal(deadline_sweep(d, now + 60000), 0); /* idle */
	assert_false(peer_closed(c));
	/* a first byte of the next request: its deadline starts */
	assert_int_equal(write(c, "G", 1), 1);
	usleep(20000);
	assert_int_equal(deadline_sweep(d, now + 60000), 0);
	assert_int_equal(deadline_sweep(d, now + 65000), 0);
	assert_int_equal(deadline_sweep(d, now + 70001), 1);
	assert_true(peer_closed(c));
	deadline_conn_remove(d, &dc);
	close(s);
	close(c);
	close(l);
	deadline_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_judge),
	    cmocka_unit_test(test_sweep),
	    cmocka_unit_test(test_keepalive_idle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
