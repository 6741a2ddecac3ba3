/* store: the storage interface. Persistent events are appended in groups
 * (the jobs queued while the previous batch committed, at most
 * commit_batch_max, plus those arriving within commit_interval_ms if that
 * is set) and each job is reported done only after its commit; the store
 * assigns the server-wide event ids in commit order and builds each event's
 * envelope once. Reads and small account writes are safe from any thread.
 *
 * Each call dispatches to a backend (store/backend.h: an ops table); the
 * first is SQLite (store/sqlite/: WAL, db/schema.sql and the numbered
 * migrations in db/migrations/ by PRAGMA user_version, refusing a database
 * from a newer schema). Every backend passes tests/unit/store_contract.c.
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
	STORE_CLOSED = -5, /* store is shutting down */
	STORE_FULL = -6	   /* the database's filesystem is full: nothing of
			      the batch was applied; retry once space returns */
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

/* A new persistent event of type, applied as the event-type table says
 * (its store effect, its sender rule, whether it is searchable). */
struct store_write {
	enum event_type type;
	int64_t user_id;
	const char *username; /* canonical; NULL: the store looks it up */
	int64_t room_id;      /* 0: by room_name; unused when creating */
	const char *room_name;
	const char *text;      /* searchable types */
	const char *client_id; /* searchable types, optional (NULL) */
	const char *topic;     /* room creation, optional */
	json_t *args; /* the command's object, for a type with an envelope
			 extra (evtype.h); borrowed, copied; may be NULL */
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
/* One room, as listed. */
struct store_room {
	int64_t id;
	char name[33];
	char *topic;
	int64_t created_ms;
	int64_t members; /* how many */
	bool joined;	 /* the asking user is a member */
};
/* Every room sorted by name; joined is relative to user_id (0: nobody).
 * 0 with a malloc'd array in *out (caller frees with store_rooms_free), or
 * -1. */
int store_rooms_list(struct store *st, int64_t user_id, struct store_room **out,
		     size_t *n);
void store_rooms_free(struct store_room *v, size_t n);
/* One member of a room. */
struct store_member {
	char username[33];
	char *display_name;
};
/* The members of a room sorted by username: 0 (caller frees with
 * store_members_free) or -1. */
int store_room_members(struct store *st, int64_t room_id,
		       struct store_member **out, size_t *n);
void store_members_free(struct store_member *v, size_t n);
/* 1 member, 0 not, -1 error. */
int store_is_member(struct store *st, int64_t room_id, int64_t user_id);
/* Call fn for every (room, user) membership; for loading the bus. */
int store_members_each(struct store *st,
		       void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		       void *arg);

/* A page of a room's history as event references (the stored envelopes,
 * shared, never re-parsed) in increasing id order: before > 0: the newest
 * `limit` events with id < before; after >= 0: the oldest `limit` with
 * id > after; neither (both -1): the newest `limit`. *more says whether
 * further events lie beyond the page in that direction. 0 (caller unrefs
 * each and frees the array) or -1. */
int store_history(struct store *st, int64_t room_id, int64_t before,
		  int64_t after, unsigned limit, struct event ***out, size_t *n,
		  bool *more);
/* Full-text search (FTS5) over the searchable events in rooms user_id is a
 * member of: event references, newest first, at most limit. q is plain
 * words (each is matched as a prefix; FTS syntax characters are
 * neutralised, so any q is safe). 0 or -1, as store_history. */
int store_search(struct store *st, int64_t user_id, const char *q,
		 unsigned limit, struct event ***out, size_t *n);
/* At most limit persistent events with id > after that user_id may see,
 * in increasing id order, as event references (caller unrefs each and
 * frees the array). Membership is as of each event, exactly as the bus's
 * ring replay and a live subscriber see it: the user's join (or room
 * creation) counts from that event on; the user's own leave is included,
 * and nothing of that room after it until a new join. Every backend must
 * answer the same (tests/unit/store_contract.c). Matches bus_history_fn. */
int store_events_after(void *st, int64_t user_id, int64_t after, size_t limit,
		       struct event ***out, size_t *n);

#endif
