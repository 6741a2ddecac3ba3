/* ws: the WebSocket transport. http answers GET /ws with 101 through
 * ws_handle(); libmicrohttpd's upgrade hands over the socket, which then
 * lives on one of natter's event loops, framed by wslay. Commands arrive as
 * JSON text frames:
 *   {"op":"send","room":R,"text":T,"client_id":C}
 *       -> {"type":"ack","client_id":C,"id":N,"event":{...}}
 *        | {"type":"error","client_id":C,"error":CODE,"message":TEXT}
 *   {"op":"typing","room":R}
 * and every bus event goes out as one text frame holding its envelope,
 * preceded by {"type":"hello","cursor":N,"recovered":B,"transport":"ws"}.
 * The server pings every ws_ping_s and closes a connection that does not
 * answer; oversized messages close with 1009, invalid UTF-8 with 1007, a
 * consumer whose pending bytes exceed send_queue_max with 1008. */
#ifndef NATTER_WS_H
#define NATTER_WS_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "core/bus.h"
#include "core/chat.h"
#include "core/replay.h"
#include "net/loop.h"
#include "util/metrics.h"
#include "transport/reply.h"
#include "transport/transport.h"

#define WS_MESSAGE_MAX 16384 /* bytes of one client message */

struct ws_server;

struct ws_config {
	struct loop **loops;	   /* connections are spread over these */
	struct bus_shard **shards; /* shards[i] is drained on loops[i] */
	unsigned nloops;
	struct bus *bus;
	struct chat *chat;
	/* Reads history for a cursor older than the ring, off the loops;
	 * NULL: bus_subscribe reads it inline. */
	struct replay *replay;
	struct metrics *metrics;
	size_t send_queue_max;
	unsigned ping_s;
	/* Per-user rate limits on every frame, and the stream caps whose slot
	 * a client hands over (transport_client.limit); NULL: none. */
	struct limit *limit;
	unsigned flood_close; /* refused frames in a row before 1008 */
	/* Batch each loop's socket writes per wake-up through io_uring where
	 * the kernel allows it (net/sendbatch.h); false: sendmsg() only. */
	bool io_uring;
};

struct ws_server *ws_server_new(const struct ws_config *cfg);
/* Close every connection (close frame 1001) and free. NULL is fine. */
void ws_server_free(struct ws_server *ws);

/* Answer an authenticated GET /ws: checks the upgrade headers (400/426 on
 * error) and queues the 101 response. since < 0 means from now. */
enum MHD_Result ws_handle(struct ws_server *ws, struct MHD_Connection *c,
			  struct reply_log *log,
			  const struct transport_client *cl, int64_t since);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: 0 or -1 (bad key). */
int ws_accept_key(const char *key, char out[29]);

#endif
