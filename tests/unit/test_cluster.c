/* test_cluster: what nodes tell each other over the bus (core/cluster.h)
 * and how presence merges it, on a fake clock: the wire's round trips and
 * refusals (rate-limit tokens and logins too), the other nodes' sets with their
 * expiry, and presence's merge (online beats away beats offline, the newest
 * choice wins, the coalescing that keeps a blip from showing). The hiredis link
 * and the threads are the integration test's
 * (tests/integration/cluster-redis.sh); the bus URL's parser is here too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/cluster.h"
#include "core/presence.h"
#include "model/evtype.h"
#include "util/addr.h"

#define GRACE 30000
#define AWAY 300000
#define COALESCE 250

/* ---- the wire ---- */

static void test_event_round_trip(void **state)
{
	(void)state;
	const char *env = "{\"type\":\"typing\",\"room\":\"r\",\"from\":\"a\"}";
	struct cluster_msg m = {.kind = CLUSTER_EVENT,
				.node = 42,
				.type = EVENT_TYPING,
				.room = 7,
				.user = 9,
				.json = (char *)env,
				.json_len = strlen(env)};
	size_t len;
	char *data = cluster_encode(&m, &len);
	assert_non_null(data);
	struct cluster_msg out;
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_int_equal(out.kind, CLUSTER_EVENT);
	assert_int_equal(out.node, 42);
	assert_int_equal(out.type, EVENT_TYPING);
	assert_int_equal(out.room, 7);
	assert_int_equal(out.user, 9);
	assert_int_equal(out.json_len, strlen(env));
	assert_string_equal(out.json, env);
	cluster_msg_fini(&out);
	free(data);
}

static void test_presence_round_trip(void **state)
{
	(void)state;
	struct presence_local users[2] = {
	    {.user = 1, .status = PRESENCE_ONLINE, .chosen = PRESENCE_ONLINE},
	    {.user = 2,
	     .status = PRESENCE_AWAY,
	     .chosen = PRESENCE_DND,
	     .chosen_ms = 1700000000123,
	     .text = "in a meeting \xc3\xa9",
	     .seen_ms = 1700000000999},
	};
	struct cluster_msg m = {.kind = CLUSTER_PRESENCE,
				.node = 5,
				.users = users,
				.nusers = 2,
				.seq = 77};
	size_t len;
	char *data = cluster_encode(&m, &len);
	struct cluster_msg out;
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_int_equal(out.kind, CLUSTER_PRESENCE);
	assert_int_equal(out.seq, 77);
	assert_int_equal(out.nusers, 2);
	assert_int_equal(out.users[1].user, 2);
	assert_int_equal(out.users[1].status, PRESENCE_AWAY);
	assert_int_equal(out.users[1].chosen, PRESENCE_DND);
	assert_int_equal(out.users[1].chosen_ms, 1700000000123);
	assert_string_equal(out.users[1].text, "in a meeting \xc3\xa9");
	assert_int_equal(out.users[1].seen_ms, 1700000000999);
	cluster_msg_fini(&out);
	free(data);

	/* an empty set is a set: the node has nobody */
	m.nusers = 0;
	data = cluster_encode(&m, &len);
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_int_equal(out.nusers, 0);
	cluster_msg_fini(&out);
	free(data);

	/* changes: one user gone (OFFLINE) */
	struct presence_local gone = {
	    .user = 9, .status = PRESENCE_OFFLINE, .chosen = PRESENCE_ONLINE};
	m = (struct cluster_msg){.kind = CLUSTER_CHANGES,
				 .node = 5,
				 .users = &gone,
				 .nusers = 1,
				 .seq = 78};
	data = cluster_encode(&m, &len);
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_int_equal(out.kind, CLUSTER_CHANGES);
	assert_int_equal(out.seq, 78);
	assert_int_equal(out.nusers, 1);
	assert_int_equal(out.users[0].status, PRESENCE_OFFLINE);
	cluster_msg_fini(&out);
	free(data);

	/* a question to node 6 */
	m = (struct cluster_msg){.kind = CLUSTER_ASK, .node = 5, .to = 6};
	data = cluster_encode(&m, &len);
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_int_equal(out.kind, CLUSTER_ASK);
	assert_int_equal(out.to, 6);
	cluster_msg_fini(&out);
	free(data);
}

static void test_limits_and_auth_round_trip(void **state)
{
	(void)state;
	struct limit_use uses[2] = {
	    {.user = 3, .n = {5, 2, 0}},
	    {.user = 1LL << 40, .n = {UINT32_MAX, 0, 7}}};
	struct cluster_msg m = {
	    .kind = CLUSTER_LIMITS, .node = 8, .uses = uses, .nuses = 2};
	size_t len;
	char *data = cluster_encode(&m, &len);
	struct cluster_msg out;
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_int_equal(out.kind, CLUSTER_LIMITS);
	assert_int_equal(out.nuses, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(out.uses[i].user, uses[i].user);
		for (int k = 0; k < LIMIT_KIND_N; k++)
			assert_int_equal(out.uses[i].n[k], uses[i].n[k]);
	}
	cluster_msg_fini(&out);
	free(data);

	struct cluster_msg a = {.kind = CLUSTER_AUTH,
				.node = 8,
				.what = AUTH_SHARE_FAILED,
				.auth_user = "ann",
				.auth_addr = "2001:db8::7"};
	static const enum auth_share whats[] = {
	    AUTH_SHARE_FAILED, AUTH_SHARE_SUCCEEDED, AUTH_SHARE_REGISTERED};
	for (size_t i = 0; i < 3; i++) {
		a.what = whats[i];
		a.auth_user = whats[i] == AUTH_SHARE_REGISTERED ? NULL : "ann";
		data = cluster_encode(&a, &len);
		assert_int_equal(cluster_decode(data, len, &out), 0);
		assert_int_equal(out.kind, CLUSTER_AUTH);
		assert_int_equal(out.what, whats[i]);
		if (a.auth_user)
			assert_string_equal(out.auth_user, "ann");
		else
			assert_null(out.auth_user);
		assert_string_equal(out.auth_addr, "2001:db8::7");
		cluster_msg_fini(&out);
		free(data);
	}
	/* a failure without a name (a login with none) is one */
	a.what = AUTH_SHARE_FAILED;
	a.auth_user = NULL;
	data = cluster_encode(&a, &len);
	assert_int_equal(cluster_decode(data, len, &out), 0);
	assert_null(out.auth_user);
	cluster_msg_fini(&out);
	free(data);
}

static void test_decode_refuses(void **state)
{
	(void)state;
	/* what a node must refuse, and why */
	static const char *const bad[][2] = {
	    // clang-format off
	    {"",
	     "empty"},
	    {"not json",
	     "not JSON"},
	    {"[]",
	     "not an object"},
	    {"{\"v\":2,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[]}",
	     "another version"},
	    {"{\"v\":1,\"n\":0,\"k\":\"p\",\"q\":1,\"s\":[]}",
	     "no node"},
	    {"{\"v\":1,\"n\":-3,\"k\":\"p\",\"q\":1,\"s\":[]}",
	     "a negative node"},
	    {"{\"v\":1,\"n\":1,\"k\":\"x\",\"s\":[]}",
	     "an unknown kind"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1}",
	     "no set"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,9,1,0,\"\",0]]}",
	     "no such status"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,1,0,0,\"\",0]]}",
	     "chosen offline"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[0,1,1,0,\"\",0]]}",
	     "user 0"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,1,1,-1,\"\",0]]}",
	     "chosen before 1970"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,1,1,0,\"\",-1]]}",
	     "seen before 1970"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,1,1,0,\"\"]]}",
	     "5 fields"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,1,1,0,\"\\u202e\",0]]}",
	     "a bidi control in the text"},
	    {"{\"v\":1,\"n\":1,\"k\":\"c\",\"s\":[]}",
	     "a choice is one"},
	    {"{\"v\":1,\"n\":1,\"k\":\"e\",\"t\":4,\"r\":-2,\"u\":1,\"j\":\"{}\"}",
	     "no such room (rooms, 0 or -1)"},
	    {"{\"v\":1,\"n\":1,\"k\":\"e\",\"t\":4,\"r\":1,\"u\":1,\"j\":\"\"}",
	     "no envelope"},
	    {"{\"v\":1,\"n\":1,\"n\":2,\"k\":\"p\",\"q\":1,\"s\":[]}",
	     "a key twice"},
	    {"{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":0,\"s\":[]}",
	     "number 0"},
	    {"{\"v\":1,\"n\":1,\"k\":\"d\",\"s\":[]}",
	     "changes without their number"},
	    {"{\"v\":1,\"n\":1,\"k\":\"d\",\"q\":\"2\",\"s\":[]}",
	     "a number as a string"},
	    {"{\"v\":1,\"n\":1,\"k\":\"r\"}",
	     "a question to nobody"},
	    {"{\"v\":1,\"n\":1,\"k\":\"r\",\"to\":0}",
	     "a question to node 0"},
	    {"{\"v\":1,\"n\":1,\"k\":\"l\"}",
	     "tokens: no list"},
	    {"{\"v\":1,\"n\":1,\"k\":\"l\",\"s\":[[0,1,1,1]]}",
	     "tokens: user 0"},
	    {"{\"v\":1,\"n\":1,\"k\":\"l\",\"s\":[[1,1,1]]}",
	     "tokens: 3 fields"},
	    {"{\"v\":1,\"n\":1,\"k\":\"l\",\"s\":[[1,-1,1,1]]}",
	     "tokens: negative"},
	    {"{\"v\":1,\"n\":1,\"k\":\"l\",\"s\":[[1,1,4294967296,1]]}",
	     "tokens: past 2^32-1"},
	    {"{\"v\":1,\"n\":1,\"k\":\"l\",\"s\":[[1,1,1,\"1\"]]}",
	     "tokens: a string"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"x\",\"i\":\"h\"}",
	     "login: no such kind"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"f\"}",
	     "login: no address"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"f\",\"i\":\"\"}",
	     "login: an empty address"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"f\",\"i\":\"h\",\"u\":\"\"}",
	     "login: an empty name"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"f\",\"i\":\"h\\u0000x\"}",
	     "login: a NUL in the address"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"f\",\"i\":\"h\",\"u\":7}",
	     "login: a number for a name"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"s\",\"i\":\"h\"}",
	     "login: a success without a name"},
	    {"{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"r\",\"i\":\"h\",\"u\":\"a\"}",
	     "login: a registration with a name"},
	    // clang-format on
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cluster_msg out;
		if (cluster_decode(bad[i][0], strlen(bad[i][0]), &out) == 0)
			fail_msg("accepted (%s): %s", bad[i][1], bad[i][0]);
		assert_null(out.users);
		assert_null(out.json);
		assert_null(out.uses);
		assert_null(out.auth_user);
		assert_null(out.auth_addr);
	}
	/* a personal event (room BUS_PERSONAL) and a peers' one (BUS_PEERS) */
	static const char *const good[] = {
	    "{\"v\":1,\"n\":1,\"k\":\"e\",\"t\":4,\"r\":0,\"u\":1,\"j\":\"{}"
	    "\"}",
	    "{\"v\":1,\"n\":1,\"k\":\"e\",\"t\":4,\"r\":-1,\"u\":1,\"j\":\"{}"
	    "\"}",
	};
	for (size_t i = 0; i < 2; i++) {
		struct cluster_msg out;
		assert_int_equal(cluster_decode(good[i], strlen(good[i]), &out),
				 0);
		assert_int_equal(out.room, -(int64_t)i);
		cluster_msg_fini(&out);
	}
	/* status text past PRESENCE_TEXT_MAX characters */
	char big[700];
	int n =
	    snprintf(big, sizeof(big),
		     "{\"v\":1,\"n\":1,\"k\":\"p\",\"q\":1,\"s\":[[1,1,1,0,\"");
	memset(big + n, 'x', PRESENCE_TEXT_MAX + 1);
	snprintf(big + n + PRESENCE_TEXT_MAX + 1,
		 sizeof(big) - n - PRESENCE_TEXT_MAX - 1, "\",0]]}");
	struct cluster_msg out;
	assert_int_equal(cluster_decode(big, strlen(big), &out), -1);
	/* an address past CLUSTER_AUTH_ADDR_MAX bytes */
	n = snprintf(big, sizeof(big),
		     "{\"v\":1,\"n\":1,\"k\":\"a\",\"w\":\"r\",\"i\":\"");
	memset(big + n, '1', CLUSTER_AUTH_ADDR_MAX + 1);
	snprintf(big + n + CLUSTER_AUTH_ADDR_MAX + 1,
		 sizeof(big) - n - CLUSTER_AUTH_ADDR_MAX - 1, "\"}");
	assert_int_equal(cluster_decode(big, strlen(big), &out), -1);
}

/* A node of the release before the numbers (aa31b8e^) sends its whole set
 * as "p" without "q" every heartbeat, a connected user's seen_ms as the
 * time of the beat; these are its bytes, copied from Redis (redis-cli
 * SUBSCRIBE natter:ephemeral:0) with one such node running. */
static void test_older_node_wire(void **state)
{
	(void)state;
	static const char empty[] =
	    "{\"v\":1,\"n\":2918450031005528203,\"k\":\"p\",\"s\":[]}";
	static const char one[] = "{\"v\":1,\"n\":2918450031005528203,\"k\":"
				  "\"p\",\"s\":[[1,1,1,0,\"\",1796195200847]]}";
	struct cluster_msg out;
	assert_int_equal(cluster_decode(empty, strlen(empty), &out), 0);
	assert_int_equal(out.kind, CLUSTER_PRESENCE);
	assert_int_equal(out.node, 2918450031005528203);
	assert_int_equal(out.seq, 0);
	assert_int_equal(out.nusers, 0);
	cluster_msg_fini(&out);
	assert_int_equal(cluster_decode(one, strlen(one), &out), 0);
	assert_int_equal(out.kind, CLUSTER_PRESENCE);
	assert_int_equal(out.seq, 0);
	assert_int_equal(out.nusers, 1);
	assert_int_equal(out.users[0].user, 1);
	assert_int_equal(out.users[0].status, PRESENCE_ONLINE);
	assert_int_equal(out.users[0].chosen, PRESENCE_ONLINE);
	assert_int_equal(out.users[0].seen_ms, 1796195200847);
	cluster_msg_fini(&out);

	/* this node's whole set, read as that release reads it (its
	 * cluster_decode's unpacking, which ignores keys it does not ask
	 * for, such as "q") */
	struct presence_local u = {.user = 3,
				   .status = PRESENCE_AWAY,
				   .chosen = PRESENCE_DND,
				   .chosen_ms = 1700000000123,
				   .text = "back soon",
				   .seen_ms = 1796195200847};
	struct cluster_msg m = {.kind = CLUSTER_PRESENCE,
				.node = 5,
				.users = &u,
				.nusers = 1,
				.seq = 9};
	size_t len;
	char *data = cluster_encode(&m, &len);
	json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
	json_int_t v, node, id, st, ch, ms, seen;
	const char *k, *text;
	size_t tlen;
	assert_non_null(o);
	assert_int_equal(
	    json_unpack(o, "{s:I,s:I,s:s}", "v", &v, "n", &node, "k", &k), 0);
	assert_int_equal(v, 1);
	assert_int_equal(node, 5);
	assert_string_equal(k, "p");
	json_t *arr = json_object_get(o, "s");
	assert_true(json_is_array(arr));
	assert_int_equal(json_array_size(arr), 1);
	assert_int_equal(json_unpack(json_array_get(arr, 0), "[I,I,I,I,s%,I]",
				     &id, &st, &ch, &ms, &text, &tlen, &seen),
			 0);
	assert_int_equal(id, 3);
	assert_int_equal(st, PRESENCE_AWAY);
	assert_int_equal(ch, PRESENCE_DND);
	assert_int_equal(ms, 1700000000123);
	assert_string_equal(text, "back soon");
	assert_int_equal(seen, 1796195200847);
	json_decref(o);
	free(data);

	/* changes still need their number: only a whole set can be older */
	static const char d[] = "{\"v\":1,\"n\":1,\"k\":\"d\",\"s\":[]}";
	assert_int_equal(cluster_decode(d, strlen(d), &out), -1);
}

/* ---- the other nodes' sets ---- */

struct changes {
	int64_t user[32];
	enum presence_status status[32];
	int64_t seen[32];
	size_t n;
};

static void on_change(void *arg, int64_t user, enum presence_status st,
		      int64_t seen_ms)
{
	struct changes *c = arg;
	assert_true(c->n < 32);
	c->seen[c->n] = seen_ms;
	c->user[c->n] = user;
	c->status[c->n++] = st;
}

static enum presence_status change_of(const struct changes *c, int64_t user)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->user[i] == user)
			return c->status[i];
	fail_msg("no change for user %lld", (long long)user);
	return PRESENCE_OFFLINE;
}

static int64_t seen_of(const struct changes *c, int64_t user)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->user[i] == user)
			return c->seen[i];
	fail_msg("no change for user %lld", (long long)user);
	return 0;
}

/* A test's view of the other nodes' sets: cp, and in ch what cp reported.
 * Made by peers_setup and freed by peers_teardown, so that a failed
 * assertion still frees cp. */
struct peers {
	struct cluster_peers *cp;
	struct changes ch;
};

#define T0 1000000 /* the fake clock at node 10's first whole set */

static int peers_setup(void **state)
{
	struct peers *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->cp = cluster_peers_new(CLUSTER_EXPIRY_MS, on_change, &f->ch);
	*state = f;
	return 0;
}

static int peers_teardown(void **state)
{
	struct peers *f = *state;
	cluster_peers_free(f->cp);
	free(f);
	return 0;
}

/* Node 10's first whole set (number 1), at T0: taken without asking for
 * anything, a change for each of its users. */
static void peers_first_set(struct peers *f, const struct presence_local *set,
			    size_t n)
{
	assert_false(cluster_peers_update(f->cp, 10, 1, true, set, n, T0));
	assert_int_equal(f->ch.n, n);
}

static void test_peers_merge_and_expire(void **state)
{
	struct peers *f = *state;
	struct cluster_peers *cp = f->cp;
	struct changes *ch = &f->ch;
	int64_t t = T0;
	struct presence_local a[] = {{.user = 1, .status = PRESENCE_ONLINE},
				     {.user = 2, .status = PRESENCE_AWAY}};
	peers_first_set(f, a, 2);
	assert_int_equal(change_of(ch, 1), PRESENCE_ONLINE);
	assert_int_equal(change_of(ch, 2), PRESENCE_AWAY);

	/* the same set again (a heartbeat): no news */
	ch->n = 0;
	assert_false(cluster_peers_update(cp, 10, 2, true, a, 2, t + 2000));
	assert_int_equal(ch->n, 0);

	/* node 11 has user 2 active: online beats away */
	struct presence_local b[] = {
	    {.user = 2, .status = PRESENCE_ONLINE, .seen_ms = t + 1990}};
	assert_false(cluster_peers_update(cp, 11, 7, true, b, 1, t + 2000));
	assert_int_equal(ch->n, 1);
	assert_int_equal(change_of(ch, 2), PRESENCE_ONLINE);
	assert_int_equal(cluster_peers_nodes(cp), 2);

	/* node 10 loses both: user 1 offline, user 2 still online (11) */
	ch->n = 0;
	assert_false(cluster_peers_update(cp, 10, 3, true, NULL, 0, t + 4000));
	assert_int_equal(ch->n, 1);
	assert_int_equal(change_of(ch, 1), PRESENCE_OFFLINE);
	assert_int_equal(cluster_peers_status(cp, 2), PRESENCE_ONLINE);

	/* node 11 goes silent (kill -9): nothing before the expiry ... */
	ch->n = 0;
	cluster_peers_expire(cp, t + 2000 + CLUSTER_EXPIRY_MS - 1);
	assert_int_equal(ch->n, 0);
	assert_int_equal(cluster_peers_nodes(cp), 2);
	/* ... then it drops out, and its users with it */
	cluster_peers_expire(cp, t + 2000 + CLUSTER_EXPIRY_MS);
	assert_int_equal(ch->n, 1);
	assert_int_equal(change_of(ch, 2), PRESENCE_OFFLINE);
	assert_int_equal(ch->seen[0], t + 1990); /* when node 11 last saw it */
	assert_int_equal(cluster_peers_nodes(cp), 1); /* 10, heard at +4 s */
	assert_true(CLUSTER_EXPIRY_MS <= 10000);

	/* OFFLINE entries count as absent */
	ch->n = 0;
	struct presence_local off[] = {{.user = 3, .status = PRESENCE_OFFLINE}};
	assert_false(cluster_peers_update(cp, 12, 1, true, off, 1, t + 9000));
	assert_int_equal(ch->n, 0);
}

/* Changes between whole sets: applied in order; a number missed (or a
 * node first heard by its changes) asks for the whole set, at most once
 * per CLUSTER_ASK_MS, until it comes; a connected user (seen 0) was last
 * seen when its node was last heard. */
static void test_peers_changes(void **state)
{
	struct peers *f = *state;
	struct cluster_peers *cp = f->cp;
	struct changes *ch = &f->ch;
	int64_t t = T0;
	struct presence_local set[] = {{.user = 1, .status = PRESENCE_ONLINE},
				       {.user = 2, .status = PRESENCE_ONLINE}};
	peers_first_set(f, set, 2);

	/* an empty change set is a heartbeat: no news, no question */
	ch->n = 0;
	assert_false(cluster_peers_update(cp, 10, 2, false, NULL, 0, t + 2000));
	assert_int_equal(ch->n, 0);
	/* user 2 idles, user 1 leaves, user 3 comes */
	struct presence_local d[] = {
	    {.user = 2, .status = PRESENCE_AWAY, .chosen = PRESENCE_ONLINE},
	    {.user = 1, .status = PRESENCE_OFFLINE, .chosen = PRESENCE_ONLINE},
	    {.user = 3, .status = PRESENCE_ONLINE, .chosen = PRESENCE_ONLINE}};
	assert_false(cluster_peers_update(cp, 10, 3, false, d, 3, t + 4000));
	assert_int_equal(ch->n, 3);
	assert_int_equal(change_of(ch, 1), PRESENCE_OFFLINE);
	assert_int_equal(change_of(ch, 2), PRESENCE_AWAY);
	assert_int_equal(change_of(ch, 3), PRESENCE_ONLINE);
	/* user 1 was connected (seen 0): last seen when node 10 was last
	 * heard before this message */
	assert_int_equal(seen_of(ch, 1), t + 2000);

	/* number 5 after 3: applied, and the whole set is asked for, once
	 * a second */
	ch->n = 0;
	struct presence_local d5[] = {
	    {.user = 4, .status = PRESENCE_ONLINE, .chosen = PRESENCE_ONLINE}};
	assert_true(cluster_peers_update(cp, 10, 5, false, d5, 1, t + 6000));
	assert_int_equal(change_of(ch, 4), PRESENCE_ONLINE);
	assert_false(cluster_peers_update(cp, 10, 6, false, NULL, 0, t + 6500));
	assert_true(cluster_peers_update(cp, 10, 7, false, NULL, 0, t + 7000));
	/* the whole set comes (number 8): what it lacks is gone, and no
	 * more questions */
	ch->n = 0;
	struct presence_local whole[] = {
	    {.user = 3, .status = PRESENCE_ONLINE, .chosen = PRESENCE_ONLINE},
	    {.user = 4, .status = PRESENCE_ONLINE, .chosen = PRESENCE_ONLINE}};
	assert_false(cluster_peers_update(cp, 10, 8, true, whole, 2, t + 7200));
	assert_int_equal(ch->n, 1);
	assert_int_equal(change_of(ch, 2), PRESENCE_OFFLINE);
	assert_false(cluster_peers_update(cp, 10, 9, false, NULL, 0, t + 9000));

	/* a node first heard by its changes (this one just started) asks */
	assert_true(cluster_peers_update(cp, 11, 40, false, NULL, 0, t + 9000));

	/* node 10 dies: its connected users were last seen when it was
	 * last heard */
	ch->n = 0;
	cluster_peers_expire(cp, t + 9000 + CLUSTER_EXPIRY_MS);
	assert_int_equal(ch->n, 2);
	assert_int_equal(ch->seen[0], t + 9000);
	assert_int_equal(ch->seen[1], t + 9000);
}

/* An older node (seq 0, its whole set every beat) beside a numbered one:
 * each of its sets is applied whole, it is never asked for one, and
 * cluster_peers_unnumbered says so until it drops out. */
static void test_peers_older_node(void **state)
{
	struct peers *f = *state;
	struct cluster_peers *cp = f->cp;
	struct changes *ch = &f->ch;
	int64_t t = T0;
	struct presence_local n10[] = {{.user = 1, .status = PRESENCE_ONLINE}};
	peers_first_set(f, n10, 1);
	assert_false(cluster_peers_unnumbered(cp));

	/* node 20, older: its users come, nothing asked */
	ch->n = 0;
	struct presence_local a[] = {
	    {.user = 5, .status = PRESENCE_ONLINE, .seen_ms = t + 100},
	    {.user = 6, .status = PRESENCE_ONLINE, .seen_ms = t + 100}};
	assert_false(cluster_peers_update(cp, 20, 0, true, a, 2, t + 100));
	assert_int_equal(ch->n, 2);
	assert_int_equal(change_of(ch, 5), PRESENCE_ONLINE);
	assert_int_equal(change_of(ch, 6), PRESENCE_ONLINE);
	assert_true(cluster_peers_unnumbered(cp));

	/* its next beat, without user 6: whole, so 6 is gone; still no
	 * question, beat after beat */
	ch->n = 0;
	a[0].seen_ms = t + 2100;
	assert_false(cluster_peers_update(cp, 20, 0, true, a, 1, t + 2100));
	assert_int_equal(ch->n, 1);
	assert_int_equal(change_of(ch, 6), PRESENCE_OFFLINE);
	assert_int_equal(seen_of(ch, 6), t + 100);
	ch->n = 0;
	assert_false(cluster_peers_update(cp, 20, 0, true, a, 1, t + 4100));
	assert_int_equal(ch->n, 0);
	assert_int_equal(cluster_peers_status(cp, 5), PRESENCE_ONLINE);

	/* node 10 keeps beating; node 20 stops (upgraded: it comes back
	 * under a new id): it drops out with its user, and the window
	 * closes */
	assert_false(cluster_peers_update(cp, 10, 2, false, NULL, 0, t + 8000));
	cluster_peers_expire(cp, t + 4100 + CLUSTER_EXPIRY_MS - 1);
	assert_true(cluster_peers_unnumbered(cp));
	ch->n = 0;
	cluster_peers_expire(cp, t + 4100 + CLUSTER_EXPIRY_MS);
	assert_int_equal(ch->n, 1);
	assert_int_equal(change_of(ch, 5), PRESENCE_OFFLINE);
	assert_int_equal(seen_of(ch, 5), t + 2100);
	assert_false(cluster_peers_unnumbered(cp));
	assert_int_equal(cluster_peers_nodes(cp), 1);
	assert_int_equal(cluster_peers_status(cp, 1), PRESENCE_ONLINE);
}

/* ---- presence, merged ---- */

struct rec {
	int64_t user[32];
	struct presence_info info[32];
	size_t n;
};

static void publish(void *arg, int64_t user, const struct presence_info *pi)
{
	struct rec *r = arg;
	assert_true(r->n < 32);
	r->user[r->n] = user;
	r->info[r->n++] = *pi;
}

static struct presence *mk(struct rec *r)
{
	struct presence_config cfg = {GRACE, AWAY, COALESCE};
	struct presence_ops ops = {publish, NULL};
	memset(r, 0, sizeof(*r));
	return presence_new(&cfg, &ops, r);
}

static void run(struct presence *p, int64_t *now, int64_t until)
{
	while (*now < until) {
		*now += 50;
		presence_tick(p, *now);
	}
}

static void test_remote_online_offline(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 5000000;
	presence_remote_set(p, 7, PRESENCE_ONLINE, 0, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.info[0].status, PRESENCE_ONLINE);
	struct presence_info pi;
	presence_get(p, 7, now, &pi);
	assert_int_equal(pi.status, PRESENCE_ONLINE);
	assert_int_equal(pi.last_seen_ms, now); /* connected elsewhere */

	/* only another node's: this node tells nobody of the user */
	struct presence_local *l;
	assert_int_equal(presence_local_list(p, now, &l), 0);
	free(l);

	/* a blip (gone and back within the coalescing delay): nothing */
	presence_remote_set(p, 7, PRESENCE_OFFLINE, 0, now);
	presence_remote_set(p, 7, PRESENCE_ONLINE, 0, now + 50);
	run(p, &now, now + 4 * COALESCE);
	assert_int_equal(r.n, 1);

	/* gone for good (the other node applied its grace already): last
	 * seen when that node last saw the user */
	int64_t gone = now - 100; /* after the blip */
	presence_remote_set(p, 7, PRESENCE_OFFLINE, gone, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.info[1].status, PRESENCE_OFFLINE);
	assert_int_equal(r.info[1].last_seen_ms, gone);
	/* and no timer left spinning */
	assert_int_equal(presence_tick(p, now + 1000), INT64_MAX);
	presence_free(p);
}

static void test_merge_with_local(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 5000000;
	presence_connect(p, 3, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.info[0].status, PRESENCE_ONLINE);

	struct presence_local *l;
	assert_int_equal(presence_local_list(p, now, &l), 1);
	assert_int_equal(l[0].user, 3);
	assert_int_equal(l[0].status, PRESENCE_ONLINE);
	free(l);

	/* idle here, active on another node: online stays */
	presence_remote_set(p, 3, PRESENCE_ONLINE, 0, now);
	run(p, &now, now + AWAY + 1000);
	assert_int_equal(r.n, 1);
	assert_int_equal(presence_local_list(p, now, &l), 1);
	assert_int_equal(l[0].status, PRESENCE_AWAY); /* what this node says */
	free(l);
	/* the other node's connection ends: away, from this node's idleness */
	presence_remote_set(p, 3, PRESENCE_OFFLINE, 0, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.info[1].status, PRESENCE_AWAY);

	/* this node's last connection goes while another node has the user:
	 * no offline, even after the grace */
	presence_remote_set(p, 3, PRESENCE_AWAY, 0, now);
	presence_disconnect(p, 3, now);
	run(p, &now, now + GRACE + 1000);
	assert_int_equal(r.n, 2);
	assert_int_equal(presence_local_list(p, now, &l), 0);
	free(l);
	presence_remote_set(p, 3, PRESENCE_OFFLINE, 0, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.info[2].status, PRESENCE_OFFLINE);
	presence_free(p);
}

static void test_remote_choice_newest_wins(void **state)
{
	(void)state;
	struct rec r;
	struct presence *p = mk(&r);
	int64_t now = 5000000;
	presence_connect(p, 4, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 1);

	/* chosen on another node after this node's load: taken */
	presence_remote_choose(p, 4, PRESENCE_DND, "busy", now - 10, now);
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.info[1].status, PRESENCE_DND);
	assert_string_equal(r.info[1].text, "busy");

	/* chosen here later: this one is the newest */
	presence_choose(p, 4, PRESENCE_ONLINE, "", now);
	int64_t mine = now;
	run(p, &now, now + COALESCE);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.info[2].status, PRESENCE_ONLINE);
	assert_string_equal(r.info[2].text, "");

	/* an older choice arriving late (a heartbeat in flight): ignored */
	presence_remote_choose(p, 4, PRESENCE_AWAY, "old", mine - 1, now);
	run(p, &now, now + 4 * COALESCE);
	assert_int_equal(r.n, 3);

	/* this node tells the others its choice with its time */
	struct presence_local *l;
	assert_int_equal(presence_local_list(p, now, &l), 1);
	assert_int_equal(l[0].chosen, PRESENCE_ONLINE);
	assert_int_equal(l[0].chosen_ms, mine);
	free(l);
	presence_free(p);
}

/* Two nodes' presence: a change published later on a node that has
 * published little still has the larger seq (a client reads one node's
 * GET /api/presence and streams another's events, and keeps the newest
 * by seq). */
static void test_seq_across_nodes(void **state)
{
	(void)state;
	struct rec ra, rb;
	struct presence *a = mk(&ra), *b = mk(&rb);
	int64_t now = 5000000;
	for (int64_t u = 1; u <= 20; u++)
		presence_connect(a, u, now);
	run(a, &now, now + COALESCE);
	assert_int_equal(ra.n, 20);
	presence_remote_set(b, 1, PRESENCE_ONLINE, 0, now);
	now += 10;
	presence_tick(b, now + COALESCE);
	assert_int_equal(rb.n, 1);
	assert_true(rb.info[0].seq > ra.info[19].seq);
	/* and within one node, every publish has a larger one */
	for (size_t i = 1; i < ra.n; i++)
		assert_true(ra.info[i].seq > ra.info[i - 1].seq);
	presence_free(a);
	presence_free(b);
}

/* ---- the bus URL ---- */

static void test_bus_url(void **state)
{
	(void)state;
	struct addr_bus b;
	char why[256];
	assert_int_equal(
	    addr_bus_parse("redis://127.0.0.1:6379", &b, why, sizeof(why)), 0);
	assert_string_equal(b.host, "127.0.0.1");
	assert_int_equal(b.port, 6379);
	assert_int_equal(b.db, 0);
	assert_int_equal(addr_bus_parse("redis://cache.internal:6380/3", &b,
					why, sizeof(why)),
			 0);
	assert_string_equal(b.host, "cache.internal");
	assert_int_equal(b.port, 6380);
	assert_int_equal(b.db, 3);
	static const char *const bad[] = {
	    "127.0.0.1:6379",	 "http://h:1",	     "redis://h",
	    "redis://:6379",	 "redis://h:0",	     "redis://h:70000",
	    "redis://h:6379x",	 "redis://h:6379/x", "redis://h/2:6379",
	    "redis://h:6379/-1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (addr_bus_parse(bad[i], &b, why, sizeof(why)) == 0)
			fail_msg("accepted: %s", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_round_trip),
	    cmocka_unit_test(test_presence_round_trip),
	    cmocka_unit_test(test_limits_and_auth_round_trip),
	    cmocka_unit_test(test_decode_refuses),
	    cmocka_unit_test(test_older_node_wire),
	    cmocka_unit_test_setup_teardown(test_peers_merge_and_expire,
					    peers_setup, peers_teardown),
	    cmocka_unit_test_setup_teardown(test_peers_changes, peers_setup,
					    peers_teardown),
	    cmocka_unit_test_setup_teardown(test_peers_older_node, peers_setup,
					    peers_teardown),
	    cmocka_unit_test(test_remote_online_offline),
	    cmocka_unit_test(test_merge_with_local),
	    cmocka_unit_test(test_remote_choice_newest_wins),
	    cmocka_unit_test(test_seq_across_nodes),
	    cmocka_unit_test(test_bus_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
