/* test_addr: the one "ADDR:PORT" parser through addr.h: IPv4, bracketed
 * IPv6, the ports at both ends of their range (0: any free port), and
 * every way a spec can be wrong: "localhost" (refused with a hint, never
 * resolved), bad and missing ports, missing brackets, garbage. Each error
 * must quote the spec and say what is wrong. Pure function: no fixtures. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/addr.h"

static void expect_v4(const char *spec, const char *host, unsigned port)
{
	struct addr a;
	char err[256] = "";
	char text[INET_ADDRSTRLEN];

	if (addr_parse(spec, &a, err, sizeof(err)) != 0)
		fail_msg("%s: %s", spec, err);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(a.len, sizeof(*sin));
	assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
	assert_string_equal(text, host);
	assert_int_equal(addr_port(&a), port);
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void expect_v6(const char *spec, const char *host, unsigned port)
{
	struct addr a;
	char err[256] = "";
	char text[INET6_ADDRSTRLEN];

	if (addr_parse(spec, &a, err, sizeof(err)) != 0)
		fail_msg("%s: %s", spec, err);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(a.len, sizeof(*sin6));
	assert_non_null(
	    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
	assert_string_equal(text, host);
	assert_int_equal(addr_port(&a), port);
}

/* spec is refused with an error that quotes it and holds want. */
static void expect_error(const char *spec, const char *want)
{
	struct addr a;
	char err[256] = "";
	char quoted[128];

	if (addr_parse(spec, &a, err, sizeof(err)) != -1)
		fail_msg("'%s' was accepted", spec);
	snprintf(quoted, sizeof(quoted), "'%s'", spec);
	if (!strstr(err, quoted) || !strstr(err, want))
		fail_msg("'%s': error \"%s\" lacks \"%s\"", spec, err, want);
}

static void test_ipv4(void **state)
{
	(void)state;
	expect_v4("127.0.0.1:8080", "127.0.0.1", 8080);
	expect_v4("0.0.0.0:80", "0.0.0.0", 80);
	expect_v4("192.0.2.1:65535", "192.0.2.1", 65535);
	expect_v4("10.0.0.1:0", "10.0.0.1", 0); /* 0: any free port */
}

static void test_ipv6(void **state)
{
	(void)state;
	expect_v6("[::1]:8080", "::1", 8080);
	expect_v6("[::]:443", "::", 443);
	expect_v6("[fe80::1]:1", "fe80::1", 1);
	expect_v6("[2001:db8::42]:0", "2001:db8::42", 0);
	expect_v6("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80);
}

/* Names are never resolved: "localhost" says what to write instead. */
static void test_localhost(void **state)
{
	(void)state;
	expect_error("localhost:8080", "127.0.0.1 or [::1]");
	expect_error("LOCALHOST:8080", "127.0.0.1 or [::1]");
	expect_error("localhost:8080", "IPv4");
	expect_error("[localhost]:8080", "127.0.0.1 or [::1]");
	expect_error("example.com:80", "not a numeric IPv4");
}

static void test_bad_ports(void **state)
{
	(void)state;
	expect_error("1.2.3.4:-1", "port must be 0-65535");
	expect_error("1.2.3.4:65536", "port must be 0-65535");
	expect_error("1.2.3.4:99999999999999999999", "port must be 0-65535");
	expect_error("1.2.3.4:80x", "port must be 0-65535");
	expect_error("1.2.3.4: 80", "port must be 0-65535");
	expect_error("1.2.3.4:http", "port must be 0-65535");
	expect_error("[::1]:65536", "port must be 0-65535");
}

static void test_missing_parts(void **state)
{
	(void)state;
	expect_error("1.2.3.4", "is not ADDR:PORT");
	expect_error("1.2.3.4:", "is not ADDR:PORT");
	expect_error(":80", "is not ADDR:PORT");
	expect_error("", "is not ADDR:PORT");
	expect_error("[::1]", "is not ADDR:PORT");
	expect_error("[::1]80", "is not ADDR:PORT");
	expect_error("[::1]:", "is not ADDR:PORT");
	expect_error("[]:80", "is not ADDR:PORT");
	expect_error("[::1:80", "is not ADDR:PORT");
}

static void test_garbage(void **state)
{
	(void)state;
	expect_error("::1:80", "[ADDR]:PORT"); /* IPv6 without brackets */
	expect_error("[1.2.3.4]:80", "IPv6");  /* IPv4 in brackets */
	expect_error("1.2.3.256:80", "IPv4");
	expect_error("1.2.3:80", "IPv4");
	expect_error(" 1.2.3.4:80", "IPv4");
	expect_error("1.2.3.4 :80", "IPv4");
	expect_error("[::1%lo]:80", "IPv6");
	expect_error("[::1]]:80", "is not ADDR:PORT");
	expect_error("\xff\xfe:80", "IPv4");
	/* longer than any numeric address */
	expect_error("[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
		     "IPv6");
}

/* Found by fuzz_addr: the message quotes the setting, and a newline or
 * another control character in it must not break the one line. */
static void test_error_one_line(void **state)
{
	(void)state;
	struct addr a;
	char err[256];
	assert_int_equal(addr_parse("1\n\x1b[2J:80", &a, err, sizeof(err)), -1);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\x1b'));
	assert_non_null(strstr(err, "'1??[2J:80'"));
	assert_int_equal(addr_parse("1.2.3.4:8\r", &a, err, sizeof(err)), -1);
	assert_null(strchr(err, '\r'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipv4),
	    cmocka_unit_test(test_ipv6),
	    cmocka_unit_test(test_localhost),
	    cmocka_unit_test(test_bad_ports),
	    cmocka_unit_test(test_missing_parts),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_error_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
