/* store/sqlite/reads: rooms and members, history pages and search as
 * shared event references (the stored envelopes, never re-parsed), and the
 * events after a cursor that a reconnecting client may see. Each read
 * borrows a connection from the pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "model/search.h"
#include "store/sqlite/sqlite.h"
#include "util/util.h"

/* --- rooms and history ---------------------------------------------------- */

int sq_room_by_name(struct store *base, const char *name, int64_t *room_id,
		    char name_out[33])
{
	struct sq *st = sq_of(base);
	struct conn *c;
	sqlite3_stmt *s;
	int rc, status = STORE_ERR;

	if (!name)
		return STORE_NOTFOUND;
	c = sq_pool_get(st);
	s = sq_stmt(c, Q_ROOM_BY_NAME);
	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		status = STORE_NOTFOUND;
	if (rc != SQLITE_ROW)
		goto fail;
	if (room_id)
		*room_id = sqlite3_column_int64(s, 0);
	if (name_out) {
		const char *t = (const char *)sqlite3_column_text(s, 1);
		snprintf(name_out, 33, "%s", t ? t : "");
	}
	status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_rooms_list(struct store *base, int64_t user_id, struct store_room **out,
		  size_t *n)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_ROOMS_LIST);
	struct store_room *v = NULL;
	size_t len = 0, cap = 0;
	int rc = SQLITE_ERROR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, user_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 1);
		struct store_room *r = SQ_PUSH(v, len, cap, 16);
		r->id = sqlite3_column_int64(s, 0);
		snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
		r->topic = sq_col_dup(s, 2);
		r->created_ms = sqlite3_column_int64(s, 3);
		r->members = sqlite3_column_int64(s, 4);
		r->joined = sqlite3_column_int(s, 5) != 0;
		const char *kind = (const char *)sqlite3_column_text(s, 6);
		snprintf(r->kind, sizeof(r->kind), "%s",
			 kind ? kind : "public");
		r->people =
		    strcmp(r->kind, "dm") == 0 ? sq_col_dup(s, 7) : NULL;
		r->read = sqlite3_column_int64(s, 8);
		r->unread = sqlite3_column_int64(s, 9);
		r->mentions = sqlite3_column_int64(s, 10);
		r->joined_id = sqlite3_column_int64(s, 11);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		store_rooms_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_read_marker_set(struct store *base, int64_t user_id, int64_t room_id,
		       int64_t event_id, int64_t *now)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_READ_SET);
	int rc = SQLITE_ERROR;

	if (s) {
		sqlite3_bind_int64(s, 1, user_id);
		sqlite3_bind_int64(s, 2, room_id);
		sqlite3_bind_int64(s, 3, event_id);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*now = sqlite3_column_int64(s, 0);
			rc = sqlite3_step(s);
		}
	}
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return STORE_NOTFOUND;
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERR;
}

int sq_invite_add(struct store *base, int64_t room_id, int64_t user_id,
		  int64_t by)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_INVITE_ADD);
	int rc = SQLITE_ERROR;

	if (s) {
		sqlite3_bind_int64(s, 1, room_id);
		sqlite3_bind_int64(s, 2, user_id);
		if (by > 0)
			sqlite3_bind_int64(s, 3, by);
		sqlite3_bind_int64(s, 4, now_ms());
		rc = sqlite3_step(s);
	}
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return STORE_NOTFOUND;
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERR;
}

int sq_invites_list(struct store *base, int64_t user_id,
		    struct store_invite **out, size_t *n)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_INVITES_LIST);
	struct store_invite *v = NULL;
	size_t len = 0, cap = 0;
	int rc = SQLITE_ERROR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, user_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_invite *r = SQ_PUSH(v, len, cap, 8);
		const char *room = (const char *)sqlite3_column_text(s, 0);
		const char *kind = (const char *)sqlite3_column_text(s, 1);
		const char *by = (const char *)sqlite3_column_text(s, 2);
		snprintf(r->room, sizeof(r->room), "%s", room ? room : "");
		snprintf(r->kind, sizeof(r->kind), "%s", kind ? kind : "");
		snprintf(r->by, sizeof(r->by), "%s", by ? by : "");
		r->created_ms = sqlite3_column_int64(s, 3);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		free(v);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_room_members(struct store *base, int64_t room_id,
		    struct store_member **out, size_t *n)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_ROOM_MEMBERS);
	struct store_member *v = NULL;
	size_t len = 0, cap = 0;
	int rc = SQLITE_ERROR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *u = (const char *)sqlite3_column_text(s, 0);
		struct store_member *m = SQ_PUSH(v, len, cap, 16);
		snprintf(m->username, sizeof(m->username), "%s", u ? u : "");
		m->display_name = sq_col_dup(s, 1);
		m->role = sqlite3_column_int(s, 2);
		m->avatar = sqlite3_column_type(s, 3) == SQLITE_NULL
				? NULL
				: sq_col_dup(s, 3);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		store_members_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_is_member(struct store *base, int64_t room_id, int64_t user_id)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_IS_MEMBER);
	int rc, ret = -1;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		ret = rc == SQLITE_ROW;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return ret;
}

int sq_users_each(struct store *base,
		  void (*fn)(void *arg, int64_t id, const char *username),
		  void *arg)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_USERS_ALL);
	int rc = SQLITE_ERROR;

	if (s) {
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const char *name =
			    (const char *)sqlite3_column_text(s, 1);
			fn(arg, sqlite3_column_int64(s, 0), name ? name : "");
		}
	}
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return rc == SQLITE_DONE ? 0 : -1;
}

int sq_members_each(struct store *base,
		    void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		    void *arg)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_MEMBERS_ALL);
	int64_t *pairs = NULL;
	size_t n = 0, cap = 0;
	int rc = SQLITE_ERROR;

	if (s) {
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				pairs =
				    xrealloc(pairs, cap * 2 * sizeof(*pairs));
			}
			pairs[2 * n] = sqlite3_column_int64(s, 0);
			pairs[2 * n + 1] = sqlite3_column_int64(s, 1);
			n++;
		}
	}
	sq_stmt_done(s);
	sq_pool_put(st, c);
	/* fn runs with no connection held, so it may call the store */
	if (rc == SQLITE_DONE)
		for (size_t i = 0; i < n; i++)
			fn(arg, pairs[2 * i], pairs[2 * i + 1]);
	free(pairs);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* An array of event references that grows. */
struct evarr {
	struct event **v;
	size_t len, cap;
};

static void evarr_push(struct evarr *a, struct event *ev)
{
	if (a->len == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	a->v[a->len++] = ev;
}

static void evarr_release(struct evarr *a)
{
	for (size_t i = 0; i < a->len; i++)
		event_unref(a->v[i]);
	free(a->v);
	*a = (struct evarr){0};
}

int sq_history(struct store *base, int64_t room_id, int64_t before,
	       int64_t after, unsigned limit, struct event ***out, size_t *n,
	       bool *more)
{
	struct sq *st = sq_of(base);
	bool asc = after >= 0;
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, asc ? Q_HISTORY_ASC : Q_HISTORY_DESC);
	struct evarr a = {0};
	unsigned rows = 0;
	int rc = SQLITE_ERROR;

	if (more)
		*more = false;
	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, asc ? after : -1);
	sqlite3_bind_int64(s, 3, before > 0 ? before : INT64_MAX);
	sqlite3_bind_int64(s, 4, (int64_t)limit + 1); /* one more: *more */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (rows++ == limit) {
			if (more)
				*more = true;
			continue;
		}
		struct event *ev = sq_row_event(s);
		if (!ev) {
			rc = SQLITE_ERROR;
			break;
		}
		evarr_push(&a, ev);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		evarr_release(&a);
		return -1;
	}
	/* newest first from SQLite; the page is oldest first */
	for (size_t i = 0; !asc && i < a.len / 2; i++) {
		struct event *t = a.v[i];
		a.v[i] = a.v[a.len - 1 - i];
		a.v[a.len - 1 - i] = t;
	}
	*out = a.v;
	*n = a.len;
	return 0;
}

/* Append each match to a; SQLITE_DONE or the failure. */
static int search_run(struct conn *c, const struct buf *match, int64_t user_id,
		      int64_t before, unsigned limit, struct evarr *a)
{
	sqlite3_stmt *s = sq_stmt(c, Q_SEARCH);
	int rc;

	if (!s)
		return SQLITE_ERROR;
	sqlite3_bind_text(s, 1, match->data, (int)match->len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, user_id);
	sqlite3_bind_int64(s, 3, limit);
	sqlite3_bind_int64(s, 4, before > 0 ? before : INT64_MAX);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct event *ev = sq_row_event(s);
		if (!ev) {
			rc = SQLITE_ERROR;
			break;
		}
		evarr_push(a, ev);
	}
	sq_stmt_done(s);
	return rc;
}

int sq_search(struct store *base, int64_t user_id, const char *q,
	      int64_t before, unsigned limit, struct event ***out, size_t *n,
	      bool *more)
{
	struct sq *st = sq_of(base);
	struct evarr a = {0};
	struct buf match;
	int rc = SQLITE_DONE;

	buf_init(&match);
	if (q && limit && utf8_valid(q, strlen(q)))
		search_query(q, &match);
	if (match.len) { /* else no word: nothing matches */
		struct conn *c = sq_pool_get(st);
		/* one more than asked for says whether there are more */
		rc = search_run(c, &match, user_id, before, limit + 1, &a);
		sq_pool_put(st, c);
	}
	buf_fini(&match);
	if (rc != SQLITE_DONE) {
		evarr_release(&a);
		return -1;
	}
	*more = a.len > limit;
	if (*more)
		event_unref(a.v[--a.len]);
	*out = a.v;
	*n = a.len;
	return 0;
}

/* A small set of room ids (a user belongs to few rooms). */
struct roomset {
	int64_t *v;
	size_t len, cap;
};

static bool roomset_has(const struct roomset *r, int64_t id)
{
	for (size_t i = 0; i < r->len; i++)
		if (r->v[i] == id)
			return true;
	return false;
}

static void roomset_set(struct roomset *r, int64_t id, bool in)
{
	for (size_t i = 0; i < r->len; i++) {
		if (r->v[i] == id) {
			if (!in)
				r->v[i] = r->v[--r->len];
			return;
		}
	}
	if (!in)
		return;
	if (r->len == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->len++] = id;
}

/* The rooms user_id belonged to just after event `after`: today's rooms,
 * with the user's own membership changes since then undone, newest first.
 * The writer only adds a member who is not one and only removes one who
 * is, so undoing an add removes and undoing a remove adds. SQLITE_DONE or
 * the failure. */
static int rooms_at(struct conn *c, int64_t user_id, int64_t after,
		    struct roomset *rooms)
{
	sqlite3_stmt *s = sq_stmt(c, Q_USER_ROOMS);
	int rc;

	if (!s)
		return SQLITE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		roomset_set(rooms, sqlite3_column_int64(s, 0), true);
	sq_stmt_done(s);
	if (rc != SQLITE_DONE)
		return rc;
	s = sq_stmt(c, Q_USER_EVENTS_DESC);
	if (!s)
		return SQLITE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, after);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		enum event_type t;
		if (evtype_parse((const char *)sqlite3_column_text(s, 1), &t))
			continue;
		int change = evtype_membership(t);
		if (change)
			roomset_set(rooms, sqlite3_column_int64(s, 0),
				    change < 0);
	}
	sq_stmt_done(s);
	return rc;
}

/* Replay follows membership as of each event, exactly as a live subscriber
 * would have received it (the bus's ring replay follows the same rule):
 * an event is the user's if the user was a member of its room at that
 * event, where the user's own join (or room creation) counts from that
 * event on, and the user's own leave is delivered and nothing of that
 * room after it until a new join. All in one read transaction, so the
 * membership and the events are of one moment. */
int sq_events_after(struct store *base, int64_t user_id, int64_t after,
		    size_t limit, struct event ***out, size_t *n)
{
	struct sq *st = sq_of(base);
	struct evarr a = {0};
	struct roomset rooms = {0};
	struct conn *c;
	sqlite3_stmt *s = NULL;
	bool in_tx = false;
	int rc = SQLITE_ERROR;

	*out = NULL;
	*n = 0;
	if (limit == 0)
		return 0;
	c = sq_pool_get(st);
	if (sq_run(c, Q_READ_BEGIN) != SQLITE_OK)
		goto fail;
	in_tx = true;
	rc = rooms_at(c, user_id, after, &rooms);
	if (rc != SQLITE_DONE)
		goto fail;
	s = sq_stmt(c, Q_EVENTS_AFTER);
	if (!s) {
		rc = SQLITE_ERROR;
		goto fail;
	}
	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, user_id);
	while (a.len < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct event *ev = sq_row_event(s);
		if (!ev) {
			rc = SQLITE_ERROR;
			break;
		}
		int change = event_subject(ev) == user_id
				 ? evtype_membership(event_type(ev))
				 : 0;
		if (change > 0)
			roomset_set(&rooms, event_room(ev), true);
		if (roomset_has(&rooms, event_room(ev)))
			evarr_push(&a, ev);
		else
			event_unref(ev);
		if (change < 0)
			roomset_set(&rooms, event_room(ev), false);
	}
	if (a.len == limit && rc == SQLITE_ROW)
		rc = SQLITE_DONE;
fail:
	sq_stmt_done(s);
	if (in_tx)
		sq_run(c, Q_COMMIT);
	sq_pool_put(st, c);
	free(rooms.v);
	if (rc != SQLITE_DONE) {
		evarr_release(&a);
		return -1;
	}
	*out = a.v;
	*n = a.len;
	return 0;
}
