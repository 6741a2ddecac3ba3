/* util: allocation that aborts on failure, time, UTF-8 and name checks,
 * a growable byte buffer. Shared by every module; depends on nothing. */
#ifndef NATTER_UTIL_H
#define NATTER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Allocation: abort the process on out-of-memory, so callers never check. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Time. */
int64_t now_ms(void);  /* wall clock, milliseconds since the epoch */
int64_t mono_ms(void); /* monotonic clock, milliseconds */
int64_t mono_us(void); /* monotonic clock, microseconds */
/* The monotonic clock ms milliseconds from now (now when ms <= 0), as
 * pthread_cond_timedwait() takes it for a condition variable whose clock
 * is CLOCK_MONOTONIC (pthread_condattr_setclock); never for one on the
 * default CLOCK_REALTIME. */
struct timespec mono_deadline(int64_t ms);
/* RFC 3339 UTC with milliseconds, "2026-11-26T12:00:00.123Z"; out needs 25
 * bytes. */
void format_ts(int64_t ms, char out[32]);

/* Text. */
bool utf8_valid(const char *s, size_t len);
/* Number of code points in valid UTF-8. */
size_t utf8_count(const char *s, size_t len);
/* 1-32 characters of [A-Za-z0-9_.-], not all of them dots (so not "." or
 * ".."): the rule for usernames and room names. */
bool name_valid(const char *s);
/* Valid UTF-8 without control characters or invisible format characters
 * (bidirectional overrides and isolates U+202A-202E, U+2066-2069, direction
 * marks, zero-width spaces, BOM, tags; ZWJ/ZWNJ allowed): the rule for text
 * shown as a name, such as display names. */
bool text_visible_valid(const char *s, size_t len);
/* Lower-case ASCII copy into out (at least strlen(s)+1 bytes). */
void ascii_lower(const char *s, char *out);
/* Parse a decimal int64 filling the whole string; 0 on success, -1 otherwise.
 */
int parse_i64(const char *s, int64_t *out);
/* Constant-time comparison of two equal-length byte strings: 0 if equal. */
int ct_memcmp(const void *a, const void *b, size_t n);
/* Zero memory in a way the compiler will not elide (for secrets). */
void secure_zero(void *p, size_t n);

/* FNV-1a, 64-bit: a fast hash for change detection, not for a table whose
 * keys come from outside (no key, no resistance to chosen collisions: use
 * table_hash). fnv1a64_more goes on from h, so a
 * hash can cover pieces that are not one contiguous run of bytes:
 * fnv1a64_more(fnv1a64(a, na), b, nb) == fnv1a64(ab, na + nb). */
uint64_t fnv1a64(const void *p, size_t n);
uint64_t fnv1a64_more(uint64_t h, const void *p, size_t n);

/* SipHash-2-4 of p under a 128-bit key (Aumasson and Bernstein): a keyed
 * hash whose collisions cannot be found without the key. */
uint64_t siphash24(const uint8_t key[16], const void *p, size_t n);
/* The hash for a table whose keys come from outside (user and room names,
 * addresses): SipHash-2-4 under a key drawn at random once per process,
 * so nobody can choose names that all land in one run of slots. */
uint64_t table_hash(const void *p, size_t n);

/* A growable byte buffer; always NUL-terminated after data[len]. */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_init(struct buf *b);
void buf_fini(struct buf *b);
/* The bytes (NUL-terminated, never NULL), now the caller's to free; b is
 * left empty. */
char *buf_steal(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
