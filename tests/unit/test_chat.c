/* test_chat: the chat commands through chat.h, on a real store (a fresh
 * SQLite database per test under $NATTER_TEST_TMP, schema from
 * $NATTER_DB_DIR) and a real bus with one shard that the test drains
 * itself. It covers the validation chat does synchronously (text, length,
 * client_id, room, membership), what the writer decides (duplicates,
 * existing rooms and memberships), that the commit hook publishes an event
 * before the command's done callback runs, ephemeral typing events, and the
 * error code/status/message table.
 *
 * Done callbacks run on the store's writer thread: they only record what
 * they see under a mutex and signal a condition variable; every assertion
 * runs on the test thread. Waiters and subscribers live on the heap and are
 * released in the teardown, after store_close(), so a failed assertion
 * never leaves the writer pointing at a dead stack frame. */

#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testdir.h"
#include "core/bus.h"
#include "core/chat.h"
#include "model/event.h"
#include "store/store.h"
#include "util/util.h"

#define DONE_TIMEOUT_S 20 /* generous: valgrind is slow */
#define MAX_WAITERS 64
#define MAX_SUBS 4
#define REC_MAX 64

/* --- a done callback that records what it saw ----------------------------- */

struct fx;

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fx *fx;
	int calls;
	int err;
	bool duplicate;
	struct event *ev;   /* our reference, or NULL */
	int64_t bus_last;   /* bus_last_id() when done ran */
	int wakes;	    /* shard wake-ups counted when done ran */
	int64_t check_user; /* if set: is this user a member of ev's room */
	bool member;	    /* ... when done ran */
};

/* --- a bus subscriber that records what the drain delivers ---------------- */

struct rec {
	int hellos;
	int64_t cursor;
	size_t n;
	int64_t ids[REC_MAX];
	enum event_type types[REC_MAX];
	char *json[REC_MAX];
};

/* --- fixture -------------------------------------------------------------- */

struct fx {
	char dir[512];
	char path[600];
	struct store *st;
	struct bus *bus;
	struct bus_shard *shard;
	struct chat *chat;
	struct metrics metrics;
	atomic_int wakes;
	int64_t lobby;
	struct chat_user alice, bob, carol;
	struct waiter *waiters[MAX_WAITERS];
	size_t nwaiters;
	struct bus_sub *subs[MAX_SUBS];
	struct rec *recs[MAX_SUBS];
	size_t nsubs;
};

static void on_done(void *arg, const struct chat_result *res)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->mu);
	w->calls++;
	w->err = res->err;
	w->duplicate = res->duplicate;
	if (res->ev && !w->ev)
		w->ev = event_ref(res->ev);
	w->bus_last = bus_last_id(w->fx->bus);
	w->wakes = atomic_load(&w->fx->wakes);
	if (w->check_user && res->ev)
		w->member = bus_is_member(w->fx->bus, event_room(res->ev),
					  w->check_user);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static struct waiter *waiter_new(struct fx *fx)
{
	assert_true(fx->nwaiters < MAX_WAITERS);
	struct waiter *w = xcalloc(1, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->fx = fx;
	fx->waiters[fx->nwaiters++] = w;
	return w;
}

static void waiter_free(struct waiter *w)
{
	event_unref(w->ev);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/* Wait until done has run at least once. */
static void wait_done(struct waiter *w)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += DONE_TIMEOUT_S;
	pthread_mutex_lock(&w->mu);
	int rc = 0;
	while (w->calls == 0 && rc == 0)
		rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
	int calls = w->calls;
	pthread_mutex_unlock(&w->mu);
	if (calls == 0)
		fail_msg("done callback did not run within %d s",
			 DONE_TIMEOUT_S);
}

static int waiter_calls(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	int n = w->calls;
	pthread_mutex_unlock(&w->mu);
	return n;
}

static void rec_hello(void *arg, const struct bus_resume *r)
{
	struct rec *rec = arg;
	rec->hellos++;
	rec->cursor = r->cursor;
}

static void rec_deliver(void *arg, struct event *ev)
{
	struct rec *rec = arg;
	size_t len;
	const char *json = event_json(ev, &len);

	if (rec->n == REC_MAX)
		return; /* counted as a failure by the asserts on n */
	rec->ids[rec->n] = event_id(ev);
	rec->types[rec->n] = event_type(ev);
	rec->json[rec->n] = xstrndup(json, len);
	rec->n++;
}

static const struct bus_sub_ops rec_ops = {rec_hello, rec_deliver};

/* A live subscriber for user on the test's shard, from now on. */
static struct rec *subscribe(struct fx *fx, int64_t user_id)
{
	assert_true(fx->nsubs < MAX_SUBS);
	struct rec *rec = xcalloc(1, sizeof(*rec));
	int err = 0;
	struct bus_sub *sub =
	    bus_subscribe(fx->shard, user_id, -1, &rec_ops, rec, &err);
	fx->recs[fx->nsubs] = rec;
	fx->subs[fx->nsubs++] = sub;
	assert_non_null(sub);
	assert_int_equal(rec->hellos, 1);
	return rec;
}

static void rec_free(struct rec *rec)
{
	for (size_t i = 0; i < rec->n; i++)
		free(rec->json[i]);
	free(rec);
}

static void on_wake(void *arg)
{
	struct fx *fx = arg;
	atomic_fetch_add(&fx->wakes, 1);
}

static void load_member(void *arg, int64_t room_id, int64_t user_id)
{
	bus_member_add(arg, room_id, user_id);
}

static int64_t user_new(struct fx *fx, const char *name)
{
	int64_t id = 0;
	assert_int_equal(
	    store_user_create(fx->st, name, "not-a-real-hash", &id), STORE_OK);
	assert_true(id > 0);
	return id;
}

/* Run a membership command and return the error its done reported. */
static int join(struct fx *fx, const struct chat_user *u, const char *room)
{
	struct waiter *w = waiter_new(fx);
	assert_int_equal(chat_join(fx->chat, u, room, on_done, w), CHAT_OK);
	wait_done(w);
	return w->err;
}

static int fx_setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	char err[512] = "";

	if (testdir_make(fx->dir, sizeof(fx->dir), "test_chat") < 0) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/natter.db", fx->dir);
	struct store_config sc = {
	    .path = fx->path,
	    .db_dir = testdir_db(),
	    .sync_full = false,
	    .commit_interval_ms = 1,
	    .commit_batch_max = 64,
	    .readers = 2,
	};
	fx->st = store_open(&sc, err, sizeof(err));
	if (!fx->st) {
		fprintf(stderr, "store_open: %s\n", err);
		testdir_remove(fx->dir);
		free(fx);
		return -1;
	}
	fx->bus = bus_new(256, 1000, store_last_event_id(fx->st),
			  store_events_after, fx->st);
	store_members_each(fx->st, load_member, fx->bus);
	metrics_init(&fx->metrics);
	fx->chat = chat_new(fx->st, fx->bus, &fx->metrics);
	atomic_init(&fx->wakes, 0);
	fx->shard = bus_shard_new(fx->bus, on_wake, fx);
	*state = fx;

	fx->alice = (struct chat_user){user_new(fx, "alice"), "alice"};
	fx->bob = (struct chat_user){user_new(fx, "bob"), "bob"};
	fx->carol = (struct chat_user){user_new(fx, "carol"), "carol"};
	assert_int_equal(store_room_by_name(fx->st, "lobby", &fx->lobby, NULL),
			 STORE_OK);
	/* alice and bob are in the lobby; carol is in no room */
	assert_int_equal(join(fx, &fx->alice, "lobby"), CHAT_OK);
	assert_int_equal(join(fx, &fx->bob, "lobby"), CHAT_OK);
	bus_shard_drain(fx->shard);
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < fx->nsubs; i++)
		bus_unsubscribe(fx->subs[i]);
	/* runs every queued command's done callback: waiters still exist */
	store_close(fx->st);
	for (size_t i = 0; i < fx->nwaiters; i++)
		waiter_free(fx->waiters[i]);
	for (size_t i = 0; i < fx->nsubs; i++)
		rec_free(fx->recs[i]);
	bus_shard_free(fx->shard);
	chat_free(fx->chat);
	bus_free(fx->bus);
	testdir_remove(fx->dir);
	free(fx);
	return 0;
}

/* --- helpers -------------------------------------------------------------- */

static json_t *json_of(const char *text)
{
	json_error_t jerr;
	json_t *obj = json_loads(text, 0, &jerr);
	if (!json_is_object(obj))
		fail_msg("not a JSON object: %s (%s)", text, jerr.text);
	return obj;
}

static json_t *event_obj(struct event *ev)
{
	size_t len;
	const char *text = event_json(ev, &len);
	json_error_t jerr;
	json_t *obj = json_loadb(text, len, 0, &jerr);
	if (!json_is_object(obj))
		fail_msg("event is not a JSON object: %.*s", (int)len, text);
	return obj;
}

static void assert_member_str(json_t *obj, const char *key, const char *want)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v))
		fail_msg("member '%s' is not a string", key);
	assert_string_equal(json_string_value(v), want);
}

/* chat_send with a done that must not run. */
static int send_sync(struct fx *fx, struct waiter *w, const struct chat_user *u,
		     const char *room, const char *text, size_t len,
		     const char *client_id)
{
	return chat_send(fx->chat, u, room, text, len, client_id, on_done, w);
}

/* chat_send that must be accepted; waits for done and returns the waiter. */
static struct waiter *send_ok(struct fx *fx, const struct chat_user *u,
			      const char *room, const char *text, size_t len,
			      const char *client_id)
{
	struct waiter *w = waiter_new(fx);
	assert_int_equal(
	    chat_send(fx->chat, u, room, text, len, client_id, on_done, w),
	    CHAT_OK);
	wait_done(w);
	return w;
}

/* Nothing queued by the error cases: a later command completes and the
 * rejected command's done never ran, and no event id was used. */
static void assert_nothing_queued(struct fx *fx, struct waiter *rejected,
				  int64_t last_before)
{
	assert_int_equal(store_last_event_id(fx->st), last_before);
	struct waiter *w = send_ok(fx, &fx->alice, "lobby", "fence", 5, NULL);
	assert_int_equal(w->err, CHAT_OK);
	assert_int_equal(event_id(w->ev), last_before + 1);
	assert_int_equal(waiter_calls(rejected), 0);
}

/* --- chat_send: synchronous validation ------------------------------------ */

static void test_send_invalid_text(void **state)
{
	struct fx *fx = *state;
	struct waiter *w = waiter_new(fx);
	int64_t last = store_last_event_id(fx->st);
	const struct chat_user *a = &fx->alice;

	/* empty and blank */
	assert_int_equal(send_sync(fx, w, a, "lobby", "", 0, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "x", 0, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", " ", 1, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", " \t\r\n  ", 6, NULL),
			 CHAT_EINVAL);
	/* invalid UTF-8: truncated, stray byte, overlong, surrogate */
	assert_int_equal(send_sync(fx, w, a, "lobby", "caf\xc3", 4, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "ab\xff", 3, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "\xc0\xaf", 2, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "\xed\xa0\x80", 3, NULL),
			 CHAT_EINVAL);
	/* NUL and C0 control characters */
	assert_int_equal(send_sync(fx, w, a, "lobby", "a\0b", 3, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "\0", 1, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "a\x01z", 3, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "\x1b[31mred", 8, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "bell\x07", 5, NULL),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, w, a, "lobby", "x\x1f", 2, NULL),
			 CHAT_EINVAL);

	assert_nothing_queued(fx, w, last);
}

static void test_send_whitespace_allowed(void **state)
{
	struct fx *fx = *state;
	const char text[] = "line one\n\tline two";
	struct waiter *w =
	    send_ok(fx, &fx->alice, "lobby", text, sizeof(text) - 1, NULL);

	assert_int_equal(w->err, CHAT_OK);
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "text", text);
	json_decref(obj);
}

static void test_send_length(void **state)
{
	struct fx *fx = *state;
	struct waiter *rej = waiter_new(fx);
	int64_t last = store_last_event_id(fx->st);
	size_t n = 4 * (CHAT_TEXT_MAX + 1);
	char *text = xmalloc(n + 1);

	/* 4001 ASCII characters, 4001 two-byte ones, 4001 emoji */
	memset(text, 'a', CHAT_TEXT_MAX + 1);
	assert_int_equal(send_sync(fx, rej, &fx->alice, "lobby", text,
				   CHAT_TEXT_MAX + 1, NULL),
			 CHAT_ETOOLONG);
	for (size_t i = 0; i < CHAT_TEXT_MAX + 1; i++)
		memcpy(text + 2 * i, "\xc3\xa9", 2);
	assert_int_equal(send_sync(fx, rej, &fx->alice, "lobby", text,
				   2 * (CHAT_TEXT_MAX + 1), NULL),
			 CHAT_ETOOLONG);
	for (size_t i = 0; i < CHAT_TEXT_MAX + 1; i++)
		memcpy(text + 4 * i, "\xf0\x9f\x98\x80", 4);
	assert_int_equal(send_sync(fx, rej, &fx->alice, "lobby", text, n, NULL),
			 CHAT_ETOOLONG);
	assert_nothing_queued(fx, rej, last);

	/* exactly 4000 characters of each width are accepted, whole */
	static const struct {
		const char *ch;
		size_t width;
	} widths[] = {{"a", 1},
		      {"\xc3\xa9", 2},
		      {"\xe2\x82\xac", 3},
		      {"\xf0\x9f\x98\x80", 4}};
	for (size_t k = 0; k < ARRAY_LEN(widths); k++) {
		size_t len = widths[k].width * CHAT_TEXT_MAX;
		for (size_t i = 0; i < CHAT_TEXT_MAX; i++)
			memcpy(text + widths[k].width * i, widths[k].ch,
			       widths[k].width);
		struct waiter *w =
		    send_ok(fx, &fx->alice, "lobby", text, len, NULL);
		assert_int_equal(w->err, CHAT_OK);
		json_t *obj = event_obj(w->ev);
		json_t *t = json_object_get(obj, "text");
		assert_true(json_is_string(t));
		assert_int_equal(json_string_length(t), len);
		assert_memory_equal(json_string_value(t), text, len);
		assert_int_equal(utf8_count(json_string_value(t), len),
				 CHAT_TEXT_MAX);
		json_decref(obj);
	}
	free(text);
}

static void test_send_client_id(void **state)
{
	struct fx *fx = *state;
	struct waiter *rej = waiter_new(fx);
	int64_t last = store_last_event_id(fx->st);
	char id[CHAT_CLIENT_ID_MAX + 2];
	const struct chat_user *a = &fx->alice;

	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, "has space"),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, ""),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, "tab\tbed"),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, "ctl\x01"),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, "del\x7f"),
			 CHAT_EINVAL);
	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, "caf\xc3\xa9"),
			 CHAT_EINVAL);
	memset(id, 'k', CHAT_CLIENT_ID_MAX + 1); /* 65 bytes */
	id[CHAT_CLIENT_ID_MAX + 1] = '\0';
	assert_int_equal(send_sync(fx, rej, a, "lobby", "hi", 2, id),
			 CHAT_EINVAL);
	assert_nothing_queued(fx, rej, last);

	/* 64 bytes of printable ASCII is fine and comes back in the event */
	for (size_t i = 0; i < CHAT_CLIENT_ID_MAX; i++)
		id[i] = (char)(0x21 + (i * 7) % 94);
	id[CHAT_CLIENT_ID_MAX] = '\0';
	struct waiter *w = send_ok(fx, a, "lobby", "hi", 2, id);
	assert_int_equal(w->err, CHAT_OK);
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "client_id", id);
	json_decref(obj);

	/* no client_id: none in the event */
	w = send_ok(fx, a, "lobby", "hi", 2, NULL);
	assert_int_equal(w->err, CHAT_OK);
	obj = event_obj(w->ev);
	assert_null(json_object_get(obj, "client_id"));
	json_decref(obj);
}

static void test_send_room_and_membership(void **state)
{
	struct fx *fx = *state;
	struct waiter *rej = waiter_new(fx);
	int64_t last = store_last_event_id(fx->st);

	assert_int_equal(
	    send_sync(fx, rej, &fx->alice, "nosuch", "hi", 2, NULL),
	    CHAT_ENOROOM);
	assert_int_equal(
	    send_sync(fx, rej, &fx->alice, "no such", "hi", 2, NULL),
	    CHAT_ENOROOM);
	assert_int_equal(send_sync(fx, rej, &fx->alice, "", "hi", 2, NULL),
			 CHAT_ENOROOM);
	assert_int_equal(send_sync(fx, rej, &fx->alice, NULL, "hi", 2, NULL),
			 CHAT_ENOROOM);
	/* carol exists but never joined the lobby */
	assert_int_equal(send_sync(fx, rej, &fx->carol, "lobby", "hi", 2, NULL),
			 CHAT_ENOTMEMBER);
	assert_nothing_queued(fx, rej, last);

	/* room names are case-insensitive; the event has the canonical name */
	struct waiter *w = send_ok(fx, &fx->bob, "LoBBy", "hi", 2, NULL);
	assert_int_equal(w->err, CHAT_OK);
	assert_int_equal(event_room(w->ev), fx->lobby);
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "room", "lobby");
	json_decref(obj);
}

/* --- chat_send: the accepted path ----------------------------------------- */

static void test_send_publishes_before_done(void **state)
{
	struct fx *fx = *state;
	struct rec *rec = subscribe(fx, fx->bob.id);
	int64_t last = bus_last_id(fx->bus);
	int wakes = atomic_load(&fx->wakes);

	struct waiter *w =
	    send_ok(fx, &fx->alice, "lobby", "hello, bob", 10, "msg-1");
	assert_int_equal(waiter_calls(w), 1);
	assert_int_equal(w->err, CHAT_OK);
	assert_false(w->duplicate);
	assert_non_null(w->ev);

	int64_t id = event_id(w->ev);
	assert_int_equal(id, last + 1);
	assert_int_equal(event_type(w->ev), EVENT_MESSAGE);
	assert_int_equal(event_room(w->ev), fx->lobby);
	assert_int_equal(event_user(w->ev), fx->alice.id);
	assert_int_equal(store_last_event_id(fx->st), id);

	/* The commit hook ran first: when done ran, the bus already had the
	 * event and the shard had been woken to drain it. */
	assert_true(w->bus_last >= id);
	assert_true(w->wakes > wakes);

	json_t *obj = event_obj(w->ev);
	assert_int_equal(json_integer_value(json_object_get(obj, "id")), id);
	assert_member_str(obj, "type", "message");
	assert_member_str(obj, "room", "lobby");
	assert_member_str(obj, "from", "alice");
	assert_member_str(obj, "text", "hello, bob");
	assert_member_str(obj, "client_id", "msg-1");
	json_t *ts = json_object_get(obj, "ts");
	assert_true(json_is_string(ts));
	assert_int_equal(json_string_length(ts), 24); /* ...T12:00:00.123Z */
	assert_int_equal(json_string_value(ts)[23], 'Z');
	json_decref(obj);

	/* Delivery happens on drain, and it is the very same event. */
	assert_int_equal(rec->n, 0);
	bus_shard_drain(fx->shard);
	assert_int_equal(rec->n, 1);
	assert_int_equal(rec->ids[0], id);
	assert_int_equal(rec->types[0], EVENT_MESSAGE);
	size_t len;
	const char *json = event_json(w->ev, &len);
	assert_int_equal(strlen(rec->json[0]), len);
	assert_memory_equal(rec->json[0], json, len);

	/* done ran once: still once after a later command completed */
	send_ok(fx, &fx->alice, "lobby", "again", 5, NULL);
	assert_int_equal(waiter_calls(w), 1);
}

static const char *mention_bob(void *arg, const char *name, size_t len)
{
	(*(int *)arg)++;
	return len == 3 && memcmp(name, "bob", 3) == 0 ? "bob" : NULL;
}

/* A message is rendered once when it is sent: the envelope carries the
 * source as "text" and the safe HTML as "html"; raw HTML stays text; the
 * mention resolver is NULL until one is set, then asked for each @name. */
static void test_send_renders_markdown(void **state)
{
	struct fx *fx = *state;
	const char *src = "**hi** <script>x</script> @bob";
	struct waiter *w =
	    send_ok(fx, &fx->alice, "lobby", src, strlen(src), NULL);
	assert_int_equal(w->err, CHAT_OK);
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "text", src);
	assert_member_str(
	    obj, "html",
	    "<p><strong>hi</strong> &lt;script&gt;x&lt;/script&gt; "
	    "@bob</p>");
	json_decref(obj);

	int asked = 0;
	chat_set_mention(fx->chat, mention_bob, &asked);
	w = send_ok(fx, &fx->alice, "lobby", "@bob @eve", 9, NULL);
	obj = event_obj(w->ev);
	assert_member_str(obj, "html",
			  "<p><span class=\"mention\" data-user=\"bob\">@bob"
			  "</span> @eve</p>");
	assert_int_equal(asked, 2);
	json_decref(obj);
}

static void test_send_duplicate_client_id(void **state)
{
	struct fx *fx = *state;
	struct rec *rec = subscribe(fx, fx->bob.id);

	struct waiter *first =
	    send_ok(fx, &fx->alice, "lobby", "only once", 9, "retry-7");
	assert_int_equal(first->err, CHAT_OK);
	assert_false(first->duplicate);
	int64_t id = event_id(first->ev);
	int64_t last = bus_last_id(fx->bus);

	/* the retry (even with other text) answers with the first event */
	struct waiter *again =
	    send_ok(fx, &fx->alice, "lobby", "only once!", 10, "retry-7");
	assert_int_equal(again->err, CHAT_OK);
	assert_true(again->duplicate);
	assert_non_null(again->ev);
	assert_int_equal(event_id(again->ev), id);
	json_t *obj = event_obj(again->ev);
	assert_member_str(obj, "text", "only once");
	assert_member_str(obj, "client_id", "retry-7");
	json_decref(obj);
	/* nothing new was stored or published */
	assert_int_equal(bus_last_id(fx->bus), last);
	assert_int_equal(store_last_event_id(fx->st), last);

	/* client_ids are per sender: bob may use the same one */
	struct waiter *other =
	    send_ok(fx, &fx->bob, "lobby", "mine", 4, "retry-7");
	assert_int_equal(other->err, CHAT_OK);
	assert_false(other->duplicate);
	assert_int_equal(event_id(other->ev), last + 1);

	bus_shard_drain(fx->shard);
	assert_int_equal(rec->n, 2);
	assert_int_equal(rec->ids[0], id);
	assert_int_equal(rec->ids[1], last + 1);
}

static void test_send_many_in_order(void **state)
{
	struct fx *fx = *state;
	struct rec *rec = subscribe(fx, fx->alice.id);
	struct waiter *w[20];
	char text[32];

	/* queue them all before waiting, so they share commits */
	for (int i = 0; i < 20; i++) {
		w[i] = waiter_new(fx);
		int n = snprintf(text, sizeof(text), "message %d", i);
		assert_int_equal(
		    chat_send(fx->chat, i % 2 ? &fx->bob : &fx->alice, "lobby",
			      text, (size_t)n, NULL, on_done, w[i]),
		    CHAT_OK);
	}
	for (int i = 0; i < 20; i++)
		wait_done(w[i]);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(w[i]->err, CHAT_OK);
		assert_true(w[i]->bus_last >= event_id(w[i]->ev));
		if (i > 0)
			assert_int_equal(event_id(w[i]->ev),
					 event_id(w[i - 1]->ev) + 1);
	}
	bus_shard_drain(fx->shard);
	assert_int_equal(rec->n, 20);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(rec->ids[i], event_id(w[i]->ev));
		snprintf(text, sizeof(text), "message %d", i);
		json_t *obj = json_of(rec->json[i]);
		assert_member_str(obj, "text", text);
		json_decref(obj);
	}
}

/* --- rooms and membership ------------------------------------------------- */

static void test_room_create(void **state)
{
	struct fx *fx = *state;
	struct waiter *w = waiter_new(fx);
	w->check_user = fx->alice.id;

	assert_int_equal(chat_room_create(fx->chat, &fx->alice, "General",
					  "Chit-chat", on_done, w),
			 CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_OK);
	assert_non_null(w->ev);
	assert_int_equal(event_type(w->ev), EVENT_ROOM);
	assert_int_equal(event_user(w->ev), fx->alice.id);
	assert_true(w->member); /* creator is a member before the ack */
	assert_true(w->bus_last >= event_id(w->ev));
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "type", "room");
	assert_member_str(obj, "room", "General");
	assert_member_str(obj, "from", "alice");
	assert_member_str(obj, "topic", "Chit-chat");
	json_decref(obj);

	int64_t room_id;
	char name[33];
	assert_int_equal(store_room_by_name(fx->st, "general", &room_id, name),
			 STORE_OK);
	assert_int_equal(room_id, event_room(w->ev));
	assert_string_equal(name, "General");

	/* the creator can talk at once; others must join first */
	struct waiter *s =
	    send_ok(fx, &fx->alice, "general", "first!", 6, NULL);
	assert_int_equal(s->err, CHAT_OK);
	assert_int_equal(event_room(s->ev), room_id);
	struct waiter *rej = waiter_new(fx);
	assert_int_equal(send_sync(fx, rej, &fx->bob, "General", "hi", 2, NULL),
			 CHAT_ENOTMEMBER);

	/* names are unique ignoring case: decided by the writer */
	int64_t last = bus_last_id(fx->bus);
	const char *dups[] = {"General", "general", "GENERAL"};
	for (size_t i = 0; i < ARRAY_LEN(dups); i++) {
		struct waiter *d = waiter_new(fx);
		assert_int_equal(chat_room_create(fx->chat, &fx->bob, dups[i],
						  NULL, on_done, d),
				 CHAT_OK);
		wait_done(d);
		assert_int_equal(d->err, CHAT_EEXISTS);
		assert_null(d->ev);
	}
	struct waiter *d = waiter_new(fx);
	assert_int_equal(
	    chat_room_create(fx->chat, &fx->alice, "LOBBY", NULL, on_done, d),
	    CHAT_OK);
	wait_done(d);
	assert_int_equal(d->err, CHAT_EEXISTS);
	assert_int_equal(bus_last_id(fx->bus), last);
	assert_int_equal(waiter_calls(rej), 0);
}

static void test_room_create_invalid(void **state)
{
	struct fx *fx = *state;
	struct waiter *rej = waiter_new(fx);
	int64_t last = store_last_event_id(fx->st);
	char topic[4 * CHAT_TOPIC_MAX + 8];
	const struct chat_user *a = &fx->alice;

	assert_int_equal(chat_room_create(fx->chat, a, "", NULL, on_done, rej),
			 CHAT_EINVAL);
	assert_int_equal(
	    chat_room_create(fx->chat, a, NULL, NULL, on_done, rej),
	    CHAT_EINVAL);
	assert_int_equal(
	    chat_room_create(fx->chat, a, "two words", NULL, on_done, rej),
	    CHAT_EINVAL);
	assert_int_equal(
	    chat_room_create(fx->chat, a, "a/b", NULL, on_done, rej),
	    CHAT_EINVAL);
	assert_int_equal(
	    chat_room_create(fx->chat, a, "caf\xc3\xa9", NULL, on_done, rej),
	    CHAT_EINVAL);
	assert_int_equal(chat_room_create(fx->chat, a,
					  "abcdefghijklmnopqrstuvwxyz0123456",
					  NULL, on_done, rej),
			 CHAT_EINVAL); /* 33 characters */
	assert_int_equal(
	    chat_room_create(fx->chat, a, "ok", "bad \xff topic", on_done, rej),
	    CHAT_EINVAL);
	for (size_t i = 0; i < CHAT_TOPIC_MAX + 1; i++)
		memcpy(topic + 2 * i, "\xc3\xa9", 2);
	topic[2 * (CHAT_TOPIC_MAX + 1)] = '\0';
	assert_int_equal(
	    chat_room_create(fx->chat, a, "ok", topic, on_done, rej),
	    CHAT_EINVAL); /* 201 characters */
	assert_nothing_queued(fx, rej, last);

	/* 32 characters and a 200-character topic are fine; so is none */
	topic[2 * CHAT_TOPIC_MAX] = '\0';
	struct waiter *w = waiter_new(fx);
	assert_int_equal(chat_room_create(fx->chat, a,
					  "abcdefghijklmnopqrstuvwxyz012345",
					  topic, on_done, w),
			 CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_OK);
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "topic", topic);
	json_decref(obj);

	w = waiter_new(fx);
	assert_int_equal(
	    chat_room_create(fx->chat, a, "quiet", NULL, on_done, w), CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_OK);
}

static void test_join_leave(void **state)
{
	struct fx *fx = *state;
	struct rec *rec = subscribe(fx, fx->alice.id);
	const struct chat_user *c = &fx->carol;

	/* unknown rooms are refused synchronously */
	struct waiter *rej = waiter_new(fx);
	assert_int_equal(chat_join(fx->chat, c, "nosuch", on_done, rej),
			 CHAT_ENOROOM);
	assert_int_equal(chat_join(fx->chat, c, "bad name", on_done, rej),
			 CHAT_ENOROOM);
	assert_int_equal(chat_leave(fx->chat, c, "nosuch", on_done, rej),
			 CHAT_ENOROOM);
	assert_int_equal(chat_leave(fx->chat, c, NULL, on_done, rej),
			 CHAT_ENOROOM);

	/* leaving a room one is not in: decided by the writer */
	struct waiter *w = waiter_new(fx);
	assert_int_equal(chat_leave(fx->chat, c, "lobby", on_done, w), CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_ENOTMEMBER);
	assert_null(w->ev);

	/* join: the bus knows the new member before the ack */
	w = waiter_new(fx);
	w->check_user = c->id;
	assert_int_equal(chat_join(fx->chat, c, "lobby", on_done, w), CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_OK);
	assert_int_equal(event_type(w->ev), EVENT_JOIN);
	assert_int_equal(event_room(w->ev), fx->lobby);
	assert_true(w->member);
	assert_true(w->bus_last >= event_id(w->ev));
	int64_t join_id = event_id(w->ev);
	json_t *obj = event_obj(w->ev);
	assert_member_str(obj, "type", "join");
	assert_member_str(obj, "room", "lobby");
	assert_member_str(obj, "from", "carol");
	json_decref(obj);
	assert_true(bus_is_member(fx->bus, fx->lobby, c->id));

	/* joining twice, under any spelling of the name */
	int64_t last = bus_last_id(fx->bus);
	assert_int_equal(join(fx, c, "lobby"), CHAT_EEXISTS);
	assert_int_equal(join(fx, c, "LOBBY"), CHAT_EEXISTS);
	assert_int_equal(bus_last_id(fx->bus), last);

	/* a member may send now */
	struct waiter *s = send_ok(fx, c, "lobby", "hi all", 6, NULL);
	assert_int_equal(s->err, CHAT_OK);

	/* leave: the bus forgets the member before the ack */
	w = waiter_new(fx);
	w->check_user = c->id;
	assert_int_equal(chat_leave(fx->chat, c, "Lobby", on_done, w), CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_OK);
	assert_int_equal(event_type(w->ev), EVENT_LEAVE);
	assert_false(w->member);
	int64_t leave_id = event_id(w->ev);
	obj = event_obj(w->ev);
	assert_member_str(obj, "type", "leave");
	assert_member_str(obj, "from", "carol");
	json_decref(obj);
	assert_false(bus_is_member(fx->bus, fx->lobby, c->id));
	assert_int_equal(send_sync(fx, rej, c, "lobby", "hi", 2, NULL),
			 CHAT_ENOTMEMBER);

	/* and leaving again */
	w = waiter_new(fx);
	assert_int_equal(chat_leave(fx->chat, c, "lobby", on_done, w), CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_ENOTMEMBER);

	/* alice, in the lobby, saw the join, the message and the leave */
	bus_shard_drain(fx->shard);
	assert_int_equal(rec->n, 3);
	assert_int_equal(rec->ids[0], join_id);
	assert_int_equal(rec->types[0], EVENT_JOIN);
	assert_int_equal(rec->ids[1], event_id(s->ev));
	assert_int_equal(rec->types[1], EVENT_MESSAGE);
	assert_int_equal(rec->ids[2], leave_id);
	assert_int_equal(rec->types[2], EVENT_LEAVE);
	assert_int_equal(waiter_calls(rej), 0);
}

/* --- typing --------------------------------------------------------------- */

static void test_typing(void **state)
{
	struct fx *fx = *state;
	struct rec *bob = subscribe(fx, fx->bob.id);
	struct rec *carol = subscribe(fx, fx->carol.id);
	int64_t last = bus_last_id(fx->bus);
	int64_t stored = store_last_event_id(fx->st);

	assert_int_equal(chat_typing(fx->chat, &fx->alice, "lobby"), CHAT_OK);
	assert_int_equal(chat_typing(fx->chat, &fx->alice, "LOBBY"), CHAT_OK);
	assert_int_equal(chat_typing(fx->chat, &fx->carol, "lobby"),
			 CHAT_ENOTMEMBER);
	assert_int_equal(chat_typing(fx->chat, &fx->alice, "nosuch"),
			 CHAT_ENOROOM);
	assert_int_equal(chat_typing(fx->chat, &fx->alice, "no such"),
			 CHAT_ENOROOM);
	assert_int_equal(chat_typing(fx->chat, &fx->alice, NULL), CHAT_ENOROOM);

	/* ephemeral: no id used, nothing stored */
	assert_int_equal(bus_last_id(fx->bus), last);
	assert_int_equal(store_last_event_id(fx->st), stored);

	bus_shard_drain(fx->shard);
	assert_int_equal(bob->n, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(bob->ids[i], 0);
		assert_int_equal(bob->types[i], EVENT_TYPING);
		json_t *obj = json_of(bob->json[i]);
		assert_null(json_object_get(obj, "id"));
		assert_member_str(obj, "type", "typing");
		assert_member_str(obj, "room", "lobby");
		assert_member_str(obj, "from", "alice");
		json_decref(obj);
	}
	assert_int_equal(carol->n, 0); /* not in the lobby */
}

/* A committed event the bus refuses as out of id order is never silent:
 * counted in natter_bus_id_violations_total (and logged). Provoked by an
 * event published past the store's ids behind chat's back. */
static void test_id_violation_counted(void **state)
{
	struct fx *fx = *state;
	int64_t ahead = store_last_event_id(fx->st) + 100;
	const char *j = "{}";
	struct event *ev = event_new(ahead, EVENT_MESSAGE, fx->lobby,
				     fx->bob.id, j, strlen(j));
	assert_int_equal(bus_publish(fx->bus, ev), 0);
	event_unref(ev);
	assert_int_equal(atomic_load(&fx->metrics.bus_id_violations), 0);
	struct waiter *w = send_ok(fx, &fx->alice, "lobby", "late", 4, NULL);
	assert_int_equal(w->err, CHAT_OK); /* stored, acknowledged */
	assert_true(event_id(w->ev) < ahead);
	assert_int_equal(atomic_load(&fx->metrics.bus_id_violations), 1);
	assert_int_equal(bus_id_violations(fx->bus), 1);
	assert_int_equal(bus_last_id(fx->bus), ahead);
}

/* --- error table ---------------------------------------------------------- */

static void test_err_mapping(void **state)
{
	(void)state;
	/* The HTTP status of each is http's: test_http's
	 * test_chat_error_status. */
	static const struct {
		int err;
		const char *code;
	} want[] = {
	    {CHAT_OK, "ok"},
	    {CHAT_EINVAL, "invalid"},
	    {CHAT_ETOOLONG, "text_too_long"},
	    {CHAT_ENOROOM, "no_such_room"},
	    {CHAT_ENOTMEMBER, "not_a_member"},
	    {CHAT_EEXISTS, "exists"},
	    {CHAT_EINTERNAL, "internal"},
	    {CHAT_ECLOSED, "shutting_down"},
	    {CHAT_EFORBIDDEN, "forbidden"},
	    {CHAT_ENOUSER, "no_such_user"},
	    {CHAT_EBANNED, "banned"},
	    {CHAT_ENOTBANNED, "not_banned"},
	    {CHAT_ENOSUBJECT, "not_a_member"},
	    {CHAT_ENOMSG, "no_such_message"},
	    {CHAT_ENOTAUTHOR, "not_author"},
	    {CHAT_EDELETED, "message_deleted"},
	    {CHAT_EFIXED, "dm_fixed"},
	    {CHAT_EFULL, "storage_full"},
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		assert_string_equal(chat_err_code(want[i].err), want[i].code);
		const char *msg = chat_err_message(want[i].err);
		assert_non_null(msg);
		assert_true(strlen(msg) > 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(msg,
						chat_err_message(want[j].err));
	}
	assert_non_null(strstr(chat_err_message(CHAT_ETOOLONG), "4000"));
	/* anything else is an internal error */
	const int unknown[] = {1, -50, -99, 12345};
	for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
		assert_string_equal(chat_err_code(unknown[i]), "internal");
		assert_string_equal(chat_err_message(unknown[i]),
				    chat_err_message(CHAT_EINTERNAL));
	}
}

/* Rights checks read memory, never SQLite: the store's role and user
 * reads are wrapped at link time (-Wl,--wrap) and counted. */
int __real_store_room_role(struct store *st, int64_t room_id, int64_t user_id);
int __real_store_user_by_id(struct store *st, int64_t id,
			    struct store_user *out);
int __wrap_store_room_role(struct store *st, int64_t room_id, int64_t user_id);
int __wrap_store_user_by_id(struct store *st, int64_t id,
			    struct store_user *out);
static atomic_int store_role_reads;

int __wrap_store_room_role(struct store *st, int64_t room_id, int64_t user_id)
{
	atomic_fetch_add(&store_role_reads, 1);
	return __real_store_room_role(st, room_id, user_id);
}

int __wrap_store_user_by_id(struct store *st, int64_t id,
			    struct store_user *out)
{
	atomic_fetch_add(&store_role_reads, 1);
	return __real_store_user_by_id(st, id, out);
}

static void test_roles_from_memory(void **state)
{
	struct fx *fx = *state;
	struct chat *c = fx->chat;
	struct waiter *w = waiter_new(fx);
	assert_int_equal(
	    chat_room_create(c, &fx->alice, "mods", NULL, on_done, w), CHAT_OK);
	wait_done(w);
	assert_int_equal(w->err, CHAT_OK);
	int64_t room = event_room(w->ev);
	assert_int_equal(join(fx, &fx->bob, "mods"), CHAT_OK);

	atomic_store(&store_role_reads, 0);
	/* the owner, from the commit hook that saw the room created */
	assert_true(chat_can_moderate(c, fx->alice.id, room));
	assert_false(chat_can_moderate(c, fx->bob.id, room));
	assert_false(chat_is_admin(c, fx->bob.id));
	assert_int_equal(atomic_load(&store_role_reads), 0);

	char rn[33], tn[33];
	int role = 0;
	assert_int_equal(chat_moderator_set(c, &fx->alice, "mods", "bob", true,
					    rn, tn, &role),
			 CHAT_OK);
	assert_int_equal(role, STORE_ROLE_MODERATOR);
	atomic_store(&store_role_reads, 0);
	assert_true(chat_can_moderate(c, fx->bob.id, room));
	assert_int_equal(atomic_load(&store_role_reads), 0);
	assert_int_equal(__real_store_room_role(fx->st, room, fx->bob.id),
			 STORE_ROLE_MODERATOR);

	/* a moderator who leaves stops being one, also after a rejoin (as
	 * the store's trigger says) */
	struct waiter *l = waiter_new(fx);
	assert_int_equal(chat_leave(c, &fx->bob, "mods", on_done, l), CHAT_OK);
	wait_done(l);
	assert_false(chat_can_moderate(c, fx->bob.id, room));
	assert_int_equal(join(fx, &fx->bob, "mods"), CHAT_OK);
	assert_false(chat_can_moderate(c, fx->bob.id, room));
	assert_int_equal(__real_store_room_role(fx->st, room, fx->bob.id),
			 STORE_ROLE_MEMBER);
	/* revoking works the same way */
	assert_int_equal(chat_moderator_set(c, &fx->alice, "mods", "bob", true,
					    rn, tn, &role),
			 CHAT_OK);
	assert_int_equal(chat_moderator_set(c, &fx->alice, "mods", "bob", false,
					    rn, tn, &role),
			 CHAT_OK);
	assert_int_equal(role, STORE_ROLE_MEMBER);
	assert_false(chat_can_moderate(c, fx->bob.id, room));

	/* an admin named behind natterd's back (natterctl) is not read on
	 * the caller's thread; chat_admins_refresh (HTTP threads, at most
	 * once a second) picks it up */
	assert_int_equal(store_user_admin_set(fx->st, fx->carol.id, true),
			 STORE_OK);
	atomic_store(&store_role_reads, 0);
	assert_false(chat_is_admin(c, fx->carol.id));
	assert_false(chat_can_moderate(c, fx->carol.id, room));
	assert_int_equal(atomic_load(&store_role_reads), 0);
	struct timespec pause = {1, 100 * 1000000L};
	nanosleep(&pause, NULL);
	chat_admins_refresh(c);
	assert_true(chat_is_admin(c, fx->carol.id));
	assert_true(chat_can_moderate(c, fx->carol.id, room));
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_send_invalid_text),
	    T(test_send_whitespace_allowed),
	    T(test_send_length),
	    T(test_send_client_id),
	    T(test_send_room_and_membership),
	    T(test_send_publishes_before_done),
	    T(test_send_renders_markdown),
	    T(test_send_duplicate_client_id),
	    T(test_send_many_in_order),
	    T(test_room_create),
	    T(test_room_create_invalid),
	    T(test_join_leave),
	    T(test_typing),
	    T(test_id_violation_counted),
	    T(test_roles_from_memory),
	    cmocka_unit_test(test_err_mapping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
