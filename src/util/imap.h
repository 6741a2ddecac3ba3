/* imap: a small hash map from int64 keys to one machine word (a set when
 * the values are ignored), for the bus's membership indexes. Not
 * thread-safe: its owner locks. INT64_MIN is not a valid key. */
#ifndef NATTER_IMAP_H
#define NATTER_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Open addressing with linear probing and backward-shift deletion, int64
 * keys, one machine word of value. Used both as map and as set. */
#define IMAP_EMPTY INT64_MIN

struct imap {
	int64_t *keys;
	uintptr_t *vals;
	size_t cap; /* 0 or a power of two */
	size_t len;
};

bool imap_get(const struct imap *m, int64_t key, uintptr_t *val);
void *imap_get_ptr(const struct imap *m, int64_t key);
void imap_alloc(struct imap *m, size_t cap);
void imap_fini(struct imap *m);
bool imap_put(struct imap *m, int64_t key, uintptr_t val);
bool imap_del(struct imap *m, int64_t key);
void imap_copy(struct imap *dst, const struct imap *src);

#endif
