/* chat: the commands every transport shares, all one path (chat_event)
 * driven by the event-type table: the type's validator checks what it can
 * without the database (lengths, UTF-8, names), the room is resolved from
 * the room cache, the sender rule is checked against the bus's membership,
 * and a persistent event is queued on the store's writer, which re-checks
 * what only it can decide (membership, uniqueness) inside its transaction;
 * an ephemeral one is published at once. The store's commit hook hands
 * each stored event to the bus through the link (link.h) before any ack
 * runs, so an acknowledged event is always both durable and delivered.
 * It also answers the API's reads, checking membership first. Roles,
 * bans, mutes and the audit log are in moderation.c.
 *
 * Threads: any thread may call in; the commit hook runs on the store's
 * writer. room_mu guards the room cache only and is never held while
 * calling out. chat knows no transport and no wire format but the
 * envelope, and no HTTP status. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/chat.h"
#include "core/chat_internal.h"
#include "core/filestore.h"
#include "core/link.h"
#include "core/userdir.h"
#include "model/markdown.h"
#include "util/log.h"
#include "util/util.h"

/* One queued command: the caller's callback, carried through the store,
 * and the audit row to write once it committed (moderation), or NULL. */
struct pending {
	chat_done_fn done;
	void *arg;
	struct chat *chat;
	struct store_audit *audit;
	int64_t submit_us; /* mono_us at submit: natter_commit_seconds */
};

/* Append to the audit log; a failure is logged, the action stands. */
void audit(struct chat *c, const char *actor, const char *action,
	   const char *target, const char *room, const char *reason,
	   const char *detail)
{
	struct store_audit a = {.actor = (char *)actor,
				.action = (char *)action,
				.target = (char *)target,
				.room = (char *)room,
				.reason = (char *)reason,
				.detail = (char *)detail};
	if (store_audit_add(c->store, &a) != STORE_OK)
		log_warn("audit row lost action=%s actor=%s target=%s", action,
			 actor, target ? target : "");
}

static size_t room_slot(const struct room_entry *rooms, size_t cap,
			const char *key)
{
	size_t i = (size_t)table_hash(key, strlen(key)) & (cap - 1);
	while (rooms[i].key[0] && strcmp(rooms[i].key, key) != 0)
		i = (i + 1) & (cap - 1);
	return i;
}

static enum chat_room_kind kind_parse(const char *kind)
{
	if (kind && strcmp(kind, "private") == 0)
		return CHAT_ROOM_PRIVATE;
	if (kind && strcmp(kind, "dm") == 0)
		return CHAT_ROOM_DM;
	return CHAT_ROOM_PUBLIC;
}

static int user_find(struct chat *c, const char *name, size_t len, int64_t *id,
		     char canon[33]);

/* Under room_mu. */
static void room_put(struct chat *c, int64_t id, const char *name,
		     enum chat_room_kind kind)
{
	char key[33];
	if (!name_valid(name))
		return;
	ascii_lower(name, key);
	/* Keep a quarter free so that probes stay short. */
	if ((c->nrooms + 1) * 4 > c->room_cap * 3) {
		size_t cap = c->room_cap * 2;
		struct room_entry *v = xcalloc(cap, sizeof(*v));
		for (size_t i = 0; i < c->room_cap; i++)
			if (c->rooms[i].key[0])
				v[room_slot(v, cap, c->rooms[i].key)] =
				    c->rooms[i];
		free(c->rooms);
		c->rooms = v;
		c->room_cap = cap;
	}
	struct room_entry *e = &c->rooms[room_slot(c->rooms, c->room_cap, key)];
	if (!e->key[0]) {
		memcpy(e->key, key, sizeof(key));
		c->nrooms++;
	}
	e->id = id;
	e->kind = kind;
	snprintf(e->name, sizeof(e->name), "%s", name);
}

/* A new room's name, from its event's envelope: rooms are created rarely,
 * so parsing the envelope here costs nothing that matters. */
static void room_learn(struct chat *c, struct event *ev)
{
	size_t len;
	const char *text = event_json(ev, &len);
	json_t *env = json_loadb(text, len, 0, NULL);
	const char *name = json_string_value(json_object_get(env, "room"));
	const char *kind = json_string_value(json_object_get(env, "kind"));
	if (name) {
		pthread_mutex_lock(&c->room_mu);
		room_put(c, event_room(ev), name, kind_parse(kind));
		pthread_mutex_unlock(&c->room_mu);
	}
	json_decref(env);
}

/* On the writer thread, for each committed event in id order. */
static void commit_hook(void *arg, struct event *ev)
{
	struct chat *c = arg;
	const struct evtype *row = evtype_get(event_type(ev));
	if (event_is_revision(ev)) {
		bus_revise(c->bus, ev);
		return;
	}
	if (row && (row->effect == EVTYPE_EFFECT_ROOM_CREATE ||
		    row->effect == EVTYPE_EFFECT_DM_OPEN)) {
		room_learn(c, ev);
		roles_owner_set(c->roles, event_room(ev), event_user(ev));
	}
	/* A moderator who stops being a member stops being one (the
	 * store's trigger does the same to its table). */
	if (row && row->effect == EVTYPE_EFFECT_MEMBER_REMOVE)
		roles_member_left(c->roles, event_room(ev), event_user(ev));
	if (row && (row->effect == EVTYPE_EFFECT_SUBJECT_REMOVE ||
		    row->effect == EVTYPE_EFFECT_SUBJECT_BAN))
		roles_member_left(c->roles, event_room(ev), event_subject(ev));
	if (link_committed(c->link, ev) == BUS_EORDER) {
		/* The writer assigns ids in commit order, so this is a bug
		 * (or, with several writers, a broken ordering): the event
		 * reached history but no live subscriber. Say so. */
		if (c->metrics)
			metrics_inc(c->metrics->bus_id_violations);
		log_warn("bus refused an event out of id order id=%" PRId64
			 " type=%s last_id=%" PRId64,
			 event_id(ev), event_type_name(event_type(ev)),
			 bus_last_id(c->bus));
	}
}

/* Set (until_ms > 0) or clear the mute of (room, user) in the cache. */
void mute_put(struct chat *c, int64_t room, int64_t user, int64_t until_ms)
{
	pthread_mutex_lock(&c->mute_mu);
	size_t n = atomic_load(&c->nmutes), i;
	for (i = 0; i < n; i++)
		if (c->mutes[i].room == room && c->mutes[i].user == user)
			break;
	if (until_ms <= 0) {
		if (i < n) {
			c->mutes[i] = c->mutes[n - 1];
			atomic_store(&c->nmutes, n - 1);
		}
	} else {
		if (i == n) {
			if (n == c->mute_cap) {
				c->mute_cap = c->mute_cap ? c->mute_cap * 2 : 8;
				c->mutes = xrealloc(
				    c->mutes, c->mute_cap * sizeof(*c->mutes));
			}
			atomic_store(&c->nmutes, n + 1);
		}
		c->mutes[i] = (struct mute){room, user, until_ms};
	}
	pthread_mutex_unlock(&c->mute_mu);
}

static void mute_load(void *arg, int64_t room, int64_t user, int64_t until_ms)
{
	mute_put(arg, room, user, until_ms);
}

/* Milliseconds left of user's mute in room, 0 when not muted. */
int64_t mute_left(struct chat *c, int64_t room, int64_t user)
{
	if (atomic_load(&c->nmutes) == 0)
		return 0;
	int64_t now = now_ms(), left = 0;
	pthread_mutex_lock(&c->mute_mu);
	size_t n = atomic_load(&c->nmutes);
	for (size_t i = 0; i < n;) {
		struct mute *m = &c->mutes[i];
		if (m->until_ms <= now) { /* over: drop it */
			*m = c->mutes[--n];
			continue;
		}
		if (m->room == room && m->user == user)
			left = m->until_ms - now;
		i++;
	}
	atomic_store(&c->nmutes, n);
	pthread_mutex_unlock(&c->mute_mu);
	return left;
}

static void user_load(void *arg, int64_t id, const char *username)
{
	userdir_add(arg, id, username);
}

struct chat *chat_new(struct store *st, struct bus *bus,
		      struct metrics *metrics)
{
	struct store_room *rooms = NULL;
	size_t n = 0;
	if (store_rooms_list(st, 0, &rooms, &n) < 0)
		return NULL;

	struct chat *c = xcalloc(1, sizeof(*c));
	c->store = st;
	c->bus = bus;
	c->metrics = metrics;
	c->link = link_local_new(bus);
	c->users = userdir_new();
	c->roles = roles_new();
	if (store_users_each(st, user_load, c->users) < 0 ||
	    roles_load(c) < 0) {
		store_rooms_free(rooms, n);
		userdir_free(c->users);
		roles_free(c->roles);
		link_free(c->link);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->room_mu, NULL);
	c->room_cap = 64;
	c->rooms = xcalloc(c->room_cap, sizeof(*c->rooms));
	for (size_t i = 0; i < n; i++)
		room_put(c, rooms[i].id, rooms[i].name,
			 kind_parse(rooms[i].kind));
	store_rooms_free(rooms, n);
	pthread_mutex_init(&c->mute_mu, NULL);
	if (store_mutes_each(st, now_ms(), mute_load, c) < 0) {
		chat_free(c);
		return NULL;
	}
	store_set_commit_hook(st, commit_hook, c);
	c->user_words = store_set_user_hook(st, chat_user_word, c);
	return c;
}

void chat_free(struct chat *c)
{
	if (!c)
		return;
	chat_cluster_stop(c);
	presence_free(c->presence);
	free(c->rooms);
	free(c->mutes);
	userdir_free(c->users);
	roles_free(c->roles);
	link_free(c->link);
	pthread_mutex_destroy(&c->room_mu);
	pthread_mutex_destroy(&c->mute_mu);
	free(c);
}

void chat_set_mention(struct chat *c, markdown_mention_fn fn, void *arg)
{
	c->mention = fn;
	c->mention_arg = arg;
}

void chat_set_files(struct chat *c, struct filestore *fs)
{
	c->files = fs;
}

/* The one place a message's text becomes HTML: once per message, on the
 * sender's thread (an HTTP worker or an event loop), so that the store's
 * single writer only copies the result. The same pass finds its mentions:
 * markdown decides what is code, chat_mention (members of the room) what
 * is a mention, and m collects them. Caller frees. */
static char *chat_render(struct chat *c, const char *text, size_t len,
			 struct chat_mentions *m)
{
	size_t n;
	if (c->mention)
		return markdown_render(text, len, c->mention, c->mention_arg,
				       &n);
	return markdown_render(text, len, chat_mention, m, &n);
}

static int err_from_store(int status)
{
	switch (status) {
	case STORE_OK:
	case STORE_DUPLICATE:
		return CHAT_OK;
	case STORE_NOTFOUND:
		return CHAT_ENOROOM;
	case STORE_EXISTS:
		return CHAT_EEXISTS;
	case STORE_NOTMEMBER:
		return CHAT_ENOTMEMBER;
	case STORE_CLOSED:
		return CHAT_ECLOSED;
	case STORE_NOUSER:
		return CHAT_ENOUSER;
	case STORE_FIXED:
		return CHAT_EFIXED;
	case STORE_BANNED:
		return CHAT_EBANNED;
	case STORE_NOTARGET:
		return CHAT_ENOMSG;
	case STORE_NOTAUTHOR:
		return CHAT_ENOTAUTHOR;
	case STORE_GONE:
		return CHAT_EDELETED;
	case STORE_FULL:
		return CHAT_EFULL;
	case STORE_BADREF:
		return CHAT_EBADREPLY;
	case STORE_LIMIT:
		return CHAT_ETOOMANY;
	case STORE_UNAVAILABLE:
		return CHAT_EUNAVAILABLE;
	case STORE_NOFILE:
		return CHAT_ENOFILE;
	default:
		return CHAT_EINTERNAL;
	}
}

/* On the writer thread: keep the full-disk state, and say so loudly but
 * at most once a minute (a full disk refuses every send). */
static void full_note(struct chat *c, int status)
{
	if (status != STORE_FULL) {
		if (status >= 0 && atomic_exchange(&c->full, false)) {
			if (c->metrics)
				atomic_store(&c->metrics->storage_full, 0);
			log_warn("storage writable again: sends are stored");
		}
		return;
	}
	atomic_store(&c->full, true);
	if (c->metrics)
		atomic_store(&c->metrics->storage_full, 1);
	uint64_t n = atomic_fetch_add(&c->full_refused, 1) + 1;
	int64_t now = mono_ms(), last = atomic_load(&c->full_logged);
	if (last && now - last < 60000)
		return;
	if (!atomic_compare_exchange_strong(&c->full_logged, &last, now))
		return;
	atomic_fetch_sub(&c->full_refused, n);
	log_error("storage full: the database's filesystem has no space left; "
		  "writes are refused with storage_full refused=%llu",
		  (unsigned long long)n);
}

bool chat_storage_full(struct chat *c)
{
	return atomic_load(&c->full);
}

const char *chat_store_backend(struct chat *c, bool *reachable)
{
	*reachable = store_reachable(c->store);
	return store_backend_name(c->store);
}

static void store_done(void *arg, int status, struct event *ev)
{
	struct pending *p = arg;
	if (p->submit_us && p->chat->metrics)
		histo_observe_us(&p->chat->metrics->commit,
				 mono_us() - p->submit_us);
	if (p->audit) {
		struct store_audit *a = p->audit;
		/* after the commit, on the writer thread: a pool write */
		if (status == STORE_OK)
			audit(p->chat, a->actor, a->action, a->target, a->room,
			      a->reason, a->detail);
		store_audit_free(a, 1);
	}
	full_note(p->chat, status);
	struct chat_result res = {
	    .err = err_from_store(status),
	    .ev = status >= 0 ? ev : NULL,
	    .duplicate = status == STORE_DUPLICATE,
	};
	p->done(p->arg, &res);
	free(p);
}

/* Put every room of the store in the cache: 0, or -1 if it cannot be
 * read. */
static int rooms_learn(struct chat *c)
{
	struct store_room *rooms = NULL;
	size_t n = 0;
	if (store_rooms_list(c->store, 0, &rooms, &n) < 0)
		return -1;
	pthread_mutex_lock(&c->room_mu);
	for (size_t i = 0; i < n; i++)
		room_put(c, rooms[i].id, rooms[i].name,
			 kind_parse(rooms[i].kind));
	pthread_mutex_unlock(&c->room_mu);
	store_rooms_free(rooms, n);
	return 0;
}

/* Resolve a room name from the cache: CHAT_OK with its id and canonical
 * name (and kind, if kind is not NULL), or CHAT_ENOROOM. A name the cache
 * does not know is looked up in the store once: with several nodes on one
 * database, a room made on another node may be in the store before its
 * event reaches this node's cache. */
static int resolve_room_kind(struct chat *c, const char *room, int64_t *id,
			     char name[33], enum chat_room_kind *kind)
{
	char key[33];
	if (!room || !name_valid(room))
		return CHAT_ENOROOM;
	ascii_lower(room, key);
	pthread_mutex_lock(&c->room_mu);
	struct room_entry *e = &c->rooms[room_slot(c->rooms, c->room_cap, key)];
	bool hit = e->key[0] != '\0';
	if (hit) {
		*id = e->id;
		memcpy(name, e->name, 33);
		if (kind)
			*kind = e->kind;
	}
	pthread_mutex_unlock(&c->room_mu);
	if (!hit &&
	    store_room_by_name(c->store, room, NULL, NULL) == STORE_OK &&
	    rooms_learn(c) == 0)
		return resolve_room_kind(c, room, id, name, kind);
	return hit ? CHAT_OK : CHAT_ENOROOM;
}

/* A room by name, whatever its kind (moderation and admin calls, which
 * decide by role, not membership). */
int resolve_room(struct chat *c, const char *room, int64_t *id, char name[33])
{
	return resolve_room_kind(c, room, id, name, NULL);
}

/* A room as u may know it: a private room or a direct conversation u is
 * not in is CHAT_ENOROOM, exactly as a room that does not exist, so that
 * an outsider learns nothing of it; a public one u is not in is
 * CHAT_ENOTMEMBER. */
static int room_for(struct chat *c, const struct chat_user *u, const char *room,
		    int64_t *id, char name[33], enum chat_room_kind *kind)
{
	enum chat_room_kind k;
	int rc = resolve_room_kind(c, room, id, name, &k);
	if (rc != CHAT_OK)
		return rc;
	if (kind)
		*kind = k;
	if (bus_is_member(c->bus, *id, u->id))
		return CHAT_OK;
	return k == CHAT_ROOM_PUBLIC ? CHAT_ENOTMEMBER : CHAT_ENOROOM;
}

int chat_personal(struct chat *c, const struct chat_user *u,
		  enum event_type type, json_t *args)
{
	const struct evtype *row = evtype_get(type);
	struct evtype_input in = {.args = args};
	size_t len;

	if (!row || row->persistent || row->sender != EVTYPE_FROM_SERVER)
		return CHAT_EINVAL;
	char *json = event_envelope_input(0, type, NULL, u->username, now_ms(),
					  &in, &len);
	if (!json)
		return CHAT_EINTERNAL;
	struct event *ev = event_new(0, type, BUS_PERSONAL, u->id, json, len);
	chat_cluster_event(c, type, BUS_PERSONAL, u->id, json, len);
	free(json);
	bus_publish(c->bus, ev);
	event_unref(ev);
	return CHAT_OK;
}

int chat_profile(struct chat *c, const struct chat_user *u, json_t *args)
{
	struct evtype_input in = {.args = args};
	size_t len;
	char *json = event_envelope_input(0, EVENT_PROFILE, NULL, u->username,
					  now_ms(), &in, &len);

	if (!json)
		return CHAT_EINTERNAL;
	/* Once to every connection of everyone who shares a room with u,
	 * however many rooms they share (as presence goes) ... */
	struct event *ev =
	    event_new(0, EVENT_PROFILE, BUS_PEERS, u->id, json, len);
	chat_cluster_event(c, EVENT_PROFILE, BUS_PEERS, u->id, json, len);
	free(json);
	bus_publish(c->bus, ev);
	event_unref(ev);
	/* ... and to u's own connections, also when in no room. */
	return chat_personal(c, u, EVENT_PROFILE, args);
}

/* How far a user's rights reach in a room: admins above owners above
 * moderators above members. */
static int rank(struct chat *c, int64_t room_id, int64_t user_id)
{
	if (chat_is_admin(c, user_id))
		return STORE_ROLE_OWNER + 1;
	return role_of(c, room_id, user_id);
}

/* Whether actor may act on subject in room_id (remove, ban, mute): actor
 * moderates the room and outranks subject. CHAT_OK, CHAT_EFORBIDDEN,
 * CHAT_EINTERNAL. */
int may_act_on(struct chat *c, int64_t room_id, int64_t actor, int64_t subject)
{
	int mine = rank(c, room_id, actor);
	int theirs = rank(c, room_id, subject);
	if (mine < 0 || theirs < 0)
		return CHAT_EINTERNAL;
	if (mine < STORE_ROLE_MODERATOR || actor == subject || theirs >= mine)
		return CHAT_EFORBIDDEN;
	return CHAT_OK;
}

/* The subject of a moderation command (args "user"), resolved: CHAT_OK
 * with its id and canonical name, CHAT_ENOUSER, CHAT_EINTERNAL. */
int subject_resolve(struct chat *c, const char *user, int64_t *id,
		    char name[33])
{
	/* From the user directory (no SQLite on a loop); only a name it does
	 * not know (an account natterctl made since start) asks the store. */
	if (userdir_find(c->users, user, strlen(user), id, name) == 0)
		return CHAT_OK;
	struct store_user t;
	int rc = store_user_by_name(c->store, user, &t);
	if (rc != STORE_OK)
		return rc == STORE_NOTFOUND ? CHAT_ENOUSER : CHAT_EINTERNAL;
	*id = t.id;
	snprintf(name, 33, "%s", t.username);
	store_user_fini(&t);
	return CHAT_OK;
}

/* A moderation event (kick, ban): the sender must outrank its subject,
 * who must be a member (the event is their removal); the envelope names
 * the subject canonically. */
static int moderation_submit(struct chat *c, const struct chat_user *u,
			     const struct evtype *row, int64_t room_id,
			     const char *name, const struct evtype_input *in,
			     chat_done_fn done, void *arg)
{
	int64_t subject;
	char who[33];
	const char *user = json_string_value(json_object_get(in->args, "user"));
	int rc = subject_resolve(c, user, &subject, who);
	if (rc != CHAT_OK)
		return rc;
	rc = may_act_on(c, room_id, u->id, subject);
	if (rc != CHAT_OK)
		return rc;
	if (!bus_is_member(c->bus, room_id, subject))
		return CHAT_ENOSUBJECT;
	const char *reason =
	    json_string_value(json_object_get(in->args, "reason"));
	json_t *args = json_pack("{s:s, s:s}", "user", who, "reason",
				 reason ? reason : "");
	struct store_write w = {
	    .type = row->type,
	    .user_id = u->id,
	    .username = u->username,
	    .room_id = room_id,
	    .room_name = name,
	    .args = args,
	    .subject_id = subject,
	};
	struct pending *p = xcalloc(1, sizeof(*p));
	p->done = done;
	p->arg = arg;
	p->chat = c;
	p->audit = xcalloc(1, sizeof(*p->audit));
	p->audit->actor = xstrdup(u->username);
	p->audit->action = xstrdup(row->name);
	p->audit->target = xstrdup(who);
	p->audit->room = xstrdup(name);
	p->audit->reason = xstrdup(reason ? reason : "");
	p->audit->detail = xstrdup("");
	store_write_submit(c->store, &w, store_done, p);
	json_decref(args);
	log_info("moderation %s room=%s user=%s by=%s", row->name, name, who,
		 u->username);
	return CHAT_OK;
}

int chat_event(struct chat *c, const struct chat_user *u, enum event_type type,
	       const struct evtype_input *in, chat_done_fn done, void *arg)
{
	const struct evtype *row = evtype_get(type);
	int64_t room_id = 0;
	char name[33] = "";

	if (!row || row->sender == EVTYPE_FROM_SERVER)
		return CHAT_EINVAL;
	if (row->validate) {
		enum evtype_verdict v = row->validate(in);
		if (v == EVTYPE_TOOLONG)
			return CHAT_ETOOLONG;
		if (v == EVTYPE_BADEMOJI)
			return CHAT_EBADEMOJI;
		if (v != EVTYPE_VALID)
			return CHAT_EINVAL;
	}
	if (row->effect == EVTYPE_EFFECT_ROOM_CREATE ||
	    row->effect == EVTYPE_EFFECT_DM_OPEN) {
		int64_t wait;
		int rc = chat_room_quota(c, u, &wait);
		if (rc == CHAT_ELIMIT && row->effect == EVTYPE_EFFECT_DM_OPEN &&
		    chat_dm_exists(c, u, in->args))
			rc = CHAT_OK; /* reopening creates nothing */
		if (rc == CHAT_ELIMIT && c->metrics)
			metrics_inc(c->metrics->rooms_day_limited);
		if (rc != CHAT_OK)
			return rc;
	} else {
		enum chat_room_kind kind = CHAT_ROOM_PUBLIC;
		int rc = room_for(c, u, in->room, &room_id, name, &kind);
		/* A fast answer; the writer decides for persistent types
		 * (a private room's join: the invitation; a moderator need
		 * not be a member of a public room). */
		if (rc == CHAT_ENOROOM && room_id > 0 &&
		    row->effect == EVTYPE_EFFECT_MEMBER_ADD &&
		    kind == CHAT_ROOM_PRIVATE)
			rc = CHAT_OK;
		if (rc == CHAT_ENOTMEMBER && row->sender != EVTYPE_FROM_MEMBER)
			rc = CHAT_OK;
		if (rc != CHAT_OK)
			return rc;
		/* A muted member sends nothing there (typing included);
		 * joining, leaving and moderating are not sends. */
		if (row->sender == EVTYPE_FROM_MEMBER &&
		    mute_left(c, room_id, u->id) > 0)
			return CHAT_EMUTED;
	}
	if (row->sender == EVTYPE_FROM_MODERATOR)
		return moderation_submit(c, u, row, room_id, name, in, done,
					 arg);
	if (!row->persistent) {
		size_t len;
		char *json = event_envelope_input(0, type, name, u->username,
						  now_ms(), in, &len);
		if (!json)
			return CHAT_EINTERNAL;
		struct event *ev =
		    event_new(0, type, room_id, u->id, json, len);
		chat_cluster_event(c, type, room_id, u->id, json, len);
		free(json);
		bus_publish(c->bus, ev);
		event_unref(ev);
		return CHAT_OK;
	}
	/* The upload ids a message names become the file objects it carries
	 * in the writer's transaction (store_write: STORE_NOFILE), so that
	 * no store read happens on the sender's thread (an event loop) and a
	 * file deleted meanwhile cannot be carried. */
	json_t *args = in->args ? json_incref(in->args) : NULL;
	json_t *ids = row->files ? json_object_get(args, "files") : NULL;
	if (json_is_null(ids))
		ids = NULL;
	if (ids && !c->files) {
		json_decref(args);
		return CHAT_ENOFILE;
	}
	if (!ids && row->files) {
		/* a plain message: nothing for the store to copy */
		json_decref(args);
		args = NULL;
	}
	char *text = in->text ? xstrndup(in->text, in->len) : NULL;
	struct chat_mentions *m = NULL;
	const char *names[CHAT_MENTIONS_MAX + 1];
	size_t nnames = 0;
	char *html = NULL;
	if (row->rendered && text) {
		m = xmalloc(sizeof(*m));
		chat_mentions_init(m, c, room_id);
		html = chat_render(c, in->text, in->len, m);
	}
	if (m && row->searchable) {
		for (size_t i = 0; i < m->n; i++)
			names[nnames++] = m->names[i];
		/* the writer adds every member for @room, as of its commit */
		if (m->room)
			names[nnames++] = "room";
	}
	struct store_write w = {
	    .type = type,
	    .user_id = u->id,
	    .username = u->username,
	    .room_id = room_id,
	    .room_name = room_id ? name : in->room,
	    .text = text,
	    .html = html,
	    .client_id = in->client_id,
	    .topic = in->topic,
	    .target_id = in->target_id,
	    .args = args,
	    .mention_ids = m && row->searchable ? m->ids : NULL,
	    .nmention_ids = m && row->searchable ? m->n : 0,
	    .mention_names = names,
	    .nmention_names = nnames,
	    .mention_room = m && row->searchable && m->room,
	};
	struct pending *p = xcalloc(1, sizeof(*p));
	p->chat = c;
	p->done = done;
	p->arg = arg;
	if (row->effect == EVTYPE_EFFECT_DELETE &&
	    chat_can_moderate(c, u->id, room_id)) {
		/* A moderator deletes any message of the room; the audit log
		 * names the message (the writer decides whose it was). */
		char detail[48];
		snprintf(detail, sizeof(detail), "message %lld",
			 (long long)in->target_id);
		w.moderated = true;
		p->audit = xcalloc(1, sizeof(*p->audit));
		p->audit->actor = xstrdup(u->username);
		p->audit->action = xstrdup(row->name);
		p->audit->target = xstrdup("");
		p->audit->room = xstrdup(name);
		p->audit->reason = xstrdup("");
		p->audit->detail = xstrdup(detail);
	}
	p->submit_us = mono_us();
	store_write_submit(c->store, &w, store_done, p);
	json_decref(args);
	free(m);
	free(html);
	free(text);
	return CHAT_OK;
}

int chat_send(struct chat *c, const struct chat_user *u, const char *room,
	      const char *text, size_t len, const char *client_id,
	      chat_done_fn done, void *arg)
{
	struct evtype_input in = {
	    .room = room, .text = text, .len = len, .client_id = client_id};
	return chat_event(c, u, EVENT_MESSAGE, &in, done, arg);
}

int chat_room_create(struct chat *c, const struct chat_user *u,
		     const char *room, const char *topic, chat_done_fn done,
		     void *arg)
{
	struct evtype_input in = {.room = room, .topic = topic};
	return chat_event(c, u, EVENT_ROOM, &in, done, arg);
}

int chat_join(struct chat *c, const struct chat_user *u, const char *room,
	      chat_done_fn done, void *arg)
{
	struct evtype_input in = {.room = room};
	return chat_event(c, u, EVENT_JOIN, &in, done, arg);
}

int chat_leave(struct chat *c, const struct chat_user *u, const char *room,
	       chat_done_fn done, void *arg)
{
	struct evtype_input in = {.room = room};
	return chat_event(c, u, EVENT_LEAVE, &in, done, arg);
}

int chat_typing(struct chat *c, const struct chat_user *u, const char *room)
{
	struct evtype_input in = {.room = room};
	return chat_event(c, u, EVENT_TYPING, &in, NULL, NULL);
}

/* --- reads ---------------------------------------------------------------- */

int chat_rooms_list(struct chat *c, const struct chat_user *u,
		    struct store_room **out, size_t *n)
{
	return store_rooms_list(c->store, u->id, out, n) < 0 ? CHAT_EINTERNAL
							     : CHAT_OK;
}

int chat_room_member(struct chat *c, const struct chat_user *u,
		     const char *room, int64_t *id, char name[33])
{
	/* The bus's membership is the state after the newest published
	 * event: what the store holds once its commits are published. */
	return room_for(c, u, room, id, name, NULL);
}

int chat_invite(struct chat *c, const struct chat_user *u, const char *room,
		const char *user, char name[33], char canon[33])
{
	int64_t room_id;
	enum chat_room_kind kind;
	int rc = room_for(c, u, room, &room_id, name, &kind);
	if (rc != CHAT_OK)
		return rc;
	if (kind == CHAT_ROOM_DM)
		return CHAT_EFIXED;
	int64_t to_id;
	if (!user || user_find(c, user, strlen(user), &to_id, canon))
		return CHAT_ENOUSER;
	if (bus_is_member(c->bus, room_id, to_id))
		return CHAT_EEXISTS;
	rc = store_invite_add(c->store, room_id, to_id, u->id);
	if (rc != STORE_OK)
		return rc == STORE_NOTFOUND ? CHAT_ENOROOM : CHAT_EINTERNAL;

	/* Tell the invited user's live connections: personal, ephemeral. */
	json_t *extra =
	    json_pack("{s:s, s:s}", "to", canon, "kind",
		      kind == CHAT_ROOM_PRIVATE ? "private" : "public");
	size_t len;
	char *json = event_envelope(0, EVENT_INVITE, name, u->username,
				    now_ms(), extra, &len);
	json_decref(extra);
	if (json) {
		struct event *ev =
		    event_new(0, EVENT_INVITE, BUS_PERSONAL, to_id, json, len);
		chat_cluster_event(c, EVENT_INVITE, BUS_PERSONAL, to_id, json,
				   len);
		free(json);
		bus_publish(c->bus, ev);
		event_unref(ev);
	}
	return CHAT_OK;
}

int chat_read(struct chat *c, const struct chat_user *u, const char *room,
	      int64_t id, char name[33], int64_t *now)
{
	int64_t room_id;
	int rc = room_for(c, u, room, &room_id, name, NULL);
	if (rc != CHAT_OK)
		return rc;
	if (id < 1 || id > bus_last_id(c->bus))
		return CHAT_EINVAL;
	rc = store_read_marker_set(c->store, u->id, room_id, id, now);
	if (rc != STORE_OK)
		return rc == STORE_NOTFOUND ? CHAT_ENOROOM : CHAT_EINTERNAL;
	/* *now > id: older than the marker, nothing moved. (A repeat of
	 * the marker itself is told again: harmless.) */
	if (*now != id)
		return CHAT_OK;
	json_t *extra = json_pack("{s:I}", "read", (json_int_t)id);
	size_t len;
	char *json = event_envelope(0, EVENT_READ, name, u->username, now_ms(),
				    extra, &len);
	json_decref(extra);
	if (json) {
		struct event *ev =
		    event_new(0, EVENT_READ, BUS_PERSONAL, u->id, json, len);
		chat_cluster_event(c, EVENT_READ, BUS_PERSONAL, u->id, json,
				   len);
		free(json);
		bus_publish(c->bus, ev);
		event_unref(ev);
	}
	return CHAT_OK;
}

int chat_invites_list(struct chat *c, const struct chat_user *u,
		      struct store_invite **out, size_t *n)
{
	return store_invites_list(c->store, u->id, out, n) < 0 ? CHAT_EINTERNAL
							       : CHAT_OK;
}

int chat_room_members(struct chat *c, const struct chat_user *u,
		      const char *room, char name[33],
		      struct store_member **out, size_t *n)
{
	int64_t id;
	int rc = chat_room_member(c, u, room, &id, name);
	if (rc != CHAT_OK)
		return rc;
	return store_room_members(c->store, id, out, n) < 0 ? CHAT_EINTERNAL
							    : CHAT_OK;
}

int chat_search(struct chat *c, const struct chat_user *u, const char *q,
		int64_t before, unsigned limit, struct event ***out, size_t *n,
		bool *more)
{
	return store_search(c->store, u->id, q, before, limit, out, n, more) < 0
		   ? CHAT_EINTERNAL
		   : CHAT_OK;
}

/* --- users and mentions ----------------------------------------------------
 */

void chat_user_added(struct chat *c, int64_t id, const char *username)
{
	userdir_add(c->users, id, username);
}

/* userdir_find, and on a miss the store once: with several nodes on one
 * database, an account registered on another node is in the store before
 * this node's directory knows it. */
static int user_find(struct chat *c, const char *name, size_t len, int64_t *id,
		     char canon[33])
{
	if (userdir_find(c->users, name, len, id, canon) == 0)
		return 0;
	char key[33];
	struct store_user u;
	if (len == 0 || len >= sizeof(key))
		return -1;
	memcpy(key, name, len);
	key[len] = '\0';
	if (!name_valid(key) ||
	    store_user_by_name(c->store, key, &u) != STORE_OK)
		return -1;
	userdir_add(c->users, u.id, u.username);
	store_user_fini(&u);
	return userdir_find(c->users, name, len, id, canon);
}

int chat_user_find(struct chat *c, const char *name, size_t len, int64_t *id,
		   char canon[33])
{
	return user_find(c, name, len, id, canon);
}

void chat_mentions_init(struct chat_mentions *m, struct chat *c,
			int64_t room_id)
{
	memset(m, 0, sizeof(*m));
	m->chat = c;
	m->room_id = room_id;
}

const char *chat_mention(void *arg, const char *name, size_t len)
{
	struct chat_mentions *m = arg;
	int64_t id;
	char canon[33];

	if (len == 4 && strncasecmp(name, "room", 4) == 0) {
		m->room = true;
		return "room";
	}
	if (userdir_find(m->chat->users, name, len, &id, canon) < 0 ||
	    !bus_is_member(m->chat->bus, m->room_id, id))
		return NULL;
	for (size_t i = 0; i < m->n; i++)
		if (m->ids[i] == id)
			return m->names[i];
	if (m->n == CHAT_MENTIONS_MAX)
		return NULL;
	m->ids[m->n] = id;
	memcpy(m->names[m->n], canon, sizeof(canon));
	return m->names[m->n++];
}
