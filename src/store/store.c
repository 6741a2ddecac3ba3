/* store: the storage interface's dispatcher. Every store_* call goes to
 * the backend's ops table (store/backend.h); store_open opens the
 * PostgreSQL backend (store/postgresql/) for a postgresql:// path, else
 * the SQLite backend (store/sqlite/). The plain-struct helpers
 * (store_user_fini, store_rooms_free, store_members_free) are the same for
 * every backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/evtype.h"
#include "store/backend.h"
#include "util/log.h"
#include "util/util.h"

#define STORE_OP_SIZE(op) +sizeof(((struct store_ops *)0)->op)
/* STORE_OPS names every member but the name */
_Static_assert(sizeof(const char *)
		       STORE_OPS(STORE_OP_SIZE) == sizeof(struct store_ops),
	       "STORE_OPS (store/backend.h) must list every op");

const char *store_ops_missing(const struct store_ops *ops)
{
#define STORE_OP_CHECK(op)                                                     \
	if (!ops->op)                                                          \
		return #op;
	STORE_OPS(STORE_OP_CHECK)
#undef STORE_OP_CHECK
	return NULL;
}

struct store *store_open(const struct store_config *cfg, char *err,
			 size_t errlen)
{
	bool pg = cfg && pg_store_url(cfg->path);
	const char *missing = store_ops_missing(pg ? &pg_ops : &sq_ops);
	if (missing) {
		snprintf(err, errlen, "the %s store lacks %s",
			 pg ? pg_ops.name : sq_ops.name, missing);
		return NULL;
	}
	return pg ? pg_store_open(cfg, err, errlen)
		  : sqlite_store_open(cfg, err, errlen);
}

const char *store_backend_name(struct store *st)
{
	return st->ops->name;
}

bool store_reachable(struct store *st)
{
	return st->ops->reachable(st);
}

void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

void store_write_submit(struct store *st, const struct store_write *w,
			store_done_fn done, void *arg)
{
	st->ops->write_submit(st, w, done, arg);
}

bool store_set_user_hook(struct store *st, store_user_hook hook, void *arg)
{
	return st->ops->set_user_hook(st, hook, arg);
}

void store_set_commit_hook(struct store *st,
			   void (*hook)(void *arg, struct event *ev), void *arg)
{
	st->ops->set_commit_hook(st, hook, arg);
}

int64_t store_last_event_id(struct store *st)
{
	return st->ops->last_event_id(st);
}

void store_user_fini(struct store_user *u)
{
	if (!u)
		return;
	if (u->pwhash)
		secure_zero(u->pwhash, strlen(u->pwhash));
	free(u->username);
	free(u->display_name);
	free(u->settings);
	free(u->pwhash);
	free(u->disabled_reason);
	free(u->avatar);
	memset(u, 0, sizeof(*u));
}

int store_user_create(struct store *st, const char *username,
		      const char *pwhash, int64_t *id)
{
	return st->ops->user_create(st, username, pwhash, id);
}

int store_user_by_name(struct store *st, const char *username,
		       struct store_user *out)
{
	return st->ops->user_by_name(st, username, out);
}

int store_user_by_id(struct store *st, int64_t id, struct store_user *out)
{
	return st->ops->user_by_id(st, id, out);
}

int store_user_avatar_set(struct store *st, int64_t id, const char *file_id)
{
	return st->ops->user_avatar_set(st, id, file_id);
}

int store_user_update(struct store *st, int64_t id, const char *display_name,
		      const char *settings)
{
	return st->ops->user_update(st, id, display_name, settings);
}

int store_session_create(struct store *st, const uint8_t hash[32],
			 int64_t user_id, int64_t expires_ms)
{
	return st->ops->session_create(st, hash, user_id, expires_ms);
}

int store_session_lookup(struct store *st, const uint8_t hash[32],
			 int64_t now_ms, int64_t *user_id)
{
	return st->ops->session_lookup(st, hash, now_ms, user_id);
}

int store_session_delete(struct store *st, const uint8_t hash[32])
{
	return st->ops->session_delete(st, hash);
}

int store_session_user(struct store *st, const uint8_t hash[32], int64_t now_ms,
		       int64_t *user_id, char username[33])
{
	return st->ops->session_user(st, hash, now_ms, user_id, username);
}

int store_room_by_name(struct store *st, const char *name, int64_t *room_id,
		       char name_out[33])
{
	return st->ops->room_by_name(st, name, room_id, name_out);
}

int store_rooms_list(struct store *st, int64_t user_id, struct store_room **out,
		     size_t *n)
{
	return st->ops->rooms_list(st, user_id, out, n);
}

void store_rooms_free(struct store_room *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].topic);
		free(v[i].people);
	}
	free(v);
}

int store_users_each(struct store *st,
		     void (*fn)(void *arg, int64_t id, const char *username),
		     void *arg)
{
	return st->ops->users_each(st, fn, arg);
}

int store_read_marker_set(struct store *st, int64_t user_id, int64_t room_id,
			  int64_t event_id, int64_t *now)
{
	return st->ops->read_marker_set(st, user_id, room_id, event_id, now);
}

int store_invite_add(struct store *st, int64_t room_id, int64_t user_id,
		     int64_t by)
{
	return st->ops->invite_add(st, room_id, user_id, by);
}

int store_invites_list(struct store *st, int64_t user_id,
		       struct store_invite **out, size_t *n)
{
	return st->ops->invites_list(st, user_id, out, n);
}

int store_room_members(struct store *st, int64_t room_id,
		       struct store_member **out, size_t *n)
{
	return st->ops->room_members(st, room_id, out, n);
}

void store_members_free(struct store_member *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].display_name);
		free(v[i].avatar);
	}
	free(v);
}

int store_is_member(struct store *st, int64_t room_id, int64_t user_id)
{
	return st->ops->is_member(st, room_id, user_id);
}

int store_members_each(struct store *st,
		       void (*fn)(void *arg, int64_t room_id, int64_t user_id),
		       void *arg)
{
	return st->ops->members_each(st, fn, arg);
}

int store_presence_set(struct store *st, int64_t user_id, const char *status,
		       const char *text)
{
	return st->ops->presence_set(st, user_id, status, text);
}

int store_last_seen_set(struct store *st, const int64_t *users,
			const int64_t *ms, size_t n)
{
	return n ? st->ops->last_seen_set(st, users, ms, n) : STORE_OK;
}

int store_presence_each(struct store *st,
			void (*fn)(void *arg, const struct store_presence *p),
			void *arg)
{
	return st->ops->presence_each(st, fn, arg);
}

int store_history(struct store *st, int64_t room_id, int64_t before,
		  int64_t after, unsigned limit, struct event ***out, size_t *n,
		  bool *more)
{
	return st->ops->history(st, room_id, before, after, limit, out, n,
				more);
}

int store_reactions(struct store *st, int64_t user_id, int64_t room_id,
		    int64_t lo, int64_t hi, struct store_reaction **out,
		    size_t *n)
{
	return st->ops->reactions(st, user_id, room_id, lo, hi, out, n);
}

int store_search(struct store *st, int64_t user_id, const char *q,
		 int64_t before, unsigned limit, struct event ***out, size_t *n,
		 bool *more)
{
	return st->ops->search(st, user_id, q, before, limit, out, n, more);
}

int store_events_after(void *arg, int64_t user_id, int64_t after, size_t limit,
		       struct event ***out, size_t *n)
{
	struct store *st = arg;
	return st->ops->events_after(st, user_id, after, limit, out, n);
}

int store_user_admin_set(struct store *st, int64_t id, bool admin)
{
	return st->ops->user_admin_set(st, id, admin);
}

int store_room_role(struct store *st, int64_t room_id, int64_t user_id)
{
	return st->ops->room_role(st, room_id, user_id);
}

int store_moderator_set(struct store *st, int64_t room_id, int64_t user_id,
			int64_t by, bool on)
{
	return st->ops->moderator_set(st, room_id, user_id, by, on);
}

int store_ban_set(struct store *st, int64_t room_id, int64_t user_id,
		  int64_t by, const char *reason, bool on)
{
	return st->ops->ban_set(st, room_id, user_id, by, reason, on);
}

int store_bans_list(struct store *st, int64_t room_id, struct store_ban **out,
		    size_t *n)
{
	return st->ops->bans_list(st, room_id, out, n);
}

void store_bans_free(struct store_ban *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].reason);
	free(v);
}

int store_mute_set(struct store *st, int64_t room_id, int64_t user_id,
		   int64_t until_ms, int64_t by, const char *reason)
{
	return st->ops->mute_set(st, room_id, user_id, until_ms, by, reason);
}

int store_mutes_each(struct store *st, int64_t now_ms,
		     void (*fn)(void *arg, int64_t room_id, int64_t user_id,
				int64_t until_ms),
		     void *arg)
{
	return st->ops->mutes_each(st, now_ms, fn, arg);
}

int store_roles_each(struct store *st, bool rooms,
		     void (*fn)(void *arg, int64_t room_id, int64_t user_id,
				int role),
		     void *arg)
{
	return st->ops->roles_each(st, rooms, fn, arg);
}

int store_user_disable(struct store *st, int64_t id, bool disabled,
		       const char *reason)
{
	return st->ops->user_disable(st, id, disabled, reason);
}

int store_audit_add(struct store *st, const struct store_audit *a)
{
	return st->ops->audit_add(st, a);
}

int store_audit_list(struct store *st, int64_t before, unsigned limit,
		     struct store_audit **out, size_t *n, bool *more)
{
	return st->ops->audit_list(st, before, limit, out, n, more);
}

void store_audit_free(struct store_audit *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].actor);
		free(v[i].action);
		free(v[i].target);
		free(v[i].room);
		free(v[i].reason);
		free(v[i].detail);
	}
	free(v);
}

int store_user_password_set(struct store *st, int64_t id, const char *pwhash)
{
	return st->ops->user_password_set(st, id, pwhash);
}

int store_sample_add(struct store *st, const struct store_sample *s)
{
	return st->ops->sample_add(st, s);
}

int store_samples_prune(struct store *st, int64_t before_s)
{
	return st->ops->samples_prune(st, before_s);
}

json_t *store_stats(struct store *st, int64_t from_ms, int64_t to_ms,
		    int64_t bucket_s)
{
	return st->ops->stats(st, from_ms, to_ms, bucket_s);
}

int store_rooms_created(struct store *st, int64_t user_id, int64_t since_ms,
			int64_t *count, int64_t *oldest_ms)
{
	return st->ops->rooms_created(st, user_id, since_ms, count, oldest_ms);
}

int store_users_search(struct store *st, const char *q, const char *after,
		       unsigned limit, struct store_user **out, size_t *n,
		       bool *more)
{
	return st->ops->users_search(st, q, after, limit, out, n, more);
}

void store_users_free(struct store_user *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		store_user_fini(&v[i]);
	free(v);
}

json_t *store_file_json(const struct store_file *f)
{
	const char *name = f->name && *f->name ? f->name : "file";
	size_t n = strlen(name);
	struct buf url;

	if (n > STORE_FILE_URL_NAME_MAX) {
		n = STORE_FILE_URL_NAME_MAX;
		while (n && ((unsigned char)name[n] & 0xc0) == 0x80)
			n--;
	}
	buf_init(&url);
	buf_printf(&url, "/files/%s/", f->id);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c))
			buf_printf(&url, "%c", c);
		else if (c == '/' || c < 0x20 || c == 0x7f)
			buf_puts(&url, "_");
		else
			buf_printf(&url, "%%%02X", c);
	}
	json_t *o = json_pack(
	    "{s:s, s:s, s:I, s:s, s:i, s:i, s:s}", "id", f->id, "name",
	    f->name ? f->name : "", "size", (json_int_t)f->length, "type",
	    f->type ? f->type : "application/octet-stream", "width", f->width,
	    "height", f->height, "url", url.data);
	buf_fini(&url);
	return o;
}

int store_files_resolve(json_t *args, int64_t owner,
			int (*get)(void *arg, const char *id,
				   struct store_file *out),
			void *arg)
{
	json_t *ids = json_object_get(args, "files"), *v;
	size_t i;

	if (!json_is_array(ids) || json_array_size(ids) == 0 ||
	    json_array_size(ids) > EVTYPE_FILES_MAX)
		return STORE_NOFILE;
	json_t *out = json_array();
	json_array_foreach(ids, i, v)
	{
		struct store_file f;
		const char *id = json_string_value(v);
		int rc = id && strlen(id) < sizeof(f.id) ? get(arg, id, &f)
							 : STORE_NOTFOUND;
		if (rc == STORE_NOTFOUND) {
			json_decref(out);
			return STORE_NOFILE;
		}
		if (rc != STORE_OK) {
			json_decref(out);
			return rc;
		}
		bool ok = f.owner_id == owner && f.sha256;
		if (ok)
			json_array_append_new(out, store_file_json(&f));
		store_file_fini(&f);
		if (!ok) {
			json_decref(out);
			return STORE_NOFILE;
		}
	}
	json_object_set_new(args, "files", out);
	return STORE_OK;
}

void store_file_fini(struct store_file *f)
{
	if (!f)
		return;
	free(f->name);
	free(f->metadata);
	free(f->sha256);
	free(f->type);
	memset(f, 0, sizeof(*f));
}

int store_file_create(struct store *st, const struct store_file *f)
{
	return st->ops->file_create(st, f);
}

int store_file_get(struct store *st, const char *id, struct store_file *out)
{
	return st->ops->file_get(st, id, out);
}

int store_file_offset_set(struct store *st, const char *id, int64_t offset)
{
	return st->ops->file_offset_set(st, id, offset);
}

int store_file_finish(struct store *st, const char *id, int64_t length,
		      const char *sha256, const char *type, int width,
		      int height, const char *name)
{
	return st->ops->file_finish(st, id, length, sha256, type, width, height,
				    name);
}

int store_file_delete(struct store *st, const char *id)
{
	return st->ops->file_delete(st, id);
}

int store_file_usage(struct store *st, int64_t owner_id, int64_t *bytes)
{
	return st->ops->file_usage(st, owner_id, bytes);
}

int store_file_access(struct store *st, const char *id, int64_t user_id)
{
	return st->ops->file_access(st, id, user_id);
}

int store_file_blob_used(struct store *st, const char *sha256)
{
	return st->ops->file_blob_used(st, sha256);
}

int store_files_sweep(struct store *st, int64_t now_ms,
		      int64_t unused_before_ms,
		      bool (*keep)(void *arg, const char *id),
		      void (*fn)(void *arg, const char *id, const char *sha256),
		      void *arg)
{
	return st->ops->files_sweep(st, now_ms, unused_before_ms, keep, fn,
				    arg);
}
