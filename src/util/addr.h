/* addr: the one parser of the listen addresses natter's settings hold,
 * "ADDR:PORT": "127.0.0.1:8080", "[::1]:8080" (IPv6 in brackets). config
 * checks them with it, and http and tls bind what it returns, so the three
 * cannot disagree about what an address means.
 *
 * Addresses are numeric only. "localhost:8080" is refused with a hint
 * (write 127.0.0.1 or [::1]): the name means 127.0.0.1, ::1 or both
 * depending on /etc/hosts, and binding whichever a resolver lists first is
 * the surprise this parser exists to end. Nothing here resolves a name,
 * opens a socket or logs. */
#ifndef NATTER_ADDR_H
#define NATTER_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct addr {
	struct sockaddr_storage ss; /* AF_INET or AF_INET6 */
	socklen_t len;		    /* of the sockaddr_in or _in6 in ss */
};

/* Parse spec into out: 0, or -1 with one line in err saying what is wrong
 * with spec (it quotes spec; the caller adds which setting it was). The
 * port is 0-65535, 0 meaning any free port. */
int addr_parse(const char *spec, struct addr *out, char *err, size_t errlen);
/* The port in a (host order). */
unsigned addr_port(const struct addr *a);

/* bus = redis://HOST:PORT[/DB], split (the one place that reads it).
 * Unlike listen addresses, HOST may be a name: it is where to connect,
 * and hiredis resolves it. DB (default 0) names the cluster's channel,
 * since Redis pub/sub ignores databases. 0, or -1 with the problem in
 * why. */
struct addr_bus {
	char host[256];
	int port;
	int db;
};
int addr_bus_parse(const char *url, struct addr_bus *out, char *why,
		   size_t whylen);

#endif
