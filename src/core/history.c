/* history: the reads a client reloads a room from: history pages, with
 * each message's reactions aggregated for the reader (who reacted is
 * counted, whether the reader did is told), and one message's reactions.
 *
 * It deliberately does not do: writing reactions (the event-type table's
 * reaction row, applied by the store's writer) or search (chat.c). */
#include <stdlib.h>
#include <string.h>

#include "core/chat.h"
#include "core/chat_internal.h"
#include "util/util.h"

/* [{"emoji","count","me"}] of rs[0..n), a new array. */
static json_t *reactions_json(const struct store_reaction *rs, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:I, s:b}", "emoji",
						   rs[i].emoji, "count",
						   (json_int_t)rs[i].count,
						   "me", rs[i].me));
	return a;
}

/* ev's envelope with "reactions" added at its end: a new event. The
 * stored envelope is an object ending in '}', so no parse is needed. */
static struct event *with_reactions(struct event *ev,
				    const struct store_reaction *rs, size_t n)
{
	size_t len;
	const char *json = event_json(ev, &len);
	json_t *a = reactions_json(rs, n);
	char *arr = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	if (!arr || len < 2 || json[len - 1] != '}') {
		free(arr);
		return event_ref(ev);
	}
	struct buf b;
	buf_init(&b);
	buf_append(&b, json, len - 1);
	buf_puts(&b, ",\"reactions\":");
	buf_puts(&b, arr);
	buf_puts(&b, "}");
	free(arr);
	struct event *out =
	    event_new(event_id(ev), event_type(ev), event_room(ev),
		      event_user(ev), b.data, b.len);
	event_subject_set(
	    out, event_subject(ev) == event_user(ev) ? 0 : event_subject(ev));
	buf_fini(&b);
	return out;
}

int chat_history(struct chat *c, const struct chat_user *u, const char *room,
		 char name[33], int64_t before, int64_t after, unsigned limit,
		 struct event ***out, size_t *n, bool *more)
{
	struct store_reaction *rs = NULL;
	size_t nr = 0, k = 0;
	int64_t id;
	int rc = chat_room_member(c, u, room, &id, name);
	if (rc != CHAT_OK)
		return rc;
	if (store_history(c->store, id, before, after, limit, out, n, more) < 0)
		return CHAT_EINTERNAL;
	if (*n == 0)
		return CHAT_OK;
	if (store_reactions(c->store, u->id, id, event_id((*out)[0]),
			    event_id((*out)[*n - 1]), &rs, &nr) < 0) {
		for (size_t i = 0; i < *n; i++)
			event_unref((*out)[i]);
		free(*out);
		*out = NULL;
		*n = 0;
		return CHAT_EINTERNAL;
	}
	/* both in id order: one walk */
	for (size_t i = 0; i < *n && k < nr; i++) {
		int64_t eid = event_id((*out)[i]);
		while (k < nr && rs[k].message_id < eid)
			k++;
		size_t first = k;
		while (k < nr && rs[k].message_id == eid)
			k++;
		if (k == first)
			continue;
		struct event *ev =
		    with_reactions((*out)[i], rs + first, k - first);
		event_unref((*out)[i]);
		(*out)[i] = ev;
	}
	free(rs);
	return CHAT_OK;
}

int chat_reactions(struct chat *c, const struct chat_user *u, const char *room,
		   int64_t msg, json_t **out)
{
	struct store_reaction *rs = NULL;
	size_t nr = 0;
	int64_t id;
	char name[33];
	int rc = chat_room_member(c, u, room, &id, name);
	if (rc != CHAT_OK)
		return rc;
	if (store_reactions(c->store, u->id, id, msg, msg, &rs, &nr) < 0)
		return CHAT_EINTERNAL;
	*out = reactions_json(rs, nr);
	free(rs);
	return CHAT_OK;
}
