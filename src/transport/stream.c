/* stream: see stream.h. The pieces, and why each is here:
 *
 * - The stream lock guards the owner's per-stream state as well as ours:
 *   MHD's thread (reader, access handler), the bus (deliver, on a shard's
 *   loop) and the timer (on the stream's loop) all take it.
 * - suspended is set only by stream_suspend and cleared only by
 *   stream_wake, both under the lock, so a wake-up either comes before the
 *   owner's "anything to send?" check (which then sees the data) or finds
 *   the flag and resumes: none is lost between the check and the suspend.
 * - The timer lives on one loop and is touched only there: stream_timer_arm
 *   posts a task that arms it, stream_free posts the task that frees it
 *   (and the stream). Both check dead under the lock, and loop_post keeps
 *   their order, so a timer never fires for a freed owner. A stream whose
 *   timer was never armed is freed at once, with no task.
 * - References: the hub holds one for its owner (dropped by
 *   stream_hub_free) and one per stream (dropped by that stream's last
 *   task), so a stream that MHD frees after the module's free still finds
 *   the hub and the owner's module state (ops->destroy frees it).
 *
 * It deliberately knows nothing of framing, the bus, or what a timer means
 * to its owner (a heartbeat, a deadline), and allocates nothing per wake. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "transport/stream.h"
#include "util/util.h"

struct stream_hub {
	struct loop **loops;
	unsigned nloops;
	atomic_uint next_loop;
	struct stream_hub_ops ops;
	void *hub_arg;

	pthread_mutex_t lock; /* open, refs, closing */
	pthread_cond_t cond;  /* refs fell to 1 while closing */
	struct stream *open;  /* listed streams, doubly linked */
	size_t refs;	      /* 1 for the owner + 1 per stream */
	bool closing;
};

struct stream {
	struct stream_hub *h;
	struct stream *prev, *next; /* h->open, under h->lock */
	bool listed;
	struct loop *lp;
	struct loop_timer *timer; /* touched on lp's thread only */
	struct MHD_Connection *conn;
	void *arg;

	pthread_mutex_t mu; /* everything below, and the owner's state */
	bool suspended;
	bool ended; /* on_close ran */
	bool dead;  /* stream_free ran: no more callbacks */
	bool armed; /* stream_timer_arm was called: the loop knows st */
	unsigned arm_ms;
};

/* --- hub references ------------------------------------------------------ */

static void hub_release(struct stream_hub *h)
{
	pthread_mutex_lock(&h->lock);
	bool last = --h->refs == 0;
	if (h->refs == 1 && h->closing)
		pthread_cond_broadcast(&h->cond); /* stream_hub_free drains */
	pthread_mutex_unlock(&h->lock);
	if (!last)
		return;
	if (h->ops.destroy)
		h->ops.destroy(h->hub_arg);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

struct stream_hub *stream_hub_new(struct loop **loops, unsigned nloops,
				  const struct stream_hub_ops *ops,
				  void *hub_arg)
{
	if (!loops || nloops == 0 || !ops)
		return NULL;
	struct stream_hub *h = xcalloc(1, sizeof(*h));
	h->loops = loops;
	h->nloops = nloops;
	atomic_init(&h->next_loop, 0);
	h->ops = *ops;
	h->hub_arg = hub_arg;
	h->refs = 1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	return h;
}

void stream_hub_free(struct stream_hub *h, unsigned drain_ms)
{
	if (!h)
		return;
	/* End every open stream: the owner marks it (SSE: send what is
	 * queued, then end; long-poll: answer), and a sleeping one is woken
	 * so MHD calls it again. New streams are refused from here on, so
	 * MHD_stop_daemon() later finds none suspended. */
	pthread_mutex_lock(&h->lock);
	h->closing = true;
	for (struct stream *st = h->open; st; st = st->next) {
		pthread_mutex_lock(&st->mu);
		if (!st->dead && !st->ended) {
			st->ended = true;
			if (h->ops.on_close)
				h->ops.on_close(st, st->arg);
			stream_wake(st);
		}
		pthread_mutex_unlock(&st->mu);
	}

	/* Resuming only raises a flag in MHD: give the streams a moment to
	 * finish before the daemon is stopped; one whose client does not
	 * read is left for MHD_stop_daemon() to close. */
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += drain_ms / 1000;
	until.tv_nsec += (long)(drain_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (h->refs > 1 &&
	       pthread_cond_timedwait(&h->cond, &h->lock, &until) == 0)
		;
	pthread_mutex_unlock(&h->lock);
	hub_release(h);
}

/* --- streams ------------------------------------------------------------- */

static void timer_cb(void *arg)
{
	struct stream *st = arg;

	pthread_mutex_lock(&st->mu);
	unsigned next = 0;
	if (!st->dead && st->h->ops.on_timer)
		next = st->h->ops.on_timer(st, st->arg);
	/* On the loop's thread: the timer may be re-armed directly. */
	if (next)
		loop_timer_arm(st->timer, next, 0);
	pthread_mutex_unlock(&st->mu);
}

struct stream *stream_new(struct stream_hub *h, struct MHD_Connection *c,
			  void *arg)
{
	struct stream *st = xcalloc(1, sizeof(*st));
	unsigned i = atomic_fetch_add(&h->next_loop, 1) % h->nloops;

	st->h = h;
	st->lp = h->loops[i];
	st->timer = loop_timer_new(st->lp, timer_cb, st);
	st->conn = c;
	st->arg = arg;
	pthread_mutex_init(&st->mu, NULL);
	pthread_mutex_lock(&h->lock);
	h->refs++;
	pthread_mutex_unlock(&h->lock);
	return st;
}

int stream_open(struct stream *st)
{
	struct stream_hub *h = st->h;

	pthread_mutex_lock(&h->lock);
	bool closing = h->closing;
	if (!closing && !st->listed) {
		st->next = h->open;
		if (h->open)
			h->open->prev = st;
		h->open = st;
		st->listed = true;
	}
	pthread_mutex_unlock(&h->lock);
	return closing ? -1 : 0;
}

/* The stream's last task, on its loop: after every arming task. */
static void final_task(void *arg)
{
	struct stream *st = arg;
	struct stream_hub *h = st->h;

	loop_timer_free(st->timer);
	pthread_mutex_destroy(&st->mu);
	free(st);
	hub_release(h);
}

void stream_free(struct stream *st)
{
	if (!st)
		return;
	struct stream_hub *h = st->h;

	pthread_mutex_lock(&h->lock);
	if (st->listed) {
		if (st->prev)
			st->prev->next = st->next;
		else
			h->open = st->next;
		if (st->next)
			st->next->prev = st->prev;
		st->prev = st->next = NULL;
		st->listed = false;
	}
	pthread_mutex_unlock(&h->lock);
	/* Waits for a timer callback in progress; none starts after. */
	pthread_mutex_lock(&st->mu);
	st->dead = true;
	bool armed = st->armed;
	pthread_mutex_unlock(&st->mu);
	/* A timer never armed was never seen by its loop (a poll answered at
	 * once, the common case under load): free it here, without a task. */
	if (armed)
		loop_post(st->lp, final_task, st);
	else
		final_task(st);
}

void stream_lock(struct stream *st)
{
	pthread_mutex_lock(&st->mu);
}

void stream_unlock(struct stream *st)
{
	pthread_mutex_unlock(&st->mu);
}

bool stream_suspend(struct stream *st)
{
	if (st->ended || st->dead)
		return false;
	st->suspended = true;
	MHD_suspend_connection(st->conn);
	return true;
}

void stream_wake(struct stream *st)
{
	if (!st->suspended)
		return;
	st->suspended = false;
	MHD_resume_connection(st->conn);
}

static void arm_task(void *arg)
{
	struct stream *st = arg;

	pthread_mutex_lock(&st->mu);
	bool dead = st->dead;
	unsigned ms = st->arm_ms;
	pthread_mutex_unlock(&st->mu);
	if (!dead)
		loop_timer_arm(st->timer, ms, 0);
}

void stream_timer_arm(struct stream *st, unsigned ms)
{
	pthread_mutex_lock(&st->mu);
	st->arm_ms = ms;
	st->armed = true;
	pthread_mutex_unlock(&st->mu);
	loop_post(st->lp, arm_task, st);
}
