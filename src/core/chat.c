/* chat: the commands every transport shares. It checks what it can without
 * the database (lengths, UTF-8, names), resolves the room, and queues the
 * command on the store's writer; the writer re-checks what only it can
 * decide (membership, uniqueness) inside its transaction. The store's
 * commit hook publishes each stored event on the bus before any ack runs,
 * so an acknowledged event is always both durable and delivered.
 * chat does not know any transport or any wire format but the envelope. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/chat.h"
#include "util/util.h"

/* Room names resolved once: every send names its room, and asking SQLite
 * each time cost a read transaction on the sender's thread per message.
 * Rooms are never renamed or deleted, so a name that resolved once keeps
 * its id and canonical spelling; unknown names are not cached. Keys are
 * the names as asked (the store compares ignoring case). Bounded: when
 * full, lookups past the cache go to the store as before. */
#define ROOM_CACHE_CAP 8192 /* a power of two */

struct room_entry {
	char *key; /* NULL: empty */
	int64_t id;
	char name[33];
};

struct chat {
	struct store *store;
	struct bus *bus;
	pthread_mutex_t room_mu;
	struct room_entry *rooms; /* ROOM_CACHE_CAP slots */
	size_t nrooms;
};

/* One queued command: the caller's callback, carried through the store. */
struct pending {
	chat_done_fn done;
	void *arg;
};

static void commit_hook(void *arg, struct event *ev)
{
	struct chat *c = arg;
	bus_publish(c->bus, ev);
}

struct chat *chat_new(struct store *st, struct bus *bus)
{
	struct chat *c = xcalloc(1, sizeof(*c));
	c->store = st;
	c->bus = bus;
	pthread_mutex_init(&c->room_mu, NULL);
	c->rooms = xcalloc(ROOM_CACHE_CAP, sizeof(*c->rooms));
	store_set_commit_hook(st, commit_hook, c);
	return c;
}

void chat_free(struct chat *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ROOM_CACHE_CAP; i++)
		free(c->rooms[i].key);
	free(c->rooms);
	pthread_mutex_destroy(&c->room_mu);
	free(c);
}

static size_t room_slot(const struct chat *c, const char *key)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	size_t i = (size_t)h & (ROOM_CACHE_CAP - 1);
	while (c->rooms[i].key && strcmp(c->rooms[i].key, key) != 0)
		i = (i + 1) & (ROOM_CACHE_CAP - 1);
	return i;
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
	default:
		return CHAT_EINTERNAL;
	}
}

static void store_done(void *arg, int status, struct event *ev)
{
	struct pending *p = arg;
	struct chat_result res = {
	    .err = err_from_store(status),
	    .ev = status >= 0 ? ev : NULL,
	    .duplicate = status == STORE_DUPLICATE,
	};
	p->done(p->arg, &res);
	free(p);
}

static void submit(struct chat *c, const struct store_write *w,
		   chat_done_fn done, void *arg)
{
	struct pending *p = xmalloc(sizeof(*p));
	p->done = done;
	p->arg = arg;
	store_write_submit(c->store, w, store_done, p);
}

/* Resolve a room name: CHAT_OK with its id and canonical name. */
static int resolve_room(struct chat *c, const char *room, int64_t *id,
			char name[33])
{
	if (!room || !name_valid(room))
		return CHAT_ENOROOM;
	pthread_mutex_lock(&c->room_mu);
	struct room_entry *e = &c->rooms[room_slot(c, room)];
	bool hit = e->key != NULL;
	if (hit) {
		*id = e->id;
		memcpy(name, e->name, 33);
	}
	pthread_mutex_unlock(&c->room_mu);
	if (hit)
		return CHAT_OK;

	int rc = store_room_by_name(c->store, room, id, name);
	if (rc == STORE_NOTFOUND)
		return CHAT_ENOROOM;
	if (rc != STORE_OK)
		return CHAT_EINTERNAL;
	pthread_mutex_lock(&c->room_mu);
	/* Keep a quarter free so that probes stay short. */
	if (c->nrooms < ROOM_CACHE_CAP / 4 * 3) {
		e = &c->rooms[room_slot(c, room)];
		if (!e->key) {
			e->key = xstrdup(room);
			e->id = *id;
			memcpy(e->name, name, 33);
			c->nrooms++;
		}
	}
	pthread_mutex_unlock(&c->room_mu);
	return CHAT_OK;
}

/* Printable ASCII without spaces, 1..CHAT_CLIENT_ID_MAX bytes. */
static bool client_id_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CHAT_CLIENT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* Message text: valid UTF-8, no NUL or C0 controls other than tab, CR and
 * LF, not blank. Length is checked separately. */
static bool text_valid(const char *text, size_t len)
{
	if (!utf8_valid(text, len))
		return false;
	bool blank = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')
			return false;
		if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
			blank = false;
	}
	return !blank;
}

int chat_send(struct chat *c, const struct chat_user *u, const char *room,
	      const char *text, size_t len, const char *client_id,
	      chat_done_fn done, void *arg)
{
	if (!text || len == 0 || !text_valid(text, len))
		return CHAT_EINVAL;
	if (utf8_count(text, len) > CHAT_TEXT_MAX)
		return CHAT_ETOOLONG;
	if (client_id && !client_id_valid(client_id))
		return CHAT_EINVAL;
	int64_t room_id;
	char name[33];
	int rc = resolve_room(c, room, &room_id, name);
	if (rc != CHAT_OK)
		return rc;
	if (!bus_is_member(c->bus, room_id, u->id))
		return CHAT_ENOTMEMBER;
	char *copy = xstrndup(text, len);
	struct store_write w = {
	    .op = STORE_MESSAGE,
	    .user_id = u->id,
	    .username = u->username,
	    .room_id = room_id,
	    .room_name = name,
	    .text = copy,
	    .client_id = client_id,
	};
	submit(c, &w, done, arg);
	free(copy);
	return CHAT_OK;
}

int chat_room_create(struct chat *c, const struct chat_user *u,
		     const char *room, const char *topic, chat_done_fn done,
		     void *arg)
{
	if (!room || !name_valid(room))
		return CHAT_EINVAL;
	if (topic) {
		size_t n = strlen(topic);
		if (!utf8_valid(topic, n) ||
		    utf8_count(topic, n) > CHAT_TOPIC_MAX)
			return CHAT_EINVAL;
	}
	struct store_write w = {
	    .op = STORE_ROOM_CREATE,
	    .user_id = u->id,
	    .username = u->username,
	    .room_name = room,
	    .topic = topic,
	};
	submit(c, &w, done, arg);
	return CHAT_OK;
}

static int membership(struct chat *c, enum store_op op,
		      const struct chat_user *u, const char *room,
		      chat_done_fn done, void *arg)
{
	int64_t room_id;
	char name[33];
	int rc = resolve_room(c, room, &room_id, name);
	if (rc != CHAT_OK)
		return rc;
	struct store_write w = {
	    .op = op,
	    .user_id = u->id,
	    .username = u->username,
	    .room_id = room_id,
	    .room_name = name,
	};
	submit(c, &w, done, arg);
	return CHAT_OK;
}

int chat_join(struct chat *c, const struct chat_user *u, const char *room,
	      chat_done_fn done, void *arg)
{
	return membership(c, STORE_JOIN, u, room, done, arg);
}

int chat_leave(struct chat *c, const struct chat_user *u, const char *room,
	       chat_done_fn done, void *arg)
{
	return membership(c, STORE_LEAVE, u, room, done, arg);
}

int chat_typing(struct chat *c, const struct chat_user *u, const char *room)
{
	int64_t room_id;
	char name[33];
	int rc = resolve_room(c, room, &room_id, name);
	if (rc != CHAT_OK)
		return rc;
	if (!bus_is_member(c->bus, room_id, u->id))
		return CHAT_ENOTMEMBER;
	size_t len;
	char *json = event_envelope(0, EVENT_TYPING, name, u->username,
				    now_ms(), NULL, &len);
	struct event *ev =
	    event_new(0, EVENT_TYPING, room_id, u->id, json, len);
	free(json);
	bus_publish(c->bus, ev);
	event_unref(ev);
	return CHAT_OK;
}

static const struct {
	int err;
	unsigned status;
	const char *code;
	const char *message;
} errors[] = {
    {CHAT_OK, 200, "ok", "ok"},
    {CHAT_EINVAL, 422, "invalid",
     "text must be non-empty valid UTF-8; client_id 1-64 printable characters; "
     "names 1-32 of letters, digits, _ . -"},
    {CHAT_ETOOLONG, 422, "text_too_long",
     "text is longer than 4000 characters"},
    {CHAT_ENOROOM, 404, "no_such_room", "no room by that name"},
    {CHAT_ENOTMEMBER, 403, "not_a_member", "join the room first"},
    {CHAT_EEXISTS, 409, "exists",
     "that room exists already, or you are a member already"},
    {CHAT_EINTERNAL, 500, "internal", "internal error; try again"},
    {CHAT_ECLOSED, 503, "shutting_down", "the server is shutting down"},
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

unsigned chat_err_status(int err)
{
	return errors[err_index(err)].status;
}

const char *chat_err_message(int err)
{
	return errors[err_index(err)].message;
}
