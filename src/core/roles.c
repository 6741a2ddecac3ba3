/* roles: see roles.h. A chained hash of (room, user) -> owner or
 * moderator, and a small array of admin ids (servers have a handful),
 * under one mutex. Invariants:
 *   1. An entry exists only for a role above member: revoking a
 *      moderator, or a moderator leaving, frees its entry; an owner's
 *      entry is never freed (ownership outlives a leave and holds again
 *      on a rejoin, as rooms.created_by does).
 *   2. An owner's entry is never turned into a moderator's (nor back). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/roles.h"
#include "util/util.h"

#define ROLE_BUCKETS 4096

struct role_entry {
	struct role_entry *next;
	int64_t room, user;
	enum roles_room_role role;
};

struct roles {
	pthread_mutex_t mu;
	struct role_entry *buckets[ROLE_BUCKETS];
	int64_t *admins;
	size_t nadmins;
};

static size_t bucket(int64_t room, int64_t user)
{
	uint64_t x = (uint64_t)room * 0x9e3779b97f4a7c15ULL ^ (uint64_t)user;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)(x % ROLE_BUCKETS);
}

/* Under r->mu: the link that holds (room, user)'s entry, or the NULL one
 * at the end of its chain. */
static struct role_entry **find(struct roles *r, int64_t room, int64_t user)
{
	struct role_entry **pp = &r->buckets[bucket(room, user)];
	while (*pp && ((*pp)->room != room || (*pp)->user != user))
		pp = &(*pp)->next;
	return pp;
}

struct roles *roles_new(void)
{
	struct roles *r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	return r;
}

void roles_free(struct roles *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < ROLE_BUCKETS; i++) {
		struct role_entry *e = r->buckets[i];
		while (e) {
			struct role_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(r->admins);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* Under r->mu. */
static void put(struct roles *r, int64_t room, int64_t user,
		enum roles_room_role role)
{
	struct role_entry **pp = find(r, room, user);
	if (*pp) {
		if ((*pp)->role != ROLES_OWNER) /* invariant 2 */
			(*pp)->role = role;
		return;
	}
	struct role_entry *e = xcalloc(1, sizeof(*e));
	e->room = room;
	e->user = user;
	e->role = role;
	*pp = e;
}

/* Under r->mu: drop a moderator's entry (invariant 1). */
static void drop_moderator(struct roles *r, int64_t room, int64_t user)
{
	struct role_entry **pp = find(r, room, user);
	struct role_entry *e = *pp;
	if (!e || e->role != ROLES_MODERATOR)
		return;
	*pp = e->next;
	free(e);
}

void roles_owner_set(struct roles *r, int64_t room_id, int64_t user_id)
{
	pthread_mutex_lock(&r->mu);
	struct role_entry **pp = find(r, room_id, user_id);
	if (*pp)
		(*pp)->role = ROLES_OWNER;
	else
		put(r, room_id, user_id, ROLES_OWNER);
	pthread_mutex_unlock(&r->mu);
}

void roles_moderator_set(struct roles *r, int64_t room_id, int64_t user_id,
			 bool on)
{
	pthread_mutex_lock(&r->mu);
	if (on)
		put(r, room_id, user_id, ROLES_MODERATOR);
	else
		drop_moderator(r, room_id, user_id);
	pthread_mutex_unlock(&r->mu);
}

void roles_member_left(struct roles *r, int64_t room_id, int64_t user_id)
{
	pthread_mutex_lock(&r->mu);
	drop_moderator(r, room_id, user_id);
	pthread_mutex_unlock(&r->mu);
}

enum roles_room_role roles_room(struct roles *r, int64_t room_id,
				int64_t user_id)
{
	pthread_mutex_lock(&r->mu);
	struct role_entry *e = *find(r, room_id, user_id);
	enum roles_room_role role = e ? e->role : ROLES_NONE;
	pthread_mutex_unlock(&r->mu);
	return role;
}

void roles_admins_replace(struct roles *r, const int64_t *ids, size_t n)
{
	int64_t *copy = n ? xmalloc(n * sizeof(*copy)) : NULL;
	if (n)
		memcpy(copy, ids, n * sizeof(*copy));
	pthread_mutex_lock(&r->mu);
	int64_t *old = r->admins;
	r->admins = copy;
	r->nadmins = n;
	pthread_mutex_unlock(&r->mu);
	free(old);
}

bool roles_is_admin(struct roles *r, int64_t user_id)
{
	bool admin = false;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->nadmins && !admin; i++)
		admin = r->admins[i] == user_id;
	pthread_mutex_unlock(&r->mu);
	return admin;
}
