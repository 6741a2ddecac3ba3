/* ws: the WebSocket transport. ws_handle() checks the upgrade request and
 * queues the 101; libmicrohttpd then hands the socket to upgrade_cb(), which
 * gives the connection to one of natter's event loops (round robin). There
 * wslay frames it, the connection subscribes to that loop's bus shard, and
 * client commands go to chat. One connection's life (wslay callbacks, the
 * outgoing queue, bus callbacks, commands, teardown, I/O) is in ws_conn.c;
 * the handshake, loop assignment, history fetch, ticks and shutdown here.
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
 *    upgrade_cb (same worker, after the 101 reached the socket) fills with
 *    the socket and posts to a loop, where conn_adopt turns it into a
 *    struct ws_conn (allocated on the loop's thread: see conn_adopt for
 *    why). MHD offers no callback when a 101
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
 *    memory pool that would otherwise stay for the WebSocket's whole life;
 *    main.c's malloc_trim gives its pages back) and closes its copy;
 *    MHD does not shutdown() an upgraded socket, so the connection lives
 *    on in ws's descriptor, which conn_teardown closes.
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
#include "transport/ws_conn.h"
#include "net/sendbatch.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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
	if (hs->reserved)
		replay_release(hs->ws->cfg.replay, hs->cl.user_id);
	free(hs->extra);
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

	/* A cursor that needs history takes its place in the history pool
	 * now: a full pool is a 503 busy before the upgrade, which a browser
	 * sees and backs off from; after it only an error frame could say
	 * so. The place is the connection's until conn_start uses it. */
	struct replay *rp = ws->cfg.replay;
	bool reserved = false;
	if (rp && since >= 0 && bus_history_needed(ws->cfg.bus, since)) {
		if (replay_reserve(rp, cl->user_id) < 0) {
			slot_release(cl);
			return reply_busy(c, log, replay_retry_after(rp));
		}
		reserved = true;
	}

	struct ws_handshake *hs = xcalloc(1, sizeof(*hs));
	hs->ws = ws;
	hs->cl = *cl;
	hs->since = since;
	hs->reserved = reserved;
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

/* Queue p's fetch on the place the handshake reserved (a fetch again,
 * after the ring moved past it, needs a new one); a refusal (a full
 * queue, or the pool stopping) is answered "busy, try again" and 1013. */
static void conn_fetch(struct ws_conn *c, struct bus_prefetch *p)
{
	struct replay *r = c->wl->ws->cfg.replay;
	struct ws_fetch *f = xcalloc(1, sizeof(*f));
	bool reserved = c->reserved;
	f->conn = conn_ref(c);
	f->p = p;
	c->reserved = false;
	if ((reserved ? replay_submit_reserved(r, c->user_id, p, fetch_done, f)
		      : replay_submit(r, c->user_id, p, fetch_done, f)) == 0)
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
	if (ws->cfg.replay && bus_history_needed(ws->cfg.bus, c->since)) {
		conn_fetch(c, bus_prefetch_new(c->user_id, c->since));
	} else {
		if (c->reserved) /* the ring holds the cursor now */
			replay_release(ws->cfg.replay, c->user_id);
		c->reserved = false;
		c->sub = bus_subscribe(wl->shard, c->user_id, c->since,
				       &sub_ops, c, &err);
	}
	if (!c->sub && err)
		sub_failed(c, err);
	/* Bytes that came with the handshake first, then hello and replay. */
	conn_io(c, EPOLLIN | EPOLLOUT);
}

/* On the loop's thread: the connection's struct is allocated here, not on
 * the MHD worker that ran upgrade_cb, so it lives in the arena of the
 * thread that uses and frees it, not in the worker's among requests'
 * short-lived allocations (where a struct that lives as long as the
 * WebSocket keeps the arena from shrinking past it). On its own this did
 * not lower the idle RSS measurably: giving back the pages of the workers'
 * freed 32 KiB pools did (main.c's malloc_trim). */
static void conn_adopt(void *arg)
{
	struct ws_handshake *hs = arg;
	struct ws_conn *c = xcalloc(1, sizeof(*c));

	atomic_init(&c->refs, 1);
	c->wl = hs->wl;
	c->lp = c->wl->lp;
	c->metrics = hs->ws->cfg.metrics;
	c->fd = hs->fd;
	ws_frame_rx_init(&c->rx, true, WS_MESSAGE_MAX);
	c->since = hs->since;
	c->user_id = hs->cl.user_id;
	memcpy(c->username, hs->cl.username, sizeof(c->username));
	c->username[sizeof(c->username) - 1] = '\0';
	memcpy(c->addr, hs->cl.addr, sizeof(c->addr));
	c->addr[sizeof(c->addr) - 1] = '\0';
	c->slot = hs->cl.limit; /* the connection releases it now */
	hs->cl.limit = NULL;
	c->reserved = hs->reserved; /* and its history-pool place */
	hs->reserved = false;
	c->extra = hs->extra;
	c->extra_len = hs->extra_len;
	hs->extra = NULL;
	hs_free(hs);
	conn_start(c);
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
	unsigned i = atomic_fetch_add(&ws->next_loop, 1) % ws->cfg.nloops;
	hs->wl = &ws->loops[i];
	hs->fd = fd;
	if (extra_in_size) {
		hs->extra = xmalloc(extra_in_size);
		memcpy(hs->extra, extra_in, extra_in_size);
		hs->extra_len = extra_in_size;
	}
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	/* Posted under mu, so it precedes ws_server_free's close task. */
	loop_post(hs->wl->lp, conn_adopt, hs);
	pthread_mutex_unlock(&ws->mu);
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
		} else {
			conn_idle_trim(c);
			if (ping_ms && now - c->last_ping >= ping_ms) {
				struct wslay_event_msg m = {WSLAY_PING, NULL,
							    0};
				c->last_ping = now;
				conn_framer(c);
				wslay_event_queue_msg(c->ctx, &m);
				conn_flush(c);
			}
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
		if (cfg->io_uring) {
			const char *why = NULL;
			wl->sb = sendbatch_new(WS_BATCH_SLOTS, &why);
			if (wl->sb)
				wl->slots =
				    xcalloc(WS_BATCH_SLOTS, sizeof(*wl->slots));
			else if (i == 0)
				log_info("ws: %s: writes use sendmsg()", why);
		}
		loop_post(wl->lp, tick_start_task, wl);
	}
	log_info("ws: writes: %s", ws->loops[0].sb
				       ? "batched per loop wake-up (io_uring)"
				       : "one sendmsg() per connection");
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
	for (unsigned i = 0; i < ws->cfg.nloops; i++) {
		sendbatch_free(ws->loops[i].sb);
		free(ws->loops[i].slots);
	}
	free(ws->loops);
	ws->loops = NULL;
	ws_unref(ws);
}
