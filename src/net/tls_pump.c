/* tls_pump: one TLS connection on its loop: the bio callbacks with
 * read-ahead, the non-blocking handshake, the handoff of a socketpair end
 * to http, and the pump that carries records each way within a budget per
 * wake-up, until both sides have finished; conn_free() is the one place
 * that closes its sockets.
 *
 * It deliberately does not do: accepting, the admission guard, listeners,
 * timers and deadlines, certificates, or start and stop (tls.c, whose top
 * comment describes the whole: threads, lifetime, limits). */
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
#include "net/tls_internal.h"
#include "util/metrics.h"
#include "util/util.h"

/* --- connections ------------------------------------------------------- */

void conn_free(struct tls_conn *c)
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
	tls_rx_unref(c->rx);
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
int bio_recv(void *ctx, unsigned char *buf, size_t len)
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
void ra_stash(struct tls_conn *c)
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

void tls_rx_unref(struct tls_rx *rx)
{
	if (rx && atomic_fetch_sub(&rx->refs, 1) == 1)
		free(rx);
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
	c->rx = xcalloc(1, sizeof(*c->rx));
	atomic_init(&c->rx->refs, 2);
	/* The HTTP side owns sp[1] and a reference to rx now, whatever it
	 * answers. */
	if (t->handoff(t->handoff_arg, sp[1], (struct sockaddr *)&c->addr,
		       c->addrlen, c->rx) < 0) {
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
		/* Counted before the send, what is not taken given back after:
		 * once the bytes are in, the HTTP side may read, answer and go
		 * idle (deadline.c snapshots this count then) before this
		 * thread runs again; counted after, those bytes would later
		 * look like the next request's first ones, and an idle
		 * keep-alive connection would meet the header deadline. */
		size_t want = len - off;
		atomic_fetch_add(&c->rx->bytes, (uint_fast64_t)want);
		ssize_t n = send(c->app, p + off, want, MSG_NOSIGNAL);
		size_t took = n > 0 ? (size_t)n : 0;
		if (took < want)
			atomic_fetch_sub(&c->rx->bytes,
					 (uint_fast64_t)(want - took));
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

void conn_run(struct tls_conn *c, unsigned which)
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

void conn_new(struct tls_loop *tl, int fd, const struct sockaddr_storage *ss,
	      socklen_t len)
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
