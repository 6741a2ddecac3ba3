/* stream: the lifecycle that SSE and long-poll share. A stream is one HTTP
 * response held open on a suspended libmicrohttpd connection: it sleeps
 * while it has nothing to send, is woken by the bus (any thread) or by its
 * timer (on one of natter's event loops), is ended by its module's free,
 * and is freed exactly once. The owner (sse.c, longpoll.c) keeps its
 * framing and its rules; this module keeps the lock, the suspended flag,
 * the timer, the list of open streams, and the references that let a
 * module's state outlive its free until MHD has let go of every stream.
 *
 * Lock order, the only nesting there is:
 *   hub lock -> stream lock -> MHD's own
 *   shard lock (bus callbacks) -> stream lock -> MHD's own
 * Callbacks run with the stream lock held. */
#ifndef NATTER_STREAM_H
#define NATTER_STREAM_H

#include <stdbool.h>

#include <microhttpd.h>

#include "net/loop.h"

struct stream_hub;
struct stream;

/* arg is what stream_new was given. Called with the stream lock held. */
typedef void (*stream_fn)(struct stream *st, void *arg);
/* Its timer fired (on the stream's loop): returns the milliseconds until
 * it should fire again, or 0 for not again. */
typedef unsigned (*stream_timer_fn)(struct stream *st, void *arg);

struct stream_hub_ops {
	stream_timer_fn on_timer;
	stream_fn on_close; /* stream_hub_free ends it; then it is woken */
	/* The last reference is gone (the hub's free and every stream's):
	 * free the owner's module state. Any thread. */
	void (*destroy)(void *hub_arg);
};

/* --- hub: one per owning module --- */

/* Streams are spread over loops[0..nloops) (borrowed; they must outlive
 * the hub's last stream). NULL when nloops is 0. */
struct stream_hub *stream_hub_new(struct loop **loops, unsigned nloops,
				  const struct stream_hub_ops *ops,
				  void *hub_arg);
/* Refuse new streams; for every open one call on_close and wake it; wait
 * at most drain_ms for them to be freed; drop the owner's reference (the
 * hub and hub_arg live on until the last stream is freed). NULL is fine. */
void stream_hub_free(struct stream_hub *h, unsigned drain_ms);

/* --- one stream --- */

/* A stream for connection c on the next loop (round robin). Not yet open:
 * stream_hub_free does not see it. Caller frees with stream_free. */
struct stream *stream_new(struct stream_hub *h, struct MHD_Connection *c,
			  void *arg);
/* List it, so stream_hub_free will end it: 0, or -1 when the hub is
 * closing already (then answer at once and free it). */
int stream_open(struct stream *st);
/* The one place a stream goes: unlist it, cancel its timer. After it no
 * callback runs for it, so the owner may free arg. Any thread, no lock
 * held. NULL is fine. */
void stream_free(struct stream *st);

/* --- with the stream lock held --- */

void stream_lock(struct stream *st);
void stream_unlock(struct stream *st);
/* Suspend the connection (from MHD's reader or access handler): true, or
 * false when stream_hub_free is ending the stream (answer now instead). */
bool stream_suspend(struct stream *st);
/* Resume the connection if it is suspended (MHD forbids resuming one that
 * is not, hence the flag). */
void stream_wake(struct stream *st);

/* --- timer: any thread, WITHOUT the stream lock (lock order: the timer's
 * queue, then the stream) --- */

/* Fire on_timer after ms (then as on_timer says), on the stream's loop.
 * Re-arms. */
void stream_timer_arm(struct stream *st, unsigned ms);

#endif
