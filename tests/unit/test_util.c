/* test_util: the util module through util.h. Strict UTF-8 validation
 * (overlong forms, surrogates, code points above U+10FFFF, truncated
 * sequences, stray continuation bytes), code point counting, the name rule,
 * ASCII lower-casing, whole-string int64 parsing, constant-time comparison,
 * FNV-1a 64 against its published vectors, RFC 3339 timestamps, monotonic
 * deadlines, the allocation wrappers and struct buf (append, printf growth,
 * reserve, consume). Pure functions: no fixtures. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "util/util.h"

/* utf8_valid on a string literal, which may hold NUL bytes. */
#define VALID(lit) utf8_valid((lit), sizeof(lit) - 1)

/* --- utf8_valid ----------------------------------------------------------- */

static void test_utf8_valid_ascii_and_empty(void **state)
{
	(void)state;
	assert_true(utf8_valid("", 0));
	assert_true(VALID("hello, world"));
	assert_true(VALID("\x7f"));
	/* NUL is a valid code point; rejecting it is the caller's business */
	assert_true(VALID("a\0b"));
}

static void test_utf8_valid_multibyte(void **state)
{
	(void)state;
	assert_true(VALID("\xc3\xa9"));		/* U+00E9 e acute */
	assert_true(VALID("\xe2\x82\xac"));	/* U+20AC euro */
	assert_true(VALID("\xf0\x9f\x98\x80")); /* U+1F600 emoji */
	/* thumbs up with a skin tone modifier: two code points */
	assert_true(VALID("\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd"));
	assert_true(VALID("caf\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\x98\x80!"));
	/* the smallest code point of each length */
	assert_true(VALID("\xc2\x80"));		/* U+0080 */
	assert_true(VALID("\xe0\xa0\x80"));	/* U+0800 */
	assert_true(VALID("\xf0\x90\x80\x80")); /* U+10000 */
	/* the largest of each length */
	assert_true(VALID("\xdf\xbf"));		/* U+07FF */
	assert_true(VALID("\xef\xbf\xbf"));	/* U+FFFF */
	assert_true(VALID("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
	/* right around the surrogates */
	assert_true(VALID("\xed\x9f\xbf")); /* U+D7FF */
	assert_true(VALID("\xee\x80\x80")); /* U+E000 */
}

static void test_utf8_valid_overlong(void **state)
{
	(void)state;
	/* 2 bytes */
	assert_false(VALID("\xc0\x80")); /* U+0000 ("modified UTF-8" NUL) */
	assert_false(VALID("\xc0\xaf")); /* '/' */
	assert_false(VALID("\xc1\xbf")); /* U+007F */
	/* 3 bytes */
	assert_false(VALID("\xe0\x80\x80")); /* U+0000 */
	assert_false(VALID("\xe0\x80\xaf")); /* '/' */
	assert_false(VALID("\xe0\x9f\xbf")); /* U+07FF */
	/* 4 bytes */
	assert_false(VALID("\xf0\x80\x80\x80")); /* U+0000 */
	assert_false(VALID("\xf0\x80\x80\xaf")); /* '/' */
	assert_false(VALID("\xf0\x8f\xbf\xbf")); /* U+FFFF */
	/* overlong in the middle of good text */
	assert_false(VALID("ok \xc0\xaf ok"));
}

static void test_utf8_valid_surrogates(void **state)
{
	(void)state;
	assert_false(VALID("\xed\xa0\x80")); /* U+D800 */
	assert_false(VALID("\xed\xad\xbf")); /* U+DB7F */
	assert_false(VALID("\xed\xb0\x80")); /* U+DC00 */
	assert_false(VALID("\xed\xbf\xbf")); /* U+DFFF */
	/* a CESU-8 pair for U+1F600 is two surrogates, not one emoji */
	assert_false(VALID("\xed\xa0\xbd\xed\xb8\x80"));
}

static void test_utf8_valid_above_max(void **state)
{
	(void)state;
	assert_false(VALID("\xf4\x90\x80\x80")); /* U+110000 */
	assert_false(VALID("\xf5\x80\x80\x80"));
	assert_false(VALID("\xf7\xbf\xbf\xbf")); /* U+1FFFFF */
	/* 5- and 6-byte forms, and bytes that never occur */
	assert_false(VALID("\xf8\x88\x80\x80\x80"));
	assert_false(VALID("\xfc\x84\x80\x80\x80\x80"));
	assert_false(VALID("\xfe"));
	assert_false(VALID("\xff"));
	assert_false(VALID("a\xffz"));
}

static void test_utf8_valid_truncated(void **state)
{
	(void)state;
	assert_false(VALID("\xc3"));
	assert_false(VALID("\xe2\x82"));
	assert_false(VALID("\xe2"));
	assert_false(VALID("\xf0\x9f\x98"));
	assert_false(VALID("\xf0\x9f"));
	assert_false(VALID("\xf0"));
	assert_false(VALID("abc\xe2\x82"));
	/* cut short by a following ASCII byte or a new lead byte */
	assert_false(VALID("\xe2\x82z"));
	assert_false(VALID("\xf0\x9f\x98z"));
	assert_false(VALID("\xc3\xc3\xa9"));
	/* the length argument is honoured: a valid sequence cut by len */
	assert_false(utf8_valid("\xc3\xa9", 1));
	assert_false(utf8_valid("\xf0\x9f\x98\x80", 3));
	assert_true(utf8_valid("ab\xf0\x9f\x98\x80", 2));
}

static void test_utf8_valid_lone_continuation(void **state)
{
	(void)state;
	assert_false(VALID("\x80"));
	assert_false(VALID("\xbf"));
	assert_false(VALID("a\x80z"));
	/* one continuation byte too many */
	assert_false(VALID("\xc3\xa9\xa9"));
	assert_false(VALID("\xf0\x9f\x98\x80\x80"));
}

/* --- utf8_count ----------------------------------------------------------- */

static void test_utf8_count(void **state)
{
	(void)state;
	assert_int_equal(utf8_count("", 0), 0);
	assert_int_equal(utf8_count("abc", 3), 3);
	assert_int_equal(utf8_count("\xc3\xa9", 2), 1);
	assert_int_equal(utf8_count("\xe2\x82\xac", 3), 1);
	assert_int_equal(utf8_count("\xf0\x9f\x98\x80", 4), 1);
	/* "café € 😀!" is 9 code points in 15 bytes */
	const char *mixed = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80!";
	assert_int_equal(strlen(mixed), 15);
	assert_int_equal(utf8_count(mixed, strlen(mixed)), 9);
	/* only len bytes count */
	assert_int_equal(utf8_count("abcdef", 4), 4);
	assert_int_equal(utf8_count("a\0b", 3), 3);
}

/* --- name_valid ----------------------------------------------------------- */

static void test_name_valid_lengths(void **state)
{
	(void)state;
	char name[40];

	assert_false(name_valid(""));
	assert_true(name_valid("a"));
	memset(name, 'x', 32);
	name[32] = '\0';
	assert_true(name_valid(name));
	name[32] = 'x';
	name[33] = '\0';
	assert_false(name_valid(name));
	memset(name, 'x', 39);
	name[39] = '\0';
	assert_false(name_valid(name));
}

static void test_name_valid_characters(void **state)
{
	(void)state;
	assert_true(name_valid("Alice_99"));
	assert_true(name_valid("ABCXYZabcxyz0189"));
	/* each allowed punctuation mark, alone and inside a name */
	assert_true(name_valid("_"));
	assert_true(name_valid(".a"));
	assert_true(name_valid("-"));
	assert_true(name_valid("a_b"));
	assert_true(name_valid("a.b"));
	assert_true(name_valid("a-b"));
	assert_true(name_valid("-._"));

	/* dots alone are path segments (issue 17) */
	assert_false(name_valid("."));
	assert_false(name_valid(".."));
	assert_false(name_valid("..."));
	assert_true(name_valid("..a"));
	assert_true(name_valid("_."));

	assert_false(name_valid("a b"));
	assert_false(name_valid(" a"));
	assert_false(name_valid("a "));
	assert_false(name_valid("a/b"));
	assert_false(name_valid("/"));
	assert_false(name_valid("a\\b"));
	assert_false(name_valid("caf\xc3\xa9"));      /* é */
	assert_false(name_valid("\xf0\x9f\x98\x80")); /* emoji */
	assert_false(name_valid("a\tb"));
	assert_false(name_valid("a\nb"));
	const char *punct = "!\"#$%&'()*+,:;<=>?@[]^`{|}~";
	for (const char *p = punct; *p; p++) {
		char s[4] = {'a', *p, 'b', '\0'};
		if (name_valid(s))
			fail_msg("name_valid accepted '%s'", s);
	}
}

/* --- ascii_lower ---------------------------------------------------------- */

static void test_ascii_lower(void **state)
{
	(void)state;
	char out[64];

	ascii_lower("", out);
	assert_string_equal(out, "");
	ascii_lower("HeLLo_World-09.AZaz", out);
	assert_string_equal(out, "hello_world-09.azaz");
	ascii_lower("@[`{", out); /* neighbours of A-Z and a-z stay */
	assert_string_equal(out, "@[`{");
	/* bytes above 0x7f are left alone: "ÄB" -> "Äb" */
	ascii_lower("\xc3\x84Z", out);
	assert_string_equal(out, "\xc3\x84z");
	/* exactly strlen(s)+1 bytes are written */
	memset(out, '#', sizeof(out));
	ascii_lower("ABC", out);
	assert_memory_equal(out, "abc\0#", 5);
}

/* --- parse_i64 ------------------------------------------------------------ */

static void test_parse_i64_ok(void **state)
{
	(void)state;
	int64_t v;

	assert_int_equal(parse_i64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_i64("42", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_i64("007", &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(parse_i64("-42", &v), 0);
	assert_int_equal(v, -42);
	assert_int_equal(parse_i64("-0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_i64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(parse_i64("-9223372036854775807", &v), 0);
	assert_true(v == -INT64_MAX);
}

static void test_parse_i64_int64_min(void **state)
{
	(void)state;
	int64_t v = 0;

	/* INT64_MIN is a decimal int64 too; util.h promises to parse one. */
	assert_int_equal(parse_i64("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(parse_i64("-9223372036854775809", &v), -1);
}

static void test_parse_i64_errors(void **state)
{
	(void)state;
	int64_t v;

	assert_int_equal(parse_i64("", &v), -1);
	assert_int_equal(parse_i64("-", &v), -1);
	assert_int_equal(parse_i64("12a", &v), -1);
	assert_int_equal(parse_i64("a12", &v), -1);
	assert_int_equal(parse_i64("1 2", &v), -1);
	assert_int_equal(parse_i64(" 12", &v), -1);
	assert_int_equal(parse_i64("12 ", &v), -1);
	assert_int_equal(parse_i64("12\n", &v), -1);
	assert_int_equal(parse_i64("+12", &v), -1);
	assert_int_equal(parse_i64("--12", &v), -1);
	assert_int_equal(parse_i64("1-2", &v), -1);
	assert_int_equal(parse_i64("0x10", &v), -1);
	assert_int_equal(parse_i64("1e3", &v), -1);
	assert_int_equal(parse_i64("1.5", &v), -1);
	/* INT64_MAX + 1, and far beyond */
	assert_int_equal(parse_i64("9223372036854775808", &v), -1);
	assert_int_equal(parse_i64("9223372036854775810", &v), -1);
	assert_int_equal(parse_i64("18446744073709551615", &v), -1);
	assert_int_equal(parse_i64("18446744073709551616", &v), -1);
	assert_int_equal(parse_i64("99999999999999999999999", &v), -1);
	assert_int_equal(parse_i64("-99999999999999999999999", &v), -1);
}

/* --- ct_memcmp and secure_zero -------------------------------------------- */

static void test_ct_memcmp(void **state)
{
	(void)state;
	unsigned char a[32], b[32];

	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = b[i] = (unsigned char)(i * 7 + 1);
	assert_int_equal(ct_memcmp(a, b, sizeof(a)), 0);
	assert_int_equal(ct_memcmp(a, b, 0), 0);
	b[0] ^= 1;
	assert_int_not_equal(ct_memcmp(a, b, sizeof(a)), 0);
	assert_int_equal(ct_memcmp(a + 1, b + 1, sizeof(a) - 1), 0);
	b[0] = a[0];
	b[31] ^= 0x80; /* only the high bit of the last byte */
	assert_int_not_equal(ct_memcmp(a, b, sizeof(a)), 0);
	assert_int_equal(ct_memcmp(a, b, 31), 0);
	assert_int_equal(ct_memcmp("abc", "abd", 2), 0);
	assert_int_not_equal(ct_memcmp("abc", "abd", 3), 0);
}

static void test_secure_zero(void **state)
{
	(void)state;
	char secret[16];

	memset(secret, 'k', sizeof(secret));
	secure_zero(secret + 2, 10);
	assert_memory_equal(secret, "kk\0\0\0\0\0\0\0\0\0\0kkkk", 16);
	secure_zero(secret, 0);
	assert_int_equal(secret[0], 'k');
}

/* --- siphash24, table_hash ------------------------------------------------ */

/* The reference vectors (key 00 01 .. 0f, message 00 01 .. n-1) for
 * lengths that take each path: empty, a tail only, one block and a tail
 * of 7, and two whole blocks. */
static void test_siphash24(void **state)
{
	uint8_t key[16], msg[16];
	(void)state;

	for (int i = 0; i < 16; i++)
		key[i] = msg[i] = (uint8_t)i;
	assert_int_equal(siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
	assert_int_equal(siphash24(key, msg, 1), 0x74f839c593dc67fdULL);
	assert_int_equal(siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
	assert_int_equal(siphash24(key, msg, 8), 0x93f5f5799a932462ULL);
	/* the process's key is not the zero key, and is the same each call */
	uint8_t zero[16] = {0};
	assert_true(table_hash("alice", 5) != siphash24(zero, "alice", 5));
	assert_int_equal(table_hash("alice", 5), table_hash("alice", 5));
	assert_true(table_hash("alice", 5) != table_hash("alicf", 5));
}

/* --- fnv1a64 -------------------------------------------------------------- */

/* The published FNV-1a 64 vectors (draft-eastlake-fnv), and the
 * continuation form agreeing with one pass over the joined bytes. */
static void test_fnv1a64(void **state)
{
	(void)state;

	assert_int_equal(fnv1a64("", 0), 0xcbf29ce484222325ULL);
	assert_int_equal(fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
	assert_int_equal(fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
	assert_int_equal(fnv1a64_more(fnv1a64("foo", 3), "bar", 3),
			 0x85944171f73967e8ULL);
	assert_int_equal(fnv1a64_more(fnv1a64("", 0), "a", 1),
			 0xaf63dc4c8601ec8cULL);
	assert_int_equal(fnv1a64_more(0x85944171f73967e8ULL, "x", 0),
			 0x85944171f73967e8ULL);
}

/* --- time ----------------------------------------------------------------- */

static void test_format_ts(void **state)
{
	(void)state;
	char out[32];

	format_ts(0, out);
	assert_string_equal(out, "1970-01-01T00:00:00.000Z");
	format_ts(1764158400123, out);
	assert_string_equal(out, "2025-11-26T12:00:00.123Z");
	assert_int_equal(strlen(out), 24);
	format_ts(5, out); /* milliseconds are zero-padded */
	assert_string_equal(out, "1970-01-01T00:00:00.005Z");
	format_ts(59999, out);
	assert_string_equal(out, "1970-01-01T00:00:59.999Z");
	format_ts(951782400999, out); /* a leap day */
	assert_string_equal(out, "2000-02-29T00:00:00.999Z");
	format_ts(253402300799999, out); /* the last four-digit year */
	assert_string_equal(out, "9999-12-31T23:59:59.999Z");
}

static void test_clocks(void **state)
{
	(void)state;
	int64_t wall = now_ms();
	/* after 2024-01-01 and before 2200-01-01 */
	assert_true(wall > INT64_C(1704067200000));
	assert_true(wall < INT64_C(7258118400000));
	int64_t m1 = mono_ms(), m2 = mono_ms();
	assert_true(m1 >= 0);
	assert_true(m2 >= m1);
}

/* A timespec in nanoseconds. */
static int64_t ts_ns(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_mono_deadline(void **state)
{
	(void)state;
	/* Every remainder of a second, so that the nanoseconds carry into
	 * the seconds for some of them wherever the clock stands. */
	static const int64_t ms[] = {1,	   7,	 250,  500,  999,
				     1000, 1001, 1999, 2500, 86400000};
	for (size_t i = 0; i < ARRAY_LEN(ms); i++) {
		for (int64_t extra = 0; extra < 1000; extra += 37) {
			int64_t want = ms[i] + extra;
			struct timespec a, b;
			clock_gettime(CLOCK_MONOTONIC, &a);
			struct timespec d = mono_deadline(want);
			clock_gettime(CLOCK_MONOTONIC, &b);
			assert_true(d.tv_nsec >= 0);
			assert_true(d.tv_nsec < 1000000000L);
			assert_true(ts_ns(d) >= ts_ns(a) + want * 1000000);
			assert_true(ts_ns(d) <= ts_ns(b) + want * 1000000);
		}
	}
	/* now for 0 and a deadline already past */
	int64_t cases[] = {0, -1, -1500};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		struct timespec d = mono_deadline(cases[i]);
		clock_gettime(CLOCK_MONOTONIC, &b);
		assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
		assert_true(ts_ns(d) >= ts_ns(a) && ts_ns(d) <= ts_ns(b));
	}
	/* on the monotonic clock, not the wall clock (decades away) */
	int64_t diff = ts_ns(mono_deadline(1000)) / 1000000 - mono_ms();
	assert_true(diff <= 1000 && diff > -60000);
}

/* --- allocation ----------------------------------------------------------- */

static void test_alloc_wrappers(void **state)
{
	(void)state;
	char *p = xmalloc(0); /* never NULL, even for 0 bytes */
	assert_non_null(p);
	free(p);

	int *z = xcalloc(16, sizeof(int));
	for (int i = 0; i < 16; i++)
		assert_int_equal(z[i], 0);
	z = xrealloc(z, 1024 * sizeof(int));
	assert_int_equal(z[15], 0); /* contents survive growth */
	z[1023] = 7;
	free(z);

	char *s = xstrdup("natter");
	assert_string_equal(s, "natter");
	free(s);
	s = xstrndup("natterd", 6);
	assert_string_equal(s, "natter");
	free(s);
	s = xstrndup("a\0bc", 4); /* copies n bytes, NUL-terminates */
	assert_memory_equal(s, "a\0bc", 5);
	free(s);
	s = xstrdup("");
	assert_string_equal(s, "");
	free(s);
}

/* --- struct buf ----------------------------------------------------------- */

static void test_buf_append(void **state)
{
	(void)state;
	struct buf b;

	buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);

	buf_append(&b, "abc", 3);
	assert_int_equal(b.len, 3);
	assert_true(b.cap > b.len);
	assert_string_equal(b.data, "abc");
	buf_append(&b, "", 0);
	assert_int_equal(b.len, 3);
	assert_string_equal(b.data, "abc");
	buf_append(&b, "d\0e", 3); /* binary data, NUL included */
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.data, "abcd\0e", 7);
	buf_puts(&b, "fg");
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "abcd\0efg", 9);

	char *stolen = buf_steal(&b);
	assert_memory_equal(stolen, "abcd\0efg", 9);
	free(stolen);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	stolen = buf_steal(&b); /* empty: still a string */
	assert_string_equal(stolen, "");
	free(stolen);
	buf_puts(&b, "again");
	assert_string_equal(b.data, "again");

	buf_fini(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	buf_fini(&b); /* twice is harmless */
}

static void test_buf_append_growth(void **state)
{
	(void)state;
	struct buf b;
	char chunk[1000];

	buf_init(&b);
	for (size_t i = 0; i < 100; i++) {
		memset(chunk, 'a' + (int)(i % 26), sizeof(chunk));
		buf_append(&b, chunk, sizeof(chunk));
		assert_int_equal(b.len, (i + 1) * sizeof(chunk));
		assert_true(b.cap > b.len);
		assert_int_equal(b.data[b.len], '\0');
	}
	for (size_t i = 0; i < 100; i++) {
		char want = (char)('a' + (int)(i % 26));
		assert_int_equal(b.data[i * 1000], want);
		assert_int_equal(b.data[i * 1000 + 999], want);
	}
	buf_fini(&b);
}

static void test_buf_printf_growth(void **state)
{
	(void)state;
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s", "");
	assert_non_null(b.data); /* NUL-terminated once anything was written */
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");

	/* many small writes, well past several KiB */
	for (int i = 0; i < 2000; i++)
		buf_printf(&b, "%04d,", i);
	assert_int_equal(b.len, 2000 * 5);
	assert_int_equal(strlen(b.data), b.len);
	assert_memory_equal(b.data, "0000,0001,0002,", 15);
	assert_memory_equal(b.data + b.len - 10, "1998,1999,", 10);
	for (int i = 0; i < 2000; i += 97) {
		char want[16];
		snprintf(want, sizeof(want), "%04d,", i);
		assert_memory_equal(b.data + i * 5, want, 5);
	}

	/* one write much larger than the capacity so far */
	size_t before = b.len;
	char *big = xmalloc(20001);
	memset(big, 'z', 20000);
	big[20000] = '\0';
	buf_printf(&b, "[%s]%d", big, 42);
	assert_int_equal(b.len, before + 20000 + 4);
	assert_int_equal(b.data[before], '[');
	assert_int_equal(b.data[before + 1], 'z');
	assert_int_equal(b.data[before + 20000], 'z');
	assert_string_equal(b.data + before + 20001, "]42");
	assert_true(b.cap > b.len);
	free(big);
	buf_fini(&b);
}

static void test_buf_reserve(void **state)
{
	(void)state;
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "x");
	buf_reserve(&b, 5000);
	assert_true(b.cap >= b.len + 5000 + 1);
	char *data = b.data;
	size_t cap = b.cap;
	for (int i = 0; i < 50; i++)
		buf_append(&b,
			   "0123456789012345678901234567890123456789"
			   "0123456789012345678901234567890123456789"
			   "01234567890123456789",
			   100);
	/* 5000 reserved bytes took 5000 appended bytes without moving */
	assert_ptr_equal(b.data, data);
	assert_int_equal(b.cap, cap);
	assert_int_equal(b.len, 5001);
	buf_reserve(&b, 0);
	assert_int_equal(b.cap, cap);
	buf_fini(&b);
}

static void test_buf_consume(void **state)
{
	(void)state;
	struct buf b;

	buf_init(&b);
	buf_consume(&b, 0); /* empty, never allocated */
	buf_consume(&b, 10);
	assert_int_equal(b.len, 0);

	buf_puts(&b, "hello world");
	buf_consume(&b, 0);
	assert_int_equal(b.len, 11);
	assert_string_equal(b.data, "hello world");
	buf_consume(&b, 6);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.data, "world");
	buf_consume(&b, 4);
	assert_int_equal(b.len, 1);
	assert_string_equal(b.data, "d");
	buf_consume(&b, 1); /* exactly all */
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	buf_puts(&b, "again");
	assert_string_equal(b.data, "again");
	buf_consume(&b, 100); /* more than all */
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");

	/* partial consumes of a large buffer keep the rest intact */
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%03d|", i);
	buf_consume(&b, 4 * 250);
	assert_int_equal(b.len, 4 * 750);
	assert_memory_equal(b.data, "250|251|", 8);
	assert_memory_equal(b.data + b.len - 4, "999|", 4);
	assert_int_equal(b.data[b.len], '\0');
	buf_append(&b, "end", 3);
	assert_memory_equal(b.data + b.len - 7, "999|end", 8);
	buf_fini(&b);
}

/* --- text_visible_valid ------------------------------------------------- */

#define VISIBLE(lit) text_visible_valid((lit), sizeof(lit) - 1)

static void test_text_visible_valid(void **state)
{
	(void)state;
	assert_true(VISIBLE("Alice"));
	assert_true(VISIBLE("Zo\xc3\xab \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d"));
	/* ZWJ in an emoji sequence, ZWNJ in Persian: allowed */
	assert_true(VISIBLE("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9"));
	assert_true(VISIBLE("\xd9\x85\xe2\x80\x8c\xd9\x8a"));
	/* bidirectional embeddings, overrides (U+202A-202E) and isolates
	 * (U+2066-2069) */
	assert_false(VISIBLE("evil\xe2\x80\xaatxt"));
	assert_false(VISIBLE("evil\xe2\x80\xaetxt.exe"));
	assert_false(VISIBLE("a\xe2\x81\xa6"
			     "b"));
	assert_false(VISIBLE("a\xe2\x81\xa9"
			     "b"));
	/* direction marks, zero-width space, word joiner, BOM, tag, C1, DEL */
	assert_false(VISIBLE("a\xe2\x80\x8f"));
	assert_false(VISIBLE("a\xe2\x80\x8b"
			     "b"));
	assert_false(VISIBLE("a\xe2\x81\xa0"
			     "b"));
	assert_false(VISIBLE("\xef\xbb\xbf"
			     "a"));
	assert_false(VISIBLE("a\xf3\xa0\x80\x81"));
	assert_false(VISIBLE("a\xc2\x85"
			     "b"));
	assert_false(VISIBLE("a\x7f"));
	assert_false(VISIBLE("a\nb"));
	/* invalid UTF-8 */
	assert_false(VISIBLE("a\xff"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8_valid_ascii_and_empty),
	    cmocka_unit_test(test_utf8_valid_multibyte),
	    cmocka_unit_test(test_utf8_valid_overlong),
	    cmocka_unit_test(test_utf8_valid_surrogates),
	    cmocka_unit_test(test_utf8_valid_above_max),
	    cmocka_unit_test(test_utf8_valid_truncated),
	    cmocka_unit_test(test_utf8_valid_lone_continuation),
	    cmocka_unit_test(test_utf8_count),
	    cmocka_unit_test(test_name_valid_lengths),
	    cmocka_unit_test(test_name_valid_characters),
	    cmocka_unit_test(test_ascii_lower),
	    cmocka_unit_test(test_parse_i64_ok),
	    cmocka_unit_test(test_parse_i64_int64_min),
	    cmocka_unit_test(test_parse_i64_errors),
	    cmocka_unit_test(test_ct_memcmp),
	    cmocka_unit_test(test_secure_zero),
	    cmocka_unit_test(test_siphash24),
	    cmocka_unit_test(test_fnv1a64),
	    cmocka_unit_test(test_format_ts),
	    cmocka_unit_test(test_clocks),
	    cmocka_unit_test(test_mono_deadline),
	    cmocka_unit_test(test_alloc_wrappers),
	    cmocka_unit_test(test_buf_append),
	    cmocka_unit_test(test_buf_append_growth),
	    cmocka_unit_test(test_buf_printf_growth),
	    cmocka_unit_test(test_buf_reserve),
	    cmocka_unit_test(test_buf_consume),
	    cmocka_unit_test(test_text_visible_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
