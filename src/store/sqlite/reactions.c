/* store/sqlite/reactions: what a message's replies and reactions do inside
 * a writer job (w_reply: the quote a reply carries; w_react: the
 * reactions table and the emoji's new count), and the read that gives a
 * history page its reactions (sq_reactions).
 *
 * It deliberately does not do: the transaction, the event insert, or the
 * delete's scrub of replies and reactions (effects.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "model/emoji.h"
#include "model/markdown.h"
#include "store/sqlite/sqlite.h"
#include "util/util.h"

/* The target message of the job (j->target_id) as Q_TARGET_GET reads it:
 * STORE_OK with its author's id and name, its text (NULL: deleted) and
 * envelope (caller frees the strings), STORE_NOTARGET when it is no
 * message of room_id, or a failure. */
static int w_message_get(struct sq *st, int64_t id, int64_t room_id,
			 int64_t *author, char **from, char **text, char **json)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_TARGET_GET);
	bool ok = false;
	int rc;

	*from = *text = *json = NULL;
	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ok = sqlite3_column_int64(s, 1) == room_id &&
		     strcmp((const char *)sqlite3_column_text(s, 2),
			    evtype_get(EVENT_MESSAGE)->name) == 0;
		*author = sqlite3_column_int64(s, 0);
		if (ok && sqlite3_column_type(s, 3) != SQLITE_NULL)
			*text = sq_col_dup(s, 3);
		if (ok)
			*json = sq_col_dup(s, 4);
	} else if (rc != SQLITE_DONE) {
		return w_stmt_fail(st, s, rc);
	}
	sq_stmt_done(s);
	if (!ok)
		return STORE_NOTARGET;
	json_t *env = json_loads(*json, 0, NULL);
	const char *f = json_string_value(json_object_get(env, "from"));
	*from = xstrdup(f ? f : "");
	json_decref(env);
	return STORE_OK;
}

/* A message replying to j->target_id: that must be a message of this room
 * (else STORE_BADREF); the job's reply quote is its id, author and a
 * plain-text excerpt, or "deleted" for a deleted one. */
int w_reply(struct sq *st, struct job *j, int64_t room_id)
{
	char *from, *text, *json;
	int64_t author = 0;
	int rc = w_message_get(st, j->target_id, room_id, &author, &from, &text,
			       &json);
	if (rc == STORE_NOTARGET)
		return STORE_BADREF;
	if (rc != STORE_OK)
		return rc;
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
	free(json);
	return j->reply ? STORE_OK : STORE_ERR;
}

/* One integer from a statement that takes (message, emoji) and answers
 * one row; with a second column into *b when b is not NULL. */
static int w_reaction_ask(struct sq *st, enum q q, int64_t msg,
			  const char *emoji, int64_t *a, int64_t *b)
{
	sqlite3_stmt *s = sq_stmt(&st->w, q);
	int rc;

	if (!s)
		return w_stmt_fail(st, s, 0);
	sqlite3_bind_int64(s, 1, msg);
	sqlite3_bind_text(s, 2, emoji, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW)
		return w_stmt_fail(st, s, rc);
	*a = sqlite3_column_int64(s, 0);
	if (b)
		*b = sqlite3_column_int64(s, 1);
	sq_stmt_done(s);
	return STORE_OK;
}

/* A reaction added or removed (see EVTYPE_EFFECT_REACT). */
int w_react(struct sq *st, struct job *j, int64_t room_id)
{
	const char *e = json_string_value(json_object_get(j->args, "emoji"));
	int op = evtype_reaction_add(j->args);
	bool add = op == 1;
	char emoji[EMOJI_BYTES_MAX], *from, *text, *json;
	int64_t author = 0, kinds = 0, has = 0, count = 0;
	sqlite3_stmt *s;
	int rc;

	if (!e || op < 0 || emoji_normalize(e, strlen(e), emoji) < 0)
		return STORE_ERR;
	rc = w_is_member(st, room_id, j->user_id);
	if (rc != 1)
		return rc == 0 ? STORE_NOTMEMBER : rc;
	rc = w_message_get(st, j->target_id, room_id, &author, &from, &text,
			   &json);
	if (rc != STORE_OK)
		return rc;
	if (!text) {
		rc = STORE_GONE;
		goto out;
	}
	if (add) {
		rc = w_reaction_ask(st, Q_REACTION_KINDS, j->target_id, emoji,
				    &kinds, &has);
		if (rc == STORE_OK && !has && kinds >= EVTYPE_REACTIONS_MAX)
			rc = STORE_LIMIT;
		if (rc != STORE_OK)
			goto out;
	}
	s = sq_stmt(&st->w, add ? Q_REACTION_ADD : Q_REACTION_DEL);
	if (!s) {
		rc = w_stmt_fail(st, s, 0);
		goto out;
	}
	sqlite3_bind_int64(s, 1, j->target_id);
	sqlite3_bind_text(s, 2, emoji, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, j->user_id);
	if (add) {
		sqlite3_bind_int64(s, 4, now_ms());
		/* the id w_event_add gives this job's event */
		sqlite3_bind_int64(s, 5, st->next_id);
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		rc = w_stmt_fail(st, s, rc);
		goto out;
	}
	sq_stmt_done(s);
	if (sqlite3_changes(st->w.db) == 0) {
		/* nothing changed: no event; the message answers */
		j->ev = event_new(j->target_id, EVENT_MESSAGE, room_id, author,
				  json, strlen(json));
		rc = STORE_DUPLICATE;
		goto out;
	}
	rc = w_reaction_ask(st, Q_REACTION_COUNT, j->target_id, emoji, &count,
			    NULL);
	if (rc == STORE_OK &&
	    (json_object_set_new(j->args, "emoji", json_string(emoji)) ||
	     json_object_set_new(j->args, "count", json_integer(count))))
		rc = STORE_ERR;
out:
	free(from);
	free(text);
	free(json);
	return rc;
}

int sq_reactions(struct store *base, int64_t user_id, int64_t room_id,
		 int64_t lo, int64_t hi, struct store_reaction **out, size_t *n)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_REACTIONS_PAGE);
	struct store_reaction *v = NULL;
	size_t len = 0, cap = 0;
	int rc = SQLITE_ERROR;

	*out = NULL;
	*n = 0;
	if (!s)
		goto done;
	sqlite3_bind_int64(s, 1, room_id);
	sqlite3_bind_int64(s, 2, lo);
	sqlite3_bind_int64(s, 3, hi);
	sqlite3_bind_int64(s, 4, user_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		struct store_reaction *r = &v[len++];
		r->message_id = sqlite3_column_int64(s, 0);
		snprintf(r->emoji, sizeof(r->emoji), "%s",
			 (const char *)sqlite3_column_text(s, 1));
		r->count = sqlite3_column_int64(s, 2);
		r->me = sqlite3_column_int64(s, 3) != 0;
	}
	sq_stmt_done(s);
done:
	sq_pool_put(st, c);
	if (rc != SQLITE_DONE) {
		free(v);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}
