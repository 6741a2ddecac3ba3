/* store/sqlite/users: accounts and sessions (stored by the SHA-256 of their
 * token, never the token), and the small cache that answers
 * store_session_user for session_cache_ms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "store/sqlite/sqlite.h"
#include "util/util.h"

/* --- users and sessions --------------------------------------------------- */

int sq_user_create(struct store *base, const char *username, const char *pwhash,
		   int64_t *id)
{
	struct sq *st = sq_of(base);
	struct conn *c;
	sqlite3_stmt *s;
	int rc, status = STORE_ERR;

	if (!username || !name_valid(username) || !pwhash)
		return STORE_ERR;
	c = sq_pool_get(st);
	s = sq_stmt(c, Q_USER_ADD);
	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, username, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, pwhash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms());
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		status = sq_status_of(rc);
		goto fail;
	}
	if (id)
		*id = sqlite3_last_insert_rowid(c->db);
	status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

static int user_get(struct sq *st, enum q q, int64_t id, const char *name,
		    struct store_user *out)
{
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, q);
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	if (name)
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		status = STORE_NOTFOUND;
	if (rc != SQLITE_ROW)
		goto fail;
	out->id = sqlite3_column_int64(s, 0);
	out->username = sq_col_dup(s, 1);
	out->display_name = sq_col_dup(s, 2);
	out->settings = sq_col_dup(s, 3);
	out->pwhash = sq_col_dup(s, 4);
	out->created_ms = sqlite3_column_int64(s, 5);
	out->admin = sqlite3_column_int(s, 6) != 0;
	out->disabled = sqlite3_column_int(s, 7) != 0;
	out->disabled_reason = sq_col_dup(s, 8);
	out->avatar =
	    sqlite3_column_type(s, 9) == SQLITE_NULL ? NULL : sq_col_dup(s, 9);
	status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_user_by_name(struct store *base, const char *username,
		    struct store_user *out)
{
	struct sq *st = sq_of(base);
	if (!username)
		return STORE_NOTFOUND;
	return user_get(st, Q_USER_BY_NAME, 0, username, out);
}

int sq_user_by_id(struct store *base, int64_t id, struct store_user *out)
{
	struct sq *st = sq_of(base);
	return user_get(st, Q_USER_BY_ID, id, NULL, out);
}

int sq_user_update(struct store *base, int64_t id, const char *display_name,
		   const char *settings)
{
	struct sq *st = sq_of(base);
	struct conn *c;
	sqlite3_stmt *s;
	int status = STORE_ERR;

	if (settings) {
		json_t *o = json_loads(settings, JSON_REJECT_DUPLICATES, NULL);
		bool ok = json_is_object(o);
		json_decref(o);
		if (!ok)
			return STORE_ERR;
	}
	if (display_name && !utf8_valid(display_name, strlen(display_name)))
		return STORE_ERR;
	c = sq_pool_get(st);
	s = sq_stmt(c, Q_USER_UPDATE);
	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, display_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, settings, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	status = sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_user_avatar_set(struct store *base, int64_t id, const char *file_id)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_USER_AVATAR_SET);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, file_id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	status = sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_session_create(struct store *base, const uint8_t hash[32],
		      int64_t user_id, int64_t expires_ms)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_SESSION_ADD);
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, user_id);
	sqlite3_bind_int64(s, 3, now_ms());
	sqlite3_bind_int64(s, 4, expires_ms);
	rc = sqlite3_step(s);
	status = rc == SQLITE_DONE ? STORE_OK : sq_status_of(rc);
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_session_lookup(struct store *base, const uint8_t hash[32], int64_t now,
		      int64_t *user_id)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_SESSION_GET);
	int rc, status = STORE_ERR;
	bool expired = false;

	if (!s)
		goto fail;
	sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		status = STORE_NOTFOUND;
	if (rc != SQLITE_ROW)
		goto fail;
	if (sqlite3_column_int64(s, 1) > now) {
		if (user_id)
			*user_id = sqlite3_column_int64(s, 0);
		status = STORE_OK;
	} else {
		expired = true;
		status = STORE_NOTFOUND;
	}
	sq_stmt_done(s);
	/* An expired session is gone for good: drop it (best effort). */
	if (expired && (s = sq_stmt(c, Q_SESSION_DEL_EXPIRED))) {
		sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, now);
		sqlite3_step(s);
	}
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

static struct session_entry *session_slot(struct sq *st, const uint8_t hash[32])
{
	uint32_t k;
	memcpy(&k, hash, sizeof(k));
	return &st->sessions[k & (SESSION_SLOTS - 1)];
}

/* After the row is gone: drop the cached copy, and make every lookup that
 * read the row before the delete skip caching what it read. */
static void session_forget(struct sq *st, const uint8_t hash[32])
{
	if (!st->sessions)
		return;
	pthread_mutex_lock(&st->smu);
	st->session_gen++;
	struct session_entry *e = session_slot(st, hash);
	if (e->used && !memcmp(e->hash, hash, 32))
		e->used = false;
	pthread_mutex_unlock(&st->smu);
}

int sq_session_delete(struct store *base, const uint8_t hash[32])
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_SESSION_DEL);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
	/* idempotent, like the logout it serves: gone is gone */
	if (sqlite3_step(s) == SQLITE_DONE)
		status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	session_forget(st, hash);
	return status;
}

int sq_session_user(struct store *base, const uint8_t hash[32], int64_t now,
		    int64_t *user_id, char username[33])
{
	struct sq *st = sq_of(base);
	uint64_t gen = 0;

	if (st->sessions) {
		pthread_mutex_lock(&st->smu);
		struct session_entry *e = session_slot(st, hash);
		if (e->used && !memcmp(e->hash, hash, 32) &&
		    mono_ms() < e->until && now < e->expires_ms) {
			*user_id = e->user_id;
			memcpy(username, e->username, 33);
			pthread_mutex_unlock(&st->smu);
			return STORE_OK;
		}
		gen = st->session_gen;
		pthread_mutex_unlock(&st->smu);
	}

	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_SESSION_USER);
	int rc, status = STORE_ERR;
	int64_t uid = 0, expires = 0;

	if (!s)
		goto out;
	sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		status = STORE_NOTFOUND;
	if (rc != SQLITE_ROW)
		goto out;
	uid = sqlite3_column_int64(s, 0);
	expires = sqlite3_column_int64(s, 1);
	const unsigned char *name = sqlite3_column_text(s, 2);
	if (expires <= now || !name) {
		status = STORE_NOTFOUND; /* store_session_lookup drops it */
		goto out;
	}
	snprintf(username, 33, "%s", (const char *)name);
	*user_id = uid;
	/* A disabled account's session: never cached (an enable ends it). */
	status = sqlite3_column_int(s, 3) ? STORE_DISABLED : STORE_OK;
out:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	if (status == STORE_NOTFOUND && expires && expires <= now)
		sq_session_lookup(base, hash, now, NULL);
	if (status == STORE_OK && st->sessions) {
		pthread_mutex_lock(&st->smu);
		if (gen == st->session_gen) {
			struct session_entry *e = session_slot(st, hash);
			memcpy(e->hash, hash, 32);
			e->used = true;
			e->user_id = uid;
			e->expires_ms = expires;
			e->until = mono_ms() + st->session_ms;
			memcpy(e->username, username, 33);
		}
		pthread_mutex_unlock(&st->smu);
	}
	return status;
}

/* Every cached session of user_id forgotten, and every lookup in flight
 * kept from caching what it read. */
static void session_forget_user(struct sq *st, int64_t user_id)
{
	if (!st->sessions)
		return;
	pthread_mutex_lock(&st->smu);
	st->session_gen++;
	for (size_t i = 0; i < SESSION_SLOTS; i++)
		if (st->sessions[i].used && st->sessions[i].user_id == user_id)
			st->sessions[i].used = false;
	pthread_mutex_unlock(&st->smu);
}

/* Run q (users.id = ?1, the text ?2; for Q_USER_DISABLE ?2 is ms, 0 for
 * NULL, and ?3 the text) and then, if end_sessions, delete the user's
 * sessions, in one transaction: an enable, or a new password. */
static int user_change_ends_sessions(struct sq *st, enum q q, int64_t id,
				     int64_t ms, const char *text,
				     bool end_sessions)
{
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = NULL;
	bool in_tx = false;
	int status = STORE_ERR;

	if (sq_run(c, Q_BEGIN) != SQLITE_OK)
		goto fail;
	in_tx = true;
	s = sq_stmt(c, q);
	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, id);
	if (q == Q_USER_DISABLE) {
		if (ms)
			sqlite3_bind_int64(s, 2, ms);
		sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	}
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	if (sqlite3_changes(c->db) == 0) {
		status = STORE_NOTFOUND;
		goto fail;
	}
	sq_stmt_done(s);
	s = NULL;
	if (end_sessions) {
		s = sq_stmt(c, Q_USER_SESSIONS_DEL);
		if (!s)
			goto fail;
		sqlite3_bind_int64(s, 1, id);
		if (sqlite3_step(s) != SQLITE_DONE)
			goto fail;
	}
	if (sq_run(c, Q_COMMIT) != SQLITE_OK)
		goto fail;
	in_tx = false;
	status = STORE_OK;
fail:
	sq_stmt_done(s);
	if (in_tx)
		sq_run(c, Q_ROLLBACK);
	sq_pool_put(st, c);
	if (status == STORE_OK && (end_sessions || q == Q_USER_DISABLE))
		session_forget_user(st, id);
	return status;
}

int sq_user_password_set(struct store *base, int64_t id, const char *pwhash)
{
	if (!pwhash)
		return STORE_ERR;
	return user_change_ends_sessions(sq_of(base), Q_USER_PWHASH_SET, id, 0,
					 pwhash, true);
}

int sq_user_disable(struct store *base, int64_t id, bool disabled,
		    const char *reason)
{
	return user_change_ends_sessions(sq_of(base), Q_USER_DISABLE, id,
					 disabled ? now_ms() : 0,
					 disabled ? reason : NULL, !disabled);
}

/* ---- presence (migration 008) ---- */

int sq_presence_set(struct store *base, int64_t id, const char *status,
		    const char *text)
{
	struct sq *st = sq_of(base);
	int status_rc = STORE_ERR;

	if (!status || (strcmp(status, "online") && strcmp(status, "away") &&
			strcmp(status, "dnd")))
		return STORE_ERR;
	if (text && !utf8_valid(text, strlen(text)))
		return STORE_ERR;
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_PRESENCE_SET);
	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
	if (text && *text)
		sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	status_rc = sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status_rc;
}

int sq_last_seen_set(struct store *base, const int64_t *ids, const int64_t *ms,
		     size_t n)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	bool ok = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) ==
		  SQLITE_OK;
	bool begun = ok;

	for (size_t i = 0; ok && i < n; i++) {
		sqlite3_stmt *s = sq_stmt(c, Q_LAST_SEEN_SET);
		if (!s) {
			ok = false;
			break;
		}
		sqlite3_bind_int64(s, 1, ids[i]);
		sqlite3_bind_int64(s, 2, ms[i]);
		ok = sqlite3_step(s) == SQLITE_DONE;
		sq_stmt_done(s);
	}
	if (ok)
		ok = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) ==
		     SQLITE_OK;
	if (!ok && begun)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	sq_pool_put(st, c);
	return ok ? STORE_OK : STORE_ERR;
}

struct presence_row {
	int64_t id, seen;
	char status[8];
	char *text;
};

int sq_presence_each(struct store *base,
		     void (*fn)(void *arg, const struct store_presence *p),
		     void *arg)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_PRESENCE_ALL);
	struct presence_row *v = NULL;
	size_t n = 0, cap = 0;
	int rc = SQLITE_ERROR;

	if (s) {
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				v = xrealloc(v, cap * sizeof(*v));
			}
			struct presence_row *r = &v[n++];
			const char *t = (const char *)sqlite3_column_text(s, 2);
			r->id = sqlite3_column_int64(s, 0);
			snprintf(r->status, sizeof(r->status), "%s",
				 (const char *)sqlite3_column_text(s, 1));
			r->text = t ? xstrdup(t) : NULL;
			r->seen = sqlite3_column_int64(s, 3);
		}
	}
	sq_stmt_done(s);
	sq_pool_put(st, c);
	/* fn runs with no connection held, so it may call the store */
	for (size_t i = 0; i < n; i++) {
		if (rc == SQLITE_DONE) {
			struct store_presence p = {v[i].id, v[i].status,
						   v[i].text, v[i].seen};
			fn(arg, &p);
		}
		free(v[i].text);
	}
	free(v);
	return rc == SQLITE_DONE ? 0 : -1;
}
