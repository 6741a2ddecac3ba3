/* test_loop: the event loop through loop.h. Tasks run in posting order on
 * the loop's thread and inline once it stopped; an fd unwatched in the same
 * epoll batch gets no stale event; timers fire in due order (ties in arming
 * order), re-arm, cancel (their own and others, from inside a callback),
 * free themselves in their callback, repeat periodically, never fire twice
 * in one round when re-armed with 0 ms, drive epoll_wait's timeout (a lone
 * timer fires on time with nothing else to wake the loop), and thousands of
 * them in random order come out sorted. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/loop.h"
#include "util/util.h"

static bool wait_until(bool (*cond)(void *), void *arg, int ms)
{
	for (int i = 0; i < ms / 5; i++) {
		if (cond(arg))
			return true;
		usleep(5000);
	}
	return cond(arg);
}

/* --- tasks and watchers ------------------------------------------------ */

struct order {
	struct loop *lp;
	int seen[201];
	atomic_int n;
	bool all_on_loop;
};

static void order_task(void *arg)
{
	struct order *o = arg;
	int i = atomic_load(&o->n);
	o->seen[i] = i;
	if (!loop_is_current(o->lp))
		o->all_on_loop = false;
	atomic_store(&o->n, i + 1);
}

static void test_loop_post_order_and_stop(void **state)
{
	struct order o = {.all_on_loop = true};
	(void)state;
	o.lp = loop_new("test-order");
	assert_non_null(o.lp);
	assert_int_equal(loop_start(o.lp), 0);
	assert_false(loop_is_current(o.lp));
	for (int i = 0; i < 200; i++)
		loop_post(o.lp, order_task, &o);
	loop_stop(o.lp); /* runs what was posted first */
	assert_int_equal(atomic_load(&o.n), 200);
	for (int i = 0; i < 200; i++)
		assert_int_equal(o.seen[i], i);
	assert_true(o.all_on_loop);
	/* Not running any more: a post runs at once, on this thread. */
	loop_post(o.lp, order_task, &o);
	assert_int_equal(atomic_load(&o.n), 201);
	loop_free(o.lp);
	loop_free(NULL);
}

struct pipes {
	struct loop *lp;
	int a[2], b[2];
	atomic_int calls;
	atomic_int ticks;
};

/* Both pipes are readable in the same batch; the first callback to run
 * unwatches (and closes) both, so the second event must not be delivered. */
static void pipe_cb(void *arg, uint32_t events)
{
	struct pipes *p = arg;
	(void)events;
	atomic_fetch_add(&p->calls, 1);
	loop_unwatch(p->lp, p->a[0]);
	loop_unwatch(p->lp, p->b[0]);
}

static void watch_task(void *arg)
{
	struct pipes *p = arg;
	assert_int_equal(loop_watch(p->lp, p->a[0], EPOLLIN, pipe_cb, p), 0);
	assert_int_equal(loop_watch(p->lp, p->b[0], EPOLLIN, pipe_cb, p), 0);
	assert_int_equal(write(p->a[1], "x", 1), 1);
	assert_int_equal(write(p->b[1], "x", 1), 1);
}

static void tick_cb(void *arg)
{
	struct pipes *p = arg;
	atomic_fetch_add(&p->ticks, 1);
}

static bool two_ticks(void *arg)
{
	struct pipes *p = arg;
	return atomic_load(&p->ticks) >= 2;
}

static void test_loop_unwatch_in_batch_and_tick(void **state)
{
	struct pipes p = {0};
	(void)state;
	assert_int_equal(pipe(p.a), 0);
	assert_int_equal(pipe(p.b), 0);
	p.lp = loop_new("test-watch");
	/* A periodic timer armed before loop_start (the old "tick"). */
	struct loop_timer *tick = loop_timer_new(p.lp, tick_cb, &p);
	loop_timer_arm(tick, 20, 20);
	assert_int_equal(loop_start(p.lp), 0);
	loop_post(p.lp, watch_task, &p);
	assert_true(wait_until(two_ticks, &p, 2000));
	loop_stop(p.lp);
	assert_int_equal(atomic_load(&p.calls), 1);
	loop_timer_free(tick);
	loop_free(p.lp);
	close(p.a[0]);
	close(p.a[1]);
	close(p.b[0]);
	close(p.b[1]);
}

/* --- timers ------------------------------------------------------------- */

#define NT 4000

struct fired {
	struct loop *lp;
	struct loop_timer *t[NT];
	int order[NT + 16];
	int64_t at[NT + 16];
	atomic_int n;
	int expect; /* how many to wait for */
	bool off_loop;
	int rearm_left;	      /* for rearm_cb */
	atomic_int n_at_task; /* fired count when a task posted by one ran */
	int victim;	      /* for cancel_other_cb */
};

/* Each timer's arg is a struct slot: which fired, and its index. */
struct slot {
	struct fired *f;
	int i;
};

static void record(struct fired *f, int i)
{
	int k = atomic_load(&f->n);
	f->order[k] = i;
	f->at[k] = mono_ms();
	if (!loop_is_current(f->lp))
		f->off_loop = true;
	atomic_store(&f->n, k + 1);
}

static void fired_cb(void *arg)
{
	struct slot *s = arg;
	record(s->f, s->i);
}

static bool all_fired(void *arg)
{
	struct fired *f = arg;
	return atomic_load(&f->n) >= f->expect;
}

static void test_timer_order(void **state)
{
	static struct fired f;
	static struct slot sl[8];
	/* ms per timer: ties at 30 must keep arming order 1, 4, 6. */
	static const unsigned ms[8] = {50, 30, 10, 0, 30, 80, 30, 20};
	static const int want[8] = {3, 2, 7, 1, 4, 6, 0, 5};
	(void)state;

	memset(&f, 0, sizeof(f));
	f.lp = loop_new("test-timers");
	f.expect = 8;
	int64_t t0 = mono_ms();
	for (int i = 0; i < 8; i++) {
		sl[i] = (struct slot){&f, i};
		f.t[i] = loop_timer_new(f.lp, fired_cb, &sl[i]);
		assert_false(loop_timer_armed(f.t[i]));
		loop_timer_arm(f.t[i], ms[i], 0);
		assert_true(loop_timer_armed(f.t[i]));
	}
	assert_int_equal(loop_start(f.lp), 0);
	assert_true(wait_until(all_fired, &f, 3000));
	loop_stop(f.lp);
	assert_int_equal(atomic_load(&f.n), 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(f.order[i], want[i]);
		assert_true(f.at[i] - t0 >= ms[want[i]]);
		assert_false(loop_timer_armed(f.t[want[i]])); /* one-shot */
	}
	assert_false(f.off_loop);
	for (int i = 0; i < 8; i++)
		loop_timer_free(f.t[i]);
	loop_free(f.lp);
}

/* Re-arms itself with 0 ms: must fire once per round, so the loop still
 * gets to a task posted meanwhile. */
static void count_task(void *arg)
{
	struct fired *f = arg;
	atomic_store(&f->n_at_task, atomic_load(&f->n));
}

static void rearm_cb(void *arg)
{
	struct slot *s = arg;
	record(s->f, s->i);
	if (s->f->rearm_left == 990)
		loop_post(s->f->lp, count_task, s->f);
	if (--s->f->rearm_left > 0)
		loop_timer_arm(s->f->t[s->i], 0, 0);
}

static void arm_task(void *arg)
{
	struct fired *f = ((struct slot *)arg)->f;
	loop_timer_arm(f->t[0], 0, 0);
}

static void test_timer_rearm(void **state)
{
	static struct fired f;
	static struct slot sl[2];
	(void)state;

	memset(&f, 0, sizeof(f));
	f.lp = loop_new("test-rearm");
	sl[0] = (struct slot){&f, 0};
	sl[1] = (struct slot){&f, 1};
	f.t[0] = loop_timer_new(f.lp, rearm_cb, &sl[0]);
	f.rearm_left = 1000;
	f.expect = 1000;
	assert_int_equal(loop_start(f.lp), 0);
	/* Armed from another thread the documented way: a posted task. */
	loop_post(f.lp, arm_task, &sl[0]);
	assert_true(wait_until(all_fired, &f, 5000));
	assert_int_equal(atomic_load(&f.n), 1000);
	/* The task posted at the 10th firing ran right after that round, not
	 * after all 1000: each round fires the timer once. */
	assert_int_equal(atomic_load(&f.n_at_task), 11);
	assert_false(loop_timer_armed(f.t[0]));

	loop_stop(f.lp);
	loop_timer_free(f.t[0]);
	loop_free(f.lp);

	/* Re-arming an armed timer moves it: it fires once, at the new time. */
	memset(&f, 0, sizeof(f));
	f.lp = loop_new("test-rearm2");
	sl[1] = (struct slot){&f, 1};
	f.t[1] = loop_timer_new(f.lp, fired_cb, &sl[1]);
	int64_t t0 = mono_ms();
	loop_timer_arm(f.t[1], 5000, 0);
	loop_timer_arm(f.t[1], 30, 0);
	f.expect = 1;
	assert_int_equal(loop_start(f.lp), 0);
	assert_true(wait_until(all_fired, &f, 2000));
	assert_true(f.at[0] - t0 >= 30 && f.at[0] - t0 < 2000);
	usleep(100 * 1000);
	assert_int_equal(atomic_load(&f.n), 1);
	loop_stop(f.lp);
	loop_timer_free(f.t[1]);
	loop_free(f.lp);
}

/* Timer 0 cancels timer 1 (due in the same round) and frees itself; timer
 * 2 cancels itself while periodic; timer 3 cancels 4 which is due later. */
static void cancel_other_cb(void *arg)
{
	struct slot *s = arg;
	record(s->f, s->i);
	loop_timer_cancel(s->f->t[s->f->victim]);
	loop_timer_free(s->f->t[s->i]);
	s->f->t[s->i] = NULL;
}

static void cancel_self_cb(void *arg)
{
	struct slot *s = arg;
	record(s->f, s->i);
	loop_timer_cancel(s->f->t[s->i]);
}

static void cancel_later_cb(void *arg)
{
	struct slot *s = arg;
	record(s->f, s->i);
	loop_timer_cancel(s->f->t[4]);
}

static void test_timer_cancel_in_callback(void **state)
{
	static struct fired f;
	static struct slot sl[5];
	(void)state;

	memset(&f, 0, sizeof(f));
	f.lp = loop_new("test-cancel");
	for (int i = 0; i < 5; i++)
		sl[i] = (struct slot){&f, i};
	f.t[0] = loop_timer_new(f.lp, cancel_other_cb, &sl[0]);
	f.t[1] = loop_timer_new(f.lp, fired_cb, &sl[1]);
	f.t[2] = loop_timer_new(f.lp, cancel_self_cb, &sl[2]);
	f.t[3] = loop_timer_new(f.lp, cancel_later_cb, &sl[3]);
	f.t[4] = loop_timer_new(f.lp, fired_cb, &sl[4]);
	f.victim = 1;
	/* 0 and 1 share a due time: 0 was armed first, so it runs first. */
	loop_timer_arm(f.t[0], 20, 0);
	loop_timer_arm(f.t[1], 20, 0);
	loop_timer_arm(f.t[2], 10, 10);
	loop_timer_arm(f.t[3], 30, 0);
	loop_timer_arm(f.t[4], 60, 0);
	f.expect = 3;
	assert_int_equal(loop_start(f.lp), 0);
	assert_true(wait_until(all_fired, &f, 2000));
	usleep(150 * 1000); /* room for anything that should not fire */
	loop_stop(f.lp);
	assert_int_equal(atomic_load(&f.n), 3);
	assert_int_equal(f.order[0], 2);
	assert_int_equal(f.order[1], 0);
	assert_int_equal(f.order[2], 3);
	assert_null(f.t[0]);
	for (int i = 1; i < 5; i++) {
		assert_false(loop_timer_armed(f.t[i]));
		loop_timer_free(f.t[i]);
	}
	loop_timer_free(NULL);
	loop_free(f.lp);
}

static void test_timer_periodic(void **state)
{
	static struct fired f;
	static struct slot sl;
	(void)state;

	memset(&f, 0, sizeof(f));
	f.lp = loop_new("test-periodic");
	sl = (struct slot){&f, 7};
	f.t[0] = loop_timer_new(f.lp, fired_cb, &sl);
	loop_timer_arm(f.t[0], 0, 25);
	f.expect = 5;
	int64_t t0 = mono_ms();
	assert_int_equal(loop_start(f.lp), 0);
	assert_true(wait_until(all_fired, &f, 3000));
	loop_stop(f.lp);
	int n = atomic_load(&f.n);
	assert_true(n >= 5);
	/* Never faster than the period (missed periods are skipped). */
	for (int i = 1; i < n; i++)
		assert_true(f.at[i] - f.at[i - 1] >= 25);
	assert_true(f.at[n - 1] - t0 >= 4 * 25);
	assert_true(loop_timer_armed(f.t[0]));
	loop_timer_cancel(f.t[0]);
	assert_false(loop_timer_armed(f.t[0]));
	loop_timer_free(f.t[0]);
	loop_free(f.lp);
}

static void test_timer_many(void **state)
{
	static struct fired f;
	static struct slot sl[NT];
	static unsigned ms[NT];
	/* Each due time is between lo and hi: arming takes time (ASan). */
	static int64_t lo[NT], hi[NT];
	(void)state;

	memset(&f, 0, sizeof(f));
	srand(42);
	f.lp = loop_new("test-many");
	for (int i = 0; i < NT; i++) {
		sl[i] = (struct slot){&f, i};
		ms[i] = (unsigned)(rand() % 200);
		f.t[i] = loop_timer_new(f.lp, fired_cb, &sl[i]);
		lo[i] = mono_ms() + ms[i];
		loop_timer_arm(f.t[i], ms[i], 0);
		hi[i] = mono_ms() + ms[i];
	}
	/* Cancel every third one, re-arm every fifth later. */
	int expect = 0;
	for (int i = 0; i < NT; i++) {
		if (i % 3 == 0) {
			loop_timer_cancel(f.t[i]);
			continue;
		}
		if (i % 5 == 0) {
			ms[i] += 100;
			lo[i] = mono_ms() + ms[i];
			loop_timer_arm(f.t[i], ms[i], 0);
			hi[i] = mono_ms() + ms[i];
		}
		expect++;
	}
	f.expect = expect;
	assert_int_equal(loop_start(f.lp), 0);
	assert_true(wait_until(all_fired, &f, 5000));
	usleep(50 * 1000);
	loop_stop(f.lp);
	assert_int_equal(atomic_load(&f.n), expect);
	/* Due times never go backwards; no cancelled one fired. */
	for (int k = 0; k < expect; k++) {
		int i = f.order[k];
		assert_true(i % 3 != 0);
		if (k > 0)
			assert_true(lo[f.order[k - 1]] <= hi[i]);
	}
	for (int i = 0; i < NT; i++)
		loop_timer_free(f.t[i]);
	loop_free(f.lp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_loop_post_order_and_stop),
	    cmocka_unit_test(test_loop_unwatch_in_batch_and_tick),
	    cmocka_unit_test(test_timer_order),
	    cmocka_unit_test(test_timer_rearm),
	    cmocka_unit_test(test_timer_cancel_in_callback),
	    cmocka_unit_test(test_timer_periodic),
	    cmocka_unit_test(test_timer_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
