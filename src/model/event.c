/* event: the immutable, reference-counted envelope of one chat event, and its
 * SSE framing built lazily once and shared. The envelope bytes are copied in
 * at creation and never change; only the refcount and the cached framing
 * are written afterwards, both atomically, so an event may be read, ref'd
 * and unref'd from any thread without a lock.
 *
 * It does not know rooms, members, sockets or SQL, and it does not validate
 * the JSON it is given beyond asserting that it holds no raw line break
 * (which would break SSE framing). */

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/event.h"
#include "util/util.h"

/* A built transport framing: length-prefixed so it may hold any bytes. */
struct frame {
	size_t len;
	char data[];
};

struct event {
	atomic_size_t refs;
	int64_t id;
	enum event_type type;
	int64_t room;
	int64_t user;
	int64_t subject; /* 0: none (the sender is the subject) */
	bool revision;	 /* a new version of a stored event (same id) */
	/* mono_us when the link handed it to the bus after its commit; 0 for
	 * events read back from history (not timed) */
	_Atomic int64_t committed_us;
	int64_t sent_us; /* mono_us its command was submitted; 0: unknown */
	/* NULL until the first event_sse(); set once by compare-exchange. */
	_Atomic(struct frame *) sse;
	size_t len;
	char json[]; /* len bytes, then a NUL */
};

const char *event_type_name(enum event_type t)
{
	const struct evtype *row = evtype_get(t);
	return row ? row->name : "unknown";
}

int event_type_persistent(enum event_type t)
{
	const struct evtype *row = evtype_get(t);
	return row && row->persistent;
}

struct event *event_new(int64_t id, enum event_type type, int64_t room_id,
			int64_t user_id, const char *json, size_t len)
{
	/* SSE carries the envelope on one "data:" line; a raw CR or LF would
	 * split it. Compact jansson output escapes both. */
	assert(!memchr(json, '\n', len) && !memchr(json, '\r', len));

	struct event *ev = xmalloc(sizeof(*ev) + len + 1);
	atomic_init(&ev->refs, 1);
	ev->id = id;
	ev->type = type;
	ev->room = room_id;
	ev->user = user_id;
	ev->subject = 0;
	ev->revision = false;
	atomic_init(&ev->committed_us, 0);
	ev->sent_us = 0;
	atomic_init(&ev->sse, NULL);
	ev->len = len;
	memcpy(ev->json, json, len);
	ev->json[len] = '\0';
	return ev;
}

struct event *event_ref(struct event *ev)
{
	/* Taking a reference needs no ordering: the caller already holds one,
	 * so the object cannot go away under it. */
	atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
	return ev;
}

void event_unref(struct event *ev)
{
	if (!ev)
		return;
	/* Release so that every earlier use by this thread happens before the
	 * free, acquire so the freeing thread sees them all. (acq_rel on the
	 * decrement rather than a separate acquire fence: the same code on
	 * x86, and ThreadSanitizer understands it.) */
	size_t old =
	    atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel);
	assert(old > 0);
	if (old != 1)
		return;
	free(atomic_load_explicit(&ev->sse, memory_order_relaxed));
	free(ev);
}

int64_t event_id(const struct event *ev)
{
	return ev->id;
}

enum event_type event_type(const struct event *ev)
{
	return ev->type;
}

int64_t event_room(const struct event *ev)
{
	return ev->room;
}

int64_t event_user(const struct event *ev)
{
	return ev->user;
}

int64_t event_subject(const struct event *ev)
{
	return ev->subject ? ev->subject : ev->user;
}

void event_subject_set(struct event *ev, int64_t user_id)
{
	ev->subject = user_id;
}

void event_revision_set(struct event *ev)
{
	ev->revision = true;
}

bool event_is_revision(const struct event *ev)
{
	return ev->revision;
}

const char *event_json(const struct event *ev, size_t *len)
{
	if (len)
		*len = ev->len;
	return ev->json;
}

static struct frame *sse_build(const struct event *ev)
{
	const char *name = event_type_name(ev->type);
	char idline[40] = "";
	if (ev->id != 0)
		snprintf(idline, sizeof(idline), "id: %lld\n",
			 (long long)ev->id);
	size_t idlen = strlen(idline), namelen = strlen(name);
	size_t len = idlen + (sizeof("event: ") - 1) + namelen + 1 +
		     (sizeof("data: ") - 1) + ev->len + 2;

	struct frame *f = xmalloc(sizeof(*f) + len + 1);
	char *p = f->data;
	memcpy(p, idline, idlen);
	p += idlen;
	memcpy(p, "event: ", 7);
	p += 7;
	memcpy(p, name, namelen);
	p += namelen;
	*p++ = '\n';
	memcpy(p, "data: ", 6);
	p += 6;
	memcpy(p, ev->json, ev->len);
	p += ev->len;
	*p++ = '\n';
	*p++ = '\n';
	*p = '\0';
	assert((size_t)(p - f->data) == len);
	f->len = len;
	return f;
}

const char *event_sse(struct event *ev, size_t *len)
{
	struct frame *f = atomic_load_explicit(&ev->sse, memory_order_acquire);
	if (!f) {
		/* Racing builders each make a copy; the first to publish wins
		 * and the others free theirs, so every caller gets the same
		 * pointer and nobody blocks. */
		struct frame *mine = sse_build(ev);
		struct frame *expected = NULL;
		if (atomic_compare_exchange_strong_explicit(
			&ev->sse, &expected, mine, memory_order_acq_rel,
			memory_order_acquire)) {
			f = mine;
		} else {
			free(mine);
			f = expected;
		}
	}
	if (len)
		*len = f->len;
	return f->data;
}

/* The envelope members; extra may not override them. */
static const char *const envelope_keys[] = {"id", "type", "room", "from", "ts"};

static bool envelope_key(const char *key)
{
	for (size_t i = 0; i < ARRAY_LEN(envelope_keys); i++)
		if (!strcmp(key, envelope_keys[i]))
			return true;
	return false;
}

/* A JSON string, or null when s is NULL. NULL if s is not valid UTF-8. */
static json_t *string_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* A JSON string as jansson's json_dumps writes it without JSON_ENSURE_ASCII
 * or JSON_ESCAPE_SLASH: '"' and '\\' escaped, control characters as \b \f
 * \n \r \t or \u00XX, everything else (valid UTF-8) as is. */
static bool json_str(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	const char *run = s;

	if (!utf8_valid(s, n))
		return false;
	buf_reserve(b, n + 2);
	buf_append(b, "\"", 1);
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		buf_append(b, run, (size_t)(p - run));
		run = p + 1;
		char esc[7] = {'\\', 0};
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			break;
		}
		buf_append(b, esc, esc[1] == 'u' ? 6 : 2);
	}
	buf_append(b, run, (size_t)(s + n - run));
	buf_append(b, "\"", 1);
	return true;
}

/* The envelope of a searchable type: the common members, then text, html
 * (when not NULL) and client_id, without jansson. */
static char *envelope_text(int64_t id, enum event_type type, const char *room,
			   const char *from, int64_t ts_ms, const char *text,
			   const char *html, const char *client_id,
			   const char *const *mentions, size_t nmentions,
			   const char *reply, size_t *len)
{
	char ts[32];
	struct buf b;

	format_ts(ts_ms, ts);
	buf_init(&b);
	buf_reserve(&b, 96 + strlen(text) + (html ? 16 + strlen(html) : 0));
	buf_printf(&b, "{\"id\":%lld,\"type\":\"%s\",\"room\":", (long long)id,
		   event_type_name(type));
	if (!json_str(&b, room))
		goto fail;
	buf_puts(&b, ",\"from\":");
	if (!json_str(&b, from))
		goto fail;
	buf_printf(&b, ",\"ts\":\"%s\",\"text\":", ts);
	if (!json_str(&b, text))
		goto fail;
	if (html) {
		buf_puts(&b, ",\"html\":");
		if (!json_str(&b, html))
			goto fail;
	}
	if (client_id) {
		buf_puts(&b, ",\"client_id\":");
		if (!json_str(&b, client_id))
			goto fail;
	}
	if (nmentions) {
		buf_puts(&b, ",\"mentions\":[");
		for (size_t i = 0; i < nmentions; i++) {
			if (i)
				buf_puts(&b, ",");
			if (!json_str(&b, mentions[i]))
				goto fail;
		}
		buf_puts(&b, "]");
	}
	if (reply) {
		/* JSON object text the store built with jansson (compact:
		 * no raw line break) */
		buf_puts(&b, ",\"reply_to\":");
		buf_puts(&b, reply);
	}
	buf_puts(&b, "}");
	if (len)
		*len = b.len;
	return buf_steal(&b);
fail:
	buf_fini(&b);
	return NULL;
}

/* jansson (since 2.8) keeps object members in insertion order, so the
 * members come out in the order they are set here; the unit test pins the
 * exact bytes. Returns NULL (and builds nothing) if room, from or a string
 * in extra is not valid UTF-8; callers validate names beforehand, so that
 * does not happen in practice. */
char *event_envelope(int64_t id, enum event_type type, const char *room,
		     const char *from, int64_t ts_ms, json_t *extra,
		     size_t *len)
{
	char ts[32];
	char *out = NULL;
	json_t *obj = json_object();

	format_ts(ts_ms, ts);
	if (id != 0 && json_object_set_new(obj, "id", json_integer(id)))
		goto fail;
	if (json_object_set_new(obj, "type",
				json_string(event_type_name(type))) ||
	    json_object_set_new(obj, "room", string_or_null(room)) ||
	    json_object_set_new(obj, "from", string_or_null(from)) ||
	    json_object_set_new(obj, "ts", json_string(ts)))
		goto fail;
	if (extra) {
		assert(json_is_object(extra));
		const char *key;
		json_t *value;
		json_object_foreach(extra, key, value)
		{
			if (envelope_key(key))
				continue;
			if (json_object_set(obj, key, value))
				goto fail;
		}
	}
	out = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!out)
		goto fail;
	size_t n = strlen(out);
	assert(!memchr(out, '\n', n) && !memchr(out, '\r', n));
	if (len)
		*len = n;
fail:
	json_decref(obj);
	return out;
}

char *event_envelope_message(int64_t id, const char *room, const char *from,
			     int64_t ts_ms, const char *text,
			     const char *client_id, size_t *len)
{
	return envelope_text(id, EVENT_MESSAGE, room, from, ts_ms, text, NULL,
			     client_id, NULL, 0, NULL, len);
}

char *event_envelope_input(int64_t id, enum event_type type, const char *room,
			   const char *from, int64_t ts_ms,
			   const struct evtype_input *in, size_t *len)
{
	const struct evtype *row = evtype_get(type);
	if (!row)
		return NULL;
	if (row->searchable) {
		char *out =
		    in && in->text
			? envelope_text(id, type, room, from, ts_ms, in->text,
					in->html, in->client_id, in->mentions,
					in->nmentions, in->reply, len)
			: NULL;
		/* The extra's members (a message's files) go after the
		 * text's, spliced into the text's fast path only when some
		 * are there. */
		json_t *extra = out && row->extra && in->args &&
					json_object_get(in->args, "files")
				    ? row->extra(in)
				    : NULL;
		if (extra && json_object_size(extra)) {
			char *more = json_dumps(extra, JSON_COMPACT |
							   JSON_PRESERVE_ORDER);
			size_t n = strlen(out), m = more ? strlen(more) : 0;
			if (m > 2 && n > 2 && out[n - 1] == '}') {
				out = xrealloc(out, n + m);
				out[n - 1] = ',';
				memcpy(out + n, more + 1, m - 1);
				out[n + m - 1] = '\0';
				if (len)
					*len = n + m - 1;
			}
			free(more);
		}
		json_decref(extra);
		return out;
	}
	json_t *extra = row->extra && in ? row->extra(in) : NULL;
	if (row->extra && in && !extra)
		return NULL;
	char *out = event_envelope(id, type, room, from, ts_ms, extra, len);
	json_decref(extra);
	return out;
}

void event_committed_mark(struct event *ev)
{
	atomic_store_explicit(&ev->committed_us, mono_us(),
			      memory_order_relaxed);
}

void event_sent_mark(struct event *ev, int64_t us)
{
	ev->sent_us = us;
}

void event_delivery_observe(const struct event *ev, struct histo *h,
			    struct histo *sent)
{
	int64_t t = atomic_load_explicit(&((struct event *)ev)->committed_us,
					 memory_order_relaxed);
	if (t <= 0)
		return;
	int64_t now = mono_us();
	histo_observe_us(h, now - t);
	if (sent && ev->sent_us > 0)
		histo_observe_us(sent, now - ev->sent_us);
}
