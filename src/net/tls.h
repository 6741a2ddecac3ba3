/* tls: TLS termination with mbedTLS in front of the HTTP server. Listening
 * sockets are watched by every event loop; the loop that accepts a client
 * does its handshake (non-blocking, no thread per connection), then pumps
 * bytes between the TLS session and one end of a socketpair whose other end
 * it hands to the HTTP server with the client's real address, so HTTP,
 * WebSocket, SSE and long-poll run over TLS unchanged.
 *
 * Settings: TLS 1.2 (mbedTLS 2.28 has no TLS 1.3 server), ECDHE with AEAD
 * ciphers only, in the server's order, ALPN "http/1.1", session tickets and
 * a session cache, CTR-DRBG seeded from the OS. It does not verify client
 * certificates, speak HTTP, or know what the bytes it carries mean. */
#ifndef NATTER_TLS_H
#define NATTER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "net/loop.h"
#include "util/metrics.h"

struct tls;

/* How many decrypted bytes one TLS connection has handed to the HTTP
 * side so far: the kernel's count of received bytes (TCP_INFO), which the
 * header deadline watches on a plain connection to see the next request
 * start, does not exist on a socketpair. Shared by the pump, which counts,
 * and the HTTP connection, which reads it; each holds a reference. */
struct tls_rx {
	atomic_uint_fast64_t bytes;
	atomic_int refs;
};
/* Drop a reference; the last one frees it. NULL is fine. */
void tls_rx_unref(struct tls_rx *rx);

/* Takes ownership of fd (one end of a socketpair carrying the decrypted
 * stream) and of a reference to rx (its byte count) in every case; addr is
 * the client's. Runs on a loop thread. Returns 0, or -1 when the
 * connection was refused (fd closed, rx released). */
typedef int (*tls_handoff_fn)(void *arg, int fd, const struct sockaddr *addr,
			      socklen_t addrlen, struct tls_rx *rx);

struct tls_config {
	const char *const *listen; /* numeric "ADDR:PORT" / "[ADDR]:PORT" */
	unsigned nlisten;
	const char *cert_file; /* PEM chain, leaf first */
	const char *key_file;  /* PEM private key */
	unsigned handshake_timeout_s;
	unsigned max_handshakes; /* in progress at once, all loops together */
	/* in progress at once from one address (an IPv6 /64); 0: no cap of
	 * its own. While more than half of max_handshakes are in progress,
	 * every handshake has 2 s at most. */
	unsigned max_handshakes_addr;
	struct metrics *metrics; /* handshake counters; NULL: none */
	struct loop **loops;	 /* borrowed; running before tls_start */
	unsigned nloops;
};

/* --- lifecycle ------------------------------------------------------------ */

/* Load the certificate and key and bind every listen address (nothing is
 * accepted yet). NULL on failure with err naming the file or address. */
struct tls *tls_new(const struct tls_config *cfg, char *err, size_t errlen);
/* The port listen address i is bound to (it may have been 0). */
unsigned tls_port(const struct tls *t, unsigned i);
/* Start accepting on every loop; each established session's stream goes to
 * fn(arg, ...). Logs "listening tls addr=... port=..." per address. */
void tls_start(struct tls *t, tls_handoff_fn fn, void *arg);
/* Stop accepting and handing over (first step of shutdown): returns once
 * every loop has stopped, so fn is not called afterwards. Sessions already
 * handed over keep running until their HTTP side or client closes. */
void tls_quiesce(struct tls *t);
/* After loop_stop() and before loop_free(): close every remaining
 * connection and free. NULL is fine. */
void tls_free(struct tls *t);

/* --- certificates --------------------------------------------------------- */

/* Re-read cert_file and key_file (any thread, e.g. on SIGHUP). New
 * connections use the new pair, open ones keep theirs. 0, or -1 with err
 * when the new pair is unusable; the old pair then stays in use. */
int tls_reload(struct tls *t, char *err, size_t errlen);
/* SHA-256 fingerprint of the certificate in use, "AB:CD:...". */
void tls_fingerprint(struct tls *t, char out[96]);
/* Making and loading pairs (--tls-self-signed): net/tls_cert.h. */

#endif
