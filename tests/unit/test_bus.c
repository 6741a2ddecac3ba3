/* Unit tests for bus, through bus.h only: fan-out to members, shards,
 * membership changes in stream order, replay from the ring and from a fake
 * history, resume errors, and a multi-threaded stress run that checks every
 * subscriber sees gap-free, strictly increasing ids while others subscribe,
 * unsubscribe and drain concurrently. Shards are driven by calling
 * bus_shard_drain() directly; wake() only counts. */

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <cmocka.h>

#include "core/bus.h"
#include "core/link.h"
#include "core/replay.h"

#define LOBBY 10
#define ANNEX 20
#define ALICE 1
#define BOB 2
#define CAROL 3

/* ---- a fake subscriber that records what it gets ---- */

#define REC_MAX 256

struct rec {
	int hellos;
	struct bus_resume resume;
	size_t n;
	int64_t ids[REC_MAX];
	enum event_type types[REC_MAX];
	int64_t rooms[REC_MAX];
};

static void rec_hello(void *arg, const struct bus_resume *r)
{
	struct rec *rec = arg;
	assert_int_equal(rec->n, 0); /* hello comes first */
	rec->hellos++;
	rec->resume = *r;
}

static void rec_deliver(void *arg, struct event *ev)
{
	struct rec *rec = arg;
	assert_true(rec->n < REC_MAX);
	rec->ids[rec->n] = event_id(ev);
	rec->types[rec->n] = event_type(ev);
	rec->rooms[rec->n] = event_room(ev);
	rec->n++;
}

static const struct bus_sub_ops rec_ops = {rec_hello, rec_deliver};

static void assert_ids(const struct rec *rec, const int64_t *want, size_t n)
{
	if (rec->n != n) {
		fprintf(stderr, "got %zu ids:", rec->n);
		for (size_t i = 0; i < rec->n; i++)
			fprintf(stderr, " %lld", (long long)rec->ids[i]);
		fprintf(stderr, "\n");
	}
	assert_int_equal(rec->n, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rec->ids[i], want[i]);
}

#define ASSERT_IDS(rec, ...)                                                   \
	do {                                                                   \
		const int64_t want_[] = {__VA_ARGS__};                         \
		assert_ids((rec), want_, sizeof(want_) / sizeof(want_[0]));    \
	} while (0)

/* ---- helpers ---- */

static void count_wake(void *arg)
{
	int *n = arg;
	(*n)++;
}

static struct event *mk(int64_t id, enum event_type type, int64_t room,
			int64_t user)
{
	char json[64];
	int n = snprintf(json, sizeof(json), "{\"id\":%lld}", (long long)id);
	return event_new(id, type, room, user, json, (size_t)n);
}

static void pub(struct bus *bus, int64_t id, enum event_type type, int64_t room,
		int64_t user)
{
	struct event *ev = mk(id, type, room, user);
	bus_publish(bus, ev);
	event_unref(ev); /* the bus took its own references */
}

static struct bus_sub *sub_ok(struct bus_shard *shard, int64_t user,
			      int64_t since, struct rec *rec)
{
	int err = 0;
	struct bus_sub *s =
	    bus_subscribe(shard, user, since, &rec_ops, rec, &err);
	assert_non_null(s);
	assert_int_equal(rec->hellos, 1);
	return s;
}

/* ---- a fake history (the store): every event ever published ----
 * It answers as the real store does (store.h, store_events_after): the
 * events of the rooms the user belonged to at each event, the user's own
 * join counting from that event on and the user's own leave included. */

#define FAKE_MEMBERS_MAX 16

struct fake_store {
	struct event *evs[256];
	size_t n;
	/* membership before the first event (fake_member_add) */
	int64_t rooms0[FAKE_MEMBERS_MAX], users0[FAKE_MEMBERS_MAX];
	size_t nmembers0;
	int calls;
	int fail;
	int64_t room; /* if set, history returns only this room's events */
	int64_t last_user, last_after;
	size_t last_limit;
	/* Optional: called once during the first fetch, with no bus lock
	 * held, to publish concurrently with it. */
	void (*during)(struct fake_store *fs);
	struct bus *bus;
};

/* A member from the start: in the bus and in the fake's history. */
static void fake_member_add(struct fake_store *fs, int64_t room, int64_t user)
{
	assert_true(fs->nmembers0 < FAKE_MEMBERS_MAX);
	fs->rooms0[fs->nmembers0] = room;
	fs->users0[fs->nmembers0++] = user;
	bus_member_add(fs->bus, room, user);
}

static void store_pub(struct fake_store *fs, int64_t id, enum event_type type,
		      int64_t room, int64_t user)
{
	struct event *ev = mk(id, type, room, user);
	fs->evs[fs->n++] = ev; /* the store keeps this reference */
	bus_publish(fs->bus, ev);
}

static void store_fini(struct fake_store *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		event_unref(fs->evs[i]);
}

/* A tiny set of rooms. */
struct roomset {
	int64_t v[FAKE_MEMBERS_MAX * 4];
	size_t n;
};

static bool roomset_has(const struct roomset *r, int64_t room)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i] == room)
			return true;
	return false;
}

static void roomset_set(struct roomset *r, int64_t room, bool in)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i] == room) {
			if (!in)
				r->v[i] = r->v[--r->n];
			return;
		}
	}
	if (in) {
		assert_true(r->n < FAKE_MEMBERS_MAX * 4);
		r->v[r->n++] = room;
	}
}

/* Apply ev's change of user's membership to rooms; returns the change. */
static int fake_apply(struct roomset *rooms, const struct event *ev,
		      int64_t user, bool before)
{
	if (event_user(ev) != user)
		return 0;
	int change =
	    event_type(ev) == EVENT_JOIN || event_type(ev) == EVENT_ROOM ? 1
	    : event_type(ev) == EVENT_LEAVE				 ? -1
									 : 0;
	if (change > 0 && before)
		roomset_set(rooms, event_room(ev), true);
	if (change < 0 && !before)
		roomset_set(rooms, event_room(ev), false);
	return change;
}

static int fake_history(void *arg, int64_t user_id, int64_t after, size_t limit,
			struct event ***out, size_t *n)
{
	struct fake_store *fs = arg;
	fs->calls++;
	fs->last_user = user_id;
	fs->last_after = after;
	fs->last_limit = limit;
	if (fs->fail)
		return -1;
	/* What the store has committed at this moment. */
	size_t committed = fs->n;
	if (fs->during) {
		void (*during)(struct fake_store *) = fs->during;
		fs->during = NULL;
		during(fs);
	}
	struct roomset rooms = {0};
	for (size_t i = 0; i < fs->nmembers0; i++)
		if (fs->users0[i] == user_id)
			roomset_set(&rooms, fs->rooms0[i], true);
	struct event **v = malloc((committed + 1) * sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < committed && k < limit; i++) {
		struct event *ev = fs->evs[i];
		fake_apply(&rooms, ev, user_id, true);
		if (event_id(ev) > after &&
		    roomset_has(&rooms, event_room(ev)) &&
		    (!fs->room || event_room(ev) == fs->room))
			v[k++] = event_ref(ev);
		fake_apply(&rooms, ev, user_id, false);
	}
	*out = v;
	*n = k;
	return 0;
}

/* ---- fan-out ---- */

static void test_fanout_members_only(void **state)
{
	(void)state;
	int w = 0;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, count_wake, &w);
	bus_member_add(bus, LOBBY, ALICE);
	bus_member_add(bus, LOBBY, BOB);
	bus_member_add(bus, ANNEX, CAROL);
	assert_true(bus_is_member(bus, LOBBY, ALICE));
	assert_false(bus_is_member(bus, LOBBY, CAROL));

	struct rec a = {0}, b = {0}, c = {0};
	struct bus_sub *sa = sub_ok(sh, ALICE, -1, &a);
	struct bus_sub *sb = sub_ok(sh, BOB, -1, &b);
	struct bus_sub *sc = sub_ok(sh, CAROL, -1, &c);
	assert_int_equal(bus_subscriber_count(bus), 3);

	pub(bus, 1, EVENT_MESSAGE, LOBBY, ALICE);
	assert_int_equal(w, 1);
	pub(bus, 2, EVENT_MESSAGE, LOBBY, BOB);
	assert_int_equal(w, 1);	  /* inbox was not empty: no second wake */
	assert_int_equal(a.n, 0); /* nothing until the shard drains */
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 1, 2);
	ASSERT_IDS(&b, 1, 2);
	assert_int_equal(c.n, 0);

	pub(bus, 3, EVENT_MESSAGE, ANNEX, CAROL);
	assert_int_equal(w, 2);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 1, 2);
	ASSERT_IDS(&c, 3);
	assert_int_equal(bus_last_id(bus), 3);

	bus_unsubscribe(sa);
	bus_unsubscribe(sb);
	bus_unsubscribe(sc);
	bus_unsubscribe(NULL);
	assert_int_equal(bus_subscriber_count(bus), 0);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_two_shards(void **state)
{
	(void)state;
	int w1 = 0, w2 = 0;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *s1 = bus_shard_new(bus, count_wake, &w1);
	struct bus_shard *s2 = bus_shard_new(bus, count_wake, &w2);
	bus_member_add(bus, LOBBY, ALICE);
	bus_member_add(bus, LOBBY, BOB);

	struct rec a1 = {0}, a2 = {0}, b2 = {0}, c1 = {0};
	struct bus_sub *x1 = sub_ok(s1, ALICE, -1, &a1);
	struct bus_sub *x2 = sub_ok(s2, ALICE, -1, &a2);
	struct bus_sub *x3 = sub_ok(s2, BOB, -1, &b2);
	struct bus_sub *x4 = sub_ok(s1, CAROL, -1, &c1);
	assert_int_equal(bus_subscriber_count(bus), 4);

	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_TYPING, LOBBY, BOB);
	assert_int_equal(w1, 1);
	assert_int_equal(w2, 1);
	bus_shard_drain(s1);
	ASSERT_IDS(&a1, 1, 0);
	assert_int_equal(a2.n, 0); /* s2 not drained yet */
	bus_shard_drain(s2);
	ASSERT_IDS(&a2, 1, 0);
	ASSERT_IDS(&b2, 1, 0);
	assert_int_equal(b2.types[1], EVENT_TYPING);
	assert_int_equal(c1.n, 0); /* non-member: nothing, not even typing */

	bus_unsubscribe(x1);
	bus_unsubscribe(x2);
	bus_unsubscribe(x3);
	bus_unsubscribe(x4);
	bus_shard_free(s1);
	bus_shard_free(s2);
	bus_free(bus);
}

static void test_shard_pick_round_robin(void **state)
{
	(void)state;
	struct bus *bus = bus_new(4, 4, 0, NULL, NULL);
	assert_null(bus_shard_pick(bus));
	struct bus_shard *s1 = bus_shard_new(bus, NULL, NULL);
	struct bus_shard *s2 = bus_shard_new(bus, NULL, NULL);
	struct bus_shard *p1 = bus_shard_pick(bus), *p2 = bus_shard_pick(bus);
	struct bus_shard *p3 = bus_shard_pick(bus);
	assert_ptr_not_equal(p1, p2);
	assert_ptr_equal(p1, p3);
	assert_true((p1 == s1 && p2 == s2) || (p1 == s2 && p2 == s1));
	bus_shard_free(s1);
	assert_ptr_equal(bus_shard_pick(bus), s2);
	bus_shard_free(s2);
	bus_free(bus);
}

/* ---- membership in stream order ---- */

static void test_join_midstream(void **state)
{
	(void)state;
	int w1 = 0, w2 = 0;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *s1 = bus_shard_new(bus, count_wake, &w1);
	struct bus_shard *s2 = bus_shard_new(bus, count_wake, &w2);
	bus_member_add(bus, LOBBY, BOB);

	struct rec a1 = {0}, a1b = {0}, a2 = {0}, b = {0};
	struct bus_sub *x1 = sub_ok(s1, ALICE, -1, &a1);
	struct bus_sub *x2 = sub_ok(s1, ALICE, -1, &a1b);
	struct bus_sub *x3 = sub_ok(s2, ALICE, -1, &a2);
	struct bus_sub *x4 = sub_ok(s2, BOB, -1, &b);

	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 2, EVENT_TYPING, LOBBY, BOB);
	pub(bus, 3, EVENT_JOIN, LOBBY, ALICE);
	assert_true(bus_is_member(bus, LOBBY, ALICE));
	pub(bus, 4, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_TYPING, LOBBY, BOB);
	bus_shard_drain(s1);
	bus_shard_drain(s2);
	/* Event 2 was an id on an ephemeral type: dropped. */
	ASSERT_IDS(&a1, 3, 4, 0);
	ASSERT_IDS(&a1b, 3, 4, 0);
	ASSERT_IDS(&a2, 3, 4, 0);
	assert_int_equal(a1.types[0], EVENT_JOIN);
	ASSERT_IDS(&b, 1, 3, 4, 0);

	bus_unsubscribe(x1);
	bus_unsubscribe(x2);
	bus_unsubscribe(x3);
	bus_unsubscribe(x4);
	bus_shard_free(s1);
	bus_shard_free(s2);
	bus_free(bus);
}

static void test_leave_delivers_then_stops(void **state)
{
	(void)state;
	int w = 0;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, count_wake, &w);
	bus_member_add(bus, LOBBY, ALICE);
	bus_member_add(bus, LOBBY, BOB);
	bus_member_add(bus, ANNEX, ALICE);

	struct rec a = {0}, a2 = {0}, b = {0};
	struct bus_sub *x1 = sub_ok(sh, ALICE, -1, &a);
	struct bus_sub *x2 = sub_ok(sh, ALICE, -1, &a2);
	struct bus_sub *x3 = sub_ok(sh, BOB, -1, &b);

	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 2, EVENT_LEAVE, LOBBY, ALICE);
	assert_false(bus_is_member(bus, LOBBY, ALICE));
	pub(bus, 3, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_TYPING, LOBBY, BOB);
	pub(bus, 4, EVENT_MESSAGE, ANNEX, ALICE);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 1, 2, 4);
	assert_int_equal(a.types[1], EVENT_LEAVE);
	ASSERT_IDS(&a2, 1, 2, 4);
	ASSERT_IDS(&b, 1, 2, 3, 0);

	bus_unsubscribe(x1);
	bus_unsubscribe(x2);
	bus_unsubscribe(x3);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_room_event_adds_creator(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	struct rec a = {0}, b = {0};
	struct bus_sub *x1 = sub_ok(sh, ALICE, -1, &a);
	struct bus_sub *x2 = sub_ok(sh, BOB, -1, &b);
	pub(bus, 1, EVENT_ROOM, ANNEX, ALICE);
	pub(bus, 2, EVENT_MESSAGE, ANNEX, ALICE);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 1, 2);
	assert_int_equal(b.n, 0);
	assert_true(bus_is_member(bus, ANNEX, ALICE));
	bus_unsubscribe(x1);
	bus_unsubscribe(x2);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_unsubscribe_stops_delivery(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	struct rec a = {0}, a2 = {0};
	struct bus_sub *x1 = sub_ok(sh, ALICE, -1, &a);
	struct bus_sub *x2 = sub_ok(sh, ALICE, -1, &a2);
	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	bus_unsubscribe(x1); /* event 1 still in the inbox */
	assert_int_equal(bus_subscriber_count(bus), 1);
	bus_shard_drain(sh);
	assert_int_equal(a.n, 0);
	ASSERT_IDS(&a2, 1);
	/* A join after the first sub left reaches only the live one. */
	pub(bus, 2, EVENT_JOIN, ANNEX, ALICE);
	bus_shard_drain(sh);
	ASSERT_IDS(&a2, 1, 2);
	bus_unsubscribe(x2);
	bus_shard_free(sh);
	bus_free(bus);
}

/* ---- publish ordering ---- */

static void test_out_of_order_ignored(void **state)
{
	(void)state;
	int w = 0;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, count_wake, &w);
	bus_member_add(bus, LOBBY, ALICE);
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, -1, &a);

	pub(bus, 5, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 3, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 5, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_MESSAGE, LOBBY, BOB);	 /* persistent without id */
	pub(bus, -1, EVENT_MESSAGE, LOBBY, BOB); /* nonsense id */
	pub(bus, 3, EVENT_LEAVE, LOBBY, ALICE);	 /* stale: no effect */
	assert_true(bus_is_member(bus, LOBBY, ALICE));
	pub(bus, 6, EVENT_MESSAGE, LOBBY, BOB);
	assert_int_equal(bus_last_id(bus), 6);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 5, 6);

	/* The ring holds only the accepted ones. */
	struct rec r = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 0, &r);
	ASSERT_IDS(&r, 5, 6);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

/* ---- resume ---- */

static void test_ring_replay_since(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		pub(bus, i, EVENT_MESSAGE, i % 3 ? LOBBY : ANNEX, BOB);
	bus_shard_drain(sh); /* nobody listening yet */

	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 4, &a);
	assert_int_equal(a.resume.cursor, 10);
	assert_true(a.resume.recovered);
	ASSERT_IDS(&a, 5, 7, 8, 10); /* 6 and 9 are in the annex */
	pub(bus, 11, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 5, 7, 8, 10, 11);

	/* since == last id: nothing to replay, still recovered. */
	struct rec b = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 11, &b);
	assert_true(b.resume.recovered);
	assert_int_equal(b.resume.cursor, 11);
	assert_int_equal(b.n, 0);

	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_replay_before_drain_no_duplicates(void **state)
{
	(void)state;
	int w = 0;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, count_wake, &w);
	bus_member_add(bus, LOBBY, ALICE);
	struct rec live = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, -1, &live);
	for (int i = 1; i <= 5; i++)
		pub(bus, i, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_TYPING, LOBBY, BOB);

	/* Subscribe while 1..5 sit in the inbox, undrained. */
	struct rec r = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 2, &r);
	assert_int_equal(r.resume.cursor, 5);
	ASSERT_IDS(&r, 3, 4, 5);
	bus_shard_drain(sh);
	ASSERT_IDS(&live, 1, 2, 3, 4, 5, 0);
	/* The pending persistent ones were skipped by the cursor; the pending
	 * typing event is live, so it is delivered. */
	ASSERT_IDS(&r, 3, 4, 5, 0);
	pub(bus, 6, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&r, 3, 4, 5, 0, 6);
	ASSERT_IDS(&live, 1, 2, 3, 4, 5, 0, 6);

	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_replay_pending_membership(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	struct rec old = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, -1, &old);
	/* Undrained: alice joins the annex, then leaves the lobby. */
	pub(bus, 1, EVENT_JOIN, ANNEX, ALICE);
	pub(bus, 2, EVENT_LEAVE, LOBBY, ALICE);
	struct rec nw = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 0, &nw);
	ASSERT_IDS(&nw, 1, 2);
	bus_shard_drain(sh);
	ASSERT_IDS(&old, 1, 2);
	ASSERT_IDS(&nw, 1, 2);
	pub(bus, 3, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 4, EVENT_MESSAGE, ANNEX, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&old, 1, 2, 4);
	ASSERT_IDS(&nw, 1, 2, 4);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

/* A kick (or ban) removes its subject, not its sender: the subject gets
 * the kick and nothing of the room after it, live and in ring replay; the
 * moderator stays. */
static void test_kick_removes_subject(void **state)
{
	(void)state;
	struct bus *bus = bus_new(64, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	bus_member_add(bus, LOBBY, BOB);
	struct rec a = {0}, b = {0};
	struct bus_sub *xa = sub_ok(sh, ALICE, -1, &a);
	struct bus_sub *xb = sub_ok(sh, BOB, -1, &b);

	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	struct event *kick = mk(2, EVENT_KICK, LOBBY, ALICE);
	event_subject_set(kick, BOB);
	assert_int_equal(event_subject(kick), BOB);
	bus_publish(bus, kick);
	event_unref(kick);
	assert_false(bus_is_member(bus, LOBBY, BOB));
	assert_true(bus_is_member(bus, LOBBY, ALICE));
	pub(bus, 3, EVENT_MESSAGE, LOBBY, ALICE);
	pub(bus, 0, EVENT_TYPING, LOBBY, ALICE);
	bus_shard_drain(sh);
	ASSERT_IDS(&b, 1, 2);
	assert_int_equal(b.types[1], EVENT_KICK);
	ASSERT_IDS(&a, 1, 2, 3, 0); /* the typing too, not to bob */

	/* ring replay from before the kick: the same */
	struct rec b2 = {0};
	struct bus_sub *yb = sub_ok(sh, BOB, 0, &b2);
	ASSERT_IDS(&b2, 1, 2);
	/* a ban removes its subject the same way; the sender stays */
	pub(bus, 4, EVENT_JOIN, LOBBY, BOB);
	struct event *ban = mk(5, EVENT_BAN, LOBBY, ALICE);
	event_subject_set(ban, BOB);
	bus_publish(bus, ban);
	event_unref(ban);
	assert_false(bus_is_member(bus, LOBBY, BOB));
	assert_true(bus_is_member(bus, LOBBY, ALICE));
	pub(bus, 6, EVENT_MESSAGE, LOBBY, ALICE);
	bus_shard_drain(sh);
	ASSERT_IDS(&b, 1, 2, 4, 5);
	ASSERT_IDS(&a, 1, 2, 3, 0, 4, 5, 6);
	bus_unsubscribe(xa);
	bus_unsubscribe(xb);
	bus_unsubscribe(yb);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_replay_follows_membership_history(void **state)
{
	(void)state;
	struct bus *bus = bus_new(64, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 2, EVENT_MESSAGE, ANNEX, BOB); /* not yet a member */
	pub(bus, 3, EVENT_JOIN, ANNEX, ALICE);
	pub(bus, 4, EVENT_MESSAGE, ANNEX, BOB);
	pub(bus, 5, EVENT_LEAVE, LOBBY, ALICE);
	pub(bus, 6, EVENT_MESSAGE, LOBBY, BOB); /* no longer a member */
	pub(bus, 7, EVENT_ROOM, 30, ALICE);
	pub(bus, 8, EVENT_MESSAGE, 30, ALICE);
	pub(bus, 9, EVENT_LEAVE, 40, ALICE);	/* never a member of 40 */
	pub(bus, 10, EVENT_JOIN, LOBBY, ALICE); /* back */
	pub(bus, 11, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);

	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 0, &a);
	ASSERT_IDS(&a, 1, 3, 4, 5, 7, 8, 10, 11);
	struct rec a2 = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 5, &a2);
	ASSERT_IDS(&a2, 7, 8, 10, 11);
	/* The live index agrees with the replay. */
	pub(bus, 12, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 13, EVENT_MESSAGE, ANNEX, BOB);
	pub(bus, 14, EVENT_MESSAGE, 30, BOB);
	pub(bus, 15, EVENT_MESSAGE, 40, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&a2, 7, 8, 10, 11, 12, 13, 14);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_ephemeral_not_replayed(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	struct rec live = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, -1, &live);
	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_TYPING, LOBBY, BOB);
	pub(bus, 0, EVENT_PRESENCE, LOBBY, BOB);
	pub(bus, 2, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&live, 1, 0, 0, 2);
	assert_int_equal(live.types[1], EVENT_TYPING);
	assert_int_equal(live.types[2], EVENT_PRESENCE);
	assert_int_equal(bus_last_id(bus), 2);

	struct rec r = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 0, &r);
	ASSERT_IDS(&r, 1, 2);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

/* A personal ephemeral event reaches every connection of its user, on
 * every shard, and nobody else, whatever rooms they share. */
static void test_personal_event(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh1 = bus_shard_new(bus, NULL, NULL);
	struct bus_shard *sh2 = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	bus_member_add(bus, LOBBY, BOB);
	struct rec a1 = {0}, a2 = {0}, b = {0};
	struct bus_sub *x = sub_ok(sh1, ALICE, -1, &a1);
	struct bus_sub *y = sub_ok(sh2, ALICE, -1, &a2);
	struct bus_sub *z = sub_ok(sh1, BOB, -1, &b);
	pub(bus, 0, EVENT_PRESENCE, BUS_PERSONAL, ALICE);
	pub(bus, 1, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh1);
	bus_shard_drain(sh2);
	ASSERT_IDS(&a1, 0, 1);
	ASSERT_IDS(&a2, 0, 1);
	ASSERT_IDS(&b, 1);
	assert_int_equal(a1.types[0], EVENT_PRESENCE);
	/* never persistent */
	struct event *ev =
	    event_new(2, EVENT_MESSAGE, BUS_PERSONAL, ALICE, "{}", 2);
	assert_int_equal(bus_publish(bus, ev), BUS_EORDER);
	event_unref(ev);
	assert_int_equal(bus_last_id(bus), 1);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_unsubscribe(z);
	bus_shard_free(sh1);
	bus_shard_free(sh2);
	bus_free(bus);
}

static void test_since_negative_no_replay(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	for (int i = 1; i <= 3; i++)
		pub(bus, i, EVENT_MESSAGE, LOBBY, BOB);
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, -1, &a);
	assert_int_equal(a.resume.cursor, 3);
	assert_true(a.resume.recovered);
	bus_shard_drain(sh); /* 1..3 pending: skipped */
	assert_int_equal(a.n, 0);
	pub(bus, 4, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 4);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_since_future(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 7, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	assert_int_equal(bus_last_id(bus), 7);
	struct rec a = {0};
	int err = 0;
	assert_null(bus_subscribe(sh, ALICE, 8, &rec_ops, &a, &err));
	assert_int_equal(err, BUS_EFUTURE);
	assert_int_equal(a.hellos, 0);
	assert_int_equal(bus_subscriber_count(bus), 0);
	/* Exactly the start-up id is fine, with nothing to replay. */
	struct bus_sub *x = sub_ok(sh, ALICE, 7, &a);
	assert_true(a.resume.recovered);
	assert_int_equal(a.resume.cursor, 7);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_history_on_ring_overflow(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);

	/* The ring (4 slots) holds 7..10: since=6 needs no history. */
	struct rec r = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 6, &r);
	assert_int_equal(fs.calls, 0);
	ASSERT_IDS(&r, 7, 8, 9, 10);
	bus_unsubscribe(x);

	/* since=2: history. */
	struct rec a = {0};
	x = sub_ok(sh, ALICE, 2, &a);
	assert_int_equal(fs.calls, 1);
	assert_int_equal(fs.last_user, ALICE);
	assert_int_equal(fs.last_after, 2);
	assert_int_equal(fs.last_limit, 100);
	assert_true(a.resume.recovered);
	assert_int_equal(a.resume.cursor, 10);
	ASSERT_IDS(&a, 3, 4, 5, 6, 7, 8, 9, 10);
	store_pub(&fs, 11, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 3, 4, 5, 6, 7, 8, 9, 10, 11);
	bus_unsubscribe(x);

	/* History fails. */
	fs.fail = 1;
	struct rec f = {0};
	int err = 0;
	assert_null(bus_subscribe(sh, ALICE, 1, &rec_ops, &f, &err));
	assert_int_equal(err, BUS_EHISTORY);
	assert_int_equal(f.hellos, 0);
	assert_int_equal(bus_subscriber_count(bus), 0);

	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

/* Published while the history fetch runs: comes from the ring. */
static void publish_one_more(struct fake_store *fs)
{
	store_pub(fs, 11, EVENT_MESSAGE, LOBBY, BOB);
}

/* The cursor fell out of the ring, and while away the user left the room
 * and joined it again: history must follow membership as of each event,
 * as the ring does, so the user gets its own leave, nothing of the room
 * while out, and everything from its join on. (With a history that used
 * today's membership, 3 and 4 came too.) */
static void test_history_membership_leave_rejoin(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	fake_member_add(&fs, LOBBY, BOB);
	store_pub(&fs, 1, EVENT_MESSAGE, LOBBY, BOB);
	store_pub(&fs, 2, EVENT_LEAVE, LOBBY, ALICE);
	store_pub(&fs, 3, EVENT_MESSAGE, LOBBY, BOB); /* alice is out */
	store_pub(&fs, 4, EVENT_MESSAGE, LOBBY, BOB);
	store_pub(&fs, 5, EVENT_JOIN, LOBBY, ALICE);
	for (int i = 6; i <= 12; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);

	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 0, &a);
	assert_int_equal(fs.calls, 1); /* 0 is below the ring */
	assert_true(a.resume.recovered);
	ASSERT_IDS(&a, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12);
	struct rec b = {0};
	struct bus_sub *y = sub_ok(sh, ALICE, 2, &b);
	ASSERT_IDS(&b, 5, 6, 7, 8, 9, 10, 11, 12);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	store_fini(&fs);
	bus_free(bus);
}

/* The subscribe in two steps (bus.h): the history read runs first, on any
 * thread, and the locked part delivers it; if the ring moved past the
 * fetch meanwhile the locked part says BUS_ESTALE and a second read
 * completes it. Nothing lost, nothing twice. */
static void test_prefetched_subscribe(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	assert_false(bus_history_needed(bus, 8)); /* in the ring */
	assert_true(bus_history_needed(bus, 2));
	assert_false(bus_history_needed(bus, -1));

	struct bus_prefetch *p = bus_prefetch_new(ALICE, 2);
	assert_int_equal(bus_prefetch_run(bus, p), 0);
	assert_int_equal(fs.calls, 1);
	/* published after the fetch, before the locked part: from the ring */
	store_pub(&fs, 11, EVENT_MESSAGE, LOBBY, BOB);
	struct rec a = {0};
	int err = 0;
	struct bus_sub *x = bus_subscribe_prefetched(sh, p, &rec_ops, &a, &err);
	assert_non_null(x);
	ASSERT_IDS(&a, 3, 4, 5, 6, 7, 8, 9, 10, 11);
	bus_shard_drain(sh); /* 11 again from the inbox: skipped */
	ASSERT_IDS(&a, 3, 4, 5, 6, 7, 8, 9, 10, 11);
	bus_prefetch_free(p);

	/* the ring overtakes the fetch: stale, then a second read */
	p = bus_prefetch_new(ALICE, 2);
	assert_int_equal(bus_prefetch_run(bus, p), 0); /* complete to 11 */
	for (int i = 12; i <= 20; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB); /* floor 16 */
	struct rec b = {0};
	assert_null(bus_subscribe_prefetched(sh, p, &rec_ops, &b, &err));
	assert_int_equal(err, BUS_ESTALE);
	assert_int_equal(b.hellos, 0);
	assert_int_equal(bus_prefetch_run(bus, p), 0);
	struct bus_sub *y = bus_subscribe_prefetched(sh, p, &rec_ops, &b, &err);
	assert_non_null(y);
	assert_true(b.resume.recovered);
	assert_int_equal(b.n, 18); /* 3..20 */
	assert_int_equal(b.ids[0], 3);
	assert_int_equal(b.ids[17], 20);
	bus_prefetch_free(p);

	/* a future cursor is refused by the read */
	p = bus_prefetch_new(ALICE, 99);
	assert_int_equal(bus_prefetch_run(bus, p), BUS_EFUTURE);
	bus_prefetch_free(p);

	bus_shard_drain(sh);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	store_fini(&fs);
	bus_free(bus);
}

/* The history pool: fetches run on its workers, the queue is bounded and
 * one user may hold only per_user_max of it; a refusal is immediate. */
struct pool_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool release; /* the blocked fetch may finish */
	bool started;
	int done;
	int rc[8];
};

static struct pool_wait pw = {.mu = PTHREAD_MUTEX_INITIALIZER,
			      .cv = PTHREAD_COND_INITIALIZER};

static void pool_block(struct fake_store *fs)
{
	(void)fs;
	pthread_mutex_lock(&pw.mu);
	pw.started = true;
	pthread_cond_broadcast(&pw.cv);
	while (!pw.release)
		pthread_cond_wait(&pw.cv, &pw.mu);
	pthread_mutex_unlock(&pw.mu);
}

static void pool_done(void *arg, struct bus_prefetch *p, int rc)
{
	(void)p;
	pthread_mutex_lock(&pw.mu);
	pw.rc[(intptr_t)arg] = rc;
	pw.done++;
	pthread_cond_broadcast(&pw.cv);
	pthread_mutex_unlock(&pw.mu);
}

static void test_replay_pool_bounded(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	fake_member_add(&fs, LOBBY, BOB);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	fs.during = pool_block; /* the first fetch blocks its worker */

	struct replay *r = replay_new(bus, 1, 2, 1);
	assert_non_null(r);
	struct bus_prefetch *p[5];
	for (int i = 0; i < 5; i++)
		p[i] = bus_prefetch_new(i == 0 || i == 1 ? ALICE : BOB, 1);
	assert_int_equal(replay_submit(r, ALICE, p[0], pool_done, (void *)0),
			 0);
	pthread_mutex_lock(&pw.mu);
	while (!pw.started)
		pthread_cond_wait(&pw.cv, &pw.mu);
	pthread_mutex_unlock(&pw.mu);
	/* alice has one job already: per_user_max is 1 */
	assert_int_equal(replay_submit(r, ALICE, p[1], pool_done, (void *)1),
			 REPLAY_EBUSY);
	assert_int_equal(replay_submit(r, BOB, p[2], pool_done, (void *)2), 0);
	assert_int_equal(replay_submit(r, CAROL, p[3], pool_done, (void *)3),
			 0);
	/* two waiting: the queue is full */
	assert_int_equal(replay_submit(r, 4, p[4], pool_done, (void *)4),
			 REPLAY_EBUSY);
	assert_true(replay_retry_after(r) > 0);

	pthread_mutex_lock(&pw.mu);
	pw.release = true;
	pthread_cond_broadcast(&pw.cv);
	while (pw.done < 3)
		pthread_cond_wait(&pw.cv, &pw.mu);
	pthread_mutex_unlock(&pw.mu);
	assert_int_equal(pw.rc[0], 0);
	assert_int_equal(pw.rc[2], 0);
	assert_int_equal(pw.rc[3], 0);
	assert_int_equal(fs.calls, 3);
	/* with the queue drained, alice may ask again */
	assert_int_equal(replay_submit(r, ALICE, p[1], pool_done, (void *)1),
			 0);
	replay_free(r); /* waits for its workers */
	assert_true(pw.done == 4);
	for (int i = 0; i < 5; i++)
		bus_prefetch_free(p[i]);
	store_fini(&fs);
	bus_free(bus);
}

/* A place reserved before a WebSocket upgrade counts as a queued job
 * (for the queue and for its user) until it is submitted, which cannot be
 * refused then, or released. */
static void test_replay_reserve(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	pthread_mutex_lock(&pw.mu);
	int done_before = pw.done;
	pthread_mutex_unlock(&pw.mu);

	struct replay *r = replay_new(bus, 1, 2, 1);
	assert_non_null(r);
	assert_int_equal(replay_reserve(r, ALICE), 0);
	/* alice's share is taken by the reservation */
	assert_int_equal(replay_reserve(r, ALICE), REPLAY_EBUSY);
	struct bus_prefetch *p = bus_prefetch_new(ALICE, 1);
	assert_int_equal(replay_submit(r, ALICE, p, pool_done, (void *)5),
			 REPLAY_EBUSY);
	assert_int_equal(replay_reserve(r, BOB), 0);
	/* two places held: the queue is full for everyone else */
	assert_int_equal(replay_reserve(r, CAROL), REPLAY_EBUSY);
	replay_release(r, BOB);
	assert_int_equal(replay_reserve(r, CAROL), 0);
	replay_release(r, CAROL);
	/* alice's reserved fetch runs */
	assert_int_equal(
	    replay_submit_reserved(r, ALICE, p, pool_done, (void *)5), 0);
	pthread_mutex_lock(&pw.mu);
	while (pw.done < done_before + 1)
		pthread_cond_wait(&pw.cv, &pw.mu);
	pthread_mutex_unlock(&pw.mu);
	assert_int_equal(pw.rc[5], 0);
	/* its place is back once done: alice may reserve again */
	int back = REPLAY_EBUSY;
	for (int i = 0; i < 300 && back != 0; i++)
		if ((back = replay_reserve(r, ALICE)) != 0)
			usleep(10000);
	assert_int_equal(back, 0);
	replay_release(r, ALICE);
	replay_free(r);
	bus_prefetch_free(p);
	store_fini(&fs);
	bus_free(bus);
}

/* replay_subscribe: a thread that may wait has the read done on the pool
 * and gets the same replay as bus_subscribe; without a pool it is
 * bus_subscribe. */
static void test_replay_subscribe(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	struct replay *r = replay_new(bus, 1, 4, 1);
	struct rec a = {0}, b = {0}, c = {0};
	int err = 0;
	struct bus_sub *x =
	    replay_subscribe(r, sh, ALICE, 3, &rec_ops, &a, &err);
	assert_non_null(x);
	ASSERT_IDS(&a, 4, 5, 6, 7, 8, 9, 10);
	assert_int_equal(fs.calls, 1);
	struct bus_sub *y =
	    replay_subscribe(NULL, sh, ALICE, 3, &rec_ops, &b, &err);
	ASSERT_IDS(&b, 4, 5, 6, 7, 8, 9, 10);
	assert_int_equal(fs.calls, 2);
	assert_null(replay_subscribe(r, sh, ALICE, 99, &rec_ops, &c, &err));
	assert_int_equal(err, BUS_EFUTURE);
	replay_free(r);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	store_fini(&fs);
	bus_free(bus);
}

/* An id at or below the newest is refused loudly: a status and a count,
 * never a silent drop. */
static void test_publish_id_violation(void **state)
{
	(void)state;
	struct bus *bus = bus_new(16, 100, 0, NULL, NULL);
	struct event *e5 = mk(5, EVENT_MESSAGE, LOBBY, BOB);
	struct event *e3 = mk(3, EVENT_MESSAGE, LOBBY, BOB);
	struct event *e0 = mk(0, EVENT_MESSAGE, LOBBY, BOB);
	struct event *t7 = mk(7, EVENT_TYPING, LOBBY, BOB);
	struct event *t0 = mk(0, EVENT_TYPING, LOBBY, BOB);
	assert_int_equal(bus_id_violations(bus), 0);
	assert_int_equal(bus_publish(bus, e5), 0);
	assert_int_equal(bus_publish(bus, e5), BUS_EORDER);
	assert_int_equal(bus_publish(bus, e3), BUS_EORDER);
	assert_int_equal(bus_publish(bus, e0), BUS_EORDER);
	assert_int_equal(bus_publish(bus, t7), BUS_EORDER);
	assert_int_equal(bus_publish(bus, t0), 0);
	assert_int_equal(bus_id_violations(bus), 4);
	assert_int_equal(bus_last_id(bus), 5);
	/* the local link (link.h) is bus_publish, status and all */
	struct link *l = link_local_new(bus);
	struct event *e6 = mk(6, EVENT_MESSAGE, LOBBY, BOB);
	assert_int_equal(link_committed(l, e6), 0);
	assert_int_equal(link_committed(l, e6), BUS_EORDER);
	assert_int_equal(bus_id_violations(bus), 5);
	event_unref(e6);
	link_free(l);
	event_unref(e5);
	event_unref(e3);
	event_unref(e0);
	event_unref(t7);
	event_unref(t0);
	bus_free(bus);
}

static void test_history_then_ring(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	fs.during = publish_one_more;
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 3, &a);
	assert_int_equal(fs.calls, 1);
	assert_int_equal(a.resume.cursor, 11);
	ASSERT_IDS(&a, 4, 5, 6, 7, 8, 9, 10, 11);
	bus_shard_drain(sh); /* 11 is pending: skipped */
	ASSERT_IDS(&a, 4, 5, 6, 7, 8, 9, 10, 11);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

/* Publishes enough during the fetch for the ring to overtake it. */
static void publish_many_more(struct fake_store *fs)
{
	for (int i = 11; i <= 20; i++)
		store_pub(fs, i, EVENT_MESSAGE, LOBBY, BOB);
}

static void test_history_overtaken_retries(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	fs.during = publish_many_more;
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 2, &a);
	assert_int_equal(fs.calls, 2);
	assert_true(a.resume.recovered);
	assert_int_equal(a.resume.cursor, 20);
	assert_int_equal(a.n, 18);
	for (size_t i = 0; i < a.n; i++)
		assert_int_equal(a.ids[i], (int64_t)i + 3);
	bus_shard_drain(sh);
	assert_int_equal(a.n, 18);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

static void test_history_limit_is_replay_max(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(2, 5, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	/* 10 - 5 = 5 = replay_max: history returns exactly the limit. */
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 5, &a);
	assert_int_equal(fs.calls, 1);
	assert_int_equal(fs.last_limit, 5);
	assert_true(a.resume.recovered);
	ASSERT_IDS(&a, 6, 7, 8, 9, 10);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

static void test_history_sparse(void **state)
{
	(void)state;
	/* The user's last event in history is older than the ring, but the
	 * answer is complete up to the last id: no retry, recovered. */
	struct fake_store fs = {.room = LOBBY};
	struct bus *bus = bus_new(4, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, i <= 5 ? LOBBY : ANNEX, BOB);
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 2, &a);
	assert_int_equal(fs.calls, 1);
	assert_true(a.resume.recovered);
	assert_int_equal(a.resume.cursor, 10);
	ASSERT_IDS(&a, 3, 4, 5);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

static void test_no_ring(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(0, 100, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 3; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	struct rec a = {0}, b = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 1, &a);
	assert_int_equal(fs.calls, 1);
	ASSERT_IDS(&a, 2, 3);
	struct bus_sub *y = sub_ok(sh, ALICE, 3, &b);
	assert_int_equal(fs.calls, 1);
	assert_true(b.resume.recovered);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 2, 3);
	assert_int_equal(b.n, 0);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

static void test_too_far_behind(void **state)
{
	(void)state;
	struct fake_store fs = {0};
	struct bus *bus = bus_new(4, 3, 0, fake_history, &fs);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	fs.bus = bus;
	fake_member_add(&fs, LOBBY, ALICE);
	for (int i = 1; i <= 10; i++)
		store_pub(&fs, i, EVENT_MESSAGE, LOBBY, BOB);
	struct rec a = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 2, &a);
	assert_false(a.resume.recovered);
	assert_int_equal(a.resume.cursor, 10);
	assert_int_equal(a.n, 0);
	assert_int_equal(fs.calls, 0);
	bus_shard_drain(sh); /* 1..10 pending: all skipped */
	assert_int_equal(a.n, 0);
	store_pub(&fs, 11, EVENT_MESSAGE, LOBBY, BOB);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 11);
	bus_unsubscribe(x);
	bus_shard_free(sh);
	bus_free(bus);
	store_fini(&fs);
}

static void test_no_history_fn_not_recovered(void **state)
{
	(void)state;
	/* Started with history up to 100 and an empty ring. */
	struct bus *bus = bus_new(8, 1000, 100, NULL, NULL);
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	bus_member_add(bus, LOBBY, ALICE);
	struct rec a = {0}, b = {0};
	struct bus_sub *x = sub_ok(sh, ALICE, 50, &a);
	assert_false(a.resume.recovered);
	assert_int_equal(a.resume.cursor, 100);
	pub(bus, 101, EVENT_MESSAGE, LOBBY, BOB);
	struct bus_sub *y = sub_ok(sh, ALICE, 100, &b);
	assert_true(b.resume.recovered);
	ASSERT_IDS(&b, 101);
	bus_shard_drain(sh);
	ASSERT_IDS(&a, 101);
	ASSERT_IDS(&b, 101);
	bus_unsubscribe(x);
	bus_unsubscribe(y);
	bus_shard_free(sh);
	bus_free(bus);
}

static void test_free_with_pending(void **state)
{
	(void)state;
	/* Inbox and ring references are released by the free functions
	 * (ASan/valgrind would report a leak otherwise). */
	struct bus *bus = bus_new(3, 10, 0, NULL, NULL); /* rounds up to 4 */
	struct bus_shard *sh = bus_shard_new(bus, NULL, NULL);
	for (int i = 1; i <= 9; i++)
		pub(bus, i, EVENT_MESSAGE, LOBBY, BOB);
	pub(bus, 0, EVENT_TYPING, LOBBY, BOB);
	bus_shard_free(sh);
	bus_shard_free(NULL);
	bus_free(bus);
	bus_free(NULL);
}

/* ---- stress ---- */

/* At least STRESS_EVENTS, and on until the subscriber thread has done
 * STRESS_SUBS subscriptions (bounded by STRESS_MAX_EVENTS). */
#define STRESS_EVENTS 20000
#define STRESS_SUBS 500
#define STRESS_MAX_EVENTS 5000000
#define STRESS_ROOM 1
#define STRESS_USERS 4 /* users 1..4 are members throughout */
#define CHURN_USER 9   /* joins and leaves STRESS_ROOM repeatedly */

struct watcher {
	int64_t user;
	int64_t next; /* expected next id (members), or 0 before hello */
	int64_t last; /* newest id seen */
	size_t got;
	int errors;
};

static void watcher_hello(void *arg, const struct bus_resume *r)
{
	struct watcher *w = arg;
	/* Set by the subscriber before the call: next = since + 1 when
	 * resuming, 0 for "from now". */
	if (!r->recovered || w->next == 0)
		w->next = r->cursor + 1;
	w->last = w->next - 1;
}

static void watcher_deliver(void *arg, struct event *ev)
{
	struct watcher *w = arg;
	int64_t id = event_id(ev);
	w->got++;
	if (!id)
		return;
	if (id <= w->last)
		w->errors++; /* twice, or out of order */
	if (w->user != CHURN_USER && id != w->next)
		w->errors++; /* a gap for a permanent member */
	w->last = id;
	w->next = id + 1;
}

static const struct bus_sub_ops watcher_ops = {watcher_hello, watcher_deliver};

struct drainer {
	struct bus_shard *shard;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;
	atomic_int stop;
	pthread_t thread;
};

static void drainer_wake(void *arg)
{
	struct drainer *d = arg;
	pthread_mutex_lock(&d->mu);
	d->pending = 1;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void *drainer_run(void *arg)
{
	struct drainer *d = arg;
	for (;;) {
		pthread_mutex_lock(&d->mu);
		while (!d->pending && !atomic_load(&d->stop))
			pthread_cond_wait(&d->cv, &d->mu);
		d->pending = 0;
		pthread_mutex_unlock(&d->mu);
		bus_shard_drain(d->shard);
		if (atomic_load(&d->stop))
			break;
	}
	return NULL;
}

struct stress {
	struct bus *bus;
	struct drainer dr[2];
	atomic_int done;
	int64_t last_id; /* written by the publisher before done */
	int errors;
	atomic_size_t subscriptions;
};

static void *publisher_run(void *arg)
{
	struct stress *st = arg;
	bool churn_in = false;
	int64_t id;
	for (id = 1; id <= STRESS_MAX_EVENTS &&
		     (id <= STRESS_EVENTS ||
		      atomic_load(&st->subscriptions) < STRESS_SUBS);
	     id++) {
		if (id % 97 == 0) {
			pub(st->bus, id, churn_in ? EVENT_LEAVE : EVENT_JOIN,
			    STRESS_ROOM, CHURN_USER);
			churn_in = !churn_in;
		} else {
			pub(st->bus, id, EVENT_MESSAGE, STRESS_ROOM,
			    1 + id % STRESS_USERS);
		}
		if (id % 13 == 0)
			pub(st->bus, 0, EVENT_TYPING, STRESS_ROOM, 1);
		if (id % 32 == 0)
			sched_yield(); /* let subscribers and drains in */
	}
	st->last_id = id - 1;
	atomic_store(&st->done, 1);
	return NULL;
}

static void *subscriber_run(void *arg)
{
	struct stress *st = arg;
	unsigned seed = 12345;
	while (!atomic_load(&st->done)) {
		struct watcher w = {0};
		w.user = (rand_r(&seed) % 5) ? 1 + rand_r(&seed) % STRESS_USERS
					     : CHURN_USER;
		int64_t since = -1;
		if (rand_r(&seed) % 2) {
			int64_t last = bus_last_id(st->bus);
			since = last - rand_r(&seed) % 300;
			if (since < 0)
				since = 0;
			w.next = since + 1;
		}
		int err = 0;
		struct bus_shard *sh = bus_shard_pick(st->bus);
		struct bus_sub *s =
		    bus_subscribe(sh, w.user, since, &watcher_ops, &w, &err);
		if (!s) {
			st->errors++;
			break;
		}
		for (int i = rand_r(&seed) % 50; i > 0; i--)
			sched_yield();
		bus_unsubscribe(s);
		st->errors += w.errors;
		atomic_fetch_add(&st->subscriptions, 1);
	}
	return NULL;
}

static void test_stress(void **state)
{
	(void)state;
	struct stress st = {0};
	/* A ring bigger than any "since" the subscriber picks, so every
	 * resume is served from memory. */
	st.bus = bus_new(1024, 100000, 0, NULL, NULL);
	for (int u = 1; u <= STRESS_USERS; u++)
		bus_member_add(st.bus, STRESS_ROOM, u);
	for (int i = 0; i < 2; i++) {
		struct drainer *d = &st.dr[i];
		pthread_mutex_init(&d->mu, NULL);
		pthread_cond_init(&d->cv, NULL);
		atomic_init(&d->stop, 0);
		d->shard = bus_shard_new(st.bus, drainer_wake, d);
	}

	/* Long-lived watchers: one per user per shard, from the start. */
	struct watcher lw[2][STRESS_USERS + 1];
	struct bus_sub *ls[2][STRESS_USERS + 1];
	for (int i = 0; i < 2; i++) {
		for (int u = 0; u <= STRESS_USERS; u++) {
			lw[i][u] = (struct watcher){0};
			lw[i][u].user = u ? u : CHURN_USER;
			lw[i][u].next = 1;
			int err;
			ls[i][u] =
			    bus_subscribe(st.dr[i].shard, lw[i][u].user, 0,
					  &watcher_ops, &lw[i][u], &err);
			assert_non_null(ls[i][u]);
		}
	}

	pthread_t pub_t, sub_t;
	for (int i = 0; i < 2; i++)
		pthread_create(&st.dr[i].thread, NULL, drainer_run, &st.dr[i]);
	pthread_create(&sub_t, NULL, subscriber_run, &st);
	pthread_create(&pub_t, NULL, publisher_run, &st);
	pthread_join(pub_t, NULL);
	pthread_join(sub_t, NULL);
	for (int i = 0; i < 2; i++) {
		atomic_store(&st.dr[i].stop, 1);
		drainer_wake(&st.dr[i]);
		pthread_join(st.dr[i].thread, NULL);
		bus_shard_drain(st.dr[i].shard); /* anything left */
	}

	assert_int_equal(st.errors, 0);
	assert_true(atomic_load(&st.subscriptions) >= STRESS_SUBS);
	for (int i = 0; i < 2; i++) {
		for (int u = 0; u <= STRESS_USERS; u++) {
			assert_int_equal(lw[i][u].errors, 0);
			if (u)
				assert_int_equal(lw[i][u].last, st.last_id);
			bus_unsubscribe(ls[i][u]);
		}
	}
	assert_int_equal(bus_subscriber_count(st.bus), 0);
	for (int i = 0; i < 2; i++) {
		bus_shard_free(st.dr[i].shard);
		pthread_cond_destroy(&st.dr[i].cv);
		pthread_mutex_destroy(&st.dr[i].mu);
	}
	bus_free(st.bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fanout_members_only),
	    cmocka_unit_test(test_two_shards),
	    cmocka_unit_test(test_shard_pick_round_robin),
	    cmocka_unit_test(test_join_midstream),
	    cmocka_unit_test(test_leave_delivers_then_stops),
	    cmocka_unit_test(test_room_event_adds_creator),
	    cmocka_unit_test(test_unsubscribe_stops_delivery),
	    cmocka_unit_test(test_out_of_order_ignored),
	    cmocka_unit_test(test_ring_replay_since),
	    cmocka_unit_test(test_replay_before_drain_no_duplicates),
	    cmocka_unit_test(test_replay_pending_membership),
	    cmocka_unit_test(test_replay_follows_membership_history),
	    cmocka_unit_test(test_kick_removes_subject),
	    cmocka_unit_test(test_ephemeral_not_replayed),
	    cmocka_unit_test(test_personal_event),
	    cmocka_unit_test(test_since_negative_no_replay),
	    cmocka_unit_test(test_since_future),
	    cmocka_unit_test(test_history_on_ring_overflow),
	    cmocka_unit_test(test_history_membership_leave_rejoin),
	    cmocka_unit_test(test_publish_id_violation),
	    cmocka_unit_test(test_prefetched_subscribe),
	    cmocka_unit_test(test_replay_pool_bounded),
	    cmocka_unit_test(test_replay_reserve),
	    cmocka_unit_test(test_replay_subscribe),
	    cmocka_unit_test(test_history_then_ring),
	    cmocka_unit_test(test_history_overtaken_retries),
	    cmocka_unit_test(test_history_limit_is_replay_max),
	    cmocka_unit_test(test_history_sparse),
	    cmocka_unit_test(test_no_ring),
	    cmocka_unit_test(test_too_far_behind),
	    cmocka_unit_test(test_no_history_fn_not_recovered),
	    cmocka_unit_test(test_free_with_pending),
	    cmocka_unit_test(test_stress),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
