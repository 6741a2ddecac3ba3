/* replay: a small pool of threads that reads history for subscribers whose
 * cursor is older than the bus's ring (bus_prefetch_run: up to replay_max
 * events from the store), so that an event loop never blocks on it. The
 * queue is bounded: a full queue refuses the job at once, and the transport
 * answers "try again" (WebSocket: an error frame "busy" with retry_after,
 * then close 1013; HTTP: 503 with Retry-After).
 *
 * Order: first come, first served, with at most per_user_max jobs queued
 * or running per user. FIFO keeps one connection's wait bounded by the
 * jobs ahead of it (no starvation, and the oldest reconnect is served
 * first, which is what a restart's reconnect storm needs); the per-user
 * cap keeps one user (many tabs, a reconnect loop) from filling the queue
 * for everyone. Round-robin per user would add bookkeeping for no gain
 * once each user is capped to a couple of jobs. */
#ifndef NATTER_REPLAY_H
#define NATTER_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"

struct replay;

enum replay_err {
	REPLAY_EBUSY = -1 /* queue full, or the user has too many jobs */
};

/* threads >= 1 workers; queue_max jobs waiting at most; per_user_max jobs
 * per user waiting or running. */
struct replay *replay_new(struct bus *bus, unsigned threads, size_t queue_max,
			  size_t per_user_max);
/* Stops the workers; a job still queued is done with REPLAY_EBUSY (its
 * done runs on the freeing thread). NULL is fine. */
void replay_free(struct replay *r);

/* Runs on a worker thread once p has been fetched (bus_prefetch_run's
 * status in rc: 0, BUS_EFUTURE, BUS_EHISTORY), or with REPLAY_EBUSY at
 * replay_free. p stays the caller's. */
typedef void (*replay_done_fn)(void *arg, struct bus_prefetch *p, int rc);
/* Queue a fetch of p (user and cursor from bus_prefetch_new): 0, and done
 * runs exactly once later; or REPLAY_EBUSY and done never runs. */
int replay_submit(struct replay *r, int64_t user_id, struct bus_prefetch *p,
		  replay_done_fn done, void *arg);
/* bus_subscribe for a thread that may wait but should not read history
 * itself beyond the pool's bound (an HTTP worker: SSE, long-poll): when
 * since needs history, the read runs on the pool and this waits for it;
 * then the locked part runs here. r NULL: plain bus_subscribe. NULL with
 * *err = REPLAY_EBUSY (answer "try again"), or a bus_sub_err. */
struct bus_sub *replay_subscribe(struct replay *r, struct bus_shard *shard,
				 int64_t user_id, int64_t since,
				 const struct bus_sub_ops *ops, void *arg,
				 int *err);
/* Hold a place for user_id's fetch now (one of the queue's and one of
 * the user's), so that the fetch a WebSocket submits after its upgrade is
 * not refused: the refusal comes before the upgrade, as an HTTP 503 a
 * browser backs off from, never after it as an error frame. 0, or
 * REPLAY_EBUSY. A reservation ends in exactly one replay_submit_reserved
 * or replay_release. */
int replay_reserve(struct replay *r, int64_t user_id);
/* The fetch was not needed after all (the ring caught up with the
 * cursor, or the connection ended before it started). */
void replay_release(struct replay *r, int64_t user_id);
/* replay_submit on a reservation: refused only while the pool stops
 * (REPLAY_EBUSY; the reservation is released then too). */
int replay_submit_reserved(struct replay *r, int64_t user_id,
			   struct bus_prefetch *p, replay_done_fn done,
			   void *arg);
/* Seconds a refused client should wait before it tries again. */
unsigned replay_retry_after(const struct replay *r);

#endif
