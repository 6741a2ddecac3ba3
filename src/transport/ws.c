/* ws: the WebSocket transport. ws_handle() checks the upgrade request and
 * queues the 101; libmicrohttpd then hands the socket to upgrade_cb(), which
 * gives the connection to one of natter's event loops (round robin). There
 * wslay frames it, the connection subscribes to that loop's bus shard, and
 * client commands go to chat.
 *
 * It deliberately does not do: permessage-deflate or any extension,
 * subprotocols, fragmented sends of our own (wslay fragments), binary
 * messages (a binary frame closes with 1003), authentication or Origin
 * checks (http does them before calling ws_handle), or the HTTP method check
 * (http routes only GET /ws here: MHD offers no way to read the method from
 * a struct MHD_Connection).
 *
 * Threads and lifetime
 *  - ws_handle runs on an MHD worker; it allocates a handshake record that
 *    upgrade_cb (same worker, after the 101 reached the socket) turns into a
 *    struct ws_conn and posts to a loop. MHD offers no callback when a 101
 *    never reaches the client, so a record whose upgrade never comes stays
 *    allocated, and keeps the server struct alive past ws_server_free.
 *  - Everything else about a connection happens on its loop's thread. The
 *    loop holds one reference; each chat_send in flight holds one (its
 *    done callback runs on the store writer thread and only posts the ack
 *    back to the loop); a pending flush holds one. conn_teardown() is the one
 *    place that releases the socket, wslay, the subscription and queued
 *    events; the last reference frees the struct.
 *  - upgrade_cb takes the socket over: it dup()s it and at once tells MHD
 *    MHD_UPGRADE_ACTION_CLOSE, so MHD frees its connection (and the 32 KiB
 *    memory pool that would otherwise stay for the WebSocket's whole life)
 *    and closes its copy; MHD does not shutdown() an upgraded socket, so the
 *    connection lives on in ws's descriptor, which conn_teardown closes.
 *  - Bus callbacks (hello, deliver) run with the shard lock held: they only
 *    queue frames and mark the connection dirty; a flush task posted to the
 *    loop writes afterwards. Nothing here tears down inside a bus or wslay
 *    callback.
 *
 * Start and stop. ws_server_new() arms a periodic timer (1 s) on every loop
 * in cfg->loops (through loop_post, so before or after loop_start); it
 * sweeps that loop's connections for pings, ping timeouts and close
 * deadlines. Shutdown order: http_quiesce(), ws_server_free() while the
 * loops still run (it closes every connection with 1001 on its loop and
 * waits), then http_stop() (an upgrade still inside MHD ends there, see
 * upgrade_cb), chat/store, loop_stop().
 *
 * Outgoing text frames do not go through wslay: each connection keeps its
 * own queue of frames (an array, so queueing allocates nothing in steady
 * state), and a flush writes every queued frame with one sendmsg() of
 * header and payload iovecs: after a drain that delivered a batch of
 * events, a connection costs one system call, not one per event. An event
 * frame is a reference to the event's own bytes (never copied); hello, ack
 * and error frames are small copies. Frames above WS_FRAG_MAX bytes are
 * sent as fragments, as wslay did. wslay still parses everything received
 * and writes its own control frames (pong, ping, close), always between two
 * of our frames, never inside one. Backpressure: pending bytes are our
 * queued frames plus wslay's control frames; above send_queue_max the
 * connection is closed with 1008 (a close frame jumps the data queue, and
 * nothing more is queued) and torn down once the close is written, or after
 * two ping intervals if the reader never resumes.
 *
 * Received bytes pass ws_frame's tracker before wslay parses them: it knows
 * where frames begin and end (so the wslay contexts can be parked), and it
 * checks each header as soon as it is complete, so a protocol error closes
 * with 1002 and a frame announcing more than WS_MESSAGE_MAX closes with 1009
 * before any of its payload is read.
 *
 * The socket's kernel send buffer is capped (WS_SNDBUF_MAX) so that a
 * stalled reader fills our queue, not the kernel's.
 *
 * Memory: an idle connection is this struct (~350 bytes), its bus
 * subscription and loop watcher: about 2 KiB of RSS in all (contrib/bench).
 * wslay's event and frame contexts (4 KiB send and 4 KiB receive buffers
 * each, ~8.8 KB) exist only while a received frame is unfinished or a
 * control frame waits (see conn_framer/conn_park); wslay receives straight
 * into its own buffer, so ws keeps no read buffer. The frame queue is freed
 * when it empties, unless it is small. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <jansson.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <wslay/wslay.h>

#include "util/log.h"
#include "util/util.h"
#include "core/cmd.h"
#include "model/evtype.h"
#include "core/limit.h"
#include "transport/ws.h"
#include "transport/ws_frame.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_TICK_MS 1000
/* Once our close frame is out, the peer has this long to end the TCP
 * connection. Before it is out (a stalled reader whose socket buffer is
 * full), the limit is two ping intervals, as for any silent peer: the
 * close frame then still reaches a client that resumes reading, so it
 * learns why (1008) instead of seeing a bare EOF. */
#define WS_CLOSE_GRACE_MS 3000
/* Kernel send buffer cap (Linux doubles it). Autotuning would let a
 * stalled reader park megabytes in the kernel, where send_queue_max cannot
 * see them; 64 KiB still fills a 100 ms path at 640 KB/s. */
#define WS_SNDBUF_MAX (64 * 1024)
/* Payload bytes per frame before we fragment (wslay's send buffer size). */
#define WS_FRAG_MAX 4096
/* A drained queue of at most this many slots is kept for reuse. */
#define WS_QUEUE_KEEP 16

struct ws_conn;

/* Per loop: the connections living on it. Touched only on its thread. */
struct ws_loop {
	struct ws_server *ws;
	struct loop *lp;
	struct bus_shard *shard;
	unsigned idx;
	struct ws_conn *conns; /* doubly linked */
	struct ws_conn *dirty; /* waiting for flush_task, via dirty_next */
	bool flush_posted;
	struct loop_timer *tick; /* pings, timeouts, close deadlines */
};

struct ws_server {
	struct ws_config cfg; /* arrays borrowed from main */
	struct ws_loop *loops;
	atomic_uint next_loop;
	pthread_mutex_t mu; /* closing, refs */
	bool closing;
	unsigned refs; /* 1 for the owner + 1 per handshake in flight */
};

/* From ws_handle to upgrade_cb. */
struct ws_handshake {
	struct ws_server *ws;
	struct transport_client cl;
	int64_t since;
};

/* One outgoing text message: an event's shared bytes, or our own copy. */
struct ws_frame {
	struct event *ev; /* a reference, or NULL */
	char *own;	  /* malloc'd payload when ev is NULL */
	size_t len;	  /* payload bytes */
};

struct ws_conn {
	struct ws_conn *prev, *next; /* ws_loop.conns */
	struct ws_conn *dirty_next;
	struct ws_loop *wl; /* NULL once torn down */
	struct loop *lp;    /* outlives the connection: late acks post here */
	struct metrics *metrics;
	atomic_uint refs;
	int fd;
	uint32_t watched; /* epoll mask registered, 0 when not watched */
	bool dead;	  /* torn down */
	bool closing;	  /* close queued or pending: no more frames/commands */
	bool dirty;
	bool draining;	     /* close sent, write side shut: read until EOF */
	bool io_failed;	     /* the socket failed or hit EOF: nothing to say */
	uint16_t close_code; /* close to queue once the queue is empty */
	const char *close_reason;
	wslay_event_context_ptr ctx; /* NULL while parked (see conn_park) */
	/* Where the received stream stands (ws_frame.h): wslay holds state
	 * exactly when this is not idle. It also vets each header before
	 * wslay sees it (conn_protocol_error). */
	struct ws_frame_rx rx;
	struct bus_sub *sub;
	struct ws_frame *q; /* queued messages: q[qhead..qlen) */
	unsigned qhead, qlen, qcap;
	size_t q_off;	  /* wire bytes of q[qhead] already written */
	size_t out_bytes; /* wire bytes queued in q, not written yet */
	char *extra;	  /* bytes read by MHD past the handshake */
	size_t extra_len, extra_off;
	int64_t since;
	int64_t last_rx, last_ping, close_by; /* mono_ms */
	int64_t user_id;
	char username[33];
	char addr[64];
	struct limit *slot; /* holds a stream-cap slot; released at teardown */
	unsigned limited_run; /* commands refused in a row (rate limits) */
};

/* A send command waiting for the store. */
struct ws_ack {
	struct ws_conn *conn; /* a reference */
	char *client_id;
	int err;
	struct event *ev;
};

static void conn_flush(struct ws_conn *c);
static void conn_framer(struct ws_conn *c);
static int64_t close_deadline(struct ws_conn *c);

/* --- handshake ------------------------------------------------------- */

int ws_accept_key(const char *key, char out[29])
{
	unsigned char raw[18], digest[20];
	unsigned char canon[25];
	size_t n;
	mbedtls_sha1_context sha;

	if (!key || strlen(key) != 24)
		return -1;
	if (mbedtls_base64_decode(raw, sizeof(raw), &n,
				  (const unsigned char *)key, 24) != 0 ||
	    n != 16)
		return -1;
	/* Only the canonical spelling: no stray bits, no whitespace. */
	if (mbedtls_base64_encode(canon, sizeof(canon), &n, raw, 16) != 0 ||
	    n != 24 || memcmp(canon, key, 24) != 0)
		return -1;

	mbedtls_sha1_init(&sha);
	if (mbedtls_sha1_starts_ret(&sha) != 0 ||
	    mbedtls_sha1_update_ret(&sha, (const unsigned char *)key, 24) !=
		0 ||
	    mbedtls_sha1_update_ret(&sha, (const unsigned char *)WS_GUID,
				    strlen(WS_GUID)) != 0 ||
	    mbedtls_sha1_finish_ret(&sha, digest) != 0) {
		mbedtls_sha1_free(&sha);
		return -1;
	}
	mbedtls_sha1_free(&sha);
	if (mbedtls_base64_encode((unsigned char *)out, 29, &n, digest,
				  sizeof(digest)) != 0 ||
	    n != 28)
		return -1;
	return 0;
}

/* Does the comma-separated header value list hold token (any case)? */
static bool has_token(const char *list, const char *token)
{
	size_t tlen = strlen(token);
	const char *p = list;

	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *end = p;
		while (*end && *end != ',')
			end++;
		const char *e = end;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == tlen && strncasecmp(p, token, tlen) == 0)
			return true;
		p = end;
	}
	return false;
}

static void ws_unref(struct ws_server *ws)
{
	pthread_mutex_lock(&ws->mu);
	bool last = --ws->refs == 0;
	pthread_mutex_unlock(&ws->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&ws->mu);
	free(ws);
}

/* 426 with a JSON body: reply_error() cannot add the headers it needs.
 * reply_queue() adds the common headers (to the 101 as well). */
static enum MHD_Result reply_upgrade_required(struct MHD_Connection *c,
					      struct reply_log *log,
					      const char *code,
					      const char *message)
{
	json_t *body =
	    json_pack("{s:s,s:s}", "error", code, "message", message);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    strlen(text), text, MHD_RESPMEM_MUST_COPY);
	free(text);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json; charset=utf-8");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
	MHD_add_response_header(r, "Sec-WebSocket-Version", "13");
	return reply_queue(c, log, MHD_HTTP_UPGRADE_REQUIRED, r);
}

static void upgrade_cb(void *cls, struct MHD_Connection *connection,
		       void *req_cls, const char *extra_in,
		       size_t extra_in_size, MHD_socket sock,
		       struct MHD_UpgradeResponseHandle *urh);

/* The client's stream-cap slot, if it holds one (transport.h). */
static void slot_release(const struct transport_client *cl)
{
	if (cl->limit)
		limit_stream_release(cl->limit, cl->user_id, cl->addr);
}

static void hs_free(struct ws_handshake *hs)
{
	slot_release(&hs->cl);
	free(hs);
}

/* From the moment hs holds the client, hs_free releases its stream-cap
 * slot; before that the early answers do. */
enum MHD_Result ws_handle(struct ws_server *ws, struct MHD_Connection *c,
			  struct reply_log *log,
			  const struct transport_client *cl, int64_t since)
{
	const char *upgrade = MHD_lookup_connection_value(
	    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
	const char *conn = MHD_lookup_connection_value(
	    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
	const char *version = MHD_lookup_connection_value(
	    c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						      "Sec-WebSocket-Key");
	char accept[29];

	if (!upgrade || !has_token(upgrade, "websocket") || !conn ||
	    !has_token(conn, "upgrade")) {
		slot_release(cl);
		return reply_upgrade_required(
		    c, log, "upgrade_required",
		    "this endpoint speaks WebSocket only");
	}
	if (!version || strcmp(version, "13") != 0) {
		slot_release(cl);
		return reply_upgrade_required(
		    c, log, "upgrade_required",
		    "only WebSocket version 13 is supported");
	}
	if (!key || ws_accept_key(key, accept) < 0) {
		slot_release(cl);
		return reply_error(c, log, MHD_HTTP_BAD_REQUEST, "invalid",
				   "Sec-WebSocket-Key must be the base64 "
				   "encoding of 16 bytes");
	}

	/* A cursor that needs history while the history pool is full: 503
	 * busy now, before the upgrade, which a browser sees and backs off
	 * from; after it only an error frame could say so (conn_fetch). */
	struct replay *rp = ws->cfg.replay;
	if (rp && since >= 0 && bus_history_needed(ws->cfg.bus, since) &&
	    replay_busy(rp, cl->user_id)) {
		slot_release(cl);
		return reply_busy(c, log, replay_retry_after(rp));
	}

	struct ws_handshake *hs = xcalloc(1, sizeof(*hs));
	hs->ws = ws;
	hs->cl = *cl;
	hs->since = since;
	struct MHD_Response *r =
	    MHD_create_response_for_upgrade(upgrade_cb, hs);
	if (!r) {
		hs_free(hs);
		return reply_error(c, log, MHD_HTTP_INTERNAL_SERVER_ERROR,
				   "internal", "cannot create the response");
	}
	/* MHD adds "Connection: Upgrade" to upgrade responses itself. */
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket") !=
		MHD_YES ||
	    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept) !=
		MHD_YES) {
		MHD_destroy_response(r);
		hs_free(hs);
		return MHD_NO;
	}

	pthread_mutex_lock(&ws->mu);
	bool closing = ws->closing;
	if (!closing)
		ws->refs++;
	pthread_mutex_unlock(&ws->mu);
	if (closing) {
		MHD_destroy_response(r);
		hs_free(hs);
		return reply_error(c, log, MHD_HTTP_SERVICE_UNAVAILABLE,
				   "shutting_down", "the server is stopping");
	}
	enum MHD_Result ret =
	    reply_queue(c, log, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	if (ret != MHD_YES) {
		hs_free(hs);
		ws_unref(ws);
	}
	return ret;
}

/* --- connection references ------------------------------------------- */

static struct ws_conn *conn_ref(struct ws_conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

static void conn_unref(struct ws_conn *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	assert(c->dead);
	free(c);
}

/* --- wslay callbacks --------------------------------------------------- */

/* A frame header broke RFC 6455 or announced more than WS_MESSAGE_MAX
 * bytes: close with the tracker's code (1002 or 1009) at once, ahead of
 * queued data, instead of wslay's codeless close (or, for a huge length,
 * waiting for the payload). The received stream cannot be parsed any
 * further, so a close that was only pending (conn_close_after) gives way. */
static void conn_protocol_error(struct ws_conn *c)
{
	const char *reason = ws_frame_rx_reason(&c->rx);

	log_debug("ws protocol error addr=%s user=%s code=%u", c->addr,
		  c->username, (unsigned)c->rx.err);
	metrics_inc(c->metrics->errors);
	c->close_code = 0;
	if (!c->closing) {
		c->closing = true;
		c->close_by = close_deadline(c);
	}
	conn_framer(c);
	/* WSLAY_ERR_NO_MORE_MSG when a close is queued already: keep it. */
	wslay_event_queue_close(c->ctx, c->rx.err, (const uint8_t *)reason,
				strlen(reason));
}

/* Vet received bytes before wslay parses them: n, or -1 (and the close is
 * queued) when they hold a bad frame header. */
static ssize_t rx_vet(struct ws_conn *c, wslay_event_context_ptr ctx,
		      const uint8_t *buf, size_t n)
{
	c->last_rx = mono_ms();
	if (ws_frame_rx_feed(&c->rx, buf, n) == 0)
		return (ssize_t)n;
	conn_protocol_error(c);
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
		       int flags, void *user)
{
	struct ws_conn *c = user;
	(void)flags;

	if (c->extra) {
		size_t k = c->extra_len - c->extra_off;
		if (k > len)
			k = len;
		memcpy(buf, c->extra + c->extra_off, k);
		c->extra_off += k;
		if (c->extra_off == c->extra_len) {
			free(c->extra);
			c->extra = NULL;
		}
		return rx_vet(c, ctx, buf, k);
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0)
			return rx_vet(c, ctx, buf, (size_t)n);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		} else {
			c->io_failed = true;
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		}
		return -1;
	}
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
		       size_t len, int flags, void *user)
{
	struct ws_conn *c = user;
	int f = MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0);

	for (;;) {
		ssize_t n = send(c->fd, data, len, f);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		} else {
			c->io_failed = true;
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		}
		return -1;
	}
}

/* --- queueing ------------------------------------------------------------ */

static size_t conn_pending(struct ws_conn *c)
{
	return (c->ctx ? wslay_event_get_queued_msg_length(c->ctx) : 0) +
	       c->out_bytes;
}

/* Wire bytes of a message of len payload bytes: fragments of at most
 * WS_FRAG_MAX bytes, each with a 2- or 4-byte header (server frames carry
 * no mask). */
static size_t wire_len(size_t len)
{
	return ws_frame_wire_len(len, WS_FRAG_MAX);
}

static void frame_release(struct ws_frame *f)
{
	if (f->ev)
		event_unref(f->ev);
	else
		free(f->own);
}

/* Append a message; takes over ev's reference or own. */
static void q_push(struct ws_conn *c, struct event *ev, char *own, size_t len)
{
	if (c->qlen == c->qcap) {
		if (c->qhead > 0) {
			memmove(c->q, c->q + c->qhead,
				(c->qlen - c->qhead) * sizeof(*c->q));
			c->qlen -= c->qhead;
			c->qhead = 0;
		} else {
			c->qcap = c->qcap ? c->qcap * 2 : 4;
			c->q = xrealloc(c->q, c->qcap * sizeof(*c->q));
		}
	}
	c->q[c->qlen++] = (struct ws_frame){ev, own, len};
	c->out_bytes += wire_len(len);
}

static void q_clear(struct ws_conn *c)
{
	for (unsigned i = c->qhead; i < c->qlen; i++)
		frame_release(&c->q[i]);
	free(c->q);
	c->q = NULL;
	c->qhead = c->qlen = c->qcap = 0;
	c->q_off = 0;
	c->out_bytes = 0;
}

/* Write queued messages, many per sendmsg(). 0 when everything is written
 * or the socket is full, -1 when it failed. */
static int q_write(struct ws_conn *c)
{
	struct ws_frame_gather b;
	uint64_t delivered = 0;
	int rc = 0;

	while (c->qhead < c->qlen) {
		ws_frame_gather_init(&b, c->q_off);
		for (unsigned k = c->qhead; k < c->qlen; k++) {
			const struct ws_frame *f = &c->q[k];
			size_t elen;
			const char *p =
			    f->ev ? event_json(f->ev, &elen) : f->own;
			if (!ws_frame_gather_add(&b, WS_OP_TEXT, p, f->len,
						 WS_FRAG_MAX))
				break;
		}
		struct msghdr mh = {.msg_iov = b.iov,
				    .msg_iovlen = (size_t)b.n};
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				c->io_failed = true;
				rc = -1;
			}
			break;
		}
		size_t left = (size_t)w;
		while (left && c->qhead < c->qlen) {
			struct ws_frame *f = &c->q[c->qhead];
			size_t rest = wire_len(f->len) - c->q_off;
			if (left < rest) {
				c->q_off += left;
				c->out_bytes -= left;
				break;
			}
			left -= rest;
			c->out_bytes -= rest;
			c->q_off = 0;
			if (f->ev)
				delivered++;
			frame_release(f);
			c->qhead++;
		}
		if ((size_t)w < b.bytes)
			break; /* the socket is full */
	}
	if (c->qhead == c->qlen) {
		c->qhead = c->qlen = 0;
		if (c->qcap > WS_QUEUE_KEEP) {
			free(c->q);
			c->q = NULL;
			c->qcap = 0;
		}
	}
	if (delivered)
		metrics_add(c->metrics->delivered[TRANSPORT_WS], delivered);
	return rc;
}

static void flush_task(void *arg)
{
	struct ws_loop *wl = arg;
	struct ws_conn *c = wl->dirty;

	wl->flush_posted = false;
	wl->dirty = NULL;
	while (c) {
		struct ws_conn *next = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
		if (!c->dead)
			conn_flush(c);
		conn_unref(c);
		c = next;
	}
}

/* Write later, from a task of its own: callers may hold the shard lock. */
static void conn_mark_dirty(struct ws_conn *c)
{
	struct ws_loop *wl = c->wl;

	if (c->dead || c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = wl->dirty;
	wl->dirty = conn_ref(c);
	if (!wl->flush_posted) {
		wl->flush_posted = true;
		loop_post(wl->lp, flush_task, wl);
	}
}

static int64_t close_deadline(struct ws_conn *c)
{
	int64_t ping_ms = (int64_t)c->wl->ws->cfg.ping_s * 1000;
	return mono_ms() + (2 * ping_ms > WS_CLOSE_GRACE_MS
				? 2 * ping_ms
				: WS_CLOSE_GRACE_MS);
}

/* Close with code: the close frame goes ahead of queued data (wslay sends
 * control frames first), which is what a slow consumer or shutdown needs. */
static void conn_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_by = close_deadline(c);
	conn_framer(c);
	wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason,
				strlen(reason));
}

/* Close after everything queued so far is written (an error frame that
 * explains the close must not be overtaken by it). */
static void conn_close_after(struct ws_conn *c, uint16_t code,
			     const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_by = close_deadline(c);
	c->close_code = code;
	c->close_reason = reason;
}

static void queue_text(struct ws_conn *c, const char *s, size_t len)
{
	if (c->ctx && wslay_event_get_close_sent(c->ctx))
		return;
	char *own = xmalloc(len ? len : 1);
	memcpy(own, s, len);
	q_push(c, NULL, own, len);
	struct ws_server *ws = c->wl->ws;
	if (!c->closing && conn_pending(c) > ws->cfg.send_queue_max) {
		metrics_inc(c->metrics->slow_disconnects[TRANSPORT_WS]);
		log_info("ws slow consumer closed addr=%s user=%s pending=%zu",
			 c->addr, c->username, conn_pending(c));
		conn_close(c, 1008, "slow consumer");
	}
}

static void queue_json(struct ws_conn *c, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return;
	queue_text(c, s, strlen(s));
	free(s);
}

static void queue_error(struct ws_conn *c, const char *client_id,
			const char *code, const char *message)
{
	json_t *o = json_pack("{s:s}", "type", "error");
	if (client_id)
		json_object_set_new(o, "client_id", json_string(client_id));
	json_object_set_new(o, "error", json_string(code));
	json_object_set_new(o, "message", json_string(message));
	metrics_inc(c->metrics->errors);
	queue_json(c, o);
}

/* An error the client may retry after retry_after seconds. */
static void queue_error_retry(struct ws_conn *c, const char *client_id,
			      const char *code, const char *message,
			      int64_t retry_after)
{
	json_t *o = json_pack("{s:s}", "type", "error");
	if (client_id)
		json_object_set_new(o, "client_id", json_string(client_id));
	json_object_set_new(o, "error", json_string(code));
	json_object_set_new(o, "message", json_string(message));
	json_object_set_new(o, "retry_after", json_integer(retry_after));
	metrics_inc(c->metrics->errors);
	queue_json(c, o);
}

/* --- bus subscriber ----------------------------------------------------------
 */

static void sub_hello(void *arg, const struct bus_resume *r)
{
	struct ws_conn *c = arg;
	char s[128];
	int n = snprintf(s, sizeof(s),
			 "{\"type\":\"hello\",\"cursor\":%" PRId64
			 ",\"recovered\":%s,\"transport\":\"ws\"}",
			 r->cursor, r->recovered ? "true" : "false");
	queue_text(c, s, (size_t)n);
	conn_mark_dirty(c);
}

static void sub_deliver(void *arg, struct event *ev)
{
	struct ws_conn *c = arg;
	size_t len;

	if (c->dead || c->closing)
		return;
	event_json(ev, &len);
	if (len == 0)
		return;
	q_push(c, event_ref(ev), NULL, len);
	if (evtype_ends_session(event_type(ev))) {
		/* the account is gone: the event says why, then 4001 */
		log_info("ws closed: session ended addr=%s user=%s", c->addr,
			 c->username);
		conn_close_after(c, 4001, "account disabled");
	} else if (conn_pending(c) > c->wl->ws->cfg.send_queue_max) {
		metrics_inc(c->metrics->slow_disconnects[TRANSPORT_WS]);
		log_info("ws slow consumer closed addr=%s user=%s pending=%zu",
			 c->addr, c->username, conn_pending(c));
		conn_close(c, 1008, "slow consumer");
	}
	conn_mark_dirty(c);
}

static const struct bus_sub_ops sub_ops = {
    .hello = sub_hello,
    .deliver = sub_deliver,
};

/* --- client commands ------------------------------------------------------ */

static void ack_free(struct ws_ack *a)
{
	event_unref(a->ev);
	conn_unref(a->conn);
	free(a->client_id);
	free(a);
}

static void ack_task(void *arg)
{
	struct ws_ack *a = arg;
	struct ws_conn *c = a->conn;

	/* A close waiting for the queue to drain (close_code) still lets an
	 * ack through: the command was admitted before the close. */
	if (c->dead || (c->closing && !c->close_code)) {
		ack_free(a);
		return;
	}
	if (a->err != CHAT_OK || !a->ev) {
		int err = a->err != CHAT_OK ? a->err : CHAT_EINTERNAL;
		if (err == CHAT_EFULL)
			queue_error_retry(c, a->client_id, chat_err_code(err),
					  chat_err_message(err),
					  CHAT_FULL_RETRY_S);
		else
			queue_error(c, a->client_id, chat_err_code(err),
				    chat_err_message(err));
	} else {
		struct buf b;
		size_t len;
		const char *json = event_json(a->ev, &len);
		buf_init(&b);
		buf_puts(&b, "{\"type\":\"ack\",\"client_id\":");
		json_t *cid = a->client_id ? json_string(a->client_id) : NULL;
		char *q = cid ? json_dumps(cid, JSON_ENCODE_ANY) : NULL;
		buf_puts(&b, q ? q : "null");
		free(q);
		json_decref(cid);
		buf_printf(&b,
			   ",\"id\":%" PRId64 ",\"event\":", event_id(a->ev));
		buf_append(&b, json, len);
		buf_puts(&b, "}");
		metrics_inc(c->metrics->acks);
		queue_text(c, b.data, b.len);
		buf_fini(&b);
	}
	conn_flush(c);
	ack_free(a); /* may drop the last reference if c was torn down */
}

/* On the store's writer thread: only hand the result to the loop. */
static void ack_done(void *arg, const struct chat_result *res)
{
	struct ws_ack *a = arg;

	a->err = res->err;
	a->ev = res->err == CHAT_OK && res->ev ? event_ref(res->ev) : NULL;
	loop_post(a->conn->lp, ack_task, a);
}

static const char *get_str(json_t *root, const char *name, bool *bad)
{
	json_t *v = json_object_get(root, name);
	if (!v)
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

/* A command through the command table (core/cmd.h); this wording of its
 * errors is the WebSocket's. Commands that end in an ack (persistent
 * events) carry the client's client_id in their error, others none. */
static void run_command(struct ws_conn *c, json_t *root, const char *op,
			const char *client_id)
{
	struct ws_server *ws = c->wl->ws;
	struct ws_ack *a = xcalloc(1, sizeof(*a));
	a->conn = conn_ref(c);
	a->client_id = client_id ? xstrdup(client_id) : NULL;
	struct chat_user u = {.id = c->user_id, .username = c->username};
	struct cmd_status st;
	int err = cmd_run(ws->cfg.chat, &u, op, root, ack_done, a, &st);
	if (err != CMD_EARGS && err != CMD_EUNKNOWN && st.send)
		metrics_inc(c->metrics->sends);
	if (st.async)
		return; /* ack_done owns a now */
	const char *cid = st.acked ? client_id : NULL;
	if (err == CMD_EUNKNOWN)
		queue_error(c, client_id, "unknown_op", "unknown op");
	else if (err == CMD_EARGS)
		queue_error(c, cid, "invalid", st.usage);
	else if (err == CHAT_EMUTED)
		queue_error_retry(c, cid, chat_err_code(err),
				  chat_err_message(err), st.retry_after);
	else if (err != CHAT_OK)
		queue_error(c, cid, chat_err_code(err), chat_err_message(err));
	else if (st.pong)
		queue_text(c, "{\"type\":\"pong\"}", 15);
	ack_free(a);
}

/* Past a rate limit: an error frame with retry_after (and the client's
 * client_id), nothing run; a client that keeps going well past it (the
 * ws's flood_close refusals in a row) is closed with 1008. True when the
 * command must not run. */
static bool rate_limited(struct ws_conn *c, const char *op,
			 const char *client_id)
{
	struct ws_server *ws = c->wl->ws;
	struct chat_user u = {.id = c->user_id, .username = c->username};
	struct cmd_limited lim;

	if (cmd_admit(ws->cfg.limit, &u, op, mono_ms(), &lim) == CHAT_OK) {
		c->limited_run = 0;
		return false;
	}
	metrics_inc(c->metrics->rate_limited[lim.what]);
	bool flood = ++c->limited_run > ws->cfg.flood_close;
	json_t *o = json_pack("{s:s}", "type", "error");
	if (client_id)
		json_object_set_new(o, "client_id", json_string(client_id));
	json_object_set_new(o, "error", json_string("rate_limited"));
	json_object_set_new(
	    o, "message",
	    json_string(flood ? "too many commands past the limit; closing"
			      : "too many commands; slow down"));
	json_object_set_new(o, "what", json_string(limit_kind_name(lim.what)));
	json_object_set_new(o, "retry_after", json_integer(lim.retry_after));
	metrics_inc(c->metrics->errors);
	queue_json(c, o);
	if (flood) { /* after what is queued: acks, then this frame */
		metrics_inc(c->metrics->rate_flood_closes);
		log_info("ws rate limit flood closed addr=%s user=%s what=%s",
			 c->addr, c->username, limit_kind_name(lim.what));
		conn_close_after(c, 1008, "rate limit exceeded");
	}
	return true;
}

static void handle_text(struct ws_conn *c, const uint8_t *msg, size_t len)
{
	json_error_t jerr;
	json_t *root = NULL;
	bool bad = false;

	/* wslay checks UTF-8 itself (1007); this is the belt to its braces. */
	if (!utf8_valid((const char *)msg, len)) {
		conn_close(c, 1007, "invalid UTF-8");
		return;
	}
	root =
	    json_loadb((const char *)msg, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		if (rate_limited(c, NULL, NULL))
			goto done;
		queue_error(c, NULL, "bad_json",
			    root ? "a command is a JSON object"
				 : "the message is not valid JSON");
		goto done;
	}
	const char *client_id = get_str(root, "client_id", &bad);
	const char *op = get_str(root, "op", &bad);
	if (rate_limited(c, bad ? NULL : op, bad ? NULL : client_id))
		goto done;
	if (bad || !op) {
		queue_error(c, NULL, "invalid",
			    "op and client_id must be strings; op is required");
		goto done;
	}
	run_command(c, root, op, client_id);
done:
	json_decref(root);
}

static void on_msg_cb(wslay_event_context_ptr ctx,
		      const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct ws_conn *c = user;
	(void)ctx;

	if (c->closing)
		return;
	if (arg->opcode == WSLAY_TEXT_FRAME)
		handle_text(c, arg->msg, arg->msg_length);
	else if (arg->opcode == WSLAY_BINARY_FRAME)
		conn_close(c, 1003, "binary frames are not supported");
	/* Pings are answered by wslay, a close is echoed by wslay; any frame
	 * at all already counted as a sign of life in recv_cb. */
}

/* --- wslay contexts on demand -------------------------------------------
 *
 * wslay's event and frame contexts embed 4 KiB buffers each, more than the
 * rest of a connection. A connection needs them only while a received
 * frame or fragmented message is unfinished, or while a control frame
 * (ping, pong, close) waits to be written; our own data frames never touch
 * them. So they are made when bytes arrive or a control frame is queued,
 * and given back (parked) once all of that is over: an idle connection
 * holds none, and a delivery never needs one. */

static void conn_framer(struct ws_conn *c)
{
	static const struct wslay_event_callbacks cbs = {
	    .recv_callback = recv_cb,
	    .send_callback = send_cb,
	    .on_msg_recv_callback = on_msg_cb,
	};

	if (c->ctx)
		return;
	if (wslay_event_context_server_init(&c->ctx, &cbs, c) != 0) {
		log_error("out of memory for a WebSocket context");
		abort();
	}
	wslay_event_config_set_max_recv_msg_length(c->ctx, WS_MESSAGE_MAX);
	metrics_inc(c->metrics->ws_framers);
}

static void conn_park(struct ws_conn *c)
{
	if (!c->ctx || c->closing || !ws_frame_rx_idle(&c->rx) ||
	    wslay_event_want_write(c->ctx) ||
	    wslay_event_get_queued_msg_count(c->ctx) != 0 ||
	    !wslay_event_want_read(c->ctx))
		return;
	wslay_event_context_free(c->ctx);
	c->ctx = NULL;
	metrics_dec(c->metrics->ws_framers);
}

/* --- connection I/O ------------------------------------------------------- */

static void conn_teardown(struct ws_conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->slot)
		limit_stream_release(c->slot, c->user_id, c->addr);
	c->slot = NULL;
	bus_unsubscribe(c->sub);
	c->sub = NULL;
	if (c->watched)
		loop_unwatch(c->lp, c->fd);
	c->watched = 0;
	if (c->wl) {
		if (c->prev)
			c->prev->next = c->next;
		else if (c->wl->conns == c)
			c->wl->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->prev = c->next = NULL;
	}
	q_clear(c);
	if (c->ctx) {
		wslay_event_context_free(c->ctx);
		c->ctx = NULL;
		metrics_dec(c->metrics->ws_framers);
	}
	free(c->extra);
	c->extra = NULL;
	close(c->fd);
	c->fd = -1;
	metrics_dec(c->metrics->connections[TRANSPORT_WS]);
	log_debug("ws closed addr=%s user=%s", c->addr, c->username);
	c->wl = NULL;
	conn_unref(c); /* the loop's reference */
}

static void conn_io(void *arg, uint32_t events);

static void conn_watch(struct ws_conn *c, uint32_t want)
{
	if (want == c->watched)
		return;
	if (loop_watch(c->lp, c->fd, want, conn_io, c) < 0) {
		log_warn("ws cannot watch socket addr=%s errno=%d", c->addr,
			 errno);
		conn_teardown(c);
		return;
	}
	c->watched = want;
}

/* After our close frame is out and the peer's has not come: stop writing
 * and read (discarding) until EOF, so that unread input does not turn
 * close() into a reset that could destroy the close frame in flight. */
static void conn_drain(struct ws_conn *c)
{
	char buf[4096];

	if (!c->draining) {
		c->draining = true;
		shutdown(c->fd, SHUT_WR);
		int64_t by = mono_ms() + WS_CLOSE_GRACE_MS;
		if (!c->closing || c->close_by > by)
			c->close_by = by;
		c->closing = true; /* also when wslay closed (1002/1007/1009) */
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_watch(c, EPOLLIN | EPOLLRDHUP);
			return;
		}
		conn_teardown(c);
		return;
	}
}

/* Write what is queued, then decide what to wait for. */
static void conn_flush(struct ws_conn *c)
{
	if (c->dead)
		return;
	if (c->draining) {
		conn_drain(c);
		return;
	}
	for (;;) {
		/* wslay's control frames go between our frames, never inside
		 * one; ours wait while one of wslay's is half written. */
		if (c->q_off == 0 && c->ctx && wslay_event_want_write(c->ctx)) {
			if (wslay_event_send(c->ctx) != 0) {
				conn_teardown(c);
				return;
			}
			if (wslay_event_want_write(c->ctx))
				break; /* the socket is full */
		}
		if (c->ctx && wslay_event_get_close_sent(c->ctx)) {
			q_clear(c); /* nothing may follow a close */
			break;
		}
		if (c->qhead == c->qlen) {
			if (!c->close_code ||
			    (c->ctx &&
			     wslay_event_get_queued_msg_count(c->ctx) != 0))
				break;
			uint16_t code = c->close_code;
			c->close_code = 0;
			conn_framer(c);
			wslay_event_queue_close(
			    c->ctx, code, (const uint8_t *)c->close_reason,
			    strlen(c->close_reason));
			continue;
		}
		if (q_write(c) < 0) {
			conn_teardown(c);
			return;
		}
		if (c->qhead < c->qlen)
			break; /* the socket is full */
	}
	if (c->ctx && wslay_event_get_close_sent(c->ctx)) {
		if (wslay_event_get_close_received(c->ctx))
			conn_teardown(c);
		else
			conn_drain(c);
		return;
	}
	conn_park(c);
	bool want_read = !c->ctx || wslay_event_want_read(c->ctx);
	bool want_write =
	    (c->ctx && wslay_event_want_write(c->ctx)) || c->qhead < c->qlen;
	if (!want_read && !want_write) {
		conn_teardown(c);
		return;
	}
	conn_watch(c, (want_read ? EPOLLIN | EPOLLRDHUP : 0) |
			  (want_write ? EPOLLOUT : 0));
}

static void conn_io(void *arg, uint32_t events)
{
	struct ws_conn *c = arg;

	if (c->draining) {
		conn_drain(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
		/* A framing error (bad length encoding, reserved opcode) fails
		 * the receive after wslay queued a close: still send that. */
		conn_framer(c);
		if (wslay_event_recv(c->ctx) != 0 &&
		    (c->io_failed || !wslay_event_want_write(c->ctx))) {
			conn_teardown(c);
			return;
		}
	}
	conn_flush(c);
}

static void sub_failed(struct ws_conn *c, int err)
{
	if (err == BUS_EFUTURE) {
		queue_error(c, NULL, "bad_cursor",
			    "since is newer than the newest event");
		conn_close_after(c, 1008, "bad cursor");
	} else {
		log_warn("ws history unavailable addr=%s user=%s", c->addr,
			 c->username);
		conn_close_after(c, 1011, "history unavailable");
	}
}

/* A history fetch on the replay pool; holds a reference to its conn. */
struct ws_fetch {
	struct ws_conn *conn;
	struct bus_prefetch *p;
	int rc;
};

static void fetch_free(struct ws_fetch *f)
{
	bus_prefetch_free(f->p);
	conn_unref(f->conn);
	free(f);
}

static void conn_fetch(struct ws_conn *c, struct bus_prefetch *p);

/* On c's loop: the locked part of the subscribe, with the fetched history
 * (bus.h: bus_subscribe_prefetched). */
static void fetch_task(void *arg)
{
	struct ws_fetch *f = arg;
	struct ws_conn *c = f->conn;
	int err = f->rc;

	if (c->dead || c->closing || !c->wl) {
		fetch_free(f);
		return;
	}
	if (!err)
		c->sub = bus_subscribe_prefetched(c->wl->shard, f->p, &sub_ops,
						  c, &err);
	if (err == REPLAY_EBUSY) {
		/* the pool is stopping: like a full queue */
		queue_error(c, NULL, "busy", "the server is busy; try again");
		conn_close_after(c, 1013, "try again later");
	} else if (!c->sub && err == BUS_ESTALE) {
		/* the ring moved past the fetch: read again */
		conn_fetch(c, f->p);
		f->p = NULL;
	} else if (!c->sub) {
		sub_failed(c, err);
	}
	conn_flush(c);
	fetch_free(f); /* may drop the last reference if c was torn down */
}

/* On a replay worker: only hand the result to the loop. */
static void fetch_done(void *arg, struct bus_prefetch *p, int rc)
{
	struct ws_fetch *f = arg;
	(void)p;
	f->rc = rc;
	loop_post(f->conn->lp, fetch_task, f);
}

/* Queue p's fetch; a full queue is answered "busy, try again" and 1013. */
static void conn_fetch(struct ws_conn *c, struct bus_prefetch *p)
{
	struct replay *r = c->wl->ws->cfg.replay;
	struct ws_fetch *f = xcalloc(1, sizeof(*f));
	f->conn = conn_ref(c);
	f->p = p;
	if (replay_submit(r, c->user_id, p, fetch_done, f) == 0)
		return;
	char s[160];
	int n =
	    snprintf(s, sizeof(s),
		     "{\"type\":\"error\",\"error\":\"busy\",\"message\":"
		     "\"the server is busy; try again\",\"retry_after\":%u}",
		     replay_retry_after(r));
	metrics_inc(c->metrics->errors);
	queue_text(c, s, (size_t)n);
	conn_close_after(c, 1013, "try again later");
	fetch_free(f);
}

static void conn_start(void *arg)
{
	struct ws_conn *c = arg;
	struct ws_loop *wl = c->wl;
	int err = 0;

	metrics_inc(c->metrics->connections[TRANSPORT_WS]);
	metrics_inc(c->metrics->connections_total[TRANSPORT_WS]);
	c->next = wl->conns;
	if (wl->conns)
		wl->conns->prev = c;
	wl->conns = c;
	c->last_rx = c->last_ping = mono_ms();
	conn_watch(c, EPOLLIN | EPOLLRDHUP);
	if (c->dead)
		return;
	log_debug("ws open addr=%s user=%s loop=%u since=%" PRId64, c->addr,
		  c->username, wl->idx, c->since);

	/* A cursor older than the ring needs history from the store: read it
	 * on the replay pool, never here (fetch_task completes it). */
	struct ws_server *ws = wl->ws;
	if (ws->cfg.replay && bus_history_needed(ws->cfg.bus, c->since))
		conn_fetch(c, bus_prefetch_new(c->user_id, c->since));
	else
		c->sub = bus_subscribe(wl->shard, c->user_id, c->since,
				       &sub_ops, c, &err);
	if (!c->sub && err)
		sub_failed(c, err);
	/* Bytes that came with the handshake first, then hello and replay. */
	conn_io(c, EPOLLIN | EPOLLOUT);
}

static void upgrade_cb(void *cls, struct MHD_Connection *connection,
		       void *req_cls, const char *extra_in,
		       size_t extra_in_size, MHD_socket sock,
		       struct MHD_UpgradeResponseHandle *urh)
{
	struct ws_handshake *hs = cls;
	struct ws_server *ws = hs->ws;
	(void)connection;
	(void)req_cls;

	pthread_mutex_lock(&ws->mu);
	if (ws->closing) {
		pthread_mutex_unlock(&ws->mu);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		hs_free(hs);
		ws_unref(ws);
		return;
	}
	int fl = fcntl(sock, F_GETFL);
	if (fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0) {
		pthread_mutex_unlock(&ws->mu);
		log_warn("ws cannot make socket non-blocking addr=%s",
			 hs->cl.addr);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		hs_free(hs);
		ws_unref(ws);
		return;
	}
	int sndbuf = ws->cfg.send_queue_max < WS_SNDBUF_MAX
			 ? (int)ws->cfg.send_queue_max
			 : WS_SNDBUF_MAX;
	if (sndbuf < 4096)
		sndbuf = 4096;
	/* Best effort: without it backpressure only comes later. */
	setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	/* A flush already writes everything queued in one sendmsg(), so
	 * Nagle can only hold a small frame back until the previous one is
	 * acknowledged (MHD leaves the option as its last response needed).
	 * Fails harmlessly on the TLS terminator's AF_UNIX socketpairs. */
	int one = 1;
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		pthread_mutex_unlock(&ws->mu);
		log_warn("ws cannot take over the socket addr=%s: %s",
			 hs->cl.addr, strerror(errno));
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		hs_free(hs);
		ws_unref(ws);
		return;
	}
	struct ws_conn *c = xcalloc(1, sizeof(*c));
	unsigned i = atomic_fetch_add(&ws->next_loop, 1) % ws->cfg.nloops;
	atomic_init(&c->refs, 1);
	c->wl = &ws->loops[i];
	c->lp = c->wl->lp;
	c->metrics = ws->cfg.metrics;
	c->fd = fd;
	ws_frame_rx_init(&c->rx, true, WS_MESSAGE_MAX);
	c->since = hs->since;
	c->user_id = hs->cl.user_id;
	memcpy(c->username, hs->cl.username, sizeof(c->username));
	c->username[sizeof(c->username) - 1] = '\0';
	memcpy(c->addr, hs->cl.addr, sizeof(c->addr));
	c->addr[sizeof(c->addr) - 1] = '\0';
	c->slot = hs->cl.limit; /* the connection releases it now */
	hs->cl.limit = NULL;
	if (extra_in_size) {
		c->extra = xmalloc(extra_in_size);
		memcpy(c->extra, extra_in, extra_in_size);
		c->extra_len = extra_in_size;
	}
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	/* Posted under mu, so it precedes ws_server_free's close task. */
	loop_post(c->lp, conn_start, c);
	pthread_mutex_unlock(&ws->mu);
	hs_free(hs);
	ws_unref(ws);
}

/* --- ticks and shutdown -----------------------------------------------------
 */

static void ws_tick(void *arg)
{
	struct ws_loop *wl = arg;
	int64_t now = mono_ms();
	int64_t ping_ms = (int64_t)wl->ws->cfg.ping_s * 1000;
	struct ws_conn *c = wl->conns;

	while (c) {
		struct ws_conn *next = c->next;
		if (c->closing) {
			if (now >= c->close_by)
				conn_teardown(c);
		} else if (ping_ms && now - c->last_rx >= 2 * ping_ms &&
			   c->last_ping > c->last_rx) {
			/* Silent for two intervals with a ping unanswered (a
			 * late tick must not cut a client never pinged). */
			log_debug("ws ping timeout addr=%s user=%s", c->addr,
				  c->username);
			conn_teardown(c);
		} else if (ping_ms && now - c->last_ping >= ping_ms) {
			struct wslay_event_msg m = {WSLAY_PING, NULL, 0};
			c->last_ping = now;
			conn_framer(c);
			wslay_event_queue_msg(c->ctx, &m);
			conn_flush(c);
		}
		c = next;
	}
}

struct ws_sync {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned left;
};

struct ws_close_all {
	struct ws_loop *wl;
	struct ws_sync *sync;
};

static void close_done_task(void *arg)
{
	struct ws_close_all *ca = arg;

	pthread_mutex_lock(&ca->sync->mu);
	if (--ca->sync->left == 0)
		pthread_cond_signal(&ca->sync->cv);
	pthread_mutex_unlock(&ca->sync->mu);
}

static void close_all_task(void *arg)
{
	struct ws_close_all *ca = arg;
	struct ws_loop *wl = ca->wl;

	while (wl->conns) {
		struct ws_conn *c = wl->conns;
		if (!c->closing)
			conn_close(c, 1001, "server shutting down");
		/* One non-blocking attempt to get the close frame out (not
		 * in the middle of one of our frames). */
		if (c->ctx && c->q_off == 0)
			wslay_event_send(c->ctx);
		conn_teardown(c);
	}
	loop_timer_free(wl->tick);
	wl->tick = NULL;
	/* A flush task posted during this batch (by a conn_start just before
	 * us) is queued behind us and still uses wl: report done only from a
	 * task behind it. No connection is left to post another one. */
	loop_post(wl->lp, close_done_task, ca);
}

/* On the loop's thread (or inline before loop_start). */
static void tick_start_task(void *arg)
{
	struct ws_loop *wl = arg;

	wl->tick = loop_timer_new(wl->lp, ws_tick, wl);
	loop_timer_arm(wl->tick, WS_TICK_MS, WS_TICK_MS);
}

struct ws_server *ws_server_new(const struct ws_config *cfg)
{
	if (!cfg || !cfg->nloops || !cfg->loops || !cfg->shards ||
	    !cfg->metrics || !cfg->chat)
		return NULL;
	struct ws_server *ws = xcalloc(1, sizeof(*ws));
	ws->cfg = *cfg;
	ws->refs = 1;
	atomic_init(&ws->next_loop, 0);
	pthread_mutex_init(&ws->mu, NULL);
	ws->loops = xcalloc(cfg->nloops, sizeof(*ws->loops));
	for (unsigned i = 0; i < cfg->nloops; i++) {
		struct ws_loop *wl = &ws->loops[i];
		wl->ws = ws;
		wl->lp = cfg->loops[i];
		wl->shard = cfg->shards[i];
		wl->idx = i;
		loop_post(wl->lp, tick_start_task, wl);
	}
	return ws;
}

void ws_server_free(struct ws_server *ws)
{
	if (!ws)
		return;
	pthread_mutex_lock(&ws->mu);
	ws->closing = true;
	pthread_mutex_unlock(&ws->mu);

	struct ws_sync sync = {.left = ws->cfg.nloops};
	struct ws_close_all *ca = xcalloc(ws->cfg.nloops, sizeof(*ca));
	pthread_mutex_init(&sync.mu, NULL);
	pthread_cond_init(&sync.cv, NULL);
	for (unsigned i = 0; i < ws->cfg.nloops; i++) {
		ca[i].wl = &ws->loops[i];
		ca[i].sync = &sync;
		loop_post(ws->loops[i].lp, close_all_task, &ca[i]);
	}
	pthread_mutex_lock(&sync.mu);
	while (sync.left)
		pthread_cond_wait(&sync.cv, &sync.mu);
	pthread_mutex_unlock(&sync.mu);
	pthread_cond_destroy(&sync.cv);
	pthread_mutex_destroy(&sync.mu);
	free(ca);
	free(ws->loops);
	ws->loops = NULL;
	ws_unref(ws);
}
