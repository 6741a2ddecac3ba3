/* store/sqlite: what the SQLite backend's files share (open.c: open,
 * migrations, connections and the pool; writer.c: the writer thread;
 * effects.c: the store effects it applies; users.c: users, sessions and the
 * session cache; reads.c: rooms, history, search, events after a cursor). Not
 * an interface: only these files include it. Functions here are prefixed sq_
 * (the writer's job helpers shared by writer.c and effects.c keep their w_
 * prefix). */
#ifndef NATTER_STORE_SQLITE_H
#define NATTER_STORE_SQLITE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "store/backend.h"

#define BUSY_TIMEOUT_MS 5000
#define READERS_MAX 64
/* The schema version this code's statements need (002 adds search, 003
 * moves indexing into the writer, 005 the CJK-aware index, 006 roles, 007
 * room kinds and invitations, 008 presence, 009 reactions, 010 files,
 * 011 metric samples). */
#define SCHEMA_REQUIRED 11
/* Session cache slots (a power of two), one entry each: tokens are random,
 * so their hashes spread evenly and a collision only costs a read. */
#define SESSION_SLOTS 4096

/* Every SQL statement the store runs; each connection prepares the ones it
 * uses on first use and keeps them until store_close. */
enum q {
	/* writer */
	Q_BEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_SAVEPOINT,
	Q_RELEASE,
	Q_ROLLBACK_TO,
	Q_USER_NAME,
	Q_ROOM_BY_ID,
	Q_ROOM_BY_NAME,
	Q_IS_MEMBER,
	Q_MEMBER_ADD,
	Q_MEMBER_DEL,
	Q_ROOM_ADD,
	Q_ROOM_KIND,
	Q_ROOM_RENAME,
	Q_DM_BY_KEY,
	Q_DM_FIRST,
	Q_USER_ID_BY_NAME,
	Q_INVITE_TAKE,
	Q_MENTION_ADD,
	Q_MENTION_ROOM,
	Q_EVENT_BY_CLIENT,
	Q_EVENT_ADD,
	Q_FTS_INDEX,
	Q_TARGET_GET,
	Q_TARGET_LAST,
	Q_EVENT_SET,
	Q_TARGET_EDITS,
	Q_EVENT_JSON_SET,
	Q_REACTION_ADD,
	Q_REACTION_DEL,
	Q_REACTION_COUNT,
	Q_REACTION_KINDS,
	Q_REACTIONS_DROP,
	Q_FTS_OPTIMIZE,
	Q_LAST_ID,
	Q_SESSIONS_PURGE,
	Q_FILE_USE_ADD,
	Q_FILE_USES_DEL,
	/* pool */
	Q_USER_ADD,
	Q_USER_BY_NAME,
	Q_USER_BY_ID,
	Q_USER_UPDATE,
	Q_SESSION_ADD,
	Q_SESSION_GET,
	Q_SESSION_USER,
	Q_SESSION_DEL,
	Q_SESSION_DEL_EXPIRED,
	Q_ROOMS_LIST,
	Q_INVITE_ADD,
	Q_READ_SET,
	Q_INVITES_LIST,
	Q_ROOM_MEMBERS,
	Q_MEMBERS_ALL,
	Q_USERS_ALL,
	Q_HISTORY_ASC,
	Q_HISTORY_DESC,
	Q_SEARCH,
	Q_EVENTS_AFTER,
	Q_READ_BEGIN,
	Q_USER_ROOMS,
	Q_USER_EVENTS_DESC,
	Q_USER_ADMIN_SET,
	Q_ROOM_ROLE,
	Q_MODERATOR_ADD,
	Q_MODERATOR_DEL,
	Q_BAN_GET,
	Q_BAN_ADD,
	Q_BAN_DEL,
	Q_BANS_LIST,
	Q_MUTE_ADD,
	Q_MUTE_DEL,
	Q_MUTES_ACTIVE,
	Q_USER_DISABLE,
	Q_USER_SESSIONS_DEL,
	Q_AUDIT_ADD,
	Q_USER_PWHASH_SET,
	Q_AUDIT_LIST,
	Q_ROLES_ALL,
	Q_ADMINS_ALL,
	Q_REACTIONS_PAGE,
	Q_PRESENCE_SET,
	Q_LAST_SEEN_SET,
	Q_PRESENCE_ALL,
	Q_FILE_ADD,
	Q_FILE_GET,
	Q_FILE_OFFSET,
	Q_FILE_FINISH,
	Q_FILE_DEL,
	Q_FILE_USAGE,
	Q_FILE_ACCESS,
	Q_FILE_BLOB_USED,
	Q_FILES_EXPIRED,
	Q_USER_AVATAR_SET,
	Q_COUNT
};

struct session_entry {
	uint8_t hash[32];
	bool used;
	int64_t user_id, expires_ms; /* expires: wall clock, as in the table */
	int64_t until;		     /* mono_ms: answer from here until then */
	char username[33];
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[Q_COUNT];
};

struct job;

struct sq {
	struct store base; /* first: a struct store * is a struct sq * */
	unsigned interval_ms, batch_max;

	/* writer: the thread owns w and next_id once started */
	struct conn w;
	int64_t next_id;
	bool fts_purge; /* this batch deleted a message: merge the index */
	_Atomic int64_t last_id;
	struct job **batch; /* batch_max slots */
	pthread_t thread;
	bool started;

	/* queue, guarded by qmu */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	struct job *qhead, **qtail;
	size_t qlen;
	bool closing;
	void (*hook)(void *arg, struct event *ev);
	void *hook_arg;

	/* session cache, guarded by smu (see store_session_user) */
	pthread_mutex_t smu;
	struct session_entry *sessions; /* SESSION_SLOTS, or NULL: off */
	uint64_t session_gen;		/* bumped by every delete */
	unsigned session_ms;

	/* pool, guarded by pmu */
	pthread_mutex_t pmu;
	pthread_cond_t pcv;
	struct conn *conns;
	size_t nconns;
	struct conn **idle;
	size_t nidle;
};

static inline struct sq *sq_of(struct store *st)
{
	return (struct sq *)st;
}

/* open.c: connections, the pool, shared row helpers */
sqlite3_stmt *sq_stmt(struct conn *c, enum q q);
void sq_stmt_done(sqlite3_stmt *s);
int sq_run(struct conn *c, enum q q);
struct conn *sq_pool_get(struct sq *st);
void sq_pool_put(struct sq *st, struct conn *c);
int sq_status_of(int rc);
char *sq_col_dup(sqlite3_stmt *s, int i);
struct event *sq_row_event(sqlite3_stmt *s);
void sq_free(struct sq *st);

/* files.c */
int sq_file_create(struct store *base, const struct store_file *f);
int sq_file_get(struct store *base, const char *id, struct store_file *out);
int sq_file_offset_set(struct store *base, const char *id, int64_t offset);
int sq_file_finish(struct store *base, const char *id, int64_t length,
		   const char *sha256, const char *type, int width, int height,
		   const char *name);
int sq_file_delete(struct store *base, const char *id);
int sq_file_usage(struct store *base, int64_t owner_id, int64_t *bytes);
int sq_file_access(struct store *base, const char *id, int64_t user_id);
int sq_file_blob_used(struct store *base, const char *sha256);
int sq_files_sweep(struct store *base, int64_t now_ms, int64_t unused_before_ms,
		   bool (*keep)(void *arg, const char *id),
		   void (*fn)(void *arg, const char *id, const char *sha256),
		   void *arg);
/* The writer's part: the files a message carries (its args' "files"
 * objects' ids) become its uses; a deleted message's uses go. */
int sq_file_uses_add(struct sq *st, json_t *args, int64_t event_id,
		     int64_t room_id);
int sq_file_uses_del(struct sq *st, int64_t event_id);

/* writer.c */
void *sq_writer_main(void *arg);

/* The operations (store/backend.h), one file each as above. */
void sq_close(struct store *base);
void sq_write_submit(struct store *base, const struct store_write *w,
		     store_done_fn done, void *arg);
bool sq_set_user_hook(struct store *base, store_user_hook hook, void *arg);
void sq_set_commit_hook(struct store *base,
			void (*hook)(void *arg, struct event *ev), void *arg);
int64_t sq_last_event_id(struct store *base);
int sq_user_create(struct store *base, const char *username, const char *pwhash,
		   int64_t *id);
int sq_user_by_name(struct store *base, const char *username,
		    struct store_user *out);
int sq_user_by_id(struct store *base, int64_t id, struct store_user *out);
int sq_user_avatar_set(struct store *base, int64_t id, const char *file_id);
int sq_user_update(struct store *base, int64_t id, const char *display_name,
		   const char *settings);
int sq_session_create(struct store *base, const uint8_t hash[32],
		      int64_t user_id, int64_t expires_ms);
int sq_session_lookup(struct store *base, const uint8_t hash[32],
		      int64_t now_ms, int64_t *user_id);
int sq_session_delete(struct store *base, const uint8_t hash[32]);
int sq_session_user(struct store *base, const uint8_t hash[32], int64_t now_ms,
		    int64_t *user_id, char username[33]);
int sq_room_by_name(struct store *base, const char *name, int64_t *room_id,
		    char name_out[33]);
int sq_rooms_list(struct store *base, int64_t user_id, struct store_room **out,
		  size_t *n);
int sq_users_each(struct store *base,
		  void (*fn)(void *arg, int64_t id, const char *username),
		  void *arg);
int sq_read_marker_set(struct store *base, int64_t user_id, int64_t room_id,
		       int64_t event_id, int64_t *now);
int sq_invite_add(struct store *base, int64_t room_id, int64_t user_id,
		  int64_t by);
int sq_invites_list(struct store *base, int64_t user_id,
		    struct store_invite **out, size_t *n);
int sq_room_members(struct store *base, int64_t room_id,
		    struct store_member **out, size_t *n);
int sq_is_member(struct store *base, int64_t room_id, int64_t user_id);
int sq_user_admin_set(struct store *base, int64_t id, bool admin);
int sq_room_role(struct store *base, int64_t room_id, int64_t user_id);
int sq_moderator_set(struct store *base, int64_t room_id, int64_t user_id,
		     int64_t by, bool on);
int sq_ban_set(struct store *base, int64_t room_id, int64_t user_id, int64_t by,
	       const char *reason, bool on);
int sq_bans_list(struct store *base, int64_t room_id, struct store_ban **out,
		 size_t *n);
int sq_mute_set(struct store *base, int64_t room_id, int64_t user_id,
		int64_t until_ms, int64_t by, const char *reason);
int sq_mutes_each(struct store *base, int64_t now_ms,
		  void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			     int64_t until_ms),
		  void *arg);
int sq_roles_each(struct store *base, bool rooms,
		  void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			     int role),
		  void *arg);
int sq_user_disable(struct store *base, int64_t id, bool disabled,
		    const char *reason);
int sq_audit_add(struct store *base, const struct store_audit *a);
/* stats.c */
int sq_sample_add(struct store *base, const struct store_sample *x);
int sq_samples_prune(struct store *base, int64_t before_s);
json_t *sq_stats(struct store *base, int64_t from_ms, int64_t to_ms,
		 int64_t bucket_s);
int sq_users_search(struct store *base, const char *q, const char *after,
		    unsigned limit, struct store_user **out, size_t *n,
		    bool *more);
int sq_rooms_created(struct store *base, int64_t user_id, int64_t since_ms,
		     int64_t *count, int64_t *oldest_ms);
int sq_audit_list(struct store *base, int64_t before, unsigned limit,
		  struct store_audit **out, size_t *n, bool *more);
int sq_user_password_set(struct store *base, int64_t id, const char *pwhash);
int sq_presence_set(struct store *base, int64_t id, const char *status,
		    const char *text);
int sq_last_seen_set(struct store *base, const int64_t *ids, const int64_t *ms,
		     size_t n);
int sq_presence_each(struct store *base,
		     void (*fn)(void *arg, const struct store_presence *p),
		     void *arg);
int sq_members_each(struct store *base,
		    void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		    void *arg);
int sq_history(struct store *base, int64_t room_id, int64_t before,
	       int64_t after, unsigned limit, struct event ***out, size_t *n,
	       bool *more);
int sq_search(struct store *base, int64_t user_id, const char *q,
	      int64_t before, unsigned limit, struct event ***out, size_t *n,
	      bool *more);
int sq_events_after(struct store *base, int64_t user_id, int64_t after,
		    size_t limit, struct event ***out, size_t *n);

/* --- the writer's jobs (writer.c, effects.c) ------------------------------
 * Internal to the writer thread; these helpers keep their w_ prefix. */

struct job {
	struct job *next;
	enum event_type type;
	const struct evtype *row; /* evtype_get(type), NULL if not a type */
	int64_t user_id, room_id, target_id;
	int64_t subject_id; /* the user the event acts on, or 0 */
	bool moderated;	    /* store_write's: a moderator's delete */
	int64_t ts;	    /* the event's time, once an effect has fixed it */
	int64_t queued_us;  /* mono_us at submit: send-to-delivery timing */
	char *room_name, *text, *html, *client_id, *topic;
	char *username;	      /* as the caller knows it: canonical, or NULL */
	json_t *args;	      /* a copy, for a type with an extra, else NULL */
	int64_t *mention_ids; /* store_write's, copied */
	size_t nmention_ids;
	char **mention_names;
	size_t nmention_names;
	bool mention_room;
	store_done_fn done;
	void *arg;
	struct timespec queued; /* CLOCK_MONOTONIC */
	int status;
	struct event *ev; /* new or first (duplicate) event */
	bool fresh;	  /* ev is new: goes to the commit hook */
	/* Events the job adds after ev, in id order (the joins of the other
	 * people of a new direct conversation): to the hook after ev. */
	struct event *more[EVTYPE_DM_USERS_MAX];
	size_t nmore;
	/* A message's reply quote (evtype_input's reply), or NULL. */
	char *reply;
	/* New versions of events already stored that the job changed (a
	 * delete: the tombstone, its edits and the replies quoting it, each
	 * marked event_revision_set): to the hook before ev, so that the
	 * bus's ring holds what history holds. */
	struct event **revised;
	size_t nrevised;
};

/* The next slot of a result array v (holding len of cap elements) that a
 * list read grows row by row: the array doubles (from first) when full;
 * evaluates to a pointer to the new slot, len counted. v, len and cap are
 * lvalues, each evaluated more than once. */
#define SQ_PUSH(v, len, cap, first)                                            \
	(((len) == (cap) ? ((cap) = (cap) ? 2 * (cap) : (first),               \
			    (v) = xrealloc((v), (cap) * sizeof(*(v))), 0)      \
			 : 0),                                                 \
	 &(v)[(len)++])

/* Returned inside the writer for a SQLite failure that dooms the batch. */
#define W_FATAL (-100)

/* writer.c */
int w_member_change(struct sq *st, enum q q, int64_t room_id, int64_t user_id);
int w_event_add(struct sq *st, struct job *j, int64_t room_id, const char *room,
		const char *from);
int w_stmt_fail(struct sq *st, sqlite3_stmt *s, int rc);
/* Whether q, with ?1 = a and ?2 = b, yields a row on the writer's
 * connection: 1, 0, or a failure status (w_stmt_fail). */
int w_row_exists(struct sq *st, enum q q, int64_t a, int64_t b);
int w_is_member(struct sq *st, int64_t room_id, int64_t user_id);
int w_fail(int rc);
int w_user(struct sq *st, int64_t id, char **name);

/* effects.c */
int w_dm_open(struct sq *st, struct job *j);
int w_effect(struct sq *st, struct job *j, int64_t room_id);
void w_revised_add(struct job *j, struct event *ev);

/* reactions.c: replies and reactions inside a job */
int w_reply(struct sq *st, struct job *j, int64_t room_id);
/* files.c: a file's row on the writer's connection (store_files_resolve's
 * get) */
int w_file_get(void *arg, const char *id, struct store_file *out);
int w_react(struct sq *st, struct job *j, int64_t room_id);
int sq_reactions(struct store *base, int64_t user_id, int64_t room_id,
		 int64_t lo, int64_t hi, struct store_reaction **out,
		 size_t *n);

#endif
