/* event: one chat event as the immutable, reference-counted JSON envelope
 * that every transport sends. The envelope is built once; each transport
 * framing of it (an SSE block) is built at most once and shared by every
 * subscriber. Events are safe to share between threads; the refcount is
 * atomic. It knows nothing of rooms, sockets or SQL. */
#ifndef NATTER_EVENT_H
#define NATTER_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "model/evtype.h" /* enum event_type and the table of types */
#include "util/histo.h"

struct event;

/* A new event with refcount 1; json (len bytes, no trailing newline) is
 * copied. id is 0 for ephemeral events. */
struct event *event_new(int64_t id, enum event_type type, int64_t room_id,
			int64_t user_id, const char *json, size_t len);
struct event *event_ref(struct event *ev);
/* Delivery timing (the natter_delivery_seconds and
 * natter_send_to_delivery_seconds histograms): the store marks a new
 * event with the time its command was submitted (mono_us), the link marks
 * it when it hands it to the bus after its commit (both before any other
 * thread sees it); a transport observes, once the event's bytes are
 * written, the time since the commit into h and since the submit into
 * sent (may be NULL). Unmarked events (read back from history) are not
 * observed. */
void event_sent_mark(struct event *ev, int64_t us);
void event_committed_mark(struct event *ev);
void event_delivery_observe(const struct event *ev, struct histo *h,
			    struct histo *sent);
void event_unref(struct event *ev); /* NULL is fine */

int64_t event_id(const struct event *ev);
enum event_type event_type(const struct event *ev);
int64_t event_room(const struct event *ev);
int64_t event_user(const struct event *ev);
/* The user whose membership the event changes (evtype_membership): the
 * subject an event acts on (a removed or banned user) when it has one,
 * else its sender. */
int64_t event_subject(const struct event *ev);
/* Record the user an event acts on; only while the caller holds the sole
 * reference (before the event is shared). */
void event_subject_set(struct event *ev, int64_t user_id);
/* Mark an event as a revision: the new envelope of an event already
 * stored under the same id (a deleted message's tombstone, an edit or a
 * reply scrubbed by that delete), which replaces the old one where it is
 * kept (the bus's ring) and is never delivered as news. Only while the
 * caller holds the sole reference. */
void event_revision_set(struct event *ev);
bool event_is_revision(const struct event *ev);
/* The envelope; valid while the caller holds a reference. */
const char *event_json(const struct event *ev, size_t *len);
/* "id: N\nevent: TYPE\ndata: JSON\n\n" (no id line when ephemeral), built on
 * first use and cached; valid while the caller holds a reference. */
const char *event_sse(struct event *ev, size_t *len);

/* The type's name and persistence, read from the event-type table. */
const char *event_type_name(enum event_type t); /* "message", "join", ... */
int event_type_persistent(enum event_type t);

/* Build the envelope text
 *   {"id":ID,"type":T,"room":R,"from":F,"ts":"...", <extra's members>}
 * (no "id" member when id is 0). extra may be NULL; it is borrowed.
 * Returns a malloc'd string (caller frees) and its length in *len. */
char *event_envelope(int64_t id, enum event_type type, const char *room,
		     const char *from, int64_t ts_ms, json_t *extra,
		     size_t *len);
/* The same bytes as event_envelope(id, EVENT_MESSAGE, ...) with extra
 * {"text":text[,"client_id":client_id]}, written directly: the store's
 * writer builds one per message, and jansson's objects cost it ~16% of its
 * time (perf). client_id may be NULL. NULL if a string is not UTF-8. */
char *event_envelope_message(int64_t id, const char *room, const char *from,
			     int64_t ts_ms, const char *text,
			     const char *client_id, size_t *len);
/* The envelope of a new event of type from a client's input, as the table
 * says: a searchable type carries in->text (NUL-terminated here), in->html
 * (when not NULL), in->client_id, its mentions and in->reply (as
 * "reply_to"), written directly as event_envelope_message
 * does; any other type the members of its row's extra. NULL on failure. */
char *event_envelope_input(int64_t id, enum event_type type, const char *room,
			   const char *from, int64_t ts_ms,
			   const struct evtype_input *in, size_t *len);

#endif
