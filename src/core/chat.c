/* chat: the commands every transport shares, all one path (chat_event)
 * driven by the event-type table: the type's validator checks what it can
 * without the database (lengths, UTF-8, names), the room is resolved from
 * the room cache, the sender rule is checked against the bus's membership,
 * and a persistent event is queued on the store's writer, which re-checks
 * what only it can decide (membership, uniqueness) inside its transaction;
 * an ephemeral one is published at once. The store's commit hook hands
 * each stored event to the bus through the link (link.h) before any ack
 * runs, so an acknowledged event is always both durable and delivered.
 * It also answers the API's reads, checking membership first.
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

#include "core/chat.h"
#include "core/link.h"
#include "util/log.h"
#include "util/util.h"

/* Every room, by name: loaded at start, then each new room added by the
 * commit hook when its room-creating event commits (before anyone is told
 * of it), so resolving a name never reads SQLite on the caller's thread
 * (an event loop, for a WebSocket). Rooms are never deleted or renamed, so
 * an entry never changes and never goes away; the table only grows, and
 * that is fine: it holds one entry per room that exists. Keys are the
 * names in lower case, as the store compares them (names are ASCII). */
struct room_entry {
	char key[33]; /* "": empty */
	int64_t id;
	char name[33]; /* canonical spelling */
};

struct chat {
	struct store *store;
	struct bus *bus;
	struct link *link; /* committed events to the bus (link.h) */
	struct metrics *metrics;
	atomic_bool full;		   /* chat_storage_full */
	atomic_int_fast64_t full_logged;   /* mono_ms of the last log line */
	atomic_uint_fast64_t full_refused; /* since that line */
	pthread_mutex_t room_mu;
	struct room_entry *rooms; /* room_cap slots, a power of two */
	size_t room_cap, nrooms;
};

/* One queued command: the caller's callback, carried through the store. */
struct pending {
	struct chat *c;
	chat_done_fn done;
	void *arg;
};

static size_t room_slot(const struct room_entry *rooms, size_t cap,
			const char *key)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	size_t i = (size_t)h & (cap - 1);
	while (rooms[i].key[0] && strcmp(rooms[i].key, key) != 0)
		i = (i + 1) & (cap - 1);
	return i;
}

/* Under room_mu. */
static void room_put(struct chat *c, int64_t id, const char *name)
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
	if (name) {
		pthread_mutex_lock(&c->room_mu);
		room_put(c, event_room(ev), name);
		pthread_mutex_unlock(&c->room_mu);
	}
	json_decref(env);
}

/* On the writer thread, for each committed event in id order. */
static void commit_hook(void *arg, struct event *ev)
{
	struct chat *c = arg;
	const struct evtype *row = evtype_get(event_type(ev));
	if (row && row->effect == EVTYPE_EFFECT_ROOM_CREATE)
		room_learn(c, ev);
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
	pthread_mutex_init(&c->room_mu, NULL);
	c->room_cap = 64;
	c->rooms = xcalloc(c->room_cap, sizeof(*c->rooms));
	for (size_t i = 0; i < n; i++)
		room_put(c, rooms[i].id, rooms[i].name);
	store_rooms_free(rooms, n);
	store_set_commit_hook(st, commit_hook, c);
	return c;
}

void chat_free(struct chat *c)
{
	if (!c)
		return;
	free(c->rooms);
	link_free(c->link);
	pthread_mutex_destroy(&c->room_mu);
	free(c);
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
	case STORE_FULL:
		return CHAT_EFULL;
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

static void store_done(void *arg, int status, struct event *ev)
{
	struct pending *p = arg;
	full_note(p->c, status);
	struct chat_result res = {
	    .err = err_from_store(status),
	    .ev = status >= 0 ? ev : NULL,
	    .duplicate = status == STORE_DUPLICATE,
	};
	p->done(p->arg, &res);
	free(p);
}

/* Resolve a room name from the cache: CHAT_OK with its id and canonical
 * name, or CHAT_ENOROOM. */
static int resolve_room(struct chat *c, const char *room, int64_t *id,
			char name[33])
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
	}
	pthread_mutex_unlock(&c->room_mu);
	return hit ? CHAT_OK : CHAT_ENOROOM;
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
		if (v != EVTYPE_VALID)
			return v == EVTYPE_TOOLONG ? CHAT_ETOOLONG
						   : CHAT_EINVAL;
	}
	if (row->effect != EVTYPE_EFFECT_ROOM_CREATE) {
		int rc = resolve_room(c, in->room, &room_id, name);
		if (rc != CHAT_OK)
			return rc;
		/* A fast answer; the writer decides for persistent types. */
		if (row->sender == EVTYPE_FROM_MEMBER &&
		    !bus_is_member(c->bus, room_id, u->id))
			return CHAT_ENOTMEMBER;
	}
	if (!row->persistent) {
		size_t len;
		char *json = event_envelope_input(0, type, name, u->username,
						  now_ms(), in, &len);
		if (!json)
			return CHAT_EINTERNAL;
		struct event *ev =
		    event_new(0, type, room_id, u->id, json, len);
		free(json);
		bus_publish(c->bus, ev);
		event_unref(ev);
		return CHAT_OK;
	}
	char *text = in->text ? xstrndup(in->text, in->len) : NULL;
	struct store_write w = {
	    .type = type,
	    .user_id = u->id,
	    .username = u->username,
	    .room_id = room_id,
	    .room_name = room_id ? name : in->room,
	    .text = text,
	    .client_id = in->client_id,
	    .topic = in->topic,
	    .args = in->args,
	};
	struct pending *p = xmalloc(sizeof(*p));
	p->c = c;
	p->done = done;
	p->arg = arg;
	store_write_submit(c->store, &w, store_done, p);
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
	int rc = resolve_room(c, room, id, name);
	if (rc != CHAT_OK)
		return rc;
	/* The bus's membership is the state after the newest published
	 * event: what the store holds once its commits are published. */
	return bus_is_member(c->bus, *id, u->id) ? CHAT_OK : CHAT_ENOTMEMBER;
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

int chat_history(struct chat *c, const struct chat_user *u, const char *room,
		 char name[33], int64_t before, int64_t after, unsigned limit,
		 struct event ***out, size_t *n, bool *more)
{
	int64_t id;
	int rc = chat_room_member(c, u, room, &id, name);
	if (rc != CHAT_OK)
		return rc;
	return store_history(c->store, id, before, after, limit, out, n, more) <
		       0
		   ? CHAT_EINTERNAL
		   : CHAT_OK;
}

int chat_search(struct chat *c, const struct chat_user *u, const char *q,
		unsigned limit, struct event ***out, size_t *n)
{
	return store_search(c->store, u->id, q, limit, out, n) < 0
		   ? CHAT_EINTERNAL
		   : CHAT_OK;
}

static const struct {
	int err;
	const char *code;
	const char *message;
} errors[] = {
    {CHAT_OK, "ok", "ok"},
    {CHAT_EINVAL, "invalid",
     "text must be non-empty valid UTF-8; client_id 1-64 printable characters; "
     "names 1-32 of letters, digits, _ . -"},
    {CHAT_ETOOLONG, "text_too_long", "text is longer than 4000 characters"},
    {CHAT_ENOROOM, "no_such_room", "no room by that name"},
    {CHAT_ENOTMEMBER, "not_a_member", "join the room first"},
    {CHAT_EEXISTS, "exists",
     "that room exists already, or you are a member already"},
    {CHAT_EINTERNAL, "internal", "internal error; try again"},
    {CHAT_ECLOSED, "shutting_down", "the server is shutting down"},
    {CHAT_EFULL, "storage_full",
     "the server's storage is full; nothing was stored, try again later"},
};

static size_t err_index(int err)
{
	size_t internal = 0;
	for (size_t i = 0; i < ARRAY_LEN(errors); i++) {
		if (errors[i].err == err)
			return i;
		if (errors[i].err == CHAT_EINTERNAL)
			internal = i;
	}
	return internal;
}

const char *chat_err_code(int err)
{
	return errors[err_index(err)].code;
}

const char *chat_err_message(int err)
{
	return errors[err_index(err)].message;
}
