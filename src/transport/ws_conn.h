/* ws_conn: internal to the WebSocket transport (ws.c and ws_conn.c); no
 * other file includes it. It holds what the server side (handshake,
 * upgrade, loop assignment, history fetch, ticks, shutdown: ws.c) and one
 * connection's life (ws_conn.c) share: the server, per-loop and connection
 * structs and the few functions each calls in the other. The design notes
 * for the whole transport are at the top of ws.c.
 *
 * It deliberately does not declare anything for other layers: the
 * transport's interface is transport/ws.h. */
#ifndef NATTER_TRANSPORT_WS_CONN_H
#define NATTER_TRANSPORT_WS_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <wslay/wslay.h>

#include "transport/ws.h"
#include "transport/ws_frame.h"

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
/* A flush submits at most this many connections' writes at once, each of
 * at most WS_BATCH_FRAMES whole frames (longer queues write the plain
 * way). */
#define WS_BATCH_SLOTS 64
#define WS_BATCH_FRAMES 4

/* One connection's staged write in a batch. */
struct ws_bslot {
	struct msghdr mh;
	struct iovec iov[2 * WS_BATCH_FRAMES];
	uint8_t hdr[WS_BATCH_FRAMES][WS_FRAME_HDR_MAX];
};
/* A drained queue of at most this many slots is kept for reuse, until a
 * tick finds it unused since the previous tick (an idle connection holds
 * no queue). */
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
	/* NULL: writes are plain sendmsg() (no io_uring, or turned off) */
	struct sendbatch *sb;
	struct ws_bslot *slots; /* WS_BATCH_SLOTS staged sendmsg()s */
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
	bool reserved; /* a history-pool place is held for this cursor */
	/* Set by upgrade_cb for conn_adopt, which runs on wl's thread. */
	struct ws_loop *wl;
	int fd;
	char *extra; /* bytes read by MHD past the handshake, or NULL */
	size_t extra_len;
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
	bool q_used;	     /* queued a message since the last tick */
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
	bool reserved;	    /* holds a history-pool place (replay_reserve) not
			       used yet; released at teardown */
	unsigned limited_run; /* commands refused in a row (rate limits) */
};

/* A send command waiting for the store. */
struct ws_ack {
	struct ws_conn *conn; /* a reference */
	char *client_id;
	int err;
	struct event *ev;
};

/* --- implemented in ws_conn.c, called from ws.c ------------------------- */

extern const struct bus_sub_ops sub_ops;

void sub_failed(struct ws_conn *c, int err);
void conn_watch(struct ws_conn *c, uint32_t want);
struct ws_conn *conn_ref(struct ws_conn *c);
void conn_io(void *arg, uint32_t events);
void conn_close(struct ws_conn *c, uint16_t code, const char *reason);
void conn_close_after(struct ws_conn *c, uint16_t code, const char *reason);
void queue_error(struct ws_conn *c, const char *client_id, const char *code,
		 const char *message);
void conn_unref(struct ws_conn *c);
void conn_framer(struct ws_conn *c);
void queue_text(struct ws_conn *c, const char *s, size_t len);
void conn_flush(struct ws_conn *c);
void conn_teardown(struct ws_conn *c);
void conn_idle_trim(struct ws_conn *c);

#endif
