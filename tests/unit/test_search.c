/* Unit tests for search: the text the index holds (CJK runs as bigrams,
 * Latin unchanged), the FTS5 query a user's words become (never any FTS
 * syntax of the user's), and snippets (hits marked, a window around the
 * first hit, whole characters only). */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/search.h"
#include "util/util.h"

static void index_is(const char *text, const char *want)
{
	char *got = search_index_text(text, strlen(text));
	if (strcmp(got, want))
		fail_msg("index of '%s': '%s', want '%s'", text, got, want);
	free(got);
}

static void test_index_text(void **state)
{
	(void)state;
	index_is("hello world", "hello world");
	index_is("性能优化", " 性能 能优 优化 化 ");
	index_is("性", " 性 ");
	index_is("我们讨论性能, ok", " 我们 们讨 讨论 论性 性能 能 , ok");
	index_is("今天的deploy很顺利", " 今天 天的 的 deploy 很顺 顺利 利 ");
	index_is("東京でラーメン", " 東京 京で でラ ラー ーメ メン ン ");
	index_is("", "");
}

static void query_is(const char *q, const char *want)
{
	struct buf b;
	buf_init(&b);
	search_query(q, &b);
	buf_append(&b, "", 1);
	if (strcmp(b.data, want))
		fail_msg("query '%s': '%s', want '%s'", q, b.data, want);
	buf_fini(&b);
}

static void test_query(void **state)
{
	(void)state;
	query_is("hello", "\"hello\"*");
	query_is("性能", "\"性能\"");
	query_is("性能优化", "\"性能 能优 优化\"");
	query_is("性", "\"性\"*");
	query_is("dep 顺利", "\"dep\"* \"顺利\"");
	query_is("今天的deploy", "\"今天 天的\" \"deploy\"*");
	/* FTS syntax is dropped: only quoted words remain */
	query_is("\"*) OR (", "\"OR\"*");
	query_is("NEAR(a b) text:x ^y -z", "\"NEAR\"* \"a\"* \"b\"* \"text\"* "
					   "\"x\"* \"y\"* \"z\"*");
	query_is("性能\"* OR", "\"性能\" \"OR\"*");
	query_is("，。！", "");
	query_is("", "");
	/* at most SEARCH_WORDS_MAX words */
	struct buf q, out;
	buf_init(&q);
	buf_init(&out);
	for (int i = 0; i < 40; i++)
		buf_puts(&q, "w ");
	buf_append(&q, "", 1);
	search_query(q.data, &out);
	size_t words = 0;
	for (size_t i = 0; i < out.len; i++)
		words += out.data[i] == '*';
	assert_int_equal(words, SEARCH_WORDS_MAX);
	buf_fini(&q);
	buf_fini(&out);
}

/* The snippet as "plain[hit]plain" for comparison. */
static void snippet_is(const char *text, const char *q, const char *want)
{
	json_t *parts = search_snippet(text, q);
	struct buf b;
	size_t i;
	json_t *p;

	assert_non_null(parts);
	buf_init(&b);
	json_array_foreach(parts, i, p)
	{
		bool hit = json_is_true(json_object_get(p, "hit"));
		buf_printf(&b, hit ? "[%s]" : "%s",
			   json_string_value(json_object_get(p, "text")));
	}
	buf_append(&b, "", 1);
	if (strcmp(b.data, want))
		fail_msg("snippet of '%s' for '%s': '%s', want '%s'", text, q,
			 b.data, want);
	buf_fini(&b);
	json_decref(parts);
}

static void test_snippet(void **state)
{
	(void)state;
	snippet_is("大家好，我们今天讨论一下性能优化", "性能",
		   "大家好，我们今天讨论一下[性能]优化");
	snippet_is("東京でラーメンを食べました", "ラーメン 食べ",
		   "東京で[ラーメン]を[食べ]ました");
	snippet_is("Hello world, hello again", "hel",
		   "[Hello] world, [hello] again");
	snippet_is("shell hello", "hel", "shell [hello]"); /* word starts */
	snippet_is("今天的deploy很顺利", "dep 顺利", "今天的[deploy]很[顺利]");
	snippet_is("no hit here", "zzz", "no hit here");
	snippet_is("<b>性能</b>", "性能", "<b>[性能]</b>");
	/* a long text: a window around the first hit, cut with … */
	struct buf t;
	buf_init(&t);
	for (int i = 0; i < 100; i++)
		buf_puts(&t, "字");
	buf_puts(&t, "性能");
	for (int i = 0; i < 300; i++)
		buf_puts(&t, "字");
	buf_append(&t, "", 1);
	json_t *parts = search_snippet(t.data, "性能");
	assert_int_equal(json_array_size(parts), 5);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(parts, 0), "text")),
			    "…");
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(parts, 2), "text")),
			    "性能");
	assert_true(
	    json_is_true(json_object_get(json_array_get(parts, 2), "hit")));
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(parts, 4), "text")),
			    "…");
	/* 30 characters before the hit, 160 in all */
	const char *before = json_string_value(
	    json_object_get(json_array_get(parts, 1), "text"));
	const char *after = json_string_value(
	    json_object_get(json_array_get(parts, 3), "text"));
	assert_int_equal(utf8_count(before, strlen(before)), 30);
	assert_int_equal(utf8_count(after, strlen(after)), 128);
	json_decref(parts);
	buf_fini(&t);
	assert_null(search_snippet("\xff", "x"));
	assert_null(search_snippet(NULL, "x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_index_text),
	    cmocka_unit_test(test_query),
	    cmocka_unit_test(test_snippet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
