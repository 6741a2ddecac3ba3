/* test_tus: the tus 1.0 header parsers through tus.h: Upload-Offset and
 * Upload-Length numbers (digits only, bounded), Upload-Metadata pairs
 * (base64 values, keys alone, spaces, repeated keys, bad base64, trailing
 * commas, too many pairs, values that do not fit or hold a NUL). Pure. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/tus.h"

static void test_numbers(void **state)
{
	(void)state;
	int64_t v = -1;
	assert_int_equal(tus_number_parse("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(tus_number_parse("262144", &v), 0);
	assert_int_equal(v, 262144);
	assert_int_equal(tus_number_parse("104857600", &v), 0);
	assert_int_equal(v, 104857600);
	assert_int_equal(tus_number_parse("999999999999999999", &v), 0);
	assert_int_equal(v, 999999999999999999LL);
	const char *bad[] = {"",
			     "-1",
			     "+1",
			     " 1",
			     "1 ",
			     "1.0",
			     "0x10",
			     "1e3",
			     "abc",
			     "1,2",
			     "9999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		assert_int_equal(tus_number_parse(bad[i], &v), -1);
		assert_int_equal(v, 7);
	}
	assert_int_equal(tus_number_parse(NULL, &v), -1);
}

static void test_metadata(void **state)
{
	(void)state;
	char out[64];
	/* "filename world.png", "filetype image/png", "is_confidential" */
	const char *h = "filename d29ybGQucG5n,filetype aW1hZ2UvcG5n,"
			"is_confidential";
	assert_int_equal(tus_metadata_get(h, "filename", out, sizeof(out)), 9);
	assert_string_equal(out, "world.png");
	assert_int_equal(tus_metadata_get(h, "filetype", out, sizeof(out)), 9);
	assert_string_equal(out, "image/png");
	assert_int_equal(
	    tus_metadata_get(h, "is_confidential", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(tus_metadata_get(h, "name", out, sizeof(out)), -1);
	assert_true(tus_metadata_valid(h));
	/* spaces after commas (tus-js-client writes none; others might) */
	assert_int_equal(
	    tus_metadata_get("a YQ==, b Yg==", "b", out, sizeof(out)), 1);
	assert_string_equal(out, "b");
	/* UTF-8 names come through as bytes: "hé" */
	assert_int_equal(
	    tus_metadata_get("filename aMOp", "filename", out, sizeof(out)), 3);
	assert_string_equal(out, "h\xc3\xa9");
}

static void test_metadata_bad(void **state)
{
	(void)state;
	char out[8];
	const char *bad[] = {
	    "filename !!!!", /* not base64 */
	    "filename YQ=",  /* bad padding */
	    "a YQ==,a Yg==", /* repeated key */
	    "a YQ==,",	     /* trailing comma */
	    ",a YQ==",	     /* empty pair */
	    "a YQ== Yg==",   /* two values */
	    "a\tYQ==",	     /* tab is not the separator */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(tus_metadata_valid(bad[i]));
		strcpy(out, "x");
		assert_int_equal(
		    tus_metadata_get(bad[i], "a", out, sizeof(out)), -2);
		assert_string_equal(out, "");
	}
	/* a value that does not fit, or holds a NUL */
	assert_int_equal(
	    tus_metadata_get("a YWJjZGVmZ2hpams=", "a", out, sizeof(out)), -2);
	assert_int_equal(tus_metadata_get("a YQBi", "a", out, sizeof(out)), -2);
	/* too many pairs, too long a header */
	char many[2048] = "";
	for (int i = 0; i <= TUS_PAIRS_MAX; i++) {
		char pair[16];
		snprintf(pair, sizeof(pair), "%sk%d", i ? "," : "", i);
		strcat(many, pair);
	}
	assert_false(tus_metadata_valid(many));
	static char big[TUS_METADATA_MAX + 16];
	memset(big, 'a', sizeof(big) - 1);
	assert_false(tus_metadata_valid(big));
	/* empty: no key at all */
	assert_int_equal(tus_metadata_get("", "a", out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_metadata),
	    cmocka_unit_test(test_metadata_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
