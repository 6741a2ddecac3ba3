/* api: what the api_*.c handlers share: error answers, string fields,
 * the answer to an async chat command, and the member-only room check. */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/cmd.h"
#include "core/auth.h"
#include "util/log.h"
#include "util/util.h"

enum MHD_Result api_fail(struct request *req, unsigned status, const char *code,
			 const char *message)
{
	return reply_error(req->conn, &req->log, status, code, message);
}

json_t *api_event_json(struct event *ev)
{
	size_t len;
	const char *text = event_json(ev, &len);
	return json_loadb(text, len, 0, NULL);
}

/* A required string member: NULL (and answered 422) when absent. */
const char *api_field_str(struct request *req, json_t *obj, const char *name,
			  enum MHD_Result *ret)
{
	json_t *v = json_object_get(obj, name);
	if (json_is_string(v))
		return json_string_value(v);
	char msg[96];
	snprintf(msg, sizeof(msg), "'%s' must be a string", name);
	*ret = api_fail(req, 422, "invalid_field", msg);
	return NULL;
}

/* Second half of every async chat command: map its result to an answer. */
enum MHD_Result api_answer_event(struct request *req, unsigned status,
				 const char *exists_code,
				 const char *exists_message)
{
	const struct chat_result *res = &req->result;
	if (res->err == CHAT_EEXISTS && exists_code)
		return api_fail(req, 409, exists_code, exists_message);
	if (res->err != CHAT_OK)
		return request_chat_error(req, res->err);
	json_t *ev = api_event_json(res->ev);
	json_t *body = json_pack("{s:o}", "event", ev ? ev : json_null());
	if (res->duplicate) {
		json_object_set_new(body, "duplicate", json_true());
		status = 200;
	}
	return reply_json(req->conn, &req->log, status, body);
}

/* Resolve a room the requester must belong to: 0, or -1 after answering. */
int api_member_room(struct request *req, const char *room, int64_t *id,
		    char name[33], enum MHD_Result *ret)
{
	struct chat_user cu = {req->user_id, req->username};
	int rc = chat_room_member(req->srv->chat, &cu, room, id, name);
	if (rc != CHAT_OK) {
		*ret = request_chat_error(req, rc);
		return -1;
	}
	return 0;
}

void api_events_write(struct buf *b, struct event **evs, size_t n)
{
	buf_puts(b, "[");
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const char *json = event_json(evs[i], &len);
		if (i)
			buf_puts(b, ",");
		buf_append(b, json, len);
	}
	buf_puts(b, "]");
}

void api_events_free(struct event **evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		event_unref(evs[i]);
	free(evs);
}

int api_admit(struct request *req, const char *name, enum MHD_Result *ret)
{
	struct chat_user cu = {req->user_id, req->username};
	struct cmd_limited lim;
	if (cmd_admit(req->srv->limit, &cu, name, mono_ms(), &lim) == CHAT_OK)
		return 0;
	metrics_inc(req->srv->metrics.rate_limited[lim.what]);
	char msg[96];
	snprintf(msg, sizeof(msg), "too many %s; slow down",
		 lim.what == LIMIT_SEND	    ? "messages"
		 : lim.what == LIMIT_TYPING ? "typing notices"
					    : "commands");
	*ret = reply_retry(req->conn, &req->log, 429, "rate_limited", msg,
			   lim.retry_after);
	return -1;
}

void api_charge(struct request *req)
{
	struct chat_user cu = {req->user_id, req->username};
	struct cmd_limited lim;
	if (cmd_admit(req->srv->limit, &cu, NULL, mono_ms(), &lim) != CHAT_OK)
		metrics_inc(req->srv->metrics.rate_limited[lim.what]);
}

int api_command(struct request *req, const char *name, json_t *args,
		const char *room, enum MHD_Result *ret)
{
	struct cmd_status st;
	struct chat_user cu = {req->user_id, req->username};
	if (api_admit(req, name, ret) < 0)
		return -1;
	if (room) /* a path parameter: any bytes, chat judges the name */
		json_object_set_new(args, "room",
				    json_stringn_nocheck(room, strlen(room)));
	if (cmd_check(name, args, &st) != CHAT_OK) {
		char msg[160];
		snprintf(msg, sizeof(msg), "'%s' is missing or wrong: %s",
			 st.field ? st.field : "?",
			 st.usage ? st.usage : "see the API");
		*ret = api_fail(req, 422, "invalid_field", msg);
		return -1;
	}
	if (!st.acked) {
		int rc =
		    cmd_run(req->srv->chat, &cu, name, args, NULL, NULL, &st);
		req->retry_after = st.retry_after;
		if (rc != CHAT_OK) {
			*ret = request_chat_error(req, rc);
			return -1;
		}
		return 0;
	}
	request_suspend(req);
	int rc = cmd_run(req->srv->chat, &cu, name, args, request_chat_done,
			 req, &st);
	req->retry_after = st.retry_after;
	request_started(req, rc);
	*ret = MHD_YES;
	return 1;
}
