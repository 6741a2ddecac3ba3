/* fuzz_auth: which credential a request presents, from its Authorization
 * header and session cookie (request_credential). Input: the header, a
 * NUL, the cookie value. The token returned is a non-empty suffix of one
 * of the two, never longer than REQUEST_TOKEN_MAX, and a Bearer header
 * always decides over the cookie. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 2);
	memcpy(s, data, size);
	s[size] = 0;
	s[size + 1] = 0;
	const char *authz = s;
	const char *cookie = s + strlen(s) + 1;
	bool bearer = !strncasecmp(authz, "Bearer ", 7);

	bool via_cookie = true;
	const char *t = request_credential(authz, cookie, &via_cookie);
	if (t) {
		size_t n = strlen(t);
		assert(n > 0 && n <= REQUEST_TOKEN_MAX);
		if (via_cookie) {
			assert(!bearer && t == cookie);
		} else {
			assert(bearer && t == authz + 7);
		}
	} else if (bearer) {
		size_t n = strlen(authz + 7);
		assert(n == 0 || n > REQUEST_TOKEN_MAX);
	}
	/* Either side missing. */
	assert(!request_credential(NULL, NULL, &via_cookie));
	t = request_credential(NULL, cookie, &via_cookie);
	assert(!t || (via_cookie && t == cookie));
	t = request_credential(authz, NULL, &via_cookie);
	assert(!t || (!via_cookie && bearer));
	free(s);
	return 0;
}
