/* tus: parsing the tus 1.0 request headers (see tus.h). Base64 is
 * mbedTLS's decoder; this file only splits the header. */
#include <string.h>

#include <mbedtls/base64.h>

#include "http/tus.h"

int tus_number_parse(const char *s, int64_t *out)
{
	int64_t v = 0;
	size_t n = 0;

	if (!s || !*s)
		return -1;
	for (; s[n]; n++) {
		if (n >= 18 || s[n] < '0' || s[n] > '9')
			return -1;
		v = v * 10 + (s[n] - '0');
	}
	*out = v;
	return 0;
}

static int key_char(char c)
{
	/* printable ASCII without space and comma (the spec's rule) */
	return c > ' ' && c < 127 && c != ',';
}

/* Walk the pairs; for the one named key (may be NULL: validate only),
 * decode its value into out. See tus_metadata_get. */
static int metadata_walk(const char *h, const char *key, char *out,
			 size_t outlen)
{
	char seen[TUS_PAIRS_MAX][TUS_KEY_MAX + 1];
	size_t npairs = 0, len = strnlen(h, TUS_METADATA_MAX + 1);
	const char *p = h, *end = h + len;
	int found = -1;

	if (out && outlen)
		out[0] = '\0';
	if (len > TUS_METADATA_MAX)
		return -2;
	if (len == 0)
		return -1;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *pe = comma ? comma : end;
		while (p < pe && *p == ' ')
			p++;
		const char *k = p;
		while (p < pe && key_char(*p))
			p++;
		size_t klen = (size_t)(p - k);
		if (klen == 0 || klen > TUS_KEY_MAX || npairs == TUS_PAIRS_MAX)
			goto bad;
		for (size_t i = 0; i < npairs; i++)
			if (strlen(seen[i]) == klen &&
			    memcmp(seen[i], k, klen) == 0)
				goto bad;
		memcpy(seen[npairs], k, klen);
		seen[npairs++][klen] = '\0';
		const char *v = p, *ve = pe;
		if (v < ve) {
			if (*v != ' ')
				goto bad;
			while (v < ve && *v == ' ')
				v++;
			while (ve > v && ve[-1] == ' ')
				ve--;
		}
		size_t vlen = (size_t)(ve - v);
		if (vlen % 4) /* padded base64 only */
			goto bad;
		for (size_t i = 0; i < vlen; i++)
			if (v[i] == ' ')
				goto bad;
		/* decode every value: a malformed one anywhere is an error */
		unsigned char tmp[TUS_METADATA_MAX];
		size_t dlen = 0;
		if (vlen &&
		    mbedtls_base64_decode(tmp, sizeof(tmp), &dlen,
					  (const unsigned char *)v, vlen) != 0)
			goto bad;
		if (key && strlen(key) == klen && memcmp(key, k, klen) == 0) {
			if (!out || dlen + 1 > outlen ||
			    memchr(tmp, '\0', dlen))
				goto bad;
			memcpy(out, tmp, dlen);
			out[dlen] = '\0';
			found = (int)dlen;
		}
		if (!comma)
			break;
		p = comma + 1;
		if (p == end) /* a trailing comma */
			goto bad;
	}
	return found;
bad:
	if (out && outlen)
		out[0] = '\0';
	return -2;
}

int tus_metadata_get(const char *header, const char *key, char *out,
		     size_t outlen)
{
	return metadata_walk(header, key, out, outlen);
}

int tus_metadata_valid(const char *header)
{
	return metadata_walk(header, NULL, NULL, 0) != -2;
}
