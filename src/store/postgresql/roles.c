/* store/postgresql/roles: server admins' and rooms' roles (owners are rooms'
 * creators, moderators a table of their own), bans, mutes and the audit
 * log. The removal that
 * goes with a ban is an event (the writer's SUBJECT_BAN effect); the ban
 * of a non-member, and lifting a ban, are plain writes here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/postgresql/pg.h"
#include "util/util.h"

int pgs_user_admin_set(struct store *base, int64_t id, bool admin)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_USER_ADMIN_SET);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, id);
	pg_bind_int64(s, 2, admin);
	if (pg_step(s) != PG_DONE)
		goto fail;
	status = pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_room_role(struct store *base, int64_t room_id, int64_t user_id)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_ROOM_ROLE);
	int rc, ret = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, user_id);
	rc = pg_step(s);
	if (rc == PG_ROW)
		ret = pg_col_int64(s, 0);
	else if (rc == PG_DONE)
		ret = STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return ret;
}

int pgs_moderator_set(struct store *base, int64_t room_id, int64_t user_id,
		      int64_t by, bool on)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, on ? Q_MODERATOR_ADD : Q_MODERATOR_DEL);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, user_id);
	if (on) {
		if (by > 0)
			pg_bind_int64(s, 3, by);
		pg_bind_int64(s, 4, now_ms());
	}
	if (pg_step(s) != PG_DONE)
		goto fail;
	status = STORE_OK;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (status == STORE_OK && on) {
		/* Nothing inserted: already a moderator, or not a member. */
		int role = pgs_room_role(base, room_id, user_id);
		if (role < 0)
			return role;
		if (role == STORE_ROLE_NONE)
			return STORE_NOTMEMBER;
	}
	return status;
}

int pgs_ban_set(struct store *base, int64_t room_id, int64_t user_id,
		int64_t by, const char *reason, bool on)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, on ? Q_BAN_ADD : Q_BAN_DEL);
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, user_id);
	if (on) {
		if (by > 0)
			pg_bind_int64(s, 3, by);
		pg_bind_text(s, 4, reason ? reason : "");
		pg_bind_int64(s, 5, now_ms());
	}
	rc = pg_step(s);
	if (rc != PG_DONE) {
		/* a foreign key: no such room or user */
		status =
		    (rc & 0xff) == PG_CONSTRAINT ? STORE_NOTFOUND : STORE_ERR;
		goto fail;
	}
	status = on || pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_bans_list(struct store *base, int64_t room_id, struct store_ban **out,
		  size_t *n)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_BANS_LIST);
	struct store_ban *v = NULL;
	size_t len = 0, cap = 0;
	int rc = PG_ERROR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	while ((rc = pg_step(s)) == PG_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		struct store_ban *b = &v[len++];
		const char *u = (const char *)pg_col_text(s, 0);
		const char *by = (const char *)pg_col_text(s, 1);
		snprintf(b->username, sizeof(b->username), "%s", u ? u : "");
		snprintf(b->by, sizeof(b->by), "%s", by ? by : "");
		b->reason = pgs_col_dup(s, 2);
		b->created_ms = pg_col_int64(s, 3);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
		store_bans_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int pgs_mute_set(struct store *base, int64_t room_id, int64_t user_id,
		 int64_t until_ms, int64_t by, const char *reason)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	bool on = until_ms > 0;
	struct pstmt *s = pgs_stmt(c, on ? Q_MUTE_ADD : Q_MUTE_DEL);
	int64_t now = now_ms();
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, user_id);
	if (on) {
		pg_bind_int64(s, 3, until_ms);
		if (by > 0)
			pg_bind_int64(s, 4, by);
		pg_bind_text(s, 5, reason ? reason : "");
		pg_bind_int64(s, 6, now);
	} else {
		pg_bind_int64(s, 3, now);
	}
	rc = pg_step(s);
	if (rc != PG_DONE) {
		status =
		    (rc & 0xff) == PG_CONSTRAINT ? STORE_NOTFOUND : STORE_ERR;
		goto fail;
	}
	status = on || pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_mutes_each(struct store *base, int64_t now,
		   void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			      int64_t until_ms),
		   void *arg)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_MUTES_ACTIVE);
	int rc = PG_ERROR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, now);
	while ((rc = pg_step(s)) == PG_ROW)
		fn(arg, pg_col_int64(s, 0), pg_col_int64(s, 1),
		   pg_col_int64(s, 2));
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return rc == PG_DONE ? 0 : -1;
}

/* Rows of q to fn; 0 or -1. */
static int roles_rows(struct pgst *st, enum q q,
		      void (*fn)(void *arg, int64_t room_id, int64_t user_id,
				 int role),
		      void *arg)
{
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, q);
	int rc = PG_ERROR;

	if (!s)
		goto fail;
	while ((rc = pg_step(s)) == PG_ROW)
		fn(arg, pg_col_int64(s, 0), pg_col_int64(s, 1),
		   (int)pg_col_int64(s, 2));
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return rc == PG_DONE ? 0 : -1;
}

int pgs_roles_each(struct store *base, bool rooms,
		   void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			      int role),
		   void *arg)
{
	struct pgst *st = pgs_of(base);
	if (rooms && roles_rows(st, Q_ROLES_ALL, fn, arg) < 0)
		return -1;
	return roles_rows(st, Q_ADMINS_ALL, fn, arg);
}

/* Rooms user_id created since since_ms, and the oldest's time. */
int pgs_rooms_created(struct store *base, int64_t user_id, int64_t since_ms,
		      int64_t *count, int64_t *oldest_ms)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_ROOMS_CREATED);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, user_id);
	pg_bind_int64(s, 2, since_ms);
	if (pg_step(s) == PG_ROW) {
		*count = pg_col_int64(s, 0);
		*oldest_ms = pg_col_int64(s, 1);
		status = STORE_OK;
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

static void bind_str(struct pstmt *s, int i, const char *v)
{
	pg_bind_text(s, i, v ? v : "");
}

int pgs_audit_add(struct store *base, const struct store_audit *a)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_AUDIT_ADD);
	int status = STORE_ERR;

	if (!s || !a->actor || !a->action)
		goto fail;
	pg_bind_int64(s, 1, a->ts_ms ? a->ts_ms : now_ms());
	bind_str(s, 2, a->actor);
	bind_str(s, 3, a->action);
	bind_str(s, 4, a->target);
	bind_str(s, 5, a->room);
	bind_str(s, 6, a->reason);
	bind_str(s, 7, a->detail);
	if (pg_step(s) == PG_DONE)
		status = STORE_OK;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_audit_list(struct store *base, int64_t before, unsigned limit,
		   struct store_audit **out, size_t *n, bool *more)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_AUDIT_LIST);
	struct store_audit *v = NULL;
	size_t len = 0;
	int rc = PG_ERROR;

	*more = false;
	if (!s)
		goto fail;
	pg_bind_int64(s, 1, before > 0 ? before : INT64_MAX);
	pg_bind_int64(s, 2, (int64_t)limit + 1);
	v = xcalloc(limit + 1, sizeof(*v));
	while ((rc = pg_step(s)) == PG_ROW) {
		if (len == limit) {
			*more = true;
			continue;
		}
		struct store_audit *a = &v[len++];
		a->id = pg_col_int64(s, 0);
		a->ts_ms = pg_col_int64(s, 1);
		a->actor = pgs_col_dup(s, 2);
		a->action = pgs_col_dup(s, 3);
		a->target = pgs_col_dup(s, 4);
		a->room = pgs_col_dup(s, 5);
		a->reason = pgs_col_dup(s, 6);
		a->detail = pgs_col_dup(s, 7);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
		store_audit_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}
