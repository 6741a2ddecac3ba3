/* tls_internal: what tls.c (certificates, timers, accepting, listeners,
 * lifecycle) and tls_pump.c (one connection: bio callbacks, handshake,
 * handoff, the pump) share: the structs, limits and the few functions
 * each calls in the other. Internal to net's TLS: no other file includes
 * it; the interface is net/tls.h. */
#ifndef NATTER_NET_TLS_INTERNAL_H
#define NATTER_NET_TLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>

#include "util/addr.h"
#include "net/tls.h"
#include "net/tls_cert.h"
#include "net/tls_guard.h"
#include "util/metrics.h"
#include "util/util.h"

#define TLS_TICK_MS 250
#define TLS_LINGER_MS 5000
#define TLS_PAUSE_MS 1000 /* accepting paused after EMFILE and the like */
#define TLS_WARN_MS 10000 /* at most one refusal warning this often */
/* The handshake deadline while more than half the handshake cap is in use
 * (honest clients finish in well under a second). */
#define TLS_PRESSURE_DEADLINE_MS 2000
#define TLS_ACCEPT_BATCH 16
#define TLS_PUMP_BUDGET 8 /* records each way per wake-up */
#define TLS_CHUNK 16384	  /* the most plaintext one record carries */
#define TLS_RA 4096	  /* read-ahead: a request's records in one recv */
#define TLS_TICKET_LIFETIME_S 86400
#define TLS_CACHE_ENTRIES 1000
#define TLS_CACHE_TIMEOUT_S 3600

struct tls_listener {
	int fd;
	unsigned port;
	char *spec;
};

struct tls_loop;

/* One listener as watched by one loop. */
struct tls_accept {
	struct tls_loop *tl;
	int fd;
};

struct tls_conn;

struct tls_loop {
	struct tls *t;
	struct loop *lp;
	struct tls_accept *acc;	  /* one per listener */
	struct loop_timer *timer; /* deadlines and the accept pause */
	bool timer_on;
	bool accepting;		/* listeners watched */
	int64_t paused_until;	/* mono_ms; 0: not paused */
	struct tls_conn *conns; /* every connection on this loop */
	struct tls_conn *timed; /* those with a deadline */
	unsigned char scratch[TLS_CHUNK];
	unsigned char ra[TLS_RA]; /* read-ahead of the connection running */
};

struct tls {
	char *cert_file, *key_file;
	unsigned handshake_timeout_ms;
	unsigned max_handshakes, max_handshakes_addr;
	struct tls_guard *guard; /* handshakes in progress: admission */
	struct metrics *metrics; /* NULL: not counted */
	struct tls_listener *listeners;
	unsigned nlisteners;
	struct tls_loop *loops;
	unsigned nloops;
	tls_handoff_fn handoff;
	void *handoff_arg;

	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_ticket_context ticket;
	mbedtls_ssl_cache_context cache;

	pthread_mutex_t mu; /* cur; quiesce_left */
	pthread_cond_t cond;
	struct tls_cert *cur;
	unsigned quiesce_left;
	atomic_bool closing; /* tls_quiesce: no accepts, no handoffs */
};

enum conn_state { CONN_HANDSHAKE, CONN_OPEN };

struct tls_conn {
	struct tls_conn *prev, *next;	/* tls_loop.conns */
	struct tls_conn *tprev, *tnext; /* tls_loop.timed */
	struct tls_loop *tl;
	struct tls_cert *cred; /* a reference */
	mbedtls_ssl_context ssl;
	int fd;	 /* the client's TCP socket */
	int app; /* our end of the socketpair; -1 before the handoff */
	struct tls_rx *rx; /* bytes sent to app (a reference); NULL before */
	uint32_t fd_events, app_events; /* watched masks; 0: not watched */
	enum conn_state state;
	bool timed;
	int64_t deadline; /* mono_ms, while timed */
	int64_t started;  /* mono_ms at accept */
	bool failed;	  /* TLS or socket error: free at once */
	bool client_eof;  /* close_notify, EOF or reset from the client */
	bool app_eof;	  /* the HTTP side has no more to say */
	bool app_gone;	  /* the HTTP side closed: drop what the client sends */
	bool app_shut;	  /* we shut the socketpair's write side */
	bool read_wants_write; /* mbedtls_ssl_read must write first */
	bool notify_pending;   /* close_notify waits for TCP space */
	bool notify_sent;      /* close_notify out, TCP write side shut */
	unsigned char *to_app; /* decrypted bytes the socketpair did not take */
	size_t to_app_len;
	unsigned char *to_tls; /* plaintext mbedtls_ssl_write wants again */
	size_t to_tls_len;
	/* Bytes read from the client ahead of mbedTLS: in tl->ra while the
	 * connection runs, moved to the heap if any are left (ra_stash). */
	unsigned char *ra;
	size_t ra_len, ra_off;
	bool rx_drained; /* the last recv got less than it asked for */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_text[INET6_ADDRSTRLEN];
};

/* Which socket woke a connection up (conn_run): each side is read only
 * when it may have something, which saves an EAGAIN probe per wake-up. */
enum { RUN_FD = 1, RUN_APP = 2 };

#define count(t, field)                                                        \
	do {                                                                   \
		if ((t)->metrics)                                              \
			metrics_inc((t)->metrics->field);                      \
	} while (0)

/* tls.c */
void timed_add(struct tls_conn *c, int64_t deadline);
struct tls_cert *cert_current(struct tls *t);
const char *tls_strerror(int rc, char *buf, size_t len);
int64_t handshake_deadline_ms(struct tls *t);
void timed_remove(struct tls_conn *c);

/* tls_pump.c */
void ra_stash(struct tls_conn *c);
void conn_free(struct tls_conn *c);
void conn_run(struct tls_conn *c, unsigned which);
void conn_new(struct tls_loop *tl, int fd, const struct sockaddr_storage *ss,
	      socklen_t len);
int bio_recv(void *ctx, unsigned char *buf, size_t len);

#endif
