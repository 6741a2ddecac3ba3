/* presence: who is online, away, busy (dnd) or offline, decided from the
 * connections the bus reports, the activity clients report and what each
 * user chooses; and when a change is worth telling others.
 *
 *   online  at least one live connection (any transport), recent activity
 *   away    chosen, or no activity reported for the away time while live
 *   dnd     chosen
 *   offline the last connection has been gone for the grace time
 *
 * A change is never published at once: it is looked at again after a
 * short coalescing delay (and a disconnect only after the grace time), and
 * published only when the effective state (or the status text) differs
 * from what was last published. So a reload, a blip or a transport
 * fallback shows nothing, and a burst of reconnects costs no event.
 *
 * It keeps no sockets and does no I/O itself: publish and save are
 * callbacks (main wires them to the bus and the store). Time is always an
 * argument, so tests drive it with a fake clock through presence_tick;
 * presence_start adds the one thread that ticks with the real clock.
 *
 * Threads: every function is safe from any thread. Callbacks run on the
 * thread that calls presence_tick (the presence thread once started),
 * without presence's lock held, in the order the changes happened. */
#ifndef NATTER_PRESENCE_H
#define NATTER_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum presence_status {
	PRESENCE_OFFLINE,
	PRESENCE_ONLINE, /* as chosen: automatic (online or away by activity) */
	PRESENCE_AWAY,
	PRESENCE_DND
};

#define PRESENCE_TEXT_MAX 100 /* characters of status text */
#define PRESENCE_TEXT_BYTES (PRESENCE_TEXT_MAX * 4 + 1)

struct presence_info {
	enum presence_status status;	/* effective, as last published */
	enum presence_status chosen;	/* ONLINE (automatic), AWAY or DND */
	char text[PRESENCE_TEXT_BYTES]; /* "" for none */
	int64_t last_seen_ms;		/* now while connected; 0: never seen */
	uint64_t seq; /* grows with every publish, server-wide: the newer of
			 two infos of one user has the larger seq; from the
			 wall clock in microseconds, so that across a
			 cluster's nodes too (their clocks in step) */
};

struct presence_config {
	int64_t grace_ms;    /* disconnected this long: offline */
	int64_t away_ms;     /* no activity this long: away */
	int64_t coalesce_ms; /* a change is looked at this much later */
};

struct presence_ops {
	/* A change to tell the people who can see user. */
	void (*publish)(void *arg, int64_t user, const struct presence_info *);
	/* Keep users[i]'s last_seen ms[i], n of them (those who went offline
	 * in one tick, and everyone not offline at presence_free). */
	void (*save_seen)(void *arg, const int64_t *users, const int64_t *ms,
			  size_t n);
};

/* ops are copied; arg is passed to them. */
struct presence *presence_new(const struct presence_config *cfg,
			      const struct presence_ops *ops, void *arg);
/* Stops the thread, saves last_seen of every user not shown offline (now
 * for the connected). NULL is fine. */
void presence_free(struct presence *p);
/* Start the thread that ticks with the real clock: 0 or -1. */
int presence_start(struct presence *p);

/* --- what is known ------------------------------------------------------ */

/* Start-up: what the store kept of user. text may be NULL. */
void presence_load(struct presence *p, int64_t user,
		   enum presence_status chosen, const char *text,
		   int64_t last_seen_ms);
/* Fill *out with user's state at now (a user never heard of is offline,
 * never seen). */
void presence_get(struct presence *p, int64_t user, int64_t now,
		  struct presence_info *out);

/* --- what happens ------------------------------------------------------- */

void presence_connect(struct presence *p, int64_t user, int64_t now);
void presence_disconnect(struct presence *p, int64_t user, int64_t now);
/* A client says its user did something (typed, focused, looked). */
void presence_activity(struct presence *p, int64_t user, int64_t now);
/* The user chooses ONLINE (automatic), AWAY or DND; text NULL keeps the
 * status text, "" clears it. The caller validated both
 * (presence_text_valid) and stored them. -1 on a bad status. */
int presence_choose(struct presence *p, int64_t user,
		    enum presence_status chosen, const char *text, int64_t now);

/* --- the other nodes of a cluster (core/cluster.h) ----------------------- */

/* One user as one node sees it by its own connections. */
struct presence_local {
	int64_t user;
	enum presence_status status; /* ONLINE, AWAY (idle) or OFFLINE */
	enum presence_status chosen; /* ONLINE (automatic), AWAY or DND */
	int64_t chosen_ms;	     /* when chosen (wall clock); 0: never */
	char text[PRESENCE_TEXT_BYTES];
	int64_t seen_ms; /* now while connected, else when its last
			    connection here went */
};

/* The users this node's own connections show (within the grace time
 * too): *out malloc'd (caller frees), their number returned. What a
 * node tells the others. */
size_t presence_local_list(struct presence *p, int64_t now,
			   struct presence_local **out);
/* What the other nodes show of user: ONLINE, AWAY or OFFLINE, and when
 * they last saw it (seen_ms; 0: now), its last_seen once offline. The
 * effective state is the best of this node's and theirs (online beats
 * away beats offline), and a change is published by the same rules as a
 * local one (coalescing; a disconnect's grace is applied by the node
 * that had the connection). */
void presence_remote_set(struct presence *p, int64_t user,
			 enum presence_status status, int64_t seen_ms,
			 int64_t now);
/* A choice made on another node at chosen_ms (wall clock): taken when
 * newer than the one known (the newest wins), ignored otherwise. text
 * as in presence_choose but never NULL; the caller validated both. */
void presence_remote_choose(struct presence *p, int64_t user,
			    enum presence_status chosen, const char *text,
			    int64_t chosen_ms, int64_t now);

/* Run everything due at now: publish what changed. Returns the next
 * deadline (INT64_MAX: none). */
int64_t presence_tick(struct presence *p, int64_t now);

/* --- words -------------------------------------------------------------- */

/* "offline", "online", "away", "dnd". */
const char *presence_status_name(enum presence_status s);
/* 0, or -1 for another word. */
int presence_status_parse(const char *s, enum presence_status *out);
/* Status text: at most PRESENCE_TEXT_MAX characters of valid UTF-8
 * without control, bidi-override or invisible formatting characters (the
 * empty string clears it). */
bool presence_text_valid(const char *s, size_t len);

/* Counts, for /metrics and the benchmark. */
uint64_t presence_published(struct presence *p);

#endif
