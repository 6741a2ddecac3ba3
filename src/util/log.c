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
 * log_msg() splits the caller's text: the first word and every following
 * word up to the first " key=" belong to msg, which is always quoted; the
 * rest is written as the caller formatted it (its key=value pairs). In msg
 * and in access-log values, quotes and backslashes are escaped and control
 * characters and invalid UTF-8 bytes become \n, \r, \t or \xHH, so a client
 * cannot forge or split lines. In the caller's key=value tail only control
 * characters are escaped: quoting values there is the caller's job.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void vlog(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void vlog(enum log_level level, const char *fmt, va_list ap)
{
	char small[512];
	char *text = small;
	struct buf b;
	va_list ap2;

	va_copy(ap2, ap);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(small)) {
		if (n > LOG_MSG_MAX)
			n = LOG_MSG_MAX;
		text = xmalloc((size_t)n + 1);
		vsnprintf(text, (size_t)n + 1, fmt, ap2);
	}
	va_end(ap2);

	size_t len = strlen(text);
	size_t slen = sentence_len(text, len);

	buf_init(&b);
	put_prefix(&b, level);
	buf_puts(&b, "msg=\"");
	put_text(&b, text, slen, true);
	buf_puts(&b, "\"");
	if (slen < len)
		put_text(&b, text + slen, len - slen, false);
	buf_puts(&b, "\n");
	sink_write(&b);
	buf_fini(&b);
	if (text != small)
		free(text);
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
