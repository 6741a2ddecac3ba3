/* fuzz_cluster: the bus's wire decoder (core/cluster.h), fed what any
 * process that can publish on the Redis channel could send. A message it
 * accepts has a positive node, a known kind, and for an event a positive
 * room and user and a NUL-terminated envelope of the stated length; every
 * user of a set has a valid status, choice and text. Re-encoding an
 * accepted message and decoding that gives the same message. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cluster.h"

static void check(const struct cluster_msg *m)
{
	assert(m->node > 0);
	if (m->kind == CLUSTER_EVENT) {
		/* a room, BUS_PERSONAL (0) or BUS_PEERS (-1) */
		assert(m->room >= -1 && m->user > 0 && m->json);
		assert(strlen(m->json) <= m->json_len);
		return;
	}
	assert(m->kind == CLUSTER_PRESENCE || m->kind == CLUSTER_CHOICE);
	assert(m->kind != CLUSTER_CHOICE || m->nusers == 1);
	for (size_t i = 0; i < m->nusers; i++) {
		const struct presence_local *u = &m->users[i];
		assert(u->user > 0 && u->chosen_ms >= 0);
		assert(u->status != PRESENCE_DND);
		assert(u->chosen != PRESENCE_OFFLINE);
		assert(presence_text_valid(u->text, strlen(u->text)));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cluster_msg m, again;
	if (cluster_decode((const char *)data, size, &m) < 0)
		return 0;
	check(&m);
	size_t len;
	char *bytes = cluster_encode(&m, &len);
	assert(bytes);
	assert(cluster_decode(bytes, len, &again) == 0);
	assert(again.kind == m.kind && again.node == m.node &&
	       again.nusers == m.nusers);
	if (m.kind == CLUSTER_EVENT)
		assert(again.json_len == m.json_len &&
		       memcmp(again.json, m.json, m.json_len) == 0);
	for (size_t i = 0; i < m.nusers; i++)
		assert(again.users[i].user == m.users[i].user &&
		       strcmp(again.users[i].text, m.users[i].text) == 0);
	cluster_msg_fini(&again);
	free(bytes);
	cluster_msg_fini(&m);
	return 0;
}
