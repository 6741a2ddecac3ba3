/* api_admin: the admin page's endpoints. GET /api/admin/stats?from=&to=
 * (the statistics, for curl users too: core/stats.c checks that the asker
 * is an admin and gathers the figures; here the range is parsed and the
 * answer worded), GET /api/admin/users?q=&after=&limit= (accounts by
 * name), PUT and DELETE /api/admin/users/{user}/admin (grant and revoke
 * server admin). Disabling accounts and the audit log are api_account's.
 *
 * from and to are unix seconds, a date (YYYY-MM-DD, UTC) or a time
 * (YYYY-MM-DDTHH:MM:SSZ). A date as "to" means the end of that day, so
 * from=2026-11-01&to=2026-11-30 is the whole of November. Without from:
 * seven days before to; without to: now. */
#define _GNU_SOURCE /* timegm */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http/api.h"
#include "http/server.h"

/* One end of the range in milliseconds: 0, or -1 when s is none of the
 * accepted forms. end: a bare date means the end of that day. */
static int range_end(const char *s, bool end, int64_t *ms)
{
	int64_t secs;
	if (parse_i64(s, &secs) == 0) {
		if (secs < 0 || secs > 253402300799LL) /* year 9999 */
			return -1;
		*ms = secs * 1000;
		return 0;
	}
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *rest = strptime(s, "%Y-%m-%d", &tm);
	if (!rest || strlen(s) < 10)
		return -1;
	bool date_only = *rest == '\0';
	if (!date_only) {
		rest = strptime(rest, "T%H:%M:%S", &tm);
		if (!rest || (strcmp(rest, "Z") && strcmp(rest, "")))
			return -1;
	}
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*ms = ((int64_t)t + (date_only && end ? 86400 : 0)) * 1000;
	return 0;
}

enum MHD_Result api_admin_stats(struct request *req)
{
	const char *f = request_arg(req, "from"), *t = request_arg(req, "to");
	int64_t from_ms, to_ms = now_ms();
	if ((t && range_end(t, true, &to_ms) < 0) ||
	    (f && range_end(f, false, &from_ms) < 0))
		return api_fail(req, 400, "bad_parameter",
				"from and to are unix seconds, YYYY-MM-DD or "
				"YYYY-MM-DDTHH:MM:SSZ (UTC)");
	if (!f)
		from_ms = to_ms - 7 * 86400 * 1000LL;
	if (to_ms <= from_ms || to_ms - from_ms > STATS_RANGE_MAX_S * 1000LL)
		return api_fail(req, 400, "bad_range",
				"from must be before to, at most 366 days "
				"apart");
	struct chat_user cu = {req->user_id, req->username};
	json_t *out = NULL;
	int rc = stats_query(req->srv->stats, &cu, from_ms, to_ms, &out);
	if (rc == CHAT_EFORBIDDEN)
		return api_fail(req, 403, "forbidden", "admins only");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	return reply_json(req->conn, &req->log, 200, out);
}

/* GET /api/admin/users?q=&after=&limit=: {"users":[...], "has_more",
 * "next_after"}. */
enum MHD_Result api_admin_users(struct request *req)
{
	const char *q = request_arg(req, "q"),
		   *after = request_arg(req, "after"),
		   *l = request_arg(req, "limit");
	int64_t limit = 50;
	if ((l && (parse_i64(l, &limit) < 0 || limit < 1 || limit > 200)) ||
	    (q && strlen(q) > 32) || (after && strlen(after) > 32))
		return api_fail(req, 400, "bad_parameter",
				"q and after are at most 32 characters, limit "
				"1 to 200");
	struct chat_user cu = {req->user_id, req->username};
	struct store_user *v = NULL;
	size_t n = 0;
	bool more = false;
	int rc = chat_admin_users(req->srv->chat, &cu, q, after,
				  (unsigned)limit, &v, &n, &more);
	if (rc == CHAT_EFORBIDDEN)
		return api_fail(req, 403, "forbidden", "admins only");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char ts[32];
		format_ts(v[i].created_ms, ts);
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "username",
				   v[i].username, "display_name",
				   v[i].display_name, "created", ts, "admin",
				   v[i].admin, "disabled", v[i].disabled,
				   "disabled_reason", v[i].disabled_reason));
	}
	json_t *body = json_pack("{s:o, s:b}", "users", arr, "has_more", more);
	if (more && n)
		json_object_set_new(body, "next_after",
				    json_string(v[n - 1].username));
	store_users_free(v, n);
	return reply_json(req->conn, &req->log, 200, body);
}

static enum MHD_Result admin_grant(struct request *req, const char *user,
				   bool admin)
{
	struct chat_user cu = {req->user_id, req->username};
	char name[33] = "";
	int rc = chat_admin_grant(req->srv->chat, &cu, user, admin, name);
	if (rc == CHAT_EFORBIDDEN)
		return api_fail(req, 403, "forbidden", "admins only");
	if (rc == CHAT_EINVAL)
		return api_fail(req, 422, "invalid",
				"you cannot change your own admin rights");
	if (rc != CHAT_OK)
		return request_chat_error(req, rc);
	return reply_json(
	    req->conn, &req->log, 200,
	    json_pack("{s:s, s:b}", "user", name, "admin", admin));
}

/* PUT /api/admin/users/{user}/admin: make a server admin. */
enum MHD_Result api_admin_grant(struct request *req, const char *user)
{
	return admin_grant(req, user, true);
}

/* DELETE /api/admin/users/{user}/admin: no longer one. */
enum MHD_Result api_admin_revoke(struct request *req, const char *user)
{
	return admin_grant(req, user, false);
}
