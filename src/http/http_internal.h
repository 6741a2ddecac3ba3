/* http_internal: what http.c (daemons, limits, the route table) and
 * streams.c (the stream endpoints: /ws, /events, /poll) share: struct
 * http, the per-connection context, and the functions each calls in the
 * other. Internal to http: no other file includes it; the interface is
 * http/http.h. */
#ifndef NATTER_HTTP_INTERNAL_H
#define NATTER_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>

#include <microhttpd.h>

#include "http/deadline.h"
#include "http/request.h"
#include "net/tls.h"
#include "util/histo.h"

struct http {
	struct server *srv;
	struct MHD_Daemon *daemons[CONFIG_MAX_LISTEN];
	unsigned ndaemons;
	char *web_root; /* resolved, no trailing slash */
	unsigned max_streams;
	unsigned conn_limit;  /* libmicrohttpd's, per daemon */
	unsigned close_mark;  /* from here on, new connections are closed */
	unsigned busy_mark;   /* from here on, requests get 503 busy */
	atomic_uint conns;    /* connections libmicrohttpd holds, all daemons */
	atomic_int suspended; /* requests waiting for an async command */
	atomic_bool closing;  /* set by http_quiesce: no new streams */
	/* TLS: the daemon behind the terminator, and http-redirect. */
	struct MHD_Daemon *tls_daemon;
	const char *tls_hsts;	   /* HSTS for TLS connections; NULL: none */
	struct deadline *deadline; /* header and body deadlines */
	char hsts[32];
	atomic_uint https_port; /* redirect target; 0 until known */
	/* TLS connections handed over, until libmicrohttpd starts them
	 * (on_tls_notify takes each one's byte count by its descriptor) */
	pthread_mutex_t pend_mu;
	struct tls_pending *pending;
	/* metrics-listen: a daemon answering /metrics only; NULL: /metrics
	 * is served on the ordinary listeners */
	struct MHD_Daemon *metrics_daemon;
	/* request durations by route row (index + 1; 0: no route matched) */
	struct histo *route_hist;
};

/* Every connection's libmicrohttpd socket context (on_notify). reply
 * reads reply (HSTS on TLS connections); the deadline checker the rest. */
struct http_conn {
	struct reply_conn reply; /* first: reply_queue casts to it */
	bool tls;
	struct tls_rx *rx; /* TLS: the terminator's byte count (a reference) */
	struct deadline_conn dl;
	/* counted under connections-per-address (addr: the client's, also
	 * for TLS); over: beyond the cap, its request is answered 429 */
	bool counted, over;
	char addr[64];
};

struct http_conn *conn_of(struct MHD_Connection *c);

/* conns.c: a client address as text ("" when it has none), and the
 * libmicrohttpd connection notifications of the plain and TLS daemons. */
void conn_addr_text(const struct sockaddr *sa, char *out, size_t len);
/* At http_stop: drop TLS connections handed over but never started. */
void conns_pending_free(struct http *h);
void on_notify(void *cls, struct MHD_Connection *c, void **socket_context,
	       enum MHD_ConnectionNotificationCode toe);
void on_tls_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		   enum MHD_ConnectionNotificationCode toe);

enum MHD_Result serve_ws(struct request *req);

enum MHD_Result serve_sse(struct request *req);

/* 503 busy, counted; close: also end the connection (at the connection
 * limit, where the slot itself is what is short). */
enum MHD_Result answer_busy(struct request *req, bool close);

/* A slot of the server's, the user's and the address's stream caps,
 * reserved atomically: 0, or -1 after answering 503 busy (the server's)
 * or 429 too_many_streams with Retry-After (counted). */
int stream_slot(struct request *req, enum MHD_Result *ret);

enum MHD_Result serve_poll(struct request *req);

/* metrics.c: GET /metrics, and the metrics-listen daemon (0, or -1 with
 * a message in err). */
enum MHD_Result serve_metrics(struct request *req);
int http_metrics_start(struct http *h, char *err, size_t errlen);

/* http.c's route table (n rows), and the daemons' callbacks that the
 * metrics daemon shares. */
struct route;
const struct route *http_routes(size_t *n);
void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
		       enum MHD_RequestTerminationCode toe);
void http_on_mhd_log(void *cls, const char *fmt, va_list ap);

#endif
