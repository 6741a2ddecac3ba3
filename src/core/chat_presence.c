/* chat_presence: presence (core/presence.h) wired to the rest of core. The
 * bus reports each connection start and end (bus_set_conn_hook), clients
 * report activity through the command table, users choose a status and
 * text through chat_presence_set (stored first); presence decides what to
 * publish and this file turns each change into one ephemeral "presence"
 * event on room BUS_PEERS, which the bus hands to every live connection of
 * the users who share a room with its user (once each); the user's own
 * sessions learn their choice from the settings event PATCH /api/me sends
 * (its body has status_choice and status_text), not from their own
 * online/offline noise. last_seen goes to the store when a user goes
 * offline and at shutdown.
 *
 * Who may read whose presence: yourself and the users you share a room
 * or a direct conversation with (the same people who receive the events);
 * anyone else is answered "forbidden", an unknown name "no such user".
 *
 * It does not decide states or timing (presence does) nor deliver (bus). */
#include <stdlib.h>
#include <string.h>

#include "core/chat_internal.h"
#include "model/evtype.h"
#include "util/log.h"
#include "util/util.h"

static void conn_hook(void *arg, int64_t user, int delta)
{
	struct chat *c = arg;
	if (!c->presence)
		return; /* stopped: shutting down */
	if (delta > 0) {
		presence_connect(c->presence, user, now_ms());
		chat_cluster_poke(c);
	} else
		presence_disconnect(c->presence, user, now_ms());
}

/* The members an info shows, into obj. */
static void info_add(const struct presence_info *pi, json_t *obj)
{
	char ts[32];
	json_object_set_new(obj, "status",
			    json_string(presence_status_name(pi->status)));
	json_object_set_new(obj, "status_text",
			    pi->text[0] ? json_string(pi->text) : json_null());
	if (pi->last_seen_ms) {
		format_ts(pi->last_seen_ms, ts);
		json_object_set_new(obj, "last_seen", json_string(ts));
	} else {
		json_object_set_new(obj, "last_seen", json_null());
	}
	json_object_set_new(obj, "seq", json_integer((json_int_t)pi->seq));
}

static void publish(void *arg, int64_t user, const struct presence_info *pi)
{
	struct chat *c = arg;
	char name[33];
	size_t len;

	if (userdir_name(c->users, user, name) < 0)
		return;
	json_t *args = json_object();
	info_add(pi, args);
	struct evtype_input in = {.args = args};
	char *json = event_envelope_input(0, EVENT_PRESENCE, NULL, name,
					  now_ms(), &in, &len);
	json_decref(args);
	if (!json)
		return;
	struct event *ev =
	    event_new(0, EVENT_PRESENCE, BUS_PEERS, user, json, len);
	free(json);
	bus_publish(c->bus, ev);
	event_unref(ev);
}

static void save_seen(void *arg, const int64_t *users, const int64_t *ms,
		      size_t n)
{
	struct chat *c = arg;
	if (store_last_seen_set(c->store, users, ms, n) != STORE_OK)
		log_warn("cannot keep last_seen users=%zu", n);
}

static void load(void *arg, const struct store_presence *sp)
{
	struct chat *c = arg;
	enum presence_status st = PRESENCE_ONLINE;
	presence_status_parse(sp->status, &st);
	presence_load(c->presence, sp->user_id, st, sp->text, sp->last_seen_ms);
}

int chat_presence_start(struct chat *c, int64_t grace_ms, int64_t away_ms,
			int64_t coalesce_ms)
{
	struct presence_config cfg = {grace_ms, away_ms, coalesce_ms};
	struct presence_ops ops = {publish, save_seen};
	c->presence = presence_new(&cfg, &ops, c);
	if (store_presence_each(c->store, load, c) < 0)
		return -1;
	bus_set_conn_hook(c->bus, conn_hook, c);
	return presence_start(c->presence);
}

void chat_presence_stop(struct chat *c)
{
	presence_free(c->presence);
	c->presence = NULL;
}

int chat_activity(struct chat *c, const struct chat_user *u)
{
	if (c->presence)
		presence_activity(c->presence, u->id, now_ms());
	return CHAT_OK;
}

int chat_presence_set(struct chat *c, const struct chat_user *u,
		      const char *status, const char *text, const char **what)
{
	struct presence_info cur;
	enum presence_status st;

	if (!c->presence)
		return CHAT_EINTERNAL;
	presence_get(c->presence, u->id, now_ms(), &cur);
	st = cur.chosen;
	if (status && (presence_status_parse(status, &st) < 0 ||
		       st == PRESENCE_OFFLINE)) {
		*what = "status";
		return CHAT_EINVAL;
	}
	if (text && !presence_text_valid(text, strlen(text))) {
		*what = "status_text";
		return CHAT_EINVAL;
	}
	const char *keep = text ? text : cur.text;
	if (store_presence_set(c->store, u->id, presence_status_name(st),
			       keep) != STORE_OK)
		return CHAT_EINTERNAL;
	int64_t now = now_ms();
	presence_choose(c->presence, u->id, st, text, now);
	chat_cluster_choice(c, u->id, st, keep, now);
	return CHAT_OK;
}

void chat_presence_add(struct chat *c, const char *name, json_t *obj, bool own)
{
	struct presence_info pi = {0};
	int64_t id;
	if (c->presence && name &&
	    userdir_find(c->users, name, strlen(name), &id, NULL) == 0)
		presence_get(c->presence, id, now_ms(), &pi);
	if (!pi.chosen)
		pi.chosen = PRESENCE_ONLINE;
	info_add(&pi, obj);
	json_object_del(obj, "seq");
	if (own)
		json_object_set_new(
		    obj, "status_choice",
		    json_string(presence_status_name(pi.chosen)));
}

static json_t *presence_obj(struct chat *c, int64_t id, const char *name)
{
	json_t *o = json_pack("{s:s}", "user", name);
	struct presence_info pi = {0};
	if (c->presence)
		presence_get(c->presence, id, now_ms(), &pi);
	info_add(&pi, o);
	return o;
}

int chat_presence_of(struct chat *c, const struct chat_user *u,
		     const char *name, json_t **out)
{
	int64_t id;
	char canon[33];
	if (!name || userdir_find(c->users, name, strlen(name), &id, canon))
		return CHAT_ENOUSER;
	if (id != u->id && !bus_shares_room(c->bus, u->id, id))
		return CHAT_EFORBIDDEN;
	*out = presence_obj(c, id, canon);
	return CHAT_OK;
}

json_t *chat_presence_peers(struct chat *c, const struct chat_user *u)
{
	int64_t *ids;
	size_t n = bus_peers(c->bus, u->id, &ids);
	json_t *arr = json_array();
	char name[33];
	json_array_append_new(arr, presence_obj(c, u->id, u->username));
	for (size_t i = 0; i < n; i++)
		if (userdir_name(c->users, ids[i], name) == 0)
			json_array_append_new(arr,
					      presence_obj(c, ids[i], name));
	free(ids);
	return arr;
}

uint64_t chat_presence_published(struct chat *c)
{
	return c->presence ? presence_published(c->presence) : 0;
}
