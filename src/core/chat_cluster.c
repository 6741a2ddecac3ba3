/* chat_cluster: the cluster's ephemeral channel wired to core (bus =
 * redis://...). What goes out: each ephemeral event chat publishes that
 * no other node would learn of (travels(): typing, and personal and
 * profile events), each choice of a status or text, this node's set of
 * connected users (presence_local_list) as a heartbeat every
 * CLUSTER_HEARTBEAT_MS and soon after a connection starts, the rate-limit
 * tokens taken here (limit_uses_take, gathered between two publishing
 * rounds), and each login failure or success and registration (auth's
 * share hook). What comes in, from any other node (a node's own messages
 * come back and are dropped by their node id): the event, published on
 * this node's bus to the room's (or the user's, or the user's peers')
 * local subscribers, whatever their transport; the choice, to presence;
 * the set, to the peers table, whose changes go to presence; the tokens,
 * charged to this node's buckets; the logins, to this node's throttles.
 * While a node of the release before the numbers is live, every beat is
 * the whole set (cluster.h's compatibility window).
 *
 * Losing Redis loses only this: typing stays on its node, presence falls
 * back to each node's own view once the other nodes expire
 * (CLUSTER_EXPIRY_MS), and rates and login throttles are per node until it
 * is back; persistent events travel through the store.
 *
 * Threads: the link's subscriber runs on_message, its publisher on_tick
 * and on_drain; chat_cluster_event, the poke, the limits' wake-up and the
 * auth hook run on whichever thread publishes, connects, takes a token or
 * logs in, and only queue. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/chat_internal.h"
#include "model/evtype.h"
#include "util/log.h"
#include "util/util.h"

/* What travels between nodes as an event: what a node publishes on its
 * own bus and no other node would learn of. Typing, to a room's members;
 * personal events (settings, a profile, an invitation, a read marker, a
 * mute) to a user's connections; a profile to the user's peers. Not
 * presence (each node's set carries it), not "disabled" (the store's
 * account words end the sessions on every node), never a persistent type
 * (those come through the store, in id order). */
static bool travels(int type, int64_t room)
{
	switch (type) {
	case EVENT_TYPING:
		return room > 0;
	case EVENT_PROFILE:
		return room == BUS_PERSONAL || room == BUS_PEERS;
	case EVENT_SETTINGS:
	case EVENT_INVITE:
	case EVENT_READ:
	case EVENT_MUTE:
		return room == BUS_PERSONAL;
	default:
		return false;
	}
}

static void send_msg(struct chat *c, const struct cluster_msg *m)
{
	size_t len;
	char *data = cluster_encode(m, &len);
	if (data)
		link_redis_publish(c->bus_link, data, len);
	free(data);
}

void chat_cluster_event(struct chat *c, int type, int64_t room, int64_t user,
			const char *json, size_t len)
{
	if (!c->bus_link || !travels(type, room))
		return;
	struct cluster_msg m = {.kind = CLUSTER_EVENT,
				.node = c->node_id,
				.type = type,
				.room = room,
				.user = user,
				.json = (char *)json,
				.json_len = len};
	send_msg(c, &m);
}

void chat_cluster_poke(struct chat *c)
{
	if (c->bus_link)
		atomic_store(&c->cluster_poke, true);
}

void chat_cluster_choice(struct chat *c, int64_t user,
			 enum presence_status chosen, const char *text,
			 int64_t chosen_ms)
{
	if (!c->bus_link)
		return;
	struct presence_local one = {.user = user,
				     .status = PRESENCE_OFFLINE,
				     .chosen = chosen,
				     .chosen_ms = chosen_ms};
	snprintf(one.text, sizeof(one.text), "%s", text ? text : "");
	struct cluster_msg m = {.kind = CLUSTER_CHOICE,
				.node = c->node_id,
				.users = &one,
				.nusers = 1};
	send_msg(c, &m);
}

/* A login failed or succeeded, or a registration was counted, here
 * (an HTTP worker): the other nodes count it too. */
static void auth_told(void *arg, enum auth_share what, const char *user,
		      const char *addr)
{
	struct chat *c = arg;
	if (!addr || !*addr || strlen(addr) > CLUSTER_AUTH_ADDR_MAX)
		return;
	/* a name no account can have still counts against its address */
	if (user && (!*user || strlen(user) > CLUSTER_AUTH_USER_MAX)) {
		if (what != AUTH_SHARE_FAILED)
			return;
		user = NULL;
	}
	struct cluster_msg m = {.kind = CLUSTER_AUTH,
				.node = c->node_id,
				.what = what,
				.auth_user = (char *)user,
				.auth_addr = (char *)addr};
	send_msg(c, &m);
}

/* limit_take's first token since the last round (an event loop or an
 * HTTP worker): ask the publisher for a round now, so the other nodes
 * hear within milliseconds, and tokens taken meanwhile share one
 * message. */
static void limits_wake(void *arg)
{
	struct chat *c = arg;
	link_redis_wake(c->bus_link);
}

/* ---- coming in (the subscriber thread) ---- */

static void limits_in(struct chat *c, const struct cluster_msg *m)
{
	/* limit.h's clock: the monotonic one, as cmd_admit's callers */
	int64_t now = mono_ms();
	for (size_t i = 0; c->limit && i < m->nuses; i++)
		limit_charge(c->limit, &m->uses[i], now);
}

/* A mute made on another node: this node's cache refuses the user's
 * sends and typing here too (the store has it for the next start). */
static void mute_in(struct chat *c, const struct cluster_msg *m)
{
	json_t *env = json_loadb(m->json, m->json_len, 0, NULL);
	const char *room = json_string_value(json_object_get(env, "room"));
	json_int_t secs = json_integer_value(json_object_get(env, "seconds"));
	int64_t room_id;
	char name[33];
	if (room && secs >= 0 &&
	    resolve_room(c, room, &room_id, name) == CHAT_OK)
		mute_put(c, room_id, m->user,
			 secs ? now_ms() + (int64_t)secs * 1000 : 0);
	json_decref(env);
}

static void event_in(struct chat *c, const struct cluster_msg *m)
{
	if (!travels(m->type, m->room))
		return;
	if (m->type == EVENT_MUTE)
		mute_in(c, m);
	struct event *ev =
	    event_new(0, m->type, m->room, m->user, m->json, m->json_len);
	bus_publish(c->bus, ev);
	event_unref(ev);
}

static void choices_in(struct chat *c, const struct cluster_msg *m, int64_t now)
{
	for (size_t i = 0; i < m->nusers; i++) {
		const struct presence_local *u = &m->users[i];
		if (u->chosen_ms)
			presence_remote_choose(c->presence, u->user, u->chosen,
					       u->text, u->chosen_ms, now);
	}
}

/* A node's set or its changes; if they cannot be placed, ask it for
 * the whole set. */
static void sets_in(struct chat *c, const struct cluster_msg *m, int64_t now)
{
	if (!cluster_peers_update(c->peers, m->node, m->seq,
				  m->kind == CLUSTER_PRESENCE, m->users,
				  m->nusers, now))
		return;
	struct cluster_msg ask = {
	    .kind = CLUSTER_ASK, .node = c->node_id, .to = m->node};
	send_msg(c, &ask);
}

/* Another node wants this one's whole set: the next beat, at once. */
static void asked_in(struct chat *c, const struct cluster_msg *m)
{
	if (m->to != c->node_id)
		return;
	atomic_store(&c->cluster_full, true);
	atomic_store(&c->cluster_poke, true);
	link_redis_wake(c->bus_link);
}

static void on_message(void *arg, const char *data, size_t len)
{
	struct chat *c = arg;
	struct cluster_msg m;
	if (cluster_decode(data, len, &m) < 0) {
		log_debug("bus: a malformed message dropped bytes=%zu", len);
		return;
	}
	if (m.node != c->node_id) {
		int64_t now = now_ms();
		if (m.kind == CLUSTER_EVENT)
			event_in(c, &m);
		else if (m.kind == CLUSTER_LIMITS)
			limits_in(c, &m);
		else if (m.kind == CLUSTER_AUTH && c->auth)
			auth_apply(c->auth, m.what, m.auth_user, m.auth_addr,
				   now); /* auth's clock: the wall's */
		else if (m.kind == CLUSTER_ASK)
			asked_in(c, &m);
		else
			choices_in(c, &m, now);
		if (m.kind == CLUSTER_PRESENCE || m.kind == CLUSTER_CHANGES)
			sets_in(c, &m, now);
	}
	cluster_msg_fini(&m);
}

/* ---- going out (the publisher thread) ---- */

/* A user's state as the others see it, in 64 bits: what the last beat
 * sent is remembered this way, to find what changed. */
static uint64_t state_hash(const struct presence_local *u)
{
	uint64_t w[] = {(uint64_t)u->status | (uint64_t)u->chosen << 8,
			(uint64_t)u->chosen_ms, (uint64_t)u->seen_ms};
	return fnv1a64_more(fnv1a64(w, sizeof(w)), u->text, strlen(u->text));
}

/* The set (full) or what changed since the last beat, as the next
 * number. A connected user's seen_ms goes as 0 ("as of this message"), so
 * a heartbeat of a quiet node carries nobody; but as now when an older
 * node listens (real_seen), which has no "as of this message" (it would
 * keep 0, and its last_seen of the user would be when it noticed the user
 * gone, not when this node last saw it). What was sent is remembered as
 * 0 either way, so the first change set after the older nodes are gone
 * carries no false news. */
static void beat(struct chat *c, int64_t now, bool full, bool real_seen)
{
	struct cluster_msg m = {.node = c->node_id};
	struct presence_local *list;
	size_t n = presence_local_list(c->presence, now, &list);
	struct imap sent = {0};

	m.kind = full ? CLUSTER_PRESENCE : CLUSTER_CHANGES;
	m.users = xmalloc((n + c->cluster_sent.len + 1) * sizeof(*m.users));
	for (size_t i = 0; i < n; i++) {
		struct presence_local *u = &list[i];
		uintptr_t was;
		if (u->seen_ms == now)
			u->seen_ms = 0;
		uint64_t h = state_hash(u);
		imap_put(&sent, u->user, (uintptr_t)h);
		if (!full && imap_get(&c->cluster_sent, u->user, &was) &&
		    was == (uintptr_t)h)
			continue;
		m.users[m.nusers] = *u;
		if (real_seen && !u->seen_ms)
			m.users[m.nusers].seen_ms = now;
		m.nusers++;
	}
	/* gone since the last beat */
	for (size_t i = 0; !full && i < c->cluster_sent.cap; i++) {
		int64_t id = c->cluster_sent.keys[i];
		if (id == IMAP_EMPTY || imap_get(&sent, id, NULL))
			continue;
		m.users[m.nusers++] =
		    (struct presence_local){.user = id,
					    .status = PRESENCE_OFFLINE,
					    .chosen = PRESENCE_ONLINE};
	}
	imap_fini(&c->cluster_sent);
	c->cluster_sent = sent;
	m.seq = ++c->cluster_seq;
	send_msg(c, &m);
	free(m.users);
	free(list);
}

static void on_tick(void *arg)
{
	struct chat *c = arg;
	int64_t now = now_ms();
	cluster_peers_expire(c->peers, now);
	bool poked = atomic_exchange(&c->cluster_poke, false);
	if (poked || now - c->cluster_beat_ms >= CLUSTER_HEARTBEAT_MS ||
	    now < c->cluster_beat_ms) {
		/* an older node drops "d": while one is live, every beat is
		 * the whole set it reads, or this node's users would expire
		 * there between whole sets */
		bool older = cluster_peers_unnumbered(c->peers);
		bool full = atomic_exchange(&c->cluster_full, false) ||
			    c->cluster_seq == 0 || older ||
			    ++c->cluster_beats >= CLUSTER_FULL_EVERY;
		if (full)
			c->cluster_beats = 0;
		beat(c, now, full, older);
		c->cluster_beat_ms = now;
	}
}

/* Each publishing round: the tokens taken here since the last "l" go out
 * as one message, at most one every LIMITS_EVERY_MS (a node taking
 * thousands of tokens a second sends a hundred messages, not thousands);
 * what waits keeps the record non-empty, so no wake-up comes meanwhile,
 * and the publisher comes back when the pause is over. */
#define LIMITS_EVERY_MS 10

static int on_drain(void *arg)
{
	struct chat *c = arg;
	struct cluster_msg m = {.kind = CLUSTER_LIMITS, .node = c->node_id};
	int64_t now = mono_ms();
	if (!c->limit)
		return 0;
	if (now - c->limits_sent_ms < LIMITS_EVERY_MS &&
	    now >= c->limits_sent_ms)
		return (int)(c->limits_sent_ms + LIMITS_EVERY_MS - now);
	m.uses = limit_uses_take(c->limit, &m.nuses);
	if (!m.uses)
		return 0;
	send_msg(c, &m);
	free(m.uses);
	c->limits_sent_ms = now;
	return 0;
}

/* A peer's user changed (under the peers' lock; presence takes its own,
 * and never calls back into the peers). */
static void on_change(void *arg, int64_t user, enum presence_status st,
		      int64_t seen_ms)
{
	struct chat *c = arg;
	presence_remote_set(c->presence, user, st, seen_ms, now_ms());
}

/* ---- start and stop ---- */

int chat_cluster_start(struct chat *c, const char *bus_url, struct auth *a,
		       struct limit *l, struct metrics *m, char *err,
		       size_t errlen)
{
	struct addr_bus b;
	char channel[64];
	uint64_t id = 0;

	if (!bus_url)
		return CHAT_OK;
	if (!c->presence || addr_bus_parse(bus_url, &b, err, errlen) < 0) {
		if (!c->presence)
			snprintf(err, errlen, "presence is not started");
		return CHAT_EINVAL;
	}
	if (getrandom(&id, sizeof(id), 0) != sizeof(id)) {
		snprintf(err, errlen, "no random node id");
		return CHAT_EINVAL;
	}
	c->node_id = (int64_t)(id >> 1) | 1;
	/* Redis pub/sub ignores databases: the number names the channel */
	snprintf(channel, sizeof(channel), "natter:ephemeral:%d", b.db);
	c->peers = cluster_peers_new(CLUSTER_EXPIRY_MS, on_change, c);
	struct link_redis_ops ops = {on_message, on_tick, on_drain};
	c->bus_link = link_redis_new(&b, channel, &ops, c, m);
	c->auth = a;
	c->limit = l;
	if (a)
		auth_share(a, auth_told, c);
	if (l)
		limit_share(l, limits_wake, c);
	if (link_redis_start(c->bus_link) < 0) {
		chat_cluster_stop(c);
		snprintf(err, errlen, "cannot start the bus threads");
		return CHAT_EINVAL;
	}
	log_info("bus: redis host=%s port=%d channel=%s node=%lld", b.host,
		 b.port, channel, (long long)c->node_id);
	return CHAT_OK;
}

void chat_cluster_stop(struct chat *c)
{
	/* after this, a token or a login here tells nobody */
	if (c->auth)
		auth_share(c->auth, NULL, NULL);
	if (c->limit)
		limit_unshare(c->limit);
	c->auth = NULL;
	c->limit = NULL;
	link_redis_free(c->bus_link);
	c->bus_link = NULL;
	imap_fini(&c->cluster_sent);
	cluster_peers_free(c->peers);
	c->peers = NULL;
}

const char *chat_cluster_bus(struct chat *c, bool *ok)
{
	if (!c->bus_link)
		return NULL;
	*ok = link_redis_ok(c->bus_link);
	return "redis";
}
