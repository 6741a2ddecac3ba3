/* bus: rooms, subscribers and fan-out. Pure logic: no sockets, no SQL, no
 * TLS. It keeps
 *   - who is a member of which room (loaded at start, then kept current by
 *     the join/leave/room events that pass through bus_publish);
 *   - a ring of the most recent persistent events, so a reconnecting client
 *     resumes from memory;
 *   - one shard per event loop: each shard has its own subscribers and an
 *     inbox. bus_publish() appends an event reference to every shard's inbox
 *     (one lock per shard per event, never per delivery) and wakes the shard;
 *     the shard's loop calls bus_shard_drain(), which delivers to the shard's
 *     subscribers of that room.
 *
 * A subscriber is one live connection of one logged-in user; it receives
 * the events of every room the user belongs to. Joining or leaving a room
 * takes effect on all the user's live connections at once.
 *
 * Threads: every function is safe to call from any thread. Callbacks of a
 * subscriber run with its shard's lock held: they must not call back into
 * the bus for that shard (no subscribe, unsubscribe, drain). */
#ifndef NATTER_BUS_H
#define NATTER_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/event.h"

struct bus;
struct bus_shard;
struct bus_sub;

/* Where the bus reads persistent events older than its ring (store).
 * Must return, in increasing id order, at most limit events with
 * id > after in rooms user_id belongs to; *out is a malloc'd array of
 * references that the bus takes over. Returns 0 or -1. */
typedef int (*bus_history_fn)(void *arg, int64_t user_id, int64_t after,
			      size_t limit, struct event ***out, size_t *n);

/* last_id: the newest persistent event id in history at start-up (0 if
 * none). replay_max: a resume that would need more than this many events is
 * answered recovered=false and starts from now. */
struct bus *bus_new(size_t ring_size, size_t replay_max, int64_t last_id,
		    bus_history_fn history, void *history_arg);
void bus_free(struct bus *bus); /* after every shard and subscriber is gone */

/* Start-up: record that user is a member of room. */
void bus_member_add(struct bus *bus, int64_t room_id, int64_t user_id);
bool bus_is_member(struct bus *bus, int64_t room_id, int64_t user_id);
/* Whether users a and b are members of one room at least. */
bool bus_shares_room(struct bus *bus, int64_t a, int64_t b);
/* The users who share a room with user (not user): their ids in *out
 * (malloc'd, caller frees), their number returned. */
size_t bus_peers(struct bus *bus, int64_t user, int64_t **out);
/* Told of every subscriber's start (delta 1, after its hello and replay)
 * and end (-1, in bus_unsubscribe), from the thread that subscribes or
 * unsubscribes, with no bus lock held. Set before the first subscriber. */
typedef void (*bus_conn_fn)(void *arg, int64_t user_id, int delta);
void bus_set_conn_hook(struct bus *bus, bus_conn_fn fn, void *arg);
/* Newest persistent id published so far. */
int64_t bus_last_id(struct bus *bus);

/* Publish. Persistent events (id > 0) must arrive in strictly increasing id
 * order (the store's commit hook guarantees it); they enter the ring and
 * apply their membership change as the event-type table's effect column
 * says (JOIN adds, LEAVE removes after delivery, ROOM adds the creator).
 * Ephemeral events (id 0) go only to live subscribers of the room; an
 * ephemeral event whose room is BUS_PERSONAL goes to every live connection
 * of its user (event_user: the one it is for, e.g. their own settings or
 * read markers changed on another device), whatever rooms they are in.
 * Takes its own reference; the caller keeps its.
 * Returns 0, or BUS_EORDER when ev breaks the id order (a persistent id at
 * or below bus_last_id, a persistent BUS_PERSONAL event, or an ephemeral
 * event with an id): ev is refused
 * and counted in bus_id_violations; the caller logs it. */
#define BUS_PERSONAL 0 /* the room of a personal ephemeral event */
/* An ephemeral event whose room is BUS_PEERS goes to every live connection
 * of every user who shares a room with its user (presence), once per
 * connection however many rooms they share; not to the user's own. */
#define BUS_PEERS (-1)
int bus_publish(struct bus *bus, struct event *ev);
/* A revision of a persistent event (event_is_revision: the same id, a new
 * envelope, such as a deleted message's tombstone) replaces the ring's
 * copy, so that a replay from the ring sends what history holds; it is
 * not delivered (live subscribers get the event that caused it, e.g. the
 * delete). true if the ring held that id. Takes its own reference. */
bool bus_revise(struct bus *bus, struct event *ev);
/* How many publishes were refused with BUS_EORDER, for /metrics. */
uint64_t bus_id_violations(struct bus *bus);

/* Shards. wake(arg) is called (from any thread) when the shard's inbox
 * turns non-empty; the owner must then call bus_shard_drain() on its loop. */
struct bus_shard *bus_shard_new(struct bus *bus, void (*wake)(void *arg),
				void *arg);
void bus_shard_free(struct bus_shard *shard); /* no subscribers left */
void bus_shard_drain(struct bus_shard *shard);
/* Round-robin choice, for subscribers that live on no loop (SSE, poll). */
struct bus_shard *bus_shard_pick(struct bus *bus);

/* Subscribers. */
struct bus_resume {
	int64_t cursor; /* newest id at subscribe time */
	bool recovered; /* false: events after since are no longer
			   available; the client must reload history */
};
struct bus_sub_ops {
	/* Called first, once, inside bus_subscribe. */
	void (*hello)(void *arg, const struct bus_resume *r);
	/* Each event for this subscriber: replayed ones first, then live ones,
	 * persistent ids strictly increasing, never twice. ev is borrowed:
	 * event_ref() it to keep it. */
	void (*deliver)(void *arg, struct event *ev);
};
enum bus_sub_err {
	BUS_EFUTURE = -2,  /* since is newer than the newest event */
	BUS_EHISTORY = -3, /* the history callback failed */
	BUS_EORDER = -4,   /* bus_publish: an id out of order */
	BUS_ESTALE = -5	   /* bus_subscribe_prefetched: fetch again */
};
/* since < 0: from now on. since >= 0: replay every event after since first.
 * Returns NULL and sets *err (a bus_sub_err) on failure. */
struct bus_sub *bus_subscribe(struct bus_shard *shard, int64_t user_id,
			      int64_t since, const struct bus_sub_ops *ops,
			      void *arg, int *err);
/* The same in two steps, so that the history read (up to replay_max events
 * from the store) runs on a thread of the caller's choosing, never on an
 * event loop, and only the short locked part runs where the subscriber
 * lives:
 *   p = bus_prefetch_new(user, since);
 *   bus_prefetch_run(bus, p);                    any thread, may block
 *   sub = bus_subscribe_prefetched(shard, p, ...); the subscriber's thread
 * bus_subscribe_prefetched returns NULL with BUS_ESTALE when the ring moved
 * past the fetch meanwhile: run p again and retry (after a few tries the
 * answer is recovered=false). It does not take p; free it with
 * bus_prefetch_free. bus_prefetch_run returns 0, BUS_EFUTURE or
 * BUS_EHISTORY. bus_history_needed says whether a subscribe from since
 * would read history at all (else bus_subscribe never blocks). */
struct bus_prefetch;
struct bus_prefetch *bus_prefetch_new(int64_t user_id, int64_t since);
int bus_prefetch_run(struct bus *bus, struct bus_prefetch *p);
void bus_prefetch_free(struct bus_prefetch *p); /* NULL is fine */
bool bus_history_needed(struct bus *bus, int64_t since);
struct bus_sub *bus_subscribe_prefetched(struct bus_shard *shard,
					 struct bus_prefetch *p,
					 const struct bus_sub_ops *ops,
					 void *arg, int *err);
/* After it returns, no callback of sub runs any more. Not from inside a
 * callback of the same shard. NULL is fine. */
void bus_unsubscribe(struct bus_sub *sub);

/* Counts, for /metrics and tests. */
size_t bus_subscriber_count(struct bus *bus);

#endif
