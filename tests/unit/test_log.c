/* test_log: the log module through log.h, writing to a file in a scratch
 * directory and reading it back. Every logfmt value that is not a plain
 * token is quoted and escaped, so an argument (a login name, a path) can
 * neither add a key nor start a line; the format string, not the formatted
 * text, decides where msg ends; numbers and composed values still format
 * as printf would. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testdir.h"
#include "util/log.h"
#include "util/util.h"

struct fx {
	char dir[512];
	char path[600];
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	if (testdir_make(fx->dir, sizeof(fx->dir), "test_log") < 0)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/natterd.log", fx->dir);
	if (log_open(fx->path, LOG_DEBUG) < 0)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	log_close();
	testdir_remove(fx->dir);
	free(fx);
	return 0;
}

/* The whole file; caller frees. */
static char *slurp(const char *path, size_t *lines)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static char data[65536];
	size_t n = fread(data, 1, sizeof(data) - 1, f);
	fclose(f);
	data[n] = '\0';
	*lines = 0;
	for (size_t i = 0; i < n; i++)
		if (data[i] == '\n')
			(*lines)++;
	return strdup(data);
}

/* The line after "ts=... level=LEVEL ", without its newline. */
static const char *after_prefix(const char *line)
{
	const char *p = strstr(line, " level=");
	assert_non_null(p);
	p = strchr(p + 1, ' ');
	assert_non_null(p);
	return p + 1;
}

static void test_forged_key_and_newline_stay_in_one_value(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	log_warn("login failed user=%s addr=%s",
		 "eve\" level=error msg=\"owned\nts=x level=error msg=forged",
		 "127.0.0.1");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 1);
	assert_string_equal(after_prefix(s),
			    "msg=\"login failed\" user=\"eve\\\" level=error "
			    "msg=\\\"owned\\nts=x "
			    "level=error msg=forged\" addr=127.0.0.1\n");
	/* One level key only, the real one. */
	assert_non_null(strstr(s, "level=warn "));
	free(s);
}

static void test_value_cannot_move_the_end_of_msg(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	/* A key-like word inside an argument of the sentence stays in msg. */
	log_info("user %s joined room=%s", "x room=admin", "lobby");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 1);
	assert_string_equal(after_prefix(s),
			    "msg=\"user x room=admin joined\" room=lobby\n");
	free(s);
}

static void test_controls_quotes_and_bad_utf8_escaped(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	log_info("client report text=%s raw=%s ok=%s empty=%s", "a\\b\t\"c\"",
		 "\xff\xfe\r", "caf\xc3\xa9 au lait", "");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 1);
	assert_string_equal(after_prefix(s),
			    "msg=\"client report\" text=\"a\\\\b\\t\\\"c\\\"\" "
			    "raw=\"\\xff\\xfe\\r\" ok=\"caf\xc3\xa9 au lait\" "
			    "empty=\"\"\n");
	free(s);
}

static void test_numbers_and_composed_values(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	log_info("stats n=%d big=%lld size=%zu hex=0x%04x pad=%5.1f addr=%s:%u "
		 "pct=100%% w=%.*s",
		 -3, (long long)1 << 40, (size_t)7, 0xab, 2.25, "::1", 8080u, 3,
		 "abcdef");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 1);
	assert_string_equal(after_prefix(s),
			    "msg=\"stats\" n=-3 big=1099511627776 size=7 "
			    "hex=0x00ab pad=\"  2.2\" addr=::1:8080 pct=100% "
			    "w=abc\n");
	free(s);
}

static void test_caller_quotes_not_doubled(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	log_info("tls handshake failed err=\"%s\" addr=%s", "bad record mac",
		 "10.0.0.1");
	log_info("tls handshake failed err=\"%s\"", "x\" y=1");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 2);
	const char *second = strchr(s, '\n') + 1;
	assert_non_null(strstr(after_prefix(s),
			       "msg=\"tls handshake failed\" err=\"bad record "
			       "mac\" addr=10.0.0.1\n"));
	assert_string_equal(after_prefix(second),
			    "msg=\"tls handshake failed\" err=\"x\\\" y=1\"\n");
	free(s);
}

static void test_sentence_only_and_free_text_tail(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	log_error("%s", "cannot open\nthe database");
	log_error("cannot open the database path=%s: %s", "/tmp/a b",
		  "No such file");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 2);
	const char *second = strchr(s, '\n') + 1;
	assert_non_null(
	    strstr(after_prefix(s), "msg=\"cannot open\\nthe database\"\n"));
	assert_string_equal(
	    after_prefix(second),
	    "msg=\"cannot open the database\" path=\"/tmp/a b:\" "
	    "\"No such file\"\n");
	free(s);
}

static void test_access_log_quotes_path(void **state)
{
	struct fx *fx = *state;
	size_t lines;

	log_access("GET", "/a b\n\"x", 200, 12, 34, "127.0.0.1");
	char *s = slurp(fx->path, &lines);
	assert_int_equal(lines, 1);
	assert_string_equal(after_prefix(s),
			    "msg=\"access\" method=GET path=\"/a b\\n\\\"x\" "
			    "status=200 bytes=12 dur_us=34 addr=127.0.0.1\n");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_forged_key_and_newline_stay_in_one_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_value_cannot_move_the_end_of_msg, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_controls_quotes_and_bad_utf8_escaped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_numbers_and_composed_values,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_caller_quotes_not_doubled,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_sentence_only_and_free_text_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_access_log_quotes_path, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
