/* html_inert: the one allowlist of the markup markdown_render may write,
 * shared by test_markdown and the Markdown fuzz harness so the two cannot
 * drift: every tag on natter's list, only listed attributes, each value
 * quoted and free of markup, every href to http:, https: or mailto:. */
#ifndef NATTER_HTML_INERT_H
#define NATTER_HTML_INERT_H

#include <stddef.h>

/* NULL when html (NUL-terminated) is inert, else a description of the
 * first violation, written into why (len bytes). */
const char *html_inert_check(const char *html, char *why, size_t len);

#endif
