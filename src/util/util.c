/* util: small shared helpers. Allocation failure aborts: natter treats an
 * out-of-memory condition as fatal rather than threading NULL checks
 * through every caller. */

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

static void oom(size_t n)
{
	fprintf(stderr, "natterd: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		oom(nmemb * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct timespec mono_deadline(int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ms <= 0)
		return ts;
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

void format_ts(int64_t ms, char out[32])
{
	int64_t s = ms / 1000, r = ms % 1000;
	if (r < 0) { /* floor, for times before 1970 */
		r += 1000;
		s--;
	}
	time_t secs = (time_t)s;
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)r);
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF. */
bool utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned char c = *p;
		if (c < 0x80) {
			p++;
			continue;
		}
		size_t n;
		uint32_t cp, min;
		if ((c & 0xE0) == 0xC0) {
			n = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 3, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if ((size_t)(end - p) < n)
			return false;
		for (size_t i = 1; i < n; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		p += n;
	}
	return true;
}

size_t utf8_count(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

bool name_valid(const char *s)
{
	size_t n = 0;
	bool dots_only = true;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
		dots_only = dots_only && c == '.';
		if (n >= 32)
			return false;
	}
	/* ".", ".." (and "...") are path segments: in a URL such as
	 * /api/rooms/../join a client or proxy resolves them away, and a name
	 * made of dots alone names nothing a reader can tell apart. */
	return n >= 1 && !dots_only;
}

/* Code points that change how text around them is shown without being
 * seen: bidirectional embeddings, overrides and isolates, direction
 * marks, zero-width spaces and joiners' invisible neighbours, invisible
 * operators, the BOM, interlinear annotations, tags. ZWNJ and ZWJ
 * (U+200C/D) stay allowed: scripts and emoji sequences need them. */
static bool invisible_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0xad ||
	       cp == 0x061c || cp == 0x180e || cp == 0x200b ||
	       (cp >= 0x200e && cp <= 0x200f) ||
	       (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff ||
	       (cp >= 0xfff9 && cp <= 0xfffb) ||
	       (cp >= 0xe0000 && cp <= 0xe007f);
}

bool text_visible_valid(const char *s, size_t len)
{
	if (!s || !utf8_valid(s, len))
		return false;
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		uint32_t cp;
		if (*p < 0x80)
			cp = *p++;
		else if (*p < 0xe0)
			cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f),
			p += 2;
		else if (*p < 0xf0)
			cp = (uint32_t)(p[0] & 0x0f) << 12 |
			     (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f),
			p += 3;
		else
			cp = (uint32_t)(p[0] & 0x07) << 18 |
			     (uint32_t)(p[1] & 0x3f) << 12 |
			     (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f),
			p += 4;
		if (invisible_control(cp))
			return false;
	}
	return true;
}

void ascii_lower(const char *s, char *out)
{
	for (; *s; s++, out++)
		*out = (*s >= 'A' && *s <= 'Z') ? (char)(*s + 32) : *s;
	*out = '\0';
}

int parse_i64(const char *s, int64_t *out)
{
	if (!s || !*s)
		return -1;
	const char *p = s;
	bool neg = false;
	if (*p == '-') {
		neg = true;
		p++;
	}
	if (!*p)
		return -1;
	/* Accumulate the magnitude; a negative number may reach 2^63. */
	uint64_t lim =
	    neg ? UINT64_C(9223372036854775808) : UINT64_C(9223372036854775807);
	uint64_t v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (lim - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = neg ? (v ? -(int64_t)(v - 1) - 1 : 0) : (int64_t)v;
	return 0;
}

int ct_memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	unsigned char d = 0;
	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d != 0;
}

void secure_zero(void *p, size_t n)
{
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
}

/* The published offset basis and prime (draft-eastlake-fnv): written in hex,
 * where a dropped digit shows. */
#define FNV64_BASIS 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x00000100000001b3ULL

uint64_t fnv1a64(const void *p, size_t n)
{
	return fnv1a64_more(FNV64_BASIS, p, n);
}

uint64_t fnv1a64_more(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * FNV64_PRIME;
	return h;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t rotl64(uint64_t x, int b)
{
	return x << b | x >> (64 - b);
}

#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1, v1 = rotl64(v1, 13), v1 ^= v0, v0 = rotl64(v0, 32);  \
		v2 += v3, v3 = rotl64(v3, 16), v3 ^= v2;                       \
		v0 += v3, v3 = rotl64(v3, 21), v3 ^= v0;                       \
		v2 += v1, v1 = rotl64(v1, 17), v1 ^= v2, v2 = rotl64(v2, 32);  \
	} while (0)

uint64_t siphash24(const uint8_t key[16], const void *p, size_t n)
{
	const uint8_t *b = p, *end = b + (n & ~(size_t)7);
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL,
		 v1 = k1 ^ 0x646f72616e646f6dULL,
		 v2 = k0 ^ 0x6c7967656e657261ULL,
		 v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t m;

	for (; b != end; b += 8) {
		m = le64(b);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	/* the last 0-7 bytes, and the length's low byte on top */
	m = (uint64_t)n << 56;
	for (size_t i = 0; i < (n & 7); i++)
		m |= (uint64_t)b[i] << (8 * i);
	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint8_t table_key[16];
static pthread_once_t table_key_once = PTHREAD_ONCE_INIT;

static void table_key_init(void)
{
	/* getrandom() without flags only waits for the kernel's pool at
	 * early boot; should it fail, the clocks and the pid still keep the
	 * key from being one an attacker can know in advance */
	if (getrandom(table_key, sizeof(table_key), 0) == sizeof(table_key))
		return;
	uint64_t a = (uint64_t)mono_us() ^ (uint64_t)getpid() << 32;
	uint64_t b = (uint64_t)now_ms() * 0x9e3779b97f4a7c15ULL;
	memcpy(table_key, &a, 8);
	memcpy(table_key + 8, &b, 8);
}

uint64_t table_hash(const void *p, size_t n)
{
	pthread_once(&table_key_once, table_key_init);
	return siphash24(table_key, p, n);
}

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_fini(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

char *buf_steal(struct buf *b)
{
	buf_reserve(b, 0);
	b->data[b->len] = '\0';
	char *p = b->data;
	buf_init(b);
	return p;
}

void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		if (b->data)
			b->data[0] = '\0';
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}
