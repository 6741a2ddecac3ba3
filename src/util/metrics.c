/* metrics: counters rendered in Prometheus text format. It only counts;
 * modules decide what to count. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/metrics.h"

static const char *const names[TRANSPORT_N] = {"ws", "sse", "poll"};
static const char *const reasons[REASON_N] = {
    "ok", "ws_failed", "ws_timeout", "sse_failed", "sse_timeout", "other"};

void metrics_init(struct metrics *m)
{
	for (int i = 0; i < TRANSPORT_N; i++) {
		atomic_init(&m->connections[i], 0);
		atomic_init(&m->connections_total[i], 0);
		atomic_init(&m->delivered[i], 0);
		atomic_init(&m->slow_disconnects[i], 0);
	}
	atomic_init(&m->sends, 0);
	atomic_init(&m->acks, 0);
	atomic_init(&m->errors, 0);
	atomic_init(&m->requests, 0);
	atomic_init(&m->rejected_busy, 0);
	atomic_init(&m->deadline_headers, 0);
	atomic_init(&m->deadline_body, 0);
	atomic_init(&m->tls_handshakes, 0);
	atomic_init(&m->tls_handshake_failures, 0);
	atomic_init(&m->tls_handshake_timeouts, 0);
	atomic_init(&m->tls_refused_global, 0);
	atomic_init(&m->tls_refused_addr, 0);
	atomic_init(&m->bus_id_violations, 0);
	atomic_init(&m->cluster_in, 0);
	atomic_init(&m->cluster_out, 0);
	atomic_init(&m->cluster_dropped, 0);
	atomic_init(&m->cluster_reconnects, 0);
	atomic_init(&m->cluster_up, 0);
	atomic_init(&m->ws_framers, 0);
	for (int k = 0; k < 3; k++)
		atomic_init(&m->rate_limited[k], 0);
	atomic_init(&m->rate_flood_closes, 0);
	atomic_init(&m->streams_refused[0], 0);
	atomic_init(&m->streams_refused[1], 0);
	atomic_init(&m->conns_refused_addr[0], 0);
	atomic_init(&m->conns_refused_addr[1], 0);
	atomic_init(&m->storage_full, 0);
	atomic_init(&m->rooms_day_limited, 0);
	histo_init(&m->commit);
	for (int i = 0; i < TRANSPORT_N; i++)
		histo_init(&m->delivery[i]);
	histo_init(&m->send_delivery);
	m->start_time_s = (int64_t)time(NULL);
	for (int t = 0; t < TRANSPORT_N; t++)
		for (int r = 0; r < REASON_N; r++)
			atomic_init(&m->client_transport[t][r], 0);
}

int transport_parse(const char *s, enum transport_kind *out)
{
	for (int i = 0; i < TRANSPORT_N; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum transport_kind)i;
			return 0;
		}
	return -1;
}

enum client_reason client_reason_parse(const char *s)
{
	for (int i = 0; i < REASON_N; i++)
		if (!strcmp(s, reasons[i]))
			return (enum client_reason)i;
	return REASON_OTHER;
}

const char *client_reason_name(enum client_reason r)
{
	return (unsigned)r < REASON_N ? reasons[r] : "other";
}

const char *transport_name(enum transport_kind k)
{
	return (unsigned)k < TRANSPORT_N ? names[k] : "unknown";
}

static void per_transport(struct buf *out, const char *name, const char *type,
			  const char *help, const atomic_uint_fast64_t *v)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (int i = 0; i < TRANSPORT_N; i++)
		buf_printf(out, "%s{transport=\"%s\"} %llu\n", name, names[i],
			   (unsigned long long)atomic_load(&v[i]));
}

static void single(struct buf *out, const char *name, const char *type,
		   const char *help, const atomic_uint_fast64_t *v)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help,
		   name, type, name, (unsigned long long)atomic_load(v));
}

void metrics_render(const struct metrics *m, struct buf *out)
{
	per_transport(out, "natter_connections", "gauge",
		      "Open client connections.", m->connections);
	per_transport(out, "natter_connections_total", "counter",
		      "Client connections opened.", m->connections_total);
	per_transport(out, "natter_events_delivered_total", "counter",
		      "Events written to clients.", m->delivered);
	per_transport(out, "natter_slow_consumer_disconnects_total", "counter",
		      "Connections cut loose for exceeding their send queue.",
		      m->slow_disconnects);
	single(out, "natter_sends_total", "counter", "Send commands received.",
	       &m->sends);
	single(out, "natter_acks_total", "counter",
	       "Sends acknowledged after commit.", &m->acks);
	single(out, "natter_errors_total", "counter",
	       "Error answers (HTTP 4xx/5xx and WebSocket error frames).",
	       &m->errors);
	single(out, "natter_http_requests_total", "counter",
	       "HTTP requests finished.", &m->requests);
	single(out, "natter_rejected_busy_total", "counter",
	       "Connections refused at the connection limit.",
	       &m->rejected_busy);
	single(out, "natter_slow_headers_closed_total", "counter",
	       "Connections closed for request headers not complete within "
	       "header-timeout.",
	       &m->deadline_headers);
	single(out, "natter_slow_body_closed_total", "counter",
	       "Requests closed for a body arriving below body-min-rate.",
	       &m->deadline_body);
	single(out, "natter_tls_handshakes_total", "counter",
	       "TLS handshakes completed.", &m->tls_handshakes);
	single(out, "natter_tls_handshake_failures_total", "counter",
	       "TLS handshakes that failed with an error.",
	       &m->tls_handshake_failures);
	single(out, "natter_tls_handshake_timeouts_total", "counter",
	       "TLS handshakes closed at their deadline.",
	       &m->tls_handshake_timeouts);
	buf_puts(out, "# HELP natter_tls_refused_total TLS connections refused "
		      "before their handshake, by reason.\n"
		      "# TYPE natter_tls_refused_total counter\n");
	buf_printf(out, "natter_tls_refused_total{reason=\"global\"} %llu\n",
		   (unsigned long long)atomic_load(&m->tls_refused_global));
	buf_printf(out, "natter_tls_refused_total{reason=\"per_addr\"} %llu\n",
		   (unsigned long long)atomic_load(&m->tls_refused_addr));
	single(out, "natter_bus_id_violations_total", "counter",
	       "Committed events the bus refused as out of id order.",
	       &m->bus_id_violations);
	single(out, "natter_cluster_bus_received_total", "counter",
	       "Messages received from the cluster Redis channel.",
	       &m->cluster_in);
	single(out, "natter_cluster_bus_published_total", "counter",
	       "Messages published to the cluster Redis channel.",
	       &m->cluster_out);
	single(out, "natter_cluster_bus_dropped_total", "counter",
	       "Messages not published: Redis down or the queue full.",
	       &m->cluster_dropped);
	single(out, "natter_cluster_bus_reconnects_total", "counter",
	       "Connections to Redis made again after one was lost.",
	       &m->cluster_reconnects);
	single(out, "natter_cluster_bus_up", "gauge",
	       "1 while both Redis connections are up (0 without bus).",
	       &m->cluster_up);
	single(out, "natter_ws_framing_contexts", "gauge",
	       "WebSocket connections holding wslay contexts now (mid-frame "
	       "or with a control frame to send; idle ones hold none).",
	       &m->ws_framers);
	buf_puts(out, "# HELP natter_rate_limited_total Commands refused by a "
		      "per-user rate limit, by bucket.\n"
		      "# TYPE natter_rate_limited_total counter\n");
	static const char *const kinds[3] = {"all", "send", "typing"};
	for (int k = 0; k < 3; k++)
		buf_printf(
		    out, "natter_rate_limited_total{what=\"%s\"} %llu\n",
		    kinds[k],
		    (unsigned long long)atomic_load(&m->rate_limited[k]));
	single(out, "natter_rate_flood_closes_total", "counter",
	       "WebSockets closed (1008) for flooding past a rate limit.",
	       &m->rate_flood_closes);
	single(out, "natter_storage_full", "gauge",
	       "1 while the disk under the database is full and writes are "
	       "refused.",
	       &m->storage_full);
	buf_puts(out, "# HELP natter_streams_refused_total Streams refused at "
		      "the per-user or per-address cap.\n"
		      "# TYPE natter_streams_refused_total counter\n");
	static const char *const caps[2] = {"user", "address"};
	for (int k = 0; k < 2; k++)
		buf_printf(
		    out, "natter_streams_refused_total{cap=\"%s\"} %llu\n",
		    caps[k],
		    (unsigned long long)atomic_load(&m->streams_refused[k]));
	buf_puts(out, "# HELP natter_connections_refused_address_total HTTP "
		      "connections refused at connections-per-address: "
		      "answered 429, or closed at once at twice the cap.\n"
		      "# TYPE natter_connections_refused_address_total "
		      "counter\n");
	static const char *const how[2] = {"answered", "closed"};
	for (int k = 0; k < 2; k++)
		buf_printf(
		    out,
		    "natter_connections_refused_address_total{how=\"%s\"} "
		    "%llu\n",
		    how[k],
		    (unsigned long long)atomic_load(&m->conns_refused_addr[k]));
	single(out, "natter_rooms_day_limited_total", "counter",
	       "Rooms and direct conversations refused at rooms-per-day.",
	       &m->rooms_day_limited);
	histo_header(
	    out, "natter_commit_seconds",
	    "Time from submitting a persistent command to its commit.");
	histo_render(&m->commit, out, "natter_commit_seconds", "");
	histo_header(
	    out, "natter_delivery_seconds",
	    "Time from an event commit to its bytes written to a client, by "
	    "transport.");
	for (int i = 0; i < TRANSPORT_N; i++) {
		char label[32];
		snprintf(label, sizeof(label), "transport=\"%s\"", names[i]);
		histo_render(&m->delivery[i], out, "natter_delivery_seconds",
			     label);
	}
	histo_header(out, "natter_send_to_delivery_seconds",
		     "Time from submitting a persistent command to its event "
		     "written to a "
		     "client, every transport.");
	histo_render(&m->send_delivery, out, "natter_send_to_delivery_seconds",
		     "");
	metrics_render_process(m, out);
	buf_puts(out, "# HELP natter_client_transport_total Transports browser "
		      "clients ended on, and why they fell back.\n"
		      "# TYPE natter_client_transport_total counter\n");
	for (int t = 0; t < TRANSPORT_N; t++)
		for (int r = 0; r < REASON_N; r++)
			buf_printf(
			    out,
			    "natter_client_transport_total{transport=\"%s\","
			    "reason=\"%s\"} %llu\n",
			    names[t], reasons[r],
			    (unsigned long long)atomic_load(
				&m->client_transport[t][r]));
}

/* Open descriptors: the entries of /proc/self/fd, less the one
 * opendir holds; -1 where there is no /proc. */
static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	long n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

void metrics_render_process(const struct metrics *m, struct buf *out)
{
	/* /proc/self/stat: utime and stime (fields 14, 15) in clock ticks,
	 * rss (24) in pages; the command name (2) may hold spaces, so count
	 * from its closing parenthesis. */
	char line[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(line, 1, sizeof(line) - 1, f) : 0;
	if (f)
		fclose(f);
	line[n] = '\0';
	const char *p = strrchr(line, ')');
	unsigned long long ut, stt;
	long long rss;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	if (p && tick > 0 && page > 0 &&
	    sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
		   "%*d %*d %*d %*d %*d %*d %*u %*u %lld",
		   &ut, &stt, &rss) == 3) {
		buf_printf(out,
			   "# HELP process_cpu_seconds_total Total user and "
			   "system CPU time spent in seconds.\n"
			   "# TYPE process_cpu_seconds_total counter\n"
			   "process_cpu_seconds_total %.2f\n"
			   "# HELP process_resident_memory_bytes Resident "
			   "memory size in bytes.\n"
			   "# TYPE process_resident_memory_bytes gauge\n"
			   "process_resident_memory_bytes %lld\n",
			   (double)(ut + stt) / (double)tick, rss * page);
	}
	long fds = open_fds();
	if (fds >= 0)
		buf_printf(out,
			   "# HELP process_open_fds Number of open file "
			   "descriptors.\n# TYPE process_open_fds gauge\n"
			   "process_open_fds %ld\n",
			   fds);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		buf_printf(out,
			   "# HELP process_max_fds Maximum number of open "
			   "file descriptors.\n# TYPE process_max_fds gauge\n"
			   "process_max_fds %llu\n",
			   (unsigned long long)rl.rlim_cur);
	buf_printf(out,
		   "# HELP process_start_time_seconds Start time of the "
		   "process since unix epoch in seconds.\n"
		   "# TYPE process_start_time_seconds gauge\n"
		   "process_start_time_seconds %lld\n",
		   (long long)m->start_time_s);
}
