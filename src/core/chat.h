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
	CHAT_ENOUSER = -8,    /* no_such_user */
	CHAT_EFIXED = -9      /* dm_fixed: a direct conversation's people */
};

/* Who may see and join a room. A private room and a direct conversation
 * are, to anyone who is not a member, a room that does not exist
 * (CHAT_ENOROOM: never "not a member"). */
enum chat_room_kind {
	CHAT_ROOM_PUBLIC,  /* listed to all, anyone joins */
	CHAT_ROOM_PRIVATE, /* listed to members, joined by invitation */
	CHAT_ROOM_DM	   /* a fixed set of people, named dm-<id> */
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

/* A direct conversation is opened through chat_event with EVENT_DM (the
 * dm_open command): args "users", 1..8 names besides u. */
/* u, a member of room, invites user: stored (until user joins, which a
 * private room otherwise refuses) and told to user's live connections as a
 * personal ephemeral invite event. Synchronous (writes the store: not for
 * an event loop). The room's and user's canonical names go to
 * name and canon. CHAT_OK, CHAT_ENOROOM, CHAT_ENOTMEMBER (a public room),
 * CHAT_EFIXED (a direct conversation), CHAT_ENOUSER, CHAT_EEXISTS (already
 * a member), CHAT_EINTERNAL. */
int chat_invite(struct chat *c, const struct chat_user *u, const char *room,
		const char *user, char name[33], char canon[33]);
/* Move u's read marker in room (u must be a member) forward to event id:
 * the marker after the call in *now (an older id changes nothing). When it
 * moved, u's live connections (every device, every transport) get a
 * personal ephemeral read event {"type":"read","room":R,"read":N}.
 * Synchronous (writes the store: not for an event loop). CHAT_OK,
 * CHAT_ENOROOM, CHAT_ENOTMEMBER, CHAT_EINVAL (id < 1 or newer than the
 * newest event), CHAT_EINTERNAL. */
int chat_read(struct chat *c, const struct chat_user *u, const char *room,
	      int64_t id, char name[33], int64_t *now);
/* u's open invitations (see store_invites_list). */
int chat_invites_list(struct chat *c, const struct chat_user *u,
		      struct store_invite **out, size_t *n);

/* --- reads for the API: membership is checked here ---------------------- */

/* The rooms u may see (see store_rooms_list): CHAT_OK or CHAT_EINTERNAL. */
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

/* --- users and mentions ----------------------------------------------------
 */

/* A new account (after registration): into the user directory, so that
 * it can be mentioned at once. */
void chat_user_added(struct chat *c, int64_t id, const char *username);
/* The user directory's answer for name (any case): 0 with the id and the
 * canonical name (canon may be NULL), or -1. Never reads SQLite. */
int chat_user_find(struct chat *c, const char *name, size_t len, int64_t *id,
		   char canon[33]);

/* The mentions of one message in one room, collected while its text is
 * rendered: pass chat_mention as markdown_render's mention callback with
 * a struct chat_mentions as its arg. `@name` is a mention when name is a
 * member of the room (any case; the canonical name is returned, so the
 * HTML shows that); `@room` mentions every member (returned as "room").
 * Anything else stays text. Code spans and blocks never mention (markdown
 * does not call back for them). */
#define CHAT_MENTIONS_MAX 32 /* distinct names per message; more are text */
struct chat_mentions {
	struct chat *chat;
	int64_t room_id;
	bool room; /* @room was used */
	size_t n;
	int64_t ids[CHAT_MENTIONS_MAX];
	char names[CHAT_MENTIONS_MAX][33];
};
void chat_mentions_init(struct chat_mentions *m, struct chat *c,
			int64_t room_id);
/* A markdown_mention_fn (model/markdown.h): arg is a struct
 * chat_mentions. The string returned stays valid as long as *arg. */
const char *chat_mention(void *arg, const char *name, size_t len);

/* Error code string ("no_such_room") and human text. */
const char *chat_err_code(int err);
const char *chat_err_message(int err);

#endif
