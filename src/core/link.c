/* link: the dispatcher and the local link. The local link keeps nothing
 * but the bus: its order is the store's commit order, which the writer
 * makes equal to id order. */
#include <stdlib.h>

#include "core/link.h"
#include "util/util.h"

struct local {
	struct link base; /* first */
	struct bus *bus;
};

static int local_committed(struct link *l, struct event *ev)
{
	struct local *loc = (struct local *)l;
	return bus_publish(loc->bus, ev);
}

static void local_free(struct link *l)
{
	free(l);
}

static const struct link_ops local_ops = {
    .committed = local_committed,
    .free = local_free,
};

struct link *link_local_new(struct bus *bus)
{
	struct local *loc = xcalloc(1, sizeof(*loc));
	loc->base.ops = &local_ops;
	loc->bus = bus;
	return &loc->base;
}

int link_committed(struct link *l, struct event *ev)
{
	event_committed_mark(ev);
	return l->ops->committed(l, ev);
}

void link_free(struct link *l)
{
	if (l)
		l->ops->free(l);
}
