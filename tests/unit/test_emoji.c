/* Unit tests for emoji: what a reaction may be (one RGI emoji sequence, a
 * single emoji code point, a known shortcode) and what it may not (text,
 * two emoji, an emoji with text, unknown shortcodes, bad UTF-8, too long). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/emoji.h"
#include "util/util.h"

static void test_accepted(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"\xF0\x9F\x91\x8D", "\xF0\x9F\x91\x8D"},	/* 👍 */
	    {"\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", NULL}, /* 👍🏽 */
	    {"\xE2\x9D\xA4\xEF\xB8\x8F", NULL},		/* ❤️ */
	    {"\xE2\x9D\xA4", NULL},			/* ❤ text style */
	    {"\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7", NULL}, /* 🇫🇷 */
	    {"\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D"
	     "\xF0\x9F\x91\xA7",
	     NULL},				 /* 👨‍👩‍👧 */
	    {"1\xEF\xB8\x8F\xE2\x83\xA3", NULL}, /* 1️⃣ */
	    {"\xE2\x9C\x85", NULL},		 /* ✅ */
	    {":+1:", "\xF0\x9F\x91\x8D"},
	    {":heart:", "\xE2\x9D\xA4\xEF\xB8\x8F"},
	    {":fire:", "\xF0\x9F\x94\xA5"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char out[EMOJI_BYTES_MAX];
		const char *in = cases[i].in;
		if (emoji_normalize(in, strlen(in), out) != 0)
			fail_msg("case %zu (%s) refused", i, in);
		assert_string_equal(out, cases[i].want ? cases[i].want : in);
	}
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const cases[] = {
	    "",
	    "a",
	    "1",
	    "#",
	    " ",
	    "ab",
	    "\xF0\x9F\x91\x8D\xF0\x9F\x91\x8D", /* two */
	    "\xF0\x9F\x91\x8D ",		/* and a space */
	    "x\xF0\x9F\x91\x8D",
	    "\xE6\xB1\x89", /* a CJK character */
	    ":nosuchcode:",
	    "::",
	    ":+1",
	    "\xFF",
	    "\xF0\x9F\x91", /* cut short */
	    "\xEF\xB8\x8F", /* a variation selector alone */
	    "\xE2\x80\x8D", /* a zero-width joiner alone */
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char out[EMOJI_BYTES_MAX];
		if (emoji_normalize(cases[i], strlen(cases[i]), out) == 0)
			fail_msg("case %zu (%s) accepted", i, cases[i]);
	}
	/* long: 20 thumbs up is 80 bytes, more than one emoji may be */
	char big[81];
	for (int i = 0; i < 20; i++)
		memcpy(big + 4 * i, "\xF0\x9F\x91\x8D", 4);
	big[80] = '\0';
	char out[EMOJI_BYTES_MAX];
	assert_int_equal(emoji_normalize(big, 80, out), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepted),
	    cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
