/* loop: one epoll event loop on its own thread. It owns the connections
 * registered on it (upgraded WebSockets); other threads talk to it only by
 * loop_post(). Like Redis's ae, minus everything natter does not need: fd
 * watchers, one periodic tick, and a cross-thread task queue woken through
 * an eventfd. */
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
/* Periodic callback every ms milliseconds on the loop's thread (one per
 * loop; set before loop_start). */
void loop_set_tick(struct loop *lp, unsigned ms, loop_task_fn fn, void *arg);
bool loop_is_current(const struct loop *lp);

#endif
