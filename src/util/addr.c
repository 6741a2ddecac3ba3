/* addr: "ADDR:PORT" into a sockaddr, numeric only (see addr.h for why
 * "localhost" is refused rather than guessed). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/addr.h"
#include "util/util.h"

static int parse(const char *spec, struct addr *out, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *h = spec;
	size_t hlen;
	int family = AF_INET;
	int64_t port;

	memset(out, 0, sizeof(*out));
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':')
			goto not_addr_port;
		family = AF_INET6;
		h = spec + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			goto not_addr_port;
		hlen = (size_t)(colon - spec);
		if (memchr(spec, ':', hlen)) {
			snprintf(err, errlen,
				 "'%s': write IPv6 addresses as [ADDR]:PORT",
				 spec);
			return -1;
		}
	}
	if (hlen == 0 || colon[1] == '\0')
		goto not_addr_port;
	if (hlen == 9 && !strncasecmp(h, "localhost", 9)) {
		snprintf(err, errlen,
			 "'%s': 'localhost' is not a numeric %s address "
			 "(names are not resolved: write 127.0.0.1 or [::1])",
			 spec, family == AF_INET ? "IPv4" : "IPv6");
		return -1;
	}
	if (hlen < sizeof(host)) {
		memcpy(host, h, hlen);
		host[hlen] = '\0';
	}
	void *dst = family == AF_INET
			? (void *)&((struct sockaddr_in *)&out->ss)->sin_addr
			: (void *)&((struct sockaddr_in6 *)&out->ss)->sin6_addr;
	if (hlen >= sizeof(host) || inet_pton(family, host, dst) != 1) {
		snprintf(err, errlen,
			 "'%s': '%.*s' is not a numeric %s address", spec,
			 (int)hlen, h, family == AF_INET ? "IPv4" : "IPv6");
		return -1;
	}
	if (parse_i64(colon + 1, &port) != 0 || port < 0 || port > 65535) {
		snprintf(err, errlen,
			 "'%s': port must be 0-65535 (0: any free port)", spec);
		return -1;
	}
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		out->len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		out->len = sizeof(*sin6);
	}
	return 0;

not_addr_port:
	snprintf(err, errlen, "'%s' is not ADDR:PORT", spec);
	return -1;
}

int addr_parse(const char *spec, struct addr *out, char *err, size_t errlen)
{
	if (parse(spec, out, err, errlen) == 0)
		return 0;
	/* The message quotes spec: keep it one printable line whatever spec
	 * holds (a newline in a setting must not forge a log line). */
	for (char *p = err; errlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -1;
}

unsigned addr_port(const struct addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

int addr_bus_parse(const char *url, struct addr_bus *out, char *why,
		   size_t whylen)
{
	const char *p = url, *colon, *end;
	char *stop;

	if (strncmp(p, "redis://", 8) != 0) {
		snprintf(why, whylen, "'%s' is not redis://HOST:PORT[/DB]",
			 url);
		return -1;
	}
	p += 8;
	colon = strrchr(p, ':');
	end = strchr(p, '/');
	if (!colon || colon == p || (end && end < colon) ||
	    (size_t)(colon - p) >= sizeof(out->host)) {
		snprintf(why, whylen, "'%s' has no HOST:PORT", url);
		return -1;
	}
	memcpy(out->host, p, (size_t)(colon - p));
	out->host[colon - p] = '\0';
	errno = 0;
	long port = strtol(colon + 1, &stop, 10);
	if (errno || stop == colon + 1 || port < 1 || port > 65535 ||
	    (*stop && *stop != '/')) {
		snprintf(why, whylen, "'%s': the port must be 1-65535", url);
		return -1;
	}
	out->port = (int)port;
	out->db = 0;
	if (*stop == '/' && stop[1]) {
		const char *d = stop + 1;
		long db = strtol(d, &stop, 10);
		if (stop == d || *stop || db < 0 || db > 65535) {
			snprintf(why, whylen,
				 "'%s': the database must be a "
				 "number",
				 url);
			return -1;
		}
		out->db = (int)db;
	}
	return 0;
}
