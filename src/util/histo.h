/* histo: a fixed-bucket latency histogram any thread may observe into
 * (plain atomics, no lock, no allocation), rendered in Prometheus text
 * (cumulative _bucket{le=...}, _sum in seconds, _count), and read back as
 * a snapshot whose differences give one interval's distribution and its
 * percentiles (the stats sampler keeps one a minute). Every histogram of
 * natter shares one set of bounds, HISTO_BOUNDS_MS, so that snapshots of
 * different histograms add up and stored samples stay comparable. */
#ifndef NATTER_HISTO_H
#define NATTER_HISTO_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/util.h"

/* Upper bounds in milliseconds; one more bucket (+Inf) holds the rest. */
#define HISTO_NB 14
#define HISTO_BOUNDS_MS                                                        \
	{                                                                      \
		1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,   \
		    30000                                                      \
	}
#define HISTO_BUCKETS (HISTO_NB + 1)

struct histo {
	atomic_uint_fast64_t count[HISTO_BUCKETS]; /* not cumulative */
	atomic_uint_fast64_t sum_us;
};

/* A copy of the counts at one moment (or a difference of two). */
struct histo_snap {
	uint64_t count[HISTO_BUCKETS];
	uint64_t sum_us;
};

void histo_init(struct histo *h);
/* Record one duration in microseconds (negative counts as 0). */
void histo_observe_us(struct histo *h, int64_t us);
/* Add h's counts into s (so several histograms sum into one snapshot). */
void histo_snap_add(struct histo_snap *s, const struct histo *h);
/* a - b, bucket by bucket (a taken after b). */
void histo_snap_sub(struct histo_snap *out, const struct histo_snap *a,
		    const struct histo_snap *b);
uint64_t histo_snap_total(const struct histo_snap *s);
/* The q-quantile (0 < q < 1) in milliseconds, interpolated linearly
 * inside its bucket (the +Inf bucket answers its lower bound); 0 for an
 * empty snapshot. counts: HISTO_BUCKETS numbers, not cumulative. */
double histo_quantile_ms(const uint64_t *counts, double q);
/* The upper bound of bucket i in milliseconds, or -1 for +Inf. */
double histo_bound_ms(unsigned i);

/* Append one Prometheus series of h: name_bucket{labels,le="..."} ...,
 * name_sum, name_count. labels: "" or `route="/api/x"` (already escaped).
 * The # HELP and # TYPE lines are histo_header's. */
void histo_render(const struct histo *h, struct buf *out, const char *name,
		  const char *labels);
void histo_header(struct buf *out, const char *name, const char *help);

#endif
