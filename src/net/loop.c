/* loop: one epoll event loop on its own thread, in the spirit of Redis's
 * ae. It offers level-triggered fd watchers, timers (a binary min-heap
 * ordered by due time, then by arming order, whose top drives epoll_wait's
 * timeout: no timerfd, no timer thread), and a FIFO of tasks that any
 * thread may post; an eventfd wakes the loop, written only when the queue
 * turns non-empty.
 *
 * It deliberately does not do priorities, edge-triggered I/O, or timers
 * armed from other threads (post a task that arms them), and it owns no
 * connection: a watcher's or timer's owner frees it.
 *
 * Lifecycle: loop_new -> loop_start -> loop_stop -> loop_free. While the
 * loop is not running (before loop_start, after loop_stop) loop_post runs
 * the task at once on the caller's thread: no thread is touching the loop's
 * objects then, so nothing is lost and nobody waits for a loop that will
 * never run it. loop_stop runs every task posted before it, then joins.
 *
 * Timers: one round (after each epoll_wait batch and the tasks) fires every
 * timer due by the round's start that was armed before the round began:
 * heap order is (due, seq), and a timer armed during the round gets a seq
 * at or above the round's limit and a due time no earlier than the round's
 * start, so it sorts after every timer the round may fire; the round stops
 * at the first such timer. A timer is taken off the heap before its
 * callback runs, so the callback may free or re-arm it. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"
#include "net/loop.h"
#include "util/util.h"

#define LOOP_MAX_EVENTS 64

enum loop_state { LOOP_IDLE, LOOP_RUNNING, LOOP_STOPPED };

struct loop_task {
	struct loop_task *next;
	loop_task_fn fn;
	void *arg;
};

/* One per watched fd. Freed only between two epoll_wait batches, so an
 * event already fetched for an fd unwatched in the same batch finds
 * dead set instead of freed memory. */
struct loop_watcher {
	loop_io_fn fn;
	void *arg;
	int fd;
	bool dead;
	struct loop_watcher *next_dead;
};

/* The loop whose thread this is: what loop_is_current() compares. */
static __thread const struct loop *current_loop;

struct loop_timer {
	struct loop *lp;
	loop_task_fn fn;
	void *arg;
	int64_t due;	 /* mono_ms */
	uint64_t seq;	 /* arming order: ties on due fire first-armed first */
	unsigned period; /* ms, 0 for one-shot */
	size_t idx;	 /* position in lp->heap, or NOT_ARMED */
};

#define NOT_ARMED ((size_t)-1)

struct loop {
	char name[16];
	int epfd;
	int evfd;
	pthread_t thread;

	/* Owned by the loop thread. */
	struct loop_watcher **watchers; /* indexed by fd */
	size_t nwatchers;
	struct loop_watcher *dead; /* unwatched during this batch */
	struct loop_timer **heap;  /* min-heap on (due, seq) */
	size_t nheap, heapcap;
	uint64_t timer_seq;

	/* Shared, under mu. */
	pthread_mutex_t mu;
	enum loop_state state;
	bool stop;
	bool joinable; /* thread created and not joined yet */
	struct loop_task *head, *tail;
};

struct loop *loop_new(const char *name)
{
	struct loop *lp = xcalloc(1, sizeof(*lp));
	lp->epfd = -1;
	lp->evfd = -1;
	/* pthread names hold 15 characters. */
	snprintf(lp->name, sizeof(lp->name), "%s", name ? name : "loop");
	pthread_mutex_init(&lp->mu, NULL);

	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lp->epfd < 0)
		goto fail;
	lp->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lp->evfd < 0)
		goto fail;
	/* data.ptr NULL marks the eventfd. */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->evfd, &ev) < 0)
		goto fail;
	return lp;
fail:
	if (lp->evfd >= 0)
		close(lp->evfd);
	if (lp->epfd >= 0)
		close(lp->epfd);
	pthread_mutex_destroy(&lp->mu);
	free(lp);
	return NULL;
}

static void wake(struct loop *lp)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already non-zero: awake anyway. */
	while (write(lp->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void run_tasks(struct loop_task *t)
{
	while (t) {
		struct loop_task *next = t->next;
		t->fn(t->arg);
		free(t);
		t = next;
	}
}

/* Take the whole queue; tasks posted while these run wait for the next
 * round, so a task that reposts itself cannot starve the watchers. */
static struct loop_task *take_tasks(struct loop *lp)
{
	pthread_mutex_lock(&lp->mu);
	struct loop_task *t = lp->head;
	lp->head = lp->tail = NULL;
	pthread_mutex_unlock(&lp->mu);
	return t;
}

static void free_dead(struct loop *lp)
{
	while (lp->dead) {
		struct loop_watcher *w = lp->dead;
		lp->dead = w->next_dead;
		free(w);
	}
}

/* --- timer heap ------------------------------------------------------- */

static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(struct loop *lp, size_t i, struct loop_timer *t)
{
	lp->heap[i] = t;
	t->idx = i;
}

static void heap_up(struct loop *lp, size_t i)
{
	struct loop_timer *t = lp->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, lp->heap[parent]))
			break;
		heap_set(lp, i, lp->heap[parent]);
		i = parent;
	}
	heap_set(lp, i, t);
}

static void heap_down(struct loop *lp, size_t i)
{
	struct loop_timer *t = lp->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= lp->nheap)
			break;
		if (c + 1 < lp->nheap &&
		    timer_before(lp->heap[c + 1], lp->heap[c]))
			c++;
		if (!timer_before(lp->heap[c], t))
			break;
		heap_set(lp, i, lp->heap[c]);
		i = c;
	}
	heap_set(lp, i, t);
}

static void heap_remove(struct loop *lp, struct loop_timer *t)
{
	size_t i = t->idx;
	struct loop_timer *last = lp->heap[--lp->nheap];

	t->idx = NOT_ARMED;
	if (last == t)
		return;
	heap_set(lp, i, last);
	if (i > 0 && timer_before(last, lp->heap[(i - 1) / 2]))
		heap_up(lp, i);
	else
		heap_down(lp, i);
}

static void heap_push(struct loop *lp, struct loop_timer *t)
{
	if (lp->nheap == lp->heapcap) {
		lp->heapcap = lp->heapcap ? 2 * lp->heapcap : 16;
		lp->heap = xrealloc(lp->heap, lp->heapcap * sizeof(*lp->heap));
	}
	lp->heap[lp->nheap] = t;
	t->idx = lp->nheap++;
	heap_up(lp, t->idx);
}

static void timer_schedule(struct loop_timer *t, int64_t due)
{
	struct loop *lp = t->lp;

	if (t->idx != NOT_ARMED)
		heap_remove(lp, t);
	t->due = due;
	t->seq = lp->timer_seq++;
	heap_push(lp, t);
}

static int wait_timeout(struct loop *lp)
{
	if (!lp->nheap)
		return -1;
	int64_t left = lp->heap[0]->due - mono_ms();
	if (left <= 0)
		return 0;
	return left > 60000 ? 60000 : (int)left;
}

static void run_timers(struct loop *lp)
{
	int64_t now = mono_ms();
	uint64_t limit = lp->timer_seq;

	while (lp->nheap) {
		struct loop_timer *t = lp->heap[0];
		if (t->due > now || t->seq >= limit)
			break;
		heap_remove(lp, t);
		/* Re-armed before the call, so the callback may cancel it; a
		 * late round skips missed periods. */
		if (t->period)
			timer_schedule(t, now + t->period);
		t->fn(t->arg);
	}
}

static void *loop_main(void *arg)
{
	struct loop *lp = arg;
	struct epoll_event evs[LOOP_MAX_EVENTS];

	current_loop = lp;
	pthread_setname_np(pthread_self(), lp->name);
	for (;;) {
		pthread_mutex_lock(&lp->mu);
		bool stop = lp->stop;
		pthread_mutex_unlock(&lp->mu);
		if (stop)
			break;

		int n = epoll_wait(lp->epfd, evs, LOOP_MAX_EVENTS,
				   wait_timeout(lp));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait failed loop=%s errno=%d",
				  lp->name, errno);
			break;
		}
		bool tasks = false;
		for (int i = 0; i < n; i++) {
			struct loop_watcher *w = evs[i].data.ptr;
			if (!w) {
				uint64_t v;
				if (read(lp->evfd, &v, sizeof(v)) < 0 &&
				    errno != EAGAIN)
					log_warn("eventfd read failed loop=%s",
						 lp->name);
				tasks = true;
				continue;
			}
			if (!w->dead)
				w->fn(w->arg, evs[i].events);
		}
		free_dead(lp);
		if (tasks)
			run_tasks(take_tasks(lp));
		free_dead(lp);
		run_timers(lp);
		free_dead(lp);
	}

	/* Run what was posted before loop_stop; anything posted from now on
	 * runs inline in loop_post, because state leaves RUNNING under the
	 * same lock that sees the queue empty. */
	for (;;) {
		pthread_mutex_lock(&lp->mu);
		struct loop_task *t = lp->head;
		lp->head = lp->tail = NULL;
		if (!t)
			lp->state = LOOP_STOPPED;
		pthread_mutex_unlock(&lp->mu);
		if (!t)
			break;
		run_tasks(t);
		free_dead(lp);
	}
	return NULL;
}

int loop_start(struct loop *lp)
{
	sigset_t all, old;
	int rc;

	pthread_mutex_lock(&lp->mu);
	assert(lp->state == LOOP_IDLE);
	lp->state = LOOP_RUNNING;
	lp->stop = false;
	pthread_mutex_unlock(&lp->mu);

	/* Signals belong to main: the loop thread blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&lp->thread, NULL, loop_main, lp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		pthread_mutex_lock(&lp->mu);
		lp->joinable = true;
		pthread_mutex_unlock(&lp->mu);
	} else {
		pthread_mutex_lock(&lp->mu);
		lp->state = LOOP_IDLE;
		struct loop_task *t = lp->head;
		lp->head = lp->tail = NULL;
		pthread_mutex_unlock(&lp->mu);
		/* Posted in the meantime: not running, so run them here. */
		run_tasks(t);
		errno = rc;
		return -1;
	}
	return 0;
}

void loop_stop(struct loop *lp)
{
	if (!lp)
		return;
	pthread_mutex_lock(&lp->mu);
	/* Joinable even if the thread already left on its own (epoll
	 * failure): it must still be joined. */
	bool join = lp->joinable;
	lp->joinable = false;
	lp->stop = true;
	pthread_mutex_unlock(&lp->mu);
	if (!join)
		return;
	assert(!loop_is_current(lp));
	wake(lp);
	pthread_join(lp->thread, NULL);
}

void loop_free(struct loop *lp)
{
	if (!lp)
		return;
	assert(lp->state != LOOP_RUNNING);
	/* Timers are their owners' to free; any left are merely detached. */
	for (size_t i = 0; i < lp->nheap; i++)
		lp->heap[i]->idx = NOT_ARMED;
	free(lp->heap);
	free_dead(lp);
	for (size_t i = 0; i < lp->nwatchers; i++)
		free(lp->watchers[i]);
	free(lp->watchers);
	close(lp->evfd);
	close(lp->epfd);
	pthread_mutex_destroy(&lp->mu);
	free(lp);
}

int loop_watch(struct loop *lp, int fd, uint32_t events, loop_io_fn fn,
	       void *arg)
{
	if (fd < 0)
		return -1;
	if ((size_t)fd >= lp->nwatchers) {
		size_t n = lp->nwatchers ? lp->nwatchers : 64;
		while (n <= (size_t)fd)
			n *= 2;
		lp->watchers =
		    xrealloc(lp->watchers, n * sizeof(*lp->watchers));
		memset(lp->watchers + lp->nwatchers, 0,
		       (n - lp->nwatchers) * sizeof(*lp->watchers));
		lp->nwatchers = n;
	}
	struct loop_watcher *w = lp->watchers[fd];
	int op = w ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (!w)
		w = xcalloc(1, sizeof(*w));
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(lp->epfd, op, fd, &ev) < 0) {
		if (op == EPOLL_CTL_ADD)
			free(w);
		return -1;
	}
	w->fn = fn;
	w->arg = arg;
	w->fd = fd;
	lp->watchers[fd] = w;
	return 0;
}

void loop_unwatch(struct loop *lp, int fd)
{
	if (fd < 0 || (size_t)fd >= lp->nwatchers || !lp->watchers[fd])
		return;
	struct loop_watcher *w = lp->watchers[fd];
	lp->watchers[fd] = NULL;
	/* Fails only if fd was closed already, which removed it anyway. */
	epoll_ctl(lp->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = true;
	w->next_dead = lp->dead;
	lp->dead = w;
}

void loop_post(struct loop *lp, loop_task_fn fn, void *arg)
{
	pthread_mutex_lock(&lp->mu);
	if (lp->state != LOOP_RUNNING) {
		pthread_mutex_unlock(&lp->mu);
		fn(arg);
		return;
	}
	struct loop_task *t = xmalloc(sizeof(*t));
	t->next = NULL;
	t->fn = fn;
	t->arg = arg;
	bool was_empty = lp->head == NULL;
	if (lp->tail)
		lp->tail->next = t;
	else
		lp->head = t;
	lp->tail = t;
	pthread_mutex_unlock(&lp->mu);
	if (was_empty)
		wake(lp);
}

bool loop_is_current(const struct loop *lp)
{
	return current_loop == lp;
}

struct loop_timer *loop_timer_new(struct loop *lp, loop_task_fn fn, void *arg)
{
	struct loop_timer *t = xcalloc(1, sizeof(*t));
	t->lp = lp;
	t->fn = fn;
	t->arg = arg;
	t->idx = NOT_ARMED;
	return t;
}

void loop_timer_arm(struct loop_timer *t, unsigned ms, unsigned period_ms)
{
	t->period = period_ms;
	timer_schedule(t, mono_ms() + ms);
}

void loop_timer_cancel(struct loop_timer *t)
{
	if (t->idx != NOT_ARMED)
		heap_remove(t->lp, t);
	t->period = 0;
}

bool loop_timer_armed(const struct loop_timer *t)
{
	return t->idx != NOT_ARMED;
}

void loop_timer_free(struct loop_timer *t)
{
	if (!t)
		return;
	loop_timer_cancel(t);
	free(t);
}
