/* evtype: the table of event types and the handlers its rows point to (the
 * validators and envelope extras). One row per type, indexed by the enum;
 * the table is constant, so it is read from any thread without a lock.
 *
 * It does not resolve rooms or check membership (chat does, reading the
 * sender column), and does not store or deliver anything. */
#include <stdint.h>
#include <string.h>

#include "model/evtype.h"
#include "util/util.h"

/* Printable ASCII without spaces, 1..EVTYPE_CLIENT_ID_MAX bytes. */
static bool client_id_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EVTYPE_CLIENT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* Message text: valid UTF-8, no NUL or C0 controls other than tab, CR and
 * LF, not blank. Length is checked separately. */
static bool text_valid(const char *text, size_t len)
{
	if (!utf8_valid(text, len))
		return false;
	bool blank = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')
			return false;
		if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
			blank = false;
	}
	return !blank;
}

static enum evtype_verdict message_validate(const struct evtype_input *in)
{
	if (!in->text || in->len == 0 || !text_valid(in->text, in->len))
		return EVTYPE_INVALID;
	if (utf8_count(in->text, in->len) > EVTYPE_TEXT_MAX)
		return EVTYPE_TOOLONG;
	if (in->client_id && !client_id_valid(in->client_id))
		return EVTYPE_INVALID;
	return EVTYPE_VALID;
}

static enum evtype_verdict room_validate(const struct evtype_input *in)
{
	if (!in->room || !name_valid(in->room))
		return EVTYPE_INVALID;
	if (in->topic) {
		size_t n = strlen(in->topic);
		if (!utf8_valid(in->topic, n) ||
		    utf8_count(in->topic, n) > EVTYPE_TOPIC_MAX)
			return EVTYPE_INVALID;
	}
	return EVTYPE_VALID;
}

static json_t *room_extra(const struct evtype_input *in)
{
	json_t *extra = json_object();
	if (json_object_set_new(extra, "topic",
				json_string(in->topic ? in->topic : ""))) {
		json_decref(extra);
		return NULL;
	}
	return extra;
}

/* An edit: the message it changes and its new text (checked as a
 * message's). */
static enum evtype_verdict edit_validate(const struct evtype_input *in)
{
	if (in->target_id <= 0)
		return EVTYPE_INVALID;
	struct evtype_input text = {.text = in->text, .len = in->len};
	return message_validate(&text);
}

static enum evtype_verdict delete_validate(const struct evtype_input *in)
{
	return in->target_id > 0 ? EVTYPE_VALID : EVTYPE_INVALID;
}

/* {"target_id":N[,"text":T,"html":H]}: NULL on failure. */
static json_t *target_extra(const struct evtype_input *in, bool text)
{
	json_t *extra = json_object();
	if (json_object_set_new(extra, "target_id",
				json_integer(in->target_id)))
		goto fail;
	if (text && (!in->text ||
		     json_object_set_new(extra, "text", json_string(in->text))))
		goto fail;
	if (text && in->html &&
	    json_object_set_new(extra, "html", json_string(in->html)))
		goto fail;
	return extra;
fail:
	json_decref(extra);
	return NULL;
}

static json_t *edit_extra(const struct evtype_input *in)
{
	return target_extra(in, true);
}

static json_t *delete_extra(const struct evtype_input *in)
{
	return target_extra(in, false);
}

static const struct evtype table[] = {
    [EVENT_MESSAGE] = {EVENT_MESSAGE, "message", true, EVTYPE_FROM_MEMBER,
		       message_validate, EVTYPE_EFFECT_NONE, true, NULL, true},
    [EVENT_JOIN] = {EVENT_JOIN, "join", true, EVTYPE_FROM_USER, NULL,
		    EVTYPE_EFFECT_MEMBER_ADD, false, NULL},
    [EVENT_LEAVE] = {EVENT_LEAVE, "leave", true, EVTYPE_FROM_USER, NULL,
		     EVTYPE_EFFECT_MEMBER_REMOVE, false, NULL},
    [EVENT_ROOM] = {EVENT_ROOM, "room", true, EVTYPE_FROM_USER, room_validate,
		    EVTYPE_EFFECT_ROOM_CREATE, false, room_extra},
    [EVENT_TYPING] = {EVENT_TYPING, "typing", false, EVTYPE_FROM_MEMBER, NULL,
		      EVTYPE_EFFECT_NONE, false, NULL},
    [EVENT_PRESENCE] = {EVENT_PRESENCE, "presence", false, EVTYPE_FROM_SERVER,
			NULL, EVTYPE_EFFECT_NONE, false, NULL},
    [EVENT_EDIT] = {EVENT_EDIT, "edit", true, EVTYPE_FROM_MEMBER, edit_validate,
		    EVTYPE_EFFECT_EDIT, false, edit_extra, true},
    [EVENT_DELETE] = {EVENT_DELETE, "delete", true, EVTYPE_FROM_MEMBER,
		      delete_validate, EVTYPE_EFFECT_DELETE, false,
		      delete_extra, false},
};

const struct evtype *evtype_get(enum event_type t)
{
	if ((size_t)t >= ARRAY_LEN(table) || !table[t].name)
		return NULL;
	return &table[t];
}

int evtype_parse(const char *name, enum event_type *t)
{
	for (size_t i = 0; name && i < ARRAY_LEN(table); i++) {
		if (table[i].name && strcmp(table[i].name, name) == 0) {
			*t = table[i].type;
			return 0;
		}
	}
	return -1;
}

int evtype_membership(enum event_type t)
{
	const struct evtype *row = evtype_get(t);
	if (!row)
		return 0;
	switch (row->effect) {
	case EVTYPE_EFFECT_MEMBER_ADD:
	case EVTYPE_EFFECT_ROOM_CREATE:
		return 1;
	case EVTYPE_EFFECT_MEMBER_REMOVE:
		return -1;
	case EVTYPE_EFFECT_NONE:
	case EVTYPE_EFFECT_EDIT:
	case EVTYPE_EFFECT_DELETE:
		break;
	}
	return 0;
}
