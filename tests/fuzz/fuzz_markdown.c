/* fuzz_markdown: the Markdown renderer. Any input (it need not be UTF-8:
 * chat checks that before, but the renderer must not care) renders to
 * NUL-terminated HTML of the stated length whose markup passes natter's
 * allowlist (tests/unit/html_inert.c, the list test_markdown uses). */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/html_inert.h"
#include "model/markdown.h"

/* Knows every name of up to five bytes, so mentions are exercised. */
static const char *known(void *arg, const char *name, size_t len)
{
	static char buf[8];
	(void)arg;
	if (len == 0 || len > 5)
		return NULL;
	memcpy(buf, name, len);
	buf[len] = 0;
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192) /* natter's messages are at most 4,000 characters */
		return 0;
	size_t len = 0;
	char *html = markdown_render((const char *)data, size,
				     size % 2 ? known : NULL, NULL, &len);
	assert(html);
	assert(strlen(html) == len);
	char why[128];
	if (html_inert_check(html, why, sizeof(why))) {
		fprintf(stderr, "not inert: %s\n--- output:\n%s\n", why, html);
		abort();
	}
	free(html);
	return 0;
}
