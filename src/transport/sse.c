/* sse: the Server-Sent Events transport, GET /events. Each stream is a
 * libmicrohttpd response whose content-reader callback copies what is
 * queued into MHD's buffer: the shared prelude (padding comment, retry:),
 * the hello event, heartbeat comments, and the SSE framing of each event
 * (event_sse), which the queue holds by reference and never copies. With
 * nothing to send the reader suspends the connection; the bus's deliver
 * callback, the stream's timer and sse_free resume it.
 *
 * The lifecycle (lock, suspend and wake, the list sse_free ends, the
 * module's references) is stream.c's; this file keeps the SSE rules. Each
 * stream's timer (on one of the event loops: when a heartbeat is due, and
 * at least once a second) queues heartbeats and cuts loose a consumer that
 * overflowed its send queue and then stopped reading.
 *
 * It deliberately reads nothing from the client (clients send with POST),
 * does not authenticate (http does), and keeps no state beyond the stream:
 * a stream that ends is resumed by the browser with Last-Event-ID.
 *
 * Locks: stream.h's order; "the stream lock" below guards everything in
 * struct sse_conn from pre_off down. MHD may call the reader with the
 * response's mutex held; it is taken before the stream lock and never
 * after it. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util/log.h"
#include "model/evtype.h"
#include "transport/sse.h"
#include "transport/stream.h"
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
	/* Streams may outlive sse_free() until MHD destroys their responses:
	 * the hub frees this struct after the last one (sse_destroy). */
	struct stream_hub *hub;
};

struct sse_conn {
	struct sse *s;
	struct stream *st;
	bool counted; /* in metrics.connections */
	int fd;	      /* only for shutdown() of a stalled stream */
	struct bus_sub *sub;
	int64_t user_id;
	char addr[64];

	/* Under the stream lock. */
	size_t pre_off; /* bytes of s->prelude handed to MHD */
	struct buf raw; /* hello, heartbeats: after the prelude */
	size_t raw_off;
	struct event **q; /* ring of event references */
	size_t q_cap, q_head, q_len;
	size_t q_off;	     /* bytes of the head event handed to MHD */
	size_t pending;	     /* bytes queued and not yet handed to MHD */
	bool ending;	     /* send what is queued, then end the stream */
	bool cut;	     /* socket shut down after a stall */
	int64_t last_out_ms; /* last bytes handed to MHD (heartbeats) */
	int64_t progress_ms; /* last reader call, or the overflow (stalls) */
};

/* --- helpers, with the stream lock held ----------------------------------- */

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
		event_delivery_observe(ev, &s->m->delivery[TRANSPORT_SSE],
				       &s->m->send_delivery);
		event_unref(ev);
		sc->q_head = (sc->q_head + 1) % sc->q_cap;
		sc->q_len--;
		sc->q_off = 0;
	}
	sc->pending -= n;
	return n;
}

/* --- module lifetime ------------------------------------------------------ */

/* The hub's last reference: sse_free ran and every stream is gone. */
static void sse_destroy(void *arg)
{
	struct sse *s = arg;

	free(s->prelude);
	free(s);
}

/* --- connections ---------------------------------------------------------- */

static struct sse_conn *conn_new(struct sse *s, struct MHD_Connection *c,
				 const struct transport_client *cl)
{
	struct sse_conn *sc = xcalloc(1, sizeof(*sc));
	sc->s = s;
	sc->st = stream_new(s->hub, c, sc);
	sc->fd = -1;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		sc->fd = ci->connect_fd;
	sc->user_id = cl->user_id;
	snprintf(sc->addr, sizeof(sc->addr), "%s", cl->addr);
	buf_init(&sc->raw);
	sc->pending = s->prelude_len;
	sc->last_out_ms = sc->progress_ms = mono_ms();
	return sc;
}

/* The one place a stream is freed: the response's free callback (client
 * gone or stream ended), or sse_handle when no response could be queued. */
static void conn_free(void *cls)
{
	struct sse_conn *sc = cls;
	/* The metrics outlive everything; s may go with the stream's last
	 * reference once stream_free posted it. */
	struct metrics *m = sc->s->m;

	/* After these no hello/deliver and no timer runs: sc is ours. */
	bus_unsubscribe(sc->sub);
	stream_free(sc->st);

	for (size_t i = 0; i < sc->q_len; i++)
		event_unref(sc->q[(sc->q_head + i) % sc->q_cap]);
	free(sc->q);
	buf_fini(&sc->raw);
	if (sc->counted)
		metrics_dec(m->connections[TRANSPORT_SSE]);
	free(sc);
}

/* --- bus callbacks: shard lock held, so only the stream lock and MHD -------
 */

static void on_hello(void *arg, const struct bus_resume *r)
{
	struct sse_conn *sc = arg;

	stream_lock(sc->st);
	size_t before = sc->raw.len;
	buf_printf(&sc->raw,
		   "event: hello\ndata: {\"cursor\":%lld,\"recovered\":%s,"
		   "\"transport\":\"sse\"}\n\n",
		   (long long)r->cursor, r->recovered ? "true" : "false");
	sc->pending += sc->raw.len - before;
	stream_wake(sc->st);
	stream_unlock(sc->st);
}

static void on_deliver(void *arg, struct event *ev)
{
	struct sse_conn *sc = arg;
	struct sse *s = sc->s;
	size_t len;

	event_sse(ev, &len); /* built once, shared by every stream */
	stream_lock(sc->st);
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
	/* the account is gone: the event says why, then the stream ends */
	if (evtype_ends_session(event_type(ev))) {
		sc->ending = true;
		sc->progress_ms = mono_ms();
	}
	stream_wake(sc->st);
out:
	stream_unlock(sc->st);
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

	stream_lock(sc->st);
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
		 * MHD documents instead. Under the stream lock, so a deliver
		 * cannot slip in between the empty check and the suspension:
		 * it waits, then sees the flag and resumes. sse_free sets
		 * ending before it wakes, so a stream it ends never sleeps. */
		stream_suspend(sc->st);
		ret = 0;
	}
	stream_unlock(sc->st);
	return ret;
}

/* --- the stream's timer: its loop, stream lock held ---------------------- */

/* Returns when to look again: at the next heartbeat's due time, and at
 * least once a second for the stall check. */
static unsigned conn_tick(struct stream *st, void *arg)
{
	struct sse_conn *sc = arg;
	struct sse *s = sc->s;
	int64_t now = mono_ms();
	int64_t next = SSE_TICK_MS;
	(void)st;

	if (s->heartbeat_ms > 0 && !sc->ending && sc->pending == 0 &&
	    now - sc->last_out_ms >= s->heartbeat_ms) {
		buf_append(&sc->raw, heartbeat, sizeof(heartbeat) - 1);
		sc->pending += sizeof(heartbeat) - 1;
		stream_wake(sc->st);
	}
	/* MHD calls the reader whenever the socket takes bytes; an ending
	 * stream with no call for this long has a client that stopped
	 * reading. shutdown() (not close: the fd stays MHD's) makes MHD's next
	 * I/O fail and close it. The fd is still open here: MHD closes it only
	 * after the response's free callback, whose stream_free waits for
	 * this callback to return. */
	if (sc->ending && !sc->cut && sc->fd >= 0 &&
	    now - sc->progress_ms >= SSE_STALL_MS) {
		sc->cut = true;
		log_info("sse stalled consumer cut user=%lld addr=%s",
			 (long long)sc->user_id, sc->addr);
		shutdown(sc->fd, SHUT_RDWR);
	}
	/* A heartbeat is due heartbeat_ms after the last bytes went out, not
	 * at the next whole tick. One just queued is due again once it is
	 * out (pending > 0 until then): look again in a tick. */
	if (s->heartbeat_ms > 0 && !sc->ending && sc->pending == 0) {
		int64_t due = sc->last_out_ms + s->heartbeat_ms - now;
		if (due > 0 && due < next)
			next = due;
	}
	return (unsigned)next;
}

/* sse_free: send what is queued, then end (stream.c wakes it after). */
static void conn_close(struct stream *st, void *arg)
{
	struct sse_conn *sc = arg;
	(void)st;
	sc->ending = true;
}

static const struct stream_hub_ops hub_ops = {
    .on_timer = conn_tick,
    .on_close = conn_close,
    .destroy = sse_destroy,
};

/* --- public --------------------------------------------------------------- */

void sse_set_replay(struct sse *s, struct replay *r)
{
	s->replay = r;
}

struct sse *sse_new(struct bus *bus, struct metrics *m, unsigned heartbeat_s,
		    size_t send_queue_max, struct loop **loops, unsigned nloops)
{
	struct sse *s = xcalloc(1, sizeof(*s));
	s->bus = bus;
	s->m = m;
	s->heartbeat_ms = (int64_t)heartbeat_s * 1000;
	s->queue_max = send_queue_max;

	struct buf pre;
	buf_init(&pre);
	buf_append(&pre, ":", 1);
	buf_reserve(&pre, SSE_PAD_BYTES);
	memset(pre.data + pre.len, ' ', SSE_PAD_BYTES);
	pre.len += SSE_PAD_BYTES;
	buf_printf(&pre, "\n\nretry: %d\n\n", SSE_RETRY_MS);
	s->prelude = pre.data;
	s->prelude_len = pre.len;

	s->hub = stream_hub_new(loops, nloops, &hub_ops, s);
	if (!s->hub)
		goto fail;
	return s;
fail:
	sse_destroy(s);
	return NULL;
}

void sse_free(struct sse *s)
{
	if (!s)
		return;
	/* Ends every stream: each reader sends what is queued, then ends, and
	 * never suspends again, so MHD_stop_daemon() finds none suspended. */
	stream_hub_free(s->hub, SSE_DRAIN_MS);
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
			return reply_busy(c, log,
					  replay_retry_after(s->replay));
		if (err == BUS_EFUTURE)
			return reply_error(c, log, 400, "bad_cursor",
					   "the cursor is newer than the "
					   "newest event");
		log_error("sse subscribe failed user=%lld err=%d",
			  (long long)cl->user_id, err);
		return reply_error(c, log, 500, "internal",
				   "cannot read the event history");
	}

	if (stream_open(sc->st) < 0) {
		conn_free(sc);
		return reply_error(c, log, 503, "shutting_down",
				   "the server is shutting down");
	}
	sc->counted = true;
	metrics_inc(s->m->connections[TRANSPORT_SSE]);
	metrics_inc(s->m->connections_total[TRANSPORT_SSE]);
	stream_timer_arm(sc->st, SSE_TICK_MS);

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
