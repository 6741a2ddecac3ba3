/* link: how committed events reach the bus, as a small ops table. Today's
 * link is local: the store's commit hook hands each event of this node's
 * writer to bus_publish, in id order. A cluster link (a later backend) will
 * instead, on a notification or before publishing its own batch, fetch
 * every event with id > the bus's last id from the shared store and feed
 * them through the same bus_publish, so that a node never sees id N+1
 * before every id <= N it may deliver (bus.h, I1).
 *
 * A link reports, never hides, an id out of order: link_committed returns
 * BUS_EORDER and the caller that decides logs and counts it. */
#ifndef NATTER_LINK_H
#define NATTER_LINK_H

#include "core/bus.h"

struct link;

struct link_ops {
	/* A committed event (borrowed), in the order the store committed
	 * it: 0, or BUS_EORDER when the bus refused its id. */
	int (*committed)(struct link *l, struct event *ev);
	void (*free)(struct link *l);
};

/* Every link starts with this; implementations embed it first. */
struct link {
	const struct link_ops *ops;
};

/* The in-process link: committed = bus_publish(bus, ev). Caller frees
 * with link_free. */
struct link *link_local_new(struct bus *bus);
int link_committed(struct link *l, struct event *ev);
void link_free(struct link *l); /* NULL is fine */

#endif
