/* longpoll: GET /poll. A poll subscribes to the bus from its cursor; if
 * the subscription brings events (a replay) or says the cursor is lost, it
 * answers at once. Otherwise it suspends the MHD connection, and the first
 * delivered event, its timer or longpoll_free resumes it; MHD then calls
 * the access handler again and longpoll_handle answers with what was
 * collected: {"events":[envelopes],"cursor":N,"recovered":B}. The body is
 * the envelopes' bytes concatenated, never re-parsed.
 *
 * The lifecycle (lock, suspend and wake, the list longpoll_free ends, the
 * module's references) is stream.c's; this file keeps the long-poll rules:
 * the batch caps and the answer at the timeout, which a one-shot timer on
 * one of the event loops (the stream's) gives.
 *
 * It deliberately keeps nothing between polls: the cursor in the answer is
 * all a client needs for the next one, on any transport. It does not batch
 * by delaying the answer: events delivered while MHD gets around to the
 * resumed connection join the same answer anyway.
 *
 * Locks: stream.h's order; "the stream lock" guards struct lp_poll from
 * cursor down. The bus is never called with a stream lock held. */

#include <stdbool.h>
#include <stdlib.h>

#include "util/log.h"
#include "model/evtype.h"
#include "transport/longpoll.h"
#include "transport/stream.h"
#include "util/util.h"

/* longpoll_free waits at most this long for the resumed polls' answers. */
#define LONGPOLL_DRAIN_MS 1000

struct longpoll {
	struct bus *bus;
	struct replay *replay; /* history reads; NULL: inline */
	struct metrics *m;
	size_t bytes_max; /* envelope bytes per answer, past the first event */
	/* A poll resumed by longpoll_free comes back through longpoll_handle
	 * after it: the hub frees this struct after the last poll. */
	struct stream_hub *hub;
};

struct lp_poll {
	struct longpoll *lp; /* may be gone once st is freed */
	struct metrics *m;   /* outlives everything */
	struct stream *st;
	bool counted; /* in metrics.connections */
	struct bus_sub *sub;

	/* Under the stream lock. */
	int64_t cursor; /* from hello */
	bool recovered;
	struct event **evs; /* at most LONGPOLL_BATCH_MAX references */
	size_t nevs, cap;
	size_t bytes;	  /* envelope bytes in evs */
	bool full;	  /* an event did not fit: this answer takes no more */
	bool ended;	  /* the account was disabled: answer 403 */
	char *end_reason; /* ended: the admin's reason (owned) */
};

/* --- polls ---------------------------------------------------------------- */

/* The hub's last reference: longpoll_free ran and every poll is gone. */
static void lp_destroy(void *arg)
{
	free(arg);
}

static struct lp_poll *poll_new(struct longpoll *lp, struct MHD_Connection *c)
{
	struct lp_poll *p = xcalloc(1, sizeof(*p));
	p->lp = lp;
	p->m = lp->m;
	p->st = stream_new(lp->hub, c, p);
	return p;
}

/* Off the bus and its timer; afterwards only its owner touches p. Not
 * with any lock held (bus_unsubscribe takes the shard lock). */
static void poll_detach(struct lp_poll *p)
{
	bus_unsubscribe(p->sub);
	p->sub = NULL;
	stream_free(p->st);
	p->st = NULL;
}

/* The one place a poll is freed: after answering, when the request ends
 * unanswered (longpoll_request_done), or when subscribing failed. */
static void poll_free(struct lp_poll *p)
{
	struct metrics *m = p->m;

	poll_detach(p);
	for (size_t i = 0; i < p->nevs; i++)
		event_unref(p->evs[i]);
	free(p->evs);
	free(p->end_reason);
	if (p->counted)
		metrics_dec(m->connections[TRANSPORT_POLL]);
	free(p);
}

/* Answer with what the poll collected, and free it. */
static enum MHD_Result poll_answer(struct lp_poll *p, struct MHD_Connection *c,
				   struct reply_log *log)
{
	struct buf b;

	poll_detach(p); /* no deliver runs any more: p is ours alone */
	if (p->ended) {
		/* What every later request of the account hears too (http's
		 * request_disabled). */
		json_t *body =
		    json_pack("{s:s, s:s, s:s}", "error", "disabled", "message",
			      "this account has been disabled by an admin",
			      "reason", p->end_reason ? p->end_reason : "");
		poll_free(p);
		return reply_json(c, log, 403, body);
	}
	int64_t cursor = p->cursor;
	buf_init(&b);
	buf_puts(&b, "{\"events\":[");
	for (size_t i = 0; i < p->nevs; i++) {
		size_t len;
		const char *json = event_json(p->evs[i], &len);
		if (i > 0)
			buf_append(&b, ",", 1);
		buf_append(&b, json, len);
		event_delivery_observe(p->evs[i],
				       &p->m->delivery[TRANSPORT_POLL],
				       &p->m->send_delivery);
		/* Ephemeral events have id 0 and leave the cursor alone. */
		if (event_id(p->evs[i]) > 0)
			cursor = event_id(p->evs[i]);
	}
	buf_printf(&b, "],\"cursor\":%lld,\"recovered\":%s}", (long long)cursor,
		   p->recovered ? "true" : "false");
	metrics_add(p->m->delivered[TRANSPORT_POLL], p->nevs);
	poll_free(p);

	/* MHD sends the body from b itself (a copy of it would double each
	 * waiting poll's memory at a burst). */
	size_t blen = b.len;
	return reply_json_take(c, log, 200, buf_steal(&b), blen);
}

/* --- bus callbacks: shard lock held, so only the stream lock and MHD -------
 */

static void on_hello(void *arg, const struct bus_resume *r)
{
	struct lp_poll *p = arg;

	stream_lock(p->st);
	p->cursor = r->cursor;
	p->recovered = r->recovered;
	stream_unlock(p->st);
}

static void on_deliver(void *arg, struct event *ev)
{
	struct lp_poll *p = arg;

	stream_lock(p->st);
	if (evtype_ends_session(event_type(ev))) {
		/* the account is gone: answered 403 (poll_answer) */
		size_t len;
		const char *text = event_json(ev, &len);
		json_t *o = json_loadb(text, len, 0, NULL);
		const char *why =
		    json_string_value(json_object_get(o, "reason"));
		free(p->end_reason);
		p->end_reason = xstrdup(why ? why : "");
		json_decref(o);
		p->ended = true;
		stream_wake(p->st);
		stream_unlock(p->st);
		return;
	}
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
	stream_wake(p->st);
	stream_unlock(p->st);
}

static const struct bus_sub_ops poll_ops = {
    .hello = on_hello,
    .deliver = on_deliver,
};

/* --- the stream's timer and longpoll_free: stream lock held -------------- */

/* The timeout: answer with the empty batch (stream.c's wake is enough,
 * MHD then calls longpoll_handle). longpoll_free needs nothing more. */
static unsigned poll_timeout(struct stream *st, void *arg)
{
	(void)arg;
	stream_wake(st);
	return 0;
}

static const struct stream_hub_ops hub_ops = {
    .on_timer = poll_timeout,
    .destroy = lp_destroy,
};

/* --- public --------------------------------------------------------------- */

void longpoll_set_replay(struct longpoll *lp, struct replay *r)
{
	lp->replay = r;
}

struct longpoll *longpoll_new(struct bus *bus, struct metrics *m,
			      size_t bytes_max, struct loop **loops,
			      unsigned nloops)
{
	struct longpoll *lp = xcalloc(1, sizeof(*lp));
	lp->bus = bus;
	lp->m = m;
	lp->bytes_max = bytes_max ? bytes_max : SIZE_MAX;
	lp->hub = stream_hub_new(loops, nloops, &hub_ops, lp);
	if (!lp->hub)
		goto fail;
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
	 * polls' references). Polls still being set up find the hub closing
	 * and answer without suspending, so MHD_stop_daemon() finds none. */
	stream_hub_free(lp->hub, LONGPOLL_DRAIN_MS);
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
			return reply_busy(c, log,
					  replay_retry_after(lp->replay));
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

	/* Wait only if nothing is there yet. The stream lock is held from
	 * the check to the suspension, so a deliver on another thread either
	 * came before (and we answer now) or finds the flag and resumes; a
	 * longpoll_free either came before stream_open (which refuses) or
	 * after it (and ends the stream: stream_suspend refuses, or its wake
	 * resumes). The timer is armed after the lock is released; p is
	 * still ours then even if a deliver resumed it already, because MHD
	 * calls this handler again only after it returned. */
	bool wait = false;
	if (stream_open(p->st) == 0) {
		stream_lock(p->st);
		wait = timeout_s > 0 && p->nevs == 0 && p->recovered &&
		       stream_suspend(p->st);
		stream_unlock(p->st);
	}
	if (wait) {
		stream_timer_arm(p->st, timeout_s * 1000);
		*state = p;
		return MHD_YES;
	}
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
