/* limit: per-user rate limits on commands and caps on concurrent streams.
 *
 * Rates are token buckets (GCRA: one "theoretical arrival time" per bucket)
 * for three kinds of command: sends, typing notices, and every command at
 * all (invalid ones and pings included). They live in a bounded table of
 * users (limit_config.users_max): a user whose buckets are all full again
 * holds nothing worth keeping, so such an entry is the first to be reused;
 * only when every entry in reach is busy is the least-limited one reused
 * (that user starts afresh: leniency under pressure, never a refusal of
 * an innocent).
 *
 * Stream caps count the open WebSocket, SSE and long-poll streams of each
 * user and of each client address; an entry exists while its count is not
 * zero, so the table is bounded by the open streams themselves. The same
 * table counts each address's HTTP connections (the caller decides what
 * its cap allows).
 *
 * Across nodes (bus = redis://...), the rates are shared: limit_share
 * makes limit_take record every token it hands out, per user and kind;
 * the cluster code takes that record (limit_uses_take) a few times a second
 * and tells the other nodes, which charge the same tokens to their own
 * buckets (limit_charge, never a refusal). So a user's budget is one over
 * the cluster, give or take what the nodes took in the last flush.
 *
 * Any thread may call anything here; one mutex each for the two tables.
 * Times are passed in (milliseconds of a monotonic clock) so tests can
 * drive them. Nothing here logs or counts metrics: callers do. */
#ifndef NATTER_LIMIT_H
#define NATTER_LIMIT_H

#include <stdint.h>

enum limit_kind {
	LIMIT_ALL,    /* every command, valid or not, pings included */
	LIMIT_SEND,   /* messages */
	LIMIT_TYPING, /* typing notices */
	LIMIT_KIND_N
};

enum limit_stream_refusal {
	LIMIT_STREAM_OK = 0,
	LIMIT_STREAM_USER = -1,	 /* the user's cap */
	LIMIT_STREAM_ADDR = -2,	 /* the address's cap */
	LIMIT_STREAM_SERVER = -3 /* the server's cap (streams_max) */
};

struct limit_config {
	/* per second and at once; rate 0: that kind is not limited */
	unsigned rate[LIMIT_KIND_N];
	unsigned burst[LIMIT_KIND_N];
	unsigned users_max;	   /* rate-limit entries kept */
	unsigned streams_per_user; /* 0: no cap */
	unsigned streams_per_addr; /* 0: no cap */
	unsigned streams_max;	   /* every stream at all; 0: no cap */
};

struct limit;

struct limit *limit_new(const struct limit_config *cfg);
void limit_free(struct limit *l); /* NULL is fine */

/* --- rates --- */

/* Take one token of kind for user at now_ms: 0, or -1 when the bucket is
 * empty, with *retry_ms the wait until a token is there (at least 1). */
int limit_take(struct limit *l, int64_t user, enum limit_kind kind,
	       int64_t now_ms, int64_t *retry_ms);
/* "all", "send", "typing": the label of natter_rate_limited_total. */
const char *limit_kind_name(enum limit_kind kind);

/* --- sharing the rates with other nodes --- */

/* Tokens one user took, per kind (limit_take's successes). */
struct limit_use {
	int64_t user;
	uint32_t n[LIMIT_KIND_N];
};

#define LIMIT_USES_MAX 65536 /* users recorded between two takes */

/* Record each token limit_take hands out from now on. fn(arg), when not
 * NULL, runs on the taker's thread (outside the lock) each time the record
 * goes from empty to not empty, so the reader can come at once. Call before
 * other threads use l. Past LIMIT_USES_MAX users in one record, further
 * users' tokens are not recorded (leniency, never a refusal). */
void limit_share(struct limit *l, void (*fn)(void *arg), void *arg);
/* Stop recording (and forget the record). */
void limit_unshare(struct limit *l);
/* The record since the last call (malloc'd, *n entries; NULL when empty),
 * and an empty one in its place. */
struct limit_use *limit_uses_take(struct limit *l, size_t *n);
/* Tokens another node handed out: each kind's bucket is charged n tokens
 * at now_ms, without a refusal (a bucket already empty goes further into
 * debt, at most one more burst). Not recorded again. */
void limit_charge(struct limit *l, const struct limit_use *u, int64_t now_ms);

/* --- streams --- */

/* Count one more stream for user and addr (and for the server): one check
 * of all three caps and the reservation under one lock, so concurrent
 * callers never pass a cap together. LIMIT_STREAM_OK, or a refusal
 * (nothing counted). Every OK is paired with one limit_stream_release with
 * the same arguments. */
int limit_stream_acquire(struct limit *l, int64_t user, const char *addr);
void limit_stream_release(struct limit *l, int64_t user, const char *addr);
/* Streams counted now for user / for addr (for tests and logs). */
unsigned limit_streams_user(struct limit *l, int64_t user);
unsigned limit_streams_addr(struct limit *l, const char *addr);
/* Streams counted now on the whole server. */
unsigned limit_streams_total(struct limit *l);

/* --- connections per address --- */

/* Count one more HTTP connection from addr; returns how many addr holds
 * now, this one included (the caller compares with its cap). Every call
 * is paired with one limit_conn_close. */
unsigned limit_conn_open(struct limit *l, const char *addr);
void limit_conn_close(struct limit *l, const char *addr);
/* Connections counted now for addr. */
unsigned limit_conns_addr(struct limit *l, const char *addr);

#endif
