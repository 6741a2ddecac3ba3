/* api_account: register, login, logout, and the requester's own account
 * (GET/PATCH /api/me). */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/auth.h"
#include "util/log.h"
#include "util/util.h"

#define DISPLAY_NAME_MAX 64 /* characters */
#define SETTINGS_MAX 16384  /* bytes of serialized settings */

static json_t *user_json(const struct store_user *u)
{
	char ts[32];
	format_ts(u->created_ms, ts);
	json_t *settings =
	    json_loads(u->settings ? u->settings : "{}", 0, NULL);
	if (!settings)
		settings = json_object();
	return json_pack("{s:s, s:s, s:o, s:s}", "username", u->username,
			 "display_name",
			 u->display_name ? u->display_name : u->username,
			 "settings", settings, "created", ts);
}

/* Issue a session for req->user_id; the token lands in req->token. */
static int issue_session(struct request *req)
{
	int64_t expires =
	    now_ms() + req->srv->cfg->session_ttl_s * (int64_t)1000;
	uint8_t hash[32];
	if (auth_token_new(req->srv->auth, req->token) < 0)
		return -1;
	auth_token_hash(req->token, strlen(req->token), hash);
	int rc =
	    auth_session_create(req->srv->store, hash, req->user_id, expires);
	secure_zero(hash, sizeof(hash));
	return rc == STORE_OK ? 0 : -1;
}

/* 200/201 with {"token","user"} and the session cookie. */
static enum MHD_Result answer_session(struct request *req, unsigned status)
{
	struct store_user u;
	if (auth_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK)
		return api_fail(req, 500, "internal",
				"cannot read the account");
	json_t *body = json_pack("{s:s, s:o, s:I}", "token", req->token, "user",
				 user_json(&u), "expires_in",
				 (json_int_t)req->srv->cfg->session_ttl_s);
	store_user_fini(&u);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	size_t len = strlen(text);
	struct MHD_Response *r =
	    MHD_create_response_from_buffer_with_free_callback(len, text, free);
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	request_set_cookie(req, r, req->token);
	req->log.bytes = len;
	return reply_queue(req->conn, &req->log, status, r);
}

enum MHD_Result api_register(struct request *req)
{
	if (req->phase == REQ_READY) /* joined the lobby (or it is gone) */
		return answer_session(req, 201);

	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	const char *name = api_field_str(req, in, "username", &ret);
	const char *pw = name ? api_field_str(req, in, "password", &ret) : NULL;
	if (!pw)
		goto done;
	size_t pwlen = json_string_length(json_object_get(in, "password"));
	if (!auth_username_valid(name)) {
		ret = api_fail(req, 422, "invalid_username",
			       "usernames are 1-32 letters, digits, _ . or -");
		goto done;
	}
	if (!auth_password_valid(pw, pwlen)) {
		ret = api_fail(
		    req, 422, "invalid_password",
		    "passwords are 8 characters to 1024 bytes of UTF-8");
		goto done;
	}
	char hash[AUTH_HASH_MAX];
	if (auth_password_hash(req->srv->auth, pw, pwlen, hash) < 0) {
		ret =
		    api_fail(req, 500, "internal", "cannot hash the password");
		goto done;
	}
	int rc = auth_user_create(req->srv->store, name, hash, &req->user_id);
	secure_zero(hash, sizeof(hash));
	if (rc == STORE_EXISTS) {
		ret = api_fail(req, 409, "username_taken",
			       "that username is taken");
		goto done;
	}
	if (rc != STORE_OK || issue_session(req) < 0) {
		ret =
		    api_fail(req, 500, "internal", "cannot create the account");
		goto done;
	}
	struct store_user u;
	if (auth_user_by_id(req->srv->store, req->user_id, &u) == STORE_OK) {
		snprintf(req->username, sizeof(req->username), "%s",
			 u.username);
		store_user_fini(&u);
	}
	log_info("account registered user=%s addr=%s", req->username,
		 req->addr);
	/* Everyone starts in the lobby, announced like any other join. */
	struct chat_user cu = {req->user_id, req->username};
	request_suspend(req);
	request_started(req, chat_join(req->srv->chat, &cu, "lobby",
				       request_chat_done, req));
	ret = MHD_YES;
done:
	secure_zero((char *)pw, pw ? strlen(pw) : 0);
	json_decref(in);
	return ret;
}

enum MHD_Result api_login(struct request *req)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	const char *name = api_field_str(req, in, "username", &ret);
	const char *pw = name ? api_field_str(req, in, "password", &ret) : NULL;
	if (!pw)
		goto done;
	size_t pwlen = json_string_length(json_object_get(in, "password"));
	struct auth *a = req->srv->auth;
	unsigned wait = auth_login_check(a, name, req->addr, now_ms());
	if (wait > 0) {
		char secs[16];
		snprintf(secs, sizeof(secs), "%u", wait);
		json_t *body = json_pack(
		    "{s:s, s:s, s:i}", "error", "too_many_attempts", "message",
		    "too many failed logins; try again later", "retry_after",
		    (int)wait);
		char *text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		struct MHD_Response *r =
		    MHD_create_response_from_buffer_with_free_callback(
			strlen(text), text, free);
		MHD_add_response_header(r, "Content-Type",
					"application/json; charset=utf-8");
		MHD_add_response_header(r, "Retry-After", secs);
		ret = reply_queue(req->conn, &req->log, 429, r);
		goto done;
	}
	struct store_user u;
	bool found = auth_username_valid(name) &&
		     auth_user_by_name(req->srv->store, name, &u) == STORE_OK;
	/* Unknown users cost the same time as wrong passwords. */
	int ok = auth_password_verify(a, found ? u.pwhash : NULL, pw, pwlen);
	if (ok < 0) {
		auth_login_failed(a, name, req->addr, now_ms());
		if (found)
			store_user_fini(&u);
		log_info("login failed user=%s addr=%s", name, req->addr);
		ret = api_fail(req, 401, "bad_credentials",
			       "wrong username or password");
		goto done;
	}
	auth_login_succeeded(a, name, req->addr);
	req->user_id = u.id;
	snprintf(req->username, sizeof(req->username), "%s", u.username);
	store_user_fini(&u);
	if (issue_session(req) < 0) {
		ret = api_fail(req, 500, "internal", "cannot create a session");
		goto done;
	}
	ret = answer_session(req, 200);
done:
	secure_zero((char *)pw, pw ? strlen(pw) : 0);
	json_decref(in);
	return ret;
}

enum MHD_Result api_logout(struct request *req)
{
	if (auth_session_delete(req->srv->store, req->token_hash) < 0)
		return api_fail(req, 500, "internal", "cannot end the session");
	char *text = xstrdup("{\"ok\":true}");
	struct MHD_Response *r =
	    MHD_create_response_from_buffer_with_free_callback(strlen(text),
							       text, free);
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	request_set_cookie(req, r, NULL);
	return reply_queue(req->conn, &req->log, 200, r);
}

enum MHD_Result api_me_get(struct request *req)
{
	struct store_user u;
	if (auth_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK)
		return api_fail(req, 500, "internal",
				"cannot read the account");
	json_t *body = user_json(&u);
	store_user_fini(&u);
	return reply_json(req->conn, &req->log, 200, body);
}

static bool display_name_valid(const char *s, size_t len)
{
	if (len == 0 || !utf8_valid(s, len) ||
	    utf8_count(s, len) > DISPLAY_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20)
			return false;
	return true;
}

/* PATCH /api/me {"display_name": S, "settings": {..}}: settings are merged
 * key by key (RFC 7386 at the top level): a null value removes a key. */
enum MHD_Result api_me_patch(struct request *req)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	struct store_user u = {0};
	char *settings = NULL;
	const char *key;
	json_t *v;
	json_object_foreach(in, key, v)
	{
		if (strcmp(key, "display_name") && strcmp(key, "settings")) {
			ret = api_fail(
			    req, 422, "unknown_field",
			    "only display_name and settings can change");
			goto done;
		}
	}
	json_t *dn = json_object_get(in, "display_name");
	if (dn && (!json_is_string(dn) ||
		   !display_name_valid(json_string_value(dn),
				       json_string_length(dn)))) {
		ret = api_fail(
		    req, 422, "invalid_display_name",
		    "display_name is 1-64 characters, no control characters");
		goto done;
	}
	json_t *patch = json_object_get(in, "settings");
	if (patch && !json_is_object(patch)) {
		ret = api_fail(req, 422, "invalid_settings",
			       "settings must be a JSON object");
		goto done;
	}
	if (auth_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK) {
		ret = api_fail(req, 500, "internal", "cannot read the account");
		goto done;
	}
	if (patch) {
		json_t *cur =
		    json_loads(u.settings ? u.settings : "{}", 0, NULL);
		if (!json_is_object(cur)) {
			json_decref(cur);
			cur = json_object();
		}
		json_object_foreach(patch, key, v)
		{
			if (json_is_null(v))
				json_object_del(cur, key);
			else
				json_object_set(cur, key, v);
		}
		settings = json_dumps(cur, JSON_COMPACT);
		json_decref(cur);
		if (strlen(settings) > SETTINGS_MAX) {
			ret = api_fail(req, 422, "settings_too_large",
				       "settings are limited to 16384 bytes");
			goto done;
		}
	}
	if (auth_user_update(req->srv->store, req->user_id,
			     dn ? json_string_value(dn) : NULL,
			     settings) != STORE_OK) {
		ret =
		    api_fail(req, 500, "internal", "cannot update the account");
		goto done;
	}
	ret = api_me_get(req);
done:
	free(settings);
	store_user_fini(&u);
	json_decref(in);
	return ret;
}
