/* deadline: see deadline.h. One list of connections under one mutex, and
 * a thread that sweeps it. Invariants:
 *   1. A connection is on the list from deadline_conn_add to
 *      deadline_conn_remove, and its fd is open all that time (the caller
 *      removes it before closing): so shutdown() under the mutex never
 *      hits a descriptor that was closed and reused.
 *   2. The checker closes a connection at most once: it moves it to
 *      DEADLINE_EXEMPT, which no later phase report leaves.
 *   3. Phases change only under the mutex, so the sweep sees each
 *      connection's phase, start and byte count together. */
#define _GNU_SOURCE    /* pthread_setname_np */
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received */
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http/deadline.h"
#include "util/log.h"
#include "util/util.h"

struct deadline {
	struct deadline_rules rules;
	atomic_uint_fast64_t *slow_headers, *slow_body;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct deadline_conn *head;
	bool stop;
	pthread_t thread;
};

enum deadline_verdict deadline_judge(const struct deadline_rules *r,
				     enum deadline_phase phase,
				     int64_t since_ms, uint64_t bytes,
				     int64_t now_ms)
{
	int64_t age = now_ms - since_ms;
	switch (phase) {
	case DEADLINE_HEADERS:
		return age >= r->header_ms ? DEADLINE_SLOW_HEADERS
					   : DEADLINE_OK;
	case DEADLINE_BODY:
		/* A grace of header_ms, then the average rate since the
		 * headers must keep up. */
		if (!r->min_rate || age < r->header_ms)
			return DEADLINE_OK;
		return bytes * 1000 < r->min_rate * (uint64_t)age
			   ? DEADLINE_SLOW_BODY
			   : DEADLINE_OK;
	default:
		return DEADLINE_OK;
	}
}

/* Bytes the kernel has received on a TCP socket so far; -1 where it
 * cannot say (AF_UNIX socketpairs, old kernels). */
static int64_t tcp_rx_bytes(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) +
		      sizeof(ti.tcpi_bytes_received))
		return -1;
	return (int64_t)ti.tcpi_bytes_received;
}

/* Under d->mu: the connection's received bytes so far, from its counter
 * or the kernel; -1 where neither can say. */
static int64_t rx_bytes(const struct deadline_conn *dc)
{
	if (dc->rx_count)
		return (int64_t)(atomic_load(dc->rx_count) & INT64_MAX);
	return tcp_rx_bytes(dc->fd);
}

unsigned deadline_sweep(struct deadline *d, int64_t now)
{
	unsigned closed = 0;
	pthread_mutex_lock(&d->mu);
	for (struct deadline_conn *dc = d->head; dc; dc = dc->next) {
		/* A keep-alive connection between requests: idle until a
		 * byte of the next request arrives, when its header
		 * deadline starts (an idle one is libmicrohttpd's
		 * connection timeout's business). */
		if (dc->phase == DEADLINE_HEADERS && dc->idle_rx >= 0) {
			int64_t rx = rx_bytes(dc);
			if (rx <= dc->idle_rx) /* only growth is a request */
				continue;
			dc->idle_rx = -1;
			dc->since_ms = now;
			continue;
		}
		enum deadline_verdict v = deadline_judge(
		    &d->rules, dc->phase, dc->since_ms, dc->bytes, now);
		if (v == DEADLINE_OK)
			continue;
		/* End-of-stream for libmicrohttpd, which then closes it
		 * (invariant 1: the fd is still its). */
		shutdown(dc->fd, SHUT_RDWR);
		dc->phase = DEADLINE_EXEMPT;
		atomic_fetch_add(v == DEADLINE_SLOW_HEADERS ? d->slow_headers
							    : d->slow_body,
				 1);
		closed++;
	}
	pthread_mutex_unlock(&d->mu);
	return closed;
}

static void *checker(void *arg)
{
	struct deadline *d = arg;
	pthread_setname_np(pthread_self(), "http-deadline");
	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 500 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&d->cv, &d->mu, &ts);
		if (d->stop)
			break;
		pthread_mutex_unlock(&d->mu);
		uint64_t h0 = atomic_load(d->slow_headers);
		uint64_t b0 = atomic_load(d->slow_body);
		if (deadline_sweep(d, mono_ms()))
			log_info(
			    "closed slow clients headers=%llu body=%llu",
			    (unsigned long long)(atomic_load(d->slow_headers) -
						 h0),
			    (unsigned long long)(atomic_load(d->slow_body) -
						 b0));
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

struct deadline *deadline_new(const struct deadline_rules *r,
			      atomic_uint_fast64_t *slow_headers,
			      atomic_uint_fast64_t *slow_body)
{
	struct deadline *d = xcalloc(1, sizeof(*d));
	d->rules = *r;
	d->slow_headers = slow_headers;
	d->slow_body = slow_body;
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, checker, d) != 0)
		abort();
	return d;
}

void deadline_free(struct deadline *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

/* Under d->mu: enter phase now, unless the connection is exempt for good
 * (invariant 2). */
static void enter(struct deadline_conn *dc, enum deadline_phase phase)
{
	if (dc->phase == DEADLINE_EXEMPT)
		return;
	dc->phase = phase;
	dc->since_ms = mono_ms();
	dc->bytes = 0;
	dc->idle_rx = -1;
}

void deadline_conn_add(struct deadline *d, struct deadline_conn *dc, int fd)
{
	pthread_mutex_lock(&d->mu);
	dc->fd = fd;
	dc->phase = DEADLINE_HEADERS;
	dc->since_ms = mono_ms();
	dc->bytes = 0;
	dc->idle_rx = -1; /* a new connection: its deadline runs at once */
	dc->rx_count = NULL;
	dc->prev = NULL;
	dc->next = d->head;
	if (d->head)
		d->head->prev = dc;
	d->head = dc;
	dc->listed = true;
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_counter(struct deadline *d, struct deadline_conn *dc,
			   const atomic_uint_fast64_t *rx)
{
	pthread_mutex_lock(&d->mu);
	dc->rx_count = rx;
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_remove(struct deadline *d, struct deadline_conn *dc)
{
	pthread_mutex_lock(&d->mu);
	if (dc->listed) {
		if (dc->prev)
			dc->prev->next = dc->next;
		else
			d->head = dc->next;
		if (dc->next)
			dc->next->prev = dc->prev;
		dc->listed = false;
	}
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_headers(struct deadline *d, struct deadline_conn *dc,
			   bool body_expected)
{
	pthread_mutex_lock(&d->mu);
	enter(dc, body_expected ? DEADLINE_BODY : DEADLINE_BUSY);
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_body(struct deadline *d, struct deadline_conn *dc,
			uint64_t n)
{
	pthread_mutex_lock(&d->mu);
	if (dc->phase == DEADLINE_BODY)
		dc->bytes += n;
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_busy(struct deadline *d, struct deadline_conn *dc)
{
	pthread_mutex_lock(&d->mu);
	if (dc->phase != DEADLINE_BUSY)
		enter(dc, DEADLINE_BUSY);
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_idle(struct deadline *d, struct deadline_conn *dc)
{
	pthread_mutex_lock(&d->mu);
	enter(dc, DEADLINE_HEADERS);
	if (dc->phase == DEADLINE_HEADERS)
		dc->idle_rx = rx_bytes(dc);
	pthread_mutex_unlock(&d->mu);
}

void deadline_conn_exempt(struct deadline *d, struct deadline_conn *dc)
{
	pthread_mutex_lock(&d->mu);
	dc->phase = DEADLINE_EXEMPT;
	pthread_mutex_unlock(&d->mu);
}
