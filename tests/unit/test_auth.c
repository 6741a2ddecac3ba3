/* Unit tests for auth, through auth.h only: password hashing and the rules,
 * tokens and their hash, random bytes, and login throttling (with the
 * clock passed in, so no test sleeps). Argon2 runs at a tiny cost here. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth.h"

#define T0 1700000000000LL /* an arbitrary "now" in ms */

static const struct auth_config small_cfg = {
    .memory_kib = 64,
    .time_cost = 1,
    .parallelism = 1,
    .fail_max = 3,
    .fail_window_s = 60,
};

static int setup(void **state)
{
	struct auth *a = auth_new(&small_cfg);
	if (!a)
		return -1;
	*state = a;
	return 0;
}

static int teardown(void **state)
{
	auth_free(*state);
	return 0;
}

/* --- lifecycle ------------------------------------------------------------ */

static void test_new_rejects_bad_cost(void **state)
{
	struct auth_config c = small_cfg;

	(void)state;
	c.memory_kib = 4; /* below libargon2's minimum of 8 * p */
	assert_null(auth_new(&c));
	auth_free(NULL);
}

/* --- passwords ------------------------------------------------------------ */

static void test_hash_verify(void **state)
{
	struct auth *a = *state;
	const char *pw = "correct horse battery";
	char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];

	assert_int_equal(auth_password_hash(a, pw, strlen(pw), h1), 0);
	assert_true(strncmp(h1, "$argon2id$v=19$m=64,t=1,p=1$", 28) == 0);
	assert_int_equal(auth_password_verify(a, h1, pw, strlen(pw)), 0);
	assert_int_equal(
	    auth_password_verify(a, h1, "correct horse batterY", strlen(pw)),
	    -1);
	assert_int_equal(auth_password_verify(a, h1, pw, strlen(pw) - 1), -1);

	/* A fresh salt each time. */
	assert_int_equal(auth_password_hash(a, pw, strlen(pw), h2), 0);
	assert_string_not_equal(h1, h2);
	assert_int_equal(auth_password_verify(a, h2, pw, strlen(pw)), 0);
}

static void test_verify_unknown_user(void **state)
{
	struct auth *a = *state;

	assert_int_equal(auth_password_verify(a, NULL, "whatever1", 9), -1);
	assert_int_equal(auth_password_verify(a, NULL, "", 0), -1);
}

static void test_verify_garbage(void **state)
{
	struct auth *a = *state;

	assert_int_equal(auth_password_verify(a, "", "password1", 9), -1);
	assert_int_equal(
	    auth_password_verify(a, "$argon2id$junk", "password1", 9), -1);
}

static void test_hash_rejects_oversized(void **state)
{
	struct auth *a = *state;
	char *big = calloc(1, AUTH_PASSWORD_MAX + 1);
	char h[AUTH_HASH_MAX];

	assert_non_null(big);
	memset(big, 'x', AUTH_PASSWORD_MAX + 1);
	assert_int_equal(auth_password_hash(a, big, AUTH_PASSWORD_MAX + 1, h),
			 -1);
	assert_int_equal(auth_password_hash(a, big, AUTH_PASSWORD_MAX, h), 0);
	assert_int_equal(auth_password_verify(a, h, big, AUTH_PASSWORD_MAX), 0);
	free(big);
}

/* --- rules ---------------------------------------------------------------- */

static void test_username_rules(void **state)
{
	char name[40];

	(void)state;
	assert_true(auth_username_valid("a"));
	assert_true(auth_username_valid("Alice_.-9"));
	memset(name, 'n', 32);
	name[32] = '\0';
	assert_true(auth_username_valid(name));
	name[32] = 'n';
	name[33] = '\0';
	assert_false(auth_username_valid(name));
	assert_false(auth_username_valid(""));
	assert_false(auth_username_valid(NULL));
	assert_false(auth_username_valid("al ice"));
	assert_false(auth_username_valid("al/ice"));
	assert_false(auth_username_valid("\xc3\xa9l\xc3\xa9na"));
}

static void test_password_rules(void **state)
{
	char buf[AUTH_PASSWORD_MAX + 8];
	size_t n;

	(void)state;
	assert_false(auth_password_valid("1234567", 7));
	assert_true(auth_password_valid("12345678", 8));
	assert_false(auth_password_valid(NULL, 0));
	assert_false(auth_password_valid("", 0));

	/* Bytes: 1024 pass, 1025 fail. */
	memset(buf, 'p', sizeof(buf));
	assert_true(auth_password_valid(buf, AUTH_PASSWORD_MAX));
	assert_false(auth_password_valid(buf, AUTH_PASSWORD_MAX + 1));

	/* Characters, not bytes: 7 x U+00E9 is 14 bytes but 7 characters. */
	assert_false(auth_password_valid(
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 14));
	assert_true(auth_password_valid("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
					"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
					16));
	/* 8 x U+1F600 (4 bytes each). */
	n = 0;
	for (int i = 0; i < 8; i++) {
		memcpy(buf + n, "\xf0\x9f\x98\x80", 4);
		n += 4;
	}
	assert_true(auth_password_valid(buf, n));
	assert_false(auth_password_valid(buf, n - 4)); /* 7 characters */

	/* 341 x U+20AC (3 bytes) + 'a' = 1024 bytes: fine; a multi-byte
	 * character that would cross 1024 makes it too long. */
	n = 0;
	for (int i = 0; i < 341; i++) {
		memcpy(buf + n, "\xe2\x82\xac", 3);
		n += 3;
	}
	buf[n++] = 'a';
	assert_int_equal(n, AUTH_PASSWORD_MAX);
	assert_true(auth_password_valid(buf, n));
	memcpy(buf + n - 1, "\xe2\x82\xac", 3);
	assert_false(auth_password_valid(buf, n + 2));

	/* Invalid UTF-8: stray byte, truncated sequence, overlong, surrogate.
	 */
	assert_false(auth_password_valid("abcdefgh\xff", 9));
	assert_false(auth_password_valid("abcdefgh\xe2\x82", 10));
	assert_false(auth_password_valid("abcdefgh\xc0\xaf", 10));
	assert_false(auth_password_valid("abcdefgh\xed\xa0\x80", 11));
	/* An embedded NUL would be cut by any C string on the way. */
	assert_false(auth_password_valid("abcd\0efgh", 9));
}

/* --- tokens --------------------------------------------------------------- */

static bool is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int cmp_token(const void *x, const void *y)
{
	return strcmp(x, y);
}

static void test_tokens(void **state)
{
	struct auth *a = *state;
	enum { N = 1000 };
	char(*tok)[AUTH_TOKEN_LEN + 1] = calloc(N, sizeof(*tok));

	assert_non_null(tok);
	for (int i = 0; i < N; i++) {
		assert_int_equal(auth_token_new(a, tok[i]), 0);
		assert_int_equal(strlen(tok[i]), AUTH_TOKEN_LEN);
		for (int j = 0; j < AUTH_TOKEN_LEN; j++)
			assert_true(is_b64url(tok[i][j]));
	}
	qsort(tok, N, sizeof(*tok), cmp_token);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(tok[i - 1], tok[i]);
	free(tok);
}

static void test_token_hash(void **state)
{
	static const uint8_t abc[32] = {
	    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
	    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
	    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	static const uint8_t empty[32] = {
	    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
	    0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
	    0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
	};
	uint8_t out[32];

	(void)state;
	auth_token_hash("abc", 3, out);
	assert_memory_equal(out, abc, 32);
	auth_token_hash("", 0, out);
	assert_memory_equal(out, empty, 32);
}

static void test_random(void **state)
{
	struct auth *a = *state;
	enum { N = 5000 }; /* more than one CTR-DRBG request */
	uint8_t *b = calloc(1, N);
	size_t zeros = 0;

	assert_non_null(b);
	assert_int_equal(auth_random(a, b, N), 0);
	for (size_t i = 0; i < N; i++)
		zeros += b[i] == 0;
	assert_true(zeros < 100); /* about 20 expected */
	assert_int_equal(auth_random(a, b, 0), 0);
	free(b);
}

/* --- throttling ----------------------------------------------------------- */

static void test_throttle_locks_then_window_frees(void **state)
{
	struct auth *a = *state;

	assert_int_equal(auth_login_check(a, "alice", "192.0.2.1", T0), 0);
	auth_login_failed(a, "alice", "192.0.2.1", T0);
	auth_login_failed(a, "alice", "192.0.2.1", T0 + 10);
	assert_int_equal(auth_login_check(a, "alice", "192.0.2.1", T0 + 20), 0);
	auth_login_failed(a, "alice", "192.0.2.1", T0 + 30);

	/* Locked until the window opened by the first failure has passed;
	 * the wait is rounded up to whole seconds. */
	assert_int_equal(auth_login_check(a, "alice", "192.0.2.1", T0 + 40),
			 60);
	assert_int_equal(auth_login_check(a, "alice", "192.0.2.1", T0 + 59500),
			 1);
	assert_int_equal(auth_login_check(a, "alice", "192.0.2.1", T0 + 60000),
			 0);
	assert_int_equal(
	    auth_login_check(a, "alice", "192.0.2.1", T0 + 61 * 1000), 0);
}

static void test_throttle_fixed_window(void **state)
{
	struct auth *a = *state;

	/* Two early failures and a late third: the lock lasts only until the
	 * window (opened at T0) has passed. */
	auth_login_failed(a, "bob", "192.0.2.2", T0);
	auth_login_failed(a, "bob", "192.0.2.2", T0);
	auth_login_failed(a, "bob", "192.0.2.2", T0 + 50 * 1000);
	assert_int_equal(
	    auth_login_check(a, "bob", "192.0.2.2", T0 + 50 * 1000), 10);

	/* Failures during the lock count but do not extend it. */
	auth_login_failed(a, "bob", "192.0.2.2", T0 + 55 * 1000);
	assert_int_equal(
	    auth_login_check(a, "bob", "192.0.2.2", T0 + 55 * 1000), 5);
	assert_int_equal(
	    auth_login_check(a, "bob", "192.0.2.2", T0 + 60 * 1000), 0);

	/* A new window starts from zero: fail_max - 1 failures are free,
	 * the next one locks for the whole new window. */
	auth_login_failed(a, "bob", "192.0.2.2", T0 + 60 * 1000);
	auth_login_failed(a, "bob", "192.0.2.2", T0 + 61 * 1000);
	assert_int_equal(
	    auth_login_check(a, "bob", "192.0.2.2", T0 + 61 * 1000), 0);
	auth_login_failed(a, "bob", "192.0.2.2", T0 + 62 * 1000);
	assert_int_equal(
	    auth_login_check(a, "bob", "192.0.2.2", T0 + 62 * 1000), 58);

	/* The lock is never longer than the window, even if a caller's clock
	 * is behind the one that opened it. */
	assert_int_equal(
	    auth_login_check(a, "bob", "192.0.2.2", T0 + 50 * 1000), 60);
}

static void test_throttle_count_decays(void **state)
{
	struct auth *a = *state;

	auth_login_failed(a, "carol", "192.0.2.3", T0);
	auth_login_failed(a, "carol", "192.0.2.3", T0);
	/* A window later those two are forgotten. */
	auth_login_failed(a, "carol", "192.0.2.3", T0 + 60 * 1000);
	assert_int_equal(
	    auth_login_check(a, "carol", "192.0.2.3", T0 + 60 * 1000), 0);
}

static void test_throttle_case_insensitive(void **state)
{
	struct auth *a = *state;

	auth_login_failed(a, "Dave", "192.0.2.4", T0);
	auth_login_failed(a, "DAVE", "192.0.2.5", T0);
	auth_login_failed(a, "dave", "192.0.2.6", T0);
	assert_true(auth_login_check(a, "dAvE", "192.0.2.7", T0) > 0);
}

static void test_throttle_keys_independent(void **state)
{
	struct auth *a = *state;

	/* One address failing for three accounts: the address is locked,
	 * those accounts are not (from elsewhere). */
	auth_login_failed(a, "u1", "198.51.100.1", T0);
	auth_login_failed(a, "u2", "198.51.100.1", T0);
	auth_login_failed(a, "u3", "198.51.100.1", T0);
	assert_true(auth_login_check(a, "u4", "198.51.100.1", T0) > 0);
	assert_int_equal(auth_login_check(a, "u4", "198.51.100.2", T0), 0);
	assert_int_equal(auth_login_check(a, "u1", "198.51.100.2", T0), 0);

	/* One account failing from three addresses: the account is locked
	 * everywhere, the addresses are not for other accounts. */
	auth_login_failed(a, "erin", "203.0.113.1", T0);
	auth_login_failed(a, "erin", "203.0.113.2", T0);
	auth_login_failed(a, "erin", "203.0.113.3", T0);
	assert_true(auth_login_check(a, "erin", "203.0.113.9", T0) > 0);
	assert_int_equal(auth_login_check(a, "frank", "203.0.113.1", T0), 0);

	/* An account name and an address with the same text are different
	 * keys. */
	assert_int_equal(auth_login_check(a, "198.51.100.1", "192.0.2.99", T0),
			 0);
}

static void test_throttle_success_clears_account(void **state)
{
	struct auth *a = *state;

	/* Three failing addresses (one address alone never locks the account
	 * since issue 17; see test_throttle_one_address_never_locks_account).
	 */
	auth_login_failed(a, "grace", "198.51.100.7", T0);
	auth_login_failed(a, "grace", "198.51.100.5", T0);
	auth_login_failed(a, "grace", "198.51.100.6", T0);
	for (int i = 0; i < 2; i++)
		auth_login_failed(a, "heidi", "198.51.100.7", T0);
	assert_true(auth_login_check(a, "grace", "198.51.100.8", T0) > 0);
	auth_login_succeeded(a, "Grace", "198.51.100.7", T0);
	assert_int_equal(auth_login_check(a, "grace", "198.51.100.8", T0), 0);
	/* The address keeps its count. */
	assert_true(auth_login_check(a, "heidi", "198.51.100.7", T0) > 0);
	/* Succeeding for an account never seen is harmless. */
	auth_login_succeeded(a, "nobody", "198.51.100.7", T0);
}

static void test_throttle_bounded(void **state)
{
	struct auth_config c = small_cfg;
	struct auth *a;
	char user[32], addr[32];
	enum { N = 70000 }; /* each failure adds two keys: > the 65,536 cap */

	(void)state;
	c.fail_max = 1;
	c.fail_window_s = 3600;
	a = auth_new(&c);
	assert_non_null(a);
	auth_login_failed(a, "victim", "10.255.255.255", T0);
	assert_true(auth_login_check(a, "victim", "172.31.0.1", T0 + 1) > 0);
	for (int i = 0; i < N; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		snprintf(addr, sizeof(addr), "10.%d.%d.%d", i >> 16,
			 (i >> 8) & 255, i & 255);
		auth_login_failed(a, user, addr, T0 + 1);
	}
	/* The oldest key was evicted; the newest are still locked. */
	assert_int_equal(auth_login_check(a, "victim", "172.31.0.1", T0 + 2),
			 0);
	assert_true(auth_login_check(a, user, "172.16.0.1", T0 + 2) > 0);
	assert_true(auth_login_check(a, "x", addr, T0 + 2) > 0);
	auth_free(a);
}

/* Expired keys are dropped as time goes on: a long run of unique failures
 * spread over time keeps working and keeps recent locks. */
static void test_throttle_expires_old(void **state)
{
	struct auth *a = *state;
	char user[32], addr[32];
	int64_t t = T0;

	for (int i = 0; i < 200000; i++) {
		snprintf(user, sizeof(user), "s%d", i);
		snprintf(addr, sizeof(addr), "10.%d.%d.%d", i >> 16,
			 (i >> 8) & 255, i & 255);
		t = T0 + (int64_t)i * 1000;
		auth_login_failed(a, user, addr, t);
	}
	/* Two more failures for the last account: locked. */
	auth_login_failed(a, user, "192.0.2.1", t);
	auth_login_failed(a, user, "192.0.2.2", t);
	assert_true(auth_login_check(a, user, "192.0.2.3", t) > 0);
	/* The first account is long forgotten. */
	assert_int_equal(auth_login_check(a, "s0", "10.0.0.0", t), 0);
}

/* Issue 17, point 4: five wrong passwords from one address locked the
 * account for every address, the owner's included. */
static void test_throttle_one_address_never_locks_account(void **state)
{
	struct auth *a = *state;

	for (int i = 0; i < 50; i++)
		auth_login_failed(a, "ivan", "203.0.113.66", T0 + i);
	/* The attacker's address is locked, for every account. */
	assert_int_equal(auth_login_check(a, "ivan", "203.0.113.66", T0 + 100),
			 60);
	assert_true(auth_login_check(a, "judy", "203.0.113.66", T0 + 100) > 0);
	/* The owner, from any other address, is not. */
	assert_int_equal(auth_login_check(a, "ivan", "198.51.100.20", T0 + 100),
			 0);
	assert_int_equal(auth_login_check(a, "IVAN", "2001:db8::1", T0 + 100),
			 0);
}

static void test_throttle_distributed_spares_known_address(void **state)
{
	struct auth *a = *state;
	char addr[32];

	/* The owner logged in from home once. */
	auth_login_succeeded(a, "kim", "198.51.100.30", T0);
	/* Then guesses from many addresses, a few each. */
	for (int i = 0; i < 20; i++) {
		snprintf(addr, sizeof(addr), "10.9.0.%d", i);
		auth_login_failed(a, "kim", addr, T0 + 1000 + i);
		auth_login_failed(a, "kim", addr, T0 + 1000 + i);
	}
	/* A new address is slowed for that account... */
	assert_true(auth_login_check(a, "kim", "10.9.1.1", T0 + 2000) > 0);
	/* ...the owner's known address is not, and neither are other
	 * accounts. */
	assert_int_equal(auth_login_check(a, "kim", "198.51.100.30", T0 + 2000),
			 0);
	assert_int_equal(auth_login_check(a, "lee", "10.9.1.1", T0 + 2000), 0);
	/* Two failing addresses are not enough (fail_max is 3). */
	auth_login_failed(a, "mia", "10.8.0.1", T0);
	auth_login_failed(a, "mia", "10.8.0.2", T0);
	assert_int_equal(auth_login_check(a, "mia", "10.8.0.3", T0), 0);
}

static void test_register_bucket(void **state)
{
	struct auth_config c = small_cfg;
	struct auth *a;

	(void)state;
	c.register_burst = 3;
	c.register_interval_s = 120;
	a = auth_new(&c);
	assert_non_null(a);
	for (int i = 0; i < 3; i++)
		assert_int_equal(auth_register_check(a, "192.0.2.9", T0), 0);
	/* The fourth waits for one interval; refusals do not count. */
	assert_int_equal(auth_register_check(a, "192.0.2.9", T0), 120);
	assert_int_equal(auth_register_check(a, "192.0.2.9", T0 + 1000), 119);
	/* Another address has its own bucket. */
	assert_int_equal(auth_register_check(a, "192.0.2.10", T0), 0);
	/* One more after the interval, then wait again. */
	assert_int_equal(auth_register_check(a, "192.0.2.9", T0 + 120000), 0);
	assert_int_equal(auth_register_check(a, "192.0.2.9", T0 + 120000), 120);
	/* A long pause refills the burst, no more. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    auth_register_check(a, "192.0.2.9", T0 + 3600000), 0);
	assert_true(auth_register_check(a, "192.0.2.9", T0 + 3600000) > 0);
	auth_free(a);

	/* Interval 0: no limit. */
	c.register_interval_s = 0;
	a = auth_new(&c);
	for (int i = 0; i < 100; i++)
		assert_int_equal(auth_register_check(a, "192.0.2.9", T0), 0);
	auth_free(a);
}

/* Two nodes: what one tells, the other applies, as bus = redis:// does. */
struct told {
	enum auth_share what[8];
	char user[8][32], addr[8][32];
	int n;
};

static void record(void *arg, enum auth_share what, const char *user,
		   const char *addr)
{
	struct told *t = arg;
	assert_true(t->n < 8);
	t->what[t->n] = what;
	snprintf(t->user[t->n], sizeof(t->user[0]), "%s", user ? user : "");
	snprintf(t->addr[t->n], sizeof(t->addr[0]), "%s", addr ? addr : "");
	t->n++;
}

static void relay(struct auth *to, struct told *t, int64_t now)
{
	for (int i = 0; i < t->n; i++)
		auth_apply(to, t->what[i], t->user[i][0] ? t->user[i] : NULL,
			   t->addr[i], now);
	t->n = 0;
}

static void test_share_login_across_nodes(void **state)
{
	struct auth *a = auth_new(&small_cfg), *b = auth_new(&small_cfg);
	struct told ta = {0}, tb = {0};

	(void)state;
	auth_share(a, record, &ta);
	auth_share(b, record, &tb);
	/* two failures on a, one on b: the address is locked on both */
	auth_login_failed(a, "ann", "192.0.2.7", T0);
	auth_login_failed(a, "ann", "192.0.2.7", T0 + 1);
	assert_int_equal(ta.n, 2);
	assert_int_equal(ta.what[0], AUTH_SHARE_FAILED);
	assert_string_equal(ta.user[0], "ann");
	assert_string_equal(ta.addr[0], "192.0.2.7");
	relay(b, &ta, T0 + 2);
	assert_int_equal(tb.n, 0); /* applied, not told again */
	assert_int_equal(auth_login_check(b, "ann", "192.0.2.7", T0 + 3), 0);
	auth_login_failed(b, "ann", "192.0.2.7", T0 + 3);
	relay(a, &tb, T0 + 4);
	assert_true(auth_login_check(b, "ann", "192.0.2.7", T0 + 5) > 0);
	assert_true(auth_login_check(a, "ann", "192.0.2.7", T0 + 5) > 0);
	assert_true(auth_login_check(a, "bob", "192.0.2.7", T0 + 5) > 0);

	/* a success on b clears the account on a too, and exempts the
	 * address there from the account's lock */
	for (int i = 0; i < 3; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "10.1.0.%d", i);
		auth_login_failed(a, "cy", addr, T0);
	}
	relay(b, &ta, T0);
	assert_true(auth_login_check(b, "cy", "198.51.100.1", T0 + 1) > 0);
	auth_login_succeeded(b, "cy", "198.51.100.2", T0 + 1);
	assert_int_equal(tb.n, 1);
	assert_int_equal(tb.what[0], AUTH_SHARE_SUCCEEDED);
	relay(a, &tb, T0 + 1);
	assert_int_equal(auth_login_check(a, "cy", "198.51.100.1", T0 + 2), 0);
	auth_free(a);
	auth_free(b);
}

static void test_share_registrations_across_nodes(void **state)
{
	struct auth_config c = small_cfg;
	struct told ta = {0}, tb = {0};

	(void)state;
	c.register_burst = 2;
	c.register_interval_s = 100;
	struct auth *a = auth_new(&c), *b = auth_new(&c);
	auth_share(a, record, &ta);
	auth_share(b, record, &tb);
	assert_int_equal(auth_register_check(a, "192.0.2.8", T0), 0);
	assert_int_equal(ta.n, 1);
	assert_int_equal(ta.what[0], AUTH_SHARE_REGISTERED);
	assert_string_equal(ta.user[0], "");
	relay(b, &ta, T0);
	/* b has one left, not two; a refusal is not told */
	assert_int_equal(auth_register_check(b, "192.0.2.8", T0), 0);
	assert_int_equal(auth_register_check(b, "192.0.2.8", T0), 100);
	assert_int_equal(tb.n, 1);
	/* told while a's bucket is empty: one interval more, not more */
	assert_int_equal(auth_register_check(a, "192.0.2.8", T0), 0);
	relay(a, &tb, T0);
	relay(b, &ta, T0);
	relay(b, &ta, T0);
	assert_int_equal(auth_register_check(a, "192.0.2.8", T0), 200);
	assert_int_equal(auth_register_check(b, "192.0.2.8", T0), 200);
	assert_int_equal(auth_register_check(b, "192.0.2.8", T0 + 200000), 0);
	auth_free(a);
	auth_free(b);
}

struct hash_run {
	struct auth *a;
	pthread_barrier_t *go;
	int ok, busy;
};

static void *hasher(void *arg)
{
	struct hash_run *r = arg;
	char h[AUTH_HASH_MAX];

	pthread_barrier_wait(r->go);
	for (int i = 0; i < 4; i++) {
		int rc = auth_password_hash(r->a, "correct horse", 13, h);
		if (rc == 0)
			r->ok++;
		else if (rc == AUTH_EBUSY)
			r->busy++;
	}
	return NULL;
}

/* At most hash_max Argon2 runs at once: the rest fail at once with
 * AUTH_EBUSY instead of taking another worker thread. */
static void test_hash_max(void **state)
{
	struct auth_config c = small_cfg;
	enum { N = 6 };
	pthread_t th[N];
	struct hash_run r[N];
	pthread_barrier_t go;
	int ok = 0, busy = 0;

	(void)state;
	c.memory_kib = 4096; /* long enough for the runs to overlap */
	c.time_cost = 2;
	c.hash_max = 1;
	struct auth *a = auth_new(&c);
	assert_non_null(a);
	pthread_barrier_init(&go, NULL, N);
	for (int i = 0; i < N; i++) {
		r[i] = (struct hash_run){.a = a, .go = &go};
		assert_int_equal(pthread_create(&th[i], NULL, hasher, &r[i]),
				 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ok += r[i].ok;
		busy += r[i].busy;
	}
	pthread_barrier_destroy(&go);
	assert_int_equal(ok + busy, N * 4);
	assert_true(ok >= 1);
	assert_true(busy >= 1);
	/* Alone, a hash always gets its slot back. */
	char h[AUTH_HASH_MAX];
	assert_int_equal(auth_password_hash(a, "correct horse", 13, h), 0);
	assert_int_equal(auth_password_verify(a, h, "correct horse", 13), 0);
	auth_free(a);
}

static void *worker(void *arg)
{
	struct auth *a = arg;
	char tok[AUTH_TOKEN_LEN + 1], user[16];

	for (int i = 0; i < 500; i++) {
		if (auth_token_new(a, tok) != 0)
			return (void *)1;
		snprintf(user, sizeof(user), "w%d", i % 50);
		auth_login_failed(a, user, "192.0.2.200", T0 + i);
		(void)auth_login_check(a, user, "192.0.2.200", T0 + i);
		if (i % 7 == 0)
			auth_login_succeeded(a, user, "192.0.2.200", T0 + i);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct auth *a = *state;
	pthread_t th[4];
	void *rv;

	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker, a), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], &rv), 0);
		assert_null(rv);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_rejects_bad_cost),
	    cmocka_unit_test_setup_teardown(test_hash_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verify_unknown_user, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_verify_garbage, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_hash_rejects_oversized, setup,
					    teardown),
	    cmocka_unit_test(test_username_rules),
	    cmocka_unit_test(test_password_rules),
	    cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
	    cmocka_unit_test(test_token_hash),
	    cmocka_unit_test_setup_teardown(test_random, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_throttle_locks_then_window_frees, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_throttle_fixed_window, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_throttle_count_decays, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_throttle_case_insensitive,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_throttle_keys_independent,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_throttle_success_clears_account, setup, teardown),
	    cmocka_unit_test(test_throttle_bounded),
	    cmocka_unit_test_setup_teardown(test_throttle_expires_old, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_throttle_one_address_never_locks_account, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_throttle_distributed_spares_known_address, setup,
		teardown),
	    cmocka_unit_test(test_register_bucket),
	    cmocka_unit_test(test_share_login_across_nodes),
	    cmocka_unit_test(test_share_registrations_across_nodes),
	    cmocka_unit_test(test_hash_max),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
