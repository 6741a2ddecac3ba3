/* fuzz_route: the route matcher and the query numbers (since, before,
 * after, limit) that every stream and history request parses. Input: a
 * method line, then a URL, then numbers, separated by newlines. Checks
 * what route.h promises: a match's parameters are whole segments (no '/'),
 * within their bounds, and "**" points into the URL; parse_i64 accepts
 * exactly the decimal strings that fit an int64. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/route.h"
#include "util/util.h"

static enum MHD_Result nop(struct request *req)
{
	(void)req;
	return MHD_YES;
}

static enum MHD_Result nop_arg(struct request *req, const char *arg)
{
	(void)req;
	(void)arg;
	return MHD_YES;
}

/* The shape of natter's table (http.c): literals, parameters, several
 * parameters, "**" under a prefix and at the root, a method-less row. */
static const struct route table[] = {
    {"POST", "/api/register", 0, nop, NULL},
    {"GET", "/api/me", ROUTE_AUTH, nop, NULL},
    {"PATCH", "/api/me", ROUTE_AUTH | ROUTE_CSRF, nop, NULL},
    {"POST", "/api/rooms/{room}/join", ROUTE_AUTH, NULL, nop_arg},
    {"GET", "/api/rooms/{room}/messages", ROUTE_AUTH, NULL, nop_arg},
    {"POST", "/api/rooms/{room}/messages", ROUTE_AUTH, NULL, nop_arg},
    {"POST", "/api/rooms/{room}/messages/{id}/react/{emoji}", ROUTE_AUTH, NULL,
     nop_arg},
    {NULL, "/api/**", ROUTE_AUTH, nop, NULL},
    {"GET", "/ws", ROUTE_TOKEN | ROUTE_ORIGIN, nop, NULL},
    {"GET", "/", 0, nop, NULL},
    {"GET", "/static/**", 0, NULL, nop_arg},
    {"GET", "/**", 0, nop, NULL},
};

/* The reference: strtoll over the whole string, decimal digits only. */
static int ref_i64(const char *s, int64_t *out)
{
	const char *p = s;
	if (*p == '-' || *p == '+')
		p++;
	if (!*p)
		return -1;
	for (const char *q = p; *q; q++)
		if (*q < '0' || *q > '9')
			return -1;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static void check_number(const char *s)
{
	int64_t a = 0, b = 0;
	int ra = parse_i64(s, &a);
	int rb = ref_i64(s, &b);
	/* The same set of strings, but for a '+' sign, which parse_i64
	 * refuses. */
	if (ra == 0)
		assert(rb == 0 && a == b && s[0] != '+');
	else
		assert(rb < 0 || s[0] == '+');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = 0;
	char *method = s;
	char *url = strchr(s, '\n');
	if (url)
		*url++ = 0;
	else
		url = s, method = (char *)"GET";
	char *nums = strchr(url, '\n');
	if (nums)
		*nums++ = 0;

	struct route_match m;
	memset(&m, 0xa5, sizeof(m));
	enum route_result r = route_match(
	    table, sizeof(table) / sizeof(table[0]), method, url, &m);
	assert(r == ROUTE_FOUND || r == ROUTE_NO_METHOD || r == ROUTE_NO_PATH ||
	       r == ROUTE_BAD_PATH);
	if (r == ROUTE_FOUND) {
		assert(m.route >= table &&
		       m.route < table + sizeof(table) / sizeof(table[0]));
		assert(m.nparams >= 0 && m.nparams <= ROUTE_PARAMS_MAX);
		for (int i = 0; i < m.nparams; i++) {
			size_t n = strnlen(m.param[i], ROUTE_SEGMENT_MAX);
			assert(n < ROUTE_SEGMENT_MAX);
			assert(!memchr(m.param[i], '/', n));
			assert(strstr(url, m.param[i]));
		}
		if (m.nparams > 0)
			assert(!strcmp(m.arg, m.param[0]));
		if (strstr(m.route->pattern, "**")) {
			assert(m.rest);
			assert(m.rest >= url && m.rest <= url + strlen(url));
		}
		if (m.route->method && strcmp(m.route->method, method))
			assert(!strcmp(m.route->method, "GET") &&
			       !strcmp(method, "HEAD"));
	} else if (r == ROUTE_NO_METHOD) {
		assert(memchr(m.allow, 0, sizeof(m.allow)));
		assert(m.allow[0]);
	}

	/* The query numbers: one per remaining line. */
	for (char *line = nums; line && *line;) {
		char *next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		check_number(line);
		line = next;
	}
	free(s);
	return 0;
}
