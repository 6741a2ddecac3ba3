/* roles: who holds rights where, in memory, so that a rights check (may
 * this user moderate this room, who outranks whom) never reads SQLite on
 * the caller's thread, which for a WebSocket's kick, ban or delete is an
 * event loop.
 *
 * It holds three things: the server's admins, each room's owner (its
 * creator; never changes), and each room's moderators. It does not know
 * membership (the bus does): a role counts only while its holder is a
 * member, which the caller checks. chat loads it at start
 * (store_roles_each) and keeps it current: a new room names its owner, a
 * moderator named or revoked is set here after the store committed it, a
 * moderator who leaves the room (or is removed) stops being one, as the
 * store's trigger says; the admin set is replaced as a whole
 * (roles_admins_replace) when chat re-reads it off the loops.
 *
 * Any thread may call anything; one mutex guards it all. */
#ifndef NATTER_CORE_ROLES_H
#define NATTER_CORE_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum roles_room_role {
	ROLES_NONE = 0,	     /* neither owner nor moderator */
	ROLES_MODERATOR = 2, /* the values of enum store_role */
	ROLES_OWNER = 3
};

struct roles;

struct roles *roles_new(void);
void roles_free(struct roles *r); /* NULL is fine */

/* --- rooms --- */

/* user_id created room_id: its owner, for good. */
void roles_owner_set(struct roles *r, int64_t room_id, int64_t user_id);
/* user_id is a moderator of room_id (on), or no longer one. Naming the
 * owner moderator changes nothing. */
void roles_moderator_set(struct roles *r, int64_t room_id, int64_t user_id,
			 bool on);
/* user_id left room_id (or was removed): no longer its moderator. */
void roles_member_left(struct roles *r, int64_t room_id, int64_t user_id);
/* ROLES_OWNER, ROLES_MODERATOR or ROLES_NONE (membership not checked). */
enum roles_room_role roles_room(struct roles *r, int64_t room_id,
				int64_t user_id);

/* --- admins --- */

/* The admins are exactly ids[0..n) from now on. */
void roles_admins_replace(struct roles *r, const int64_t *ids, size_t n);
bool roles_is_admin(struct roles *r, int64_t user_id);

#endif
