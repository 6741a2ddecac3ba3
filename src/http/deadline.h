/* deadline: time limits on reading a request, which libmicrohttpd's idle
 * timeout cannot give (it restarts on every byte, so a client trickling
 * one header byte every few seconds holds its connection forever:
 * slowloris). Two rules:
 *   - headers: a connection must complete a request's headers within
 *     header_ms of opening, or, on a keep-alive connection, of the first
 *     byte of its next request (on TCP, the kernel's count of received
 *     bytes tells; on the TLS terminator's socketpairs, the count the
 *     terminator keeps, deadline_conn_counter; where neither can, of the
 *     end of the previous request, so an idle one is closed then). An
 *     idle keep-alive connection is left to libmicrohttpd's connection
 *     timeout;
 *   - body: once header_ms has passed since the headers, the body must
 *     have arrived at min_rate bytes a second on average, or it is cut.
 * While a request is being answered (a handler running, a suspended
 * long-poll, an SSE stream, an upgraded WebSocket) no rule applies.
 *
 * http.c embeds a struct deadline_conn in each connection's context and
 * reports its phases; a thread owned here checks every connection twice
 * a second and closes offenders with shutdown(2) on their socket (the
 * descriptor stays libmicrohttpd's: it sees end-of-stream and closes the
 * connection itself, so nothing is closed twice). It knows nothing of
 * HTTP beyond the phases.
 *
 * Threads: deadline_conn_* may be called from any libmicrohttpd worker;
 * one mutex guards the list and every phase change. deadline_conn_remove
 * must run before the socket is closed (libmicrohttpd's
 * MHD_CONNECTION_NOTIFY_CLOSED comes first): after it returns the checker
 * never touches that descriptor again. */
#ifndef NATTER_DEADLINE_H
#define NATTER_DEADLINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum deadline_phase {
	DEADLINE_HEADERS, /* waiting for a request's headers */
	DEADLINE_BODY,	  /* reading a request's body */
	DEADLINE_BUSY,	  /* being answered: no rule applies */
	DEADLINE_EXEMPT,  /* upgraded, or closed by the checker: for good */
};

/* What the rules say about one connection. */
enum deadline_verdict {
	DEADLINE_OK,
	DEADLINE_SLOW_HEADERS,
	DEADLINE_SLOW_BODY,
};

struct deadline_rules {
	int64_t header_ms; /* > 0 */
	uint64_t min_rate; /* body bytes a second; 0: no body rule */
};

/* Embedded in its owner; the fields are private to deadline.c. */
struct deadline_conn {
	struct deadline_conn *prev, *next;
	int fd;
	enum deadline_phase phase;
	int64_t since_ms; /* start of the phase (monotonic) */
	uint64_t bytes;	  /* DEADLINE_BODY: received so far */
	int64_t idle_rx;  /* between requests: the socket's received bytes
			     when the last one ended; -1: not idle */
	/* where the received bytes are counted when not by the kernel
	 * (deadline_conn_counter); NULL: TCP_INFO */
	const atomic_uint_fast64_t *rx_count;
	bool listed;
};

struct deadline;

/* Pure: the verdict for a connection in phase since since_ms with bytes
 * of body, at now_ms. */
enum deadline_verdict deadline_judge(const struct deadline_rules *r,
				     enum deadline_phase phase,
				     int64_t since_ms, uint64_t bytes,
				     int64_t now_ms);

/* A checker with rules r; it bumps *slow_headers and *slow_body for each
 * connection it closes (borrowed, must outlive it). Starts its thread.
 * Caller frees with deadline_free, which stops the thread. */
struct deadline *deadline_new(const struct deadline_rules *r,
			      atomic_uint_fast64_t *slow_headers,
			      atomic_uint_fast64_t *slow_body);
void deadline_free(struct deadline *d);
/* Check every connection once now (what the thread does twice a second);
 * returns how many it closed. */
unsigned deadline_sweep(struct deadline *d, int64_t now_ms);

/* --- one connection's phases --- */

/* A new connection on socket fd: waiting for its first headers. */
void deadline_conn_add(struct deadline *d, struct deadline_conn *dc, int fd);
/* The connection's received bytes are counted at *rx (borrowed: it must
 * stay valid until deadline_conn_remove), not by the kernel: the TLS
 * terminator's socketpairs, whose count tls_pump keeps. Then an idle
 * keep-alive connection's header deadline also starts only at the first
 * byte of its next request. */
void deadline_conn_counter(struct deadline *d, struct deadline_conn *dc,
			   const atomic_uint_fast64_t *rx);
/* Before its socket is closed: forget it. */
void deadline_conn_remove(struct deadline *d, struct deadline_conn *dc);
/* Headers complete; body expected says whether a body follows. */
void deadline_conn_headers(struct deadline *d, struct deadline_conn *dc,
			   bool body_expected);
/* n more body bytes arrived. */
void deadline_conn_body(struct deadline *d, struct deadline_conn *dc,
			uint64_t n);
/* The request is being answered. */
void deadline_conn_busy(struct deadline *d, struct deadline_conn *dc);
/* The request is finished: the next one's headers are awaited. */
void deadline_conn_idle(struct deadline *d, struct deadline_conn *dc);
/* The connection was upgraded (WebSocket): no rule applies any more. */
void deadline_conn_exempt(struct deadline *d, struct deadline_conn *dc);

#endif
