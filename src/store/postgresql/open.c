/* store/postgresql/open: opening a natter PostgreSQL database (store =
 * postgresql://...), bringing its schema up to date from
 * db_dir/postgresql/NNN-*.sql (each file in its own transaction under an
 * advisory lock, the version in natter_schema, refusing a database from a
 * newer schema), the pool of connections, the cross-node feed's start,
 * closing, and the backend's ops table. It never logs: errors are
 * returned with a human message. */

#define _GNU_SOURCE
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/postgresql/pg.h"
#include "util/util.h"

/* Serialises schema changes between nodes that start together. */
#define PG_SCHEMA_LOCK 0x6e617475 /* "natu" */

__attribute__((format(printf, 3, 4))) static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

char *pgs_col_dup(struct pstmt *s, int i)
{
	const char *t = pg_col_text(s, i);
	return xstrdup(t ? t : "");
}

/* Rebuild an event from a row (id, type, room_id, user_id, json[,
 * subject_id]). NULL if the row is not an event this build knows. */
struct event *pgs_row_event(struct pstmt *s)
{
	enum event_type t;
	const char *json = pg_col_text(s, 4);
	if (evtype_parse(pg_col_text(s, 1), &t) < 0 || !json)
		return NULL;
	struct event *ev =
	    event_new(pg_col_int64(s, 0), t, pg_col_int64(s, 2),
		      pg_col_int64(s, 3), json, (size_t)pg_col_bytes(s, 4));
	if (pg_col_count(s) > 5)
		event_subject_set(ev, pg_col_int64(s, 5));
	return ev;
}

/* --- schema ------------------------------------------------------------- */

static char *file_read(const char *path, char *err, size_t errlen)
{
	struct buf b;
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	buf_init(&b);
	if (!f) {
		seterr(err, errlen, "cannot read %s: %s", path,
		       strerror(errno));
		buf_fini(&b);
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	buf_puts(&b, "");
	return b.data;
}

/* "NNN-name.sql" -> NNN; -1 for any other file name. */
static int file_version(const char *name)
{
	size_t len = strlen(name), i = 0;
	long v = 0;

	while (name[i] >= '0' && name[i] <= '9' && v < 100000)
		v = v * 10 + (name[i++] - '0');
	if (i == 0 || name[i] != '-' || len < i + 5 ||
	    strcmp(name + len - 4, ".sql") != 0)
		return -1;
	return (int)v;
}

/* The path of version v in dir (caller frees), or NULL. */
static char *file_of(const char *dir, int v)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *path = NULL;

	if (!d)
		return NULL;
	while (!path && (de = readdir(d)))
		if (file_version(de->d_name) == v) {
			path = xmalloc(strlen(dir) + strlen(de->d_name) + 2);
			sprintf(path, "%s/%s", dir, de->d_name);
		}
	closedir(d);
	return path;
}

static int version_get(struct pconn *c, int *v)
{
	PGresult *r = PQexec(c->pg, "SELECT coalesce(max(version), 0) "
				    "FROM natter_schema");
	int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
	if (!rc)
		*v = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	return rc;
}

static int migrate(struct pconn *c, const char *db_dir, char *err,
		   size_t errlen)
{
	char dir[4096], sql[128];
	int v = 0, rc = -1;

	snprintf(dir, sizeof(dir), "%s/postgresql", db_dir);
	/* Under the lock too: two nodes starting at once on an empty
	 * database would both create the table, and one would fail
	 * (CREATE ... IF NOT EXISTS is not safe against a concurrent one). */
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%d)",
		 PG_SCHEMA_LOCK);
	if (pg_exec(c, "BEGIN") != PG_OK)
		goto fail;
	if (pg_exec(c, sql) != PG_OK ||
	    pg_exec(c, "CREATE TABLE IF NOT EXISTS natter_schema ("
		       "version integer PRIMARY KEY, applied_ms bigint)") !=
		PG_OK ||
	    pg_exec(c, "COMMIT") != PG_OK)
		goto fail_tx;
	for (;;) {
		char *path = NULL, *text = NULL;
		if (pg_exec(c, "BEGIN") != PG_OK)
			goto fail;
		snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%d)",
			 PG_SCHEMA_LOCK);
		if (pg_exec(c, sql) != PG_OK || version_get(c, &v) < 0)
			goto fail_tx;
		path = file_of(dir, v + 1);
		if (!path) {
			pg_exec(c, "ROLLBACK");
			break;
		}
		text = file_read(path, err, errlen);
		if (!text) {
			free(path);
			pg_exec(c, "ROLLBACK");
			return -1;
		}
		PGresult *r = PQexec(c->pg, text);
		if (PQresultStatus(r) != PGRES_COMMAND_OK &&
		    PQresultStatus(r) != PGRES_TUPLES_OK) {
			seterr(err, errlen, "applying %s: %s", path,
			       PQresultErrorMessage(r));
			PQclear(r);
			free(path);
			free(text);
			pg_exec(c, "ROLLBACK");
			return -1;
		}
		PQclear(r);
		free(path);
		free(text);
		snprintf(sql, sizeof(sql),
			 "INSERT INTO natter_schema VALUES (%d, "
			 "(extract(epoch FROM now()) * 1000)::bigint)",
			 v + 1);
		if (pg_exec(c, sql) != PG_OK || pg_exec(c, "COMMIT") != PG_OK)
			goto fail_tx;
	}
	if (v < SCHEMA_REQUIRED) {
		seterr(err, errlen,
		       "%s: schema file %03d is missing (this natterd needs "
		       "PostgreSQL schema version %d)",
		       dir, v + 1, SCHEMA_REQUIRED);
		return -1;
	}
	if (v > SCHEMA_REQUIRED) {
		/* applied by a newer natterd: refuse, as SQLite does */
		char *mine = file_of(dir, v);
		if (!mine) {
			seterr(err, errlen,
			       "database schema version %d is newer than this "
			       "natterd supports (%d)",
			       v, SCHEMA_REQUIRED);
			return -1;
		}
		free(mine);
	}
	return 0;
fail_tx:
	pg_exec(c, "ROLLBACK");
fail:
	if (rc < 0)
		seterr(err, errlen, "schema: %s", PQerrorMessage(c->pg));
	return -1;
}

/* Stale sessions and the id counter, before the writer starts. */
static int writer_prepare(struct pgst *st, const struct store_config *cfg,
			  char *err, size_t errlen)
{
	struct pstmt *s;

	if (migrate(&st->w, cfg->db_dir, err, errlen) < 0)
		return -1;
	s = pgs_stmt(&st->w, Q_SESSIONS_PURGE);
	if (!s)
		goto fail;
	pg_bind_int64(s, 1, now_ms());
	if (pg_step(s) != PG_DONE)
		goto fail;
	pgs_stmt_done(s);
	s = pgs_stmt(&st->w, Q_LAST_ID);
	if (!s || pg_step(s) != PG_ROW)
		goto fail;
	atomic_store(&st->last_id, pg_col_int64(s, 0));
	st->seen = atomic_load(&st->last_id);
	st->next_id = st->seen + 1;
	pgs_stmt_done(s);
	return 0;
fail:
	seterr(err, errlen, "PostgreSQL: %s", PQerrorMessage(st->w.pg));
	pgs_stmt_done(s);
	return -1;
}

/* --- open and close ------------------------------------------------------- */

void pgs_free(struct pgst *st)
{
	if (st->started) {
		pthread_mutex_lock(&st->qmu);
		st->closing = true;
		pthread_cond_broadcast(&st->qcv);
		pthread_mutex_unlock(&st->qmu);
		pthread_join(st->thread, NULL);
	}
	pgs_feed_stop(st);
	assert(!st->qhead);
	for (size_t i = 0; i < st->nconns; i++)
		pg_disconnect(&st->conns[i]);
	pg_disconnect(&st->w);
	pg_disconnect(&st->fetch);
	pg_disconnect(&st->listen);
	pthread_cond_destroy(&st->pcv);
	pthread_mutex_destroy(&st->pmu);
	pthread_mutex_destroy(&st->smu);
	pthread_mutex_destroy(&st->fmu);
	free(st->sessions);
	pthread_cond_destroy(&st->qcv);
	pthread_mutex_destroy(&st->qmu);
	free(st->idle);
	free(st->conns);
	free(st->batch);
	free(st->url);
	free(st);
}

bool pg_store_url(const char *path)
{
	return path && (!strncmp(path, "postgresql://", 13) ||
			!strncmp(path, "postgres://", 11));
}

struct store *pg_store_open(const struct store_config *cfg, char *err,
			    size_t errlen)
{
	struct pgst *st = NULL;
	pthread_condattr_t ca;

	if (!cfg || !cfg->path || !cfg->db_dir) {
		seterr(err, errlen, "store: no database URL or db_dir");
		return NULL;
	}
	if (!PQisthreadsafe()) {
		seterr(err, errlen, "libpq was built without thread support");
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->base.ops = &pg_ops;
	st->url = xstrdup(cfg->path);
	st->feed_wake[0] = st->feed_wake[1] = -1;
	st->interval_ms = cfg->commit_interval_ms;
	st->batch_max = cfg->commit_batch_max ? cfg->commit_batch_max : 1;
	st->batch = xcalloc(st->batch_max, sizeof(*st->batch));
	st->qtail = &st->qhead;
	pthread_mutex_init(&st->qmu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->qcv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&st->pmu, NULL);
	pthread_mutex_init(&st->smu, NULL);
	pthread_mutex_init(&st->fmu, NULL);
	st->session_ms = cfg->session_cache_ms;
	if (st->session_ms)
		st->sessions = xcalloc(SESSION_SLOTS, sizeof(*st->sessions));
	pthread_cond_init(&st->pcv, NULL);

	if (pg_connect(&st->w, st->url, err, errlen) < 0)
		goto fail;
	if (writer_prepare(st, cfg, err, errlen) < 0)
		goto fail;
	if (pg_connect(&st->fetch, st->url, err, errlen) < 0)
		goto fail;

	st->nconns = cfg->readers < 1 ? 1 : cfg->readers;
	if (st->nconns > READERS_MAX)
		st->nconns = READERS_MAX;
	st->conns = xcalloc(st->nconns, sizeof(*st->conns));
	st->idle = xcalloc(st->nconns, sizeof(*st->idle));
	for (size_t i = 0; i < st->nconns; i++) {
		if (pg_connect(&st->conns[i], st->url, err, errlen) < 0)
			goto fail;
		st->idle[st->nidle++] = &st->conns[i];
	}
	atomic_store(&st->reachable, true);
	if (pgs_feed_start(st, err, errlen) < 0)
		goto fail;
	if (pthread_create(&st->thread, NULL, pgs_writer_main, st) != 0) {
		seterr(err, errlen, "store: cannot start the writer thread");
		goto fail;
	}
	st->started = true;
	return &st->base;
fail:
	pgs_free(st);
	return NULL;
}

void pgs_close(struct store *base)
{
	pgs_free(pgs_of(base));
}

/* --- the connection pool -------------------------------------------------- */

struct pconn *pgs_pool_get(struct pgst *st)
{
	struct pconn *c;

	pthread_mutex_lock(&st->pmu);
	while (!st->nidle)
		pthread_cond_wait(&st->pcv, &st->pmu);
	c = st->idle[--st->nidle];
	pthread_mutex_unlock(&st->pmu);
	return c;
}

void pgs_pool_put(struct pgst *st, struct pconn *c)
{
	/* a connection left inside a failed transaction is no use */
	if (c->pg && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		pg_exec(c, "ROLLBACK");
	pthread_mutex_lock(&st->pmu);
	st->idle[st->nidle++] = c;
	pthread_cond_signal(&st->pcv);
	pthread_mutex_unlock(&st->pmu);
}

int pgs_status_of(int rc)
{
	switch (rc) {
	case PG_CONSTRAINT_UNIQUE:
		return STORE_EXISTS;
	case PG_CONSTRAINT_FK:
		return STORE_NOTFOUND;
	default:
		return STORE_ERR;
	}
}

/* The PostgreSQL backend's table (store/backend.h). */
static bool pgs_reachable(struct store *base)
{
	return atomic_load(&pgs_of(base)->reachable);
}

const struct store_ops pg_ops = {
    .name = "postgresql",
    .reachable = pgs_reachable,
    .close = pgs_close,
    .write_submit = pgs_write_submit,
    .set_commit_hook = pgs_set_commit_hook,
    .set_user_hook = pgs_set_user_hook,
    .last_event_id = pgs_last_event_id,
    .user_create = pgs_user_create,
    .user_by_name = pgs_user_by_name,
    .user_by_id = pgs_user_by_id,
    .user_update = pgs_user_update,
    .user_avatar_set = pgs_user_avatar_set,
    .session_create = pgs_session_create,
    .session_lookup = pgs_session_lookup,
    .session_delete = pgs_session_delete,
    .session_user = pgs_session_user,
    .room_by_name = pgs_room_by_name,
    .rooms_list = pgs_rooms_list,
    .invite_add = pgs_invite_add,
    .invites_list = pgs_invites_list,
    .users_each = pgs_users_each,
    .read_marker_set = pgs_read_marker_set,
    .room_members = pgs_room_members,
    .is_member = pgs_is_member,
    .members_each = pgs_members_each,
    .user_admin_set = pgs_user_admin_set,
    .room_role = pgs_room_role,
    .moderator_set = pgs_moderator_set,
    .ban_set = pgs_ban_set,
    .bans_list = pgs_bans_list,
    .mute_set = pgs_mute_set,
    .mutes_each = pgs_mutes_each,
    .user_disable = pgs_user_disable,
    .user_password_set = pgs_user_password_set,
    .roles_each = pgs_roles_each,
    .rooms_created = pgs_rooms_created,
    .file_create = pgs_file_create,
    .file_get = pgs_file_get,
    .file_offset_set = pgs_file_offset_set,
    .file_finish = pgs_file_finish,
    .file_delete = pgs_file_delete,
    .file_usage = pgs_file_usage,
    .file_access = pgs_file_access,
    .file_blob_used = pgs_file_blob_used,
    .files_sweep = pgs_files_sweep,
    .presence_set = pgs_presence_set,
    .last_seen_set = pgs_last_seen_set,
    .presence_each = pgs_presence_each,
    .audit_add = pgs_audit_add,
    .audit_list = pgs_audit_list,
    .history = pgs_history,
    .reactions = pgs_reactions,
    .search = pgs_search,
    .events_after = pgs_events_after,
    .sample_add = pgs_sample_add,
    .samples_prune = pgs_samples_prune,
    .stats = pgs_stats,
    .users_search = pgs_users_search,
};
