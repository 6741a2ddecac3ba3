/* files: the web client, served from the web root: the file's media type,
 * the security headers every page carries (a CSP that allows only our own
 * scripts, styles and connections, no plugins, no framing, no <base>), and
 * confinement to the web root (no dot segments, no empty segments, regular
 * files only). It does not route, cache or compress. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/files.h"

static const char CSP[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'";

static const char *mime_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".mjs", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".json", "application/json"},
	    {".webmanifest", "application/manifest+json"},
	    {".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(path, '.');
	if (dot)
		for (size_t i = 0; i < ARRAY_LEN(types); i++)
			if (!strcmp(dot, types[i].ext))
				return types[i].type;
	return "application/octet-stream";
}

enum MHD_Result files_serve(struct request *req, const char *web_root,
			    const char *rel)
{
	/* rel has no "..", no leading dot segments and no empty segments. */
	for (const char *p = rel; *p; p++)
		if ((p == rel || p[-1] == '/') && (*p == '.' || *p == '/'))
			return reply_error(req->conn, &req->log, 404,
					   "not_found", "no such file");
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", web_root, rel) >=
	    (int)sizeof(path))
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "no such file");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return reply_error(req->conn, &req->log, 404, "not_found",
				   "no such file");
	}
	struct MHD_Response *r =
	    MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", mime_type(path));
	MHD_add_response_header(r, "Content-Security-Policy", CSP);
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	req->log.bytes = (uint64_t)st.st_size;
	return reply_queue(req->conn, &req->log, 200, r);
}
