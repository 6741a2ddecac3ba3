/* search: the index text, the query and the snippet of natter's full-text
 * search (see search.h for the bigram scheme). It does not run queries or
 * decide who may read what: the store does. */
#include <stdlib.h>
#include <string.h>

#include "model/search.h"

#define SNIPPET_CHARS 160 /* characters a snippet shows at most */
#define SNIPPET_LEAD 30	  /* of them, before the first hit */

/* The code point at s[*i] (valid UTF-8), *i moved past it. */
static unsigned cp_next(const char *s, size_t len, size_t *i)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned c = u[*i], n = 0;

	if (c < 0x80)
		n = 0;
	else if (c >= 0xF0)
		c &= 0x07, n = 3;
	else if (c >= 0xE0)
		c &= 0x0F, n = 2;
	else
		c &= 0x1F, n = 1;
	(*i)++;
	while (n-- && *i < len)
		c = (c << 6) | (u[(*i)++] & 0x3F);
	return c;
}

bool search_cjk(unsigned cp)
{
	return (cp >= 0x3005 && cp <= 0x3007) || /* 々 〆 〇 */
	       (cp >= 0x3041 && cp <= 0x309F) || /* hiragana */
	       (cp >= 0x30A1 && cp <= 0x30FF && cp != 0x30FB) || /* katakana */
	       (cp >= 0x31F0 && cp <= 0x31FF) || /* small kana */
	       (cp >= 0x3400 && cp <= 0x4DBF) || /* CJK extension A */
	       (cp >= 0x4E00 && cp <= 0x9FFF) || /* CJK unified */
	       (cp >= 0xAC00 && cp <= 0xD7AF) || /* Hangul syllables */
	       (cp >= 0xF900 && cp <= 0xFAFF) || /* compatibility */
	       (cp >= 0xFF66 && cp <= 0xFF9F) || /* halfwidth katakana */
	       (cp >= 0x20000 && cp <= 0x3FFFF); /* extensions B... */
}

/* Punctuation, symbols and spaces outside ASCII: they separate words. */
static bool punct(unsigned cp)
{
	return (cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 ||
	       (cp >= 0x2000 && cp <= 0x206F) ||
	       (cp >= 0x2190 && cp <= 0x2BFF) ||
	       (cp >= 0x3000 && cp <= 0x3004) ||
	       (cp >= 0x3008 && cp <= 0x303F) || cp == 0x30FB ||
	       (cp >= 0xFE30 && cp <= 0xFE4F) ||
	       (cp >= 0xFF00 && cp <= 0xFF0F) ||
	       (cp >= 0xFF1A && cp <= 0xFF20) ||
	       (cp >= 0xFF3B && cp <= 0xFF40) ||
	       (cp >= 0xFF5B && cp <= 0xFF65) || cp >= 0xFFF0;
}

static bool ascii_alnum(unsigned cp)
{
	return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
	       (cp >= 'A' && cp <= 'Z');
}

/* A letter of a Latin (non-CJK) word. */
static bool latin(unsigned cp)
{
	return ascii_alnum(cp) || (cp >= 0x80 && !punct(cp) && !search_cjk(cp));
}

char *search_index_text(const char *text, size_t len)
{
	struct buf b;
	size_t i = 0;

	buf_init(&b);
	buf_reserve(&b, len * 2 + 8);
	while (i < len) {
		size_t start = i;
		if (!search_cjk(cp_next(text, len, &i))) {
			buf_append(&b, text + start, i - start);
			continue;
		}
		/* a CJK run: each character with the next, then the last */
		size_t prev = start, cur = i;
		buf_puts(&b, " ");
		while (cur < len) {
			size_t j = cur;
			if (!search_cjk(cp_next(text, len, &j)))
				break;
			buf_append(&b, text + prev, j - prev);
			buf_puts(&b, " ");
			prev = cur;
			cur = j;
		}
		buf_append(&b, text + prev, cur - prev);
		buf_puts(&b, " ");
		i = cur;
	}
	buf_append(&b, "", 1); /* the NUL */
	return buf_steal(&b);
}

/* One word of a query: a run of CJK characters or of Latin letters. */
struct term {
	size_t off, len;
	bool cjk;
};

/* The next term of q at or after *i, *i moved past it; false at the end. */
static bool term_next(const char *q, size_t len, size_t *i, struct term *t)
{
	while (*i < len) {
		size_t start = *i;
		unsigned cp = cp_next(q, len, i);
		bool cjk = search_cjk(cp);
		if (!cjk && !latin(cp))
			continue;
		t->off = start;
		t->cjk = cjk;
		while (*i < len) {
			size_t j = *i;
			cp = cp_next(q, len, &j);
			if (cjk ? !search_cjk(cp) : !latin(cp))
				break;
			*i = j;
		}
		t->len = *i - start;
		return true;
	}
	return false;
}

/* Length of q that counts: at most SEARCH_QUERY_MAX bytes, whole
 * characters. */
static size_t query_len(const char *q)
{
	size_t len = strnlen(q, SEARCH_QUERY_MAX);
	while (len > 0 && ((unsigned char)q[len] & 0xC0) == 0x80)
		len--;
	return len;
}

void search_query(const char *q, struct buf *out)
{
	size_t len = query_len(q), i = 0, words = 0;
	struct term t;

	while (words < SEARCH_WORDS_MAX && term_next(q, len, &i, &t)) {
		const char *s = q + t.off;
		buf_puts(out, words++ ? " \"" : "\"");
		if (!t.cjk) {
			buf_printf(out, "%.*s\"*", (int)t.len, s);
			continue;
		}
		size_t a = 0, b = 0;
		cp_next(s, t.len, &b);
		if (b == t.len) { /* one character: a prefix of a bigram */
			buf_printf(out, "%.*s\"*", (int)t.len, s);
			continue;
		}
		/* the phrase of its bigrams */
		while (b < t.len) {
			size_t c = b;
			cp_next(s, t.len, &c);
			buf_printf(out, "%s%.*s", a ? " " : "", (int)(c - a),
				   s + a);
			a = b;
			b = c;
		}
		buf_puts(out, "\"");
	}
}

static bool prefix_fold(const char *s, size_t n, const char *p, size_t pn)
{
	if (pn > n)
		return false;
	for (size_t k = 0; k < pn; k++) {
		unsigned char x = (unsigned char)s[k], y = (unsigned char)p[k];
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return false;
	}
	return true;
}

/* Mark in hit[] the bytes of text that match a term of q. */
static void hits_mark(const char *text, size_t len, const char *q, bool *hit)
{
	size_t qlen = query_len(q), i = 0, words = 0;
	struct term t;

	while (words++ < SEARCH_WORDS_MAX && term_next(q, qlen, &i, &t)) {
		const char *p = q + t.off;
		size_t k = 0;
		bool boundary = true; /* a Latin word may start at k */
		while (k < len) {
			size_t next = k;
			unsigned cp = cp_next(text, len, &next);
			if (t.cjk) {
				if (prefix_fold(text + k, len - k, p, t.len))
					memset(hit + k, 1, t.len);
			} else if (boundary && latin(cp) &&
				   prefix_fold(text + k, len - k, p, t.len)) {
				size_t e = k, f = k;
				while (e < len && latin(cp_next(text, len, &f)))
					e = f;
				memset(hit + k, 1, e - k);
			}
			boundary = !latin(cp);
			k = next;
		}
	}
}

static void part_add(json_t *parts, const char *s, size_t n, bool h)
{
	json_t *part = json_object();
	json_object_set_new(part, "text", json_stringn(s, n));
	if (h)
		json_object_set_new(part, "hit", json_true());
	json_array_append_new(parts, part);
}

json_t *search_snippet(const char *text, const char *q)
{
	size_t len = text ? strlen(text) : 0;
	if (!text || !utf8_valid(text, len) || !q || !utf8_valid(q, strlen(q)))
		return NULL;
	bool *hit = calloc(len + 1, sizeof(*hit));
	json_t *parts = json_array();
	size_t first = len, chars = 0, first_char = 0;

	if (!hit)
		abort();
	hits_mark(text, len, q, hit);
	for (size_t i = 0; i < len; chars++) {
		if (hit[i] && first == len) {
			first = i;
			first_char = chars;
		}
		cp_next(text, len, &i);
	}
	/* the window [start, end) in characters, then in bytes */
	size_t start = 0, end = chars;
	if (chars > SNIPPET_CHARS) {
		start =
		    first_char > SNIPPET_LEAD ? first_char - SNIPPET_LEAD : 0;
		end = start + SNIPPET_CHARS;
		if (end > chars) {
			end = chars;
			start = end - SNIPPET_CHARS;
		}
	}
	size_t sb = 0, eb = 0, i = 0;
	for (size_t c = 0; i <= len; c++) {
		if (c == start)
			sb = i;
		if (c == end) {
			eb = i;
			break;
		}
		if (i == len)
			break;
		cp_next(text, len, &i);
	}
	if (end == chars)
		eb = len;
	if (sb > 0)
		part_add(parts, "…", strlen("…"), false);
	for (size_t k = sb; k < eb;) {
		size_t e = k;
		while (e < eb && hit[e] == hit[k])
			e++;
		part_add(parts, text + k, e - k, hit[k]);
		k = e;
	}
	if (eb < len)
		part_add(parts, "…", strlen("…"), false);
	free(hit);
	return parts;
}
