/* store/postgresql/users: accounts and sessions (stored by the SHA-256 of their
 * token, never the token), and the small cache that answers
 * store_session_user for session_cache_ms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "store/postgresql/pg.h"
#include "util/log.h"
#include "util/util.h"

static int sessions_notify(struct pconn *c, const char *payload);

/* --- users and sessions --------------------------------------------------- */

int pgs_user_create(struct store *base, const char *username,
		    const char *pwhash, int64_t *id)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c;
	struct pstmt *s;
	int rc, status = STORE_ERR;

	if (!username || !name_valid(username) || !pwhash)
		return STORE_ERR;
	c = pgs_pool_get(st);
	s = pgs_stmt(c, Q_USER_ADD);
	if (!s)
		goto fail;
	pg_bind_text(s, 1, username);
	pg_bind_text(s, 2, pwhash);
	pg_bind_int64(s, 3, now_ms());
	rc = pg_step(s);
	if (rc != PG_DONE) {
		status = pgs_status_of(rc);
		goto fail;
	}
	int64_t new_id = pg_last_insert_id(c);
	if (id)
		*id = new_id;
	status = STORE_OK;
	pgs_stmt_done(s);
	s = NULL;
	/* every node's chat learns the name (mentions) now, not at its
	 * next start; the account exists either way */
	char word[48];
	snprintf(word, sizeof(word), "n:%lld:%s", (long long)new_id, username);
	if (sessions_notify(c, word) != PG_OK)
		log_warn("store: cannot tell the other nodes of user %s",
			 username);
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

static int user_get(struct pgst *st, enum q q, int64_t id, const char *name,
		    struct store_user *out)
{
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, q);
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	if (name)
		pg_bind_text(s, 1, name);
	else
		pg_bind_int64(s, 1, id);
	rc = pg_step(s);
	if (rc == PG_DONE)
		status = STORE_NOTFOUND;
	if (rc != PG_ROW)
		goto fail;
	out->id = pg_col_int64(s, 0);
	out->username = pgs_col_dup(s, 1);
	out->display_name = pgs_col_dup(s, 2);
	out->settings = pgs_col_dup(s, 3);
	out->pwhash = pgs_col_dup(s, 4);
	out->created_ms = pg_col_int64(s, 5);
	out->admin = pg_col_int64(s, 6) != 0;
	out->disabled = pg_col_int64(s, 7) != 0;
	out->disabled_reason = pgs_col_dup(s, 8);
	out->avatar = pg_col_null(s, 9) ? NULL : pgs_col_dup(s, 9);
	status = STORE_OK;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_user_by_name(struct store *base, const char *username,
		     struct store_user *out)
{
	struct pgst *st = pgs_of(base);
	if (!username)
		return STORE_NOTFOUND;
	return user_get(st, Q_USER_BY_NAME, 0, username, out);
}

int pgs_user_by_id(struct store *base, int64_t id, struct store_user *out)
{
	struct pgst *st = pgs_of(base);
	return user_get(st, Q_USER_BY_ID, id, NULL, out);
}

int pgs_user_update(struct store *base, int64_t id, const char *display_name,
		    const char *settings)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c;
	struct pstmt *s;
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
	c = pgs_pool_get(st);
	s = pgs_stmt(c, Q_USER_UPDATE);
	if (!s)
		goto fail;
	pg_bind_int64(s, 1, id);
	pg_bind_text(s, 2, display_name);
	pg_bind_text(s, 3, settings);
	if (pg_step(s) != PG_DONE)
		goto fail;
	status = pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_session_create(struct store *base, const uint8_t hash[32],
		       int64_t user_id, int64_t expires_ms)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_SESSION_ADD);
	int rc, status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_blob(s, 1, hash, 32);
	pg_bind_int64(s, 2, user_id);
	pg_bind_int64(s, 3, now_ms());
	pg_bind_int64(s, 4, expires_ms);
	rc = pg_step(s);
	status = rc == PG_DONE ? STORE_OK : pgs_status_of(rc);
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_session_lookup(struct store *base, const uint8_t hash[32], int64_t now,
		       int64_t *user_id)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_SESSION_GET);
	int rc, status = STORE_ERR;
	bool expired = false;

	if (!s)
		goto fail;
	pg_bind_blob(s, 1, hash, 32);
	rc = pg_step(s);
	if (rc == PG_DONE)
		status = STORE_NOTFOUND;
	if (rc != PG_ROW)
		goto fail;
	if (pg_col_int64(s, 1) > now) {
		if (user_id)
			*user_id = pg_col_int64(s, 0);
		status = STORE_OK;
	} else {
		expired = true;
		status = STORE_NOTFOUND;
	}
	pgs_stmt_done(s);
	/* An expired session is gone for good: drop it (best effort). */
	if (expired && (s = pgs_stmt(c, Q_SESSION_DEL_EXPIRED))) {
		pg_bind_blob(s, 1, hash, 32);
		pg_bind_int64(s, 2, now);
		pg_step(s);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

static struct session_entry *session_slot(struct pgst *st,
					  const uint8_t hash[32])
{
	uint32_t k;
	memcpy(&k, hash, sizeof(k));
	return &st->sessions[k & (SESSION_SLOTS - 1)];
}

/* Tell every node's session cache (feed.c LISTENs): on c, inside its
 * transaction if one is open (then sent at its COMMIT). */
static int sessions_notify(struct pconn *c, const char *payload)
{
	struct pstmt *s = pgs_stmt(c, Q_SESSIONS_NOTIFY);
	if (!s)
		return PG_BROKEN;
	pg_bind_text(s, 1, payload);
	int rc = pg_step(s);
	while (rc == PG_ROW)
		rc = pg_step(s);
	pgs_stmt_done(s);
	return rc == PG_DONE ? PG_OK : rc;
}

/* After the row is gone: drop the cached copy, and make every lookup that
 * read the row before the delete skip caching what it read. */
void pgs_session_forget(struct pgst *st, const uint8_t hash[32])
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

int pgs_session_delete(struct store *base, const uint8_t hash[32])
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_SESSION_DEL);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_blob(s, 1, hash, 32);
	/* idempotent, like the logout it serves: gone is gone */
	if (pg_step(s) == PG_DONE)
		status = STORE_OK;
	pgs_stmt_done(s);
	s = NULL;
	if (status == STORE_OK) {
		/* the other nodes' caches too, not after session_cache_ms */
		char payload[2 + 64 + 1] = "h:";
		for (int i = 0; i < 32; i++)
			snprintf(payload + 2 + 2 * i, 3, "%02x", hash[i]);
		sessions_notify(c, payload);
	}
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	pgs_session_forget(st, hash);
	return status;
}

int pgs_session_user(struct store *base, const uint8_t hash[32], int64_t now,
		     int64_t *user_id, char username[33])
{
	struct pgst *st = pgs_of(base);
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

	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_SESSION_USER);
	int rc, status = STORE_ERR;
	int64_t uid = 0, expires = 0;

	if (!s)
		goto out;
	pg_bind_blob(s, 1, hash, 32);
	rc = pg_step(s);
	if (rc == PG_DONE)
		status = STORE_NOTFOUND;
	if (rc != PG_ROW)
		goto out;
	uid = pg_col_int64(s, 0);
	expires = pg_col_int64(s, 1);
	const char *name = pg_col_text(s, 2);
	if (expires <= now || !name) {
		status = STORE_NOTFOUND; /* store_session_lookup drops it */
		goto out;
	}
	snprintf(username, 33, "%s", (const char *)name);
	*user_id = uid;
	/* A disabled account's session: never cached (an enable ends it). */
	status = pg_col_int64(s, 3) ? STORE_DISABLED : STORE_OK;
out:
	/* not "no such session": the server cannot be asked */
	if (status == STORE_ERR && (!c->pg || PQstatus(c->pg) != CONNECTION_OK))
		status = STORE_UNAVAILABLE;
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	if (status == STORE_NOTFOUND && expires && expires <= now)
		pgs_session_lookup(base, hash, now, NULL);
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
void pgs_session_forget_user(struct pgst *st, int64_t user_id)
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

/* Run q (users.id = ?1, the text ?2) and then delete the user's sessions,
 * in one transaction: a disable, or a new password. */
static int user_change_ends_sessions(struct pgst *st, enum q q, int64_t id,
				     int64_t ms, const char *text,
				     bool end_sessions)
{
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = NULL;
	bool in_tx = false;
	int status = STORE_ERR;

	if (pgs_run(c, Q_BEGIN) != PG_OK)
		goto fail;
	in_tx = true;
	s = pgs_stmt(c, q);
	if (!s)
		goto fail;
	pg_bind_int64(s, 1, id);
	if (q == Q_USER_DISABLE) {
		if (ms)
			pg_bind_int64(s, 2, ms);
		pg_bind_text(s, 3, text);
	} else {
		pg_bind_text(s, 2, text);
	}
	if (pg_step(s) != PG_DONE)
		goto fail;
	if (pg_changes(c) == 0) {
		status = STORE_NOTFOUND;
		goto fail;
	}
	pgs_stmt_done(s);
	s = NULL;
	if (end_sessions || q == Q_USER_DISABLE) {
		char payload[32];
		if (end_sessions) {
			s = pgs_stmt(c, Q_USER_SESSIONS_DEL);
			if (!s)
				goto fail;
			pg_bind_int64(s, 1, id);
			if (pg_step(s) != PG_DONE)
				goto fail;
			pgs_stmt_done(s);
			s = NULL;
		}
		/* every node forgets them at this COMMIT (a disabled
		 * account's sessions stay, answering STORE_DISABLED) */
		snprintf(payload, sizeof(payload), "u:%lld", (long long)id);
		if (sessions_notify(c, payload) != PG_OK)
			goto fail;
	}
	if (pgs_run(c, Q_COMMIT) != PG_OK)
		goto fail;
	in_tx = false;
	status = STORE_OK;
fail:
	pgs_stmt_done(s);
	if (in_tx)
		pgs_run(c, Q_ROLLBACK);
	pgs_pool_put(st, c);
	if (status == STORE_OK && (end_sessions || q == Q_USER_DISABLE))
		pgs_session_forget_user(st, id);
	return status;
}

int pgs_user_password_set(struct store *base, int64_t id, const char *pwhash)
{
	if (!pwhash)
		return STORE_ERR;
	return user_change_ends_sessions(pgs_of(base), Q_USER_PWHASH_SET, id, 0,
					 pwhash, true);
}

int pgs_user_disable(struct store *base, int64_t id, bool disabled,
		     const char *reason)
{
	/* as SQLite: a disabled account's sessions stay (they answer
	 * STORE_DISABLED, so a client can be told why); an enable ends
	 * them */
	return user_change_ends_sessions(pgs_of(base), Q_USER_DISABLE, id,
					 disabled ? now_ms() : 0,
					 disabled ? reason : NULL, !disabled);
}

/* --- presence (schema 003) -------------------------------------------------
 */

int pgs_presence_set(struct store *base, int64_t id, const char *status,
		     const char *text)
{
	if (!status || (strcmp(status, "online") && strcmp(status, "away") &&
			strcmp(status, "dnd")))
		return STORE_ERR;
	if (text && !utf8_valid(text, strlen(text)))
		return STORE_ERR;
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_PRESENCE_SET);
	int rc = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, id);
	pg_bind_text(s, 2, status);
	pg_bind_text(s, 3, text && *text ? text : NULL);
	if (pg_step(s) != PG_DONE)
		goto fail;
	rc = pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return rc;
}

int pgs_last_seen_set(struct store *base, const int64_t *ids, const int64_t *ms,
		      size_t n)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	bool ok = pg_exec(c, "BEGIN") == PG_OK;
	bool begun = ok;

	for (size_t i = 0; ok && i < n; i++) {
		struct pstmt *s = pgs_stmt(c, Q_LAST_SEEN_SET);
		if (!s) {
			ok = false;
			break;
		}
		pg_bind_int64(s, 1, ids[i]);
		pg_bind_int64(s, 2, ms[i]);
		ok = pg_step(s) == PG_DONE;
		pgs_stmt_done(s);
	}
	if (ok)
		ok = pg_exec(c, "COMMIT") == PG_OK;
	if (!ok && begun)
		pg_exec(c, "ROLLBACK");
	pgs_pool_put(st, c);
	return ok ? STORE_OK : STORE_ERR;
}

struct presence_row {
	int64_t id, seen;
	char status[8];
	char *text;
};

int pgs_presence_each(struct store *base,
		      void (*fn)(void *arg, const struct store_presence *p),
		      void *arg)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_PRESENCE_ALL);
	struct presence_row *v = NULL;
	size_t n = 0, cap = 0;
	int rc = PG_ERROR;

	if (s) {
		while ((rc = pg_step(s)) == PG_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				v = xrealloc(v, cap * sizeof(*v));
			}
			struct presence_row *r = &v[n++];
			r->id = pg_col_int64(s, 0);
			snprintf(r->status, sizeof(r->status), "%s",
				 pg_col_text(s, 1));
			r->text = pg_col_null(s, 2)
				      ? NULL
				      : xstrdup(pg_col_text(s, 2));
			r->seen = pg_col_null(s, 3) ? 0 : pg_col_int64(s, 3);
		}
	}
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	/* fn runs with no connection held, so it may call the store */
	for (size_t i = 0; i < n; i++) {
		if (rc == PG_DONE) {
			struct store_presence p = {v[i].id, v[i].status,
						   v[i].text, v[i].seen};
			fn(arg, &p);
		}
		free(v[i].text);
	}
	free(v);
	return rc == PG_DONE ? 0 : -1;
}
