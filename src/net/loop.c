/* loop: one epoll event loop on its own thread, in the spirit of Redis's
 * ae. It offers level-triggered fd watchers, one periodic tick (driven by
 * the epoll_wait timeout, so no timerfd), and a FIFO of tasks that any
 * thread may post; an eventfd wakes the loop, written only when the queue
 * turns non-empty.
 *
 * It deliberately does not do timers beyond the one tick, priorities, or
 * edge-triggered I/O, and it owns no connection: a watcher's owner frees it.
 *
 * Lifecycle: loop_new -> loop_start -> loop_stop -> loop_free. While the
 * loop is not running (before loop_start, after loop_stop) loop_post runs
 * the task at once on the caller's thread: no thread is touching the loop's
 * objects then, so nothing is lost and nobody waits for a loop that will
 * never run it. loop_stop runs every task posted before it, then joins.
 * loop_set_tick may also be called from the loop's own thread (a tick of
 * 0 ms or a NULL fn turns it off), which lets an owner detach before it
 * frees the tick's argument. */
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

struct loop {
	char name[16];
	int epfd;
	int evfd;
	pthread_t thread;

	/* Owned by the loop thread. */
	struct loop_watcher **watchers; /* indexed by fd */
	size_t nwatchers;
	struct loop_watcher *dead; /* unwatched during this batch */
	unsigned tick_ms;
	loop_task_fn tick_fn;
	void *tick_arg;
	int64_t tick_next;

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

static int wait_timeout(struct loop *lp)
{
	if (!lp->tick_fn || !lp->tick_ms)
		return -1;
	int64_t left = lp->tick_next - mono_ms();
	if (left <= 0)
		return 0;
	return left > 60000 ? 60000 : (int)left;
}

static void run_tick(struct loop *lp)
{
	if (!lp->tick_fn || !lp->tick_ms)
		return;
	int64_t now = mono_ms();
	if (now < lp->tick_next)
		return;
	/* Skip missed ticks rather than running them back to back. */
	lp->tick_next = now + lp->tick_ms;
	lp->tick_fn(lp->tick_arg);
}

static void *loop_main(void *arg)
{
	struct loop *lp = arg;
	struct epoll_event evs[LOOP_MAX_EVENTS];

	current_loop = lp;
	pthread_setname_np(pthread_self(), lp->name);
	lp->tick_next = mono_ms() + lp->tick_ms;
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
		run_tick(lp);
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

void loop_set_tick(struct loop *lp, unsigned ms, loop_task_fn fn, void *arg)
{
	lp->tick_ms = fn ? ms : 0;
	lp->tick_fn = ms ? fn : NULL;
	lp->tick_arg = arg;
	lp->tick_next = mono_ms() + ms;
}

bool loop_is_current(const struct loop *lp)
{
	return current_loop == lp;
}
