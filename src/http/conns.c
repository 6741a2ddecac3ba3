/* conns: each libmicrohttpd connection's context from start to close
 * (struct http_conn): its deadline watch, its count under
 * connections-per-address by the client's address (a TLS one's real
 * address, handed over with its socketpair), and the TLS terminator's
 * byte count, matched to the connection by descriptor between
 * http_tls_add and libmicrohttpd starting it. Shares struct http with
 * http.c through http/http_internal.h.
 *
 * It deliberately does not do: accept policy, limits on requests, or
 * routing (http.c). */
#include <arpa/inet.h>
#include <stdlib.h>

#include "http/http.h"
#include "http/http_internal.h"
#include "util/util.h"

/* A client address as text ("" when it has none). */
void conn_addr_text(const struct sockaddr *sa, char *out, size_t len)
{
	out[0] = '\0';
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  out, (socklen_t)len);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)len);
}

/* connections-per-address: count a new connection under its client's
 * address. libmicrohttpd's own MHD_OPTION_PER_IP_CONNECTION_LIMIT closes
 * the connections over it unanswered, and on the TLS daemon it would
 * count whatever address the terminator handed over; natter counts here,
 * where a TLS connection carries its client's real address
 * (http_tls_add), and answers the ones over the cap with a 429 the client
 * understands (on_request). */
static void conn_count(struct http *h, struct MHD_Connection *c,
		       struct http_conn *hc)
{
	unsigned cap = h->srv->cfg->connections_per_address;
	if (!cap || !h->srv->limit)
		return;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	conn_addr_text(ci ? ci->client_addr : NULL, hc->addr, sizeof(hc->addr));
	if (!hc->addr[0])
		return;
	hc->counted = true;
	hc->over = limit_conn_open(h->srv->limit, hc->addr) > cap;
}

/* A TLS connection handed over and not yet started by libmicrohttpd. */
struct tls_pending {
	struct tls_pending *next;
	int fd;
	struct tls_rx *rx;
};

static void pending_put(struct http *h, int fd, struct tls_rx *rx)
{
	struct tls_pending *p = xcalloc(1, sizeof(*p));
	p->fd = fd;
	p->rx = rx;
	pthread_mutex_lock(&h->pend_mu);
	p->next = h->pending;
	h->pending = p;
	pthread_mutex_unlock(&h->pend_mu);
}

/* fd's byte count (the reference passes to the caller), or NULL. */
static struct tls_rx *pending_take(struct http *h, int fd)
{
	struct tls_rx *rx = NULL;
	pthread_mutex_lock(&h->pend_mu);
	for (struct tls_pending **pp = &h->pending; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd != fd)
			continue;
		struct tls_pending *p = *pp;
		*pp = p->next;
		rx = p->rx;
		free(p);
		break;
	}
	pthread_mutex_unlock(&h->pend_mu);
	return rx;
}

/* Each connection gets its struct http_conn, and is counted for the busy
 * mark (see connections_busy) and watched by the deadline checker.
 * libmicrohttpd reports CLOSED before it closes the socket, so the checker
 * forgets the descriptor while it is still this connection's. */
static void notify(struct http *h, struct MHD_Connection *c,
		   void **socket_context,
		   enum MHD_ConnectionNotificationCode toe, bool tls)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct http_conn *hc = xcalloc(1, sizeof(*hc));
		hc->tls = tls;
		hc->reply.hsts = tls ? h->tls_hsts : NULL;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		    c, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (ci && tls)
			hc->rx = pending_take(h, ci->connect_fd);
		conn_count(h, c, hc);
		if (ci && h->deadline) {
			deadline_conn_add(h->deadline, &hc->dl, ci->connect_fd);
			if (hc->rx)
				deadline_conn_counter(h->deadline, &hc->dl,
						      &hc->rx->bytes);
		}
		*socket_context = hc;
		atomic_fetch_add(&h->conns, 1);
		return;
	}
	struct http_conn *hc = *socket_context;
	if (hc) {
		if (h->deadline)
			deadline_conn_remove(h->deadline, &hc->dl);
		if (hc->counted)
			limit_conn_close(h->srv->limit, hc->addr);
		tls_rx_unref(hc->rx);
		free(hc);
		*socket_context = NULL;
	}
	atomic_fetch_sub(&h->conns, 1);
}

void on_notify(void *cls, struct MHD_Connection *c, void **socket_context,
	       enum MHD_ConnectionNotificationCode toe)
{
	notify(cls, c, socket_context, toe, false);
}

/* Connections the TLS terminator hands over are marked TLS (request.tls,
 * HSTS in reply_queue). */
void on_tls_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		   enum MHD_ConnectionNotificationCode toe)
{
	notify(cls, c, socket_context, toe, true);
}

int http_tls_add(void *arg, int fd, const struct sockaddr *addr,
		 socklen_t addrlen, struct tls_rx *rx)
{
	struct http *h = arg;
	/* Before the add: libmicrohttpd may start the connection (and
	 * on_tls_notify look for its count) before MHD_add_connection
	 * returns. */
	pending_put(h, fd, rx);
	if (MHD_add_connection(h->tls_daemon, fd, addr, addrlen) == MHD_YES)
		return 0;
	tls_rx_unref(pending_take(h, fd));
	return -1;
}

void conns_pending_free(struct http *h)
{
	while (h->pending) {
		struct tls_pending *p = h->pending;
		h->pending = p->next;
		tls_rx_unref(p->rx);
		free(p);
	}
}
