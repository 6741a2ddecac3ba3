/* api_room: the room list, room creation, join, leave and members. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/filestore.h"
#include "http/api.h"
#include "core/cmd.h"
#include "core/auth.h"
#include "util/log.h"
#include "util/util.h"

/* "bob,carol" -> ["bob","carol"]; "" -> []. */
static json_t *people_json(const char *list)
{
	json_t *arr = json_array();
	while (*list) {
		const char *end = strchr(list, ',');
		size_t n = end ? (size_t)(end - list) : strlen(list);
		json_array_append_new(arr, json_stringn(list, n));
		list += end ? n + 1 : n;
	}
	return arr;
}

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
		json_t *r =
		    json_pack("{s:s, s:s, s:s, s:I, s:b, s:s}", "name",
			      rooms[i].name, "topic", rooms[i].topic, "created",
			      ts, "members", (json_int_t)rooms[i].members,
			      "joined", rooms[i].joined, "kind", rooms[i].kind);
		if (rooms[i].people)
			json_object_set_new(r, "people",
					    people_json(rooms[i].people));
		if (rooms[i].joined) {
			json_object_set_new(r, "read",
					    json_integer(rooms[i].read));
			json_object_set_new(r, "unread",
					    json_integer(rooms[i].unread));
			json_object_set_new(r, "mentions",
					    json_integer(rooms[i].mentions));
			json_object_set_new(r, "joined_id",
					    json_integer(rooms[i].joined_id));
		}
		json_array_append_new(arr, r);
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
	if (cmd_check("room_create", in, &st) == CHAT_OK &&
	    (!name_valid(name) || strncasecmp(name, "dm-", 3) == 0)) {
		ret = api_fail(req, 422, "invalid_room_name",
			       "room names are 1-32 letters, digits, _ . or -, "
			       "and do not begin with dm- (direct "
			       "conversations)");
		goto done;
	}
	json_t *priv = json_object_get(in, "private");
	if (priv && !json_is_boolean(priv) && !json_is_null(priv)) {
		ret = api_fail(req, 422, "invalid_field",
			       "'private' must be true or false");
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
	for (size_t i = 0; i < n; i++) {
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:o}", "username", m[i].username,
			      "display_name", m[i].display_name, "role",
			      api_role_name(m[i].role), "avatar",
			      filestore_avatar_json(m[i].avatar));
		chat_presence_add(req->srv->chat, m[i].username, o, false);
		json_array_append_new(members, o);
	}
	store_members_free(m, n);
	return reply_json(
	    req->conn, &req->log, 200,
	    json_pack("{s:s, s:o}", "room", name, "members", members));
}

const char *api_role_name(int role)
{
	switch (role) {
	case STORE_ROLE_OWNER:
		return "owner";
	case STORE_ROLE_MODERATOR:
		return "moderator";
	case STORE_ROLE_MEMBER:
		return "member";
	default:
		return "none";
	}
}

/* PUT (on) or DELETE /api/rooms/{room}/moderators/{user}: the room's owner
 * or an admin names a member moderator, or no longer. Both idempotent;
 * the answer is the user's role in the room afterwards. */
static enum MHD_Result moderator_set(struct request *req, const char *room,
				     bool on)
{
	struct chat_user cu = {req->user_id, req->username};
	const char *target = request_param(req, 1);
	char name[33] = "", user[33] = "";
	int role = 0;
	int rc = chat_moderator_set(req->srv->chat, &cu, room, target, on, name,
				    user, &role);
	if (rc == CHAT_ENOTMEMBER)
		return api_fail(req, 422, "not_a_member",
				"that user is not a member of the room");
	if (rc == CHAT_EFORBIDDEN)
		return api_fail(req, 403, "forbidden",
				"only the room's owner or an admin names "
				"moderators, and the owner stays owner");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:s, s:s, s:s}", "room", name, "user",
				    user, "role", api_role_name(role)));
}

enum MHD_Result api_room_moderator_put(struct request *req, const char *room)
{
	return moderator_set(req, room, true);
}

enum MHD_Result api_room_moderator_delete(struct request *req, const char *room)
{
	return moderator_set(req, room, false);
}

/* The "user" and optional "reason" of a moderation request: 0, or -1
 * after answering 422. */
static int moderation_args(struct request *req, json_t *in,
			   enum MHD_Result *ret)
{
	if (!api_field_str(req, in, "user", ret))
		return -1;
	json_t *reason = json_object_get(in, "reason");
	if (reason && !json_is_null(reason) && !json_is_string(reason)) {
		*ret = api_fail(req, 422, "invalid_field",
				"'reason' must be a string");
		return -1;
	}
	return 0;
}

/* POST /api/rooms/{room}/kicks {"user", "reason"}: a moderator removes a
 * member; 201 with the kick event. */
enum MHD_Result api_room_kick(struct request *req, const char *room)
{
	if (req->phase == REQ_READY)
		return api_answer_event(req, 201, NULL, NULL);
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	if (moderation_args(req, in, &ret) == 0)
		api_command(req, "kick", in, room, &ret);
	json_decref(in);
	return ret;
}

/* POST /api/rooms/{room}/bans {"user", "reason"}: a member is removed and
 * banned (201 with the ban event); a non-member is banned (201 with
 * "event": null). */
enum MHD_Result api_room_ban(struct request *req, const char *room)
{
	if (req->phase == REQ_READY)
		return api_answer_event(req, 201, NULL, NULL);
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	if (moderation_args(req, in, &ret) < 0)
		goto done;
	struct chat_user cu = {req->user_id, req->username};
	char name[33] = "", user[33] = "";
	const char *reason = json_string_value(json_object_get(in, "reason"));
	struct evtype_input check = {.args = in};
	if (evtype_get(EVENT_BAN)->validate(&check) != EVTYPE_VALID) {
		ret = api_fail(req, 422, "invalid",
			       "user must be a user name; reason at most 200 "
			       "characters of visible text");
		goto done;
	}
	int rc = chat_ban_set(req->srv->chat, &cu, room,
			      json_string_value(json_object_get(in, "user")),
			      reason, true, name, user);
	if (rc == CHAT_EEXISTS) { /* a member: the ban is their removal */
		api_command(req, "ban", in, room, &ret);
		goto done;
	}
	if (rc != CHAT_OK) {
		ret = request_chat_error(req, rc);
		goto done;
	}
	ret = reply_json(
	    req->conn, &req->log, 201,
	    json_pack("{s:n, s:s, s:s}", "event", "room", name, "user", user));
done:
	json_decref(in);
	return ret;
}

/* DELETE /api/rooms/{room}/bans/{user}: lift a ban. */
enum MHD_Result api_room_unban(struct request *req, const char *room)
{
	struct chat_user cu = {req->user_id, req->username};
	char name[33] = "", user[33] = "";
	int rc = chat_ban_set(req->srv->chat, &cu, room, request_param(req, 1),
			      NULL, false, name, user);
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:s, s:s, s:b}", "room", name, "user",
				    user, "banned", 0));
}

/* GET /api/rooms/{room}/bans: for those who moderate the room. */
enum MHD_Result api_room_bans(struct request *req, const char *room)
{
	struct chat_user cu = {req->user_id, req->username};
	struct store_ban *b = NULL;
	size_t n = 0;
	char name[33] = "";
	int rc = chat_bans_list(req->srv->chat, &cu, room, name, &b, &n);
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char ts[32];
		format_ts(b[i].created_ms, ts);
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s, s:s}", "user",
				   b[i].username, "by", b[i].by, "reason",
				   b[i].reason, "created", ts));
	}
	store_bans_free(b, n);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:s, s:o}", "room", name, "bans", arr));
}

/* POST /api/rooms/{room}/mutes {"user", "seconds", "reason"}: the user's
 * sends in the room are refused until the mute ends. */
enum MHD_Result api_room_mute(struct request *req, const char *room)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	if (moderation_args(req, in, &ret) < 0)
		goto done;
	json_t *secs = json_object_get(in, "seconds");
	struct evtype_input check = {.args = in};
	if (!json_is_integer(secs) || json_integer_value(secs) < 1 ||
	    json_integer_value(secs) > CHAT_MUTE_MAX_S ||
	    evtype_get(EVENT_KICK)->validate(&check) != EVTYPE_VALID) {
		ret = api_fail(req, 422, "invalid",
			       "user must be a user name, seconds a whole "
			       "number from 1 to 31622400, reason at most 200 "
			       "characters of visible text");
		goto done;
	}
	struct chat_user cu = {req->user_id, req->username};
	char name[33] = "", user[33] = "", ts[32];
	int64_t until = 0;
	int rc = chat_mute_set(req->srv->chat, &cu, room,
			       json_string_value(json_object_get(in, "user")),
			       json_integer_value(secs),
			       json_string_value(json_object_get(in, "reason")),
			       name, user, &until);
	if (rc != CHAT_OK) {
		ret = request_chat_error(req, rc);
		goto done;
	}
	format_ts(until, ts);
	ret = reply_json(req->conn, &req->log, 201,
			 json_pack("{s:s, s:s, s:s, s:I}", "room", name, "user",
				   user, "until", ts, "seconds",
				   (json_int_t)json_integer_value(secs)));
done:
	json_decref(in);
	return ret;
}

/* DELETE /api/rooms/{room}/mutes/{user}: lift a running mute. */
enum MHD_Result api_room_unmute(struct request *req, const char *room)
{
	struct chat_user cu = {req->user_id, req->username};
	char name[33] = "", user[33] = "";
	int64_t until = 0;
	int rc = chat_mute_set(req->srv->chat, &cu, room, request_param(req, 1),
			       0, NULL, name, user, &until);
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:s, s:s, s:b}", "room", name, "user",
				    user, "muted", 0));
}

enum MHD_Result api_room_invite(struct request *req, const char *room)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	const char *user = api_field_str(req, in, "user", &ret);
	if (user) {
		struct chat_user cu = {req->user_id, req->username};
		char name[33], canon[33];
		int rc =
		    chat_invite(req->srv->chat, &cu, room, user, name, canon);
		if (rc == CHAT_EEXISTS)
			ret = api_fail(req, 409, "already_member",
				       "that user is a member of the room");
		else if (rc != CHAT_OK)
			ret = request_chat_error(req, rc);
		else
			ret =
			    reply_json(req->conn, &req->log, 201,
				       json_pack("{s:{s:s, s:s, s:s}}",
						 "invite", "room", name, "user",
						 canon, "by", req->username));
	}
	json_decref(in);
	return ret;
}

enum MHD_Result api_room_read(struct request *req, const char *room)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	json_t *id = json_object_get(in, "id");
	if (!json_is_integer(id) || json_integer_value(id) < 1) {
		ret = api_fail(req, 422, "invalid_field",
			       "'id' must be an event id (a positive integer)");
		goto done;
	}
	struct chat_user cu = {req->user_id, req->username};
	char name[33];
	int64_t now = 0;
	int rc = chat_read(req->srv->chat, &cu, room, json_integer_value(id),
			   name, &now);
	if (rc == CHAT_EINVAL)
		ret = api_fail(req, 422, "invalid_field",
			       "'id' is newer than the newest event");
	else if (rc != CHAT_OK)
		ret = request_chat_error(req, rc);
	else
		ret = reply_json(req->conn, &req->log, 200,
				 json_pack("{s:s, s:I}", "room", name, "read",
					   (json_int_t)now));
done:
	json_decref(in);
	return ret;
}

enum MHD_Result api_invites_list(struct request *req)
{
	struct chat_user cu = {req->user_id, req->username};
	struct store_invite *v = NULL;
	size_t n = 0;
	if (chat_invites_list(req->srv->chat, &cu, &v, &n) != CHAT_OK)
		return api_fail(req, 500, "internal",
				"cannot list invitations");
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char ts[32];
		format_ts(v[i].created_ms, ts);
		json_array_append_new(arr,
				      json_pack("{s:s, s:s, s:s, s:s}", "room",
						v[i].room, "kind", v[i].kind,
						"by", v[i].by, "created", ts));
	}
	free(v);
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:o}", "invites", arr));
}

/* The answer to POST /api/dms: the conversation as the room list shows it
 * (the other people only), and its opening event. */
static enum MHD_Result dm_answer(struct request *req)
{
	const struct chat_result *res = &req->result;
	if (res->err != CHAT_OK)
		return request_chat_error(req, res->err);
	json_t *ev = api_event_json(res->ev);
	json_t *people = json_array(), *v;
	size_t i;
	json_array_foreach(json_object_get(ev, "people"), i, v)
	{
		if (strcasecmp(json_string_value(v), req->username) != 0)
			json_array_append(people, v);
	}
	json_t *body =
	    json_pack("{s:{s:O, s:s, s:o}, s:o, s:b}", "room", "name",
		      json_object_get(ev, "room"), "kind", "dm", "people",
		      people, "event", ev, "created", !res->duplicate);
	return reply_json(req->conn, &req->log, res->duplicate ? 200 : 201,
			  body);
}

enum MHD_Result api_dms_open(struct request *req)
{
	if (req->phase == REQ_READY)
		return dm_answer(req);
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	json_t *users = json_object_get(in, "users"), *v;
	size_t i;
	bool ok = json_is_array(users) && json_array_size(users) > 0 &&
		  json_array_size(users) <= EVTYPE_DM_USERS_MAX;
	json_array_foreach(users, i, v)
	{
		ok =
		    ok && json_is_string(v) && name_valid(json_string_value(v));
	}
	if (!ok) {
		ret = api_fail(req, 422, "invalid_field",
			       "'users' must be an array of 1-8 user names");
		goto done;
	}
	api_command(req, "dm_open", in, NULL, &ret);
done:
	json_decref(in);
	return ret;
}
