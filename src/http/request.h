/* request: one HTTP request as the http module and the API handlers see it,
 * and the helpers the handlers share (request.c). http.c creates it on the
 * first callback and frees it when libmicrohttpd reports it complete; the
 * api_*.c files implement the handlers. The struct is open because every
 * handler reads its fields; only http.c and request.c write the ones above
 * "async commands". */
#ifndef NATTER_REQUEST_H
#define NATTER_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/chat.h"
#include "transport/reply.h"
#include "http/server.h"
#include "util/util.h"

#define SESSION_COOKIE "natter_session"

enum req_phase {
	REQ_NEW,     /* handler not run yet */
	REQ_WAITING, /* suspended, waiting for an async command */
	REQ_READY    /* async command finished: result holds the outcome */
};

struct http;

struct request {
	struct server *srv;
	struct http *http; /* the daemons' owner; http.c's business */
	struct MHD_Connection *conn;
	atomic_int *suspended; /* http's count of suspended requests */
	const char *method;    /* libmicrohttpd's, valid for the request */
	char *path;	       /* copy, for the access log */
	char addr[64];
	int64_t start_us;
	struct reply_log log;
	bool tls;

	struct buf body;
	/* A streamed body (a ROUTE_STREAM route): its handler ran before the
	 * body and set sink, which takes each piece as libmicrohttpd hands it
	 * over (never buffered in body); a negative return drops the rest
	 * (sink_err keeps it for the answer). sink_free runs exactly once,
	 * from request_free, also when the connection was cut mid-body. */
	bool streaming;
	int (*sink)(struct request *req, const char *data, size_t n);
	void (*sink_free)(struct request *req);
	void *sink_state;
	int sink_err;
	bool body_too_big;
	uint64_t body_dropped; /* of an oversized body, after its 413 */

	/* authentication, filled by request_auth() */
	bool authed, via_cookie;
	int64_t user_id;
	char username[33];
	uint8_t token_hash[32];
	char token[64]; /* a token just issued (register/login); wiped */
	/* request_auth found a session of a disabled account: why (UTF-8,
	 * at most 200 characters; "" when not said) */
	bool disabled;
	char disabled_reason[804];

	/* async commands (chat) */
	enum req_phase phase;
	struct chat_result result; /* result.ev is a reference we own */
	int step;	     /* handler-defined, for multi-step commands */
	char room[33];	     /* room a command was about */
	int64_t retry_after; /* CHAT_EMUTED: seconds, for the answer */
	void *poll_state;    /* longpoll's, for /poll */
	bool stream_slot;    /* holds a stream-cap slot (SSE, long-poll) */

	/* What the route's "{name}" segments matched, in order (http.c fills
	 * them before the handler runs): see request_param(). */
	char params[4][64];
	int nparams;
	/* the route row that answered (index + 1; 0: none), for the
	 * duration histograms; whether it came in on metrics-listen */
	unsigned route_idx;
	bool metrics_port;
};

/* A request on connection c (method and url are libmicrohttpd's, valid
 * for the request); suspended is the count request_suspend and the
 * resume keep. Caller frees with request_free, which drops a result's
 * event reference and wipes the body and any token. */
struct request *request_new(struct server *srv, struct MHD_Connection *c,
			    const char *method, const char *url,
			    atomic_int *suspended);
void request_free(struct request *req);
/* Microseconds since request_new, for the access log. */
int64_t request_elapsed_us(const struct request *req);

/* The longest token request_credential accepts (tokens natter issues are
 * shorter; anything longer is not looked up). */
#define REQUEST_TOKEN_MAX 128
/* Which token a request presents, from its Authorization header and the
 * value of its session cookie (either may be NULL): a "Bearer " header's
 * token (the scheme in any case) when there is one, whatever the cookie
 * says, else the cookie's. *via_cookie says which. NULL when the chosen
 * one is empty or longer than REQUEST_TOKEN_MAX. Pure: no I/O, no state;
 * the result points into one of the arguments. */
const char *request_credential(const char *authorization, const char *cookie,
			       bool *via_cookie);
/* Authenticate by Authorization: Bearer, else the session cookie. 0 when
 * authenticated (fills user_id, username), -1 when not (with disabled and
 * disabled_reason set when the session is a disabled account's), -2 when
 * the store cannot be reached to tell (answer 503 store_unavailable). */
int request_auth(struct request *req);
/* 403 {"error":"disabled","message":…,"reason":…}: the account is
 * disabled (reason: why, "" when not said). */
enum MHD_Result request_disabled(struct request *req, const char *reason);
/* The request body parsed as a JSON object; NULL after answering the client
 * with 415 (not JSON) or 400 (malformed). *answered says which. */
json_t *request_json(struct request *req, enum MHD_Result *answered);
/* The body as application/x-www-form-urlencoded: every field as a JSON
 * string (the last of repeated names wins; bytes are not checked for
 * UTF-8). NULL after answering 400 bad_form when a name or value holds a
 * NUL (raw or %00), which would otherwise cut it short. */
json_t *request_form(struct request *req, enum MHD_Result *answered);
/* Suspend the connection before queueing an async chat command; the
 * command's done callback must be request_chat_done with req as arg. */
void request_suspend(struct request *req);
/* After request_suspend: rc is what the chat command returned. If it
 * failed synchronously, record the error and resume at once. */
void request_started(struct request *req, int rc);
void request_chat_done(void *arg, const struct chat_result *res);
/* Answer a chat error (status and code from chat_err_*). */
/* The HTTP status of a chat error (enum chat_err); 500 for others. */
unsigned request_chat_status(int err);
enum MHD_Result request_chat_error(struct request *req, int err);
/* The Set-Cookie value that sets the session cookie to token (or clears it
 * when token is NULL) into out, which REQUEST_COOKIE_MAX bytes hold; it
 * holds a secret: wipe it after use. */
#define REQUEST_COOKIE_MAX 256
void request_cookie(struct request *req, const char *token, char *out,
		    size_t len);
/* A query argument or a request header; NULL when absent. Valid for the
 * request. */
const char *request_arg(struct request *req, const char *name);
/* What the route's i-th "{name}" segment matched (0 is the first, also
 * handed to the handler as its argument); NULL past the last. */
const char *request_param(struct request *req, int i);
const char *request_header(struct request *req, const char *name);
/* Authenticate by the query's ?token= (EventSource and WebSocket clients
 * cannot set headers): 0 when authenticated, -1 when not, -2 as
 * request_auth. */
int request_auth_query(struct request *req);

#endif
