/* store: SQLite. Opens the database (WAL), applies db/schema.sql and the
 * numbered migrations in db/migrations/ by PRAGMA user_version, and refuses
 * a database from a newer schema. Persistent events are appended by one
 * writer thread that commits in groups (the jobs queued while the previous
 * batch committed, at most commit_batch_max, plus those arriving within
 * commit_interval_ms if that is set) and only then reports
 * each job done; that thread assigns the server-wide event ids and builds
 * each event's envelope once. Reads and small account writes use a pool of
 * connections and are safe from any thread.
 *
 * It knows nothing of HTTP or the bus: new events leave through the commit
 * hook. Errors are returned, never logged. */
#ifndef NATTER_STORE_H
#define NATTER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "model/event.h"

struct store;

enum store_status {
	STORE_OK = 0,
	STORE_DUPLICATE = 1, /* client_id already used: ev is the first */
	STORE_ERR = -1,	     /* SQLite failure */
	STORE_NOTFOUND = -2,
	STORE_EXISTS = -3, /* unique name taken / already a member */
	STORE_NOTMEMBER = -4,
	STORE_CLOSED = -5 /* store is shutting down */
};

struct store_config {
	const char *path;   /* database file */
	const char *db_dir; /* holds schema.sql and migrations/NNN-*.sql */
	bool sync_full;	    /* synchronous=FULL, else NORMAL */
	unsigned commit_interval_ms;
	unsigned commit_batch_max;
	unsigned readers; /* read connections in the pool */
	/* How long store_session_user may answer from memory (0: never). A
	 * logout through store_session_delete takes effect at once; a session
	 * deleted behind natterd's back stops working after this long. */
	unsigned session_cache_ms;
};

/* NULL on failure with a human message in err (names the file and the
 * problem, e.g. "schema version 7 is newer than this natterd (3)"). */
struct store *store_open(const struct store_config *cfg, char *err,
			 size_t errlen);
/* Finishes and commits every submitted write, calls their done callbacks,
 * stops the writer, closes the database. NULL is fine. */
void store_close(struct store *st);

/* --- persistent events (writer thread) --------------------------------- */

enum store_op {
	STORE_MESSAGE,	  /* needs room_id, text; client_id optional */
	STORE_JOIN,	  /* membership insert; STORE_EXISTS if a member */
	STORE_LEAVE,	  /* membership delete; STORE_NOTMEMBER if not */
	STORE_ROOM_CREATE /* room insert + creator membership; STORE_EXISTS */
};
struct store_write {
	enum store_op op;
	int64_t user_id;
	const char *username;
	int64_t room_id; /* 0 for STORE_ROOM_CREATE */
	const char *room_name;
	const char *text;      /* STORE_MESSAGE */
	const char *client_id; /* STORE_MESSAGE, optional (NULL) */
	const char *topic;     /* STORE_ROOM_CREATE, optional */
};
/* Runs on the writer thread after the job's transaction committed (or
 * failed). status: STORE_OK with the new event, STORE_DUPLICATE with the
 * first event for that client_id, or a negative status with ev NULL.
 * ev is borrowed: event_ref() it to keep it. */
typedef void (*store_done_fn)(void *arg, int status, struct event *ev);
/* Queue a job; every string is copied. done is always called exactly once
 * (with STORE_CLOSED if the store is closing). */
void store_write_submit(struct store *st, const struct store_write *w,
			store_done_fn done, void *arg);
/* Called on the writer thread for each new persistent event, in id order,
 * after its commit and before the done callbacks of the batch. Set once,
 * before the first submit. ev is borrowed. */
void store_set_commit_hook(struct store *st,
			   void (*hook)(void *arg, struct event *ev),
			   void *arg);
int64_t store_last_event_id(struct store *st);

/* --- users and sessions ------------------------------------------------- */

struct store_user {
	int64_t id;
	char *username;
	char *display_name; /* may equal username */
	char *settings;	    /* JSON object text, "{}" by default */
	char *pwhash;	    /* encoded Argon2id */
	int64_t created_ms;
};
void store_user_fini(struct store_user *u);

/* STORE_OK (id in *id), STORE_EXISTS (name taken, ignoring case). */
int store_user_create(struct store *st, const char *username,
		      const char *pwhash, int64_t *id);
/* Case-insensitive. STORE_OK (fill *out; caller calls store_user_fini) or
 * STORE_NOTFOUND. */
int store_user_by_name(struct store *st, const char *username,
		       struct store_user *out);
int store_user_by_id(struct store *st, int64_t id, struct store_user *out);
/* NULL leaves a field as it is. settings must be JSON object text. */
int store_user_update(struct store *st, int64_t id, const char *display_name,
		      const char *settings);

/* Sessions are stored by the SHA-256 of their token, never the token. */
int store_session_create(struct store *st, const uint8_t hash[32],
			 int64_t user_id, int64_t expires_ms);
/* STORE_OK with *user_id, or STORE_NOTFOUND (unknown or expired). */
int store_session_lookup(struct store *st, const uint8_t hash[32],
			 int64_t now_ms, int64_t *user_id);
int store_session_delete(struct store *st, const uint8_t hash[32]);
/* store_session_lookup plus the user's name, in one read, answered from a
 * small cache for session_cache_ms: what every authenticated request asks.
 * STORE_OK (fills *user_id and username), STORE_NOTFOUND, STORE_ERR. */
int store_session_user(struct store *st, const uint8_t hash[32], int64_t now_ms,
		       int64_t *user_id, char username[33]);

/* --- rooms and history ---------------------------------------------------- */

/* Case-insensitive. STORE_OK with *room_id and the canonical name copied
 * into name_out (33 bytes, may be NULL), or STORE_NOTFOUND. */
int store_room_by_name(struct store *st, const char *name, int64_t *room_id,
		       char name_out[33]);
/* JSON array of {"name","topic","created","members","joined"} sorted by
 * name; joined is relative to user_id. NULL on error. Caller decrefs. */
json_t *store_rooms_list(struct store *st, int64_t user_id);
/* JSON array of {"username","display_name"} sorted by username. */
json_t *store_room_members(struct store *st, int64_t room_id);
/* 1 member, 0 not, -1 error. */
int store_is_member(struct store *st, int64_t room_id, int64_t user_id);
/* Call fn for every (room, user) membership; for loading the bus. */
int store_members_each(struct store *st,
		       void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		       void *arg);

/* A page of a room's history as a JSON array of envelopes in increasing id
 * order: before > 0: the newest `limit` events with id < before; after >= 0:
 * the oldest `limit` with id > after; neither (both -1): the newest `limit`.
 * *more says whether further events lie beyond the page in that direction.
 * Caller decrefs. NULL on error. */
json_t *store_history(struct store *st, int64_t room_id, int64_t before,
		      int64_t after, unsigned limit, bool *more);
/* Full-text search (FTS5) over messages in rooms user_id is a member of:
 * a JSON array of envelopes, newest first, at most limit. q is plain words
 * (each is matched as a prefix; FTS syntax characters are neutralised, so
 * any q is safe). NULL on error. */
json_t *store_search(struct store *st, int64_t user_id, const char *q,
		     unsigned limit);
/* At most limit persistent events with id > after in rooms user_id is a
 * member of now, increasing id, as event references (caller unrefs each and
 * frees the array). Matches bus_history_fn. */
int store_events_after(void *st, int64_t user_id, int64_t after, size_t limit,
		       struct event ***out, size_t *n);

#endif
