/* html_inert: see html_inert.h. Plain C, no cmocka: the fuzz harness
 * links it too. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <strings.h>

#include "html_inert.h"

static bool listed(const char *name, size_t n, const char *const *list)
{
	for (; *list; list++)
		if (strlen(*list) == n && !strncmp(*list, name, n))
			return true;
	return false;
}

const char *html_inert_check(const char *html, char *why, size_t len)
{
	static const char *const tags[] = {
	    "p",     "br", "strong", "em", "del",	 "code",  "pre",
	    "ul",    "ol", "li",     "a",  "span",	 "table", "thead",
	    "tbody", "tr", "th",     "td", "h1",	 "h2",	  "h3",
	    "h4",    "h5", "h6",     "hr", "blockquote", NULL};
	static const char *const attrs[] = {
	    "href", "title",	  "target", "rel",   "class", "data-user",
	    "role", "aria-label", "align",  "start", NULL};
	for (const char *p = strchr(html, '<'); p; p = strchr(p, '<')) {
		p++;
		if (*p == '/')
			p++;
		size_t n = strcspn(p, " />");
		if (!listed(p, n, tags)) {
			snprintf(why, len, "tag '%.*s'", (int)n, p);
			return why;
		}
		p += n;
		while (*p == ' ' && p[1] != '/') {
			p++;
			size_t an = strcspn(p, "=");
			if (!listed(p, an, attrs)) {
				snprintf(why, len, "attribute '%.*s'", (int)an,
					 p);
				return why;
			}
			bool href = an == 4 && !strncmp(p, "href", 4);
			p += an;
			if (p[0] != '=' || p[1] != '"') {
				snprintf(why, len, "unquoted value at '%.20s'",
					 p);
				return why;
			}
			p += 2;
			/* Schemes are case-insensitive (RFC 3986 3.1). */
			if (href && strncasecmp(p, "http://", 7) &&
			    strncasecmp(p, "https://", 8) &&
			    strncasecmp(p, "mailto:", 7)) {
				snprintf(why, len, "link to '%.20s'", p);
				return why;
			}
			const char *q = strchr(p, '"');
			if (!q) {
				snprintf(why, len, "unterminated value");
				return why;
			}
			/* A value holds no markup: cmark escapes it. */
			if (memchr(p, '<', (size_t)(q - p))) {
				snprintf(why, len, "markup in a value");
				return why;
			}
			p = q + 1;
		}
	}
	return NULL;
}
