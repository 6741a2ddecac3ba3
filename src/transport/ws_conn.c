/* ws_conn: one WebSocket connection's life, on its loop's thread:
 * references, the wslay callbacks and the received-byte vetting, the
 * outgoing frame queue and its flush (one sendmsg() per batch, or one
 * io_uring submission for many connections' batches), the bus
 * subscriber callbacks, client commands and their acks, rate limits, the
 * wslay contexts on demand (framer/park), teardown and socket I/O.
 *
 * It deliberately does not do: the handshake, the upgrade, picking a loop,
 * the history fetch at start, pings and timeouts, or shutdown (all in
 * ws.c, whose top comment describes the transport as a whole: threads,
 * lifetime, backpressure, memory). */
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
#include "transport/ws_conn.h"
#include "net/sendbatch.h"

static int64_t close_deadline(struct ws_conn *c);

/* --- connection references ------------------------------------------- */

struct ws_conn *conn_ref(struct ws_conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void conn_unref(struct ws_conn *c)
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
	c->q_used = true;
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

/* The kernel took w more bytes of the queue: release what went out
 * whole. Returns the events among them. */
static uint64_t q_consume(struct ws_conn *c, size_t w)
{
	uint64_t delivered = 0;

	while (w && c->qhead < c->qlen) {
		struct ws_frame *f = &c->q[c->qhead];
		size_t rest = wire_len(f->len) - c->q_off;
		if (w < rest) {
			c->q_off += w;
			c->out_bytes -= w;
			break;
		}
		w -= rest;
		c->out_bytes -= rest;
		c->q_off = 0;
		if (f->ev) {
			delivered++;
			event_delivery_observe(
			    f->ev, &c->metrics->delivery[TRANSPORT_WS],
			    &c->metrics->send_delivery);
		}
		frame_release(f);
		c->qhead++;
	}
	return delivered;
}

/* After a write: an empty queue starts over (and gives back a big array);
 * the events delivered are counted. */
static void q_settle(struct ws_conn *c, uint64_t delivered)
{
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
}

/* From the loop's tick: a drained queue left unused for a whole tick is
 * given back, so an idle connection holds no queue array. */
void conn_idle_trim(struct ws_conn *c)
{
	if (c->q && c->qlen == 0 && !c->q_used) {
		free(c->q);
		c->q = NULL;
		c->qcap = 0;
	}
	c->q_used = false;
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
		delivered += q_consume(c, (size_t)w);
		if ((size_t)w < b.bytes)
			break; /* the socket is full */
	}
	q_settle(c, delivered);
	return rc;
}

/* --- batched writes (io_uring) ----------------------------------------
 * With a sendbatch (net/sendbatch.h), a flush first stages each dirty
 * connection's queue, when it is short and plain (a few whole frames, no
 * half-written one, no wslay control frame waiting, no close), as one
 * sendmsg in a batch, and submits the batch with one system call: at paced
 * load, where each wake-up has one event for many connections, that is one
 * kernel crossing per loop wake-up instead of one per connection. The
 * plain flush that follows finds those queues empty (or writes what was
 * not taken: a full socket, an error, anything not staged). */

static bool q_stage(struct ws_conn *c, struct ws_bslot *s)
{
	unsigned n = 0;

	if (c->dead || c->draining || c->q_off || c->qhead == c->qlen ||
	    c->qlen - c->qhead > WS_BATCH_FRAMES)
		return false;
	if (c->ctx && (wslay_event_want_write(c->ctx) ||
		       wslay_event_get_close_sent(c->ctx)))
		return false;
	for (unsigned k = c->qhead; k < c->qlen; k++, n++) {
		const struct ws_frame *f = &c->q[k];
		size_t elen;
		if (f->len > WS_FRAG_MAX)
			return false;
		const char *p = f->ev ? event_json(f->ev, &elen) : f->own;
		size_t hl =
		    ws_frame_header(s->hdr[n], WS_OP_TEXT, true, f->len, NULL);
		s->iov[2 * n] = (struct iovec){s->hdr[n], hl};
		s->iov[2 * n + 1] = (struct iovec){(void *)p, f->len};
	}
	s->mh = (struct msghdr){.msg_iov = s->iov, .msg_iovlen = 2 * n};
	return true;
}

static void q_sent(void *tag, ssize_t w, void *arg)
{
	struct ws_conn *c = tag;

	(void)arg;
	/* A full socket or an error: the plain flush meets it again. */
	if (w > 0)
		q_settle(c, q_consume(c, (size_t)w));
}

static void flush_batched(struct ws_loop *wl, struct ws_conn *c)
{
	while (c) {
		unsigned n = 0;
		while (c && n < WS_BATCH_SLOTS) {
			if (q_stage(c, &wl->slots[n])) {
				if (!sendbatch_add(wl->sb, c->fd,
						   &wl->slots[n].mh, c))
					return; /* unusable: plain writes */
				n++;
			}
			c = c->dirty_next;
		}
		if (n && sendbatch_run(wl->sb, q_sent, NULL) < 0)
			return;
	}
}

static void flush_task(void *arg)
{
	struct ws_loop *wl = arg;
	struct ws_conn *c = wl->dirty;

	wl->flush_posted = false;
	wl->dirty = NULL;
	if (wl->sb)
		flush_batched(wl, c);
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
void conn_close(struct ws_conn *c, uint16_t code, const char *reason)
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
void conn_close_after(struct ws_conn *c, uint16_t code, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_by = close_deadline(c);
	c->close_code = code;
	c->close_reason = reason;
}

void queue_text(struct ws_conn *c, const char *s, size_t len)
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

void queue_error(struct ws_conn *c, const char *client_id, const char *code,
		 const char *message)
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

const struct bus_sub_ops sub_ops = {
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
		if (err == CHAT_EFULL || err == CHAT_EUNAVAILABLE)
			queue_error_retry(c, a->client_id, chat_err_code(err),
					  chat_err_message(err),
					  err == CHAT_EFULL
					      ? CHAT_FULL_RETRY_S
					      : CHAT_UNAVAILABLE_RETRY_S);
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
	else if (err == CHAT_EMUTED || err == CHAT_ELIMIT)
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

void conn_framer(struct ws_conn *c)
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

void conn_teardown(struct ws_conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->slot)
		limit_stream_release(c->slot, c->user_id, c->addr);
	c->slot = NULL;
	if (c->reserved)
		replay_release(c->wl->ws->cfg.replay, c->user_id);
	c->reserved = false;
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

void conn_watch(struct ws_conn *c, uint32_t want)
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
void conn_flush(struct ws_conn *c)
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

void conn_io(void *arg, uint32_t events)
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

void sub_failed(struct ws_conn *c, int err)
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
