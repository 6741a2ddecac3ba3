/* main: read the configuration, build the server's modules and wire them
 * together, wait for signals, and shut down in order. No logic of its own.
 *
 * Threads: libmicrohttpd's workers (http), one event loop per core (loop,
 * for upgraded WebSockets, bus shards and TLS connections), the store's
 * writer, and the timers of sse and longpoll. This thread only waits for
 * signals: SIGHUP reopens the log and reloads the TLS certificate. */
#include <errno.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "autoconfig.h"
#include "http/http.h"
#include "util/log.h"
#include "http/server.h"
#include "net/tls.h"
#include "net/tls_cert.h"

/* Raise the descriptor soft limit to the hard limit: every connection is a
 * descriptor, and nothing in natter should cap lower than the system. */
/* Free pages in the middle of the malloc arenas go back to the kernel
 * once TRIM_CHURN connections have come (and so about as many gone)
 * since the last time: each HTTP connection's 32 KiB pool and each closed
 * stream's structures are freed among live allocations, which plain
 * free() never returns (at 10,000 idle WebSockets, about 1.5 KB each).
 * On the main thread, which only waits for signals: a trim holds each
 * arena's lock while it walks it, a few milliseconds at most. Returns the
 * churn count to compare with next time. */
#define TRIM_CHURN 256

static uint64_t trim_heap(struct metrics *m, uint64_t trimmed)
{
	uint64_t churn = 0;
	for (int t = 0; t < TRANSPORT_N; t++)
		churn += atomic_load(&m->connections_total[t]);
	churn += atomic_load(&m->requests);
	if (churn - trimmed < TRIM_CHURN)
		return trimmed;
	malloc_trim(0);
	return churn;
}

static unsigned raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur > 1000000 ? 1000000 : (unsigned)rl.rlim_cur;
}

static void load_member(void *arg, int64_t room_id, int64_t user_id)
{
	bus_member_add(arg, room_id, user_id);
}

static void drain_task(void *arg)
{
	bus_shard_drain(arg);
}

struct wake {
	struct loop *loop;
	struct bus_shard *shard;
};

/* The bus calls this when a shard's inbox turns non-empty. */
static void wake_shard(void *arg)
{
	struct wake *w = arg;
	loop_post(w->loop, drain_task, w->shard);
}

/* With tls-listen: load the pair (creating the self-signed one if asked)
 * and bind; accepting starts later, in tls_start. */
static struct tls *tls_setup(const struct config *cfg, struct server *srv)
{
	char err[512];
	char *cert = NULL, *key = NULL;

	if (cfg->ntls_listen == 0)
		return NULL;
	if (cfg->tls_self_signed) {
		char *db = xstrdup(cfg->db_path);
		int rc = tls_cert_self_signed(dirname(db), &cert, &key, err,
					      sizeof(err));
		free(db);
		if (rc < 0)
			fatal("%s", err);
		if (rc > 0)
			log_info("tls self-signed certificate created path=%s "
				 "key=%s",
				 cert, key);
	}
	struct tls_config tc = {
	    .listen = (const char *const *)cfg->tls_listen,
	    .nlisten = cfg->ntls_listen,
	    .cert_file = cert ? cert : cfg->tls_cert,
	    .key_file = key ? key : cfg->tls_key,
	    .handshake_timeout_s = cfg->tls_handshake_timeout_s,
	    .max_handshakes = cfg->tls_max_handshakes,
	    .max_handshakes_addr = cfg->tls_max_handshakes_addr,
	    .metrics = &srv->metrics,
	    .loops = srv->loops,
	    .nloops = srv->nloops,
	};
	struct tls *tls = tls_new(&tc, err, sizeof(err));
	free(cert);
	free(key);
	if (!tls)
		fatal("%s", err);
	return tls;
}

int main(int argc, char **argv)
{
	struct config cfg;
	char err[512];
	int rc = config_load(&cfg, argc, argv, err, sizeof(err));
	if (rc != 0) {
		if (rc < 0)
			fprintf(stderr, "natterd: %s\n", err);
		config_fini(&cfg);
		return rc < 0 ? 1 : 0;
	}
	if (log_open(cfg.log_file, cfg.log_level) < 0) {
		fprintf(stderr, "natterd: log-file '%s': %s\n", cfg.log_file,
			strerror(errno));
		return 1;
	}
	unsigned fds = raise_fd_limit();
	if (cfg.max_connections == 0)
		cfg.max_connections = fds > 128 ? fds - 64 : fds / 2;

	/* Signals go to this thread only: block them before any thread starts.
	 */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct server srv = {.cfg = &cfg};
	metrics_init(&srv.metrics);

	/* the database as logged: a store URL may hold a password */
	const char *where = cfg.store_url ? "postgresql" : cfg.db_path;
	struct store_config sc = {
	    .path = cfg.store_url ? cfg.store_url : cfg.db_path,
	    .db_dir = cfg.db_dir,
	    .sync_full = cfg.db_sync_full,
	    .commit_interval_ms = cfg.commit_interval_ms,
	    .commit_batch_max = cfg.commit_batch_max,
	    .readers = cfg.http_threads + 2,
	    .session_cache_ms = cfg.session_cache_ms,
	};
	srv.store = store_open(&sc, err, sizeof(err));
	if (!srv.store)
		fatal("cannot open the database path=%s: %s", where, err);

	struct auth_config ac = {
	    .memory_kib = cfg.argon2_memory_kib,
	    .time_cost = cfg.argon2_time,
	    .parallelism = cfg.argon2_parallelism,
	    .fail_max = cfg.login_fail_max,
	    .fail_window_s = cfg.login_fail_window_s,
	    .hash_max = cfg.hash_max	       ? cfg.hash_max
			: cfg.http_threads > 1 ? cfg.http_threads - 1
					       : 1,
	    .register_burst = cfg.register_burst,
	    .register_interval_s = cfg.register_interval_s,
	};
	srv.auth = auth_new(&ac);
	if (!srv.auth)
		fatal("cannot seed the random number generator");

	struct limit_config lc = {
	    .rate = {cfg.rate_commands, cfg.rate_send, cfg.rate_typing},
	    .burst = {cfg.rate_commands_burst, cfg.rate_send_burst,
		      cfg.rate_typing_burst},
	    .users_max = cfg.rate_users_max,
	    .streams_per_user = cfg.streams_per_user,
	    .streams_per_addr = cfg.streams_per_address,
	    .streams_max = cfg.max_connections,
	};
	srv.limit = limit_new(&lc);

	srv.bus = bus_new(cfg.ring_size, cfg.replay_max,
			  store_last_event_id(srv.store), store_events_after,
			  srv.store);
	if (store_members_each(srv.store, load_member, srv.bus) < 0)
		fatal("cannot load room memberships from path=%s", where);
	srv.chat = chat_new(srv.store, srv.bus, &srv.metrics);
	if (!srv.chat)
		fatal("cannot load the rooms from path=%s", where);
	chat_set_rooms_per_day(srv.chat, cfg.rooms_per_day);
	srv.stats = stats_new(srv.store, &srv.metrics, srv.chat,
			      cfg.stats_retention_days);
	if (chat_presence_start(srv.chat, cfg.presence_grace_s * (int64_t)1000,
				cfg.presence_away_s * (int64_t)1000,
				cfg.presence_coalesce_ms) < 0)
		fatal("cannot start presence (path=%s)", where);
	if (chat_cluster_start(srv.chat, cfg.bus_url, srv.auth, srv.limit,
			       &srv.metrics, err, sizeof(err)) != 0)
		fatal("cannot start the bus: %s", err);

	/* Files: files-dir, else "files" beside the database. */
	char *files_dir = cfg.files_dir ? xstrdup(cfg.files_dir) : NULL;
	if (!files_dir) {
		const char *slash = strrchr(cfg.db_path, '/');
		size_t n = slash ? (size_t)(slash - cfg.db_path) : 0;
		files_dir = xmalloc(n + 8);
		snprintf(files_dir, n + 8, "%.*s%sfiles", (int)n, cfg.db_path,
			 slash ? "/" : "");
		if (slash && n == 0)
			snprintf(files_dir, 8, "/files");
	}
	struct filestore_config fc = {.dir = files_dir,
				      .max_size = cfg.file_max_size,
				      .quota = cfg.file_quota,
				      .avatar_max_size = cfg.avatar_max_size,
				      .expiry_s = cfg.upload_expiry_s};
	srv.files = filestore_new(srv.store, &fc, err, sizeof(err));
	if (!srv.files)
		fatal("cannot start file storage: %s", err);
	free(files_dir);
	chat_set_files(srv.chat, srv.files);

	srv.nloops = cfg.loops;
	srv.loops = xcalloc(srv.nloops, sizeof(*srv.loops));
	srv.shards = xcalloc(srv.nloops, sizeof(*srv.shards));
	struct wake *wakes = xcalloc(srv.nloops, sizeof(*wakes));
	for (unsigned i = 0; i < srv.nloops; i++) {
		char name[16];
		snprintf(name, sizeof(name), "loop%u", i);
		srv.loops[i] = loop_new(name);
		if (!srv.loops[i])
			fatal("cannot create event loop %u: %s", i,
			      strerror(errno));
		wakes[i].loop = srv.loops[i];
		srv.shards[i] = bus_shard_new(srv.bus, wake_shard, &wakes[i]);
		wakes[i].shard = srv.shards[i];
	}
	/* History reads for WebSocket cursors older than the ring: two
	 * workers, 64 waiting, 2 per user (core/replay.h says why). */
	struct replay *replay = replay_new(srv.bus, 2, 64, 2);
	if (!replay)
		fatal("cannot start the history threads");
	struct ws_config wc = {
	    .loops = srv.loops,
	    .shards = srv.shards,
	    .nloops = srv.nloops,
	    .bus = srv.bus,
	    .chat = srv.chat,
	    .replay = replay,
	    .metrics = &srv.metrics,
	    .send_queue_max = cfg.send_queue_max,
	    .ping_s = cfg.ws_ping_s,
	    .limit = srv.limit,
	    .flood_close = cfg.rate_flood_close,
	    .io_uring = !cfg.no_io_uring,
	};
	srv.ws = ws_server_new(&wc);
	for (unsigned i = 0; i < srv.nloops; i++)
		if (loop_start(srv.loops[i]) < 0)
			fatal("cannot start event loop %u", i);
	srv.sse = sse_new(srv.bus, &srv.metrics, cfg.sse_heartbeat_s,
			  cfg.send_queue_max, srv.loops, srv.nloops);
	srv.poll = longpoll_new(srv.bus, &srv.metrics, cfg.send_queue_max,
				srv.loops, srv.nloops);
	if (!srv.sse || !srv.poll)
		fatal("cannot set up the SSE and long-poll transports");
	sse_set_replay(srv.sse, replay);
	longpoll_set_replay(srv.poll, replay);

	struct tls *tls = tls_setup(&cfg, &srv);
	struct http *http = http_start(&srv, err, sizeof(err));
	if (!http)
		fatal("%s", err);
	if (tls) {
		http_set_https_port(http, tls_port(tls, 0));
		tls_start(tls, http_tls_add, http);
	}
	log_info("natterd started version=%s db=%s last_event_id=%lld",
		 PACKAGE_VERSION, where,
		 (long long)store_last_event_id(srv.store));

	uint64_t churn_trimmed = 0;
	for (;;) {
		const struct timespec second = {1, 0};
		int sig = sigtimedwait(&sigs, NULL, &second);
		if (sig < 0) {
			if (errno == EAGAIN)
				churn_trimmed =
				    trim_heap(&srv.metrics, churn_trimmed);
			continue;
		}
		if (sig == SIGHUP) {
			if (log_reopen() < 0)
				fprintf(stderr, "natterd: cannot reopen log\n");
			log_info("log reopened on SIGHUP");
			if (tls && tls_reload(tls, err, sizeof(err)) < 0)
				log_warn(
				    "tls certificate not reloaded, the old "
				    "one stays: %s",
				    err);
			continue;
		}
		log_info("shutting down signal=%s", strsignal(sig));
		break;
	}

	/* Orderly shutdown: stop accepting; end the streams; let requests
	 * waiting on a commit get their answers and stop HTTP; the writer
	 * commits what is queued (its hook still publishes to running loops)
	 * and the database closes; then the loops stop. */
	http_quiesce(http);
	tls_quiesce(tls);
	ws_server_free(srv.ws);
	longpoll_free(srv.poll);
	sse_free(srv.sse);
	http_stop(http);
	/* after every WebSocket and HTTP worker: none can ask it again */
	replay_free(replay);
	chat_cluster_stop(srv.chat);  /* its threads call presence and bus */
	chat_presence_stop(srv.chat); /* keeps last_seen: before the store */
	stats_free(srv.stats);	      /* writes the running minute's sample */
	filestore_free(srv.files);
	store_close(srv.store);
	for (unsigned i = 0; i < srv.nloops; i++)
		loop_stop(srv.loops[i]);
	tls_free(tls); /* its connections live on the loops */
	for (unsigned i = 0; i < srv.nloops; i++) {
		bus_shard_free(srv.shards[i]);
		loop_free(srv.loops[i]);
	}
	chat_free(srv.chat);
	limit_free(srv.limit);
	bus_free(srv.bus);
	auth_free(srv.auth);
	free(wakes);
	free(srv.shards);
	free(srv.loops);
	log_info("natterd stopped");
	log_close();
	config_fini(&cfg);
	return 0;
}
