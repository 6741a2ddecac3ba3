/* api_message: history pages, sending (JSON or form bodies), typing,
 * search, and the client's transport reports. */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/auth.h"
#include "util/log.h"
#include "store/store.h"
#include "util/util.h"

#define SEARCH_QUERY_MAX 256
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
	int64_t id;
	char name[33];
	if (api_member_room(req, room, &id, name, &ret) < 0)
		return ret;
	if (before == 0)
		return reply_json(req->conn, &req->log, 200,
				  json_pack("{s:s, s:[], s:b}", "room", name,
					    "events", "has_more", 0));
	bool more = false;
	json_t *events = store_history(req->srv->store, id, before, after,
				       (unsigned)limit, &more);
	if (!events)
		return api_fail(req, 500, "internal", "cannot read history");
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:s, s:o, s:b}", "room", name, "events",
				    events, "has_more", more));
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
		if (!in)
			return ret;
	} else {
		in = request_json(req, &ret);
		if (!in)
			return ret;
	}
	json_t *text = json_object_get(in, "text");
	json_t *cid = json_object_get(in, "client_id");
	if (!json_is_string(text)) {
		ret = api_fail(req, 422, "invalid_field",
			       "'text' must be a string");
		goto done;
	}
	if (cid && !json_is_string(cid) && !json_is_null(cid)) {
		ret = api_fail(req, 422, "invalid_field",
			       "'client_id' must be a string");
		goto done;
	}
	struct chat_user cu = {req->user_id, req->username};
	request_suspend(req);
	request_started(
	    req, chat_send(req->srv->chat, &cu, room, json_string_value(text),
			   json_string_length(text), json_string_value(cid),
			   request_chat_done, req));
	ret = MHD_YES;
done:
	json_decref(in);
	return ret;
}

enum MHD_Result api_typing(struct request *req, const char *room)
{
	struct chat_user cu = {req->user_id, req->username};
	int rc = chat_typing(req->srv->chat, &cu, room);
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	return reply_empty(req->conn, &req->log, 204, NULL, 0);
}

enum MHD_Result api_search(struct request *req)
{
	const char *q = request_arg(req, "q");
	if (!q || !*q)
		return api_fail(req, 400, "bad_parameter", "'q' is required");
	if (strlen(q) > SEARCH_QUERY_MAX || !utf8_valid(q, strlen(q)))
		return api_fail(req, 400, "bad_parameter",
				"'q' must be valid UTF-8 of at most 256 bytes");
	int64_t limit = 50;
	enum MHD_Result ret;
	if (arg_i64(req, "limit", &limit, &ret) < 0)
		return ret;
	if (limit < 1 || limit > HISTORY_LIMIT_MAX)
		return api_fail(req, 400, "bad_parameter",
				"limit must be between 1 and 200");
	json_t *results =
	    store_search(req->srv->store, req->user_id, q, (unsigned)limit);
	if (!results)
		return api_fail(req, 500, "internal", "search failed");
	return reply_json(
	    req->conn, &req->log, 200,
	    json_pack("{s:s, s:o}", "query", q, "results", results));
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
