/* filestore: the bytes of uploads and files, and their rules. An upload
 * (tus) is a row in the store and a part file under DIR/uploads/ that
 * grows as chunks arrive; when its last byte arrives the part is hashed
 * (SHA-256), typed from its bytes (libmagic: MIME type, and an image's
 * width and height from libmagic's description), and becomes content
 * under DIR/blobs/xx/<sha256>, stored once however many files have it.
 * Limits: a size per file and a quota per user (declared lengths count
 * from creation). A sweep thread removes expired unfinished uploads,
 * finished files no message uses once as old as the expiry, and content
 * no file names any more.
 *
 * It does not parse HTTP or decide who may see a message: downloads ask
 * store_file_access through filestore_open. */
#ifndef NATTER_FILESTORE_H
#define NATTER_FILESTORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

enum filestore_err {
	FILESTORE_OK = 0,
	FILESTORE_ENOTFOUND = -1, /* no such upload, or not yours */
	FILESTORE_ETOOBIG = -2,	  /* over the per-file limit */
	FILESTORE_EQUOTA = -3,	  /* over the user's quota */
	FILESTORE_ECONFLICT = -4, /* the offset is not the upload's */
	FILESTORE_EBUSY = -5,	  /* another request writes this upload */
	FILESTORE_EDONE = -6,	  /* the upload is complete already */
	FILESTORE_EINTERNAL = -7, /* disk or store failure (logged) */
	FILESTORE_ETYPE = -8,	  /* not a raster image (avatars) */
};

/* bytes of the name in a file's url (a path segment holds < 64) */

struct filestore_config {
	const char *dir;
	size_t max_size, quota; /* quota 0: none */
	size_t avatar_max_size; /* 0: max_size */
	unsigned expiry_s;
};

struct filestore;
struct filestore_write;

/* Creates dir (and its blobs/ and uploads/) and starts the sweep. NULL
 * with a message in err. */
struct filestore *filestore_new(struct store *st,
				const struct filestore_config *cfg, char *err,
				size_t errlen);
/* Stops the sweep; NULL is fine. Writes still open must be ended first. */
void filestore_free(struct filestore *fs);
size_t filestore_max_size(const struct filestore *fs);

/* --- uploads ---------------------------------------------------------- */

/* A new upload of length bytes by owner: FILESTORE_OK with its id (32
 * hex digits) in id and its expiry (wall clock ms) in *expires_ms, or
 * FILESTORE_ETOOBIG, FILESTORE_EQUOTA, FILESTORE_EINTERNAL. name and
 * metadata may be NULL. */
int filestore_create(struct filestore *fs, int64_t owner, int64_t length,
		     const char *name, const char *metadata, char id[33],
		     int64_t *expires_ms);
/* The upload or file id of owner: FILESTORE_OK (caller calls
 * store_file_fini), FILESTORE_ENOTFOUND. */
int filestore_get(struct filestore *fs, const char *id, int64_t owner,
		  struct store_file *out);
/* Termination: owner's upload (or unused file) is gone. FILESTORE_OK,
 * FILESTORE_ENOTFOUND, FILESTORE_EBUSY. */
int filestore_delete(struct filestore *fs, const char *id, int64_t owner);

/* Append to owner's upload id from offset, which must be its offset now
 * (FILESTORE_ECONFLICT), complete (FILESTORE_EDONE), not being written
 * by another request (FILESTORE_EBUSY). *w is for filestore_write and
 * must be ended with filestore_write_end. */
int filestore_write_begin(struct filestore *fs, const char *id, int64_t owner,
			  int64_t offset, struct filestore_write **w);
/* n more bytes: FILESTORE_OK, FILESTORE_ETOOBIG (past the declared
 * length; nothing of them written), FILESTORE_EINTERNAL. */
int filestore_write(struct filestore_write *w, const void *data, size_t n);
/* The upload ends here: its length was an upper bound (a form upload), it
 * is what arrived; name (may be NULL: keep) becomes the file's name. */
void filestore_write_complete(struct filestore_write *w, const char *name);
/* Keep what arrived (also after a cut connection): the upload's offset is
 * recorded, and when it reached the length the file is finished. *offset
 * (may be NULL) is the new offset; FILESTORE_OK or FILESTORE_EINTERNAL.
 * Frees w. */
int filestore_write_end(struct filestore_write *w, int64_t *offset);

/* --- files -------------------------------------------------------------- */

/* Open finished file id for reading if user may read it: FILESTORE_OK
 * with *fd (caller closes) and *out (caller calls store_file_fini), or
 * FILESTORE_ENOTFOUND. */
int filestore_open(struct filestore *fs, const char *id, int64_t user,
		   struct store_file *out, int *fd);
/* --- avatars ------------------------------------------------------------ */

/* user's avatar becomes their finished file id (NULL: none): a PNG, JPEG,
 * GIF or WebP by its bytes (FILESTORE_ETYPE) of at most the avatar size
 * (FILESTORE_ETOOBIG). FILESTORE_OK, FILESTORE_ENOTFOUND (not a finished
 * file of user's), FILESTORE_EINTERNAL. The avatar it replaces is an
 * unused file again (the sweep removes it in time). */
int filestore_avatar_set(struct filestore *fs, int64_t user, const char *id);
/* The URL of avatar file id ("/files/{id}/avatar"; NULL: none) as a new
 * JSON string, or JSON null. */
json_t *filestore_avatar_json(const char *id);
size_t filestore_avatar_max_size(const struct filestore *fs);

/* Run one sweep now (the thread also runs it): rows removed. */
int filestore_sweep(struct filestore *fs);

#endif
