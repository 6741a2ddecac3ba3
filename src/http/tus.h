/* tus: the request headers of the tus 1.0 resumable upload protocol
 * (https://tus.io/protocols/resumable-upload), parsed: Upload-Offset and
 * Upload-Length (non-negative decimal integers, nothing else), and
 * Upload-Metadata (comma-separated "key base64value" pairs; a key alone
 * means an empty value). Pure functions: no I/O, no state, no allocation;
 * every input is bounded. The handlers are in api_upload.c. */
#ifndef NATTER_TUS_H
#define NATTER_TUS_H

#include <stddef.h>
#include <stdint.h>

#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS "creation,termination,expiration"
#define TUS_METADATA_MAX 4096 /* bytes of the Upload-Metadata header */
#define TUS_PAIRS_MAX 32
#define TUS_KEY_MAX 64

/* A tus size or offset: 1 to 18 decimal digits, no sign, no spaces (so
 * at most 999,999,999,999,999,999). 0 with *out, -1 on anything else. */
int tus_number_parse(const char *s, int64_t *out);

/* The value of key in an Upload-Metadata header, base64-decoded into out
 * (outlen bytes, NUL-terminated): its length, 0 for a key present without
 * a value, -1 when the key is absent. -2 when the header is malformed (a
 * bad key, bad base64, a repeated key, too many pairs or bytes) or the
 * value does not fit; out is then "". */
int tus_metadata_get(const char *header, const char *key, char *out,
		     size_t outlen);
/* Whether header is a well-formed Upload-Metadata value (as above). */
int tus_metadata_valid(const char *header);

#endif
