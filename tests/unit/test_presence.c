/* test_presence: the presence state machine on a fake clock (presence_tick
 * with explicit times; the thread is never started): grace, coalescing,
 * away by idleness, choices and text, and what is saved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/presence.h"

#define GRACE 30000
#define AWAY 300000
#define COALESCE 250

struct rec {
	int64_t user[64];
	struct presence_info info[64];
	size_t n;
	int64_t saved_user[16], saved_ms[16];
	size_t nsaved;
};

static void publish(void *arg, int64_t user, const struct presence_info *pi)
{
	struct rec *r = arg;
	assert_true(r->n < 64);
	r->user[r->n] = user;
	r->info[r->n++] = *pi;
}

static void save_seen(void *arg, const int64_t *users, const int64_t *ms,
		      size_t n)
{
	struct rec *r = arg;
	for (size_t i = 0; i < n; i++) {
		assert_true(r->nsaved < 16);
		r->saved_user[r->nsaved] = users[i];
		r->saved_ms[r->nsaved++] = ms[i];
	}
}

static struct presence *mk(struct rec *r)
{
	struct presence_config cfg = {GRACE, AWAY, COALESCE};
	struct presence_ops ops = {publish, save_seen};
	memset(r, 0, sizeof(*r));
	return presence_new(&cfg, &ops, r);
}

/* Tick every 50 ms from *now to until. */
static void run(struct presence *p, int64_t *now, int64_t until)
{
	while (*now < until) {
		*now += 50;
		presence_tick(p, *now);
	}
}

static void test_connect_coalesced(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 1000000;
	presence_connect(p, 7, now);
	presence_tick(p, now + COALESCE - 1);
	assert_int_equal(r.n, 0); /* not before the coalescing delay */
	now += COALESCE;
	presence_tick(p, now);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.user[0], 7);
	assert_int_equal(r.info[0].status, PRESENCE_ONLINE);
	assert_true(r.info[0].seq > 0);
	/* a second connection changes nothing */
	presence_connect(p, 7, now);
	run(p, &now, now + 5000);
	assert_int_equal(r.n, 1);
	presence_free(p);
}

static void test_connect_disconnect_burst_publishes_nothing(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 1000000;
	for (int i = 0; i < 20; i++) { /* a burst inside the delay */
		presence_connect(p, 3, now);
		presence_disconnect(p, 3, now + 1);
	}
	run(p, &now, now + GRACE + 1000);
	assert_int_equal(r.n, 0);
	presence_free(p);
}

static void test_grace(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 1000000;
	presence_connect(p, 1, now);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, 1);
	int64_t gone = now;
	presence_disconnect(p, 1, now);
	run(p, &now, gone + GRACE - 100);
	assert_int_equal(r.n, 1); /* still online within the grace */
	struct presence_info pi;
	presence_get(p, 1, now, &pi);
	assert_int_equal(pi.status, PRESENCE_ONLINE);
	run(p, &now, gone + GRACE + 100);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.info[1].status, PRESENCE_OFFLINE);
	assert_int_equal(r.info[1].last_seen_ms, gone);
	assert_true(r.info[1].seq > r.info[0].seq);
	assert_int_equal(r.nsaved, 1);
	assert_int_equal(r.saved_ms[0], gone);
	presence_free(p);
}

static void test_reconnect_within_grace(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 1000000;
	presence_connect(p, 1, now);
	run(p, &now, now + 1000);
	for (int i = 0; i < 5; i++) { /* reloads, blips, fallbacks */
		presence_disconnect(p, 1, now);
		run(p, &now, now + GRACE - 1000);
		presence_connect(p, 1, now);
		run(p, &now, now + 500);
	}
	run(p, &now, now + GRACE * 2);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.nsaved, 0);
	presence_free(p);
}

static void test_away_by_idleness(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 1000000;
	presence_connect(p, 2, now);
	run(p, &now, now + AWAY / 2);
	presence_activity(p, 2, now); /* moves the deadline */
	int64_t active = now;
	run(p, &now, active + AWAY - 100);
	assert_int_equal(r.n, 1);
	run(p, &now, active + AWAY + 100);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.info[1].status, PRESENCE_AWAY);
	presence_activity(p, 2, now);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.info[2].status, PRESENCE_ONLINE);
	presence_free(p);
}

static void test_choices_and_text(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 1000000;
	presence_connect(p, 4, now);
	run(p, &now, now + 1000);
	assert_int_equal(presence_choose(p, 4, PRESENCE_DND, "lunch", now), 0);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.info[1].status, PRESENCE_DND);
	assert_string_equal(r.info[1].text, "lunch");
	/* dnd holds through idleness */
	run(p, &now, now + AWAY * 2);
	assert_int_equal(r.n, 2);
	/* the same choice again is no change */
	presence_choose(p, 4, PRESENCE_DND, "lunch", now);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, 2);
	/* text alone is a change; NULL keeps it */
	presence_choose(p, 4, PRESENCE_DND, "back at 2", now);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.info[2].text, "back at 2");
	presence_choose(p, 4, PRESENCE_ONLINE, NULL, now);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.info[3].status, PRESENCE_ONLINE);
	assert_string_equal(r.info[3].text, "back at 2");
	assert_int_equal(presence_choose(p, 4, PRESENCE_OFFLINE, NULL, now),
			 -1);
	/* an offline user's text change is told too (others show it) */
	presence_disconnect(p, 4, now);
	run(p, &now, now + GRACE + 1000);
	assert_int_equal(r.info[r.n - 1].status, PRESENCE_OFFLINE);
	size_t before = r.n;
	presence_choose(p, 4, PRESENCE_ONLINE, "", now);
	run(p, &now, now + 1000);
	assert_int_equal(r.n, before + 1);
	assert_int_equal(r.info[before].status, PRESENCE_OFFLINE);
	assert_string_equal(r.info[before].text, "");
	presence_free(p);
}

static void test_load_and_free_saves(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 5000000;
	presence_load(p, 9, PRESENCE_DND, "away for a week", 1234);
	struct presence_info pi;
	presence_get(p, 9, now, &pi);
	assert_int_equal(pi.status, PRESENCE_OFFLINE);
	assert_int_equal(pi.chosen, PRESENCE_DND);
	assert_string_equal(pi.text, "away for a week");
	assert_int_equal(pi.last_seen_ms, 1234);
	presence_get(p, 10, now, &pi); /* never heard of */
	assert_int_equal(pi.status, PRESENCE_OFFLINE);
	assert_int_equal(pi.last_seen_ms, 0);
	presence_connect(p, 9, now);
	run(p, &now, now + 1000);
	assert_int_equal(r.info[0].status, PRESENCE_DND);
	presence_free(p); /* user 9 connected: last_seen saved */
	assert_int_equal(r.nsaved, 1);
	assert_int_equal(r.saved_user[0], 9);
}

static void test_words(void **state)
{
	(void)state;
	enum presence_status s;
	assert_int_equal(presence_status_parse("dnd", &s), 0);
	assert_int_equal(s, PRESENCE_DND);
	assert_int_equal(presence_status_parse("busy", &s), -1);
	assert_string_equal(presence_status_name(PRESENCE_AWAY), "away");
	assert_true(presence_text_valid("", 0));
	assert_true(presence_text_valid("🍕 lunch", strlen("🍕 lunch")));
	assert_false(presence_text_valid("a\x07z", 3));
	assert_false(presence_text_valid("a\xe2\x80\xaez", 5)); /* U+202E */
	assert_false(presence_text_valid("\xff", 1));
	char s100[101], s101[102];
	memset(s100, 'x', 100);
	s100[100] = '\0';
	memset(s101, 'x', 101);
	s101[101] = '\0';
	assert_true(presence_text_valid(s100, 100));
	assert_false(presence_text_valid(s101, 101));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connect_coalesced),
	    cmocka_unit_test(test_connect_disconnect_burst_publishes_nothing),
	    cmocka_unit_test(test_grace),
	    cmocka_unit_test(test_reconnect_within_grace),
	    cmocka_unit_test(test_away_by_idleness),
	    cmocka_unit_test(test_choices_and_text),
	    cmocka_unit_test(test_load_and_free_saves),
	    cmocka_unit_test(test_words),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
