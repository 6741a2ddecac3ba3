/* tls_guard: see tls_guard.h. Per-address counts live in an open-
 * addressing table keyed by the address bytes (IPv4: 4; IPv6: the first
 * 8). An entry exists only while its count is above zero; removal uses
 * backward-shift deletion, so lookups never meet tombstones. The table
 * has at least twice as many slots as the global cap allows entries, so
 * it never fills. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls_guard.h"
#include "util/util.h"

struct slot {
	uint8_t key[9]; /* family byte, then the address bytes */
	unsigned count; /* 0: empty */
};

struct tls_guard {
	pthread_mutex_t mu;
	unsigned max_global, max_addr;
	unsigned total;
	struct slot *slots;
	size_t mask; /* slots - 1 (a power of two) */
	int64_t last_warn_ms;
	bool warned;
	uint64_t suppressed;
};

static void key_of(const struct sockaddr *sa, uint8_t key[9])
{
	memset(key, 0, 9);
	if (sa && sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(
		    key + 1,
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    4);
	} else if (sa && sa->sa_family == AF_INET6) {
		key[0] = 6;
		memcpy(
		    key + 1,
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    8);
	}
}

static size_t hash(const uint8_t key[9])
{
	return (size_t)table_hash(key, 9);
}

/* Under mu: the slot holding key, or the empty slot where it would go. */
static size_t find(const struct tls_guard *g, const uint8_t key[9])
{
	size_t i = hash(key) & g->mask;
	while (g->slots[i].count && memcmp(g->slots[i].key, key, 9))
		i = (i + 1) & g->mask;
	return i;
}

/* Under mu: empty slot i, shifting later entries of its run back. */
static void slot_clear(struct tls_guard *g, size_t i)
{
	size_t j = i;
	g->slots[i].count = 0;
	for (;;) {
		j = (j + 1) & g->mask;
		if (!g->slots[j].count)
			return;
		size_t home = hash(g->slots[j].key) & g->mask;
		/* Move j back to i unless its home lies cyclically in
		 * (i, j]. */
		bool stays =
		    i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (stays)
			continue;
		g->slots[i] = g->slots[j];
		g->slots[j].count = 0;
		i = j;
	}
}

struct tls_guard *tls_guard_new(unsigned max_global, unsigned max_addr)
{
	struct tls_guard *g = xcalloc(1, sizeof(*g));
	pthread_mutex_init(&g->mu, NULL);
	g->max_global = max_global ? max_global : 1;
	g->max_addr = max_addr ? max_addr : 1;
	size_t n = 16;
	while (n < 2 * (size_t)g->max_global)
		n *= 2;
	g->slots = xcalloc(n, sizeof(*g->slots));
	g->mask = n - 1;
	return g;
}

void tls_guard_free(struct tls_guard *g)
{
	if (!g)
		return;
	pthread_mutex_destroy(&g->mu);
	free(g->slots);
	free(g);
}

enum tls_guard_verdict tls_guard_admit(struct tls_guard *g,
				       const struct sockaddr *sa)
{
	uint8_t key[9];
	key_of(sa, key);
	enum tls_guard_verdict v = TLS_GUARD_OK;
	pthread_mutex_lock(&g->mu);
	size_t i = find(g, key);
	if (g->total >= g->max_global) {
		v = TLS_GUARD_FULL;
	} else if (g->slots[i].count >= g->max_addr) {
		v = TLS_GUARD_ADDR;
	} else {
		if (!g->slots[i].count)
			memcpy(g->slots[i].key, key, 9);
		g->slots[i].count++;
		g->total++;
	}
	pthread_mutex_unlock(&g->mu);
	return v;
}

void tls_guard_release(struct tls_guard *g, const struct sockaddr *sa)
{
	uint8_t key[9];
	key_of(sa, key);
	pthread_mutex_lock(&g->mu);
	size_t i = find(g, key);
	if (g->slots[i].count) {
		g->total--;
		if (--g->slots[i].count == 0)
			slot_clear(g, i);
	}
	pthread_mutex_unlock(&g->mu);
}

unsigned tls_guard_count(struct tls_guard *g, const struct sockaddr *sa,
			 unsigned *from_addr)
{
	uint8_t key[9];
	key_of(sa, key);
	pthread_mutex_lock(&g->mu);
	unsigned total = g->total;
	if (from_addr)
		*from_addr = g->slots[find(g, key)].count;
	pthread_mutex_unlock(&g->mu);
	return total;
}

bool tls_guard_pressure(struct tls_guard *g)
{
	pthread_mutex_lock(&g->mu);
	bool p = g->total > g->max_global / 2;
	pthread_mutex_unlock(&g->mu);
	return p;
}

bool tls_guard_warn_due(struct tls_guard *g, int64_t now_ms,
			int64_t interval_ms, uint64_t *suppressed)
{
	bool due;
	pthread_mutex_lock(&g->mu);
	due = !g->warned || now_ms - g->last_warn_ms >= interval_ms;
	if (due) {
		*suppressed = g->suppressed;
		g->suppressed = 0;
		g->last_warn_ms = now_ms;
		g->warned = true;
	} else {
		g->suppressed++;
	}
	pthread_mutex_unlock(&g->mu);
	return due;
}
