/* stats: the sampler thread and the admin statistics query.
 *
 * The sampler wakes every second (or when told to stop): it folds the
 * open connections into the running minute's peaks and, once the wall
 * clock has entered a new minute, writes the finished minute: the
 * differences of the counters since the previous sample (sends,
 * deliveries, client reports, the send-to-delivery histogram). The first sample
 * after start counts from start. A failed write is logged and its counts are
 * lost, never double-counted later. Only this thread reads the previous
 * snapshot, so it needs no lock but the one guarding "stop".
 *
 * The same once-a-second tick re-reads the server's admins
 * (chat_admins_refresh), so natterctl's grant-admin and revoke-admin reach
 * a running server with no request needed and no store read on a loop. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/stats.h"
#include "util/log.h"
#include "util/util.h"

/* What the counters said at the previous sample. */
struct counts {
	uint64_t sends, deliveries;
	uint64_t reports[TRANSPORT_N][REASON_N];
	struct histo_snap latency;
};

struct stats {
	struct store *store;
	struct metrics *m;
	struct chat *chat;
	unsigned retention_days;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	/* the sampler thread's own */
	int64_t minute; /* the running minute, unix seconds */
	int64_t peak[TRANSPORT_N];
	struct counts prev;
	int64_t pruned_s; /* wall clock of the last prune */
};

static void counts_read(struct metrics *m, struct counts *c)
{
	memset(c, 0, sizeof(*c));
	c->sends = atomic_load(&m->sends);
	for (int t = 0; t < TRANSPORT_N; t++) {
		c->deliveries += atomic_load(&m->delivered[t]);
		for (int r = 0; r < REASON_N; r++)
			c->reports[t][r] =
			    atomic_load(&m->client_transport[t][r]);
	}
	histo_snap_add(&c->latency, &m->send_delivery);
}

static void peaks_note(struct stats *s)
{
	for (int t = 0; t < TRANSPORT_N; t++) {
		int64_t n = (int64_t)atomic_load(&s->m->connections[t]);
		if (n > s->peak[t])
			s->peak[t] = n;
	}
}

/* Write the running minute (counts since the previous sample) and start
 * the next from now. */
static void sample_write(struct stats *s)
{
	struct counts now;
	counts_read(s->m, &now);
	struct store_sample x = {
	    .minute = s->minute,
	    .sends = (int64_t)(now.sends - s->prev.sends),
	    .deliveries = (int64_t)(now.deliveries - s->prev.deliveries)};
	for (int t = 0; t < TRANSPORT_N; t++)
		x.conn[t] = s->peak[t];
	json_t *fb = json_object();
	for (int t = 0; t < TRANSPORT_N; t++)
		for (int r = 0; r < REASON_N; r++) {
			uint64_t d = now.reports[t][r] - s->prev.reports[t][r];
			char key[48];
			if (!d)
				continue;
			snprintf(key, sizeof(key), "%s/%s",
				 transport_name((enum transport_kind)t),
				 client_reason_name((enum client_reason)r));
			json_object_set_new(fb, key,
					    json_integer((json_int_t)d));
		}
	struct histo_snap lat;
	histo_snap_sub(&lat, &now.latency, &s->prev.latency);
	json_t *la = json_array();
	for (int i = 0; i < HISTO_BUCKETS; i++)
		json_array_append_new(la,
				      json_integer((json_int_t)lat.count[i]));
	char *fbs = json_dumps(fb, JSON_COMPACT);
	char *las = json_dumps(la, JSON_COMPACT);
	x.fallback = fbs;
	x.latency = las;
	/* An idle minute with nobody connected is not worth a row. */
	bool empty = !x.sends && !x.deliveries && !json_object_size(fb) &&
		     !x.conn[0] && !x.conn[1] && !x.conn[2];
	if (!empty && store_sample_add(s->store, &x) != STORE_OK)
		log_warn("stats: cannot write the sample of minute=%lld",
			 (long long)s->minute);
	free(fbs);
	free(las);
	json_decref(fb);
	json_decref(la);
	s->prev = now;
	for (int t = 0; t < TRANSPORT_N; t++)
		s->peak[t] = 0;
	peaks_note(s); /* the new minute starts with who is open now */
}

static void prune(struct stats *s, int64_t now_s)
{
	int64_t before = now_s - (int64_t)s->retention_days * 86400;
	if (store_samples_prune(s->store, before - before % 60) != STORE_OK)
		log_warn("stats: cannot prune samples before=%lld",
			 (long long)before);
	s->pruned_s = now_s;
}

static void *sampler_main(void *arg)
{
	struct stats *s = arg;
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&s->cv, &s->mu, &until);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->mu);
		int64_t now_s = (int64_t)time(NULL);
		if (now_s - now_s % 60 != s->minute) {
			sample_write(s);
			s->minute = now_s - now_s % 60;
		} else {
			peaks_note(s);
		}
		if (now_s - s->pruned_s >= 3600)
			prune(s, now_s);
		if (s->chat)
			chat_admins_refresh(s->chat);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

struct stats *stats_new(struct store *st, struct metrics *m, struct chat *c,
			unsigned retention_days)
{
	struct stats *s = xcalloc(1, sizeof(*s));
	s->store = st;
	s->m = m;
	s->chat = c;
	s->retention_days = retention_days ? retention_days : 1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int64_t now_s = (int64_t)time(NULL);
	s->minute = now_s - now_s % 60;
	counts_read(m, &s->prev);
	peaks_note(s);
	prune(s, now_s);
	if (pthread_create(&s->thread, NULL, sampler_main, s) != 0)
		fatal("stats: cannot start the sampler thread");
	pthread_setname_np(s->thread, "stats");
	return s;
}

void stats_free(struct stats *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	peaks_note(s);
	sample_write(s);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* --- the query ------------------------------------------------------------ */

static json_t *percentiles(const uint64_t *counts, json_int_t t, bool with_t)
{
	uint64_t n = 0;
	for (int i = 0; i < HISTO_BUCKETS; i++)
		n += counts[i];
	json_t *o = json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)n,
			      "p50_ms", histo_quantile_ms(counts, 0.50),
			      "p95_ms", histo_quantile_ms(counts, 0.95),
			      "p99_ms", histo_quantile_ms(counts, 0.99));
	if (with_t)
		json_object_set_new(o, "t", json_integer(t));
	return o;
}

/* store_stats's latency rows {t, bucket, count} (ordered by t, bucket)
 * into percentiles per t and over the whole range. */
static void latency_fold(json_t *out)
{
	json_t *rows = json_object_get(out, "latency"), *v;
	json_t *series = json_array();
	uint64_t all[HISTO_BUCKETS] = {0}, cur[HISTO_BUCKETS] = {0};
	json_int_t t = -1;
	size_t i;
	json_array_foreach(rows, i, v)
	{
		json_int_t rt = json_integer_value(json_object_get(v, "t"));
		json_int_t b = json_integer_value(json_object_get(v, "bucket"));
		json_int_t n = json_integer_value(json_object_get(v, "count"));
		if (rt != t && t >= 0) {
			json_array_append_new(series,
					      percentiles(cur, t, true));
			memset(cur, 0, sizeof(cur));
		}
		t = rt;
		if (b >= 0 && b < HISTO_BUCKETS && n > 0) {
			cur[b] += (uint64_t)n;
			all[b] += (uint64_t)n;
		}
	}
	if (t >= 0)
		json_array_append_new(series, percentiles(cur, t, true));
	json_object_set_new(out, "latency", series);
	json_object_set_new(out, "latency_overall", percentiles(all, 0, false));
}

int stats_query(struct stats *s, const struct chat_user *u, int64_t from_ms,
		int64_t to_ms, json_t **out)
{
	if (!chat_is_admin(s->chat, u->id))
		return CHAT_EFORBIDDEN;
	if (to_ms <= from_ms || to_ms - from_ms > STATS_RANGE_MAX_S * 1000LL)
		return CHAT_EINVAL;
	int64_t bucket = to_ms - from_ms <= 2 * 86400 * 1000LL ? 3600 : 86400;
	json_t *o = store_stats(s->store, from_ms, to_ms, bucket);
	if (!o)
		return CHAT_EINTERNAL;
	latency_fold(o);
	char a[32], b[32];
	format_ts(from_ms, a);
	format_ts(to_ms, b);
	json_object_set_new(o, "from", json_string(a));
	json_object_set_new(o, "to", json_string(b));
	json_object_set_new(o, "bucket_s", json_integer(bucket));
	*out = o;
	return CHAT_OK;
}
