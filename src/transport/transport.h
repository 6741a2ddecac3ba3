/* transport: what the http module hands to a transport (ws, sse, longpoll)
 * once it has authenticated a request: who the client is. Each transport is
 * a bus subscriber; the bus knows it only through struct bus_sub_ops. */
#ifndef NATTER_TRANSPORT_H
#define NATTER_TRANSPORT_H

#include <stdint.h>

struct limit;

struct transport_client {
	int64_t user_id;
	char username[33];
	char addr[64]; /* client address, for logs */
	/* Non-NULL: the stream holds a slot of limit's stream caps (counted
	 * for user_id and addr); the transport that takes the client releases
	 * it exactly once, when the stream ends or is refused. */
	struct limit *limit;
};

#endif
