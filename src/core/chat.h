/* chat: the commands every transport shares (send, create room, join,
 * leave, typing). It validates a command, has store persist it, and the
 * store's commit hook hands each stored event to the bus, before the
 * command's done callback (the ack) runs. So every event a client has seen
 * is in history and every acknowledged message survives a crash.
 * Transports call chat; they never talk SQL. */
#ifndef NATTER_CHAT_H
#define NATTER_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "model/event.h"
#include "store/store.h"

#define CHAT_TEXT_MAX 4000    /* characters (code points) */
#define CHAT_CLIENT_ID_MAX 64 /* bytes */
#define CHAT_TOPIC_MAX 200

enum chat_err {
	CHAT_OK = 0,
	CHAT_EINVAL = -1,     /* 422 invalid: bad text, name, client_id */
	CHAT_ETOOLONG = -2,   /* 422 text_too_long */
	CHAT_ENOROOM = -3,    /* 404 no_such_room */
	CHAT_ENOTMEMBER = -4, /* 403 not_a_member */
	CHAT_EEXISTS = -5,    /* 409 room_exists / already_member */
	CHAT_EINTERNAL = -6,  /* 500 */
	CHAT_ECLOSED = -7     /* 503 shutting down */
};

struct chat;

struct chat_user {
	int64_t id;
	const char *username;
};

/* The result of a command. ev is borrowed (event_ref() to keep). */
struct chat_result {
	int err;	  /* enum chat_err */
	struct event *ev; /* the stored event when err == CHAT_OK */
	bool duplicate;	  /* a retried client_id: ev is the first event */
};
/* Runs once per accepted command, on the store's writer thread. */
typedef void (*chat_done_fn)(void *arg, const struct chat_result *res);

struct chat *chat_new(struct store *st, struct bus *bus);
void chat_free(struct chat *c);

/* Each command returns CHAT_OK once it is queued (done will run later), or
 * an error right away (done will not run). room is a room name. */
int chat_send(struct chat *c, const struct chat_user *u, const char *room,
	      const char *text, size_t len, const char *client_id,
	      chat_done_fn done, void *arg);
int chat_room_create(struct chat *c, const struct chat_user *u,
		     const char *room, const char *topic, chat_done_fn done,
		     void *arg);
int chat_join(struct chat *c, const struct chat_user *u, const char *room,
	      chat_done_fn done, void *arg);
int chat_leave(struct chat *c, const struct chat_user *u, const char *room,
	       chat_done_fn done, void *arg);
/* Ephemeral: publishes a typing event to the room's live subscribers. */
int chat_typing(struct chat *c, const struct chat_user *u, const char *room);

/* Error code string ("no_such_room"), HTTP status and human text. */
const char *chat_err_code(int err);
unsigned chat_err_status(int err);
const char *chat_err_message(int err);

#endif
