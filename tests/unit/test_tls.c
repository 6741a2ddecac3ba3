/* test_tls: the TLS terminator through its public header. A self-signed
 * pair made by tls_cert_self_signed(), one real loop, a listener on 127.0.0.1:0
 * and an mbedTLS client in this thread: bytes go both ways between the
 * client and the socketpair end the terminator hands over (with the
 * client's address), an HTTP-side close reaches the client as close_notify,
 * a silent client is cut at the handshake timeout, the handshake cap
 * refuses the extra client, tls_reload swaps a good pair and keeps the old
 * one on a bad pair, tls_new names bad files and addresses, and after
 * tls_quiesce nothing is accepted. Files go under $NATTER_TEST_TMP. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "testdir.h"
#include "util/log.h"
#include "net/loop.h"
#include "net/tls.h"
#include "net/tls_cert.h"

static char tmpdir[512], dir2[600];
static char *cert, *key, *cert2, *key2;

/* --- handoff: what the terminator gives HTTP --------------------------- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int fd;
	char addr[64];
	int n;
	struct tls_rx *rx; /* the last connection's byte count (a reference) */
} ho = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, -1, "", 0, NULL};

static int handoff(void *arg, int fd, const struct sockaddr *sa, socklen_t len,
		   struct tls_rx *rx)
{
	(void)arg;
	(void)len;
	pthread_mutex_lock(&ho.mu);
	tls_rx_unref(ho.rx);
	ho.rx = rx;
	ho.fd = fd;
	inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ho.addr,
		  sizeof(ho.addr));
	ho.n++;
	pthread_cond_signal(&ho.cond);
	pthread_mutex_unlock(&ho.mu);
	return 0;
}

/* The next handed-over fd, waiting up to 5 s; -1 if none came. */
static int next_handoff(int seen)
{
	struct timespec until;
	int fd = -1;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&ho.mu);
	while (ho.n == seen &&
	       pthread_cond_timedwait(&ho.cond, &ho.mu, &until) == 0)
		;
	if (ho.n > seen)
		fd = ho.fd;
	pthread_mutex_unlock(&ho.mu);
	return fd;
}

/* Read exactly n bytes from a non-blocking fd within 5 s. */
static int read_fd(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 5000) != 1)
			return -1;
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* --- an mbedTLS client ------------------------------------------------- */

struct client {
	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

/* Connect and handshake, trusting cafile: the handshake's result. */
static int client_open(struct client *c, unsigned port, const char *cafile)
{
	char p[16];
	int rc;

	snprintf(p, sizeof(p), "%u", port);
	mbedtls_net_init(&c->net);
	mbedtls_ssl_init(&c->ssl);
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	assert_int_equal(mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func,
					       &c->entropy, NULL, 0),
			 0);
	assert_int_equal(mbedtls_x509_crt_parse_file(&c->ca, cafile), 0);
	assert_int_equal(
	    mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
					MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT),
	    0);
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_read_timeout(&c->conf, 5000);
	assert_int_equal(mbedtls_ssl_setup(&c->ssl, &c->conf), 0);
	assert_int_equal(mbedtls_ssl_set_hostname(&c->ssl, "localhost"), 0);
	assert_int_equal(
	    mbedtls_net_connect(&c->net, "127.0.0.1", p, MBEDTLS_NET_PROTO_TCP),
	    0);
	mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send, NULL,
			    mbedtls_net_recv_timeout);
	while ((rc = mbedtls_ssl_handshake(&c->ssl)) ==
		   MBEDTLS_ERR_SSL_WANT_READ ||
	       rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		;
	return rc;
}

static void client_close(struct client *c)
{
	mbedtls_ssl_free(&c->ssl);
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->entropy);
	mbedtls_net_free(&c->net);
}

/* A plain TCP connection to the port. */
static int raw_connect(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Milliseconds until the server closes fd (reading discards), or -1. */
static long ms_until_closed(int fd, int limit_ms)
{
	struct timespec t0, t1;
	char buf[256];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, limit_ms) != 1)
			return -1;
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0.tv_sec) * 1000 +
	       (t1.tv_nsec - t0.tv_nsec) / 1000000;
}

/* --- fixtures ---------------------------------------------------------- */

static struct loop *lp;

static struct tls *server(unsigned timeout_s, unsigned max_handshakes)
{
	static const char *const listen[] = {"127.0.0.1:0"};
	char err[256];
	struct tls_config tc = {
	    .listen = listen,
	    .nlisten = 1,
	    .cert_file = cert,
	    .key_file = key,
	    .handshake_timeout_s = timeout_s,
	    .max_handshakes = max_handshakes,
	    .loops = &lp,
	    .nloops = 1,
	};
	struct tls *t = tls_new(&tc, err, sizeof(err));
	if (!t)
		fail_msg("tls_new: %s", err);
	tls_start(t, handoff, NULL);
	return t;
}

static void server_stop(struct tls *t)
{
	tls_quiesce(t);
	loop_stop(lp);
	tls_free(t);
	loop_free(lp);
	lp = loop_new("test");
	assert_int_equal(loop_start(lp), 0);
}

static int setup(void **state)
{
	char err[256];

	(void)state;
	if (testdir_make(tmpdir, sizeof(tmpdir), "test_tls") < 0)
		return -1;
	snprintf(dir2, sizeof(dir2), "%s/second", tmpdir);
	if (mkdir(dir2, 0700) != 0)
		return -1;
	log_open("-", LOG_WARN);
	if (tls_cert_self_signed(tmpdir, &cert, &key, err, sizeof(err)) != 1 ||
	    tls_cert_self_signed(dir2, &cert2, &key2, err, sizeof(err)) != 1) {
		fprintf(stderr, "tls_cert_self_signed: %s\n", err);
		return -1;
	}
	lp = loop_new("test");
	return lp && loop_start(lp) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[700];

	(void)state;
	loop_stop(lp);
	tls_rx_unref(ho.rx);
	ho.rx = NULL;
	loop_free(lp);
	free(cert);
	free(key);
	free(cert2);
	free(key2);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* --- tests ------------------------------------------------------------- */

static void test_self_signed(void **state)
{
	char err[256], *c = NULL, *k = NULL;
	struct stat st;
	mbedtls_x509_crt crt;
	bool dns = false;

	(void)state;
	/* Made in setup(); a second call keeps the pair. */
	assert_int_equal(tls_cert_self_signed(tmpdir, &c, &k, err, sizeof(err)),
			 0);
	assert_string_equal(c, cert);
	assert_int_equal(stat(k, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	mbedtls_x509_crt_init(&crt);
	assert_int_equal(mbedtls_x509_crt_parse_file(&crt, c), 0);
	assert_true(mbedtls_pk_can_do(&crt.pk, MBEDTLS_PK_ECDSA));
	for (const mbedtls_x509_sequence *s = &crt.subject_alt_names; s;
	     s = s->next)
		if (s->buf.len == 9 && !memcmp(s->buf.p, "localhost", 9))
			dns = true;
	assert_true(dns);
	assert_false(mbedtls_x509_time_is_past(&crt.valid_to));
	mbedtls_x509_crt_free(&crt);
	free(c);
	free(k);

	/* A missing key makes a new pair. */
	assert_int_equal(unlink(key2), 0);
	assert_int_equal(tls_cert_self_signed(dir2, &c, &k, err, sizeof(err)),
			 1);
	free(c);
	free(k);
	assert_int_equal(
	    tls_cert_self_signed("/nonexistent/dir", &c, &k, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "/nonexistent/dir"));
}

static void test_new_errors(void **state)
{
	static const char *const good[] = {"127.0.0.1:0"};
	static const char *const bad[] = {"localhost:80"};
	char err[256];
	struct tls_config tc = {
	    .listen = good,
	    .nlisten = 1,
	    .cert_file = "/nonexistent.pem",
	    .key_file = key,
	    .handshake_timeout_s = 1,
	    .max_handshakes = 8,
	    .loops = &lp,
	    .nloops = 1,
	};

	(void)state;
	assert_null(tls_new(&tc, err, sizeof(err)));
	assert_non_null(strstr(err, "tls-cert '/nonexistent.pem'"));
	tc.cert_file = cert;
	tc.key_file = key2; /* another pair's key */
	assert_null(tls_new(&tc, err, sizeof(err)));
	assert_non_null(strstr(err, "does not belong"));
	tc.key_file = key;
	tc.listen = bad;
	assert_null(tls_new(&tc, err, sizeof(err)));
	assert_non_null(strstr(err, "tls-listen 'localhost:80'"));
}

static void test_pump(void **state)
{
	struct tls *t = server(5, 8);
	struct client c;
	char buf[64];
	int seen = ho.n;

	(void)state;
	assert_int_equal(client_open(&c, tls_port(t, 0), cert), 0);
	assert_string_equal(mbedtls_ssl_get_version(&c.ssl), "TLSv1.2");
	int fd = next_handoff(seen);
	assert_true(fd >= 0);
	assert_string_equal(ho.addr, "127.0.0.1");

	/* Client to HTTP, HTTP to client. */
	assert_int_equal(
	    mbedtls_ssl_write(&c.ssl, (const unsigned char *)"ping", 4), 4);
	assert_int_equal(read_fd(fd, buf, 4), 0);
	assert_memory_equal(buf, "ping", 4);
	/* counted for the header deadline (a socketpair has no TCP_INFO);
	 * the pump counts just after its send, so allow it a moment */
	pthread_mutex_lock(&ho.mu);
	struct tls_rx *rx = ho.rx;
	pthread_mutex_unlock(&ho.mu);
	assert_non_null(rx);
	for (int i = 0; i < 100 && atomic_load(&rx->bytes) < 4; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&rx->bytes), 4);
	assert_int_equal(write(fd, "pong", 4), 4);
	assert_int_equal(
	    mbedtls_ssl_read(&c.ssl, (unsigned char *)buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);

	/* 200 KiB from HTTP arrive whole, in records. */
	static char big[200 * 1024], got[sizeof(big)];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	size_t sent = 0, recvd = 0;
	while (recvd < sizeof(big)) {
		if (sent < sizeof(big)) {
			ssize_t w = write(fd, big + sent, sizeof(big) - sent);
			if (w > 0)
				sent += (size_t)w;
		}
		int r = mbedtls_ssl_read(&c.ssl, (unsigned char *)got + recvd,
					 sizeof(got) - recvd);
		assert_true(r > 0);
		recvd += (size_t)r;
	}
	assert_memory_equal(big, got, sizeof(big));

	/* The HTTP side closes: the client gets close_notify. */
	close(fd);
	assert_int_equal(
	    mbedtls_ssl_read(&c.ssl, (unsigned char *)buf, sizeof(buf)),
	    MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
	client_close(&c);

	/* The client closes: the HTTP side reads EOF. */
	seen = ho.n;
	assert_int_equal(client_open(&c, tls_port(t, 0), cert), 0);
	fd = next_handoff(seen);
	assert_true(fd >= 0);
	mbedtls_ssl_close_notify(&c.ssl);
	client_close(&c);
	assert_true(ms_until_closed(fd, 5000) >= 0);
	close(fd);
	server_stop(t);
}

static void test_handshake_timeout_and_cap(void **state)
{
	struct tls *t = server(1, 1);
	unsigned port = tls_port(t, 0);

	(void)state;
	int silent = raw_connect(port);
	assert_true(silent >= 0);
	usleep(200 * 1000);
	/* One handshake at a time: the second client is closed at once. */
	int extra = raw_connect(port);
	assert_true(extra >= 0);
	long ms = ms_until_closed(extra, 3000);
	assert_true(ms >= 0 && ms < 500);
	close(extra);
	/* The silent one goes at the 1 s timeout. */
	ms = ms_until_closed(silent, 5000);
	assert_true(ms >= 500 && ms < 2500);
	close(silent);
	/* Then a handshake is welcome again. */
	struct client c;
	int seen = ho.n;
	assert_int_equal(client_open(&c, port, cert), 0);
	int fd = next_handoff(seen);
	assert_true(fd >= 0);
	close(fd);
	client_close(&c);
	server_stop(t);
}

static void test_reload(void **state)
{
	char err[256], fp0[96], fp1[96], path[700];
	struct tls *t = server(5, 8);
	FILE *f;

	(void)state;
	tls_fingerprint(t, fp0);
	assert_int_equal(strlen(fp0), 95);

	/* A key that does not belong: refused, the old pair stays. */
	snprintf(path, sizeof(path), "cp '%s' '%s.keep' && cp '%s' '%s'", key,
		 key, key2, key);
	assert_int_equal(system(path), 0);
	assert_int_equal(tls_reload(t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not belong"));
	tls_fingerprint(t, fp1);
	assert_string_equal(fp0, fp1);

	/* A good new pair: new connections use it. */
	snprintf(path, sizeof(path), "cp '%s' '%s'", cert2, cert);
	assert_int_equal(system(path), 0);
	assert_int_equal(tls_reload(t, err, sizeof(err)), 0);
	tls_fingerprint(t, fp1);
	assert_string_not_equal(fp0, fp1);
	struct client c;
	int seen = ho.n;
	assert_int_equal(client_open(&c, tls_port(t, 0), cert2), 0);
	int fd = next_handoff(seen);
	assert_true(fd >= 0);
	close(fd);
	client_close(&c);

	/* Garbage: refused. */
	f = fopen(cert, "w");
	fputs("garbage\n", f);
	fclose(f);
	assert_int_equal(tls_reload(t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "tls-cert"));
	char fp2[96];
	tls_fingerprint(t, fp2);
	assert_string_equal(fp1, fp2);

	/* Put the first pair back for the other tests. */
	snprintf(path, sizeof(path), "cp '%s.keep' '%s'", key, key);
	assert_int_equal(system(path), 0);
	char *c2 = NULL, *k2 = NULL;
	unlink(cert);
	assert_int_equal(
	    tls_cert_self_signed(tmpdir, &c2, &k2, err, sizeof(err)), 1);
	free(c2);
	free(k2);
	server_stop(t);
}

static void test_quiesce(void **state)
{
	struct tls *t = server(5, 8);
	unsigned port = tls_port(t, 0);

	(void)state;
	int fd = raw_connect(port);
	assert_true(fd >= 0);
	close(fd);
	tls_quiesce(t);
	assert_int_equal(raw_connect(port), -1);
	loop_stop(lp);
	tls_free(t);
	loop_free(lp);
	lp = loop_new("test");
	assert_int_equal(loop_start(lp), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_self_signed),
	    cmocka_unit_test(test_new_errors),
	    cmocka_unit_test(test_pump),
	    cmocka_unit_test(test_handshake_timeout_and_cap),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_quiesce),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
