/* chat: the commands every transport shares (send, create room, join,
 * leave, typing: any type of the event-type table through chat_event) and
 * the API's reads (rooms, members, history, search) with their membership
 * checks. It validates a command, has store persist it, and the store's
 * commit hook hands each stored event to the bus, before the command's
 * done callback (the ack) runs. So every event a client has seen is in
 * history and every acknowledged message survives a crash. Transports and
 * the API call chat; they never talk SQL. */
#ifndef NATTER_CHAT_H
#define NATTER_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "model/event.h"
#include "store/store.h"
#include "util/metrics.h"

#define CHAT_TEXT_MAX EVTYPE_TEXT_MAX		/* characters (code points) */
#define CHAT_CLIENT_ID_MAX EVTYPE_CLIENT_ID_MAX /* bytes */
#define CHAT_TOPIC_MAX EVTYPE_TOPIC_MAX

/* What went wrong; each transport maps it to its own answer (http keeps
 * the HTTP status of each next to request_chat_error). */
enum chat_err {
	CHAT_OK = 0,
	CHAT_EINVAL = -1,     /* invalid: bad text, name, client_id */
	CHAT_ETOOLONG = -2,   /* text_too_long */
	CHAT_ENOROOM = -3,    /* no_such_room */
	CHAT_ENOTMEMBER = -4, /* not_a_member */
	CHAT_EEXISTS = -5,    /* room_exists / already_member */
	CHAT_EINTERNAL = -6,  /* internal */
	CHAT_ECLOSED = -7,    /* shutting down */
	CHAT_EFULL = -8	      /* storage_full: the disk is full, retry later */
};

/* Seconds a client waits before retrying after CHAT_EFULL. */
#define CHAT_FULL_RETRY_S 30

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

/* Loads every room into chat's room cache (so resolving a name never reads
 * SQLite) and becomes the store's commit hook. metrics may be NULL.
 * NULL if the rooms cannot be read. */
struct chat *chat_new(struct store *st, struct bus *bus,
		      struct metrics *metrics);
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
/* Any event type from a client, as the event-type table says: validated by
 * its row, the room resolved (unless the type creates it), the sender rule
 * checked, then stored (persistent: done runs later) or published at once
 * (ephemeral: done does not run). The commands above are this. */
int chat_event(struct chat *c, const struct chat_user *u, enum event_type type,
	       const struct evtype_input *in, chat_done_fn done, void *arg);

/* --- reads for the API: membership is checked here ---------------------- */

/* Every room (see store_rooms_list): CHAT_OK or CHAT_EINTERNAL. */
int chat_rooms_list(struct chat *c, const struct chat_user *u,
		    struct store_room **out, size_t *n);
/* A room the user must belong to: CHAT_OK with its id and canonical name,
 * CHAT_ENOROOM, CHAT_ENOTMEMBER. Never reads SQLite. */
int chat_room_member(struct chat *c, const struct chat_user *u,
		     const char *room, int64_t *id, char name[33]);
/* The members of room (u must be one), canonical name in name. */
int chat_room_members(struct chat *c, const struct chat_user *u,
		      const char *room, char name[33],
		      struct store_member **out, size_t *n);
/* A history page of room (u must be a member): see store_history. The
 * events are shared references (caller unrefs each, frees the array). */
int chat_history(struct chat *c, const struct chat_user *u, const char *room,
		 char name[33], int64_t before, int64_t after, unsigned limit,
		 struct event ***out, size_t *n, bool *more);
/* Search the rooms u belongs to: see store_search. */
int chat_search(struct chat *c, const struct chat_user *u, const char *q,
		unsigned limit, struct event ***out, size_t *n);

/* The store answered "disk full" (CHAT_EFULL) to the last write, and no
 * write has committed since: the condition /healthz and /metrics report.
 * Any thread. A CHAT_EFULL is logged at error level, at most once a
 * minute with the count of refusals since the last line. */
bool chat_storage_full(struct chat *c);

/* Error code string ("no_such_room") and human text. */
const char *chat_err_code(int err);
const char *chat_err_message(int err);

#endif
