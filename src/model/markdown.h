/* markdown: a message's text rendered once, when it is sent, to the HTML
 * every reader is shown. The parser is cmark-gfm (CommonMark with GitHub's
 * tables, strikethrough and autolinks); this module only decides what the
 * result may contain, so that it is safe by construction:
 *   - raw HTML in the text is shown as text, never interpreted;
 *   - links go only to http:, https: and mailto: targets (anything else
 *     keeps its text and loses its link) and open in a new tab with
 *     rel="noopener noreferrer nofollow ugc";
 *   - images are never loaded: an image becomes a link to its address;
 *   - `@name` (outside code and links) becomes
 *     <span class="mention" data-user="name">@name</span> when the caller's
 *     callback knows the name, and `:shortcode:` from a fixed table becomes
 *     <span class="emoji" title=":shortcode:">EMOJI</span>;
 *   - a line break in the text is a line break (<br />).
 * It does not know users, rooms or the envelope. Thread-safe. */
#ifndef NATTER_MARKDOWN_H
#define NATTER_MARKDOWN_H

#include <stddef.h>

/* Called for each `@name` outside code and links (name is not
 * NUL-terminated: len bytes of letters, digits, `_`, `.`, `-`, without a
 * trailing `.`). Returns the name to show and put in data-user (e.g. the
 * canonical spelling of a user, or "room"), or NULL to leave it as text.
 * The returned string must stay valid until the next call. */
typedef const char *(*markdown_mention_fn)(void *arg, const char *name,
					   size_t len);

/* Render text (len bytes of UTF-8) to HTML. mention may be NULL (no
 * mentions). Returns a malloc'd NUL-terminated string (caller frees) and
 * its length in *out_len; never NULL. */
char *markdown_render(const char *text, size_t len, markdown_mention_fn mention,
		      void *arg, size_t *out_len);

/* markdown_render always through the parser, never its shortcut for a
 * plain line; the same output (the unit test compares the two). */
char *markdown_render_full(const char *text, size_t len,
			   markdown_mention_fn mention, void *arg,
			   size_t *out_len);

/* The emoji for a shortcode without its colons ("thumbsup"), or NULL. */
const char *markdown_emoji(const char *name, size_t len);

/* A short plain-text excerpt of text (len bytes of UTF-8 Markdown), for a
 * reply's quote: the text without its markup, whitespace runs as one
 * space, cut after max code points (never inside one) with "…" when cut.
 * Returns a malloc'd string (caller frees); never NULL. */
char *markdown_excerpt(const char *text, size_t len, size_t max);

#endif
