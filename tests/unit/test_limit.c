/* test_limit: the token buckets (rate, burst, refill, retry_after, each
 * kind on its own), the bounded user table (a full table reuses idle or
 * least-limited entries and never grows), and the stream caps (per user,
 * per address, server-wide: exactly the cap under concurrent callers,
 * released exactly), and sharing with other nodes (what is taken is
 * recorded once per user, taken away whole; what another node took is
 * charged without a refusal, with bounded debt). Times are passed in. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

static int poked;
static void poke(void *arg)
{
	(void)arg;
	poked++;
}

static void test_share_records_uses(void **state)
{
	(void)state;
	struct limit *l = mk(1, 3, 64);
	int64_t retry;
	size_t n;

	/* not sharing: nothing is recorded */
	assert_int_equal(limit_take(l, 1, LIMIT_SEND, 0, &retry), 0);
	assert_null(limit_uses_take(l, &n));
	assert_int_equal(n, 0);

	limit_share(l, poke, NULL);
	poked = 0;
	assert_int_equal(limit_take(l, 1, LIMIT_SEND, 0, &retry), 0);
	assert_int_equal(poked, 1); /* the record was empty */
	assert_int_equal(limit_take(l, 1, LIMIT_ALL, 0, &retry), 0);
	assert_int_equal(limit_take(l, 2, LIMIT_SEND, 0, &retry), 0);
	assert_int_equal(limit_take(l, 1, LIMIT_SEND, 0, &retry), 0);
	/* user 1 is empty now: a refusal records nothing */
	assert_int_equal(limit_take(l, 1, LIMIT_SEND, 0, &retry), -1);
	assert_int_equal(poked, 1);

	struct limit_use *u = limit_uses_take(l, &n);
	assert_int_equal(n, 2);
	assert_int_equal(u[0].user, 1);
	assert_int_equal(u[0].n[LIMIT_SEND], 2);
	assert_int_equal(u[0].n[LIMIT_ALL], 1);
	assert_int_equal(u[0].n[LIMIT_TYPING], 0);
	assert_int_equal(u[1].user, 2);
	assert_int_equal(u[1].n[LIMIT_SEND], 1);
	free(u);

	/* emptied: the next use pokes again and starts a fresh record */
	assert_null(limit_uses_take(l, &n));
	assert_int_equal(limit_take(l, 2, LIMIT_TYPING, 0, &retry), 0);
	assert_int_equal(poked, 2);
	u = limit_uses_take(l, &n);
	assert_int_equal(n, 1);
	assert_int_equal(u[0].user, 2);
	assert_int_equal(u[0].n[LIMIT_SEND], 0);
	assert_int_equal(u[0].n[LIMIT_TYPING], 1);
	free(u);
	/* unshared: recorded no more, and nothing called */
	assert_int_equal(limit_take(l, 3, LIMIT_SEND, 0, &retry), 0);
	limit_unshare(l);
	assert_null(limit_uses_take(l, &n));
	assert_int_equal(limit_take(l, 3, LIMIT_SEND, 0, &retry), 0);
	assert_null(limit_uses_take(l, &n));
	assert_int_equal(poked, 3);
	limit_free(l);
}

static void test_charge_from_another_node(void **state)
{
	(void)state;
	struct limit *a = mk(1, 5, 64), *b = mk(1, 5, 64);
	int64_t retry;
	size_t n;

	limit_share(a, NULL, NULL);
	limit_share(b, NULL, NULL);
	/* user 7 takes 3 of 5 on node a; node b is told */
	for (int i = 0; i < 3; i++)
		assert_int_equal(limit_take(a, 7, LIMIT_SEND, 1000, &retry), 0);
	struct limit_use *u = limit_uses_take(a, &n);
	assert_int_equal(n, 1);
	limit_charge(b, &u[0], 1000);
	free(u);
	/* so b hands out the other 2, not 5 */
	assert_int_equal(limit_take(b, 7, LIMIT_SEND, 1000, &retry), 0);
	assert_int_equal(limit_take(b, 7, LIMIT_SEND, 1000, &retry), 0);
	assert_int_equal(limit_take(b, 7, LIMIT_SEND, 1000, &retry), -1);
	assert_int_equal(retry, 1000);
	/* a charge is not recorded again (no echo between nodes) */
	u = limit_uses_take(b, &n);
	assert_int_equal(n, 1);
	assert_int_equal(u[0].n[LIMIT_SEND], 2);
	free(u);
	/* a flood of charges leaves at most one burst of debt: 10 s at
	 * 1/s, not a million seconds */
	struct limit_use big = {.user = 7, .n = {0, 1000000, 0}};
	limit_charge(b, &big, 2000);
	assert_int_equal(limit_take(b, 7, LIMIT_SEND, 2000 + 5999, &retry), -1);
	assert_int_equal(limit_take(b, 7, LIMIT_SEND, 2000 + 6000, &retry), 0);
	/* other kinds and users are untouched, user 0 is ignored */
	assert_int_equal(limit_take(b, 7, LIMIT_TYPING, 2000, &retry), 0);
	assert_int_equal(limit_take(b, 8, LIMIT_SEND, 2000, &retry), 0);
	struct limit_use none = {.user = 0, .n = {9, 9, 9}};
	limit_charge(b, &none, 2000);
	limit_free(a);
	limit_free(b);
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

/* The server-wide cap: 16 threads race for 2,000 slots with a cap of 300;
 * exactly 300 are granted (a check-then-count outside one lock lets a few
 * over), and each refusal says which cap. */
#define RACE_THREADS 16
#define RACE_TRIES 125
struct race {
	struct limit *l;
	int id;
	int ok, server;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	char addr[32];
	for (int i = 0; i < RACE_TRIES; i++) {
		snprintf(addr, sizeof(addr), "10.1.%d.%d", r->id, i);
		int rc = limit_stream_acquire(r->l, r->id * 1000 + i, addr);
		if (rc == LIMIT_STREAM_OK)
			r->ok++;
		else if (rc == LIMIT_STREAM_SERVER)
			r->server++;
	}
	return NULL;
}

static void test_stream_server_cap_exact(void **state)
{
	(void)state;
	struct limit_config c = {.users_max = 16, .streams_max = 300};
	struct limit *l = limit_new(&c);
	pthread_t t[RACE_THREADS];
	struct race r[RACE_THREADS];
	for (int i = 0; i < RACE_THREADS; i++) {
		r[i] = (struct race){.l = l, .id = i};
		pthread_create(&t[i], NULL, racer, &r[i]);
	}
	int ok = 0, server = 0;
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(t[i], NULL);
		ok += r[i].ok;
		server += r[i].server;
	}
	assert_int_equal(ok, 300);
	assert_int_equal(server, RACE_THREADS * RACE_TRIES - 300);
	assert_int_equal(limit_streams_total(l), 300);
	/* releases give exactly their slots back (and a release of what
	 * was refused gives nothing) */
	char addr[32];
	for (int i = 0; i < RACE_TRIES; i++) {
		snprintf(addr, sizeof(addr), "10.1.0.%d", i);
		limit_stream_release(l, i, addr);
	}
	assert_int_equal(limit_streams_total(l), 300 - r[0].ok);
	for (int i = 0; i < r[0].ok; i++)
		assert_int_equal(limit_stream_acquire(l, 99000 + i, "10.9.9.9"),
				 LIMIT_STREAM_OK);
	assert_int_equal(limit_stream_acquire(l, 99999, "10.9.9.8"),
			 LIMIT_STREAM_SERVER);
	limit_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_rate),
	    cmocka_unit_test(test_kinds_and_users_apart),
	    cmocka_unit_test(test_stream_server_cap_exact),
	    cmocka_unit_test(test_rate_zero_is_unlimited),
	    cmocka_unit_test(test_bounded_table),
	    cmocka_unit_test(test_stream_caps),
	    cmocka_unit_test(test_share_records_uses),
	    cmocka_unit_test(test_charge_from_another_node),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
