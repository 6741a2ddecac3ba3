/* log: the process-wide log sink (stderr or one file), levelled logfmt
 * lines and the access log. It does not rotate, buffer or ship logs
 * anywhere: main calls log_reopen() on SIGHUP after logrotate moved the
 * file, and the sink is written with plain write(2).
 *
 * Line format (logfmt, one event per line, UTF-8):
 *
 *   ts=2026-11-26T12:00:00.123Z level=info msg="listening" addr=[::1]:8080
 *   ts=... level=info msg="access" method=GET path=/api/me status=200
 *       bytes=123 dur_us=456 addr=127.0.0.1          (one line, wrapped here)
 *
 * ts is RFC 3339 UTC with milliseconds; level is error|warn|info|debug.
 * log_msg() splits the caller's format string (never the formatted text,
 * which an argument could shape): the first word and every following word
 * up to the first " key=" belong to msg, which is always quoted; the rest
 * is the caller's key=value pairs. Each value there is formatted whole and
 * written bare only if it is a plain token (no space, quote, '=', '\\',
 * control or non-ASCII byte), else quoted. In every quoted text, quotes and
 * backslashes are escaped and control characters and invalid UTF-8 bytes
 * become \n, \r, \t or \xHH. So a value (a login name, a path) can neither
 * add a key nor split a line: `user=%s` with `x" level=error msg=` and a
 * newline gives user="x\" level=error msg=\n..." on the same line.
 *
 * The one static below is the true singleton the style guide allows. Each
 * line is built outside the lock and written with one write() under it, so
 * lines from different threads never interleave and log_reopen() can swap
 * the file descriptor while other threads log. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"

/* Longest caller message kept; anything beyond is cut. */
#define LOG_MSG_MAX 8192

static struct {
	pthread_mutex_t lock;
	int fd;	    /* STDERR_FILENO or an O_APPEND file */
	char *path; /* NULL: stderr */
	atomic_int level;
} sink = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .fd = STDERR_FILENO,
    .path = NULL,
    .level = LOG_INFO,
};

static const char *const level_names[] = {
    [LOG_ERROR] = "error",
    [LOG_WARN] = "warn",
    [LOG_INFO] = "info",
    [LOG_DEBUG] = "debug",
};

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Caller holds the lock. */
static void sink_close_locked(void)
{
	if (sink.fd != STDERR_FILENO)
		close(sink.fd);
	sink.fd = STDERR_FILENO;
	free(sink.path);
	sink.path = NULL;
}

int log_open(const char *path, enum log_level level)
{
	int fd = STDERR_FILENO;

	if (path && strcmp(path, "-") != 0) {
		fd = open_file(path);
		if (fd < 0)
			return -1;
	}
	pthread_mutex_lock(&sink.lock);
	sink_close_locked();
	sink.fd = fd;
	if (fd != STDERR_FILENO)
		sink.path = xstrdup(path);
	atomic_store(&sink.level, (int)level);
	pthread_mutex_unlock(&sink.lock);
	return 0;
}

int log_reopen(void)
{
	int rc = 0;

	pthread_mutex_lock(&sink.lock);
	if (sink.path) {
		int fd = open_file(sink.path);
		if (fd < 0) {
			/* Keep writing to the old file rather than losing
			 * lines. */
			rc = -1;
		} else {
			close(sink.fd);
			sink.fd = fd;
		}
	}
	pthread_mutex_unlock(&sink.lock);
	return rc;
}

void log_close(void)
{
	pthread_mutex_lock(&sink.lock);
	sink_close_locked();
	pthread_mutex_unlock(&sink.lock);
}

int log_level_parse(const char *s, enum log_level *out)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static bool enabled(enum log_level level)
{
	return (int)level <= atomic_load(&sink.level);
}

/* Write all of b under the lock, retrying short writes and EINTR. A sink
 * that fails is not reported: there is nowhere left to report it. */
static void sink_write(const struct buf *b)
{
	size_t off = 0;

	pthread_mutex_lock(&sink.lock);
	while (off < b->len) {
		ssize_t n = write(sink.fd, b->data + off, b->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	pthread_mutex_unlock(&sink.lock);
}

static void put_escaped_byte(struct buf *b, unsigned char c)
{
	switch (c) {
	case '\n':
		buf_puts(b, "\\n");
		break;
	case '\r':
		buf_puts(b, "\\r");
		break;
	case '\t':
		buf_puts(b, "\\t");
		break;
	default:
		buf_printf(b, "\\x%02x", c);
		break;
	}
}

static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Append s: controls (and, if the text is not valid UTF-8, all non-ASCII
 * bytes) escaped; with quoted, also '"' and '\\'. */
static void put_text(struct buf *b, const char *s, size_t len, bool quoted)
{
	bool utf8 = utf8_valid(s, len);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_ctl(c) || (c >= 0x80 && !utf8))
			put_escaped_byte(b, c);
		else if (quoted && (c == '"' || c == '\\'))
			buf_printf(b, "\\%c", c);
		else
			buf_append(b, &c, 1);
	}
}

/* A logfmt value: bare if it is plain, otherwise quoted and escaped. */
static void put_value(struct buf *b, const char *s)
{
	size_t len = s ? strlen(s) : 0;
	bool plain = len > 0;

	for (size_t i = 0; i < len && plain; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			plain = false;
	}
	if (plain) {
		buf_append(b, s, len);
		return;
	}
	buf_puts(b, "\"");
	put_text(b, s ? s : "", len, true);
	buf_puts(b, "\"");
}

static void put_prefix(struct buf *b, enum log_level level)
{
	char ts[32];

	format_ts(now_ms(), ts);
	buf_printf(b, "ts=%s level=%s ", ts, level_names[level]);
}

static bool is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Length of the sentence at the start of text: up to the first space that
 * is followed by "key=". The first word always belongs to the sentence. */
static size_t sentence_len(const char *text, size_t len)
{
	for (size_t i = 1; i < len; i++) {
		if (text[i] != ' ')
			continue;
		size_t k = i + 1;
		while (k < len && is_key_char(text[k]))
			k++;
		if (k > i + 1 && k < len && text[k] == '=')
			return i;
	}
	return len;
}

/* Append one conversion of fmt (at *f, a '%') to b, taking its arguments
 * from *ap, and advance *f past it. The format string is the caller's
 * (checked by the compiler through log_msg's format attribute), so each
 * conversion is handed to vsnprintf-style formatting with its own type. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void put_conversion(struct buf *b, const char **f, va_list *ap)
{
	const char *p = *f + 1;
	char spec[32];
	int star[2], nstar = 0;
	enum { L_NONE, L_HH, L_H, L_L, L_LL, L_Z, L_J, L_T, L_LD } lm = L_NONE;

	if (*p == '%') {
		buf_append(b, "%", 1);
		*f = p + 1;
		return;
	}
	while (*p && strchr("-+ #0'", *p))
		p++;
	for (int part = 0; part < 2; part++) {
		if (part == 1) {
			if (*p != '.')
				break;
			p++;
		}
		if (*p == '*') {
			if (nstar < 2)
				star[nstar++] = va_arg(*ap, int);
			p++;
		}
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (p[0] == 'h' && p[1] == 'h')
		lm = L_HH, p += 2;
	else if (p[0] == 'l' && p[1] == 'l')
		lm = L_LL, p += 2;
	else if (*p == 'h')
		lm = L_H, p++;
	else if (*p == 'l')
		lm = L_L, p++;
	else if (*p == 'q')
		lm = L_LL, p++;
	else if (*p == 'z')
		lm = L_Z, p++;
	else if (*p == 'j')
		lm = L_J, p++;
	else if (*p == 't')
		lm = L_T, p++;
	else if (*p == 'L')
		lm = L_LD, p++;
	char conv = *p;
	if (!conv || (size_t)(p + 1 - *f) >= sizeof(spec)) {
		/* A malformed format: show the rest literally. */
		buf_puts(b, *f);
		*f += strlen(*f);
		return;
	}
	memcpy(spec, *f, (size_t)(p + 1 - *f));
	spec[p + 1 - *f] = '\0';
	*f = p + 1;

#define EMIT(T)                                                                \
	do {                                                                   \
		T v_ = va_arg(*ap, T);                                         \
		if (nstar == 0)                                                \
			buf_printf(b, spec, v_);                               \
		else if (nstar == 1)                                           \
			buf_printf(b, spec, star[0], v_);                      \
		else                                                           \
			buf_printf(b, spec, star[0], star[1], v_);             \
	} while (0)
	switch (conv) {
	case 'd':
	case 'i':
		if (lm == L_L)
			EMIT(long);
		else if (lm == L_LL)
			EMIT(long long);
		else if (lm == L_Z)
			EMIT(ssize_t);
		else if (lm == L_J)
			EMIT(intmax_t);
		else if (lm == L_T)
			EMIT(ptrdiff_t);
		else
			EMIT(int);
		break;
	case 'u':
	case 'x':
	case 'X':
	case 'o':
		if (lm == L_L)
			EMIT(unsigned long);
		else if (lm == L_LL)
			EMIT(unsigned long long);
		else if (lm == L_Z)
			EMIT(size_t);
		else if (lm == L_J)
			EMIT(uintmax_t);
		else if (lm == L_T)
			EMIT(ptrdiff_t);
		else
			EMIT(unsigned);
		break;
	case 'c':
		EMIT(int);
		break;
	case 's': {
		const char *v = va_arg(*ap, const char *);
		if (!v)
			v = "(null)";
		if (nstar == 0)
			buf_printf(b, spec, v);
		else if (nstar == 1)
			buf_printf(b, spec, star[0], v);
		else
			buf_printf(b, spec, star[0], star[1], v);
		break;
	}
	case 'p':
		EMIT(void *);
		break;
	case 'f':
	case 'F':
	case 'e':
	case 'E':
	case 'g':
	case 'G':
	case 'a':
	case 'A':
		if (lm == L_LD)
			EMIT(long double);
		else
			EMIT(double);
		break;
	default:
		/* %n and unknown conversions: nothing is written. */
		break;
	}
#undef EMIT
}
#pragma GCC diagnostic pop

/* Append the caller's text for fmt[from, to) to b: literals as they are,
 * conversions formatted. */
static void put_formatted(struct buf *b, const char *fmt, size_t from,
			  size_t to, va_list *ap)
{
	const char *f = fmt + from, *end = fmt + to;
	while (f < end) {
		const char *pct = memchr(f, '%', (size_t)(end - f));
		if (!pct) {
			buf_append(b, f, (size_t)(end - f));
			break;
		}
		buf_append(b, f, (size_t)(pct - f));
		f = pct;
		put_conversion(b, &f, ap);
	}
}

/* The caller's key=value tail, fmt[from..]: one token per run of the format
 * string without a space. A token "key=..." is written as key= and its
 * value (formatted in full, then quoted and escaped unless it is a plain
 * token), so no argument can add a key, end a line or reach the next
 * token; a caller's literal quotes around a value are dropped first. A
 * token without a literal key is written as one value. */
static void put_tail(struct buf *b, const char *fmt, size_t from, va_list *ap)
{
	size_t i = from, len = strlen(fmt);
	struct buf v;

	buf_init(&v);
	while (i < len) {
		if (fmt[i] == ' ') {
			i++;
			continue;
		}
		size_t end = i;
		while (end < len && fmt[end] != ' ')
			end++;
		size_t k = i;
		while (k < end && is_key_char(fmt[k]))
			k++;
		size_t vstart = i;
		buf_puts(b, " ");
		if (k > i && k < end && fmt[k] == '=') {
			put_text(b, fmt + i, k + 1 - i, false);
			vstart = k + 1;
		}
		size_t vend = end;
		if (vend - vstart >= 2 && fmt[vstart] == '"' &&
		    fmt[vend - 1] == '"') {
			vstart++;
			vend--;
		}
		v.len = 0;
		put_formatted(&v, fmt, vstart, vend, ap);
		if (v.len > LOG_MSG_MAX)
			v.len = LOG_MSG_MAX;
		buf_append(&v, "", 1); /* NUL for put_value */
		put_value(b, v.data);
		i = end;
	}
	buf_fini(&v);
}

static void vlog(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void vlog(enum log_level level, const char *fmt, va_list ap)
{
	struct buf text, b;
	va_list aq;

	/* Split the format string, not the formatted text, into the sentence
	 * and the key=value tail: an argument cannot move the border. */
	size_t flen = strlen(fmt);
	size_t slen = sentence_len(fmt, flen);

	va_copy(aq, ap);
	buf_init(&text);
	put_formatted(&text, fmt, 0, slen, &aq);
	if (text.len > LOG_MSG_MAX)
		text.len = LOG_MSG_MAX;

	buf_init(&b);
	put_prefix(&b, level);
	buf_puts(&b, "msg=\"");
	put_text(&b, text.data ? text.data : "", text.len, true);
	buf_puts(&b, "\"");
	if (slen < flen)
		put_tail(&b, fmt, slen, &aq);
	va_end(aq);
	buf_puts(&b, "\n");
	sink_write(&b);
	buf_fini(&b);
	buf_fini(&text);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	bool to_file;

	va_start(ap, fmt);
	vlog(LOG_ERROR, fmt, ap);
	va_end(ap);

	/* Whoever started natterd should see why it stopped, even when the
	 * log goes to a file. */
	pthread_mutex_lock(&sink.lock);
	to_file = sink.fd != STDERR_FILENO;
	pthread_mutex_unlock(&sink.lock);
	if (to_file) {
		fputs("natterd: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	exit(1);
}

void log_access(const char *method, const char *path, unsigned status,
		uint64_t bytes, int64_t duration_us, const char *client_addr)
{
	struct buf b;

	if (!enabled(LOG_INFO))
		return;
	buf_init(&b);
	put_prefix(&b, LOG_INFO);
	buf_puts(&b, "msg=\"access\" method=");
	put_value(&b, method);
	buf_puts(&b, " path=");
	put_value(&b, path);
	buf_printf(&b, " status=%u bytes=%llu dur_us=%lld addr=", status,
		   (unsigned long long)bytes, (long long)duration_us);
	put_value(&b, client_addr);
	buf_puts(&b, "\n");
	sink_write(&b);
	buf_fini(&b);
}
