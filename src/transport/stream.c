/* stream: see stream.h. The pieces, and why each is here:
 *
 * - The stream lock guards the owner's per-stream state as well as ours:
 *   MHD's thread (reader, access handler), the bus (deliver, on a shard's
 *   loop) and the timer (on the stream's loop) all take it.
 * - suspended is set only by stream_suspend and cleared only by
 *   stream_wake, both under the lock, so a wake-up either comes before the
 *   owner's "anything to send?" check (which then sees the data) or finds
 *   the flag and resumes: none is lost between the check and the suspend.
 * - Timers: per hub and loop, one queue of the streams with a deadline,
 *   earliest first, and one loop timer armed at the head's deadline. A
 *   stream joins and leaves its queue under the queue's mutex from any
 *   thread, so arming and freeing cost no loop_post; only a new earliest
 *   deadline posts a task (the loop timer is touched on its loop only).
 *   Deadlines are mostly appended (a long-poll timeout, the next
 *   heartbeat), so a sorted insert walking from the tail is O(1) in
 *   practice. The queue callback calls on_timer with the queue mutex and
 *   the stream lock held, so stream_free, which takes the queue mutex
 *   before it frees, never frees a stream in the middle of its callback.
 * - References: the hub holds one for its owner (dropped by
 *   stream_hub_free) and one per stream (dropped by stream_free), so a
 *   stream that MHD frees after the module's free still finds the hub and
 *   the owner's module state (ops->destroy frees it with the last one).
 *
 * Lock order, extending stream.h's: queue mutex -> stream lock -> MHD.
 *
 * It deliberately knows nothing of framing, the bus, or what a timer means
 * to its owner (a heartbeat, a deadline), and allocates nothing per wake. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "transport/stream.h"
#include "util/util.h"

/* Per hub and loop. Freed on its loop (queue_free_task) after the hub. */
struct stream_queue {
	struct loop *lp;
	struct loop_timer *timer; /* on lp's thread only */
	stream_timer_fn on_timer; /* a copy: the hub may be gone first */
	pthread_mutex_t mu;	  /* the list and its streams' due times */
	struct stream *head, *tail;
	bool rearm_posted; /* a rearm_task is queued */
};

struct stream_hub {
	struct stream_queue **queues; /* one per loop */
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
	struct stream_queue *q;
	struct stream *qprev, *qnext; /* q's list, under q->mu */
	bool queued;
	int64_t due; /* mono_ms, while queued */
	struct MHD_Connection *conn;
	void *arg;

	pthread_mutex_t mu; /* everything below, and the owner's state */
	bool suspended;
	bool ended; /* on_close ran */
	bool dead;  /* stream_free ran: no more callbacks */
};

/* --- deadline queues ------------------------------------------------------ */

/* With q->mu held. */
static void queue_remove(struct stream_queue *q, struct stream *st)
{
	if (!st->queued)
		return;
	if (st->qprev)
		st->qprev->qnext = st->qnext;
	else
		q->head = st->qnext;
	if (st->qnext)
		st->qnext->qprev = st->qprev;
	else
		q->tail = st->qprev;
	st->qprev = st->qnext = NULL;
	st->queued = false;
}

/* With q->mu held: sorted by due, equal ones in arming order. */
static void queue_insert(struct stream_queue *q, struct stream *st, int64_t due)
{
	struct stream *at = q->tail;

	st->due = due;
	while (at && at->due > due)
		at = at->qprev;
	st->qprev = at;
	st->qnext = at ? at->qnext : q->head;
	if (st->qnext)
		st->qnext->qprev = st;
	else
		q->tail = st;
	if (at)
		at->qnext = st;
	else
		q->head = st;
	st->queued = true;
}

/* On q's loop: arm its timer at the head's deadline. */
static void queue_arm(struct stream_queue *q)
{
	pthread_mutex_lock(&q->mu);
	bool any = q->head != NULL;
	int64_t left = any ? q->head->due - mono_ms() : 0;
	pthread_mutex_unlock(&q->mu);
	if (!any)
		loop_timer_cancel(q->timer);
	else
		loop_timer_arm(q->timer, left > 0 ? (unsigned)left : 0, 0);
}

static void rearm_task(void *arg)
{
	struct stream_queue *q = arg;

	pthread_mutex_lock(&q->mu);
	q->rearm_posted = false;
	pthread_mutex_unlock(&q->mu);
	queue_arm(q);
}

/* The queue's loop timer: run every stream whose deadline passed. */
static void queue_fire(void *arg)
{
	struct stream_queue *q = arg;
	int64_t now = mono_ms();

	pthread_mutex_lock(&q->mu);
	while (q->head && q->head->due <= now) {
		struct stream *st = q->head;
		queue_remove(q, st);
		pthread_mutex_lock(&st->mu);
		unsigned next = st->dead ? 0 : q->on_timer(st, st->arg);
		pthread_mutex_unlock(&st->mu);
		/* Due later than now: it cannot come round again here. */
		if (next)
			queue_insert(q, st, now + next);
	}
	pthread_mutex_unlock(&q->mu);
	queue_arm(q);
}

static void queue_free_task(void *arg)
{
	struct stream_queue *q = arg;

	loop_timer_free(q->timer);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* --- hub ------------------------------------------------------------------ */

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
	/* Empty now; their timers are their loops' to free. */
	for (unsigned i = 0; i < h->nloops; i++)
		loop_post(h->queues[i]->lp, queue_free_task, h->queues[i]);
	free(h->queues);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static unsigned no_timer(struct stream *st, void *arg)
{
	(void)st;
	(void)arg;
	return 0;
}

struct stream_hub *stream_hub_new(struct loop **loops, unsigned nloops,
				  const struct stream_hub_ops *ops,
				  void *hub_arg)
{
	if (!loops || nloops == 0 || !ops)
		return NULL;
	struct stream_hub *h = xcalloc(1, sizeof(*h));
	h->nloops = nloops;
	h->queues = xcalloc(nloops, sizeof(*h->queues));
	for (unsigned i = 0; i < nloops; i++) {
		struct stream_queue *q = xcalloc(1, sizeof(*q));
		q->lp = loops[i];
		q->timer = loop_timer_new(q->lp, queue_fire, q);
		q->on_timer = ops->on_timer ? ops->on_timer : no_timer;
		pthread_mutex_init(&q->mu, NULL);
		h->queues[i] = q;
	}
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
	 * read is left for MHD_stop_daemon() to close. (h->cond's clock is
	 * the monotonic one, as mono_deadline's.) */
	struct timespec until = mono_deadline(drain_ms);
	while (h->refs > 1 &&
	       pthread_cond_timedwait(&h->cond, &h->lock, &until) == 0)
		;
	pthread_mutex_unlock(&h->lock);
	hub_release(h);
}

/* --- streams -------------------------------------------------------------- */

struct stream *stream_new(struct stream_hub *h, struct MHD_Connection *c,
			  void *arg)
{
	struct stream *st = xcalloc(1, sizeof(*st));
	unsigned i = atomic_fetch_add(&h->next_loop, 1) % h->nloops;

	st->h = h;
	st->q = h->queues[i];
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

void stream_free(struct stream *st)
{
	if (!st)
		return;
	struct stream_hub *h = st->h;
	struct stream_queue *q = st->q;

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
	/* Waits for a timer callback in progress (it holds q->mu); none
	 * starts after. The loop timer may still fire for an earlier head:
	 * it then finds nothing due. */
	pthread_mutex_lock(&q->mu);
	queue_remove(q, st);
	pthread_mutex_unlock(&q->mu);
	pthread_mutex_lock(&st->mu);
	st->dead = true;
	pthread_mutex_unlock(&st->mu);
	pthread_mutex_destroy(&st->mu);
	free(st);
	hub_release(h);
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

void stream_timer_arm(struct stream *st, unsigned ms)
{
	struct stream_queue *q = st->q;
	bool post = false;

	pthread_mutex_lock(&q->mu);
	queue_remove(q, st);
	queue_insert(q, st, mono_ms() + ms);
	/* Only a new earliest deadline needs the loop timer moved. */
	if (q->head == st && !q->rearm_posted) {
		q->rearm_posted = true;
		post = true;
	}
	pthread_mutex_unlock(&q->mu);
	if (post)
		loop_post(q->lp, rearm_task, q);
}
