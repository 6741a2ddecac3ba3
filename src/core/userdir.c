/* userdir: an open-addressing table (linear probing, a power of two, kept
 * at most three quarters full) from the lower-case name to the id and the
 * canonical spelling. Entries never go away, so a probe stops at the
 * first empty slot. Names are ASCII (name_valid), so lower-casing them is
 * byte by byte. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/userdir.h"
#include "util/imap.h"
#include "util/util.h"

struct entry {
	char key[33]; /* "": empty */
	char name[33];
	int64_t id;
};

struct userdir {
	pthread_mutex_t mu;
	struct entry *v;
	size_t cap, len;
	struct imap by_id; /* id -> malloc'd canonical name */
};

static size_t slot(const struct entry *v, size_t cap, const char *key)
{
	size_t i = (size_t)table_hash(key, strlen(key)) & (cap - 1);
	while (v[i].key[0] && strcmp(v[i].key, key) != 0)
		i = (i + 1) & (cap - 1);
	return i;
}

struct userdir *userdir_new(void)
{
	struct userdir *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->mu, NULL);
	d->cap = 64;
	d->v = xcalloc(d->cap, sizeof(*d->v));
	return d;
}

void userdir_free(struct userdir *d)
{
	if (!d)
		return;
	pthread_mutex_destroy(&d->mu);
	for (size_t i = 0; i < d->by_id.cap; i++)
		if (d->by_id.keys[i] != IMAP_EMPTY)
			free((char *)d->by_id.vals[i]);
	imap_fini(&d->by_id);
	free(d->v);
	free(d);
}

void userdir_add(struct userdir *d, int64_t id, const char *name)
{
	char key[33];
	if (!name || !name_valid(name))
		return;
	ascii_lower(name, key);
	pthread_mutex_lock(&d->mu);
	if ((d->len + 1) * 4 > d->cap * 3) {
		size_t cap = d->cap * 2;
		struct entry *v = xcalloc(cap, sizeof(*v));
		for (size_t i = 0; i < d->cap; i++)
			if (d->v[i].key[0])
				v[slot(v, cap, d->v[i].key)] = d->v[i];
		free(d->v);
		d->v = v;
		d->cap = cap;
	}
	struct entry *e = &d->v[slot(d->v, d->cap, key)];
	if (!e->key[0]) {
		memcpy(e->key, key, sizeof(key));
		d->len++;
	}
	e->id = id;
	snprintf(e->name, sizeof(e->name), "%s", name);
	free(imap_get_ptr(&d->by_id, id));
	imap_put(&d->by_id, id, (uintptr_t)xstrdup(name));
	pthread_mutex_unlock(&d->mu);
}

int userdir_name(struct userdir *d, int64_t id, char canon[33])
{
	pthread_mutex_lock(&d->mu);
	const char *name = imap_get_ptr(&d->by_id, id);
	if (name)
		snprintf(canon, 33, "%s", name);
	pthread_mutex_unlock(&d->mu);
	return name ? 0 : -1;
}

int userdir_find(struct userdir *d, const char *name, size_t len, int64_t *id,
		 char canon[33])
{
	char key[33];
	if (!name || len == 0 || len > 32)
		return -1;
	memcpy(key, name, len);
	key[len] = '\0';
	if (!name_valid(key))
		return -1;
	ascii_lower(key, key);
	pthread_mutex_lock(&d->mu);
	const struct entry *e = &d->v[slot(d->v, d->cap, key)];
	int rc = e->key[0] ? 0 : -1;
	if (rc == 0) {
		if (id)
			*id = e->id;
		if (canon)
			memcpy(canon, e->name, 33);
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

size_t userdir_count(struct userdir *d)
{
	pthread_mutex_lock(&d->mu);
	size_t n = d->len;
	pthread_mutex_unlock(&d->mu);
	return n;
}
