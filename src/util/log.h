/* log: levelled, structured (logfmt) log lines and the access log.
 * One process-wide sink (a file or stderr), safe to call from any thread.
 * It does not rotate files: SIGHUP makes main call log_reopen(). */
#ifndef NATTER_LOG_H
#define NATTER_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* path NULL or "-" logs to stderr. Returns 0, or -1 (errno set) if the file
 * cannot be opened. */
int log_open(const char *path, enum log_level level);
/* Reopen the same path (after logrotate moved it). 0 or -1. */
int log_reopen(void);
void log_close(void);
/* "error", "warn", "info", "debug" -> level; 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

/* One line: ts=... level=... msg="<formatted>". The message should carry its
 * own key=value pairs after a short sentence, e.g.
 *   log_info("listening addr=%s", addr);  */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
/* Start-up failures only: log, then exit(1). */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* One access-log line per finished request, at level info. */
void log_access(const char *method, const char *path, unsigned status,
		uint64_t bytes, int64_t duration_us, const char *client_addr);

#endif
