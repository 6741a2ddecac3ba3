/* http: the libmicrohttpd daemons, routing, per-request context, the JSON
 * API handlers, static files from the web root, authentication of every
 * request (session cookie or Authorization: Bearer), the CSRF and Origin
 * checks, and the access log. It hands /ws, /events and /poll to their
 * transport once the client is authenticated, and forgets them. */
#ifndef NATTER_HTTP_H
#define NATTER_HTTP_H

#include <sys/socket.h>

#include "http/server.h"
#include "net/tls.h"

struct http;

/* Start listening on every cfg->listen address. NULL on failure with a
 * message in err naming the address and the reason. */
struct http *http_start(struct server *srv, char *err, size_t errlen);
/* Stop accepting new connections (first step of shutdown). */
void http_quiesce(struct http *h);
/* Stop the daemons; NULL is fine. */
void http_stop(struct http *h);

/* TLS (when cfg->ntls_listen > 0). A tls_handoff_fn: serve fd, the
 * decrypted end of a socketpair (ownership passes in every case), as a
 * connection from addr; arg is the struct http. 0, or -1 when refused
 * (connection limit). rx (a reference, taken over in every case) counts
 * the bytes the terminator hands over, for the header deadline. Until
 * http_stop. */
int http_tls_add(void *arg, int fd, const struct sockaddr *addr,
		 socklen_t addrlen, struct tls_rx *rx);
/* The HTTPS port that http-redirect sends plain requests to; until it is
 * set, plain requests are served. */
void http_set_https_port(struct http *h, unsigned port);

#endif
