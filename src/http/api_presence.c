/* api_presence: reading presence (GET /api/presence) and the activity
 * report of clients that have no WebSocket (POST /api/activity). Choosing
 * a status is PATCH /api/me (api_account.c). Who may be asked about is
 * core's rule (chat.h, chat_presence_of). */
#include <string.h>

#include "http/api.h"
#include "util/util.h"

#define PRESENCE_QUERY_MAX 100 /* users in one ?users= */

/* GET /api/presence?users=a,b: each named user's presence, in the order
 * asked; without users: yourself and everyone you share a room with (what
 * a client loads after each (re)connect). An unknown name is a 404, a
 * user you share no room with a 403, naming the user. */
enum MHD_Result api_presence_get(struct request *req)
{
	struct chat_user cu = {req->user_id, req->username};
	const char *q = request_arg(req, "users");
	if (!q)
		return reply_json(
		    req->conn, &req->log, 200,
		    json_pack("{s:o}", "presence",
			      chat_presence_peers(req->srv->chat, &cu)));
	json_t *arr = json_array();
	size_t count = 0;
	const char *p = q;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char name[33];
		char msg[96];
		json_t *o = NULL;
		if (len == 0 || len > 32 || ++count > PRESENCE_QUERY_MAX) {
			json_decref(arr);
			return api_fail(req, 422, "invalid_users",
					"users is a comma-separated list of "
					"1-100 user names");
		}
		memcpy(name, p, len);
		name[len] = '\0';
		int rc = chat_presence_of(req->srv->chat, &cu, name, &o);
		if (rc == CHAT_ENOUSER || rc == CHAT_EFORBIDDEN) {
			json_decref(arr);
			bool unknown = rc == CHAT_ENOUSER;
			snprintf(msg, sizeof(msg),
				 unknown ? "no user is called %s"
					 : "you share no room with %s",
				 name_valid(name) ? name : "that name");
			return api_fail(req, unknown ? 404 : 403,
					unknown ? "no_such_user" : "forbidden",
					msg);
		}
		json_array_append_new(arr, o);
		if (!comma)
			break;
		p = comma + 1;
	}
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:o}", "presence", arr));
}

/* POST /api/activity: the user did something (the "activity" command). */
enum MHD_Result api_activity(struct request *req)
{
	enum MHD_Result ret = MHD_YES;
	json_t *args = json_object();
	int rc = api_command(req, "activity", args, NULL, &ret);
	json_decref(args);
	if (rc < 0)
		return ret;
	return reply_empty(req->conn, &req->log, 204, NULL, 0);
}
