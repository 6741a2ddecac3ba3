/* tls: TLS termination with mbedTLS. A listening socket is watched by every
 * event loop (EPOLLEXCLUSIVE, so one loop wakes per connection); the loop
 * that accepts a client owns it for good: it runs the handshake with
 * non-blocking bio callbacks, then creates a socketpair, hands one end to
 * the HTTP server (tls_handoff_fn, with the client's real address) and
 * pumps bytes between the TLS session and the other end until both sides
 * have finished (the connection's handshake and pump are in tls_pump.c;
 * certificates, accepting, listeners and timers here). It deliberately does not
 * look at the bytes it carries, verify client certificates, renegotiate, or
 * offer anything but TLS 1.2 with ECDHE and AEAD ciphers (mbedTLS 2.28 has no
 * TLS 1.3 server).
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
#include "net/tls_internal.h"
#include "util/metrics.h"
#include "util/util.h"

const char *tls_strerror(int rc, char *buf, size_t len)
{
	mbedtls_strerror(rc, buf, len);
	return buf;
}

/* --- certificates ------------------------------------------------------ */

/* A reference to the pair in use (tls_reload may swap it meanwhile). */
struct tls_cert *cert_current(struct tls *t)
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

void timed_remove(struct tls_conn *c)
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

/* A new handshake's deadline: shorter while the handshake cap is more
 * than half used, so half-open handshakes cannot hold it for long. */
int64_t handshake_deadline_ms(struct tls *t)
{
	int64_t full = t->handshake_timeout_ms;
	if (tls_guard_pressure(t->guard) && full > TLS_PRESSURE_DEADLINE_MS)
		return TLS_PRESSURE_DEADLINE_MS;
	return full;
}

/* Give c a deadline (an earlier one stays). */
void timed_add(struct tls_conn *c, int64_t deadline)
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
