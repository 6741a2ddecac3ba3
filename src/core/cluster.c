/* cluster: the wire format and the remote nodes' presence (cluster.h).
 *
 * The peers: a few nodes (a cluster is a handful), each with an imap of
 * user -> status. A user's merged status is computed by looking at every
 * node, which is cheap for a handful; an update compares each touched
 * user's merged status before and after, so the callback hears only real
 * changes, under the lock and in the order they were found. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/cluster.h"
#include "util/imap.h"
#include "util/util.h"

#define WIRE_VERSION 1
/* A peer's entry packs seen_ms and the status into one imap value:
 * seen_ms << 2 | status. Milliseconds up to 2^61 are some 73 million
 * years. */
#define SEEN_MAX (INT64_MAX >> 2)

/* ---- the wire ---- */

static const char kinds[] = {
    [CLUSTER_EVENT] = 'e',  [CLUSTER_PRESENCE] = 'p', [CLUSTER_CHOICE] = 'c',
    [CLUSTER_LIMITS] = 'l', [CLUSTER_AUTH] = 'a',     [CLUSTER_CHANGES] = 'd',
    [CLUSTER_ASK] = 'r'};

static json_t *user_pack(const struct presence_local *u)
{
	return json_pack("[I,i,i,I,s,I]", (json_int_t)u->user, (int)u->status,
			 (int)u->chosen, (json_int_t)u->chosen_ms, u->text,
			 (json_int_t)u->seen_ms);
}

char *cluster_encode(const struct cluster_msg *m, size_t *len)
{
	char k[2] = {kinds[m->kind], '\0'};
	json_t *o = json_pack("{s:i,s:I,s:s}", "v", WIRE_VERSION, "n",
			      (json_int_t)m->node, "k", k);
	if (m->kind == CLUSTER_EVENT) {
		json_object_set_new(o, "t", json_integer(m->type));
		json_object_set_new(o, "r", json_integer(m->room));
		json_object_set_new(o, "u", json_integer(m->user));
		json_object_set_new(o, "j", json_stringn(m->json, m->json_len));
	} else if (m->kind == CLUSTER_LIMITS) {
		json_t *arr = json_array();
		for (size_t i = 0; i < m->nuses; i++) {
			const struct limit_use *u = &m->uses[i];
			json_array_append_new(
			    arr, json_pack("[I,I,I,I]", (json_int_t)u->user,
					   (json_int_t)u->n[LIMIT_ALL],
					   (json_int_t)u->n[LIMIT_SEND],
					   (json_int_t)u->n[LIMIT_TYPING]));
		}
		json_object_set_new(o, "s", arr);
	} else if (m->kind == CLUSTER_ASK) {
		json_object_set_new(o, "to", json_integer(m->to));
	} else if (m->kind == CLUSTER_AUTH) {
		char w[2] = {(char)m->what, '\0'};
		json_object_set_new(o, "w", json_string(w));
		if (m->auth_user)
			json_object_set_new(o, "u", json_string(m->auth_user));
		json_object_set_new(o, "i", json_string(m->auth_addr));
	} else {
		json_t *arr = json_array();
		for (size_t i = 0; i < m->nusers; i++)
			json_array_append_new(arr, user_pack(&m->users[i]));
		json_object_set_new(o, "s", arr);
		/* seq 0: an older node's set, which has no number */
		if (m->kind != CLUSTER_CHOICE && m->seq)
			json_object_set_new(o, "q", json_integer(m->seq));
	}
	char *out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	*len = out ? strlen(out) : 0;
	return out;
}

static bool status_ok(json_int_t s, bool chosen)
{
	if (chosen)
		return s == PRESENCE_ONLINE || s == PRESENCE_AWAY ||
		       s == PRESENCE_DND;
	return s == PRESENCE_OFFLINE || s == PRESENCE_ONLINE ||
	       s == PRESENCE_AWAY;
}

static int user_unpack(json_t *a, struct presence_local *u)
{
	json_int_t id, st, ch, ms, seen;
	const char *text;
	size_t tlen;
	if (json_unpack(a, "[I,I,I,I,s%,I]", &id, &st, &ch, &ms, &text, &tlen,
			&seen) < 0)
		return -1;
	if (id <= 0 || !status_ok(st, false) || !status_ok(ch, true) ||
	    ms < 0 || seen < 0 || seen > SEEN_MAX ||
	    !presence_text_valid(text, tlen))
		return -1;
	u->user = id;
	u->status = (enum presence_status)st;
	u->chosen = (enum presence_status)ch;
	u->chosen_ms = ms;
	u->seen_ms = seen;
	memcpy(u->text, text, tlen + 1);
	return 0;
}

static int event_unpack(json_t *o, struct cluster_msg *out)
{
	json_int_t type, room, user;
	const char *j;
	size_t jlen;
	if (json_unpack(o, "{s:I,s:I,s:I,s:s%}", "t", &type, "r", &room, "u",
			&user, "j", &j, &jlen) < 0)
		return -1;
	/* room: a room's id, or BUS_PERSONAL (0) or BUS_PEERS (-1). Only the
	 * shape is checked here: which event type may use which room is
	 * decided by travels() in core/chat_cluster.c, on sending and again
	 * on receiving. */
	if (type < 0 || type > 1000 || room < -1 || user <= 0 || !jlen)
		return -1;
	out->type = (int)type;
	out->room = room;
	out->user = user;
	out->json = xmalloc(jlen + 1);
	memcpy(out->json, j, jlen + 1);
	out->json_len = jlen;
	return 0;
}

static int users_unpack(json_t *o, struct cluster_msg *out)
{
	json_t *arr = json_object_get(o, "s");
	if (!json_is_array(arr))
		return -1;
	size_t n = json_array_size(arr);
	if (out->kind == CLUSTER_CHOICE && n != 1)
		return -1;
	out->users = n ? xcalloc(n, sizeof(*out->users)) : NULL;
	out->nusers = n;
	for (size_t i = 0; i < n; i++)
		if (user_unpack(json_array_get(arr, i), &out->users[i]) < 0)
			return -1;
	if (out->kind == CLUSTER_CHOICE)
		return 0;
	/* a node of the release before the numbers sends its whole set
	 * without one, every beat: seq 0 */
	if (out->kind == CLUSTER_PRESENCE && !json_object_get(o, "q"))
		return 0;
	json_int_t q;
	if (json_unpack(o, "{s:I}", "q", &q) < 0 || q <= 0)
		return -1;
	out->seq = q;
	return 0;
}

static int uses_unpack(json_t *o, struct cluster_msg *out)
{
	json_t *arr = json_object_get(o, "s");
	if (!json_is_array(arr) || json_array_size(arr) > LIMIT_USES_MAX)
		return -1;
	size_t n = json_array_size(arr);
	out->uses = n ? xcalloc(n, sizeof(*out->uses)) : NULL;
	out->nuses = n;
	for (size_t i = 0; i < n; i++) {
		json_int_t user, k[LIMIT_KIND_N];
		if (json_unpack(json_array_get(arr, i), "[I,I,I,I]", &user,
				&k[LIMIT_ALL], &k[LIMIT_SEND],
				&k[LIMIT_TYPING]) < 0 ||
		    user <= 0)
			return -1;
		out->uses[i].user = user;
		for (int j = 0; j < LIMIT_KIND_N; j++) {
			if (k[j] < 0 || k[j] > UINT32_MAX)
				return -1;
			out->uses[i].n[j] = (uint32_t)k[j];
		}
	}
	return 0;
}

/* A string of 1..max bytes without a NUL, copied. */
static char *text_copy(json_t *s, size_t max)
{
	const char *v = json_string_value(s);
	size_t n = json_string_length(s);
	if (!v || n == 0 || n > max || strlen(v) != n)
		return NULL;
	return xstrdup(v);
}

static int auth_unpack(json_t *o, struct cluster_msg *out)
{
	const char *w = json_string_value(json_object_get(o, "w"));
	json_t *u = json_object_get(o, "u");
	if (!w || strlen(w) != 1 ||
	    (w[0] != AUTH_SHARE_FAILED && w[0] != AUTH_SHARE_SUCCEEDED &&
	     w[0] != AUTH_SHARE_REGISTERED))
		return -1;
	out->what = (enum auth_share)w[0];
	out->auth_addr =
	    text_copy(json_object_get(o, "i"), CLUSTER_AUTH_ADDR_MAX);
	if (!out->auth_addr)
		return -1;
	if (u) {
		out->auth_user = text_copy(u, CLUSTER_AUTH_USER_MAX);
		if (!out->auth_user)
			return -1;
	}
	/* a success names its account, a registration none, a failure
	 * either */
	if (out->what == AUTH_SHARE_SUCCEEDED && !out->auth_user)
		return -1;
	if (out->what == AUTH_SHARE_REGISTERED && out->auth_user)
		return -1;
	return 0;
}

int cluster_decode(const char *data, size_t len, struct cluster_msg *out)
{
	json_int_t v, node;
	const char *k;
	memset(out, 0, sizeof(*out));
	json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
	int rc = -1;
	if (!o ||
	    json_unpack(o, "{s:I,s:I,s:s}", "v", &v, "n", &node, "k", &k) < 0)
		goto out;
	if (v != WIRE_VERSION || node <= 0 || strlen(k) != 1)
		goto out;
	out->node = node;
	if (k[0] == 'e') {
		out->kind = CLUSTER_EVENT;
		rc = event_unpack(o, out);
	} else if (k[0] == 'p' || k[0] == 'c' || k[0] == 'd') {
		out->kind = k[0] == 'p'	  ? CLUSTER_PRESENCE
			    : k[0] == 'c' ? CLUSTER_CHOICE
					  : CLUSTER_CHANGES;
		rc = users_unpack(o, out);
	} else if (k[0] == 'r') {
		json_int_t to;
		out->kind = CLUSTER_ASK;
		rc = json_unpack(o, "{s:I}", "to", &to) < 0 || to <= 0 ? -1 : 0;
		out->to = to;
	} else if (k[0] == 'l') {
		out->kind = CLUSTER_LIMITS;
		rc = uses_unpack(o, out);
	} else if (k[0] == 'a') {
		out->kind = CLUSTER_AUTH;
		rc = auth_unpack(o, out);
	}
out:
	json_decref(o);
	if (rc < 0)
		cluster_msg_fini(out);
	return rc;
}

void cluster_msg_fini(struct cluster_msg *m)
{
	free(m->json);
	free(m->users);
	free(m->uses);
	free(m->auth_user);
	free(m->auth_addr);
	memset(m, 0, sizeof(*m));
}

/* ---- the peers ---- */

struct node {
	int64_t id;
	int64_t heard_ms;
	struct imap users; /* user -> seen_ms << 2 | status (not OFFLINE);
			      seen_ms 0: as of heard_ms */
	int64_t seq;	   /* the number of its latest set or changes */
	bool synced;	   /* users is its whole set: no number missed */
	int64_t asked_ms;  /* when its whole set was last asked for */
	bool unnumbered;   /* an older node: whole sets, no numbers */
};

struct cluster_peers {
	pthread_mutex_t lock;
	int64_t expiry_ms;
	cluster_change_fn fn;
	void *arg;
	struct node *nodes;
	size_t nnodes, cap;
};

/* A user over the live nodes: the best status, the newest seen_ms. */
struct merge {
	enum presence_status st;
	int64_t seen_ms;
};

static int rank(enum presence_status s)
{
	return s == PRESENCE_ONLINE ? 2 : s == PRESENCE_AWAY ? 1 : 0;
}

/* Under the lock. */
static struct merge merged(const struct cluster_peers *cp, int64_t user)
{
	struct merge m = {PRESENCE_OFFLINE, 0};
	for (size_t i = 0; i < cp->nnodes; i++) {
		uintptr_t v;
		if (!imap_get(&cp->nodes[i].users, user, &v))
			continue;
		enum presence_status st = (enum presence_status)(v & 3);
		int64_t seen = (int64_t)(v >> 2);
		if (!seen)
			seen = cp->nodes[i].heard_ms;
		if (rank(st) > rank(m.st))
			m.st = st;
		if (seen > m.seen_ms)
			m.seen_ms = seen;
	}
	return m;
}

/* The users of set, with their merged state now, into *ids and *before
 * (n of them, malloc'd). */
static size_t snapshot(const struct cluster_peers *cp, const struct imap *set,
		       int64_t **ids, struct merge **before)
{
	size_t n = 0;
	*ids = xmalloc((set->len + 1) * sizeof(**ids));
	*before = xmalloc((set->len + 1) * sizeof(**before));
	for (size_t i = 0; i < set->cap; i++) {
		if (set->keys[i] == IMAP_EMPTY)
			continue;
		(*ids)[n] = set->keys[i];
		(*before)[n++] = merged(cp, set->keys[i]);
	}
	return n;
}

/* Tell of each user of ids whose merged status is not before[i]'s; one
 * gone offline was last seen when the nodes that had it last said. */
static void tell(struct cluster_peers *cp, const int64_t *ids,
		 const struct merge *before, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct merge now = merged(cp, ids[i]);
		if (now.st == before[i].st || !cp->fn)
			continue;
		int64_t seen = now.seen_ms > before[i].seen_ms
				   ? now.seen_ms
				   : before[i].seen_ms;
		cp->fn(cp->arg, ids[i], now.st, seen);
	}
}

struct cluster_peers *cluster_peers_new(int64_t expiry_ms, cluster_change_fn fn,
					void *arg)
{
	struct cluster_peers *cp = xcalloc(1, sizeof(*cp));
	pthread_mutex_init(&cp->lock, NULL);
	cp->expiry_ms = expiry_ms;
	cp->fn = fn;
	cp->arg = arg;
	return cp;
}

void cluster_peers_free(struct cluster_peers *cp)
{
	if (!cp)
		return;
	for (size_t i = 0; i < cp->nnodes; i++)
		imap_fini(&cp->nodes[i].users);
	free(cp->nodes);
	pthread_mutex_destroy(&cp->lock);
	free(cp);
}

static struct node *node_get(struct cluster_peers *cp, int64_t id)
{
	for (size_t i = 0; i < cp->nnodes; i++)
		if (cp->nodes[i].id == id)
			return &cp->nodes[i];
	if (cp->nnodes == cp->cap) {
		cp->cap = cp->cap ? cp->cap * 2 : 4;
		cp->nodes = xrealloc(cp->nodes, cp->cap * sizeof(*cp->nodes));
	}
	struct node *nd = &cp->nodes[cp->nnodes++];
	memset(nd, 0, sizeof(*nd));
	nd->id = id;
	return nd;
}

static uintptr_t pack(const struct presence_local *u)
{
	uint64_t seen =
	    u->seen_ms > 0 && u->seen_ms <= SEEN_MAX ? (uint64_t)u->seen_ms : 0;
	return (uintptr_t)(seen << 2 | (uint64_t)u->status);
}

bool cluster_peers_update(struct cluster_peers *cp, int64_t node, int64_t seq,
			  bool full, const struct presence_local *users,
			  size_t n, int64_t now)
{
	struct imap touched = {0};
	for (size_t i = 0; i < n; i++)
		imap_put(&touched, users[i].user, 1);
	pthread_mutex_lock(&cp->lock);
	struct node *nd = node_get(cp, node);
	if (full)
		for (size_t i = 0; i < nd->users.cap; i++)
			if (nd->users.keys[i] != IMAP_EMPTY)
				imap_put(&touched, nd->users.keys[i], 1);
	int64_t *ids;
	struct merge *before;
	size_t nt = snapshot(cp, &touched, &ids, &before);
	if (full)
		imap_fini(&nd->users);
	for (size_t i = 0; i < n; i++) {
		if (users[i].status == PRESENCE_OFFLINE)
			imap_del(&nd->users, users[i].user);
		else
			imap_put(&nd->users, users[i].user, pack(&users[i]));
	}
	/* a number missed (or the node never heard): not the whole set */
	nd->synced = full || (nd->synced && seq == nd->seq + 1);
	/* an older node (seq 0: always whole) is never asked: it drops "r",
	 * and its whole set comes every beat anyway */
	nd->unnumbered = seq == 0;
	nd->seq = seq;
	nd->heard_ms = now;
	tell(cp, ids, before, nt);
	bool ask = !nd->synced &&
		   (nd->asked_ms == 0 || now - nd->asked_ms >= CLUSTER_ASK_MS ||
		    now < nd->asked_ms);
	if (ask)
		nd->asked_ms = now;
	pthread_mutex_unlock(&cp->lock);
	free(ids);
	free(before);
	imap_fini(&touched);
	return ask;
}

void cluster_peers_expire(struct cluster_peers *cp, int64_t now)
{
	pthread_mutex_lock(&cp->lock);
	for (size_t i = 0; i < cp->nnodes;) {
		struct node *nd = &cp->nodes[i];
		if (now - nd->heard_ms < cp->expiry_ms) {
			i++;
			continue;
		}
		int64_t *ids;
		struct merge *before;
		size_t nt = snapshot(cp, &nd->users, &ids, &before);
		struct imap gone = nd->users;
		cp->nodes[i] = cp->nodes[--cp->nnodes];
		tell(cp, ids, before, nt);
		imap_fini(&gone);
		free(ids);
		free(before);
	}
	pthread_mutex_unlock(&cp->lock);
}

enum presence_status cluster_peers_status(struct cluster_peers *cp,
					  int64_t user)
{
	pthread_mutex_lock(&cp->lock);
	enum presence_status s = merged(cp, user).st;
	pthread_mutex_unlock(&cp->lock);
	return s;
}

size_t cluster_peers_nodes(struct cluster_peers *cp)
{
	pthread_mutex_lock(&cp->lock);
	size_t n = cp->nnodes;
	pthread_mutex_unlock(&cp->lock);
	return n;
}

bool cluster_peers_unnumbered(struct cluster_peers *cp)
{
	bool any = false;
	pthread_mutex_lock(&cp->lock);
	for (size_t i = 0; i < cp->nnodes && !any; i++)
		any = cp->nodes[i].unnumbered;
	pthread_mutex_unlock(&cp->lock);
	return any;
}
