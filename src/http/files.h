/* files: static files of the web client, from the web root. */
#ifndef NATTER_FILES_H
#define NATTER_FILES_H

#include "http/request.h"

/* Answer the file rel (relative to web_root, which is resolved and has no
 * trailing slash) with its media type and the pages' security headers, or
 * 404 not_found when rel has a dot or empty segment or names no regular
 * file. */
enum MHD_Result files_serve(struct request *req, const char *web_root,
			    const char *rel);

#endif
