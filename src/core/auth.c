/* auth: Argon2id password hashes, random session tokens and their SHA-256,
 * username/password rules, and failed-login throttling.
 *
 * It deliberately knows nothing of accounts, sessions or HTTP: callers
 * store the encoded hashes and token hashes (store), and turn a throttle
 * verdict into 429 + Retry-After (http). It does not log.
 *
 * Throttling policy (fixed window, as natterd(8) and natter.conf document
 * it). One table counts failures per key: the client address, the pair
 * (account, address), and the account (lower-cased).
 *   - A key's first failure opens a window of fail_window_s; failures in
 *     it are counted. Once fail_max are counted, the key is locked until
 *     the window has passed, and auth_login_check returns the seconds left
 *     (at least 1). Failures during the lock count but do not extend it.
 *   - When the window has passed the count is forgotten and the next
 *     failure opens a new window.
 *   - The account key counts failing addresses, not failures: only the
 *     first failure of a pair in its window adds one. So one address
 *     guessing at an account locks itself (its address and pair keys) and
 *     never the account; fail_max addresses failing for one account in a
 *     window (distributed guessing) lock the account.
 *   - The account lock does not apply to an address that logged in to
 *     that account successfully within KNOWN_S (a second table): the owner
 *     keeps logging in from where they did before while the account is
 *     under attack from elsewhere.
 * So an address gets at most fail_max guesses per window (2 * fail_max
 * across the boundary of two windows), and the longest lock is one window.
 *
 * Registrations are limited per address by a token bucket (GCRA, in a third
 * table): register_burst at once, then one per register_interval_s.
 * Argon2 runs on the caller's thread (an HTTP worker); at most hash_max
 * hashes run at once, beyond that the call fails at once with AUTH_EBUSY,
 * so hashing can never occupy every worker.
 *
 * The table holds at most THROTTLE_CAP keys, kept in the order their
 * windows opened: expired ones are dropped from the old end as failures
 * come in, and when the table is full the key whose window ends soonest
 * is evicted, so rotating usernames cannot grow memory, and what an
 * eviction forgets is the shortest remaining lock. Keys are a salted
 * SHA-256 (salt from the DRBG), so nobody can aim many keys at one hash
 * chain. */

#include <argon2.h>
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/sha256.h>

#include "core/auth.h"
#include "util/util.h"

#define SALT_LEN 16
#define HASH_LEN 32
#define THROTTLE_CAP 65536u  /* keys remembered at most */
#define THROTTLE_INITIAL 64u /* first table size */
#define KEY_LEN 16	     /* bytes of the salted SHA-256 kept */
#define KNOWN_S (30 * 86400) /* a successful login exempts its address */
#define NIL UINT32_MAX

struct tentry {
	uint8_t key[KEY_LEN];
	int64_t window_start_ms; /* first failure of the current window */
	uint32_t fails;		 /* failures in the current window */
	uint32_t hnext;		 /* bucket chain, or the free list */
	uint32_t prev, next;	 /* age list, oldest window first */
};

struct throttle {
	struct tentry *e;
	uint32_t cap;	/* entries allocated; also the bucket count */
	uint32_t used;	/* entries ever handed out (high-water mark) */
	uint32_t count; /* live entries */
	uint32_t *bucket;
	uint32_t free_head;
	uint32_t oldest, newest;
	uint8_t salt[16];
};

struct auth {
	struct auth_config cfg;
	char dummy[AUTH_HASH_MAX]; /* verified against for unknown users */

	pthread_mutex_t rng_lock;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;

	pthread_mutex_t throttle_lock; /* the three tables */
	struct throttle t;	       /* failures: 'a', 'p', 'u' keys */
	struct throttle known;	       /* successful (account, address) */
	struct throttle reg;	       /* registrations per address (TAT) */

	atomic_uint hashing; /* Argon2 runs in progress */

	auth_share_fn share; /* set once, before threads (auth_share) */
	void *share_arg;
};

/* --- random numbers ------------------------------------------------------ */

int auth_random(struct auth *a, void *buf, size_t len)
{
	unsigned char *p = buf;
	int rc = 0;

	pthread_mutex_lock(&a->rng_lock);
	while (len > 0) {
		size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST
			       ? len
			       : MBEDTLS_CTR_DRBG_MAX_REQUEST;
		if (mbedtls_ctr_drbg_random(&a->drbg, p, n) != 0) {
			rc = -1;
			break;
		}
		p += n;
		len -= n;
	}
	pthread_mutex_unlock(&a->rng_lock);
	return rc;
}

/* --- rules ------------------------------------------------------------- */

bool auth_username_valid(const char *name)
{
	return name && name_valid(name);
}

bool auth_password_valid(const char *pw, size_t len)
{
	if (!pw || len > AUTH_PASSWORD_MAX || !utf8_valid(pw, len))
		return false;
	/* U+0000 is valid UTF-8, but a C string would silently cut it. */
	if (memchr(pw, '\0', len))
		return false;
	return utf8_count(pw, len) >= AUTH_PASSWORD_MIN;
}

/* --- password hashes ----------------------------------------------------- */

static int hash_encoded(struct auth *a, const void *pw, size_t len,
			char out[AUTH_HASH_MAX])
{
	uint8_t salt[SALT_LEN];
	int rc = -1;

	if (auth_random(a, salt, sizeof(salt)) != 0)
		goto fail;
	if (argon2id_hash_encoded(a->cfg.time_cost, a->cfg.memory_kib,
				  a->cfg.parallelism, pw, len, salt,
				  sizeof(salt), HASH_LEN, out,
				  AUTH_HASH_MAX) != ARGON2_OK)
		goto fail;
	rc = 0;
fail:
	secure_zero(salt, sizeof(salt));
	return rc;
}

/* A slot for one Argon2 run, or false if hash_max are running. Never
 * waits: a worker thread that would wait is a worker lost to streams. */
static bool hash_slot_take(struct auth *a)
{
	if (atomic_fetch_add(&a->hashing, 1) >= a->cfg.hash_max) {
		atomic_fetch_sub(&a->hashing, 1);
		return false;
	}
	return true;
}

static void hash_slot_give(struct auth *a)
{
	atomic_fetch_sub(&a->hashing, 1);
}

int auth_password_hash(struct auth *a, const char *pw, size_t len,
		       char out[AUTH_HASH_MAX])
{
	if (!pw || len > AUTH_PASSWORD_MAX)
		return -1;
	if (!hash_slot_take(a))
		return AUTH_EBUSY;
	int rc = hash_encoded(a, pw, len, out);
	hash_slot_give(a);
	return rc;
}

int auth_password_verify(struct auth *a, const char *encoded, const char *pw,
			 size_t len)
{
	int rc;

	/* Checked before the user is looked at, so it reveals nothing. */
	if (!pw || len > AUTH_PASSWORD_MAX)
		return -1;
	if (!hash_slot_take(a))
		return AUTH_EBUSY;
	if (!encoded) {
		(void)argon2id_verify(a->dummy, pw, len);
		rc = -1;
	} else {
		/* argon2id_verify compares the hashes in constant time. */
		rc = argon2id_verify(encoded, pw, len) == ARGON2_OK ? 0 : -1;
	}
	hash_slot_give(a);
	return rc;
}

/* --- tokens ------------------------------------------------------------ */

static void base64url(const uint8_t *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];
		*out++ = tab[v >> 18 & 63];
		*out++ = tab[v >> 12 & 63];
		*out++ = tab[v >> 6 & 63];
		*out++ = tab[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		*out++ = tab[v >> 18 & 63];
		*out++ = tab[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*out++ = tab[v >> 18 & 63];
		*out++ = tab[v >> 12 & 63];
		*out++ = tab[v >> 6 & 63];
	}
	*out = '\0';
}

int auth_token_new(struct auth *a, char out[AUTH_TOKEN_LEN + 1])
{
	uint8_t raw[32];
	int rc = -1;

	if (auth_random(a, raw, sizeof(raw)) != 0)
		goto fail;
	base64url(raw, sizeof(raw), out);
	rc = 0;
fail:
	secure_zero(raw, sizeof(raw));
	return rc;
}

void auth_token_hash(const char *token, size_t len, uint8_t out[32])
{
	int rc = mbedtls_sha256_ret((const unsigned char *)token, len, out, 0);
	assert(rc == 0); /* only hardware back-ends can fail */
	(void)rc;
}

/* --- login throttling ------------------------------------------------------
 */

static void throttle_init(struct throttle *t)
{
	t->cap = THROTTLE_INITIAL;
	t->e = xcalloc(t->cap, sizeof(*t->e));
	t->bucket = xmalloc(t->cap * sizeof(*t->bucket));
	for (uint32_t i = 0; i < t->cap; i++)
		t->bucket[i] = NIL;
	t->used = t->count = 0;
	t->free_head = t->oldest = t->newest = NIL;
}

static void throttle_fini(struct throttle *t)
{
	secure_zero(t->salt, sizeof(t->salt));
	free(t->e);
	free(t->bucket);
}

/* kind 'u' (account, lower-cased), 'a' (address), or a pair 'p' / 'k'
 * (account lower-cased, then addr; see pair_str). */
static void throttle_key(const struct throttle *t, char kind, const char *s,
			 uint8_t key[KEY_LEN])
{
	mbedtls_sha256_context c;
	unsigned char digest[32], chunk[64];
	size_t n = 0;

	mbedtls_sha256_init(&c);
	mbedtls_sha256_starts_ret(&c, 0);
	mbedtls_sha256_update_ret(&c, t->salt, sizeof(t->salt));
	mbedtls_sha256_update_ret(&c, (const unsigned char *)&kind, 1);
	for (; *s; s++) {
		char ch = *s;
		if (kind == 'u' && ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		chunk[n++] = (unsigned char)ch;
		if (n == sizeof(chunk)) {
			mbedtls_sha256_update_ret(&c, chunk, n);
			n = 0;
		}
	}
	mbedtls_sha256_update_ret(&c, chunk, n);
	mbedtls_sha256_finish_ret(&c, digest);
	mbedtls_sha256_free(&c);
	memcpy(key, digest, KEY_LEN);
}

static uint32_t bucket_of(const struct throttle *t, const uint8_t *key)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h)); /* salted hash: already uniform */
	return h & (t->cap - 1);
}

static uint32_t throttle_find(const struct throttle *t, const uint8_t *key)
{
	for (uint32_t i = t->bucket[bucket_of(t, key)]; i != NIL;
	     i = t->e[i].hnext)
		if (memcmp(t->e[i].key, key, KEY_LEN) == 0)
			return i;
	return NIL;
}

static void age_unlink(struct throttle *t, uint32_t i)
{
	struct tentry *e = &t->e[i];

	if (e->prev != NIL)
		t->e[e->prev].next = e->next;
	else
		t->oldest = e->next;
	if (e->next != NIL)
		t->e[e->next].prev = e->prev;
	else
		t->newest = e->prev;
	e->prev = e->next = NIL;
}

static void age_append(struct throttle *t, uint32_t i)
{
	struct tentry *e = &t->e[i];

	e->prev = t->newest;
	e->next = NIL;
	if (t->newest != NIL)
		t->e[t->newest].next = i;
	else
		t->oldest = i;
	t->newest = i;
}

static void throttle_remove(struct throttle *t, uint32_t i)
{
	uint32_t *pp = &t->bucket[bucket_of(t, t->e[i].key)];

	while (*pp != i)
		pp = &t->e[*pp].hnext;
	*pp = t->e[i].hnext;
	age_unlink(t, i);
	t->e[i].hnext = t->free_head;
	t->free_head = i;
	t->count--;
}

static bool expired(const struct tentry *e, int64_t now, int64_t window_ms)
{
	return now - e->window_start_ms >= window_ms;
}

/* Double the table (entries and buckets) and rehash. */
static void throttle_grow(struct throttle *t)
{
	uint32_t cap = t->cap * 2;

	t->e = xrealloc(t->e, cap * sizeof(*t->e));
	memset(t->e + t->cap, 0, (cap - t->cap) * sizeof(*t->e));
	free(t->bucket);
	t->bucket = xmalloc(cap * sizeof(*t->bucket));
	t->cap = cap;
	for (uint32_t i = 0; i < cap; i++)
		t->bucket[i] = NIL;
	for (uint32_t i = t->oldest; i != NIL; i = t->e[i].next) {
		uint32_t b = bucket_of(t, t->e[i].key);
		t->e[i].hnext = t->bucket[b];
		t->bucket[b] = i;
	}
}

static uint32_t throttle_insert(struct throttle *t, const uint8_t *key)
{
	uint32_t i, b;

	if (t->free_head == NIL && t->used == t->cap) {
		if (t->cap < THROTTLE_CAP)
			throttle_grow(t);
		else
			throttle_remove(t, t->oldest);
	}
	if (t->free_head != NIL) {
		i = t->free_head;
		t->free_head = t->e[i].hnext;
	} else {
		i = t->used++;
	}
	memset(&t->e[i], 0, sizeof(t->e[i]));
	memcpy(t->e[i].key, key, KEY_LEN);
	b = bucket_of(t, key);
	t->e[i].hnext = t->bucket[b];
	t->bucket[b] = i;
	age_append(t, i);
	t->count++;
	return i;
}

/* Seconds until key may try again, 0 if now. Caller holds the lock. */
static unsigned key_wait(struct auth *a, char kind, const char *s, int64_t now)
{
	int64_t window_ms = (int64_t)a->cfg.fail_window_s * 1000;
	uint8_t key[KEY_LEN];
	struct tentry *e;
	int64_t left;
	uint32_t i;

	if (!s)
		return 0;
	throttle_key(&a->t, kind, s, key);
	i = throttle_find(&a->t, key);
	if (i == NIL)
		return 0;
	e = &a->t.e[i];
	if (e->fails < a->cfg.fail_max || expired(e, now, window_ms))
		return 0;
	left = e->window_start_ms + window_ms - now;
	/* A clock that went backwards must not lock for longer than the
	 * window. */
	if (left > window_ms)
		left = window_ms;
	return (unsigned)((left + 999) / 1000);
}

/* Count a failure for key; returns its count in the current window. */
static uint32_t key_failed(struct auth *a, char kind, const char *s,
			   int64_t now)
{
	struct throttle *t = &a->t;
	int64_t window_ms = (int64_t)a->cfg.fail_window_s * 1000;
	uint8_t key[KEY_LEN];
	struct tentry *e;
	uint32_t i;

	if (!s)
		return 0;
	throttle_key(t, kind, s, key);
	i = throttle_find(t, key);
	if (i == NIL) {
		i = throttle_insert(t, key);
		t->e[i].window_start_ms = now;
	} else if (expired(&t->e[i], now, window_ms)) {
		/* A new window: the entry moves to the young end. */
		age_unlink(t, i);
		age_append(t, i);
		t->e[i].window_start_ms = now;
		t->e[i].fails = 0;
	}
	e = &t->e[i];
	if (e->fails < UINT32_MAX)
		e->fails++;
	return e->fails;
}

/* Drop entries of t whose window (window_ms from window_start_ms) has
 * passed, from the old end. Each entry is dropped once, so this is
 * amortised O(1) per insertion. (Callers' clocks may disagree by a few ms,
 * so the order is only nearly sorted; an expired entry stuck behind a live
 * one costs memory until the cap, never correctness.) */
static void table_expire(struct throttle *t, int64_t now, int64_t window_ms)
{
	while (t->oldest != NIL && expired(&t->e[t->oldest], now, window_ms))
		throttle_remove(t, t->oldest);
}

/* "account\naddress" for the pair keys, the account lower-cased so that it
 * matches the 'u' key's folding. */
static const char *pair_str(char *out, size_t cap, const char *user,
			    const char *addr)
{
	if (!user || !addr)
		return NULL;
	size_t n = 0;
	for (; user[n] && n + 1 < cap; n++)
		out[n] = (user[n] >= 'A' && user[n] <= 'Z')
			     ? (char)(user[n] - 'A' + 'a')
			     : user[n];
	snprintf(out + n, cap - n, "\n%s", addr);
	return out;
}

/* Whether addr logged in to user within KNOWN_S. Lock held. */
static bool known_addr(struct auth *a, const char *pair, int64_t now)
{
	uint8_t key[KEY_LEN];
	uint32_t i;

	if (!pair)
		return false;
	throttle_key(&a->known, 'k', pair, key);
	i = throttle_find(&a->known, key);
	return i != NIL &&
	       !expired(&a->known.e[i], now, (int64_t)KNOWN_S * 1000);
}

unsigned auth_login_check(struct auth *a, const char *user, const char *addr,
			  int64_t now_ms)
{
	char pair[512];
	const char *p = pair_str(pair, sizeof(pair), user, addr);
	unsigned w, x;

	pthread_mutex_lock(&a->throttle_lock);
	w = key_wait(a, 'a', addr, now_ms);
	x = key_wait(a, 'p', p, now_ms);
	w = x > w ? x : w;
	if (!known_addr(a, p, now_ms)) {
		x = key_wait(a, 'u', user, now_ms);
		w = x > w ? x : w;
	}
	pthread_mutex_unlock(&a->throttle_lock);
	return w;
}

static void tell(struct auth *a, enum auth_share what, const char *user,
		 const char *addr)
{
	if (a->share)
		a->share(a->share_arg, what, user, addr);
}

static void failed(struct auth *a, const char *user, const char *addr,
		   int64_t now_ms)
{
	char pair[512];
	const char *p = pair_str(pair, sizeof(pair), user, addr);

	pthread_mutex_lock(&a->throttle_lock);
	table_expire(&a->t, now_ms, (int64_t)a->cfg.fail_window_s * 1000);
	key_failed(a, 'a', addr, now_ms);
	/* The account counts each failing address once per window. */
	if (!p || key_failed(a, 'p', p, now_ms) == 1)
		key_failed(a, 'u', user, now_ms);
	pthread_mutex_unlock(&a->throttle_lock);
}

/* Clears the account key and the pair, and remembers the address as the
 * account's. The address key stays: clearing it would let an attacker
 * reset their address's count between guesses at other accounts by
 * logging in to an account of their own; a legitimate user behind the
 * same address is slowed only until the address count decays. */
static void succeeded(struct auth *a, const char *user, const char *addr,
		      int64_t now_ms)
{
	char pair[512];
	const char *p = pair_str(pair, sizeof(pair), user, addr);
	uint8_t key[KEY_LEN];
	uint32_t i;

	if (!user)
		return;
	pthread_mutex_lock(&a->throttle_lock);
	throttle_key(&a->t, 'u', user, key);
	i = throttle_find(&a->t, key);
	if (i != NIL)
		throttle_remove(&a->t, i);
	if (p) {
		throttle_key(&a->t, 'p', p, key);
		i = throttle_find(&a->t, key);
		if (i != NIL)
			throttle_remove(&a->t, i);
		table_expire(&a->known, now_ms, (int64_t)KNOWN_S * 1000);
		throttle_key(&a->known, 'k', p, key);
		i = throttle_find(&a->known, key);
		if (i != NIL) /* refreshed: to the young end */
			throttle_remove(&a->known, i);
		i = throttle_insert(&a->known, key);
		a->known.e[i].window_start_ms = now_ms;
	}
	pthread_mutex_unlock(&a->throttle_lock);
}

void auth_login_failed(struct auth *a, const char *user, const char *addr,
		       int64_t now_ms)
{
	failed(a, user, addr, now_ms);
	tell(a, AUTH_SHARE_FAILED, user, addr);
}

void auth_login_succeeded(struct auth *a, const char *user, const char *addr,
			  int64_t now_ms)
{
	if (!user)
		return;
	succeeded(a, user, addr, now_ms);
	tell(a, AUTH_SHARE_SUCCEEDED, user, addr);
}

/* GCRA: the entry's window_start_ms holds the theoretical arrival time
 * (TAT); the bucket is full once TAT <= now, and such entries expire.
 * force: count it even when the bucket is empty (another node counted it),
 * at most one interval beyond. */
static unsigned register_take(struct auth *a, const char *addr, int64_t now_ms,
			      bool force)
{
	int64_t interval = (int64_t)a->cfg.register_interval_s * 1000;
	int64_t tolerance = interval * (int64_t)(a->cfg.register_burst - 1);
	uint8_t key[KEY_LEN];
	unsigned wait = 0;
	uint32_t i;

	if (!addr || interval == 0)
		return 0;
	pthread_mutex_lock(&a->throttle_lock);
	table_expire(&a->reg, now_ms, 0);
	throttle_key(&a->reg, 'r', addr, key);
	i = throttle_find(&a->reg, key);
	int64_t tat = i == NIL ? now_ms : a->reg.e[i].window_start_ms;
	if (tat < now_ms)
		tat = now_ms;
	if (tat - now_ms > tolerance && force) { /* so i is not NIL */
		if (tat - now_ms <= tolerance + interval)
			a->reg.e[i].window_start_ms = tat + interval;
	} else if (tat - now_ms > tolerance) {
		int64_t left = tat - now_ms - tolerance;
		/* at most one interval, and one more of debt told by another
		 * node; beyond, a clock went backwards */
		if (left > 2 * interval)
			left = 2 * interval;
		wait = (unsigned)((left + 999) / 1000);
	} else {
		if (i == NIL)
			i = throttle_insert(&a->reg, key);
		a->reg.e[i].window_start_ms = tat + interval;
	}
	pthread_mutex_unlock(&a->throttle_lock);
	return wait;
}

unsigned auth_register_check(struct auth *a, const char *addr, int64_t now_ms)
{
	unsigned wait = register_take(a, addr, now_ms, false);
	if (wait == 0 && addr)
		tell(a, AUTH_SHARE_REGISTERED, NULL, addr);
	return wait;
}

void auth_share(struct auth *a, auth_share_fn fn, void *arg)
{
	a->share = fn;
	a->share_arg = arg;
}

void auth_apply(struct auth *a, enum auth_share what, const char *user,
		const char *addr, int64_t now_ms)
{
	switch (what) {
	case AUTH_SHARE_FAILED:
		failed(a, user, addr, now_ms);
		break;
	case AUTH_SHARE_SUCCEEDED:
		if (user)
			succeeded(a, user, addr, now_ms);
		break;
	case AUTH_SHARE_REGISTERED:
		register_take(a, addr, now_ms, true);
		break;
	}
}

/* --- lifecycle -------------------------------------------------------------
 */

struct auth *auth_new(const struct auth_config *cfg)
{
	static const char pers[] = "natter auth";
	struct auth *a = xcalloc(1, sizeof(*a));
	uint8_t dummy_pw[32];

	a->cfg = *cfg;
	/* config enforces >= 1; a zero window would never lock anything. */
	if (a->cfg.fail_max < 1)
		a->cfg.fail_max = 1;
	if (a->cfg.fail_window_s < 1)
		a->cfg.fail_window_s = 1;
	if (a->cfg.hash_max < 1)
		a->cfg.hash_max = 1;
	if (a->cfg.register_burst < 1)
		a->cfg.register_burst = 1;
	atomic_init(&a->hashing, 0);
	pthread_mutex_init(&a->rng_lock, NULL);
	pthread_mutex_init(&a->throttle_lock, NULL);
	mbedtls_entropy_init(&a->entropy);
	mbedtls_ctr_drbg_init(&a->drbg);
	throttle_init(&a->t);
	throttle_init(&a->known);
	throttle_init(&a->reg);
	if (mbedtls_ctr_drbg_seed(&a->drbg, mbedtls_entropy_func, &a->entropy,
				  (const unsigned char *)pers,
				  sizeof(pers) - 1) != 0)
		goto fail;
	if (auth_random(a, a->t.salt, sizeof(a->t.salt)) != 0 ||
	    auth_random(a, a->known.salt, sizeof(a->known.salt)) != 0 ||
	    auth_random(a, a->reg.salt, sizeof(a->reg.salt)) != 0)
		goto fail;
	/* A hash of a random password nobody knows, at the configured cost;
	 * this also rejects cost parameters libargon2 will not take. */
	if (auth_random(a, dummy_pw, sizeof(dummy_pw)) != 0 ||
	    hash_encoded(a, dummy_pw, sizeof(dummy_pw), a->dummy) != 0)
		goto fail;
	secure_zero(dummy_pw, sizeof(dummy_pw));
	return a;

fail:
	secure_zero(dummy_pw, sizeof(dummy_pw));
	auth_free(a);
	return NULL;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	throttle_fini(&a->t);
	throttle_fini(&a->known);
	throttle_fini(&a->reg);
	mbedtls_ctr_drbg_free(&a->drbg); /* both zeroise their state */
	mbedtls_entropy_free(&a->entropy);
	pthread_mutex_destroy(&a->throttle_lock);
	pthread_mutex_destroy(&a->rng_lock);
	secure_zero(a, sizeof(*a));
	free(a);
}

/* --- accounts and sessions in the store ---------------------------------- */

int auth_user_create(struct store *st, const char *username, const char *pwhash,
		     int64_t *id)
{
	return store_user_create(st, username, pwhash, id);
}

int auth_user_by_name(struct store *st, const char *username,
		      struct store_user *out)
{
	return store_user_by_name(st, username, out);
}

int auth_user_by_id(struct store *st, int64_t id, struct store_user *out)
{
	return store_user_by_id(st, id, out);
}

int auth_user_update(struct store *st, int64_t id, const char *display_name,
		     const char *settings)
{
	return store_user_update(st, id, display_name, settings);
}

int auth_session_create(struct store *st, const uint8_t hash[32],
			int64_t user_id, int64_t expires_ms)
{
	return store_session_create(st, hash, user_id, expires_ms);
}

int auth_session_delete(struct store *st, const uint8_t hash[32])
{
	return store_session_delete(st, hash);
}

int auth_session_user(struct store *st, const uint8_t hash[32], int64_t now_ms,
		      int64_t *user_id, char username[33], char *reason,
		      size_t reason_len)
{
	int rc = store_session_user(st, hash, now_ms, user_id, username);
	if (rc != STORE_DISABLED || !reason_len)
		return rc;
	struct store_user u;
	reason[0] = '\0';
	if (store_user_by_id(st, *user_id, &u) == STORE_OK) {
		snprintf(reason, reason_len, "%s",
			 u.disabled_reason ? u.disabled_reason : "");
		store_user_fini(&u);
	}
	return rc;
}
