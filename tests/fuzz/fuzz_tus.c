/* fuzz_tus: the tus header parsers (http/tus.h). Input: an Upload-Offset
 * or Upload-Length candidate, a newline, a key, a newline, then an
 * Upload-Metadata header. Checks what tus.h promises: a parsed number is
 * exactly the digits it was given; metadata_get agrees with
 * metadata_valid, never writes past out, always NUL-terminates, and a
 * found value has the length it reports. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/tus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	char *key = strchr(s, '\n');
	char *meta = key ? strchr(key + 1, '\n') : NULL;
	if (key)
		*key++ = '\0';
	if (meta)
		*meta++ = '\0';

	int64_t v;
	if (tus_number_parse(s, &v) == 0) {
		char back[32];
		snprintf(back, sizeof(back), "%lld", (long long)v);
		/* leading zeros are digits too */
		const char *p = s;
		while (p[0] == '0' && p[1])
			p++;
		assert(strcmp(back, p) == 0);
	}
	if (key && meta) {
		char out[40];
		memset(out, 0x55, sizeof(out));
		int n = tus_metadata_get(meta, key, out, 32);
		assert(out[32] == 0x55); /* nothing past outlen */
		int valid = tus_metadata_valid(meta);
		if (n == -2)
			assert(!valid || strlen(key) > 0);
		else
			assert(valid);
		if (n >= 0)
			assert((size_t)n == strlen(out));
		else
			assert(out[0] == '\0' || n == -1);
	}
	free(s);
	return 0;
}
