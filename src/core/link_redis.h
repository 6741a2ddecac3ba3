/* link_redis: the cluster's ephemeral channel over Redis pub/sub (bus =
 * redis://...), the one file that speaks hiredis. It carries opaque
 * payloads: what they mean is core/cluster.h's business.
 *
 * Two threads of its own, so that no event loop ever waits on Redis:
 *   - the subscriber holds a blocking SUBSCRIBE connection and hands each
 *     message to ops->message;
 *   - the publisher PUBLISHes what link_redis_publish queued, and calls
 *     ops->tick every LINK_REDIS_TICK_MS whatever the connection's state
 *     (heartbeats and expiry run there).
 * Each reconnects by itself, forever, with a backoff from 100 ms to 2 s.
 * While the publisher is down, link_redis_publish drops what it is given
 * (typing and presence are worth nothing late); a full queue drops too.
 *
 * It does not persist, retry, order across nodes or filter a node's own
 * messages (Redis sends them back; the caller ignores its own). */
#ifndef NATTER_LINK_REDIS_H
#define NATTER_LINK_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/addr.h"
#include "util/metrics.h"

#define LINK_REDIS_TICK_MS 250
#define LINK_REDIS_QUEUE_MAX 4096 /* payloads waiting to be published */

struct link_redis;

struct link_redis_ops {
	/* A message from the channel (borrowed; any node's, this one's
	 * too), on the subscriber thread. */
	void (*message)(void *arg, const char *data, size_t len);
	/* Every LINK_REDIS_TICK_MS on the publisher thread. */
	void (*tick)(void *arg);
	/* May be NULL. Before each publishing round, on the publisher
	 * thread: the caller's chance to queue what it gathered since
	 * (link_redis_wake asks for a round at once). Returns 0, or the ms
	 * after which it wants another round (it held something back). */
	int (*drain)(void *arg);
};

/* A link to channel of the Redis at b (copied); nothing runs until
 * link_redis_start. m may be NULL; its cluster_* counters are bumped. */
struct link_redis *link_redis_new(const struct addr_bus *b, const char *channel,
				  const struct link_redis_ops *ops, void *arg,
				  struct metrics *m);
/* Start both threads: 0, or -1 (free it then). */
int link_redis_start(struct link_redis *l);
/* Stops and joins the threads: no callback runs after it. NULL is fine. */
void link_redis_free(struct link_redis *l);

/* Queue a copy of data for PUBLISH; never blocks. Any thread. */
void link_redis_publish(struct link_redis *l, const char *data, size_t len);
/* Ask the publisher for a round now (ops->drain, then PUBLISH); never
 * blocks. Any thread. */
void link_redis_wake(struct link_redis *l);
/* Whether both connections are up now. */
bool link_redis_ok(struct link_redis *l);

#endif
