/* reply: every natter response is built here, so the JSON error shape and
 * the common security headers are the same everywhere. It does not decide
 * statuses or codes: callers do. */
#include <stdlib.h>
#include <string.h>

#include "transport/reply.h"

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
	struct MHD_Response *r =
	    MHD_create_response_from_buffer_with_free_callback(len, json, free);
	if (!r) {
		free(json);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (log)
		log->bytes = len;
	return reply_queue(c, log, status, r);
}

enum MHD_Result reply_json(struct MHD_Connection *c, struct reply_log *log,
			   unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return MHD_NO;
	return reply_json_take(c, log, status, text, strlen(text));
}

enum MHD_Result reply_error(struct MHD_Connection *c, struct reply_log *log,
			    unsigned status, const char *code,
			    const char *message)
{
	return reply_json(
	    c, log, status,
	    json_pack("{s:s, s:s}", "error", code, "message", message));
}

enum MHD_Result reply_busy(struct MHD_Connection *c, struct reply_log *log,
			   unsigned retry_after_s)
{
	char body[160], secs[16];
	int n = snprintf(body, sizeof(body),
			 "{\"error\":\"busy\",\"message\":\"the server is "
			 "busy; try again\",\"retry_after\":%u}",
			 retry_after_s);
	snprintf(secs, sizeof(secs), "%u", retry_after_s);
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    (size_t)n, body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type",
				"application/json; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "Retry-After", secs);
	if (log)
		log->bytes = (size_t)n;
	return reply_queue(c, log, 503, r);
}
