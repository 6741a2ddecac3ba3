/* fuzz_cluster: the bus's wire decoder (core/cluster.h), fed what any
 * process that can publish on the Redis channel could send. A message it
 * accepts has a positive node, a known kind, and for an event a positive
 * room and user and a NUL-terminated envelope of the stated length; every
 * user of a set or of changes has a valid status, choice and text, and
 * both a number above 0; a question names a node; every use of
 * rate-limit tokens a positive user; a login an address and a name
 * within their bounds, the name where its kind needs one. Re-encoding an
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
	if (m->kind == CLUSTER_LIMITS) {
		assert(m->nuses <= LIMIT_USES_MAX);
		for (size_t i = 0; i < m->nuses; i++)
			assert(m->uses[i].user > 0);
		return;
	}
	if (m->kind == CLUSTER_AUTH) {
		assert(m->auth_addr && *m->auth_addr &&
		       strlen(m->auth_addr) <= CLUSTER_AUTH_ADDR_MAX);
		assert(!m->auth_user ||
		       (*m->auth_user &&
			strlen(m->auth_user) <= CLUSTER_AUTH_USER_MAX));
		assert(m->what != AUTH_SHARE_SUCCEEDED || m->auth_user);
		assert(m->what != AUTH_SHARE_REGISTERED || !m->auth_user);
		return;
	}
	if (m->kind == CLUSTER_ASK) {
		assert(m->to > 0);
		return;
	}
	assert(m->kind == CLUSTER_PRESENCE || m->kind == CLUSTER_CHOICE ||
	       m->kind == CLUSTER_CHANGES);
	/* a whole set without a number: an older node's (seq 0) */
	assert(m->kind == CLUSTER_CHOICE || m->seq > 0 ||
	       (m->kind == CLUSTER_PRESENCE && m->seq == 0));
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
	       again.nusers == m.nusers && again.seq == m.seq &&
	       again.to == m.to);
	if (m.kind == CLUSTER_EVENT)
		assert(again.json_len == m.json_len &&
		       memcmp(again.json, m.json, m.json_len) == 0);
	if (m.kind == CLUSTER_LIMITS)
		assert(again.nuses == m.nuses &&
		       (!m.nuses || memcmp(again.uses, m.uses,
					   m.nuses * sizeof(*m.uses)) == 0));
	if (m.kind == CLUSTER_AUTH)
		assert(again.what == m.what &&
		       strcmp(again.auth_addr, m.auth_addr) == 0 &&
		       !again.auth_user == !m.auth_user &&
		       (!m.auth_user ||
			strcmp(again.auth_user, m.auth_user) == 0));
	for (size_t i = 0; i < m.nusers; i++)
		assert(again.users[i].user == m.users[i].user &&
		       strcmp(again.users[i].text, m.users[i].text) == 0);
	cluster_msg_fini(&again);
	free(bytes);
	cluster_msg_fini(&m);
	return 0;
}
