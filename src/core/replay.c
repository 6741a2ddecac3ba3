/* replay: the history-fetch pool. One mutex guards the queue (a FIFO list)
 * and the per-user counts (a small open-addressed table, user -> jobs
 * queued or running); workers wait on one condition variable.
 *
 * Invariants
 *   R1 queued <= queue_max, and for every user count(user) <= per_user_max:
 *      replay_submit refuses anything else, so memory and wait are bounded.
 *   R2 Each accepted job's done runs exactly once: by a worker after its
 *      fetch, or by replay_free for jobs still queued. Neither holds the
 *      mutex while done or the fetch runs.
 * It knows nothing of transports or loops: done decides where the
 * subscribe completes. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/replay.h"
#include "util/util.h"

struct job {
	struct job *next;
	int64_t user;
	struct bus_prefetch *p;
	replay_done_fn done;
	void *arg;
};

struct ucount {
	int64_t user; /* 0: empty */
	size_t n;
};

struct replay {
	struct bus *bus;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, **tail;
	size_t queued, queue_max, per_user_max;
	struct ucount *users; /* users_cap slots, a power of two */
	size_t users_cap, users_len;
	bool stopping;
	pthread_t *threads;
	unsigned nthreads;
};

static struct ucount *ucount_slot(struct ucount *v, size_t cap, int64_t user)
{
	size_t i = (size_t)((uint64_t)user * 0x9e3779b97f4a7c15ULL) & (cap - 1);
	while (v[i].user && v[i].user != user)
		i = (i + 1) & (cap - 1);
	return &v[i];
}

/* Rebuild without the zero counts, and with room to grow. Under mu. */
static void ucount_rehash(struct replay *r, size_t cap)
{
	struct ucount *v = xcalloc(cap, sizeof(*v));
	size_t len = 0;
	for (size_t i = 0; i < r->users_cap; i++) {
		if (!r->users[i].user || !r->users[i].n)
			continue;
		*ucount_slot(v, cap, r->users[i].user) = r->users[i];
		len++;
	}
	free(r->users);
	r->users = v;
	r->users_cap = cap;
	r->users_len = len;
}

/* The user's count, created at 0. Under mu. */
static struct ucount *ucount_get(struct replay *r, int64_t user)
{
	if ((r->users_len + 1) * 2 > r->users_cap) {
		/* Sized by the users with a job now (at most queue_max plus
		 * the workers' jobs), not by every user ever seen. */
		size_t live = 0, cap = 64;
		for (size_t i = 0; i < r->users_cap; i++)
			live += r->users[i].user && r->users[i].n;
		while (cap < (live + 1) * 4)
			cap *= 2;
		ucount_rehash(r, cap);
	}
	struct ucount *u = ucount_slot(r->users, r->users_cap, user);
	if (!u->user) {
		u->user = user;
		r->users_len++;
	}
	return u;
}

static void *worker_main(void *arg)
{
	struct replay *r = arg;

	pthread_setname_np(pthread_self(), "replay");
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->head && !r->stopping)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stopping)
			break;
		struct job *j = r->head;
		r->head = j->next;
		if (!r->head)
			r->tail = &r->head;
		r->queued--;
		pthread_mutex_unlock(&r->mu);

		int rc = bus_prefetch_run(r->bus, j->p);
		j->done(j->arg, j->p, rc);

		pthread_mutex_lock(&r->mu);
		ucount_get(r, j->user)->n--;
		free(j);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct replay *replay_new(struct bus *bus, unsigned threads, size_t queue_max,
			  size_t per_user_max)
{
	struct replay *r = xcalloc(1, sizeof(*r));
	r->bus = bus;
	r->queue_max = queue_max ? queue_max : 1;
	r->per_user_max = per_user_max ? per_user_max : 1;
	r->tail = &r->head;
	r->users_cap = 64;
	r->users = xcalloc(r->users_cap, sizeof(*r->users));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->threads = xcalloc(threads ? threads : 1, sizeof(*r->threads));
	for (unsigned i = 0; i < (threads ? threads : 1); i++) {
		if (pthread_create(&r->threads[i], NULL, worker_main, r) != 0)
			break;
		r->nthreads++;
	}
	if (!r->nthreads) {
		replay_free(r);
		return NULL;
	}
	return r;
}

void replay_free(struct replay *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	struct job *left = r->head;
	r->head = NULL;
	r->tail = &r->head;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (unsigned i = 0; i < r->nthreads; i++)
		pthread_join(r->threads[i], NULL);
	while (left) {
		struct job *next = left->next;
		left->done(left->arg, left->p, REPLAY_EBUSY);
		free(left);
		left = next;
	}
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->threads);
	free(r->users);
	free(r);
}

/* Under mu: take a queue place and one of user's: true, or false when
 * either is used up. A place is given back when its job leaves the queue
 * (queued) and when it is done (the user's). */
static bool place_take(struct replay *r, int64_t user)
{
	struct ucount *u = ucount_get(r, user);
	if (r->stopping || r->queued >= r->queue_max || u->n >= r->per_user_max)
		return false;
	r->queued++;
	u->n++;
	return true;
}

static void place_give_back(struct replay *r, int64_t user)
{
	r->queued--;
	ucount_get(r, user)->n--;
}

/* Under mu, on a place taken: queue the job. */
static void job_put(struct replay *r, int64_t user, struct bus_prefetch *p,
		    replay_done_fn done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->user = user;
	j->p = p;
	j->done = done;
	j->arg = arg;
	*r->tail = j;
	r->tail = &j->next;
	pthread_cond_signal(&r->cv);
}

int replay_submit(struct replay *r, int64_t user_id, struct bus_prefetch *p,
		  replay_done_fn done, void *arg)
{
	pthread_mutex_lock(&r->mu);
	bool ok = place_take(r, user_id);
	if (ok)
		job_put(r, user_id, p, done, arg);
	pthread_mutex_unlock(&r->mu);
	return ok ? 0 : REPLAY_EBUSY;
}

int replay_reserve(struct replay *r, int64_t user_id)
{
	pthread_mutex_lock(&r->mu);
	bool ok = place_take(r, user_id);
	pthread_mutex_unlock(&r->mu);
	return ok ? 0 : REPLAY_EBUSY;
}

void replay_release(struct replay *r, int64_t user_id)
{
	pthread_mutex_lock(&r->mu);
	place_give_back(r, user_id);
	pthread_mutex_unlock(&r->mu);
}

int replay_submit_reserved(struct replay *r, int64_t user_id,
			   struct bus_prefetch *p, replay_done_fn done,
			   void *arg)
{
	pthread_mutex_lock(&r->mu);
	bool ok = !r->stopping;
	if (ok)
		job_put(r, user_id, p, done, arg);
	else
		place_give_back(r, user_id);
	pthread_mutex_unlock(&r->mu);
	return ok ? 0 : REPLAY_EBUSY;
}

unsigned replay_retry_after(const struct replay *r)
{
	(void)r;
	/* A full queue drains in well under a second per job on the
	 * benchmark machine; a short, fixed wait keeps clients simple. */
	return 2;
}

/* A caller waiting for its job (replay_subscribe). */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
};

static void waiter_done(void *arg, struct bus_prefetch *p, int rc)
{
	struct waiter *w = arg;
	(void)p;
	pthread_mutex_lock(&w->mu);
	w->rc = rc;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Run p's read on the pool and wait: its status, or REPLAY_EBUSY. */
static int fetch_wait(struct replay *r, int64_t user_id, struct bus_prefetch *p)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	if (replay_submit(r, user_id, p, waiter_done, &w) < 0)
		return REPLAY_EBUSY;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return w.rc;
}

struct bus_sub *replay_subscribe(struct replay *r, struct bus_shard *shard,
				 int64_t user_id, int64_t since,
				 const struct bus_sub_ops *ops, void *arg,
				 int *err)
{
	if (!r || !bus_history_needed(r->bus, since))
		return bus_subscribe(shard, user_id, since, ops, arg, err);
	struct bus_prefetch *p = bus_prefetch_new(user_id, since);
	struct bus_sub *sub = NULL;
	int rc;
	do {
		rc = fetch_wait(r, user_id, p);
		if (rc == 0)
			sub = bus_subscribe_prefetched(shard, p, ops, arg, &rc);
	} while (!sub && rc == BUS_ESTALE);
	bus_prefetch_free(p);
	if (!sub && err)
		*err = rc;
	return sub;
}
