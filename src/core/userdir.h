/* userdir: the user directory: every account's id and canonical name, by
 * name ignoring case. Loaded once at start (from the store, by the caller)
 * and told of each registration, so that resolving a name (a mention, on
 * an event loop) never reads SQLite. Accounts are never renamed; the
 * directory only grows.
 *
 * Threads: every function is safe from any thread (one mutex, never held
 * while calling out). It knows no rooms, no store and no wire format. */
#ifndef NATTER_USERDIR_H
#define NATTER_USERDIR_H

#include <stddef.h>
#include <stdint.h>

struct userdir;

struct userdir *userdir_new(void);
void userdir_free(struct userdir *d); /* NULL is fine */

/* Record a user (again is fine: the last spelling wins). name must be a
 * valid user name (name_valid); anything else is ignored. */
void userdir_add(struct userdir *d, int64_t id, const char *name);
/* The user called name (len bytes, any case): 0 with the id and the
 * canonical name copied into canon (33 bytes; may be NULL), or -1. */
int userdir_find(struct userdir *d, const char *name, size_t len, int64_t *id,
		 char canon[33]);
/* The canonical name of the user with id into canon (33 bytes): 0, or -1
 * for an id it does not hold. */
int userdir_name(struct userdir *d, int64_t id, char canon[33]);
/* How many users it holds. */
size_t userdir_count(struct userdir *d);

#endif
