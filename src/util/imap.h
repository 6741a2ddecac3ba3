/* imap: a small hash map from int64 keys (any value but IMAP_EMPTY) to one
 * machine word, also used as a set (value 0). Open addressing with linear
 * probing and backward-shift deletion; grows, never shrinks. Not
 * thread-safe: the owner locks. A zeroed struct is an empty map. */
#ifndef NATTER_IMAP_H
#define NATTER_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_EMPTY INT64_MIN /* the one key that cannot be stored */

struct imap {
	int64_t *keys;
	uintptr_t *vals;
	size_t cap; /* 0 or a power of two */
	size_t len;
};

/* Whether key is present; its value in *val (val may be NULL). */
bool imap_get(const struct imap *m, int64_t key, uintptr_t *val);
/* The value of key as a pointer, NULL when absent. */
void *imap_get_ptr(const struct imap *m, int64_t key);
/* Insert or replace: true when key was new. */
bool imap_put(struct imap *m, int64_t key, uintptr_t val);
/* Remove key: true when it was there. */
bool imap_del(struct imap *m, int64_t key);
/* dst becomes a copy of src (NULL: empty); dst's old contents are not
 * freed. */
void imap_copy(struct imap *dst, const struct imap *src);
/* Free the arrays (not what values point to); m is empty again. */
void imap_fini(struct imap *m);

#endif
