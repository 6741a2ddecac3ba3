/* Unit tests for markdown: a table of inputs against the exact HTML they
 * must render to (formatting, raw HTML as text, link schemes, images,
 * mentions and shortcodes inside and outside code), and properties that
 * must hold for any input (no markup natter does not write itself). */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "html_inert.h"
#include "model/markdown.h"
#include "util/util.h"

#define A "<a target=\"_blank\" rel=\"noopener noreferrer nofollow ugc\" "
#define BOB "<span class=\"mention\" data-user=\"bob\">@bob</span>"
#define THUMBS                                                                 \
	"<span class=\"emoji\" role=\"img\" title=\":thumbsup:\" "             \
	"aria-label=\"thumbsup\">\xF0\x9F\x91\x8D</span>"

/* Users the test knows: bob, and alice (any case, shown lower-case), and
 * the room-wide @room. */
static const char *known(void *arg, const char *name, size_t len)
{
	int *calls = arg;
	if (calls)
		(*calls)++;
	if (len == 3 && !strncmp(name, "bob", 3))
		return "bob";
	if (len == 5 && !strncasecmp(name, "alice", 5))
		return "alice";
	if (len == 4 && !strncmp(name, "room", 4))
		return "room";
	return NULL;
}

static char *render(const char *text)
{
	size_t len = 0;
	char *html = markdown_render(text, strlen(text), known, NULL, &len);
	assert_non_null(html);
	assert_int_equal(len, strlen(html));
	return html;
}

static const struct {
	const char *in, *out;
} cases[] = {
    /* formatting */
    {"hello **bold** and _it_",
     "<p>hello <strong>bold</strong> and <em>it</em></p>"},
    {"***nested _emph_ here***",
     "<p><em><strong>nested <em>emph</em> here</strong></em></p>"},
    {"~~gone~~", "<p><del>gone</del></p>"},
    {"line1\nline2", "<p>line1<br />\nline2</p>"},
    {"para1\n\npara2", "<p>para1</p>\n<p>para2</p>"},
    {"> quote", "<blockquote>\n<p>quote</p>\n</blockquote>"},
    {"- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"},
    {"| a | b |\n|---|---|\n| 1 | 2 |",
     "<table>\n<thead>\n<tr>\n<th>a</th>\n<th>b</th>\n</tr>\n</thead>\n"
     "<tbody>\n<tr>\n<td>1</td>\n<td>2</td>\n</tr>\n</tbody>\n</table>"},
    /* code keeps its < and its @ */
    {"`a < b`", "<p><code>a &lt; b</code></p>"},
    {"```c\nint a = 1 < 2;\n```",
     "<pre><code class=\"language-c\">int a = 1 &lt; 2;\n</code></pre>"},
    {"`@bob :thumbsup:` @bob", "<p><code>@bob :thumbsup:</code> " BOB "</p>"},
    {"    indented @bob", "<pre><code>indented @bob\n</code></pre>"},
    /* raw HTML is text */
    {"<script>alert(1)</script>",
     "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
    {"a <b onmouseover=x>b</b> c",
     "<p>a &lt;b onmouseover=x&gt;b&lt;/b&gt; c</p>"},
    {"<div>\n<img src=x onerror=alert(1)>\n</div>",
     "<p>&lt;div&gt;<br />\n&lt;img src=x onerror=alert(1)&gt;<br />\n"
     "&lt;/div&gt;</p>"},
    {"<!-- hidden -->", "<p>&lt;!-- hidden --&gt;</p>"},
    {"&amp; &lt; &#x26; &copy;", "<p>&amp; &lt; &amp; \xC2\xA9</p>"},
    /* links: http, https, mailto only */
    {"[x](javascript:alert(1))", "<p>x</p>"},
    {"[x](JaVaScRiPt:alert(1))", "<p>x</p>"},
    {"[d](data:text/html,hi)", "<p>d</p>"},
    {"[v](vbscript:x) [f](file:///etc/passwd)", "<p>v f</p>"},
    {"[r](/relative)", "<p>r</p>"},
    {"[ok](https://x.y \"t\\\"itle\")",
     "<p>" A "href=\"https://x.y\" title=\"t&quot;itle\">ok</a></p>"},
    {"[m](mailto:a@b.c) [H](HTTP://X.Y)",
     "<p>" A "href=\"mailto:a@b.c\">m</a> " A "href=\"HTTP://X.Y\">H</a></p>"},
    {"see https://example.com/a?b=1&c=2 ok",
     "<p>see " A "href=\"https://example.com/a?b=1&amp;c=2\">"
     "https://example.com/a?b=1&amp;c=2</a> ok</p>"},
    {"www.example.com",
     "<p>" A "href=\"http://www.example.com\">www.example.com</a></p>"},
    {"<https://a.b/c>", "<p>" A "href=\"https://a.b/c\">https://a.b/c</a></p>"},
    {"[**b** @bob](https://a.b)",
     "<p>" A "href=\"https://a.b\"><strong>b</strong> @bob</a></p>"},
    /* images are never loaded */
    {"![cat](https://evil.example/cat.png)",
     "<p>" A "href=\"https://evil.example/cat.png\">cat</a></p>"},
    {"![](https://e.x/y.png)",
     "<p>" A "href=\"https://e.x/y.png\">https://e.x/y.png</a></p>"},
    {"![x](javascript:alert(1))", "<p>x</p>"},
    /* mentions */
    {"hi @bob.", "<p>hi " BOB ".</p>"},
    {"@bob, @carol and @ALICE",
     "<p>" BOB ", @carol and <span class=\"mention\" data-user=\"alice\">"
     "@alice</span></p>"},
    {"@room look", "<p><span class=\"mention\" data-user=\"room\">@room</span>"
		   " look</p>"},
    {"mail bob@example.com",
     "<p>mail " A "href=\"mailto:bob@example.com\">bob@example.com</a></p>"},
    {"x@bob", "<p>x@bob</p>"},
    {"**@bob**", "<p><strong>" BOB "</strong></p>"},
    /* shortcodes */
    {":thumbsup: :nope: 12:30:45", "<p>" THUMBS " :nope: 12:30:45</p>"},
    {"::thumbsup::", "<p>:" THUMBS ":</p>"},
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *html = render(cases[i].in);
		if (strcmp(html, cases[i].out) != 0)
			fail_msg("case %zu: %s\n got: %s\nwant: %s", i,
				 cases[i].in, html, cases[i].out);
		free(html);
	}
}

static void test_no_mention_callback(void **state)
{
	(void)state;
	size_t len;
	char *html = markdown_render("@bob", 4, NULL, NULL, &len);
	assert_string_equal(html, "<p>@bob</p>");
	free(html);
}

/* Mentions inside code and links are not even looked up. */
static void test_mention_lookups(void **state)
{
	(void)state;
	int calls = 0;
	size_t len;
	const char *in = "`@bob` [@bob](https://a.b) @bob @nobody";
	char *html = markdown_render(in, strlen(in), known, &calls, &len);
	assert_int_equal(calls, 2);
	free(html);
}

static void test_emoji_table(void **state)
{
	(void)state;
	assert_string_equal(markdown_emoji("+1", 2), "\xF0\x9F\x91\x8D");
	assert_string_equal(markdown_emoji("x", 1), "\xE2\x9D\x8C");
	assert_string_equal(markdown_emoji("heart_eyes", 10),
			    "\xF0\x9F\x98\x8D");
	assert_string_equal(markdown_emoji("heart", 5),
			    "\xE2\x9D\xA4\xEF\xB8\x8F");
	assert_null(markdown_emoji("hear", 4));
	assert_null(markdown_emoji("", 0));
	assert_null(markdown_emoji("zzz", 3));
}

/* Markup natter never writes must never come out, whatever the input
 * (the allowlist lives in html_inert.c, shared with the fuzz harness). */
static void assert_inert(const char *html)
{
	char why[128];
	if (html_inert_check(html, why, sizeof(why)))
		fail_msg("%s in output: %s", why, html);
}

/* Found by fuzz_markdown (a leak under ASan): a GFM table cell may not
 * hold the span of a mention or a shortcode, and the text around them
 * vanished. A mention there stays text; a shortcode becomes its emoji. */
static void test_table_cell_specials(void **state)
{
	(void)state;
	char *html = render("| a @bob :thumbsup: b |\n|-|\n| @alice |");
	assert_non_null(strstr(html, "<th>a @bob \xF0\x9F\x91\x8D b</th>"));
	assert_non_null(strstr(html, "<td>@alice</td>"));
	assert_inert(html);
	free(html);
}

static void test_xss_corpus(void **state)
{
	(void)state;
	static const char *const corpus[] = {
	    "<script>alert(1)</script>",
	    "<img src=x onerror=alert(1)>",
	    "<svg/onload=alert(1)>",
	    "<iframe src=\"javascript:alert(1)\"></iframe>",
	    "[a](javascript&#58;alert(1))",
	    "[a](&#x6A;avascript:alert(1))",
	    "[a](java\nscript:alert(1))",
	    "[a]( javascript:alert(1))",
	    "[a](<javascript:alert(1)>)",
	    "![a](x\" onerror=\"alert(1))",
	    "[a][r]\n\n[r]: javascript:alert(1)",
	    "<a href=\"javascript:alert(1)\">x</a>",
	    "<<script>script>alert(1)<</script>/script>",
	    "```\n</code><script>alert(1)</script>\n```",
	    "`</code><img src=x onerror=alert(1)>`",
	    "<object data=x></object><embed src=x>",
	    "<style>*{}</style><base href=x><meta http-equiv=refresh>",
	    "<form><input></form><math><mi>x</mi></math>",
	    "[x](data:text/html;base64,PHNjcmlwdD4=)",
	    "@bob\" onmouseover=\"x :thumbsup:\"<img>",
	    "| <img src=x> | b |\n|---|---|\n| <script> | 2 |",
	};
	for (size_t i = 0; i < ARRAY_LEN(corpus); i++) {
		char *html = render(corpus[i]);
		assert_inert(html);
		free(html);
	}
}

/* The longest message natter accepts, and words longer than any line. */
static void test_long(void **state)
{
	(void)state;
	char *text = xmalloc(4001);
	memset(text, 'w', 4000);
	text[4000] = '\0';
	char *html = render(text);
	assert_int_equal(strlen(html), 4000 + strlen("<p></p>"));
	free(html);
	for (size_t i = 0; i < 4000; i++)
		text[i] = "<a>&*_`@:\n["[i % 11];
	html = render(text);
	assert_inert(html);
	free(html);
	free(text);
}

/* Bytes that are not UTF-8 are replaced, never passed through. */
/* The shortcut for plain lines gives exactly what the parser gives: on
 * lines made of the characters it accepts and of those it must refuse,
 * at random, and on chosen near misses. */
static void test_plain_shortcut(void **state)
{
	(void)state;
	static const char *alphabet[] = {"a",
					 "b",
					 "Z",
					 " ",
					 " ",
					 "1",
					 ".",
					 ",",
					 ":",
					 "-",
					 "+",
					 "=",
					 "(",
					 ")",
					 "'",
					 "?",
					 "!",
					 "/",
					 "%",
					 "$",
					 "^",
					 "{",
					 "}",
					 ";",
					 "w",
					 "www.",
					 "://",
					 "http",
					 ":+1:",
					 ":smile:",
					 ":nope:",
					 "@",
					 "*",
					 "_",
					 "~",
					 "`",
					 "#",
					 ">",
					 "<",
					 "&",
					 "\"",
					 "\\",
					 "[",
					 "]",
					 "|",
					 "\n",
					 "\t",
					 "\xc3\xa9",
					 "\xe4\xb8\xad",
					 "\xc2\xa0",
					 "\xff"};
	static const char *chosen[] = {"hello there",
				       "nb:3:17:123456789:xxxxxxxx",
				       "see www.example.org",
				       "WWW.EXAMPLE.ORG",
				       "go to https://x.y now",
				       "1. not a list?",
				       "- item",
				       "+ item",
				       "= heading?",
				       "ok :+1: then",
				       "a:b:c",
				       "(parens) and {braces} 50% $5 ^up",
				       "it's fine; really!",
				       "trailing space ",
				       " leading space",
				       "mid  two spaces",
				       "ftp://host/file",
				       "mailto:someone",
				       "x.www.y",
				       "2026 was a year"};
	uint32_t seed = 12345;
	char text[128];
	size_t n1, n2;

	for (size_t i = 0; i < ARRAY_LEN(chosen) + 20000; i++) {
		const char *t = text;
		if (i < ARRAY_LEN(chosen)) {
			t = chosen[i];
		} else {
			size_t len = 0, words;
			seed = seed * 1103515245u + 12345u;
			words = 1 + (seed >> 16) % 12;
			for (size_t w = 0; w < words; w++) {
				seed = seed * 1103515245u + 12345u;
				/* mostly harmless characters */
				size_t k =
				    (seed >> 16) % 100 < 70
					? (seed >> 16) % 24
					: (seed >> 16) % ARRAY_LEN(alphabet);
				size_t l = strlen(alphabet[k]);
				if (len + l >= sizeof(text))
					break;
				memcpy(text + len, alphabet[k], l);
				len += l;
			}
			text[len] = '\0';
		}
		char *a = markdown_render(t, strlen(t), known, NULL, &n1);
		char *b = markdown_render_full(t, strlen(t), known, NULL, &n2);
		if (strcmp(a, b) != 0)
			fail_msg("input \"%s\": shortcut \"%s\", parser \"%s\"",
				 t, a, b);
		assert_int_equal(n1, n2);
		free(a);
		free(b);
	}
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	size_t len;
	char *html = markdown_render("a\xff"
				     "b",
				     3, known, NULL, &len);
	assert_true(utf8_valid(html, len));
	free(html);
}

/* Reply excerpts: the text without its markup, whitespace runs as one
 * space, cut after max code points (never inside one) with an ellipsis. */
static void test_excerpt(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t max;
		const char *want;
	} excerpts[] = {
	    {"plain", 10, "plain"},
	    {"**bold** _it_ `code` [link](https://x.org)", 100,
	     "bold it code link"},
	    {"# Title\n\n- one\n- two", 100, "Title - one - two"},
	    {"  lots   of\n\n\nspace  ", 100, "lots of space"},
	    {"<script>alert(1)</script>", 100, "<script>alert(1)</script>"},
	    {"abcdef", 3, "abc\xE2\x80\xA6"},
	    {"ab cd", 2, "ab\xE2\x80\xA6"},
	    {"ab cd", 3, "ab\xE2\x80\xA6"},
	    {"ab cd", 5, "ab cd"},
	    /* 汉字汉字: three bytes each, never cut inside one */
	    {"\xE6\xB1\x89\xE5\xAD\x97\xE6\xB1\x89\xE5\xAD\x97", 3,
	     "\xE6\xB1\x89\xE5\xAD\x97\xE6\xB1\x89\xE2\x80\xA6"},
	    /* 👍 is four bytes, one code point */
	    {"\xF0\x9F\x91\x8D\xF0\x9F\x91\x8D", 1,
	     "\xF0\x9F\x91\x8D\xE2\x80\xA6"},
	    {"", 10, ""},
	    {"```\ncode  block\n```", 100, "code block"},
	};
	for (size_t i = 0; i < ARRAY_LEN(excerpts); i++) {
		char *got = markdown_excerpt(
		    excerpts[i].in, strlen(excerpts[i].in), excerpts[i].max);
		if (strcmp(got, excerpts[i].want) != 0)
			fail_msg("case %zu: excerpt of \"%s\" is \"%s\", want "
				 "\"%s\"",
				 i, excerpts[i].in, got, excerpts[i].want);
		assert_true(utf8_valid(got, strlen(got)));
		free(got);
	}
	/* a 4,000-character message: 100 code points and the ellipsis */
	char *big = xmalloc(12001);
	for (size_t i = 0; i < 4000; i++)
		memcpy(big + 3 * i, "\xE6\xB1\x89", 3);
	big[12000] = '\0';
	char *got = markdown_excerpt(big, 12000, 100);
	assert_int_equal(utf8_count(got, strlen(got)), 101);
	free(got);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_no_mention_callback),
	    cmocka_unit_test(test_mention_lookups),
	    cmocka_unit_test(test_emoji_table),
	    cmocka_unit_test(test_xss_corpus),
	    cmocka_unit_test(test_table_cell_specials),
	    cmocka_unit_test(test_long),
	    cmocka_unit_test(test_invalid_utf8),
	    cmocka_unit_test(test_plain_shortcut),
	    cmocka_unit_test(test_excerpt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
