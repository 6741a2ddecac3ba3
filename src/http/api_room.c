/* api_room: the room list, room creation, join, leave and members. */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/cmd.h"
#include "core/auth.h"
#include "util/log.h"
#include "util/util.h"

enum MHD_Result api_rooms_list(struct request *req)
{
	struct chat_user cu = {req->user_id, req->username};
	struct store_room *rooms = NULL;
	size_t n = 0;
	if (chat_rooms_list(req->srv->chat, &cu, &rooms, &n) != CHAT_OK)
		return api_fail(req, 500, "internal", "cannot list rooms");
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char ts[32];
		format_ts(rooms[i].created_ms, ts);
		json_array_append_new(
		    arr,
		    json_pack("{s:s, s:s, s:s, s:I, s:b}", "name",
			      rooms[i].name, "topic", rooms[i].topic, "created",
			      ts, "members", (json_int_t)rooms[i].members,
			      "joined", rooms[i].joined));
	}
	store_rooms_free(rooms, n);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:o}", "rooms", arr));
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
	struct cmd_status st;
	const char *name = json_string_value(json_object_get(in, "name"));
	/* HTTP's own word for a bad name, ahead of chat's "invalid" */
	if (cmd_check("room_create", in, &st) == CHAT_OK && !name_valid(name)) {
		ret = api_fail(req, 422, "invalid_room_name",
			       "room names are 1-32 letters, digits, _ . or -");
		goto done;
	}
	api_command(req, "room_create", in, NULL, &ret);
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
	enum MHD_Result ret = MHD_YES;
	json_t *args = json_object();
	api_command(req, "join", args, room, &ret);
	json_decref(args);
	return ret;
}

enum MHD_Result api_room_leave(struct request *req, const char *room)
{
	if (req->phase == REQ_READY)
		return api_answer_event(req, 200, NULL, NULL);
	enum MHD_Result ret = MHD_YES;
	json_t *args = json_object();
	api_command(req, "leave", args, room, &ret);
	json_decref(args);
	return ret;
}

enum MHD_Result api_room_members(struct request *req, const char *room)
{
	struct chat_user cu = {req->user_id, req->username};
	struct store_member *m = NULL;
	size_t n = 0;
	char name[33];
	int rc = chat_room_members(req->srv->chat, &cu, room, name, &m, &n);
	if (rc == CHAT_EINTERNAL)
		return api_fail(req, 500, "internal", "cannot list members");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	json_t *members = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
		    members, json_pack("{s:s, s:s}", "username", m[i].username,
				       "display_name", m[i].display_name));
	store_members_free(m, n);
	return reply_json(
	    req->conn, &req->log, 200,
	    json_pack("{s:s, s:o}", "room", name, "members", members));
}
