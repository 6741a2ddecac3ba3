/* sse: the Server-Sent Events transport, GET /events. Each stream is a
 * libmicrohttpd response whose content-reader callback copies what is
 * queued into MHD's buffer: the shared prelude (padding comment, retry:),
 * the hello event, heartbeat comments, and the SSE framing of each event
 * (event_sse), which the queue holds by reference and never copies. With
 * nothing to send the reader suspends the connection; the bus's deliver
 * callback, the heartbeat timer and sse_free resume it.
 *
 * One timer thread per module (never one per connection) wakes once a
 * second to queue heartbeats and to cut loose a consumer that overflowed
 * its send queue and then stopped reading.
 *
 * It deliberately reads nothing from the client (clients send with POST),
 * does not authenticate (http does), and keeps no state beyond the stream:
 * a stream that ends is resumed by the browser with Last-Event-ID.
 *
 * Locks, in the only order they are ever nested:
 *   shard lock (bus, around hello/deliver) -> conn->mu -> MHD's own
 *   s->lock -> conn->mu -> MHD's own          (timer thread, sse_free)
 * MHD may call the reader with the response's mutex held; it is taken
 * before conn->mu and never after it. */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util/log.h"
#include "transport/sse.h"
#include "util/util.h"

/* The response's own buffer: libmicrohttpd 0.9.75 uses it only for HTTP/1.0
 * clients; chunked HTTP/1.1 streams are read straight into the connection's
 * write buffer, so a large block would be per-connection memory for nothing. */
#define SSE_BLOCK_SIZE 4096
#define SSE_PAD_BYTES 2048 /* padding comment, so buffering proxies flush */
#define SSE_RETRY_MS 2000
#define SSE_TICK_MS 1000
/* A stream that overflowed its queue and has taken no bytes for this long
 * is shut down, rather than waiting for MHD's connection timeout. */
#define SSE_STALL_MS 10000
/* sse_free waits at most this long for the ended streams to finish. */
#define SSE_DRAIN_MS 1000

static const char heartbeat[] = ": hb\n\n";

struct sse {
	struct bus *bus;
	struct replay *replay; /* history reads; NULL: inline */
	struct metrics *m;
	int64_t heartbeat_ms; /* 0: no heartbeats */
	size_t queue_max;
	char *prelude; /* same bytes for every stream, read-only */
	size_t prelude_len;

	pthread_mutex_t lock; /* conns, refs, closing */
	pthread_cond_t cond;  /* closing; then: the last stream is gone */
	struct sse_conn *conns;
	/* 1 for the module plus 1 per stream: streams may outlive sse_free()
	 * until MHD destroys their responses. */
	size_t refs;
	bool closing;
	bool timer_started;
	pthread_t timer;
};

struct sse_conn {
	struct sse *s;
	struct sse_conn *prev, *next; /* in s->conns, under s->lock */
	bool listed;
	bool counted; /* in metrics.connections */
	struct MHD_Connection *conn;
	int fd; /* only for shutdown() of a stalled stream */
	struct bus_sub *sub;
	int64_t user_id;
	char addr[64];

	pthread_mutex_t mu; /* everything below */
	size_t pre_off;	    /* bytes of s->prelude handed to MHD */
	struct buf raw;	    /* hello, heartbeats: after the prelude */
	size_t raw_off;
	struct event **q; /* ring of event references */
	size_t q_cap, q_head, q_len;
	size_t q_off;	     /* bytes of the head event handed to MHD */
	size_t pending;	     /* bytes queued and not yet handed to MHD */
	bool suspended;	     /* suspended by the reader, not resumed since */
	bool ending;	     /* send what is queued, then end the stream */
	bool cut;	     /* socket shut down after a stall */
	int64_t last_out_ms; /* last bytes handed to MHD (heartbeats) */
	int64_t progress_ms; /* last reader call, or the overflow (stalls) */
};

/* --- helpers, with conn->mu held ------------------------------------------ */

/* Resume the connection if the reader suspended it. MHD forbids resuming a
 * connection that is not suspended, hence the flag. */
static void conn_wake(struct sse_conn *sc)
{
	if (!sc->suspended)
		return;
	sc->suspended = false;
	MHD_resume_connection(sc->conn);
}

static void conn_push(struct sse_conn *sc, struct event *ev)
{
	if (sc->q_len == sc->q_cap) {
		size_t cap = sc->q_cap ? sc->q_cap * 2 : 16;
		struct event **q = xmalloc(cap * sizeof(*q));
		for (size_t i = 0; i < sc->q_len; i++)
			q[i] = sc->q[(sc->q_head + i) % sc->q_cap];
		free(sc->q);
		sc->q = q;
		sc->q_cap = cap;
		sc->q_head = 0;
	}
	sc->q[(sc->q_head + sc->q_len) % sc->q_cap] = ev;
	sc->q_len++;
}

static size_t copy_bytes(char *out, size_t room, const char *src, size_t len,
			 size_t *off)
{
	size_t k = len - *off;
	if (k > room)
		k = room;
	memcpy(out, src + *off, k);
	*off += k;
	return k;
}

/* Copy up to max queued bytes into out: prelude, raw bytes, then events. */
static size_t conn_copy_out(struct sse_conn *sc, char *out, size_t max)
{
	struct sse *s = sc->s;
	size_t n = 0;

	if (sc->pre_off < s->prelude_len)
		n += copy_bytes(out, max, s->prelude, s->prelude_len,
				&sc->pre_off);
	if (n < max && sc->raw_off < sc->raw.len) {
		n += copy_bytes(out + n, max - n, sc->raw.data, sc->raw.len,
				&sc->raw_off);
		if (sc->raw_off == sc->raw.len)
			sc->raw.len = sc->raw_off = 0;
	}
	while (n < max && sc->q_len > 0) {
		struct event *ev = sc->q[sc->q_head];
		size_t len;
		const char *bytes = event_sse(ev, &len);
		n += copy_bytes(out + n, max - n, bytes, len, &sc->q_off);
		if (sc->q_off < len)
			break;
		/* Counted once its last byte is in MHD's hands. */
		metrics_inc(s->m->delivered[TRANSPORT_SSE]);
		event_unref(ev);
		sc->q_head = (sc->q_head + 1) % sc->q_cap;
		sc->q_len--;
		sc->q_off = 0;
	}
	sc->pending -= n;
	return n;
}

/* --- module lifetime ------------------------------------------------------ */

static void sse_destroy(struct sse *s)
{
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->prelude);
	free(s);
}

/* Drop one reference to the module; the last one frees it. */
static void sse_release(struct sse *s)
{
	pthread_mutex_lock(&s->lock);
	bool last = --s->refs == 0;
	if (s->refs == 1 && s->closing)
		pthread_cond_broadcast(&s->cond); /* sse_free is draining */
	pthread_mutex_unlock(&s->lock);
	if (last)
		sse_destroy(s);
}

/* --- connections ---------------------------------------------------------- */

static struct sse_conn *conn_new(struct sse *s, struct MHD_Connection *c,
				 const struct transport_client *cl)
{
	struct sse_conn *sc = xcalloc(1, sizeof(*sc));
	sc->s = s;
	sc->conn = c;
	sc->fd = -1;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		sc->fd = ci->connect_fd;
	sc->user_id = cl->user_id;
	snprintf(sc->addr, sizeof(sc->addr), "%s", cl->addr);
	pthread_mutex_init(&sc->mu, NULL);
	buf_init(&sc->raw);
	sc->pending = s->prelude_len;
	sc->last_out_ms = sc->progress_ms = mono_ms();

	pthread_mutex_lock(&s->lock);
	s->refs++;
	pthread_mutex_unlock(&s->lock);
	return sc;
}

/* The one place a stream is freed: the response's free callback (client
 * gone or stream ended), or sse_handle when no response could be queued. */
static void conn_free(void *cls)
{
	struct sse_conn *sc = cls;
	struct sse *s = sc->s;

	/* After this no hello/deliver runs, so nothing else touches sc but
	 * the timer thread and sse_free, which find it only in s->conns. */
	bus_unsubscribe(sc->sub);
	pthread_mutex_lock(&s->lock);
	if (sc->listed) {
		if (sc->prev)
			sc->prev->next = sc->next;
		else
			s->conns = sc->next;
		if (sc->next)
			sc->next->prev = sc->prev;
	}
	pthread_mutex_unlock(&s->lock);

	for (size_t i = 0; i < sc->q_len; i++)
		event_unref(sc->q[(sc->q_head + i) % sc->q_cap]);
	free(sc->q);
	buf_fini(&sc->raw);
	pthread_mutex_destroy(&sc->mu);
	if (sc->counted)
		metrics_dec(s->m->connections[TRANSPORT_SSE]);
	free(sc);
	sse_release(s);
}

/* --- bus callbacks: shard lock held, so only conn->mu and MHD ------------- */

static void on_hello(void *arg, const struct bus_resume *r)
{
	struct sse_conn *sc = arg;

	pthread_mutex_lock(&sc->mu);
	size_t before = sc->raw.len;
	buf_printf(&sc->raw,
		   "event: hello\ndata: {\"cursor\":%lld,\"recovered\":%s,"
		   "\"transport\":\"sse\"}\n\n",
		   (long long)r->cursor, r->recovered ? "true" : "false");
	sc->pending += sc->raw.len - before;
	conn_wake(sc);
	pthread_mutex_unlock(&sc->mu);
}

static void on_deliver(void *arg, struct event *ev)
{
	struct sse_conn *sc = arg;
	struct sse *s = sc->s;
	size_t len;

	event_sse(ev, &len); /* built once, shared by every stream */
	pthread_mutex_lock(&sc->mu);
	if (sc->ending)
		goto out;
	/* One event is always accepted into an empty queue, so even a replay
	 * larger than the limit makes progress before the stream ends. */
	if (sc->q_len > 0 && sc->pending + len > s->queue_max) {
		sc->ending = true;
		sc->progress_ms = mono_ms();
		metrics_inc(s->m->slow_disconnects[TRANSPORT_SSE]);
		log_info("sse slow consumer ended user=%lld addr=%s "
			 "pending=%zu",
			 (long long)sc->user_id, sc->addr, sc->pending);
		goto out; /* not suspended: its queue is not empty */
	}
	conn_push(sc, event_ref(ev));
	sc->pending += len;
	conn_wake(sc);
out:
	pthread_mutex_unlock(&sc->mu);
}

static const struct bus_sub_ops sse_ops = {
    .hello = on_hello,
    .deliver = on_deliver,
};

/* --- the content reader: MHD's thread for this connection ----------------- */

static ssize_t conn_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct sse_conn *sc = cls;
	ssize_t ret;
	(void)pos;

	pthread_mutex_lock(&sc->mu);
	sc->suspended = false; /* MHD does not call a suspended reader */
	sc->progress_ms = mono_ms();
	size_t n = conn_copy_out(sc, out, max);
	if (n > 0) {
		sc->last_out_ms = sc->progress_ms;
		ret = (ssize_t)n;
	} else if (sc->ending) {
		ret = MHD_CONTENT_READER_END_OF_STREAM;
	} else {
		/* Returning 0 alone makes MHD call again at once (a busy loop
		 * with internal polling); suspending from the reader is what
		 * MHD documents instead. Under conn->mu, so a deliver cannot
		 * slip in between the empty check and the suspension: it
		 * waits, then sees the flag and resumes. */
		sc->suspended = true;
		MHD_suspend_connection(sc->conn);
		ret = 0;
	}
	pthread_mutex_unlock(&sc->mu);
	return ret;
}

/* --- the timer thread ----------------------------------------------------- */

static void conn_tick(struct sse *s, struct sse_conn *sc, int64_t now)
{
	pthread_mutex_lock(&sc->mu);
	if (s->heartbeat_ms > 0 && !sc->ending && sc->pending == 0 &&
	    now - sc->last_out_ms >= s->heartbeat_ms) {
		buf_append(&sc->raw, heartbeat, sizeof(heartbeat) - 1);
		sc->pending += sizeof(heartbeat) - 1;
		conn_wake(sc);
	}
	/* MHD calls the reader whenever the socket takes bytes; an ending
	 * stream with no call for this long has a client that stopped
	 * reading. shutdown() (not close: the fd stays MHD's) makes MHD's next
	 * I/O fail and close it. The fd is still open here: MHD closes it only
	 * after the response's free callback, which waits for s->lock. */
	if (sc->ending && !sc->cut && sc->fd >= 0 &&
	    now - sc->progress_ms >= SSE_STALL_MS) {
		sc->cut = true;
		log_info("sse stalled consumer cut user=%lld addr=%s",
			 (long long)sc->user_id, sc->addr);
		shutdown(sc->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&sc->mu);
}

static void *timer_main(void *arg)
{
	struct sse *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->closing) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += SSE_TICK_MS / 1000;
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->closing)
			break;
		int64_t now = mono_ms();
		for (struct sse_conn *sc = s->conns; sc; sc = sc->next)
			conn_tick(s, sc, now);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* --- public --------------------------------------------------------------- */

void sse_set_replay(struct sse *s, struct replay *r)
{
	s->replay = r;
}

struct sse *sse_new(struct bus *bus, struct metrics *m, unsigned heartbeat_s,
		    size_t send_queue_max)
{
	struct sse *s = xcalloc(1, sizeof(*s));
	s->bus = bus;
	s->m = m;
	s->heartbeat_ms = (int64_t)heartbeat_s * 1000;
	s->queue_max = send_queue_max;
	s->refs = 1;

	struct buf pre;
	buf_init(&pre);
	buf_append(&pre, ":", 1);
	buf_reserve(&pre, SSE_PAD_BYTES);
	memset(pre.data + pre.len, ' ', SSE_PAD_BYTES);
	pre.len += SSE_PAD_BYTES;
	buf_printf(&pre, "\n\nretry: %d\n\n", SSE_RETRY_MS);
	s->prelude = pre.data;
	s->prelude_len = pre.len;

	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);

	int err = pthread_create(&s->timer, NULL, timer_main, s);
	if (err != 0) {
		errno = err;
		goto fail;
	}
	s->timer_started = true;
	return s;
fail:
	sse_destroy(s);
	return NULL;
}

void sse_free(struct sse *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->closing = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->timer_started)
		pthread_join(s->timer, NULL);

	/* End every stream: each reader sends what is queued, then ends, and
	 * never suspends again, so MHD_stop_daemon() finds none suspended.
	 * Resuming only raises a flag in MHD, so give the streams a moment
	 * to finish cleanly before the daemon is stopped; one whose client
	 * does not read is left for MHD_stop_daemon() to close. */
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += SSE_DRAIN_MS / 1000;
	pthread_mutex_lock(&s->lock);
	for (struct sse_conn *sc = s->conns; sc; sc = sc->next) {
		pthread_mutex_lock(&sc->mu);
		sc->ending = true;
		conn_wake(sc);
		pthread_mutex_unlock(&sc->mu);
	}
	while (s->refs > 1 &&
	       pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
		;
	pthread_mutex_unlock(&s->lock);
	sse_release(s);
}

enum MHD_Result sse_handle(struct sse *s, struct MHD_Connection *c,
			   struct reply_log *log,
			   const struct transport_client *cl, int64_t since)
{
	struct sse_conn *sc = conn_new(s, c, cl);
	int err = 0;

	/* Subscribe before answering, so a bad cursor is a plain HTTP error.
	 * The hello (and any replay) is queued behind the prelude. */
	sc->sub = replay_subscribe(s->replay, bus_shard_pick(s->bus),
				   cl->user_id, since, &sse_ops, sc, &err);
	if (!sc->sub) {
		conn_free(sc);
		if (err == REPLAY_EBUSY)
			return reply_busy(c, log, replay_retry_after(s->replay));
		if (err == BUS_EFUTURE)
			return reply_error(c, log, 400, "bad_cursor",
					   "the cursor is newer than the "
					   "newest event");
		log_error("sse subscribe failed user=%lld err=%d",
			  (long long)cl->user_id, err);
		return reply_error(c, log, 500, "internal",
				   "cannot read the event history");
	}

	pthread_mutex_lock(&s->lock);
	bool closing = s->closing;
	if (!closing) {
		sc->next = s->conns;
		if (s->conns)
			s->conns->prev = sc;
		s->conns = sc;
		sc->listed = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (closing) {
		conn_free(sc);
		return reply_error(c, log, 503, "shutting_down",
				   "the server is shutting down");
	}
	sc->counted = true;
	metrics_inc(s->m->connections[TRANSPORT_SSE]);
	metrics_inc(s->m->connections_total[TRANSPORT_SSE]);

	struct MHD_Response *r = MHD_create_response_from_callback(
	    MHD_SIZE_UNKNOWN, SSE_BLOCK_SIZE, conn_read, sc, conn_free);
	if (!r) {
		conn_free(sc);
		return reply_error(c, log, 500, "internal",
				   "cannot create the stream");
	}
	/* From here the response owns sc: MHD frees it through conn_free,
	 * even when queueing fails (reply_queue destroys r). */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/event-stream; charset=utf-8");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
				"no-cache, no-transform");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	return reply_queue(c, log, 200, r);
}
