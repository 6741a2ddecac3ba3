/* loop: one epoll event loop on its own thread. It owns the connections
 * registered on it (upgraded WebSockets, TLS sessions, suspended streams);
 * other threads talk to it only by loop_post(). Like Redis's ae, minus
 * everything natter does not need: fd watchers, timers, and a cross-thread
 * task queue woken through an eventfd. */
#ifndef NATTER_LOOP_H
#define NATTER_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* events are EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP/EPOLLRDHUP bits. */
typedef void (*loop_io_fn)(void *arg, uint32_t events);
typedef void (*loop_task_fn)(void *arg);

/* NULL on failure (epoll/eventfd could not be created). */
struct loop *loop_new(const char *name);
/* Start the thread: 0 or -1. */
int loop_start(struct loop *lp);
/* Ask the loop to stop and join its thread. Tasks already posted run first.
 * Watchers still registered are left to their owners. */
void loop_stop(struct loop *lp);
void loop_free(struct loop *lp); /* after loop_stop; NULL is fine */

/* On the loop's thread only: watch fd for events (add, or change if it is
 * watched already). 0 or -1. */
int loop_watch(struct loop *lp, int fd, uint32_t events, loop_io_fn fn,
	       void *arg);
void loop_unwatch(struct loop *lp, int fd);

/* From any thread: run fn(arg) on the loop's thread soon, in posting order. */
void loop_post(struct loop *lp, loop_task_fn fn, void *arg);
bool loop_is_current(const struct loop *lp);

/* --- timers ---
 * A timer belongs to one loop and is touched only on that loop's thread,
 * or while the loop is not running (before loop_start, after loop_stop).
 * Another thread arms or cancels one by loop_post()ing a task that does it.
 * Exceptions, since neither touches the loop: loop_timer_new, and
 * loop_timer_free of a timer never armed, may run on any thread.
 * Timers due at the same millisecond fire in the order they were armed; a
 * timer armed (or re-armed) by a callback never fires in the same round,
 * even with 0 ms. Any timer may be armed, cancelled or freed from any
 * callback, its own included. */
struct loop_timer;

/* A disarmed timer that will run fn(arg) on lp's thread. Caller frees with
 * loop_timer_free (before loop_free). */
struct loop_timer *loop_timer_new(struct loop *lp, loop_task_fn fn, void *arg);
/* Fire once after ms milliseconds, then every period_ms (0: once). Re-arms
 * a timer already armed. A periodic timer that fell behind skips the
 * missed periods rather than running them back to back. */
void loop_timer_arm(struct loop_timer *t, unsigned ms, unsigned period_ms);
void loop_timer_cancel(struct loop_timer *t); /* not armed: nothing */
bool loop_timer_armed(const struct loop_timer *t);
void loop_timer_free(struct loop_timer *t); /* cancels; NULL is fine */

#endif
