/* chat_internal: what chat.c and moderation.c share (the chat struct, its
 * room cache and running mutes, and the few helpers moderation calls).
 * Internal to core's chat: no other file includes it; the interface is
 * core/chat.h. */
#ifndef NATTER_CORE_CHAT_INTERNAL_H
#define NATTER_CORE_CHAT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/chat.h"
#include "core/cluster.h"
#include "core/link.h"
#include "core/link_redis.h"
#include "core/roles.h"
#include "core/presence.h"
#include "core/userdir.h"
#include "util/imap.h"

/* Every room, by name: loaded at start, then each new room added by the
 * commit hook when its room-creating event commits (before anyone is told
 * of it), so resolving a name never reads SQLite on the caller's thread
 * (an event loop, for a WebSocket). Rooms are never deleted or renamed, so
 * an entry never changes and never goes away; the table only grows, and
 * that is fine: it holds one entry per room that exists. Keys are the
 * names in lower case, as the store compares them (names are ASCII). */
struct room_entry {
	char key[33]; /* "": empty */
	int64_t id;
	char name[33]; /* canonical spelling */
	enum chat_room_kind kind;
};

/* A running mute: (room, user) muted until until_ms. */
struct mute {
	int64_t room, user, until_ms;
};

struct chat {
	struct store *store;
	struct bus *bus;
	struct link *link; /* committed events to the bus (link.h) */
	struct metrics *metrics;
	/* who @name may mention: a resolver set by chat_set_mention, else
	 * NULL: the user directory, members of the room only (chat_mention) */
	markdown_mention_fn mention;
	void *mention_arg;
	bool user_words;	   /* the store tells of every account change */
	struct userdir *users;	   /* every account, for mentions */
	struct filestore *files;   /* a message's files; may be NULL */
	struct presence *presence; /* chat_presence.c; NULL until started */
	/* owners, moderators and admins (roles.h): loaded at start, kept
	 * current by the commit hook and chat_moderator_set, the admins
	 * re-read by chat_admins_refresh */
	struct roles *roles;
	atomic_int_fast64_t admins_read_ms; /* mono_ms of the last read */
	atomic_bool full;		    /* chat_storage_full */
	atomic_int_fast64_t full_logged;    /* mono_ms of the last log line */
	atomic_uint_fast64_t full_refused;  /* since that line */
	pthread_mutex_t room_mu;
	struct room_entry *rooms; /* room_cap slots, a power of two */
	size_t room_cap, nrooms;
	/* Running mutes, checked on every send: few at any time, so an array
	 * scanned under mute_mu; nmutes is read without it first, so that a
	 * server with no mute pays one atomic load per send. Expired entries
	 * are dropped as they are met. */
	pthread_mutex_t mute_mu;
	struct mute *mutes;
	size_t mute_cap;
	_Atomic size_t nmutes;
	unsigned rooms_per_day; /* chat_set_rooms_per_day; 0: no limit */
	/* the cluster's ephemeral channel (chat_cluster.c); NULL: none */
	struct link_redis *bus_link;
	struct cluster_peers *peers;
	int64_t node_id;	  /* random at start, > 0 */
	atomic_bool cluster_poke; /* a connection came: tell the others */
	int64_t cluster_beat_ms;  /* the last set sent (the link's thread) */
	/* the link's publisher thread only: what the last beat said of each
	 * user (chat_cluster.c's state_hash), its number, beats since the
	 * last whole set */
	struct imap cluster_sent;
	int64_t cluster_seq;
	unsigned cluster_beats;
	atomic_bool cluster_full; /* another node asked for the whole set */
	int64_t limits_sent_ms;	  /* the last "l" (mono_ms; publisher) */
	struct auth *auth;	  /* throttles shared with the other nodes */
	struct limit *limit;	  /* rates shared with the other nodes */
};

/* Whether actor may act on subject in room_id (remove, ban, mute): actor
 * moderates the room and outranks subject. CHAT_OK, CHAT_EFORBIDDEN,
 * CHAT_EINTERNAL. */
int may_act_on(struct chat *c, int64_t room_id, int64_t actor, int64_t subject);

/* A room by name, whatever its kind (moderation and admin calls, which
 * decide by role, not membership). */
int resolve_room(struct chat *c, const char *room, int64_t *id, char name[33]);

/* Set (until_ms > 0) or clear the mute of (room, user) in the cache. */
void mute_put(struct chat *c, int64_t room, int64_t user, int64_t until_ms);

/* The subject of a moderation command (args "user"), resolved: CHAT_OK
 * with its id and canonical name, CHAT_ENOUSER, CHAT_EINTERNAL. */
int subject_resolve(struct chat *c, const char *user, int64_t *id,
		    char name[33]);

/* Append to the audit log; a failure is logged, the action stands. */
void audit(struct chat *c, const char *actor, const char *action,
	   const char *target, const char *room, const char *reason,
	   const char *detail);

/* user_id's role in room_id (enum store_role) from memory: none unless
 * a member (the bus), then owner, moderator or member (the role cache). */
int role_of(struct chat *c, int64_t room_id, int64_t user_id);

/* Load the role cache (chat_new): 0 or -1. */
int roles_load(struct chat *c);

/* Milliseconds left of user's mute in room, 0 when not muted. */
int64_t mute_left(struct chat *c, int64_t room, int64_t user);

/* The store's user hook (store_set_user_hook): an account registered on
 * any node joins the directory; one disabled ends its connections here. */
void chat_user_word(void *arg, char kind, int64_t id, const char *name);

/* Whether u already has the direct conversation with exactly the people
 * in args "users" (moderation.c; asked only when the room quota is spent:
 * reopening creates nothing). */
bool chat_dm_exists(struct chat *c, const struct chat_user *u,
		    const json_t *args);

/* chat_cluster.c: tell the other nodes of an ephemeral room event of
 * this node (json: its envelope), of a change in who is connected here,
 * of user's new choice. Nothing without a bus. */
void chat_cluster_event(struct chat *c, int type, int64_t room, int64_t user,
			const char *json, size_t len);
void chat_cluster_poke(struct chat *c);
void chat_cluster_choice(struct chat *c, int64_t user,
			 enum presence_status chosen, const char *text,
			 int64_t chosen_ms);

#endif
