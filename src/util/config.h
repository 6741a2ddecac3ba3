/* config: defaults, then the config file, then command-line flags (later
 * wins), validated into one struct config that is read-only afterwards.
 *
 * The file is "key = value" lines, '#' starts a comment; keys are the long
 * flag names (listen, db, web-root, log-level, ...). A repeated "listen"
 * adds an address; flags given on the command line replace the file's list
 * (the same for "tls-listen"). The default plain listener applies only when
 * neither listen nor tls-listen is given.
 * Every error names the key (and file:line) and the problem. */
#ifndef NATTER_CONFIG_H
#define NATTER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

#define CONFIG_MAX_LISTEN 8
#define CONFIG_MAX_ORIGINS 16

struct config {
	char *listen[CONFIG_MAX_LISTEN]; /* "127.0.0.1:8080", "[::1]:8080" */
	unsigned nlisten;
	char *db_path;	 /* SQLite file */
	char *store_url; /* postgresql://...: the store is PostgreSQL (db is
			  * then unused); NULL: SQLite */
	char *bus_url;	 /* redis://host:port[/db]: the cluster's
			  * ephemeral traffic (typing, presence); NULL:
			  * none leaves its node */
	char *db_dir;	 /* schema.sql and migrations/ */
	char *web_root;	 /* static web client */
	char *log_file;	 /* NULL: stderr */
	enum log_level log_level;

	unsigned http_threads;	   /* libmicrohttpd worker threads */
	unsigned loops;		   /* event loops for upgraded connections */
	unsigned max_connections;  /* beyond it: 503 + Retry-After; 0 (the
				    * default): derive it at start-up from
				    * the file-descriptor limit */
	size_t max_body;	   /* request bodies above it: 413 */
	unsigned header_timeout_s; /* accept (or last request) to headers */
	unsigned body_min_rate;	   /* bytes/s a body keeps up; 0: off */

	/* accounts */
	uint32_t argon2_memory_kib, argon2_time, argon2_parallelism;
	int64_t session_ttl_s;
	unsigned session_cache_ms; /* store_session_user's cache */
	unsigned login_fail_max;   /* failures allowed per window ... */
	unsigned login_fail_window_s;
	unsigned register_burst;      /* registrations at once per address */
	unsigned register_interval_s; /* then one per this; 0: no limit */
	int register_limit_loopback;  /* 1: limit 127/8 and ::1 too */
	unsigned hash_max;	      /* concurrent Argon2; 0: http_threads-1 */

	/* per-user rate limits (per second, then at once; rate 0: none) */
	unsigned rate_commands, rate_commands_burst; /* every command */
	unsigned rate_send, rate_send_burst;
	unsigned rate_typing, rate_typing_burst;
	unsigned rate_flood_close; /* refused in a row: WebSocket 1008 */
	unsigned rate_users_max;   /* users whose buckets are kept */
	/* concurrent streams (WebSocket, SSE, long-poll); 0: no cap */
	unsigned streams_per_user, streams_per_address;
	unsigned connections_per_address; /* HTTP connections; 0: no cap */

	/* storage */
	int db_sync_full;	     /* 1: synchronous=FULL, 0: NORMAL */
	unsigned commit_interval_ms; /* group-commit window */
	unsigned commit_batch_max;

	/* bus and transports */
	size_t ring_size;      /* recent events kept in memory */
	size_t replay_max;     /* further behind than this: recovered=false */
	size_t send_queue_max; /* bytes pending per connection */
	int no_io_uring;       /* 1: WebSocket writes never use io_uring */
	unsigned sse_heartbeat_s;
	unsigned ws_ping_s;
	unsigned presence_grace_s;     /* offline after the last connection */
	unsigned presence_away_s;      /* away after no activity */
	unsigned presence_coalesce_ms; /* a change waits this long */
	unsigned poll_timeout_default_s, poll_timeout_max_s;
	char *allowed_origins[CONFIG_MAX_ORIGINS]; /* empty: same host only */
	unsigned norigins;

	/* TLS (mbedTLS terminator in front of the HTTP server). With
	 * tls-listen given and no listen, there is no plain listener. */
	char *tls_listen[CONFIG_MAX_LISTEN];
	unsigned ntls_listen;
	char *tls_cert, *tls_key; /* PEM files; NULL with tls_self_signed */
	int tls_self_signed;	  /* 1: generate a pair in the db's folder */
	unsigned tls_handshake_timeout_s;
	unsigned tls_max_handshakes;	  /* concurrent, across all loops */
	unsigned tls_max_handshakes_addr; /* concurrent, from one address */
	unsigned hsts_max_age_s; /* Strict-Transport-Security; 0: off */
	int http_redirect;	 /* 1: plain requests get 308 to https */

	/* operators */
	char *metrics_listen; /* /metrics only there; NULL: the listeners */
	char *metrics_token;  /* /metrics needs Bearer this; NULL: none */
	unsigned stats_retention_days; /* metric samples kept (days) */
	unsigned rooms_per_day; /* rooms + DMs one user creates a day; 0: any */
	/* files */
	char *files_dir;	  /* content by SHA-256; NULL: "files" beside
				   * the database */
	size_t file_max_size;	  /* bytes in one file */
	size_t file_quota;	  /* bytes of files per user; 0: no quota */
	size_t avatar_max_size;	  /* bytes of an avatar image */
	unsigned upload_expiry_s; /* unfinished uploads removed after */
};

/* Fill cfg from defaults, the file named by --config (if any) and argv.
 * Returns 0 to run, 1 when --help or --version was printed (exit 0), and -1
 * on error with a message in err ("--listen: 'x' is not ADDR:PORT"). */
int config_load(struct config *cfg, int argc, char **argv, char *err,
		size_t errlen);
void config_fini(struct config *cfg);

#endif
