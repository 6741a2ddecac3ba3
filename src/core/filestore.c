/* filestore: uploads on disk, content by SHA-256, types from the bytes,
 * the sweep (see filestore.h).
 *
 * Concurrency: HTTP workers write uploads, the sweep thread removes rows
 * and content. mu guards two things: the set of uploads a request is
 * writing now (one writer per upload; the sweep and a termination leave
 * those alone), and the step "content placed under blobs/ and its row
 * finished" against the sweep's "no row names this content, unlink it",
 * so that content never disappears under a file that was just finished.
 * magic_mu guards the one libmagic handle (not thread-safe). No lock is
 * held across a write of upload bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <magic.h>
#include <mbedtls/sha256.h>

#include "core/filestore.h"
#include "util/log.h"
#include "util/util.h"

#define BUSY_MAX 256

struct filestore {
	struct store *store;
	char *dir;
	size_t max_size, quota, avatar_max_size;
	unsigned expiry_s;

	pthread_mutex_t mu;
	char busy[BUSY_MAX][33];
	size_t nbusy;

	pthread_mutex_t magic_mu;
	magic_t magic;

	pthread_t sweeper;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	bool stop, started;
};

struct filestore_write {
	struct filestore *fs;
	char id[33];
	int fd;
	int64_t offset, length;
	bool failed;
	char *name; /* filestore_write_complete's, or NULL */
};

static void path_upload(const struct filestore *fs, const char *id,
			struct buf *b)
{
	buf_printf(b, "%s/uploads/%s", fs->dir, id);
}

static void path_blob(const struct filestore *fs, const char *sha,
		      struct buf *b)
{
	buf_printf(b, "%s/blobs/%.2s/%s", fs->dir, sha, sha);
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n != 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

/* --- the set of uploads being written ------------------------------------- */

static bool busy_take(struct filestore *fs, const char *id)
{
	bool ok = true;
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->nbusy; i++)
		if (strcmp(fs->busy[i], id) == 0)
			ok = false;
	if (ok && fs->nbusy == BUSY_MAX)
		ok = false;
	if (ok)
		snprintf(fs->busy[fs->nbusy++], 33, "%s", id);
	pthread_mutex_unlock(&fs->mu);
	return ok;
}

static void busy_drop(struct filestore *fs, const char *id)
{
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->nbusy; i++)
		if (strcmp(fs->busy[i], id) == 0) {
			memcpy(fs->busy[i], fs->busy[--fs->nbusy], 33);
			break;
		}
	pthread_mutex_unlock(&fs->mu);
}

/* Whether a request is writing upload id now (caller holds mu). */
static bool busy_has(struct filestore *fs, const char *id)
{
	for (size_t i = 0; i < fs->nbusy; i++)
		if (strcmp(fs->busy[i], id) == 0)
			return true;
	return false;
}

/* --- type and size from the bytes --------------------------------------- */

/* "800 x 600" or "800x600" in libmagic's description (PNG, GIF, JPEG,
 * WebP say it so). */
static void dims_parse(const char *desc, int *w, int *h)
{
	for (const char *p = desc; *p; p++) {
		if (*p < '1' || *p > '9' ||
		    (p > desc && p[-1] >= '0' && p[-1] <= '9'))
			continue;
		char *end;
		long a = strtol(p, &end, 10);
		const char *q = end;
		while (*q == ' ')
			q++;
		if (*q != 'x')
			continue;
		q++;
		while (*q == ' ')
			q++;
		if (*q < '1' || *q > '9')
			continue;
		long b = strtol(q, &end, 10);
		if (a > 0 && b > 0 && a <= 1000000 && b <= 1000000) {
			*w = (int)a;
			*h = (int)b;
			return;
		}
	}
}

static void file_identify(struct filestore *fs, const char *path, char *type,
			  size_t tlen, int *w, int *h)
{
	snprintf(type, tlen, "application/octet-stream");
	*w = *h = 0;
	pthread_mutex_lock(&fs->magic_mu);
	if (fs->magic) {
		magic_setflags(fs->magic, MAGIC_MIME_TYPE);
		const char *t = magic_file(fs->magic, path);
		if (t)
			snprintf(type, tlen, "%s", t);
		if (strncmp(type, "image/", 6) == 0) {
			magic_setflags(fs->magic, MAGIC_NONE);
			const char *d = magic_file(fs->magic, path);
			if (d)
				dims_parse(d, w, h);
		}
	}
	pthread_mutex_unlock(&fs->magic_mu);
}

static int file_sha256(const char *path, char hex[65])
{
	unsigned char d[32], chunk[65536];
	mbedtls_sha256_context ctx;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	mbedtls_sha256_init(&ctx);
	mbedtls_sha256_starts_ret(&ctx, 0);
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		mbedtls_sha256_update_ret(&ctx, chunk, (size_t)n);
	close(fd);
	mbedtls_sha256_finish_ret(&ctx, d);
	mbedtls_sha256_free(&ctx);
	if (n < 0)
		return -1;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return 0;
}

/* The upload's bytes are all there: hash, type, place the content (or
 * drop the part when that content is stored already), finish the row. */
static int upload_finish(struct filestore *fs, const char *id, int64_t length,
			 const char *name)
{
	struct buf part, blob;
	char sha[65], type[128];
	int w, h, rc = FILESTORE_EINTERNAL;

	buf_init(&part);
	buf_init(&blob);
	path_upload(fs, id, &part);
	if (file_sha256(part.data, sha) < 0) {
		log_error("files: cannot hash %s: %s", part.data,
			  strerror(errno));
		goto out;
	}
	file_identify(fs, part.data, type, sizeof(type), &w, &h);
	path_blob(fs, sha, &blob);
	struct buf sub;
	buf_init(&sub);
	buf_printf(&sub, "%s/blobs/%.2s", fs->dir, sha);
	if (mkdir(sub.data, 0750) < 0 && errno != EEXIST)
		log_warn("files: cannot create %s: %s", sub.data,
			 strerror(errno));
	buf_fini(&sub);
	pthread_mutex_lock(&fs->mu);
	struct stat sb;
	if (stat(blob.data, &sb) == 0)
		unlink(part.data); /* the same content is stored already */
	else if (rename(part.data, blob.data) < 0) {
		log_error("files: cannot move %s to %s: %s", part.data,
			  blob.data, strerror(errno));
		pthread_mutex_unlock(&fs->mu);
		goto out;
	}
	if (store_file_finish(fs->store, id, length, sha, type, w, h, name) ==
	    STORE_OK)
		rc = FILESTORE_OK;
	pthread_mutex_unlock(&fs->mu);
out:
	buf_fini(&part);
	buf_fini(&blob);
	return rc;
}

/* --- uploads ---------------------------------------------------------- */

size_t filestore_max_size(const struct filestore *fs)
{
	return fs->max_size;
}

int filestore_create(struct filestore *fs, int64_t owner, int64_t length,
		     const char *name, const char *metadata, char id[33],
		     int64_t *expires_ms)
{
	unsigned char r[16];
	int64_t used = 0;

	if (length < 0 || (uint64_t)length > fs->max_size)
		return FILESTORE_ETOOBIG;
	if (fs->quota) {
		if (store_file_usage(fs->store, owner, &used) != STORE_OK)
			return FILESTORE_EINTERNAL;
		if ((uint64_t)used + (uint64_t)length > fs->quota)
			return FILESTORE_EQUOTA;
	}
	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		return FILESTORE_EINTERNAL;
	for (int i = 0; i < 16; i++)
		snprintf(id + 2 * i, 3, "%02x", r[i]);

	struct buf part;
	buf_init(&part);
	path_upload(fs, id, &part);
	int fd = open(part.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_error("files: cannot create %s: %s", part.data,
			  strerror(errno));
		buf_fini(&part);
		return FILESTORE_EINTERNAL;
	}
	close(fd);
	int64_t now = now_ms();
	struct store_file f = {.owner_id = owner,
			       .length = length,
			       .name = (char *)(name ? name : ""),
			       .metadata = (char *)(metadata ? metadata : ""),
			       .created_ms = now,
			       .expires_ms =
				   now + (int64_t)fs->expiry_s * 1000};
	snprintf(f.id, sizeof(f.id), "%s", id);
	if (store_file_create(fs->store, &f) != STORE_OK) {
		unlink(part.data);
		buf_fini(&part);
		return FILESTORE_EINTERNAL;
	}
	buf_fini(&part);
	*expires_ms = f.expires_ms;
	/* An empty file is complete at once. */
	if (length == 0 && upload_finish(fs, id, 0, NULL) != FILESTORE_OK)
		return FILESTORE_EINTERNAL;
	return FILESTORE_OK;
}

int filestore_get(struct filestore *fs, const char *id, int64_t owner,
		  struct store_file *out)
{
	if (!id_valid(id))
		return FILESTORE_ENOTFOUND;
	int rc = store_file_get(fs->store, id, out);
	if (rc == STORE_NOTFOUND)
		return FILESTORE_ENOTFOUND;
	if (rc != STORE_OK)
		return FILESTORE_EINTERNAL;
	if (out->owner_id != owner) {
		store_file_fini(out);
		return FILESTORE_ENOTFOUND;
	}
	return FILESTORE_OK;
}

/* Remove content no row names any more (under mu: see the top). */
static void blob_release(struct filestore *fs, const char *sha)
{
	pthread_mutex_lock(&fs->mu);
	if (store_file_blob_used(fs->store, sha) == 0) {
		struct buf b;
		buf_init(&b);
		path_blob(fs, sha, &b);
		unlink(b.data);
		buf_fini(&b);
	}
	pthread_mutex_unlock(&fs->mu);
}

static void removed(void *arg, const char *id, const char *sha)
{
	struct filestore *fs = arg;
	if (sha) {
		blob_release(fs, sha);
	} else {
		struct buf b;
		buf_init(&b);
		path_upload(fs, id, &b);
		unlink(b.data);
		buf_fini(&b);
	}
}

int filestore_delete(struct filestore *fs, const char *id, int64_t owner)
{
	struct store_file f;
	int rc = filestore_get(fs, id, owner, &f);
	if (rc != FILESTORE_OK)
		return rc;
	if (!busy_take(fs, id)) {
		store_file_fini(&f);
		return FILESTORE_EBUSY;
	}
	if (store_file_delete(fs->store, id) == STORE_OK)
		removed(fs, id, f.sha256);
	busy_drop(fs, id);
	store_file_fini(&f);
	return FILESTORE_OK;
}

int filestore_write_begin(struct filestore *fs, const char *id, int64_t owner,
			  int64_t offset, struct filestore_write **out)
{
	struct store_file f;
	int rc = filestore_get(fs, id, owner, &f);
	if (rc != FILESTORE_OK)
		return rc;
	if (f.sha256) {
		rc = FILESTORE_EDONE;
		goto out;
	}
	if (offset != f.offset) {
		rc = FILESTORE_ECONFLICT;
		goto out;
	}
	if (!busy_take(fs, id)) {
		rc = FILESTORE_EBUSY;
		goto out;
	}
	struct buf part;
	buf_init(&part);
	path_upload(fs, id, &part);
	int fd = open(part.data, O_WRONLY | O_CLOEXEC);
	/* Bytes past the recorded offset (a write cut before it was
	 * recorded) are dropped: the client resends from the offset. */
	if (fd < 0 || ftruncate(fd, offset) < 0 ||
	    lseek(fd, offset, SEEK_SET) < 0) {
		log_error("files: cannot open %s: %s", part.data,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		buf_fini(&part);
		busy_drop(fs, id);
		rc = FILESTORE_EINTERNAL;
		goto out;
	}
	buf_fini(&part);
	struct filestore_write *w = xcalloc(1, sizeof(*w));
	w->fs = fs;
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->fd = fd;
	w->offset = offset;
	w->length = f.length;
	*out = w;
	rc = FILESTORE_OK;
out:
	store_file_fini(&f);
	return rc;
}

int filestore_write(struct filestore_write *w, const void *data, size_t n)
{
	if (w->failed)
		return FILESTORE_EINTERNAL;
	if ((uint64_t)w->offset + n > (uint64_t)w->length)
		return FILESTORE_ETOOBIG;
	const char *p = data;
	while (n) {
		ssize_t k = write(w->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			log_error("files: write to upload %s: %s", w->id,
				  strerror(errno));
			w->failed = true;
			return FILESTORE_EINTERNAL;
		}
		p += k;
		n -= (size_t)k;
		w->offset += k;
	}
	return FILESTORE_OK;
}

void filestore_write_complete(struct filestore_write *w, const char *name)
{
	w->length = w->offset;
	free(w->name);
	w->name = name ? xstrdup(name) : NULL;
}

int filestore_write_end(struct filestore_write *w, int64_t *offset)
{
	struct filestore *fs = w->fs;
	int rc = FILESTORE_OK;

	if (fdatasync(w->fd) < 0)
		log_warn("files: fdatasync upload %s: %s", w->id,
			 strerror(errno));
	close(w->fd);
	if (w->offset == w->length)
		rc = upload_finish(fs, w->id, w->length, w->name);
	else if (store_file_offset_set(fs->store, w->id, w->offset) != STORE_OK)
		rc = FILESTORE_EINTERNAL;
	if (offset)
		*offset = w->offset;
	busy_drop(fs, w->id);
	free(w->name);
	free(w);
	return rc;
}

/* --- files -------------------------------------------------------------- */

int filestore_open(struct filestore *fs, const char *id, int64_t user,
		   struct store_file *out, int *fd)
{
	if (!id_valid(id))
		return FILESTORE_ENOTFOUND;
	int rc = store_file_get(fs->store, id, out);
	if (rc != STORE_OK)
		return FILESTORE_ENOTFOUND;
	if (!out->sha256 || store_file_access(fs->store, id, user) != 1)
		goto fail;
	struct buf b;
	buf_init(&b);
	path_blob(fs, out->sha256, &b);
	*fd = open(b.data, O_RDONLY | O_CLOEXEC);
	buf_fini(&b);
	if (*fd < 0)
		goto fail;
	return FILESTORE_OK;
fail:
	store_file_fini(out);
	return FILESTORE_ENOTFOUND;
}

/* --- avatars ----------------------------------------------------------- */

static const char *const avatar_types[] = {"image/png", "image/jpeg",
					   "image/gif", "image/webp"};

int filestore_avatar_set(struct filestore *fs, int64_t user, const char *id)
{
	if (!id)
		return store_user_avatar_set(fs->store, user, NULL) == STORE_OK
			   ? FILESTORE_OK
			   : FILESTORE_EINTERNAL;
	struct store_file f;
	int rc = filestore_get(fs, id, user, &f);
	if (rc != FILESTORE_OK)
		return rc;
	if (!f.sha256) {
		rc = FILESTORE_ENOTFOUND;
		goto out;
	}
	rc = FILESTORE_ETYPE;
	for (size_t i = 0; f.type && i < ARRAY_LEN(avatar_types); i++)
		if (strcmp(f.type, avatar_types[i]) == 0)
			rc = FILESTORE_OK;
	if (rc != FILESTORE_OK)
		goto out;
	if ((uint64_t)f.length > fs->avatar_max_size) {
		rc = FILESTORE_ETOOBIG;
		goto out;
	}
	rc = store_user_avatar_set(fs->store, user, id) == STORE_OK
		 ? FILESTORE_OK
		 : FILESTORE_EINTERNAL;
out:
	store_file_fini(&f);
	return rc;
}

size_t filestore_avatar_max_size(const struct filestore *fs)
{
	return fs->avatar_max_size;
}

json_t *filestore_avatar_json(const char *id)
{
	if (!id || !*id)
		return json_null();
	char url[64];
	snprintf(url, sizeof(url), "/files/%.32s/avatar", id);
	return json_string(url);
}

/* --- the sweep ---------------------------------------------------------- */

struct sweep {
	struct filestore *fs;
	int n;
};

static void swept(void *arg, const char *id, const char *sha)
{
	struct sweep *s = arg;
	s->n++;
	removed(s->fs, id, sha);
}

struct sweep_list {
	struct filestore *fs;
	char **id, **sha;
	size_t n;
};

/* The sweep's keep: an upload a request is writing now is not expired
 * (the sweep holds mu meanwhile). */
static bool sweep_keep(void *arg, const char *id)
{
	struct sweep_list *l = arg;
	return busy_has(l->fs, id);
}

static void listed(void *arg, const char *id, const char *sha)
{
	struct sweep_list *l = arg;
	l->id = xrealloc(l->id, (l->n + 1) * sizeof(*l->id));
	l->sha = xrealloc(l->sha, (l->n + 1) * sizeof(*l->sha));
	l->id[l->n] = xstrdup(id);
	l->sha[l->n++] = sha ? xstrdup(sha) : NULL;
}

int filestore_sweep(struct filestore *fs)
{
	struct sweep s = {fs, 0};
	int64_t now = now_ms();
	int64_t before = now - (int64_t)fs->expiry_s * 1000;
	/* Rows go under mu, content after it (removed() takes it again). */
	struct sweep_list l = {.fs = fs};
	pthread_mutex_lock(&fs->mu);
	int rc =
	    store_files_sweep(fs->store, now, before, sweep_keep, listed, &l);
	pthread_mutex_unlock(&fs->mu);
	if (rc != STORE_OK)
		log_warn("files: the sweep failed");
	for (size_t i = 0; i < l.n; i++) {
		swept(&s, l.id[i], l.sha[i]);
		free(l.id[i]);
		free(l.sha[i]);
	}
	free(l.id);
	free(l.sha);
	if (s.n)
		log_info("files: sweep removed=%d", s.n);
	return s.n;
}

static void *sweeper_main(void *arg)
{
	struct filestore *fs = arg;
	unsigned period = fs->expiry_s / 4;
	if (period < 1)
		period = 1;
	if (period > 300)
		period = 300;
	pthread_setname_np(pthread_self(), "files-sweep");
	pthread_mutex_lock(&fs->stop_mu);
	while (!fs->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += period;
		pthread_cond_timedwait(&fs->stop_cv, &fs->stop_mu, &ts);
		if (fs->stop)
			break;
		pthread_mutex_unlock(&fs->stop_mu);
		filestore_sweep(fs);
		pthread_mutex_lock(&fs->stop_mu);
	}
	pthread_mutex_unlock(&fs->stop_mu);
	return NULL;
}

/* --- life --------------------------------------------------------------- */

struct filestore *filestore_new(struct store *st,
				const struct filestore_config *cfg, char *err,
				size_t errlen)
{
	struct filestore *fs = xcalloc(1, sizeof(*fs));
	fs->store = st;
	fs->dir = xstrdup(cfg->dir);
	fs->max_size = cfg->max_size;
	fs->quota = cfg->quota;
	fs->avatar_max_size =
	    cfg->avatar_max_size ? cfg->avatar_max_size : cfg->max_size;
	fs->expiry_s = cfg->expiry_s;
	pthread_mutex_init(&fs->mu, NULL);
	pthread_mutex_init(&fs->magic_mu, NULL);
	pthread_mutex_init(&fs->stop_mu, NULL);
	pthread_cond_init(&fs->stop_cv, NULL);

	const char *sub[] = {"", "/blobs", "/uploads"};
	for (size_t i = 0; i < ARRAY_LEN(sub); i++) {
		struct buf b;
		buf_init(&b);
		buf_printf(&b, "%s%s", fs->dir, sub[i]);
		if (mkdir(b.data, 0750) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "files-dir: cannot create %s: %s",
				 b.data, strerror(errno));
			buf_fini(&b);
			goto fail;
		}
		buf_fini(&b);
	}
	fs->magic = magic_open(MAGIC_MIME_TYPE);
	if (!fs->magic || magic_load(fs->magic, NULL) != 0) {
		snprintf(err, errlen, "libmagic: cannot load its database: %s",
			 fs->magic ? magic_error(fs->magic) : "no memory");
		goto fail;
	}
	if (pthread_create(&fs->sweeper, NULL, sweeper_main, fs) != 0) {
		snprintf(err, errlen, "files: cannot start the sweep thread");
		goto fail;
	}
	fs->started = true;
	return fs;
fail:
	filestore_free(fs);
	return NULL;
}

void filestore_free(struct filestore *fs)
{
	if (!fs)
		return;
	if (fs->started) {
		pthread_mutex_lock(&fs->stop_mu);
		fs->stop = true;
		pthread_cond_signal(&fs->stop_cv);
		pthread_mutex_unlock(&fs->stop_mu);
		pthread_join(fs->sweeper, NULL);
	}
	if (fs->magic)
		magic_close(fs->magic);
	pthread_mutex_destroy(&fs->mu);
	pthread_mutex_destroy(&fs->magic_mu);
	pthread_mutex_destroy(&fs->stop_mu);
	pthread_cond_destroy(&fs->stop_cv);
	free(fs->dir);
	free(fs);
}
