/* histo: fixed-bucket histograms with atomic counters. It only counts and
 * renders; what is timed, and where, is the callers' choice. Counts are
 * relaxed atomics: a render or a snapshot taken while others observe may
 * see a bucket and the sum one observation apart, which Prometheus and a
 * minute's percentiles tolerate. */
#include <stdio.h>

#include "util/histo.h"

static const double bounds[HISTO_NB] = HISTO_BOUNDS_MS;

void histo_init(struct histo *h)
{
	for (int i = 0; i < HISTO_BUCKETS; i++)
		atomic_init(&h->count[i], 0);
	atomic_init(&h->sum_us, 0);
}

void histo_observe_us(struct histo *h, int64_t us)
{
	if (us < 0)
		us = 0;
	double ms = (double)us / 1000.0;
	int i = 0;
	while (i < HISTO_NB && ms > bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->count[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (uint64_t)us,
				  memory_order_relaxed);
}

void histo_snap_add(struct histo_snap *s, const struct histo *h)
{
	for (int i = 0; i < HISTO_BUCKETS; i++)
		s->count[i] +=
		    atomic_load_explicit(&h->count[i], memory_order_relaxed);
	s->sum_us += atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

void histo_snap_sub(struct histo_snap *out, const struct histo_snap *a,
		    const struct histo_snap *b)
{
	for (int i = 0; i < HISTO_BUCKETS; i++)
		out->count[i] =
		    a->count[i] >= b->count[i] ? a->count[i] - b->count[i] : 0;
	out->sum_us = a->sum_us >= b->sum_us ? a->sum_us - b->sum_us : 0;
}

uint64_t histo_snap_total(const struct histo_snap *s)
{
	uint64_t n = 0;
	for (int i = 0; i < HISTO_BUCKETS; i++)
		n += s->count[i];
	return n;
}

double histo_bound_ms(unsigned i)
{
	return i < HISTO_NB ? bounds[i] : -1;
}

double histo_quantile_ms(const uint64_t *counts, double q)
{
	uint64_t total = 0;
	for (int i = 0; i < HISTO_BUCKETS; i++)
		total += counts[i];
	if (!total)
		return 0;
	double rank = q * (double)total, seen = 0;
	for (int i = 0; i < HISTO_BUCKETS; i++) {
		if (!counts[i])
			continue;
		double lo = i ? bounds[i - 1] : 0;
		if (i == HISTO_NB)
			return lo; /* +Inf: all we know is "above lo" */
		if (seen + (double)counts[i] >= rank) {
			double hi = bounds[i];
			return lo +
			       (hi - lo) * (rank - seen) / (double)counts[i];
		}
		seen += (double)counts[i];
	}
	return bounds[HISTO_NB - 1];
}

void histo_header(struct buf *out, const char *name, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help,
		   name);
}

void histo_render(const struct histo *h, struct buf *out, const char *name,
		  const char *labels)
{
	const char *sep = *labels ? "," : "";
	uint64_t cum = 0;
	for (int i = 0; i < HISTO_BUCKETS; i++) {
		cum += atomic_load_explicit(&h->count[i], memory_order_relaxed);
		if (i < HISTO_NB)
			buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name,
				   labels, sep, bounds[i] / 1000.0,
				   (unsigned long long)cum);
		else
			buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n",
				   name, labels, sep, (unsigned long long)cum);
	}
	uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
	const char *lb = *labels ? "{" : "", *rb = *labels ? "}" : "";
	buf_printf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, lb,
		   labels, rb, (double)sum / 1e6, name, lb, labels, rb,
		   (unsigned long long)cum);
}
