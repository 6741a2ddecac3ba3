/* Unit tests for event: exact envelope bytes, SSE framing, refcounting and
 * the lazily built, shared SSE block under concurrent first use. */

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/event.h"

/* 2026-11-26T12:00:00.123Z */
#define TS_MS (1795694400LL * 1000 + 123)

static void test_envelope_message(void **state)
{
	(void)state;
	json_t *extra =
	    json_pack("{s:s, s:s}", "text", "hi", "client_id", "c-7f3a");
	size_t len = 0;
	char *s = event_envelope(1042, EVENT_MESSAGE, "lobby", "alice", TS_MS,
				 extra, &len);
	const char *want =
	    "{\"id\":1042,\"type\":\"message\",\"room\":\"lobby\","
	    "\"from\":\"alice\",\"ts\":\"2026-11-26T12:00:00.123Z\","
	    "\"text\":\"hi\",\"client_id\":\"c-7f3a\"}";
	assert_non_null(s);
	assert_string_equal(s, want);
	assert_int_equal(len, strlen(want));
	free(s);
	json_decref(extra);
}

static void test_envelope_extra_order_kept(void **state)
{
	(void)state;
	/* Insertion order, not alphabetical nor hash order. */
	json_t *extra = json_object();
	json_object_set_new(extra, "zeta", json_integer(1));
	json_object_set_new(extra, "alpha", json_true());
	json_object_set_new(extra, "mid", json_null());
	char *s = event_envelope(7, EVENT_JOIN, "r", "u", 0, extra, NULL);
	assert_string_equal(
	    s, "{\"id\":7,\"type\":\"join\",\"room\":\"r\","
	       "\"from\":\"u\",\"ts\":\"1970-01-01T00:00:00.000Z\","
	       "\"zeta\":1,\"alpha\":true,\"mid\":null}");
	free(s);
	json_decref(extra);
}

static void test_envelope_ephemeral(void **state)
{
	(void)state;
	size_t len = 0;
	char *s =
	    event_envelope(0, EVENT_TYPING, "lobby", "bob", TS_MS, NULL, &len);
	const char *want =
	    "{\"type\":\"typing\",\"room\":\"lobby\","
	    "\"from\":\"bob\",\"ts\":\"2026-11-26T12:00:00.123Z\"}";
	assert_string_equal(s, want);
	assert_int_equal(len, strlen(want));
	free(s);
}

static void test_envelope_escapes_newlines(void **state)
{
	(void)state;
	json_t *extra = json_pack("{s:s}", "text", "line1\nline2\r\"q\"");
	size_t len = 0;
	char *s = event_envelope(3, EVENT_MESSAGE, "lobby", "alice", TS_MS,
				 extra, &len);
	assert_null(memchr(s, '\n', len));
	assert_null(memchr(s, '\r', len));
	assert_non_null(strstr(s, "\"text\":\"line1\\nline2\\r\\\"q\\\"\""));
	free(s);
	json_decref(extra);
}

static void test_envelope_extra_cannot_override(void **state)
{
	(void)state;
	json_t *extra = json_pack("{s:s, s:s, s:i, s:s}", "from", "mallory",
				  "type", "leave", "id", 99, "text", "x");
	char *s = event_envelope(5, EVENT_MESSAGE, "lobby", "alice", TS_MS,
				 extra, NULL);
	assert_string_equal(s, "{\"id\":5,\"type\":\"message\","
			       "\"room\":\"lobby\",\"from\":\"alice\","
			       "\"ts\":\"2026-11-26T12:00:00.123Z\","
			       "\"text\":\"x\"}");
	free(s);
	json_decref(extra);
}

static void test_envelope_invalid_utf8(void **state)
{
	(void)state;
	size_t len = 77;
	assert_null(event_envelope(1, EVENT_MESSAGE, "lo\xffy", "alice", TS_MS,
				   NULL, &len));
	assert_int_equal(len, 77);
}

/* The writer's direct message envelope is byte for byte jansson's: every
 * control character, quotes, backslashes, slashes, DEL, multi-byte UTF-8
 * (U+2028 included), with and without client_id; and it refuses invalid
 * UTF-8 as jansson does. */
static void test_envelope_message_direct(void **state)
{
	(void)state;
	char ctl[40];
	for (int i = 1; i < 32; i++)
		ctl[i - 1] = (char)i;
	ctl[31] = '\0';
	const char *texts[] = {
	    "hi",
	    "",
	    ctl,
	    "q\"uo\\te/sl\x7f",
	    "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80 <b>&amp;</b>",
	    "end\\",
	};
	const char *cids[] = {NULL, "c-7f3a", "c\"x"};
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		for (size_t c = 0; c < 3; c++) {
			json_t *extra = json_pack("{s:s}", "text", texts[t]);
			if (cids[c])
				json_object_set_new(extra, "client_id",
						    json_string(cids[c]));
			size_t la = 0, lb = 0;
			char *a = event_envelope(987654321012LL, EVENT_MESSAGE,
						 "lo\"bby", "al/ice", TS_MS,
						 extra, &la);
			char *b = event_envelope_message(
			    987654321012LL, "lo\"bby", "al/ice", TS_MS,
			    texts[t], cids[c], &lb);
			assert_non_null(a);
			assert_non_null(b);
			assert_string_equal(b, a);
			assert_int_equal(lb, la);
			assert_int_equal(strlen(b), lb);
			free(a);
			free(b);
			json_decref(extra);
		}
	}
	size_t len = 77;
	assert_null(event_envelope_message(1, "lobby", "alice", TS_MS,
					   "bad \xff", NULL, &len));
	assert_null(event_envelope_message(1, "lobby", "alice", TS_MS, "ok",
					   "\xc3", &len));
	assert_null(event_envelope_message(1, "lo\xffy", "alice", TS_MS, "ok",
					   NULL, &len));
	assert_int_equal(len, 77);
}

static void test_accessors(void **state)
{
	(void)state;
	const char *j = "{\"a\":1}";
	struct event *ev = event_new(42, EVENT_LEAVE, 7, 9, j, strlen(j));
	size_t len = 0;
	assert_int_equal(event_id(ev), 42);
	assert_int_equal(event_type(ev), EVENT_LEAVE);
	assert_int_equal(event_room(ev), 7);
	assert_int_equal(event_user(ev), 9);
	const char *got = event_json(ev, &len);
	assert_int_equal(len, strlen(j));
	assert_string_equal(got, j);
	assert_ptr_not_equal(got, j); /* copied */
	event_unref(ev);
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(event_type_name(EVENT_MESSAGE), "message");
	assert_string_equal(event_type_name(EVENT_JOIN), "join");
	assert_string_equal(event_type_name(EVENT_LEAVE), "leave");
	assert_string_equal(event_type_name(EVENT_ROOM), "room");
	assert_string_equal(event_type_name(EVENT_TYPING), "typing");
	assert_string_equal(event_type_name(EVENT_PRESENCE), "presence");
	assert_true(event_type_persistent(EVENT_MESSAGE));
	assert_true(event_type_persistent(EVENT_JOIN));
	assert_true(event_type_persistent(EVENT_LEAVE));
	assert_true(event_type_persistent(EVENT_ROOM));
	assert_false(event_type_persistent(EVENT_TYPING));
	assert_false(event_type_persistent(EVENT_PRESENCE));
}

/* The event-type table: every row's name parses back to its type, the
 * membership effect comes from the effect column, and the validators. */
static void test_evtype_table(void **state)
{
	(void)state;
	const enum event_type all[] = {EVENT_MESSAGE, EVENT_JOIN,
				       EVENT_LEAVE,   EVENT_ROOM,
				       EVENT_TYPING,  EVENT_PRESENCE};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const struct evtype *row = evtype_get(all[i]);
		enum event_type t;
		assert_non_null(row);
		assert_int_equal(row->type, all[i]);
		assert_int_equal(evtype_parse(row->name, &t), 0);
		assert_int_equal(t, all[i]);
		assert_int_equal(event_type_persistent(all[i]),
				 row->persistent);
	}
	assert_null(evtype_get((enum event_type)99));
	enum event_type t;
	assert_int_equal(evtype_parse("nope", &t), -1);
	assert_int_equal(evtype_membership(EVENT_JOIN), 1);
	assert_int_equal(evtype_membership(EVENT_ROOM), 1);
	assert_int_equal(evtype_membership(EVENT_LEAVE), -1);
	assert_int_equal(evtype_membership(EVENT_MESSAGE), 0);
	assert_int_equal(evtype_membership(EVENT_TYPING), 0);
	assert_true(evtype_get(EVENT_MESSAGE)->searchable);
	assert_false(evtype_get(EVENT_JOIN)->searchable);

	const struct evtype *msg = evtype_get(EVENT_MESSAGE);
	struct evtype_input in = {.text = "hi", .len = 2};
	assert_int_equal(msg->validate(&in), EVTYPE_VALID);
	in.text = "  ";
	assert_int_equal(msg->validate(&in), EVTYPE_INVALID);
	in = (struct evtype_input){.text = "hi", .len = 2, .client_id = "a b"};
	assert_int_equal(msg->validate(&in), EVTYPE_INVALID);
	const struct evtype *room = evtype_get(EVENT_ROOM);
	in = (struct evtype_input){.room = "dev", .topic = "t"};
	assert_int_equal(room->validate(&in), EVTYPE_VALID);
	in.room = "no spaces";
	assert_int_equal(room->validate(&in), EVTYPE_INVALID);
}

/* The envelope from a client's input, as the table says. */
static void test_envelope_input(void **state)
{
	(void)state;
	struct evtype_input in = {
	    .text = "hi", .len = 2, .client_id = "c-1", .topic = "t"};
	size_t len, mlen;
	char *a = event_envelope_input(7, EVENT_MESSAGE, "lobby", "alice", 0,
				       &in, &len);
	char *b =
	    event_envelope_message(7, "lobby", "alice", 0, "hi", "c-1", &mlen);
	assert_string_equal(a, b);
	assert_int_equal(len, mlen);
	free(a);
	free(b);
	/* the rendered form follows the text; the source stays as it was */
	in.text = "**hi**";
	in.len = 6;
	in.html = "<p><strong>hi</strong></p>\n";
	a = event_envelope_input(7, EVENT_MESSAGE, "lobby", "alice", 0, &in,
				 &len);
	assert_string_equal(
	    a, "{\"id\":7,\"type\":\"message\",\"room\":\"lobby\",\"from\":"
	       "\"alice\",\"ts\":\"1970-01-01T00:00:00.000Z\",\"text\":\"**hi**"
	       "\",\"html\":\"<p><strong>hi</strong></p>\\n\",\"client_id\":"
	       "\"c-1\"}");
	assert_int_equal(len, strlen(a));
	free(a);
	a = event_envelope_input(8, EVENT_ROOM, "dev", "alice", 0, &in, &len);
	json_t *o = json_loads(a, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "room");
	assert_string_equal(json_string_value(json_object_get(o, "topic")),
			    "t");
	assert_null(json_object_get(o, "text"));
	json_decref(o);
	free(a);
}

static void test_sse_persistent(void **state)
{
	(void)state;
	const char *j = "{\"id\":1042,\"type\":\"message\"}";
	struct event *ev = event_new(1042, EVENT_MESSAGE, 1, 2, j, strlen(j));
	size_t len = 0;
	const char *s = event_sse(ev, &len);
	const char *want = "id: 1042\nevent: message\n"
			   "data: {\"id\":1042,\"type\":\"message\"}\n\n";
	assert_int_equal(len, strlen(want));
	assert_memory_equal(s, want, len);
	assert_int_equal(s[len], '\0');
	/* Cached: the same bytes at the same address. */
	size_t len2 = 0;
	assert_ptr_equal(event_sse(ev, &len2), s);
	assert_int_equal(len2, len);
	event_unref(ev);
}

static void test_sse_ephemeral(void **state)
{
	(void)state;
	const char *j = "{\"type\":\"typing\"}";
	struct event *ev = event_new(0, EVENT_TYPING, 1, 2, j, strlen(j));
	size_t len = 0;
	const char *s = event_sse(ev, &len);
	const char *want = "event: typing\ndata: {\"type\":\"typing\"}\n\n";
	assert_int_equal(len, strlen(want));
	assert_memory_equal(s, want, len);
	event_unref(ev);
}

static void test_sse_from_envelope(void **state)
{
	(void)state;
	json_t *extra = json_pack("{s:s}", "text", "a\nb");
	size_t jlen;
	char *j = event_envelope(9, EVENT_MESSAGE, "lobby", "alice", TS_MS,
				 extra, &jlen);
	struct event *ev = event_new(9, EVENT_MESSAGE, 1, 2, j, jlen);
	size_t len;
	const char *s = event_sse(ev, &len);
	/* Exactly three line breaks before the blank line: id, event, data. */
	size_t nl = 0;
	for (size_t i = 0; i < len; i++)
		nl += s[i] == '\n';
	assert_int_equal(nl, 4);
	assert_memory_equal(s + len - 2, "\n\n", 2);
	event_unref(ev);
	free(j);
	json_decref(extra);
}

static void test_refcount(void **state)
{
	(void)state;
	struct event *ev = event_new(1, EVENT_MESSAGE, 1, 1, "{}", 2);
	assert_ptr_equal(event_ref(ev), ev);
	assert_ptr_equal(event_ref(ev), ev);
	event_sse(ev, NULL);
	event_unref(ev);
	event_unref(ev);
	/* Still alive: the SSE block and JSON are readable. */
	assert_string_equal(event_json(ev, NULL), "{}");
	event_unref(ev); /* last: valgrind/ASan check nothing leaks */
	event_unref(NULL);
}

#define SSE_THREADS 8

struct sse_race {
	struct event *ev;
	pthread_barrier_t *barrier;
	const char *got;
};

static void *sse_thread(void *p)
{
	struct sse_race *r = p;
	struct event *ev = event_ref(r->ev);
	pthread_barrier_wait(r->barrier);
	r->got = event_sse(ev, NULL);
	event_unref(ev);
	return NULL;
}

static void test_sse_concurrent_first_use(void **state)
{
	(void)state;
	for (int round = 0; round < 200; round++) {
		struct event *ev =
		    event_new(round + 1, EVENT_MESSAGE, 1, 1, "{\"x\":1}", 7);
		pthread_barrier_t barrier;
		pthread_barrier_init(&barrier, NULL, SSE_THREADS);
		pthread_t t[SSE_THREADS];
		struct sse_race r[SSE_THREADS];
		for (int i = 0; i < SSE_THREADS; i++) {
			r[i] = (struct sse_race){ev, &barrier, NULL};
			assert_int_equal(
			    pthread_create(&t[i], NULL, sse_thread, &r[i]), 0);
		}
		for (int i = 0; i < SSE_THREADS; i++)
			pthread_join(t[i], NULL);
		for (int i = 1; i < SSE_THREADS; i++)
			assert_ptr_equal(r[i].got, r[0].got);
		assert_ptr_equal(event_sse(ev, NULL), r[0].got);
		pthread_barrier_destroy(&barrier);
		event_unref(ev);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_evtype_table),
	    cmocka_unit_test(test_envelope_input),
	    cmocka_unit_test(test_envelope_message),
	    cmocka_unit_test(test_envelope_extra_order_kept),
	    cmocka_unit_test(test_envelope_ephemeral),
	    cmocka_unit_test(test_envelope_escapes_newlines),
	    cmocka_unit_test(test_envelope_extra_cannot_override),
	    cmocka_unit_test(test_envelope_invalid_utf8),
	    cmocka_unit_test(test_accessors),
	    cmocka_unit_test(test_type_names),
	    cmocka_unit_test(test_sse_persistent),
	    cmocka_unit_test(test_sse_ephemeral),
	    cmocka_unit_test(test_sse_from_envelope),
	    cmocka_unit_test(test_refcount),
	    cmocka_unit_test(test_envelope_message_direct),
	    cmocka_unit_test(test_sse_concurrent_first_use),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
