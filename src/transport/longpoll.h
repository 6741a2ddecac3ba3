/* longpoll: GET /poll?since=N&timeout=S. If events after since exist it
 * answers at once with {"events":[...],"cursor":N,"recovered":B}; else the
 * connection is suspended until an event arrives or the timeout passes,
 * then answers with an empty batch and the same cursor. A batch holds at
 * most LONGPOLL_BATCH_MAX events and, past its first event, at most
 * bytes_max bytes of envelopes (the server's send-queue-max: the per-
 * connection limit every transport keeps); the cursor says where to
 * continue. Cache-Control: no-store. */
#ifndef NATTER_LONGPOLL_H
#define NATTER_LONGPOLL_H

#include <stdint.h>

#include <microhttpd.h>

#include "core/bus.h"
#include "core/replay.h"
#include "net/loop.h"
#include "util/metrics.h"
#include "transport/reply.h"
#include "transport/transport.h"

#define LONGPOLL_BATCH_MAX 500

struct longpoll;

/* Timeouts run on timers spread over loops[0..nloops) (borrowed: they must
 * keep running until the daemon is stopped). NULL when nloops is 0. */
struct longpoll *longpoll_new(struct bus *bus, struct metrics *m,
			      size_t bytes_max, struct loop **loops,
			      unsigned nloops);
/* Answers every waiting poll with its batch so far (waiting up to a second
 * for the answers). NULL is fine. */
void longpoll_free(struct longpoll *lp);

/* Called by http for an authenticated GET /poll, possibly several times for
 * one request: *state is NULL the first time, and the value longpoll left
 * in it on later calls (after a resume). since < 0 means from now. */
enum MHD_Result longpoll_handle(struct longpoll *lp, struct MHD_Connection *c,
				struct reply_log *log,
				const struct transport_client *cl,
				int64_t since, unsigned timeout_s,
				void **state);
/* Called by http when the request ends (answered, or the client left) with
 * the state longpoll left; NULL is fine. */
void longpoll_request_done(void *state);

/* A cursor older than the bus's ring is read on r (core/replay.h), and a
 * full pool is answered 503 with Retry-After. Set before the first
 * request; r outlives every stream. NULL (the default): read inline. */
void longpoll_set_replay(struct longpoll *lp, struct replay *r);

#endif
