/* fuzz_cmd: the JSON command parser: bytes as a WebSocket text frame
 * brings them, parsed the way ws.c parses them (a JSON object with "op")
 * and checked against the command table with cmd_check. A known command
 * with an argument error must name the member and the usage; an unknown
 * one must say nothing more. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "core/cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t err;
	json_t *obj =
	    json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return 0;
	}
	const char *op = json_string_value(json_object_get(obj, "op"));
	struct cmd_status st;
	int rc = cmd_check(op ? op : "", obj, &st);
	switch (rc) {
	case CHAT_OK:
		assert(st.known);
		break;
	case CMD_EARGS:
		assert(st.known && st.field && st.usage);
		break;
	case CMD_EUNKNOWN:
		assert(!st.known);
		break;
	default:
		assert(!"cmd_check returned what its header does not list");
	}
	/* The same arguments again give the same answer (no hidden state). */
	struct cmd_status st2;
	assert(cmd_check(op ? op : "", obj, &st2) == rc);
	assert(st2.known == st.known && st2.field == st.field);
	json_decref(obj);
	return 0;
}
