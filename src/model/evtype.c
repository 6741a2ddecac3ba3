/* evtype: the table of event types and the handlers its rows point to (the
 * validators and envelope extras). One row per type, indexed by the enum;
 * the table is constant, so it is read from any thread without a lock.
 *
 * It does not resolve rooms or check membership (chat does, reading the
 * sender column), and does not store or deliver anything. */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "model/emoji.h"
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

/* args "files": absent, or an array of 1 to 10 members (ids from a client,
 * file objects once chat resolved them). */
static bool files_valid(const struct evtype_input *in, bool *some)
{
	json_t *files = in->args ? json_object_get(in->args, "files") : NULL;
	*some = false;
	if (!files || json_is_null(files))
		return true;
	if (!json_is_array(files) || json_array_size(files) < 1 ||
	    json_array_size(files) > EVTYPE_FILES_MAX)
		return false;
	*some = true;
	return true;
}

static enum evtype_verdict message_validate(const struct evtype_input *in)
{
	bool files;
	if (!files_valid(in, &files))
		return EVTYPE_INVALID;
	/* a message of files alone may have no text */
	if (!in->text || (in->len == 0 && !files) ||
	    (in->len && !text_valid(in->text, in->len)))
		return EVTYPE_INVALID;
	if (in->target_id < 0)
		return EVTYPE_INVALID;
	if (utf8_count(in->text, in->len) > EVTYPE_TEXT_MAX)
		return EVTYPE_TOOLONG;
	if (in->client_id && !client_id_valid(in->client_id))
		return EVTYPE_INVALID;
	return EVTYPE_VALID;
}

/* A message's files, once chat resolved them to objects. */
static json_t *message_extra(const struct evtype_input *in)
{
	json_t *files = in->args ? json_object_get(in->args, "files") : NULL;
	json_t *extra = json_object();
	if (json_is_array(files) && json_array_size(files) &&
	    json_is_object(json_array_get(files, 0)))
		json_object_set(extra, "files", files);
	return extra;
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

/* The user's whole settings object and display name, as PATCH /api/me left
 * them (args {"settings":{..},"display_name":S}). */
static json_t *settings_extra(const struct evtype_input *in)
{
	json_t *settings =
	    in->args ? json_object_get(in->args, "settings") : NULL;
	json_t *dn =
	    in->args ? json_object_get(in->args, "display_name") : NULL;
	json_t *o = json_pack(
	    "{s:o, s:o}", "settings",
	    json_is_object(settings) ? json_incref(settings) : json_object(),
	    "display_name", json_is_string(dn) ? json_incref(dn) : json_null());
	/* the user's chosen presence, for their other sessions (presence
	 * events go to others only) */
	json_t *choice =
	    in->args ? json_object_get(in->args, "status_choice") : NULL;
	json_t *text =
	    in->args ? json_object_get(in->args, "status_text") : NULL;
	if (o && json_is_string(choice)) {
		json_object_set(o, "status_choice", choice);
		json_object_set_new(o, "status_text",
				    json_is_string(text) ? json_incref(text)
							 : json_null());
	}
	return o;
}

/* A presence change (core/presence builds args): "status", "status_text"
 * (null for none), "last_seen" (an ISO time, or null: never) and "seq"
 * (newer changes of one user have larger ones). */
static json_t *presence_extra(const struct evtype_input *in)
{
	json_t *a = in->args;
	json_t *status = a ? json_object_get(a, "status") : NULL;
	json_t *text = a ? json_object_get(a, "status_text") : NULL;
	json_t *seen = a ? json_object_get(a, "last_seen") : NULL;
	json_t *seq = a ? json_object_get(a, "seq") : NULL;
	return json_pack(
	    "{s:o, s:o, s:o, s:o}", "status",
	    json_is_string(status) ? json_incref(status)
				   : json_string("offline"),
	    "status_text",
	    json_is_string(text) ? json_incref(text) : json_null(), "last_seen",
	    json_is_string(seen) ? json_incref(seen) : json_null(), "seq",
	    json_is_integer(seq) ? json_incref(seq) : json_integer(0));
}

/* A profile change: the user's avatar URL (args "avatar", null: none). */
static json_t *profile_extra(const struct evtype_input *in)
{
	json_t *a = in->args ? json_object_get(in->args, "avatar") : NULL;
	return json_pack("{s:o}", "avatar",
			 json_is_string(a) ? json_incref(a) : json_null());
}

/* A moderation command: "user" a valid name; "reason" absent, null or a
 * string of visible text up to EVTYPE_REASON_MAX characters. */
static enum evtype_verdict moderation_validate(const struct evtype_input *in)
{
	const char *user = json_string_value(json_object_get(in->args, "user"));
	json_t *reason = json_object_get(in->args, "reason");
	if (!user || !name_valid(user))
		return EVTYPE_INVALID;
	if (reason && !json_is_null(reason)) {
		const char *r = json_string_value(reason);
		size_t n = json_string_length(reason);
		if (!r || (n && !text_valid(r, n)))
			return EVTYPE_INVALID;
		if (utf8_count(r, n) > EVTYPE_REASON_MAX)
			return EVTYPE_TOOLONG;
	}
	return EVTYPE_VALID;
}

/* {"user": the subject, "reason": text or ""} */
static json_t *moderation_extra(const struct evtype_input *in)
{
	const char *user = json_string_value(json_object_get(in->args, "user"));
	const char *reason =
	    json_string_value(json_object_get(in->args, "reason"));
	return json_pack("{s:s, s:s}", "user", user ? user : "", "reason",
			 reason ? reason : "");
}

/* A mute, told to the muted user: {"user", "reason", "until", "seconds"}
 * from the args chat builds. */
static json_t *mute_extra(const struct evtype_input *in)
{
	json_t *extra = json_object();
	const char *keys[] = {"user", "reason", "until", "seconds"};
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		json_t *v = json_object_get(in->args, keys[i]);
		if (v)
			json_object_set(extra, keys[i], v);
	}
	return extra;
}

/* {"reason"} of an account's disabling. */
static json_t *disabled_extra(const struct evtype_input *in)
{
	const char *reason =
	    json_string_value(json_object_get(in->args, "reason"));
	return json_pack("{s:s}", "reason", reason ? reason : "");
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

/* A reaction: the message it is on, args "emoji" one emoji (emoji.h) and
 * args "op" "add" or "remove". */
static enum evtype_verdict reaction_validate(const struct evtype_input *in)
{
	const char *e = json_string_value(json_object_get(in->args, "emoji"));
	char norm[EMOJI_BYTES_MAX];

	if (in->target_id <= 0 || !e || evtype_reaction_add(in->args) < 0)
		return EVTYPE_INVALID;
	if (emoji_normalize(e, strlen(e), norm) < 0)
		return EVTYPE_BADEMOJI;
	return EVTYPE_VALID;
}

/* {"target_id","emoji","op":"add"|"remove","count"}: the store sets args
 * "emoji" to the
 * emoji a shortcode stands for and "count" to how many have it now. */
static json_t *reaction_extra(const struct evtype_input *in)
{
	json_t *count = json_object_get(in->args, "count");
	const char *e = json_string_value(json_object_get(in->args, "emoji"));
	return json_pack(
	    "{s:I, s:s, s:s, s:I}", "target_id", (json_int_t)in->target_id,
	    "emoji", e ? e : "", "op",
	    evtype_reaction_add(in->args) == 1 ? "add" : "remove", "count",
	    (json_int_t)(json_is_integer(count) ? json_integer_value(count)
						: 0));
}

int evtype_reaction_add(json_t *args)
{
	const char *op = json_string_value(json_object_get(args, "op"));
	if (op && (!strcmp(op, "react") || !strcmp(op, "add")))
		return 1;
	if (op && (!strcmp(op, "unreact") || !strcmp(op, "remove")))
		return 0;
	return -1;
}

/* Designated members, so that a row says what each value is. */
static const struct evtype table[] = {
    [EVENT_MESSAGE] = {.type = EVENT_MESSAGE,
		       .name = "message",
		       .persistent = true,
		       .sender = EVTYPE_FROM_MEMBER,
		       .validate = message_validate,
		       .effect = EVTYPE_EFFECT_NONE,
		       .searchable = true,
		       .extra = message_extra,
		       .rendered = true,
		       .files = true},
    [EVENT_JOIN] = {.type = EVENT_JOIN,
		    .name = "join",
		    .persistent = true,
		    .sender = EVTYPE_FROM_USER,
		    .effect = EVTYPE_EFFECT_MEMBER_ADD},
    [EVENT_LEAVE] = {.type = EVENT_LEAVE,
		     .name = "leave",
		     .persistent = true,
		     .sender = EVTYPE_FROM_USER,
		     .effect = EVTYPE_EFFECT_MEMBER_REMOVE},
    [EVENT_ROOM] = {.type = EVENT_ROOM,
		    .name = "room",
		    .persistent = true,
		    .sender = EVTYPE_FROM_USER,
		    .validate = room_validate_kind,
		    .effect = EVTYPE_EFFECT_ROOM_CREATE,
		    .extra = room_extra},
    [EVENT_TYPING] = {.type = EVENT_TYPING,
		      .name = "typing",
		      .sender = EVTYPE_FROM_MEMBER},
    [EVENT_PRESENCE] = {.type = EVENT_PRESENCE,
			.name = "presence",
			.sender = EVTYPE_FROM_SERVER,
			.extra = presence_extra},
    [EVENT_SETTINGS] = {.type = EVENT_SETTINGS,
			.name = "settings",
			.sender = EVTYPE_FROM_SERVER,
			.extra = settings_extra},
    [EVENT_KICK] = {.type = EVENT_KICK,
		    .name = "kick",
		    .persistent = true,
		    .sender = EVTYPE_FROM_MODERATOR,
		    .validate = moderation_validate,
		    .effect = EVTYPE_EFFECT_SUBJECT_REMOVE,
		    .extra = moderation_extra},
    [EVENT_BAN] = {.type = EVENT_BAN,
		   .name = "ban",
		   .persistent = true,
		   .sender = EVTYPE_FROM_MODERATOR,
		   .validate = moderation_validate,
		   .effect = EVTYPE_EFFECT_SUBJECT_BAN,
		   .extra = moderation_extra},
    [EVENT_MUTE] = {.type = EVENT_MUTE,
		    .name = "mute",
		    .sender = EVTYPE_FROM_SERVER,
		    .extra = mute_extra},
    [EVENT_DISABLED] = {.type = EVENT_DISABLED,
			.name = "disabled",
			.sender = EVTYPE_FROM_SERVER,
			.extra = disabled_extra,
			.ends_session = true},
    [EVENT_EDIT] = {.type = EVENT_EDIT,
		    .name = "edit",
		    .persistent = true,
		    .sender = EVTYPE_FROM_MEMBER,
		    .validate = edit_validate,
		    .effect = EVTYPE_EFFECT_EDIT,
		    .extra = edit_extra,
		    .rendered = true},
    [EVENT_DELETE] = {.type = EVENT_DELETE,
		      .name = "delete",
		      .persistent = true,
		      .sender = EVTYPE_FROM_MEMBER,
		      .validate = delete_validate,
		      .effect = EVTYPE_EFFECT_DELETE,
		      .extra = delete_extra},
    [EVENT_DM] = {.type = EVENT_DM,
		  .name = "dm",
		  .persistent = true,
		  .sender = EVTYPE_FROM_USER,
		  .validate = dm_validate,
		  .effect = EVTYPE_EFFECT_DM_OPEN,
		  .extra = dm_extra},
    [EVENT_INVITE] = {.type = EVENT_INVITE,
		      .name = "invite",
		      .sender = EVTYPE_FROM_SERVER},
    [EVENT_READ] = {.type = EVENT_READ,
		    .name = "read",
		    .sender = EVTYPE_FROM_SERVER},
    [EVENT_REACTION] = {.type = EVENT_REACTION,
			.name = "reaction",
			.persistent = true,
			.sender = EVTYPE_FROM_MEMBER,
			.validate = reaction_validate,
			.effect = EVTYPE_EFFECT_REACT,
			.extra = reaction_extra},
    [EVENT_PROFILE] = {.type = EVENT_PROFILE,
		       .name = "profile",
		       .sender = EVTYPE_FROM_SERVER,
		       .extra = profile_extra},
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

bool evtype_ends_session(enum event_type t)
{
	const struct evtype *row = evtype_get(t);
	return row && row->ends_session;
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
	case EVTYPE_EFFECT_SUBJECT_REMOVE:
	case EVTYPE_EFFECT_SUBJECT_BAN:
		return -1;
	case EVTYPE_EFFECT_NONE:
	case EVTYPE_EFFECT_EDIT:
	case EVTYPE_EFFECT_DELETE:
	case EVTYPE_EFFECT_REACT:
		break;
	}
	return 0;
}
