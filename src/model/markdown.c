/* markdown: cmark-gfm parses; this file reshapes the syntax tree before
 * rendering so that only what natter allows can come out (see markdown.h).
 *
 * The tree is rewritten in three passes, each over a list of nodes
 * collected first (a cmark iterator must not see the tree change under
 * it):
 *   1. raw HTML (blocks and inline) becomes text; images become links;
 *   2. links whose target is not http:, https: or mailto: are unwrapped
 *      (their text stays);
 *   3. text outside links is searched for @mentions and :shortcodes:,
 *      which become custom inline nodes whose markup is written here.
 * Then cmark renders in its safe mode (which would also drop raw HTML and
 * dangerous URLs: a second line of defence, not the first), and every
 * `<a href="` gets target and rel. Text and code are HTML-escaped by cmark,
 * so the only `<a href="` in the output are links cmark wrote. */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm.h>

#include "model/markdown.h"
#include "util/util.h"

#define NAME_MAX_LEN 32
#define LINK_ATTRS "target=\"_blank\" rel=\"noopener noreferrer nofollow ugc\" "

/* Shortcodes, sorted by name (bsearch). Common ones only: a client-side
 * picker offers the same set. */
static const struct emoji {
	const char *name;
	const char *utf8;
} emojis[] = {
    {"+1", "\xF0\x9F\x91\x8D"},
    {"-1", "\xF0\x9F\x91\x8E"},
    {"100", "\xF0\x9F\x92\xAF"},
    {"angry", "\xF0\x9F\x98\xA0"},
    {"blush", "\xF0\x9F\x98\x8A"},
    {"broken_heart", "\xF0\x9F\x92\x94"},
    {"bug", "\xF0\x9F\x90\x9B"},
    {"clap", "\xF0\x9F\x91\x8F"},
    {"coffee", "\xE2\x98\x95"},
    {"cry", "\xF0\x9F\x98\xA2"},
    {"eyes", "\xF0\x9F\x91\x80"},
    {"fire", "\xF0\x9F\x94\xA5"},
    {"grin", "\xF0\x9F\x98\x81"},
    {"heart", "\xE2\x9D\xA4\xEF\xB8\x8F"},
    {"heart_eyes", "\xF0\x9F\x98\x8D"},
    {"joy", "\xF0\x9F\x98\x82"},
    {"laughing", "\xF0\x9F\x98\x86"},
    {"ok_hand", "\xF0\x9F\x91\x8C"},
    {"party", "\xF0\x9F\x8E\x89"},
    {"pray", "\xF0\x9F\x99\x8F"},
    {"rocket", "\xF0\x9F\x9A\x80"},
    {"see_no_evil", "\xF0\x9F\x99\x88"},
    {"shrug", "\xF0\x9F\xA4\xB7"},
    {"slightly_smiling_face", "\xF0\x9F\x99\x82"},
    {"smile", "\xF0\x9F\x98\x84"},
    {"smiley", "\xF0\x9F\x98\x83"},
    {"sob", "\xF0\x9F\x98\xAD"},
    {"sparkles", "\xE2\x9C\xA8"},
    {"star", "\xE2\xAD\x90"},
    {"sunglasses", "\xF0\x9F\x98\x8E"},
    {"tada", "\xF0\x9F\x8E\x89"},
    {"thinking", "\xF0\x9F\xA4\x94"},
    {"thumbsdown", "\xF0\x9F\x91\x8E"},
    {"thumbsup", "\xF0\x9F\x91\x8D"},
    {"warning", "\xE2\x9A\xA0\xEF\xB8\x8F"},
    {"wave", "\xF0\x9F\x91\x8B"},
    {"white_check_mark", "\xE2\x9C\x85"},
    {"wink", "\xF0\x9F\x98\x89"},
    {"x", "\xE2\x9D\x8C"},
};

struct key {
	const char *s;
	size_t len;
};

static int emoji_cmp(const void *k, const void *e)
{
	const struct key *key = k;
	const char *name = ((const struct emoji *)e)->name;
	size_t n = strlen(name);
	int c = strncmp(key->s, name, key->len < n ? key->len : n);
	if (c)
		return c;
	return key->len < n ? -1 : key->len > n;
}

const char *markdown_emoji(const char *name, size_t len)
{
	struct key k = {name, len};
	const struct emoji *e = bsearch(&k, emojis, ARRAY_LEN(emojis),
					sizeof(emojis[0]), emoji_cmp);
	return e ? e->utf8 : NULL;
}

static pthread_once_t ext_once = PTHREAD_ONCE_INIT;

static void ext_register(void)
{
	cmark_gfm_core_extensions_ensure_registered();
}

/* --- tree helpers ------------------------------------------------------------
 */

struct nodes {
	cmark_node **v;
	size_t n, cap;
};

static void nodes_push(struct nodes *l, cmark_node *node)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 32;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = node;
}

/* Every node of one of the given types, in document order. */
static void collect(cmark_node *doc, struct nodes *out,
		    const cmark_node_type *types, size_t ntypes)
{
	out->n = 0;
	cmark_iter *it = cmark_iter_new(doc);
	cmark_event_type ev;
	while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		if (ev != CMARK_EVENT_ENTER)
			continue;
		cmark_node *node = cmark_iter_get_node(it);
		cmark_node_type t = cmark_node_get_type(node);
		for (size_t i = 0; i < ntypes; i++)
			if (t == types[i])
				nodes_push(out, node);
	}
	cmark_iter_free(it);
}

static cmark_node *text_node(const char *s, size_t len)
{
	cmark_node *t = cmark_node_new(CMARK_NODE_TEXT);
	char *copy = xstrndup(s, len);
	cmark_node_set_literal(t, copy);
	free(copy);
	return t;
}

/* Move every child of from to just before `before`. */
static void children_move_before(cmark_node *from, cmark_node *before)
{
	cmark_node *c;
	while ((c = cmark_node_first_child(from))) {
		cmark_node_unlink(c);
		cmark_node_insert_before(before, c);
	}
}

static void children_move_into(cmark_node *from, cmark_node *to)
{
	cmark_node *c;
	while ((c = cmark_node_first_child(from))) {
		cmark_node_unlink(c);
		cmark_node_append_child(to, c);
	}
}

/* --- pass 1: raw HTML becomes text, images become links ----------------------
 */

/* A paragraph holding s as text, its lines separated by line breaks. */
static cmark_node *paragraph_of(const char *s)
{
	cmark_node *p = cmark_node_new(CMARK_NODE_PARAGRAPH);
	size_t len = strlen(s);
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	const char *end = s + len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *stop = nl ? nl : end;
		size_t n = (size_t)(stop - s);
		if (n && s[n - 1] == '\r')
			n--;
		cmark_node_append_child(p, text_node(s, n));
		if (!nl)
			break;
		cmark_node_append_child(p,
					cmark_node_new(CMARK_NODE_LINEBREAK));
		s = nl + 1;
	}
	return p;
}

static void pass_html_images(cmark_node *doc, struct nodes *l)
{
	static const cmark_node_type types[] = {
	    CMARK_NODE_HTML_BLOCK, CMARK_NODE_HTML_INLINE, CMARK_NODE_IMAGE};
	collect(doc, l, types, ARRAY_LEN(types));
	for (size_t i = 0; i < l->n; i++) {
		cmark_node *node = l->v[i];
		const char *lit = cmark_node_get_literal(node);
		cmark_node *repl;
		switch (cmark_node_get_type(node)) {
		case CMARK_NODE_HTML_BLOCK:
			repl = paragraph_of(lit ? lit : "");
			break;
		case CMARK_NODE_HTML_INLINE:
			repl = text_node(lit ? lit : "", lit ? strlen(lit) : 0);
			break;
		default: /* an image: a link to it, never loaded */
			repl = cmark_node_new(CMARK_NODE_LINK);
			cmark_node_set_url(repl, cmark_node_get_url(node));
			cmark_node_set_title(repl, cmark_node_get_title(node));
			children_move_into(node, repl);
			if (!cmark_node_first_child(repl)) {
				const char *u = cmark_node_get_url(node);
				cmark_node_append_child(
				    repl,
				    text_node(u ? u : "", u ? strlen(u) : 0));
			}
			break;
		}
		cmark_node_replace(node, repl);
		cmark_node_free(node);
	}
}

/* --- pass 2: only http, https and mailto links
 * -------------------------------- */

static bool url_allowed(const char *url)
{
	if (!url)
		return false;
	return !strncasecmp(url, "http://", 7) ||
	       !strncasecmp(url, "https://", 8) ||
	       !strncasecmp(url, "mailto:", 7);
}

static void pass_links(cmark_node *doc, struct nodes *l)
{
	static const cmark_node_type types[] = {CMARK_NODE_LINK};
	collect(doc, l, types, ARRAY_LEN(types));
	for (size_t i = 0; i < l->n; i++) {
		cmark_node *node = l->v[i];
		if (url_allowed(cmark_node_get_url(node)))
			continue;
		children_move_before(node, node);
		cmark_node_unlink(node);
		cmark_node_free(node);
	}
}

/* --- pass 3: mentions and shortcodes
 * ------------------------------------------- */

static bool in_link(cmark_node *node)
{
	for (cmark_node *p = cmark_node_parent(node); p;
	     p = cmark_node_parent(p))
		if (cmark_node_get_type(p) == CMARK_NODE_LINK)
			return true;
	return false;
}

static bool name_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '.' || c == '-';
}

static void attr_escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			buf_puts(b, "&amp;");
			break;
		case '<':
			buf_puts(b, "&lt;");
			break;
		case '>':
			buf_puts(b, "&gt;");
			break;
		case '"':
			buf_puts(b, "&quot;");
			break;
		default:
			buf_append(b, s, 1);
		}
	}
}

/* A custom inline node: on_enter, then text, then on_exit. */
static cmark_node *span_node(const char *enter, const char *text, size_t len)
{
	cmark_node *n = cmark_node_new(CMARK_NODE_CUSTOM_INLINE);
	cmark_node_set_on_enter(n, enter);
	cmark_node_set_on_exit(n, "</span>");
	cmark_node_append_child(n, text_node(text, len));
	return n;
}

/* Insert span before at: false (and nothing inserted) where at's parent
 * may not hold a custom inline node (a GFM table cell may not). */
static bool span_insert(cmark_node *at, cmark_node *span)
{
	if (cmark_node_insert_before(at, span))
		return true;
	cmark_node_free(span);
	return false;
}

/* If s[i] starts a mention or a shortcode, insert its node before `at`
 * and return its length in bytes; else 0. Where no span may go (a table
 * cell), a mention stays text and a shortcode becomes its emoji as text. */
static size_t special_at(const char *s, size_t len, size_t i, cmark_node *at,
			 markdown_mention_fn mention, void *arg)
{
	struct buf b = {0};
	size_t used = 0;
	if (s[i] == '@' && mention &&
	    (i == 0 ||
	     !(isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_'))) {
		size_t j = i + 1;
		while (j < len && name_char((unsigned char)s[j]))
			j++;
		while (j > i + 1 && s[j - 1] == '.')
			j--;
		size_t n = j - i - 1;
		const char *name =
		    n && n <= NAME_MAX_LEN ? mention(arg, s + i + 1, n) : NULL;
		if (name) {
			buf_puts(&b, "<span class=\"mention\" data-user=\"");
			attr_escape(&b, name);
			buf_puts(&b, "\">");
			char *enter = buf_steal(&b);
			struct buf shown = {0};
			buf_puts(&shown, "@");
			buf_puts(&shown, name);
			if (span_insert(
				at, span_node(enter, shown.data, shown.len)))
				used = n + 1;
			buf_fini(&shown);
			free(enter);
		}
	} else if (s[i] == ':') {
		size_t j = i + 1;
		while (j < len && j - i <= NAME_MAX_LEN &&
		       (islower((unsigned char)s[j]) ||
			isdigit((unsigned char)s[j]) || s[j] == '_' ||
			s[j] == '+' || s[j] == '-'))
			j++;
		const char *e = j < len && s[j] == ':' && j > i + 1
				    ? markdown_emoji(s + i + 1, j - i - 1)
				    : NULL;
		if (e) {
			buf_puts(&b,
				 "<span class=\"emoji\" role=\"img\" title=\"");
			buf_append(&b, s + i, j - i + 1);
			buf_puts(&b, "\" aria-label=\"");
			buf_append(&b, s + i + 1, j - i - 1);
			buf_puts(&b, "\">");
			char *enter = buf_steal(&b);
			if (!span_insert(at, span_node(enter, e, strlen(e))))
				cmark_node_insert_before(
				    at, text_node(e, strlen(e)));
			free(enter);
			used = j - i + 1;
		}
	}
	buf_fini(&b);
	return used;
}

static void pass_specials(cmark_node *doc, struct nodes *l,
			  markdown_mention_fn mention, void *arg)
{
	static const cmark_node_type types[] = {CMARK_NODE_TEXT};
	collect(doc, l, types, ARRAY_LEN(types));
	for (size_t k = 0; k < l->n; k++) {
		cmark_node *node = l->v[k];
		const char *s = cmark_node_get_literal(node);
		if (!s || (!strchr(s, '@') && !strchr(s, ':')) || in_link(node))
			continue;
		size_t len = strlen(s), plain = 0;
		bool changed = false;
		for (size_t i = 0; i < len;) {
			if (s[i] != '@' && s[i] != ':') {
				i++;
				continue;
			}
			/* The node is not changed until the end, so s stays
			 * valid; text before a special goes in first. */
			cmark_node *mark = cmark_node_new(CMARK_NODE_TEXT);
			cmark_node_insert_before(node, mark);
			size_t n = special_at(s, len, i, mark, mention, arg);
			if (!n) {
				cmark_node_unlink(mark);
				cmark_node_free(mark);
				i++;
				continue;
			}
			if (i > plain)
				cmark_node_insert_before(
				    cmark_node_previous(mark),
				    text_node(s + plain, i - plain));
			cmark_node_unlink(mark);
			cmark_node_free(mark);
			i += n;
			plain = i;
			changed = true;
		}
		if (!changed)
			continue;
		if (plain < len)
			cmark_node_insert_before(
			    node, text_node(s + plain, len - plain));
		cmark_node_unlink(node);
		cmark_node_free(node);
	}
}

/* --- rendering
 * ------------------------------------------------------------------ */

static void attach(cmark_parser *p, const char *name)
{
	cmark_syntax_extension *e = cmark_find_syntax_extension(name);
	if (e)
		cmark_parser_attach_syntax_extension(p, e);
}

/* A :shortcode: of the table starting at s[i] (a ':'). */
static bool shortcode_at(const char *s, size_t len, size_t i)
{
	size_t j = i + 1;
	while (j < len && j - i <= NAME_MAX_LEN &&
	       (islower((unsigned char)s[j]) || isdigit((unsigned char)s[j]) ||
		s[j] == '_' || s[j] == '+' || s[j] == '-'))
		j++;
	return j < len && s[j] == ':' && j > i + 1 &&
	       markdown_emoji(s + i + 1, j - i - 1);
}

/* Whether cmark (with natter's passes) would render text as one paragraph
 * holding the text unchanged: one line without leading or trailing space,
 * not starting like a block (list, heading, quote, rule), no character
 * that opens emphasis, code, a link, HTML, an entity, an escape or a
 * mention, no autolink ("www.", "://", an e-mail needs '@'), no
 * :shortcode: of the table, and nothing HTML-escaping would change. Most
 * chat lines are such; rendering them skips cmark's parser, whose set-up
 * alone costs more than the line (contrib/bench durable sends).
 * tests/unit/test_markdown.c checks that both paths agree on random
 * texts. */
static bool plain_line(const char *s, size_t len)
{
	static const char punct[] = ",.;:?!'()/%$^{}";

	if (len == 0 || s[0] == ' ' || s[len - 1] == ' ')
		return false;
	if (isdigit((unsigned char)s[0]) || s[0] == '+' || s[0] == '-' ||
	    s[0] == '=')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80 || isalnum(c) || c == ' ')
			continue;
		if (!c || !strchr(punct, c))
			return false;
		if (c == ':' &&
		    (shortcode_at(s, len, i) ||
		     (i + 2 < len && s[i + 1] == '/' && s[i + 2] == '/')))
			return false;
		if (c == '.' && i >= 3 && strncasecmp(s + i - 3, "www", 3) == 0)
			return false;
	}
	return utf8_valid(s, len);
}

char *markdown_render(const char *text, size_t len, markdown_mention_fn mention,
		      void *arg, size_t *out_len)
{
	if (plain_line(text, len)) {
		struct buf b = {0};
		buf_reserve(&b, len + 8);
		buf_puts(&b, "<p>");
		buf_append(&b, text, len);
		buf_puts(&b, "</p>");
		*out_len = b.len;
		return buf_steal(&b);
	}
	return markdown_render_full(text, len, mention, arg, out_len);
}

char *markdown_render_full(const char *text, size_t len,
			   markdown_mention_fn mention, void *arg,
			   size_t *out_len)
{
	pthread_once(&ext_once, ext_register);
	const int opts =
	    CMARK_OPT_DEFAULT | CMARK_OPT_HARDBREAKS | CMARK_OPT_VALIDATE_UTF8;
	cmark_parser *p = cmark_parser_new(opts);
	attach(p, "table");
	attach(p, "strikethrough");
	attach(p, "autolink");
	cmark_parser_feed(p, text, len);
	cmark_node *doc = cmark_parser_finish(p);

	struct nodes l = {0};
	pass_html_images(doc, &l);
	pass_links(doc, &l);
	pass_specials(doc, &l, mention, arg);
	free(l.v);

	char *html =
	    cmark_render_html(doc, opts, cmark_parser_get_syntax_extensions(p));
	cmark_node_free(doc);
	cmark_parser_free(p);

	/* target and rel on every link; trailing newline off. */
	struct buf b = {0};
	const char *s = html, *a;
	static const char anchor[] = "<a href=\"";
	while ((a = strstr(s, anchor))) {
		buf_append(&b, s, (size_t)(a - s));
		buf_puts(&b, "<a " LINK_ATTRS "href=\"");
		s = a + sizeof(anchor) - 1;
	}
	buf_puts(&b, s);
	cmark_get_default_mem_allocator()->free(html);
	while (b.len && b.data[b.len - 1] == '\n')
		b.data[--b.len] = '\0';
	*out_len = b.len;
	return buf_steal(&b);
}

/* Whitespace runs become one space, leading and trailing space goes, and
 * the result is cut after max code points (never inside one), with an
 * ellipsis when something was cut. */
static char *excerpt_cut(const char *s, size_t max)
{
	struct buf b = {0};
	size_t chars = 0;
	bool space = false, cut = false;

	buf_reserve(&b, 16);
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			space = b.len > 0;
			continue;
		}
		/* a lead byte starts a code point; continuation bytes follow
		 * it into the same one */
		bool lead = (c & 0xC0) != 0x80;
		if (lead && chars + (space ? 1 : 0) >= max) {
			cut = true;
			break;
		}
		if (lead && space) {
			buf_append(&b, " ", 1);
			chars++;
		}
		space = false;
		buf_append(&b, p, 1);
		if (lead)
			chars++;
	}
	if (cut)
		buf_puts(&b, "\xE2\x80\xA6"); /* … */
	if (!b.data)
		buf_puts(&b, "");
	return buf_steal(&b);
}

char *markdown_excerpt(const char *text, size_t len, size_t max)
{
	pthread_once(&ext_once, ext_register);
	const int opts = CMARK_OPT_DEFAULT | CMARK_OPT_VALIDATE_UTF8;
	cmark_parser *p = cmark_parser_new(opts);
	attach(p, "table");
	attach(p, "strikethrough");
	attach(p, "autolink");
	cmark_parser_feed(p, text, len);
	cmark_node *doc = cmark_parser_finish(p);
	/* raw HTML is text here too, as the message shows it */
	struct nodes l = {0};
	pass_html_images(doc, &l);
	free(l.v);
	char *plain = cmark_render_plaintext(doc, opts, 0);
	cmark_node_free(doc);
	cmark_parser_free(p);
	char *out = excerpt_cut(plain, max);
	cmark_get_default_mem_allocator()->free(plain);
	return out;
}
