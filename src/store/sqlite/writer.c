/* store/sqlite/writer: the one writer thread that appends persistent
 * events. Jobs are queued, taken in groups (the jobs queued while the
 * previous batch committed, at most commit_batch_max, plus those arriving
 * within commit_interval_ms if that is set), run in one transaction (a
 * savepoint for a job that writes more than one row), and reported (commit
 * hook, then done callbacks) only after COMMIT. Each job is applied as the
 * event-type table says (its store effect, its sender rule, whether it is
 * searchable). The writer is the only inserter into events, so it assigns
 * event ids from an in-memory counter, in commit order. */

#define _GNU_SOURCE /* pthread_setname_np */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#include "store/sqlite/sqlite.h"
#include "util/util.h"

struct job {
	struct job *next;
	enum event_type type;
	const struct evtype *row; /* evtype_get(type), NULL if not a type */
	int64_t user_id, room_id, target_id;
	int64_t subject_id; /* the user the event acts on, or 0 */
	bool moderated;	    /* store_write's: a moderator's delete */
	int64_t ts;	    /* the event's time, once an effect has fixed it */
	char *room_name, *text, *html, *client_id, *topic;
	char *username;	      /* as the caller knows it: canonical, or NULL */
	json_t *args;	      /* a copy, for a type with an extra, else NULL */
	int64_t *mention_ids; /* store_write's, copied */
	size_t nmention_ids;
	char **mention_names;
	size_t nmention_names;
	bool mention_room;
	store_done_fn done;
	void *arg;
	struct timespec queued; /* CLOCK_MONOTONIC */
	int status;
	struct event *ev; /* new or first (duplicate) event */
	bool fresh;	  /* ev is new: goes to the commit hook */
	/* Events the job adds after ev, in id order (the joins of the other
	 * people of a new direct conversation): to the hook after ev. */
	struct event *more[EVTYPE_DM_USERS_MAX];
	size_t nmore;
};

/* Returned inside the writer for a SQLite failure that dooms the batch. */
#define W_FATAL (-100)

/* --- the writer ----------------------------------------------------------- */

static struct job *job_new(const struct store_write *w, store_done_fn done,
			   void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->type = w->type;
	j->row = evtype_get(w->type);
	j->user_id = w->user_id;
	j->room_id = w->room_id;
	j->target_id = w->target_id;
	j->moderated = w->moderated;
	j->subject_id = w->subject_id;
	j->room_name = w->room_name ? xstrdup(w->room_name) : NULL;
	j->username = w->username ? xstrdup(w->username) : NULL;
	j->text = w->text ? xstrdup(w->text) : NULL;
	j->html = w->html ? xstrdup(w->html) : NULL;
	j->client_id =
	    w->client_id && *w->client_id ? xstrdup(w->client_id) : NULL;
	j->topic = w->topic ? xstrdup(w->topic) : NULL;
	/* only a type whose envelope reads it pays for the copy (not a
	 * message: the durable-send path copies nothing more) */
	j->args =
	    w->args && j->row && j->row->extra ? json_deep_copy(w->args) : NULL;
	if (w->nmention_ids) {
		j->mention_ids = xmalloc(w->nmention_ids * sizeof(int64_t));
		memcpy(j->mention_ids, w->mention_ids,
		       w->nmention_ids * sizeof(int64_t));
		j->nmention_ids = w->nmention_ids;
	}
	if (w->nmention_names) {
		j->mention_names =
		    xmalloc(w->nmention_names * sizeof(*j->mention_names));
		for (size_t i = 0; i < w->nmention_names; i++)
			j->mention_names[i] = xstrdup(w->mention_names[i]);
		j->nmention_names = w->nmention_names;
	}
	j->mention_room = w->mention_room;
	j->done = done;
	j->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &j->queued);
	return j;
}

static void job_more_drop(struct job *j)
{
	for (size_t i = 0; i < j->nmore; i++)
		event_unref(j->more[i]);
	j->nmore = 0;
}

static void job_free(struct job *j)
{
	job_more_drop(j);
	event_unref(j->ev);
	free(j->room_name);
	free(j->username);
	free(j->text);
	free(j->html);
	free(j->client_id);
	free(j->topic);
	json_decref(j->args);
	free(j->mention_ids);
	for (size_t i = 0; i < j->nmention_names; i++)
		free(j->mention_names[i]);
	free(j->mention_names);
	free(j);
}

/* A SQLite failure inside a job: a constraint (or a value SQLite will not
 * take) concerns that job alone; anything else (I/O, disk full, memory,
 * lock timeout) the whole batch. */
static int w_fail(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_TOOBIG:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		return STORE_ERR;
	default:
		return W_FATAL;
	}
}

static int w_stmt_fail(struct sq *st, sqlite3_stmt *s, int rc)
{
	sq_stmt_done(s);
	return w_fail(s ? rc : sqlite3_errcode(st->w.db));
}

/* The user's name into *name (caller frees): STORE_OK or STORE_NOTFOUND. */
static int w_user(struct sq *st, int64_t id, char **name)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_USER_NAME);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*name = sq_col_dup(s, 0);
	else if (rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	return rc == SQLITE_ROW ? STORE_OK : STORE_NOTFOUND;
}

/* The room by id, or by name when id is 0: its id and canonical name. */
static int w_room(struct sq *st, int64_t id, const char *name, int64_t *room_id,
		  char **room)
{
	sqlite3_stmt *s;
	int rc;

	if (id <= 0 && !name)
		return STORE_NOTFOUND;
	s = sq_stmt(&st->w, id > 0 ? Q_ROOM_BY_ID : Q_ROOM_BY_NAME);
	if (!s)
		return w_stmt_fail(st, s, 0);
	if (id > 0)
		sqlite3_bind_int64(s, 1, id);
	else
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*room_id = sqlite3_column_int64(s, 0);
		*room = sq_col_dup(s, 1);
	} else if (rc != SQLITE_DONE) {
		return w_stmt_fail(st, s, rc);
	}
	sq_stmt_done(s);
	return rc == SQLITE_ROW ? STORE_OK : STORE_NOTFOUND;
}

/* 1 member, 0 not, or a failure status. */
static int w_is_member(struct sq *st, int64_t room_id, int64_t user_id)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_IS_MEMBER);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	return rc == SQLITE_ROW;
}

static int w_member_change(struct sq *st, enum q q, int64_t room_id,
			   int64_t user_id)
{
	sqlite3_stmt *s = sq_stmt(&st->w, q);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	if (q == Q_MEMBER_ADD)
		sqlite3_bind_int64(s, 3, now_ms());
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	return STORE_OK;
}

/* Append the job's event: next id, envelope, row. The envelope is built
 * from the job's input as the type's row says (a searchable type carries
 * text and client_id, written without jansson: one per message). */
static int w_event_add(struct sq *st, struct job *j, int64_t room_id,
		       const char *room, const char *from)
{
	int64_t id = st->next_id, ts = j->ts ? j->ts : now_ms();
	size_t len;
	struct evtype_input in = {.target_id = j->target_id,
				  .room = room,
				  .text = j->text,
				  .len = j->text ? strlen(j->text) : 0,
				  .client_id = j->client_id,
				  .topic = j->topic,
				  .html = j->html,
				  .args = j->args,
				  .mentions =
				      (const char *const *)j->mention_names,
				  .nmentions = j->nmention_names};
	char *json =
	    event_envelope_input(id, j->type, room, from, ts, &in, &len);
	sqlite3_stmt *s = sq_stmt(&st->w, Q_EVENT_ADD);
	int rc = 0;

	if (!json)
		goto fail;
	if (!s) {
		rc = sqlite3_errcode(st->w.db);
		goto fail;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, room_id);
	sqlite3_bind_text(s, 3, j->row->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, j->user_id);
	sqlite3_bind_int64(s, 5, ts);
	if (j->row->searchable) {
		/* text set means indexed (Q_FTS_INDEX) */
		if (j->client_id)
			sqlite3_bind_text(s, 6, j->client_id, -1,
					  SQLITE_STATIC);
		sqlite3_bind_text(s, 7, j->text, -1, SQLITE_STATIC);
	}
	sqlite3_bind_text(s, 8, json, (int)len, SQLITE_STATIC);
	if (j->target_id > 0)
		sqlite3_bind_int64(s, 9, j->target_id);
	if (j->subject_id)
		sqlite3_bind_int64(s, 10, j->subject_id);
	rc = sqlite3_step(s);
	sq_stmt_done(s);
	if (rc != SQLITE_DONE)
		goto fail;
	st->next_id++;
	for (size_t i = 0; i < j->nmention_ids; i++) {
		s = sq_stmt(&st->w, Q_MENTION_ADD);
		if (!s) {
			rc = sqlite3_errcode(st->w.db);
			goto fail;
		}
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, j->mention_ids[i]);
		rc = sqlite3_step(s);
		sq_stmt_done(s);
		if (rc != SQLITE_DONE)
			goto fail;
	}
	if (j->mention_room) {
		s = sq_stmt(&st->w, Q_MENTION_ROOM);
		if (!s) {
			rc = sqlite3_errcode(st->w.db);
			goto fail;
		}
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, room_id);
		sqlite3_bind_int64(s, 3, j->user_id);
		rc = sqlite3_step(s);
		sq_stmt_done(s);
		if (rc != SQLITE_DONE)
			goto fail;
	}
	j->ev = event_new(id, j->type, room_id, j->user_id, json, len);
	if (j->subject_id)
		event_subject_set(j->ev, j->subject_id);
	j->fresh = true;
	free(json);
	return STORE_OK;
fail:
	free(json);
	return rc ? w_fail(rc) : STORE_ERR;
}

/* A message already stored under this user's client_id: STORE_DUPLICATE
 * with it in j->ev, or STORE_OK when there is none. */
static int w_message_dup(struct sq *st, struct job *j)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_EVENT_BY_CLIENT);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, j->user_id);
	sqlite3_bind_text(s, 2, j->client_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		j->ev = sq_row_event(s);
	else if (rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	if (rc == SQLITE_DONE)
		return STORE_OK;
	return j->ev ? STORE_DUPLICATE : STORE_ERR;
}

/* A room-creating event: the room row and the creator's membership; its
 * id and canonical name in *room_id and *room (caller frees). */
static int w_room_create(struct sq *st, struct job *j, int64_t *room_id,
			 char **room)
{
	sqlite3_stmt *s;
	char *taken = NULL;
	int rc;

	if (!j->room_name || !name_valid(j->room_name))
		return STORE_ERR;
	rc = w_room(st, 0, j->room_name, room_id, &taken);
	free(taken);
	if (rc != STORE_NOTFOUND)
		return rc == STORE_OK ? STORE_EXISTS : rc;

	s = sq_stmt(&st->w, Q_ROOM_ADD);
	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_text(s, 1, j->room_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, j->topic ? j->topic : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms());
	sqlite3_bind_int64(s, 4, j->user_id);
	sqlite3_bind_text(
	    s, 5,
	    j->args && json_is_true(json_object_get(j->args, "private"))
		? "private"
		: "public",
	    -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	*room_id = sqlite3_last_insert_rowid(st->w.db);
	*room = xstrdup(j->room_name);
	return w_member_change(st, Q_MEMBER_ADD, *room_id, j->user_id);
}

/* The newest event of type naming the job's target as the job's
 * duplicate: STORE_DUPLICATE with it in j->ev, or STORE_NOTARGET. */
static int w_target_last(struct sq *st, struct job *j, const char *type)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_TARGET_LAST);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, j->target_id);
	sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		j->ev = sq_row_event(s);
	else if (rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	if (rc == SQLITE_DONE)
		return STORE_NOTARGET;
	return j->ev ? STORE_DUPLICATE : STORE_ERR;
}

static int w_event_set(struct sq *st, int64_t id, const char *text,
		       const char *json)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_EVENT_SET);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, id);
	if (text)
		sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, json, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sq_stmt_done(s);
	return rc == SQLITE_DONE ? STORE_OK : w_fail(rc);
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

/* A delete: the text of the message's edits leaves their envelopes too. */
static int w_edits_scrub(struct sq *st, int64_t target)
{
	static const char *const drop[] = {"text", "html", NULL};
	sqlite3_stmt *s = sq_stmt(&st->w, Q_TARGET_EDITS);
	int64_t *ids = NULL;
	char **jsons = NULL;
	size_t n = 0;
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, target);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		jsons = xrealloc(jsons, (n + 1) * sizeof(*jsons));
		ids[n] = sqlite3_column_int64(s, 0);
		jsons[n++] = sq_col_dup(s, 1);
	}
	sq_stmt_done(s);
	rc = rc == SQLITE_DONE ? STORE_OK : w_fail(rc);
	for (size_t i = 0; i < n; i++) {
		char *json =
		    rc == STORE_OK ? json_reshape(jsons[i], drop, NULL) : NULL;
		if (rc == STORE_OK)
			rc = json ? w_event_set(st, ids[i], NULL, json)
				  : STORE_ERR;
		free(json);
		free(jsons[i]);
	}
	free(ids);
	free(jsons);
	return rc;
}

/* An edit or a delete of message j->target_id, decided here, inside the
 * transaction, so that an edit racing a delete cannot bring text back:
 * the message must be of this room (STORE_NOTARGET) and the sender's
 * (STORE_NOTAUTHOR). An edit of a deleted message is STORE_GONE; an edit
 * to the current text, or a delete of a deleted message, changes nothing
 * and answers the event that made the message so (STORE_DUPLICATE). Else
 * the message's row takes its new state (the search index follows it by
 * the triggers of migration 004) and the job's event is added after. */
static int w_target_change(struct sq *st, struct job *j, int64_t room_id)
{
	bool edit = j->row->effect == EVTYPE_EFFECT_EDIT;
	sqlite3_stmt *s = sq_stmt(&st->w, Q_TARGET_GET);
	char *text = NULL, *json = NULL, *fresh = NULL;
	int64_t author = 0, room = 0;
	bool message = false;
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, j->target_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		author = sqlite3_column_int64(s, 0);
		room = sqlite3_column_int64(s, 1);
		message = strcmp((const char *)sqlite3_column_text(s, 2),
				 evtype_get(EVENT_MESSAGE)->name) == 0;
		/* no text: deleted */
		if (sqlite3_column_type(s, 3) != SQLITE_NULL)
			text = sq_col_dup(s, 3);
		json = sq_col_dup(s, 4);
	} else if (rc != SQLITE_DONE) {
		return w_stmt_fail(st, s, rc);
	}
	sq_stmt_done(s);

	if (rc == SQLITE_DONE || !message || room != room_id) {
		rc = STORE_NOTARGET;
	} else if (author != j->user_id && !(j->moderated && !edit)) {
		/* only the author edits; a moderator may also delete */
		rc = STORE_NOTAUTHOR;
	} else if (!text) {
		rc = edit ? STORE_GONE : w_target_last(st, j, j->row->name);
	} else if (edit && j->text && strcmp(text, j->text) == 0) {
		/* the edit that set this text, or the message as sent */
		rc = w_target_last(st, j, j->row->name);
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
		rc = fresh ? w_event_set(st, j->target_id, j->text, fresh)
			   : STORE_ERR;
	} else {
		/* a tombstone: the envelope's common members and deleted */
		static const char *const drop[] = {"text", "html", "client_id",
						   "edited", NULL};
		json_t *set = json_pack("{s:b}", "deleted", 1);
		fresh = json_reshape(json, drop, set);
		json_decref(set);
		rc = fresh ? w_event_set(st, j->target_id, NULL, fresh)
			   : STORE_ERR;
		if (rc == STORE_OK)
			rc = w_edits_scrub(st, j->target_id);
		if (rc == STORE_OK)
			st->fts_purge = true;
	}
	free(text);
	free(json);
	free(fresh);
	return rc;
}

/* 1 when user_id is banned from room_id, 0 not, or a failure status. */
static int w_is_banned(struct sq *st, int64_t room_id, int64_t user_id)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_BAN_GET);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, user_id);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	return rc == SQLITE_ROW;
}

/* The ban of the job's subject, by its sender, with the command's reason. */
static int w_ban_add(struct sq *st, struct job *j, int64_t room_id)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_BAN_ADD);
	const char *reason =
	    json_string_value(json_object_get(j->args, "reason"));
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, j->subject_id);
	sqlite3_bind_int64(s, 3, j->user_id);
	sqlite3_bind_text(s, 4, reason ? reason : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, now_ms());
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	return STORE_OK;
}

/* The room's kind: 'p'ublic, p'r'ivate or 'd'm, or a failure status. */
static int w_room_kind(struct sq *st, int64_t room_id)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_ROOM_KIND);
	int rc, kind = 'p';

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, room_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 0);
		if (k && strcmp(k, "private") == 0)
			kind = 'r';
		else if (k && strcmp(k, "dm") == 0)
			kind = 'd';
	} else if (rc != SQLITE_DONE) {
		return w_stmt_fail(st, s, rc);
	}
	sq_stmt_done(s);
	return rc == SQLITE_ROW ? kind : STORE_NOTFOUND;
}

/* Joining a room that is not public: a direct conversation never, a
 * private room only with an invitation, which the join takes. Outsiders
 * learn nothing: the answer is STORE_NOTFOUND, as for no room at all. */
static int w_join_allowed(struct sq *st, int64_t room_id, int64_t user_id)
{
	int kind = w_room_kind(st, room_id);
	if (kind < 0 || kind == 'p')
		return kind < 0 ? kind : STORE_OK;
	if (kind == 'd')
		return STORE_NOTFOUND;
	int rc = w_member_change(st, Q_INVITE_TAKE, room_id, user_id);
	if (rc != STORE_OK)
		return rc;
	return sqlite3_changes(st->w.db) ? STORE_OK : STORE_NOTFOUND;
}

/* The type's store effect on an existing room, and the sender check that
 * only the writer can decide (membership inside the transaction). */
static int w_effect(struct sq *st, struct job *j, int64_t room_id)
{
	int rc;

	switch (j->row->effect) {
	case EVTYPE_EFFECT_MEMBER_ADD:
		rc = w_is_member(st, room_id, j->user_id);
		if (rc == 1)
			return STORE_EXISTS;
		if (rc != 0)
			return rc;
		rc = w_is_banned(st, room_id, j->user_id);
		if (rc == 1)
			return STORE_BANNED;
		if (rc != 0)
			return rc;
		rc = w_join_allowed(st, room_id, j->user_id);
		if (rc != STORE_OK)
			return rc;
		return w_member_change(st, Q_MEMBER_ADD, room_id, j->user_id);
	case EVTYPE_EFFECT_SUBJECT_REMOVE:
	case EVTYPE_EFFECT_SUBJECT_BAN:
		/* The subject must be a member: the event is their removal
		 * (a ban of a non-member is store_ban_set, no event). */
		if (j->subject_id <= 0)
			return STORE_ERR;
		rc = w_member_change(st, Q_MEMBER_DEL, room_id, j->subject_id);
		if (rc == STORE_OK && sqlite3_changes(st->w.db) == 0)
			rc = STORE_NOTMEMBER;
		if (rc == STORE_OK &&
		    j->row->effect == EVTYPE_EFFECT_SUBJECT_BAN)
			rc = w_ban_add(st, j, room_id);
		return rc;
	case EVTYPE_EFFECT_MEMBER_REMOVE:
		rc = w_room_kind(st, room_id);
		if (rc == 'd')
			return STORE_FIXED;
		if (rc < 0)
			return rc;
		rc = w_member_change(st, Q_MEMBER_DEL, room_id, j->user_id);
		if (rc == STORE_OK && sqlite3_changes(st->w.db) == 0)
			rc = STORE_NOTMEMBER;
		return rc;
	case EVTYPE_EFFECT_NONE:
		if (j->row->sender != EVTYPE_FROM_MEMBER)
			return STORE_OK;
		rc = w_is_member(st, room_id, j->user_id);
		if (rc == 0)
			return STORE_NOTMEMBER;
		return rc == 1 ? STORE_OK : rc;
	case EVTYPE_EFFECT_EDIT:
	case EVTYPE_EFFECT_DELETE:
		rc = w_is_member(st, room_id, j->user_id);
		if (rc == 0)
			return STORE_NOTMEMBER;
		if (rc != 1)
			return rc;
		return w_target_change(st, j, room_id);
	case EVTYPE_EFFECT_ROOM_CREATE:
	case EVTYPE_EFFECT_DM_OPEN:
		break; /* handled before the room exists */
	}
	return STORE_ERR;
}

/* Append an event of type by user_id (named from) in room without input
 * of its own (a join), to j->more. */
static int w_event_more(struct sq *st, struct job *j, enum event_type type,
			int64_t user_id, int64_t room_id, const char *room,
			const char *from)
{
	int64_t id = st->next_id, ts = now_ms();
	size_t len;
	char *json = event_envelope_input(id, type, room, from, ts, NULL, &len);
	sqlite3_stmt *s = sq_stmt(&st->w, Q_EVENT_ADD);
	int rc = 0;

	assert(j->nmore < ARRAY_LEN(j->more));
	if (!json)
		goto fail;
	if (!s) {
		rc = sqlite3_errcode(st->w.db);
		goto fail;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, room_id);
	sqlite3_bind_text(s, 3, evtype_get(type)->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, user_id);
	sqlite3_bind_int64(s, 5, ts);
	sqlite3_bind_text(s, 8, json, (int)len, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sq_stmt_done(s);
	if (rc != SQLITE_DONE)
		goto fail;
	st->next_id++;
	j->more[j->nmore++] = event_new(id, type, room_id, user_id, json, len);
	free(json);
	return STORE_OK;
fail:
	free(json);
	return rc ? w_fail(rc) : STORE_ERR;
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
static int w_user_by_name(struct sq *st, const char *name, struct dm_person *p)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_USER_ID_BY_NAME);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		p->id = sqlite3_column_int64(s, 0);
		p->name = sq_col_dup(s, 1);
	} else if (rc != SQLITE_DONE) {
		return w_stmt_fail(st, s, rc);
	}
	sq_stmt_done(s);
	return rc == SQLITE_ROW ? STORE_OK : STORE_NOUSER;
}

/* The direct conversation of the sender and args "users": the first dm
 * event of an existing one (STORE_DUPLICATE), or a new room of kind dm
 * named dm-<id> with every person a member, its dm event by the sender
 * (whose envelope lists the people), then a join event for each of the
 * others, so that the bus and a replay from history see each membership
 * begin at its own event, exactly as for a join. */
static int w_dm_open(struct sq *st, struct job *j)
{
	json_t *users = j->args ? json_object_get(j->args, "users") : NULL;
	struct dm_person p[EVTYPE_DM_USERS_MAX + 1] = {{0}};
	struct buf key;
	size_t n = 0, i;
	json_t *v;
	int64_t room_id = 0;
	char room[33];
	sqlite3_stmt *s;
	int rc;

	if (!json_is_array(users) || json_array_size(users) == 0 ||
	    json_array_size(users) > EVTYPE_DM_USERS_MAX)
		return STORE_ERR;
	buf_init(&key);
	rc = w_user(st, j->user_id, &p[n].name);
	if (rc != STORE_OK)
		goto out;
	p[n++].id = j->user_id;
	json_array_foreach(users, i, v)
	{
		struct dm_person q = {0};
		const char *name = json_string_value(v);
		rc = name ? w_user_by_name(st, name, &q) : STORE_ERR;
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

	s = sq_stmt(&st->w, Q_DM_BY_KEY);
	if (!s) {
		rc = w_stmt_fail(st, s, 0);
		goto out;
	}
	sqlite3_bind_text(s, 1, key.data, (int)key.len, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		room_id = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE) {
		rc = w_stmt_fail(st, s, rc);
		goto out;
	}
	sq_stmt_done(s);
	if (room_id > 0) {
		s = sq_stmt(&st->w, Q_DM_FIRST);
		if (!s) {
			rc = w_stmt_fail(st, s, 0);
			goto out;
		}
		sqlite3_bind_int64(s, 1, room_id);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			j->ev = sq_row_event(s);
		else if (rc != SQLITE_DONE) {
			rc = w_stmt_fail(st, s, rc);
			goto out;
		}
		sq_stmt_done(s);
		rc = j->ev ? STORE_DUPLICATE : STORE_ERR;
		goto out;
	}

	/* A new room: first under its key (never a valid room name, so it
	 * cannot collide), then named after its id. */
	s = sq_stmt(&st->w, Q_ROOM_ADD);
	if (!s) {
		rc = w_stmt_fail(st, s, 0);
		goto out;
	}
	sqlite3_bind_text(s, 1, key.data, (int)key.len, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms());
	sqlite3_bind_int64(s, 4, j->user_id);
	sqlite3_bind_text(s, 5, "dm", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, key.data, (int)key.len, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		rc = w_stmt_fail(st, s, rc);
		goto out;
	}
	sq_stmt_done(s);
	room_id = sqlite3_last_insert_rowid(st->w.db);
	snprintf(room, sizeof(room), "dm-%lld", (long long)room_id);
	s = sq_stmt(&st->w, Q_ROOM_RENAME);
	if (!s) {
		rc = w_stmt_fail(st, s, 0);
		goto out;
	}
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_text(s, 2, room, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		rc = w_stmt_fail(st, s, rc);
		goto out;
	}
	sq_stmt_done(s);
	for (i = 0; i < n; i++) {
		rc = w_member_change(st, Q_MEMBER_ADD, room_id, p[i].id);
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
	rc = w_event_add(st, j, room_id, room, from);
	for (i = 0; rc == STORE_OK && i < n; i++)
		if (p[i].id != j->user_id)
			rc = w_event_more(st, j, EVENT_JOIN, p[i].id, room_id,
					  room, p[i].name);
out:
	for (i = 0; i < ARRAY_LEN(p); i++)
		free(p[i].name);
	buf_fini(&key);
	return rc;
}

/* One job inside the batch's transaction: a status, W_FATAL, and the event
 * in j->ev. Every persistent type runs the same steps, as its row says:
 * a retried client_id, the sender's name, the room (created, or looked
 * up), the store effect, the event. A message whose sender and room the
 * caller already resolved (chat does: usernames never change, rooms are
 * never renamed or deleted) skips both lookups: the durable-send path is
 * a membership check and one INSERT. */
static int job_run(struct sq *st, struct job *j)
{
	char *from = NULL, *room = NULL;
	int64_t room_id = 0;
	int rc;

	if (!j->row || !j->row->persistent ||
	    j->row->sender == EVTYPE_FROM_SERVER)
		return STORE_ERR;
	if (j->row->searchable && !j->text)
		return STORE_ERR;
	if (j->row->searchable && j->client_id) {
		rc = w_message_dup(st, j);
		if (rc != STORE_OK)
			return rc;
	}
	if (j->row->effect == EVTYPE_EFFECT_DM_OPEN)
		return w_dm_open(st, j);
	if (j->username && j->room_id > 0 && j->room_name &&
	    j->row->effect != EVTYPE_EFFECT_ROOM_CREATE) {
		rc = w_effect(st, j, j->room_id);
		if (rc == STORE_OK)
			rc = w_event_add(st, j, j->room_id, j->room_name,
					 j->username);
		return rc;
	}
	rc = w_user(st, j->user_id, &from);
	if (rc != STORE_OK)
		goto out;
	if (j->row->effect == EVTYPE_EFFECT_ROOM_CREATE) {
		rc = w_room_create(st, j, &room_id, &room);
	} else {
		rc = w_room(st, j->room_id, j->room_name, &room_id, &room);
		if (rc == STORE_OK)
			rc = w_effect(st, j, room_id);
	}
	if (rc == STORE_OK)
		rc = w_event_add(st, j, room_id, room, from);
out:
	free(from);
	free(room);
	return rc;
}

static int w_fts_index(struct sq *st, int64_t first)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_FTS_INDEX);
	if (!s)
		return sqlite3_errcode(st->w.db);
	sqlite3_bind_int64(s, 1, first);
	int rc = sqlite3_step(s);
	sq_stmt_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Run the jobs in one transaction, each that writes more than one row
 * under a savepoint. true if it committed; false if SQLite failed and
 * nothing was applied. A message writes one row with one INSERT (the
 * search index follows once per batch): a failed statement is undone
 * by SQLite itself, so it needs no savepoint (two statements saved per
 * message; contrib/bench durable sends). */
/* The writer's last SQLite failure was a full disk: SQLITE_FULL, or an
 * I/O error whose system error is ENOSPC (or EDQUOT, a full quota). */
static bool w_full(sqlite3 *db)
{
	int ec = sqlite3_errcode(db) & 0xff;
	int sys = sqlite3_system_errno(db);
	return ec == SQLITE_FULL ||
	       (ec == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT));
}

static bool batch_apply(struct sq *st, struct job **jobs, size_t n, bool *full)
{
	int64_t first = st->next_id;
	bool messages = false;

	st->fts_purge = false;
	if (sq_run(&st->w, Q_BEGIN) != SQLITE_OK)
		return false;
	for (size_t i = 0; i < n; i++) {
		struct job *j = jobs[i];
		int64_t next = st->next_id;
		/* An event without a store effect is one INSERT. */
		bool sp = !j->row || j->row->effect != EVTYPE_EFFECT_NONE ||
			  j->nmention_ids > 0 || j->mention_room;
		bool changes =
		    j->row && (j->row->effect == EVTYPE_EFFECT_EDIT ||
			       j->row->effect == EVTYPE_EFFECT_DELETE);

		/* An edit or delete may name a message of this batch: the
		 * index must hold it before the triggers take it out. */
		if (changes && messages) {
			if (w_fts_index(st, first) != SQLITE_OK)
				goto fail;
			first = st->next_id;
			messages = false;
		}
		if (sp && sq_run(&st->w, Q_SAVEPOINT) != SQLITE_OK)
			goto fail;
		j->status = job_run(st, j);
		if (j->status == W_FATAL)
			goto fail;
		if (j->status < 0) {
			job_more_drop(j);
			event_unref(j->ev);
			j->ev = NULL;
			j->fresh = false;
			st->next_id = next;
			if (sp && sq_run(&st->w, Q_ROLLBACK_TO) != SQLITE_OK)
				goto fail;
		}
		if (sp && sq_run(&st->w, Q_RELEASE) != SQLITE_OK)
			goto fail;
		messages |= j->fresh && j->row->searchable;
	}
	/* The batch's messages join the search index in one statement
	 * (migration 003), in the same transaction. */
	if (messages && w_fts_index(st, first) != SQLITE_OK)
		goto fail;
	/* A delete's words stay in the index's segments, unsearchable but
	 * in the file, until they are merged: merge them now. This costs
	 * time in proportion to the index, once per batch with a delete. */
	if (st->fts_purge && sq_run(&st->w, Q_FTS_OPTIMIZE) != SQLITE_OK)
		goto fail;
	if (sq_run(&st->w, Q_COMMIT) != SQLITE_OK)
		goto fail;
	return true;
fail:
	*full = w_full(st->w.db);
	/* Some errors (disk full, I/O) have SQLite roll back by itself. */
	if (!sqlite3_get_autocommit(st->w.db))
		sq_run(&st->w, Q_ROLLBACK);
	return false;
}

static void batch_run(struct sq *st, struct job **jobs, size_t n)
{
	int64_t first = st->next_id;
	bool full = false;

	if (batch_apply(st, jobs, n, &full)) {
		atomic_store(&st->last_id, st->next_id - 1);
		/* jobs ran in queue order, so fresh events are in id order */
		for (size_t i = 0; i < n && st->hook; i++) {
			if (!jobs[i]->fresh)
				continue;
			st->hook(st->hook_arg, jobs[i]->ev);
			for (size_t k = 0; k < jobs[i]->nmore; k++)
				st->hook(st->hook_arg, jobs[i]->more[k]);
		}
	} else {
		st->next_id = first;
		for (size_t i = 0; i < n; i++) {
			job_more_drop(jobs[i]);
			event_unref(jobs[i]->ev);
			jobs[i]->ev = NULL;
			jobs[i]->status = full ? STORE_FULL : STORE_ERR;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct job *j = jobs[i];
		if (j->done)
			j->done(j->arg, j->status, j->ev);
		job_free(j);
	}
}

static void deadline_after(struct timespec *ts, const struct timespec *from,
			   unsigned ms)
{
	ts->tv_sec = from->tv_sec + ms / 1000;
	ts->tv_nsec = from->tv_nsec + (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void *sq_writer_main(void *arg)
{
	struct sq *st = arg;

	pthread_setname_np(pthread_self(), "store-writer");
	pthread_mutex_lock(&st->qmu);
	for (;;) {
		struct timespec deadline;
		size_t n = 0;

		while (!st->qhead && !st->closing)
			pthread_cond_wait(&st->qcv, &st->qmu);
		if (!st->qhead)
			break; /* closing, and every job is done */
		/* Group commit: the batch is every job queued while the last
		 * one committed; with commit_interval_ms, also those that come
		 * until that long after the first one queued, unless the batch
		 * is full. The default is 0: on the benchmark machine a 2 ms
		 * window cut acknowledged sends from 17,900/s to 11,000/s
		 * (100 WebSocket senders, one send in flight each) and added
		 * 2 ms to every paced message's latency. */
		deadline_after(&deadline, &st->qhead->queued, st->interval_ms);
		while (st->interval_ms && !st->closing &&
		       st->qlen < st->batch_max &&
		       pthread_cond_timedwait(&st->qcv, &st->qmu, &deadline) !=
			   ETIMEDOUT)
			;
		while (st->qhead && n < st->batch_max) {
			st->batch[n++] = st->qhead;
			st->qhead = st->qhead->next;
			st->qlen--;
		}
		if (!st->qhead)
			st->qtail = &st->qhead;
		pthread_mutex_unlock(&st->qmu);
		batch_run(st, st->batch, n);
		pthread_mutex_lock(&st->qmu);
	}
	pthread_mutex_unlock(&st->qmu);
	return NULL;
}

void sq_write_submit(struct store *base, const struct store_write *w,
		     store_done_fn done, void *arg)
{
	struct sq *st = sq_of(base);
	struct job *j = job_new(w, done, arg);

	pthread_mutex_lock(&st->qmu);
	if (st->closing) {
		pthread_mutex_unlock(&st->qmu);
		job_free(j);
		if (done)
			done(arg, STORE_CLOSED, NULL);
		return;
	}
	*st->qtail = j;
	st->qtail = &j->next;
	/* the writer waits for a first job, then for a full batch */
	if (++st->qlen == 1 || st->qlen >= st->batch_max)
		pthread_cond_signal(&st->qcv);
	pthread_mutex_unlock(&st->qmu);
}

void sq_set_commit_hook(struct store *base,
			void (*hook)(void *arg, struct event *ev), void *arg)
{
	struct sq *st = sq_of(base);
	pthread_mutex_lock(&st->qmu);
	st->hook = hook;
	st->hook_arg = arg;
	pthread_mutex_unlock(&st->qmu);
}

int64_t sq_last_event_id(struct store *base)
{
	struct sq *st = sq_of(base);
	return atomic_load(&st->last_id);
}
