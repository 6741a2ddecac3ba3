/* emoji: a reaction's emoji checked with ICU: the whole string must have
 * the RGI_Emoji property (one emoji sequence Unicode recommends for
 * general interchange), or be one code point with the Emoji property
 * outside ASCII (a text-style emoji such as U+2764 without its variation
 * selector). Shortcodes come from markdown's table.
 *
 * It does not render, store or count anything. */
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "model/emoji.h"
#include "model/markdown.h"
#include "util/util.h"

/* Code units of UTF-16 one emoji may take (a ZWJ family of four with skin
 * tones is about 40). */
#define UNITS_MAX 48

static int emoji_check(const char *s, size_t len)
{
	UChar u[UNITS_MAX];
	int32_t n = 0;
	UErrorCode err = U_ZERO_ERROR;

	if (len == 0 || len >= EMOJI_BYTES_MAX || !utf8_valid(s, len))
		return -1;
	u_strFromUTF8(u, UNITS_MAX, &n, s, (int32_t)len, &err);
	if (U_FAILURE(err) || n <= 0 || n > UNITS_MAX)
		return -1;
	if (u_stringHasBinaryProperty(u, n, UCHAR_RGI_EMOJI))
		return 0;
	UChar32 c;
	int32_t i = 0;
	U16_NEXT(u, i, n, c);
	if (i == n && c > 0x7f && u_hasBinaryProperty(c, UCHAR_EMOJI))
		return 0;
	return -1;
}

int emoji_normalize(const char *s, size_t len, char out[EMOJI_BYTES_MAX])
{
	if (len > 2 && s[0] == ':' && s[len - 1] == ':') {
		const char *e = markdown_emoji(s + 1, len - 2);
		if (!e || strlen(e) >= EMOJI_BYTES_MAX)
			return -1;
		strcpy(out, e);
		return 0;
	}
	if (emoji_check(s, len) < 0)
		return -1;
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}
