/* chat_err: every chat error's code and message (core/chat.h's enum
 * chat_err), as the HTTP API and the WebSocket error frames name them. */
#include <stddef.h>

#include "core/chat.h"
#include "util/util.h"

static const struct {
	int err;
	const char *code;
	const char *message;
} errors[] = {
    {CHAT_OK, "ok", "ok"},
    {CHAT_EINVAL, "invalid",
     "text must be non-empty valid UTF-8; client_id 1-64 printable characters; "
     "names 1-32 of letters, digits, _ . -"},
    {CHAT_ETOOLONG, "text_too_long", "text is longer than 4000 characters"},
    {CHAT_ENOROOM, "no_such_room", "no room by that name"},
    {CHAT_ENOTMEMBER, "not_a_member", "join the room first"},
    {CHAT_EEXISTS, "exists",
     "that room exists already, or you are a member already"},
    {CHAT_EINTERNAL, "internal", "internal error; try again"},
    {CHAT_ECLOSED, "shutting_down", "the server is shutting down"},
    {CHAT_EFIXED, "dm_fixed",
     "a direct conversation keeps its people: nobody joins, leaves or is "
     "invited; open another one with POST /api/dms"},
    {CHAT_EFORBIDDEN, "forbidden", "your role in that room does not allow it"},
    {CHAT_ENOUSER, "no_such_user", "no user by that name"},
    {CHAT_EBANNED, "banned", "you are banned from that room"},
    {CHAT_EMUTED, "muted", "you are muted in that room for now"},
    {CHAT_ENOTMUTED, "not_muted", "that user is not muted in that room"},
    {CHAT_ENOSUBJECT, "not_a_member", "that user is not a member of the room"},
    {CHAT_ENOTBANNED, "not_banned", "that user is not banned from that room"},
    {CHAT_ENOMSG, "no_such_message", "no message with that id in that room"},
    {CHAT_ENOTAUTHOR, "not_author", "only its author may change a message"},
    {CHAT_EDELETED, "message_deleted", "that message was deleted"},
    {CHAT_EBADREPLY, "bad_reply_to",
     "reply_to must be the id of a message in the same room"},
    {CHAT_ETOOMANY, "too_many_reactions",
     "that message has as many different reactions as it may have"},
    {CHAT_ELIMIT, "room_limit",
     "you have created as many rooms and direct conversations as one "
     "account may in 24 hours; try again later"},
    {CHAT_EFULL, "storage_full",
     "the server's storage is full; nothing was stored, try again later"},
    {CHAT_EUNAVAILABLE, "store_unavailable",
     "the database cannot be reached; nothing was stored, try again "
     "shortly"},
    {CHAT_EBADEMOJI, "bad_emoji",
     "a reaction is one emoji (URL-encoded in a path) or a :shortcode: "
     "such as :+1:"},
    {CHAT_ENOFILE, "no_such_file",
     "files must be ids of your finished uploads (at most 10)"},
};

static size_t err_index(int err)
{
	size_t internal = 0;
	for (size_t i = 0; i < ARRAY_LEN(errors); i++) {
		if (errors[i].err == err)
			return i;
		if (errors[i].err == CHAT_EINTERNAL)
			internal = i;
	}
	return internal;
}

const char *chat_err_code(int err)
{
	return errors[err_index(err)].code;
}

const char *chat_err_message(int err)
{
	return errors[err_index(err)].message;
}
