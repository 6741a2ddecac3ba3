/* longpoll: GET /poll. A poll subscribes to the bus from its cursor; if
 * the subscription brings events (a replay) or says the cursor is lost, it
 * answers at once. Otherwise it suspends the MHD connection, and the first
 * delivered event, its deadline or longpoll_free resumes it; MHD then calls
 * the access handler again and longpoll_handle answers with what was
 * collected: {"events":[envelopes],"cursor":N,"recovered":B}. The body is
 * the envelopes' bytes concatenated, never re-parsed.
 *
 * One timer thread per module (never one per poll) keeps the waiting polls
 * in a list sorted by deadline and resumes those whose time is up.
 *
 * It deliberately keeps nothing between polls: the cursor in the answer is
 * all a client needs for the next one, on any transport. It does not batch
 * by delaying the answer: events delivered while MHD gets around to the
 * resumed connection join the same answer anyway.
 *
 * Locks, in the only order they are ever nested:
 *   lp->lock -> poll->mu -> MHD's own      (handle, timer thread, free)
 *   shard lock (bus, around hello/deliver) -> poll->mu -> MHD's own
 * The bus is never called with lp->lock or poll->mu held. */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "util/log.h"
#include "transport/longpoll.h"
#include "util/util.h"

/* longpoll_free waits at most this long for the resumed polls' answers. */
#define LONGPOLL_DRAIN_MS 1000

struct longpoll {
	struct bus *bus;
	struct replay *replay; /* history reads; NULL: inline */
	struct metrics *m;
	size_t bytes_max; /* envelope bytes per answer, past the first event */

	pthread_mutex_t lock; /* the deadline list, refs, closing */
	/* Signalled when the earliest deadline moves, when closing, and when
	 * the last poll is gone. */
	pthread_cond_t cond;
	struct lp_poll *head, *tail; /* waiting polls, earliest first */
	/* 1 for the module plus 1 per poll: a poll resumed by longpoll_free
	 * comes back through longpoll_handle after it. */
	size_t refs;
	bool closing;
	bool timer_started;
	pthread_t timer;
};

struct lp_poll {
	struct longpoll *lp;
	struct lp_poll *prev, *next; /* in the deadline list, under lp->lock */
	bool listed;
	bool counted; /* in metrics.connections */
	int64_t deadline_ms;
	struct MHD_Connection *conn;
	struct bus_sub *sub;

	pthread_mutex_t mu; /* everything below */
	int64_t cursor;	    /* from hello */
	bool recovered;
	struct event **evs; /* at most LONGPOLL_BATCH_MAX references */
	size_t nevs, cap;
	size_t bytes;	/* envelope bytes in evs */
	bool full;	/* an event did not fit: this answer takes no more */
	bool suspended; /* suspended by longpoll_handle, not resumed since */
};

/* --- helpers -------------------------------------------------------------- */

/* With poll->mu held: resume the connection if it is suspended. MHD
 * forbids resuming a connection that is not suspended, hence the flag. */
static void poll_wake(struct lp_poll *p)
{
	if (!p->suspended)
		return;
	p->suspended = false;
	MHD_resume_connection(p->conn);
}

/* With lp->lock held. */
static void list_insert(struct longpoll *lp, struct lp_poll *p)
{
	/* From the tail: polls mostly share one timeout, so a new deadline
	 * is usually the latest. */
	struct lp_poll *at = lp->tail;
	while (at && at->deadline_ms > p->deadline_ms)
		at = at->prev;
	p->prev = at;
	p->next = at ? at->next : lp->head;
	if (p->next)
		p->next->prev = p;
	else
		lp->tail = p;
	if (at)
		at->next = p;
	else
		lp->head = p;
	p->listed = true;
}

/* With lp->lock held. */
static void list_remove(struct longpoll *lp, struct lp_poll *p)
{
	if (!p->listed)
		return;
	if (p->prev)
		p->prev->next = p->next;
	else
		lp->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		lp->tail = p->prev;
	p->prev = p->next = NULL;
	p->listed = false;
}

static void lp_destroy(struct longpoll *lp)
{
	pthread_cond_destroy(&lp->cond);
	pthread_mutex_destroy(&lp->lock);
	free(lp);
}

/* --- polls ---------------------------------------------------------------- */

static struct lp_poll *poll_new(struct longpoll *lp, struct MHD_Connection *c)
{
	struct lp_poll *p = xcalloc(1, sizeof(*p));
	p->lp = lp;
	p->conn = c;
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_lock(&lp->lock);
	lp->refs++;
	pthread_mutex_unlock(&lp->lock);
	return p;
}

/* Off the timer and the bus; afterwards only its owner touches p. Not
 * with any lock held (bus_unsubscribe takes the shard lock). */
static void poll_detach(struct lp_poll *p)
{
	struct longpoll *lp = p->lp;

	pthread_mutex_lock(&lp->lock);
	list_remove(lp, p);
	pthread_mutex_unlock(&lp->lock);
	bus_unsubscribe(p->sub);
	p->sub = NULL;
}

/* The one place a poll is freed: after answering, when the request ends
 * unanswered (longpoll_request_done), or when subscribing failed. */
static void poll_free(struct lp_poll *p)
{
	struct longpoll *lp = p->lp;

	poll_detach(p);
	for (size_t i = 0; i < p->nevs; i++)
		event_unref(p->evs[i]);
	free(p->evs);
	pthread_mutex_destroy(&p->mu);
	if (p->counted)
		metrics_dec(lp->m->connections[TRANSPORT_POLL]);
	free(p);

	pthread_mutex_lock(&lp->lock);
	bool last = --lp->refs == 0;
	if (lp->refs == 1 && lp->closing)
		pthread_cond_broadcast(&lp->cond); /* longpoll_free drains */
	pthread_mutex_unlock(&lp->lock);
	if (last)
		lp_destroy(lp);
}

/* Answer with what the poll collected, and free it. */
static enum MHD_Result poll_answer(struct lp_poll *p, struct MHD_Connection *c,
				   struct reply_log *log)
{
	struct longpoll *lp = p->lp;
	struct buf b;

	poll_detach(p); /* no deliver runs any more: p is ours alone */
	int64_t cursor = p->cursor;
	buf_init(&b);
	buf_puts(&b, "{\"events\":[");
	for (size_t i = 0; i < p->nevs; i++) {
		size_t len;
		const char *json = event_json(p->evs[i], &len);
		if (i > 0)
			buf_append(&b, ",", 1);
		buf_append(&b, json, len);
		/* Ephemeral events have id 0 and leave the cursor alone. */
		if (event_id(p->evs[i]) > 0)
			cursor = event_id(p->evs[i]);
	}
	buf_printf(&b, "],\"cursor\":%lld,\"recovered\":%s}", (long long)cursor,
		   p->recovered ? "true" : "false");
	metrics_add(lp->m->delivered[TRANSPORT_POLL], p->nevs);
	poll_free(p);

	/* MHD sends the body from b itself (a copy of it would double each
	 * waiting poll's memory at a burst). */
	size_t blen = b.len;
	return reply_json_take(c, log, 200, buf_steal(&b), blen);
}

/* --- bus callbacks: shard lock held, so only poll->mu and MHD ------------- */

static void on_hello(void *arg, const struct bus_resume *r)
{
	struct lp_poll *p = arg;

	pthread_mutex_lock(&p->mu);
	p->cursor = r->cursor;
	p->recovered = r->recovered;
	pthread_mutex_unlock(&p->mu);
}

static void on_deliver(void *arg, struct event *ev)
{
	struct lp_poll *p = arg;

	pthread_mutex_lock(&p->mu);
	/* Beyond the batch, events are dropped: the cursor names the last
	 * one included, and the next poll replays the rest. Once one event did
	 * not fit, no later one may (that would skip it). */
	size_t len;
	event_json(ev, &len);
	if (!p->full &&
	    (p->nevs == LONGPOLL_BATCH_MAX ||
	     (p->nevs > 0 && p->bytes + len + 1 > p->lp->bytes_max)))
		p->full = true;
	if (!p->full) {
		p->bytes += len + 1;
		if (p->nevs == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 8;
			if (p->cap > LONGPOLL_BATCH_MAX)
				p->cap = LONGPOLL_BATCH_MAX;
			p->evs = xrealloc(p->evs, p->cap * sizeof(*p->evs));
		}
		p->evs[p->nevs++] = event_ref(ev);
	}
	poll_wake(p);
	pthread_mutex_unlock(&p->mu);
}

static const struct bus_sub_ops poll_ops = {
    .hello = on_hello,
    .deliver = on_deliver,
};

/* --- the timer thread ----------------------------------------------------- */

static void *timer_main(void *arg)
{
	struct longpoll *lp = arg;

	pthread_mutex_lock(&lp->lock);
	while (!lp->closing) {
		int64_t now = mono_ms();
		while (lp->head && lp->head->deadline_ms <= now) {
			struct lp_poll *p = lp->head;
			list_remove(lp, p);
			pthread_mutex_lock(&p->mu);
			poll_wake(p);
			pthread_mutex_unlock(&p->mu);
		}
		if (!lp->head) {
			pthread_cond_wait(&lp->cond, &lp->lock);
			continue;
		}
		struct timespec ts;
		/* cond runs on CLOCK_MONOTONIC, as mono_ms() does. */
		int64_t at = lp->head->deadline_ms;
		ts.tv_sec = (time_t)(at / 1000);
		ts.tv_nsec = (long)(at % 1000) * 1000000;
		pthread_cond_timedwait(&lp->cond, &lp->lock, &ts);
	}
	pthread_mutex_unlock(&lp->lock);
	return NULL;
}

/* --- public --------------------------------------------------------------- */

void longpoll_set_replay(struct longpoll *lp, struct replay *r)
{
	lp->replay = r;
}

struct longpoll *longpoll_new(struct bus *bus, struct metrics *m,
			      size_t bytes_max)
{
	struct longpoll *lp = xcalloc(1, sizeof(*lp));
	lp->bus = bus;
	lp->m = m;
	lp->bytes_max = bytes_max ? bytes_max : SIZE_MAX;
	lp->refs = 1;
	pthread_mutex_init(&lp->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lp->cond, &ca);
	pthread_condattr_destroy(&ca);

	int err = pthread_create(&lp->timer, NULL, timer_main, lp);
	if (err != 0) {
		errno = err;
		goto fail;
	}
	lp->timer_started = true;
	return lp;
fail:
	lp_destroy(lp);
	return NULL;
}

void longpoll_free(struct longpoll *lp)
{
	if (!lp)
		return;
	/* Resume every waiting poll: MHD calls longpoll_handle for each,
	 * which answers with its batch so far (lp lives on through the
	 * polls' references). Polls still being set up see closing and
	 * answer without suspending, so MHD_stop_daemon() finds none. */
	pthread_mutex_lock(&lp->lock);
	lp->closing = true;
	while (lp->head) {
		struct lp_poll *p = lp->head;
		list_remove(lp, p);
		pthread_mutex_lock(&p->mu);
		poll_wake(p);
		pthread_mutex_unlock(&p->mu);
	}
	pthread_cond_signal(&lp->cond);
	pthread_mutex_unlock(&lp->lock);
	if (lp->timer_started)
		pthread_join(lp->timer, NULL);

	/* Resuming only raises a flag in MHD: give the polls a moment to be
	 * answered before the daemon is stopped (which would drop them). */
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += LONGPOLL_DRAIN_MS / 1000;
	pthread_mutex_lock(&lp->lock);
	while (lp->refs > 1 &&
	       pthread_cond_timedwait(&lp->cond, &lp->lock, &until) == 0)
		;
	bool last = --lp->refs == 0;
	pthread_mutex_unlock(&lp->lock);
	if (last)
		lp_destroy(lp);
}

enum MHD_Result longpoll_handle(struct longpoll *lp, struct MHD_Connection *c,
				struct reply_log *log,
				const struct transport_client *cl,
				int64_t since, unsigned timeout_s, void **state)
{
	struct lp_poll *p = *state;
	int err = 0;

	if (p) {
		/* Resumed: by an event, the deadline or longpoll_free. */
		*state = NULL;
		return poll_answer(p, c, log);
	}

	p = poll_new(lp, c);
	p->sub = replay_subscribe(lp->replay, bus_shard_pick(lp->bus),
				  cl->user_id, since, &poll_ops, p, &err);
	if (!p->sub) {
		poll_free(p);
		if (err == REPLAY_EBUSY)
			return reply_busy(c, log, replay_retry_after(lp->replay));
		if (err == BUS_EFUTURE)
			return reply_error(c, log, 400, "bad_cursor",
					   "the cursor is newer than the "
					   "newest event");
		log_error("poll subscribe failed user=%lld err=%d",
			  (long long)cl->user_id, err);
		return reply_error(c, log, 500, "internal",
				   "cannot read the event history");
	}
	p->counted = true;
	metrics_inc(lp->m->connections[TRANSPORT_POLL]);
	metrics_inc(lp->m->connections_total[TRANSPORT_POLL]);

	/* Wait only if nothing is there yet. Both locks are held from the
	 * check to the suspension, so a deliver on another thread either
	 * came before (and we answer now) or finds the flag and resumes. */
	pthread_mutex_lock(&lp->lock);
	pthread_mutex_lock(&p->mu);
	bool wait =
	    !lp->closing && timeout_s > 0 && p->nevs == 0 && p->recovered;
	if (wait) {
		p->deadline_ms = mono_ms() + (int64_t)timeout_s * 1000;
		list_insert(lp, p);
		if (lp->head == p)
			pthread_cond_signal(&lp->cond);
		p->suspended = true;
		MHD_suspend_connection(c);
		*state = p;
	}
	pthread_mutex_unlock(&p->mu);
	pthread_mutex_unlock(&lp->lock);
	if (wait)
		return MHD_YES;
	return poll_answer(p, c, log);
}

void longpoll_request_done(void *state)
{
	struct lp_poll *p = state;

	/* The request ended without longpoll_handle answering it (the client
	 * left after a resume, or MHD gave up): it is not suspended, since
	 * MHD ends no suspended request, so only the timer and the bus may
	 * still know it. */
	if (p)
		poll_free(p);
}
