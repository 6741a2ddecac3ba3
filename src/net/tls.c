/* tls: TLS termination with mbedTLS. A listening socket is watched by every
 * event loop (EPOLLEXCLUSIVE, so one loop wakes per connection); the loop
 * that accepts a client owns it for good: it runs the handshake with
 * non-blocking bio callbacks, then creates a socketpair, hands one end to
 * the HTTP server (tls_handoff_fn, with the client's real address) and
 * pumps bytes between the TLS session and the other end until both sides
 * have finished. It deliberately does not look at the bytes it carries,
 * verify client certificates, renegotiate, or offer anything but TLS 1.2
 * with ECDHE and AEAD ciphers (mbedTLS 2.28 has no TLS 1.3 server).
 *
 * Threads and lifetime
 *  - A connection lives on one loop thread from accept to conn_free(), the
 *    one place that closes its sockets and frees it. Nothing else holds a
 *    pointer to it, so there is no reference count.
 *  - The certificate, key and mbedtls_ssl_config are one refcounted
 *    struct tls_cert (tls_cert.c): each connection holds a reference from
 *    accept to free; tls_reload() builds a new one and swaps it under mu,
 *    so open connections keep their pair and a bad new pair changes
 *    nothing.
 *  - The CTR-DRBG, session-ticket keys and session cache are shared by all
 *    loops; mbedTLS locks each of them itself (MBEDTLS_THREADING_PTHREAD).
 *  - Each loop has a loop timer (every TLS_TICK_MS), armed only while it
 *    has a handshake or a closing connection with a deadline, or accepting
 *    is paused after running out of descriptors.
 *
 * The pump. Client to HTTP: mbedtls_ssl_read into the loop's scratch
 * buffer, send to the socketpair; what the socketpair does not take waits
 * in to_app, and the client is not read again until it is gone. HTTP to
 * client: recv up to one record from the socketpair, mbedtls_ssl_write it;
 * a record the TCP socket does not take stays in mbedTLS's output buffer
 * (and a copy in to_tls, which mbedtls_ssl_write wants again), and the
 * socketpair is not read until it is out. So backpressure reaches the HTTP
 * side (and ws's send_queue_max) through the socketpair. A short recv from
 * either socket ends the round: the watchers are level-triggered. Reads
 * from the client go through a 4 KiB read-ahead (bio_recv), so a small
 * request costs one recv rather than three.
 *
 * Ending. EOF from the HTTP side: once the last record is out, send
 * close_notify and shut the TCP write side, then read the client until its
 * EOF (so closing does not reset data in flight), at most TLS_LINGER_MS.
 * EOF or close_notify from the client: shut the socketpair's write side so
 * the HTTP side sees EOF. A TLS or socket error ends both at once.
 *
 * Memory per connection: struct tls_conn (~1 KiB, the mbedtls_ssl_context
 * embedded), mbedTLS's input and output record buffers of 16.3 KiB each
 * (MBEDTLS_SSL_IN/OUT_CONTENT_LEN are compiled into Debian's library, so
 * natter cannot shrink them), ~2 KiB of cipher state, and during the
 * handshake ~3 KiB of handshake state. to_app and to_tls (16 KiB each)
 * exist only while a side is blocked. Measured: an idle keep-alive HTTPS
 * connection holds 18 KiB more resident memory than a plain one (record
 * buffer pages never written stay unbacked), besides the kernel's
 * socketpair buffers. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>

#include "util/addr.h"
#include "util/log.h"
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

static void conn_run(struct tls_conn *c, unsigned which);

static const char *tls_strerror(int rc, char *buf, size_t len)
{
	mbedtls_strerror(rc, buf, len);
	return buf;
}

/* --- certificates ------------------------------------------------------ */

/* A reference to the pair in use (tls_reload may swap it meanwhile). */
static struct tls_cert *cert_current(struct tls *t)
{
	pthread_mutex_lock(&t->mu);
	struct tls_cert *cr = tls_cert_ref(t->cur);
	pthread_mutex_unlock(&t->mu);
	return cr;
}

static struct tls_cert *cert_load(struct tls *t, char *err, size_t errlen)
{
	return tls_cert_load(t->cert_file, t->key_file, &t->drbg, &t->ticket,
			     &t->cache, err, errlen);
}

int tls_reload(struct tls *t, char *err, size_t errlen)
{
	struct tls_cert *cr = cert_load(t, err, errlen);
	if (!cr)
		return -1;
	pthread_mutex_lock(&t->mu);
	struct tls_cert *old = t->cur;
	t->cur = cr;
	pthread_mutex_unlock(&t->mu);
	tls_cert_unref(old);
	tls_cert_log(cr, t->cert_file);
	return 0;
}

void tls_fingerprint(struct tls *t, char out[96])
{
	struct tls_cert *cr = cert_current(t);
	snprintf(out, 96, "%s", tls_cert_fingerprint(cr));
	tls_cert_unref(cr);
}

/* --- timers ------------------------------------------------------------ */

static void timer_arm(struct tls_loop *tl, bool on)
{
	if (tl->timer_on == on)
		return;
	if (on)
		loop_timer_arm(tl->timer, TLS_TICK_MS, TLS_TICK_MS);
	else
		loop_timer_cancel(tl->timer);
	tl->timer_on = on;
}

static void timed_remove(struct tls_conn *c)
{
	if (!c->timed)
		return;
	if (c->tprev)
		c->tprev->tnext = c->tnext;
	else
		c->tl->timed = c->tnext;
	if (c->tnext)
		c->tnext->tprev = c->tprev;
	c->tprev = c->tnext = NULL;
	c->timed = false;
}

/* Give c a deadline (an earlier one stays). */
#define count(t, field)                                                        \
	do {                                                                   \
		if ((t)->metrics)                                              \
			metrics_inc((t)->metrics->field);                      \
	} while (0)

/* A new handshake's deadline: shorter while the handshake cap is more
 * than half used, so half-open handshakes cannot hold it for long. */
static int64_t handshake_deadline_ms(struct tls *t)
{
	int64_t full = t->handshake_timeout_ms;
	if (tls_guard_pressure(t->guard) && full > TLS_PRESSURE_DEADLINE_MS)
		return TLS_PRESSURE_DEADLINE_MS;
	return full;
}

static void timed_add(struct tls_conn *c, int64_t deadline)
{
	if (c->timed) {
		if (deadline < c->deadline)
			c->deadline = deadline;
		return;
	}
	c->deadline = deadline;
	c->timed = true;
	c->tprev = NULL;
	c->tnext = c->tl->timed;
	if (c->tnext)
		c->tnext->tprev = c;
	c->tl->timed = c;
	timer_arm(c->tl, true);
}

/* --- connections ------------------------------------------------------- */

static void conn_free(struct tls_conn *c)
{
	struct tls_loop *tl = c->tl;

	if (c->state == CONN_HANDSHAKE)
		tls_guard_release(tl->t->guard,
				  (const struct sockaddr *)&c->addr);
	timed_remove(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		tl->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->fd_events)
		loop_unwatch(tl->lp, c->fd);
	if (c->app_events)
		loop_unwatch(tl->lp, c->app);
	if (c->app >= 0)
		close(c->app);
	close(c->fd);
	mbedtls_ssl_free(&c->ssl); /* zeroizes its buffers */
	tls_cert_unref(c->cred);
	if (c->to_app)
		secure_zero(c->to_app, TLS_CHUNK);
	if (c->to_tls)
		secure_zero(c->to_tls, TLS_CHUNK);
	free(c->to_app);
	free(c->to_tls);
	if (c->ra != tl->ra)
		free(c->ra);
	free(c);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tls_conn *c = ctx;

	for (;;) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_WRITE;
		if (errno == EPIPE || errno == ECONNRESET)
			return MBEDTLS_ERR_NET_CONN_RESET;
		return MBEDTLS_ERR_NET_SEND_FAILED;
	}
}

/* mbedTLS asks for a record's 5-byte header, then for its body: reading
 * ahead into the loop's buffer gets a small request's records with one
 * recv instead of two (plus the EAGAIN probe pump_in can then skip). Big
 * reads go straight into mbedTLS's buffer. */
static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tls_conn *c = ctx;

	if (c->ra && c->ra_off == c->ra_len) {
		if (c->ra != c->tl->ra)
			free(c->ra);
		c->ra = NULL;
		c->ra_len = c->ra_off = 0;
	}
	if (!c->ra) {
		bool direct = len >= TLS_RA;
		size_t want = direct ? len : TLS_RA;
		ssize_t n;
		do
			n = recv(c->fd, direct ? buf : c->tl->ra, want, 0);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return MBEDTLS_ERR_SSL_WANT_READ;
		if (n < 0)
			return errno == ECONNRESET
				   ? MBEDTLS_ERR_NET_CONN_RESET
				   : MBEDTLS_ERR_NET_RECV_FAILED;
		c->rx_drained = (size_t)n < want;
		if (direct || n == 0)
			return (int)n; /* 0: EOF */
		c->ra = c->tl->ra;
		c->ra_len = (size_t)n;
		c->ra_off = 0;
	}
	size_t k = c->ra_len - c->ra_off < len ? c->ra_len - c->ra_off : len;
	memcpy(buf, c->ra + c->ra_off, k);
	c->ra_off += k;
	return (int)k;
}

/* Before the loop runs another connection: keep what was read ahead. */
static void ra_stash(struct tls_conn *c)
{
	if (c->ra != c->tl->ra)
		return;
	size_t rest = c->ra_len - c->ra_off;
	c->ra = rest ? xmalloc(rest) : NULL;
	if (rest)
		memcpy(c->ra, c->tl->ra + c->ra_off, rest);
	c->ra_len = rest;
	c->ra_off = 0;
}

static void on_fd(void *arg, uint32_t events);
static void on_app(void *arg, uint32_t events);

/* Register what each socket waits for; a mask of 0 unwatches it, so a
 * hung-up socket we are not reading cannot spin the loop. */
static void conn_watch(struct tls_conn *c, uint32_t fd_want, uint32_t app_want)
{
	struct loop *lp = c->tl->lp;

	if (fd_want != c->fd_events) {
		if (!fd_want)
			loop_unwatch(lp, c->fd);
		else if (loop_watch(lp, c->fd, fd_want, on_fd, c) < 0)
			goto fail;
		c->fd_events = fd_want;
	}
	if (c->app >= 0 && app_want != c->app_events) {
		if (!app_want)
			loop_unwatch(lp, c->app);
		else if (loop_watch(lp, c->app, app_want, on_app, c) < 0)
			goto fail;
		c->app_events = app_want;
	}
	return;
fail:
	log_warn("tls cannot watch a socket addr=%s errno=%d", c->addr_text,
		 errno);
	c->failed = true;
}

/* Hand the established session's stream to HTTP. */
static int conn_handoff(struct tls_conn *c)
{
	struct tls *t = c->tl->t;
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       sp) < 0) {
		log_warn("tls cannot create a socketpair addr=%s errno=%d",
			 c->addr_text, errno);
		return -1;
	}
	c->app = sp[0];
	if (atomic_load(&t->closing)) {
		close(sp[1]);
		return -1;
	}
	/* The HTTP side owns sp[1] now, whatever it answers. */
	if (t->handoff(t->handoff_arg, sp[1], (struct sockaddr *)&c->addr,
		       c->addrlen) < 0) {
		log_debug("tls connection refused by http addr=%s",
			  c->addr_text);
		return -1;
	}
	return 0;
}

static void conn_handshake(struct tls_conn *c)
{
	char why[128];
	int rc = mbedtls_ssl_handshake(&c->ssl);

	if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
		conn_watch(c, EPOLLIN | EPOLLRDHUP, 0);
		return;
	}
	if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
		conn_watch(c, EPOLLOUT, 0);
		return;
	}
	if (rc != 0) {
		log_debug("tls handshake failed addr=%s err=\"%s\"",
			  c->addr_text, tls_strerror(rc, why, sizeof(why)));
		count(c->tl->t, tls_handshake_failures);
		c->failed = true;
		return;
	}
	c->state = CONN_OPEN;
	tls_guard_release(c->tl->t->guard, (const struct sockaddr *)&c->addr);
	count(c->tl->t, tls_handshakes);
	timed_remove(c);
	const char *proto = mbedtls_ssl_get_alpn_protocol(&c->ssl);
	log_debug("tls established addr=%s version=%s cipher=%s alpn=%s",
		  c->addr_text, mbedtls_ssl_get_version(&c->ssl),
		  mbedtls_ssl_get_ciphersuite(&c->ssl), proto ? proto : "none");
	if (conn_handoff(c) < 0)
		c->failed = true;
}

/* Send len bytes at p to the socketpair; what it does not take waits in
 * to_app (p may point into to_app). */
static void app_write(struct tls_conn *c, const unsigned char *p, size_t len)
{
	size_t off = 0;

	while (off < len && !c->app_gone) {
		ssize_t n = send(c->app, p + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->to_app)
				c->to_app = xmalloc(TLS_CHUNK);
			memmove(c->to_app, p + off, len - off);
			c->to_app_len = len - off;
			return;
		}
		c->app_gone = true; /* EPIPE: the HTTP side closed */
	}
	c->to_app_len = 0;
}

/* Client to HTTP. */
static void pump_in(struct tls_conn *c, unsigned char *buf)
{
	int budget = TLS_PUMP_BUDGET;

	c->read_wants_write = false;
	app_write(c, c->to_app, c->to_app_len);
	while (!c->client_eof && c->to_app_len == 0) {
		int n = mbedtls_ssl_read(&c->ssl, buf, TLS_CHUNK);
		if (n > 0) {
			app_write(c, buf, (size_t)n);
			/* Bytes in our read-ahead or mbedTLS's buffer wake
			 * nobody: read on. Otherwise, with the socket drained
			 * (or the budget spent) the level-triggered watcher
			 * says when there is more; no EAGAIN probe. */
			if (c->ra_off < c->ra_len ||
			    mbedtls_ssl_check_pending(&c->ssl))
				continue;
			if (--budget <= 0 || c->rx_drained)
				break;
			continue;
		}
		if (n == MBEDTLS_ERR_SSL_WANT_READ)
			break;
		if (n == MBEDTLS_ERR_SSL_WANT_WRITE) {
			c->read_wants_write = true;
			break;
		}
		c->client_eof = true;
		if (n != 0 && n != MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY &&
		    n != MBEDTLS_ERR_SSL_CONN_EOF)
			c->failed = true; /* reset, bad record, alert */
	}
	if (c->client_eof && c->to_app_len == 0 && !c->app_shut) {
		shutdown(c->app, SHUT_WR);
		c->app_shut = true;
	}
}

/* Encrypt and send len bytes at p: 0 when all went out, 1 when the rest
 * waits in to_tls for TCP space, -1 on error. */
static int tls_send(struct tls_conn *c, const unsigned char *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		int n = mbedtls_ssl_write(&c->ssl, p + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n != MBEDTLS_ERR_SSL_WANT_WRITE)
			return -1;
		/* mbedTLS wants the same bytes again once the socket can
		 * take them. */
		if (!c->to_tls)
			c->to_tls = xmalloc(TLS_CHUNK);
		memmove(c->to_tls, p + off, len - off);
		c->to_tls_len = len - off;
		return 1;
	}
	c->to_tls_len = 0;
	return 0;
}

/* HTTP to client. */
static void pump_out(struct tls_conn *c, unsigned char *buf)
{
	int budget = TLS_PUMP_BUDGET;
	int max = mbedtls_ssl_get_max_out_record_payload(&c->ssl);
	size_t chunk = max > 0 && max < TLS_CHUNK ? (size_t)max : TLS_CHUNK;

	if (c->to_tls_len) {
		int rc = tls_send(c, c->to_tls, c->to_tls_len);
		if (rc != 0) {
			c->failed = rc < 0;
			return;
		}
	}
	while (!c->app_eof && budget-- > 0) {
		ssize_t n = recv(c->app, buf, chunk, 0);
		if (n > 0) {
			int rc = tls_send(c, buf, (size_t)n);
			if (rc != 0) {
				c->failed = rc < 0;
				return;
			}
			if ((size_t)n < chunk)
				break; /* drained; level-triggered tells more */
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		c->app_eof = true; /* EOF, or the HTTP side reset */
	}
	if (!c->app_eof || c->notify_sent)
		return;
	/* Whatever the client still sends must not hold us for long. */
	timed_add(c, mono_ms() + TLS_LINGER_MS);
	int rc = mbedtls_ssl_close_notify(&c->ssl);
	c->notify_pending = rc == MBEDTLS_ERR_SSL_WANT_WRITE;
	if (c->notify_pending)
		return;
	if (rc != 0) {
		c->failed = true;
		return;
	}
	shutdown(c->fd, SHUT_WR);
	c->notify_sent = true;
}

/* One round for an established connection: pump both ways (a side only if
 * it woke us or something of it waits in a buffer), then decide what to
 * wait for, or free it. false when c was freed. */
static bool conn_pump(struct tls_conn *c, unsigned which)
{
	unsigned char *buf = c->tl->scratch;
	bool in = (which & RUN_FD) || c->to_app_len || c->ra_off < c->ra_len ||
		  mbedtls_ssl_check_pending(&c->ssl);
	bool out = (which & RUN_APP) || c->to_tls_len || c->notify_pending;

	if (!c->failed && !c->client_eof && in)
		pump_in(c, buf);
	else
		app_write(c, c->to_app, c->to_app_len);
	if (!c->failed && out)
		pump_out(c, buf);
	if (!c->failed && c->client_eof && c->to_app_len == 0 && !c->app_shut) {
		shutdown(c->app, SHUT_WR);
		c->app_shut = true;
	}
	if (c->failed || (c->notify_sent && c->client_eof &&
			  (c->to_app_len == 0 || c->app_gone))) {
		conn_free(c);
		return false;
	}
	uint32_t fd_want = 0, app_want = 0;
	if (!c->client_eof && c->to_app_len == 0)
		fd_want |= EPOLLIN | EPOLLRDHUP;
	if (c->to_tls_len || c->notify_pending || c->read_wants_write)
		fd_want |= EPOLLOUT;
	if (!c->app_eof && !c->to_tls_len)
		app_want |= EPOLLIN;
	if (c->to_app_len && !c->app_gone)
		app_want |= EPOLLOUT;
	conn_watch(c, fd_want, app_want);
	if (c->failed) {
		conn_free(c);
		return false;
	}
	return true;
}

static void conn_run(struct tls_conn *c, unsigned which)
{
	if (c->state == CONN_HANDSHAKE) {
		conn_handshake(c);
		if (c->failed) {
			conn_free(c);
			return;
		}
	}
	if (c->state == CONN_HANDSHAKE || conn_pump(c, which))
		ra_stash(c);
}

static void on_fd(void *arg, uint32_t events)
{
	struct tls_conn *c = arg;

	/* Reset, or both directions closed: nothing more can be said. */
	if (events & (EPOLLERR | EPOLLHUP)) {
		if (c->state == CONN_HANDSHAKE)
			log_debug(
			    "tls client left during the handshake addr=%s",
			    c->addr_text);
		conn_free(c);
		return;
	}
	conn_run(c, RUN_FD);
}

static void on_app(void *arg, uint32_t events)
{
	(void)events; /* a hang-up shows as EOF or EPIPE in the pump */
	conn_run(arg, RUN_APP);
}

static void conn_new(struct tls_loop *tl, int fd,
		     const struct sockaddr_storage *ss, socklen_t len)
{
	struct tls *t = tl->t;
	struct tls_conn *c = xcalloc(1, sizeof(*c));
	int one = 1, rc;

	c->tl = tl;
	c->fd = fd;
	c->app = -1;
	c->state = CONN_HANDSHAKE;
	memcpy(&c->addr, ss, len);
	c->addrlen = len;
	if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)ss)->sin6_addr,
			  c->addr_text, sizeof(c->addr_text));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			  c->addr_text, sizeof(c->addr_text));
	/* Records are whole messages: do not hold them back (Nagle). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->next = tl->conns;
	if (c->next)
		c->next->prev = c;
	tl->conns = c;
	c->started = mono_ms();
	timed_add(c, c->started + handshake_deadline_ms(t));

	c->cred = cert_current(t);
	mbedtls_ssl_init(&c->ssl);
	rc = mbedtls_ssl_setup(&c->ssl, tls_cert_conf(c->cred));
	if (rc != 0) {
		log_warn("tls cannot set up a session addr=%s err=-0x%04x",
			 c->addr_text, (unsigned)-rc);
		conn_free(c);
		return;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	/* The ClientHello is often there already. */
	conn_run(c, RUN_FD);
}

/* --- accepting --------------------------------------------------------- */

static void accept_watch(struct tls_loop *tl, bool on);

/* A handshake refused at accept: counted, and a warning at most every
 * TLS_WARN_MS with how many were refused in between (a flood must be
 * visible without writing a line per connection). */
static void refuse(struct tls *t, enum tls_guard_verdict v,
		   const struct sockaddr_storage *ss)
{
	if (v == TLS_GUARD_ADDR)
		count(t, tls_refused_addr);
	else
		count(t, tls_refused_global);
	uint64_t more;
	if (!tls_guard_warn_due(t->guard, mono_ms(), TLS_WARN_MS, &more))
		return;
	char addr[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)ss)->sin6_addr, addr,
			  sizeof(addr));
	else if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			  addr, sizeof(addr));
	unsigned from = 0;
	unsigned total =
	    tls_guard_count(t->guard, (const struct sockaddr *)ss, &from);
	log_warn(
	    "tls handshakes refused reason=%s addr=%s from_addr=%u "
	    "in_progress=%u max=%u max_per_addr=%u refused_since_last=%llu",
	    v == TLS_GUARD_ADDR ? "per_addr" : "global", addr, from, total,
	    t->max_handshakes, t->max_handshakes_addr,
	    (unsigned long long)more);
}

static void on_accept(void *arg, uint32_t events)
{
	struct tls_accept *a = arg;
	struct tls_loop *tl = a->tl;
	struct tls *t = tl->t;
	(void)events;

	for (int i = 0; i < TLS_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(a->fd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of descriptors or memory: the listener stays
			 * readable, so stop watching it for a while. */
			log_warn("tls accept failed, pausing errno=%d", errno);
			accept_watch(tl, false);
			tl->paused_until = mono_ms() + TLS_PAUSE_MS;
			timer_arm(tl, true);
			return;
		}
		if (atomic_load(&t->closing)) {
			close(fd);
			continue;
		}
		enum tls_guard_verdict v =
		    tls_guard_admit(t->guard, (const struct sockaddr *)&ss);
		if (v != TLS_GUARD_OK) {
			refuse(t, v, &ss);
			close(fd);
			continue;
		}
		conn_new(tl, fd, &ss, len);
	}
}

static void accept_watch(struct tls_loop *tl, bool on)
{
	struct tls *t = tl->t;

	if (tl->accepting == on)
		return;
	for (unsigned i = 0; i < t->nlisteners; i++) {
		if (!on) {
			loop_unwatch(tl->lp, tl->acc[i].fd);
			continue;
		}
		/* Exclusive: one loop wakes per incoming connection. */
		if (loop_watch(tl->lp, tl->acc[i].fd, EPOLLIN | EPOLLEXCLUSIVE,
			       on_accept, &tl->acc[i]) < 0)
			log_error("tls cannot watch listener port=%u errno=%d",
				  t->listeners[i].port, errno);
	}
	tl->accepting = on;
}

static void on_timer(void *arg)
{
	struct tls_loop *tl = arg;
	int64_t now = mono_ms();
	bool pressure = tls_guard_pressure(tl->t->guard);

	for (struct tls_conn *c = tl->timed, *next; c; c = next) {
		next = c->tnext;
		/* Pressure seen once shortens the deadline of every
		 * handshake then in progress, for good: each loop sees it
		 * on its next tick, before the oldest reach the short
		 * deadline, so all of them go, not just those until the
		 * count falls back under half the cap. */
		if (pressure && c->state == CONN_HANDSHAKE &&
		    c->deadline > c->started + TLS_PRESSURE_DEADLINE_MS)
			c->deadline = c->started + TLS_PRESSURE_DEADLINE_MS;
		if (now < c->deadline)
			continue;
		if (c->state == CONN_HANDSHAKE) {
			log_debug("tls handshake timed out addr=%s",
				  c->addr_text);
			count(tl->t, tls_handshake_timeouts);
		}
		conn_free(c);
	}
	if (tl->paused_until && now >= tl->paused_until &&
	    !atomic_load(&tl->t->closing)) {
		tl->paused_until = 0;
		accept_watch(tl, true);
	}
	if (!tl->timed && !tl->paused_until)
		timer_arm(tl, false);
}

static void loop_begin_task(void *arg)
{
	struct tls_loop *tl = arg;

	if (!atomic_load(&tl->t->closing))
		accept_watch(tl, true);
}

static void loop_quiesce_task(void *arg)
{
	struct tls_loop *tl = arg;
	struct tls *t = tl->t;

	accept_watch(tl, false);
	tl->paused_until = 0;
	pthread_mutex_lock(&t->mu);
	if (--t->quiesce_left == 0)
		pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->mu);
}

/* --- listeners --------------------------------------------------------- */

static int listener_open(struct tls_listener *l, const char *spec, char *err,
			 size_t errlen)
{
	struct addr a, bound;
	char why[256];
	int one = 1, fd = -1;

	l->fd = -1;
	l->spec = xstrdup(spec);
	bound.len = sizeof(bound.ss);
	if (addr_parse(spec, &a, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "tls-listen %s", why);
		return -1;
	}
	fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		goto sys;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a.ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 ||
	    listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&bound.ss, &bound.len) < 0)
		goto sys;
	l->fd = fd;
	l->port = addr_port(&bound);
	return 0;
sys:
	snprintf(err, errlen, "tls-listen '%s': %s", spec, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* --- lifecycle --------------------------------------------------------- */

struct tls *tls_new(const struct tls_config *cfg, char *err, size_t errlen)
{
	static const char pers[] = "natterd tls";
	struct tls *t = xcalloc(1, sizeof(*t));
	char why[128];
	int rc;

	t->cert_file = xstrdup(cfg->cert_file);
	t->key_file = xstrdup(cfg->key_file);
	t->handshake_timeout_ms = cfg->handshake_timeout_s * 1000;
	t->max_handshakes = cfg->max_handshakes;
	t->max_handshakes_addr = cfg->max_handshakes_addr
				     ? cfg->max_handshakes_addr
				     : cfg->max_handshakes;
	t->guard = tls_guard_new(t->max_handshakes, t->max_handshakes_addr);
	t->metrics = cfg->metrics;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cond, NULL);
	atomic_init(&t->closing, false);
	mbedtls_entropy_init(&t->entropy);
	mbedtls_ctr_drbg_init(&t->drbg);
	mbedtls_ssl_ticket_init(&t->ticket);
	mbedtls_ssl_cache_init(&t->cache);
	mbedtls_ssl_cache_set_max_entries(&t->cache, TLS_CACHE_ENTRIES);
	mbedtls_ssl_cache_set_timeout(&t->cache, TLS_CACHE_TIMEOUT_S);

	t->loops = xcalloc(cfg->nloops, sizeof(*t->loops));
	t->nloops = cfg->nloops;
	for (unsigned i = 0; i < t->nloops; i++) {
		t->loops[i].t = t;
		t->loops[i].lp = cfg->loops[i];
	}

	rc = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
				   (const unsigned char *)pers, sizeof(pers));
	if (rc == 0)
		rc = mbedtls_ssl_ticket_setup(
		    &t->ticket, mbedtls_ctr_drbg_random, &t->drbg,
		    MBEDTLS_CIPHER_AES_256_GCM, TLS_TICKET_LIFETIME_S);
	if (rc != 0) {
		snprintf(err, errlen,
			 "tls: cannot seed the random generator: %s",
			 tls_strerror(rc, why, sizeof(why)));
		goto fail;
	}
	t->cur = cert_load(t, err, errlen);
	if (!t->cur)
		goto fail;
	tls_cert_log(t->cur, t->cert_file);

	t->listeners = xcalloc(cfg->nlisten, sizeof(*t->listeners));
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		t->nlisteners++;
		if (listener_open(&t->listeners[i], cfg->listen[i], err,
				  errlen) < 0)
			goto fail;
	}
	for (unsigned i = 0; i < t->nloops; i++) {
		struct tls_loop *tl = &t->loops[i];
		/* Armed and fired on tl->lp's thread only (timer_arm). */
		tl->timer = loop_timer_new(tl->lp, on_timer, tl);
		tl->acc = xcalloc(t->nlisteners, sizeof(*tl->acc));
		for (unsigned j = 0; j < t->nlisteners; j++) {
			tl->acc[j].tl = tl;
			tl->acc[j].fd = t->listeners[j].fd;
		}
	}
	return t;
fail:
	tls_free(t);
	return NULL;
}

unsigned tls_port(const struct tls *t, unsigned i)
{
	return i < t->nlisteners ? t->listeners[i].port : 0;
}

void tls_start(struct tls *t, tls_handoff_fn fn, void *arg)
{
	t->handoff = fn;
	t->handoff_arg = arg;
	for (unsigned i = 0; i < t->nloops; i++)
		loop_post(t->loops[i].lp, loop_begin_task, &t->loops[i]);
	for (unsigned i = 0; i < t->nlisteners; i++)
		log_info("listening tls addr=%s port=%u", t->listeners[i].spec,
			 t->listeners[i].port);
}

void tls_quiesce(struct tls *t)
{
	if (!t || atomic_exchange(&t->closing, true))
		return;
	pthread_mutex_lock(&t->mu);
	t->quiesce_left = t->nloops;
	pthread_mutex_unlock(&t->mu);
	for (unsigned i = 0; i < t->nloops; i++)
		loop_post(t->loops[i].lp, loop_quiesce_task, &t->loops[i]);
	pthread_mutex_lock(&t->mu);
	while (t->quiesce_left > 0)
		pthread_cond_wait(&t->cond, &t->mu);
	pthread_mutex_unlock(&t->mu);
	/* Unwatched everywhere: close them, so new clients are refused
	 * rather than left waiting in the backlog. */
	for (unsigned i = 0; i < t->nlisteners; i++) {
		if (t->listeners[i].fd >= 0)
			close(t->listeners[i].fd);
		t->listeners[i].fd = -1;
	}
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < t->nloops; i++) {
		struct tls_loop *tl = &t->loops[i];
		while (tl->conns)
			conn_free(tl->conns);
		loop_timer_free(tl->timer);
		if (tl->acc)
			accept_watch(tl, false);
		free(tl->acc);
	}
	for (unsigned i = 0; i < t->nlisteners; i++) {
		if (t->listeners[i].fd >= 0)
			close(t->listeners[i].fd);
		free(t->listeners[i].spec);
	}
	free(t->listeners);
	free(t->loops);
	tls_cert_unref(t->cur);
	mbedtls_ssl_cache_free(&t->cache);
	mbedtls_ssl_ticket_free(&t->ticket);
	mbedtls_ctr_drbg_free(&t->drbg);
	mbedtls_entropy_free(&t->entropy);
	pthread_cond_destroy(&t->cond);
	tls_guard_free(t->guard);
	pthread_mutex_destroy(&t->mu);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}
