/* api_upload: tus 1.0 resumable uploads under /api/uploads (core,
 * creation, termination, expiration; OPTIONS discovery), and the one-shot
 * form upload POST /api/rooms/{room}/files for curl (-F file=@x), which
 * sends a message carrying the file. Bodies stream to core/filestore as
 * libmicrohttpd hands them over (the route's ROUTE_STREAM: the handler
 * runs once before the body, with req->step 0, sets the request's sink,
 * and once after it, step 1); nothing of a file is held in memory. The
 * headers are parsed by tus.c; the rules (limits, quota, offsets) are
 * filestore's. Same origin only: no CORS headers. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/filestore.h"
#include "http/api.h"
#include "http/tus.h"
#include "util/util.h"

#define NAME_MAX_BYTES 255  /* a file's name, from metadata or a form */
#define FORM_TEXT_MAX 16384 /* the form's "text" field */
#define FORM_OVERHEAD 16384 /* multipart framing beside the file */

/* "Wed, 25 Jun 2014 16:00:00 GMT" (RFC 7231) for ms since the epoch. */
static void http_date(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static enum MHD_Result tus_fail(struct request *req, unsigned status,
				const char *code, const char *message)
{
	const struct reply_header h[] = {{"Tus-Resumable", TUS_VERSION},
					 {"Cache-Control", "no-store"}};
	return reply_error_headers(req->conn, &req->log, status, code, message,
				   h, ARRAY_LEN(h));
}

/* filestore's answer as an HTTP error. */
static enum MHD_Result filestore_fail(struct request *req, int rc)
{
	switch (rc) {
	case FILESTORE_ENOTFOUND:
		return tus_fail(req, 404, "no_such_upload",
				"no upload with that id is yours");
	case FILESTORE_ETOOBIG:
		return tus_fail(req, 413, "file_too_large",
				"the file is over the server's size limit");
	case FILESTORE_EQUOTA:
		return tus_fail(req, 507, "quota_exceeded",
				"your files would pass your storage quota; "
				"delete some first");
	case FILESTORE_ECONFLICT:
		return tus_fail(req, 409, "offset_mismatch",
				"Upload-Offset is not the upload's offset; "
				"ask with HEAD and resume from there");
	case FILESTORE_EBUSY:
		return tus_fail(req, 423, "upload_busy",
				"another request is writing this upload");
	case FILESTORE_EDONE:
		return tus_fail(req, 409, "upload_complete",
				"that upload is complete");
	default:
		return tus_fail(req, 500, "internal",
				"the file could not be stored");
	}
}

/* The tus version header every tus request but OPTIONS carries. */
static bool tus_version_ok(struct request *req, enum MHD_Result *ret)
{
	const char *v = request_header(req, "Tus-Resumable");
	if (v && strcmp(v, TUS_VERSION) == 0)
		return true;
	const struct reply_header h[] = {{"Tus-Version", TUS_VERSION},
					 {"Tus-Resumable", TUS_VERSION}};
	*ret = reply_error_headers(req->conn, &req->log, 412, "tus_version",
				   "Tus-Resumable: 1.0.0 is required", h,
				   ARRAY_LEN(h));
	return false;
}

/* --- discovery ---------------------------------------------------------- */

enum MHD_Result api_upload_options(struct request *req)
{
	char max[24];
	snprintf(max, sizeof(max), "%zu", filestore_max_size(req->srv->files));
	const struct reply_header h[] = {{"Tus-Resumable", TUS_VERSION},
					 {"Tus-Version", TUS_VERSION},
					 {"Tus-Extension", TUS_EXTENSIONS},
					 {"Tus-Max-Size", max}};
	return reply_empty(req->conn, &req->log, 204, h, ARRAY_LEN(h));
}

enum MHD_Result api_upload_options_id(struct request *req, const char *id)
{
	(void)id;
	return api_upload_options(req);
}

/* --- creation ----------------------------------------------------------- */

enum MHD_Result api_upload_create(struct request *req)
{
	enum MHD_Result ret;
	int64_t length;
	char name[NAME_MAX_BYTES + 1] = "";

	if (!tus_version_ok(req, &ret))
		return ret;
	if (request_header(req, "Upload-Defer-Length"))
		return tus_fail(req, 400, "defer_length",
				"Upload-Defer-Length is not supported; send "
				"Upload-Length");
	if (tus_number_parse(request_header(req, "Upload-Length"), &length) < 0)
		return tus_fail(req, 400, "upload_length",
				"Upload-Length must be a decimal size");
	if (req->body.len)
		return tus_fail(req, 400, "creation_with_upload",
				"creation with upload is not supported: "
				"PATCH the bytes to the Location");
	const char *meta = request_header(req, "Upload-Metadata");
	if (meta) {
		if (!tus_metadata_valid(meta))
			return tus_fail(req, 400, "upload_metadata",
					"Upload-Metadata must be key "
					"base64value pairs");
		if (tus_metadata_get(meta, "filename", name, sizeof(name)) <
			0 &&
		    tus_metadata_get(meta, "name", name, sizeof(name)) < 0)
			name[0] = '\0';
		if (!utf8_valid(name, strlen(name)))
			name[0] = '\0';
	}
	char id[33];
	int64_t expires;
	int rc = filestore_create(req->srv->files, req->user_id, length, name,
				  meta, id, &expires);
	if (rc != FILESTORE_OK)
		return filestore_fail(req, rc);
	char location[64], date[40];
	snprintf(location, sizeof(location), "/api/uploads/%s", id);
	http_date(expires, date);
	const struct reply_header h[] = {{"Location", location},
					 {"Tus-Resumable", TUS_VERSION},
					 {"Upload-Expires", date},
					 {"Upload-Offset", "0"}};
	json_t *body = json_pack("{s:s, s:s, s:I, s:I}", "id", id, "url",
				 location, "length", (json_int_t)length,
				 "expires_ms", (json_int_t)expires);
	return reply_json_headers(req->conn, &req->log, 201, body, h,
				  ARRAY_LEN(h));
}

/* --- HEAD/GET, termination ------------------------------------------------ */

enum MHD_Result api_upload_get(struct request *req, const char *id)
{
	struct store_file f;
	int rc = filestore_get(req->srv->files, id, req->user_id, &f);
	if (rc != FILESTORE_OK)
		return filestore_fail(req, rc);
	char off[24], len[24], date[40];
	snprintf(off, sizeof(off), "%lld", (long long)f.offset);
	snprintf(len, sizeof(len), "%lld", (long long)f.length);
	http_date(f.expires_ms, date);
	struct reply_header h[6] = {{"Tus-Resumable", TUS_VERSION},
				    {"Upload-Offset", off},
				    {"Upload-Length", len}};
	size_t n = 3;
	if (!f.sha256)
		h[n++] = (struct reply_header){"Upload-Expires", date};
	if (f.metadata[0])
		h[n++] = (struct reply_header){"Upload-Metadata", f.metadata};
	enum MHD_Result ret;
	if (strcmp(req->method, "HEAD") == 0) {
		h[n++] = (struct reply_header){"Cache-Control", "no-store"};
		ret = reply_empty(req->conn, &req->log, 200, h, n);
	} else {
		json_t *body = json_pack("{s:s, s:I, s:I, s:b}", "id", f.id,
					 "offset", (json_int_t)f.offset,
					 "length", (json_int_t)f.length,
					 "complete", f.sha256 != NULL);
		if (f.sha256)
			json_object_set_new(body, "file", store_file_json(&f));
		ret = reply_json_headers(req->conn, &req->log, 200, body, h, n);
	}
	store_file_fini(&f);
	return ret;
}

enum MHD_Result api_upload_delete(struct request *req, const char *id)
{
	enum MHD_Result ret;
	if (!tus_version_ok(req, &ret))
		return ret;
	int rc = filestore_delete(req->srv->files, id, req->user_id);
	if (rc != FILESTORE_OK)
		return filestore_fail(req, rc);
	const struct reply_header h[] = {{"Tus-Resumable", TUS_VERSION}};
	return reply_empty(req->conn, &req->log, 204, h, ARRAY_LEN(h));
}

/* --- PATCH: the bytes ------------------------------------------------------
 */

static int patch_sink(struct request *req, const char *data, size_t n)
{
	return filestore_write(req->sink_state, data, n);
}

static void patch_sink_free(struct request *req)
{
	if (req->sink_state) /* cut mid-body: keep what arrived */
		filestore_write_end(req->sink_state, NULL);
	req->sink_state = NULL;
}

enum MHD_Result api_upload_patch(struct request *req, const char *id)
{
	enum MHD_Result ret;
	int64_t offset, clen = -1;

	if (req->step == 0) {
		if (!tus_version_ok(req, &ret))
			return ret;
		const char *ct = request_header(req, "Content-Type");
		if (!ct || strcasecmp(ct, "application/offset+octet-stream"))
			return tus_fail(req, 415, "content_type",
					"Content-Type must be "
					"application/offset+octet-stream");
		if (tus_number_parse(request_header(req, "Upload-Offset"),
				     &offset) < 0)
			return tus_fail(req, 400, "upload_offset",
					"Upload-Offset must be a decimal "
					"offset");
		const char *cl = request_header(req, "Content-Length");
		if (cl && tus_number_parse(cl, &clen) < 0)
			return tus_fail(req, 400, "content_length",
					"bad Content-Length");
		struct filestore_write *w;
		int rc = filestore_write_begin(req->srv->files, id,
					       req->user_id, offset, &w);
		if (rc != FILESTORE_OK)
			return filestore_fail(req, rc);
		req->sink_state = w;
		req->sink = patch_sink;
		req->sink_free = patch_sink_free;
		req->step = 1;
		/* more than the upload's length: refused before reading */
		struct store_file f;
		if (clen > 0 &&
		    filestore_get(req->srv->files, id, req->user_id, &f) == 0) {
			bool over = offset + clen > f.length;
			store_file_fini(&f);
			if (over) {
				req->sink = NULL;
				return tus_fail(req, 413, "past_length",
						"the body goes past the "
						"upload's Upload-Length");
			}
		}
		return MHD_YES;
	}
	struct filestore_write *w = req->sink_state;
	req->sink_state = NULL;
	int err = req->sink_err;
	int rc = filestore_write_end(w, &offset);
	if (err == FILESTORE_ETOOBIG)
		return tus_fail(req, 413, "past_length",
				"the body goes past the upload's "
				"Upload-Length");
	if (err || rc != FILESTORE_OK)
		return filestore_fail(req, err ? err : rc);
	struct store_file f;
	char off[24], date[40] = "";
	snprintf(off, sizeof(off), "%lld", (long long)offset);
	if (filestore_get(req->srv->files, id, req->user_id, &f) == 0) {
		http_date(f.expires_ms, date);
		store_file_fini(&f);
	}
	const struct reply_header h[] = {{"Tus-Resumable", TUS_VERSION},
					 {"Upload-Offset", off},
					 {"Upload-Expires", date}};
	return reply_empty(req->conn, &req->log, 204, h, ARRAY_LEN(h));
}

/* --- the one-shot form upload ------------------------------------------- */

struct form {
	struct MHD_PostProcessor *pp;
	struct filestore_write *w;
	char id[33];
	char name[NAME_MAX_BYTES + 1];
	int nfiles; /* "file" fields met */
	uint64_t written;
	int err; /* a filestore error, or -100 for a malformed form */
	struct buf text;
	json_t *file; /* the file object, once stored */
};

#define FORM_BAD (-100)

static enum MHD_Result form_field(void *cls, enum MHD_ValueKind kind,
				  const char *key, const char *filename,
				  const char *content_type,
				  const char *transfer_encoding,
				  const char *data, uint64_t off, size_t size)
{
	struct request *req = cls;
	struct form *f = req->sink_state;
	(void)kind;
	(void)content_type;
	(void)transfer_encoding;
	if (strcmp(key, "text") == 0) {
		if (f->text.len + size > FORM_TEXT_MAX) {
			f->err = FORM_BAD;
			return MHD_NO;
		}
		buf_append(&f->text, data, size);
		return MHD_YES;
	}
	if (strcmp(key, "file") != 0)
		return MHD_YES; /* other fields are ignored */
	if (off == 0 && f->nfiles && f->written) { /* one file a request */
		f->err = FORM_BAD;
		return MHD_NO;
	}
	if (off == 0 && !f->nfiles++) {
		snprintf(f->name, sizeof(f->name), "%s",
			 filename ? filename : "");
		if (!utf8_valid(f->name, strlen(f->name)))
			f->name[0] = '\0';
	}
	f->written += size;
	int rc = size ? filestore_write(f->w, data, size) : FILESTORE_OK;
	if (rc != FILESTORE_OK) {
		f->err = rc;
		return MHD_NO;
	}
	return MHD_YES;
}

static int form_sink(struct request *req, const char *data, size_t n)
{
	struct form *f = req->sink_state;
	if (MHD_post_process(f->pp, data, n) != MHD_YES)
		return f->err ? f->err : FORM_BAD;
	return 0;
}

static void form_free(struct request *req)
{
	struct form *f = req->sink_state;
	if (!f)
		return;
	if (f->pp)
		MHD_destroy_post_processor(f->pp);
	if (f->w) { /* never finished: the upload goes */
		filestore_write_end(f->w, NULL);
		filestore_delete(req->srv->files, f->id, req->user_id);
	}
	buf_fini(&f->text);
	json_decref(f->file);
	free(f);
	req->sink_state = NULL;
}

/* A form upload whose file becomes a message in room, or (room NULL) the
 * requester's avatar. */
static enum MHD_Result form_upload(struct request *req, const char *room)
{
	enum MHD_Result ret = MHD_YES;
	struct form *f = req->sink_state;

	if (req->phase == REQ_READY && room) {
		if (req->result.err != CHAT_OK)
			return api_answer_event(req, 201, NULL, NULL);
		json_t *ev = api_event_json(req->result.ev);
		json_t *body = json_pack("{s:O, s:o}", "file", f->file, "event",
					 ev ? ev : json_null());
		return reply_json(req->conn, &req->log, 201, body);
	}
	if (req->step == 0) {
		int64_t room_id, bound;
		char name[33];
		if (room &&
		    api_member_room(req, room, &room_id, name, &ret) < 0)
			return ret;
		const char *ct = request_header(req, "Content-Type");
		if (!ct || strncasecmp(ct, "multipart/form-data", 19))
			return api_fail(req, 415, "content_type",
					"send multipart/form-data with a "
					"field named file (curl -F "
					"file=@photo.jpg)");
		if (tus_number_parse(request_header(req, "Content-Length"),
				     &bound) < 0)
			return api_fail(req, 411, "length_required",
					"send a Content-Length");
		size_t max = room ? filestore_max_size(req->srv->files)
				  : filestore_avatar_max_size(req->srv->files);
		if ((uint64_t)bound > max + FORM_OVERHEAD)
			return room ? api_fail(req, 413, "file_too_large",
					       "the file is over the server's "
					       "size limit")
				    : api_fail(req, 413, "avatar_too_large",
					       "the image is larger than "
					       "avatar-max-size");
		f = xcalloc(1, sizeof(*f));
		buf_init(&f->text);
		req->sink_state = f;
		req->sink_free = form_free;
		/* Content-Length bounds the file: the limit and the quota are
		 * checked on it before a byte is read. */
		int64_t expires;
		int rc = filestore_create(req->srv->files, req->user_id,
					  (uint64_t)bound > max ? (int64_t)max
								: bound,
					  NULL, NULL, f->id, &expires);
		if (rc == FILESTORE_OK)
			rc = filestore_write_begin(req->srv->files, f->id,
						   req->user_id, 0, &f->w);
		if (rc != FILESTORE_OK) {
			if (f->id[0])
				filestore_delete(req->srv->files, f->id,
						 req->user_id);
			f->id[0] = '\0';
			return filestore_fail(req, rc);
		}
		f->pp = MHD_create_post_processor(req->conn, 65536, form_field,
						  req);
		if (!f->pp)
			return api_fail(req, 400, "bad_form",
					"a multipart/form-data body with a "
					"boundary is required");
		req->sink = form_sink;
		req->step = 1;
		return MHD_YES;
	}
	if (req->step == 1) {
		req->step = 2;
		int err = req->sink_err;
		if (err == 0 && f->err)
			err = f->err;
		struct filestore_write *w = f->w;
		f->w = NULL;
		if (err == 0 && f->nfiles == 0) {
			filestore_write_end(w, NULL);
			filestore_delete(req->srv->files, f->id, req->user_id);
			return api_fail(req, 422, "no_file",
					"the form has no field named file");
		}
		if (err == 0) {
			filestore_write_complete(w, f->name);
			err = filestore_write_end(w, NULL);
		} else {
			filestore_write_end(w, NULL);
		}
		if (err) {
			filestore_delete(req->srv->files, f->id, req->user_id);
			if (err == FORM_BAD)
				return api_fail(req, 400, "bad_form",
						"the form could not be read "
						"(one file field; text up to "
						"16 KiB)");
			if (!room && err == FILESTORE_ETOOBIG)
				return api_fail(req, 413, "avatar_too_large",
						"the image is larger than "
						"avatar-max-size");
			return filestore_fail(req, err);
		}
		if (!room) {
			bool applied = false;
			ret = api_avatar_apply(req, f->id, &applied);
			if (!applied)
				filestore_delete(req->srv->files, f->id,
						 req->user_id);
			return ret;
		}
		struct store_file sf;
		if (filestore_get(req->srv->files, f->id, req->user_id, &sf))
			return filestore_fail(req, FILESTORE_EINTERNAL);
		f->file = store_file_json(&sf);
		store_file_fini(&sf);
		buf_append(&f->text, "", 1);
		json_t *args = json_pack(
		    "{s:s, s:[s]}", "text",
		    utf8_valid(f->text.data, f->text.len - 1) ? f->text.data
							      : "",
		    "files", f->id);
		api_command(req, "send", args, room, &ret);
		json_decref(args);
		return ret;
	}
	return api_fail(req, 500, "internal", "unexpected state");
}

enum MHD_Result api_room_file(struct request *req, const char *room)
{
	return form_upload(req, room);
}

enum MHD_Result api_me_avatar_form(struct request *req)
{
	return form_upload(req, NULL);
}
