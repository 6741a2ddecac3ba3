/* store/sqlite/writer: the one writer thread that appends persistent
 * events. Jobs are queued, taken in groups (the jobs queued while the
 * previous batch committed, at most commit_batch_max, plus those arriving
 * within commit_interval_ms if that is set), run in one transaction (a
 * savepoint for a job that writes more than one row), and reported (commit
 * hook, then done callbacks) only after COMMIT. Each job is applied as the
 * event-type table says (its store effect, its sender rule, whether it is
 * searchable). The writer is the only inserter into events, so it assigns
 * event ids from an in-memory counter, in commit order. The store effects
 * (edit/delete targets, bans, private-room joins, direct conversations)
 * are in effects.c. */

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
	for (size_t i = 0; i < j->nrevised; i++)
		event_unref(j->revised[i]);
	free(j->revised);
	j->revised = NULL;
	j->nrevised = 0;
	free(j->reply);
	j->reply = NULL;
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
int w_fail(int rc)
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

int w_stmt_fail(struct sq *st, sqlite3_stmt *s, int rc)
{
	sq_stmt_done(s);
	return w_fail(s ? rc : sqlite3_errcode(st->w.db));
}

/* The user's name into *name (caller frees): STORE_OK or STORE_NOTFOUND. */
int w_user(struct sq *st, int64_t id, char **name)
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

int w_row_exists(struct sq *st, enum q q, int64_t a, int64_t b)
{
	sqlite3_stmt *s = sq_stmt(&st->w, q);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return w_stmt_fail(st, s, rc);
	sq_stmt_done(s);
	return rc == SQLITE_ROW;
}

/* 1 member, 0 not, or a failure status. */
int w_is_member(struct sq *st, int64_t room_id, int64_t user_id)
{
	return w_row_exists(st, Q_IS_MEMBER, room_id, user_id);
}

int w_member_change(struct sq *st, enum q q, int64_t room_id, int64_t user_id)
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
int w_event_add(struct sq *st, struct job *j, int64_t room_id, const char *room,
		const char *from)
{
	int64_t id = st->next_id, ts = j->ts ? j->ts : now_ms();
	size_t len;
	if (j->row->files && json_object_get(j->args, "files")) {
		/* upload ids to file objects, in this transaction */
		int frc =
		    store_files_resolve(j->args, j->user_id, w_file_get, st);
		if (frc != STORE_OK)
			return frc;
	}
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
				  .nmentions = j->nmention_names,
				  .reply = j->reply};
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
	if (json_object_get(j->args, "files")) {
		rc = sq_file_uses_add(st, j->args, id, room_id);
		if (rc != SQLITE_OK)
			goto fail;
		rc = 0;
	}
	j->ev = event_new(id, j->type, room_id, j->user_id, json, len);
	event_sent_mark(j->ev, j->queued_us);
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
			  j->nmention_ids > 0 || j->mention_room ||
			  json_object_get(j->args, "files");
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
			for (size_t k = 0; k < jobs[i]->nrevised; k++)
				st->hook(st->hook_arg, jobs[i]->revised[k]);
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
	j->queued_us = mono_us();

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

/* One node: every account change is made here, and chat knows of it. */
bool sq_set_user_hook(struct store *base, store_user_hook hook, void *arg)
{
	(void)base;
	(void)hook;
	(void)arg;
	return false;
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
