/* bus: room membership, the ring of recent persistent events, and fan-out of
 * events to subscribers through one shard per event loop. Pure logic: it
 * never does I/O, never logs, and never blocks on anything but its own
 * short-held mutexes. It does not serialize events (event does), does not
 * store them (store does, and is reached only through the history
 * callback), and does not bound subscriber queues (transports do).
 *
 * Structure
 *   bus->lock (global): membership (room -> users, user -> rooms), the ring,
 *     last_id, ring_floor, the shard list. Held briefly by bus_publish and
 *     by bus_subscribe, never while a subscriber callback runs and never
 *     across the history callback.
 *   shard->inbox_lock: the shard's inbox (event refs in publish order).
 *   shard->lock: the shard's subscribers and its local index
 *     room -> array of subscribers whose user is a member, as of the last
 *     event this shard drained. Every subscriber callback runs under it.
 *   Lock order: shard->lock, then bus->lock, then shard->inbox_lock. Nothing
 *   takes a shard lock while holding the global lock, so publishing never
 *   waits for a drain.
 *
 * Invariants
 *   I1 Persistent ids accepted by bus_publish strictly increase; anything
 *      else (duplicate, out of order, id 0 on a persistent type, an id on
 *      an ephemeral type) is refused, counted (bus_id_violations) and
 *      reported to the caller, which logs it: never silent. last_id is the
 *      newest accepted id.
 *   I2 Every shard's inbox receives every accepted event, in accept order:
 *      pushes happen under the global lock, which also orders the accepts.
 *   I3 The ring holds every accepted persistent event with id > ring_floor,
 *      oldest first; ring_floor only grows (to the id that fell off).
 *      Each slot also records whether the event's user was a member of its
 *      room just before an event that changes membership (the event-type
 *      table's effect column: JOIN/ROOM add, LEAVE removes; KICK and BAN
 *      remove the user they act on, event_subject, not the sender), so the
 * membership at any point inside the ring can be reconstructed exactly (see
 * ring_collect). I4 Global membership is the state after last_id. A shard's
 * local index is the state after the last event it drained, applied in stream
 *      order: JOIN/ROOM add the user's subscribers before delivering the
 *      event, LEAVE removes them after.
 *   I5 A subscriber's cursor only grows; a persistent event is delivered to
 *      it only if its id > cursor, and then the cursor takes that id. Hence
 *      ids strictly increase per subscriber and nothing arrives twice.
 *      Ephemeral events (id 0) bypass the cursor and are never replayed.
 *   I6 Drain delivers only to subscribers in the room's array: no walk over
 *      non-members, no global lock, no allocation per delivery.
 *
 * Subscribe and its races (why nothing is lost or doubled)
 *   The locked part of a subscribe holds the shard lock for the whole
 *   registration, so no drain of that shard runs meanwhile; under the global
 * lock it reads G = last_id, copies the replay refs and registers the
 * subscriber in the local index with the user's rooms as of G. Then (global
 * lock released, shard lock still held) hello says cursor G, the replay is
 * delivered and the cursor is set to G.
 *   - Events with id <= G still in the inbox (published, not yet drained)
 *     were covered by the replay or are not for this user: the cursor check
 *     (I5) skips them when the drain reaches them.
 *   - Events with id > G reach the inbox after the registration (I2) and
 *     are delivered by the drain: nothing is lost.
 *   - Membership: the new subscriber starts with the rooms of G while the
 *     shard's index may still be at an older D < G. The JOIN/LEAVE events
 *     in (D, G] still pending are re-applied to it by the drain; adding and
 *     removing are idempotent, so after the drain passes G it is in exactly
 *     the rooms of G (the last change per room wins, and that is G's state),
 *     and deliveries in (D, G] are skipped by the cursor anyway. The only
 *     visible effect is that it may receive an ephemeral event published
 *     just before G for a room it joined at or before G.
 *   - Replay from the ring uses the membership as it was at each event
 *     (reconstructed backwards from G with I3), so a client that left a room
 *     while away still receives its own leave event and the messages before
 *     it, and none after, exactly as a live subscriber would have.
 *   - History (SQL) is fetched with no lock held, by bus_prefetch_run,
 *     possibly on another thread and long before the locked part
 *     (bus_subscribe_prefetched; bus_subscribe does both in a row). The
 *     store commits before it publishes, so a fetch started when last_id
 *     was G0 and returning fewer than the limit covers every id <= G0;
 *     otherwise it covers up to its last event. Under the locks the ring
 *     must cover from there on (ring_floor <= that point), however long
 *     ago the fetch ran; if it moved past in the meantime the locked part
 *     answers BUS_ESTALE, the caller fetches again, and after a few tries
 *     the answer is recovered=false, which is always honest. The history
 *     follows membership as of each event exactly as ring_collect does
 *     (store.h), so where the replay switches from history to ring makes
 *     no difference to what the user gets.
 *
 * Callbacks run under the shard lock. Besides the rule in bus.h (no
 * subscribe, unsubscribe or drain on the same shard), they must not
 * subscribe or unsubscribe on another shard either (two shard locks taken
 * in opposite orders would deadlock); bus_publish, bus_is_member and
 * bus_last_id are fine. wake() runs under the global lock: it must only
 * signal its loop (e.g. write an eventfd), never call into the bus. */

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "util/imap.h"
#include "util/util.h"

/* How many times bus_subscribe re-decides when the ring overtook a
 * history fetch before it answers recovered=false. */
#define SUBSCRIBE_TRIES 4

/* A growable array of event references. */
struct evvec {
	struct event **v;
	size_t len, cap;
};

static void evvec_push(struct evvec *q, struct event *ev)
{
	if (q->len == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->v = xrealloc(q->v, q->cap * sizeof(*q->v));
	}
	q->v[q->len++] = ev;
}

/* Drop every reference and the array. */
static void evvec_release(struct evvec *q)
{
	for (size_t i = 0; i < q->len; i++)
		event_unref(q->v[i]);
	free(q->v);
	*q = (struct evvec){0};
}

struct slot {
	struct event *ev;
	bool was_member; /* JOIN/ROOM/LEAVE: user in room just before it */
};

struct bus {
	pthread_mutex_t lock;
	struct imap room_users; /* room -> struct imap * (set of users) */
	struct imap user_rooms; /* user -> struct imap * (set of rooms) */
	struct slot *ring;
	size_t ring_cap, ring_mask, ring_head, ring_len;
	int64_t ring_floor; /* I3 */
	int64_t last_id;
	uint64_t id_violations; /* publishes refused by I1 */
	size_t replay_max;
	bus_history_fn history;
	void *history_arg;
	struct bus_shard **shards;
	size_t nshards, shards_cap;
	atomic_size_t rr;
	bus_conn_fn conn_hook; /* set before any subscriber, then read-only */
	void *conn_arg;
};

/* The subscribers of one room on one shard. */
struct room_subs {
	struct bus_sub **v;
	size_t len, cap;
};

struct bus_shard {
	struct bus *bus;
	void (*wake)(void *arg);
	void *wake_arg;

	pthread_mutex_t inbox_lock;
	struct evvec inbox; /* under inbox_lock */

	pthread_mutex_t lock;
	struct evvec batch;  /* drain's spare inbox, empty between drains */
	struct imap users;   /* user -> struct bus_sub * (list via next) */
	struct imap rooms;   /* room -> struct room_subs * */
	atomic_size_t nsubs; /* written under lock, read without */
	uint64_t stamp;	     /* BUS_PEERS deliveries drained so far */
};

struct bus_sub {
	struct bus_shard *shard;
	int64_t user;
	int64_t cursor; /* under shard->lock; I5 */
	struct bus_sub_ops ops;
	void *arg;
	struct bus_sub *next; /* the user's next subscriber on this shard */
	struct imap rooms;    /* room -> index in that room's room_subs */
	uint64_t stamp;	      /* the last BUS_PEERS delivery it got */
};

/* Lock helpers: a failing pthread mutex call is a bug, not a condition. */
static void lock(pthread_mutex_t *m)
{
	int rc = pthread_mutex_lock(m);
	assert(rc == 0);
	(void)rc;
}

static void unlock(pthread_mutex_t *m)
{
	int rc = pthread_mutex_unlock(m);
	assert(rc == 0);
	(void)rc;
}

/* ---- membership (global, under bus->lock) ---- */

static bool set_has(const struct imap *sets, int64_t key, int64_t member)
{
	const struct imap *set = imap_get_ptr(sets, key);
	return set && imap_get(set, member, NULL);
}

static void set_add(struct imap *sets, int64_t key, int64_t member)
{
	struct imap *set = imap_get_ptr(sets, key);
	if (!set) {
		set = xcalloc(1, sizeof(*set));
		imap_put(sets, key, (uintptr_t)set);
	}
	imap_put(set, member, 0);
}

static void set_remove(struct imap *sets, int64_t key, int64_t member)
{
	struct imap *set = imap_get_ptr(sets, key);
	if (!set || !imap_del(set, member) || set->len)
		return;
	imap_fini(set);
	free(set);
	imap_del(sets, key);
}

static void sets_free(struct imap *sets)
{
	for (size_t i = 0; i < sets->cap; i++) {
		if (sets->keys[i] == IMAP_EMPTY)
			continue;
		struct imap *set = (struct imap *)sets->vals[i];
		imap_fini(set);
		free(set);
	}
	imap_fini(sets);
}

/* Apply a membership change; returns whether user was a member before. */
static bool member_set(struct bus *bus, int64_t room, int64_t user, bool in)
{
	bool was = set_has(&bus->room_users, room, user);
	if (in && !was) {
		set_add(&bus->room_users, room, user);
		set_add(&bus->user_rooms, user, room);
	} else if (!in && was) {
		set_remove(&bus->room_users, room, user);
		set_remove(&bus->user_rooms, user, room);
	}
	return was;
}

void bus_member_add(struct bus *bus, int64_t room_id, int64_t user_id)
{
	lock(&bus->lock);
	member_set(bus, room_id, user_id, true);
	unlock(&bus->lock);
}

bool bus_is_member(struct bus *bus, int64_t room_id, int64_t user_id)
{
	lock(&bus->lock);
	bool in = set_has(&bus->room_users, room_id, user_id);
	unlock(&bus->lock);
	return in;
}

bool bus_shares_room(struct bus *bus, int64_t a, int64_t b)
{
	lock(&bus->lock);
	const struct imap *ra = imap_get_ptr(&bus->user_rooms, a);
	const struct imap *rb = imap_get_ptr(&bus->user_rooms, b);
	bool shared = false;
	if (ra && rb && ra->len > rb->len) {
		const struct imap *t = ra;
		ra = rb;
		rb = t;
	}
	for (size_t i = 0; ra && rb && !shared && i < ra->cap; i++)
		shared = ra->keys[i] != IMAP_EMPTY &&
			 imap_get(rb, ra->keys[i], NULL);
	unlock(&bus->lock);
	return shared;
}

size_t bus_peers(struct bus *bus, int64_t user, int64_t **out)
{
	struct imap seen = {0};
	lock(&bus->lock);
	const struct imap *rooms = imap_get_ptr(&bus->user_rooms, user);
	for (size_t i = 0; rooms && i < rooms->cap; i++) {
		if (rooms->keys[i] == IMAP_EMPTY)
			continue;
		const struct imap *m =
		    imap_get_ptr(&bus->room_users, rooms->keys[i]);
		for (size_t j = 0; m && j < m->cap; j++)
			if (m->keys[j] != IMAP_EMPTY && m->keys[j] != user)
				imap_put(&seen, m->keys[j], 0);
	}
	unlock(&bus->lock);
	size_t n = 0;
	*out = xmalloc((seen.len ? seen.len : 1) * sizeof(**out));
	for (size_t i = 0; i < seen.cap; i++)
		if (seen.keys[i] != IMAP_EMPTY)
			(*out)[n++] = seen.keys[i];
	imap_fini(&seen);
	return n;
}

void bus_set_conn_hook(struct bus *bus, bus_conn_fn fn, void *arg)
{
	bus->conn_hook = fn;
	bus->conn_arg = arg;
}

int64_t bus_last_id(struct bus *bus)
{
	lock(&bus->lock);
	int64_t id = bus->last_id;
	unlock(&bus->lock);
	return id;
}

/* ---- lifecycle ---- */

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

struct bus *bus_new(size_t ring_size, size_t replay_max, int64_t last_id,
		    bus_history_fn history, void *history_arg)
{
	struct bus *bus = xcalloc(1, sizeof(*bus));
	pthread_mutex_init(&bus->lock, NULL);
	if (ring_size) {
		bus->ring_cap = pow2_at_least(ring_size);
		bus->ring_mask = bus->ring_cap - 1;
		bus->ring = xcalloc(bus->ring_cap, sizeof(*bus->ring));
	}
	bus->ring_floor = last_id > 0 ? last_id : 0;
	bus->last_id = bus->ring_floor;
	bus->replay_max = replay_max;
	bus->history = history;
	bus->history_arg = history_arg;
	atomic_init(&bus->rr, 0);
	return bus;
}

void bus_free(struct bus *bus)
{
	if (!bus)
		return;
	assert(bus->nshards == 0);
	for (size_t i = 0; i < bus->ring_len; i++)
		event_unref(
		    bus->ring[(bus->ring_head + i) & bus->ring_mask].ev);
	free(bus->ring);
	free(bus->shards);
	sets_free(&bus->room_users);
	sets_free(&bus->user_rooms);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

struct bus_shard *bus_shard_new(struct bus *bus, void (*wake)(void *arg),
				void *arg)
{
	struct bus_shard *shard = xcalloc(1, sizeof(*shard));
	shard->bus = bus;
	shard->wake = wake;
	shard->wake_arg = arg;
	pthread_mutex_init(&shard->inbox_lock, NULL);
	pthread_mutex_init(&shard->lock, NULL);
	atomic_init(&shard->nsubs, 0);

	lock(&bus->lock);
	if (bus->nshards == bus->shards_cap) {
		bus->shards_cap = bus->shards_cap ? bus->shards_cap * 2 : 4;
		bus->shards = xrealloc(bus->shards,
				       bus->shards_cap * sizeof(*bus->shards));
	}
	bus->shards[bus->nshards++] = shard;
	unlock(&bus->lock);
	return shard;
}

void bus_shard_free(struct bus_shard *shard)
{
	if (!shard)
		return;
	struct bus *bus = shard->bus;

	/* Once off the list no publish can reach the inbox. */
	lock(&bus->lock);
	for (size_t i = 0; i < bus->nshards; i++) {
		if (bus->shards[i] == shard) {
			bus->shards[i] = bus->shards[--bus->nshards];
			break;
		}
	}
	unlock(&bus->lock);

	assert(atomic_load(&shard->nsubs) == 0 && shard->users.len == 0);
	evvec_release(&shard->inbox);
	evvec_release(&shard->batch);
	imap_fini(&shard->users);
	imap_fini(&shard->rooms); /* empty with no subscribers */
	pthread_mutex_destroy(&shard->lock);
	pthread_mutex_destroy(&shard->inbox_lock);
	free(shard);
}

struct bus_shard *bus_shard_pick(struct bus *bus)
{
	struct bus_shard *shard = NULL;
	size_t turn =
	    atomic_fetch_add_explicit(&bus->rr, 1, memory_order_relaxed);
	lock(&bus->lock);
	if (bus->nshards)
		shard = bus->shards[turn % bus->nshards];
	unlock(&bus->lock);
	return shard;
}

size_t bus_subscriber_count(struct bus *bus)
{
	size_t n = 0;
	lock(&bus->lock);
	for (size_t i = 0; i < bus->nshards; i++)
		n += atomic_load_explicit(&bus->shards[i]->nsubs,
					  memory_order_relaxed);
	unlock(&bus->lock);
	return n;
}

/* ---- publish (global lock) ---- */

static const struct slot *ring_at(const struct bus *bus, size_t i)
{
	return &bus->ring[(bus->ring_head + i) & bus->ring_mask];
}

static void ring_push(struct bus *bus, struct event *ev, bool was_member)
{
	if (!bus->ring_cap) {
		bus->ring_floor = event_id(ev);
		return;
	}
	if (bus->ring_len == bus->ring_cap) {
		struct slot *old = &bus->ring[bus->ring_head];
		bus->ring_floor = event_id(old->ev);
		event_unref(old->ev);
		bus->ring_head = (bus->ring_head + 1) & bus->ring_mask;
		bus->ring_len--;
	}
	struct slot *s =
	    &bus->ring[(bus->ring_head + bus->ring_len) & bus->ring_mask];
	s->ev = event_ref(ev);
	s->was_member = was_member;
	bus->ring_len++;
}

/* The index of the first ring event with id > after (ring_len: none). */
static size_t ring_after(const struct bus *bus, int64_t after)
{
	size_t lo = 0, hi = bus->ring_len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (event_id(ring_at(bus, mid)->ev) <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool bus_revise(struct bus *bus, struct event *ev)
{
	lock(&bus->lock);
	size_t i = ring_after(bus, event_id(ev) - 1);
	bool hit =
	    i < bus->ring_len && event_id(ring_at(bus, i)->ev) == event_id(ev);
	if (hit) {
		struct slot *s =
		    &bus->ring[(bus->ring_head + i) & bus->ring_mask];
		event_unref(s->ev);
		s->ev = event_ref(ev);
	}
	unlock(&bus->lock);
	return hit;
}

static void shard_push(struct bus_shard *shard, struct event *ev)
{
	lock(&shard->inbox_lock);
	bool was_empty = shard->inbox.len == 0;
	evvec_push(&shard->inbox, event_ref(ev));
	unlock(&shard->inbox_lock);
	/* Empty means the owner has drained everything before this event (or
	 * was never woken), so exactly one wake per non-empty period. */
	if (was_empty && shard->wake)
		shard->wake(shard->wake_arg);
}

int bus_publish(struct bus *bus, struct event *ev)
{
	int64_t id = event_id(ev);
	enum event_type type = event_type(ev);
	int rc = 0;

	lock(&bus->lock);
	if (event_type_persistent(type)) {
		if (id <= bus->last_id || event_room(ev) == BUS_PERSONAL ||
		    event_room(ev) == BUS_PEERS) {
			/* I1: duplicate, out of order or no id. Refused, and
			 * counted: with one writer it cannot happen, so the
			 * caller must say so loudly. */
			bus->id_violations++;
			rc = BUS_EORDER;
			goto out;
		}
		bool was = false;
		int change = evtype_membership(type);
		if (change)
			was = member_set(bus, event_room(ev), event_subject(ev),
					 change > 0);
		ring_push(bus, ev, was);
		bus->last_id = id;
	} else if (id != 0) {
		/* an ephemeral event never carries an id */
		bus->id_violations++;
		rc = BUS_EORDER;
		goto out;
	}
	for (size_t i = 0; i < bus->nshards; i++)
		shard_push(bus->shards[i], ev);
out:
	unlock(&bus->lock);
	return rc;
}

uint64_t bus_id_violations(struct bus *bus)
{
	lock(&bus->lock);
	uint64_t n = bus->id_violations;
	unlock(&bus->lock);
	return n;
}

/* ---- shard index (under shard->lock) ---- */

static void room_add(struct bus_shard *shard, struct bus_sub *sub, int64_t room)
{
	if (imap_get(&sub->rooms, room, NULL))
		return;
	struct room_subs *rs = imap_get_ptr(&shard->rooms, room);
	if (!rs) {
		rs = xcalloc(1, sizeof(*rs));
		imap_put(&shard->rooms, room, (uintptr_t)rs);
	}
	if (rs->len == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 4;
		rs->v = xrealloc(rs->v, rs->cap * sizeof(*rs->v));
	}
	imap_put(&sub->rooms, room, rs->len);
	rs->v[rs->len++] = sub;
}

/* Take sub out of room's array (swap with the last); sub->rooms is left to
 * the caller. */
static void room_detach(struct bus_shard *shard, struct bus_sub *sub,
			int64_t room, size_t pos)
{
	struct room_subs *rs = imap_get_ptr(&shard->rooms, room);
	assert(rs && pos < rs->len && rs->v[pos] == sub);
	struct bus_sub *last = rs->v[--rs->len];
	if (last != sub) {
		rs->v[pos] = last;
		imap_put(&last->rooms, room, pos);
	}
	if (!rs->len) {
		free(rs->v);
		free(rs);
		imap_del(&shard->rooms, room);
	}
}

static void room_remove(struct bus_shard *shard, struct bus_sub *sub,
			int64_t room)
{
	uintptr_t pos;
	if (!imap_get(&sub->rooms, room, &pos))
		return;
	room_detach(shard, sub, room, pos);
	imap_del(&sub->rooms, room);
}

static void user_join(struct bus_shard *shard, int64_t user, int64_t room)
{
	for (struct bus_sub *s = imap_get_ptr(&shard->users, user); s;
	     s = s->next)
		room_add(shard, s, room);
}

static void user_leave(struct bus_shard *shard, int64_t user, int64_t room)
{
	for (struct bus_sub *s = imap_get_ptr(&shard->users, user); s;
	     s = s->next)
		room_remove(shard, s, room);
}

/* BUS_PEERS: every local connection of the users who share a room with
 * user (not user's own), once each however many rooms they share (the
 * stamp), by walking the shard's own arrays of user's rooms: no walk over
 * anyone else. The rooms are user's as of the newest published event. */
static void peers_deliver(struct bus_shard *shard, struct event *ev)
{
	struct bus *bus = shard->bus;
	int64_t user = event_user(ev);
	uint64_t stamp = ++shard->stamp;
	struct imap rooms;

	lock(&bus->lock);
	imap_copy(&rooms, imap_get_ptr(&bus->user_rooms, user));
	unlock(&bus->lock);
	for (size_t i = 0; i < rooms.cap; i++) {
		if (rooms.keys[i] == IMAP_EMPTY)
			continue;
		struct room_subs *rs =
		    imap_get_ptr(&shard->rooms, rooms.keys[i]);
		for (size_t j = 0; rs && j < rs->len; j++) {
			struct bus_sub *s = rs->v[j];
			if (s->stamp == stamp || s->user == user)
				continue;
			s->stamp = stamp;
			s->ops.deliver(s->arg, ev);
		}
	}
	imap_fini(&rooms);
}

static void shard_process(struct bus_shard *shard, struct event *ev)
{
	int64_t id = event_id(ev), room = event_room(ev), user = event_user(ev);
	int change = evtype_membership(event_type(ev));

	if (room == BUS_PEERS) {
		peers_deliver(shard, ev);
		return;
	}
	if (room == BUS_PERSONAL) {
		/* Ephemeral and personal: every live connection of one user
		 * (bus_publish refuses a persistent one). */
		for (struct bus_sub *s = imap_get_ptr(&shard->users, user); s;
		     s = s->next)
			s->ops.deliver(s->arg, ev);
		return;
	}

	/* the user whose membership changes: the sender, or the user a
	 * moderator removed */
	int64_t subject = event_subject(ev);
	if (change > 0)
		user_join(shard, subject, room);
	struct room_subs *rs = imap_get_ptr(&shard->rooms, room);
	if (rs) {
		/* Callbacks cannot touch this shard, so rs is stable. */
		for (size_t i = 0; i < rs->len; i++) {
			struct bus_sub *s = rs->v[i];
			if (id > 0) {
				if (s->cursor >= id)
					continue; /* replayed already */
				s->cursor = id;
			}
			s->ops.deliver(s->arg, ev);
		}
	}
	if (change < 0)
		user_leave(shard, subject, room);
}

void bus_shard_drain(struct bus_shard *shard)
{
	lock(&shard->lock);
	/* Swap buffers so publishers keep appending while we deliver; the
	 * spare keeps its capacity, so steady state allocates nothing. */
	lock(&shard->inbox_lock);
	struct evvec tmp = shard->inbox;
	shard->inbox = shard->batch;
	shard->batch = tmp;
	unlock(&shard->inbox_lock);

	for (size_t i = 0; i < shard->batch.len; i++) {
		shard_process(shard, shard->batch.v[i]);
		event_unref(shard->batch.v[i]);
	}
	shard->batch.len = 0;
	unlock(&shard->lock);
}

/* ---- subscribe ---- */

/* user's own membership change in ev: +1, -1, or 0 (none, or not user's). */
static int member_change(const struct event *ev, int64_t user)
{
	return event_subject(ev) == user ? evtype_membership(event_type(ev))
					 : 0;
}

/* Append to out a reference to every ring event with id > after that user
 * would have received live: membership is rebuilt as it was at each event,
 * starting from the current one and undoing the user's JOIN/ROOM/LEAVE
 * events backwards (I3). Under bus->lock; requires after >= ring_floor. */
static void ring_collect(struct bus *bus, int64_t user, int64_t after,
			 struct evvec *out)
{
	size_t lo = ring_after(bus, after);
	if (lo == bus->ring_len)
		return;

	struct imap rooms;
	imap_copy(&rooms, imap_get_ptr(&bus->user_rooms, user));
	for (size_t i = bus->ring_len; i-- > lo;) {
		const struct slot *s = ring_at(bus, i);
		if (!member_change(s->ev, user))
			continue;
		if (s->was_member)
			imap_put(&rooms, event_room(s->ev), 0);
		else
			imap_del(&rooms, event_room(s->ev));
	}
	for (size_t i = lo; i < bus->ring_len; i++) {
		struct event *ev = ring_at(bus, i)->ev;
		int change = member_change(ev, user);
		if (change > 0)
			imap_put(&rooms, event_room(ev), 0);
		if (imap_get(&rooms, event_room(ev), NULL))
			evvec_push(out, event_ref(ev));
		if (change < 0)
			imap_del(&rooms, event_room(ev));
	}
	imap_fini(&rooms);
}

/* Ask the store for the user's events after since, with no lock held.
 * *upto: the id up to which the answer is complete (see the top comment).
 * Malformed answers are trimmed: only increasing persistent ids > since
 * are kept, at most replay_max of them. */
static int history_fetch(struct bus *bus, int64_t user, int64_t since,
			 int64_t g0, struct evvec *out, int64_t *upto)
{
	struct event **evs = NULL;
	size_t n = 0, limit = bus->replay_max;
	if (bus->history(bus->history_arg, user, since, limit, &evs, &n))
		return -1;
	int64_t prev = since;
	for (size_t i = 0; i < n; i++) {
		struct event *ev = evs[i];
		if (i < limit && event_id(ev) > prev &&
		    event_type_persistent(event_type(ev))) {
			prev = event_id(ev);
			evvec_push(out, ev);
		} else {
			event_unref(ev);
		}
	}
	free(evs);
	*upto = n < limit ? g0 : prev;
	return 0;
}

/* Register sub in the shard's index with the user's current rooms. Under
 * shard->lock and bus->lock. */
static void sub_register(struct bus_shard *shard, struct bus *bus,
			 struct bus_sub *sub)
{
	const struct imap *rooms = imap_get_ptr(&bus->user_rooms, sub->user);
	for (size_t i = 0; rooms && i < rooms->cap; i++)
		if (rooms->keys[i] != IMAP_EMPTY)
			room_add(shard, sub, rooms->keys[i]);
	sub->next = imap_get_ptr(&shard->users, sub->user);
	imap_put(&shard->users, sub->user, (uintptr_t)sub);
	atomic_fetch_add_explicit(&shard->nsubs, 1, memory_order_relaxed);
}

/* A subscribe's history, fetched ahead of the locked decision. */
struct bus_prefetch {
	int64_t user, since;
	struct evvec hist; /* increasing persistent ids > since */
	int64_t upto;	   /* hist is complete up to this id */
	bool fetched;	   /* hist holds a fetch */
	int tries;	   /* decisions that found the ring ahead of it */
};

struct bus_prefetch *bus_prefetch_new(int64_t user_id, int64_t since)
{
	struct bus_prefetch *p = xcalloc(1, sizeof(*p));
	p->user = user_id;
	p->since = since;
	return p;
}

void bus_prefetch_free(struct bus_prefetch *p)
{
	if (!p)
		return;
	evvec_release(&p->hist);
	free(p);
}

bool bus_history_needed(struct bus *bus, int64_t since)
{
	if (since < 0 || !bus->history)
		return false;
	lock(&bus->lock);
	bool need = since < bus->ring_floor && since <= bus->last_id &&
		    (uint64_t)(bus->last_id - since) <= bus->replay_max;
	unlock(&bus->lock);
	return need;
}

int bus_prefetch_run(struct bus *bus, struct bus_prefetch *p)
{
	evvec_release(&p->hist);
	p->fetched = false;
	p->upto = 0;
	if (p->since < 0)
		return 0;
	lock(&bus->lock);
	int64_t g0 = bus->last_id, floor0 = bus->ring_floor;
	unlock(&bus->lock);
	if (p->since > g0)
		return BUS_EFUTURE;
	if (p->since < floor0 && bus->history &&
	    (uint64_t)(g0 - p->since) <= bus->replay_max &&
	    p->tries < SUBSCRIBE_TRIES) {
		if (history_fetch(bus, p->user, p->since, g0, &p->hist,
				  &p->upto))
			return BUS_EHISTORY;
		p->fetched = true;
	}
	return 0;
}

struct bus_sub *bus_subscribe_prefetched(struct bus_shard *shard,
					 struct bus_prefetch *p,
					 const struct bus_sub_ops *ops,
					 void *arg, int *err)
{
	struct bus *bus = shard->bus;
	struct evvec replay = {0};
	struct bus_resume resume = {0, true};
	int64_t since = p->since;

	assert(ops && ops->deliver);
	lock(&shard->lock);
	lock(&bus->lock);
	int64_t g = bus->last_id;
	resume = (struct bus_resume){g, true};
	if (since < 0) {
		/* from now on: nothing to replay */
	} else if (since >= bus->ring_floor) {
		ring_collect(bus, p->user, since, &replay);
	} else if (p->fetched && p->upto >= bus->ring_floor) {
		int64_t cut = p->upto < g ? p->upto : g;
		for (size_t i = 0; i < p->hist.len; i++)
			if (event_id(p->hist.v[i]) <= cut)
				evvec_push(&replay, event_ref(p->hist.v[i]));
		ring_collect(bus, p->user, cut, &replay);
	} else if ((uint64_t)(g - since) > bus->replay_max || !bus->history ||
		   p->tries >= SUBSCRIBE_TRIES) {
		resume.recovered = false;
	} else {
		/* The ring overtook since, or the fetched history, while no
		 * lock was held: the caller fetches again and retries. */
		p->tries++;
		unlock(&bus->lock);
		unlock(&shard->lock);
		if (err)
			*err = BUS_ESTALE;
		return NULL;
	}
	struct bus_sub *sub = xcalloc(1, sizeof(*sub));
	sub->shard = shard;
	sub->user = p->user;
	sub->ops = *ops;
	sub->arg = arg;
	sub_register(shard, bus, sub);
	unlock(&bus->lock);

	/* Still under the shard lock: no drain can deliver to sub before its
	 * hello and replay are done. */
	if (sub->ops.hello)
		sub->ops.hello(sub->arg, &resume);
	for (size_t i = 0; i < replay.len; i++) {
		struct event *ev = replay.v[i];
		if (event_id(ev) <= sub->cursor)
			continue;
		sub->cursor = event_id(ev);
		sub->ops.deliver(sub->arg, ev);
	}
	if (sub->cursor < resume.cursor)
		sub->cursor = resume.cursor;
	unlock(&shard->lock);
	evvec_release(&replay);
	if (bus->conn_hook)
		bus->conn_hook(bus->conn_arg, sub->user, 1);
	return sub;
}

struct bus_sub *bus_subscribe(struct bus_shard *shard, int64_t user_id,
			      int64_t since, const struct bus_sub_ops *ops,
			      void *arg, int *err)
{
	struct bus_prefetch *p = bus_prefetch_new(user_id, since);
	struct bus_sub *sub = NULL;
	int rc = 0;

	for (;;) {
		rc = bus_prefetch_run(shard->bus, p);
		if (rc)
			break;
		sub = bus_subscribe_prefetched(shard, p, ops, arg, &rc);
		if (sub || rc != BUS_ESTALE)
			break;
	}
	bus_prefetch_free(p);
	if (!sub && err)
		*err = rc;
	return sub;
}

void bus_unsubscribe(struct bus_sub *sub)
{
	if (!sub)
		return;
	struct bus_shard *shard = sub->shard;

	lock(&shard->lock);
	for (size_t i = 0; i < sub->rooms.cap; i++)
		if (sub->rooms.keys[i] != IMAP_EMPTY)
			room_detach(shard, sub, sub->rooms.keys[i],
				    sub->rooms.vals[i]);
	struct bus_sub *head = imap_get_ptr(&shard->users, sub->user);
	if (head == sub) {
		if (sub->next)
			imap_put(&shard->users, sub->user,
				 (uintptr_t)sub->next);
		else
			imap_del(&shard->users, sub->user);
	} else {
		struct bus_sub *p = head;
		while (p && p->next != sub)
			p = p->next;
		assert(p);
		p->next = sub->next;
	}
	atomic_fetch_sub_explicit(&shard->nsubs, 1, memory_order_relaxed);
	unlock(&shard->lock);

	if (shard->bus->conn_hook)
		shard->bus->conn_hook(shard->bus->conn_arg, sub->user, -1);
	imap_fini(&sub->rooms);
	free(sub);
}
