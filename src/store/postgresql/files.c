/* store/postgresql/files: uploads, files and avatars (schema 004), as the
 * SQLite backend's files.c. Plain reads and writes on a pooled connection,
 * except the uses of a message's files, which the writer adds (and a
 * delete removes) in the message's own transaction, and the text the
 * search index holds for a message (its text and its files' names). The
 * bytes themselves live on disk (core/filestore.c). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "model/search.h"
#include "store/postgresql/pg.h"
#include "util/util.h"

/* Run a statement bound to id (and maybe one more value) that changes one
 * row: STORE_OK, STORE_NOTFOUND, STORE_ERR. */
static int file_change(struct store *base, enum q q, const char *id,
		       const int64_t *v)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, q);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_text(s, 1, id);
	if (v)
		pg_bind_int64(s, 2, *v);
	int rc = pg_step(s);
	if (rc != PG_DONE && rc != PG_ROW)
		goto fail;
	status = pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_file_create(struct store *base, const struct store_file *f)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_FILE_ADD);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_text(s, 1, f->id);
	pg_bind_int64(s, 2, f->owner_id);
	pg_bind_int64(s, 3, f->length);
	pg_bind_int64(s, 4, f->offset);
	pg_bind_text(s, 5, f->name ? f->name : "");
	pg_bind_text(s, 6, f->metadata ? f->metadata : "");
	pg_bind_int64(s, 7, f->created_ms);
	pg_bind_int64(s, 8, f->expires_ms);
	pg_bind_text(s, 9, f->sha256); /* NULL binds NULL */
	pg_bind_text(s, 10, f->type);
	pg_bind_int64(s, 11, f->width);
	pg_bind_int64(s, 12, f->height);
	int rc = pg_step(s);
	if ((rc & 0xff) == PG_CONSTRAINT)
		status = STORE_EXISTS;
	else if (rc == PG_DONE)
		status = STORE_OK;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

/* A file's row read on connection c: STORE_OK, STORE_NOTFOUND, or the
 * failing pg_step code (positive) for the caller to classify. */
static int file_read(struct pconn *c, const char *id, struct store_file *out)
{
	struct pstmt *s = pgs_stmt(c, Q_FILE_GET);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s)
		return pg_errcode(c) ? pg_errcode(c) : PG_ERROR;
	pg_bind_text(s, 1, id);
	rc = pg_step(s);
	if (rc == PG_ROW) {
		snprintf(out->id, sizeof(out->id), "%s", pg_col_text(s, 0));
		out->owner_id = pg_col_int64(s, 1);
		out->length = pg_col_int64(s, 2);
		out->offset = pg_col_int64(s, 3);
		out->name = pgs_col_dup(s, 4);
		out->metadata = pgs_col_dup(s, 5);
		out->created_ms = pg_col_int64(s, 6);
		out->expires_ms = pg_col_int64(s, 7);
		if (!pg_col_null(s, 8))
			out->sha256 = pgs_col_dup(s, 8);
		if (!pg_col_null(s, 9))
			out->type = pgs_col_dup(s, 9);
		out->width = (int)pg_col_int64(s, 10);
		out->height = (int)pg_col_int64(s, 11);
	}
	pgs_stmt_done(s);
	return rc == PG_ROW ? STORE_OK : rc == PG_DONE ? STORE_NOTFOUND : rc;
}

int pgs_file_get(struct store *base, const char *id, struct store_file *out)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	int rc = file_read(c, id, out);
	pgs_pool_put(st, c);
	return rc <= 0 ? rc : STORE_ERR;
}

int pw_file_get(void *arg, const char *id, struct store_file *out)
{
	struct pgst *st = arg;
	int rc = file_read(&st->w, id, out);
	return rc <= 0 ? rc : pw_fail(rc);
}

int pgs_file_offset_set(struct store *base, const char *id, int64_t offset)
{
	return file_change(base, Q_FILE_OFFSET, id, &offset);
}

int pgs_file_finish(struct store *base, const char *id, int64_t length,
		    const char *sha256, const char *type, int width, int height,
		    const char *name)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_FILE_FINISH);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_text(s, 1, id);
	pg_bind_text(s, 2, sha256);
	pg_bind_text(s, 3, type);
	pg_bind_int64(s, 4, width);
	pg_bind_int64(s, 5, height);
	pg_bind_int64(s, 6, length);
	pg_bind_text(s, 7, name); /* NULL: keep the name */
	/* an unused file's time counts from its last byte (the sweep) */
	pg_bind_int64(s, 8, now_ms());
	if (pg_step(s) != PG_DONE)
		goto fail;
	status = pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_file_delete(struct store *base, const char *id)
{
	return file_change(base, Q_FILE_DEL, id, NULL);
}

/* A one-row, one-integer answer to a statement bound to (text) or (int). */
static int file_query(struct store *base, enum q q, const char *text, int64_t v,
		      int64_t *out)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, q);
	int status = STORE_ERR;

	*out = 0;
	if (!s)
		goto fail;
	if (text) {
		/* a statement without $2 ignores it */
		pg_bind_text(s, 1, text);
		pg_bind_int64(s, 2, v);
	} else {
		pg_bind_int64(s, 1, v);
	}
	int rc = pg_step(s);
	if (rc == PG_ROW)
		*out = pg_col_int64(s, 0);
	else if (rc != PG_DONE)
		goto fail;
	status = STORE_OK;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

int pgs_file_usage(struct store *base, int64_t owner_id, int64_t *bytes)
{
	return file_query(base, Q_FILE_USAGE, NULL, owner_id, bytes);
}

int pgs_file_access(struct store *base, const char *id, int64_t user_id)
{
	int64_t v;
	if (file_query(base, Q_FILE_ACCESS, id, user_id, &v) != STORE_OK)
		return STORE_ERR;
	return v ? 1 : 0;
}

int pgs_file_blob_used(struct store *base, const char *sha256)
{
	int64_t v;
	if (file_query(base, Q_FILE_BLOB_USED, sha256, 0, &v) != STORE_OK)
		return STORE_ERR;
	return v ? 1 : 0;
}

int pgs_files_sweep(struct store *base, int64_t now_ms,
		    int64_t unused_before_ms,
		    bool (*keep)(void *arg, const char *id),
		    void (*fn)(void *arg, const char *id, const char *sha256),
		    void *arg)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_FILES_EXPIRED);
	char **ids = NULL;
	size_t n = 0;
	int status = STORE_ERR, rc;

	if (!s) {
		pgs_pool_put(st, c);
		return STORE_ERR;
	}
	pg_bind_int64(s, 1, now_ms);
	pg_bind_int64(s, 2, unused_before_ms);
	while ((rc = pg_step(s)) == PG_ROW) {
		if (keep && keep(arg, pg_col_text(s, 0)))
			continue;
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		ids[n++] = pgs_col_dup(s, 0);
	}
	pgs_stmt_done(s);
	if (rc != PG_DONE)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		s = pgs_stmt(c, Q_FILE_DEL);
		if (!s)
			goto fail;
		pg_bind_text(s, 1, ids[i]);
		rc = pg_step(s);
		char *sha = NULL;
		if (rc == PG_ROW && !pg_col_null(s, 0))
			sha = pgs_col_dup(s, 0);
		while (rc == PG_ROW)
			rc = pg_step(s);
		pgs_stmt_done(s);
		if (rc != PG_DONE) {
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
	pgs_pool_put(st, c);
	return status;
}

int pgs_user_avatar_set(struct store *base, int64_t id, const char *file_id)
{
	struct pgst *st = pgs_of(base);
	struct pconn *c = pgs_pool_get(st);
	struct pstmt *s = pgs_stmt(c, Q_USER_AVATAR_SET);
	int status = STORE_ERR;

	if (!s)
		goto fail;
	pg_bind_int64(s, 1, id);
	pg_bind_text(s, 2, file_id); /* NULL: none */
	if (pg_step(s) != PG_DONE)
		goto fail;
	status = pg_changes(c) ? STORE_OK : STORE_NOTFOUND;
fail:
	pgs_stmt_done(s);
	pgs_pool_put(st, c);
	return status;
}

/* --- the writer's part ------------------------------------------------------
 * On the writer thread, inside the job's savepoint. */

int pw_file_uses_add(struct pgst *st, json_t *args, int64_t event_id,
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
		struct pstmt *s = pgs_stmt(&st->w, Q_FILE_USE_ADD);
		if (!s)
			return pg_errcode(&st->w);
		pg_bind_text(s, 1, id);
		pg_bind_int64(s, 2, event_id);
		pg_bind_int64(s, 3, room_id);
		int rc = pg_step(s);
		pgs_stmt_done(s);
		if (rc != PG_DONE)
			return rc;
	}
	return PG_OK;
}

int pw_file_uses_del(struct pgst *st, int64_t event_id)
{
	struct pstmt *s = pgs_stmt(&st->w, Q_FILE_USES_DEL);
	if (!s)
		return pg_errcode(&st->w);
	pg_bind_int64(s, 1, event_id);
	int rc = pg_step(s);
	pgs_stmt_done(s);
	return rc == PG_DONE ? PG_OK : rc;
}

char *pw_index_text(const char *text, json_t *files)
{
	struct buf b;
	size_t i;
	json_t *f;
	char *out = NULL;

	if (!json_is_array(files) || !json_array_size(files))
		return utf8_valid(text, strlen(text))
			   ? search_index_text(text, strlen(text))
			   : NULL;
	/* SQLite's: text || ' ' || group_concat(name, ' ') */
	buf_init(&b);
	buf_puts(&b, text);
	json_array_foreach(files, i, f)
	{
		const char *name =
		    json_string_value(json_object_get(f, "name"));
		if (!name)
			continue;
		buf_puts(&b, " ");
		buf_puts(&b, name);
	}
	if (utf8_valid(b.data, b.len))
		out = search_index_text(b.data, b.len);
	buf_fini(&b);
	return out;
}
