/* search: what the full-text index sees of a message, what a user's query
 * means to it, and the highlighted snippet of a hit. One place for the
 * rules, so the store's index, its queries and the API's snippets agree.
 *
 * The index (migration 007) is FTS5 with the unicode61 tokenizer, which
 * sees a run of CJK characters (Chinese, Japanese kana and kanji, Hangul)
 * as one word. search_index_text() therefore writes each CJK run as its
 * overlapping bigrams plus the run's last character ("性能优化" becomes
 * "性能 能优 优化 化"); Latin text passes unchanged. A query word of two or
 * more CJK characters becomes the phrase of its bigrams, so it is found
 * anywhere inside a run; one CJK character is a prefix of a bigram (or the
 * last character); a Latin word is a prefix. Pure string work: no SQL, no
 * I/O; it knows nothing above util. */
#ifndef NATTER_SEARCH_H
#define NATTER_SEARCH_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/util.h"

#define SEARCH_WORDS_MAX 16   /* words of a query that count */
#define SEARCH_QUERY_MAX 1024 /* bytes of a query that count */

/* Whether code point cp is a CJK character that is indexed as bigrams. */
bool search_cjk(unsigned cp);

/* The text the index holds for text (len bytes of valid UTF-8): a new
 * NUL-terminated string, caller frees. */
char *search_index_text(const char *text, size_t len);

/* q as an FTS5 query that only ever means "all these words": Latin words
 * as quoted prefixes, CJK runs as quoted bigram phrases; every FTS syntax
 * character is dropped, so any q is harmless. Appended to out; nothing
 * when q has no word (then nothing matches). q must be valid UTF-8. */
void search_query(const char *q, struct buf *out);

/* The snippet of text for q: an array of parts [{"text":S}, {"text":S,
 * "hit":true}, ...] whose texts, joined, are a window of at most about
 * 160 characters of text around its first hit ("…" where it was cut); a
 * part with "hit" is a place that matches a query word. New reference,
 * caller decrefs; NULL when text is not valid UTF-8. */
json_t *search_snippet(const char *text, const char *q);

#endif
