/* test_route: the route matcher through route.h, on a small table shaped
 * like natter's: literal paths, "{room}" segments, "**" tails, several
 * methods per path (the Allow header of a 405), HEAD answered by GET rows,
 * the flags of a path, first-pattern-wins for overlapping patterns, and
 * the segment limits (too many, too long) that no handler may see. Pure:
 * the handlers are never called. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/route.h"

static enum MHD_Result h0(struct request *req)
{
	(void)req;
	return MHD_YES;
}

static enum MHD_Result h1(struct request *req, const char *arg)
{
	(void)req;
	(void)arg;
	return MHD_YES;
}

static const struct route table[] = {
    {"POST", "/api/login", 0, h0, NULL},
    {"GET", "/api/me", ROUTE_AUTH, h0, NULL},
    {"PATCH", "/api/me", ROUTE_AUTH | ROUTE_CSRF, h0, NULL},
    {"GET", "/api/rooms/{room}/messages", ROUTE_AUTH, NULL, h1},
    {"POST", "/api/rooms/{room}/messages", ROUTE_AUTH | ROUTE_CSRF, NULL, h1},
    {"PUT", "/api/rooms/{room}/messages/{id}/reactions/{emoji}", ROUTE_AUTH,
     NULL, h1},
    {NULL, "/api/**", ROUTE_AUTH | ROUTE_CSRF, h0, NULL},
    {"GET", "/ws", ROUTE_TOKEN | ROUTE_ORIGIN, h0, NULL},
    {"GET", "/", 0, h0, NULL},
    {"GET", "/static/**", 0, NULL, h1},
    {"GET", "/**", 0, h0, NULL},
};

static enum route_result match(const char *method, const char *url,
			       struct route_match *m)
{
	return route_match(table, sizeof(table) / sizeof(table[0]), method, url,
			   m);
}

/* method url is found at row index row. */
static void expect_row(const char *method, const char *url, size_t row)
{
	struct route_match m;
	if (match(method, url, &m) != ROUTE_FOUND)
		fail_msg("%s %s: not found", method, url);
	if (m.route != &table[row])
		fail_msg("%s %s: row %td, want %zu", method, url,
			 m.route - table, row);
}

static void test_literal_paths(void **state)
{
	(void)state;
	expect_row("POST", "/api/login", 0);
	expect_row("GET", "/api/me", 1);
	expect_row("PATCH", "/api/me", 2);
	expect_row("GET", "/api/me/", 1); /* one trailing slash */
	expect_row("GET", "//api/me", 1); /* leading slashes */
	expect_row("GET", "/ws", 7);
	expect_row("GET", "/", 8);
	expect_row("GET", "", 8);
}

static void test_head_is_get(void **state)
{
	(void)state;
	expect_row("HEAD", "/api/me", 1);
	expect_row("HEAD", "/", 8);
	assert_true(route_method_is_read("GET"));
	assert_true(route_method_is_read("HEAD"));
	assert_false(route_method_is_read("POST"));
	assert_false(route_method_is_read("get"));
}

static void test_parameter(void **state)
{
	(void)state;
	struct route_match m;

	assert_int_equal(match("GET", "/api/rooms/lobby/messages", &m),
			 ROUTE_FOUND);
	assert_ptr_equal(m.route, &table[3]);
	assert_string_equal(m.arg, "lobby");
	assert_int_equal(match("POST", "/api/rooms/a%20b/messages", &m),
			 ROUTE_FOUND);
	assert_ptr_equal(m.route, &table[4]);
	assert_string_equal(m.arg, "a%20b"); /* any bytes: handlers check */
	assert_int_equal(match("GET", "/api/rooms//messages", &m), ROUTE_FOUND);
	assert_string_equal(m.arg, "");
	assert_int_equal(match("GET", "/api/rooms/\xff\xfe/messages", &m),
			 ROUTE_FOUND);
	assert_string_equal(m.arg, "\xff\xfe");
	assert_int_equal(m.nparams, 1);
	assert_string_equal(m.param[0], "\xff\xfe");

	/* several parameters, in order; the first is also arg */
	assert_int_equal(
	    match("PUT", "/api/rooms/lobby/messages/42/reactions/+1", &m),
	    ROUTE_FOUND);
	assert_ptr_equal(m.route, &table[5]);
	assert_int_equal(m.nparams, 3);
	assert_string_equal(m.arg, "lobby");
	assert_string_equal(m.param[0], "lobby");
	assert_string_equal(m.param[1], "42");
	assert_string_equal(m.param[2], "+1");
}

static void test_tail(void **state)
{
	(void)state;
	struct route_match m;

	assert_int_equal(match("GET", "/static/app.js", &m), ROUTE_FOUND);
	assert_ptr_equal(m.route, &table[9]);
	assert_string_equal(m.rest, "app.js");
	assert_int_equal(match("GET", "/static/a/b/c.css", &m), ROUTE_FOUND);
	assert_string_equal(m.rest, "a/b/c.css");
	/* an empty segment stays in the rest, for the handler to refuse */
	assert_int_equal(match("GET", "/static//index.html", &m), ROUTE_FOUND);
	assert_string_equal(m.rest, "/index.html");
	/* "**" matches zero segments too */
	const char *url = "/static/";
	assert_int_equal(match("GET", url, &m), ROUTE_FOUND);
	assert_ptr_equal(m.route, &table[9]);
	assert_string_equal(m.rest, "");
	/* found by fuzz_route: even an empty rest points into the url */
	assert_ptr_equal(m.rest, url + strlen(url));
	/* the catch-alls own what nothing before them matched */
	expect_row("DELETE", "/api/nope", 6);
	expect_row("GET", "/api", 6);
	expect_row("GET", "/api/rooms/lobby/members", 6);
	expect_row("GET", "/nope", 10);
	expect_row("GET", "/a/b/c", 10);
}

static void test_method_not_allowed(void **state)
{
	(void)state;
	struct route_match m;

	assert_int_equal(match("DELETE", "/api/me", &m), ROUTE_NO_METHOD);
	assert_null(m.route);
	assert_string_equal(m.allow, "GET, PATCH");
	assert_int_equal(m.flags_all, ROUTE_AUTH);
	assert_int_equal(m.flags_any, ROUTE_AUTH | ROUTE_CSRF);

	assert_int_equal(match("GET", "/api/login", &m), ROUTE_NO_METHOD);
	assert_string_equal(m.allow, "POST");
	assert_int_equal(m.flags_all, 0);

	assert_int_equal(match("PUT", "/api/rooms/x/messages", &m),
			 ROUTE_NO_METHOD);
	assert_string_equal(m.allow, "GET, POST");
	assert_int_equal(match("POST", "/ws", &m), ROUTE_NO_METHOD);
	assert_string_equal(m.allow, "GET");
	assert_int_equal(m.flags_all, ROUTE_TOKEN | ROUTE_ORIGIN);
	assert_int_equal(match("POST", "/", &m), ROUTE_NO_METHOD);
	assert_string_equal(m.allow, "GET");
	assert_int_equal(match("POST", "/x/y", &m), ROUTE_NO_METHOD);
	assert_string_equal(m.allow, "GET");
}

static void test_limits(void **state)
{
	(void)state;
	struct route_match m;
	char url[256], seg[80];

	/* eight segments are matched, nine never */
	assert_int_equal(match("GET", "/a/b/c/d/e/f/g/h", &m), ROUTE_FOUND);
	assert_int_equal(match("GET", "/a/b/c/d/e/f/g/h/i", &m),
			 ROUTE_BAD_PATH);
	assert_int_equal(
	    match("GET", "/api/rooms/lobby/messages/x/y/z/w/v", &m),
	    ROUTE_BAD_PATH);
	/* a 63-byte segment is matched, 64 bytes is not */
	memset(seg, 'r', 63);
	seg[63] = '\0';
	snprintf(url, sizeof(url), "/api/rooms/%s/messages", seg);
	assert_int_equal(match("GET", url, &m), ROUTE_FOUND);
	assert_string_equal(m.arg, seg);
	memset(seg, 'r', 64);
	seg[64] = '\0';
	snprintf(url, sizeof(url), "/api/rooms/%s/messages", seg);
	assert_int_equal(match("GET", url, &m), ROUTE_BAD_PATH);
	snprintf(url, sizeof(url), "/%s", seg);
	assert_int_equal(match("GET", url, &m), ROUTE_BAD_PATH);
	/* without a catch-all, an unknown path is no path */
	assert_int_equal(route_match(table, 3, "GET", "/nope", &m),
			 ROUTE_NO_PATH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_literal_paths),
	    cmocka_unit_test(test_head_is_get),
	    cmocka_unit_test(test_parameter),
	    cmocka_unit_test(test_tail),
	    cmocka_unit_test(test_method_not_allowed),
	    cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
