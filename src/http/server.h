/* server: the one object main builds and wires, passed down to http. It
 * holds pointers only; each module owns its own state. */
#ifndef NATTER_SERVER_H
#define NATTER_SERVER_H

#include "core/auth.h"
#include "core/bus.h"
#include "core/chat.h"
#include "core/filestore.h"
#include "core/limit.h"
#include "core/stats.h"
#include "util/config.h"
#include "transport/longpoll.h"
#include "net/loop.h"
#include "util/metrics.h"
#include "transport/sse.h"
#include "transport/ws.h"

struct store; /* the backend main opened: http hands it to core calls only */

struct server {
	const struct config *cfg;
	struct metrics metrics;
	struct store *store;
	struct auth *auth;
	struct bus *bus;
	struct chat *chat;
	struct stats *stats;	 /* the admin statistics (core/stats.h) */
	struct filestore *files; /* uploads and files (core/filestore.h) */
	struct limit *limit;	 /* per-user rates, stream caps; NULL: none */
	struct loop **loops;
	struct bus_shard **shards; /* shards[i] drained on loops[i] */
	unsigned nloops;
	struct ws_server *ws;
	struct sse *sse;
	struct longpoll *poll;
};

#endif
