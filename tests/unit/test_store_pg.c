/* test_store_pg: the backend contract (store_contract.c) against
 * PostgreSQL, plus what only a shared database has: two stores on one
 * database (two nodes) whose ids commit in order and whose commit hooks
 * each see every event of both, once, in id order; and nodes that start
 * at once on an empty database all open it (one makes the schema, the
 * others wait for it).
 *
 * Run by tests/unit/store_pg.sh, which starts a PostgreSQL of its own
 * (tests/backends.sh) and passes it in NATTER_TEST_PG. Each case gets an
 * empty database: the schema is dropped and made again. Without
 * NATTER_TEST_PG it skips (77), unless NATTER_REQUIRE_ROOT_TESTS=1. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "store/store.h"
#include "store_contract.h"
#include "testdir.h"
#include "util/util.h"

static const char *pg_url;

/* An empty database: every object natter made is gone. */
static int pg_reset(void)
{
	PGconn *c = PQconnectdb(pg_url);
	int rc = -1;
	if (PQstatus(c) == CONNECTION_OK) {
		PGresult *r = PQexec(c, "SET client_min_messages = warning; "
					"DROP SCHEMA public CASCADE; "
					"CREATE SCHEMA public;");
		rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
		if (rc)
			fprintf(stderr, "reset: %s", PQerrorMessage(c));
		PQclear(r);
	}
	PQfinish(c);
	return rc;
}

static struct store *open_pg(unsigned batch_max)
{
	struct store_config cfg = {.path = pg_url,
				   .db_dir = testdir_db(),
				   .commit_batch_max = batch_max,
				   .readers = 2,
				   .session_cache_ms = 0};
	char err[512] = "";
	struct store *st = store_open(&cfg, err, sizeof(err));
	if (!st)
		fprintf(stderr, "store_open(%s): %s\n", pg_url, err);
	return st;
}

static struct store *contract_open(void *arg)
{
	(void)arg;
	if (pg_reset() < 0)
		return NULL;
	return open_pg(64);
}

static void contract_close(void *arg, struct store *st)
{
	(void)arg;
	store_close(st);
}

/* --- two nodes on one database -------------------------------------------- */

struct seen {
	pthread_mutex_t mu;
	int64_t ids[4096];
	size_t n;
	bool order_ok;
};

static void seen_hook(void *arg, struct event *ev)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->mu);
	if (s->n && event_id(ev) <= s->ids[s->n - 1])
		s->order_ok = false;
	if (s->n < 4096)
		s->ids[s->n++] = event_id(ev);
	pthread_mutex_unlock(&s->mu);
}

struct acks {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t done, ok;
};

static void ack(void *arg, int status, struct event *ev)
{
	(void)ev;
	struct acks *a = arg;
	pthread_mutex_lock(&a->mu);
	a->done++;
	a->ok += status == STORE_OK;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

static size_t seen_count(struct seen *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = s->n;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* Two stores on one database, each sending from its own threads at once:
 * every event reaches both hooks exactly once, in strictly increasing id
 * order, and the ids are 1.. with no gap. */
static void test_two_nodes(void **state)
{
	(void)state;
	enum { PER = 300 };
	assert_int_equal(pg_reset(), 0);
	struct store *a = open_pg(64), *b = open_pg(64);
	assert_non_null(a);
	assert_non_null(b);
	struct seen sa = {.mu = PTHREAD_MUTEX_INITIALIZER, .order_ok = true};
	struct seen sb = {.mu = PTHREAD_MUTEX_INITIALIZER, .order_ok = true};
	store_set_commit_hook(a, seen_hook, &sa);
	store_set_commit_hook(b, seen_hook, &sb);
	int64_t uid = 0;
	assert_int_equal(store_user_create(a, "pg_alice", "x", &uid), STORE_OK);
	int64_t lobby = 0;
	assert_int_equal(store_room_by_name(b, "lobby", &lobby, NULL),
			 STORE_OK);
	struct acks ac = {.mu = PTHREAD_MUTEX_INITIALIZER,
			  .cv = PTHREAD_COND_INITIALIZER};
	struct store_write join = {
	    .type = EVENT_JOIN, .user_id = uid, .room_id = lobby};
	store_write_submit(a, &join, ack, &ac);
	/* the join first: the nodes' writers are not ordered with each other */
	pthread_mutex_lock(&ac.mu);
	while (ac.done < 1)
		pthread_cond_wait(&ac.cv, &ac.mu);
	pthread_mutex_unlock(&ac.mu);
	for (int i = 0; i < PER; i++) {
		char t[32];
		snprintf(t, sizeof(t), "m%d", i);
		struct store_write w = {.type = EVENT_MESSAGE,
					.user_id = uid,
					.username = "pg_alice",
					.room_id = lobby,
					.room_name = "lobby",
					.text = t};
		store_write_submit(i % 2 ? a : b, &w, ack, &ac);
	}
	pthread_mutex_lock(&ac.mu);
	while (ac.done < PER + 1)
		pthread_cond_wait(&ac.cv, &ac.mu);
	pthread_mutex_unlock(&ac.mu);
	assert_int_equal(ac.ok, PER + 1);
	/* the other node hears of the last ones by NOTIFY */
	for (int i = 0; i < 500 && (seen_count(&sa) < PER + 1 ||
				    seen_count(&sb) < PER + 1);
	     i++)
		usleep(10000);
	for (size_t i = 0; i < sa.n; i++)
		if (sa.ids[i] != (int64_t)i + 1) {
			fprintf(stderr, "node a: at %zu id %lld\n", i,
				(long long)sa.ids[i]);
			break;
		}
	for (size_t i = 0; i < sb.n; i++)
		if (sb.ids[i] != (int64_t)i + 1) {
			fprintf(stderr, "node b: at %zu id %lld\n", i,
				(long long)sb.ids[i]);
			break;
		}
	assert_int_equal(sa.n, PER + 1);
	assert_int_equal(sb.n, PER + 1);
	assert_true(sa.order_ok);
	assert_true(sb.order_ok);
	for (size_t i = 0; i < sa.n; i++) {
		assert_int_equal(sa.ids[i], (int64_t)i + 1);
		assert_int_equal(sb.ids[i], (int64_t)i + 1);
	}
	assert_int_equal(store_last_event_id(a), PER + 1);
	assert_int_equal(store_last_event_id(b), PER + 1);
	store_close(a);
	store_close(b);
}

/* Nodes started together on an empty database: every one opens it. */
struct opener {
	pthread_barrier_t *go;
	struct store *st;
};

static void *open_at_once(void *arg)
{
	struct opener *o = arg;
	pthread_barrier_wait(o->go);
	o->st = open_pg(64);
	return NULL;
}

static void test_nodes_start_together(void **state)
{
	(void)state;
	enum { N = 4 };
	for (int round = 0; round < 3; round++) {
		pthread_barrier_t go;
		pthread_t t[N];
		struct opener o[N];
		assert_int_equal(pg_reset(), 0);
		pthread_barrier_init(&go, NULL, N);
		for (int i = 0; i < N; i++) {
			o[i] = (struct opener){.go = &go};
			pthread_create(&t[i], NULL, open_at_once, &o[i]);
		}
		for (int i = 0; i < N; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
		for (int i = 0; i < N; i++) {
			assert_non_null(o[i].st);
			store_close(o[i].st);
		}
	}
}

int main(void)
{
	pg_url = getenv("NATTER_TEST_PG");
	if (!pg_url || !*pg_url) {
		const char *req = getenv("NATTER_REQUIRE_ROOT_TESTS");
		fprintf(stderr, "test_store_pg: NATTER_TEST_PG is not set "
				"(run tests/unit/store_pg.sh)\n");
		return req && !strcmp(req, "1") ? 1 : 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_two_nodes),
	    cmocka_unit_test(test_nodes_start_together),
	};
	int failed = cmocka_run_group_tests_name("store_pg", tests, NULL, NULL);
	struct store_contract_factory pg = {
	    .name = "store_contract(postgresql)",
	    .open = contract_open,
	    .close = contract_close,
	};
	return failed + store_contract_run(&pg);
}
