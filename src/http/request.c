/* request: one HTTP request as http.c and the API handlers see it, and the
 * helpers every handler shares: query arguments and headers,
 * authentication (bearer token, session cookie, ?token=), the JSON or form
 * body, the session cookie, and the suspend/resume dance of an async chat
 * command; and its lifecycle (request_new, request_free). It does not route,
 * check CSRF or Origin, or answer anything but the errors its helpers document:
 * http.c does that.
 *
 * Threads: a request is touched by one libmicrohttpd worker at a time. The
 * only other thread is the store's writer, which runs request_chat_done
 * while the connection is suspended (req->phase == REQ_WAITING) and
 * resumes it last; the worker reads req->result only after the resume. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "core/auth.h"
#include "http/request.h"

const char *request_arg(struct request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
					   name);
}

const char *request_param(struct request *req, int i)
{
	return i >= 0 && i < req->nparams ? req->params[i] : NULL;
}

static const char *header(struct request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *request_credential(const char *authorization, const char *cookie,
			       bool *via_cookie)
{
	const char *t = NULL;
	*via_cookie = false;
	if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
		/* A Bearer header decides alone: a wrong one is not rescued
		 * by a cookie (it says which credentials the client meant). */
		t = authorization + 7;
	} else if (cookie) {
		t = cookie;
		*via_cookie = true;
	}
	if (!t)
		return NULL;
	size_t len = strnlen(t, REQUEST_TOKEN_MAX + 1);
	if (len == 0 || len > REQUEST_TOKEN_MAX)
		return NULL;
	return t;
}

static int auth_token(struct request *req, const char *token)
{
	size_t len = strnlen(token, REQUEST_TOKEN_MAX + 1);
	if (len == 0 || len > REQUEST_TOKEN_MAX)
		return -1;
	auth_token_hash(token, len, req->token_hash);
	int64_t uid;
	char name[33];
	int rc = auth_session_user(req->srv->store, req->token_hash, now_ms(),
				   &uid, name, req->disabled_reason,
				   sizeof(req->disabled_reason));
	if (rc == STORE_UNAVAILABLE)
		return -2; /* not the client's fault: 503, not 401 */
	if (rc == STORE_DISABLED)
		req->disabled = true;
	if (rc != STORE_OK)
		return -1;
	req->user_id = uid;
	snprintf(req->username, sizeof(req->username), "%s", name);
	req->authed = true;
	return 0;
}

int request_auth(struct request *req)
{
	bool via_cookie;
	const char *t =
	    request_credential(header(req, MHD_HTTP_HEADER_AUTHORIZATION),
			       MHD_lookup_connection_value(
				   req->conn, MHD_COOKIE_KIND, SESSION_COOKIE),
			       &via_cookie);
	if (!t)
		return -1;
	int rc = auth_token(req, t);
	if (rc < 0)
		return rc;
	req->via_cookie = via_cookie;
	return 0;
}

enum MHD_Result request_disabled(struct request *req, const char *reason)
{
	json_t *body =
	    json_pack("{s:s, s:s, s:s}", "error", "disabled", "message",
		      "this account has been disabled by an admin", "reason",
		      reason ? reason : "");
	return reply_json(req->conn, &req->log, 403, body);
}

json_t *request_json(struct request *req, enum MHD_Result *answered)
{
	const char *ctype = header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ctype || strncasecmp(ctype, "application/json", 16) ||
	    (ctype[16] && ctype[16] != ';' && ctype[16] != ' ')) {
		*answered = reply_error(req->conn, &req->log, 415,
					"unsupported_media_type",
					"send Content-Type: application/json");
		return NULL;
	}
	json_error_t jerr;
	json_t *obj = json_loadb(req->body.data ? req->body.data : "",
				 req->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(obj)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "the body must be a JSON object%s%s",
			 obj ? "" : ": ", obj ? "" : jerr.text);
		json_decref(obj);
		*answered =
		    reply_error(req->conn, &req->log, 400, "bad_json", msg);
		return NULL;
	}
	return obj;
}

void request_suspend(struct request *req)
{
	req->phase = REQ_WAITING;
	atomic_fetch_add(req->suspended, 1);
	MHD_suspend_connection(req->conn);
}

void request_chat_done(void *arg, const struct chat_result *res)
{
	struct request *req = arg;
	req->result = *res;
	if (res->ev)
		event_ref(res->ev);
	req->phase = REQ_READY;
	MHD_resume_connection(req->conn);
}

void request_started(struct request *req, int rc)
{
	if (rc == CHAT_OK)
		return;
	struct chat_result res = {.err = rc};
	request_chat_done(req, &res);
}

/* The HTTP status of each chat error: chat knows no HTTP. */
static const struct {
	int err;
	unsigned status;
} chat_statuses[] = {
    {CHAT_OK, 200},	    {CHAT_EINVAL, 422},	    {CHAT_ETOOLONG, 422},
    {CHAT_ENOROOM, 404},    {CHAT_ENOTMEMBER, 403}, {CHAT_EEXISTS, 409},
    {CHAT_EINTERNAL, 500},  {CHAT_ECLOSED, 503},    {CHAT_EFORBIDDEN, 403},
    {CHAT_ENOUSER, 404},    {CHAT_EBANNED, 403},    {CHAT_ENOTBANNED, 404},
    {CHAT_ENOSUBJECT, 422}, {CHAT_EMUTED, 403},	    {CHAT_ENOTMUTED, 404},
    {CHAT_ENOMSG, 404},	    {CHAT_ENOTAUTHOR, 403}, {CHAT_EDELETED, 409},
    {CHAT_EFIXED, 409},	    {CHAT_EFULL, 507},	    {CHAT_EBADREPLY, 400},
    {CHAT_ETOOMANY, 409},   {CHAT_ELIMIT, 429},	    {CHAT_EUNAVAILABLE, 503},
    {CHAT_ENOFILE, 422},    {CHAT_EBADEMOJI, 400},
};

unsigned request_chat_status(int err)
{
	for (size_t i = 0; i < ARRAY_LEN(chat_statuses); i++)
		if (chat_statuses[i].err == err)
			return chat_statuses[i].status;
	return 500; /* anything else is an internal error */
}

enum MHD_Result request_chat_error(struct request *req, int err)
{
	if ((err == CHAT_EMUTED || err == CHAT_ELIMIT) &&
	    req->retry_after > 0) {
		char secs[24];
		snprintf(secs, sizeof(secs), "%lld",
			 (long long)req->retry_after);
		const struct reply_header h[] = {{"Retry-After", secs}};
		return reply_json_headers(
		    req->conn, &req->log, request_chat_status(err),
		    json_pack("{s:s, s:s, s:I}", "error", chat_err_code(err),
			      "message", chat_err_message(err), "retry_after",
			      (json_int_t)req->retry_after),
		    h, 1);
	}
	if (err == CHAT_EFULL) /* the one a client waits out */
		return reply_retry(req->conn, &req->log, 507,
				   chat_err_code(err), chat_err_message(err),
				   CHAT_FULL_RETRY_S);
	if (err == CHAT_EUNAVAILABLE) /* and this one, briefly */
		return reply_retry(req->conn, &req->log, 503,
				   chat_err_code(err), chat_err_message(err),
				   CHAT_UNAVAILABLE_RETRY_S);
	return reply_error(req->conn, &req->log, request_chat_status(err),
			   chat_err_code(err), chat_err_message(err));
}

void request_cookie(struct request *req, const char *token, char *out,
		    size_t len)
{
	if (token)
		snprintf(out, len,
			 SESSION_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; "
					"SameSite=Lax%s",
			 token, (long long)req->srv->cfg->session_ttl_s,
			 req->tls ? "; Secure" : "");
	else
		snprintf(out, len,
			 SESSION_COOKIE "=; Path=/; Max-Age=0; HttpOnly; "
					"SameSite=Lax%s",
			 req->tls ? "; Secure" : "");
}

/* Decode %XX and '+' in place: the decoded length (it may hold NULs). */
static size_t form_decode(char *s)
{
	char *start = s, *o = s;
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
	return (size_t)(o - start);
}

json_t *request_form(struct request *req, enum MHD_Result *answered)
{
	json_t *obj = json_object();
	char *copy =
	    xstrndup(req->body.data ? req->body.data : "", req->body.len);
	size_t clen = strlen(copy);
	char *save = NULL;
	bool nul = memchr(req->body.data ? req->body.data : "", '\0',
			  req->body.len) != NULL;
	for (char *pair = strtok_r(copy, "&", &save); pair && !nul;
	     pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		if (!eq)
			continue;
		*eq = '\0';
		size_t klen = form_decode(pair), vlen = form_decode(eq + 1);
		/* A NUL would silently cut the field short; JSON bodies refuse
		 * \u0000 (400 bad_json) and so do forms. */
		if (strlen(pair) != klen || strlen(eq + 1) != vlen) {
			nul = true;
			break;
		}
		json_object_set_new(obj, pair,
				    json_stringn_nocheck(eq + 1, vlen));
	}
	secure_zero(copy, clen);
	free(copy);
	if (!nul)
		return obj;
	json_decref(obj);
	*answered = reply_error(req->conn, &req->log, 400, "bad_form",
				"form fields may not contain NUL (%00)");
	return NULL;
}

const char *request_header(struct request *req, const char *name)
{
	return header(req, name);
}

int request_auth_query(struct request *req)
{
	const char *token = request_arg(req, "token");
	return token ? auth_token(req, token) : -1;
}

/* --- lifecycle ------------------------------------------------------------ */

static int64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void client_addr(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	out[0] = '\0';
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  out, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)len);
	else
		snprintf(out, len, "local");
}

struct request *request_new(struct server *srv, struct MHD_Connection *c,
			    const char *method, const char *url,
			    atomic_int *suspended)
{
	struct request *req = xcalloc(1, sizeof(*req));
	req->srv = srv;
	req->conn = c;
	req->suspended = suspended;
	req->method = method;
	req->path = xstrdup(url);
	req->start_us = now_us();
	client_addr(c, req->addr, sizeof(req->addr));
	buf_init(&req->body);
	return req;
}

int64_t request_elapsed_us(const struct request *req)
{
	return now_us() - req->start_us;
}

void request_free(struct request *req)
{
	if (!req)
		return;
	event_unref(req->result.ev);
	if (req->sink_free)
		req->sink_free(req);
	if (req->body.data)
		secure_zero(req->body.data, req->body.len);
	buf_fini(&req->body);
	secure_zero(req->token, sizeof(req->token));
	free(req->path);
	free(req);
}
