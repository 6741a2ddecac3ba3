/* config: one table of settings drives defaults, the config file, the
 * command line and --help, so the three cannot drift apart. Values are
 * applied in order (defaults, then the file named by --config, then the
 * other flags in argv order; later wins) and checked one by one as they
 * are set, then across settings at the end.
 *
 * File syntax: "key = value" per line; blank lines are skipped; '#' at the
 * start of a line or after whitespace starts a comment, so values cannot
 * contain " #". Values are not quoted. Flags: "--key value" or
 * "--key=value"; there are no short options and no positional arguments.
 *
 * It deliberately does not read the environment, open the listed paths,
 * resolve host names (listen takes numeric addresses only) or log: every
 * problem comes back as one message in err. No global state: argv is
 * walked by hand rather than with getopt_long, so config_load can run any
 * number of times in one process. */

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autoconfig.h" /* PACKAGE_VERSION; not src/config.h */
#include "util/addr.h"
#include "util/config.h"
#include "util/util.h"

#ifndef NATTER_DATADIR
#define NATTER_DATADIR "/usr/local/share/natter"
#endif

#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define LINE_MAX_LEN 4096

enum opt_type {
	T_CONFIG,     /* flag only: the file to read */
	T_HELP,	      /* flag only */
	T_VERSION,    /* flag only */
	T_STR,	      /* char *, non-empty */
	T_LOGFILE,    /* char *, "-" means stderr (NULL) */
	T_LISTEN,     /* appended to listen[] */
	T_TLS_LISTEN, /* appended to tls_listen[] */
	T_BOOL,	      /* int 0/1; a flag alone means 1, in a file yes/no */
	T_ORIGIN,     /* appended to allowed_origins[] */
	T_LEVEL,      /* enum log_level */
	T_SYNC,	      /* full|normal -> db_sync_full */
	T_UINT,	      /* unsigned */
	T_U32,	      /* uint32_t */
	T_SIZE,	      /* size_t */
	T_BYTES,      /* size_t, with an optional k/K or m/M suffix */
	T_I64,	      /* int64_t */
};

struct opt {
	const char *name;
	const char *arg; /* placeholder in --help; NULL: takes no value */
	enum opt_type type;
	size_t off; /* offset of the field in struct config */
	int64_t min, max;
	const char *help;
};

#define F(field) offsetof(struct config, field)

static const struct opt opts[] = {
    {"config", "FILE", T_CONFIG, 0, 0, 0,
     "read settings from FILE; other flags override it"},
    {"listen", "ADDR:PORT", T_LISTEN, 0, 0, 0,
     "listen on a numeric IPv4 or [IPv6] address (repeatable; with "
     "tls-listen there is no default)"},
    {"db", "PATH", T_STR, F(db_path), 0, 0, "SQLite database file"},
    {"store", "URL", T_STR, F(store_url), 0, 0,
     "postgresql://... to keep everything in PostgreSQL (a cluster of "
     "nodes shares one); unset: the SQLite file in db"},
    {"bus", "URL", T_STR, F(bus_url), 0, 0,
     "redis://HOST:PORT[/DB]: typing and presence reach every node of a "
     "cluster (Redis pub/sub); unset: they stay on their node"},
    {"db-dir", "DIR", T_STR, F(db_dir), 0, 0,
     "directory of schema.sql and migrations/"},
    {"web-root", "DIR", T_STR, F(web_root), 0, 0,
     "directory of the web client"},
    {"log-file", "PATH", T_LOGFILE, F(log_file), 0, 0,
     "log file; '-' is stderr"},
    {"log-level", "LEVEL", T_LEVEL, F(log_level), 0, 0,
     "error, warn, info or debug"},
    {"http-threads", "N", T_UINT, F(http_threads), 1, 256,
     "HTTP worker threads (1-256)"},
    {"loops", "N", T_UINT, F(loops), 1, 64,
     "event loops for upgraded connections (1-64)"},
    {"max-connections", "N", T_UINT, F(max_connections), 0, 1000000,
     "open connections before 503; 0: from the file-descriptor limit"},
    {"max-body", "BYTES", T_BYTES, F(max_body), 1, GIB,
     "largest request body, suffix k or M allowed (up to 1024M)"},
    {"files-dir", "DIR", T_STR, F(files_dir), 0, 0,
     "where uploaded files are kept (by SHA-256); default: files/ beside "
     "the database"},
    {"file-max-size", "BYTES", T_BYTES, F(file_max_size), 1, 64 * GIB,
     "largest file one upload may hold, suffix k or M allowed"},
    {"avatar-max-size", "BYTES", T_BYTES, F(avatar_max_size), 1, 64 * GIB,
     "largest image a user may make their avatar, suffix k or M allowed"},
    {"file-quota", "BYTES", T_BYTES, F(file_quota), 0, 1024 * GIB,
     "bytes of files (and unfinished uploads) per user; 0: no quota"},
    {"upload-expiry", "SECONDS", T_UINT, F(upload_expiry_s), 1, 30 * 86400,
     "an unfinished upload (and a finished file no message uses) is "
     "removed after this long"},
    {"header-timeout", "SECONDS", T_UINT, F(header_timeout_s), 1, 300,
     "close a connection whose request headers are not complete this long "
     "after it opened, or after the first byte of its next request (1-300)"},
    {"body-min-rate", "BYTES", T_UINT, F(body_min_rate), 0, 1 << 30,
     "close a request whose body, after header-timeout seconds, arrives "
     "slower than this many bytes a second on average; 0: no limit"},
    {"argon2-memory-kib", "N", T_U32, F(argon2_memory_kib), 8, 4 * MIB,
     "Argon2id memory cost in KiB (>= 8 * parallelism)"},
    {"argon2-time", "N", T_U32, F(argon2_time), 1, 100,
     "Argon2id passes (1-100)"},
    {"argon2-parallelism", "N", T_U32, F(argon2_parallelism), 1, 64,
     "Argon2id lanes (1-64)"},
    {"session-ttl", "SECONDS", T_I64, F(session_ttl_s), 60, 3650 * 86400,
     "lifetime of a login session"},
    {"session-cache-ms", "N", T_UINT, F(session_cache_ms), 0, 60000,
     "answer session checks from memory this long (0-60000; logout is "
     "immediate)"},
    {"login-fail-max", "N", T_UINT, F(login_fail_max), 1, 1000,
     "failed logins per account or address before slowing down"},
    {"login-fail-window", "SECONDS", T_UINT, F(login_fail_window_s), 1, 86400,
     "window for failed logins, and longest lock-out"},
    {"register-burst", "N", T_UINT, F(register_burst), 1, 100000,
     "accounts one address may register at once"},
    {"register-interval", "SECONDS", T_UINT, F(register_interval_s), 0, 86400,
     "then one more account per this many seconds; 0: no limit"},
    {"register-limit-loopback", NULL, T_BOOL, F(register_limit_loopback), 0, 0,
     "limit registrations from loopback addresses too (a local reverse "
     "proxy makes every client one address)"},
    {"hash-max", "N", T_UINT, F(hash_max), 0, 256,
     "password hashes run at once; 0: http-threads - 1 (at least 1)"},
    {"rate-commands", "N", T_UINT, F(rate_commands), 0, 100000,
     "commands per second per user (any command, invalid ones and pings "
     "included); 0: no limit"},
    {"rate-commands-burst", "N", T_UINT, F(rate_commands_burst), 1, 1000000,
     "commands a user may send at once"},
    {"rate-send", "N", T_UINT, F(rate_send), 0, 100000,
     "messages per second per user; 0: no limit"},
    {"rate-send-burst", "N", T_UINT, F(rate_send_burst), 1, 1000000,
     "messages a user may send at once"},
    {"rate-typing", "N", T_UINT, F(rate_typing), 0, 100000,
     "typing notices per second per user; 0: no limit"},
    {"rate-typing-burst", "N", T_UINT, F(rate_typing_burst), 1, 1000000,
     "typing notices a user may send at once"},
    {"rate-flood-close", "N", T_UINT, F(rate_flood_close), 1, 1000000,
     "commands refused in a row before a WebSocket is closed (1008)"},
    {"rate-users-max", "N", T_UINT, F(rate_users_max), 16, 16777216,
     "users whose rate-limit buckets are kept (bounded memory)"},
    {"streams-per-user", "N", T_UINT, F(streams_per_user), 0, 1000000,
     "open WebSocket, SSE and long-poll streams per user; 0: no cap"},
    {"streams-per-address", "N", T_UINT, F(streams_per_address), 0, 1000000,
     "open streams per client address; 0: no cap"},
    {"connections-per-address", "N", T_UINT, F(connections_per_address), 0,
     1000000,
     "open HTTP connections per client address (TLS ones by the client's "
     "address); beyond, 429; at twice it, closed at once; 0: no cap"},
    {"db-sync", "full|normal", T_SYNC, F(db_sync_full), 0, 0,
     "SQLite synchronous mode; normal survives only process crashes"},
    {"commit-interval-ms", "N", T_UINT, F(commit_interval_ms), 0, 1000,
     "group-commit window in milliseconds (0-1000)"},
    {"commit-batch-max", "N", T_UINT, F(commit_batch_max), 1, 65536,
     "most events per commit (1-65536)"},
    {"ring-size", "N", T_SIZE, F(ring_size), 16, 1048576,
     "recent events kept in memory (16-1048576)"},
    {"replay-max", "N", T_SIZE, F(replay_max), 0, 100000000,
     "most events replayed to a reconnecting client"},
    {"send-queue-max", "BYTES", T_BYTES, F(send_queue_max), 4 * KIB, GIB,
     "bytes queued per connection before it is cut loose"},
    {"no-io-uring", NULL, T_BOOL, F(no_io_uring), 0, 0,
     "write WebSocket frames with one sendmsg() per connection, not in "
     "io_uring batches per loop wake-up"},
    {"sse-heartbeat", "SECONDS", T_UINT, F(sse_heartbeat_s), 1, 3600,
     "SSE heartbeat comment interval"},
    {"ws-ping", "SECONDS", T_UINT, F(ws_ping_s), 1, 3600,
     "WebSocket ping interval"},
    {"poll-timeout", "SECONDS", T_UINT, F(poll_timeout_default_s), 1, 120,
     "long-poll timeout when the client asks for none"},
    {"poll-timeout-max", "SECONDS", T_UINT, F(poll_timeout_max_s), 1, 120,
     "longest long-poll timeout a client may ask for (1-120)"},
    {"presence-grace", "SECONDS", T_UINT, F(presence_grace_s), 0, 3600,
     "a user whose last connection went shows offline this much later"},
    {"presence-away", "SECONDS", T_UINT, F(presence_away_s), 1, 86400,
     "a connected user with no activity this long shows away"},
    {"presence-coalesce-ms", "N", T_UINT, F(presence_coalesce_ms), 0, 10000,
     "a presence change is published this much later, if it still holds"},
    {"allowed-origin", "URL", T_ORIGIN, 0, 0, 0,
     "extra Origin allowed, e.g. https://chat.example.org (repeatable)"},
    {"tls-listen", "ADDR:PORT", T_TLS_LISTEN, 0, 0, 0,
     "serve HTTPS on a numeric address (repeatable; without --listen, "
     "no plain HTTP)"},
    {"tls-cert", "FILE", T_STR, F(tls_cert), 0, 0,
     "PEM certificate (chain) for tls-listen; SIGHUP reloads it"},
    {"tls-key", "FILE", T_STR, F(tls_key), 0, 0,
     "PEM private key of tls-cert; SIGHUP reloads it"},
    {"tls-self-signed", NULL, T_BOOL, F(tls_self_signed), 0, 0,
     "use (or create) a self-signed pair for localhost in the database's "
     "folder; tls-listen defaults to 127.0.0.1:8443"},
    {"tls-handshake-timeout", "SECONDS", T_UINT, F(tls_handshake_timeout_s), 1,
     300, "close TLS handshakes not done by then (1-300)"},
    {"tls-max-handshakes", "N", T_UINT, F(tls_max_handshakes), 1, 100000,
     "TLS handshakes in progress at once; more are refused"},
    {"tls-max-handshakes-per-addr", "N", T_UINT, F(tls_max_handshakes_addr), 1,
     100000,
     "TLS handshakes in progress from one address; more are "
     "refused"},
    {"hsts", "SECONDS", T_UINT, F(hsts_max_age_s), 0, 63072000,
     "Strict-Transport-Security max-age on HTTPS responses; 0: none"},
    {"http-redirect", NULL, T_BOOL, F(http_redirect), 0, 0,
     "answer plain HTTP requests with a redirect to HTTPS"},
    {"metrics-listen", "ADDR:PORT", T_STR, F(metrics_listen), 0, 0,
     "serve /metrics only on this numeric address, not on the listen "
     "addresses"},
    {"metrics-token", "TOKEN", T_STR, F(metrics_token), 0, 0,
     "/metrics answers only requests with Authorization: Bearer TOKEN"},
    {"stats-retention", "DAYS", T_UINT, F(stats_retention_days), 1, 3660,
     "days of metric samples kept for the admin statistics (1-3660)"},
    {"rooms-per-day", "N", T_UINT, F(rooms_per_day), 0, 100000,
     "rooms and direct conversations one user may create in 24 hours; "
     "0: no limit"},
    {"help", NULL, T_HELP, 0, 0, 0, "print this help and exit"},
    {"version", NULL, T_VERSION, 0, 0, 0, "print the version and exit"},
};

/* Where the list options' current entries came from: the first value from
 * a later source replaces them, further values from that source add. */
enum origin { FROM_DEFAULT, FROM_FILE, FROM_FLAGS };

struct loader {
	struct config *cfg;
	char *err;
	size_t errlen;
	const char *file; /* NULL while applying flags */
	unsigned line;
	enum origin listen_from, origins_from, tls_listen_from;
};

static void seterr(struct loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void seterr(struct loader *ld, const char *fmt, ...)
{
	va_list ap;

	if (!ld->err || ld->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err, ld->errlen, fmt, ap);
	va_end(ap);
}

/* "--key: why" or "file:line: key: why"; returns -1. */
static int opt_error(struct loader *ld, const struct opt *o, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

static int opt_error(struct loader *ld, const struct opt *o, const char *fmt,
		     ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (ld->file)
		seterr(ld, "%s:%u: %s: %s", ld->file, ld->line, o->name, why);
	else
		seterr(ld, "--%s: %s", o->name, why);
	return -1;
}

static const struct opt *opt_find(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(opts); i++)
		if (strlen(opts[i].name) == len &&
		    memcmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static void *field(struct config *cfg, const struct opt *o)
{
	return (char *)cfg + o->off;
}

static void set_defaults(struct config *cfg)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	memset(cfg, 0, sizeof(*cfg));
	cfg->listen[0] = xstrdup("127.0.0.1:8080");
	cfg->nlisten = 1;
	cfg->db_path = xstrdup("natter.db");
	cfg->db_dir = xstrdup(NATTER_DATADIR "/db");
	cfg->web_root = xstrdup(NATTER_DATADIR "/web");
	cfg->log_file = NULL;
	cfg->log_level = LOG_INFO;
	cfg->http_threads = 4;
	cfg->loops = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (unsigned)ncpu;
	cfg->max_connections = 0;
	cfg->max_body = (size_t)MIB;
	cfg->file_max_size = 100 * (size_t)MIB;
	cfg->file_quota = 1024 * (size_t)MIB;
	cfg->avatar_max_size = 5 * (size_t)MIB;
	cfg->upload_expiry_s = 86400;
	cfg->header_timeout_s = 10;
	cfg->body_min_rate = 1024;
	cfg->argon2_memory_kib = 19456;
	cfg->argon2_time = 2;
	cfg->argon2_parallelism = 1;
	cfg->session_ttl_s = 30 * 86400;
	cfg->session_cache_ms = 5000;
	cfg->login_fail_max = 5;
	cfg->login_fail_window_s = 300;
	cfg->register_burst = 10;
	cfg->register_interval_s = 120; /* 5 per 10 minutes */
	cfg->register_limit_loopback = 0;
	cfg->hash_max = 0;
	cfg->rate_commands = 20;
	cfg->rate_commands_burst = 60;
	cfg->rate_send = 5;
	cfg->rate_send_burst = 20;
	cfg->rate_typing = 2;
	cfg->rate_typing_burst = 5;
	cfg->rate_flood_close = 200;
	cfg->rate_users_max = 65536;
	cfg->streams_per_user = 32;
	cfg->streams_per_address = 256;
	cfg->connections_per_address = 512;
	cfg->db_sync_full = 1;
	cfg->commit_interval_ms = 0;
	cfg->commit_batch_max = 256;
	cfg->ring_size = 4096;
	cfg->replay_max = 10000;
	cfg->send_queue_max = (size_t)MIB;
	cfg->no_io_uring = 0;
	cfg->sse_heartbeat_s = 15;
	cfg->ws_ping_s = 30;
	cfg->presence_grace_s = 30;
	cfg->presence_away_s = 300;
	cfg->presence_coalesce_ms = 250;
	cfg->poll_timeout_default_s = 25;
	cfg->poll_timeout_max_s = 55;
	cfg->tls_handshake_timeout_s = 10;
	cfg->tls_max_handshakes = 1024;
	cfg->tls_max_handshakes_addr = 64;
	cfg->hsts_max_age_s = 31536000;
	cfg->stats_retention_days = 30;
	cfg->rooms_per_day = 100;
}

/* "1.2.3.4:80" or "[::1]:80", numeric only: addr_parse decides. */
static int check_listen(struct loader *ld, const struct opt *o, const char *v)
{
	char why[256];
	struct addr a;

	if (addr_parse(v, &a, why, sizeof(why)) < 0)
		return opt_error(ld, o, "%s", why);
	return 0;
}

/* An Origin header value: http(s)://host[:port], nothing after. */
static int check_origin(struct loader *ld, const struct opt *o, const char *v)
{
	const char *host;

	if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else
		goto bad;
	if (!*host)
		goto bad;
	for (const char *p = host; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' ||
		    c == '@')
			goto bad;
	}
	return 0;

bad:
	return opt_error(ld, o,
			 "'%s' is not an origin like "
			 "https://host[:port]",
			 v);
}

/* Decimal, for T_BYTES optionally followed by k/K or m/M. */
static int parse_num(const char *v, bool suffix, int64_t *out)
{
	char digits[32];
	size_t len = strlen(v);
	int64_t mult = 1, n;

	if (suffix && len > 1) {
		switch (v[len - 1]) {
		case 'k':
		case 'K':
			mult = KIB;
			len--;
			break;
		case 'm':
		case 'M':
			mult = MIB;
			len--;
			break;
		}
	}
	if (len == 0 || len >= sizeof(digits))
		return -1;
	memcpy(digits, v, len);
	digits[len] = '\0';
	if (parse_i64(digits, &n) != 0)
		return -1;
	/* Saturate rather than overflow: the range check rejects it. */
	if (n > INT64_MAX / mult)
		n = INT64_MAX;
	else if (n < INT64_MIN / mult)
		n = INT64_MIN;
	else
		n *= mult;
	*out = n;
	return 0;
}

static int set_number(struct loader *ld, const struct opt *o, const char *v)
{
	void *p = field(ld->cfg, o);
	int64_t n;

	if (parse_num(v, o->type == T_BYTES, &n) != 0)
		return opt_error(ld, o, "'%s' is not a %s", v,
				 o->type == T_BYTES ? "size (N, Nk or NM)"
						    : "number");
	if (n < o->min || n > o->max)
		return opt_error(ld, o, "'%s' is out of range (%lld-%lld)", v,
				 (long long)o->min, (long long)o->max);
	switch (o->type) {
	case T_UINT:
		*(unsigned *)p = (unsigned)n;
		break;
	case T_U32:
		*(uint32_t *)p = (uint32_t)n;
		break;
	case T_SIZE:
	case T_BYTES:
		*(size_t *)p = (size_t)n;
		break;
	case T_I64:
		*(int64_t *)p = n;
		break;
	default:
		assert(!"not a number option");
	}
	return 0;
}

static int set_list(struct loader *ld, const struct opt *o, const char *v)
{
	struct config *cfg = ld->cfg;
	enum origin now = ld->file ? FROM_FILE : FROM_FLAGS;
	bool tls = o->type == T_TLS_LISTEN;
	bool listen = o->type == T_LISTEN || tls;
	char **list = tls      ? cfg->tls_listen
		      : listen ? cfg->listen
			       : cfg->allowed_origins;
	unsigned *n = tls      ? &cfg->ntls_listen
		      : listen ? &cfg->nlisten
			       : &cfg->norigins;
	unsigned max = listen ? CONFIG_MAX_LISTEN : CONFIG_MAX_ORIGINS;
	enum origin *from = tls	     ? &ld->tls_listen_from
			    : listen ? &ld->listen_from
				     : &ld->origins_from;

	if (listen ? check_listen(ld, o, v) : check_origin(ld, o, v))
		return -1;
	if (*from != now) {
		for (unsigned i = 0; i < *n; i++) {
			free(list[i]);
			list[i] = NULL;
		}
		*n = 0;
		*from = now;
	}
	for (unsigned i = 0; i < *n; i++)
		if (strcmp(list[i], v) == 0)
			return opt_error(ld, o, "'%s' is given twice", v);
	if (*n >= max)
		return opt_error(ld, o, "more than %u values", max);
	list[(*n)++] = xstrdup(v);
	return 0;
}

/* Apply one value from the file or the command line. */
static int set_value(struct loader *ld, const struct opt *o, const char *v)
{
	struct config *cfg = ld->cfg;
	char **str;

	if (*v == '\0')
		return opt_error(ld, o, "missing value");
	switch (o->type) {
	case T_STR:
	case T_LOGFILE:
		str = field(cfg, o);
		free(*str);
		*str = (o->type == T_LOGFILE && strcmp(v, "-") == 0)
			   ? NULL
			   : xstrdup(v);
		return 0;
	case T_LISTEN:
	case T_TLS_LISTEN:
	case T_ORIGIN:
		return set_list(ld, o, v);
	case T_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
			*(int *)field(cfg, o) = 1;
		else if (!strcmp(v, "no") || !strcmp(v, "false") ||
			 !strcmp(v, "0"))
			*(int *)field(cfg, o) = 0;
		else
			return opt_error(ld, o, "'%s' is not yes or no", v);
		return 0;
	case T_LEVEL:
		if (log_level_parse(v, &cfg->log_level) != 0)
			return opt_error(ld, o,
					 "'%s' is not one of error, "
					 "warn, info, debug",
					 v);
		return 0;
	case T_SYNC:
		if (strcmp(v, "full") == 0)
			cfg->db_sync_full = 1;
		else if (strcmp(v, "normal") == 0)
			cfg->db_sync_full = 0;
		else
			return opt_error(ld, o,
					 "'%s' is not one of full, "
					 "normal",
					 v);
		return 0;
	case T_UINT:
	case T_U32:
	case T_SIZE:
	case T_BYTES:
	case T_I64:
		return set_number(ld, o, v);
	case T_CONFIG:
	case T_HELP:
	case T_VERSION:
		break;
	}
	return opt_error(ld, o, "not allowed in a config file");
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
			 e[-1] == '\n'))
		e--;
	*e = '\0';
	return s;
}

static int parse_line(struct loader *ld, char *line)
{
	char *eq, *key, *val;
	const struct opt *o;

	/* Comments: '#' at the start or after whitespace. */
	for (char *p = line; *p; p++) {
		if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	}
	line = trim(line);
	if (*line == '\0')
		return 0;
	eq = strchr(line, '=');
	if (!eq) {
		seterr(ld, "%s:%u: '%.64s' is not 'key = value'", ld->file,
		       ld->line, line);
		return -1;
	}
	*eq = '\0';
	key = trim(line);
	val = trim(eq + 1);
	if (*key == '\0') {
		seterr(ld, "%s:%u: missing key before '='", ld->file, ld->line);
		return -1;
	}
	o = opt_find(key, strlen(key));
	if (!o) {
		seterr(ld, "%s:%u: unknown key '%.64s'", ld->file, ld->line,
		       key);
		return -1;
	}
	return set_value(ld, o, val);
}

static int load_file(struct loader *ld, const char *path)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = -1;

	f = fopen(path, "re");
	if (!f) {
		seterr(ld, "--config: cannot open '%s': %s", path,
		       strerror(errno));
		return -1;
	}
	ld->file = path;
	ld->line = 0;
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		ld->line++;
		if (n > LINE_MAX_LEN) {
			seterr(ld, "%s:%u: line too long", path, ld->line);
			goto fail;
		}
		if (strlen(line) != (size_t)n) {
			seterr(ld, "%s:%u: NUL byte in line", path, ld->line);
			goto fail;
		}
		if (parse_line(ld, line) != 0)
			goto fail;
	}
	if (ferror(f)) {
		seterr(ld, "--config: cannot read '%s': %s", path,
		       strerror(errno ? errno : EIO));
		goto fail;
	}
	rc = 0;
fail:
	ld->file = NULL;
	free(line);
	fclose(f);
	return rc;
}

/* TLS settings across keys; may fill in tls-listen for tls-self-signed and
 * drops the default plain listener when TLS is asked for. */
static int validate_tls(struct loader *ld)
{
	struct config *cfg = ld->cfg;
	bool pair = cfg->tls_cert || cfg->tls_key;

	if (pair && !(cfg->tls_cert && cfg->tls_key)) {
		seterr(ld, "tls-cert and tls-key go together: give both");
		return -1;
	}
	if (pair && cfg->tls_self_signed) {
		seterr(ld, "give either tls-cert and tls-key or "
			   "tls-self-signed, not both");
		return -1;
	}
	if (cfg->tls_self_signed && cfg->ntls_listen == 0)
		cfg->tls_listen[cfg->ntls_listen++] = xstrdup("127.0.0.1:8443");
	if (cfg->ntls_listen && !pair && !cfg->tls_self_signed) {
		seterr(ld, "tls-listen needs tls-cert and tls-key (or "
			   "tls-self-signed)");
		return -1;
	}
	if (pair && cfg->ntls_listen == 0) {
		seterr(ld, "tls-cert and tls-key need tls-listen");
		return -1;
	}
	if (cfg->http_redirect && cfg->ntls_listen == 0) {
		seterr(ld, "http-redirect needs tls-listen");
		return -1;
	}
	if (cfg->ntls_listen && ld->listen_from == FROM_DEFAULT) {
		for (unsigned i = 0; i < cfg->nlisten; i++) {
			free(cfg->listen[i]);
			cfg->listen[i] = NULL;
		}
		cfg->nlisten = 0;
	}
	return 0;
}

static int validate(struct loader *ld)
{
	const struct config *cfg = ld->cfg;

	if (validate_tls(ld) != 0)
		return -1;

	if (cfg->argon2_memory_kib < 8 * cfg->argon2_parallelism) {
		seterr(ld,
		       "argon2-memory-kib (%u) must be at least 8 * "
		       "argon2-parallelism (%u)",
		       cfg->argon2_memory_kib, 8 * cfg->argon2_parallelism);
		return -1;
	}
	if (cfg->metrics_listen) {
		struct addr a;
		char why[256];
		if (addr_parse(cfg->metrics_listen, &a, why, sizeof(why)) < 0) {
			seterr(ld, "metrics-listen: %s", why);
			return -1;
		}
	}
	if (cfg->poll_timeout_default_s > cfg->poll_timeout_max_s) {
		seterr(ld,
		       "poll-timeout must not exceed poll-timeout-max "
		       "(%u > %u)",
		       cfg->poll_timeout_default_s, cfg->poll_timeout_max_s);
		return -1;
	}
	return 0;
}

/* The default of o as --help shows it. */
static void format_default(char *out, size_t len, const struct config *d,
			   const struct opt *o)
{
	const void *p = (const char *)d + o->off;
	size_t z;

	switch (o->type) {
	case T_CONFIG:
		snprintf(out, len, "none");
		break;
	case T_STR:
		snprintf(out, len, "%s",
			 *(char *const *)p ? *(char *const *)p : "none");
		break;
	case T_LOGFILE:
		snprintf(out, len, "%s",
			 *(char *const *)p ? *(char *const *)p : "stderr");
		break;
	case T_LISTEN:
		snprintf(out, len, "%s", d->listen[0]);
		break;
	case T_TLS_LISTEN:
		snprintf(out, len, "none");
		break;
	case T_BOOL:
		snprintf(out, len, "%s", *(const int *)p ? "yes" : "no");
		break;
	case T_ORIGIN:
		snprintf(out, len, "none, same host only");
		break;
	case T_LEVEL:
		snprintf(out, len, "%s",
			 d->log_level == LOG_ERROR  ? "error"
			 : d->log_level == LOG_WARN ? "warn"
			 : d->log_level == LOG_INFO ? "info"
						    : "debug");
		break;
	case T_SYNC:
		snprintf(out, len, "%s", d->db_sync_full ? "full" : "normal");
		break;
	case T_UINT:
		snprintf(out, len, "%u", *(const unsigned *)p);
		break;
	case T_U32:
		snprintf(out, len, "%u", (unsigned)*(const uint32_t *)p);
		break;
	case T_SIZE:
		snprintf(out, len, "%zu", *(const size_t *)p);
		break;
	case T_BYTES:
		z = *(const size_t *)p;
		if (z % (size_t)MIB == 0)
			snprintf(out, len, "%zuM", z / (size_t)MIB);
		else if (z % (size_t)KIB == 0)
			snprintf(out, len, "%zuk", z / (size_t)KIB);
		else
			snprintf(out, len, "%zu", z);
		break;
	case T_I64:
		snprintf(out, len, "%lld", (long long)*(const int64_t *)p);
		break;
	case T_HELP:
	case T_VERSION:
		snprintf(out, len, "%s", "");
		break;
	}
}

#define HELP_INDENT 30
#define HELP_WIDTH 79

/* Print len bytes at column *col, first breaking the line if they would
 * not fit. */
static void put_word(FILE *out, size_t *col, const char *w, size_t len)
{
	if (*col > HELP_INDENT && *col + 1 + len > HELP_WIDTH) {
		fprintf(out, "\n%*s", HELP_INDENT, "");
		*col = HELP_INDENT;
	} else if (*col > HELP_INDENT) {
		fputc(' ', out);
		(*col)++;
	}
	fwrite(w, 1, len, out);
	*col += len;
}

static void usage(FILE *out, const char *prog)
{
	struct config d;

	set_defaults(&d);
	fprintf(out,
		"Usage: %s [--config FILE] [OPTION...]\n"
		"natter chat server. Settings come from the defaults, then "
		"FILE (lines of\n\"key = value\" with the option names "
		"below), then the command line.\n\n",
		prog);
	for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
		const struct opt *o = &opts[i];
		char lhs[64], def[96];
		size_t col;

		snprintf(lhs, sizeof(lhs), "  --%s%s%s", o->name,
			 o->arg ? " " : "", o->arg ? o->arg : "");
		fputs(lhs, out);
		col = strlen(lhs);
		if (col + 1 >= HELP_INDENT) {
			fputc('\n', out);
			col = 0;
		}
		fprintf(out, "%*s", (int)(HELP_INDENT - col), "");
		col = HELP_INDENT;
		for (const char *w = o->help; *w;) {
			size_t n = strcspn(w, " ");
			put_word(out, &col, w, n);
			w += n;
			w += strspn(w, " ");
		}
		if (o->arg) {
			char unit[128];
			format_default(def, sizeof(def), &d, o);
			snprintf(unit, sizeof(unit), "(default: %s)", def);
			put_word(out, &col, unit, strlen(unit));
		}
		fputc('\n', out);
	}
	config_fini(&d);
}

/* One flag of argv: its option and value (NULL for --help/--version). */
struct flag {
	const struct opt *o;
	const char *value;
};

/* Split argv into flags. Returns 0, 1 after --help/--version, -1. */
static int parse_argv(struct loader *ld, int argc, char **argv,
		      struct flag *flags, int *nflags, const char **cfgfile)
{
	const char *prog = argc > 0 && argv[0] ? argv[0] : "natterd";

	*nflags = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *value = NULL;
		const struct opt *o;
		size_t nlen;

		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			seterr(ld, "unexpected argument '%s' (try --help)", a);
			return -1;
		}
		name = a + 2;
		eq = strchr(name, '=');
		nlen = eq ? (size_t)(eq - name) : strlen(name);
		o = opt_find(name, nlen);
		if (!o) {
			seterr(ld, "unknown option '--%.*s' (try --help)",
			       (int)(nlen > 64 ? 64 : nlen), name);
			return -1;
		}
		if (!o->arg && o->type == T_BOOL) {
			/* "--flag" or "--flag=no" */
			flags[*nflags].o = o;
			flags[*nflags].value = eq ? eq + 1 : "yes";
			(*nflags)++;
			continue;
		}
		if (!o->arg) {
			if (eq)
				return opt_error(ld, o, "takes no value");
			if (o->type == T_HELP) {
				usage(stdout, prog);
			} else {
				printf("natterd %s\n", PACKAGE_VERSION);
			}
			fflush(stdout);
			return 1;
		}
		if (eq) {
			value = eq + 1;
		} else {
			/* "--db --listen x" is a forgotten value, not a
			 * database named "--listen". */
			if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
				return opt_error(ld, o, "missing value");
			value = argv[++i];
		}
		if (o->type == T_CONFIG) {
			if (*value == '\0')
				return opt_error(ld, o, "missing value");
			*cfgfile = value;
			continue;
		}
		flags[*nflags].o = o;
		flags[*nflags].value = value;
		(*nflags)++;
	}
	return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char *err,
		size_t errlen)
{
	struct loader ld = {
	    .cfg = cfg,
	    .err = err,
	    .errlen = errlen,
	    .listen_from = FROM_DEFAULT,
	    .origins_from = FROM_DEFAULT,
	    .tls_listen_from = FROM_DEFAULT,
	};
	struct flag *flags = NULL;
	const char *cfgfile = NULL;
	int nflags, rc;

	if (err && errlen)
		err[0] = '\0';
	set_defaults(cfg);
	flags = xcalloc(argc > 0 ? (size_t)argc : 1, sizeof(*flags));
	rc = parse_argv(&ld, argc, argv, flags, &nflags, &cfgfile);
	if (rc != 0)
		goto fail;
	rc = -1;
	if (cfgfile && load_file(&ld, cfgfile) != 0)
		goto fail;
	for (int i = 0; i < nflags; i++)
		if (set_value(&ld, flags[i].o, flags[i].value) != 0)
			goto fail;
	if (validate(&ld) != 0)
		goto fail;
	free(flags);
	return 0;

fail:
	free(flags);
	config_fini(cfg);
	return rc;
}

void config_fini(struct config *cfg)
{
	for (unsigned i = 0; i < CONFIG_MAX_LISTEN; i++)
		free(cfg->listen[i]);
	for (unsigned i = 0; i < CONFIG_MAX_ORIGINS; i++)
		free(cfg->allowed_origins[i]);
	for (unsigned i = 0; i < CONFIG_MAX_LISTEN; i++)
		free(cfg->tls_listen[i]);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->db_path);
	free(cfg->store_url);
	free(cfg->bus_url);
	free(cfg->db_dir);
	free(cfg->web_root);
	free(cfg->files_dir);
	free(cfg->log_file);
	free(cfg->metrics_listen);
	free(cfg->metrics_token);
	memset(cfg, 0, sizeof(*cfg));
}
