/* store/postgresql/reads: rooms and members, history pages and search as
 * shared event references (the stored envelopes, never re-parsed), and the
 * events after a cursor that a reconnecting client may see. Each read
 * borrows a connection from the pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "model/search.h"
#include "store/postgresql/pg.h"
#include "util/util.h"

/* --- rooms and history ---------------------------------------------------- */

int pgs_room_by_name(struct store *base, const char *name, int64_t *room_id,
		     char name_out[33])
{
	struct pgst *st = pgs_of(base);
	struct pconn *c;
	struct pstmt *s;
	int rc, status = STORE_ERR;

	if (!name)
		return STORE_NOTFOUND;
	c = pgs_pool_get(st);
	s = pgs_stmt(c, Q_ROOM_BY_NAME);
	if (!s)
		goto fail;
	pg_bind_text(s, 1, name);
	rc = pg_step(s);
	if (rc == PG_DONE)
		status = STORE_NOTFOUND;
	if (rc != PG_ROW)
		goto fail;
	if (room_id)
		*room_id = pg_col_int64(s, 0);
	if (name_out) {
		const char *t = (const char *)pg_col_text(s, 1);
		snprintf(name_out, 33, "%s", t ? t : "");
	}
	status = STORE_OK;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_rooms_list(struct store *base, int64_t user_id, struct store_room **out,
		   size_t *n)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_ROOMS_LIST);
	struct store_room *v = NULL;
	size_t len = 0, cap = 0;
	int rc = PG_ERROR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, user_id);
	while ((rc = pg_step(s)) == PG_ROW) {
		const char *name = (const char *)pg_col_text(s, 1);
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		struct store_room *r = &v[len++];
		r->id = pg_col_int64(s, 0);
		snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
		r->topic = pgs_col_dup(s, 2);
		r->created_ms = pg_col_int64(s, 3);
		r->members = pg_col_int64(s, 4);
		r->joined = pg_col_int64(s, 5) != 0;
		const char *kind = (const char *)pg_col_text(s, 6);
		snprintf(r->kind, sizeof(r->kind), "%s",
			 kind ? kind : "public");
		r->people =
		    strcmp(r->kind, "dm") == 0 ? pgs_col_dup(s, 7) : NULL;
		r->read = pg_col_int64(s, 8);
		r->unread = pg_col_int64(s, 9);
		r->mentions = pg_col_int64(s, 10);
		r->joined_id = pg_col_int64(s, 11);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
		store_rooms_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int pgs_read_marker_set(struct store *base, int64_t user_id, int64_t room_id,
			int64_t event_id, int64_t *now)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_READ_SET);
	int rc = PG_ERROR;

	if (s) {
		pg_bind_int64(s, 1, user_id);
		pg_bind_int64(s, 2, room_id);
		pg_bind_int64(s, 3, event_id);
		rc = pg_step(s);
		if (rc == PG_ROW) {
			*now = pg_col_int64(s, 0);
			rc = pg_step(s);
		}
	}
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if ((rc & 0xff) == PG_CONSTRAINT)
		return STORE_NOTFOUND;
	return rc == PG_DONE ? STORE_OK : STORE_ERR;
}

int pgs_invite_add(struct store *base, int64_t room_id, int64_t user_id,
		   int64_t by)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_INVITE_ADD);
	int rc = PG_ERROR;

	if (s) {
		pg_bind_int64(s, 1, room_id);
		pg_bind_int64(s, 2, user_id);
		if (by > 0)
			pg_bind_int64(s, 3, by);
		pg_bind_int64(s, 4, now_ms());
		rc = pg_step(s);
	}
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if ((rc & 0xff) == PG_CONSTRAINT)
		return STORE_NOTFOUND;
	return rc == PG_DONE ? STORE_OK : STORE_ERR;
}

int pgs_invites_list(struct store *base, int64_t user_id,
		     struct store_invite **out, size_t *n)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_INVITES_LIST);
	struct store_invite *v = NULL;
	size_t len = 0, cap = 0;
	int rc = PG_ERROR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, user_id);
	while ((rc = pg_step(s)) == PG_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		struct store_invite *r = &v[len++];
		const char *room = (const char *)pg_col_text(s, 0);
		const char *kind = (const char *)pg_col_text(s, 1);
		const char *by = (const char *)pg_col_text(s, 2);
		snprintf(r->room, sizeof(r->room), "%s", room ? room : "");
		snprintf(r->kind, sizeof(r->kind), "%s", kind ? kind : "");
		snprintf(r->by, sizeof(r->by), "%s", by ? by : "");
		r->created_ms = pg_col_int64(s, 3);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
		free(v);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int pgs_room_members(struct store *base, int64_t room_id,
		     struct store_member **out, size_t *n)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_ROOM_MEMBERS);
	struct store_member *v = NULL;
	size_t len = 0, cap = 0;
	int rc = PG_ERROR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	while ((rc = pg_step(s)) == PG_ROW) {
		const char *u = (const char *)pg_col_text(s, 0);
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		struct store_member *m = &v[len++];
		snprintf(m->username, sizeof(m->username), "%s", u ? u : "");
		m->display_name = pgs_col_dup(s, 1);
		m->role = pg_col_int64(s, 2);
		m->avatar = pg_col_null(s, 3) ? NULL : pgs_col_dup(s, 3);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
		store_members_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

int pgs_is_member(struct store *base, int64_t room_id, int64_t user_id)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_IS_MEMBER);
	int rc, ret = -1;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, user_id);
	rc = pg_step(s);
	if (rc == PG_ROW || rc == PG_DONE)
		ret = rc == PG_ROW;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return ret;
}

int pgs_users_each(struct store *base,
		   void (*fn)(void *arg, int64_t id, const char *username),
		   void *arg)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_USERS_ALL);
	int rc = PG_ERROR;

	if (s) {
		while ((rc = pg_step(s)) == PG_ROW) {
			const char *name = (const char *)pg_col_text(s, 1);
			fn(arg, pg_col_int64(s, 0), name ? name : "");
		}
	}
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return rc == PG_DONE ? 0 : -1;
}

int pgs_members_each(struct store *base,
		     void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		     void *arg)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_MEMBERS_ALL);
	int64_t *pairs = NULL;
	size_t n = 0, cap = 0;
	int rc = PG_ERROR;

	if (s) {
		while ((rc = pg_step(s)) == PG_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				pairs =
				    xrealloc(pairs, cap * 2 * sizeof(*pairs));
			}
			pairs[2 * n] = pg_col_int64(s, 0);
			pairs[2 * n + 1] = pg_col_int64(s, 1);
			n++;
		}
	}
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	/* fn runs with no connection held, so it may call the store */
	if (rc == PG_DONE)
		for (size_t i = 0; i < n; i++)
			fn(arg, pairs[2 * i], pairs[2 * i + 1]);
	free(pairs);
	return rc == PG_DONE ? 0 : -1;
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

int pgs_history(struct store *base, int64_t room_id, int64_t before,
		int64_t after, unsigned limit, struct event ***out, size_t *n,
		bool *more)
{
	struct pgst *st = pgs_of(base);
	bool asc = after >= 0;
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, asc ? Q_HISTORY_ASC : Q_HISTORY_DESC);
	struct evarr a = {0};
	unsigned rows = 0;
	int rc = PG_ERROR;

	if (more)
		*more = false;
	if (!s)
		goto fail;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, asc ? after : -1);
	pg_bind_int64(s, 3, before > 0 ? before : INT64_MAX);
	pg_bind_int64(s, 4, (int64_t)limit + 1); /* one more: *more */
	while ((rc = pg_step(s)) == PG_ROW) {
		if (rows++ == limit) {
			if (more)
				*more = true;
			continue;
		}
		struct event *ev = pgs_row_event(s);
		if (!ev) {
			rc = PG_ERROR;
			break;
		}
		evarr_push(&a, ev);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
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

/* search_query()'s FTS5 query (quoted words, each a prefix when followed
 * by '*', a CJK run a quoted phrase of bigrams) as the same query for
 * to_tsquery: 'word':* for a prefix, ('ab' <-> 'bc') for a phrase, all
 * joined by &. Every lexeme is quoted (a ' doubled), so no word is ever
 * tsquery syntax. */
static void tsquery_of(const struct buf *match, struct buf *out)
{
	const char *p = match->data, *end = match->data + match->len;
	bool first = true;

	while (p < end) {
		const char *q;
		bool phrase = false;
		if (*p != '"') {
			p++;
			continue;
		}
		q = memchr(p + 1, '"', (size_t)(end - p - 1));
		if (!q)
			break;
		for (const char *w = p + 1; w < q; w++)
			phrase |= *w == ' ';
		buf_puts(out, first ? "(" : " & (");
		first = false;
		for (const char *w = p + 1; w < q;) {
			const char *e = w;
			while (e < q && *e != ' ')
				e++;
			if (w > p + 1)
				buf_puts(out, " <-> ");
			buf_puts(out, "'");
			for (const char *k = w; k < e; k++) {
				if (*k == '\\' || *k == '\'')
					buf_append(out, k, 1);
				buf_append(out, k, 1);
			}
			buf_puts(out, "'");
			w = e < q ? e + 1 : e;
		}
		p = q + 1;
		if (p < end && *p == '*') {
			if (!phrase)
				buf_puts(out, ":*");
			p++;
		}
		buf_puts(out, ")");
	}
}

/* Append each match to a; PG_DONE or the failure. */
static int search_run(struct pconn *c, const struct buf *match, int64_t user_id,
		      int64_t before, unsigned limit, struct evarr *a)
{
	struct pstmt *s = pgs_stmt(c, Q_SEARCH);
	int rc;

	if (!s)
		return PG_ERROR;
	pg_bind_textn(s, 1, match->data, match->len);
	pg_bind_int64(s, 2, user_id);
	pg_bind_int64(s, 3, limit);
	pg_bind_int64(s, 4, before > 0 ? before : INT64_MAX);
	while ((rc = pg_step(s)) == PG_ROW) {
		struct event *ev = pgs_row_event(s);
		if (!ev) {
			rc = PG_ERROR;
			break;
		}
		evarr_push(a, ev);
	}
	pgs_stmt_done(s);
	return rc;
}

int pgs_search(struct store *base, int64_t user_id, const char *q,
	       int64_t before, unsigned limit, struct event ***out, size_t *n,
	       bool *more)
{
	struct pgst *st = pgs_of(base);
	struct evarr a = {0};
	struct buf match;
	int rc = PG_DONE;

	buf_init(&match);
	if (q && limit && utf8_valid(q, strlen(q))) {
		struct buf fts;
		buf_init(&fts);
		search_query(q, &fts);
		tsquery_of(&fts, &match);
		buf_fini(&fts);
	}
	if (match.len) { /* else no word: nothing matches */
		struct pconn *c = pgs_pool_get(st);
		/* one more than asked for says whether there are more */
		rc = search_run(c, &match, user_id, before, limit + 1, &a);
		pgs_pool_put(st, c);
	}
	buf_fini(&match);
	if (rc != PG_DONE) {
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
 * is, so undoing an add removes and undoing a remove adds. PG_DONE or
 * the failure. */
static int rooms_at(struct pconn *c, int64_t user_id, int64_t after,
		    struct roomset *rooms)
{
	struct pstmt *s = pgs_stmt(c, Q_USER_ROOMS);
	int rc;

	if (!s)
		return PG_ERROR;
	pg_bind_int64(s, 1, user_id);
	while ((rc = pg_step(s)) == PG_ROW)
		roomset_set(rooms, pg_col_int64(s, 0), true);
	pgs_stmt_done(s);
	if (rc != PG_DONE)
		return rc;
	s = pgs_stmt(c, Q_USER_EVENTS_DESC);
	if (!s)
		return PG_ERROR;
	pg_bind_int64(s, 1, user_id);
	pg_bind_int64(s, 2, after);
	while ((rc = pg_step(s)) == PG_ROW) {
		enum event_type t;
		if (evtype_parse((const char *)pg_col_text(s, 1), &t))
			continue;
		int change = evtype_membership(t);
		if (change)
			roomset_set(rooms, pg_col_int64(s, 0), change < 0);
	}
	pgs_stmt_done(s);
	return rc;
}

/* Replay follows membership as of each event, exactly as a live subscriber
 * would have received it (the bus's ring replay follows the same rule):
 * an event is the user's if the user was a member of its room at that
 * event, where the user's own join (or room creation) counts from that
 * event on, and the user's own leave is delivered and nothing of that
 * room after it until a new join. All in one read transaction, so the
 * membership and the events are of one moment. */
int pgs_events_after(struct store *base, int64_t user_id, int64_t after,
		     size_t limit, struct event ***out, size_t *n)
{
	struct pgst *st = pgs_of(base);
	struct evarr a = {0};
	struct roomset rooms = {0};
	struct pconn *c;
	struct pstmt *s = NULL;
	bool in_tx = false;
	int rc = PG_ERROR;

	*out = NULL;
	*n = 0;
	if (limit == 0)
		return 0;
	c = pgs_pool_get(st);
	if (pgs_run(c, Q_READ_BEGIN) != PG_OK)
		goto fail;
	in_tx = true;
	rc = rooms_at(c, user_id, after, &rooms);
	if (rc != PG_DONE)
		goto fail;
	s = pgs_stmt(c, Q_EVENTS_AFTER);
	if (!s) {
		rc = PG_ERROR;
		goto fail;
	}
	pg_bind_int64(s, 1, after);
	pg_bind_int64(s, 2, user_id);
	while (a.len < limit && (rc = pg_step(s)) == PG_ROW) {
		struct event *ev = pgs_row_event(s);
		if (!ev) {
			rc = PG_ERROR;
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
	if (a.len == limit && rc == PG_ROW)
		rc = PG_DONE;
fail:
	pgs_stmt_done(s);
	if (in_tx)
		pgs_run(c, Q_COMMIT);
	pgs_pool_put(st, c);
	free(rooms.v);
	if (rc != PG_DONE) {
		evarr_release(&a);
		return -1;
	}
	*out = a.v;
	*n = a.len;
	return 0;
}

/* A history page's reactions (store_reactions). */
int pgs_reactions(struct store *base, int64_t user_id, int64_t room_id,
		  int64_t lo, int64_t hi, struct store_reaction **out,
		  size_t *n)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_REACTIONS_PAGE);
	struct store_reaction *v = NULL;
	size_t len = 0, cap = 0;
	int rc = PG_ERROR;

	*out = NULL;
	*n = 0;
	if (!s)
		goto done;
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, lo);
	pg_bind_int64(s, 3, hi);
	pg_bind_int64(s, 4, user_id);
	while ((rc = pg_step(s)) == PG_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		struct store_reaction *r = &v[len++];
		r->message_id = pg_col_int64(s, 0);
		snprintf(r->emoji, sizeof(r->emoji), "%s", pg_col_text(s, 1));
		r->count = pg_col_int64(s, 2);
		r->me = pg_col_int64(s, 3) != 0;
	}
done:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (rc != PG_DONE) {
		free(v);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}
