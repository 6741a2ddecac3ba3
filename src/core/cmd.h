/* cmd: the one table of client commands. Each row is a command name
 * ("send", "typing", "join", "leave", "room_create", "activity", "ping"), the
 * members of a JSON object it reads as its arguments, and its handler in chat.
 * A WebSocket frame {"op":NAME,...} and an HTTP command endpoint (its JSON or
 * form body, with path parameters such as the room merged in by the
 * caller) both dispatch through cmd_run, so a command is added once.
 *
 * It knows no transport: it reports what went wrong (an unknown name, a
 * missing or mistyped member, or a chat error) and each transport words
 * its own answer. */
#ifndef NATTER_CMD_H
#define NATTER_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/chat.h"
#include "core/limit.h"

/* cmd_run's own errors, besides enum chat_err. */
enum cmd_err {
	CMD_EUNKNOWN = -100, /* no command by that name */
	CMD_EARGS = -101,    /* a member is missing or not a string */
	CMD_ELIMITED = -102  /* over a rate limit (cmd_admit) */
};

/* What cmd_admit tells about a refusal. */
struct cmd_limited {
	enum limit_kind what; /* the bucket that was empty */
	unsigned retry_after; /* seconds until it has a token (>= 1) */
};

/* What cmd_run tells its caller besides the status. */
struct cmd_status {
	bool known;	   /* the name is a command (the rest is valid) */
	bool async;	   /* CHAT_OK and done will run (persistent event) */
	bool acked;	   /* the command ends in an ack or an error with the
			      client's client_id (persistent events) */
	bool pong;	   /* ping: the transport answers, chat is not asked */
	bool send;	   /* counts as a send (natter_sends_total) */
	const char *field; /* CMD_EARGS: the member at fault */
	const char *usage; /* CMD_EARGS: what the command needs, in words */
	int64_t retry_after; /* CHAT_EMUTED: seconds until the mute ends */
};

/* Only look: CHAT_OK if name is a command and args has what it needs,
 * else CMD_EUNKNOWN or CMD_EARGS (st->field, st->usage). For a caller that
 * must answer argument errors before it may start the command (an HTTP
 * request is suspended in between). */
int cmd_check(const char *name, json_t *args, struct cmd_status *st);
/* Run the command called name with the members of args (a JSON object,
 * borrowed; strings are copied before this returns). Returns CHAT_OK,
 * a chat_err from chat, CMD_EUNKNOWN or CMD_EARGS; *st says more. done
 * runs later exactly when st->async. */
int cmd_run(struct chat *c, const struct chat_user *u, const char *name,
	    json_t *args, chat_done_fn done, void *arg, struct cmd_status *st);

/* Before a command runs (and for a frame that is not even a command: name
 * NULL or unknown): take its tokens from l, the user's buckets. Every
 * command costs one of LIMIT_ALL; a send one of LIMIT_SEND too, typing one
 * of LIMIT_TYPING. CHAT_OK, or CMD_ELIMITED with *out filled: the caller
 * answers rate_limited and runs nothing. l NULL: no limits. */
int cmd_admit(struct limit *l, const struct chat_user *u, const char *name,
	      int64_t now_ms, struct cmd_limited *out);

#endif
