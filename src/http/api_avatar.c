/* api_avatar: the requester's avatar, PUT /api/me/avatar {"upload": ID}
 * (a finished upload of theirs: a PNG, JPEG, GIF or WebP by its bytes, at
 * most avatar-max-size) and DELETE /api/me/avatar; the one-shot form
 * upload POST /api/me/avatar (curl -F file=@me.png) is in api_upload.c. The
 * avatar is served like any file (GET /files/{id}/avatar, api_file.c: ETag,
 * nosniff, sandbox CSP, inline for raster types) to every logged-in user; user
 * objects carry its URL as "avatar". A change reaches the user's
 * co-members live as an ephemeral "profile" event. */
#include <string.h>

#include "core/auth.h"
#include "core/chat.h"
#include "core/filestore.h"
#include "http/api.h"
#include "util/log.h"

enum MHD_Result api_avatar_apply(struct request *req, const char *id,
				 bool *applied)
{
	int rc = filestore_avatar_set(req->srv->files, req->user_id, id);
	*applied = rc == FILESTORE_OK;
	switch (rc) {
	case FILESTORE_OK:
		break;
	case FILESTORE_ENOTFOUND:
		return api_fail(req, 404, "no_such_file",
				"no finished upload of yours with that id");
	case FILESTORE_ETYPE:
		return api_fail(req, 415, "unsupported_type",
				"an avatar is a PNG, JPEG, GIF or WebP image");
	case FILESTORE_ETOOBIG:
		return api_fail(req, 413, "avatar_too_large",
				"the image is larger than avatar-max-size");
	default:
		return api_fail(req, 500, "internal", "cannot set the avatar");
	}
	json_t *body = json_pack("{s:o}", "avatar", filestore_avatar_json(id));
	struct chat_user cu = {req->user_id, req->username};
	if (chat_profile(req->srv->chat, &cu, body) != CHAT_OK)
		log_warn("avatar push failed user=%s", req->username);
	return reply_json(req->conn, &req->log, 200, body);
}

enum MHD_Result api_me_avatar_put(struct request *req)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	json_t *up = json_object_get(in, "upload");
	if (!json_is_string(up) || json_object_size(in) != 1) {
		json_decref(in);
		return api_fail(req, 422, "invalid_upload",
				"the body is {\"upload\": ID of a finished "
				"upload}");
	}
	char id[64];
	snprintf(id, sizeof(id), "%s", json_string_value(up));
	json_decref(in);
	bool applied;
	return api_avatar_apply(req, id, &applied);
}

enum MHD_Result api_me_avatar_delete(struct request *req)
{
	bool applied;
	return api_avatar_apply(req, NULL, &applied);
}
