/* store/postgresql/effects: the store effects the writer applies for an
 * event type's row (w_effect): edits and deletes of a target event (the
 * target lookup, the edit history scrub), bans, the join rule of private
 * rooms, and opening direct conversations (w_dm_open), with their helpers.
 *
 * It deliberately does not do: the writer thread, batching, transactions,
 * the event insert itself or the membership rows (writer.c); it runs only
 * inside a job on the writer thread. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#include "model/emoji.h"
#include "model/markdown.h"
#include "store/postgresql/pg.h"
#include "model/search.h"
#include "util/util.h"

/* The newest event of type naming the job's target as the job's
 * duplicate: STORE_DUPLICATE with it in j->ev, or STORE_NOTARGET. */
static int pw_target_last(struct pgst *st, struct job *j, const char *type)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_TARGET_LAST);
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, j->target_id);
	pg_bind_text(s, 2, type);
	rc = pg_step(s);
	if (rc == PG_ROW)
		j->ev = pgs_row_event(s);
	else if (rc != PG_DONE)
		return pw_stmt_fail(st, s, rc);
	pgs_stmt_done(s);
	if (rc == PG_DONE)
		return STORE_NOTARGET;
	return j->ev ? STORE_DUPLICATE : STORE_ERR;
}

static int pw_event_set(struct pgst *st, int64_t id, const char *text,
			const char *json)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_EVENT_SET);
	int rc;

	char *indexed = NULL;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, id);
	if (text) {
		pg_bind_text(s, 2, text);
		/* the index follows the text and keeps the files' names
		 * (SQLite: a trigger); only an edit of a message with files
		 * parses its envelope */
		json_t *env = strstr(json, "\"files\"")
				  ? json_loads(json, 0, NULL)
				  : NULL;
		indexed = pw_index_text(text, json_object_get(env, "files"));
		json_decref(env);
		pg_bind_text(s, 4, indexed); /* NULL: not UTF-8 */
	}
	pg_bind_text(s, 3, json);
	rc = pg_step(s);
	pgs_stmt_done(s);
	free(indexed);
	return rc == PG_DONE ? STORE_OK : pw_fail(rc);
}

/* An envelope with its members changed: drop each of `drop` (NULL-ended),
 * then set `set` (may be NULL). A malloc'd string, or NULL. */
static char *json_reshape(const char *json, const char *const *drop,
			  json_t *set)
{
	json_t *o = json_loads(json, 0, NULL);
	char *out = NULL;

	if (!json_is_object(o))
		goto out;
	for (size_t i = 0; drop && drop[i]; i++)
		json_object_del(o, drop[i]);
	if (set && json_object_update(o, set))
		goto out;
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(o);
	return out;
}

/* The job's revision list takes ev (marked a revision, see pg.h). */
static void pw_revised_add(struct job *j, struct event *ev)
{
	event_revision_set(ev);
	j->revised =
	    xrealloc(j->revised, (j->nrevised + 1) * sizeof(*j->revised));
	j->revised[j->nrevised++] = ev;
}

/* Set an event's envelope only (a reply's quote: its text, and so its
 * index, stay). */
static int pw_event_json_set(struct pgst *st, int64_t id, const char *json)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_EVENT_JSON_SET);
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, id);
	pg_bind_text(s, 2, json);
	rc = pg_step(s);
	pgs_stmt_done(s);
	return rc == PG_DONE ? STORE_OK : pw_fail(rc);
}

/* A delete: the text of the message's edits leaves their envelopes too,
 * and the messages replying to it keep only its id and author in their
 * quote ("deleted": true); its reactions go. Each changed envelope is a
 * revision for the bus's ring. */
static int pw_edits_scrub(struct pgst *st, struct job *j, int64_t target)
{
	static const char *const drop[] = {"text", "html", NULL};
	static const char *const drop_quote[] = {"reply_to", NULL};
	struct pstmt *s = pgs_stmt(&st->w, Q_TARGET_EDITS);
	struct event **evs = NULL;
	size_t n = 0;
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, target);
	while ((rc = pg_step(s)) == PG_ROW) {
		struct event *ev = pgs_row_event(s);
		if (!ev)
			continue;
		evs = xrealloc(evs, (n + 1) * sizeof(*evs));
		evs[n++] = ev;
	}
	pgs_stmt_done(s);
	rc = rc == PG_DONE ? STORE_OK : pw_fail(rc);
	for (size_t i = 0; i < n; i++) {
		const char *old = event_json(evs[i], NULL);
		bool edit = event_type(evs[i]) == EVENT_EDIT;
		json_t *set = NULL;
		if (!edit) {
			json_t *env = json_loads(old, 0, NULL);
			json_t *q = json_object_get(env, "reply_to");
			set = json_pack("{s:{s:O?, s:O?, s:b}}", "reply_to",
					"id", json_object_get(q, "id"),
					"author", json_object_get(q, "author"),
					"deleted", 1);
			json_decref(env);
		}
		char *json =
		    rc == STORE_OK
			? json_reshape(old, edit ? drop : drop_quote, set)
			: NULL;
		json_decref(set);
		/* an edit loses its text; a reply keeps its own */
		if (rc == STORE_OK && !json)
			rc = STORE_ERR;
		else if (rc == STORE_OK && edit)
			rc = pw_event_set(st, event_id(evs[i]), NULL, json);
		else if (rc == STORE_OK)
			rc = pw_event_json_set(st, event_id(evs[i]), json);
		if (rc == STORE_OK)
			pw_revised_add(
			    j, event_new(event_id(evs[i]), event_type(evs[i]),
					 event_room(evs[i]), event_user(evs[i]),
					 json, strlen(json)));
		free(json);
		event_unref(evs[i]);
	}
	free(evs);
	if (rc == STORE_OK) {
		/* a deleted message keeps no reactions */
		struct pstmt *d = pgs_stmt(&st->w, Q_REACTIONS_DROP);
		if (!d)
			return pw_stmt_fail(st, d, 0);
		pg_bind_int64(d, 1, target);
		int r = pg_step(d);
		pgs_stmt_done(d);
		rc = r == PG_DONE ? STORE_OK : pw_fail(r);
	}
	return rc;
}

/* A message replying to j->target_id: that must be a message of this room
 * (else STORE_BADREF); the job's reply quote is its id, author and a
 * plain-text excerpt, or "deleted" for a deleted one. */
static int pw_reply(struct pgst *st, struct job *j, int64_t room_id)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_TARGET_GET);
	char *text = NULL, *from = NULL;
	int64_t author = 0;
	bool ok = false;
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, j->target_id);
	rc = pg_step(s);
	if (rc == PG_ROW) {
		ok = pg_col_int64(s, 1) == room_id &&
		     strcmp(pg_col_text(s, 2),
			    evtype_get(EVENT_MESSAGE)->name) == 0;
		author = pg_col_int64(s, 0);
		if (ok && !pg_col_null(s, 3))
			text = pgs_col_dup(s, 3);
	} else if (rc != PG_DONE) {
		return pw_stmt_fail(st, s, rc);
	}
	pgs_stmt_done(s);
	if (!ok)
		return STORE_BADREF;
	rc = pw_user(st, author, &from);
	if (rc != STORE_OK) {
		free(text);
		return rc;
	}
	json_t *q = json_pack("{s:I, s:s}", "id", (json_int_t)j->target_id,
			      "author", from);
	if (text) {
		char *ex =
		    markdown_excerpt(text, strlen(text), EVTYPE_EXCERPT_MAX);
		json_object_set_new(q, "excerpt", json_string(ex));
		free(ex);
	} else {
		json_object_set_new(q, "deleted", json_true());
	}
	free(j->reply);
	j->reply = json_dumps(q, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(q);
	free(from);
	free(text);
	return j->reply ? STORE_OK : STORE_ERR;
}

/* An edit or a delete of message j->target_id, decided here, inside the
 * transaction, so that an edit racing a delete cannot bring text back:
 * the message must be of this room (STORE_NOTARGET) and the sender's
 * (STORE_NOTAUTHOR). An edit of a deleted message is STORE_GONE; an edit
 * to the current text, or a delete of a deleted message, changes nothing
 * and answers the event that made the message so (STORE_DUPLICATE). Else
 * the message's row takes its new state (the search index follows it by
 * the triggers of migration 004) and the job's event is added after. */
static int pw_target_change(struct pgst *st, struct job *j, int64_t room_id)
{
	bool edit = j->row->effect == EVTYPE_EFFECT_EDIT;
	struct pstmt *s = pgs_stmt(&st->w, Q_TARGET_GET);
	char *text = NULL, *json = NULL, *fresh = NULL;
	int64_t author = 0, room = 0;
	bool message = false;
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, j->target_id);
	rc = pg_step(s);
	if (rc == PG_ROW) {
		author = pg_col_int64(s, 0);
		room = pg_col_int64(s, 1);
		message = strcmp((const char *)pg_col_text(s, 2),
				 evtype_get(EVENT_MESSAGE)->name) == 0;
		/* no text: deleted */
		if (!pg_col_null(s, 3))
			text = pgs_col_dup(s, 3);
		json = pgs_col_dup(s, 4);
	} else if (rc != PG_DONE) {
		return pw_stmt_fail(st, s, rc);
	}
	pgs_stmt_done(s);

	if (rc == PG_DONE || !message || room != room_id) {
		rc = STORE_NOTARGET;
	} else if (author != j->user_id && !(j->moderated && !edit)) {
		/* only the author edits; a moderator may also delete */
		rc = STORE_NOTAUTHOR;
	} else if (!text) {
		rc = edit ? STORE_GONE : pw_target_last(st, j, j->row->name);
	} else if (edit && j->text && strcmp(text, j->text) == 0) {
		/* the edit that set this text, or the message as sent */
		rc = pw_target_last(st, j, j->row->name);
		if (rc == STORE_NOTARGET && json) {
			j->ev = event_new(j->target_id, EVENT_MESSAGE, room,
					  author, json, strlen(json));
			rc = STORE_DUPLICATE;
		}
	} else if (edit) {
		char ts[32];
		j->ts = now_ms();
		format_ts(j->ts, ts);
		json_t *set = json_pack("{s:s, s:s?, s:s}", "text", j->text,
					"html", j->html, "edited", ts);
		static const char *const drop[] = {"html", "edited", NULL};
		fresh = set ? json_reshape(json, drop, set) : NULL;
		json_decref(set);
		rc = fresh ? pw_event_set(st, j->target_id, j->text, fresh)
			   : STORE_ERR;
	} else {
		/* a tombstone: the envelope's common members and deleted */
		static const char *const drop[] = {
		    "text", "html", "client_id", "edited", "files", NULL};
		json_t *set = json_pack("{s:b}", "deleted", 1);
		fresh = json_reshape(json, drop, set);
		json_decref(set);
		rc = fresh ? pw_event_set(st, j->target_id, NULL, fresh)
			   : STORE_ERR;
		if (rc == STORE_OK)
			pw_revised_add(j, event_new(j->target_id, EVENT_MESSAGE,
						    room, author, fresh,
						    strlen(fresh)));
		if (rc == STORE_OK)
			rc = pw_edits_scrub(st, j, j->target_id);
		if (rc == STORE_OK)
			st->fts_purge = true;
		/* its files stay only where another message uses them */
		if (rc == STORE_OK) {
			int r = pw_file_uses_del(st, j->target_id);
			rc = r == PG_OK ? STORE_OK : pw_fail(r);
		}
	}
	free(text);
	free(json);
	free(fresh);
	return rc;
}

/* 1 when user_id is banned from room_id, 0 not, or a failure status. */
static int pw_is_banned(struct pgst *st, int64_t room_id, int64_t user_id)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_BAN_GET);
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, user_id);
	rc = pg_step(s);
	if (rc != PG_ROW && rc != PG_DONE)
		return pw_stmt_fail(st, s, rc);
	pgs_stmt_done(s);
	return rc == PG_ROW;
}

/* The ban of the job's subject, by its sender, with the command's reason. */
static int pw_ban_add(struct pgst *st, struct job *j, int64_t room_id)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_BAN_ADD);
	const char *reason =
	    json_string_value(json_object_get(j->args, "reason"));
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, room_id);
	pg_bind_int64(s, 2, j->subject_id);
	pg_bind_int64(s, 3, j->user_id);
	pg_bind_text(s, 4, reason ? reason : "");
	pg_bind_int64(s, 5, now_ms());
	rc = pg_step(s);
	if (rc != PG_DONE)
		return pw_stmt_fail(st, s, rc);
	pgs_stmt_done(s);
	return STORE_OK;
}

/* The room's kind: 'p'ublic, p'r'ivate or 'd'm, or a failure status. */
static int pw_room_kind(struct pgst *st, int64_t room_id)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_ROOM_KIND);
	int rc, kind = 'p';

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, room_id);
	rc = pg_step(s);
	if (rc == PG_ROW) {
		const char *k = (const char *)pg_col_text(s, 0);
		if (k && strcmp(k, "private") == 0)
			kind = 'r';
		else if (k && strcmp(k, "dm") == 0)
			kind = 'd';
	} else if (rc != PG_DONE) {
		return pw_stmt_fail(st, s, rc);
	}
	pgs_stmt_done(s);
	return rc == PG_ROW ? kind : STORE_NOTFOUND;
}

/* Joining a room that is not public: a direct conversation never, a
 * private room only with an invitation, which the join takes. Outsiders
 * learn nothing: the answer is STORE_NOTFOUND, as for no room at all. */
static int pw_join_allowed(struct pgst *st, int64_t room_id, int64_t user_id)
{
	int kind = pw_room_kind(st, room_id);
	if (kind < 0 || kind == 'p')
		return kind < 0 ? kind : STORE_OK;
	if (kind == 'd')
		return STORE_NOTFOUND;
	int rc = pw_member_change(st, Q_INVITE_TAKE, room_id, user_id);
	if (rc != STORE_OK)
		return rc;
	return pg_changes(&st->w) ? STORE_OK : STORE_NOTFOUND;
}

/* One integer from a statement that takes (message, emoji) and answers
 * one row; with a second column into *b when b is not NULL. */
static int pw_reaction_ask(struct pgst *st, enum q q, int64_t msg,
			   const char *emoji, int64_t *a, int64_t *b)
{
	struct pstmt *s = pgs_stmt(&st->w, q);
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, msg);
	pg_bind_text(s, 2, emoji);
	rc = pg_step(s);
	if (rc != PG_ROW)
		return pw_stmt_fail(st, s, rc);
	*a = pg_col_int64(s, 0);
	if (b)
		*b = pg_col_int64(s, 1);
	pgs_stmt_done(s);
	return STORE_OK;
}

/* A reaction added or removed (EVTYPE_EFFECT_REACT), as the SQLite
 * writer's w_react: the reactions table row, the emoji's new count. */
static int pw_react(struct pgst *st, struct job *j, int64_t room_id)
{
	const char *e = json_string_value(json_object_get(j->args, "emoji"));
	int op = evtype_reaction_add(j->args);
	bool add = op == 1;
	char emoji[EMOJI_BYTES_MAX], *text = NULL, *json = NULL;
	int64_t author = 0, room = 0, kinds = 0, has = 0, count = 0;
	bool message = false;
	struct pstmt *s;
	int rc;

	if (!e || op < 0 || emoji_normalize(e, strlen(e), emoji) < 0)
		return STORE_ERR;
	rc = pw_is_member(st, room_id, j->user_id);
	if (rc != 1)
		return rc == 0 ? STORE_NOTMEMBER : rc;
	s = pgs_stmt(&st->w, Q_TARGET_GET);
	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_int64(s, 1, j->target_id);
	rc = pg_step(s);
	if (rc == PG_ROW) {
		author = pg_col_int64(s, 0);
		room = pg_col_int64(s, 1);
		message = strcmp(pg_col_text(s, 2),
				 evtype_get(EVENT_MESSAGE)->name) == 0;
		if (!pg_col_null(s, 3))
			text = pgs_col_dup(s, 3);
		json = pgs_col_dup(s, 4);
	} else if (rc != PG_DONE) {
		return pw_stmt_fail(st, s, rc);
	}
	pgs_stmt_done(s);
	if (rc == PG_DONE || !message || room != room_id) {
		rc = STORE_NOTARGET;
		goto out;
	}
	if (!text) {
		rc = STORE_GONE;
		goto out;
	}
	if (add) {
		rc = pw_reaction_ask(st, Q_REACTION_KINDS, j->target_id, emoji,
				     &kinds, &has);
		if (rc == STORE_OK && !has && kinds >= EVTYPE_REACTIONS_MAX)
			rc = STORE_LIMIT;
		if (rc != STORE_OK)
			goto out;
	}
	s = pgs_stmt(&st->w, add ? Q_REACTION_ADD : Q_REACTION_DEL);
	if (!s) {
		rc = pw_stmt_fail(st, s, 0);
		goto out;
	}
	pg_bind_int64(s, 1, j->target_id);
	pg_bind_text(s, 2, emoji);
	pg_bind_int64(s, 3, j->user_id);
	if (add) {
		pg_bind_int64(s, 4, now_ms());
		/* the id pw_event_add gives this job's event */
		pg_bind_int64(s, 5, st->next_id);
	}
	rc = pg_step(s);
	if (rc != PG_DONE) {
		rc = pw_stmt_fail(st, s, rc);
		goto out;
	}
	pgs_stmt_done(s);
	if (pg_changes(&st->w) == 0) {
		/* nothing changed: no event; the message answers */
		j->ev = event_new(j->target_id, EVENT_MESSAGE, room_id, author,
				  json, strlen(json));
		rc = STORE_DUPLICATE;
		goto out;
	}
	rc = pw_reaction_ask(st, Q_REACTION_COUNT, j->target_id, emoji, &count,
			     NULL);
	if (rc == STORE_OK &&
	    (json_object_set_new(j->args, "emoji", json_string(emoji)) ||
	     json_object_set_new(j->args, "count", json_integer(count))))
		rc = STORE_ERR;
out:
	free(text);
	free(json);
	return rc;
}

/* The type's store effect on an existing room, and the sender check that
 * only the writer can decide (membership inside the transaction). */
int pw_effect(struct pgst *st, struct job *j, int64_t room_id)
{
	int rc;

	switch (j->row->effect) {
	case EVTYPE_EFFECT_REACT:
		return pw_react(st, j, room_id);
	case EVTYPE_EFFECT_MEMBER_ADD:
		rc = pw_is_member(st, room_id, j->user_id);
		if (rc == 1)
			return STORE_EXISTS;
		if (rc != 0)
			return rc;
		rc = pw_is_banned(st, room_id, j->user_id);
		if (rc == 1)
			return STORE_BANNED;
		if (rc != 0)
			return rc;
		rc = pw_join_allowed(st, room_id, j->user_id);
		if (rc != STORE_OK)
			return rc;
		return pw_member_change(st, Q_MEMBER_ADD, room_id, j->user_id);
	case EVTYPE_EFFECT_SUBJECT_REMOVE:
	case EVTYPE_EFFECT_SUBJECT_BAN:
		/* The subject must be a member: the event is their removal
		 * (a ban of a non-member is store_ban_set, no event). */
		if (j->subject_id <= 0)
			return STORE_ERR;
		rc = pw_member_change(st, Q_MEMBER_DEL, room_id, j->subject_id);
		if (rc == STORE_OK && pg_changes(&st->w) == 0)
			rc = STORE_NOTMEMBER;
		if (rc == STORE_OK &&
		    j->row->effect == EVTYPE_EFFECT_SUBJECT_BAN)
			rc = pw_ban_add(st, j, room_id);
		return rc;
	case EVTYPE_EFFECT_MEMBER_REMOVE:
		rc = pw_room_kind(st, room_id);
		if (rc == 'd')
			return STORE_FIXED;
		if (rc < 0)
			return rc;
		rc = pw_member_change(st, Q_MEMBER_DEL, room_id, j->user_id);
		if (rc == STORE_OK && pg_changes(&st->w) == 0)
			rc = STORE_NOTMEMBER;
		return rc;
	case EVTYPE_EFFECT_NONE:
		if (j->row->sender != EVTYPE_FROM_MEMBER)
			return STORE_OK;
		rc = pw_is_member(st, room_id, j->user_id);
		if (rc == 0)
			return STORE_NOTMEMBER;
		if (rc == 1 && j->row->searchable && j->target_id > 0)
			return pw_reply(st, j, room_id);
		return rc == 1 ? STORE_OK : rc;
	case EVTYPE_EFFECT_EDIT:
	case EVTYPE_EFFECT_DELETE:
		rc = pw_is_member(st, room_id, j->user_id);
		if (rc == 0)
			return STORE_NOTMEMBER;
		if (rc != 1)
			return rc;
		return pw_target_change(st, j, room_id);
	case EVTYPE_EFFECT_ROOM_CREATE:
	case EVTYPE_EFFECT_DM_OPEN:
		break; /* handled before the room exists */
	}
	return STORE_ERR;
}

/* Append an event of type by user_id (named from) in room without input
 * of its own (a join), to j->more. */
static int pw_event_more(struct pgst *st, struct job *j, enum event_type type,
			 int64_t user_id, int64_t room_id, const char *room,
			 const char *from)
{
	int64_t id = st->next_id, ts = now_ms();
	size_t len;
	char *json = event_envelope_input(id, type, room, from, ts, NULL, &len);
	struct pstmt *s = pgs_stmt(&st->w, Q_EVENT_ADD);
	int rc = 0;

	assert(j->nmore < ARRAY_LEN(j->more));
	if (!json)
		goto fail;
	if (!s) {
		rc = pg_errcode(&st->w);
		goto fail;
	}
	pg_bind_int64(s, 1, id);
	pg_bind_int64(s, 2, room_id);
	pg_bind_text(s, 3, evtype_get(type)->name);
	pg_bind_int64(s, 4, user_id);
	pg_bind_int64(s, 5, ts);
	pg_bind_textn(s, 8, json, len);
	rc = pg_step(s);
	pgs_stmt_done(s);
	if (rc != PG_DONE)
		goto fail;
	st->next_id++;
	j->more[j->nmore++] = event_new(id, type, room_id, user_id, json, len);
	free(json);
	return STORE_OK;
fail:
	free(json);
	return rc ? pw_fail(rc) : STORE_ERR;
}

struct dm_person {
	int64_t id;
	char *name;
};

static int person_cmp(const void *a, const void *b)
{
	const struct dm_person *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

static int name_cmp(const void *a, const void *b)
{
	const struct dm_person *x = a, *y = b;
	return strcasecmp(x->name, y->name);
}

/* A user by name: STORE_OK with id and canonical name, or STORE_NOUSER. */
static int pw_user_by_name(struct pgst *st, const char *name,
			   struct dm_person *p)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_USER_ID_BY_NAME);
	int rc;

	if (!s)
		return pw_stmt_fail(st, s, 0);
	pg_bind_text(s, 1, name);
	rc = pg_step(s);
	if (rc == PG_ROW) {
		p->id = pg_col_int64(s, 0);
		p->name = pgs_col_dup(s, 1);
	} else if (rc != PG_DONE) {
		return pw_stmt_fail(st, s, rc);
	}
	pgs_stmt_done(s);
	return rc == PG_ROW ? STORE_OK : STORE_NOUSER;
}

/* The direct conversation of the sender and args "users": the first dm
 * event of an existing one (STORE_DUPLICATE), or a new room of kind dm
 * named dm-<id> with every person a member, its dm event by the sender
 * (whose envelope lists the people), then a join event for each of the
 * others, so that the bus and a replay from history see each membership
 * begin at its own event, exactly as for a join. */
int pw_dm_open(struct pgst *st, struct job *j)
{
	json_t *users = j->args ? json_object_get(j->args, "users") : NULL;
	struct dm_person p[EVTYPE_DM_USERS_MAX + 1] = {{0}};
	struct buf key;
	size_t n = 0, i;
	json_t *v;
	int64_t room_id = 0;
	char room[33];
	struct pstmt *s;
	int rc;

	if (!json_is_array(users) || json_array_size(users) == 0 ||
	    json_array_size(users) > EVTYPE_DM_USERS_MAX)
		return STORE_ERR;
	buf_init(&key);
	rc = pw_user(st, j->user_id, &p[n].name);
	if (rc != STORE_OK)
		goto out;
	p[n++].id = j->user_id;
	json_array_foreach(users, i, v)
	{
		struct dm_person q = {0};
		const char *name = json_string_value(v);
		rc = name ? pw_user_by_name(st, name, &q) : STORE_ERR;
		if (rc != STORE_OK)
			goto out;
		bool seen = false;
		for (size_t k = 0; k < n && !seen; k++)
			seen = p[k].id == q.id;
		if (seen) {
			free(q.name);
			continue;
		}
		p[n++] = q;
	}
	/* the key: the user ids, sorted, joined by commas */
	qsort(p, n, sizeof(p[0]), person_cmp);
	for (i = 0; i < n; i++)
		buf_printf(&key, "%s%lld", i ? "," : "", (long long)p[i].id);

	s = pgs_stmt(&st->w, Q_DM_BY_KEY);
	if (!s) {
		rc = pw_stmt_fail(st, s, 0);
		goto out;
	}
	pg_bind_textn(s, 1, key.data, key.len);
	rc = pg_step(s);
	if (rc == PG_ROW)
		room_id = pg_col_int64(s, 0);
	else if (rc != PG_DONE) {
		rc = pw_stmt_fail(st, s, rc);
		goto out;
	}
	pgs_stmt_done(s);
	if (room_id > 0) {
		s = pgs_stmt(&st->w, Q_DM_FIRST);
		if (!s) {
			rc = pw_stmt_fail(st, s, 0);
			goto out;
		}
		pg_bind_int64(s, 1, room_id);
		rc = pg_step(s);
		if (rc == PG_ROW)
			j->ev = pgs_row_event(s);
		else if (rc != PG_DONE) {
			rc = pw_stmt_fail(st, s, rc);
			goto out;
		}
		pgs_stmt_done(s);
		rc = j->ev ? STORE_DUPLICATE : STORE_ERR;
		goto out;
	}

	/* A new room: first under its key (never a valid room name, so it
	 * cannot collide), then named after its id. */
	s = pgs_stmt(&st->w, Q_ROOM_ADD);
	if (!s) {
		rc = pw_stmt_fail(st, s, 0);
		goto out;
	}
	pg_bind_textn(s, 1, key.data, key.len);
	pg_bind_text(s, 2, "");
	pg_bind_int64(s, 3, now_ms());
	pg_bind_int64(s, 4, j->user_id);
	pg_bind_text(s, 5, "dm");
	pg_bind_textn(s, 6, key.data, key.len);
	rc = pg_step(s);
	if (rc != PG_DONE) {
		rc = pw_stmt_fail(st, s, rc);
		goto out;
	}
	pgs_stmt_done(s);
	room_id = pg_last_insert_id(&st->w);
	snprintf(room, sizeof(room), "dm-%lld", (long long)room_id);
	s = pgs_stmt(&st->w, Q_ROOM_RENAME);
	if (!s) {
		rc = pw_stmt_fail(st, s, 0);
		goto out;
	}
	pg_bind_int64(s, 1, room_id);
	pg_bind_text(s, 2, room);
	rc = pg_step(s);
	if (rc != PG_DONE) {
		rc = pw_stmt_fail(st, s, rc);
		goto out;
	}
	pgs_stmt_done(s);
	for (i = 0; i < n; i++) {
		rc = pw_member_change(st, Q_MEMBER_ADD, room_id, p[i].id);
		if (rc != STORE_OK)
			goto out;
	}

	/* The envelope lists the people by their canonical names. */
	qsort(p, n, sizeof(p[0]), name_cmp);
	json_t *people = json_array();
	const char *from = NULL;
	for (i = 0; i < n; i++) {
		json_array_append_new(people, json_string(p[i].name));
		if (p[i].id == j->user_id)
			from = p[i].name;
	}
	json_object_set_new(j->args, "users", people);
	rc = pw_event_add(st, j, room_id, room, from);
	for (i = 0; rc == STORE_OK && i < n; i++)
		if (p[i].id != j->user_id)
			rc = pw_event_more(st, j, EVENT_JOIN, p[i].id, room_id,
					   room, p[i].name);
out:
	for (i = 0; i < ARRAY_LEN(p); i++)
		free(p[i].name);
	buf_fini(&key);
	return rc;
}
