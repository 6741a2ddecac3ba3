/* moderation: roles (admins, room moderators), bans, mutes, disabling an
 * account, and the audit log and ban list reads. Every change is checked
 * against the actor's rank, goes through the store like any command, and
 * is written to the audit log once it committed.
 *
 * It deliberately does not do: sending events, the room cache or the
 * commit hook (chat.c, whose top comment covers threads and the overall
 * path); the declarations are in core/chat.h. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/chat.h"
#include "core/chat_internal.h"
#include "core/link.h"
#include "core/userdir.h"
#include "model/markdown.h"
#include "util/log.h"
#include "util/util.h"

/* --- roles -----------------------------------------------------------------
 */

/* Admins arrive as room 0 (store_roles_each): gathered, then set at once. */
struct admins {
	int64_t *ids;
	size_t n, cap;
};

static void role_row(void *arg, int64_t room_id, int64_t user_id, int role)
{
	struct chat *c = arg;
	if (role == STORE_ROLE_OWNER)
		roles_owner_set(c->roles, room_id, user_id);
	else if (role == STORE_ROLE_MODERATOR)
		roles_moderator_set(c->roles, room_id, user_id, true);
}

static void admin_row(void *arg, int64_t room_id, int64_t user_id, int role)
{
	struct admins *a = arg;
	(void)role;
	if (room_id != 0)
		return;
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 8;
		a->ids = xrealloc(a->ids, a->cap * sizeof(*a->ids));
	}
	a->ids[a->n++] = user_id;
}

/* Rooms' rows go to role_row, admins (room 0) to admin_row. */
static void load_row(void *arg, int64_t room_id, int64_t user_id, int role)
{
	void **both = arg;
	if (room_id == 0)
		admin_row(both[1], room_id, user_id, role);
	else
		role_row(both[0], room_id, user_id, role);
}

int roles_load(struct chat *c)
{
	struct admins a = {0};
	void *both[2] = {c, &a};
	int rc = store_roles_each(c->store, true, load_row, both);
	if (rc == 0)
		roles_admins_replace(c->roles, a.ids, a.n);
	free(a.ids);
	atomic_store(&c->admins_read_ms, mono_ms());
	return rc;
}

/* Reads the admins from the store into the role cache (off the loops). */
static void admins_reload(struct chat *c)
{
	struct admins a = {0};
	if (store_roles_each(c->store, false, admin_row, &a) == 0)
		roles_admins_replace(c->roles, a.ids, a.n);
	free(a.ids);
}

void chat_admins_refresh(struct chat *c)
{
	int64_t now = mono_ms();
	int64_t last = atomic_load(&c->admins_read_ms);
	/* One caller a second reads; the others go on with what is there. */
	if (now - last < 1000 ||
	    !atomic_compare_exchange_strong(&c->admins_read_ms, &last, now))
		return;
	admins_reload(c);
}

int role_of(struct chat *c, int64_t room_id, int64_t user_id)
{
	if (!bus_is_member(c->bus, room_id, user_id))
		return STORE_ROLE_NONE;
	enum roles_room_role r = roles_room(c->roles, room_id, user_id);
	return r == ROLES_NONE ? STORE_ROLE_MEMBER : (int)r;
}

bool chat_is_admin(struct chat *c, int64_t user_id)
{
	return roles_is_admin(c->roles, user_id);
}

bool chat_can_moderate(struct chat *c, int64_t user_id, int64_t room_id)
{
	if (role_of(c, room_id, user_id) >= STORE_ROLE_MODERATOR)
		return true;
	return chat_is_admin(c, user_id);
}

int chat_moderator_set(struct chat *c, const struct chat_user *u,
		       const char *room, const char *target, bool on,
		       char room_out[33], char target_out[33], int *role)
{
	int64_t room_id;
	struct store_user t = {0};
	int rc = resolve_room(c, room, &room_id, room_out);
	if (rc != CHAT_OK)
		return rc;
	int mine = role_of(c, room_id, u->id);
	if (mine != STORE_ROLE_OWNER && !chat_is_admin(c, u->id))
		return CHAT_EFORBIDDEN;
	rc = store_user_by_name(c->store, target, &t);
	if (rc != STORE_OK)
		return rc == STORE_NOTFOUND ? CHAT_ENOUSER : CHAT_EINTERNAL;
	snprintf(target_out, 33, "%s", t.username);
	int theirs = role_of(c, room_id, t.id);
	if (theirs == STORE_ROLE_OWNER) {
		rc = CHAT_EFORBIDDEN;
		goto done;
	}
	rc = store_moderator_set(c->store, room_id, t.id, u->id, on);
	if (rc == STORE_NOTMEMBER) {
		rc = CHAT_ENOTMEMBER;
		goto done;
	}
	if (rc != STORE_OK) {
		rc = CHAT_EINTERNAL;
		goto done;
	}
	roles_moderator_set(c->roles, room_id, t.id, on);
	*role = role_of(c, room_id, t.id);
	rc = CHAT_OK;
	if (rc == CHAT_OK) {
		log_info("moderator %s room=%s user=%s by=%s",
			 on ? "named" : "revoked", room_out, target_out,
			 u->username);
		audit(c, u->username, on ? "moderator" : "unmoderator",
		      target_out, room_out, NULL, NULL);
	}
done:
	store_user_fini(&t);
	return rc;
}

int chat_ban_set(struct chat *c, const struct chat_user *u, const char *room,
		 const char *target, const char *reason, bool on,
		 char room_out[33], char target_out[33])
{
	int64_t room_id, subject;
	int rc = resolve_room(c, room, &room_id, room_out);
	if (rc != CHAT_OK)
		return rc;
	rc = subject_resolve(c, target, &subject, target_out);
	if (rc != CHAT_OK)
		return rc;
	rc = may_act_on(c, room_id, u->id, subject);
	if (rc != CHAT_OK)
		return rc;
	if (on && bus_is_member(c->bus, room_id, subject))
		return CHAT_EEXISTS;
	rc = store_ban_set(c->store, room_id, subject, u->id, reason, on);
	if (rc == STORE_NOTFOUND && !on)
		return CHAT_ENOTBANNED;
	if (rc != STORE_OK)
		return CHAT_EINTERNAL;
	log_info("moderation %s room=%s user=%s by=%s", on ? "ban" : "unban",
		 room_out, target_out, u->username);
	audit(c, u->username, on ? "ban" : "unban", target_out, room_out,
	      reason, NULL);
	return CHAT_OK;
}

int chat_mute_set(struct chat *c, const struct chat_user *u, const char *room,
		  const char *target, int64_t seconds, const char *reason,
		  char room_out[33], char target_out[33], int64_t *until_ms)
{
	int64_t room_id, subject;
	int rc = resolve_room(c, room, &room_id, room_out);
	if (rc != CHAT_OK)
		return rc;
	rc = subject_resolve(c, target, &subject, target_out);
	if (rc != CHAT_OK)
		return rc;
	rc = may_act_on(c, room_id, u->id, subject);
	if (rc != CHAT_OK)
		return rc;
	if (seconds < 0 || seconds > CHAT_MUTE_MAX_S)
		return CHAT_EINVAL;
	int64_t until = seconds ? now_ms() + seconds * 1000 : 0;
	rc = store_mute_set(c->store, room_id, subject, until, u->id, reason);
	if (rc == STORE_NOTFOUND && !seconds)
		return CHAT_ENOTMUTED;
	if (rc != STORE_OK)
		return CHAT_EINTERNAL;
	mute_put(c, room_id, subject, until);
	*until_ms = until;
	char detail[48];
	snprintf(detail, sizeof(detail), "seconds=%" PRId64, seconds);
	audit(c, u->username, seconds ? "mute" : "unmute", target_out, room_out,
	      reason, seconds ? detail : NULL);
	log_info("moderation %s room=%s user=%s by=%s seconds=%" PRId64,
		 seconds ? "mute" : "unmute", room_out, target_out, u->username,
		 seconds);

	/* Tell the muted user on all their connections (ephemeral). */
	char ts[32] = "";
	if (until)
		format_ts(until, ts);
	json_t *args = json_pack("{s:s, s:s, s:s, s:I}", "user", target_out,
				 "reason", reason ? reason : "", "until", ts,
				 "seconds", (json_int_t)seconds);
	struct evtype_input in = {.args = args};
	size_t len;
	char *json = event_envelope_input(0, EVENT_MUTE, room_out, u->username,
					  now_ms(), &in, &len);
	json_decref(args);
	if (json) {
		struct event *ev =
		    event_new(0, EVENT_MUTE, BUS_PERSONAL, subject, json, len);
		chat_cluster_event(c, EVENT_MUTE, BUS_PERSONAL, subject, json,
				   len);
		free(json);
		bus_publish(c->bus, ev);
		event_unref(ev);
	}
	return CHAT_OK;
}

int64_t chat_mute_left(struct chat *c, const struct chat_user *u,
		       const char *room)
{
	int64_t room_id;
	char name[33];
	if (resolve_room(c, room, &room_id, name) != CHAT_OK)
		return 0;
	int64_t ms = mute_left(c, room_id, u->id);
	return ms > 0 ? (ms + 999) / 1000 : 0;
}

static int disabled_publish(struct chat *c, int64_t id, const char *by,
			    const char *reason);

int chat_user_disable(struct chat *c, const struct chat_user *u,
		      const char *target, bool disabled, const char *reason,
		      char target_out[33])
{
	int64_t id;
	if (!chat_is_admin(c, u->id))
		return CHAT_EFORBIDDEN;
	int rc = subject_resolve(c, target, &id, target_out);
	if (rc != CHAT_OK)
		return rc;
	if (id == u->id)
		return CHAT_EINVAL;
	if (store_user_disable(c->store, id, disabled, reason) != STORE_OK)
		return CHAT_EINTERNAL;
	log_info("account %s user=%s by=%s", disabled ? "disabled" : "enabled",
		 target_out, u->username);
	audit(c, u->username, disabled ? "disable" : "enable", target_out, NULL,
	      reason, NULL);
	/* with a store that tells every node (this one too), chat_user_word
	 * ends the connections */
	if (!disabled || c->user_words)
		return CHAT_OK;
	return disabled_publish(c, id, u->username, reason);
}

/* Every live connection of the account on this node ends on this event. */
static int disabled_publish(struct chat *c, int64_t id, const char *by,
			    const char *reason)
{
	json_t *args = json_pack("{s:s}", "reason", reason ? reason : "");
	struct evtype_input in = {.args = args};
	size_t len;
	char *json = event_envelope_input(0, EVENT_DISABLED, "", by, now_ms(),
					  &in, &len);
	json_decref(args);
	if (!json)
		return CHAT_EINTERNAL;
	struct event *ev =
	    event_new(0, EVENT_DISABLED, BUS_PERSONAL, id, json, len);
	free(json);
	bus_publish(c->bus, ev);
	event_unref(ev);
	return CHAT_OK;
}

void chat_user_word(void *arg, char kind, int64_t id, const char *name)
{
	struct chat *c = arg;
	struct store_user u;

	if (kind == 'n' && name) {
		userdir_add(c->users, id, name); /* ignores a bad name */
		return;
	}
	if (kind != 'u' || store_user_by_id(c->store, id, &u) != STORE_OK)
		return;
	if (u.disabled) {
		log_info("account disabled user=%s: its connections end",
			 u.username);
		disabled_publish(c, id, u.username, u.disabled_reason);
	}
	store_user_fini(&u);
}

int chat_audit_list(struct chat *c, const struct chat_user *u, int64_t before,
		    unsigned limit, struct store_audit **out, size_t *n,
		    bool *more)
{
	if (!chat_is_admin(c, u->id))
		return CHAT_EFORBIDDEN;
	return store_audit_list(c->store, before, limit, out, n, more) < 0
		   ? CHAT_EINTERNAL
		   : CHAT_OK;
}

int chat_bans_list(struct chat *c, const struct chat_user *u, const char *room,
		   char name[33], struct store_ban **out, size_t *n)
{
	int64_t room_id;
	int rc = resolve_room(c, room, &room_id, name);
	if (rc != CHAT_OK)
		return rc;
	if (!chat_can_moderate(c, u->id, room_id))
		return CHAT_EFORBIDDEN;
	return store_bans_list(c->store, room_id, out, n) < 0 ? CHAT_EINTERNAL
							      : CHAT_OK;
}

void chat_set_rooms_per_day(struct chat *c, unsigned n)
{
	c->rooms_per_day = n;
}

int chat_room_quota(struct chat *c, const struct chat_user *u,
		    int64_t *retry_after_s)
{
	*retry_after_s = 0;
	if (!c->rooms_per_day)
		return CHAT_OK;
	int64_t now = now_ms(), day = 86400 * 1000LL, n = 0, oldest = 0;
	if (store_rooms_created(c->store, u->id, now - day, &n, &oldest) !=
	    STORE_OK)
		return CHAT_EINTERNAL;
	if (n < (int64_t)c->rooms_per_day)
		return CHAT_OK;
	int64_t wait = oldest + day - now;
	*retry_after_s = wait <= 1000 ? 1 : (wait + 999) / 1000;
	return CHAT_ELIMIT;
}

/* Whether the comma-joined list has exactly the k distinct names (any
 * order, any case). */
static bool people_match(const char *list, const char *const *names, size_t k)
{
	size_t seen = 0;
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		bool known = false;
		for (size_t i = 0; i < k && !known; i++)
			known = strlen(names[i]) == len &&
				strncasecmp(names[i], p, len) == 0;
		if (!known)
			return false;
		seen++;
		p += len + (p[len] == ',');
	}
	return seen == k;
}

/* Whether u already has the direct conversation with exactly the people
 * named in args "users" (u's own name and repeats aside): reopening it
 * creates nothing, so no room quota applies. Reads u's rooms from the
 * store; only asked when the quota is spent. */
bool chat_dm_exists(struct chat *c, const struct chat_user *u,
		    const json_t *args)
{
	const json_t *users = json_object_get(args, "users");
	size_t n = json_array_size(users), k = 0, nr = 0;
	const char *names[EVTYPE_DM_USERS_MAX];
	struct store_room *v = NULL;
	bool found = false;

	if (n == 0 || n > EVTYPE_DM_USERS_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(users, i));
		bool again = !s || strcasecmp(s, u->username) == 0;
		for (size_t j = 0; j < k && !again; j++)
			again = strcasecmp(s, names[j]) == 0;
		if (!again)
			names[k++] = s;
	}
	if (store_rooms_list(c->store, u->id, &v, &nr) < 0)
		return false;
	for (size_t i = 0; i < nr && !found; i++)
		found = v[i].joined && strcmp(v[i].kind, "dm") == 0 &&
			v[i].people && people_match(v[i].people, names, k);
	store_rooms_free(v, nr);
	return found;
}

int chat_admin_users(struct chat *c, const struct chat_user *u, const char *q,
		     const char *after, unsigned limit, struct store_user **out,
		     size_t *n, bool *more)
{
	if (!chat_is_admin(c, u->id))
		return CHAT_EFORBIDDEN;
	return store_users_search(c->store, q, after, limit, out, n, more) < 0
		   ? CHAT_EINTERNAL
		   : CHAT_OK;
}

int chat_admin_grant(struct chat *c, const struct chat_user *u,
		     const char *target, bool admin, char target_out[33])
{
	int64_t id;
	if (!chat_is_admin(c, u->id))
		return CHAT_EFORBIDDEN;
	int rc = subject_resolve(c, target, &id, target_out);
	if (rc != CHAT_OK)
		return rc;
	if (id == u->id)
		return CHAT_EINVAL;
	if (store_user_admin_set(c->store, id, admin) != STORE_OK)
		return CHAT_EINTERNAL;
	admins_reload(c); /* the role cache answers rights checks */
	log_info("admin %s user=%s by=%s", admin ? "granted" : "revoked",
		 target_out, u->username);
	audit(c, u->username, admin ? "grant_admin" : "revoke_admin",
	      target_out, NULL, NULL, NULL);
	return CHAT_OK;
}
