/* request: one HTTP request as the http module and the API handlers see it.
 * http.c owns its lifecycle (created on the first callback, freed when
 * libmicrohttpd reports it complete) and implements the helpers below;
 * api.c implements the handlers. */
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

struct request {
	struct server *srv;
	struct MHD_Connection *conn;
	atomic_int *suspended; /* http's count of suspended requests */
	const char *method;    /* libmicrohttpd's, valid for the request */
	char *path;	       /* copy, for the access log */
	char addr[64];
	int64_t start_us;
	struct reply_log log;
	bool tls;

	struct buf body;
	bool body_too_big;

	/* authentication, filled by request_auth() */
	bool authed, via_cookie;
	int64_t user_id;
	char username[33];
	uint8_t token_hash[32];
	char token[64]; /* a token just issued (register/login); wiped */

	/* async commands (chat) */
	enum req_phase phase;
	struct chat_result result; /* result.ev is a reference we own */
	int step;	  /* handler-defined, for multi-step commands */
	char room[33];	  /* room a command was about */
	void *poll_state; /* longpoll's, for /poll */
};

/* Authenticate by Authorization: Bearer, else the session cookie. 0 when
 * authenticated (fills user_id, username), -1 when not. */
int request_auth(struct request *req);
/* The request body parsed as a JSON object; NULL after answering the client
 * with 415 (not JSON) or 400 (malformed). *answered says which. */
json_t *request_json(struct request *req, enum MHD_Result *answered);
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
/* Set the session cookie for token (or clear it when token is NULL). */
void request_set_cookie(struct request *req, struct MHD_Response *r,
			const char *token);
const char *request_arg(struct request *req, const char *name);

#endif
