/* cmd: the command table and its dispatcher. A row names a command, the
 * event type it creates (for its ack rule), the JSON members it reads and
 * which input field each fills, and the chat function that runs it. The
 * table is constant: any thread may dispatch through it without a lock.
 *
 * It does not validate beyond "a string where a string is needed": the
 * event-type table's validators (through chat) decide the rest. */
#include <stddef.h>
#include <string.h>

#include "core/cmd.h"
#include "core/limit.h"
#include "model/evtype.h"

/* One argument: JSON member -> a string field of struct evtype_input, or
 * (field ID) a positive integer into target_id. */
struct cmd_arg {
	const char *member;
	size_t field; /* offsetof(struct evtype_input, ...) */
	bool required;
	bool null_ok; /* JSON null reads as absent */
};

struct cmd {
	const char *name;
	enum event_type type; /* the event it creates */
	/* NULL: ping, answered by the transport */
	int (*run)(struct chat *c, enum event_type type,
		   const struct chat_user *u, const struct evtype_input *in,
		   chat_done_fn done, void *arg);
	bool send; /* counted as a send */
	/* the rate bucket it takes from besides LIMIT_ALL; LIMIT_ALL: none */
	enum limit_kind rate;
	const char *usage;
	struct cmd_arg args[4]; /* up to the first member == NULL */
};

#define IN(f) offsetof(struct evtype_input, f)
#define ID IN(target_id)

static int run_send(struct chat *c, enum event_type type,
		    const struct chat_user *u, const struct evtype_input *in,
		    chat_done_fn done, void *arg)
{
	/* a message with files needs the whole input (its "files") */
	if (in->args && json_object_get(in->args, "files"))
		return chat_event(c, u, type, in, done, arg);
	(void)type;
	return chat_send(c, u, in->room, in->text, in->len, in->client_id, done,
			 arg);
}

static int run_typing(struct chat *c, enum event_type type,
		      const struct chat_user *u, const struct evtype_input *in,
		      chat_done_fn done, void *arg)
{
	(void)type;
	(void)done;
	(void)arg;
	return chat_typing(c, u, in->room);
}

/* Any other command: the event of the row's type, as the event-type table
 * says (chat_event). A new command for a new type needs no handler. */
static int run_event(struct chat *c, enum event_type type,
		     const struct chat_user *u, const struct evtype_input *in,
		     chat_done_fn done, void *arg)
{
	return chat_event(c, u, type, in, done, arg);
}

static const struct cmd table[] = {
    {"send",
     EVENT_MESSAGE,
     run_send,
     true,
     LIMIT_SEND,
     "send needs string members room and text",
     {{"room", IN(room), true, false},
      {"text", IN(text), true, false},
      {"client_id", IN(client_id), false, true}}},
    {"typing",
     EVENT_TYPING,
     run_typing,
     false,
     LIMIT_TYPING,
     "typing needs a string room",
     {{"room", IN(room), true, false}}},
    {"join",
     EVENT_JOIN,
     run_event,
     false,
     LIMIT_ALL,
     "join needs a string room",
     {{"room", IN(room), true, false}}},
    {"leave",
     EVENT_LEAVE,
     run_event,
     false,
     LIMIT_ALL,
     "leave needs a string room",
     {{"room", IN(room), true, false}}},
    {"room_create",
     EVENT_ROOM,
     run_event,
     false,
     LIMIT_ALL,
     "room_create needs a string name",
     {{"name", IN(room), true, false}, {"topic", IN(topic), false, true}}},
    {"kick",
     EVENT_KICK,
     run_event,
     false,
     LIMIT_ALL,
     "kick needs string members room and user (and may have a reason)",
     {{"room", IN(room), true, false}}},
    {"ban",
     EVENT_BAN,
     run_event,
     false,
     LIMIT_ALL,
     "ban needs string members room and user (and may have a reason)",
     {{"room", IN(room), true, false}}},
    {"edit",
     EVENT_EDIT,
     run_event,
     false,
     LIMIT_SEND,
     "edit needs a string room, an integer id and a string text",
     {{"room", IN(room), true, false},
      {"id", ID, true, false},
      {"text", IN(text), true, false}}},
    {"delete",
     EVENT_DELETE,
     run_event,
     false,
     LIMIT_ALL,
     "delete needs a string room and an integer id",
     {{"room", IN(room), true, false}, {"id", ID, true, false}}},
    /* args "users": an array of names (the validator reads it) */
    {"dm_open",
     EVENT_DM,
     run_event,
     false,
     LIMIT_ALL,
     "dm_open needs users: an array of 1-8 user names",
     {{NULL, 0, false, false}}},
    {"ping",
     EVENT_PRESENCE,
     NULL,
     false,
     LIMIT_ALL,
     "",
     {{NULL, 0, false, false}}},
};

static const struct cmd *cmd_find(const char *name)
{
	for (size_t i = 0; name && i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	return NULL;
}

/* Fill in from args as the row says: 0, or -1 with the member at fault. */
static int args_read(const struct cmd *cmd, json_t *args,
		     struct evtype_input *in, const char **field)
{
	for (size_t i = 0; i < 4 && cmd->args[i].member; i++) {
		const struct cmd_arg *a = &cmd->args[i];
		json_t *v = json_object_get(args, a->member);
		if (!v || (a->null_ok && json_is_null(v))) {
			if (!a->required)
				continue;
		} else if (a->field == ID) {
			if (json_is_integer(v) && json_integer_value(v) > 0) {
				in->target_id = json_integer_value(v);
				continue;
			}
		} else if (json_is_string(v)) {
			const char **dst =
			    (const char **)((char *)in + a->field);
			*dst = json_string_value(v);
			if (a->field == IN(text))
				in->len = json_string_length(v);
			continue;
		}
		*field = a->member;
		return -1;
	}
	return 0;
}

int cmd_check(const char *name, json_t *args, struct cmd_status *st)
{
	const struct cmd *cmd = cmd_find(name);
	struct evtype_input in = {0};

	*st = (struct cmd_status){0};
	if (!cmd)
		return CMD_EUNKNOWN;
	st->known = true;
	st->usage = cmd->usage;
	st->pong = !cmd->run;
	st->send = cmd->send;
	const struct evtype *row = evtype_get(cmd->type);
	st->acked = cmd->run && row && row->persistent;
	if (args_read(cmd, args, &in, &st->field) < 0)
		return CMD_EARGS;
	return CHAT_OK;
}

int cmd_run(struct chat *c, const struct chat_user *u, const char *name,
	    json_t *args, chat_done_fn done, void *arg, struct cmd_status *st)
{
	const struct cmd *cmd = cmd_find(name);
	struct evtype_input in = {0};

	int rc = cmd_check(name, args, st);
	if (rc != CHAT_OK || st->pong)
		return rc;
	args_read(cmd, args, &in, &st->field);
	in.args = args;
	rc = cmd->run(c, cmd->type, u, &in, done, arg);
	st->async = rc == CHAT_OK && st->acked;
	if (rc == CHAT_EMUTED)
		st->retry_after = chat_mute_left(c, u, in.room);
	return rc;
}

static unsigned retry_seconds(int64_t ms)
{
	return ms <= 1000 ? 1 : (unsigned)((ms + 999) / 1000);
}

int cmd_admit(struct limit *l, const struct chat_user *u, const char *name,
	      int64_t now_ms, struct cmd_limited *out)
{
	const struct cmd *cmd = cmd_find(name);
	int64_t retry;

	*out = (struct cmd_limited){LIMIT_ALL, 0};
	if (!l)
		return CHAT_OK;
	if (limit_take(l, u->id, LIMIT_ALL, now_ms, &retry) < 0) {
		out->retry_after = retry_seconds(retry);
		return CMD_ELIMITED;
	}
	if (cmd && cmd->rate != LIMIT_ALL &&
	    limit_take(l, u->id, cmd->rate, now_ms, &retry) < 0) {
		out->what = cmd->rate;
		out->retry_after = retry_seconds(retry);
		return CMD_ELIMITED;
	}
	return CHAT_OK;
}
