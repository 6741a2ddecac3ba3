/* stats: what the admin statistics page shows. A sampler thread reads
 * the process's metrics once a second and writes one row a minute
 * (store_sample_add): the peak of open connections by transport within
 * the minute, sends and deliveries, the transports browser clients
 * reported ending on and why, and the send-to-delivery histogram's
 * counts. Rows older than the retention are pruned every hour.
 * stats_query answers GET /api/admin/stats from those samples and from
 * SQL aggregates over the event log, for admins only.
 *
 * It does not count anything itself (util/metrics does) and keeps no
 * history in memory beyond the running minute. */
#ifndef NATTER_STATS_H
#define NATTER_STATS_H

#include <stdint.h>

#include <jansson.h>

#include "core/chat.h"
#include "store/store.h"
#include "util/metrics.h"

struct stats;

/* Start the sampler (retention_days >= 1: samples older are pruned).
 * st, m and c (which says who is an admin) must outlive it. Never NULL. */
struct stats *stats_new(struct store *st, struct metrics *m, struct chat *c,
			unsigned retention_days);
/* Stop the sampler and write the running minute's sample (so a restart
 * loses no counts). NULL is fine. */
void stats_free(struct stats *s);

/* Widest range one query may ask for: a year. */
#define STATS_RANGE_MAX_S (366 * 86400)

/* The statistics of from_ms <= t < to_ms for admin u: CHAT_OK with a JSON
 * object in *out (caller decrefs; store_stats's members, the latency
 * rows turned into percentiles: latency [{t, count, p50_ms, p95_ms,
 * p99_ms}] and latency_overall {count, p50_ms, p95_ms, p99_ms}, plus
 * from, to and bucket_s: 3600 for ranges up to two days, else 86400),
 * CHAT_EFORBIDDEN (u is no admin), CHAT_EINVAL (to <= from, or wider than
 * STATS_RANGE_MAX_S), CHAT_EINTERNAL. */
int stats_query(struct stats *s, const struct chat_user *u, int64_t from_ms,
		int64_t to_ms, json_t **out);

#endif
