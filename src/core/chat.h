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
#include "model/markdown.h"
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
	CHAT_EFORBIDDEN = -8, /* forbidden: the user's role does not allow it */
	CHAT_ENOUSER = -9,    /* no_such_user */
	CHAT_EBANNED = -10,   /* banned: joining a room that banned the user */
	CHAT_ENOTBANNED = -11, /* not_banned: lifting a ban that is not there */
	CHAT_ENOSUBJECT = -12, /* not_a_member: the user acted on is not one */
	CHAT_EMUTED = -13,     /* muted: the sender is muted in the room */
	CHAT_ENOTMUTED = -14,  /* not_muted: lifting a mute that is not there */
	CHAT_ENOMSG = -15,     /* no_such_message (in that room) */
	CHAT_ENOTAUTHOR = -16, /* not_author: someone else's message */
	CHAT_EDELETED = -17,   /* message_deleted: it cannot be edited */
	CHAT_EFIXED = -18,     /* dm_fixed: a direct conversation's people */
	CHAT_EFULL = -19,      /* storage_full: the disk is full, retry later */
	CHAT_EBADREPLY = -20,  /* bad_reply_to: not a message of that room */
	CHAT_ETOOMANY = -21,   /* too_many_reactions on that message */
	CHAT_ELIMIT = -22,     /* room_limit: rooms-per-day reached */
	CHAT_EUNAVAILABLE = -23, /* store_unavailable: the database server
				    cannot be reached, retry shortly */
	CHAT_ENOFILE = -24,  /* no_such_file: not a finished upload of yours */
	CHAT_EBADEMOJI = -25 /* bad_emoji: a reaction that is not one emoji */
};

/* Seconds a client waits before retrying after CHAT_EFULL. */
#define CHAT_FULL_RETRY_S 30
/* Seconds a client waits before retrying after CHAT_EUNAVAILABLE. */
#define CHAT_UNAVAILABLE_RETRY_S 2

/* Who may see and join a room. A private room and a direct conversation
 * are, to anyone who is not a member, a room that does not exist
 * (CHAT_ENOROOM: never "not a member"). */
enum chat_room_kind {
	CHAT_ROOM_PUBLIC,  /* listed to all, anyone joins */
	CHAT_ROOM_PRIVATE, /* listed to members, joined by invitation */
	CHAT_ROOM_DM	   /* a fixed set of people, named dm-<id> */
};

#define CHAT_MUTE_MAX_S (366 * 86400) /* the longest mute: a year */

struct chat;

struct chat_user {
	int64_t id;
	const char *username;
};

/* The result of a command. ev is borrowed (event_ref() to keep). */
struct chat_result {
	int err;	  /* enum chat_err */
	struct event *ev; /* the stored event when err == CHAT_OK */
	/* a retried client_id: ev is the first event; an edit that changes
	 * nothing or a delete of a deleted message: ev is the event that
	 * made the message what it is */
	bool duplicate;
};
/* Runs once per accepted command, on the store's writer thread. */
typedef void (*chat_done_fn)(void *arg, const struct chat_result *res);

/* Loads every room into chat's room cache (so resolving a name never reads
 * SQLite) and becomes the store's commit hook. metrics may be NULL.
 * NULL if the rooms cannot be read. */
struct chat *chat_new(struct store *st, struct bus *bus,
		      struct metrics *metrics);
void chat_free(struct chat *c);
/* The resolver the Markdown renderer asks about each `@name` in a message
 * (markdown.h); NULL (the default) leaves every @name as text. Set it
 * before the first send; arg is borrowed for chat's lifetime. */
void chat_set_mention(struct chat *c, markdown_mention_fn fn, void *arg);
struct filestore;
/* Where a message's "files" (ids of the sender's finished uploads) are
 * looked up (core/filestore.h); without one a message carries no files.
 * Set before the first send; borrowed for chat's lifetime. */
void chat_set_files(struct chat *c, struct filestore *fs);

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
 * its row (a searchable type's text is then rendered to the envelope's
 * "html" here, on the caller's thread, never on the store's writer), the room
 * resolved (unless the type creates it), the sender rule checked, then stored
 * (persistent: done runs later) or published at once (ephemeral: done does not
 * run). The commands above are this. */
int chat_event(struct chat *c, const struct chat_user *u, enum event_type type,
	       const struct evtype_input *in, chat_done_fn done, void *arg);
/* Server-originated and personal: publishes an ephemeral event of type
 * (a row with sender EVTYPE_FROM_SERVER) built from args (borrowed; its
 * row's extra reads it) to every live connection of u on every transport
 * (room BUS_PERSONAL). CHAT_OK, CHAT_EINVAL for a persistent or
 * client-sent type, CHAT_EINTERNAL. */
/* A profile change of u (args {"avatar": URL or null}): an ephemeral
 * "profile" event in every room u is a member of (co-members see it live;
 * a reload reads the user objects), and a personal one for u's own
 * connections. CHAT_OK or CHAT_EINTERNAL. */
int chat_profile(struct chat *c, const struct chat_user *u, json_t *args);
int chat_personal(struct chat *c, const struct chat_user *u,
		  enum event_type type, json_t *args);

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

/* --- presence (chat_presence.c) ------------------------------------------ */

/* Load what the store kept, have the bus report every connection, and
 * start the presence thread (core/presence.h). grace_ms, away_ms and
 * coalesce_ms as in struct presence_config. 0 or -1. */
int chat_presence_start(struct chat *c, int64_t grace_ms, int64_t away_ms,
			int64_t coalesce_ms);
/* Stop it, keeping last_seen of who is connected: before the store
 * closes. Safe when never started. */
void chat_presence_stop(struct chat *c);
/* u did something (a client's activity report). CHAT_OK. */
int chat_activity(struct chat *c, const struct chat_user *u);
/* u chooses status ("online", "away", "dnd"; NULL keeps it) and status
 * text (NULL keeps it, "" clears it): stored, then published to whoever
 * shares a room with u. CHAT_OK, CHAT_EINVAL (*what says "status" or
 * "status_text"), CHAT_EINTERNAL. */
int chat_presence_set(struct chat *c, const struct chat_user *u,
		      const char *status, const char *text, const char **what);
/* The presence of the user called name as the members "status",
 * "status_text" (null for none) and "last_seen" (ISO time or null), added
 * to obj (offline and never seen for an unknown name); own: also
 * "status_choice", what the user chose ("online" meaning automatic). */
void chat_presence_add(struct chat *c, const char *name, json_t *obj, bool own);
/* The presence of the user called name, for u: a new object {"user",
 * "status", "status_text", "last_seen", "seq"} in *out. u sees itself and
 * the users it shares a room (or direct conversation) with. CHAT_OK,
 * CHAT_ENOUSER (no such user), CHAT_EFORBIDDEN (no room shared). */
int chat_presence_of(struct chat *c, const struct chat_user *u,
		     const char *name, json_t **out);
/* Everyone u shares a room with, and u: a new array of such objects. */
json_t *chat_presence_peers(struct chat *c, const struct chat_user *u);
/* Presence events published so far (for /metrics). */
uint64_t chat_presence_published(struct chat *c);

/* --- the cluster's ephemeral channel (chat_cluster.c) --------------------- */

struct auth;
struct limit;
/* With bus = redis://... (bus_url; NULL: nothing to do, CHAT_OK): typing
 * and presence reach the other nodes and theirs reach this one's
 * subscribers (core/cluster.h, core/link_redis.h), and the login throttles
 * of a and the rates of l (either may be NULL) are shared with theirs.
 * After chat_presence_start, before any thread uses a or l. CHAT_OK, or
 * CHAT_EINVAL with the reason in err. */
int chat_cluster_start(struct chat *c, const char *bus_url, struct auth *a,
		       struct limit *l, struct metrics *m, char *err,
		       size_t errlen);
/* Stop its threads: before chat_presence_stop and the loops. Safe when
 * never started. */
void chat_cluster_stop(struct chat *c);
/* "redis" with *ok whether it is up now; NULL without a bus. */
const char *chat_cluster_bus(struct chat *c, bool *ok);

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
 * events are references (caller unrefs each, frees the array): the stored
 * envelopes, shared, except that a message with reactions carries them
 * for u as "reactions": [{"emoji","count","me"}] (a copy per page). */
int chat_history(struct chat *c, const struct chat_user *u, const char *room,
		 char name[33], int64_t before, int64_t after, unsigned limit,
		 struct event ***out, size_t *n, bool *more);
/* The reactions on message msg of room for u (a member), as history
 * carries them: CHAT_OK with a new array in *out (caller decrefs),
 * CHAT_ENOROOM, CHAT_ENOTMEMBER, CHAT_EINTERNAL. */
int chat_reactions(struct chat *c, const struct chat_user *u, const char *room,
		   int64_t msg, json_t **out);
/* Search the rooms u belongs to: see store_search. */
int chat_search(struct chat *c, const struct chat_user *u, const char *q,
		int64_t before, unsigned limit, struct event ***out, size_t *n,
		bool *more);

/* --- roles -----------------------------------------------------------------
 */

/* rooms-per-day: how many rooms and direct conversations one user may
 * create in any 24 hours (0: any number; the default until set). */
void chat_set_rooms_per_day(struct chat *c, unsigned n);
/* Whether u may create one more now: CHAT_OK, or CHAT_ELIMIT with the
 * seconds until the oldest of the day's creations is 24 hours old in
 * *retry_after_s (CHAT_EINTERNAL on a store error). Opening a direct
 * conversation counts, even one that exists already (a refusal is
 * decided before the store looks it up). */
int chat_room_quota(struct chat *c, const struct chat_user *u,
		    int64_t *retry_after_s);

/* For admins: accounts by name (store_users_search). CHAT_OK (caller
 * frees with store_users_free), CHAT_EFORBIDDEN, CHAT_EINTERNAL. */
int chat_admin_users(struct chat *c, const struct chat_user *u, const char *q,
		     const char *after, unsigned limit, struct store_user **out,
		     size_t *n, bool *more);
/* An admin makes target (a user name) a server admin, or no longer one,
 * in the audit log as grant_admin / revoke_admin. CHAT_OK (the canonical
 * name in target_out), CHAT_EFORBIDDEN, CHAT_ENOUSER, CHAT_EINVAL (an
 * admin's own rights: another admin takes them), CHAT_EINTERNAL. */
int chat_admin_grant(struct chat *c, const struct chat_user *u,
		     const char *target, bool admin, char target_out[33]);

/* Whether user_id is a server admin (false when unknown). From memory
 * (core/roles.h), never SQLite: any thread, event loops included. */
bool chat_is_admin(struct chat *c, int64_t user_id);
/* Whether user_id may moderate room_id (remove, ban, mute members, delete
 * any message there): a server admin, the room's owner or one of its
 * moderators, while a member. From memory (the role cache and the bus's
 * membership): any thread, event loops included. */
bool chat_can_moderate(struct chat *c, int64_t user_id, int64_t room_id);
/* Re-read the server's admins from the store if the last read is over a
 * second old, so that natterctl's grant-admin and revoke-admin reach a
 * running server within a second. Reads the store: never call it on an
 * event loop (the stats sampler thread calls it once a second). */
void chat_admins_refresh(struct chat *c);
/* Name target (a user name) moderator of room, or no longer one (on
 * false): only the room's owner or a server admin may. CHAT_OK with the
 * target's canonical name in target_out and role in *role (enum
 * store_role), CHAT_ENOROOM, CHAT_ENOUSER, CHAT_EFORBIDDEN (u may not;
 * the lobby has no owner, so only admins name its moderators; the owner's
 * own role cannot change), CHAT_ENOTMEMBER (on: target is not a member),
 * CHAT_EINTERNAL. */
int chat_moderator_set(struct chat *c, const struct chat_user *u,
		       const char *room, const char *target, bool on,
		       char room_out[33], char target_out[33], int *role);

/* Ban target (a user name) from room while not a member (the ban of a
 * member is the "ban" command, an event that also removes them), or lift
 * a ban (on false). u must moderate room and outrank target (admins,
 * then the owner, then moderators; never oneself). CHAT_OK (canonical
 * names in room_out, target_out), CHAT_ENOROOM, CHAT_ENOUSER,
 * CHAT_EFORBIDDEN, CHAT_EEXISTS (on: target is a member: use the event),
 * CHAT_ENOTBANNED (off: no such ban), CHAT_EINTERNAL. */
int chat_ban_set(struct chat *c, const struct chat_user *u, const char *room,
		 const char *target, const char *reason, bool on,
		 char room_out[33], char target_out[33]);
/* Mute target (a user name) in room for seconds (1..CHAT_MUTE_MAX_S), or
 * lift the mute (seconds 0): their sends there (any event a member sends:
 * messages, typing) are refused with CHAT_EMUTED meanwhile, nothing
 * stored. Member or not. The muted user's connections get an ephemeral
 * "mute" event (personal). u must moderate room and outrank target.
 * CHAT_OK with *until_ms (0: lifted), CHAT_ENOROOM, CHAT_ENOUSER,
 * CHAT_EFORBIDDEN, CHAT_EINVAL (seconds out of range), CHAT_ENOTMUTED
 * (lift: none running), CHAT_EINTERNAL. */
int chat_mute_set(struct chat *c, const struct chat_user *u, const char *room,
		  const char *target, int64_t seconds, const char *reason,
		  char room_out[33], char target_out[33], int64_t *until_ms);
/* Whole seconds (rounded up) left of u's mute in room, 0 if none: what a
 * CHAT_EMUTED answer says as retry_after. */
int64_t chat_mute_left(struct chat *c, const struct chat_user *u,
		       const char *room);
/* A server admin disables the account target (a user name), or enables it
 * again: disabling deletes its sessions and ends every live connection of
 * it on every transport at once (a personal "disabled" event, which ends
 * the connection that receives it). CHAT_OK (canonical name in
 * target_out), CHAT_EFORBIDDEN (u is no admin), CHAT_ENOUSER, CHAT_EINVAL
 * (target is u), CHAT_EINTERNAL. */
int chat_user_disable(struct chat *c, const struct chat_user *u,
		      const char *target, bool disabled, const char *reason,
		      char target_out[33]);
/* The audit log, for admins (see store_audit_list): CHAT_OK (caller frees
 * with store_audit_free), CHAT_EFORBIDDEN, CHAT_EINTERNAL. Every action
 * above that succeeds appends a row (a kick or a ban once it committed). */
int chat_audit_list(struct chat *c, const struct chat_user *u, int64_t before,
		    unsigned limit, struct store_audit **out, size_t *n,
		    bool *more);
/* The bans of room, for those who moderate it: CHAT_OK (caller frees with
 * store_bans_free), CHAT_ENOROOM, CHAT_EFORBIDDEN, CHAT_EINTERNAL. */
int chat_bans_list(struct chat *c, const struct chat_user *u, const char *room,
		   char name[33], struct store_ban **out, size_t *n);

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

/* The store answered "disk full" (CHAT_EFULL) to the last write, and no
 * write has committed since: the condition /healthz and /metrics report.
 * Any thread. A CHAT_EFULL is logged at error level, at most once a
 * minute with the count of refusals since the last line. */
bool chat_storage_full(struct chat *c);
/* The store's backend name ("sqlite", "postgresql") and, in *reachable,
 * whether its database can be reached now (for /healthz). Any thread. */
const char *chat_store_backend(struct chat *c, bool *reachable);

/* Error code string ("no_such_room") and human text. */
const char *chat_err_code(int err);
const char *chat_err_message(int err);

#endif
