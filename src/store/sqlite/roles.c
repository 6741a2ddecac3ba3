/* store/sqlite/roles: server admins' and rooms' roles (owners are rooms'
 * creators, moderators a table of their own), bans, mutes and the audit
 * log. The removal that
 * goes with a ban is an event (the writer's SUBJECT_BAN effect); the ban
 * of a non-member, and lifting a ban, are plain writes here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/sqlite/sqlite.h"
#include "util/util.h"

int sq_user_admin_set(struct store *base, int64_t id, bool admin)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_USER_ADMIN_SET);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int(s, 2, admin);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	status = sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_room_role(struct store *base, int64_t room_id, int64_t user_id)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_ROOM_ROLE);
	int rc, ret = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = sqlite3_column_int(s, 0);
	else if (rc == SQLITE_DONE)
		ret = STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return ret;
}

int sq_moderator_set(struct store *base, int64_t room_id, int64_t user_id,
		     int64_t by, bool on)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, on ? Q_MODERATOR_ADD : Q_MODERATOR_DEL);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	if (on) {
		if (by > 0)
			sqlite3_bind_int64(s, 3, by);
		sqlite3_bind_int64(s, 4, now_ms());
	}
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (status == STORE_OK && on) {
		/* Nothing inserted: already a moderator, or not a member. */
		int role = sq_room_role(base, room_id, user_id);
		if (role < 0)
			return role;
		if (role == STORE_ROLE_NONE)
			return STORE_NOTMEMBER;
	}
	return status;
}

int sq_ban_set(struct store *base, int64_t room_id, int64_t user_id, int64_t by,
	       const char *reason, bool on)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, on ? Q_BAN_ADD : Q_BAN_DEL);
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	if (on) {
		if (by > 0)
			sqlite3_bind_int64(s, 3, by);
		sqlite3_bind_text(s, 4, reason ? reason : "", -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, now_ms());
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		/* a foreign key: no such room or user */
		status = (rc & 0xff) == SQLITE_CONSTRAINT ? STORE_NOTFOUND
							  : STORE_ERR;
		goto fail;
	}
	status = on || sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_bans_list(struct store *base, int64_t room_id, struct store_ban **out,
		 size_t *n)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_BANS_LIST);
	struct store_ban *v = NULL;
	size_t len = 0, cap = 0;
	int rc = SQLITE_ERROR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_ban *b = SQ_PUSH(v, len, cap, 8);
		const char *u = (const char *)sqlite3_column_text(s, 0);
		const char *by = (const char *)sqlite3_column_text(s, 1);
		snprintf(b->username, sizeof(b->username), "%s", u ? u : "");
		snprintf(b->by, sizeof(b->by), "%s", by ? by : "");
		b->reason = sq_col_dup(s, 2);
		b->created_ms = sqlite3_column_int64(s, 3);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		store_bans_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_mute_set(struct store *base, int64_t room_id, int64_t user_id,
		int64_t until_ms, int64_t by, const char *reason)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	bool on = until_ms > 0;
	sqlite3_stmt *s = sq_stmt(c, on ? Q_MUTE_ADD : Q_MUTE_DEL);
	int64_t now = now_ms();
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	if (on) {
		sqlite3_bind_int64(s, 3, until_ms);
		if (by > 0)
			sqlite3_bind_int64(s, 4, by);
		sqlite3_bind_text(s, 5, reason ? reason : "", -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, now);
	} else {
		sqlite3_bind_int64(s, 3, now);
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		status = (rc & 0xff) == SQLITE_CONSTRAINT ? STORE_NOTFOUND
							  : STORE_ERR;
		goto fail;
	}
	status = on || sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_mutes_each(struct store *base, int64_t now,
		  void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			     int64_t until_ms),
		  void *arg)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_MUTES_ACTIVE);
	int rc = SQLITE_ERROR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, now);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(arg, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
		   sqlite3_column_int64(s, 2));
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Rows of q to fn; 0 or -1. */
static int roles_rows(struct sq *st, enum q q,
		      void (*fn)(void *arg, int64_t room_id, int64_t user_id,
				 int role),
		      void *arg)
{
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, q);
	int rc = SQLITE_ERROR;

	if (!s)
		goto fail;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(arg, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
		   sqlite3_column_int(s, 2));
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return rc == SQLITE_DONE ? 0 : -1;
}

int sq_roles_each(struct store *base, bool rooms,
		  void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			     int role),
		  void *arg)
{
	struct sq *st = sq_of(base);
	if (rooms && roles_rows(st, Q_ROLES_ALL, fn, arg) < 0)
		return -1;
	return roles_rows(st, Q_ADMINS_ALL, fn, arg);
}

static void bind_str(sqlite3_stmt *s, int i, const char *v)
{
	sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

int sq_audit_add(struct store *base, const struct store_audit *a)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_AUDIT_ADD);
	int status = STORE_ERR;

	if (!s || !a->actor || !a->action)
		goto fail;
	sqlite3_bind_int64(s, 1, a->ts_ms ? a->ts_ms : now_ms());
	bind_str(s, 2, a->actor);
	bind_str(s, 3, a->action);
	bind_str(s, 4, a->target);
	bind_str(s, 5, a->room);
	bind_str(s, 6, a->reason);
	bind_str(s, 7, a->detail);
	if (sqlite3_step(s) == SQLITE_DONE)
		status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_audit_list(struct store *base, int64_t before, unsigned limit,
		  struct store_audit **out, size_t *n, bool *more)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_AUDIT_LIST);
	struct store_audit *v = NULL;
	size_t len = 0;
	int rc = SQLITE_ERROR;

	*more = false;
	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, before > 0 ? before : INT64_MAX);
	sqlite3_bind_int64(s, 2, (int64_t)limit + 1);
	v = xcalloc(limit + 1, sizeof(*v));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == limit) {
			*more = true;
			continue;
		}
		struct store_audit *a = &v[len++];
		a->id = sqlite3_column_int64(s, 0);
		a->ts_ms = sqlite3_column_int64(s, 1);
		a->actor = sq_col_dup(s, 2);
		a->action = sq_col_dup(s, 3);
		a->target = sq_col_dup(s, 4);
		a->room = sq_col_dup(s, 5);
		a->reason = sq_col_dup(s, 6);
		a->detail = sq_col_dup(s, 7);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		store_audit_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}
