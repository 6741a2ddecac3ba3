/* evtype: the one table of event types. Each row says what a type is called
 * (on the wire and in the database), whether it is persistent (gets an id,
 * is stored and replayed) or ephemeral, who may send it, how a client's
 * input for it is validated, what the store does with it besides appending
 * the event (its store effect, from which the bus also derives its effect
 * on membership), whether its text is searchable, and what it adds to the
 * envelope. chat, the store's writer, the bus and the envelope builder read
 * this table; none of them switches on the type.
 *
 * Adding a type: a value in enum event_type, a row in evtype.c with its
 * validator (and envelope extra, if it has members beyond the common ones),
 * and a render function in the web client.
 *
 * It knows nothing above util: no rooms, no SQL, no bus. */
#ifndef NATTER_EVTYPE_H
#define NATTER_EVTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum event_type {
	EVENT_MESSAGE,	/* persistent: a chat message */
	EVENT_JOIN,	/* persistent: user joined room */
	EVENT_LEAVE,	/* persistent: user left room */
	EVENT_ROOM,	/* persistent: room created (its creator is a member) */
	EVENT_TYPING,	/* ephemeral: user is typing in room */
	EVENT_PRESENCE, /* ephemeral, to the user's peers: status changed */
	EVENT_SETTINGS, /* ephemeral, personal: the user's settings changed */
	EVENT_KICK,	/* persistent: a moderator removed a user from room */
	EVENT_BAN,	/* persistent: a moderator removed and banned a user */
	EVENT_MUTE,	/* ephemeral, personal: you are muted in a room */
	EVENT_DISABLED, /* ephemeral, personal: your account was disabled */
	EVENT_EDIT,	/* persistent: the author changed a message's text */
	EVENT_DELETE,	/* persistent: the author deleted a message */
	EVENT_DM,	/* persistent: a direct conversation opened */
	EVENT_INVITE,	/* ephemeral, personal: you were invited to a room */
	EVENT_READ,	/* ephemeral, personal: your read marker moved */
	EVENT_REACTION, /* persistent: a member added or removed a reaction */
	EVENT_PROFILE	/* ephemeral: a co-member's avatar changed */
};

#define EVTYPE_TEXT_MAX 4000	/* characters (code points) */
#define EVTYPE_CLIENT_ID_MAX 64 /* bytes */
#define EVTYPE_FILES_MAX 10	/* files one message carries */
#define EVTYPE_TOPIC_MAX 200	/* characters */
#define EVTYPE_REASON_MAX 200	/* characters */
#define EVTYPE_REACTIONS_MAX 20 /* distinct emoji on one message */
#define EVTYPE_EXCERPT_MAX 100	/* characters of a reply's quote */
#define EVTYPE_DM_USERS_MAX                                                    \
	8 /* people in a direct conversation, besides                          \
	     the one who opens it */

/* Who may send an event of the type. */
enum evtype_sender {
	EVTYPE_FROM_MEMBER, /* a member of the event's room */
	EVTYPE_FROM_USER,   /* any logged-in user */
	EVTYPE_FROM_SERVER, /* the server only: no command creates it */
	/* the room's moderators, its owner and server admins; the event acts
	 * on a subject, the user named by the command's "user" member, who
	 * must rank below the sender (chat checks) */
	EVTYPE_FROM_MODERATOR
};

/* What storing the event does besides appending it. The bus applies the
 * same column to its in-memory membership (evtype_membership). */
enum evtype_effect {
	EVTYPE_EFFECT_NONE,
	EVTYPE_EFFECT_MEMBER_ADD,     /* the sender joins the room */
	EVTYPE_EFFECT_MEMBER_REMOVE,  /* the sender leaves the room */
	EVTYPE_EFFECT_ROOM_CREATE,    /* a new room; its creator is a member */
	EVTYPE_EFFECT_SUBJECT_REMOVE, /* the subject leaves the room */
	/* the subject leaves the room (if a member) and may not join it again
	 * until unbanned; joining is refused meanwhile */
	EVTYPE_EFFECT_SUBJECT_BAN,
	/* The target message (target_id, of this room, by the sender, not
	 * deleted) takes the event's text and html and an "edited" time. */
	EVTYPE_EFFECT_EDIT,
	/* The target message (of this room, by the sender) loses its text
	 * and html everywhere the store keeps them: a tombstone. */
	EVTYPE_EFFECT_DELETE,
	/* The direct conversation of the sender and args "users" (names):
	 * created on first use with all of them as members (the others each
	 * get a join event of their own, right after this one), else the
	 * first event is answered as a duplicate. */
	EVTYPE_EFFECT_DM_OPEN,
	/* args "op" "add" or "remove" the sender's reaction args "emoji" to
	 * the target message (of this room, not deleted; at most
	 * EVTYPE_REACTIONS_MAX distinct emoji on it): a change appends the
	 * event, with the emoji's new count in args "count"; no change is
	 * answered with the target message as a duplicate. */
	EVTYPE_EFFECT_REACT
};

/* A validator's verdict. */
enum evtype_verdict {
	EVTYPE_VALID = 0,
	EVTYPE_INVALID = -1, /* malformed text, name, topic or client_id */
	EVTYPE_TOOLONG = -2, /* text longer than EVTYPE_TEXT_MAX */
	EVTYPE_BADEMOJI = -3 /* a reaction that is not one emoji */
};

/* What a client supplies for a new event; the server adds the id, sender,
 * room id and time. Every member may be NULL when the type has no use
 * for it. Borrowed. */
struct evtype_input {
	const char *room; /* room name as given */
	const char *text; /* len bytes, not necessarily NUL-terminated */
	size_t len;
	const char *client_id;
	const char *topic;
	/* A searchable type's text rendered to HTML (markdown.h), set by chat
	 * when the event is sent, never by a client; NUL-terminated, or NULL
	 * for none (the envelope then has no "html" member). */
	const char *html;
	/* The event this one refers to (an edit's or a delete's message), 0
	 * for none. */
	int64_t target_id;
	/* The command's whole JSON object, for a type whose members are its
	 * own (its validator and extra read them here); may be NULL. The
	 * store keeps a copy for the types that have an extra. */
	json_t *args;
	/* A searchable type's mentions: names listed in the envelope as
	 * "mentions" (a user's canonical name, or "room" for @room); none
	 * when nmentions is 0. */
	const char *const *mentions;
	size_t nmentions;
	/* A searchable type's reply quote: the JSON object text of the
	 * envelope's "reply_to" member ({"id","from","excerpt"} or with
	 * "deleted":true), built by the store, never by a client; NULL for
	 * none. The original's id is target_id. */
	const char *reply;
};

struct evtype {
	enum event_type type;
	const char *name; /* wire and database spelling; never changes */
	bool persistent;
	enum evtype_sender sender;
	/* NULL: any input is fine. */
	enum evtype_verdict (*validate)(const struct evtype_input *in);
	enum evtype_effect effect;
	/* The event carries the input's text (and its html, and client_id)
	 * as envelope members "text", "html" and "client_id", its text goes to
	 * the search index, and a retried client_id is answered with the first
	 * event. */
	bool searchable;
	/* Members the envelope adds after the common ones, or NULL for none:
	 * a new object (caller decrefs), NULL on failure. */
	json_t *(*extra)(const struct evtype_input *in);
	/* A personal event after which every transport ends the receiving
	 * connection (the session behind it is gone): WebSocket closes with
	 * 4001, SSE ends its stream, a waiting long-poll answers 401. */
	bool ends_session;
	/* The input's text is Markdown: chat renders it to in->html when the
	 * event is sent (markdown.h). */
	bool rendered;
	/* The event may carry files: args "files", ids of the sender's
	 * finished uploads, which chat turns into file objects (id, name,
	 * size, type, width, height) before the event is stored; the text
	 * may then be empty. The store records which room shares them. */
	bool files;
};

/* The row of t, or NULL for a value outside the table. */
const struct evtype *evtype_get(enum event_type t);
/* The type named name: 0, or -1 when no row has that name. */
int evtype_parse(const char *name, enum event_type *t);
/* A reaction command's direction from its args "op": 1 add ("react" or
 * "add"), 0 remove ("unreact" or "remove"), -1 neither. The WebSocket
 * frame's own "op" is the command's name, so both spellings are taken. */
int evtype_reaction_add(json_t *args);
/* Whether t ends the connection that receives it (ends_session). */
bool evtype_ends_session(enum event_type t);
/* Effect on the membership of the event's room of its subject (the user
 * it acts on, else its sender: event_subject), derived from the effect
 * column: +1 becomes a member, -1 stops being one, 0 neither. */
int evtype_membership(enum event_type t);

#endif
