/* reply: building libmicrohttpd responses the way every natter endpoint
 * answers: JSON bodies, JSON errors {"error":code,"message":text}, and the
 * headers every response carries (nosniff, no referrer). Used by http and by
 * the transports, so neither reaches into the other. */
#ifndef NATTER_REPLY_H
#define NATTER_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

/* What the access log reports of a request; filled by the reply_* calls. */
struct reply_log {
	unsigned status;
	uint64_t bytes;
};

/* What http records about a connection at the start of its libmicrohttpd
 * socket context (MHD_OPTION_NOTIFY_CONNECTION); reply_queue() reads it.
 * hsts is NULL on plain connections. */
struct reply_conn {
	const char *hsts; /* Strict-Transport-Security value, NULL: none */
};

/* One more header for a response: name and value are borrowed for the
 * call (libmicrohttpd copies them). */
struct reply_header {
	const char *name;
	const char *value;
};

/* Headers every natter response carries. */
void reply_add_common_headers(struct MHD_Response *r);
/* Queue r with status, recording it in log (may be NULL); r is destroyed.
 * Adds the common headers, and Strict-Transport-Security on a connection
 * whose struct reply_conn asks for it. */
enum MHD_Result reply_queue(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, struct MHD_Response *r);
/* body is stolen (decref'd). */
enum MHD_Result reply_json(struct MHD_Connection *c, struct reply_log *log,
			   unsigned status, json_t *body);
/* Pre-serialized JSON text (copied). */
enum MHD_Result reply_json_text(struct MHD_Connection *c, struct reply_log *log,
				unsigned status, const char *json, size_t len);
/* Pre-serialized JSON text in malloc'd memory, which MHD takes over (and
 * frees, also on failure): no copy of a large body. */
enum MHD_Result reply_json_take(struct MHD_Connection *c, struct reply_log *log,
				unsigned status, char *json, size_t len);
enum MHD_Result reply_error(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const char *code,
			    const char *message);

/* The same answers with n extra headers h (h may be NULL when n is 0):
 * Set-Cookie, Allow, Retry-After, Location... body is stolen (decref'd);
 * NULL body answers MHD_NO. */
enum MHD_Result reply_json_headers(struct MHD_Connection *c,
				   struct reply_log *log, unsigned status,
				   json_t *body, const struct reply_header *h,
				   size_t n);
enum MHD_Result reply_error_headers(struct MHD_Connection *c,
				    struct reply_log *log, unsigned status,
				    const char *code, const char *message,
				    const struct reply_header *h, size_t n);
/* No body at all (204, 308): only the common and the extra headers. */
enum MHD_Result reply_empty(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const struct reply_header *h,
			    size_t n);
/* A refusal the client waits out: status, {"error":code,"message":message,
 * "retry_after":N} with Retry-After: N (429 rate_limited, 507
 * storage_full...). */
enum MHD_Result reply_retry(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const char *code,
			    const char *message, unsigned retry_after_s);
/* 503 {"error":"busy",...,"retry_after":N} with Retry-After: N. */
enum MHD_Result reply_busy(struct MHD_Connection *c, struct reply_log *log,
			   unsigned retry_after_s);

#endif
