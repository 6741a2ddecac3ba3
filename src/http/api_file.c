/* api_file: downloads, GET /files/{id}/{name} (the name is for people and
 * saved files; the id decides). Only the file's owner and members of a
 * room where a message carries it get it; anyone else gets the same 404
 * as for no file at all. Served from the file descriptor (libmicrohttpd
 * sends it; nothing is read into memory), with a single Range (206, 416),
 * an ETag (the content's SHA-256) and If-None-Match (304).
 *
 * Safe serving: every file answer has X-Content-Type-Options: nosniff and
 * a Content-Security-Policy with sandbox and no script; only PNG, JPEG,
 * GIF and WebP (as libmagic typed them from the bytes, whatever the name
 * says) are shown inline, everything else is an attachment, and types a
 * browser would run (HTML, SVG, XML, script) are sent as
 * application/octet-stream. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/filestore.h"
#include "http/api.h"
#include "util/util.h"

#define FILE_CSP                                                               \
	"sandbox; default-src 'none'; img-src 'self' data:; "                  \
	"media-src 'self'; style-src 'unsafe-inline'"

static const char *const inline_types[] = {"image/png", "image/jpeg",
					   "image/gif", "image/webp"};

static bool type_inline(const char *t)
{
	for (size_t i = 0; i < ARRAY_LEN(inline_types); i++)
		if (strcmp(t, inline_types[i]) == 0)
			return true;
	return false;
}

/* Types a browser would render as a document or run. */
static bool type_active(const char *t)
{
	return strstr(t, "html") || strstr(t, "xml") || strstr(t, "svg") ||
	       strstr(t, "script") || strncmp(t, "text/", 5) == 0 ||
	       strstr(t, "pdf") || strstr(t, "x-shockwave");
}

/* (X-Content-Type-Options: nosniff is on every answer: reply.c.) */

/* Content-Disposition with the name as RFC 8187 UTF-8 (and a plain ASCII
 * fallback). */
static void disposition(struct buf *b, bool inl, const char *name)
{
	buf_puts(b, inl ? "inline" : "attachment");
	if (!name || !*name)
		return;
	buf_puts(b, "; filename=\"");
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		buf_printf(
		    b, "%c",
		    c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? c : '_');
	}
	buf_puts(b, "\"; filename*=UTF-8''");
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("!#$&+-.^_`|~", c))
			buf_printf(b, "%c", c);
		else
			buf_printf(b, "%%%02X", c);
	}
}

/* One "bytes=" range of a size-byte file: 1 with [*start, *end], 0 for
 * none (or one this server does not honour: several ranges), -1 when it
 * cannot be satisfied. */
static int range_parse(const char *h, int64_t size, int64_t *start,
		       int64_t *end)
{
	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	const char *p = h + 6;
	char *e;
	if (*p == '-') { /* the last N bytes */
		long long n = strtoll(p + 1, &e, 10);
		if (e == p + 1 || *e || n <= 0)
			return n == 0 && e != p + 1 && !*e ? -1 : 0;
		if (size == 0)
			return -1;
		*start = n >= size ? 0 : size - n;
		*end = size - 1;
		return 1;
	}
	if (*p < '0' || *p > '9')
		return 0;
	long long a = strtoll(p, &e, 10);
	if (*e != '-')
		return 0;
	p = e + 1;
	long long z = size - 1;
	if (*p) {
		if (*p < '0' || *p > '9')
			return 0;
		z = strtoll(p, &e, 10);
		if (*e || z < a)
			return 0;
	}
	if (a >= size)
		return -1;
	*start = a;
	*end = z >= size ? size - 1 : z;
	return 1;
}

enum MHD_Result api_file_get(struct request *req, const char *id)
{
	struct store_file f;
	int fd;
	if (filestore_open(req->srv->files, id, req->user_id, &f, &fd) !=
	    FILESTORE_OK)
		return api_fail(req, 404, "not_found", "no such file");

	char etag[72];
	snprintf(etag, sizeof(etag), "\"%s\"", f.sha256);
	bool inl = type_inline(f.type);
	const char *ctype = inl			  ? f.type
			    : type_active(f.type) ? "application/octet-stream"
						  : f.type;
	struct buf disp;
	buf_init(&disp);
	disposition(&disp, inl, f.name);
	char crange[80] = "";
	const struct reply_header common[] = {
	    {"ETag", etag},
	    {"Cache-Control", "private, max-age=300"},
	    {"Content-Security-Policy", FILE_CSP},
	    {"Cross-Origin-Resource-Policy", "same-origin"},
	    {"Accept-Ranges", "bytes"},
	    {"Content-Disposition", disp.data},
	};
	struct MHD_Response *r = NULL;
	unsigned status = 200;
	enum MHD_Result ret;

	const char *inm = request_header(req, "If-None-Match");
	const char *if_range = request_header(req, "If-Range");
	int64_t start = 0, end = f.length - 1;
	int rr = 0;
	if (inm && (strstr(inm, etag) || strcmp(inm, "*") == 0)) {
		status = 304;
	} else if (!if_range || strcmp(if_range, etag) == 0) {
		rr = range_parse(request_header(req, "Range"), f.length, &start,
				 &end);
	}
	if (status == 304) {
		close(fd);
		r = MHD_create_response_from_buffer(0, NULL,
						    MHD_RESPMEM_PERSISTENT);
	} else if (rr < 0) {
		close(fd);
		snprintf(crange, sizeof(crange), "bytes */%lld",
			 (long long)f.length);
		status = 416;
		r = MHD_create_response_from_buffer(0, NULL,
						    MHD_RESPMEM_PERSISTENT);
	} else {
		if (rr > 0) {
			status = 206;
			snprintf(crange, sizeof(crange), "bytes %lld-%lld/%lld",
				 (long long)start, (long long)end,
				 (long long)f.length);
		}
		uint64_t n = f.length ? (uint64_t)(end - start + 1) : 0;
		/* MHD takes the descriptor (closes it when done) */
		r = MHD_create_response_from_fd_at_offset64(n, fd,
							    (uint64_t)start);
		if (!r)
			close(fd);
	}
	if (!r) {
		ret = MHD_NO;
		goto out;
	}
	for (size_t i = 0; i < ARRAY_LEN(common); i++)
		MHD_add_response_header(r, common[i].name, common[i].value);
	if (status != 304)
		MHD_add_response_header(r, "Content-Type", ctype);
	if (crange[0])
		MHD_add_response_header(r, "Content-Range", crange);
	ret = reply_queue(req->conn, &req->log, status, r);
	if (status == 200 || status == 206)
		req->log.bytes =
		    (uint64_t)(status == 206 ? end - start + 1 : f.length);
out:
	buf_fini(&disp);
	store_file_fini(&f);
	return ret;
}
