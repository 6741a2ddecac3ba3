/* limit: per-user command rates (GCRA token buckets in a bounded table) and
 * per-user / per-address caps on concurrent streams. See limit.h for the
 * contract; it does not log, count metrics or know any transport.
 *
 * Invariants:
 *  1. The rate table never grows: users_max entries rounded up to a power
 *     of two, found by probing a window of PROBE slots from the user's
 *     hash. Lookups scan the whole window, so reusing a slot never hides
 *     another user's entry (there are no tombstones to get wrong).
 *  2. An entry whose buckets are all full (every tat <= now) carries no
 *     state: it is reused first. Only when the whole window is busy is the
 *     entry with the earliest latest-tat (the least limited) reused.
 *  3. The record of uses (sharing) holds each user once: an imap from user
 *     to its index in uses[], both emptied together by limit_uses_take.
 *  4. A stream-count entry exists exactly while its count is above zero:
 *     acquire creates it, the release that brings it to zero frees it. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limit.h"
#include "util/imap.h"
#include "util/util.h"

#define PROBE 16
#define STREAM_BUCKETS 1024

struct rate_entry {
	int64_t user;		   /* 0: empty */
	int64_t tat[LIMIT_KIND_N]; /* microseconds, monotonic */
};

struct count_entry {
	struct count_entry *next;
	unsigned n;
	char key[]; /* "u<id>", "a<address>" (streams), "c<address>" */
};

struct limit {
	struct limit_config cfg;
	int64_t interval_us[LIMIT_KIND_N]; /* 1 s / rate; 0: not limited */

	pthread_mutex_t rate_lock;
	struct rate_entry *rates;
	uint32_t mask; /* slots - 1 */

	/* sharing (under rate_lock): the tokens taken since the last take */
	bool sharing;
	void (*shared_fn)(void *);
	void *shared_arg;
	struct imap used; /* user -> index in uses */
	struct limit_use *uses;
	size_t nuses, uses_cap;

	pthread_mutex_t count_lock;
	struct count_entry *counts[STREAM_BUCKETS];
	unsigned total; /* every stream counted */
};

static uint32_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return (uint32_t)x;
}

static uint32_t hash_str(const char *s)
{
	return (uint32_t)table_hash(s, strlen(s));
}

struct limit *limit_new(const struct limit_config *cfg)
{
	struct limit *l = xcalloc(1, sizeof(*l));
	uint32_t slots = PROBE;

	l->cfg = *cfg;
	for (int k = 0; k < LIMIT_KIND_N; k++) {
		if (l->cfg.rate[k] && !l->cfg.burst[k])
			l->cfg.burst[k] = 1;
		l->interval_us[k] =
		    cfg->rate[k] ? 1000000 / (int64_t)cfg->rate[k] : 0;
		if (cfg->rate[k] && !l->interval_us[k])
			l->interval_us[k] = 1;
	}
	while (slots < cfg->users_max && slots < (1u << 30))
		slots <<= 1;
	l->rates = xcalloc(slots, sizeof(*l->rates));
	l->mask = slots - 1;
	pthread_mutex_init(&l->rate_lock, NULL);
	pthread_mutex_init(&l->count_lock, NULL);
	return l;
}

void limit_free(struct limit *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < STREAM_BUCKETS; i++) {
		struct count_entry *e = l->counts[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&l->count_lock);
	pthread_mutex_destroy(&l->rate_lock);
	imap_fini(&l->used);
	free(l->uses);
	free(l->rates);
	free(l);
}

/* --- rates --------------------------------------------------------------- */

static int64_t entry_latest(const struct rate_entry *e)
{
	int64_t t = e->tat[0];
	for (int k = 1; k < LIMIT_KIND_N; k++)
		if (e->tat[k] > t)
			t = e->tat[k];
	return t;
}

/* The user's entry, or a slot claimed for it (invariant 2). */
static struct rate_entry *rate_entry(struct limit *l, int64_t user, int64_t now)
{
	uint32_t h = hash64((uint64_t)user);
	struct rate_entry *empty = NULL, *idle = NULL, *least = NULL;

	for (uint32_t i = 0; i < PROBE; i++) {
		struct rate_entry *e = &l->rates[(h + i) & l->mask];
		if (e->user == user)
			return e;
		if (e->user == 0) {
			if (!empty)
				empty = e;
			continue;
		}
		int64_t latest = entry_latest(e);
		if (latest <= now && !idle)
			idle = e;
		if (!least || latest < entry_latest(least))
			least = e;
	}
	struct rate_entry *e = empty ? empty : idle ? idle : least;
	memset(e, 0, sizeof(*e));
	e->user = user;
	return e;
}

/* Note one token of kind taken by user (invariant 3); whether the record
 * was empty before. Lock held. */
static bool record_use(struct limit *l, int64_t user, enum limit_kind kind)
{
	uintptr_t i;
	bool first = l->nuses == 0;

	if (!imap_get(&l->used, user, &i)) {
		if (l->nuses >= LIMIT_USES_MAX)
			return false;
		if (l->nuses == l->uses_cap) {
			l->uses_cap = l->uses_cap ? l->uses_cap * 2 : 64;
			l->uses =
			    xrealloc(l->uses, l->uses_cap * sizeof(*l->uses));
		}
		i = l->nuses++;
		memset(&l->uses[i], 0, sizeof(l->uses[i]));
		l->uses[i].user = user;
		imap_put(&l->used, user, i);
	}
	if (l->uses[i].n[kind] < UINT32_MAX)
		l->uses[i].n[kind]++;
	return first;
}

int limit_take(struct limit *l, int64_t user, enum limit_kind kind,
	       int64_t now_ms, int64_t *retry_ms)
{
	int64_t t = l->interval_us[kind];
	int64_t now = now_ms * 1000;
	bool tell = false;
	int rc = 0;

	*retry_ms = 0;
	if (!t)
		return 0;
	pthread_mutex_lock(&l->rate_lock);
	struct rate_entry *e = rate_entry(l, user, now);
	int64_t tat = e->tat[kind] > now ? e->tat[kind] : now;
	int64_t next = tat + t;
	int64_t over = next - now - (int64_t)l->cfg.burst[kind] * t;
	if (over > 0) {
		*retry_ms = (over + 999) / 1000;
		if (*retry_ms < 1)
			*retry_ms = 1;
		rc = -1;
	} else {
		e->tat[kind] = next;
		if (l->sharing)
			tell = record_use(l, user, kind);
	}
	pthread_mutex_unlock(&l->rate_lock);
	if (tell && l->shared_fn)
		l->shared_fn(l->shared_arg);
	return rc;
}

void limit_share(struct limit *l, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&l->rate_lock);
	l->sharing = true;
	l->shared_fn = fn;
	l->shared_arg = arg;
	pthread_mutex_unlock(&l->rate_lock);
}

void limit_unshare(struct limit *l)
{
	pthread_mutex_lock(&l->rate_lock);
	l->sharing = false;
	l->shared_fn = NULL;
	l->shared_arg = NULL;
	free(l->uses);
	l->uses = NULL;
	l->nuses = l->uses_cap = 0;
	imap_fini(&l->used);
	pthread_mutex_unlock(&l->rate_lock);
}

struct limit_use *limit_uses_take(struct limit *l, size_t *n)
{
	pthread_mutex_lock(&l->rate_lock);
	struct limit_use *u = l->nuses ? l->uses : NULL;
	*n = l->nuses;
	if (u) {
		l->uses = NULL;
		l->nuses = l->uses_cap = 0;
		imap_fini(&l->used);
	}
	pthread_mutex_unlock(&l->rate_lock);
	return u;
}

void limit_charge(struct limit *l, const struct limit_use *u, int64_t now_ms)
{
	int64_t now = now_ms * 1000;

	if (u->user == 0)
		return;
	pthread_mutex_lock(&l->rate_lock);
	struct rate_entry *e = rate_entry(l, u->user, now);
	for (int k = 0; k < LIMIT_KIND_N; k++) {
		int64_t t = l->interval_us[k];
		if (!t || !u->n[k])
			continue;
		/* at most one burst of debt beyond an empty bucket */
		int64_t cap = now + 2 * (int64_t)l->cfg.burst[k] * t;
		int64_t tat = e->tat[k] > now ? e->tat[k] : now;
		tat += (int64_t)u->n[k] * t; /* < 2^32 * 10^6: no overflow */
		if (tat > cap)
			tat = cap > e->tat[k] ? cap : e->tat[k];
		e->tat[k] = tat;
	}
	pthread_mutex_unlock(&l->rate_lock);
}

const char *limit_kind_name(enum limit_kind kind)
{
	static const char *const names[LIMIT_KIND_N] = {"all", "send",
							"typing"};
	return kind < LIMIT_KIND_N ? names[kind] : "?";
}

/* --- streams ------------------------------------------------------------- */

static void user_key(char *key, size_t len, int64_t user)
{
	snprintf(key, len, "u%lld", (long long)user);
}

static struct count_entry **count_find(struct limit *l, const char *key)
{
	struct count_entry **pp = &l->counts[hash_str(key) % STREAM_BUCKETS];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

static unsigned count_get(struct limit *l, const char *key)
{
	struct count_entry *e = *count_find(l, key);
	return e ? e->n : 0;
}

static void count_add(struct limit *l, const char *key)
{
	struct count_entry **pp = count_find(l, key);
	if (!*pp) {
		size_t n = strlen(key) + 1;
		struct count_entry *e = xcalloc(1, sizeof(*e) + n);
		memcpy(e->key, key, n);
		*pp = e;
	}
	(*pp)->n++;
}

/* Whether key was counted (and is now one less). */
static bool count_sub(struct limit *l, const char *key)
{
	struct count_entry **pp = count_find(l, key);
	struct count_entry *e = *pp;
	if (!e)
		return false;
	if (--e->n == 0) {
		*pp = e->next;
		free(e);
	}
	return true;
}

int limit_stream_acquire(struct limit *l, int64_t user, const char *addr)
{
	char ukey[32], akey[72];
	int rc = LIMIT_STREAM_OK;

	user_key(ukey, sizeof(ukey), user);
	snprintf(akey, sizeof(akey), "a%s", addr);
	pthread_mutex_lock(&l->count_lock);
	if (l->cfg.streams_max && l->total >= l->cfg.streams_max)
		rc = LIMIT_STREAM_SERVER;
	else if (l->cfg.streams_per_user &&
		 count_get(l, ukey) >= l->cfg.streams_per_user)
		rc = LIMIT_STREAM_USER;
	else if (l->cfg.streams_per_addr &&
		 count_get(l, akey) >= l->cfg.streams_per_addr)
		rc = LIMIT_STREAM_ADDR;
	if (rc == LIMIT_STREAM_OK) {
		count_add(l, ukey);
		count_add(l, akey);
		l->total++;
	}
	pthread_mutex_unlock(&l->count_lock);
	return rc;
}

void limit_stream_release(struct limit *l, int64_t user, const char *addr)
{
	char ukey[32], akey[72];

	user_key(ukey, sizeof(ukey), user);
	snprintf(akey, sizeof(akey), "a%s", addr);
	pthread_mutex_lock(&l->count_lock);
	bool counted = count_sub(l, ukey);
	count_sub(l, akey);
	if (counted && l->total) /* a release without its acquire: ignored */
		l->total--;
	pthread_mutex_unlock(&l->count_lock);
}

unsigned limit_streams_user(struct limit *l, int64_t user)
{
	char key[32];
	user_key(key, sizeof(key), user);
	pthread_mutex_lock(&l->count_lock);
	unsigned n = count_get(l, key);
	pthread_mutex_unlock(&l->count_lock);
	return n;
}

unsigned limit_streams_addr(struct limit *l, const char *addr)
{
	char key[72];
	snprintf(key, sizeof(key), "a%s", addr);
	pthread_mutex_lock(&l->count_lock);
	unsigned n = count_get(l, key);
	pthread_mutex_unlock(&l->count_lock);
	return n;
}

unsigned limit_streams_total(struct limit *l)
{
	pthread_mutex_lock(&l->count_lock);
	unsigned n = l->total;
	pthread_mutex_unlock(&l->count_lock);
	return n;
}

/* --- connections per address ---------------------------------------------- */

static void conn_key(char *key, size_t len, const char *addr)
{
	snprintf(key, len, "c%s", addr);
}

unsigned limit_conn_open(struct limit *l, const char *addr)
{
	char key[72];
	conn_key(key, sizeof(key), addr);
	pthread_mutex_lock(&l->count_lock);
	count_add(l, key);
	unsigned n = count_get(l, key);
	pthread_mutex_unlock(&l->count_lock);
	return n;
}

void limit_conn_close(struct limit *l, const char *addr)
{
	char key[72];
	conn_key(key, sizeof(key), addr);
	pthread_mutex_lock(&l->count_lock);
	count_sub(l, key);
	pthread_mutex_unlock(&l->count_lock);
}

unsigned limit_conns_addr(struct limit *l, const char *addr)
{
	char key[72];
	conn_key(key, sizeof(key), addr);
	pthread_mutex_lock(&l->count_lock);
	unsigned n = count_get(l, key);
	pthread_mutex_unlock(&l->count_lock);
	return n;
}
