/* test_tls_guard: admission of TLS handshakes: the per-address and global
 * caps, IPv6 clients counted by their /64, pressure past half the cap,
 * the rate-limited warning, and the table staying exact through heavy
 * churn of many addresses (its deletion shifts entries back). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/tls_guard.h"

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_caps(void **state)
{
	(void)state;
	struct tls_guard *g = tls_guard_new(10, 3);
	struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2");
	for (int i = 0; i < 3; i++)
		assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_OK);
	assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_ADDR);
	/* another address is not affected */
	assert_int_equal(tls_guard_admit(g, SA(b)), TLS_GUARD_OK);
	unsigned from;
	assert_int_equal(tls_guard_count(g, SA(a), &from), 4);
	assert_int_equal(from, 3);
	/* a release frees one slot of that address */
	tls_guard_release(g, SA(a));
	assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_OK);
	/* the global cap */
	char ip[32];
	for (int i = 0; i < 5; i++) {
		snprintf(ip, sizeof(ip), "10.0.1.%d", i);
		struct sockaddr_storage c = v4(ip);
		assert_int_equal(tls_guard_admit(g, SA(c)), TLS_GUARD_OK);
	}
	assert_int_equal(tls_guard_count(g, SA(a), NULL), 9);
	struct sockaddr_storage d = v4("10.0.2.1");
	assert_int_equal(tls_guard_admit(g, SA(d)), TLS_GUARD_OK);
	assert_int_equal(tls_guard_admit(g, SA(d)), TLS_GUARD_FULL);
	tls_guard_free(g);
}

static void test_ipv6_prefix(void **state)
{
	(void)state;
	struct tls_guard *g = tls_guard_new(100, 2);
	struct sockaddr_storage a = v6("2001:db8:1:2::1"),
				b = v6("2001:db8:1:2:ffff::9"),
				c = v6("2001:db8:1:3::1");
	assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_OK);
	assert_int_equal(tls_guard_admit(g, SA(b)), TLS_GUARD_OK);
	/* the same /64: one address */
	assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_ADDR);
	assert_int_equal(tls_guard_admit(g, SA(c)), TLS_GUARD_OK);
	tls_guard_free(g);
}

static void test_pressure(void **state)
{
	(void)state;
	struct tls_guard *g = tls_guard_new(10, 10);
	struct sockaddr_storage a = v4("192.0.2.1");
	for (int i = 0; i < 5; i++)
		assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_OK);
	assert_false(tls_guard_pressure(g));
	assert_int_equal(tls_guard_admit(g, SA(a)), TLS_GUARD_OK);
	assert_true(tls_guard_pressure(g));
	tls_guard_release(g, SA(a));
	assert_false(tls_guard_pressure(g));
	tls_guard_free(g);
}

static void test_warn(void **state)
{
	(void)state;
	struct tls_guard *g = tls_guard_new(10, 10);
	uint64_t more = 99;
	assert_true(tls_guard_warn_due(g, 1000, 10000, &more));
	assert_int_equal(more, 0);
	for (int i = 0; i < 5; i++)
		assert_false(tls_guard_warn_due(g, 2000 + i, 10000, &more));
	assert_true(tls_guard_warn_due(g, 11000, 10000, &more));
	assert_int_equal(more, 5);
	tls_guard_free(g);
}

/* Random admits and releases over many addresses, checked against plain
 * counts: the open-addressing table must never lose or mix up one. */
static void test_churn(void **state)
{
	(void)state;
	enum { ADDRS = 300, CAP = 1000, PER = 4 };
	struct tls_guard *g = tls_guard_new(CAP, PER);
	static unsigned want[ADDRS];
	unsigned total = 0;
	srand(7);
	for (int step = 0; step < 200000; step++) {
		int i = rand() % ADDRS;
		struct sockaddr_storage ss = {0};
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(0x0a000000u + (unsigned)i * 7919u);
		if (rand() % 2) {
			enum tls_guard_verdict v = tls_guard_admit(g, SA(ss));
			enum tls_guard_verdict exp =
			    total >= CAP     ? TLS_GUARD_FULL
			    : want[i] >= PER ? TLS_GUARD_ADDR
					     : TLS_GUARD_OK;
			assert_int_equal(v, exp);
			if (v == TLS_GUARD_OK) {
				want[i]++;
				total++;
			}
		} else if (want[i]) {
			tls_guard_release(g, SA(ss));
			want[i]--;
			total--;
		}
		unsigned from;
		assert_int_equal(tls_guard_count(g, SA(ss), &from), total);
		assert_int_equal(from, want[i]);
	}
	tls_guard_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_caps),     cmocka_unit_test(test_ipv6_prefix),
	    cmocka_unit_test(test_pressure), cmocka_unit_test(test_warn),
	    cmocka_unit_test(test_churn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
