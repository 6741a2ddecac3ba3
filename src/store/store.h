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
	STORE_CLOSED = -5,    /* store is shutting down */
	STORE_BANNED = -6,    /* joining a room the user is banned from */
	STORE_NOTARGET = -7,  /* no such message in that room */
	STORE_NOTAUTHOR = -8, /* the message is someone else's */
	STORE_GONE = -9,      /* the message is deleted: it cannot change */
	STORE_NOUSER = -10,   /* a user named in the write does not exist */
	STORE_FIXED = -11,    /* a direct conversation's people cannot change */
	STORE_FULL = -12,     /* the database's filesystem is full: nothing of
				 the batch was applied; retry once space
				 returns */
	STORE_DISABLED = -13, /* the session's account is disabled */
	STORE_BADREF = -14,   /* a reply_to that is not a message of the room */
	STORE_LIMIT = -15,    /* a message has EVTYPE_REACTIONS_MAX emoji */
	STORE_UNAVAILABLE = -16, /* the database server cannot be reached (a
				    networked backend): nothing of the batch
				    was applied; retry shortly */
	STORE_NOFILE = -17 /* a message names a file that is not a finished
			      upload of its sender */
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
	const char *html;      /* searchable types: text rendered, or NULL */
	const char *client_id; /* searchable types, optional (NULL) */
	const char *topic;     /* room creation, optional */
	/* the user the event acts on (EVTYPE_FROM_MODERATOR types: the one
	 * removed or banned), else 0 */
	int64_t subject_id;
	/* the message an edit, delete or reaction names, or a message
	 * replies to */
	int64_t target_id;
	/* A delete by a moderator of the room (chat_can_moderate): the writer
	 * does not require the sender to be the message's author. */
	bool moderated;
	json_t *args; /* the command's object, for a type with an envelope
			 extra (evtype.h); borrowed, copied; may be NULL.
			 A type with files (evtype row files): "files" lists
			 upload ids, which the writer turns into the file
			 objects the envelope carries (store_file_json), in
			 the event's transaction: each must be a finished
			 upload of user_id, else STORE_NOFILE */
	/* Searchable types: the users the text mentions (written to the
	 * mentions table in the event's transaction) and the names its
	 * envelope lists as "mentions" (evtype_input); both copied. */
	const int64_t *mention_ids;
	size_t nmention_ids;
	const char *const *mention_names;
	size_t nmention_names;
	/* @room: every member of the room but the sender, as of the commit */
	bool mention_room;
};
/* Runs on the writer thread after the job's transaction committed (or
 * failed). status: STORE_OK with the new event, STORE_DUPLICATE with the
 * first event for that client_id (or, for an edit that changes nothing
 * or a delete of a deleted message, the event that made the message what
 * it is), or a negative status with ev NULL. An edit or delete is decided
 * inside the transaction: STORE_NOTARGET (no message of that id in that
 * room), STORE_NOTAUTHOR, STORE_GONE (an edit of a deleted message);
 * STORE_NOFILE for a message naming a file it may not carry.
 * ev is borrowed: event_ref() it to keep it. */
typedef void (*store_done_fn)(void *arg, int status, struct event *ev);
/* Queue a job; every string is copied. done is always called exactly once
 * (with STORE_CLOSED if the store is closing). */
void store_write_submit(struct store *st, const struct store_write *w,
			store_done_fn done, void *arg);
/* Called on the writer thread for each new persistent event, in id order,
 * after its commit and before the done callbacks of the batch; and, right
 * before an event that rewrote stored events (a delete), with each of their
 * new versions (event_is_revision: an id already handed over). Set once,
 * before the first submit. ev is borrowed. */
void store_set_commit_hook(struct store *st,
			   void (*hook)(void *arg, struct event *ev),
			   void *arg);
/* What another node did to an account (and, with PostgreSQL, this node's
 * own changes too): 'n' a new account (id, name), 'u' an account disabled,
 * enabled or given a new password (id; name NULL). Called on a store
 * thread, never a loop's; set once, before any request. true when the
 * backend calls it for every change, this node's included (PostgreSQL);
 * false when it never does (SQLite: one node, every change made here). */
typedef void (*store_user_hook)(void *arg, char kind, int64_t id,
				const char *name);
bool store_set_user_hook(struct store *st, store_user_hook hook, void *arg);
int64_t store_last_event_id(struct store *st);
/* The backend's name ("sqlite", "postgresql"), and whether its database
 * can be reached now (SQLite: always; PostgreSQL: this node's connection
 * to the server is up). Any thread. */
const char *store_backend_name(struct store *st);
bool store_reachable(struct store *st);

/* --- users and sessions ------------------------------------------------- */

struct store_user {
	int64_t id;
	char *username;
	char *display_name; /* may equal username */
	char *settings;	    /* JSON object text, "{}" by default */
	char *pwhash;	    /* encoded Argon2id */
	int64_t created_ms;
	bool admin;	       /* a server admin */
	bool disabled;	       /* an admin disabled the account */
	char *disabled_reason; /* why, "" when not said */
	char *avatar;	       /* the avatar's file id, NULL: none */
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
/* Make a user a server admin, or no longer one: STORE_OK or
 * STORE_NOTFOUND. The first account a store creates is an admin. */
int store_user_admin_set(struct store *st, int64_t id, bool admin);
/* Disable an account (for reason, NULL: none), or enable it again. A
 * disabled account's sessions are kept, and store_session_user answers
 * STORE_DISABLED for them (so a client can be told why, not just 401);
 * enabling ends them, so the account starts afresh with a login. A session
 * cached by store_session_user in this process
 * is forgotten at once; another process (natterctl) reaches a running
 * natterd's cache only when its entries expire (session_cache_ms).
 * STORE_OK, STORE_NOTFOUND, STORE_ERR. */
int store_user_disable(struct store *st, int64_t id, bool disabled,
		       const char *reason);
/* A new password hash; every session of the account ends (as with
 * store_user_disable). STORE_OK, STORE_NOTFOUND, STORE_ERR. */
int store_user_password_set(struct store *st, int64_t id, const char *pwhash);
/* NULL leaves a field as it is. settings must be JSON object text. */
/* The user's avatar becomes finished file file_id (the caller checked it
 * is theirs and an image), or none (NULL). A file that is an avatar is
 * kept by the sweep and readable by every user; the one it replaces is
 * an unused file again. STORE_OK, STORE_NOTFOUND, STORE_ERR. */
int store_user_avatar_set(struct store *st, int64_t id, const char *file_id);
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
 * STORE_OK (fills *user_id and username), STORE_DISABLED (the account is
 * disabled: fills *user_id and username too), STORE_NOTFOUND, STORE_ERR,
 * STORE_UNAVAILABLE (a database server that cannot be reached). */
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
	char kind[8];	 /* "public", "private" or "dm" */
	char *people;	 /* dm: the other members' names, sorted, joined by
			    commas ("" for a conversation with oneself);
			    NULL for other kinds */
	/* For the asking user (0 when user_id is 0): the read marker (their
	 * own, else their newest join of the room), and, in a room they
	 * belong to, the messages by others after it and those of them that
	 * mention the user. */
	int64_t read, unread, mentions;
	/* The id of their newest join of the room (creating it counts), or
	 * 0: messages before it were not sent to them. */
	int64_t joined_id;
};
/* The rooms user_id may see, sorted by name: the public ones and those the
 * user is a member of (private rooms and direct conversations of others
 * are left out); joined is relative to user_id. user_id 0 lists every room
 * (for loading caches), joined false. 0 with a malloc'd array in *out
 * (caller frees with store_rooms_free), or -1. */
int store_rooms_list(struct store *st, int64_t user_id, struct store_room **out,
		     size_t *n);
void store_rooms_free(struct store_room *v, size_t n);
/* A user's role in a room, ordered by rights. */
enum store_role {
	STORE_ROLE_NONE = 0,	  /* not a member */
	STORE_ROLE_MEMBER = 1,	  /* a member */
	STORE_ROLE_MODERATOR = 2, /* a member named moderator by the owner */
	STORE_ROLE_OWNER = 3	  /* a member who created the room */
};
/* One member of a room. */
struct store_member {
	char username[33];
	char *display_name;
	enum store_role role;
	char *avatar; /* the avatar's file id, NULL: none */
};
/* The members of a room sorted by username: 0 (caller frees with
 * store_members_free) or -1. */
int store_room_members(struct store *st, int64_t room_id,
		       struct store_member **out, size_t *n);
void store_members_free(struct store_member *v, size_t n);
/* 1 member, 0 not, -1 error. */
int store_is_member(struct store *st, int64_t room_id, int64_t user_id);
/* user_id's role in room_id (enum store_role: an owner or moderator who is
 * no longer a member is STORE_ROLE_NONE), STORE_NOTFOUND (no such room)
 * or STORE_ERR. */
int store_room_role(struct store *st, int64_t room_id, int64_t user_id);
/* Name a member of a room moderator (on), by user `by` (0: nobody, e.g. an
 * operator's tool), or no longer one. Both are idempotent. A moderator who
 * stops being a member stops being a moderator. STORE_OK, STORE_NOTMEMBER
 * (on, and user_id is not a member), STORE_NOTFOUND (no such room, on),
 * STORE_ERR. */
int store_moderator_set(struct store *st, int64_t room_id, int64_t user_id,
			int64_t by, bool on);
/* Ban user_id from room_id (on; replacing an earlier ban) by `by` (0:
 * nobody) for reason (NULL: none), or lift the ban. A ban does not remove
 * a member by itself: that is the ban event (EVTYPE_EFFECT_SUBJECT_BAN),
 * which also records the ban; this is for a user who is not a member, and
 * for lifting. While banned, a join is refused with STORE_BANNED.
 * STORE_OK, STORE_NOTFOUND (on: no such room or user; off: no such ban),
 * STORE_ERR. */
int store_ban_set(struct store *st, int64_t room_id, int64_t user_id,
		  int64_t by, const char *reason, bool on);
/* One ban of a room. */
struct store_ban {
	char username[33];
	char by[33]; /* who banned: "" when unknown */
	char *reason;
	int64_t created_ms;
};
/* The bans of a room sorted by username: 0 (caller frees with
 * store_bans_free) or -1. */
int store_bans_list(struct store *st, int64_t room_id, struct store_ban **out,
		    size_t *n);
void store_bans_free(struct store_ban *v, size_t n);
/* Mute user_id in room_id until until_ms (replacing an earlier mute), by
 * `by` (0: nobody) for reason (NULL: none); until_ms 0 lifts a mute
 * still running. STORE_OK, STORE_NOTFOUND (mute: no such room or user;
 * lift: no mute running), STORE_ERR. Refusing the sends is chat's. */
int store_mute_set(struct store *st, int64_t room_id, int64_t user_id,
		   int64_t until_ms, int64_t by, const char *reason);
/* Call fn for every mute still running at now_ms; 0 or -1. */
int store_mutes_each(struct store *st, int64_t now_ms,
		     void (*fn)(void *arg, int64_t room_id, int64_t user_id,
				int64_t until_ms),
		     void *arg);
/* Call fn for every role above member: with rooms, each room's owner
 * (role STORE_ROLE_OWNER; rooms without one, like the lobby, are left
 * out) and each moderator (STORE_ROLE_MODERATOR), whether or not still a
 * member; then, always, each server admin as room_id 0 (role
 * STORE_ROLE_OWNER). For loading chat's role cache. 0 or -1. */
int store_roles_each(struct store *st, bool rooms,
		     void (*fn)(void *arg, int64_t room_id, int64_t user_id,
				int role),
		     void *arg);
/* One row of the audit log: a moderation or admin action. Strings are
 * names ("" or NULL when not applicable); ts_ms 0 when adding: now. */
struct store_audit {
	int64_t id, ts_ms;
	char *actor;  /* a user name, or "natterctl" */
	char *action; /* "kick", "ban", "unban", "mute", "unmute",
			 "moderator", "unmoderator", "disable", "enable",
			 "grant_admin", "revoke_admin", ... */
	char *target; /* the user acted on */
	char *room;
	char *reason;
	char *detail; /* more, e.g. a mute's seconds */
};
/* Append a row (the strings are borrowed): STORE_OK or STORE_ERR. */
int store_audit_add(struct store *st, const struct store_audit *a);
/* The newest limit rows with id < before (before <= 0: the newest),
 * newest first; *more when older ones remain. 0 (caller frees with
 * store_audit_free) or -1. */
int store_audit_list(struct store *st, int64_t before, unsigned limit,
		     struct store_audit **out, size_t *n, bool *more);
void store_audit_free(struct store_audit *v, size_t n);

/* --- statistics (the admin page, rooms-per-day) ----------------------------
 */

/* One metric sample (core/stats.c writes one a minute). */
struct store_sample {
	int64_t minute;		   /* unix seconds, a multiple of 60 */
	int64_t conn[3];	   /* peak connections: ws, sse, poll */
	int64_t sends, deliveries; /* within the minute */
	const char *fallback;	   /* JSON object text {"sse/ws_failed": n}: the
				      transports clients reported ending on, with
				      why; NULL: {} */
	const char *latency;	   /* JSON array text: send-to-delivery counts
				      per util/histo.h bucket; NULL: [] */
};
/* Append a sample (strings borrowed): STORE_OK or STORE_ERR. */
int store_sample_add(struct store *st, const struct store_sample *s);
/* Delete the samples of minutes before before_s: STORE_OK or STORE_ERR. */
int store_samples_prune(struct store *st, int64_t before_s);
/* The admin page's aggregates for from_ms <= t < to_ms, time series in
 * buckets of bucket_s seconds (from the epoch), as a JSON object (caller
 * decrefs) or NULL on error:
 *   messages_per_day     [{day:"YYYY-MM-DD", room, messages}]
 *   active_users_per_day [{day, users}]  (users who sent a message)
 *   top_rooms            [{room, messages, senders}], at most 10
 *   connections          [{t, ws, sse, poll}]  peaks per bucket
 *   fallbacks            [{t, transport, reason, count}]
 *   latency              [{t, bucket, count}]  summed histogram buckets
 *   totals               {messages, active_users, sends, deliveries}
 * Direct conversations are counted together as the room "(direct)". */
json_t *store_stats(struct store *st, int64_t from_ms, int64_t to_ms,
		    int64_t bucket_s);
/* Accounts whose name contains q (ignoring ASCII case; NULL or "": all),
 * sorted by name, names after `after` only (NULL: from the first), at
 * most limit; *more when more follow. No password hash or settings are
 * read (those fields are ""). 0 (caller frees with store_users_free) or
 * -1. */
int store_users_search(struct store *st, const char *q, const char *after,
		       unsigned limit, struct store_user **out, size_t *n,
		       bool *more);
void store_users_free(struct store_user *v, size_t n);
/* Rooms and direct conversations user_id created at or after since_ms:
 * STORE_OK with *count and the oldest one's time in *oldest_ms (0 when
 * none), or STORE_ERR. */
int store_rooms_created(struct store *st, int64_t user_id, int64_t since_ms,
			int64_t *count, int64_t *oldest_ms);

/* Presence kept across restarts (migration 008). status is "online"
 * (automatic), "away" or "dnd"; text NULL for none. */
struct store_presence {
	int64_t user_id;
	const char *status;
	const char *text;     /* NULL: none */
	int64_t last_seen_ms; /* 0: never seen */
};
/* STORE_OK, STORE_NOTFOUND (no such user), STORE_ERR (a status not in the
 * list, text not UTF-8). */
int store_presence_set(struct store *st, int64_t user_id, const char *status,
		       const char *text);
/* Keep last_seen ms[i] of users[i], all n in one transaction (a shutdown
 * or a wave of disconnects costs one commit): STORE_OK (users that do not
 * exist are skipped) or STORE_ERR. */
int store_last_seen_set(struct store *st, const int64_t *users,
			const int64_t *ms, size_t n);
/* Call fn for every user with something kept (a status other than online,
 * a text or a last_seen); p is valid during the call only, and fn may call
 * the store. 0 or -1. */
int store_presence_each(struct store *st,
			void (*fn)(void *arg, const struct store_presence *p),
			void *arg);
/* Call fn for every (room, user) membership; for loading the bus. */
int store_members_each(struct store *st,
		       void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		       void *arg);

/* Call fn for every user (id, canonical name), for loading a directory.
 * fn runs with a read connection held: it must not call the store.
 * 0 or -1. */
int store_users_each(struct store *st,
		     void (*fn)(void *arg, int64_t id, const char *username),
		     void *arg);
/* Move user_id's read marker in room_id forward to event_id (never
 * back): STORE_OK with the marker after the call in *now, STORE_NOTFOUND
 * (no such user or room) or STORE_ERR. */
int store_read_marker_set(struct store *st, int64_t user_id, int64_t room_id,
			  int64_t event_id, int64_t *now);
/* An invitation of user_id to room_id by `by` (0: nobody in particular).
 * Inviting again is fine (the first stays). STORE_OK, STORE_NOTFOUND (no
 * such room or user) or STORE_ERR. Joining the room (the writer, for a
 * join event) takes the invitation. */
int store_invite_add(struct store *st, int64_t room_id, int64_t user_id,
		     int64_t by);
/* One open invitation. */
struct store_invite {
	char room[33];
	char kind[8];
	char by[33]; /* who invited; "" if their account is gone */
	int64_t created_ms;
};
/* user_id's open invitations, oldest first: 0 (caller frees *out with
 * free()) or -1. */
int store_invites_list(struct store *st, int64_t user_id,
		       struct store_invite **out, size_t *n);

/* A page of a room's history as event references (the stored envelopes,
 * shared, never re-parsed) in increasing id order: before > 0: the newest
 * `limit` events with id < before; after >= 0: the oldest `limit` with
 * id > after; neither (both -1): the newest `limit`. *more says whether
 * further events lie beyond the page in that direction. 0 (caller unrefs
 * each and frees the array) or -1. */
int store_history(struct store *st, int64_t room_id, int64_t before,
		  int64_t after, unsigned limit, struct event ***out, size_t *n,
		  bool *more);
/* One emoji's reactions on one message, for one reader. */
struct store_reaction {
	int64_t message_id;
	char emoji[64]; /* EMOJI_BYTES_MAX */
	int64_t count;
	bool me; /* the reader is one of them */
};
/* The reactions on the messages of room_id with lo <= id <= hi, for
 * user_id: by message id, each message's emoji in the order they were
 * first used. 0 (caller frees *out with free()) or -1. */
int store_reactions(struct store *st, int64_t user_id, int64_t room_id,
		    int64_t lo, int64_t hi, struct store_reaction **out,
		    size_t *n);
/* Full-text search over the searchable events in rooms user_id is a
 * member of now: event references, newest first, at most limit, with id <
 * before (before <= 0: from the newest). q is plain words, all of which
 * must match (model/search.h): a Latin word as a prefix, a run of CJK
 * characters anywhere inside Chinese or Japanese text; FTS syntax is
 * neutralised, so any q is safe. *more says whether older matches lie
 * beyond the page. 0 or -1, as store_history. */
int store_search(struct store *st, int64_t user_id, const char *q,
		 int64_t before, unsigned limit, struct event ***out, size_t *n,
		 bool *more);
/* At most limit persistent events with id > after that user_id may see,
 * in increasing id order, as event references (caller unrefs each and
 * frees the array). Membership is as of each event, exactly as the bus's
 * ring replay and a live subscriber see it: the user's join (or room
 * creation) counts from that event on; the user's own leave is included,
 * and nothing of that room after it until a new join. Every backend must
 * answer the same (tests/unit/store_contract.c). Matches bus_history_fn. */
int store_events_after(void *st, int64_t user_id, int64_t after, size_t limit,
		       struct event ***out, size_t *n);

/* --- files: uploads (tus state) and the files messages carry ------------ */

/* One upload: unfinished while offset < length (it expires at expires_ms),
 * a file once finished (sha256, type, width and height set). */
struct store_file {
	char id[33];
	int64_t owner_id;
	int64_t length, offset;
	char *name;	/* the client's name for it, "" when none */
	char *metadata; /* tus Upload-Metadata as received, "" when none */
	int64_t created_ms, expires_ms; /* a file: created_ms is when it was
					 * finished */
	char *sha256;	   /* 64 hex digits; NULL while unfinished */
	char *type;	   /* MIME type from the bytes; NULL while unfinished */
	int width, height; /* images; 0 when not known */
};
void store_file_fini(struct store_file *f);
/* How a message's envelope shows a file: {"id","name","size","type",
 * "width","height","url"} (url: /files/ID/NAME, NAME percent-encoded and
 * cut at STORE_FILE_URL_NAME_MAX bytes). */
#define STORE_FILE_URL_NAME_MAX 60
json_t *store_file_json(const struct store_file *f);
/* A new upload (offset, sha256 and type as given): STORE_OK,
 * STORE_EXISTS (the id is taken). */
int store_file_create(struct store *st, const struct store_file *f);
/* STORE_OK (caller calls store_file_fini) or STORE_NOTFOUND. */
int store_file_get(struct store *st, const char *id, struct store_file *out);
/* How many bytes of an unfinished upload arrived: STORE_OK,
 * STORE_NOTFOUND. */
int store_file_offset_set(struct store *st, const char *id, int64_t offset);
/* The upload is complete with length bytes (its declared length, or fewer
 * for a form upload whose length was only bounded): it is a file of that
 * content; name, when not NULL, replaces its name (a form's file name
 * arrives with its bytes). STORE_OK, STORE_NOTFOUND. */
int store_file_finish(struct store *st, const char *id, int64_t length,
		      const char *sha256, const char *type, int width,
		      int height, const char *name);
/* Forget an upload or a file (its uses go with it): STORE_OK,
 * STORE_NOTFOUND. The caller removes a blob nobody names any more
 * (store_file_blob_used). */
int store_file_delete(struct store *st, const char *id);
/* Bytes owner_id's uploads and files take (declared lengths): STORE_OK. */
int store_file_usage(struct store *st, int64_t owner_id, int64_t *bytes);
/* Whether user_id may read the file: its owner, or a member of a room
 * where a message carries it. 1, 0, or STORE_ERR. */
int store_file_access(struct store *st, const char *id, int64_t user_id);
/* Whether any file names this content: 1, 0 or STORE_ERR. */
int store_file_blob_used(struct store *st, const char *sha256);
/* Remove the unfinished uploads that expired by now_ms and the finished
 * files no message uses created before unused_before_ms, except those
 * keep (may be NULL) says to keep; fn sees each removed row's id and
 * sha256 (NULL when unfinished) after the removal (at most a few hundred
 * rows a call).
 * STORE_OK or STORE_ERR. */
int store_files_sweep(struct store *st, int64_t now_ms,
		      int64_t unused_before_ms,
		      bool (*keep)(void *arg, const char *id),
		      void (*fn)(void *arg, const char *id, const char *sha256),
		      void *arg);

#endif
