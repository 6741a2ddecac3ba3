/* api_account: register, login, logout, and the requester's own account
 * (GET/PATCH /api/me). */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "core/auth.h"
#include "core/filestore.h"
#include "util/log.h"
#include "util/util.h"

#define DISPLAY_NAME_MAX 64 /* characters */
#define SETTINGS_MAX 16384  /* bytes of serialized settings */

static json_t *user_json(struct request *req, const struct store_user *u)
{
	char ts[32];
	format_ts(u->created_ms, ts);
	json_t *settings =
	    json_loads(u->settings ? u->settings : "{}", 0, NULL);
	if (!settings)
		settings = json_object();
	json_t *o = json_pack(
	    "{s:s, s:s, s:o, s:s, s:b, s:o}", "username", u->username,
	    "display_name", u->display_name ? u->display_name : u->username,
	    "settings", settings, "created", ts, "admin", u->admin, "avatar",
	    filestore_avatar_json(u->avatar));
	chat_presence_add(req->srv->chat, u->username, o, true);
	return o;
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
				 user_json(req, &u), "expires_in",
				 (json_int_t)req->srv->cfg->session_ttl_s);
	store_user_fini(&u);
	char cookie[REQUEST_COOKIE_MAX];
	request_cookie(req, req->token, cookie, sizeof(cookie));
	const struct reply_header h[] = {{"Set-Cookie", cookie}};
	enum MHD_Result ret =
	    reply_json_headers(req->conn, &req->log, status, body, h, 1);
	secure_zero(cookie, sizeof(cookie));
	return ret;
}

/* A refusal the client waits out: status, {"error","message",
 * "retry_after"} and Retry-After. */
static enum MHD_Result answer_retry(struct request *req, unsigned status,
				    const char *code, const char *msg,
				    unsigned wait)
{
	char secs[16];
	snprintf(secs, sizeof(secs), "%u", wait);
	json_t *body = json_pack("{s:s, s:s, s:i}", "error", code, "message",
				 msg, "retry_after", (int)wait);
	const struct reply_header h[] = {{"Retry-After", secs}};
	return reply_json_headers(req->conn, &req->log, status, body, h, 1);
}

static enum MHD_Result answer_hash_busy(struct request *req)
{
	return answer_retry(req, 503, "busy",
			    "too many password checks at once; try again", 1);
}

enum MHD_Result api_register(struct request *req)
{
	if (req->phase == REQ_READY) /* joined the lobby (or it is gone) */
		return answer_session(req, 201);

	/* Before anything is parsed or hashed. Loopback is exempt unless
	 * configured: behind a local reverse proxy it is every client. */
	const char *ad = req->addr;
	bool loopback = strncmp(ad, "127.", 4) == 0 || strcmp(ad, "::1") == 0 ||
			strncmp(ad, "::ffff:127.", 11) == 0;
	unsigned wait = 0;
	if (!loopback || req->srv->cfg->register_limit_loopback)
		wait = auth_register_check(req->srv->auth, ad, now_ms());
	if (wait > 0) {
		log_info("registration refused reason=rate addr=%s", req->addr);
		return answer_retry(req, 429, "rate_limited",
				    "too many new accounts from this address; "
				    "try again later",
				    wait);
	}
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
		ret = api_fail(
		    req, 422, "invalid_username",
		    "usernames are 1-32 letters, digits, _ . or -, not only "
		    "dots");
		goto done;
	}
	if (!auth_password_valid(pw, pwlen)) {
		ret = api_fail(
		    req, 422, "invalid_password",
		    "passwords are 8 characters to 1024 bytes of UTF-8");
		goto done;
	}
	char hash[AUTH_HASH_MAX];
	int hrc = auth_password_hash(req->srv->auth, pw, pwlen, hash);
	if (hrc == AUTH_EBUSY) {
		ret = answer_hash_busy(req);
		goto done;
	}
	if (hrc < 0) {
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
		chat_user_added(req->srv->chat, req->user_id, u.username);
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
		ret = answer_retry(req, 429, "too_many_attempts",
				   "too many failed logins; try again later",
				   wait);
		goto done;
	}
	struct store_user u;
	bool found = auth_username_valid(name) &&
		     auth_user_by_name(req->srv->store, name, &u) == STORE_OK;
	/* Unknown users cost the same time as wrong passwords. */
	int ok = auth_password_verify(a, found ? u.pwhash : NULL, pw, pwlen);
	if (ok == AUTH_EBUSY) {
		if (found)
			store_user_fini(&u);
		ret = answer_hash_busy(req);
		goto done;
	}
	if (ok < 0) {
		auth_login_failed(a, name, req->addr, now_ms());
		if (found)
			store_user_fini(&u);
		log_info("login failed user=%s addr=%s", name, req->addr);
		ret = api_fail(req, 401, "bad_credentials",
			       "wrong username or password");
		goto done;
	}
	auth_login_succeeded(a, name, req->addr, now_ms());
	if (u.disabled) {
		/* Said only to whoever knows the password. */
		log_info("login refused: account disabled user=%s addr=%s",
			 u.username, req->addr);
		ret = request_disabled(req, u.disabled_reason);
		store_user_fini(&u);
		goto done;
	}
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
	char cookie[REQUEST_COOKIE_MAX];
	request_cookie(req, NULL, cookie, sizeof(cookie));
	const struct reply_header h[] = {{"Set-Cookie", cookie}};
	return reply_json_headers(req->conn, &req->log, 200,
				  json_pack("{s:b}", "ok", 1), h, 1);
}

enum MHD_Result api_me_get(struct request *req)
{
	struct store_user u;
	if (auth_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK)
		return api_fail(req, 500, "internal",
				"cannot read the account");
	json_t *body = user_json(req, &u);
	store_user_fini(&u);
	return reply_json(req->conn, &req->log, 200, body);
}

/* The status part of PATCH /api/me: 0, or -1 answered in *ret. */
static int presence_patch(struct request *req, json_t *status, json_t *stext,
			  enum MHD_Result *ret)
{
	struct chat_user cu = {req->user_id, req->username};
	const char *what = NULL;
	const char *text = NULL;
	if (stext)
		text = json_is_string(stext) ? json_string_value(stext) : "";
	if (text && strlen(text) != json_string_length(stext) &&
	    json_is_string(stext))
		text = "\x01"; /* an embedded NUL: refused as a control */
	int rc = chat_presence_set(req->srv->chat, &cu,
				   status ? json_string_value(status) : NULL,
				   text, &what);
	if (rc == CHAT_EINVAL && what && strcmp(what, "status") == 0) {
		*ret = api_fail(req, 422, "invalid_status",
				"status is one of online, away, dnd");
		return -1;
	}
	if (rc == CHAT_EINVAL) {
		*ret = api_fail(req, 422, "invalid_status_text",
				"status_text is up to 100 characters, no "
				"control or invisible formatting characters");
		return -1;
	}
	if (rc != CHAT_OK) {
		*ret =
		    api_fail(req, 500, "internal", "cannot update the status");
		return -1;
	}
	return 0;
}

static bool display_name_valid(const char *s, size_t len)
{
	return len > 0 && text_visible_valid(s, len) &&
	       utf8_count(s, len) <= DISPLAY_NAME_MAX;
}

/* PATCH /api/me {"display_name": S, "settings": {..}, "status": S,
 * "status_text": S}: settings are merged key by key (RFC 7386 at the top
 * level): a null value removes a key. status is "online" (automatic),
 * "away" or "dnd"; status_text up to 100 characters, "" or null clears
 * it. Both are kept across restarts and published to whoever shares a
 * room with the user. */
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
		if (strcmp(key, "display_name") && strcmp(key, "settings") &&
		    strcmp(key, "status") && strcmp(key, "status_text")) {
			ret = api_fail(req, 422, "unknown_field",
				       "only display_name, settings, status "
				       "and status_text can change");
			goto done;
		}
	}
	json_t *status = json_object_get(in, "status");
	json_t *stext = json_object_get(in, "status_text");
	if (status && !json_is_string(status)) {
		ret = api_fail(req, 422, "invalid_status",
			       "status is one of online, away, dnd");
		goto done;
	}
	if (stext && !json_is_string(stext) && !json_is_null(stext)) {
		ret = api_fail(req, 422, "invalid_status_text",
			       "status_text is a string or null");
		goto done;
	}
	json_t *dn = json_object_get(in, "display_name");
	if (dn && (!json_is_string(dn) ||
		   !display_name_valid(json_string_value(dn),
				       json_string_length(dn)))) {
		ret = api_fail(
		    req, 422, "invalid_display_name",
		    "display_name is 1-64 characters, no control or invisible "
		    "formatting characters");
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
	if ((status || stext) && presence_patch(req, status, stext, &ret) < 0)
		goto done;
	if ((dn || patch) && auth_user_update(req->srv->store, req->user_id,
					      dn ? json_string_value(dn) : NULL,
					      settings) != STORE_OK) {
		ret =
		    api_fail(req, 500, "internal", "cannot update the account");
		goto done;
	}
	store_user_fini(&u);
	if (auth_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK) {
		ret = api_fail(req, 500, "internal", "cannot read the account");
		goto done;
	}
	json_t *body = user_json(req, &u);
	/* Every open tab and device of the user, on whichever transport,
	 * takes the change at once (this one included: it ignores its own
	 * changes in flight). */
	struct chat_user cu = {req->user_id, req->username};
	if ((dn || patch || status || stext) &&
	    chat_personal(req->srv->chat, &cu, EVENT_SETTINGS, body) != CHAT_OK)
		log_warn("settings push failed user=%s", req->username);
	ret = reply_json(req->conn, &req->log, 200, body);
done:
	free(settings);
	store_user_fini(&u);
	json_decref(in);
	return ret;
}

/* POST /api/admin/users/{user}/disable {"reason"} and .../enable: an
 * admin disables an account (its sessions and connections end, logging
 * in answers 403 disabled) or enables it again. */
static enum MHD_Result user_disable(struct request *req, const char *user,
				    bool disabled)
{
	enum MHD_Result ret = MHD_YES;
	json_t *in = NULL;
	const char *reason = NULL;
	if (disabled) {
		in = request_json(req, &ret);
		if (!in)
			return ret;
		json_t *r = json_object_get(in, "reason");
		size_t n = json_string_length(r);
		if (r && !json_is_null(r) &&
		    (!json_is_string(r) ||
		     utf8_count(json_string_value(r), n) > EVTYPE_REASON_MAX)) {
			ret = api_fail(req, 422, "invalid_field",
				       "'reason' must be a string of at most "
				       "200 characters");
			goto done;
		}
		reason = json_string_value(r);
	}
	struct chat_user cu = {req->user_id, req->username};
	char name[33] = "";
	int rc = chat_user_disable(req->srv->chat, &cu, user, disabled, reason,
				   name);
	if (rc == CHAT_EFORBIDDEN)
		ret = api_fail(req, 403, "forbidden", "admins only");
	else if (rc == CHAT_EINVAL)
		ret = api_fail(req, 422, "invalid",
			       "you cannot disable or enable your own account");
	else if (rc != CHAT_OK)
		ret = request_chat_error(req, rc);
	else
		ret = reply_json(req->conn, &req->log, 200,
				 json_pack("{s:s, s:b, s:s}", "user", name,
					   "disabled", disabled, "reason",
					   reason ? reason : ""));
done:
	json_decref(in);
	return ret;
}

enum MHD_Result api_admin_user_disable(struct request *req, const char *user)
{
	return user_disable(req, user, true);
}

enum MHD_Result api_admin_user_enable(struct request *req, const char *user)
{
	return user_disable(req, user, false);
}

/* GET /api/admin/audit?before=ID&limit=N: the audit log for admins, newest
 * first; next_before pages on to older rows while has_more. */
enum MHD_Result api_admin_audit(struct request *req)
{
	int64_t before = 0, limit = 50;
	const char *b = request_arg(req, "before"),
		   *l = request_arg(req, "limit");
	if ((b && (parse_i64(b, &before) < 0 || before < 1)) ||
	    (l && (parse_i64(l, &limit) < 0 || limit < 1 || limit > 200)))
		return api_fail(req, 400, "bad_parameter",
				"before must be a positive id, limit 1 to 200");
	struct chat_user cu = {req->user_id, req->username};
	struct store_audit *a = NULL;
	size_t n = 0;
	bool more = false;
	int rc = chat_audit_list(req->srv->chat, &cu, before, (unsigned)limit,
				 &a, &n, &more);
	if (rc == CHAT_EFORBIDDEN)
		return api_fail(req, 403, "forbidden", "admins only");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char ts[32];
		format_ts(a[i].ts_ms, ts);
		json_array_append_new(
		    arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
				   "id", (json_int_t)a[i].id, "ts", ts, "actor",
				   a[i].actor, "action", a[i].action, "user",
				   a[i].target, "room", a[i].room, "reason",
				   a[i].reason, "detail", a[i].detail));
	}
	json_t *body =
	    json_pack("{s:o, s:b}", "entries", arr, "has_more", more);
	if (more && n)
		json_object_set_new(body, "next_before",
				    json_integer(a[n - 1].id));
	store_audit_free(a, n);
	return reply_json(req->conn, &req->log, 200, body);
}
