/* Unit tests for config, through config.h only: defaults, the file, flags
 * overriding the file, list options, every validation error naming its key
 * (and file:line), --help/--version, and loading twice in one process.
 * Temporary files go under $NATTER_TEST_TMP (or /tmp). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autoconfig.h" /* PACKAGE_VERSION */
#include "testdir.h"
#include "util/config.h"

static char tmpdir[512];

/* --- helpers -------------------------------------------------------------- */

static int make_tmpdir(void **state)
{
	(void)state;
	return testdir_make(tmpdir, sizeof(tmpdir), "test_config");
}

static void remove_file(const char *name)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
}

static int remove_tmpdir(void **state)
{
	(void)state;
	remove_file("natter.conf");
	remove_file("stdout.txt");
	return rmdir(tmpdir);
}

/* Write tmpdir/natter.conf; returns its path (static buffer). */
static const char *write_conf(const char *text)
{
	static char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/natter.conf", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* argv is NULL-terminated and starts after "natterd". */
static int load(struct config *cfg, char *err, size_t errlen,
		const char *const *args)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = (char *)"natterd";
	while (*args) {
		assert_true(argc < 63);
		argv[argc++] = (char *)*args++;
	}
	argv[argc] = NULL;
	return config_load(cfg, argc, argv, err, errlen);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ARGS ((const char *const[]){NULL})

/* Expect failure with every substring present in the message. */
static void expect_error(const char *const *args, const char *sub1,
			 const char *sub2)
{
	struct config cfg;
	char err[512];

	memset(&cfg, 0x5a, sizeof(cfg)); /* config_load must not read it */
	assert_int_equal(load(&cfg, err, sizeof(err), args), -1);
	if (!strstr(err, sub1) || (sub2 && !strstr(err, sub2)))
		fail_msg("error '%s' lacks '%s' / '%s'", err, sub1,
			 sub2 ? sub2 : "");
	config_fini(&cfg); /* safe after an error */
}

/* Run with stdout captured into tmpdir/stdout.txt; returns the text. */
static char *capture(const char *const *args, int *rc)
{
	static char out[16384];
	char path[600], err[256];
	struct config cfg;
	int saved, fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stdout.txt", tmpdir);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	*rc = load(&cfg, err, sizeof(err), args);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	config_fini(&cfg);

	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, out, sizeof(out) - 1);
	close(fd);
	assert_true(n >= 0);
	out[n] = '\0';
	return out;
}

/* --- defaults, file, flags ------------------------------------------------ */

static void test_defaults(void **state)
{
	struct config cfg;
	char err[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err), NO_ARGS), 0);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0], "127.0.0.1:8080");
	assert_string_equal(cfg.db_path, "natter.db");
	assert_true(strlen(cfg.db_dir) > 3 &&
		    strcmp(cfg.db_dir + strlen(cfg.db_dir) - 3, "/db") == 0);
	assert_true(strlen(cfg.web_root) > 4 &&
		    strcmp(cfg.web_root + strlen(cfg.web_root) - 4, "/web") ==
			0);
	assert_null(cfg.log_file);
	assert_int_equal(cfg.log_level, LOG_INFO);
	assert_int_equal(cfg.http_threads, 4);
	assert_int_equal(cfg.loops, ncpu < 1 ? 1 : ncpu > 64 ? 64 : ncpu);
	assert_int_equal(cfg.max_connections, 0);
	assert_int_equal(cfg.max_body, 1024 * 1024);
	assert_int_equal(cfg.argon2_memory_kib, 19456);
	assert_int_equal(cfg.argon2_time, 2);
	assert_int_equal(cfg.argon2_parallelism, 1);
	assert_int_equal(cfg.session_ttl_s, 30 * 86400);
	assert_int_equal(cfg.session_cache_ms, 5000);
	assert_int_equal(cfg.login_fail_max, 5);
	assert_int_equal(cfg.login_fail_window_s, 300);
	assert_int_equal(cfg.db_sync_full, 1);
	assert_int_equal(cfg.commit_interval_ms, 0);
	assert_int_equal(cfg.commit_batch_max, 256);
	assert_int_equal(cfg.ring_size, 4096);
	assert_int_equal(cfg.replay_max, 10000);
	assert_int_equal(cfg.send_queue_max, 1024 * 1024);
	assert_int_equal(cfg.sse_heartbeat_s, 15);
	assert_int_equal(cfg.ws_ping_s, 30);
	assert_int_equal(cfg.poll_timeout_default_s, 25);
	assert_int_equal(cfg.poll_timeout_max_s, 55);
	assert_int_equal(cfg.norigins, 0);
	config_fini(&cfg);
	config_fini(&cfg); /* twice is harmless */
}

static void test_file(void **state)
{
	struct config cfg;
	char err[256];
	const char *path =
	    write_conf("# natter test config\n"
		       "\n"
		       "listen = 0.0.0.0:80\n"
		       "  listen=[::]:80   # and IPv6\n"
		       "db = /var/lib/natter/natter.db\n"
		       "db-dir = /opt/natter/db\n"
		       "web-root = /opt/natter/web\n"
		       "log-file = /var/log/natter.log\n"
		       "\tlog-level\t=\tdebug\r\n"
		       "http-threads = 8\n"
		       "loops = 2\n"
		       "max-connections = 5000\n"
		       "max-body = 64k\n"
		       "argon2-memory-kib = 65536\n"
		       "argon2-time = 3\n"
		       "argon2-parallelism = 2\n"
		       "session-ttl = 3600\n"
		       "login-fail-max = 10\n"
		       "login-fail-window = 600\n"
		       "db-sync = normal\n"
		       "commit-interval-ms = 3\n"
		       "commit-batch-max = 1000\n"
		       "ring-size = 16\n"
		       "replay-max = 0\n"
		       "send-queue-max = 4M\n"
		       "sse-heartbeat = 10\n"
		       "ws-ping = 20\n"
		       "poll-timeout = 20\n"
		       "poll-timeout-max = 120\n"
		       "allowed-origin = https://chat.example.org\n"
		       "allowed-origin = http://localhost:3000\n"
		       "http-threads = 9\n"); /* later lines win */

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err), ARGS("--config", path)),
			 0);
	assert_int_equal(cfg.nlisten, 2);
	assert_string_equal(cfg.listen[0], "0.0.0.0:80");
	assert_string_equal(cfg.listen[1], "[::]:80");
	assert_string_equal(cfg.db_path, "/var/lib/natter/natter.db");
	assert_string_equal(cfg.db_dir, "/opt/natter/db");
	assert_string_equal(cfg.web_root, "/opt/natter/web");
	assert_string_equal(cfg.log_file, "/var/log/natter.log");
	assert_int_equal(cfg.log_level, LOG_DEBUG);
	assert_int_equal(cfg.http_threads, 9);
	assert_int_equal(cfg.loops, 2);
	assert_int_equal(cfg.max_connections, 5000);
	assert_int_equal(cfg.max_body, 64 * 1024);
	assert_int_equal(cfg.argon2_memory_kib, 65536);
	assert_int_equal(cfg.argon2_time, 3);
	assert_int_equal(cfg.argon2_parallelism, 2);
	assert_int_equal(cfg.session_ttl_s, 3600);
	assert_int_equal(cfg.login_fail_max, 10);
	assert_int_equal(cfg.login_fail_window_s, 600);
	assert_int_equal(cfg.db_sync_full, 0);
	assert_int_equal(cfg.commit_interval_ms, 3);
	assert_int_equal(cfg.commit_batch_max, 1000);
	assert_int_equal(cfg.ring_size, 16);
	assert_int_equal(cfg.replay_max, 0);
	assert_int_equal(cfg.send_queue_max, 4 * 1024 * 1024);
	assert_int_equal(cfg.sse_heartbeat_s, 10);
	assert_int_equal(cfg.ws_ping_s, 20);
	assert_int_equal(cfg.poll_timeout_default_s, 20);
	assert_int_equal(cfg.poll_timeout_max_s, 120);
	assert_int_equal(cfg.norigins, 2);
	assert_string_equal(cfg.allowed_origins[0], "https://chat.example.org");
	assert_string_equal(cfg.allowed_origins[1], "http://localhost:3000");
	config_fini(&cfg);
}

static void test_flags_override_file(void **state)
{
	struct config cfg;
	char err[256];
	const char *path = write_conf("listen = 10.0.0.1:80\n"
				      "listen = 10.0.0.2:80\n"
				      "db = file.db\n"
				      "http-threads = 8\n"
				      "log-level = debug\n");

	(void)state;
	/* --config after the flags it is overridden by: order of --config
	 * does not matter, the file always comes first. */
	assert_int_equal(load(&cfg, err, sizeof(err),
			      ARGS("--db", "flag.db", "--listen=[::1]:9000",
				   "--config", path, "--log-level=warn")),
			 0);
	assert_string_equal(cfg.db_path, "flag.db");
	assert_int_equal(cfg.http_threads, 8); /* from the file */
	assert_int_equal(cfg.log_level, LOG_WARN);
	assert_int_equal(cfg.nlisten, 1); /* flags replace the file's list */
	assert_string_equal(cfg.listen[0], "[::1]:9000");
	config_fini(&cfg);
}

static void test_file_listen_replaces_default(void **state)
{
	struct config cfg;
	char err[256];
	const char *path = write_conf("listen = 192.0.2.1:8443\n");

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err), ARGS("--config", path)),
			 0);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0], "192.0.2.1:8443");
	config_fini(&cfg);
}

static void test_repeated_listen(void **state)
{
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err),
			      ARGS("--listen", "127.0.0.1:1", "--listen",
				   "[::1]:65535", "--listen=[fe80::1]:8080",
				   "--allowed-origin", "https://a.example",
				   "--allowed-origin=https://b.example:8443")),
			 0);
	assert_int_equal(cfg.nlisten, 3);
	assert_string_equal(cfg.listen[0], "127.0.0.1:1");
	assert_string_equal(cfg.listen[1], "[::1]:65535");
	assert_string_equal(cfg.listen[2], "[fe80::1]:8080");
	assert_int_equal(cfg.norigins, 2);
	assert_string_equal(cfg.allowed_origins[1], "https://b.example:8443");
	config_fini(&cfg);
}

static void test_later_flag_wins(void **state)
{
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err),
			      ARGS("--db", "a.db", "--db=b.db", "--log-file",
				   "/tmp/x.log", "--log-file", "-")),
			 0);
	assert_string_equal(cfg.db_path, "b.db");
	assert_null(cfg.log_file); /* "-" is stderr */
	config_fini(&cfg);
}

static void test_max_body_suffixes(void **state)
{
	static const struct {
		const char *v;
		size_t want;
	} cases[] = {
	    {"2M", 2u << 20},	{"2m", 2u << 20}, {"64k", 64u << 10},
	    {"64K", 64u << 10}, {"100", 100},	  {"1024M", 1u << 30},
	};
	struct config cfg;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load(&cfg, err, sizeof(err),
				      ARGS("--max-body", cases[i].v)),
				 0);
		assert_int_equal(cfg.max_body, cases[i].want);
		config_fini(&cfg);
	}
}

static void test_load_twice(void **state)
{
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err),
			      ARGS("--listen", "10.1.1.1:1", "--listen",
				   "10.1.1.2:2", "--http-threads", "7")),
			 0);
	assert_int_equal(cfg.nlisten, 2);
	config_fini(&cfg);

	/* A failed load in between changes nothing for the next one. */
	assert_int_equal(load(&cfg, err, sizeof(err), ARGS("--bogus")), -1);
	config_fini(&cfg);

	assert_int_equal(load(&cfg, err, sizeof(err), ARGS("--listen=[::1]:3")),
			 0);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0], "[::1]:3");
	assert_int_equal(cfg.http_threads, 4);
	config_fini(&cfg);
}

/* --- errors -----------------------------------------------------------------
 */

/* TLS keys: defaults, the plain listener dropped, tls-self-signed's
 * default address, flags as booleans, and the cross-key errors. */
static void test_tls(void **state)
{
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, err, sizeof(err), NO_ARGS), 0);
	assert_int_equal(cfg.ntls_listen, 0);
	assert_null(cfg.tls_cert);
	assert_int_equal(cfg.tls_self_signed, 0);
	assert_int_equal(cfg.tls_handshake_timeout_s, 10);
	assert_int_equal(cfg.tls_max_handshakes, 1024);
	assert_int_equal(cfg.hsts_max_age_s, 31536000);
	assert_int_equal(cfg.http_redirect, 0);
	config_fini(&cfg);

	/* tls-listen alone: TLS only, no default plain listener. */
	assert_int_equal(load(&cfg, err, sizeof(err),
			      ARGS("--tls-listen", "0.0.0.0:443", "--tls-cert",
				   "c.pem", "--tls-key", "k.pem")),
			 0);
	assert_int_equal(cfg.nlisten, 0);
	assert_int_equal(cfg.ntls_listen, 1);
	assert_string_equal(cfg.tls_listen[0], "0.0.0.0:443");
	assert_string_equal(cfg.tls_cert, "c.pem");
	config_fini(&cfg);

	/* ... an explicit listen stays; flags and file entries as booleans. */
	const char *path = write_conf("tls-self-signed = yes\n"
				      "http-redirect = true\n"
				      "hsts = 0\n");
	assert_int_equal(
	    load(&cfg, err, sizeof(err),
		 ARGS("--config", path, "--listen", "127.0.0.1:8080")),
	    0);
	assert_int_equal(cfg.tls_self_signed, 1);
	assert_int_equal(cfg.http_redirect, 1);
	assert_int_equal(cfg.hsts_max_age_s, 0);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.tls_listen[0], "127.0.0.1:8443");
	config_fini(&cfg);
	assert_int_equal(load(&cfg, err, sizeof(err),
			      ARGS("--config", path, "--tls-self-signed=no",
				   "--http-redirect=no")),
			 0);
	assert_int_equal(cfg.tls_self_signed, 0);
	assert_int_equal(cfg.ntls_listen, 0);
	assert_int_equal(cfg.nlisten, 1);
	config_fini(&cfg);

	expect_error(ARGS("--tls-listen", "127.0.0.1:443"), "tls-listen needs",
		     "tls-cert");
	expect_error(ARGS("--tls-listen", "127.0.0.1:443", "--tls-cert", "c"),
		     "go together", NULL);
	expect_error(ARGS("--tls-cert", "c", "--tls-key", "k"),
		     "need tls-listen", NULL);
	expect_error(
	    ARGS("--tls-self-signed", "--tls-cert", "c", "--tls-key", "k"),
	    "not both", NULL);
	expect_error(ARGS("--http-redirect"), "http-redirect needs", NULL);
	expect_error(ARGS("--tls-listen", "localhost:443"),
		     "--tls-listen:", "IPv4");
	expect_error(ARGS("--tls-self-signed=maybe"),
		     "--tls-self-signed:", "yes or no");
	expect_error(ARGS("--tls-handshake-timeout", "0"),
		     "--tls-handshake-timeout:", "out of range");
	expect_error(ARGS("--hsts", "-1"), "--hsts:", "out of range");
}

static void test_invalid_flags(void **state)
{
	(void)state;
	expect_error(ARGS("--listen", "1.2.3.4"),
		     "--listen: '1.2.3.4' is not ADDR:PORT", NULL);
	expect_error(ARGS("--listen", "1.2.3.4:-1"), "--listen:", "port");
	expect_error(ARGS("--listen", "1.2.3.4:65536"), "--listen:", "port");
	expect_error(ARGS("--listen", "1.2.3.4:80x"), "--listen:", "port");
	expect_error(ARGS("--listen", "1.2.3.4:"), "--listen:", "ADDR:PORT");
	expect_error(ARGS("--listen", ":80"), "--listen:", "ADDR:PORT");
	expect_error(ARGS("--listen", "localhost:80"), "--listen:", "IPv4");
	/* names are never resolved; the error says what to write instead */
	expect_error(ARGS("--listen", "localhost:80"),
		     "--listen:", "127.0.0.1 or [::1]");
	expect_error(ARGS("--tls-listen", "localhost:443", "--tls-self-signed"),
		     "--tls-listen:", "127.0.0.1 or [::1]");
	expect_error(ARGS("--listen", "1.2.3.256:80"), "--listen:", "IPv4");
	expect_error(ARGS("--listen", "::1:80"), "--listen:", "[ADDR]:PORT");
	expect_error(ARGS("--listen", "[::1]80"), "--listen:", "ADDR:PORT");
	expect_error(ARGS("--listen", "[::1]"), "--listen:", "ADDR:PORT");
	expect_error(ARGS("--listen", "[1.2.3.4]:80"), "--listen:", "IPv6");
	expect_error(ARGS("--listen", "1.1.1.1:1", "--listen", "1.1.1.1:1"),
		     "--listen:", "twice");
	expect_error(ARGS("--listen=1.1.1.1:1", "--listen=1.1.1.1:2",
			  "--listen=1.1.1.1:3", "--listen=1.1.1.1:4",
			  "--listen=1.1.1.1:5", "--listen=1.1.1.1:6",
			  "--listen=1.1.1.1:7", "--listen=1.1.1.1:8",
			  "--listen=1.1.1.1:9"),
		     "--listen:", "more than 8");
	expect_error(ARGS("--log-level", "loud"),
		     "--log-level: 'loud' is not one of error, warn, info, "
		     "debug",
		     NULL);
	expect_error(ARGS("--http-threads", "0"),
		     "--http-threads:", "out of range");
	expect_error(ARGS("--http-threads", "257"),
		     "--http-threads:", "out of range");
	expect_error(ARGS("--http-threads", "four"),
		     "--http-threads:", "not a number");
	expect_error(ARGS("--http-threads", "4k"),
		     "--http-threads:", "not a number");
	expect_error(ARGS("--http-threads", "-1"),
		     "--http-threads:", "out of range");
	expect_error(ARGS("--loops", "65"), "--loops:", "out of range");
	expect_error(ARGS("--max-connections", "x"),
		     "--max-connections:", NULL);
	expect_error(ARGS("--max-body", "2G"), "--max-body:", "not a size");
	expect_error(ARGS("--max-body", "0"), "--max-body:", "out of range");
	expect_error(ARGS("--max-body", "1025M"),
		     "--max-body:", "out of range");
	expect_error(ARGS("--max-body", "99999999999999999M"),
		     "--max-body:", "out of range");
	expect_error(ARGS("--max-body", "k"), "--max-body:", "not a size");
	expect_error(ARGS("--argon2-memory-kib", "7"),
		     "--argon2-memory-kib:", "out of range");
	expect_error(
	    ARGS("--argon2-memory-kib", "16", "--argon2-parallelism", "4"),
	    "argon2-memory-kib", "argon2-parallelism");
	expect_error(ARGS("--argon2-time", "0"), "--argon2-time:", NULL);
	expect_error(ARGS("--argon2-parallelism", "0"),
		     "--argon2-parallelism:", NULL);
	expect_error(ARGS("--session-ttl", "1"),
		     "--session-ttl:", "out of range");
	expect_error(ARGS("--login-fail-max", "0"), "--login-fail-max:", NULL);
	expect_error(ARGS("--login-fail-window", "0"),
		     "--login-fail-window:", NULL);
	expect_error(ARGS("--db-sync", "sometimes"),
		     "--db-sync: 'sometimes' is not one of full, normal", NULL);
	expect_error(ARGS("--commit-interval-ms", "1001"),
		     "--commit-interval-ms:", NULL);
	expect_error(ARGS("--commit-batch-max", "0"),
		     "--commit-batch-max:", NULL);
	expect_error(ARGS("--ring-size", "15"), "--ring-size:", "out of range");
	expect_error(ARGS("--ring-size", "1048577"),
		     "--ring-size:", "out of range");
	expect_error(ARGS("--replay-max", "-1"), "--replay-max:", NULL);
	expect_error(ARGS("--send-queue-max", "1k"),
		     "--send-queue-max:", "out of range");
	expect_error(ARGS("--sse-heartbeat", "0"), "--sse-heartbeat:", NULL);
	expect_error(ARGS("--ws-ping", "3601"), "--ws-ping:", NULL);
	expect_error(ARGS("--poll-timeout-max", "121"),
		     "--poll-timeout-max:", "out of range");
	expect_error(ARGS("--poll-timeout", "60", "--poll-timeout-max", "30"),
		     "poll-timeout must not exceed poll-timeout-max", NULL);
	/* Default poll-timeout-max is 55. */
	expect_error(ARGS("--poll-timeout", "56"),
		     "poll-timeout must not exceed poll-timeout-max", NULL);
	expect_error(ARGS("--allowed-origin", "chat.example.org"),
		     "--allowed-origin:", "origin");
	expect_error(ARGS("--allowed-origin", "https://x.example/path"),
		     "--allowed-origin:", NULL);
	expect_error(ARGS("--allowed-origin", "https://"),
		     "--allowed-origin:", NULL);
	expect_error(ARGS("--db="), "--db: missing value", NULL);
	expect_error(ARGS("--db"), "--db: missing value", NULL);
	expect_error(ARGS("--db", "--listen", "1.1.1.1:1"),
		     "--db: missing value", NULL);
	expect_error(ARGS("--web-root", ""), "--web-root: missing value", NULL);
	expect_error(ARGS("--bogus"), "unknown option '--bogus'", NULL);
	expect_error(ARGS("--bogus=1"), "unknown option '--bogus'", NULL);
	expect_error(ARGS("-h"), "unexpected argument '-h'", NULL);
	expect_error(ARGS("serve"), "unexpected argument 'serve'", NULL);
	expect_error(ARGS("--"), "unexpected argument '--'", NULL);
	expect_error(ARGS("--help=yes"), "--help: takes no value", NULL);
	expect_error(ARGS("--config", "/nonexistent/natter.conf"),
		     "--config: cannot open '/nonexistent/natter.conf'", NULL);
	expect_error(ARGS("--config", tmpdir), "--config:", tmpdir);
}

static void expect_file_error(const char *text, const char *sub1,
			      const char *sub2)
{
	const char *path = write_conf(text);

	expect_error(ARGS("--config", path), sub1, sub2);
}

static void test_invalid_file(void **state)
{
	(void)state;
	expect_file_error("# ok\n\ncolour = blue\n",
			  "natter.conf:3:", "unknown key 'colour'");
	expect_file_error("db = x.db\njust some words\n",
			  "natter.conf:2:", "key = value");
	expect_file_error("= value\n", "natter.conf:1:", "missing key");
	expect_file_error("db =\n", "natter.conf:1: db: missing value", NULL);
	expect_file_error("a=1\n#\n#\n#\n#\n#\nlog-level = loud\n",
			  "natter.conf:1:", "unknown key 'a'");
	expect_file_error("\n\n\n\n\n\nlog-level = loud # no\n",
			  "natter.conf:7: log-level: 'loud' is not one of "
			  "error, warn, info, debug",
			  NULL);
	expect_file_error("listen = 1.2.3.4\n",
			  "natter.conf:1: listen: '1.2.3.4' is not ADDR:PORT",
			  NULL);
	expect_file_error("config = other.conf\n",
			  "natter.conf:1: config:", "not allowed");
	expect_file_error("help = 1\n", "natter.conf:1: help:", "not allowed");
	expect_file_error("--db = x\n", "natter.conf:1:", "unknown key '--db'");
	expect_file_error("http-threads = 300\n",
			  "natter.conf:1: http-threads:", "out of range");
	/* Cross-setting checks also cover values from the file. */
	expect_file_error("poll-timeout-max = 10\n",
			  "poll-timeout must not exceed poll-timeout-max",
			  NULL);
}

/* A bad value in the file is reported even if a flag would override it:
 * the file must be valid on its own. */
static void test_file_error_not_masked(void **state)
{
	const char *path = write_conf("http-threads = 0\n");

	(void)state;
	expect_error(ARGS("--config", path, "--http-threads", "2"),
		     "natter.conf:1: http-threads:", NULL);
}

/* --- help and version ------------------------------------------------------
 */

static void test_help(void **state)
{
	static const char *const flags[] = {
	    "--config",
	    "--listen",
	    "--db ",
	    "--db-dir",
	    "--web-root",
	    "--log-file",
	    "--log-level",
	    "--http-threads",
	    "--loops",
	    "--max-connections",
	    "--max-body",
	    "--argon2-memory-kib",
	    "--argon2-time",
	    "--argon2-parallelism",
	    "--session-ttl",
	    "--session-cache-ms",
	    "--login-fail-max",
	    "--login-fail-window",
	    "--db-sync",
	    "--commit-interval-ms",
	    "--commit-batch-max",
	    "--ring-size",
	    "--replay-max",
	    "--send-queue-max",
	    "--sse-heartbeat",
	    "--ws-ping",
	    "--poll-timeout ",
	    "--poll-timeout-max",
	    "--allowed-origin",
	    "--help",
	    "--version",
	    /* some defaults */
	    "(default: 127.0.0.1:8080)",
	    "(default: natter.db)",
	    "(default: info)",
	    "(default: 1M)",
	    "(default: 19456)",
	    "(default: 2592000)",
	    "(default: full)",
	    "(default: 4096)",
	    "(default: 55)",
	};
	int rc;
	char *out = capture(ARGS("--help"), &rc);

	(void)state;
	assert_int_equal(rc, 1);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (!strstr(out, flags[i]))
			fail_msg("--help output lacks '%s'", flags[i]);

	/* --help wins even after other flags. */
	out = capture(ARGS("--db", "x.db", "--help", "--listen", "bad"), &rc);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "Usage:"));
}

static void test_version(void **state)
{
	int rc;
	char *out = capture(ARGS("--version"), &rc);

	(void)state;
	assert_int_equal(rc, 1);
	assert_string_equal(out, "natterd " PACKAGE_VERSION "\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_file),
	    cmocka_unit_test(test_flags_override_file),
	    cmocka_unit_test(test_file_listen_replaces_default),
	    cmocka_unit_test(test_repeated_listen),
	    cmocka_unit_test(test_later_flag_wins),
	    cmocka_unit_test(test_max_body_suffixes),
	    cmocka_unit_test(test_load_twice),
	    cmocka_unit_test(test_tls),
	    cmocka_unit_test(test_invalid_flags),
	    cmocka_unit_test(test_invalid_file),
	    cmocka_unit_test(test_file_error_not_masked),
	    cmocka_unit_test(test_help),
	    cmocka_unit_test(test_version),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
