/* api: the JSON API handlers. Each validates its input, calls store, auth
 * or chat, and answers JSON. They never see sockets or transports; http.c
 * routed and (where needed) authenticated the request before calling. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define DISPLAY_NAME_MAX 64 /* characters */
#define SETTINGS_MAX 16384  /* bytes of serialized settings */
#define SEARCH_QUERY_MAX 256
#define HISTORY_LIMIT_DEFAULT 50
#define HISTORY_LIMIT_MAX 200

static enum MHD_Result fail(struct request *req, unsigned status,
			    const char *code, const char *message)
{
	return reply_error(req->conn, &req->log, status, code, message);
}

static json_t *event_to_json(struct event *ev)
{
	size_t len;
	const char *text = event_json(ev, &len);
	return json_loadb(text, len, 0, NULL);
}

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

/* A required string member: NULL (and answered 422) when absent. */
static const char *field_str(struct request *req, json_t *obj, const char *name,
			     enum MHD_Result *ret)
{
	json_t *v = json_object_get(obj, name);
	if (json_is_string(v))
		return json_string_value(v);
	char msg[96];
	snprintf(msg, sizeof(msg), "'%s' must be a string", name);
	*ret = fail(req, 422, "invalid_field", msg);
	return NULL;
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
	    store_session_create(req->srv->store, hash, req->user_id, expires);
	secure_zero(hash, sizeof(hash));
	return rc == STORE_OK ? 0 : -1;
}

/* 200/201 with {"token","user"} and the session cookie. */
static enum MHD_Result answer_session(struct request *req, unsigned status)
{
	struct store_user u;
	if (store_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK)
		return fail(req, 500, "internal", "cannot read the account");
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
	const char *name = field_str(req, in, "username", &ret);
	const char *pw = name ? field_str(req, in, "password", &ret) : NULL;
	if (!pw)
		goto done;
	size_t pwlen = json_string_length(json_object_get(in, "password"));
	if (!auth_username_valid(name)) {
		ret = fail(req, 422, "invalid_username",
			   "usernames are 1-32 letters, digits, _ . or -");
		goto done;
	}
	if (!auth_password_valid(pw, pwlen)) {
		ret = fail(req, 422, "invalid_password",
			   "passwords are 8 characters to 1024 bytes of UTF-8");
		goto done;
	}
	char hash[AUTH_HASH_MAX];
	if (auth_password_hash(req->srv->auth, pw, pwlen, hash) < 0) {
		ret = fail(req, 500, "internal", "cannot hash the password");
		goto done;
	}
	int rc = store_user_create(req->srv->store, name, hash, &req->user_id);
	secure_zero(hash, sizeof(hash));
	if (rc == STORE_EXISTS) {
		ret =
		    fail(req, 409, "username_taken", "that username is taken");
		goto done;
	}
	if (rc != STORE_OK || issue_session(req) < 0) {
		ret = fail(req, 500, "internal", "cannot create the account");
		goto done;
	}
	struct store_user u;
	if (store_user_by_id(req->srv->store, req->user_id, &u) == STORE_OK) {
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
	const char *name = field_str(req, in, "username", &ret);
	const char *pw = name ? field_str(req, in, "password", &ret) : NULL;
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
		     store_user_by_name(req->srv->store, name, &u) == STORE_OK;
	/* Unknown users cost the same time as wrong passwords. */
	int ok = auth_password_verify(a, found ? u.pwhash : NULL, pw, pwlen);
	if (ok < 0) {
		auth_login_failed(a, name, req->addr, now_ms());
		if (found)
			store_user_fini(&u);
		log_info("login failed user=%s addr=%s", name, req->addr);
		ret = fail(req, 401, "bad_credentials",
			   "wrong username or password");
		goto done;
	}
	auth_login_succeeded(a, name, req->addr);
	req->user_id = u.id;
	snprintf(req->username, sizeof(req->username), "%s", u.username);
	store_user_fini(&u);
	if (issue_session(req) < 0) {
		ret = fail(req, 500, "internal", "cannot create a session");
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
	if (store_session_delete(req->srv->store, req->token_hash) < 0)
		return fail(req, 500, "internal", "cannot end the session");
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
	if (store_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK)
		return fail(req, 500, "internal", "cannot read the account");
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
			ret = fail(req, 422, "unknown_field",
				   "only display_name and settings can change");
			goto done;
		}
	}
	json_t *dn = json_object_get(in, "display_name");
	if (dn && (!json_is_string(dn) ||
		   !display_name_valid(json_string_value(dn),
				       json_string_length(dn)))) {
		ret = fail(
		    req, 422, "invalid_display_name",
		    "display_name is 1-64 characters, no control characters");
		goto done;
	}
	json_t *patch = json_object_get(in, "settings");
	if (patch && !json_is_object(patch)) {
		ret = fail(req, 422, "invalid_settings",
			   "settings must be a JSON object");
		goto done;
	}
	if (store_user_by_id(req->srv->store, req->user_id, &u) != STORE_OK) {
		ret = fail(req, 500, "internal", "cannot read the account");
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
			ret = fail(req, 422, "settings_too_large",
				   "settings are limited to 16384 bytes");
			goto done;
		}
	}
	if (store_user_update(req->srv->store, req->user_id,
			      dn ? json_string_value(dn) : NULL,
			      settings) != STORE_OK) {
		ret = fail(req, 500, "internal", "cannot update the account");
		goto done;
	}
	ret = api_me_get(req);
done:
	free(settings);
	store_user_fini(&u);
	json_decref(in);
	return ret;
}

enum MHD_Result api_rooms_list(struct request *req)
{
	json_t *rooms = store_rooms_list(req->srv->store, req->user_id);
	if (!rooms)
		return fail(req, 500, "internal", "cannot list rooms");
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:o}", "rooms", rooms));
}

/* Second half of every async chat command: map its result to an answer. */
static enum MHD_Result answer_event(struct request *req, unsigned status,
				    const char *exists_code,
				    const char *exists_message)
{
	const struct chat_result *res = &req->result;
	if (res->err == CHAT_EEXISTS && exists_code)
		return fail(req, 409, exists_code, exists_message);
	if (res->err != CHAT_OK)
		return request_chat_error(req, res->err);
	json_t *ev = event_to_json(res->ev);
	json_t *body = json_pack("{s:o}", "event", ev ? ev : json_null());
	if (res->duplicate) {
		json_object_set_new(body, "duplicate", json_true());
		status = 200;
	}
	return reply_json(req->conn, &req->log, status, body);
}

enum MHD_Result api_rooms_create(struct request *req)
{
	if (req->phase == REQ_READY)
		return answer_event(req, 201, "room_exists",
				    "a room by that name exists");
	enum MHD_Result ret = MHD_YES;
	json_t *in = request_json(req, &ret);
	if (!in)
		return ret;
	const char *name = field_str(req, in, "name", &ret);
	json_t *topic = json_object_get(in, "topic");
	if (!name)
		goto done;
	if (topic && !json_is_string(topic) && !json_is_null(topic)) {
		ret =
		    fail(req, 422, "invalid_field", "'topic' must be a string");
		goto done;
	}
	if (!name_valid(name)) {
		ret = fail(req, 422, "invalid_room_name",
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
		return answer_event(req, 200, "already_member",
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
		return answer_event(req, 200, NULL, NULL);
	struct chat_user cu = {req->user_id, req->username};
	request_suspend(req);
	request_started(
	    req, chat_leave(req->srv->chat, &cu, room, request_chat_done, req));
	return MHD_YES;
}

/* Resolve a room the requester must belong to: 0, or -1 after answering. */
static int member_room(struct request *req, const char *room, int64_t *id,
		       char name[33], enum MHD_Result *ret)
{
	int rc = name_valid(room)
		     ? store_room_by_name(req->srv->store, room, id, name)
		     : STORE_NOTFOUND;
	if (rc == STORE_NOTFOUND) {
		*ret = request_chat_error(req, CHAT_ENOROOM);
		return -1;
	}
	if (rc != STORE_OK) {
		*ret = fail(req, 500, "internal", "cannot read the room");
		return -1;
	}
	int m = store_is_member(req->srv->store, *id, req->user_id);
	if (m != 1) {
		*ret = m < 0
			   ? fail(req, 500, "internal", "cannot read the room")
			   : request_chat_error(req, CHAT_ENOTMEMBER);
		return -1;
	}
	return 0;
}

enum MHD_Result api_room_members(struct request *req, const char *room)
{
	enum MHD_Result ret;
	int64_t id;
	char name[33];
	if (member_room(req, room, &id, name, &ret) < 0)
		return ret;
	json_t *members = store_room_members(req->srv->store, id);
	if (!members)
		return fail(req, 500, "internal", "cannot list members");
	return reply_json(
	    req->conn, &req->log, 200,
	    json_pack("{s:s, s:o}", "room", name, "members", members));
}

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
		*ret = fail(req, 400, "bad_parameter", msg);
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
		return fail(req, 400, "bad_parameter",
			    "give before or after, not both");
	if (limit < 1 || limit > HISTORY_LIMIT_MAX)
		return fail(req, 400, "bad_parameter",
			    "limit must be between 1 and 200");
	if (before == 0)
		return reply_json(req->conn, &req->log, 200,
				  json_pack("{s:s, s:[], s:b}", "room", room,
					    "events", "has_more", 0));
	int64_t id;
	char name[33];
	if (member_room(req, room, &id, name, &ret) < 0)
		return ret;
	bool more = false;
	json_t *events = store_history(req->srv->store, id, before, after,
				       (unsigned)limit, &more);
	if (!events)
		return fail(req, 500, "internal", "cannot read history");
	return reply_json(req->conn, &req->log, 200,
			  json_pack("{s:s, s:o, s:b}", "room", name, "events",
				    events, "has_more", more));
}

/* Decode %XX and '+' in place. */
static void form_decode(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%' && s[1] && s[2]) {
			char hex[3] = {s[1], s[2], 0};
			char *end;
			long v = strtol(hex, &end, 16);
			if (*end) {
				*o++ = *s;
				continue;
			}
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* application/x-www-form-urlencoded: text and client_id, as a JSON object. */
static json_t *form_fields(const char *body, size_t len)
{
	json_t *obj = json_object();
	char *copy = xstrndup(body, len);
	char *save = NULL;
	for (char *pair = strtok_r(copy, "&", &save); pair;
	     pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		if (!eq)
			continue;
		*eq = '\0';
		form_decode(pair);
		form_decode(eq + 1);
		if (!strcmp(pair, "text") || !strcmp(pair, "client_id"))
			json_object_set_new(
			    obj, pair,
			    json_stringn_nocheck(eq + 1, strlen(eq + 1)));
	}
	free(copy);
	return obj;
}

enum MHD_Result api_send(struct request *req, const char *room)
{
	if (req->phase == REQ_READY) {
		if (req->result.err == CHAT_OK)
			metrics_inc(req->srv->metrics.acks);
		return answer_event(req, 201, NULL, NULL);
	}
	metrics_inc(req->srv->metrics.sends);
	enum MHD_Result ret = MHD_YES;
	const char *ctype = MHD_lookup_connection_value(
	    req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	json_t *in;
	if (ctype &&
	    !strncasecmp(ctype, "application/x-www-form-urlencoded", 33)) {
		in = form_fields(req->body.data ? req->body.data : "",
				 req->body.len);
	} else {
		in = request_json(req, &ret);
		if (!in)
			return ret;
	}
	json_t *text = json_object_get(in, "text");
	json_t *cid = json_object_get(in, "client_id");
	if (!json_is_string(text)) {
		ret =
		    fail(req, 422, "invalid_field", "'text' must be a string");
		goto done;
	}
	if (cid && !json_is_string(cid) && !json_is_null(cid)) {
		ret = fail(req, 422, "invalid_field",
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
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	return reply_queue(req->conn, &req->log, 204, r);
}

enum MHD_Result api_search(struct request *req)
{
	const char *q = request_arg(req, "q");
	if (!q || !*q)
		return fail(req, 400, "bad_parameter", "'q' is required");
	if (strlen(q) > SEARCH_QUERY_MAX || !utf8_valid(q, strlen(q)))
		return fail(req, 400, "bad_parameter",
			    "'q' must be valid UTF-8 of at most 256 bytes");
	int64_t limit = 50;
	enum MHD_Result ret;
	if (arg_i64(req, "limit", &limit, &ret) < 0)
		return ret;
	if (limit < 1 || limit > HISTORY_LIMIT_MAX)
		return fail(req, 400, "bad_parameter",
			    "limit must be between 1 and 200");
	json_t *results =
	    store_search(req->srv->store, req->user_id, q, (unsigned)limit);
	if (!results)
		return fail(req, 500, "internal", "search failed");
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
		ret = fail(req, 422, "invalid_field",
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
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	ret = reply_queue(req->conn, &req->log, 204, resp);
done:
	json_decref(in);
	return ret;
}
