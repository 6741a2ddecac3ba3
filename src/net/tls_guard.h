/* tls_guard: who may start a TLS handshake. A global cap alone let one
 * address holding ~1,100 half-sent ClientHellos refuse every other HTTPS
 * client for the whole handshake timeout. The guard counts handshakes in
 * progress overall and per client address (an IPv6 client by its /64,
 * which one host usually holds whole) and admits a new one only under
 * both caps; past half the global cap it says the server is under
 * pressure, when tls shortens its handshake deadline. It also decides
 * when a refusal is worth a warning (at most one per interval, with the
 * count of the ones not logged).
 *
 * Thread-safe (one mutex; every loop accepts). No sockets, no logging. */
#ifndef NATTER_TLS_GUARD_H
#define NATTER_TLS_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct tls_guard;

enum tls_guard_verdict {
	TLS_GUARD_OK,	/* admitted: tls_guard_release it when done */
	TLS_GUARD_FULL, /* the global cap is reached */
	TLS_GUARD_ADDR, /* the address's cap is reached */
};

/* Caps: handshakes in progress overall and from one address (both >= 1).
 * Caller frees with tls_guard_free. */
struct tls_guard *tls_guard_new(unsigned max_global, unsigned max_addr);
void tls_guard_free(struct tls_guard *g);

/* Admit a handshake from sa (AF_INET or AF_INET6; others count as one
 * address). */
enum tls_guard_verdict tls_guard_admit(struct tls_guard *g,
				       const struct sockaddr *sa);
/* The handshake admitted for sa ended (established, failed or timed
 * out). */
void tls_guard_release(struct tls_guard *g, const struct sockaddr *sa);
/* Handshakes in progress now, overall and from sa's address. */
unsigned tls_guard_count(struct tls_guard *g, const struct sockaddr *sa,
			 unsigned *from_addr);
/* Whether more than half the global cap is in use. */
bool tls_guard_pressure(struct tls_guard *g);
/* Record one refusal at now_ms: true when the caller should log it now
 * (the first, then at most once per interval_ms), with *suppressed the
 * refusals since the last logged one (not counting this one). */
bool tls_guard_warn_due(struct tls_guard *g, int64_t now_ms,
			int64_t interval_ms, uint64_t *suppressed);

#endif
