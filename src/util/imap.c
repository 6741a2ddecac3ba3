/* imap: open addressing with linear probing and backward-shift deletion,
 * int64 keys, one machine word of value. Used both as map and as set (the
 * bus's membership and indexes, presence's users). Not thread-safe: its
 * owner locks. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util/imap.h"
#include "util/util.h"

static uint64_t mix64(int64_t key)
{
	uint64_t x = (uint64_t)key;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* The slot holding key, or the empty slot where it would go; cap > 0. */
static size_t imap_slot(const struct imap *m, int64_t key)
{
	size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
	while (m->keys[i] != IMAP_EMPTY && m->keys[i] != key)
		i = (i + 1) & mask;
	return i;
}

bool imap_get(const struct imap *m, int64_t key, uintptr_t *val)
{
	if (!m->len)
		return false;
	size_t i = imap_slot(m, key);
	if (m->keys[i] == IMAP_EMPTY)
		return false;
	if (val)
		*val = m->vals[i];
	return true;
}

void *imap_get_ptr(const struct imap *m, int64_t key)
{
	uintptr_t v;
	return imap_get(m, key, &v) ? (void *)v : NULL;
}

static void imap_alloc(struct imap *m, size_t cap)
{
	m->cap = cap;
	m->len = 0;
	m->keys = xmalloc(cap * sizeof(*m->keys));
	m->vals = xmalloc(cap * sizeof(*m->vals));
	for (size_t i = 0; i < cap; i++)
		m->keys[i] = IMAP_EMPTY;
}

void imap_fini(struct imap *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct imap){0};
}

static void imap_grow(struct imap *m)
{
	struct imap old = *m;
	imap_alloc(m, old.cap ? old.cap * 2 : 8);
	for (size_t i = 0; i < old.cap; i++) {
		if (old.keys[i] == IMAP_EMPTY)
			continue;
		size_t j = imap_slot(m, old.keys[i]);
		m->keys[j] = old.keys[i];
		m->vals[j] = old.vals[i];
		m->len++;
	}
	imap_fini(&old);
}

/* Insert or overwrite; true if key was not there before. */
bool imap_put(struct imap *m, int64_t key, uintptr_t val)
{
	assert(key != IMAP_EMPTY);
	if ((m->len + 1) * 4 > m->cap * 3)
		imap_grow(m);
	size_t i = imap_slot(m, key);
	bool fresh = m->keys[i] == IMAP_EMPTY;
	if (fresh) {
		m->keys[i] = key;
		m->len++;
	}
	m->vals[i] = val;
	return fresh;
}

/* Is h in the cyclic interval (i, j]? */
static bool cyclic_between(size_t i, size_t h, size_t j)
{
	return i <= j ? (i < h && h <= j) : (i < h || h <= j);
}

/* Remove key; true if it was there. Later entries of the probe run are
 * shifted back into the hole, so lookups never need tombstones. */
bool imap_del(struct imap *m, int64_t key)
{
	if (!m->len)
		return false;
	size_t mask = m->cap - 1, i = imap_slot(m, key), j = i;
	if (m->keys[i] == IMAP_EMPTY)
		return false;
	for (;;) {
		j = (j + 1) & mask;
		if (m->keys[j] == IMAP_EMPTY)
			break;
		size_t home = (size_t)mix64(m->keys[j]) & mask;
		if (cyclic_between(i, home, j))
			continue;
		m->keys[i] = m->keys[j];
		m->vals[i] = m->vals[j];
		i = j;
	}
	m->keys[i] = IMAP_EMPTY;
	m->len--;
	return true;
}

void imap_copy(struct imap *dst, const struct imap *src)
{
	*dst = (struct imap){0};
	if (!src || !src->len)
		return;
	imap_alloc(dst, src->cap);
	memcpy(dst->keys, src->keys, src->cap * sizeof(*src->keys));
	memcpy(dst->vals, src->vals, src->cap * sizeof(*src->vals));
	dst->len = src->len;
}
