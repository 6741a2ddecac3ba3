/* wsclient: a small WebSocket client for the integration tests, on wslay.
 *
 *   wsclient [--origin O] [--header 'K: V']... [--token T] [--since N]
 *            [--count N] [--timeout S] [--send-file F | --send-stdin]
 *            [--raw-send HEX] [--rcvbuf BYTES] [--stall S] [--tls CAFILE]
 *            ws://HOST:PORT/PATH?QUERY | wss://HOST:PORT/PATH?QUERY
 *
 * It performs the handshake (and checks Sec-WebSocket-Accept), prints each
 * received text message on its own line, sends each line of --send-file or
 * stdin as a text message, and --raw-send's bytes verbatim after the
 * handshake (for bad-input tests). A close from the server is printed as
 * "close CODE". --token and --since are appended to the query.
 * --rcvbuf shrinks the socket's receive buffer and --stall stops reading
 * for S seconds after the handshake: together a slow consumer. SIGTERM ends
 * a stall (or any run) after up to 2 s more of reading what is pending, so
 * a stalled reader killed by a test still prints the close it was sent.
 *
 * Exit: 0 after --count event frames (messages with a top-level "id" that
 * are not acks), or on close/timeout when no --count was asked; 2 on a
 * failed handshake (the HTTP status line goes to stderr); 3 on timeout
 * before --count; 4 when the server closed before --count; 1 on usage or
 * network errors. wss:// needs --tls CAFILE: mbedTLS verifies the server's
 * chain against it, and the name for a DNS host (mbedTLS 2.28 cannot match
 * IP addresses, so for an IP literal only the chain is checked). It does no
 * proxies and no redirects. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/sha1.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <wslay/wslay.h>

#define MAX_HEADERS 16

static volatile sig_atomic_t terminated;

static void on_term(int sig)
{
	(void)sig;
	terminated = 1;
}

struct client {
	int fd;
	unsigned char pre[16384]; /* bytes that followed the HTTP head */
	size_t pre_len, pre_off;
	long count, seen;
	int close_code; /* -1 until the server closes */
	bool eof;
	/* wss:// */
	bool tls;
	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

static void die(const char *what)
{
	fprintf(stderr, "wsclient: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: wsclient [--origin O] [--header 'K: V'] [--token T] "
		"[--since N] [--count N] [--timeout S] [--send-file F | "
		"--send-stdin] [--raw-send HEX] [--rcvbuf N] [--stall S] "
		"[--tls CAFILE] ws[s]://HOST:PORT/PATH\n");
	exit(1);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* recv/send with the socket's semantics (-1 and errno EAGAIN when it
 * would block), through TLS for wss://. The socket is non-blocking. */
static ssize_t io_recv(struct client *c, void *buf, size_t len)
{
	if (!c->tls)
		return recv(c->fd, buf, len, MSG_DONTWAIT);
	int n = mbedtls_ssl_read(&c->ssl, buf, len);
	if (n >= 0)
		return n;
	if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ||
	    n == MBEDTLS_ERR_SSL_CONN_EOF)
		return 0;
	errno =
	    n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE
		? EAGAIN
		: ECONNRESET;
	return -1;
}

static ssize_t io_send(struct client *c, const void *buf, size_t len)
{
	if (!c->tls)
		return send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	int n = mbedtls_ssl_write(&c->ssl, buf, len);
	if (n >= 0)
		return n;
	errno =
	    n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE
		? EAGAIN
		: EPIPE;
	return -1;
}

/* Decrypted bytes waiting inside mbedTLS: poll() cannot see them. */
static bool io_pending(struct client *c)
{
	return c->tls && mbedtls_ssl_get_bytes_avail(&c->ssl) > 0;
}

static void write_all(struct client *c, const void *p, size_t n)
{
	const char *b = p;
	while (n) {
		ssize_t w = io_send(c, b, n);
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = {c->fd, POLLOUT | POLLIN, 0};
			poll(&pf, 1, 1000);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write");
		b += w;
		n -= (size_t)w;
	}
}

static void tls_die(const char *what, int rc)
{
	char buf[128];
	mbedtls_strerror(rc, buf, sizeof(buf));
	fprintf(stderr, "wsclient: %s: %s\n", what, buf);
	exit(rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED ? 2 : 1);
}

/* TLS handshake on the connected socket, verifying against cafile. */
static void tls_connect(struct client *c, const char *cafile, const char *host,
			int64_t deadline)
{
	static const char *alpn[] = {"http/1.1", NULL};
	unsigned char probe[16];
	int rc;

	c->tls = true;
	c->net.fd = c->fd;
	mbedtls_ssl_init(&c->ssl);
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	if ((rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func,
					&c->entropy, NULL, 0)) != 0)
		tls_die("seed", rc);
	if ((rc = mbedtls_x509_crt_parse_file(&c->ca, cafile)) != 0)
		tls_die(cafile, rc);
	if ((rc = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
					      MBEDTLS_SSL_TRANSPORT_STREAM,
					      MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
		tls_die("config", rc);
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_alpn_protocols(&c->conf, alpn);
	if ((rc = mbedtls_ssl_setup(&c->ssl, &c->conf)) != 0)
		tls_die("setup", rc);
	/* A DNS name is checked against the certificate; an IP literal
	 * (no SNI either) only gets the chain checked. */
	bool ip = inet_pton(AF_INET, host, probe) == 1 ||
		  inet_pton(AF_INET6, host, probe) == 1;
	if ((rc = mbedtls_ssl_set_hostname(&c->ssl, ip ? NULL : host)) != 0)
		tls_die("hostname", rc);
	mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send,
			    mbedtls_net_recv, NULL);
	while ((rc = mbedtls_ssl_handshake(&c->ssl)) != 0) {
		if (rc != MBEDTLS_ERR_SSL_WANT_READ &&
		    rc != MBEDTLS_ERR_SSL_WANT_WRITE)
			tls_die("TLS handshake", rc);
		struct pollfd pf = {
		    c->fd, rc == MBEDTLS_ERR_SSL_WANT_READ ? POLLIN : POLLOUT,
		    0};
		int left = (int)(deadline - now_ms());
		if (left <= 0 || poll(&pf, 1, left) == 0) {
			fprintf(stderr, "wsclient: TLS handshake timed out\n");
			exit(2);
		}
	}
}

static void tls_close(struct client *c)
{
	if (!c->tls)
		return;
	mbedtls_ssl_close_notify(&c->ssl);
	mbedtls_ssl_free(&c->ssl);
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->entropy);
}

static void accept_for(const char *key, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char d[20];
	size_t n;
	mbedtls_sha1_context s;
	mbedtls_sha1_init(&s);
	mbedtls_sha1_starts_ret(&s);
	mbedtls_sha1_update_ret(&s, (const unsigned char *)key, strlen(key));
	mbedtls_sha1_update_ret(&s, (const unsigned char *)guid, strlen(guid));
	mbedtls_sha1_finish_ret(&s, d);
	mbedtls_sha1_free(&s);
	mbedtls_base64_encode((unsigned char *)out, 29, &n, d, sizeof(d));
}

static int dial(const char *host, const char *port, int rcvbuf)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1;
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		fprintf(stderr, "wsclient: cannot resolve %s\n", host);
		exit(1);
	}
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		/* Before connect, so the window is small from the start. */
		if (fd >= 0 && rcvbuf > 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
				   sizeof(rcvbuf));
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		die("connect");
	return fd;
}

/* Send the upgrade request and read the response head; exit 2 unless it
 * is a valid 101. Whatever follows the head is kept for wslay. */
static void handshake(struct client *c, const char *host, const char *target,
		      const char *origin, char **headers, int nheaders,
		      int64_t deadline)
{
	unsigned char raw[16];
	char key[32], want[29], req[4096];
	size_t n;
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		die("getrandom");
	mbedtls_base64_encode((unsigned char *)key, sizeof(key), &n, raw, 16);
	accept_for(key, want);

	int len =
	    snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n",
		     target, host, key);
	if (origin)
		len += snprintf(req + len, sizeof(req) - (size_t)len,
				"Origin: %s\r\n", origin);
	for (int i = 0; i < nheaders; i++)
		len += snprintf(req + len, sizeof(req) - (size_t)len, "%s\r\n",
				headers[i]);
	len += snprintf(req + len, sizeof(req) - (size_t)len, "\r\n");
	if ((size_t)len >= sizeof(req)) {
		fprintf(stderr, "wsclient: request too long\n");
		exit(1);
	}
	write_all(c, req, (size_t)len);

	char head[8192];
	size_t hl = 0;
	char *end = NULL;
	while (!end) {
		struct pollfd p = {c->fd, POLLIN, 0};
		int left = (int)(deadline - now_ms());
		if (!io_pending(c) && (left <= 0 || poll(&p, 1, left) != 1)) {
			fprintf(stderr, "wsclient: handshake timed out\n");
			exit(2);
		}
		ssize_t r = io_recv(c, head + hl, sizeof(head) - 1 - hl);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue; /* half a TLS record */
		if (r <= 0) {
			fprintf(stderr, "wsclient: connection closed during "
					"handshake\n");
			exit(2);
		}
		hl += (size_t)r;
		head[hl] = '\0';
		end = strstr(head, "\r\n\r\n");
		if (!end && hl == sizeof(head) - 1) {
			fprintf(stderr, "wsclient: response head too long\n");
			exit(2);
		}
	}
	size_t used = (size_t)(end - head) + 4;
	c->pre_len = hl - used;
	memcpy(c->pre, head + used, c->pre_len);
	*end = '\0';

	char *eol = strstr(head, "\r\n");
	if (eol)
		*eol = '\0';
	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		fprintf(stderr, "%s\n", head);
		exit(2);
	}
	bool ok = false;
	for (char *line = eol ? eol + 2 : NULL; line && *line;) {
		char *next = strstr(line, "\r\n");
		if (next)
			*next = '\0';
		if (strncasecmp(line, "Sec-WebSocket-Accept:", 21) == 0) {
			char *v = line + 21;
			while (*v == ' ')
				v++;
			ok = strcmp(v, want) == 0;
		}
		line = next ? next + 2 : NULL;
	}
	if (!ok) {
		fprintf(stderr, "%s\nwsclient: bad Sec-WebSocket-Accept\n",
			head);
		exit(2);
	}
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
		       int flags, void *user)
{
	struct client *c = user;
	(void)flags;
	if (c->pre_off < c->pre_len) {
		size_t k = c->pre_len - c->pre_off;
		if (k > len)
			k = len;
		memcpy(buf, c->pre + c->pre_off, k);
		c->pre_off += k;
		return (ssize_t)k;
	}
	ssize_t n = io_recv(c, buf, len);
	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	} else {
		c->eof = true;
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	}
	return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
		       size_t len, int flags, void *user)
{
	struct client *c = user;
	(void)flags;
	ssize_t n = io_send(c, data, len);
	if (n >= 0)
		return n;
	wslay_event_set_error(ctx, errno == EAGAIN || errno == EINTR
				       ? WSLAY_ERR_WOULDBLOCK
				       : WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
		      void *user)
{
	(void)ctx;
	(void)user;
	return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

/* An event frame is an envelope: top-level "id", and not an ack. */
static bool is_event(const uint8_t *msg, size_t len)
{
	json_t *o = json_loadb((const char *)msg, len, 0, NULL);
	const char *type = json_string_value(json_object_get(o, "type"));
	bool ev = json_is_integer(json_object_get(o, "id")) &&
		  !(type && strcmp(type, "ack") == 0);
	json_decref(o);
	return ev;
}

static void on_msg(wslay_event_context_ptr ctx,
		   const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct client *c = user;
	(void)ctx;
	if (arg->opcode == WSLAY_TEXT_FRAME) {
		fwrite(arg->msg, 1, arg->msg_length, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		if (is_event(arg->msg, arg->msg_length))
			c->seen++;
	} else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
		c->close_code = arg->status_code ? arg->status_code : 1005;
		printf("close %d\n", c->close_code);
		fflush(stdout);
	}
}

static void queue_line(wslay_event_context_ptr ctx, const char *line,
		       size_t len)
{
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)line,
				    len};
	wslay_event_queue_msg(ctx, &m);
}

/* Read what fd has and queue each complete line; at EOF the rest too.
 * Returns false at EOF. */
static bool pump_lines(wslay_event_context_ptr ctx, int fd, char *buf,
		       size_t cap, size_t *len)
{
	ssize_t r = read(fd, buf + *len, cap - *len);
	if (r < 0 && errno == EINTR)
		return true;
	if (r > 0)
		*len += (size_t)r;
	char *start = buf, *nl;
	while ((nl = memchr(start, '\n', *len - (size_t)(start - buf)))) {
		queue_line(ctx, start, (size_t)(nl - start));
		start = nl + 1;
	}
	*len -= (size_t)(start - buf);
	memmove(buf, start, *len);
	if (r <= 0 || *len == cap) { /* EOF, error, or an over-long line */
		if (*len)
			queue_line(ctx, buf, *len);
		*len = 0;
	}
	return r > 0;
}

static size_t unhex(const char *hex, unsigned char **out)
{
	size_t n = strlen(hex) / 2;
	*out = malloc(n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			fprintf(stderr, "wsclient: --raw-send: bad hex\n");
			exit(1);
		}
		(*out)[i] = (unsigned char)v;
	}
	return n;
}

int main(int argc, char **argv)
{
	const char *origin = NULL, *token = NULL, *since = NULL, *url = NULL;
	const char *send_file = NULL, *raw_hex = NULL, *cafile = NULL;
	char *headers[MAX_HEADERS];
	int nheaders = 0;
	bool send_stdin = false;
	double timeout_s = 10, stall_s = 0;
	int rcvbuf = 0;
	struct client c = {.fd = -1, .count = -1, .close_code = -1};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (!strcmp(a, "--origin") && has)
			origin = argv[++i];
		else if (!strcmp(a, "--header") && has &&
			 nheaders < MAX_HEADERS)
			headers[nheaders++] = argv[++i];
		else if (!strcmp(a, "--token") && has)
			token = argv[++i];
		else if (!strcmp(a, "--since") && has)
			since = argv[++i];
		else if (!strcmp(a, "--count") && has)
			c.count = atol(argv[++i]);
		else if (!strcmp(a, "--timeout") && has)
			timeout_s = atof(argv[++i]);
		else if (!strcmp(a, "--send-file") && has)
			send_file = argv[++i];
		else if (!strcmp(a, "--send-stdin"))
			send_stdin = true;
		else if (!strcmp(a, "--raw-send") && has)
			raw_hex = argv[++i];
		else if (!strcmp(a, "--rcvbuf") && has)
			rcvbuf = atoi(argv[++i]);
		else if (!strcmp(a, "--stall") && has)
			stall_s = atof(argv[++i]);
		else if (!strcmp(a, "--tls") && has)
			cafile = argv[++i];
		else if (a[0] != '-' && !url)
			url = a;
		else
			usage();
	}
	bool wss = url && strncmp(url, "wss://", 6) == 0;
	if (!url || (strncmp(url, "ws://", 5) != 0 && !wss) ||
	    (send_file && send_stdin) || wss != (cafile != NULL))
		usage();

	/* ws[s]://host[:port][/path] */
	char host[256], port[16], target[2048];
	snprintf(port, sizeof(port), "%s", wss ? "443" : "80");
	const char *h = url + (wss ? 6 : 5), *slash = strchr(h, '/');
	size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
	if (hlen == 0 || hlen >= sizeof(host))
		usage();
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	char *colon = strrchr(host, ':');
	if (colon && !strchr(colon, ']')) {
		snprintf(port, sizeof(port), "%s", colon + 1);
		*colon = '\0';
	}
	int tl = snprintf(target, sizeof(target), "%s", slash ? slash : "/");
	char sep = strchr(target, '?') ? '&' : '?';
	if (since) {
		tl += snprintf(target + tl, sizeof(target) - (size_t)tl,
			       "%csince=%s", sep, since);
		sep = '&';
	}
	if (token)
		snprintf(target + tl, sizeof(target) - (size_t)tl, "%ctoken=%s",
			 sep, token);
	char hosthdr[300];
	snprintf(hosthdr, sizeof(hosthdr), "%s:%s", host, port);
	char *bare = host[0] == '[' ? host + 1 : host;
	if (bare != host)
		bare[strlen(bare) - 1] = '\0';

	struct sigaction sa = {.sa_handler = on_term}; /* no SA_RESTART */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int64_t deadline = now_ms() + (int64_t)(timeout_s * 1000);
	c.fd = dial(bare, port, rcvbuf);
	if (fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) < 0)
		die("fcntl");
	if (wss)
		tls_connect(&c, cafile, bare, deadline);
	handshake(&c, hosthdr, target, origin, headers, nheaders, deadline);

	wslay_event_context_ptr ctx;
	struct wslay_event_callbacks cbs = {recv_cb, send_cb, genmask_cb, NULL,
					    NULL,    NULL,    on_msg};
	if (wslay_event_context_client_init(&ctx, &cbs, &c) != 0)
		die("wslay");

	if (raw_hex) {
		unsigned char *raw;
		size_t n = unhex(raw_hex, &raw);
		write_all(&c, raw, n);
		free(raw);
	}
	int in = -1;
	static char lines[65536];
	size_t lines_len = 0;
	if (send_file) {
		int fd = open(send_file, O_RDONLY);
		if (fd < 0)
			die(send_file);
		while (pump_lines(ctx, fd, lines, sizeof(lines), &lines_len))
			;
		close(fd);
	} else if (send_stdin) {
		in = STDIN_FILENO;
	}

	/* A stalled reader: the socket fills up while we sleep. */
	int64_t stall_end = now_ms() + (int64_t)(stall_s * 1000);
	while (!terminated && now_ms() < stall_end && now_ms() < deadline)
		poll(NULL, 0, 50);

	int rc = 0;
	bool term_seen = false;
	for (;;) {
		if (terminated && !term_seen) {
			term_seen = true;
			if (deadline > now_ms() + 2000)
				deadline = now_ms() + 2000;
		}
		if (c.count >= 0 && c.seen >= c.count) {
			wslay_event_queue_close(ctx, 1000, NULL, 0);
			wslay_event_send(ctx);
			rc = 0;
			break;
		}
		if (c.close_code >= 0 || c.eof ||
		    (!wslay_event_want_read(ctx) &&
		     !wslay_event_want_write(ctx))) {
			if (c.close_code < 0)
				fprintf(stderr, "wsclient: connection lost\n");
			wslay_event_send(ctx); /* echo of the close */
			rc = c.count >= 0 ? 4 : 0;
			break;
		}
		int left = (int)(deadline - now_ms());
		if (left <= 0) {
			rc = c.count >= 0 ? 3 : 0;
			if (rc)
				fprintf(stderr,
					"wsclient: timeout after %ld "
					"events\n",
					c.seen);
			break;
		}
		struct pollfd p[2] = {{c.fd, POLLIN, 0}, {in, POLLIN, 0}};
		if (wslay_event_want_write(ctx))
			p[0].events |= POLLOUT;
		/* Bytes left from the handshake read, or decrypted ones in
		 * mbedTLS, are not in the socket. */
		bool ready = c.pre_off < c.pre_len || io_pending(&c);
		int r = ready ? 1 : poll(p, 2, left);
		if (r < 0 && errno != EINTR)
			die("poll");
		if (ready || (p[0].revents & (POLLIN | POLLERR | POLLHUP)))
			if (wslay_event_recv(ctx) != 0)
				c.eof = c.eof || c.close_code < 0;
		/* At the end of stdin keep listening. */
		if (in >= 0 && (p[1].revents & (POLLIN | POLLHUP)) &&
		    !pump_lines(ctx, in, lines, sizeof(lines), &lines_len))
			in = -1;
		if (wslay_event_send(ctx) != 0 && c.close_code < 0)
			c.eof = true;
	}
	wslay_event_context_free(ctx);
	tls_close(&c);
	close(c.fd);
	return rc;
}
