/* fuzz_addr: the listen-address parser. Success gives an AF_INET or
 * AF_INET6 address of the matching length and a port that fits; failure
 * gives one NUL-terminated line in err that fits its buffer. */
#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = 0;
	struct addr a;
	char err[96];
	memset(err, 'x', sizeof(err));
	if (addr_parse(s, &a, err, sizeof(err)) == 0) {
		if (a.ss.ss_family == AF_INET)
			assert(a.len == sizeof(struct sockaddr_in));
		else
			assert(a.ss.ss_family == AF_INET6 &&
			       a.len == sizeof(struct sockaddr_in6));
		assert(addr_port(&a) <= 65535);
	} else {
		assert(memchr(err, 0, sizeof(err)));
		assert(!strchr(err, '\n'));
	}
	/* A tiny error buffer is still terminated, never overrun. */
	char small[4];
	if (addr_parse(s, &a, small, sizeof(small)) < 0)
		assert(memchr(small, 0, sizeof(small)));
	free(s);
	return 0;
}
