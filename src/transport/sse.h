/* sse: the Server-Sent Events transport, GET /events. The response streams
 * from a libmicrohttpd content-reader callback; the connection is suspended
 * while there is nothing to send and resumed by the bus. The stream opens
 * with ~2 KiB of padding comment (so buffering proxies flush), a retry:
 * line, and a hello event {"cursor":N,"recovered":B,"transport":"sse"};
 * then one SSE event per chat event (id: = event id, event: = type), and a
 * heartbeat comment every heartbeat_s. A consumer whose pending bytes
 * exceed send_queue_max is ended; it resumes with Last-Event-ID. */
#ifndef NATTER_SSE_H
#define NATTER_SSE_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "core/bus.h"
#include "core/replay.h"
#include "net/loop.h"
#include "util/metrics.h"
#include "transport/reply.h"
#include "transport/transport.h"

struct sse;

/* Heartbeats and stall checks run on timers spread over loops[0..nloops)
 * (borrowed: they must keep running until the daemon is stopped). NULL
 * when nloops is 0. */
struct sse *sse_new(struct bus *bus, struct metrics *m, unsigned heartbeat_s,
		    size_t send_queue_max, struct loop **loops,
		    unsigned nloops);
/* Ends every stream (waiting up to a second for them to finish). The
 * streams MHD still holds keep what they need until it frees them. NULL is
 * fine. */
void sse_free(struct sse *s);

/* Answer an authenticated GET /events; since < 0 means from now. */
enum MHD_Result sse_handle(struct sse *s, struct MHD_Connection *c,
			   struct reply_log *log,
			   const struct transport_client *cl, int64_t since);

/* A cursor older than the bus's ring is read on r (core/replay.h), and a
 * full pool is answered 503 with Retry-After. Set before the first
 * request; r outlives every stream. NULL (the default): read inline. */
void sse_set_replay(struct sse *s, struct replay *r);

#endif
