/* store_contract: every case through store.h only, each on a fresh store:
 * writes and their ids (strictly increasing in commit order), client_id
 * dedupe, store effects (rooms, membership), history pages, search,
 * users, sessions, events_after with membership as of each event (the
 * rule the bus's ring replay follows, store.h), and room kinds: direct
 * conversations, private rooms and invitations. */
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

#include "store/backend.h"
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

/* store_search's ids, newest first, into ids (at most 16); how many. */
static size_t find(struct store *st, int64_t u, const char *q, int64_t before,
		   unsigned limit, int64_t *ids, bool *more)
{
	struct event **evs = NULL;
	size_t n = 0;
	bool m = false;
	assert_int_equal(store_search(st, u, q, before, limit, &evs, &n, &m),
			 0);
	assert_true(n <= 16 && n <= limit);
	for (size_t i = 0; i < n; i++) {
		ids[i] = event_id(evs[i]);
		assert_int_equal(event_type(evs[i]), EVENT_MESSAGE);
	}
	free_events(evs, n);
	if (more)
		*more = m;
	return n;
}

/* Whether q finds exactly the one message id for u. */
static void finds(struct store *st, int64_t u, const char *q, int64_t id)
{
	int64_t ids[16];
	size_t n = find(st, u, q, -1, 10, ids, NULL);
	if (n != 1 || ids[0] != id)
		fail_msg("'%s' found %zu messages, the first %lld; want %lld",
			 q, n, n ? (long long)ids[0] : 0LL, (long long)id);
}

static void finds_none(struct store *st, int64_t u, const char *q)
{
	int64_t ids[16];
	size_t n = find(st, u, q, -1, 10, ids, NULL);
	if (n)
		fail_msg("'%s' found %zu messages, want none", q, n);
}

static void c_search(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), hit;
	assert_int_equal(say(st, a, r, "hello world", NULL, &hit), STORE_OK);
	assert_int_equal(say(st, a, r, "something else", NULL, NULL), STORE_OK);
	/* a Latin word is a prefix, of a word's start only, any case */
	finds(st, a, "hel", hit);
	finds(st, a, "HELLO Wor", hit);
	finds_none(st, a, "ello");
	finds_none(st, a, "hello there");
	/* only rooms the user belongs to */
	finds_none(st, b, "hello");
	/* any query is safe */
	static const char *const hostile[] = {"\"*) OR (",  "NEAR(hello world)",
					      "text:hello", "^hello",
					      "hello AND",  "*",
					      "\"",	    "-hello",
					      "hello\"*",   "性能\"* OR",
					      "(",	    "{text}: x",
					      "，。",	    "🙂"};
	for (size_t i = 0; i < ARRAY_LEN(hostile); i++) {
		struct event **evs = NULL;
		size_t n = 0;
		bool more;
		assert_int_equal(
		    store_search(st, a, hostile[i], -1, 10, &evs, &n, &more),
		    0);
		free_events(evs, n);
	}
	finds(st, a, "hello\"*) (wor", hit);
}

/* Chinese and Japanese text has no spaces: a word of two or more
 * characters is found anywhere inside it, one character too. */
static void c_search_cjk(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice");
	int64_t r = room(st, a, "dev"), zh, ja, mixed;
	assert_int_equal(
	    say(st, a, r, "大家好，我们今天讨论一下性能优化", NULL, &zh),
	    STORE_OK);
	assert_int_equal(say(st, a, r, "東京でラーメンを食べました", NULL, &ja),
			 STORE_OK);
	assert_int_equal(
	    say(st, a, r, "今天的deploy很顺利, Release 2.0", NULL, &mixed),
	    STORE_OK);
	finds(st, a, "性能", zh);     /* two characters mid-sentence */
	finds(st, a, "优化", zh);     /* at the end */
	finds(st, a, "大家", zh);     /* at the start */
	finds(st, a, "讨论一下", zh); /* four */
	finds(st, a, "性能优化", zh);
	finds(st, a, "论一", zh);      /* across a word boundary: a substring */
	finds(st, a, "我们 优化", zh); /* every word */
	finds_none(st, a, "能性");
	finds_none(st, a, "性能 ラーメン");
	finds(st, a, "ラーメン", ja); /* katakana */
	finds(st, a, "東京", ja);     /* kanji */
	finds(st, a, "食べ", ja);     /* kanji and hiragana */
	finds(st, a, "べました", ja);
	finds_none(st, a, "ラーメソ");
	finds(st, a, "deploy", mixed); /* Latin inside Chinese */
	finds(st, a, "dep 顺利", mixed);
	finds(st, a, "今天的", mixed);
	finds(st, a, "rel", mixed);
	finds_none(st, a, "deploy 失败");
	/* one CJK character: every message that holds it */
	finds(st, a, "讨", zh);
	finds(st, a, "化", zh); /* the last of its run */
	finds(st, a, "ラ", ja);
	int64_t ids[16];
	assert_int_equal(find(st, a, "今", -1, 10, ids, NULL), 2);
	assert_int_equal(ids[0], mixed);
	assert_int_equal(ids[1], zh);
}

/* Newest first, before= pages back, has_more says when to stop. */
static void c_search_pages(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), other = room(st, b, "other"), m[5];
	for (int i = 0; i < 5; i++) {
		char text[32];
		snprintf(text, sizeof(text), "page %d 页面", i);
		assert_int_equal(say(st, a, r, text, NULL, &m[i]), STORE_OK);
	}
	assert_int_equal(say(st, b, other, "page 页面 elsewhere", NULL, NULL),
			 STORE_OK);
	int64_t ids[16];
	bool more;
	assert_int_equal(find(st, a, "页面", -1, 2, ids, &more), 2);
	assert_int_equal(ids[0], m[4]);
	assert_int_equal(ids[1], m[3]);
	assert_true(more);
	assert_int_equal(find(st, a, "page", ids[1], 2, ids, &more), 2);
	assert_int_equal(ids[0], m[2]);
	assert_int_equal(ids[1], m[1]);
	assert_true(more);
	assert_int_equal(find(st, a, "page", ids[1], 2, ids, &more), 1);
	assert_int_equal(ids[0], m[0]);
	assert_false(more);
	assert_int_equal(find(st, a, "page", -1, 5, ids, &more), 5);
	assert_false(more);
	/* membership as of now: a join shows the room's past, a leave
	 * hides it again */
	assert_int_equal(find(st, b, "页面", -1, 10, ids, NULL), 1);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(find(st, b, "页面", -1, 10, ids, NULL), 6);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(find(st, b, "页面", -1, 10, ids, NULL), 1);
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
	bool more;
	assert_int_equal(store_search(st, u, q, -1, 10, &evs, &n, &more), 0);
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

/* A reaction (op "add"/"remove", emoji) by u on message target in r: the
 * status, the event's id in *id (0 for none), its envelope in *env. */
static int react(struct store *st, int64_t u, int64_t r, int64_t target,
		 const char *op, const char *emoji, int64_t *id, json_t **env)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	json_t *args = json_pack("{s:s, s:s}", "op", op, "emoji", emoji);
	struct store_write sw = {.type = EVENT_REACTION,
				 .user_id = u,
				 .room_id = r,
				 .target_id = target,
				 .args = args};
	store_write_submit(st, &sw, waiter_done, &w);
	json_decref(args);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	if (id)
		*id = w.status == STORE_OK && w.ev ? event_id(w.ev) : 0;
	if (env) {
		size_t len;
		const char *j = w.ev ? event_json(w.ev, &len) : NULL;
		*env = j ? json_loadb(j, len, 0, NULL) : NULL;
	}
	event_unref(w.ev);
	return w.status;
}

/* The reactions on message m as store_reactions gives them to u:
 * "emoji:count:me," each. */
static void reactions_are(struct store *st, int64_t u, int64_t r, int64_t m,
			  const char *want)
{
	struct store_reaction *rs;
	size_t n;
	char got[512] = "";
	assert_int_equal(store_reactions(st, u, r, m, m, &rs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(rs[i].message_id, m);
		snprintf(got + strlen(got), sizeof(got) - strlen(got),
			 "%s:%lld:%d,", rs[i].emoji, (long long)rs[i].count,
			 rs[i].me);
	}
	free(rs);
	assert_string_equal(got, want);
}

/* Reactions: added and removed per user, counted per emoji in the event,
 * idempotent (a repeat is a duplicate: the message, no event), only by
 * members, only on a message of the room that is not deleted, at most
 * EVTYPE_REACTIONS_MAX emoji; a shortcode is its emoji; a delete drops
 * them. */
static void c_reactions(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob"), c = user(st, "cy");
	int64_t r = room(st, a, "dev"), r2 = room(st, c, "other"), m, m2, x, id;
	json_t *env;
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, r, "react to me", NULL, &m), STORE_OK);
	assert_int_equal(say(st, c, r2, "elsewhere", NULL, &x), STORE_OK);

	assert_int_equal(
	    react(st, a, r, m, "add", "\xF0\x9F\x91\x8D", &id, &env), STORE_OK);
	assert_true(id > m);
	assert_string_equal(json_string_value(json_object_get(env, "type")),
			    "reaction");
	assert_int_equal(json_integer_value(json_object_get(env, "count")), 1);
	assert_int_equal(json_integer_value(json_object_get(env, "target_id")),
			 m);
	json_decref(env);
	assert_int_equal(react(st, b, r, m, "react", ":+1:", &id, &env),
			 STORE_OK);
	assert_string_equal(json_string_value(json_object_get(env, "emoji")),
			    "\xF0\x9F\x91\x8D");
	assert_string_equal(json_string_value(json_object_get(env, "op")),
			    "add");
	assert_int_equal(json_integer_value(json_object_get(env, "count")), 2);
	json_decref(env);
	assert_int_equal(react(st, b, r, m, "add", "\xE2\x9C\x85", NULL, NULL),
			 STORE_OK);
	reactions_are(st, a, r, m, "\xF0\x9F\x91\x8D:2:1,\xE2\x9C\x85:1:0,");
	reactions_are(st, b, r, m, "\xF0\x9F\x91\x8D:2:1,\xE2\x9C\x85:1:1,");

	/* repeats change nothing */
	int64_t last = store_last_event_id(st);
	assert_int_equal(react(st, a, r, m, "add", ":+1:", &id, NULL),
			 STORE_DUPLICATE);
	assert_int_equal(
	    react(st, a, r, m, "remove", "\xF0\x9F\x94\xA5", &id, NULL),
	    STORE_DUPLICATE);
	assert_int_equal(store_last_event_id(st), last);

	assert_int_equal(react(st, a, r, m, "unreact", ":+1:", NULL, &env),
			 STORE_OK);
	assert_string_equal(json_string_value(json_object_get(env, "op")),
			    "remove");
	assert_int_equal(json_integer_value(json_object_get(env, "count")), 1);
	json_decref(env);
	reactions_are(st, a, r, m, "\xF0\x9F\x91\x8D:1:0,\xE2\x9C\x85:1:0,");

	/* who and where */
	assert_int_equal(react(st, c, r, m, "add", ":+1:", NULL, NULL),
			 STORE_NOTMEMBER);
	assert_int_equal(react(st, a, r, x, "add", ":+1:", NULL, NULL),
			 STORE_NOTARGET);
	assert_int_equal(react(st, a, r, r, "add", ":+1:", NULL, NULL),
			 STORE_NOTARGET);

	/* the cap */
	assert_int_equal(say(st, a, r, "many", NULL, &m2), STORE_OK);
	static const char *const codes[] = {
	    ":+1:",	":-1:",	   ":100:",    ":angry:",    ":blush:",
	    ":bug:",	":clap:",  ":cry:",    ":eyes:",     ":fire:",
	    ":grin:",	":joy:",   ":heart:",  ":party:",    ":pray:",
	    ":rocket:", ":shrug:", ":coffee:", ":laughing:", ":ok_hand:"};
	assert_int_equal(ARRAY_LEN(codes), EVTYPE_REACTIONS_MAX);
	for (size_t i = 0; i < ARRAY_LEN(codes); i++)
		assert_int_equal(
		    react(st, b, r, m2, "add", codes[i], NULL, NULL), STORE_OK);
	assert_int_equal(
	    react(st, a, r, m2, "add", ":see_no_evil:", NULL, NULL),
	    STORE_LIMIT);
	assert_int_equal(react(st, a, r, m2, "add", ":fire:", NULL, NULL),
			 STORE_OK);

	/* a delete drops them; a deleted message takes none */
	assert_int_equal(change(st, EVENT_DELETE, a, r, m, NULL, NULL, NULL),
			 STORE_OK);
	reactions_are(st, a, r, m, "");
	assert_int_equal(react(st, b, r, m, "add", ":+1:", NULL, NULL),
			 STORE_GONE);
}

/* Replies: a message naming another of its room (target_id) carries
 * reply_to {id, author, excerpt}; anything else is STORE_BADREF; a delete
 * of the original leaves {id, author, deleted} and the reply's text. */
static void c_replies(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), r2 = room(st, b, "other"), m, x, rep;
	json_t *env, *q;
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, r, "the *original* walrus", NULL, &m),
			 STORE_OK);
	assert_int_equal(say(st, b, r2, "elsewhere", NULL, &x), STORE_OK);

	struct store_write sw = {.type = EVENT_MESSAGE,
				 .user_id = b,
				 .room_id = r,
				 .text = "indeed",
				 .target_id = m};
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	store_write_submit(st, &sw, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	assert_int_equal(w.status, STORE_OK);
	rep = event_id(w.ev);
	event_unref(w.ev);

	env = stored(st, r, rep);
	q = json_object_get(env, "reply_to");
	assert_int_equal(json_integer_value(json_object_get(q, "id")), m);
	assert_string_equal(json_string_value(json_object_get(q, "author")),
			    "alice");
	assert_string_equal(json_string_value(json_object_get(q, "excerpt")),
			    "the original walrus");
	json_decref(env);

	for (int i = 0; i < 3; i++) {
		int64_t bad[] = {x, r, 999999};
		struct waiter w2 = {.mu = PTHREAD_MUTEX_INITIALIZER,
				    .cv = PTHREAD_COND_INITIALIZER};
		sw.target_id = bad[i];
		store_write_submit(st, &sw, waiter_done, &w2);
		pthread_mutex_lock(&w2.mu);
		while (!w2.done)
			pthread_cond_wait(&w2.cv, &w2.mu);
		pthread_mutex_unlock(&w2.mu);
		assert_int_equal(w2.status, STORE_BADREF);
		event_unref(w2.ev);
	}

	assert_int_equal(change(st, EVENT_DELETE, a, r, m, NULL, NULL, NULL),
			 STORE_OK);
	env = stored(st, r, rep);
	q = json_object_get(env, "reply_to");
	assert_int_equal(json_integer_value(json_object_get(q, "id")), m);
	assert_true(json_is_true(json_object_get(q, "deleted")));
	assert_null(json_object_get(q, "excerpt"));
	assert_string_equal(json_string_value(json_object_get(env, "text")),
			    "indeed");
	json_decref(env);
	assert_int_equal(hits(st, a, "walrus"), 0);
	assert_int_equal(hits(st, a, "indeed"), 1);
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

/* --- room kinds: direct conversations, private rooms, invitations ------- */

/* Submit with a command object: the status and the event in *out (caller
 * unrefs; NULL if none). */
static int put_args(struct store *st, enum event_type type, int64_t u,
		    const char *room_name, json_t *args, struct event **out)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	struct store_write sw = {
	    .type = type, .user_id = u, .room_name = room_name, .args = args};
	store_write_submit(st, &sw, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	json_decref(args);
	*out = w.ev;
	return w.status;
}

static int dm_open(struct store *st, int64_t u, const char *users_json,
		   struct event **out)
{
	return put_args(
	    st, EVENT_DM, u, NULL,
	    json_pack("{s:o}", "users", json_loads(users_json, 0, NULL)), out);
}

/* The room as store_rooms_list shows it to u: found or not, filled. */
static bool listed(struct store *st, int64_t u, int64_t room_id,
		   struct store_room *out)
{
	struct store_room *rooms;
	size_t n;
	bool found = false;
	assert_int_equal(store_rooms_list(st, u, &rooms, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (rooms[i].id != room_id)
			continue;
		found = true;
		*out = rooms[i];
		out->topic = NULL;
		out->people = rooms[i].people ? xstrdup(rooms[i].people) : NULL;
	}
	store_rooms_free(rooms, n);
	return found;
}

static void c_dm_open(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "Bob"),
		c = user(st, "carol"), e = user(st, "eve");
	struct event *ev, *again;

	assert_int_equal(dm_open(st, a, "[\"bob\",\"carol\"]", &ev), STORE_OK);
	int64_t r = event_room(ev);
	size_t len;
	json_t *env = json_loads(event_json(ev, &len), 0, NULL);
	char name[33];
	snprintf(name, sizeof(name), "dm-%lld", (long long)r);
	assert_string_equal(json_string_value(json_object_get(env, "room")),
			    name);
	assert_string_equal(json_string_value(json_object_get(env, "type")),
			    "dm");
	/* canonical names, sorted */
	char *people = json_dumps(json_object_get(env, "people"), 0);
	assert_string_equal(people, "[\"alice\", \"Bob\", \"carol\"]");
	free(people);
	json_decref(env);

	/* the same set, in any order and spelling, from any of them */
	assert_int_equal(
	    dm_open(st, c, "[\"ALICE\",\"bob\",\"carol\"]", &again),
	    STORE_DUPLICATE);
	assert_int_equal(event_id(again), event_id(ev));
	event_unref(again);
	/* another set is another room */
	assert_int_equal(dm_open(st, a, "[\"bob\"]", &again), STORE_OK);
	assert_int_not_equal(event_room(again), r);
	event_unref(again);
	assert_int_equal(dm_open(st, a, "[\"nobody\"]", &again), STORE_NOUSER);
	assert_null(again);

	/* everyone is a member at once; each membership begins at its own
	 * event: the dm event for the opener, a join for each other */
	assert_int_equal(store_is_member(st, r, a), 1);
	assert_int_equal(store_is_member(st, r, b), 1);
	assert_int_equal(store_is_member(st, r, c), 1);
	assert_int_equal(store_is_member(st, r, e), 0);
	struct event **evs;
	size_t n;
	assert_int_equal(
	    store_events_after(st, b, event_id(ev) - 1, 10, &evs, &n), 0);
	assert_true(n >= 1);
	assert_int_equal(event_type(evs[0]), EVENT_JOIN);
	assert_int_equal(event_user(evs[0]), b);
	assert_int_equal(event_room(evs[0]), r);
	free_events(evs, n);
	assert_int_equal(store_events_after(st, e, 0, 10, &evs, &n), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(event_room(evs[i]), r);
	free_events(evs, n);

	/* listed to its people with the others' names, to nobody else */
	struct store_room sr;
	assert_true(listed(st, b, r, &sr));
	assert_string_equal(sr.kind, "dm");
	assert_string_equal(sr.people, "alice,carol");
	assert_true(sr.joined);
	free(sr.people);
	assert_false(listed(st, e, r, &sr));
	assert_true(listed(st, 0, r, &sr)); /* the whole list, for caches */
	free(sr.people);

	/* its people are fixed */
	assert_int_equal(
	    put(st, EVENT_JOIN, e, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_NOTFOUND);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_FIXED);
	assert_int_equal(store_is_member(st, r, b), 1);
	event_unref(ev);
}

static void c_private_rooms_and_invites(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob"), e = user(st, "eve");
	struct event *ev;

	assert_int_equal(put_args(st, EVENT_ROOM, a, "attic",
				  json_pack("{s:b}", "private", 1), &ev),
			 STORE_OK);
	int64_t r = event_room(ev);
	event_unref(ev);
	struct store_room sr;
	assert_true(listed(st, a, r, &sr));
	assert_string_equal(sr.kind, "private");
	assert_null(sr.people);
	assert_false(listed(st, b, r, &sr));

	/* no invitation: refused as if there were no such room */
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_NOTFOUND);
	assert_int_equal(store_invite_add(st, r, b, a), STORE_OK);
	assert_int_equal(store_invite_add(st, r, b, a), STORE_OK); /* again */
	assert_int_equal(store_invite_add(st, r + 100, b, a), STORE_NOTFOUND);
	struct store_invite *inv;
	size_t n;
	assert_int_equal(store_invites_list(st, b, &inv, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(inv[0].room, "attic");
	assert_string_equal(inv[0].kind, "private");
	assert_string_equal(inv[0].by, "alice");
	free(inv);
	assert_int_equal(store_invites_list(st, e, &inv, &n), 0);
	assert_int_equal(n, 0);
	free(inv);
	assert_int_equal(
	    put(st, EVENT_JOIN, e, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_NOTFOUND);

	/* the join takes the invitation */
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_true(listed(st, b, r, &sr));
	assert_int_equal(store_invites_list(st, b, &inv, &n), 0);
	assert_int_equal(n, 0);
	free(inv);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_NOTFOUND);

	/* a public room is listed to all, as before */
	int64_t pub = room(st, a, "porch");
	assert_true(listed(st, e, pub, &sr));
	assert_string_equal(sr.kind, "public");
}

static void user_seen(void *arg, int64_t id, const char *name)
{
	char *out = arg;
	snprintf(out + strlen(out), 64, "%lld:%s;", (long long)id, name);
}

static void c_users_and_mentions(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "Bob");
	char seen[256] = "", want[256];
	assert_int_equal(store_users_each(st, user_seen, seen), 0);
	snprintf(want, sizeof(want), "%lld:alice;%lld:Bob;", (long long)a,
		 (long long)b);
	assert_string_equal(seen, want);

	/* a message's mentions: in its envelope, stored with it (a
	 * repeated id is stored once) */
	int64_t r = room(st, a, "den");
	const int64_t ids[] = {b, b};
	const char *const names[] = {"Bob"};
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	struct store_write sw = {.type = EVENT_MESSAGE,
				 .user_id = a,
				 .room_id = r,
				 .text = "hi @bob",
				 .mention_ids = ids,
				 .nmention_ids = 2,
				 .mention_names = names,
				 .nmention_names = 1};
	store_write_submit(st, &sw, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	assert_int_equal(w.status, STORE_OK);
	size_t len;
	assert_non_null(
	    strstr(event_json(w.ev, &len), "\"mentions\":[\"Bob\"]"));
	struct event **evs;
	size_t n;
	bool more;
	assert_int_equal(store_history(st, r, -1, -1, 10, &evs, &n, &more), 0);
	assert_true(n >= 1);
	assert_int_equal(event_id(evs[n - 1]), event_id(w.ev));
	assert_non_null(
	    strstr(event_json(evs[n - 1], &len), "\"mentions\":[\"Bob\"]"));
	free_events(evs, n);
	event_unref(w.ev);

	/* @room: every member but the sender, as of the commit */
	int64_t c = user(st, "carol");
	assert_int_equal(
	    put(st, EVENT_JOIN, c, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	struct waiter w2 = {.mu = PTHREAD_MUTEX_INITIALIZER,
			    .cv = PTHREAD_COND_INITIALIZER};
	const char *const room_names[] = {"room"};
	struct store_write sw2 = {.type = EVENT_MESSAGE,
				  .user_id = a,
				  .room_id = r,
				  .text = "@room hi",
				  .mention_names = room_names,
				  .nmention_names = 1,
				  .mention_room = true};
	store_write_submit(st, &sw2, waiter_done, &w2);
	pthread_mutex_lock(&w2.mu);
	while (!w2.done)
		pthread_cond_wait(&w2.cv, &w2.mu);
	pthread_mutex_unlock(&w2.mu);
	assert_int_equal(w2.status, STORE_OK);
	event_unref(w2.ev);
	struct store_room sr;
	assert_true(listed(st, c, r, &sr));
	assert_int_equal(sr.unread, 1);
	assert_int_equal(sr.mentions, 1);
	assert_true(listed(st, a, r, &sr));
	assert_int_equal(sr.mentions, 0); /* the sender is not mentioned */
}

static void c_read_markers(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "den"), m1, m2, m3, now = 0;
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, r, "one", NULL, &m1), STORE_OK);
	assert_int_equal(say(st, b, r, "mine", NULL, &m2), STORE_OK);
	assert_int_equal(say(st, a, r, "two", NULL, &m3), STORE_OK);

	/* no marker yet: from the join on, others' messages only */
	struct store_room sr;
	assert_true(listed(st, b, r, &sr));
	assert_int_equal(sr.unread, 2);
	assert_int_equal(sr.mentions, 0);
	assert_int_equal(store_read_marker_set(st, b, r, m1, &now), STORE_OK);
	assert_int_equal(now, m1);
	assert_true(listed(st, b, r, &sr));
	assert_int_equal(sr.read, m1);
	assert_int_equal(sr.unread, 1);
	/* forward only */
	assert_int_equal(store_read_marker_set(st, b, r, m1 - 1, &now),
			 STORE_OK);
	assert_int_equal(now, m1);
	assert_int_equal(store_read_marker_set(st, b, r, m3, &now), STORE_OK);
	assert_int_equal(now, m3);
	assert_true(listed(st, b, r, &sr));
	assert_int_equal(sr.unread, 0);
	assert_int_equal(store_read_marker_set(st, b, r + 100, m3, &now),
			 STORE_NOTFOUND);
	(void)m2;
}

/* A moderation event (kick, ban) by mod on subject: status, id in *id. */
static int act(struct store *st, enum event_type type, int64_t mod, int64_t r,
	       int64_t subject, const char *subject_name, int64_t *id)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	json_t *args =
	    json_pack("{s:s, s:s}", "user", subject_name, "reason", "because");
	struct store_write sw = {.type = type,
				 .user_id = mod,
				 .room_id = r,
				 .args = args,
				 .subject_id = subject};
	store_write_submit(st, &sw, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	json_decref(args);
	if (id)
		*id = w.ev ? event_id(w.ev) : 0;
	if (w.ev) {
		assert_int_equal(event_subject(w.ev), subject);
		assert_int_equal(event_user(w.ev), mod);
	}
	event_unref(w.ev);
	return w.status;
}

/* A kick removes its subject, not its sender; replay follows the subject's
 * membership (the kick, then nothing of the room); a ban also refuses the
 * subject's joins until lifted; bans of non-members and their list. */
static void c_kick_ban(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t c = user(st, "carol");
	int64_t r = room(st, a, "dev"), e[4];
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, r, "before", NULL, &e[0]), STORE_OK);
	assert_int_equal(act(st, EVENT_KICK, a, r, b, "bob", &e[1]), STORE_OK);
	assert_int_equal(say(st, a, r, "after", NULL, &e[2]), STORE_OK);
	assert_int_equal(store_is_member(st, r, b), 0);
	assert_int_equal(store_is_member(st, r, a), 1);
	assert_int_equal(act(st, EVENT_KICK, a, r, b, "bob", NULL),
			 STORE_NOTMEMBER);

	struct event **evs;
	size_t n;
	assert_int_equal(store_events_after(st, b, e[0] - 1, 100, &evs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(event_id(evs[0]), e[0]);
	assert_int_equal(event_id(evs[1]), e[1]);
	assert_int_equal(event_subject(evs[1]), b);
	free_events(evs, n);
	assert_int_equal(store_events_after(st, a, e[0], 100, &evs, &n), 0);
	assert_int_equal(n, 2); /* the sender stays */
	free_events(evs, n);

	/* a kicked user may come back; a banned one may not */
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(act(st, EVENT_BAN, a, r, b, "bob", &e[3]), STORE_OK);
	assert_int_equal(store_is_member(st, r, b), 0);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_BANNED);
	assert_int_equal(store_ban_set(st, r, c, a, "pre", true), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_JOIN, c, NULL, r, NULL, NULL, NULL, NULL),
	    STORE_BANNED);
	struct store_ban *bans;
	assert_int_equal(store_bans_list(st, r, &bans, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(bans[0].username, "bob");
	assert_string_equal(bans[0].by, "alice");
	assert_string_equal(bans[0].reason, "because");
	assert_string_equal(bans[1].username, "carol");
	assert_string_equal(bans[1].reason, "pre");
	store_bans_free(bans, n);
	assert_int_equal(store_ban_set(st, r, b, 0, NULL, false), STORE_OK);
	assert_int_equal(store_ban_set(st, r, b, 0, NULL, false),
			 STORE_NOTFOUND);
	assert_int_equal(store_ban_set(st, 999999, b, a, NULL, true),
			 STORE_NOTFOUND);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
}

static void count_mute(void *arg, int64_t room, int64_t user, int64_t until)
{
	(void)room, (void)user, (void)until;
	(*(int *)arg)++;
}

/* Mutes run until their time; disabling ends sessions and says so; the
 * audit log pages newest first. */
static void c_mutes_disable_audit(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev"), now = 1000000;
	int n = 0;
	assert_int_equal(store_mute_set(st, r, b, now + 5000, a, "calm"),
			 STORE_OK);
	assert_int_equal(store_mutes_each(st, now, count_mute, &n), 0);
	assert_int_equal(n, 1);
	n = 0;
	assert_int_equal(store_mutes_each(st, now + 5000, count_mute, &n), 0);
	assert_int_equal(n, 0); /* over at until_ms */
	assert_int_equal(store_mute_set(st, 999999, b, now, a, NULL),
			 STORE_NOTFOUND);

	uint8_t h[32] = {7};
	assert_int_equal(store_session_create(st, h, b, INT64_MAX / 2),
			 STORE_OK);
	int64_t uid;
	char name[33];
	assert_int_equal(store_session_user(st, h, 1, &uid, name), STORE_OK);
	assert_int_equal(store_user_disable(st, b, true, "spam"), STORE_OK);
	/* a disabled account's session says so (a 403 with the reason,
	 * not a bare 401), at once, cache or not */
	assert_int_equal(store_session_user(st, h, 1, &uid, name),
			 STORE_DISABLED);
	assert_int_equal(uid, b);
	assert_int_equal(store_session_user(st, h, 1, &uid, name),
			 STORE_DISABLED);
	struct store_user u;
	assert_int_equal(store_user_by_id(st, b, &u), STORE_OK);
	assert_true(u.disabled);
	assert_string_equal(u.disabled_reason, "spam");
	store_user_fini(&u);
	assert_int_equal(store_user_disable(st, b, false, NULL), STORE_OK);
	assert_int_equal(store_user_by_id(st, b, &u), STORE_OK);
	assert_false(u.disabled);
	store_user_fini(&u);
	/* enabling ends the old sessions: a fresh login is needed */
	assert_int_equal(store_session_user(st, h, 1, &uid, name),
			 STORE_NOTFOUND);
	assert_int_equal(store_user_disable(st, 999999, true, NULL),
			 STORE_NOTFOUND);

	for (int i = 0; i < 5; i++) {
		char detail[8];
		snprintf(detail, sizeof(detail), "%d", i);
		struct store_audit e = {.actor = "alice",
					.action = "kick",
					.target = "bob",
					.room = "dev",
					.detail = detail};
		assert_int_equal(store_audit_add(st, &e), STORE_OK);
	}
	struct store_audit *v;
	size_t len;
	bool more;
	assert_int_equal(store_audit_list(st, 0, 3, &v, &len, &more), 0);
	assert_int_equal(len, 3);
	assert_true(more);
	assert_string_equal(v[0].detail, "4");
	assert_string_equal(v[2].detail, "2");
	assert_string_equal(v[0].reason, "");
	assert_true(v[0].ts_ms > 0);
	int64_t next = v[2].id;
	store_audit_free(v, len);
	assert_int_equal(store_audit_list(st, next, 3, &v, &len, &more), 0);
	assert_int_equal(len, 2);
	assert_false(more);
	assert_string_equal(v[1].detail, "0");
	store_audit_free(v, len);
}

/* The first account is a server admin, later ones are not; admin is
 * granted and revoked. */
static void c_admin(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	struct store_user u;
	assert_int_equal(store_user_by_id(st, a, &u), STORE_OK);
	assert_true(u.admin);
	store_user_fini(&u);
	assert_int_equal(store_user_by_name(st, "BOB", &u), STORE_OK);
	assert_false(u.admin);
	store_user_fini(&u);
	assert_int_equal(store_user_admin_set(st, b, true), STORE_OK);
	assert_int_equal(store_user_by_id(st, b, &u), STORE_OK);
	assert_true(u.admin);
	store_user_fini(&u);
	assert_int_equal(store_user_admin_set(st, a, false), STORE_OK);
	assert_int_equal(store_user_by_id(st, a, &u), STORE_OK);
	assert_false(u.admin);
	store_user_fini(&u);
	assert_int_equal(store_user_admin_set(st, 999999, true),
			 STORE_NOTFOUND);
}

/* store_roles_each: owners (not the lobby's: it has none), moderators,
 * and admins as room 0; admins only without rooms. */
struct role_rows {
	int64_t room[16], user[16];
	int role[16];
	size_t n;
};

static void role_row(void *arg, int64_t room_id, int64_t user_id, int role)
{
	struct role_rows *rr = arg;
	assert_true(rr->n < 16);
	rr->room[rr->n] = room_id;
	rr->user[rr->n] = user_id;
	rr->role[rr->n++] = role;
}

static bool has_row(const struct role_rows *rr, int64_t room, int64_t user,
		    int role)
{
	for (size_t i = 0; i < rr->n; i++)
		if (rr->room[i] == room && rr->user[i] == user &&
		    rr->role[i] == role)
			return true;
	return false;
}

static void c_roles_each(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "dev");
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(store_moderator_set(st, r, b, a, true), STORE_OK);
	struct role_rows rr = {0};
	assert_int_equal(store_roles_each(st, true, role_row, &rr), 0);
	assert_int_equal(rr.n, 3);
	assert_true(has_row(&rr, r, a, STORE_ROLE_OWNER));
	assert_true(has_row(&rr, r, b, STORE_ROLE_MODERATOR));
	assert_true(has_row(&rr, 0, a, STORE_ROLE_OWNER)); /* the admin */
	assert_int_equal(store_user_admin_set(st, b, true), STORE_OK);
	memset(&rr, 0, sizeof(rr));
	assert_int_equal(store_roles_each(st, false, role_row, &rr), 0);
	assert_int_equal(rr.n, 2);
	assert_true(has_row(&rr, 0, a, STORE_ROLE_OWNER));
	assert_true(has_row(&rr, 0, b, STORE_ROLE_OWNER));
}

/* Owner, moderators and members: roles follow membership. */
static void c_roles(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t c = user(st, "carol");
	int64_t r = room(st, a, "dev"), lobby;
	assert_int_equal(store_room_by_name(st, "lobby", &lobby, NULL),
			 STORE_OK);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(store_room_role(st, r, a), STORE_ROLE_OWNER);
	assert_int_equal(store_room_role(st, r, b), STORE_ROLE_MEMBER);
	assert_int_equal(store_room_role(st, r, c), STORE_ROLE_NONE);
	assert_int_equal(store_room_role(st, 999999, a), STORE_NOTFOUND);
	/* the lobby has no owner */
	assert_int_equal(
	    put(st, EVENT_JOIN, a, NULL, lobby, NULL, NULL, NULL, NULL),
	    STORE_OK);
	assert_int_equal(store_room_role(st, lobby, a), STORE_ROLE_MEMBER);

	/* only a member can be a moderator; naming twice is fine */
	assert_int_equal(store_moderator_set(st, r, c, a, true),
			 STORE_NOTMEMBER);
	assert_int_equal(store_moderator_set(st, r, b, a, true), STORE_OK);
	assert_int_equal(store_moderator_set(st, r, b, a, true), STORE_OK);
	assert_int_equal(store_room_role(st, r, b), STORE_ROLE_MODERATOR);
	struct store_member *m;
	size_t n;
	assert_int_equal(store_room_members(st, r, &m, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(m[0].username, "alice");
	assert_int_equal(m[0].role, STORE_ROLE_OWNER);
	assert_string_equal(m[1].username, "bob");
	assert_int_equal(m[1].role, STORE_ROLE_MODERATOR);
	store_members_free(m, n);
	assert_int_equal(store_moderator_set(st, r, b, a, false), STORE_OK);
	assert_int_equal(store_moderator_set(st, r, b, a, false), STORE_OK);
	assert_int_equal(store_room_role(st, r, b), STORE_ROLE_MEMBER);

	/* a moderator who leaves is no longer one when back */
	assert_int_equal(store_moderator_set(st, r, b, 0, true), STORE_OK);
	assert_int_equal(
	    put(st, EVENT_LEAVE, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(store_room_role(st, r, b), STORE_ROLE_NONE);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	assert_int_equal(store_room_role(st, r, b), STORE_ROLE_MEMBER);
}

/* Metric samples add up by bucket and prune by minute; the aggregates
 * over the event log count messages by day and room, senders, top rooms;
 * rooms-per-day counts a user's creations. */
static void c_stats(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t dev = room(st, a, "dev"), ops = room(st, a, "ops");
	int64_t n = -1, oldest = -1;
	assert_int_equal(store_rooms_created(st, a, 0, &n, &oldest), STORE_OK);
	assert_int_equal(n, 2);
	assert_true(oldest > 0);
	assert_int_equal(store_rooms_created(st, b, 0, &n, &oldest), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(oldest, 0);
	assert_int_equal(store_rooms_created(st, a, INT64_MAX / 2, &n, &oldest),
			 STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, dev, NULL, NULL, NULL, NULL),
	    STORE_OK);
	assert_int_equal(say(st, a, dev, "one", NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, dev, "two", NULL, NULL), STORE_OK);
	assert_int_equal(say(st, b, dev, "three", NULL, NULL), STORE_OK);
	assert_int_equal(say(st, a, ops, "four", NULL, NULL), STORE_OK);

	struct store_sample x1 = {.minute = 600,
				  .conn = {3, 1, 0},
				  .sends = 4,
				  .deliveries = 9,
				  .fallback = "{\"sse/ws_failed\":2}",
				  .latency = "[1,2,0]"};
	struct store_sample x2 = {.minute = 660,
				  .conn = {5, 0, 2},
				  .sends = 1,
				  .fallback =
				      "{\"sse/ws_failed\":1,\"poll/other\":4}",
				  .latency = "[0,1]"};
	assert_int_equal(store_sample_add(st, &x1), STORE_OK);
	assert_int_equal(store_sample_add(st, &x2), STORE_OK);

	json_t *o = store_stats(st, 0, INT64_C(4102444800000), 86400);
	assert_non_null(o);
	char *j = json_dumps(json_object_get(o, "top_rooms"), JSON_COMPACT);
	assert_string_equal(j, "[{\"room\":\"dev\",\"messages\":3,"
			       "\"senders\":2},{\"room\":\"ops\","
			       "\"messages\":1,\"senders\":1}]");
	free(j);
	json_t *mpd = json_object_get(o, "messages_per_day");
	assert_int_equal(json_array_size(mpd), 2);
	assert_int_equal(json_integer_value(json_object_get(
			     json_array_get(mpd, 0), "messages")),
			 3);
	json_t *aud = json_object_get(o, "active_users_per_day");
	assert_int_equal(json_array_size(aud), 1);
	assert_int_equal(json_integer_value(
			     json_object_get(json_array_get(aud, 0), "users")),
			 2);
	j = json_dumps(json_object_get(o, "connections"), JSON_COMPACT);
	assert_string_equal(j, "[{\"t\":0,\"ws\":5,\"sse\":1,\"poll\":2}]");
	free(j);
	j = json_dumps(json_object_get(o, "fallbacks"), JSON_COMPACT);
	assert_string_equal(j, "[{\"t\":0,\"transport\":\"poll\",\"reason\":"
			       "\"other\",\"count\":4},{\"t\":0,"
			       "\"transport\":\"sse\",\"reason\":"
			       "\"ws_failed\",\"count\":3}]");
	free(j);
	j = json_dumps(json_object_get(o, "latency"), JSON_COMPACT);
	assert_string_equal(j, "[{\"t\":0,\"bucket\":0,\"count\":1},{\"t\":0,"
			       "\"bucket\":1,\"count\":3},{\"t\":0,"
			       "\"bucket\":2,\"count\":0}]");
	free(j);
	j = json_dumps(json_object_get(o, "totals"), JSON_COMPACT);
	assert_string_equal(j, "{\"messages\":4,\"active_users\":2,"
			       "\"sends\":5,\"deliveries\":9}");
	free(j);
	json_decref(o);

	/* minutes in their own hourly buckets; a range leaves out the rest */
	o = store_stats(st, 0, 650 * 1000, 60);
	j = json_dumps(json_object_get(o, "connections"), JSON_COMPACT);
	assert_string_equal(j, "[{\"t\":600,\"ws\":3,\"sse\":1,\"poll\":0}]");
	free(j);
	assert_int_equal(
	    json_array_size(json_object_get(o, "messages_per_day")), 0);
	json_decref(o);

	/* the admin panel's user search: by part of the name, paged */
	struct store_user *v;
	size_t len;
	bool more;
	assert_int_equal(store_user_disable(st, b, true, "spam"), STORE_OK);
	assert_int_equal(store_users_search(st, "L", NULL, 5, &v, &len, &more),
			 0);
	assert_int_equal(len, 1);
	assert_false(more);
	assert_string_equal(v[0].username, "alice");
	assert_true(v[0].admin);
	store_users_free(v, len);
	assert_int_equal(store_users_search(st, NULL, NULL, 1, &v, &len, &more),
			 0);
	assert_int_equal(len, 1);
	assert_true(more);
	store_users_free(v, len);
	assert_int_equal(
	    store_users_search(st, "", "alice", 5, &v, &len, &more), 0);
	assert_int_equal(len, 1);
	assert_string_equal(v[0].username, "bob");
	assert_true(v[0].disabled);
	assert_string_equal(v[0].disabled_reason, "spam");
	store_users_free(v, len);
	assert_int_equal(store_users_search(st, "_", NULL, 5, &v, &len, &more),
			 0);
	assert_int_equal(len, 0); /* a wildcard of LIKE is a plain character */
	store_users_free(v, len);

	assert_int_equal(store_samples_prune(st, 660), STORE_OK);
	o = store_stats(st, 0, 86400 * 1000, 3600);
	j = json_dumps(json_object_get(o, "connections"), JSON_COMPACT);
	assert_string_equal(j, "[{\"t\":0,\"ws\":5,\"sse\":0,\"poll\":2}]");
	free(j);
	json_decref(o);
}

/* Every backend names itself, and a store just opened reaches its
 * database. */
static void c_backend(void **state)
{
	struct store *st = *state;
	const char *name = store_backend_name(st);
	assert_non_null(name);
	assert_true(!strcmp(name, "sqlite") || !strcmp(name, "postgresql"));
	assert_true(store_reachable(st));
	/* both tables are whole: store_open refuses one that is not */
	assert_null(store_ops_missing(&sq_ops));
	assert_null(store_ops_missing(&pg_ops));
	struct store_ops partial = sq_ops;
	partial.files_sweep = NULL;
	assert_string_equal(store_ops_missing(&partial), "files_sweep");
}

struct presence_seen {
	int64_t user, last_seen;
	char status[8];
	char text[64];
	int n;
};

static void presence_row(void *arg, const struct store_presence *p)
{
	struct presence_seen *s = arg;
	s->n++;
	s->user = p->user_id;
	s->last_seen = p->last_seen_ms;
	snprintf(s->status, sizeof(s->status), "%s", p->status);
	snprintf(s->text, sizeof(s->text), "%s", p->text ? p->text : "(null)");
}

/* Presence kept across restarts: chosen status, text, last_seen; only
 * users with something kept are listed. */
static void c_presence(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice");
	user(st, "bob");
	struct presence_seen s = {0};
	assert_int_equal(store_presence_each(st, presence_row, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(store_presence_set(st, a, "dnd", "🍕 lunch"), STORE_OK);
	assert_int_equal(store_presence_set(st, a, "busy", NULL), STORE_ERR);
	assert_int_equal(store_presence_set(st, 999999, "away", NULL),
			 STORE_NOTFOUND);
	int64_t ids[] = {a, 999999}, ms[] = {1234567, 1};
	/* one commit for both; an unknown user is skipped */
	assert_int_equal(store_last_seen_set(st, ids, ms, 2), STORE_OK);
	assert_int_equal(store_presence_each(st, presence_row, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.user, a);
	assert_string_equal(s.status, "dnd");
	assert_string_equal(s.text, "🍕 lunch");
	assert_int_equal(s.last_seen, 1234567);
	/* "" clears the text */
	assert_int_equal(store_presence_set(st, a, "online", ""), STORE_OK);
	s = (struct presence_seen){0};
	assert_int_equal(store_presence_each(st, presence_row, &s), 0);
	assert_int_equal(s.n, 1); /* last_seen is still kept */
	assert_string_equal(s.status, "online");
	assert_string_equal(s.text, "(null)");
}

/* --- files ------------------------------------------------------------- */

struct swept {
	int n;
	char ids[4][33];
	bool sha[4];
};

static void swept_one(void *arg, const char *id, const char *sha256)
{
	struct swept *s = arg;
	if (s->n < 4) {
		snprintf(s->ids[s->n], 33, "%s", id);
		s->sha[s->n] = sha256 != NULL;
	}
	s->n++;
}

static bool keep_none(void *arg, const char *id)
{
	(void)arg;
	(void)id;
	return false;
}

/* Uploads and files: creation, offsets, finishing (with a name given
 * late), usage, who may read a file (its owner; members of a room where a
 * message carries it), the uses a message and its delete write, the sweep
 * (expired uploads, unused files; keep), content still named. */
static void c_files(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob"),
		c = user(st, "carol");
	int64_t r = room(st, a, "pics"), m, used;
	const char *sha =
	    "ab00000000000000000000000000000000000000000000000000000000000001";
	struct store_file f = {.owner_id = a,
			       .length = 10,
			       .created_ms = 1000,
			       .expires_ms = 5000,
			       .name = "x",
			       .metadata = ""};
	struct store_file g;
	struct swept sw = {0};

	assert_int_equal(
	    put(st, EVENT_JOIN, b, NULL, r, NULL, NULL, NULL, NULL), STORE_OK);
	snprintf(f.id, sizeof(f.id), "00000000000000000000000000000001");
	assert_int_equal(store_file_create(st, &f), STORE_OK);
	assert_int_equal(store_file_create(st, &f), STORE_EXISTS);
	assert_int_equal(store_file_get(st, f.id, &g), STORE_OK);
	assert_int_equal(g.offset, 0);
	assert_null(g.sha256);
	store_file_fini(&g);
	assert_int_equal(store_file_offset_set(st, f.id, 5), STORE_OK);
	assert_int_equal(store_file_get(st, f.id, &g), STORE_OK);
	assert_int_equal(g.offset, 5);
	store_file_fini(&g);
	assert_int_equal(store_file_usage(st, a, &used), STORE_OK);
	assert_int_equal(used, 10);
	assert_int_equal(store_file_access(st, f.id, a), 1);
	assert_int_equal(store_file_access(st, f.id, b), 0);
	assert_int_equal(store_file_finish(st, f.id, 10, sha, "image/png", 4, 3,
					   "holiday.png"),
			 STORE_OK);
	assert_int_equal(store_file_get(st, f.id, &g), STORE_OK);
	assert_string_equal(g.sha256, sha);
	assert_string_equal(g.name, "holiday.png");
	assert_string_equal(g.type, "image/png");
	assert_int_equal(g.offset, 10);
	assert_int_equal(g.width * 10 + g.height, 43);
	store_file_fini(&g);

	/* a second, unfinished upload that expires */
	struct store_file u = f;
	snprintf(u.id, sizeof(u.id), "00000000000000000000000000000002");
	u.expires_ms = 2000;
	assert_int_equal(store_file_create(st, &u), STORE_OK);

	/* a message may carry only finished uploads of its sender's, named
	 * by id: the writer decides, in the message's transaction */
	static const char *const bad[][2] = {
	    {"00000000000000000000000000000002", "unfinished"},
	    {"00000000000000000000000000000009", "no such upload"},
	    {"", "empty"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct waiter wb = {.mu = PTHREAD_MUTEX_INITIALIZER,
				    .cv = PTHREAD_COND_INITIALIZER};
		json_t *ba = json_pack("{s:[s]}", "files", bad[i][0]);
		struct store_write bm = {.type = EVENT_MESSAGE,
					 .user_id = a,
					 .room_id = r,
					 .text = "",
					 .args = ba};
		store_write_submit(st, &bm, waiter_done, &wb);
		pthread_mutex_lock(&wb.mu);
		while (!wb.done)
			pthread_cond_wait(&wb.cv, &wb.mu);
		pthread_mutex_unlock(&wb.mu);
		json_decref(ba);
		assert_int_equal(wb.status, STORE_NOFILE);
	}
	{ /* someone else's file */
		struct waiter wb = {.mu = PTHREAD_MUTEX_INITIALIZER,
				    .cv = PTHREAD_COND_INITIALIZER};
		json_t *ba = json_pack("{s:[s]}", "files", f.id);
		struct store_write bm = {.type = EVENT_MESSAGE,
					 .user_id = b,
					 .room_id = r,
					 .text = "",
					 .args = ba};
		store_write_submit(st, &bm, waiter_done, &wb);
		pthread_mutex_lock(&wb.mu);
		while (!wb.done)
			pthread_cond_wait(&wb.cv, &wb.mu);
		pthread_mutex_unlock(&wb.mu);
		json_decref(ba);
		assert_int_equal(wb.status, STORE_NOFILE);
	}
	/* a message carries the first: the room's members may read it */
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	json_t *args = json_pack("{s:[s]}", "files", f.id);
	struct store_write msg = {.type = EVENT_MESSAGE,
				  .user_id = a,
				  .room_id = r,
				  .text = "",
				  .args = args};
	store_write_submit(st, &msg, waiter_done, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	json_decref(args);
	assert_int_equal(w.status, STORE_OK);
	/* the envelope carries the file's object, from its row */
	json_t *env = json_loads(event_json(w.ev, NULL), 0, NULL);
	json_t *fo = json_array_get(json_object_get(env, "files"), 0);
	assert_string_equal(json_string_value(json_object_get(fo, "id")), f.id);
	assert_string_equal(json_string_value(json_object_get(fo, "name")),
			    "holiday.png");
	assert_int_equal(json_integer_value(json_object_get(fo, "size")), 10);
	assert_string_equal(json_string_value(json_object_get(fo, "url")),
			    "/files/00000000000000000000000000000001/"
			    "holiday.png");
	json_decref(env);
	m = event_id(w.ev);
	event_unref(w.ev);
	assert_int_equal(store_file_access(st, f.id, b), 1);
	assert_int_equal(store_file_access(st, f.id, c), 0);
	assert_int_equal(store_file_blob_used(st, sha), 1);
	/* a message is found by its files' names too, after an edit also */
	finds(st, b, "holiday", m);
	assert_int_equal(change(st, EVENT_EDIT, a, r, m, "beach", NULL, NULL),
			 STORE_OK);
	finds(st, b, "holiday", m);
	finds(st, b, "beach", m);

	/* the sweep: the expired upload goes, the used file stays; keep */
	assert_int_equal(
	    store_files_sweep(st, 3000, 999999, NULL, swept_one, &sw),
	    STORE_OK);
	assert_int_equal(sw.n, 1);
	assert_string_equal(sw.ids[0], u.id);
	assert_false(sw.sha[0]);
	assert_int_equal(store_file_get(st, u.id, &g), STORE_NOTFOUND);

	/* deleting the message unshares the file; then the sweep takes it */
	assert_int_equal(change(st, EVENT_DELETE, a, r, m, NULL, NULL, NULL),
			 STORE_OK);
	assert_int_equal(store_file_access(st, f.id, b), 0);
	assert_int_equal(store_file_access(st, f.id, a), 1);
	finds_none(st, b, "holiday");
	sw.n = 0;
	assert_int_equal(
	    store_files_sweep(st, 3000, 500, keep_none, swept_one, &sw),
	    STORE_OK);
	assert_int_equal(sw.n, 0); /* finished just now: not older than 500 */
	assert_int_equal(
	    store_files_sweep(st, 3000, INT64_MAX, keep_none, swept_one, &sw),
	    STORE_OK);
	assert_int_equal(sw.n, 1);
	assert_true(sw.sha[0]);
	assert_int_equal(store_file_blob_used(st, sha), 0);
	assert_int_equal(store_file_delete(st, f.id), STORE_NOTFOUND);
	assert_int_equal(store_file_usage(st, a, &used), STORE_OK);
	assert_int_equal(used, 0);
}

/* Avatars: a user's avatar is one of their finished files; the user object
 * and room members carry it; every user may read it; the sweep keeps it
 * while it is an avatar and takes it once replaced; deleting the file
 * clears it. */
static void c_avatars(void **state)
{
	struct store *st = *state;
	int64_t a = user(st, "alice"), b = user(st, "bob");
	int64_t r = room(st, a, "faces");
	const char *sha =
	    "cd00000000000000000000000000000000000000000000000000000000000002";
	struct store_file f = {.owner_id = a,
			       .length = 10,
			       .created_ms = 1000,
			       .expires_ms = 5000,
			       .name = "me.png",
			       .metadata = ""};
	struct store_user u;
	struct store_member *m = NULL;
	size_t n = 0;
	struct swept sw = {0};

	snprintf(f.id, sizeof(f.id), "00000000000000000000000000000003");
	assert_int_equal(store_file_create(st, &f), STORE_OK);
	assert_int_equal(
	    store_file_finish(st, f.id, 10, sha, "image/png", 4, 3, NULL),
	    STORE_OK);
	assert_int_equal(store_user_by_id(st, a, &u), STORE_OK);
	assert_null(u.avatar);
	store_user_fini(&u);
	assert_int_equal(store_file_access(st, f.id, b), 0);

	assert_int_equal(store_user_avatar_set(st, a, f.id), STORE_OK);
	assert_int_equal(store_user_by_id(st, a, &u), STORE_OK);
	assert_string_equal(u.avatar, f.id);
	store_user_fini(&u);
	assert_int_equal(store_user_by_name(st, "alice", &u), STORE_OK);
	assert_string_equal(u.avatar, f.id);
	store_user_fini(&u);
	assert_int_equal(store_room_members(st, r, &m, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].avatar, f.id);
	store_members_free(m, n);
	assert_int_equal(store_file_access(st, f.id, b), 1);
	assert_int_equal(
	    store_files_sweep(st, 3000, INT64_MAX, keep_none, swept_one, &sw),
	    STORE_OK);
	assert_int_equal(sw.n, 0); /* an avatar is in use */

	/* cleared: unused again, so the sweep takes it */
	assert_int_equal(store_user_avatar_set(st, a, NULL), STORE_OK);
	assert_int_equal(store_file_access(st, f.id, b), 0);
	assert_int_equal(
	    store_files_sweep(st, 3000, INT64_MAX, keep_none, swept_one, &sw),
	    STORE_OK);
	assert_int_equal(sw.n, 1);
	assert_string_equal(sw.ids[0], f.id);

	/* deleting an avatar's file clears the avatar */
	snprintf(f.id, sizeof(f.id), "00000000000000000000000000000004");
	assert_int_equal(store_file_create(st, &f), STORE_OK);
	assert_int_equal(
	    store_file_finish(st, f.id, 10, sha, "image/png", 4, 3, NULL),
	    STORE_OK);
	assert_int_equal(store_user_avatar_set(st, a, f.id), STORE_OK);
	assert_int_equal(store_file_delete(st, f.id), STORE_OK);
	assert_int_equal(store_user_by_id(st, a, &u), STORE_OK);
	assert_null(u.avatar);
	store_user_fini(&u);
	assert_int_equal(store_user_avatar_set(st, 999999, NULL),
			 STORE_NOTFOUND);
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
	    C(c_search_cjk),
	    C(c_search_pages),
	    C(c_users_and_sessions),
	    C(c_events_after_membership),
	    C(c_admin),
	    C(c_roles),
	    C(c_roles_each),
	    C(c_kick_ban),
	    C(c_mutes_disable_audit),
	    C(c_edit),
	    C(c_delete),
	    C(c_change_same_batch),
	    C(c_dm_open),
	    C(c_private_rooms_and_invites),
	    C(c_users_and_mentions),
	    C(c_read_markers),
	    C(c_reactions),
	    C(c_replies),
	    C(c_stats),
	    C(c_backend),
	    C(c_presence),
	    C(c_files),
	    C(c_avatars),
	};
	factory = f;
	return _cmocka_run_group_tests(f->name, cases, ARRAY_LEN(cases), NULL,
				       NULL);
}
