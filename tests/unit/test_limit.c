/* test_limit: the token buckets (rate, burst, refill, retry_after, each
 * kind on its own), the bounded user table (a full table reuses idle or
 * least-limited entries and never grows), and the stream caps (per user,
 * per address, released exactly). Times are passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/limit.h"

static struct limit *mk(unsigned rate, unsigned burst, unsigned users)
{
	struct limit_config c = {
	    .rate = {rate, rate, rate},
	    .burst = {burst, burst, burst},
	    .users_max = users,
	    .streams_per_user = 3,
	    .streams_per_addr = 5,
	};
	return limit_new(&c);
}

static void test_burst_then_rate(void **state)
{
	(void)state;
	struct limit *l = mk(5, 20, 64);
	int64_t retry;
	for (int i = 0; i < 20; i++)
		assert_int_equal(limit_take(l, 7, LIMIT_SEND, 1000, &retry), 0);
	assert_int_equal(limit_take(l, 7, LIMIT_SEND, 1000, &retry), -1);
	assert_int_equal(retry, 200); /* one token per 200 ms */
	/* 199 ms later: not yet; at 200 ms one token, then none */
	assert_int_equal(limit_take(l, 7, LIMIT_SEND, 1199, &retry), -1);
	assert_int_equal(retry, 1);
	assert_int_equal(limit_take(l, 7, LIMIT_SEND, 1200, &retry), 0);
	assert_int_equal(limit_take(l, 7, LIMIT_SEND, 1200, &retry), -1);
	/* a long pause refills the burst, no more */
	int ok = 0;
	for (int i = 0; i < 30; i++)
		ok += limit_take(l, 7, LIMIT_SEND, 100000, &retry) == 0;
	assert_int_equal(ok, 20);
	limit_free(l);
}

static void test_kinds_and_users_apart(void **state)
{
	(void)state;
	struct limit *l = mk(1, 2, 64);
	int64_t retry;
	assert_int_equal(limit_take(l, 1, LIMIT_TYPING, 0, &retry), 0);
	assert_int_equal(limit_take(l, 1, LIMIT_TYPING, 0, &retry), 0);
	assert_int_equal(limit_take(l, 1, LIMIT_TYPING, 0, &retry), -1);
	assert_int_equal(retry, 1000);
	/* the other buckets and the other user are untouched */
	assert_int_equal(limit_take(l, 1, LIMIT_SEND, 0, &retry), 0);
	assert_int_equal(limit_take(l, 1, LIMIT_ALL, 0, &retry), 0);
	assert_int_equal(limit_take(l, 2, LIMIT_TYPING, 0, &retry), 0);
	limit_free(l);
}

static void test_rate_zero_is_unlimited(void **state)
{
	(void)state;
	struct limit *l = mk(0, 1, 64);
	int64_t retry;
	for (int i = 0; i < 10000; i++)
		assert_int_equal(limit_take(l, 3, LIMIT_SEND, 0, &retry), 0);
	limit_free(l);
}

/* 16 slots (the smallest table), 1000 users: the table does not grow; a
 * user limited a moment ago keeps its state while idle users come and go. */
static void test_bounded_table(void **state)
{
	(void)state;
	struct limit *l = mk(1, 1, 16);
	int64_t retry;
	assert_int_equal(limit_take(l, 42, LIMIT_SEND, 0, &retry), 0);
	assert_int_equal(limit_take(l, 42, LIMIT_SEND, 0, &retry), -1);
	/* 1000 other users each take one token at t = 5 s: their entries
	 * are busy for one second, user 42's is idle again from t = 1 s */
	for (int64_t u = 100; u < 1100; u++)
		assert_int_equal(limit_take(l, u, LIMIT_SEND, 5000, &retry), 0);
	/* every user still gets what is theirs: a fresh one its burst */
	assert_int_equal(limit_take(l, 5000, LIMIT_SEND, 5000, &retry), 0);
	assert_int_equal(limit_take(l, 5000, LIMIT_SEND, 5000, &retry), -1);
	limit_free(l);
}

static void test_stream_caps(void **state)
{
	(void)state;
	struct limit *l = mk(0, 1, 16);
	for (int i = 0; i < 3; i++)
		assert_int_equal(limit_stream_acquire(l, 1, "10.0.0.1"),
				 LIMIT_STREAM_OK);
	assert_int_equal(limit_stream_acquire(l, 1, "10.0.0.2"),
			 LIMIT_STREAM_USER);
	assert_int_equal(limit_streams_user(l, 1), 3);
	assert_int_equal(limit_stream_acquire(l, 2, "10.0.0.1"),
			 LIMIT_STREAM_OK);
	assert_int_equal(limit_stream_acquire(l, 3, "10.0.0.1"),
			 LIMIT_STREAM_OK);
	assert_int_equal(limit_stream_acquire(l, 4, "10.0.0.1"),
			 LIMIT_STREAM_ADDR);
	assert_int_equal(limit_streams_addr(l, "10.0.0.1"), 5);
	/* a refusal counted nothing */
	assert_int_equal(limit_streams_user(l, 4), 0);
	limit_stream_release(l, 1, "10.0.0.1");
	assert_int_equal(limit_streams_user(l, 1), 2);
	assert_int_equal(limit_stream_acquire(l, 1, "10.0.0.2"),
			 LIMIT_STREAM_OK);
	limit_stream_release(l, 1, "10.0.0.2");
	limit_stream_release(l, 1, "10.0.0.1");
	limit_stream_release(l, 1, "10.0.0.1");
	limit_stream_release(l, 2, "10.0.0.1");
	limit_stream_release(l, 3, "10.0.0.1");
	assert_int_equal(limit_streams_user(l, 1), 0);
	assert_int_equal(limit_streams_addr(l, "10.0.0.1"), 0);
	limit_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_rate),
	    cmocka_unit_test(test_kinds_and_users_apart),
	    cmocka_unit_test(test_rate_zero_is_unlimited),
	    cmocka_unit_test(test_bounded_table),
	    cmocka_unit_test(test_stream_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
