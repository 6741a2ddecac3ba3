/* evtype: the table of event types and the handlers its rows point to (the
 * validators and envelope extras). One row per type, indexed by the enum;
 * the table is constant, so it is read from any thread without a lock.
 *
 * It does not resolve rooms or check membership (chat does, reading the
 * sender column), and does not store or deliver anything. */
#include <stdint.h>
#include <string.h>
#include <strings.h>

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
	/* dm-<id> names the direct conversations */
	if (!in->room || !name_valid(in->room) ||
	    strncasecmp(in->room, "dm-", 3) == 0)
		return EVTYPE_INVALID;
	if (in->topic) {
		size_t n = strlen(in->topic);
		if (!utf8_valid(in->topic, n) ||
		    utf8_count(in->topic, n) > EVTYPE_TOPIC_MAX)
			return EVTYPE_INVALID;
	}
	return EVTYPE_VALID;
}

/* args "private": absent, false or true. */
static enum evtype_verdict room_validate_kind(const struct evtype_input *in)
{
	json_t *priv = in->args ? json_object_get(in->args, "private") : NULL;
	if (priv && !json_is_boolean(priv) && !json_is_null(priv))
		return EVTYPE_INVALID;
	return room_validate(in);
}

static json_t *room_extra(const struct evtype_input *in)
{
	json_t *extra = json_object();
	bool priv =
	    in->args && json_is_true(json_object_get(in->args, "private"));
	if (json_object_set_new(extra, "topic",
				json_string(in->topic ? in->topic : "")) ||
	    json_object_set_new(extra, "kind",
				json_string(priv ? "private" : "public"))) {
		json_decref(extra);
		return NULL;
	}
	return extra;
}

/* args "users": 1..EVTYPE_DM_USERS_MAX valid user names. */
static enum evtype_verdict dm_validate(const struct evtype_input *in)
{
	json_t *users = in->args ? json_object_get(in->args, "users") : NULL;
	size_t i;
	json_t *v;

	if (!json_is_array(users) || json_array_size(users) == 0 ||
	    json_array_size(users) > EVTYPE_DM_USERS_MAX)
		return EVTYPE_INVALID;
	json_array_foreach(users, i, v)
	{
		if (!json_is_string(v) || !name_valid(json_string_value(v)))
			return EVTYPE_INVALID;
	}
	return EVTYPE_VALID;
}

/* "kind":"dm" and "people": every member's canonical name (the store
 * replaces args "users" with them before the envelope is built). */
static json_t *dm_extra(const struct evtype_input *in)
{
	json_t *users = in->args ? json_object_get(in->args, "users") : NULL;
	json_t *extra = json_object();
	if (json_object_set_new(extra, "kind", json_string("dm")) ||
	    json_object_set_new(extra, "people",
				users ? json_deep_copy(users) : json_array())) {
		json_decref(extra);
		return NULL;
	}
	return extra;
}

static const struct evtype table[] = {
    [EVENT_MESSAGE] = {EVENT_MESSAGE, "message", true, EVTYPE_FROM_MEMBER,
		       message_validate, EVTYPE_EFFECT_NONE, true, NULL},
    [EVENT_JOIN] = {EVENT_JOIN, "join", true, EVTYPE_FROM_USER, NULL,
		    EVTYPE_EFFECT_MEMBER_ADD, false, NULL},
    [EVENT_LEAVE] = {EVENT_LEAVE, "leave", true, EVTYPE_FROM_USER, NULL,
		     EVTYPE_EFFECT_MEMBER_REMOVE, false, NULL},
    [EVENT_ROOM] = {EVENT_ROOM, "room", true, EVTYPE_FROM_USER,
		    room_validate_kind, EVTYPE_EFFECT_ROOM_CREATE, false,
		    room_extra},
    [EVENT_TYPING] = {EVENT_TYPING, "typing", false, EVTYPE_FROM_MEMBER, NULL,
		      EVTYPE_EFFECT_NONE, false, NULL},
    [EVENT_PRESENCE] = {EVENT_PRESENCE, "presence", false, EVTYPE_FROM_SERVER,
			NULL, EVTYPE_EFFECT_NONE, false, NULL},
    [EVENT_DM] = {EVENT_DM, "dm", true, EVTYPE_FROM_USER, dm_validate,
		  EVTYPE_EFFECT_DM_OPEN, false, dm_extra},
    [EVENT_INVITE] = {EVENT_INVITE, "invite", false, EVTYPE_FROM_SERVER, NULL,
		      EVTYPE_EFFECT_NONE, false, NULL},
    [EVENT_READ] = {EVENT_READ, "read", false, EVTYPE_FROM_SERVER, NULL,
		    EVTYPE_EFFECT_NONE, false, NULL},
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
	case EVTYPE_EFFECT_DM_OPEN:
		return 1;
	case EVTYPE_EFFECT_MEMBER_REMOVE:
		return -1;
	case EVTYPE_EFFECT_NONE:
		break;
	}
	return 0;
}
