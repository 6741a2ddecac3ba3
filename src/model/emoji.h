/* emoji: what a reaction may be. A reaction is one emoji: a single emoji
 * grapheme cluster as Unicode defines it (an RGI emoji sequence: a flag, a
 * skin tone, a ZWJ family, a keycap, or one emoji character), or a
 * `:shortcode:` of markdown's table, which stands for its emoji. ICU
 * (icu-uc) decides what Unicode calls an emoji; nothing here parses
 * grapheme clusters by hand.
 *
 * It knows nothing of messages or the store. Thread-safe. */
#ifndef NATTER_EMOJI_H
#define NATTER_EMOJI_H

#include <stddef.h>

#define EMOJI_BYTES_MAX 64 /* of one emoji's UTF-8, NUL included */

/* The emoji s (len bytes) stands for, NUL-terminated into out: s itself
 * when it is a single emoji, the emoji of a known `:shortcode:`. 0, or -1
 * when s is neither (empty, two emoji, text, an unknown shortcode, not
 * UTF-8, too long). */
int emoji_normalize(const char *s, size_t len, char out[EMOJI_BYTES_MAX]);

#endif
