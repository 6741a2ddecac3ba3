/* store/backend: what a storage backend implements. Each backend fills
 * one struct store_ops and returns stores whose first member is a struct
 * store pointing at it; the store_* calls (store.h) dispatch through it.
 * The SQLite backend is store/sqlite/; a second backend (PostgreSQL) is a
 * second table, and must pass tests/unit/store_contract.c.
 * Every operation has the contract of its store_* call in store.h. */
#ifndef NATTER_STORE_BACKEND_H
#define NATTER_STORE_BACKEND_H

#include "store/store.h"

struct store_ops {
	const char *name;
	bool (*reachable)(struct store *base);
	void (*close)(struct store *base);
	void (*write_submit)(struct store *base, const struct store_write *w,
			     store_done_fn done, void *arg);
	void (*set_commit_hook)(struct store *base,
				void (*hook)(void *arg, struct event *ev),
				void *arg);
	bool (*set_user_hook)(struct store *base, store_user_hook hook,
			      void *arg);
	int64_t (*last_event_id)(struct store *base);
	int (*user_create)(struct store *base, const char *username,
			   const char *pwhash, int64_t *id);
	int (*user_by_name)(struct store *base, const char *username,
			    struct store_user *out);
	int (*user_by_id)(struct store *base, int64_t id,
			  struct store_user *out);
	int (*user_avatar_set)(struct store *base, int64_t id,
			       const char *file_id);
	int (*user_update)(struct store *base, int64_t id,
			   const char *display_name, const char *settings);
	int (*session_create)(struct store *base, const uint8_t hash[32],
			      int64_t user_id, int64_t expires_ms);
	int (*session_lookup)(struct store *base, const uint8_t hash[32],
			      int64_t now_ms, int64_t *user_id);
	int (*session_delete)(struct store *base, const uint8_t hash[32]);
	int (*session_user)(struct store *base, const uint8_t hash[32],
			    int64_t now_ms, int64_t *user_id,
			    char username[33]);
	int (*room_by_name)(struct store *base, const char *name,
			    int64_t *room_id, char name_out[33]);
	int (*rooms_list)(struct store *base, int64_t user_id,
			  struct store_room **out, size_t *n);
	int (*users_each)(struct store *base,
			  void (*fn)(void *arg, int64_t id,
				     const char *username),
			  void *arg);
	int (*read_marker_set)(struct store *base, int64_t user_id,
			       int64_t room_id, int64_t event_id, int64_t *now);
	int (*invite_add)(struct store *base, int64_t room_id, int64_t user_id,
			  int64_t by);
	int (*invites_list)(struct store *base, int64_t user_id,
			    struct store_invite **out, size_t *n);
	int (*room_members)(struct store *base, int64_t room_id,
			    struct store_member **out, size_t *n);
	int (*is_member)(struct store *base, int64_t room_id, int64_t user_id);
	int (*members_each)(struct store *base,
			    void (*fn)(void *arg, int64_t room_id,
				       int64_t user_id),
			    void *arg);
	int (*presence_set)(struct store *base, int64_t id, const char *status,
			    const char *text);
	int (*last_seen_set)(struct store *base, const int64_t *ids,
			     const int64_t *ms, size_t n);
	int (*presence_each)(struct store *base,
			     void (*fn)(void *arg,
					const struct store_presence *p),
			     void *arg);
	int (*user_admin_set)(struct store *base, int64_t id, bool admin);
	int (*room_role)(struct store *base, int64_t room_id, int64_t user_id);
	int (*moderator_set)(struct store *base, int64_t room_id,
			     int64_t user_id, int64_t by, bool on);
	int (*ban_set)(struct store *base, int64_t room_id, int64_t user_id,
		       int64_t by, const char *reason, bool on);
	int (*bans_list)(struct store *base, int64_t room_id,
			 struct store_ban **out, size_t *n);
	int (*mute_set)(struct store *base, int64_t room_id, int64_t user_id,
			int64_t until_ms, int64_t by, const char *reason);
	int (*mutes_each)(struct store *base, int64_t now_ms,
			  void (*fn)(void *arg, int64_t room_id,
				     int64_t user_id, int64_t until_ms),
			  void *arg);
	int (*user_disable)(struct store *base, int64_t id, bool disabled,
			    const char *reason);
	int (*roles_each)(struct store *base, bool rooms,
			  void (*fn)(void *arg, int64_t room_id,
				     int64_t user_id, int role),
			  void *arg);
	int (*audit_add)(struct store *base, const struct store_audit *a);
	int (*audit_list)(struct store *base, int64_t before, unsigned limit,
			  struct store_audit **out, size_t *n, bool *more);
	int (*user_password_set)(struct store *base, int64_t id,
				 const char *pwhash);
	int (*history)(struct store *base, int64_t room_id, int64_t before,
		       int64_t after, unsigned limit, struct event ***out,
		       size_t *n, bool *more);
	int (*search)(struct store *base, int64_t user_id, const char *q,
		      int64_t before, unsigned limit, struct event ***out,
		      size_t *n, bool *more);
	int (*events_after)(struct store *base, int64_t user_id, int64_t after,
			    size_t limit, struct event ***out, size_t *n);
	int (*reactions)(struct store *base, int64_t user_id, int64_t room_id,
			 int64_t lo, int64_t hi, struct store_reaction **out,
			 size_t *n);
	int (*sample_add)(struct store *base, const struct store_sample *s);
	int (*samples_prune)(struct store *base, int64_t before_s);
	json_t *(*stats)(struct store *base, int64_t from_ms, int64_t to_ms,
			 int64_t bucket_s);
	int (*users_search)(struct store *base, const char *q,
			    const char *after, unsigned limit,
			    struct store_user **out, size_t *n, bool *more);
	int (*rooms_created)(struct store *base, int64_t user_id,
			     int64_t since_ms, int64_t *count,
			     int64_t *oldest_ms);
	int (*file_create)(struct store *base, const struct store_file *f);
	int (*file_get)(struct store *base, const char *id,
			struct store_file *out);
	int (*file_offset_set)(struct store *base, const char *id,
			       int64_t offset);
	int (*file_finish)(struct store *base, const char *id, int64_t length,
			   const char *sha256, const char *type, int width,
			   int height, const char *name);
	int (*file_delete)(struct store *base, const char *id);
	int (*file_usage)(struct store *base, int64_t owner_id, int64_t *bytes);
	int (*file_access)(struct store *base, const char *id, int64_t user_id);
	int (*file_blob_used)(struct store *base, const char *sha256);
	int (*files_sweep)(struct store *base, int64_t now_ms,
			   int64_t unused_before_ms,
			   bool (*keep)(void *arg, const char *id),
			   void (*fn)(void *arg, const char *id,
				      const char *sha256),
			   void *arg);
};

/* Every op of struct store_ops by name, in order (store.c checks a
 * table against it: store_ops_missing). */
#define STORE_OPS(X)                                                           \
	X(reachable)                                                           \
	X(close)                                                               \
	X(write_submit)                                                        \
	X(set_commit_hook)                                                     \
	X(set_user_hook)                                                       \
	X(last_event_id)                                                       \
	X(user_create)                                                         \
	X(user_by_name)                                                        \
	X(user_by_id)                                                          \
	X(user_avatar_set)                                                     \
	X(user_update)                                                         \
	X(session_create)                                                      \
	X(session_lookup)                                                      \
	X(session_delete)                                                      \
	X(session_user)                                                        \
	X(room_by_name)                                                        \
	X(rooms_list)                                                          \
	X(users_each)                                                          \
	X(read_marker_set)                                                     \
	X(invite_add)                                                          \
	X(invites_list)                                                        \
	X(room_members)                                                        \
	X(is_member)                                                           \
	X(members_each)                                                        \
	X(presence_set)                                                        \
	X(last_seen_set)                                                       \
	X(presence_each)                                                       \
	X(user_admin_set)                                                      \
	X(room_role)                                                           \
	X(moderator_set)                                                       \
	X(ban_set)                                                             \
	X(bans_list)                                                           \
	X(mute_set)                                                            \
	X(mutes_each)                                                          \
	X(user_disable)                                                        \
	X(roles_each)                                                          \
	X(audit_add)                                                           \
	X(audit_list)                                                          \
	X(user_password_set)                                                   \
	X(history)                                                             \
	X(search)                                                              \
	X(events_after)                                                        \
	X(reactions)                                                           \
	X(sample_add)                                                          \
	X(samples_prune)                                                       \
	X(stats)                                                               \
	X(users_search)                                                        \
	X(rooms_created)                                                       \
	X(file_create)                                                         \
	X(file_get)                                                            \
	X(file_offset_set)                                                     \
	X(file_finish)                                                         \
	X(file_delete)                                                         \
	X(file_usage)                                                          \
	X(file_access)                                                         \
	X(file_blob_used)                                                      \
	X(files_sweep)

/* For the writers: the "files" of a job's args (upload ids; anything
 * else is STORE_NOFILE) replaced by the file objects of the envelope.
 * get reads a file's row on the writer's connection (STORE_OK,
 * STORE_NOTFOUND, or a failure status, which is returned as is); each
 * must be a finished file of owner. STORE_OK, STORE_NOFILE, or get's
 * failure. */
int store_files_resolve(json_t *args, int64_t owner,
			int (*get)(void *arg, const char *id,
				   struct store_file *out),
			void *arg);

/* The first op a table lacks (NULL), by name, or NULL when it has all:
 * store_open refuses to open a backend that lacks one. */
const char *store_ops_missing(const struct store_ops *ops);

struct store {
	const struct store_ops *ops;
};

/* The SQLite backend (store/sqlite/open.c). */
extern const struct store_ops sq_ops;
struct store *sqlite_store_open(const struct store_config *cfg, char *err,
				size_t errlen);

/* The PostgreSQL backend (store/postgresql/open.c): cfg->path is a
 * libpq URL, postgresql://... */
extern const struct store_ops pg_ops;
bool pg_store_url(const char *path);
struct store *pg_store_open(const struct store_config *cfg, char *err,
			    size_t errlen);

#endif
