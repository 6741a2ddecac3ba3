/* Unit tests for cmd, through cmd.h, with chat faked at link time: each
 * command reads its members from a JSON object, reports the member at
 * fault, dispatches to its chat handler, and says whether it ends in an
 * ack (async) or is answered at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/cmd.h"

/* --- fake chat ------------------------------------------------------------ */

static char called[32], got_room[64], got_text[64], got_cid[64], got_topic[64];
static size_t got_len;
static int answer = CHAT_OK;
static int64_t got_target;

static void record(const char *what, const char *room, const char *text,
		   size_t len, const char *cid, const char *topic)
{
	snprintf(called, sizeof(called), "%s", what);
	snprintf(got_room, sizeof(got_room), "%s", room ? room : "(null)");
	snprintf(got_text, sizeof(got_text), "%.*s", (int)len,
		 text ? text : "");
	got_len = len;
	snprintf(got_cid, sizeof(got_cid), "%s", cid ? cid : "(null)");
	snprintf(got_topic, sizeof(got_topic), "%s", topic ? topic : "(null)");
}

int chat_send(struct chat *c, const struct chat_user *u, const char *room,
	      const char *text, size_t len, const char *client_id,
	      chat_done_fn done, void *arg)
{
	(void)c, (void)u, (void)done, (void)arg;
	record("send", room, text, len, client_id, NULL);
	return answer;
}

int chat_typing(struct chat *c, const struct chat_user *u, const char *room)
{
	(void)c, (void)u;
	record("typing", room, NULL, 0, NULL, NULL);
	return answer;
}

/* The activity report (presence): nothing to see here. */
int chat_activity(struct chat *c, const struct chat_user *u)
{
	(void)c, (void)u;
	return CHAT_OK;
}

/* A muted sender: what is left of the mute (cmd asks on CHAT_EMUTED). */
int64_t chat_mute_left(struct chat *c, const struct chat_user *u,
		       const char *room)
{
	(void)c, (void)u, (void)room;
	return 42;
}

/* Over rooms-per-day: the wait (cmd asks on CHAT_ELIMIT). */
int chat_room_quota(struct chat *c, const struct chat_user *u,
		    int64_t *retry_after_s)
{
	(void)c, (void)u;
	*retry_after_s = 77;
	return CHAT_ELIMIT;
}

int chat_event(struct chat *c, const struct chat_user *u, enum event_type type,
	       const struct evtype_input *in, chat_done_fn done, void *arg)
{
	(void)c, (void)u, (void)done, (void)arg;
	record(evtype_get(type)->name, in->room, in->text, in->len,
	       in->client_id, in->topic);
	got_target = in->target_id;
	return answer;
}

/* --- tests ---------------------------------------------------------------- */

static const struct chat_user alice = {1, "alice"};

static int run(const char *name, const char *json, struct cmd_status *st)
{
	json_t *args = json_loads(json, JSON_ALLOW_NUL, NULL);
	assert_non_null(args);
	called[0] = '\0';
	int rc = cmd_run(NULL, &alice, name, args, NULL, NULL, st);
	json_decref(args);
	return rc;
}

/* A send that carries files reaches chat with its whole object (the
 * message's "files" go with it), as the message type's event. */
static void test_send_files(void **state)
{
	(void)state;
	struct cmd_status st;
	answer = CHAT_OK;
	assert_int_equal(run("send",
			     "{\"room\":\"lobby\",\"text\":\"\","
			     "\"files\":[\"0123\"]}",
			     &st),
			 CHAT_OK);
	assert_string_equal(called, "message");
	assert_string_equal(got_room, "lobby");
	assert_true(st.async && st.send);
}

static void test_send(void **state)
{
	(void)state;
	struct cmd_status st;
	answer = CHAT_OK;
	assert_int_equal(run("send",
			     "{\"room\":\"lobby\",\"text\":\"a\\u0000b\","
			     "\"client_id\":\"c-1\"}",
			     &st),
			 CHAT_OK);
	assert_string_equal(called,
			    "message"); /* chat_event, the whole input */
	assert_string_equal(got_room, "lobby");
	assert_int_equal(got_len, 3); /* the JSON length, NUL and all */
	assert_string_equal(got_cid, "c-1");
	assert_true(st.async && st.acked && st.send && !st.pong);
	/* client_id is optional and may be null */
	assert_int_equal(
	    run("send",
		"{\"room\":\"lobby\",\"text\":\"x\",\"client_id\":null}", &st),
	    CHAT_OK);
	assert_string_equal(got_cid, "(null)");
	assert_int_equal(got_target, 0);
	/* a reply: reply_to is the message's target, null is none, anything
	 * but a positive integer is an argument error */
	assert_int_equal(
	    run("send", "{\"room\":\"lobby\",\"text\":\"x\",\"reply_to\":7}",
		&st),
	    CHAT_OK);
	assert_int_equal(got_target, 7);
	assert_int_equal(
	    run("send", "{\"room\":\"lobby\",\"text\":\"x\",\"reply_to\":null}",
		&st),
	    CHAT_OK);
	assert_int_equal(got_target, 0);
	assert_int_equal(
	    run("send",
		"{\"room\":\"lobby\",\"text\":\"x\",\"reply_to\":\"7\"}", &st),
	    CMD_EARGS);
	assert_string_equal(st.field, "reply_to");
	/* reactions: room and id read, the rest is the validator's */
	assert_int_equal(run("react",
			     "{\"room\":\"lobby\",\"id\":9,\"emoji\":\":+1:\"}",
			     &st),
			 CHAT_OK);
	assert_string_equal(called, "reaction");
	assert_int_equal(got_target, 9);
	assert_true(st.async && st.acked);
	assert_int_equal(run("unreact", "{\"room\":\"lobby\"}", &st),
			 CMD_EARGS);
	assert_string_equal(st.field, "id");
	/* a chat error: not async, the code passes through */
	answer = CHAT_ENOROOM;
	assert_int_equal(run("send", "{\"room\":\"x\",\"text\":\"x\"}", &st),
			 CHAT_ENOROOM);
	assert_false(st.async);
	assert_true(st.acked);
	assert_int_equal(st.retry_after, 0);
	/* a muted sender: how long is left comes with the error */
	answer = CHAT_EMUTED;
	assert_int_equal(run("send", "{\"room\":\"x\",\"text\":\"x\"}", &st),
			 CHAT_EMUTED);
	assert_int_equal(st.retry_after, 42);
	/* over rooms-per-day: the wait comes with the error */
	answer = CHAT_ELIMIT;
	assert_int_equal(run("room_create", "{\"name\":\"x\"}", &st),
			 CHAT_ELIMIT);
	assert_int_equal(st.retry_after, 77);
	answer = CHAT_OK;
}

static void test_args(void **state)
{
	(void)state;
	struct cmd_status st;
	assert_int_equal(run("send", "{\"room\":\"lobby\"}", &st), CMD_EARGS);
	assert_string_equal(st.field, "text");
	assert_string_equal(st.usage,
			    "send needs string members room and text (and may "
			    "have a client_id and an integer reply_to)");
	assert_string_equal(called, ""); /* chat was not asked */
	assert_int_equal(run("send", "{\"room\":1,\"text\":\"x\"}", &st),
			 CMD_EARGS);
	assert_string_equal(st.field, "room");
	assert_int_equal(
	    run("send", "{\"room\":\"r\",\"text\":\"x\",\"client_id\":5}", &st),
	    CMD_EARGS);
	assert_string_equal(st.field, "client_id");
	assert_int_equal(run("typing", "{}", &st), CMD_EARGS);
	assert_string_equal(st.usage, "typing needs a string room");
	assert_int_equal(
	    run("room_create", "{\"name\":\"r\",\"topic\":[]}", &st),
	    CMD_EARGS);
	assert_string_equal(st.field, "topic");
	/* cmd_check looks without running */
	json_t *args = json_loads("{\"room\":\"r\"}", 0, NULL);
	assert_int_equal(cmd_check("join", args, &st), CHAT_OK);
	assert_true(st.acked);
	assert_string_equal(called, "");
	json_decref(args);
}

static void test_table(void **state)
{
	(void)state;
	struct cmd_status st;
	assert_int_equal(run("dance", "{}", &st), CMD_EUNKNOWN);
	assert_false(st.known);
	assert_int_equal(run("ping", "{}", &st), CHAT_OK);
	assert_true(st.pong);
	assert_string_equal(called, "");
	assert_int_equal(run("typing", "{\"room\":\"lobby\"}", &st), CHAT_OK);
	assert_string_equal(called, "typing");
	assert_false(st.async || st.acked);
	assert_int_equal(run("join", "{\"room\":\"dev\"}", &st), CHAT_OK);
	assert_string_equal(called, "join"); /* the event type */
	assert_true(st.async);
	assert_int_equal(run("leave", "{\"room\":\"dev\"}", &st), CHAT_OK);
	assert_string_equal(called, "leave");
	assert_int_equal(
	    run("room_create", "{\"name\":\"dev\",\"topic\":\"t\"}", &st),
	    CHAT_OK);
	assert_string_equal(called, "room");
	assert_string_equal(got_room, "dev");
	assert_string_equal(got_topic, "t");
	assert_true(st.async);
}

/* edit and delete: the message's id is a positive JSON integer. */
static void test_edit_delete(void **state)
{
	(void)state;
	struct cmd_status st;
	assert_int_equal(
	    run("edit", "{\"room\":\"dev\",\"id\":42,\"text\":\"new\"}", &st),
	    CHAT_OK);
	assert_string_equal(called, "edit");
	assert_string_equal(got_room, "dev");
	assert_string_equal(got_text, "new");
	assert_int_equal(got_target, 42);
	assert_true(st.acked && st.async);
	assert_int_equal(run("delete", "{\"room\":\"dev\",\"id\":7}", &st),
			 CHAT_OK);
	assert_string_equal(called, "delete");
	assert_int_equal(got_target, 7);
	assert_true(st.acked);
	static const char *bad[] = {
	    "{\"room\":\"dev\",\"text\":\"new\"}",
	    "{\"room\":\"dev\",\"id\":\"42\",\"text\":\"new\"}",
	    "{\"room\":\"dev\",\"id\":0,\"text\":\"new\"}",
	    "{\"room\":\"dev\",\"id\":-3,\"text\":\"new\"}",
	    "{\"room\":\"dev\",\"id\":1.5,\"text\":\"new\"}",
	    "{\"room\":\"dev\",\"id\":42}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		called[0] = '\0';
		assert_int_equal(run("edit", bad[i], &st), CMD_EARGS);
		assert_string_equal(called, "");
		assert_non_null(st.field);
	}
	assert_int_equal(run("delete", "{\"room\":\"dev\"}", &st), CMD_EARGS);
	assert_string_equal(st.field, "id");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_send),
	    cmocka_unit_test(test_send_files),
	    cmocka_unit_test(test_args),
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_edit_delete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
