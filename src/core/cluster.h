/* cluster: what the nodes of a cluster tell each other about ephemeral
 * things over the bus (bus = redis://..., core/link_redis.h), and what a
 * node keeps of the others' presence. Pure: no I/O, no threads of its
 * own, time is an argument (unit tests use a fake clock).
 *
 *   - the wire: one JSON object per message, {"v":1,"n":NODE,"k":KIND,...}.
 *     KIND "e": an ephemeral room event (typing) with its envelope;
 *     "p": the sender's whole set of locally connected users and their
 *     state; "d": the users whose state changed since the sender's
 *     previous "p" or "d" (one gone: OFFLINE). Each "p" and "d" has the
 *     next number of the sender's sequence; the sender sends one on a
 *     change and as a heartbeat every CLUSTER_HEARTBEAT_MS, a whole set
 *     every CLUSTER_FULL_EVERY heartbeats and when asked, changes
 *     otherwise. "r": a node asks another for its whole set (it missed a
 *     number, or has just started). "c": one user's chosen status and
 *     text. "l": the rate-limit tokens users took on the sender since its
 *     last "l" (limit.h). "a": a login that failed or succeeded, or a
 *     registration counted, for the throttles (auth.h).
 *   - the peers: per remote node, its last set and when it was heard;
 *     a node not heard for CLUSTER_EXPIRY_MS drops out, and with it its
 *     users. A user's remote status is the best over the live nodes
 *     (online beats away beats offline); the change callback is told each
 *     time it changes.
 *   - the compatibility window of a rolling upgrade: the release before
 *     the numbers sends its whole set ("p" without "q", a connected
 *     user's seen_ms as its real time) every heartbeat, and drops "d",
 *     "r", "l" and "a" (an unknown kind). Its "p" decodes as seq 0,
 *     applied whole and never asked for; while such a node is live
 *     (cluster_peers_unnumbered), a node sends its whole set every beat
 *     in that shape (the extra "q" is ignored there), so the older node
 *     never lets this one's users expire.
 *
 * Persistent events never pass here (PostgreSQL carries them, in id
 * order); nor do accounts (PostgreSQL NOTIFY). */
#ifndef NATTER_CLUSTER_H
#define NATTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/auth.h"
#include "core/limit.h"
#include "core/presence.h"

#define CLUSTER_HEARTBEAT_MS 2000
/* a whole set every 15 heartbeats (30 s), changes in between */
#define CLUSTER_FULL_EVERY 15
/* a node asks another for its whole set at most this often */
#define CLUSTER_ASK_MS 1000
/* three heartbeats missed, and a little slack for a busy node */
#define CLUSTER_EXPIRY_MS (3 * CLUSTER_HEARTBEAT_MS + 500)

enum cluster_kind {
	CLUSTER_EVENT,	  /* an ephemeral room event */
	CLUSTER_PRESENCE, /* a node's set of connected users */
	CLUSTER_CHOICE,	  /* a user chose a status or text */
	CLUSTER_LIMITS,	  /* rate-limit tokens taken */
	CLUSTER_AUTH,	  /* a login or registration, for the throttles */
	CLUSTER_CHANGES,  /* the users whose state changed */
	CLUSTER_ASK	  /* send me your whole set */
};

#define CLUSTER_AUTH_USER_MAX 256 /* bytes of a login's name, at most */
#define CLUSTER_AUTH_ADDR_MAX 64  /* bytes of a client address */

struct cluster_msg {
	enum cluster_kind kind;
	int64_t node; /* the sender, > 0 */
	/* CLUSTER_EVENT */
	int type;
	int64_t room, user;
	char *json; /* the envelope, NUL-terminated */
	size_t json_len;
	/* CLUSTER_PRESENCE: the set; CLUSTER_CHANGES: what changed;
	 * CLUSTER_CHOICE: one (presence.h). seen_ms 0: connected now. */
	struct presence_local *users;
	size_t nusers;
	/* CLUSTER_PRESENCE, CLUSTER_CHANGES: > 0; a CLUSTER_PRESENCE
	 * without one (seq 0) is from an older node (below) */
	int64_t seq;
	int64_t to; /* CLUSTER_ASK: the node asked, > 0 */
	/* CLUSTER_LIMITS (at most LIMIT_USES_MAX) */
	struct limit_use *uses;
	size_t nuses;
	/* CLUSTER_AUTH: user may be NULL (a registration) */
	enum auth_share what;
	char *auth_user, *auth_addr;
};

/* --- the wire ---------------------------------------------------------- */

/* m as bytes (malloc'd, caller frees; *len set). */
char *cluster_encode(const struct cluster_msg *m, size_t *len);
/* Parse data into *out: 0, or -1 for anything malformed (out is then
 * empty). Caller releases *out with cluster_msg_fini. */
int cluster_decode(const char *data, size_t len, struct cluster_msg *out);
void cluster_msg_fini(struct cluster_msg *m);

/* --- the other nodes' presence ------------------------------------------ */

struct cluster_peers;
/* user's status over every live remote node changed to status; seen_ms:
 * the newest time those nodes said they saw the user (0: never said).
 * Runs under the peers' lock: it must not call back into cluster_peers. */
typedef void (*cluster_change_fn)(void *arg, int64_t user,
				  enum presence_status status, int64_t seen_ms);

struct cluster_peers *cluster_peers_new(int64_t expiry_ms, cluster_change_fn fn,
					void *arg);
void cluster_peers_free(struct cluster_peers *cp); /* NULL is fine */
/* node's message number seq, heard at now: its whole set (full; entries
 * OFFLINE count as absent), or the changes since its number seq - 1
 * (OFFLINE: gone). A user's seen_ms 0 means connected as of the node's
 * latest message. Changes are applied even when they cannot be placed
 * (the node was not heard before, or a number was missed), and then the
 * return is true: ask node for its whole set (true at most once per
 * CLUSTER_ASK_MS per node, until a whole set comes). seq 0: a whole set
 * from an older node, which does not number its sets and is never
 * asked. */
bool cluster_peers_update(struct cluster_peers *cp, int64_t node, int64_t seq,
			  bool full, const struct presence_local *users,
			  size_t n, int64_t now);
/* Drop the nodes not heard since now - expiry_ms. */
void cluster_peers_expire(struct cluster_peers *cp, int64_t now);
/* user's status over every live remote node. */
enum presence_status cluster_peers_status(struct cluster_peers *cp,
					  int64_t user);
size_t cluster_peers_nodes(struct cluster_peers *cp);
/* Whether any live node is an older one (its last set had seq 0): while
 * one is, this node's beats must be whole sets it can read. */
bool cluster_peers_unnumbered(struct cluster_peers *cp);

#endif
