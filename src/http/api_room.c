/* api_room: the room list, room creation, join, leave and members. */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/auth.h"
#include "util/log.h"
#include "store/store.h"
#include "util/util.h"

enum MHD_Result api_rooms_list(struct request *req)
{
	json_t *rooms = store_rooms_list(req->srv->store, req->user_id);
	if (!rooms)
		return api_fail(req, 500, "internal", "cannot list rooms");
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:o}", "rooms", rooms));
}

enum MHD_Result api_rooms_create(struct request *req)
{
	if (req->phase == REQ_READY)
		return api_answer_event(req, 201, "room_exists",
					"a room by that name exists");
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	const char *name = api_field_str(req, in, "name", &ret);
	json_t *topic = json_object_get(in, "topic");
	if (!name)
		goto done;
	if (topic && !json_is_string(topic) && !json_is_null(topic)) {
		ret = api_fail(req, 422, "invalid_field",
			       "'topic' must be a string");
		goto done;
	}
	if (!name_valid(name)) {
		ret = api_fail(req, 422, "invalid_room_name",
			       "room names are 1-32 letters, digits, _ . or -");
		goto done;
	}
	struct chat_user cu = {req->user_id, req->username};
	request_suspend(req);
	request_started(req, chat_room_create(req->srv->chat, &cu, name,
					      json_string_value(topic),
					      request_chat_done, req));
	ret = MHD_YES;
done:
	json_decref(in);
	return ret;
}

enum MHD_Result api_room_join(struct request *req, const char *room)
{
	if (req->phase == REQ_READY)
		return api_answer_event(
		    req, 200, "already_member",
		    "you are a member of that room already");
	struct chat_user cu = {req->user_id, req->username};
	request_suspend(req);
	request_started(
	    req, chat_join(req->srv->chat, &cu, room, request_chat_done, req));
	return MHD_YES;
}

enum MHD_Result api_room_leave(struct request *req, const char *room)
{
	if (req->phase == REQ_READY)
		return api_answer_event(req, 200, NULL, NULL);
	struct chat_user cu = {req->user_id, req->username};
	request_suspend(req);
	request_started(
	    req, chat_leave(req->srv->chat, &cu, room, request_chat_done, req));
	return MHD_YES;
}

enum MHD_Result api_room_members(struct request *req, const char *room)
{
	enum MHD_Result ret;
	int64_t id;
	char name[33];
	if (api_member_room(req, room, &id, name, &ret) < 0)
		return ret;
	json_t *members = store_room_members(req->srv->store, id);
	if (!members)
		return api_fail(req, 500, "internal", "cannot list members");
	return reply_json(
	    req->conn, &req->log, 200,
	    json_pack("{s:s, s:o}", "room", name, "members", members));
}
