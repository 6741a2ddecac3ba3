/* reply: every natter response is built here, so the JSON error shape and
 * the common security headers are the same everywhere. It does not decide
 * statuses or codes: callers do. */
#include <stdlib.h>
#include <string.h>

#include "transport/reply.h"
#include "util/util.h"

void reply_add_common_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

enum MHD_Result reply_queue(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, struct MHD_Response *r)
{
	reply_add_common_headers(r);
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	const struct reply_conn *rc = ci ? ci->socket_context : NULL;
	if (rc && rc->hsts)
		MHD_add_response_header(r, "Strict-Transport-Security",
					rc->hsts);
	if (log)
		log->status = status;
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void add_headers(struct MHD_Response *r, const struct reply_header *h,
			size_t n)
{
	for (size_t i = 0; i < n; i++)
		MHD_add_response_header(r, h[i].name, h[i].value);
}

/* json in malloc'd memory, taken over by MHD (freed on failure too). */
static enum MHD_Result queue_json(struct MHD_Connection *c,
				  struct reply_log *log, unsigned status,
				  char *json, size_t len,
				  const struct reply_header *h, size_t n)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer_with_free_callback(len, json, free);
	if (!r) {
		free(json);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	add_headers(r, h, n);
	if (log)
		log->bytes = len;
	return reply_queue(c, log, status, r);
}

enum MHD_Result reply_json_text(struct MHD_Connection *c, struct reply_log *log,
				unsigned status, const char *json, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    len, (void *)json, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (log)
		log->bytes = len;
	return reply_queue(c, log, status, r);
}

enum MHD_Result reply_json_take(struct MHD_Connection *c, struct reply_log *log,
				unsigned status, char *json, size_t len)
{
	return queue_json(c, log, status, json, len, NULL, 0);
}

enum MHD_Result reply_json(struct MHD_Connection *c, struct reply_log *log,
			   unsigned status, json_t *body)
{
	return reply_json_headers(c, log, status, body, NULL, 0);
}

enum MHD_Result reply_error(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const char *code,
			    const char *message)
{
	return reply_error_headers(c, log, status, code, message, NULL, 0);
}

enum MHD_Result reply_json_headers(struct MHD_Connection *c,
				   struct reply_log *log, unsigned status,
				   json_t *body, const struct reply_header *h,
				   size_t n)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return MHD_NO;
	return queue_json(c, log, status, text, strlen(text), h, n);
}

enum MHD_Result reply_error_headers(struct MHD_Connection *c,
				    struct reply_log *log, unsigned status,
				    const char *code, const char *message,
				    const struct reply_header *h, size_t n)
{
	return reply_json_headers(
	    c, log, status,
	    json_pack("{s:s, s:s}", "error", code, "message", message), h, n);
}

enum MHD_Result reply_empty(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const struct reply_header *h,
			    size_t n)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	add_headers(r, h, n);
	return reply_queue(c, log, status, r);
}

enum MHD_Result reply_retry(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const char *code,
			    const char *message, unsigned retry_after_s)
{
	char secs[16];
	snprintf(secs, sizeof(secs), "%u", retry_after_s);
	json_t *body =
	    json_pack("{s:s, s:s, s:I}", "error", code, "message", message,
		      "retry_after", (json_int_t)retry_after_s);
	const struct reply_header h[] = {{"Retry-After", secs},
					 {"Cache-Control", "no-store"}};
	return reply_json_headers(c, log, status, body, h, ARRAY_LEN(h));
}

enum MHD_Result reply_busy(struct MHD_Connection *c, struct reply_log *log,
			   unsigned retry_after_s)
{
	char secs[16];
	snprintf(secs, sizeof(secs), "%u", retry_after_s);
	json_t *body = json_pack("{s:s, s:s, s:I}", "error", "busy", "message",
				 "the server is busy; try again", "retry_after",
				 (json_int_t)retry_after_s);
	const struct reply_header h[] = {{"Retry-After", secs},
					 {"Cache-Control", "no-store"}};
	return reply_json_headers(c, log, 503, body, h, ARRAY_LEN(h));
}
