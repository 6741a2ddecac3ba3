/* store/sqlite/stats.c: the statistics the admin page draws: metric
 * samples (migration 011: one row a minute from core/stats.c, pruned
 * after stats-retention) and SQL aggregates over the event log, and the
 * count behind rooms-per-day. Every query here is rare (an admin's page
 * load, a sample a minute, a room creation), so statements are prepared
 * per call on a pool connection rather than kept in the q table. */
#include <stdio.h>
#include <string.h>

#include "store/sqlite/sqlite.h"
#include "util/histo.h"
#include "util/util.h"

int sq_sample_add(struct store *base, const struct store_sample *x)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = NULL;
	int status = STORE_ERR;
	if (sqlite3_prepare_v2(
		c->db,
		"INSERT INTO stat_samples (minute, conn_ws, conn_sse, "
		"conn_poll, sends, deliveries, fallback, latency) VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, coalesce(?7, '{}'), "
		"coalesce(?8, '[]'))",
		-1, &s, NULL) != SQLITE_OK)
		goto done;
	sqlite3_bind_int64(s, 1, x->minute);
	for (int i = 0; i < 3; i++)
		sqlite3_bind_int64(s, 2 + i, x->conn[i]);
	sqlite3_bind_int64(s, 5, x->sends);
	sqlite3_bind_int64(s, 6, x->deliveries);
	sqlite3_bind_text(s, 7, x->fallback, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, x->latency, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_DONE)
		status = STORE_OK;
done:
	sqlite3_finalize(s);
	sq_pool_put(st, c);
	return status;
}

int sq_samples_prune(struct store *base, int64_t before_s)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = NULL;
	int status = STORE_ERR;
	if (sqlite3_prepare_v2(c->db,
			       "DELETE FROM stat_samples WHERE minute < ?1", -1,
			       &s, NULL) != SQLITE_OK)
		goto done;
	sqlite3_bind_int64(s, 1, before_s);
	if (sqlite3_step(s) == SQLITE_DONE)
		status = STORE_OK;
done:
	sqlite3_finalize(s);
	sq_pool_put(st, c);
	return status;
}

int sq_rooms_created(struct store *base, int64_t user_id, int64_t since_ms,
		     int64_t *count, int64_t *oldest_ms)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = NULL;
	int status = STORE_ERR;
	if (sqlite3_prepare_v2(c->db,
			       "SELECT count(*), coalesce(min(created_ms), 0) "
			       "FROM rooms WHERE created_by = ?1 "
			       "AND created_ms >= ?2",
			       -1, &s, NULL) != SQLITE_OK)
		goto done;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, since_ms);
	if (sqlite3_step(s) == SQLITE_ROW) {
		*count = sqlite3_column_int64(s, 0);
		*oldest_ms = sqlite3_column_int64(s, 1);
		status = STORE_OK;
	}
done:
	sqlite3_finalize(s);
	sq_pool_put(st, c);
	return status;
}

int sq_users_search(struct store *base, const char *q, const char *after,
		    unsigned limit, struct store_user **out, size_t *n,
		    bool *more)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = NULL;
	struct store_user *v = NULL;
	size_t len = 0;
	int rc = SQLITE_ERROR;
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
	if (sqlite3_prepare_v2(
		c->db,
		"SELECT id, username, display_name, created_ms, admin, "
		"disabled_ms IS NOT NULL, disabled_reason FROM users WHERE "
		"username LIKE ?1 ESCAPE '\\' AND username > ?2 "
		"ORDER BY username LIMIT ?3",
		-1, &s, NULL) != SQLITE_OK)
		goto done;
	sqlite3_bind_text(s, 1, pat.data, (int)pat.len, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, after ? after : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)limit + 1);
	v = xcalloc(limit + 1, sizeof(*v));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == limit) {
			*more = true;
			continue;
		}
		struct store_user *u = &v[len++];
		u->id = sqlite3_column_int64(s, 0);
		u->username = sq_col_dup(s, 1);
		u->display_name = sq_col_dup(s, 2);
		u->created_ms = sqlite3_column_int64(s, 3);
		u->admin = sqlite3_column_int(s, 4) != 0;
		u->disabled = sqlite3_column_int(s, 5) != 0;
		u->disabled_reason = sq_col_dup(s, 6);
		u->settings = xstrdup("");
		u->pwhash = xstrdup("");
	}
done:
	sqlite3_finalize(s);
	sq_pool_put(st, c);
	buf_fini(&pat);
	if (rc != SQLITE_DONE) {
		store_users_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

/* Run sql with ?1 = from, ?2 = to, ?3 = bucket and append one object per
 * row to arr, its members named by keys (a key starting with '#' is an
 * integer column, else text). 0 or -1. */
static int rows(sqlite3 *db, const char *sql, int64_t from, int64_t to,
		int64_t bucket, const char *const *keys, int nkeys, json_t *arr)
{
	sqlite3_stmt *s = NULL;
	int rc;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, from);
	sqlite3_bind_int64(s, 2, to);
	sqlite3_bind_int64(s, 3, bucket);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *o = json_object();
		for (int i = 0; i < nkeys; i++) {
			if (keys[i][0] == '#')
				json_object_set_new(
				    o, keys[i] + 1,
				    json_integer(sqlite3_column_int64(s, i)));
			else
				json_object_set_new(
				    o, keys[i],
				    json_string(
					(const char *)sqlite3_column_text(s, i)
					    ?: ""));
		}
		json_array_append_new(arr, o);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* A direct conversation's name says who talks to whom: the statistics
 * count them together. */
#define ROOM_LABEL "CASE r.kind WHEN 'dm' THEN '(direct)' ELSE r.name END"

json_t *sq_stats(struct store *base, int64_t from_ms, int64_t to_ms,
		 int64_t bucket_s)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
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
	bool ok = false;

	/* One read transaction: the figures agree with each other. */
	if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto done;
	static const char *const k_msgs[] = {"day", "room", "#messages"};
	static const char *const k_users[] = {"day", "#users"};
	static const char *const k_top[] = {"room", "#messages", "#senders"};
	static const char *const k_conn[] = {"#t", "#ws", "#sse", "#poll"};
	static const char *const k_fb[] = {"#t", "transport", "reason",
					   "#count"};
	static const char *const k_lat[] = {"#t", "#bucket", "#count"};
	ok =
	    rows(c->db,
		 "SELECT date(e.ts_ms / 1000, 'unixepoch') AS d, " ROOM_LABEL
		 " AS room, count(*) FROM events e JOIN rooms r ON r.id = "
		 "e.room_id WHERE e.type = 'message' AND e.ts_ms >= ?1 AND "
		 "e.ts_ms < ?2 GROUP BY d, room ORDER BY d, room",
		 from_ms, to_ms, bucket_s, k_msgs, 3, msgs) == 0 &&
	    rows(c->db,
		 "SELECT date(ts_ms / 1000, 'unixepoch') AS d, "
		 "count(DISTINCT user_id) FROM events WHERE type = 'message' "
		 "AND ts_ms >= ?1 AND ts_ms < ?2 GROUP BY d ORDER BY d",
		 from_ms, to_ms, bucket_s, k_users, 2, users) == 0 &&
	    rows(
		c->db,
		"SELECT " ROOM_LABEL " AS room, count(*) AS n, "
		"count(DISTINCT e.user_id) FROM events e JOIN rooms r ON "
		"r.id = e.room_id WHERE e.type = 'message' AND e.ts_ms >= ?1 "
		"AND e.ts_ms < ?2 GROUP BY room ORDER BY n DESC, room LIMIT 10",
		from_ms, to_ms, bucket_s, k_top, 3, top) == 0 &&
	    rows(c->db,
		 "SELECT minute / ?3 * ?3 AS t, max(conn_ws), max(conn_sse), "
		 "max(conn_poll) FROM stat_samples WHERE minute >= ?1 AND "
		 "minute < ?2 GROUP BY t ORDER BY t",
		 from_s, to_s, bucket_s, k_conn, 4, conns) == 0 &&
	    rows(c->db,
		 "SELECT s.minute / ?3 * ?3 AS t, "
		 "substr(j.key, 1, instr(j.key, '/') - 1) AS tr, "
		 "substr(j.key, instr(j.key, '/') + 1) AS why, sum(j.value) "
		 "FROM stat_samples s, json_each(s.fallback) j WHERE s.minute "
		 ">= ?1 AND s.minute < ?2 AND instr(j.key, '/') > 0 "
		 "GROUP BY t, tr, why ORDER BY t, tr, why",
		 from_s, to_s, bucket_s, k_fb, 4, fb) == 0 &&
	    rows(c->db,
		 "SELECT s.minute / ?3 * ?3 AS t, CAST(j.key AS INTEGER) AS b, "
		 "sum(j.value) FROM stat_samples s, json_each(s.latency) j "
		 "WHERE s.minute >= ?1 AND s.minute < ?2 GROUP BY t, b "
		 "ORDER BY t, b",
		 from_s, to_s, bucket_s, k_lat, 3, lat) == 0;
	if (ok) {
		sqlite3_stmt *s = NULL;
		ok = sqlite3_prepare_v2(
			 c->db,
			 "SELECT (SELECT count(*) FROM events WHERE type = "
			 "'message' AND ts_ms >= ?1 AND ts_ms < ?2), "
			 "(SELECT count(DISTINCT user_id) FROM events WHERE "
			 "type = 'message' AND ts_ms >= ?1 AND ts_ms < ?2), "
			 "(SELECT coalesce(sum(sends), 0) FROM stat_samples "
			 "WHERE minute >= ?1 / 1000 AND minute < ?2 / 1000), "
			 "(SELECT coalesce(sum(deliveries), 0) FROM "
			 "stat_samples WHERE minute >= ?1 / 1000 AND minute < "
			 "?2 / 1000)",
			 -1, &s, NULL) == SQLITE_OK;
		if (ok) {
			sqlite3_bind_int64(s, 1, from_ms);
			sqlite3_bind_int64(s, 2, to_ms);
			ok = sqlite3_step(s) == SQLITE_ROW;
		}
		if (ok)
			json_object_set_new(
			    out, "totals",
			    json_pack("{s:I, s:I, s:I, s:I}", "messages",
				      (json_int_t)sqlite3_column_int64(s, 0),
				      "active_users",
				      (json_int_t)sqlite3_column_int64(s, 1),
				      "sends",
				      (json_int_t)sqlite3_column_int64(s, 2),
				      "deliveries",
				      (json_int_t)sqlite3_column_int64(s, 3)));
		sqlite3_finalize(s);
	}
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
done:
	sq_pool_put(st, c);
	if (!ok) {
		json_decref(out);
		return NULL;
	}
	return out;
}
