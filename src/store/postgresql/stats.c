/* store/postgresql/stats: the statistics the admin page draws (metric
 * samples, schema 002's stat_samples, and aggregates over the event log)
 * and the admin panel's user search, as store/sqlite/stats.c. Every query
 * here is rare (an admin's page load, a sample a minute), so each runs as
 * one PQexecParams on a pool connection rather than through the q table;
 * parameters go as text with explicit casts in the SQL. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/postgresql/pg.h"
#include "util/util.h"

#define NUM_MAX 6

/* Run sql with up to NUM_MAX integer parameters and then up to two text
 * ones ($n+1, $n+2; NULL: SQL NULL). The result, or NULL on a failure
 * (logged by nobody: the caller answers STORE_ERR). */
static PGresult *run(struct pconn *c, const char *sql, const int64_t *num,
		     int nnum, const char *t1, const char *t2, int ntext)
{
	char buf[NUM_MAX][24];
	const char *val[NUM_MAX + 2];
	int n = 0;

	if (!c->pg)
		return NULL;
	for (int i = 0; i < nnum && i < NUM_MAX; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%" PRId64, num[i]);
		val[n++] = buf[i];
	}
	if (ntext > 0)
		val[n++] = t1;
	if (ntext > 1)
		val[n++] = t2;
	PGresult *r = PQexecParams(c->pg, sql, n, NULL, val, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		PQclear(r);
		return NULL;
	}
	return r;
}

int pgs_sample_add(struct store *base, const struct store_sample *x)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	int64_t num[6] = {x->minute,	     x->conn[0],
			  x->conn[1],	     x->conn[2],
			  (int64_t)x->sends, (int64_t)x->deliveries};
	PGresult *r =
	    run(c,
		"INSERT INTO stat_samples (minute, conn_ws, conn_sse, "
		"conn_poll, sends, deliveries, fallback, latency) VALUES "
		"($1::bigint, $2::bigint, $3::bigint, $4::bigint, $5::bigint, "
		"$6::bigint, coalesce($7::text, '{}'), coalesce($8::text, "
		"'[]'))",
		num, 6, x->fallback, x->latency, 2);
	pgs_pool_put(st, c);
	if (!r)
		return STORE_ERR;
	PQclear(r);
	return STORE_OK;
}

int pgs_samples_prune(struct store *base, int64_t before_s)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	PGresult *r =
	    run(c, "DELETE FROM stat_samples WHERE minute < $1::bigint",
		&before_s, 1, NULL, NULL, 0);
	pgs_pool_put(st, c);
	if (!r)
		return STORE_ERR;
	PQclear(r);
	return STORE_OK;
}

int pgs_users_search(struct store *base, const char *q, const char *after,
		     unsigned limit, struct store_user **out, size_t *n,
		     bool *more)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct store_user *v = NULL;
	size_t len = 0;
	int64_t lim = (int64_t)limit + 1;
	struct buf pat;

	buf_init(&pat);
	/* LIKE's own wildcards in q are plain characters */
	buf_puts(&pat, "%");
	for (const char *p = q ? q : ""; *p; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			buf_append(&pat, "\\", 1);
		buf_append(&pat, p, 1);
	}
	buf_puts(&pat, "%");
	*more = false;
	PGresult *r =
	    run(c,
		"SELECT id, username, display_name, created_ms, admin, "
		"(disabled_ms IS NOT NULL)::int, disabled_reason FROM users "
		"WHERE username::text ILIKE $2::text ESCAPE '\\' AND "
		"username > $3::text ORDER BY username LIMIT $1::bigint",
		&lim, 1, pat.data, after ? after : "", 2);
	pgs_pool_put(st, c);
	buf_fini(&pat);
	if (!r)
		return -1;
	int rows = PQntuples(r);
	v = xcalloc(limit + 1, sizeof(*v));
	for (int i = 0; i < rows; i++) {
		if (len == limit) {
			*more = true;
			continue;
		}
		struct store_user *u = &v[len++];
		u->id = atoll(PQgetvalue(r, i, 0));
		u->username = xstrdup(PQgetvalue(r, i, 1));
		u->display_name = xstrdup(PQgetvalue(r, i, 2));
		u->created_ms = atoll(PQgetvalue(r, i, 3));
		u->admin = atoll(PQgetvalue(r, i, 4)) != 0;
		u->disabled = atoll(PQgetvalue(r, i, 5)) != 0;
		u->disabled_reason = xstrdup(PQgetvalue(r, i, 6));
		u->settings = xstrdup("");
		u->pwhash = xstrdup("");
	}
	PQclear(r);
	*out = v;
	*n = len;
	return 0;
}

/* Run sql with $1 = from, $2 = to, $3 = bucket (all bigint) and append one
 * object per row to arr, its members named by keys (a key starting with
 * '#' is an integer column, else text). 0 or -1. */
static int rows(struct pconn *c, const char *sql, int64_t from, int64_t to,
		int64_t bucket, const char *const *keys, int nkeys, json_t *arr)
{
	int64_t num[3] = {from, to, bucket};
	PGresult *r = run(c, sql, num, 3, NULL, NULL, 0);
	if (!r)
		return -1;
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		for (int k = 0; k < nkeys; k++) {
			const char *v = PQgetvalue(r, i, k);
			if (keys[k][0] == '#')
				json_object_set_new(o, keys[k] + 1,
						    json_integer(atoll(v)));
			else
				json_object_set_new(o, keys[k],
						    json_string(v ? v : ""));
		}
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return 0;
}

/* A direct conversation's name says who talks to whom: the statistics
 * count them together. Names sort byte-wise, as SQLite's. */
#define ROOM_LABEL                                                             \
	"(CASE r.kind WHEN 'dm' THEN '(direct)' ELSE r.name::text END) "       \
	"COLLATE \"C\""

json_t *pgs_stats(struct store *base, int64_t from_ms, int64_t to_ms,
		  int64_t bucket_s)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	json_t *out = json_object();
	json_t *msgs = json_array(), *users = json_array(), *top = json_array(),
	       *conns = json_array(), *fb = json_array(), *lat = json_array();
	json_object_set_new(out, "messages_per_day", msgs);
	json_object_set_new(out, "active_users_per_day", users);
	json_object_set_new(out, "top_rooms", top);
	json_object_set_new(out, "connections", conns);
	json_object_set_new(out, "fallbacks", fb);
	json_object_set_new(out, "latency", lat);
	int64_t from_s = from_ms / 1000, to_s = to_ms / 1000;
	bool ok = false, begun = false;

	/* One read transaction: the figures agree with each other. */
	if (!c->pg || pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ "
				 "READ ONLY") != PG_OK)
		goto done;
	begun = true;
	static const char *const k_msgs[] = {"day", "room", "#messages"};
	static const char *const k_users[] = {"day", "#users"};
	static const char *const k_top[] = {"room", "#messages", "#senders"};
	static const char *const k_conn[] = {"#t", "#ws", "#sse", "#poll"};
	static const char *const k_fb[] = {"#t", "transport", "reason",
					   "#count"};
	static const char *const k_lat[] = {"#t", "#bucket", "#count"};
	ok =
	    rows(c,
		 "SELECT to_char(to_timestamp(e.ts_ms / 1000) AT TIME ZONE "
		 "'UTC', 'YYYY-MM-DD') AS d, " ROOM_LABEL
		 " AS room, count(*) FROM events e JOIN rooms r ON r.id = "
		 "e.room_id WHERE e.type = 'message' AND e.ts_ms >= $1::bigint "
		 "AND e.ts_ms < $2::bigint AND $3::bigint > 0 GROUP BY d, room "
		 "ORDER BY d, room",
		 from_ms, to_ms, bucket_s, k_msgs, 3, msgs) == 0 &&
	    rows(c,
		 "SELECT to_char(to_timestamp(ts_ms / 1000) AT TIME ZONE "
		 "'UTC', 'YYYY-MM-DD') AS d, count(DISTINCT user_id) FROM "
		 "events WHERE type = 'message' AND ts_ms >= $1::bigint AND "
		 "ts_ms < $2::bigint AND $3::bigint > 0 GROUP BY d ORDER BY d",
		 from_ms, to_ms, bucket_s, k_users, 2, users) == 0 &&
	    rows(c,
		 "SELECT " ROOM_LABEL " AS room, count(*) AS n, "
		 "count(DISTINCT e.user_id) FROM events e JOIN rooms r ON "
		 "r.id = e.room_id WHERE e.type = 'message' AND e.ts_ms >= "
		 "$1::bigint AND e.ts_ms < $2::bigint AND $3::bigint > 0 "
		 "GROUP BY room ORDER BY n DESC, room LIMIT 10",
		 from_ms, to_ms, bucket_s, k_top, 3, top) == 0 &&
	    rows(c,
		 "SELECT minute / $3::bigint * $3::bigint AS t, max(conn_ws), "
		 "max(conn_sse), max(conn_poll) FROM stat_samples WHERE "
		 "minute >= $1::bigint AND minute < $2::bigint GROUP BY t "
		 "ORDER BY t",
		 from_s, to_s, bucket_s, k_conn, 4, conns) == 0 &&
	    rows(c,
		 "SELECT s.minute / $3::bigint * $3::bigint AS t, "
		 "split_part(j.key, '/', 1) COLLATE \"C\" AS tr, "
		 "substr(j.key, strpos(j.key, '/') + 1) COLLATE \"C\" AS why, "
		 "sum(j.value::bigint) FROM stat_samples s, "
		 "json_each_text(s.fallback::json) j WHERE s.minute >= "
		 "$1::bigint AND s.minute < $2::bigint AND strpos(j.key, '/') "
		 "> 0 GROUP BY t, tr, why ORDER BY t, tr, why",
		 from_s, to_s, bucket_s, k_fb, 4, fb) == 0 &&
	    rows(c,
		 "SELECT s.minute / $3::bigint * $3::bigint AS t, j.o - 1 AS "
		 "b, sum(j.v::bigint) FROM stat_samples s, "
		 "json_array_elements_text(s.latency::json) WITH ORDINALITY "
		 "j(v, o) WHERE s.minute >= $1::bigint AND s.minute < "
		 "$2::bigint GROUP BY t, b ORDER BY t, b",
		 from_s, to_s, bucket_s, k_lat, 3, lat) == 0;
	if (ok) {
		int64_t num[2] = {from_ms, to_ms};
		PGresult *r = run(
		    c,
		    "SELECT (SELECT count(*) FROM events WHERE type = "
		    "'message' AND ts_ms >= $1::bigint AND ts_ms < "
		    "$2::bigint), (SELECT count(DISTINCT user_id) FROM events "
		    "WHERE type = 'message' AND ts_ms >= $1::bigint AND ts_ms "
		    "< $2::bigint), (SELECT coalesce(sum(sends), 0) FROM "
		    "stat_samples WHERE minute >= $1::bigint / 1000 AND "
		    "minute < $2::bigint / 1000), (SELECT "
		    "coalesce(sum(deliveries), 0) FROM stat_samples WHERE "
		    "minute >= $1::bigint / 1000 AND minute < $2::bigint / "
		    "1000)",
		    num, 2, NULL, NULL, 0);
		ok = r && PQntuples(r) == 1;
		if (ok)
			json_object_set_new(
			    out, "totals",
			    json_pack("{s:I, s:I, s:I, s:I}", "messages",
				      (json_int_t)atoll(PQgetvalue(r, 0, 0)),
				      "active_users",
				      (json_int_t)atoll(PQgetvalue(r, 0, 1)),
				      "sends",
				      (json_int_t)atoll(PQgetvalue(r, 0, 2)),
				      "deliveries",
				      (json_int_t)atoll(PQgetvalue(r, 0, 3))));
		PQclear(r);
	}
done:
	if (begun)
		pg_exec(c, "COMMIT");
	pgs_pool_put(st, c);
	if (!ok) {
		json_decref(out);
		return NULL;
	}
	return out;
}
