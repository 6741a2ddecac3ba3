/* metrics: process-wide counters for GET /metrics (Prometheus text). Plain
 * atomics: any thread may bump them; nothing here allocates. */
#ifndef NATTER_METRICS_H
#define NATTER_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/histo.h"
#include "util/util.h"

enum transport_kind {
	TRANSPORT_WS,
	TRANSPORT_SSE,
	TRANSPORT_POLL,
	TRANSPORT_N
};

/* Why a browser client ended on its transport (POST /api/client-report). */
enum client_reason {
	REASON_OK,
	REASON_WS_FAILED,
	REASON_WS_TIMEOUT,
	REASON_SSE_FAILED,
	REASON_SSE_TIMEOUT,
	REASON_OTHER,
	REASON_N
};

struct metrics {
	atomic_uint_fast64_t connections[TRANSPORT_N]; /* open now */
	atomic_uint_fast64_t connections_total[TRANSPORT_N];
	atomic_uint_fast64_t delivered[TRANSPORT_N]; /* events written */
	atomic_uint_fast64_t slow_disconnects[TRANSPORT_N];
	atomic_uint_fast64_t sends;    /* send commands received */
	atomic_uint_fast64_t acks;     /* sends acknowledged (committed) */
	atomic_uint_fast64_t errors;   /* error answers (4xx/5xx, WS errors) */
	atomic_uint_fast64_t requests; /* HTTP requests finished */
	atomic_uint_fast64_t rejected_busy; /* 503: connection limit */
	/* connections closed for request headers not done in time, and for
	 * a body arriving too slowly (slowloris) */
	atomic_uint_fast64_t deadline_headers, deadline_body;
	/* TLS handshakes: completed, failed (error or timeout), refused by
	 * reason */
	atomic_uint_fast64_t tls_handshakes, tls_handshake_failures,
	    tls_handshake_timeouts;
	atomic_uint_fast64_t tls_refused_global, tls_refused_addr;
	/* events bus_publish refused as out of id order (bus.h) */
	atomic_uint_fast64_t bus_id_violations;
	/* the cluster's Redis channel (core/link_redis.h): messages
	 * received and published, dropped (down or queue full), connections
	 * made again after a loss, 1 while both connections are up */
	atomic_uint_fast64_t cluster_in, cluster_out, cluster_dropped,
	    cluster_reconnects, cluster_up;
	atomic_uint_fast64_t ws_framers; /* WebSockets holding wslay contexts */
	atomic_uint_fast64_t client_transport[TRANSPORT_N][REASON_N];
	/* commands refused by a per-user rate limit, by bucket: all, send,
	 * typing (core/limit.h's enum limit_kind order) */
	atomic_uint_fast64_t rate_limited[3];
	/* WebSockets closed (1008) for flooding past their rate limit */
	atomic_uint_fast64_t rate_flood_closes;
	/* streams refused (429) at a cap: [0] per user, [1] per address */
	atomic_uint_fast64_t streams_refused[2];
	/* HTTP connections refused at connections-per-address: [0] answered
	 * 429, [1] closed at once (twice the cap) */
	atomic_uint_fast64_t conns_refused_addr[2];
	/* 1 while the store's disk is full (core/chat.h chat_storage_full) */
	atomic_uint_fast64_t storage_full;
	/* rooms and direct conversations refused at rooms-per-day */
	atomic_uint_fast64_t rooms_day_limited;
	/* a persistent command's submit to its commit (chat), and an event's
	 * commit to its bytes written to a client, by transport */
	struct histo commit;
	struct histo delivery[TRANSPORT_N];
	/* a persistent command's submit to its event written to a client,
	 * every transport (what the admin statistics' latency shows) */
	struct histo send_delivery;
	int64_t start_time_s; /* wall clock at metrics_init */
};

void metrics_init(struct metrics *m);
#define metrics_inc(field)                                                     \
	atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)
#define metrics_dec(field)                                                     \
	atomic_fetch_sub_explicit(&(field), 1, memory_order_relaxed)
#define metrics_add(field, n)                                                  \
	atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)
const char *transport_name(enum transport_kind k); /* "ws", "sse", "poll" */
/* Parse the names back: 0, or -1 when unknown. */
int transport_parse(const char *s, enum transport_kind *out);
/* "ok", "ws_failed", ... ; unknown strings map to REASON_OTHER. */
enum client_reason client_reason_parse(const char *s);
const char *client_reason_name(enum client_reason r);
/* Append the Prometheus exposition text, process_* metrics included
 * (read from /proc/self on Linux; left out where it cannot be read). */
void metrics_render(const struct metrics *m, struct buf *out);
/* Only the process_* metrics (resident memory, CPU seconds, open and
 * maximum file descriptors, start time). */
void metrics_render_process(const struct metrics *m, struct buf *out);

#endif
