/* store/postgresql: what the PostgreSQL backend's files share (open.c: open,
 * schema migrations, connections and the pool; stmt.c: statements over
 * libpq; writer.c: the writer thread with its advisory lock and id counter;
 * feed.c: the cross-node feed that hands every committed event, this
 * node's and the others', to the commit hook in id order; effects.c: the
 * store effects the writer applies; users.c: users, sessions and the
 * session cache; reads.c: rooms, history, search, events after a cursor;
 * files.c: uploads, files, their uses and avatars).
 * Not an interface: only these files include it. The files follow the
 * SQLite backend's one for one (same statements by the same names, same
 * job steps), so a change to one is easy to carry to the other; functions
 * are prefixed pgs_ (the writer's job helpers pw_). */
#ifndef NATTER_STORE_PG_H
#define NATTER_STORE_PG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "store/backend.h"

#define READERS_MAX 64
/* The schema version (db/postgresql/NNN-*.sql) this code's statements need. */
#define SCHEMA_REQUIRED 4
/* Session cache slots (a power of two), one entry each. */
#define SESSION_SLOTS 4096
/* Bind parameters a statement may have ($1..$PG_PARAMS_MAX). */
#define PG_PARAMS_MAX 12
/* The advisory lock every node's writer holds from its batch's id
 * assignment to its commit (db/postgresql/001-schema.sql, event_counter). */
#define PG_EVENTS_LOCK 0x6e617474 /* "natt" */
/* The channel the writers NOTIFY with their batch's newest id. */
#define PG_CHANNEL "natter_events"
/* The channel that tells every node's session cache what ended: "h:" and
 * a session hash in hex (a logout), or "u:" and a user id (every session
 * of a disabled account, or one with a new password). */
#define PG_SESSIONS "natter_sessions"

/* What pg_step returns (the SQLite backend's codes, by meaning). */
enum {
	PG_OK = 0,
	PG_ERROR = 1,
	PG_BROKEN = 10,	    /* the connection is gone */
	PG_FULL = 13,	    /* disk full (SQLSTATE 53100) */
	PG_CONSTRAINT = 19, /* an integrity constraint; & 0xff */
	PG_CONSTRAINT_FK = 19 | (7 << 8),
	PG_CONSTRAINT_UNIQUE = 19 | (8 << 8),
	PG_ROW = 100,
	PG_DONE = 101
};

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
	Q_FTS_OPTIMIZE,
	Q_LAST_ID,
	Q_SESSIONS_PURGE,
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
	/* the cluster's id order (writer.c, feed.c) */
	Q_EVENTS_LOCK,
	Q_COUNTER_GET,
	Q_COUNTER_SET,
	Q_NOTIFY,
	Q_FEED_AFTER,
	Q_FEED_REVISED,
	Q_SESSIONS_NOTIFY,
	/* start-up role cache and the room-creation limit */
	Q_ROLES_ALL,
	Q_ADMINS_ALL,
	Q_ROOMS_CREATED,
	Q_REACTIONS_PAGE,
	Q_REACTION_ADD,
	Q_REACTION_DEL,
	Q_REACTION_COUNT,
	Q_REACTION_KINDS,
	Q_REACTIONS_DROP,
	/* presence kept across restarts */
	Q_PRESENCE_SET,
	Q_LAST_SEEN_SET,
	Q_PRESENCE_ALL,
	/* files and avatars (schema 004, files.c); the first two the
	 * writer's */
	Q_FILE_USE_ADD,
	Q_FILE_USES_DEL,
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

/* One statement of a connection: its bindings until run, then its
 * result, read a row per pg_step. Bound text is borrowed until
 * pgs_stmt_done (as SQLITE_STATIC). */
struct pstmt {
	struct pconn *c;
	enum q q;
	const char *val[PG_PARAMS_MAX];
	int len[PG_PARAMS_MAX], fmt[PG_PARAMS_MAX];
	Oid type[PG_PARAMS_MAX];
	char num[PG_PARAMS_MAX][24];
	PGresult *res;
	int row, nrows;
	bool ran;
};

/* A statement's state on one server process (stmt.c, exec_stmt). */
enum prep { PREP_NOT_YET, PREP_DONE, PREP_NEVER };

struct pconn {
	PGconn *pg;
	const char *url;
	struct pstmt stmt[Q_COUNT];
	unsigned char
	    prep[Q_COUNT]; /* enum prep, for server process prep_pid */
	int prep_pid;
	int64_t changes;     /* rows the last command changed */
	int64_t last_insert; /* the id an INSERT ... RETURNING id gave */
	char sqlstate[6];    /* of the last failure */
};

struct job;

struct pgst {
	struct store base; /* first: a struct store * is a struct pgst * */
	unsigned interval_ms, batch_max;

	/* writer: the thread owns w and next_id once started */
	struct pconn w;
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
	store_user_hook user_hook; /* the feed thread's, on a session word */
	void *user_hook_arg;

	/* session cache, guarded by smu (see store_session_user) */
	pthread_mutex_t smu;
	struct session_entry *sessions; /* SESSION_SLOTS, or NULL: off */
	uint64_t session_gen;		/* bumped by every delete */
	unsigned session_ms;

	/* The cross-node feed (feed.c): fmu orders the hook. Everything with
	 * id <= seen went to the hook, in id order, exactly once. */
	char *url;
	_Atomic bool reachable; /* the writer's or the feed's last word */
	pthread_mutex_t fmu;
	int64_t seen;
	struct pconn fetch;  /* the feed's reads, under fmu */
	struct pconn listen; /* LISTEN natter_events, the feed thread's */
	pthread_t feed_thread;
	bool feed_started;
	int feed_wake[2]; /* a pipe: stop the feed thread */

	/* pool, guarded by pmu */
	pthread_mutex_t pmu;
	pthread_cond_t pcv;
	struct pconn *conns;
	size_t nconns;
	struct pconn **idle;
	size_t nidle;
};

static inline struct pgst *pgs_of(struct store *st)
{
	return (struct pgst *)st;
}

/* open.c: connections, the pool, shared row helpers */
void pgs_stmt_done(struct pstmt *s);
int pgs_run(struct pconn *c, enum q q);
struct pconn *pgs_pool_get(struct pgst *st);
void pgs_pool_put(struct pgst *st, struct pconn *c);
int pgs_status_of(int rc);
char *pgs_col_dup(struct pstmt *s, int i);
struct event *pgs_row_event(struct pstmt *s);
void pgs_free(struct pgst *st);

/* writer.c */
void *pgs_writer_main(void *arg);

/* files.c: uploads, files and avatars (schema 004) */
int pgs_file_create(struct store *base, const struct store_file *f);
int pgs_file_get(struct store *base, const char *id, struct store_file *out);
int pgs_file_offset_set(struct store *base, const char *id, int64_t offset);
int pgs_file_finish(struct store *base, const char *id, int64_t length,
		    const char *sha256, const char *type, int width, int height,
		    const char *name);
int pgs_file_delete(struct store *base, const char *id);
int pgs_file_usage(struct store *base, int64_t owner_id, int64_t *bytes);
int pgs_file_access(struct store *base, const char *id, int64_t user_id);
int pgs_file_blob_used(struct store *base, const char *sha256);
int pgs_files_sweep(struct store *base, int64_t now_ms,
		    int64_t unused_before_ms,
		    bool (*keep)(void *arg, const char *id),
		    void (*fn)(void *arg, const char *id, const char *sha256),
		    void *arg);
int pgs_user_avatar_set(struct store *base, int64_t id, const char *file_id);
/* The writer's part, inside the job's transaction on st->w: the uses of
 * the files a message carries (its args' "files" objects), and their
 * removal when the message is deleted. PG_OK or a step's failure code. */
int pw_file_uses_add(struct pgst *st, json_t *args, int64_t event_id,
		     int64_t room_id);
int pw_file_uses_del(struct pgst *st, int64_t event_id);
/* What the search index holds for a message: search_index_text() of its
 * text and its files' names (files: the envelope's "files" array, may be
 * NULL), as SQLite's index does. NULL when that is not UTF-8. */
char *pw_index_text(const char *text, json_t *files);

/* The operations (store/backend.h), one file each as above. */
void pgs_close(struct store *base);
void pgs_write_submit(struct store *base, const struct store_write *w,
		      store_done_fn done, void *arg);
bool pgs_set_user_hook(struct store *base, store_user_hook hook, void *arg);
void pgs_set_commit_hook(struct store *base,
			 void (*hook)(void *arg, struct event *ev), void *arg);
int64_t pgs_last_event_id(struct store *base);
int pgs_user_create(struct store *base, const char *username,
		    const char *pwhash, int64_t *id);
int pgs_user_by_name(struct store *base, const char *username,
		     struct store_user *out);
int pgs_user_by_id(struct store *base, int64_t id, struct store_user *out);
int pgs_user_update(struct store *base, int64_t id, const char *display_name,
		    const char *settings);
int pgs_session_create(struct store *base, const uint8_t hash[32],
		       int64_t user_id, int64_t expires_ms);
int pgs_session_lookup(struct store *base, const uint8_t hash[32],
		       int64_t now_ms, int64_t *user_id);
int pgs_session_delete(struct store *base, const uint8_t hash[32]);
int pgs_session_user(struct store *base, const uint8_t hash[32], int64_t now_ms,
		     int64_t *user_id, char username[33]);
int pgs_room_by_name(struct store *base, const char *name, int64_t *room_id,
		     char name_out[33]);
int pgs_rooms_list(struct store *base, int64_t user_id, struct store_room **out,
		   size_t *n);
int pgs_users_each(struct store *base,
		   void (*fn)(void *arg, int64_t id, const char *username),
		   void *arg);
int pgs_read_marker_set(struct store *base, int64_t user_id, int64_t room_id,
			int64_t event_id, int64_t *now);
int pgs_invite_add(struct store *base, int64_t room_id, int64_t user_id,
		   int64_t by);
int pgs_invites_list(struct store *base, int64_t user_id,
		     struct store_invite **out, size_t *n);
int pgs_room_members(struct store *base, int64_t room_id,
		     struct store_member **out, size_t *n);
int pgs_is_member(struct store *base, int64_t room_id, int64_t user_id);
int pgs_user_admin_set(struct store *base, int64_t id, bool admin);
int pgs_room_role(struct store *base, int64_t room_id, int64_t user_id);
int pgs_moderator_set(struct store *base, int64_t room_id, int64_t user_id,
		      int64_t by, bool on);
int pgs_ban_set(struct store *base, int64_t room_id, int64_t user_id,
		int64_t by, const char *reason, bool on);
int pgs_bans_list(struct store *base, int64_t room_id, struct store_ban **out,
		  size_t *n);
int pgs_mute_set(struct store *base, int64_t room_id, int64_t user_id,
		 int64_t until_ms, int64_t by, const char *reason);
int pgs_mutes_each(struct store *base, int64_t now_ms,
		   void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			      int64_t until_ms),
		   void *arg);
int pgs_user_disable(struct store *base, int64_t id, bool disabled,
		     const char *reason);
int pgs_roles_each(struct store *base, bool rooms,
		   void (*fn)(void *arg, int64_t room_id, int64_t user_id,
			      int role),
		   void *arg);
int pgs_rooms_created(struct store *base, int64_t user_id, int64_t since_ms,
		      int64_t *count, int64_t *oldest_ms);
int pgs_reactions(struct store *base, int64_t user_id, int64_t room_id,
		  int64_t lo, int64_t hi, struct store_reaction **out,
		  size_t *n);
int pgs_audit_add(struct store *base, const struct store_audit *a);
int pgs_presence_set(struct store *base, int64_t id, const char *status,
		     const char *text);
int pgs_last_seen_set(struct store *base, const int64_t *ids, const int64_t *ms,
		      size_t n);
int pgs_presence_each(struct store *base,
		      void (*fn)(void *arg, const struct store_presence *p),
		      void *arg);
int pgs_audit_list(struct store *base, int64_t before, unsigned limit,
		   struct store_audit **out, size_t *n, bool *more);
int pgs_user_password_set(struct store *base, int64_t id, const char *pwhash);
int pgs_members_each(struct store *base,
		     void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		     void *arg);
int pgs_history(struct store *base, int64_t room_id, int64_t before,
		int64_t after, unsigned limit, struct event ***out, size_t *n,
		bool *more);
int pgs_search(struct store *base, int64_t user_id, const char *q,
	       int64_t before, unsigned limit, struct event ***out, size_t *n,
	       bool *more);
int pgs_events_after(struct store *base, int64_t user_id, int64_t after,
		     size_t limit, struct event ***out, size_t *n);
/* stats.c */
int pgs_sample_add(struct store *base, const struct store_sample *s);
int pgs_samples_prune(struct store *base, int64_t before_s);
json_t *pgs_stats(struct store *base, int64_t from_ms, int64_t to_ms,
		  int64_t bucket_s);
int pgs_users_search(struct store *base, const char *q, const char *after,
		     unsigned limit, struct store_user **out, size_t *n,
		     bool *more);

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
	/* New envelopes of events already committed (an edit's or delete's
	 * target, the replies that quoted it), marked event_revision_set:
	 * to the hook before ev, so the bus's ring serves them. */
	struct event **revised;
	size_t nrevised;
};

/* Returned inside the writer for a SQLite failure that dooms the batch. */
#define PW_FATAL (-100)

/* writer.c */
int pw_member_change(struct pgst *st, enum q q, int64_t room_id,
		     int64_t user_id);
int pw_event_add(struct pgst *st, struct job *j, int64_t room_id,
		 const char *room, const char *from);
int pw_stmt_fail(struct pgst *st, struct pstmt *s, int rc);
int pw_is_member(struct pgst *st, int64_t room_id, int64_t user_id);
int pw_fail(int rc);
int pw_user(struct pgst *st, int64_t id, char **name);

/* effects.c */
int pw_dm_open(struct pgst *st, struct job *j);
/* files.c: a file's row on the writer's connection (store_files_resolve's
 * get) */
int pw_file_get(void *arg, const char *id, struct store_file *out);
int pw_effect(struct pgst *st, struct job *j, int64_t room_id);

/* stmt.c: statements over libpq, read like sqlite3_step's */
struct pstmt *pgs_stmt(struct pconn *c, enum q q);
void pg_bind_int64(struct pstmt *s, int i, int64_t v);
void pg_bind_text(struct pstmt *s, int i, const char *v);
void pg_bind_textn(struct pstmt *s, int i, const char *v, size_t len);
void pg_bind_blob(struct pstmt *s, int i, const void *v, int len);
int pg_step(struct pstmt *s);
int64_t pg_col_int64(struct pstmt *s, int i);
const char *pg_col_text(struct pstmt *s, int i);
int pg_col_bytes(struct pstmt *s, int i);
bool pg_col_null(struct pstmt *s, int i);
int pg_col_count(struct pstmt *s);
int64_t pg_changes(struct pconn *c);
int64_t pg_last_insert_id(struct pconn *c);
int pg_errcode(struct pconn *c);
int pg_exec(struct pconn *c, const char *sql);
int pg_connect(struct pconn *c, const char *url, char *err, size_t errlen);
void pg_disconnect(struct pconn *c);
extern const char *const pg_sql_text[Q_COUNT];

/* users.c: forget cached sessions (feed.c, on another node's word) */
void pgs_session_forget(struct pgst *st, const uint8_t hash[32]);
void pgs_session_forget_user(struct pgst *st, int64_t user_id);

/* feed.c */
int pgs_feed_start(struct pgst *st, char *err, size_t errlen);
void pgs_feed_stop(struct pgst *st);
/* This node's committed batch: its revisions (older ids' new envelopes)
 * to the hook first, then its events once every earlier id went. */
void pgs_feed_own(struct pgst *st, int64_t first, struct event **evs, size_t n,
		  struct event **revs, size_t nrev);

#endif
