/* store/sqlite/files: uploads and files (migration 010). Plain reads and
 * writes on a pooled connection, except the uses of a message's files,
 * which the writer adds (and a delete removes) in the message's own
 * transaction. The bytes themselves live on disk (core/filestore.c). */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/sqlite/sqlite.h"
#include "util/util.h"

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t)
{
	if (t)
		sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

/* Run a statement bound to id (and maybe one more value) that changes one
 * row: STORE_OK, STORE_NOTFOUND, STORE_ERR. */
static int file_change(struct store *base, enum q q, const char *id,
		       const int64_t *v)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, q);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
	if (v)
		sqlite3_bind_int64(s, 2, *v);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto fail;
	status = sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_file_create(struct store *base, const struct store_file *f)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_FILE_ADD);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, f->id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, f->owner_id);
	sqlite3_bind_int64(s, 3, f->length);
	sqlite3_bind_int64(s, 4, f->offset);
	sqlite3_bind_text(s, 5, f->name ? f->name : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 6, f->metadata ? f->metadata : "", -1,
			  SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 7, f->created_ms);
	sqlite3_bind_int64(s, 8, f->expires_ms);
	bind_text_or_null(s, 9, f->sha256);
	bind_text_or_null(s, 10, f->type);
	sqlite3_bind_int(s, 11, f->width);
	sqlite3_bind_int(s, 12, f->height);
	int rc = sqlite3_step(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		status = STORE_EXISTS;
	else if (rc == SQLITE_DONE)
		status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

/* A file's row read on connection c: STORE_OK, STORE_NOTFOUND, or the
 * failing SQLite code (positive) for the caller to classify. */
static int file_read(struct conn *c, const char *id, struct store_file *out)
{
	sqlite3_stmt *s = sq_stmt(c, Q_FILE_GET);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s)
		return sqlite3_errcode(c->db) ? sqlite3_errcode(c->db)
					      : SQLITE_ERROR;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		snprintf(out->id, sizeof(out->id), "%s",
			 (const char *)sqlite3_column_text(s, 0));
		out->owner_id = sqlite3_column_int64(s, 1);
		out->length = sqlite3_column_int64(s, 2);
		out->offset = sqlite3_column_int64(s, 3);
		out->name = sq_col_dup(s, 4);
		out->metadata = sq_col_dup(s, 5);
		out->created_ms = sqlite3_column_int64(s, 6);
		out->expires_ms = sqlite3_column_int64(s, 7);
		if (sqlite3_column_type(s, 8) != SQLITE_NULL)
			out->sha256 = sq_col_dup(s, 8);
		if (sqlite3_column_type(s, 9) != SQLITE_NULL)
			out->type = sq_col_dup(s, 9);
		out->width = sqlite3_column_int(s, 10);
		out->height = sqlite3_column_int(s, 11);
	}
	sq_stmt_done(s);
	return rc == SQLITE_ROW	   ? STORE_OK
	       : rc == SQLITE_DONE ? STORE_NOTFOUND
				   : rc;
}

int sq_file_get(struct store *base, const char *id, struct store_file *out)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	int rc = file_read(c, id, out);
	sq_pool_put(st, c);
	return rc <= 0 ? rc : STORE_ERR;
}

int w_file_get(void *arg, const char *id, struct store_file *out)
{
	struct sq *st = arg;
	int rc = file_read(&st->w, id, out);
	return rc <= 0 ? rc : w_fail(rc);
}

int sq_file_offset_set(struct store *base, const char *id, int64_t offset)
{
	return file_change(base, Q_FILE_OFFSET, id, &offset);
}

int sq_file_finish(struct store *base, const char *id, int64_t length,
		   const char *sha256, const char *type, int width, int height,
		   const char *name)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_FILE_FINISH);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, sha256, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, type, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, width);
	sqlite3_bind_int(s, 5, height);
	sqlite3_bind_int64(s, 6, length);
	bind_text_or_null(s, 7, name);
	/* an unused file's time counts from its last byte (the sweep) */
	sqlite3_bind_int64(s, 8, now_ms());
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	status = sqlite3_changes(c->db) ? STORE_OK : STORE_NOTFOUND;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_file_delete(struct store *base, const char *id)
{
	return file_change(base, Q_FILE_DEL, id, NULL);
}

/* A one-row, one-integer answer to a statement bound to (text, int). */
static int file_query(struct store *base, enum q q, const char *text, int64_t v,
		      int64_t *out)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, q);
	int status = STORE_ERR;

	*out = 0;
	if (!s)
		goto fail;
	if (text) {
		sqlite3_bind_text(s, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 2, v);
	} else {
		sqlite3_bind_int64(s, 1, v);
	}
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE)
		goto fail;
	status = STORE_OK;
fail:
	sq_stmt_done(s);
	sq_pool_put(st, c);
	return status;
}

int sq_file_usage(struct store *base, int64_t owner_id, int64_t *bytes)
{
	return file_query(base, Q_FILE_USAGE, NULL, owner_id, bytes);
}

int sq_file_access(struct store *base, const char *id, int64_t user_id)
{
	int64_t v;
	if (file_query(base, Q_FILE_ACCESS, id, user_id, &v) != STORE_OK)
		return STORE_ERR;
	return v ? 1 : 0;
}

int sq_file_blob_used(struct store *base, const char *sha256)
{
	int64_t v;
	if (file_query(base, Q_FILE_BLOB_USED, sha256, 0, &v) != STORE_OK)
		return STORE_ERR;
	return v ? 1 : 0;
}

int sq_files_sweep(struct store *base, int64_t now_ms, int64_t unused_before_ms,
		   bool (*keep)(void *arg, const char *id),
		   void (*fn)(void *arg, const char *id, const char *sha256),
		   void *arg)
{
	struct sq *st = sq_of(base);
	struct conn *c = sq_pool_get(st);
	sqlite3_stmt *s = sq_stmt(c, Q_FILES_EXPIRED);
	char **ids = NULL;
	size_t n = 0;
	int status = STORE_ERR, rc;

	if (!s) {
		sq_pool_put(st, c);
		return STORE_ERR;
	}
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_int64(s, 2, unused_before_ms);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (keep && keep(arg, (const char *)sqlite3_column_text(s, 0)))
			continue;
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		ids[n++] = sq_col_dup(s, 0);
	}
	sq_stmt_done(s);
	if (rc != SQLITE_DONE)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		s = sq_stmt(c, Q_FILE_DEL);
		if (!s)
			goto fail;
		sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_TRANSIENT);
		rc = sqlite3_step(s);
		char *sha = NULL;
		if (rc == SQLITE_ROW &&
		    sqlite3_column_type(s, 0) != SQLITE_NULL)
			sha = sq_col_dup(s, 0);
		while (rc == SQLITE_ROW)
			rc = sqlite3_step(s);
		sq_stmt_done(s);
		if (rc != SQLITE_DONE) {
			free(sha);
			goto fail;
		}
		if (fn)
			fn(arg, ids[i], sha);
		free(sha);
	}
	status = STORE_OK;
fail:
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	sq_pool_put(st, c);
	return status;
}

int sq_file_uses_add(struct sq *st, json_t *args, int64_t event_id,
		     int64_t room_id)
{
	json_t *files = json_object_get(args, "files");
	size_t i;
	json_t *f;

	json_array_foreach(files, i, f)
	{
		const char *id = json_string_value(json_object_get(f, "id"));
		if (!id)
			continue;
		sqlite3_stmt *s = sq_stmt(&st->w, Q_FILE_USE_ADD);
		if (!s)
			return sqlite3_errcode(st->w.db);
		sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 2, event_id);
		sqlite3_bind_int64(s, 3, room_id);
		int rc = sqlite3_step(s);
		sq_stmt_done(s);
		if (rc != SQLITE_DONE)
			return rc;
	}
	return SQLITE_OK;
}

int sq_file_uses_del(struct sq *st, int64_t event_id)
{
	sqlite3_stmt *s = sq_stmt(&st->w, Q_FILE_USES_DEL);
	if (!s)
		return sqlite3_errcode(st->w.db);
	sqlite3_bind_int64(s, 1, event_id);
	int rc = sqlite3_step(s);
	sq_stmt_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}
