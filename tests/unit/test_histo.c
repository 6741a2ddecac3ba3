/* test_histo: buckets, snapshots and their differences, percentiles, and
 * the Prometheus text of util/histo. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/histo.h"

static void test_buckets(void **state)
{
	(void)state;
	struct histo h;
	histo_init(&h);
	histo_observe_us(&h, 0);	/* <= 1 ms */
	histo_observe_us(&h, 1000);	/* exactly 1 ms: still le 0.001 */
	histo_observe_us(&h, 1001);	/* (1, 2] */
	histo_observe_us(&h, -5);	/* a clock step back counts as 0 */
	histo_observe_us(&h, 4000000);	/* (2500, 5000] */
	histo_observe_us(&h, 99000000); /* past the last bound: +Inf */
	struct histo_snap s = {0};
	histo_snap_add(&s, &h);
	assert_int_equal(s.count[0], 3);
	assert_int_equal(s.count[1], 1);
	assert_int_equal(s.count[11], 1);
	assert_int_equal(s.count[HISTO_NB], 1);
	assert_int_equal(histo_snap_total(&s), 6);
	assert_int_equal(s.sum_us, 0 + 1000 + 1001 + 0 + 4000000 + 99000000);
	assert_true(histo_bound_ms(0) == 1);
	assert_true(histo_bound_ms(HISTO_NB) == -1);
}

static void test_snap_difference(void **state)
{
	(void)state;
	struct histo a, b;
	histo_init(&a);
	histo_init(&b);
	histo_observe_us(&a, 3000);
	histo_observe_us(&b, 30000);
	struct histo_snap before = {0}, after = {0}, d;
	histo_snap_add(&before, &a);
	histo_snap_add(&before, &b); /* two histograms sum into one */
	assert_int_equal(histo_snap_total(&before), 2);
	histo_observe_us(&a, 3000);
	histo_observe_us(&b, 600000);
	histo_snap_add(&after, &a);
	histo_snap_add(&after, &b);
	histo_snap_sub(&d, &after, &before);
	assert_int_equal(histo_snap_total(&d), 2);
	assert_int_equal(d.count[2], 1); /* 3 ms: (2, 5] */
	assert_int_equal(d.count[9], 1); /* 600 ms: (500, 1000] */
	assert_int_equal(d.sum_us, 603000);
	/* never negative, even taken in the wrong order */
	histo_snap_sub(&d, &before, &after);
	assert_int_equal(histo_snap_total(&d), 0);
}

static void test_quantiles(void **state)
{
	(void)state;
	uint64_t c[HISTO_BUCKETS] = {0};
	assert_true(histo_quantile_ms(c, 0.5) == 0); /* empty */
	c[3] = 100;				     /* 100 in (5, 10] ms */
	/* the median interpolates to the middle of its bucket */
	assert_true(histo_quantile_ms(c, 0.5) > 7.49 &&
		    histo_quantile_ms(c, 0.5) < 7.51);
	assert_true(histo_quantile_ms(c, 0.99) <= 10);
	c[9] = 100; /* and 100 in (500, 1000] */
	assert_true(histo_quantile_ms(c, 0.5) <= 10);
	assert_true(histo_quantile_ms(c, 0.95) > 500 &&
		    histo_quantile_ms(c, 0.95) <= 1000);
	uint64_t inf[HISTO_BUCKETS] = {0};
	inf[HISTO_NB] = 3; /* all we know is "above the last bound" */
	assert_true(histo_quantile_ms(inf, 0.5) ==
		    histo_bound_ms(HISTO_NB - 1));
}

static void test_render(void **state)
{
	(void)state;
	struct histo h;
	histo_init(&h);
	histo_observe_us(&h, 1500);
	histo_observe_us(&h, 40000000);
	struct buf b;
	buf_init(&b);
	histo_header(&b, "x_seconds", "Things.");
	histo_render(&h, &b, "x_seconds", "route=\"/a\"");
	histo_render(&h, &b, "y_seconds", "");
	const char *t = b.data;
	assert_non_null(strstr(t, "# TYPE x_seconds histogram\n"));
	assert_non_null(
	    strstr(t, "x_seconds_bucket{route=\"/a\",le=\"0.001\"} 0\n"));
	assert_non_null(
	    strstr(t, "x_seconds_bucket{route=\"/a\",le=\"0.002\"} 1\n"));
	assert_non_null(
	    strstr(t, "x_seconds_bucket{route=\"/a\",le=\"30\"} 1\n"));
	assert_non_null(
	    strstr(t, "x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(t, "x_seconds_sum{route=\"/a\"} 40.001500\n"));
	assert_non_null(strstr(t, "x_seconds_count{route=\"/a\"} 2\n"));
	assert_non_null(strstr(t, "y_seconds_bucket{le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(t, "y_seconds_count 2\n"));
	buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buckets),
	    cmocka_unit_test(test_snap_difference),
	    cmocka_unit_test(test_quantiles),
	    cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
