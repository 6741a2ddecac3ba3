/* natter-bench: a load tool for natter and its peers (nginx+nchan, the
 * Tornado broadcast server). C, epoll, non-blocking; WebSocket on wslay,
 * SSE and long-poll on plain sockets with a minimal HTTP parser.
 *
 *   natter-bench --url http://127.0.0.1:8080 [--mode natter|nchan|tornado]
 *                [--transport ws|sse|poll|mix] [--subs N] [--rooms K]
 *                [--pubs P] [--messages M] [--rate R] [--size BYTES]
 *                [--procs J] [--server-pid PID[,PID...]] [--publish-url URL]
 *                [--publish-via ws|http] [--window W] [--idle] [--hold S]
 *                [--timeout S] [--drain S] [--json] [--label TEXT]
 *
 * The parent process sets up (natter: registers users through
 * POST /api/register, creates one room per room index, has publishers
 * join every room), then forks J workers that each open their share of the
 * N subscribers. When every worker reports its subscribers ready, the
 * parent's P publishers send M messages in total (round robin over the K
 * rooms), at R messages/s in total or, with R = 0, as fast as acks allow
 * (each publisher keeps up to W unacknowledged). A message's text is
 *   nb:<publisher>:<sequence in that publisher's stream to that room>:<send
 *   time, CLOCK_MONOTONIC ns>: followed by 'x' padding up to --size.
 * Subscribers find those markers in whatever framing the server uses,
 * record publish-to-receive latency and check each publisher's sequence:
 * a sequence number below the last one seen is "reordered", equal is
 * "duplicated", and whatever an expected count misses at the end is "lost".
 *
 * Acks: natter over WebSocket answers {"type":"ack"} after the commit;
 * natter, nchan over HTTP answer the POST; Tornado's broadcast server
 * acknowledges nothing, so its publishers count the echo of their own
 * message (every connection, publishers included, gets every message).
 *
 * Server side figures come from /proc/PID of every --server-pid: CPU
 * seconds (utime+stime) spent between the start of publishing and the last
 * delivery, VmHWM (peak RSS) and VmRSS before and after the connections
 * (RSS per connection).
 *
 * Output: a human table, then one JSON line (only the JSON line with
 * --json). Exit 0 when the run completed with nothing lost, duplicated or
 * reordered, 1 otherwise, 2 on usage or set-up errors. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <wslay/wslay.h>

/* ---- options -------------------------------------------------------- */

enum mode { M_NATTER, M_NCHAN, M_TORNADO };
enum proto { P_WS, P_SSE, P_POLL, P_HTTP };

static struct opts {
	char host[64];
	int port;
	char prefix[256]; /* path prefix of --url, no trailing slash */
	enum mode mode;
	int transport; /* P_WS, P_SSE, P_POLL, or -1 for mix */
	long subs, rooms, pubs, messages;
	double rate;
	long size;
	int procs;
	char server_pids[256];
	char publish_url[512];
	int publish_via; /* P_WS or P_HTTP */
	long window;
	bool idle;
	double hold_s, timeout_s, drain_s;
	bool json;
	bool markdown; /* pad with formatting, not 'x' (rendering's cost) */
	char label[128];
	char tokens_file[512];
} O = {
    .host = "127.0.0.1",
    .port = 8080,
    .mode = M_NATTER,
    .transport = P_WS,
    .subs = 100,
    .rooms = 1,
    .pubs = 1,
    .messages = 1000,
    .size = 100,
    .procs = 1,
    .publish_via = -1,
    .window = 32,
    .hold_s = 2,
    .timeout_s = 300,
    .drain_s = 20,
};

static const char *proto_name[] = {"ws", "sse", "poll", "http"};
static const char *mode_name[] = {"natter", "nchan", "tornado"};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "natter-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void *xcalloc(size_t a, size_t b)
{
	void *p = calloc(a ? a : 1, b ? b : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void parse_url(const char *url, char *host, size_t hl, int *port,
		      char *path, size_t pl)
{
	const char *p = url;
	if (!strncmp(p, "http://", 7))
		p += 7;
	else if (!strncmp(p, "ws://", 5))
		p += 5;
	const char *slash = strchr(p, '/');
	const char *colon = strchr(p, ':');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	if (colon && (!slash || colon < slash)) {
		*port = atoi(colon + 1);
		n = (size_t)(colon - p);
	} else {
		*port = 80;
	}
	if (n >= hl)
		die("host too long in %s", url);
	memcpy(host, p, n);
	host[n] = '\0';
	snprintf(path, pl, "%s", slash ? slash : "");
}

/* ---- latency histogram (microseconds, log-linear, ~3%) -------------- */

#define HB_SUB 32
#define HB_N (64 + 40 * HB_SUB)

static unsigned hist_idx(uint64_t us)
{
	if (us < 64)
		return (unsigned)us;
	unsigned e = 63 - (unsigned)__builtin_clzll(us); /* >= 6 */
	unsigned sub = (unsigned)(us >> (e - 5)) & (HB_SUB - 1);
	unsigned i = 64 + (e - 6) * HB_SUB + sub;
	return i < HB_N ? i : HB_N - 1;
}

static uint64_t hist_val(unsigned i)
{
	if (i < 64)
		return i;
	unsigned e = (i - 64) / HB_SUB + 6, sub = (i - 64) % HB_SUB;
	return ((uint64_t)(HB_SUB + sub)) << (e - 5);
}

/* ---- results passed from a worker to the parent ---------------------- */

struct wres {
	uint64_t connected, failed, ready, inorder, dup, reorder, lost,
	    expected, disconnected, other;
	int64_t first_rx, last_rx; /* ns, 0 if none */
	uint64_t max_us;
	uint64_t hist[HB_N];
	int fd_capped;
};

struct ctl_msg {
	char type; /* 'R' ready, 'D' done (a struct wres follows) */
	uint64_t connected, failed;
};

/* ---- connections --------------------------------------------------------- */

enum cstate { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };

/* Incremental HTTP/1.1 response parser. */
enum hstate {
	H_HEAD,
	H_BODY_CL,
	H_CHUNK_SIZE,
	H_CHUNK_DATA,
	H_CHUNK_CRLF,
	H_BODY_EOF,
	H_DONE
};

struct hresp {
	enum hstate st;
	int status;
	int64_t left;
	char etag[128], lastmod[96];
};

struct conn {
	int fd;
	int id; /* subscriber index, or publisher index */
	bool is_pub;
	enum proto proto;
	enum cstate st;
	bool ready, complete;
	bool drained; /* a short recv() this round: the socket is empty */
	int room;
	const char *token;
	uint32_t watched;
	/* raw output (handshakes, HTTP requests) */
	char *out;
	size_t out_len, out_off, out_cap;
	/* raw input */
	char *in;
	size_t in_len, in_off, in_cap;
	struct hresp hr;
	char *body; /* long-poll body, SSE line carry-over */
	size_t body_len, body_cap;
	wslay_event_context_ptr ws;
	/* subscriber */
	int32_t *last; /* per publisher: last sequence seen, -1 */
	char tail[3];  /* the last bytes scanned, for a marker's left edge */
	uint64_t inorder;
	int64_t cursor;
	/* publisher */
	uint64_t sent, acked, inflight, errors;
	int64_t next_ns;
	long next_g; /* next global message index */
};

struct world {
	int ep;
	struct conn **conns;
	size_t nconns;
	struct sockaddr_in addr;
	/* subscriber stats */
	struct wres res;
	uint64_t *expected; /* per room */
	size_t pending_connects;
	size_t nsubs_done;
	/* publishers (parent) */
	uint32_t *pub_seq; /* P * K */
	uint64_t pub_sent, pub_acked, pub_errors;
};

static struct world W;

/* Set-up results shared by parent and workers. */
static char **room_names;  /* K */
static char **room_tokens; /* K: a member of that room (subscribers) */
static char **pub_tokens;  /* P */

static void conn_watch(struct conn *c, uint32_t ev)
{
	if (c->watched == ev)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = c};
	int op = c->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(W.ep, op, c->fd, &e) < 0)
		die("epoll_ctl: %s", strerror(errno));
	c->watched = ev;
}

static void out_append(struct conn *c, const char *s, size_t n)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = xrealloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

static void out_printf(struct conn *c, const char *fmt, ...)
{
	char tmp[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		die("request too long");
	out_append(c, tmp, (size_t)n);
}

static void conn_close(struct conn *c, bool failure);
static void conn_update(struct conn *c);

/* Write raw output; false if the connection failed. */
static bool out_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		return false;
	}
	c->out_off = c->out_len = 0;
	return true;
}

/* ---- message markers ------------------------------------------------------
 */

static int make_text(char *buf, size_t cap, int pub, uint32_t seq)
{
	int n = snprintf(buf, cap, "nb:%d:%" PRIu32 ":%" PRId64 ":", pub, seq,
			 now_ns());
	/* --markdown: emphasis, code, a link and strikethrough, over and
	 * over (what cmark-gfm parses and the renderer sanitises), cut at
	 * --size; one line, as the text goes into JSON unescaped */
	static const char md[] =
	    " **bold** _it_ `code` [a link](https://example.org/p?q=1) ~~x~~";
	for (size_t k = 0; (long)n < O.size && (size_t)n + 1 < cap; k++)
		buf[n++] = O.markdown ? md[k % (sizeof(md) - 1)] : 'x';
	buf[n] = '\0';
	return n;
}

static long parse_num(const char **pp, const char *end, bool *ok)
{
	const char *p = *pp;
	long v = 0;
	if (p >= end || !isdigit((unsigned char)*p)) {
		*ok = false;
		return 0;
	}
	while (p < end && isdigit((unsigned char)*p))
		v = v * 10 + (*p++ - '0');
	if (p >= end || *p != ':') {
		*ok = false;
		return 0;
	}
	*pp = p + 1;
	return v;
}

/* One marker at p (after "nb:") received by subscriber c. */
static void sub_marker(struct conn *c, const char *p, const char *end,
		       int64_t now)
{
	bool ok = true;
	long pub = parse_num(&p, end, &ok);
	long seq = parse_num(&p, end, &ok);
	long ts = parse_num(&p, end, &ok);
	if (!ok || pub < 0 || pub >= O.pubs) {
		W.res.other++;
		return;
	}
	int32_t *last = &c->last[pub];
	if (seq > *last) {
		*last = (int32_t)seq;
		c->inorder++;
		W.res.inorder++;
	} else if (seq == *last) {
		W.res.dup++;
		return;
	} else {
		W.res.reorder++;
		return;
	}
	int64_t lat = now - ts;
	uint64_t us = lat > 0 ? (uint64_t)lat / 1000 : 0;
	W.res.hist[hist_idx(us)]++;
	if (us > W.res.max_us)
		W.res.max_us = us;
	if (!W.res.first_rx)
		W.res.first_rx = now;
	W.res.last_rx = now;
	if (!c->complete && c->inorder >= W.expected[c->room]) {
		c->complete = true;
		W.nsubs_done++;
	}
}

/* natter's envelope carries a message twice: its text and its rendered
 * html, where a plain line is "<p>" + text. A marker right after "<p>" is
 * that second copy of the same message, not a second delivery. */
static bool marker_in_html(const struct conn *c, const char *base,
			   const char *m)
{
	char before[3];
	for (int i = 0; i < 3; i++) {
		const char *q = m - 3 + i;
		before[i] = q >= base ? *q : c->tail[3 - (base - q)];
	}
	return memcmp(before, "<p>", 3) == 0;
}

static void scan_markers(struct conn *c, const char *s, size_t n)
{
	const char *base = s, *end = s + n;
	int64_t now = 0;
	while (s < end) {
		const char *m = memmem(s, (size_t)(end - s), "nb:", 3);
		if (!m)
			break;
		if (!now)
			now = now_ns();
		if (!marker_in_html(c, base, m))
			sub_marker(c, m + 3, end, now);
		s = m + 3;
	}
	/* keep the last three bytes seen (the tail shifts by n) */
	for (size_t i = 0; i < 3; i++) {
		size_t from_end = 3 - i; /* tail[i] is the from_end-th last */
		c->tail[i] =
		    n >= from_end ? base[n - from_end] : c->tail[i + n];
	}
}

/* ---- requests
 * ---------------------------------------------------------------- */

static void auth_header(struct conn *c, const char *token)
{
	if (token)
		out_printf(c, "Authorization: Bearer %s\r\n", token);
}

static void ws_request(struct conn *c, const char *path, const char *token)
{
	unsigned char raw[16];
	char key[32];
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		die("getrandom");
	size_t k = 0;
	for (int i = 0; i < 15; i += 3) {
		uint32_t v =
		    (uint32_t)raw[i] << 16 | raw[i + 1] << 8 | raw[i + 2];
		key[k++] = b64[v >> 18 & 63];
		key[k++] = b64[v >> 12 & 63];
		key[k++] = b64[v >> 6 & 63];
		key[k++] = b64[v & 63];
	}
	uint32_t v = (uint32_t)raw[15] << 16;
	key[k++] = b64[v >> 18 & 63];
	key[k++] = b64[v >> 12 & 63];
	key[k++] = '=';
	key[k++] = '=';
	key[k] = '\0';
	out_printf(c,
		   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
		   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
		   "Sec-WebSocket-Version: 13\r\n",
		   path, O.host, O.port, key);
	auth_header(c, token);
	out_printf(c, "\r\n");
}

static void sub_request(struct conn *c)
{
	char path[512];
	const char *room = room_names[c->room];
	switch (O.mode) {
	case M_NATTER:
		if (c->proto == P_WS) {
			snprintf(path, sizeof(path), "%s/ws", O.prefix);
			ws_request(c, path, c->token);
		} else if (c->proto == P_SSE) {
			out_printf(c,
				   "GET %s/events HTTP/1.1\r\nHost: %s:%d\r\n"
				   "Accept: text/event-stream\r\n",
				   O.prefix, O.host, O.port);
			auth_header(c, c->token);
			out_printf(c, "\r\n");
		} else {
			if (c->cursor < 0)
				out_printf(c,
					   "GET %s/poll?timeout=1 HTTP/1.1\r\n",
					   O.prefix);
			else
				out_printf(c,
					   "GET %s/poll?since=%" PRId64
					   "&timeout=25 HTTP/1.1\r\n",
					   O.prefix, c->cursor);
			out_printf(c, "Host: %s:%d\r\n", O.host, O.port);
			auth_header(c, c->token);
			out_printf(c, "\r\n");
		}
		break;
	case M_NCHAN:
		snprintf(path, sizeof(path), "%s/sub/%s", O.prefix, room);
		if (c->proto == P_WS) {
			ws_request(c, path, NULL);
		} else if (c->proto == P_SSE) {
			out_printf(c,
				   "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
				   "Accept: text/event-stream\r\n\r\n",
				   path, O.host, O.port);
		} else {
			out_printf(c, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n",
				   path, O.host, O.port);
			if (c->hr.etag[0])
				out_printf(c, "If-None-Match: %s\r\n",
					   c->hr.etag);
			if (c->hr.lastmod[0])
				out_printf(c, "If-Modified-Since: %s\r\n",
					   c->hr.lastmod);
			out_printf(c, "\r\n");
		}
		break;
	case M_TORNADO:
		snprintf(path, sizeof(path), "%s",
			 O.prefix[0] ? O.prefix : "/");
		ws_request(c, path, NULL);
		break;
	}
}

/* ---- wslay -----------------------------------------------------------------
 */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
			  int flags, void *user)
{
	struct conn *c = user;
	(void)flags;
	if (c->in_off < c->in_len) {
		size_t k = c->in_len - c->in_off;
		if (k > len)
			k = len;
		memcpy(buf, c->in + c->in_off, k);
		c->in_off += k;
		if (c->in_off == c->in_len) {
			/* The handshake's buffer is not needed any more. */
			free(c->in);
			c->in = NULL;
			c->in_off = c->in_len = c->in_cap = 0;
		}
		return (ssize_t)k;
	}
	/* A short read drained the socket: say so without another recv()
	 * (the level-triggered epoll reports whatever comes next). */
	if (c->drained) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0) {
			if ((size_t)n < len)
				c->drained = true;
			return n;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		else
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
			  size_t len, int flags, void *user)
{
	struct conn *c = user;
	int f = MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0);
	for (;;) {
		ssize_t n = send(c->fd, data, len, f);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		else
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
			 void *user)
{
	(void)ctx;
	(void)user;
	/* Masking is for proxies; a fixed cheap mask is fine on loopback. */
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(0x5a ^ i);
	return 0;
}

static void pub_ack(struct conn *c, bool ok)
{
	if (c->inflight)
		c->inflight--;
	if (ok) {
		c->acked++;
		W.pub_acked++;
	} else {
		c->errors++;
		W.pub_errors++;
	}
}

static void ws_on_msg(wslay_event_context_ptr ctx,
		      const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct conn *c = user;
	(void)ctx;
	if (arg->opcode != WSLAY_TEXT_FRAME &&
	    arg->opcode != WSLAY_BINARY_FRAME)
		return;
	const char *m = (const char *)arg->msg;
	size_t n = arg->msg_length;
	if (c->is_pub) {
		if (O.mode == M_NATTER) {
			if (memmem(m, n, "\"type\":\"ack\"", 12))
				pub_ack(c, true);
			else if (memmem(m, n, "\"type\":\"error\"", 14)) {
				if (W.pub_errors < 5)
					fprintf(stderr,
						"natter-bench: send "
						"error: %.*s\n",
						(int)(n > 300 ? 300 : n), m);
				pub_ack(c, false);
			}
		} else { /* tornado: our own echo */
			char want[32];
			int k = snprintf(want, sizeof(want), "nb:%d:", c->id);
			if (n >= (size_t)k && !memcmp(m, want, (size_t)k))
				pub_ack(c, true);
		}
		return;
	}
	if (!c->ready) {
		/* natter says hello first; the others say nothing. */
		if (O.mode == M_NATTER && memmem(m, n, "\"hello\"", 7)) {
			c->ready = true;
			W.res.ready++;
		}
	}
	scan_markers(c, m, n);
}

static void ws_start(struct conn *c)
{
	struct wslay_event_callbacks cbs = {
	    .recv_callback = ws_recv_cb,
	    .send_callback = ws_send_cb,
	    .genmask_callback = ws_genmask_cb,
	    .on_msg_recv_callback = ws_on_msg,
	};
	if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0)
		die("wslay_event_context_client_init");
	wslay_event_config_set_max_recv_msg_length(c->ws, 1 << 24);
}

/* ---- HTTP response parsing ----------------------------------------------- */

static void hr_reset(struct hresp *h)
{
	h->st = H_HEAD;
	h->status = 0;
	h->left = 0;
}

static bool hdr_is(const char *line, const char *name, const char **val)
{
	size_t n = strlen(name);
	if (strncasecmp(line, name, n) || line[n] != ':')
		return false;
	const char *v = line + n + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	*val = v;
	return true;
}

static void on_head(struct conn *c);
static void on_body(struct conn *c, const char *s, size_t n);
static void on_done(struct conn *c);

/* Parse what is in c->in; false if the connection must be closed. */
/* Up to hr.left bytes of a body (or chunk) to on_body: true once all of
 * it came. */
static bool body_take(struct conn *c, const char *p, size_t avail)
{
	size_t k = avail < (size_t)c->hr.left ? avail : (size_t)c->hr.left;
	on_body(c, p, k);
	c->in_off += k;
	c->hr.left -= (int64_t)k;
	return c->hr.left == 0;
}

static bool http_parse(struct conn *c)
{
	for (;;) {
		char *p = c->in + c->in_off;
		size_t avail = c->in_len - c->in_off;
		switch (c->hr.st) {
		case H_HEAD: {
			char *end = memmem(p, avail, "\r\n\r\n", 4);
			if (!end)
				return avail < 65536;
			*end = '\0';
			size_t used = (size_t)(end - p) + 4;
			int status = 0;
			if (sscanf(p, "HTTP/1.%*d %d", &status) != 1)
				return false;
			c->hr.status = status;
			bool chunked = false, has_cl = false;
			int64_t cl = 0;
			char *save = NULL;
			for (char *line = strtok_r(p, "\r\n", &save); line;
			     line = strtok_r(NULL, "\r\n", &save)) {
				const char *v;
				if (hdr_is(line, "Content-Length", &v)) {
					cl = atoll(v);
					has_cl = true;
				} else if (hdr_is(line, "Transfer-Encoding",
						  &v)) {
					chunked = strcasestr(v, "chunked");
				} else if (hdr_is(line, "Etag", &v)) {
					snprintf(c->hr.etag, sizeof(c->hr.etag),
						 "%s", v);
				} else if (hdr_is(line, "Last-Modified", &v)) {
					snprintf(c->hr.lastmod,
						 sizeof(c->hr.lastmod), "%s",
						 v);
				}
			}
			c->in_off += used;
			if (status == 101) {
				c->hr.st = H_DONE;
				on_head(c);
				return c->st != C_CLOSED;
			}
			if (chunked)
				c->hr.st = H_CHUNK_SIZE;
			else if (has_cl)
				c->hr.st = H_BODY_CL, c->hr.left = cl;
			else
				c->hr.st = H_BODY_EOF;
			on_head(c);
			if (c->st == C_CLOSED)
				return false;
			if (c->hr.st == H_BODY_CL && c->hr.left == 0) {
				c->hr.st = H_DONE;
				on_done(c);
				if (c->st == C_CLOSED)
					return false;
			}
			break;
		}
		case H_BODY_CL: {
			if (!avail)
				return true;
			if (body_take(c, p, avail)) {
				c->hr.st = H_DONE;
				on_done(c);
				if (c->st == C_CLOSED)
					return false;
			}
			break;
		}
		case H_BODY_EOF:
			if (!avail)
				return true;
			on_body(c, p, avail);
			c->in_off += avail;
			break;
		case H_CHUNK_SIZE: {
			char *nl = memmem(p, avail, "\r\n", 2);
			if (!nl)
				return avail < 256;
			c->hr.left = strtoll(p, NULL, 16);
			c->in_off += (size_t)(nl - p) + 2;
			if (c->hr.left == 0) {
				/* Trailers: we expect none, just the CRLF. */
				c->hr.st = H_CHUNK_CRLF;
				c->hr.left = -1;
			} else {
				c->hr.st = H_CHUNK_DATA;
			}
			break;
		}
		case H_CHUNK_DATA: {
			if (!avail)
				return true;
			if (body_take(c, p, avail))
				c->hr.st = H_CHUNK_CRLF;
			break;
		}
		case H_CHUNK_CRLF:
			if (avail < 2)
				return true;
			c->in_off += 2;
			if (c->hr.left == -1) {
				c->hr.st = H_DONE;
				on_done(c);
				if (c->st == C_CLOSED)
					return false;
			} else {
				c->hr.st = H_CHUNK_SIZE;
			}
			break;
		case H_DONE:
			return true;
		}
	}
}

static void body_append(struct conn *c, const char *s, size_t n)
{
	if (c->body_len + n > c->body_cap) {
		c->body_cap = (c->body_len + n) * 2;
		c->body = xrealloc(c->body, c->body_cap);
	}
	memcpy(c->body + c->body_len, s, n);
	c->body_len += n;
}

static void on_head(struct conn *c)
{
	int st = c->hr.status;
	if (c->is_pub) {
		if (c->proto == P_WS) {
			if (st != 101) {
				fprintf(stderr,
					"natter-bench: publisher upgrade "
					"refused: %d\n",
					st);
				conn_close(c, true);
				return;
			}
			c->st = C_OPEN;
			ws_start(c);
			c->ready = true;
		}
		return;
	}
	if (c->proto == P_WS) {
		if (st != 101) {
			if (W.res.failed < 3)
				fprintf(stderr,
					"natter-bench: upgrade refused: %d\n",
					st);
			conn_close(c, true);
			return;
		}
		c->st = C_OPEN;
		W.res.connected++;
		W.pending_connects--;
		ws_start(c);
		if (O.mode != M_NATTER) {
			c->ready = true;
			W.res.ready++;
		}
		return;
	}
	if (st != 200) {
		if (W.res.failed < 3)
			fprintf(stderr,
				"natter-bench: %s subscribe answered %d\n",
				proto_name[c->proto], st);
		conn_close(c, true);
		return;
	}
	if (c->st != C_OPEN) {
		c->st = C_OPEN;
		W.res.connected++;
		W.pending_connects--;
		if (c->proto == P_SSE && O.mode != M_NATTER) {
			c->ready = true;
			W.res.ready++;
		}
	}
}

static void sse_lines(struct conn *c, const char *s, size_t n)
{
	if (!c->ready && O.mode == M_NATTER &&
	    memmem(s, n, "event: hello", 12)) {
		c->ready = true;
		W.res.ready++;
	}
	scan_markers(c, s, n);
}

static void on_body(struct conn *c, const char *s, size_t n)
{
	if (c->is_pub)
		return;
	if (c->proto == P_SSE) {
		/* Only complete lines: a marker never spans one. */
		const char *lastnl = memrchr(s, '\n', n);
		if (!lastnl) {
			body_append(c, s, n);
			return;
		}
		size_t upto = (size_t)(lastnl - s) + 1;
		if (c->body_len) {
			body_append(c, s, upto);
			sse_lines(c, c->body, c->body_len);
			c->body_len = 0;
		} else {
			sse_lines(c, s, upto);
		}
		if (upto < n)
			body_append(c, s + upto, n - upto);
	} else if (c->proto == P_POLL) {
		body_append(c, s, n);
	}
}

static int64_t find_cursor(const char *s, size_t n)
{
	const char *k = NULL, *p = s, *end = s + n;
	while ((p = memmem(p, (size_t)(end - p), "\"cursor\":", 9))) {
		k = p;
		p += 9;
	}
	if (!k)
		return -1;
	return strtoll(k + 9, NULL, 10);
}

static void on_done(struct conn *c)
{
	if (c->is_pub) {
		pub_ack(c, c->hr.status >= 200 && c->hr.status < 300);
		if (!(c->hr.status >= 200 && c->hr.status < 300) &&
		    W.pub_errors < 5)
			fprintf(stderr, "natter-bench: publish answered %d\n",
				c->hr.status);
		hr_reset(&c->hr);
		return;
	}
	if (c->proto == P_POLL) {
		if (O.mode == M_NATTER) {
			int64_t cur = find_cursor(c->body, c->body_len);
			if (cur >= 0)
				c->cursor = cur;
			if (!c->ready && c->cursor >= 0) {
				c->ready = true;
				W.res.ready++;
			}
		}
		if (c->hr.status == 200)
			scan_markers(c, c->body, c->body_len);
		c->body_len = 0;
		hr_reset(&c->hr);
		if (c->complete) {
			conn_close(c, false);
			return;
		}
		sub_request(c);
		return;
	}
	/* An SSE stream that ended. */
	conn_close(c, false);
}

/* ---- I/O ---------------------------------------------------------------- */

static void conn_close(struct conn *c, bool failure)
{
	if (c->st == C_CLOSED)
		return;
	if (!c->is_pub) {
		if (c->st == C_CONNECTING || c->st == C_HANDSHAKE) {
			W.pending_connects--;
			if (failure)
				W.res.failed++;
		} else if (!c->complete) {
			W.res.disconnected++;
		}
	}
	c->st = C_CLOSED;
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	epoll_ctl(W.ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_off = c->in_cap = 0;
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = c->out_cap = 0;
	free(c->body);
	c->body = NULL;
	c->body_len = c->body_cap = 0;
}

static bool read_in(struct conn *c)
{
	for (;;) {
		if (c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
		else if (c->in_off > 0 && c->in_cap - c->in_len < 4096) {
			memmove(c->in, c->in + c->in_off,
				c->in_len - c->in_off);
			c->in_len -= c->in_off;
			c->in_off = 0;
		}
		if (c->in_cap - c->in_len < 4096) {
			c->in_cap = c->in_cap ? c->in_cap * 2 : 16384;
			c->in = xrealloc(c->in, c->in_cap);
		}
		ssize_t n =
		    recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			if ((size_t)n < c->in_cap - c->in_len + (size_t)n)
				return true; /* short read: drained */
			continue;
		}
		if (n == 0)
			return false;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK;
	}
}

static void conn_update(struct conn *c)
{
	if (c->st == C_CLOSED)
		return;
	uint32_t ev = EPOLLIN;
	if (c->st == C_CONNECTING || c->out_off < c->out_len)
		ev |= EPOLLOUT;
	if (c->ws && wslay_event_want_write(c->ws))
		ev |= EPOLLOUT;
	conn_watch(c, ev);
}

static void conn_io(struct conn *c, uint32_t events)
{
	if (c->st == C_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			if (W.res.failed < 3)
				fprintf(stderr, "natter-bench: connect: %s\n",
					strerror(err));
			conn_close(c, true);
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLIN)))
			return;
		c->st = C_HANDSHAKE;
		if (c->is_pub && c->proto == P_HTTP) {
			c->st = C_OPEN;
			c->ready = true;
		} else if (!c->is_pub && O.mode == M_NCHAN &&
			   c->proto == P_POLL) {
			/* nchan answers a long-poll only with a message. */
			c->st = C_OPEN;
			c->ready = true;
			W.res.connected++;
			W.res.ready++;
			W.pending_connects--;
		}
	}
	if (!out_flush(c)) {
		conn_close(c, true);
		return;
	}
	if (c->ws) {
		c->drained = false;
		if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
		    wslay_event_recv(c->ws) != 0) {
			conn_close(c, true);
			return;
		}
		if (c->st == C_CLOSED)
			return;
		if (wslay_event_want_write(c->ws) &&
		    wslay_event_send(c->ws) != 0) {
			conn_close(c, true);
			return;
		}
		if (!wslay_event_want_read(c->ws) &&
		    !wslay_event_want_write(c->ws)) {
			conn_close(c, false);
			return;
		}
		conn_update(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		bool alive = read_in(c);
		if (!http_parse(c)) {
			conn_close(c, true);
			return;
		}
		if (c->st == C_CLOSED)
			return;
		if (c->ws) {
			/* Just upgraded: the rest of the input is wslay's. */
			if (c->in_off < c->in_len &&
			    wslay_event_recv(c->ws) != 0) {
				conn_close(c, true);
				return;
			}
		}
		if (!alive) {
			if (c->hr.st == H_BODY_EOF)
				on_done(c);
			conn_close(c, !c->complete);
			return;
		}
	}
	if (!out_flush(c)) {
		conn_close(c, true);
		return;
	}
	conn_update(c);
}

static struct conn *conn_open(int id, bool is_pub, enum proto proto)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->id = id;
	c->is_pub = is_pub;
	c->proto = proto;
	c->cursor = -1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->st = C_CLOSED;
		return c;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&W.addr, sizeof(W.addr)) < 0 &&
	    errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		c->st = C_CLOSED;
		return c;
	}
	c->st = C_CONNECTING;
	W.conns = xrealloc(W.conns, (W.nconns + 1) * sizeof(*W.conns));
	W.conns[W.nconns++] = c;
	conn_watch(c, EPOLLIN | EPOLLOUT);
	return c;
}

/* One round of the loop, waiting at most timeout_ms. */
static void loop_once(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(W.ep, evs, 256, timeout_ms);
	for (int i = 0; i < n; i++) {
		struct conn *c = evs[i].data.ptr;
		if (c->st != C_CLOSED)
			conn_io(c, evs[i].events);
	}
}

/* ---- worker: subscribers ---------------------------------------------------
 */

static void write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("pipe write: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

static bool read_full(int fd, void *p, size_t n)
{
	char *b = p;
	while (n) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

static enum proto sub_proto(long i)
{
	if (O.transport >= 0)
		return (enum proto)O.transport;
	return (enum proto)(i % 3);
}

static void compute_expected(void)
{
	W.expected = xcalloc((size_t)O.rooms, sizeof(*W.expected));
	if (O.mode == M_TORNADO) {
		W.expected[0] = (uint64_t)O.messages;
		return;
	}
	for (long g = 0; g < O.messages; g++)
		W.expected[g % O.rooms]++;
}

static void worker_main(long lo, long hi, int up, int down)
{
	int64_t t_end = now_ns() + (int64_t)(O.timeout_s * 1e9);
	W.ep = epoll_create1(EPOLL_CLOEXEC);
	struct conn *ctl = xcalloc(1, sizeof(*ctl)); /* data.ptr marker */
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = ctl};
	epoll_ctl(W.ep, EPOLL_CTL_ADD, down, &e);

	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if ((long)rl.rlim_cur < hi - lo + 32)
		W.res.fd_capped = 1;

	long next = lo;
	bool ready_sent = false, stop = false, pubdone = false;
	int64_t drain_end = 0;
	size_t nsubs = (size_t)(hi - lo);
	while (!stop) {
		/* Open more subscribers, a bounded number at a time. */
		while (next < hi && W.pending_connects < 256) {
			struct conn *c =
			    conn_open((int)next, false, sub_proto(next));
			long room = next % O.rooms;
			if (c->st == C_CLOSED) {
				W.res.failed++;
				if (errno == EMFILE || errno == ENFILE)
					W.res.fd_capped = 1;
				free(c);
				next++;
				continue;
			}
			c->room = (int)room;
			c->token = room_tokens ? room_tokens[room] : NULL;
			c->last = xmalloc((size_t)O.pubs * sizeof(*c->last));
			for (long p = 0; p < O.pubs; p++)
				c->last[p] = -1;
			if (W.expected[room] == 0 && !c->complete) {
				c->complete = true;
				W.nsubs_done++;
			}
			sub_request(c);
			W.pending_connects++;
			next++;
		}
		if (!ready_sent && next >= hi && W.pending_connects == 0 &&
		    W.res.ready + W.res.failed + W.res.disconnected >= nsubs) {
			struct ctl_msg m = {'R', W.res.connected, W.res.failed};
			write_all(up, &m, sizeof(m));
			ready_sent = true;
		}
		if (ready_sent && W.nsubs_done >= nsubs)
			break;
		if (now_ns() > t_end)
			break;
		if (pubdone && now_ns() > drain_end)
			break;

		struct epoll_event evs[256];
		int n = epoll_wait(W.ep, evs, 256, 50);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == ctl) {
				char b;
				if (read(down, &b, 1) != 1 || b == 'S')
					stop = true;
				else if (b == 'P') {
					pubdone = true;
					drain_end = now_ns() +
						    (int64_t)(O.drain_s * 1e9);
				}
				continue;
			}
			if (c->st != C_CLOSED)
				conn_io(c, evs[i].events);
		}
	}
	if (!ready_sent) {
		struct ctl_msg m = {'R', W.res.connected, W.res.failed};
		write_all(up, &m, sizeof(m));
	}
	/* Subscribers still connecting when time ran out never made it. */
	W.res.failed += W.pending_connects;
	/* Count what never arrived. */
	for (size_t i = 0; i < W.nconns; i++) {
		struct conn *c = W.conns[i];
		if (c->is_pub)
			continue;
		uint64_t want = W.expected[c->room];
		W.res.expected += want;
		if (c->inorder < want)
			W.res.lost += want - c->inorder;
	}
	/* Subscribers that failed to connect never got anything either. */
	struct ctl_msg m = {'D', W.res.connected, W.res.failed};
	write_all(up, &m, sizeof(m));
	write_all(up, &W.res, sizeof(W.res));
	/* Wait for the parent's stop so that connections stay open while it
	 * takes its last measurement. */
	if (!stop) {
		char b;
		while (read(down, &b, 1) == 1 && b != 'S')
			;
	}
	_exit(0);
}

/* ---- set-up over blocking HTTP ----------------------------------------------
 */

static int http_blocking(const char *method, const char *path,
			 const char *token, const char *body, char **resp)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&W.addr, sizeof(W.addr)) < 0) {
		close(fd);
		return -1;
	}
	char req[4096];
	int n =
	    snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\n",
		     method, path, O.host, O.port, body ? strlen(body) : 0);
	if (token)
		n += snprintf(req + n, sizeof(req) - (size_t)n,
			      "Authorization: Bearer %s\r\n", token);
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n%s",
		      body ? body : "");
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		return -1;
	}
	size_t cap = 8192, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			buf = xrealloc(buf, cap *= 2);
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		status = -1;
	char *b = strstr(buf, "\r\n\r\n");
	if (resp)
		*resp = strdup(b ? b + 4 : "");
	free(buf);
	return status;
}

struct setup_job {
	int kind; /* 0 register room user, 1 register publisher, 2 create
		   * room, 3 join publisher to room */
	long a, b;
};

static struct setup_job *jobs;
static size_t njobs;
static size_t next_job;
static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;
static char run_id[16];
static int setup_failed;

static char *register_user(const char *name)
{
	char body[256], *resp = NULL;
	snprintf(body, sizeof(body),
		 "{\"username\":\"%s\",\"password\":\"bench-password\"}", name);
	int st;
	/* 503 busy: natterd runs few password hashes at once (hash-max);
	 * parallel set-up threads wait their turn as a client would. */
	for (int tries = 0;; tries++) {
		st = http_blocking("POST", "/api/register", NULL, body, &resp);
		if (st != 503 || tries == 50)
			break;
		free(resp);
		resp = NULL;
		usleep(20000 + 10000 * (useconds_t)(tries % 8));
	}
	char *tok = NULL;
	if (st == 201) {
		json_t *j = json_loads(resp, 0, NULL);
		const char *t = json_string_value(json_object_get(j, "token"));
		tok = t ? strdup(t) : NULL;
		json_decref(j);
	}
	if (!tok)
		fprintf(stderr, "natter-bench: register %s: %d %.200s\n", name,
			st, resp ? resp : "");
	free(resp);
	return tok;
}

static void run_job(const struct setup_job *j)
{
	char name[64], path[256], body[256], *resp = NULL;
	int st;
	switch (j->kind) {
	case 0:
		snprintf(name, sizeof(name), "u%s-%ld", run_id, j->a);
		room_tokens[j->a] = register_user(name);
		if (!room_tokens[j->a])
			setup_failed = 1;
		break;
	case 1:
		snprintf(name, sizeof(name), "p%s-%ld", run_id, j->a);
		pub_tokens[j->a] = register_user(name);
		if (!pub_tokens[j->a])
			setup_failed = 1;
		break;
	case 2:
		snprintf(body, sizeof(body), "{\"name\":\"%s\"}",
			 room_names[j->a]);
		st = http_blocking("POST", "/api/rooms", room_tokens[j->a],
				   body, &resp);
		if (st != 201) {
			fprintf(stderr,
				"natter-bench: create room: %d %.200s\n", st,
				resp ? resp : "");
			setup_failed = 1;
		}
		break;
	case 3:
		snprintf(path, sizeof(path), "/api/rooms/%s/join",
			 room_names[j->b]);
		st = http_blocking("POST", path, pub_tokens[j->a], NULL, &resp);
		if (st != 200 && st != 201) {
			fprintf(stderr, "natter-bench: join: %d %.200s\n", st,
				resp ? resp : "");
			setup_failed = 1;
		}
		break;
	}
	free(resp);
}

static void *setup_thread(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&job_mu);
		size_t i = next_job < njobs ? next_job++ : njobs;
		pthread_mutex_unlock(&job_mu);
		if (i >= njobs || setup_failed)
			return NULL;
		run_job(&jobs[i]);
	}
}

static void run_jobs(void)
{
	pthread_t th[16];
	int nt = njobs < 16 ? (int)njobs : 16;
	next_job = 0;
	for (int i = 0; i < nt; i++)
		pthread_create(&th[i], NULL, setup_thread, NULL);
	for (int i = 0; i < nt; i++)
		pthread_join(th[i], NULL);
	free(jobs);
	jobs = NULL;
	njobs = 0;
	if (setup_failed)
		die("set-up failed");
}

static void add_job(int kind, long a, long b)
{
	jobs = xrealloc(jobs, (njobs + 1) * sizeof(*jobs));
	jobs[njobs++] = (struct setup_job){kind, a, b};
}

static void setup(void)
{
	uint32_t r;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint32_t)getpid();
	snprintf(run_id, sizeof(run_id), "%06x", r & 0xffffff);
	room_names = xcalloc((size_t)O.rooms, sizeof(*room_names));
	for (long i = 0; i < O.rooms; i++) {
		char n[64];
		snprintf(n, sizeof(n), "b%s-%ld", run_id, i);
		room_names[i] = strdup(n);
	}
	if (O.mode != M_NATTER)
		return;
	if (O.prefix[0])
		die("natter mode expects --url without a path");
	room_tokens = xcalloc((size_t)O.rooms, sizeof(*room_tokens));
	pub_tokens = xcalloc((size_t)O.pubs, sizeof(*pub_tokens));
	/* Only rooms that get messages or subscribers need a user. */
	for (long i = 0; i < O.rooms; i++)
		add_job(0, i, 0);
	for (long p = 0; p < O.pubs; p++)
		add_job(1, p, 0);
	run_jobs();
	for (long i = 0; i < O.rooms; i++)
		add_job(2, i, 0);
	run_jobs();
	/* A publisher joins exactly the rooms it will send to. */
	bool *mark = xcalloc((size_t)O.rooms, sizeof(*mark));
	for (long p = 0; p < O.pubs; p++) {
		memset(mark, 0, (size_t)O.rooms * sizeof(*mark));
		for (long g = p; g < O.messages; g += O.pubs)
			mark[g % O.rooms] = true;
		if (O.messages == 0)
			mark[p % O.rooms] = true;
		for (long i = 0; i < O.rooms; i++)
			if (mark[i])
				add_job(3, p, i);
	}
	free(mark);
	run_jobs();
}

/* ---- parent: publishers ----------------------------------------------------
 */

static void pub_send_one(struct conn *c)
{
	char text[65536], msg[66000];
	long g = c->next_g;
	int room = O.mode == M_TORNADO ? 0 : (int)(g % O.rooms);
	uint32_t seq =
	    W.pub_seq[(size_t)c->id * (size_t)O.rooms + (size_t)room]++;
	int tl = make_text(text, sizeof(text), c->id, seq);
	c->next_g += O.pubs;
	c->sent++;
	c->inflight++;
	W.pub_sent++;
	if (c->proto == P_WS) {
		int ml;
		if (O.mode == M_NATTER)
			ml = snprintf(msg, sizeof(msg),
				      "{\"op\":\"send\",\"room\":\"%s\","
				      "\"text\":\"%s\"}",
				      room_names[room], text);
		else
			ml = snprintf(msg, sizeof(msg), "%s", text);
		struct wslay_event_msg m = {WSLAY_TEXT_FRAME,
					    (const uint8_t *)msg, (size_t)ml};
		wslay_event_queue_msg(c->ws, &m);
		return;
	}
	/* HTTP POST */
	if (O.mode == M_NATTER) {
		int bl = snprintf(msg, sizeof(msg), "{\"text\":\"%s\"}", text);
		out_printf(
		    c,
		    "POST %s/api/rooms/%s/messages HTTP/1.1\r\n"
		    "Host: %s:%d\r\nContent-Type: application/json\r\n"
		    "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		    O.prefix, room_names[room], O.host, O.port,
		    pub_tokens[c->id], bl);
		out_append(c, msg, (size_t)bl);
	} else {
		char path[600];
		/* --publish-url: a path whose "%s" stands for the channel */
		const char *pu =
		    O.publish_url[0] ? O.publish_url : "/pub?id=%s";
		const char *hole = strstr(pu, "%s");
		if (hole)
			snprintf(path, sizeof(path), "%.*s%s%s",
				 (int)(hole - pu), pu, room_names[room],
				 hole + 2);
		else
			snprintf(path, sizeof(path), "%s", pu);
		out_printf(
		    c,
		    "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
		    "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n",
		    path, O.host, O.port, tl);
		out_append(c, text, (size_t)tl);
	}
}

static long pub_quota(int p)
{
	/* messages g with g % P == p, g < M */
	if (p >= O.messages)
		return 0;
	return (O.messages - 1 - p) / O.pubs + 1;
}

/* Send what the rate and window allow; returns ms until the next send is
 * due (or 1000 if none is waiting for time). */
static int pubs_pump(struct conn **pubs, int64_t t0)
{
	int64_t now = now_ns(), wait = 1000000000;
	long window = pubs[0]->proto == P_HTTP ? 1 : O.window;
	for (long p = 0; p < O.pubs; p++) {
		struct conn *c = pubs[p];
		if (c->st == C_CLOSED)
			continue;
		long quota = pub_quota((int)p);
		bool any = false;
		while ((long)c->sent < quota && (long)c->inflight < window) {
			if (O.rate > 0) {
				/* message k of this publisher is due at
				 * t0 + k * P / R */
				int64_t due =
				    t0 + (int64_t)((double)c->sent * O.pubs /
						   O.rate * 1e9);
				if (due > now) {
					if (due - now < wait)
						wait = due - now;
					break;
				}
			}
			pub_send_one(c);
			any = true;
		}
		if (any) {
			if (c->ws && wslay_event_send(c->ws) != 0)
				conn_close(c, true);
			else if (!c->ws && !out_flush(c))
				conn_close(c, true);
			conn_update(c);
		}
	}
	int ms = (int)(wait / 1000000);
	return ms < 1 && wait < 1000000000 ? (wait > 0 ? 1 : 0) : ms;
}

/* ---- /proc -----------------------------------------------------------------
 */

struct srv_sample {
	double cpu_s;
	long rss_kib, hwm_kib;
	bool ok;
};

static void sample_server(struct srv_sample *s)
{
	*s = (struct srv_sample){0};
	if (!O.server_pids[0])
		return;
	char list[256];
	snprintf(list, sizeof(list), "%s", O.server_pids);
	long tck = sysconf(_SC_CLK_TCK);
	char *save = NULL;
	s->ok = true;
	for (char *tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char path[64], buf[4096];
		snprintf(path, sizeof(path), "/proc/%s/stat", tok);
		FILE *f = fopen(path, "r");
		if (!f) {
			s->ok = false;
			continue;
		}
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *p = strrchr(buf, ')');
		unsigned long ut = 0, st = 0;
		if (p && sscanf(p + 2,
				"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
				"%lu %lu",
				&ut, &st) == 2)
			s->cpu_s += (double)(ut + st) / (double)tck;
		snprintf(path, sizeof(path), "/proc/%s/status", tok);
		f = fopen(path, "r");
		if (!f)
			continue;
		char line[256];
		while (fgets(line, sizeof(line), f)) {
			long v;
			if (sscanf(line, "VmHWM: %ld", &v) == 1)
				s->hwm_kib += v;
			else if (sscanf(line, "VmRSS: %ld", &v) == 1)
				s->rss_kib += v;
		}
		fclose(f);
	}
}

/* ---- main
 * -------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: natter-bench --url http://127.0.0.1:PORT[/PREFIX]\n"
	    "  [--mode natter|nchan|tornado] [--transport ws|sse|poll|mix]\n"
	    "  [--subs N] [--rooms K] [--pubs P] [--messages M] [--rate R]\n"
	    "  [--size BYTES] [--procs J] [--server-pid PID[,PID...]]\n"
	    "  [--publish-url PATH-FORMAT] [--publish-via ws|http]\n"
	    "  [--window W] [--idle] [--hold S] [--timeout S] [--drain S]\n"
	    "  [--json] [--label TEXT] [--markdown]\n");
	exit(2);
}

static int parse_proto(const char *s)
{
	if (!strcmp(s, "ws"))
		return P_WS;
	if (!strcmp(s, "sse"))
		return P_SSE;
	if (!strcmp(s, "poll"))
		return P_POLL;
	if (!strcmp(s, "http"))
		return P_HTTP;
	if (!strcmp(s, "mix"))
		return -1;
	die("unknown transport '%s'", s);
	return 0;
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"url", 1, 0, 'u'},
	    {"transport", 1, 0, 't'},
	    {"subs", 1, 0, 'n'},
	    {"rooms", 1, 0, 'k'},
	    {"pubs", 1, 0, 'p'},
	    {"messages", 1, 0, 'm'},
	    {"rate", 1, 0, 'r'},
	    {"size", 1, 0, 's'},
	    {"procs", 1, 0, 'j'},
	    {"server-pid", 1, 0, 'S'},
	    {"publish-url", 1, 0, 'U'},
	    {"mode", 1, 0, 'M'},
	    {"idle", 0, 0, 'i'},
	    {"json", 0, 0, 'J'},
	    {"publish-via", 1, 0, 'V'},
	    {"window", 1, 0, 'w'},
	    {"hold", 1, 0, 'H'},
	    {"timeout", 1, 0, 'T'},
	    {"drain", 1, 0, 'D'},
	    {"label", 1, 0, 'L'},
	    {"help", 0, 0, 'h'},
	    {"markdown", 0, 0, 'F'},
	    {0, 0, 0, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'u':
			parse_url(optarg, O.host, sizeof(O.host), &O.port,
				  O.prefix, sizeof(O.prefix));
			if (O.prefix[0] &&
			    O.prefix[strlen(O.prefix) - 1] == '/')
				O.prefix[strlen(O.prefix) - 1] = '\0';
			break;
		case 't':
			O.transport = parse_proto(optarg);
			break;
		case 'n':
			O.subs = atol(optarg);
			break;
		case 'k':
			O.rooms = atol(optarg);
			break;
		case 'p':
			O.pubs = atol(optarg);
			break;
		case 'm':
			O.messages = atol(optarg);
			break;
		case 'r':
			O.rate = atof(optarg);
			break;
		case 's':
			O.size = atol(optarg);
			break;
		case 'F':
			O.markdown = true;
			break;
		case 'j':
			O.procs = atoi(optarg);
			break;
		case 'S':
			snprintf(O.server_pids, sizeof(O.server_pids), "%s",
				 optarg);
			break;
		case 'U':
			snprintf(O.publish_url, sizeof(O.publish_url), "%s",
				 optarg);
			break;
		case 'M':
			if (!strcmp(optarg, "natter"))
				O.mode = M_NATTER;
			else if (!strcmp(optarg, "nchan"))
				O.mode = M_NCHAN;
			else if (!strcmp(optarg, "tornado"))
				O.mode = M_TORNADO;
			else
				die("unknown mode '%s'", optarg);
			break;
		case 'i':
			O.idle = true;
			break;
		case 'J':
			O.json = true;
			break;
		case 'V':
			O.publish_via = parse_proto(optarg);
			break;
		case 'w':
			O.window = atol(optarg);
			break;
		case 'H':
			O.hold_s = atof(optarg);
			break;
		case 'T':
			O.timeout_s = atof(optarg);
			break;
		case 'D':
			O.drain_s = atof(optarg);
			break;
		case 'L':
			snprintf(O.label, sizeof(O.label), "%s", optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (O.subs < 0 || O.rooms < 1 || O.pubs < 1 || O.messages < 0 ||
	    O.size < 0 || O.size > 60000 || O.procs < 1 || O.procs > 64 ||
	    O.window < 1)
		die("bad numbers (subs>=0, rooms>=1, pubs>=1, procs 1-64, "
		    "size <= 60000)");
	if (O.mode == M_TORNADO) {
		O.rooms = 1;
		if (O.transport != P_WS)
			die("the Tornado server speaks WebSocket only");
		O.publish_via = P_WS;
	}
	if (O.mode == M_NCHAN)
		O.publish_via = P_HTTP;
	if (O.publish_via < 0)
		O.publish_via = P_WS;
	if (O.publish_via != P_WS && O.publish_via != P_HTTP)
		die("--publish-via is ws or http");
	if (O.idle)
		O.messages = 0;
}

static void pct(const uint64_t *h, uint64_t total, double q, double *out)
{
	if (!total) {
		*out = 0;
		return;
	}
	uint64_t want = (uint64_t)ceil(q * (double)total), acc = 0;
	for (unsigned i = 0; i < HB_N; i++) {
		acc += h[i];
		if (acc >= want) {
			*out = (double)hist_val(i) / 1000.0;
			return;
		}
	}
	*out = 0;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);

	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	long fdlim = (long)rl.rlim_cur;
	/* Each worker needs its share plus a few; split further if not. */
	int procs = O.procs;
	bool split = false;
	while (O.subs / procs + 64 > fdlim && procs < 64) {
		procs++;
		split = true;
	}
	if (split)
		fprintf(stderr,
			"natter-bench: %ld subscribers exceed one process's "
			"descriptor limit (%ld): using %d processes\n",
			O.subs, fdlim, procs);
	O.procs = procs;
	bool fd_capped_pub = O.pubs + 64 > fdlim;
	if (fd_capped_pub)
		die("%ld publishers exceed the descriptor limit %ld", O.pubs,
		    fdlim);

	W.addr.sin_family = AF_INET;
	W.addr.sin_port = htons((uint16_t)O.port);
	if (inet_pton(AF_INET, O.host, &W.addr.sin_addr) != 1)
		die("--url host must be a numeric IPv4 address");

	int64_t t_setup = now_ns();
	setup();
	double setup_s = (double)(now_ns() - t_setup) / 1e9;
	compute_expected();

	struct srv_sample s_empty, s_conn, s_start, s_end;
	sample_server(&s_empty);

	/* Fork the workers. */
	int *up = xcalloc((size_t)O.procs, sizeof(int));
	int *down = xcalloc((size_t)O.procs, sizeof(int));
	pid_t *pids = xcalloc((size_t)O.procs, sizeof(pid_t));
	fflush(stdout);
	fflush(stderr);
	for (int j = 0; j < O.procs; j++) {
		int u[2], d[2];
		if (pipe2(u, O_CLOEXEC) < 0 || pipe2(d, O_CLOEXEC) < 0)
			die("pipe: %s", strerror(errno));
		long lo = O.subs * j / O.procs, hi = O.subs * (j + 1) / O.procs;
		pid_t pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			close(u[0]);
			close(d[1]);
			for (int k = 0; k < j; k++) {
				close(up[k]);
				close(down[k]);
			}
			worker_main(lo, hi, u[1], d[0]);
		}
		close(u[1]);
		close(d[0]);
		up[j] = u[0];
		down[j] = d[1];
		pids[j] = pid;
	}

	/* Wait for every worker's subscribers. */
	uint64_t connected = 0, failed = 0;
	for (int j = 0; j < O.procs; j++) {
		struct ctl_msg m;
		if (!read_full(up[j], &m, sizeof(m)) || m.type != 'R')
			die("worker %d died before it was ready", j);
		connected += m.connected;
		failed += m.failed;
	}
	int64_t t_ready = now_ns();
	/* Subscriptions the server cannot confirm (nchan long-poll,
	 * Tornado's open()) get a moment to settle. */
	if (O.mode != M_NATTER)
		usleep(O.transport == P_POLL || O.transport < 0 ? 1000000
								: 200000);
	if (O.idle)
		usleep((useconds_t)(O.hold_s * 1e6));
	sample_server(&s_conn);

	/* Publishers. */
	W.ep = epoll_create1(EPOLL_CLOEXEC);
	W.pub_seq = xcalloc((size_t)O.pubs * (size_t)O.rooms, sizeof(uint32_t));
	struct conn **pubs = xcalloc((size_t)O.pubs, sizeof(*pubs));
	int64_t t0 = 0, t_pub_end = 0;
	if (!O.idle && O.messages > 0) {
		for (long p = 0; p < O.pubs; p++) {
			struct conn *c =
			    conn_open((int)p, true, (enum proto)O.publish_via);
			if (c->st == C_CLOSED)
				die("cannot open publisher %ld: %s", p,
				    strerror(errno));
			c->next_g = p;
			if (c->proto == P_WS) {
				char path[300];
				if (O.mode == M_NATTER)
					snprintf(path, sizeof(path), "%s/ws",
						 O.prefix);
				else
					snprintf(path, sizeof(path), "%s",
						 O.prefix[0] ? O.prefix : "/");
				ws_request(c, path,
					   O.mode == M_NATTER ? pub_tokens[p]
							      : NULL);
			}
			pubs[p] = c;
		}
		int64_t dl = now_ns() + 10000000000LL;
		for (;;) {
			long r = 0;
			for (long p = 0; p < O.pubs; p++)
				r += pubs[p]->ready;
			if (r == O.pubs)
				break;
			if (now_ns() > dl)
				die("publishers did not connect");
			loop_once(50);
		}
		/* natter queues a hello first on a publisher's WebSocket;
		 * let it arrive before we count acks. */
		for (int i = 0; i < 4; i++)
			loop_once(10);
		sample_server(&s_start);
		t0 = now_ns();
		int64_t t_limit = t0 + (int64_t)(O.timeout_s * 1e9);
		for (;;) {
			int ms = pubs_pump(pubs, t0);
			bool done =
			    W.pub_acked + W.pub_errors >= (uint64_t)O.messages;
			long open = 0;
			for (long p = 0; p < O.pubs; p++)
				open += pubs[p]->st != C_CLOSED;
			if (done || !open || now_ns() > t_limit)
				break;
			loop_once(ms > 50 ? 50 : ms);
		}
		t_pub_end = now_ns();
	} else {
		sample_server(&s_start);
		t0 = now_ns();
	}
	for (int j = 0; j < O.procs; j++)
		write_all(down[j], "P", 1);

	/* Results. */
	struct wres tot = {0};
	for (int j = 0; j < O.procs; j++) {
		struct ctl_msg m;
		struct wres r;
		if (!read_full(up[j], &m, sizeof(m)) || m.type != 'D' ||
		    !read_full(up[j], &r, sizeof(r)))
			die("worker %d died", j);
		tot.connected += r.connected;
		tot.failed += r.failed;
		tot.ready += r.ready;
		tot.inorder += r.inorder;
		tot.dup += r.dup;
		tot.reorder += r.reorder;
		tot.lost += r.lost;
		tot.expected += r.expected;
		tot.disconnected += r.disconnected;
		tot.other += r.other;
		tot.fd_capped |= r.fd_capped;
		if (r.first_rx && (!tot.first_rx || r.first_rx < tot.first_rx))
			tot.first_rx = r.first_rx;
		if (r.last_rx > tot.last_rx)
			tot.last_rx = r.last_rx;
		if (r.max_us > tot.max_us)
			tot.max_us = r.max_us;
		for (unsigned i = 0; i < HB_N; i++)
			tot.hist[i] += r.hist[i];
	}
	sample_server(&s_end);
	for (int j = 0; j < O.procs; j++)
		write_all(down[j], "S", 1);
	for (int j = 0; j < O.procs; j++)
		waitpid(pids[j], NULL, 0);

	/* Subscribers that failed to connect lose everything. */
	uint64_t notconn = (uint64_t)O.subs - tot.connected;
	(void)notconn;
	double pub_s = (double)((t_pub_end ? t_pub_end : now_ns()) - t0) / 1e9;
	double deliv_s =
	    tot.last_rx > t0 ? (double)(tot.last_rx - t0) / 1e9 : 0;
	double dps = deliv_s > 0 ? (double)tot.inorder / deliv_s : 0;
	double cpu = s_end.cpu_s - s_start.cpu_s;
	double dpc = cpu > 0 ? (double)tot.inorder / cpu : 0;
	double p50, p99, p999;
	pct(tot.hist, tot.inorder, 0.50, &p50);
	pct(tot.hist, tot.inorder, 0.99, &p99);
	pct(tot.hist, tot.inorder, 0.999, &p999);
	double maxms = (double)tot.max_us / 1000.0;
	double rss_per_conn = tot.connected && s_empty.ok
				  ? (double)(s_conn.rss_kib - s_empty.rss_kib) *
					1024.0 / (double)tot.connected
				  : 0;
	double sends_s = pub_s > 0 ? (double)W.pub_acked / pub_s : 0;
	bool clean = tot.lost == 0 && tot.dup == 0 && tot.reorder == 0 &&
		     W.pub_errors == 0 && tot.failed == 0 &&
		     tot.connected == (uint64_t)O.subs &&
		     (O.idle || W.pub_acked == (uint64_t)O.messages);
	const char *tname = O.transport < 0 ? "mix" : proto_name[O.transport];

	if (!O.json) {
		printf(
		    "natter-bench %s: mode=%s transport=%s subs=%ld rooms=%ld "
		    "pubs=%ld (via %s, window %ld) messages=%ld rate=%g "
		    "size=%ld procs=%d\n",
		    O.label, mode_name[O.mode], tname, O.subs, O.rooms, O.pubs,
		    proto_name[O.publish_via], O.window, O.messages, O.rate,
		    O.size, O.procs);
		printf("  set-up             %8.2f s\n", setup_s);
		printf(
		    "  connected          %8" PRIu64 " of %ld (failed %" PRIu64
		    ", dropped %" PRIu64 ") in %.2f s%s\n",
		    tot.connected, O.subs, tot.failed, tot.disconnected,
		    (double)(t_ready - t_setup) / 1e9 - setup_s,
		    tot.fd_capped ? "  [CAPPED by the descriptor limit]" : "");
		if (!O.idle) {
			printf("  published          %8" PRIu64
			       " acked, %" PRIu64
			       " errors in %.2f s (%.0f acked/s)\n",
			       W.pub_acked, W.pub_errors, pub_s, sends_s);
			printf("  deliveries         %8" PRIu64 " of %" PRIu64
			       " in %.2f s = %.0f /s\n",
			       tot.inorder, tot.expected, deliv_s, dps);
			printf("  latency ms         p50 %.2f  p99 %.2f  p99.9 "
			       "%.2f  "
			       "max %.2f\n",
			       p50, p99, p999, maxms);
			printf("  lost/dup/reordered %" PRIu64 " / %" PRIu64
			       " / %" PRIu64 "\n",
			       tot.lost, tot.dup, tot.reorder);
		}
		if (O.server_pids[0]) {
			printf("  server CPU         %8.2f s", cpu);
			if (!O.idle)
				printf("  -> %.0f deliveries per CPU-second",
				       dpc);
			printf(
			    "\n  server RSS         empty %.1f MiB, connected "
			    "%.1f MiB, peak %.1f MiB, %.0f B/connection\n",
			    s_empty.rss_kib / 1024.0, s_conn.rss_kib / 1024.0,
			    s_end.hwm_kib / 1024.0, rss_per_conn);
		}
		printf("  result             %s\n", clean ? "OK" : "NOT CLEAN");
	}
	printf("{\"label\":\"%s\",\"mode\":\"%s\",\"transport\":\"%s\","
	       "\"subs\":%ld,\"rooms\":%ld,\"pubs\":%ld,\"publish_via\":\"%s\","
	       "\"window\":%ld,\"messages\":%ld,\"rate\":%g,\"size\":%ld,"
	       "\"procs\":%d,\"connected\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"disconnected\":%" PRIu64 ",\"fd_capped\":%s,"
	       "\"acked\":%" PRIu64 ",\"send_errors\":%" PRIu64
	       ",\"publish_s\":%.3f,\"sends_per_s\":%.0f,"
	       "\"deliveries\":%" PRIu64 ",\"expected\":%" PRIu64
	       ",\"delivery_s\":%.3f,\"deliveries_per_s\":%.0f,"
	       "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
	       "\"max_ms\":%.3f,\"lost\":%" PRIu64 ",\"dup\":%" PRIu64
	       ",\"reordered\":%" PRIu64 ",\"server_cpu_s\":%.3f,"
	       "\"deliveries_per_cpu_s\":%.0f,\"rss_empty_kib\":%ld,"
	       "\"rss_connected_kib\":%ld,\"peak_rss_kib\":%ld,"
	       "\"rss_per_conn_b\":%.0f,\"ok\":%s}\n",
	       O.label, mode_name[O.mode], tname, O.subs, O.rooms, O.pubs,
	       proto_name[O.publish_via], O.window, O.messages, O.rate, O.size,
	       O.procs, tot.connected, tot.failed, tot.disconnected,
	       tot.fd_capped ? "true" : "false", W.pub_acked, W.pub_errors,
	       pub_s, sends_s, tot.inorder, tot.expected, deliv_s, dps, p50,
	       p99, p999, maxms, tot.lost, tot.dup, tot.reorder, cpu, dpc,
	       s_empty.rss_kib, s_conn.rss_kib, s_end.hwm_kib, rss_per_conn,
	       clean ? "true" : "false");
	free(up);
	free(down);
	free(pids);
	free(W.pub_seq);
	free(pubs);
	return clean ? 0 : 1;
}
