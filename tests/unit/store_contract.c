/* store_contract: every case through store.h only, each on a fresh store:
 * writes and their ids (strictly increasing in commit order), client_id
 * dedupe, store effects (rooms, membership), history pages, search,
 * users, sessions, and events_after with membership as of each event (the
 * rule the bus's ring replay follows, store.h). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_contract.h"
#include "util/util.h"

/* cmocka passes only a state pointer; the factory of the running group. */
static const struct store_contract_factory *factory;

static int setup(void **state)
{
	struct store *st = factory->open(factory->arg);
	if (!st)
		return -1;
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	factory->close(factory->arg, *state);
	return 0;
}

/* --- synchronous writes --------------------------------------------------- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
	struct event *ev;
};

static void waiter_done(void *arg, int status, struct event *ev)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->ev = ev ? event_ref(ev) : NULL;
	w->done = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Submit and wait: the status, and the event's id in *id (0 if none). */
static int put(struct store *st, enum event_type type, int64_t user,
	       const char *username, int64_t room, const char *room_name,
	       const char *text, const char *client_id, int64_t *id)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	struct store_write sw = {.type = type,
				 .user_id = user,
				 .username = username,
				 .room_id = room,
				 .room_name = room_name,
				 .text = text,
				 .client_id = client_id};
	store_write_submit(st, &sw, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	if (id)
		*id = w.ev ? event_id(w.ev) : 0;
	event_unref(w.ev);
	return w.status;
}

static int64_t user(struct store *st, const char *name)
{
	int64_t id = 0;
	assert_int_equal(store_user_create(st, name, "$argon2id$x", &id),
			 STORE_OK);
	return id;
}

/* A new room created by creator: its id. */
static int64_t room(struct store *st, int64_t creator, const char *name)
{
	int64_t id = 0;
	assert_int_equal(
	    put(st, EVENT_ROOM, creator, NULL, 0, name, NULL, NULL, NULL),
	    STORE_OK);
	assert_int_equal(store_room_by_name(st, name, &id, NULL), STORE_OK);
	return id;
}

static int say(struct store *st, int64_t u, int64_t r, const char *text,
	       const char *cid, int64_t *id)
{
	return put(st, EVENT_MESSAGE, u, NULL, r, NULL, text, cid, id);
}

static void free_events(struct event **evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		event_unref(evs[i]);
	free(evs);
}

/* events_after's ids for user after `after`, compared with want. */
static void assert_after(struct store *st, int64_t u, int64_t after,
			 const int64_t *want, size_t nwant)
{
	struct event **evs = NULL;
	size_t n = 0;
	assert_int_equal(store_events_after(st, u, after, 100, &evs, &n), 0);
	if (n != nwant) {
		fprintf(stderr, "events_after(user %lld, %lld):", (long long)u,
			(long long)after);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " %lld", (long long)event_id(evs[i]));
		fprintf(stderr, "\n");
	}
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(event_id(evs[i]), want[i]);
	free_events(evs, n);
}

#define ASSERT_AFTER(st, u, after, ...)                                        \
	do {                                                                   \
		const int64_t want_[] = {__VA_ARGS__};                         \
		assert_after((st), (u), (after), want_, ARRAY_LEN(want_));     \
	} while (0)

/* --- cases ---------------------------------------------------------------- */

static void c_ids_in_commit_order(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice");
	int64_t r = room(st, a, "dev");
	int64_t prev = store_last_event_id(st), id;
	assert_true(prev > 0);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(say(st, a, r, "hi", NULL, &id), STORE_OK);
		assert_true(id > prev);
		assert_int_equal(store_last_event_id(st), id);
		prev = id;
	}
	/* a refused write takes no id */
	assert_int_equal(say(st, a, 999999, "hi", NULL, &id), STORE_NOTFOUND);
	assert_int_equal(store_last_event_id(st), prev);
}

static void c_dedupe(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), first, again, other;
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, r, "one", "c-1", &first), STORE_OK);
	assert_int_equal(say(st, a, r, "two", "c-1", &again), STORE_DUPLICATE);
	assert_int_equal(again, first);
	/* the client_id is per user */
	assert_int_equal(say(st, b, r, "one", "c-1", &other), STORE_OK);
	assert_true(other > first);
}

static void c_membership_effects(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev");
	assert_int_equal(
	    put(st, EVENT_ROOM, b, NULL, 0, "DEV", NULL, NULL, NULL),
	    STORE_EXISTS);
	assert_int_equal(store_is_member(st, r, a), 1);
	assert_int_equal(store_is_member(st, r, b), 0);
	assert_int_equal(say(st, b, r, "hi", NULL, NULL), STORE_NOTMEMBER);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_EXISTS);
	assert_int_equal(store_is_member(st, r, b), 1);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_NOTMEMBER);
	/* ephemeral types are not stored */
	assert_true(put(st, EVENT_TYPING, a, NULL, r, NULL, NULL, NULL, NULL) <
		    0);
}

static void c_rooms_and_members(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev");
	struct store_room *rooms;
	size_t n;
	assert_int_equal(store_rooms_list(st, b, &rooms, &n), 0);
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		if (rooms[i].id != r)
			continue;
		found = true;
		assert_string_equal(rooms[i].name, "dev");
		assert_int_equal(rooms[i].members, 1);
		assert_false(rooms[i].joined);
	}
	assert_true(found);
	store_rooms_free(rooms, n);

	struct store_member *m;
	assert_int_equal(store_room_members(st, r, &m, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].username, "alice");
	store_members_free(m, n);
	char name[33];
	int64_t id;
	assert_int_equal(store_room_by_name(st, "DeV", &id, name), STORE_OK);
	assert_int_equal(id, r);
	assert_string_equal(name, "dev");
	(void)b;
}

static void c_history_pages(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice");
	int64_t r = room(st, a, "dev"), ids[5];
	for (int i = 0; i < 5; i++)
		assert_int_equal(say(st, a, r, "m", NULL, &ids[i]), STORE_OK);
	struct event **evs;
	size_t n;
	bool more;
	assert_int_equal(store_history(st, r, -1, -1, 2, &evs, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_true(more);
	assert_int_equal(event_id(evs[0]), ids[3]);
	assert_int_equal(event_id(evs[1]), ids[4]);
	free_events(evs, n);
	assert_int_equal(store_history(st, r, ids[3], -1, 10, &evs, &n, &more),
			 0);
	assert_int_equal(n, 4); /* the room event and three messages */
	assert_false(more);
	assert_int_equal(event_id(evs[3]), ids[2]);
	free_events(evs, n);
	assert_int_equal(store_history(st, r, -1, ids[1], 2, &evs, &n, &more),
			 0);
	assert_int_equal(n, 2);
	assert_true(more);
	assert_int_equal(event_id(evs[0]), ids[2]);
	free_events(evs, n);
}

static void c_search(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), hit;
	assert_int_equal(say(st, a, r, "hello world", NULL, &hit), STORE_OK);
	assert_int_equal(say(st, a, r, "something else", NULL, NULL), STORE_OK);
	struct event **evs;
	size_t n;
	assert_int_equal(store_search(st, a, "hel", 10, &evs, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(event_id(evs[0]), hit);
	free_events(evs, n);
	/* only rooms the user belongs to */
	assert_int_equal(store_search(st, b, "hello", 10, &evs, &n), 0);
	assert_int_equal(n, 0);
	free_events(evs, n);
	/* any query is safe */
	assert_int_equal(store_search(st, a, "\"*) OR (", 10, &evs, &n), 0);
	free_events(evs, n);
}

/* An edit or delete of message target by u in room r: the status, the
 * event's id in *id, its envelope parsed in *env (may be NULL). */
static int change(struct store *st, enum event_type type, int64_t u, int64_t r,
		  int64_t target, const char *text, int64_t *id, json_t **env)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	struct store_write sw = {.type = type,
				 .user_id = u,
				 .room_id = r,
				 .text = text,
				 .html = text ? "<p>new</p>" : NULL,
				 .target_id = target};
	store_write_submit(st, &sw, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	if (id)
		*id = w.ev ? event_id(w.ev) : 0;
	if (env) {
		size_t len;
		const char *j = w.ev ? event_json(w.ev, &len) : NULL;
		*env = j ? json_loadb(j, len, 0, NULL) : NULL;
	}
	event_unref(w.ev);
	return w.status;
}

/* The stored envelope of event id in room r (from a history page). */
static json_t *stored(struct store *st, int64_t r, int64_t id)
{
	struct event **evs;
	size_t n;
	bool more;
	json_t *out = NULL;
	assert_int_equal(store_history(st, r, id + 1, -1, 1, &evs, &n, &more),
			 0);
	if (n == 1 && event_id(evs[0]) == id) {
		size_t len;
		const char *j = event_json(evs[0], &len);
		out = json_loadb(j, len, 0, NULL);
	}
	free_events(evs, n);
	assert_non_null(out);
	return out;
}

static size_t hits(struct store *st, int64_t u, const char *q)
{
	struct event **evs;
	size_t n;
	assert_int_equal(store_search(st, u, q, 10, &evs, &n), 0);
	free_events(evs, n);
	return n;
}

/* Edits: by the author, of a message of that room, new event ids naming
 * the message; history and search show the current text; a retried edit
 * answers the earlier event. */
static void c_edit(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), r2 = room(st, b, "ops");
	int64_t m, e1, e2, join;
	json_t *env;
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, &join), STORE_OK);
	assert_int_equal(say(st, a, r, "zebra words", "c-1", &m), STORE_OK);
	assert_int_equal(hits(st, a, "zebra"), 1);

	assert_int_equal(
	    change(st, EVENT_EDIT, a, r, m, "lion words", &e1, &env), STORE_OK);
	assert_true(e1 > m);
	assert_string_equal(json_string_value(json_object_get(env, "type")),
			    "edit");
	assert_int_equal(json_integer_value(json_object_get(env, "target_id")),
			 m);
	assert_string_equal(json_string_value(json_object_get(env, "text")),
			    "lion words");
	json_decref(env);
	env = stored(st, r, m);
	assert_string_equal(json_string_value(json_object_get(env, "text")),
			    "lion words");
	assert_string_equal(json_string_value(json_object_get(env, "html")),
			    "<p>new</p>");
	assert_true(json_is_string(json_object_get(env, "edited")));
	assert_string_equal(
	    json_string_value(json_object_get(env, "client_id")), "c-1");
	json_decref(env);
	assert_int_equal(hits(st, a, "zebra"), 0);
	assert_int_equal(hits(st, a, "lion"), 1);

	/* the same text again: nothing more, the first edit answers */
	assert_int_equal(
	    change(st, EVENT_EDIT, a, r, m, "lion words", &e2, NULL),
	    STORE_DUPLICATE);
	assert_int_equal(e2, e1);
	/* someone else's message, another room's, not a message, unknown */
	assert_int_equal(change(st, EVENT_EDIT, b, r, m, "x", NULL, NULL),
			 STORE_NOTAUTHOR);
	assert_int_equal(change(st, EVENT_EDIT, a, r2, m, "x", NULL, NULL),
			 STORE_NOTMEMBER);
	assert_int_equal(
	    put(st, EVENT_JOIN, a, NULL, r2, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(change(st, EVENT_EDIT, a, r2, m, "x", NULL, NULL),
			 STORE_NOTARGET);
	assert_int_equal(change(st, EVENT_EDIT, b, r, join, "x", NULL, NULL),
			 STORE_NOTARGET);
	assert_int_equal(change(st, EVENT_EDIT, a, r, 999999, "x", NULL, NULL),
			 STORE_NOTARGET);
	/* an edit to the text as sent, with no edit before: the message */
	int64_t m2, same;
	assert_int_equal(say(st, a, r, "as sent", NULL, &m2), STORE_OK);
	assert_int_equal(
	    change(st, EVENT_EDIT, a, r, m2, "as sent", &same, NULL),
	    STORE_DUPLICATE);
	assert_int_equal(same, m2);
}

/* Deletes: a tombstone in history, out of search, the edits' text gone
 * too, idempotent, and no edit brings the text back. */
static void c_delete(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), m, e, d1, d2;
	json_t *env;
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, r, "secret zebra", NULL, &m), STORE_OK);
	assert_int_equal(
	    change(st, EVENT_EDIT, a, r, m, "secret lion", &e, NULL), STORE_OK);
	assert_int_equal(change(st, EVENT_DELETE, b, r, m, NULL, NULL, NULL),
			 STORE_NOTAUTHOR);
	assert_int_equal(change(st, EVENT_DELETE, a, r, m, NULL, &d1, &env),
			 STORE_OK);
	assert_true(d1 > e);
	assert_string_equal(json_string_value(json_object_get(env, "type")),
			    "delete");
	assert_int_equal(json_integer_value(json_object_get(env, "target_id")),
			 m);
	json_decref(env);

	env = stored(st, r, m);
	assert_true(json_is_true(json_object_get(env, "deleted")));
	assert_null(json_object_get(env, "text"));
	assert_null(json_object_get(env, "html"));
	assert_string_equal(json_string_value(json_object_get(env, "type")),
			    "message");
	json_decref(env);
	env = stored(st, r, e);
	assert_null(json_object_get(env, "text"));
	assert_null(json_object_get(env, "html"));
	json_decref(env);
	assert_int_equal(hits(st, a, "secret"), 0);

	assert_int_equal(change(st, EVENT_DELETE, a, r, m, NULL, &d2, NULL),
			 STORE_DUPLICATE);
	assert_int_equal(d2, d1);
	assert_int_equal(change(st, EVENT_EDIT, a, r, m, "back?", NULL, NULL),
			 STORE_GONE);
	env = stored(st, r, m);
	assert_null(json_object_get(env, "text"));
	json_decref(env);
	assert_int_equal(hits(st, a, "back"), 0);
}

/* An edit or delete in the same batch as its message (queued together,
 * so the writer takes them in one transaction): the index stays right. */
static void c_change_same_batch(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice");
	int64_t r = room(st, a, "dev"), m;
	/* ids are predictable: the next one is the message's */
	assert_int_equal(say(st, a, r, "warmup", NULL, &m), STORE_OK);
	struct waiter w[3] = {
	    {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER},
	    {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER},
	    {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER}};
	struct store_write sw[3] = {{.type = EVENT_MESSAGE,
				     .user_id = a,
				     .room_id = r,
				     .text = "quick fox"},
				    {.type = EVENT_EDIT,
				     .user_id = a,
				     .room_id = r,
				     .text = "slow turtle",
				     .target_id = m + 1},
				    {.type = EVENT_MESSAGE,
				     .user_id = a,
				     .room_id = r,
				     .text = "quick cat"}};
	for (int i = 0; i < 3; i++)
		store_write_submit(st, &sw[i], waiter_done, &w[i]);
	for (int i = 0; i < 3; i++) {
		pthread_mutex_lock(&w[i].mu);
		while (!w[i].done)
			pthread_cond_wait(&w[i].cv, &w[i].mu);
		pthread_mutex_unlock(&w[i].mu);
		assert_int_equal(w[i].status, STORE_OK);
		event_unref(w[i].ev);
	}
	assert_int_equal(hits(st, a, "quick"), 1);
	assert_int_equal(hits(st, a, "fox"), 0);
	assert_int_equal(hits(st, a, "turtle"), 1);
}

static void c_users_and_sessions(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), id;
	assert_int_equal(store_user_create(st, "ALICE", "$x", &id),
			 STORE_EXISTS);
	struct store_user u;
	assert_int_equal(store_user_by_name(st, "Alice", &u), STORE_OK);
	assert_int_equal(u.id, a);
	assert_string_equal(u.username, "alice");
	store_user_fini(&u);
	assert_int_equal(store_user_by_name(st, "nobody", &u), STORE_NOTFOUND);

	uint8_t h[32];
	memset(h, 7, sizeof(h));
	int64_t now = now_ms(), uid = 0;
	char name[33];
	assert_int_equal(store_session_create(st, h, a, now + 60000), STORE_OK);
	assert_int_equal(store_session_lookup(st, h, now, &uid), STORE_OK);
	assert_int_equal(uid, a);
	assert_int_equal(store_session_user(st, h, now, &uid, name), STORE_OK);
	assert_string_equal(name, "alice");
	assert_int_equal(store_session_lookup(st, h, now + 60001, &uid),
			 STORE_NOTFOUND);
	assert_int_equal(store_session_delete(st, h), STORE_OK);
	assert_int_equal(store_session_user(st, h, now, &uid, name),
			 STORE_NOTFOUND);
}

/* The replay-membership rule (store.h): what a live subscriber would have
 * received, event by event, whichever cursor the user comes back with. */
static void c_events_after_membership(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = 0, e[12];
	r = room(st, a, "dev");
	e[0] = store_last_event_id(st); /* the room event */
	assert_int_equal(say(st, a, r, "before bob", NULL, &e[1]), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, &e[2]), STORE_OK);
	assert_int_equal(say(st, a, r, "with bob", NULL, &e[3]), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, &e[4]),
	    STORE_OK);
	assert_int_equal(say(st, a, r, "bob away", NULL, &e[5]), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, &e[6]), STORE_OK);
	assert_int_equal(say(st, a, r, "bob back", NULL, &e[7]), STORE_OK);

	/* bob: from his join on, his own leave, nothing while away */
	ASSERT_AFTER(st, b, 0, e[2], e[3], e[4], e[6], e[7]);
	ASSERT_AFTER(st, b, e[3], e[4], e[6], e[7]);
	ASSERT_AFTER(st, b, e[4], e[6], e[7]);
	ASSERT_AFTER(st, b, e[5], e[6], e[7]);
	/* alice: everything since she created the room */
	ASSERT_AFTER(st, a, 0, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]);

	/* now bob leaves for good: a cursor from before still gets it all
	 * up to his leave */
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, &e[8]),
	    STORE_OK);
	assert_int_equal(say(st, a, r, "bob gone", NULL, &e[9]), STORE_OK);
	ASSERT_AFTER(st, b, e[5], e[6], e[7], e[8]);
	struct event **evs;
	size_t n;
	assert_int_equal(store_events_after(st, b, e[8], 100, &evs, &n), 0);
	assert_int_equal(n, 0);
	free_events(evs, n);
	/* the limit counts only the user's events */
	assert_int_equal(store_events_after(st, b, 0, 2, &evs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(event_id(evs[1]), e[3]);
	free_events(evs, n);
}

#define C(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int store_contract_run(const struct store_contract_factory *f)
{
	const struct CMUnitTest cases[] = {
	    C(c_ids_in_commit_order),
	    C(c_dedupe),
	    C(c_membership_effects),
	    C(c_rooms_and_members),
	    C(c_history_pages),
	    C(c_search),
	    C(c_users_and_sessions),
	    C(c_events_after_membership),
	    C(c_edit),
	    C(c_delete),
	    C(c_change_same_batch),
	};
	factory = f;
	return _cmocka_run_group_tests(f->name, cases, ARRAY_LEN(cases), NULL,
				       NULL);
}
