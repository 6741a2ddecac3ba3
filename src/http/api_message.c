/* api_message: history pages, sending (JSON or form bodies), typing,
 * search, and the client's transport reports. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/auth.h"
#include "model/emoji.h"
#include "model/search.h"
#include "util/log.h"
#include "util/util.h"

#define QUERY_BYTES_MAX 256 /* of a search query */
#define HISTORY_LIMIT_DEFAULT 50
#define HISTORY_LIMIT_MAX 200

/* An optional non-negative integer query argument: 0 ok (default kept when
 * absent), -1 after answering 400. */
static int arg_i64(struct request *req, const char *name, int64_t *out,
		   enum MHD_Result *ret)
{
	const char *s = request_arg(req, name);
	if (!s)
		return 0;
	if (parse_i64(s, out) < 0 || *out < 0) {
		char msg[96];
		snprintf(msg, sizeof(msg),
			 "'%s' must be a non-negative integer", name);
		*ret = api_fail(req, 400, "bad_parameter", msg);
		return -1;
	}
	return 0;
}

/* GET /api/rooms/{room}/messages?before=ID|after=ID&limit=N
 * Pages are in increasing id order; has_more says whether more events lie
 * beyond the page in the direction of travel (older for before or no
 * cursor, newer for after). */
enum MHD_Result api_history(struct request *req, const char *room)
{
	enum MHD_Result ret;
	int64_t before = -1, after = -1, limit = HISTORY_LIMIT_DEFAULT;
	if (arg_i64(req, "before", &before, &ret) < 0 ||
	    arg_i64(req, "after", &after, &ret) < 0 ||
	    arg_i64(req, "limit", &limit, &ret) < 0)
		return ret;
	if (before >= 0 && after >= 0)
		return api_fail(req, 400, "bad_parameter",
				"give before or after, not both");
	if (limit < 1 || limit > HISTORY_LIMIT_MAX)
		return api_fail(req, 400, "bad_parameter",
				"limit must be between 1 and 200");
	if (before == 0) { /* nothing is older than id 0: the checks only */
		int64_t id;
		char shown[33];
		if (api_member_room(req, room, &id, shown, &ret) < 0)
			return ret;
		return reply_json(req->conn, &req->log, 200,
				  json_pack("{s:s, s:[], s:b}", "room", shown,
					    "events", "has_more", 0));
	}
	struct chat_user cu = {req->user_id, req->username};
	struct event **evs = NULL;
	size_t n = 0;
	bool more = false;
	char name[33];
	int rc = chat_history(req->srv->chat, &cu, room, name, before, after,
			      (unsigned)limit, &evs, &n, &more);
	if (rc == CHAT_EINTERNAL)
		return api_fail(req, 500, "internal", "cannot read history");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	/* The stored envelopes as they are: no parse, no re-serialize. A room
	 * name is plain ASCII (name_valid), so it needs no escaping. */
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"room\":\"%s\",\"events\":", name);
	api_events_write(&b, evs, n);
	buf_printf(&b, ",\"has_more\":%s}", more ? "true" : "false");
	api_events_free(evs, n);
	size_t len = b.len;
	return reply_json_take(req->conn, &req->log, 200, buf_steal(&b), len);
}

enum MHD_Result api_send(struct request *req, const char *room)
{
	if (req->phase == REQ_READY) {
		if (req->result.err == CHAT_OK)
			metrics_inc(req->srv->metrics.acks);
		return api_answer_event(req, 201, NULL, NULL);
	}
	metrics_inc(req->srv->metrics.sends);
	enum MHD_Result ret = MHD_YES;
	const char *ctype = MHD_lookup_connection_value(
	    req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	json_t *in;
	if (ctype &&
	    !strncasecmp(ctype, "application/x-www-form-urlencoded", 33)) {
		in = request_form(req, &ret);
	} else {
		in = request_json(req, &ret);
	}
	if (!in) { /* answered already; a bad body costs a command too */
		api_charge(req);
		return ret;
	}
	api_command(req, "send", in, room, &ret);
	json_decref(in);
	return ret;
}

/* The {id} after {room}: a positive decimal integer, else 0. */
static int64_t message_id(struct request *req)
{
	const char *s = request_param(req, 1);
	int64_t v = 0;
	if (!s || !*s || strlen(s) > 18)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		v = v * 10 + (*s - '0');
	}
	return v;
}

/* PATCH (edit: {"text"}) or DELETE of a message: its command, answered
 * 200 with the new event, or with the earlier one when the command
 * changes nothing ("duplicate": true). */
static enum MHD_Result message_change(struct request *req, const char *room,
				      const char *cmd)
{
	if (req->phase == REQ_READY)
		return api_answer_event(req, 200, NULL, NULL);
	enum MHD_Result ret = MHD_YES;
	int64_t id = message_id(req);
	if (id <= 0)
		return request_chat_error(req, CHAT_ENOMSG);
	json_t *args =
	    strcmp(cmd, "edit") == 0 ? request_json(req, &ret) : json_object();
	if (!args)
		return ret;
	json_object_set_new(args, "id", json_integer(id));
	api_command(req, cmd, args, room, &ret);
	json_decref(args);
	return ret;
}

enum MHD_Result api_message_edit(struct request *req, const char *room)
{
	return message_change(req, room, "edit");
}

enum MHD_Result api_message_delete(struct request *req, const char *room)
{
	return message_change(req, room, "delete");
}

/* A reaction's answer: 200 {"message_id","reactions":[{emoji,count,me}],
 * "event": the reaction event, or null when nothing changed}. A user who
 * is not a member of the room is told the message is not there (404). */
static enum MHD_Result reaction_answer(struct request *req, const char *room)
{
	const struct chat_result *res = &req->result;
	struct chat_user cu = {req->user_id, req->username};
	int64_t id = message_id(req);
	json_t *agg = NULL;
	int rc = res->err;

	if (rc == CHAT_OK)
		rc = chat_reactions(req->srv->chat, &cu, room, id, &agg);
	if (rc == CHAT_ENOTMEMBER)
		rc = CHAT_ENOMSG;
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	json_t *ev = res->duplicate ? NULL : api_event_json(res->ev);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:I, s:o, s:o}", "message_id",
				    (json_int_t)id, "reactions", agg, "event",
				    ev ? ev : json_null()));
}

static enum MHD_Result reaction_change(struct request *req, const char *room,
				       const char *cmd)
{
	if (req->phase == REQ_READY)
		return reaction_answer(req, room);
	enum MHD_Result ret = MHD_YES;
	struct chat_user cu = {req->user_id, req->username};
	const char *emoji = request_param(req, 2);
	char norm[EMOJI_BYTES_MAX];
	int64_t id = message_id(req), rid;
	char shown[33];

	if (id <= 0)
		return request_chat_error(req, CHAT_ENOMSG);
	int rc = chat_room_member(req->srv->chat, &cu, room, &rid, shown);
	if (rc != CHAT_OK)
		return request_chat_error(
		    req, rc == CHAT_ENOTMEMBER ? CHAT_ENOMSG : rc);
	if (!emoji || emoji_normalize(emoji, strlen(emoji), norm) < 0)
		return request_chat_error(req, CHAT_EBADEMOJI);
	json_t *args = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id,
				 "emoji", norm, "op", cmd);
	api_command(req, cmd, args, room, &ret);
	json_decref(args);
	return ret;
}

enum MHD_Result api_reaction_put(struct request *req, const char *room)
{
	return reaction_change(req, room, "react");
}

enum MHD_Result api_reaction_delete(struct request *req, const char *room)
{
	return reaction_change(req, room, "unreact");
}

enum MHD_Result api_typing(struct request *req, const char *room)
{
	enum MHD_Result ret = MHD_YES;
	json_t *args = json_object();
	int rc = api_command(req, "typing", args, room, &ret);
	json_decref(args);
	if (rc < 0)
		return ret;
	return reply_empty(req->conn, &req->log, 204, NULL, 0);
}

/* One result: the event's envelope with "snippet" (model/search.h) added
 * as its last member. */
static void search_result_write(struct buf *b, struct event *ev, const char *q)
{
	size_t len;
	const char *json = event_json(ev, &len);
	json_t *env = json_loadb(json, len, 0, NULL);
	json_t *text = env ? json_object_get(env, "text") : NULL;
	json_t *snip = search_snippet(json_string_value(text), q);
	char *s = snip ? json_dumps(snip, JSON_COMPACT) : NULL;

	assert(len >= 2 && json[len - 1] == '}');
	buf_append(b, json, len - 1);
	buf_printf(b, ",\"snippet\":%s}", s ? s : "[]");
	free(s);
	json_decref(snip);
	json_decref(env);
}

/* GET /api/search?q=WORDS&before=ID&limit=N: the newest matches older than
 * before in the rooms the user belongs to now, each with a snippet. */
enum MHD_Result api_search(struct request *req)
{
	const char *q = request_arg(req, "q");
	if (!q || !*q)
		return api_fail(req, 400, "bad_parameter", "'q' is required");
	if (strlen(q) > QUERY_BYTES_MAX || !utf8_valid(q, strlen(q)))
		return api_fail(req, 400, "bad_parameter",
				"'q' must be valid UTF-8 of at most 256 bytes");
	int64_t limit = 50, before = -1;
	enum MHD_Result ret;
	if (arg_i64(req, "limit", &limit, &ret) < 0 ||
	    arg_i64(req, "before", &before, &ret) < 0)
		return ret;
	if (limit < 1 || limit > HISTORY_LIMIT_MAX)
		return api_fail(req, 400, "bad_parameter",
				"limit must be between 1 and 200");
	if (request_arg(req, "before") && before < 1)
		return api_fail(req, 400, "bad_parameter",
				"before must be an event id (1 or more)");
	struct chat_user cu = {req->user_id, req->username};
	struct event **evs = NULL;
	size_t n = 0;
	bool more = false;
	if (chat_search(req->srv->chat, &cu, q, before, (unsigned)limit, &evs,
			&n, &more) != CHAT_OK)
		return api_fail(req, 500, "internal", "search failed");
	json_t *qs = json_string(q);
	char *qjson = json_dumps(qs, JSON_ENCODE_ANY);
	json_decref(qs);
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"query\":%s,\"results\":[", qjson ? qjson : "null");
	free(qjson);
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_puts(&b, ",");
		search_result_write(&b, evs[i], q);
	}
	buf_printf(&b, "],\"has_more\":%s}", more ? "true" : "false");
	api_events_free(evs, n);
	size_t len = b.len;
	return reply_json_take(req->conn, &req->log, 200, buf_steal(&b), len);
}

enum MHD_Result api_client_report(struct request *req)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	json_t *t = json_object_get(in, "transport");
	json_t *why = json_object_get(in, "reason");
	enum transport_kind kind;
	if (!json_is_string(t) ||
	    transport_parse(json_string_value(t), &kind)) {
		ret = api_fail(req, 422, "invalid_field",
			       "'transport' must be ws, sse or poll");
		goto done;
	}
	enum client_reason r = json_is_string(why)
				   ? client_reason_parse(json_string_value(why))
				   : REASON_OK;
	metrics_inc(req->srv->metrics.client_transport[kind][r]);
	log_info("client transport user=%s transport=%s reason=%s",
		 req->username, json_string_value(t),
		 json_is_string(why) ? json_string_value(why) : "ok");
	ret = reply_empty(req->conn, &req->log, 204, NULL, 0);
done:
	json_decref(in);
	return ret;
}
