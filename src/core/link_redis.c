/* link_redis: two threads and two hiredis connections (link_redis.h).
 *
 * Why two connections: a connection in SUBSCRIBE mode may not PUBLISH, and
 * a blocking read is the simplest robust reader; so the subscriber blocks
 * in redisGetReply and the publisher owns the other connection.
 *
 * Stopping: the subscriber's socket is shut down (under l->lock, which
 * also guards sub_fd, so the descriptor shut is never one reused after
 * redisFree), its read fails and it sees stop; the publisher waits on a
 * condition variable and is signalled.
 *
 * A hung Redis (no RST) must not hold the publisher: its connection has a
 * 2 s timeout. The subscriber relies on TCP keepalive for that case, and
 * on the publisher noticing first: the health reported is both. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/link_redis.h"
#include "util/log.h"
#include "util/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define IO_TIMEOUT_MS 2000

struct item {
	struct item *next;
	size_t len;
	char data[];
};

struct link_redis {
	struct addr_bus where;
	char *channel;
	struct link_redis_ops ops;
	void *arg;
	struct metrics *m;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* the publisher: queue, tick or stop */
	struct item *head, *tail;
	size_t queued;
	bool stop, sub_up, pub_up;
	bool woken; /* link_redis_wake: a publishing round is wanted */
	int sub_fd; /* -1: none */
	pthread_t sub_thread, pub_thread;
	bool sub_started, pub_started;
};

static struct timeval tv_ms(int ms)
{
	return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static void set_up(struct link_redis *l, bool *which, bool up)
{
	pthread_mutex_lock(&l->lock);
	*which = up;
	bool both = l->sub_up && l->pub_up;
	pthread_mutex_unlock(&l->lock);
	if (l->m)
		atomic_store(&l->m->cluster_up, both ? 1 : 0);
}

/* Wait ms on the condition variable, or less when stopping. */
static void nap(struct link_redis *l, int ms)
{
	struct timespec ts = mono_deadline(ms); /* l->cond is monotonic */
	pthread_mutex_lock(&l->lock);
	/* the publisher's wake-ups come by the same cond: sleep on */
	while (!l->stop &&
	       pthread_cond_timedwait(&l->cond, &l->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&l->lock);
}

static bool stopping(struct link_redis *l)
{
	pthread_mutex_lock(&l->lock);
	bool s = l->stop;
	pthread_mutex_unlock(&l->lock);
	return s;
}

/* A connection, or NULL with the reason in why (the caller logs it,
 * once per outage). */
static redisContext *dial(struct link_redis *l, char *why, size_t n)
{
	redisContext *c = redisConnectWithTimeout(l->where.host, l->where.port,
						  tv_ms(IO_TIMEOUT_MS));
	if (!c || c->err) {
		snprintf(why, n, "%s", c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	redisEnableKeepAlive(c);
	return c;
}

/* ---- the subscriber ---- */

static void sub_read(struct link_redis *l, redisContext *c)
{
	void *rv;
	while (redisGetReply(c, &rv) == REDIS_OK) {
		redisReply *r = rv;
		if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		    r->element[0]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[0]->str, "message") == 0 &&
		    r->element[2]->type == REDIS_REPLY_STRING) {
			if (l->m)
				metrics_inc(l->m->cluster_in);
			l->ops.message(l->arg, r->element[2]->str,
				       (size_t)r->element[2]->len);
		}
		freeReplyObject(r);
	}
}

/* sub_fd is what link_redis_free shuts down: set before the first
 * command, so that a hung Redis cannot hold a stopping node. */
static void sub_fd_set(struct link_redis *l, int fd)
{
	pthread_mutex_lock(&l->lock);
	l->sub_fd = fd;
	pthread_mutex_unlock(&l->lock);
}

/* Connected and subscribed, or NULL with the reason in why. SUBSCRIBE's
 * answer gets the I/O timeout; then reads wait as long as it takes (a
 * quiet channel is no fault). */
static redisContext *sub_connect(struct link_redis *l, char *why, size_t n)
{
	redisContext *c = dial(l, why, n);
	if (!c)
		return NULL;
	sub_fd_set(l, c->fd);
	redisReply *r = NULL;
	if (!stopping(l) &&
	    redisSetTimeout(c, tv_ms(IO_TIMEOUT_MS)) == REDIS_OK)
		r = redisCommand(c, "SUBSCRIBE %s", l->channel);
	if (!r || r->type == REDIS_REPLY_ERROR ||
	    redisSetTimeout(c, tv_ms(0)) != REDIS_OK) {
		snprintf(why, n, "%s", r && r->str ? r->str : c->errstr);
		freeReplyObject(r);
		sub_fd_set(l, -1);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	return c;
}

static void *sub_main(void *arg)
{
	struct link_redis *l = arg;
	int backoff = BACKOFF_MIN_MS;
	bool was_up = false, warned = false;
	pthread_setname_np(pthread_self(), "bus-sub");
	while (!stopping(l)) {
		char why[128];
		redisContext *c = sub_connect(l, why, sizeof(why));
		if (!c) {
			if (!warned && !stopping(l))
				log_warn("bus: cannot subscribe, retrying "
					 "host=%s port=%d error=%s",
					 l->where.host, l->where.port, why);
			warned = true;
			nap(l, backoff);
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
							       : backoff * 2;
			continue;
		}
		if (was_up && l->m)
			metrics_inc(l->m->cluster_reconnects);
		log_info("bus: subscribed host=%s port=%d channel=%s",
			 l->where.host, l->where.port, l->channel);
		was_up = true;
		warned = false;
		backoff = BACKOFF_MIN_MS;
		set_up(l, &l->sub_up, true);
		if (!stopping(l))
			sub_read(l, c);
		set_up(l, &l->sub_up, false);
		sub_fd_set(l, -1);
		if (!stopping(l))
			log_warn("bus: subscription lost, reconnecting "
				 "error=%s",
				 c->err ? c->errstr : "closed");
		redisFree(c);
	}
	return NULL;
}

/* ---- the publisher ---- */

static struct item *queue_take(struct link_redis *l)
{
	struct item *all = l->head;
	l->head = l->tail = NULL;
	l->queued = 0;
	return all;
}

/* Publish every item; false when the connection failed (the rest are
 * dropped: late typing is no typing). Frees the items. */
static bool pub_send(struct link_redis *l, redisContext *c, struct item *it)
{
	bool ok = c != NULL;
	while (it) {
		struct item *next = it->next;
		redisReply *r = NULL;
		if (ok)
			r = redisCommand(c, "PUBLISH %s %b", l->channel,
					 it->data, it->len);
		if (ok && r && r->type != REDIS_REPLY_ERROR) {
			if (l->m)
				metrics_inc(l->m->cluster_out);
		} else {
			ok = false;
			if (l->m)
				metrics_inc(l->m->cluster_dropped);
		}
		freeReplyObject(r);
		free(it);
		it = next;
	}
	return ok;
}

/* Connected and answering (a stopped Redis still accepts connections in
 * its kernel's backlog: only an answer says it is there), or NULL. */
static redisContext *pub_connect(struct link_redis *l, char *why, size_t n)
{
	redisContext *c = dial(l, why, n);
	if (!c)
		return NULL;
	redisReply *r = NULL;
	if (redisSetTimeout(c, tv_ms(IO_TIMEOUT_MS)) == REDIS_OK)
		r = redisCommand(c, "PING");
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(why, n, "%s", r && r->str ? r->str : c->errstr);
		freeReplyObject(r);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	return c;
}

/* The publisher's connection and its backoff. */
struct pub {
	redisContext *c;
	int64_t retry_at; /* mono_ms */
	int backoff;
	bool warned;
};

/* Connect when not connected and the backoff allows. */
static void pub_ensure(struct link_redis *l, struct pub *p)
{
	int64_t now = mono_ms();
	if (p->c || now < p->retry_at)
		return;
	char why[128];
	p->c = pub_connect(l, why, sizeof(why));
	if (p->c) {
		p->backoff = BACKOFF_MIN_MS;
		p->warned = false;
		set_up(l, &l->pub_up, true);
		return;
	}
	if (!p->warned)
		log_warn("bus: cannot connect to publish, retrying error=%s",
			 why);
	p->warned = true;
	p->retry_at = now + p->backoff;
	p->backoff =
	    p->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff * 2;
}

/* Publish what is queued; a failure drops the connection. */
static void pub_flush(struct link_redis *l, struct pub *p)
{
	pthread_mutex_lock(&l->lock);
	struct item *items = queue_take(l);
	pthread_mutex_unlock(&l->lock);
	if (!items || pub_send(l, p->c, items) || !p->c)
		return;
	log_warn("bus: publishing failed, reconnecting error=%s",
		 p->c->err ? p->c->errstr : "refused");
	redisFree(p->c);
	p->c = NULL;
	set_up(l, &l->pub_up, false);
}

/* Sleep until the mono_ms deadline unless something is queued or the link
 * stops: checked and waited for under one hold of the lock, so that a
 * publish in between cannot be missed until the next tick. */
static void pub_wait(struct link_redis *l, int64_t until)
{
	int64_t ms = until - mono_ms();
	if (ms <= 0)
		return;
	struct timespec ts = mono_deadline(ms);
	pthread_mutex_lock(&l->lock);
	if (!l->head && !l->stop && !l->woken)
		pthread_cond_timedwait(&l->cond, &l->lock, &ts);
	pthread_mutex_unlock(&l->lock);
}

/* The caller's round: what it gathered goes into the queue. Returns the
 * mono_ms by which it wants another, or INT64_MAX. */
static int64_t drain(struct link_redis *l)
{
	pthread_mutex_lock(&l->lock);
	l->woken = false;
	pthread_mutex_unlock(&l->lock);
	int again = l->ops.drain ? l->ops.drain(l->arg) : 0;
	return again > 0 ? mono_ms() + again : INT64_MAX;
}

static void *pub_main(void *arg)
{
	struct link_redis *l = arg;
	struct pub p = {.backoff = BACKOFF_MIN_MS};
	int64_t next_tick = mono_ms();
	pthread_setname_np(pthread_self(), "bus-pub");
	while (!stopping(l)) {
		pub_ensure(l, &p);
		int64_t again = drain(l);
		pub_flush(l, &p);
		if (mono_ms() >= next_tick) {
			l->ops.tick(l->arg);
			next_tick = mono_ms() + LINK_REDIS_TICK_MS;
		}
		pub_wait(l, again < next_tick ? again : next_tick);
	}
	if (p.c)
		redisFree(p.c);
	pthread_mutex_lock(&l->lock);
	struct item *rest = queue_take(l);
	pthread_mutex_unlock(&l->lock);
	pub_send(l, NULL, rest);
	return NULL;
}

/* ---- the interface ---- */

struct link_redis *link_redis_new(const struct addr_bus *b, const char *channel,
				  const struct link_redis_ops *ops, void *arg,
				  struct metrics *m)
{
	struct link_redis *l = xcalloc(1, sizeof(*l));
	l->where = *b;
	l->channel = xstrdup(channel);
	l->ops = *ops;
	l->arg = arg;
	l->m = m;
	l->sub_fd = -1;
	pthread_mutex_init(&l->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	return l;
}

int link_redis_start(struct link_redis *l)
{
	l->sub_started = pthread_create(&l->sub_thread, NULL, sub_main, l) == 0;
	l->pub_started = pthread_create(&l->pub_thread, NULL, pub_main, l) == 0;
	return l->sub_started && l->pub_started ? 0 : -1;
}

void link_redis_free(struct link_redis *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	if (l->sub_fd >= 0)
		shutdown(l->sub_fd, SHUT_RDWR);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	if (l->sub_started)
		pthread_join(l->sub_thread, NULL);
	if (l->pub_started)
		pthread_join(l->pub_thread, NULL);
	if (l->m)
		atomic_store(&l->m->cluster_up, 0);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l->channel);
	free(l);
}

void link_redis_publish(struct link_redis *l, const char *data, size_t len)
{
	pthread_mutex_lock(&l->lock);
	if (!l->pub_up || l->queued >= LINK_REDIS_QUEUE_MAX || l->stop) {
		pthread_mutex_unlock(&l->lock);
		if (l->m)
			metrics_inc(l->m->cluster_dropped);
		return;
	}
	struct item *it = xmalloc(sizeof(*it) + len);
	it->next = NULL;
	it->len = len;
	memcpy(it->data, data, len);
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
	l->queued++;
	pthread_cond_broadcast(&l->cond); /* as link_redis_wake */
	pthread_mutex_unlock(&l->lock);
}

void link_redis_wake(struct link_redis *l)
{
	pthread_mutex_lock(&l->lock);
	l->woken = true;
	/* broadcast: the subscriber may be napping on the same cond */
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

bool link_redis_ok(struct link_redis *l)
{
	pthread_mutex_lock(&l->lock);
	bool ok = l->sub_up && l->pub_up;
	pthread_mutex_unlock(&l->lock);
	return ok;
}
