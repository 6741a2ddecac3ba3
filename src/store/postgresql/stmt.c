/* store/postgresql/stmt: natter's statements in PostgreSQL's SQL (the same
 * names and parameters as the SQLite backend's, $N for ?N), and a small
 * cursor over libpq that reads like sqlite3_step: bind, step a row at a
 * time, read columns, done. A statement runs as one PQexecParams with
 * integer parameters typed int8 and text left for the server to infer
 * (so that a text compared with a citext column compares as citext);
 * results come as text. A failure is classified by its SQLSTATE:
 * integrity (23xxx), disk full (53100), a lost connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/postgresql/pg.h"
#include "util/util.h"

#define INT8OID 20
#define BYTEAOID 17

const char *const pg_sql_text[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SAVEPOINT] = "SAVEPOINT job",
    [Q_RELEASE] = "RELEASE job",
    [Q_ROLLBACK_TO] = "ROLLBACK TO job",
    [Q_USER_NAME] = "SELECT username FROM users WHERE id = $1",
    [Q_ROOM_BY_ID] = "SELECT id, name FROM rooms WHERE id = $1",
    [Q_ROOM_BY_NAME] = "SELECT id, name FROM rooms WHERE name = $1",
    [Q_IS_MEMBER] = "SELECT 1 FROM members WHERE room_id = $1 AND user_id = $2",
    [Q_MEMBER_ADD] = "INSERT INTO members (room_id, user_id, joined_ms) "
		     "VALUES ($1, $2, $3)",
    [Q_MEMBER_DEL] = "DELETE FROM members WHERE room_id = $1 AND user_id = $2",
    [Q_ROOM_ADD] = "INSERT INTO rooms (name, topic, created_ms, created_by, "
		   "kind, dm_key) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    [Q_ROOM_KIND] = "SELECT kind FROM rooms WHERE id = $1",
    [Q_ROOM_RENAME] = "UPDATE rooms SET name = $2 WHERE id = $1",
    [Q_DM_BY_KEY] = "SELECT id FROM rooms WHERE dm_key = $1",
    [Q_DM_FIRST] = "SELECT id, type, room_id, user_id, json FROM events "
		   "WHERE room_id = $1 AND type = 'dm' ORDER BY id LIMIT 1",
    [Q_USER_ID_BY_NAME] = "SELECT id, username FROM users WHERE username = $1",
    [Q_MENTION_ADD] = "INSERT INTO mentions (event_id, user_id) "
		      "VALUES ($1, $2) ON CONFLICT DO NOTHING",
    [Q_MENTION_ROOM] = "INSERT INTO mentions (event_id, user_id) "
		       "SELECT $1, user_id FROM members "
		       "WHERE room_id = $2 AND user_id <> $3 "
		       "ON CONFLICT DO NOTHING",
    [Q_INVITE_TAKE] = "DELETE FROM invites WHERE room_id = $1 AND user_id = $2",
    [Q_EVENT_BY_CLIENT] = "SELECT id, type, room_id, user_id, json, subject_id "
			  "FROM events WHERE user_id = $1 AND client_id = $2",
    /* $11: search_index_text() of the text, for the index */
    [Q_EVENT_ADD] = "INSERT INTO events (id, room_id, type, user_id, ts_ms, "
		    "client_id, text, json, target_id, subject_id, tsv) "
		    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
		    "to_tsvector('natter', $11::text))",
    [Q_TARGET_GET] = "SELECT user_id, room_id, type, text, json "
		     "FROM events WHERE id = $1",
    [Q_TARGET_LAST] = "SELECT id, type, room_id, user_id, json FROM events "
		      "WHERE target_id = $1 AND type = $2 "
		      "ORDER BY id DESC LIMIT 1",
    /* $4: search_index_text() of the new text (NULL: a delete) */
    [Q_EVENT_SET] = "UPDATE events SET text = $2, json = $3, "
		    "tsv = to_tsvector('natter', $4::text) WHERE id = $1",
    [Q_TARGET_EDITS] = "SELECT id, type, room_id, user_id, json FROM events "
		       "WHERE target_id = $1 AND type IN ('edit', 'message')",
    [Q_EVENT_JSON_SET] = "UPDATE events SET json = $2 WHERE id = $1",
    /* the index is a column written with the row: nothing to do */
    [Q_FTS_OPTIMIZE] = "SELECT 1",
    [Q_FTS_INDEX] = "SELECT $1::bigint",
    [Q_LAST_ID] = "SELECT last FROM event_counter",
    [Q_SESSIONS_PURGE] = "DELETE FROM sessions WHERE expires_ms <= $1",
    [Q_USER_ADD] = "INSERT INTO users (username, display_name, pwhash, "
		   "created_ms, admin) VALUES ($1::text, $1::text, $2, $3, "
		   "(NOT EXISTS (SELECT 1 FROM users))::int) RETURNING id",
    [Q_USER_BY_NAME] = "SELECT id, username, display_name, settings, pwhash, "
		       "created_ms, admin, disabled_ms IS NOT NULL, "
		       "disabled_reason, avatar FROM users WHERE username = $1",
    [Q_USER_BY_ID] = "SELECT id, username, display_name, settings, pwhash, "
		     "created_ms, admin, disabled_ms IS NOT NULL, "
		     "disabled_reason, avatar FROM users WHERE id = $1",
    [Q_USER_UPDATE] = "UPDATE users SET "
		      "display_name = coalesce($2, display_name), "
		      "settings = coalesce($3, settings) WHERE id = $1",
    [Q_SESSION_ADD] = "INSERT INTO sessions (hash, user_id, created_ms, "
		      "expires_ms) VALUES ($1, $2, $3, $4)",
    [Q_SESSION_GET] = "SELECT user_id, expires_ms FROM sessions "
		      "WHERE hash = $1",
    [Q_SESSION_USER] = "SELECT s.user_id, s.expires_ms, u.username, "
		       "(u.disabled_ms IS NOT NULL)::int "
		       "FROM sessions s JOIN users u ON u.id = s.user_id "
		       "WHERE s.hash = $1",
    [Q_SESSION_DEL] = "DELETE FROM sessions WHERE hash = $1",
    [Q_SESSION_DEL_EXPIRED] = "DELETE FROM sessions "
			      "WHERE hash = $1 AND expires_ms <= $2",
    [Q_ROOMS_LIST] =
	"SELECT x.id, x.name, x.topic, x.created_ms, x.members, x.joined, "
	"x.kind, x.people, x.marker, "
	"CASE WHEN x.joined THEN (SELECT count(*) FROM events e "
	"WHERE e.room_id = x.id AND e.id > x.marker AND e.type = 'message' "
	"AND e.user_id <> $1) ELSE 0 END, "
	"CASE WHEN x.joined THEN (SELECT count(*) FROM mentions m "
	"JOIN events e ON e.id = m.event_id WHERE m.user_id = $1 "
	"AND e.room_id = x.id AND e.id > x.marker AND e.user_id <> $1) "
	"ELSE 0 END, x.joined_id "
	"FROM (SELECT r.id, r.name, r.topic, r.created_ms, "
	"(SELECT count(*) FROM members m WHERE m.room_id = r.id) AS members, "
	"EXISTS (SELECT 1 FROM members m "
	"WHERE m.room_id = r.id AND m.user_id = $1) AS joined, "
	"r.kind, CASE WHEN r.kind = 'dm' THEN "
	"(SELECT string_agg(u.username::text, ',' ORDER BY u.username) "
	"FROM members m JOIN users u ON u.id = m.user_id "
	"WHERE m.room_id = r.id AND m.user_id <> $1) END AS people, "
	"CASE WHEN $1 = 0 THEN 0 ELSE coalesce("
	"(SELECT event_id FROM read_markers "
	"WHERE user_id = $1 AND room_id = r.id), "
	"(SELECT max(id) FROM events WHERE room_id = r.id "
	"AND user_id = $1 AND type IN ('join', 'room', 'dm')), "
	"0) END AS marker, "
	"CASE WHEN $1 = 0 THEN 0 ELSE coalesce("
	"(SELECT max(id) FROM events WHERE room_id = r.id "
	"AND user_id = $1 AND type IN ('join', 'room', 'dm')), "
	"0) END AS joined_id "
	"FROM rooms r) x "
	"WHERE $1 = 0 OR x.kind = 'public' OR x.joined "
	"ORDER BY x.name",
    [Q_INVITE_ADD] = "INSERT INTO invites (room_id, user_id, invited_by, "
		     "created_ms) VALUES ($1, $2, $3, $4) "
		     "ON CONFLICT (room_id, user_id) DO NOTHING",
    [Q_INVITES_LIST] = "SELECT r.name, r.kind, coalesce(u.username, ''), "
		       "i.created_ms FROM invites i "
		       "JOIN rooms r ON r.id = i.room_id "
		       "LEFT JOIN users u ON u.id = i.invited_by "
		       "WHERE i.user_id = $1 ORDER BY i.created_ms, r.name",
    [Q_READ_SET] = "INSERT INTO read_markers AS rm (user_id, room_id, "
		   "event_id) VALUES ($1, $2, $3) "
		   "ON CONFLICT (user_id, room_id) DO UPDATE SET event_id = "
		   "greatest(rm.event_id, excluded.event_id) "
		   "RETURNING event_id",
    [Q_ROOM_MEMBERS] = "SELECT u.username, u.display_name, "
		       "CASE WHEN r.created_by = u.id THEN 3 "
		       "WHEN d.user_id IS NOT NULL THEN 2 ELSE 1 END, "
		       "u.avatar "
		       "FROM members m "
		       "JOIN users u ON u.id = m.user_id "
		       "JOIN rooms r ON r.id = m.room_id "
		       "LEFT JOIN moderators d ON d.room_id = m.room_id "
		       "AND d.user_id = m.user_id "
		       "WHERE m.room_id = $1 ORDER BY u.username",
    [Q_MEMBERS_ALL] = "SELECT room_id, user_id FROM members",
    [Q_USERS_ALL] = "SELECT id, username FROM users",
    [Q_HISTORY_ASC] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE room_id = $1 "
	"AND id > $2 AND id < $3 ORDER BY id ASC LIMIT $4",
    [Q_HISTORY_DESC] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE room_id = $1 "
	"AND id > $2 AND id < $3 ORDER BY id DESC LIMIT $4",
    [Q_SEARCH] =
	"SELECT e.id, e.type, e.room_id, e.user_id, e.json, e.subject_id "
	"FROM events e "
	"WHERE e.tsv @@ to_tsquery('natter', $1) AND e.tsv IS NOT NULL "
	"AND e.id < $4 AND e.room_id IN "
	"(SELECT room_id FROM members WHERE user_id = $2) "
	"ORDER BY e.id DESC LIMIT $3",
    [Q_EVENTS_AFTER] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE id > $1 AND (room_id IN "
	"(SELECT room_id FROM members WHERE user_id = $2) "
	"OR room_id IN (SELECT room_id FROM events "
	"WHERE user_id = $2 AND id > $1) "
	"OR room_id IN (SELECT room_id FROM events "
	"WHERE subject_id = $2 AND id > $1)) ORDER BY id",
    /* one snapshot for the reads that must agree */
    [Q_READ_BEGIN] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    [Q_USER_ROOMS] = "SELECT room_id FROM members WHERE user_id = $1",
    [Q_USER_EVENTS_DESC] = "SELECT room_id, type FROM events "
			   "WHERE coalesce(subject_id, user_id) = $1 "
			   "AND id > $2 ORDER BY id DESC",
    [Q_USER_ADMIN_SET] = "UPDATE users SET admin = $2 WHERE id = $1",
    [Q_ROOM_ROLE] =
	"SELECT CASE WHEN m.user_id IS NULL THEN 0 "
	"WHEN r.created_by = $2 THEN 3 "
	"WHEN d.user_id IS NOT NULL THEN 2 ELSE 1 END "
	"FROM rooms r "
	"LEFT JOIN members m ON m.room_id = r.id AND m.user_id = $2 "
	"LEFT JOIN moderators d ON d.room_id = r.id "
	"AND d.user_id = $2 WHERE r.id = $1",
    [Q_MODERATOR_ADD] = "INSERT INTO moderators (room_id, user_id, "
			"granted_by, granted_ms) SELECT $1, $2, $3, $4 "
			"WHERE EXISTS (SELECT 1 FROM members "
			"WHERE room_id = $1 AND user_id = $2) "
			"ON CONFLICT DO NOTHING",
    [Q_BAN_GET] = "SELECT 1 FROM bans WHERE room_id = $1 AND user_id = $2",
    [Q_BAN_ADD] = "INSERT INTO bans (room_id, user_id, by_id, "
		  "reason, created_ms) VALUES ($1, $2, $3, $4, $5) "
		  "ON CONFLICT (room_id, user_id) DO UPDATE SET "
		  "by_id = excluded.by_id, reason = excluded.reason, "
		  "created_ms = excluded.created_ms",
    [Q_BAN_DEL] = "DELETE FROM bans WHERE room_id = $1 AND user_id = $2",
    [Q_BANS_LIST] = "SELECT u.username, coalesce(b2.username, ''), "
		    "b.reason, b.created_ms FROM bans b "
		    "JOIN users u ON u.id = b.user_id "
		    "LEFT JOIN users b2 ON b2.id = b.by_id "
		    "WHERE b.room_id = $1 ORDER BY u.username",
    [Q_MUTE_ADD] = "INSERT INTO mutes (room_id, user_id, "
		   "until_ms, by_id, reason, created_ms) "
		   "VALUES ($1, $2, $3, $4, $5, $6) "
		   "ON CONFLICT (room_id, user_id) DO UPDATE SET "
		   "until_ms = excluded.until_ms, by_id = excluded.by_id, "
		   "reason = excluded.reason, created_ms = excluded.created_ms",
    [Q_MUTE_DEL] = "DELETE FROM mutes WHERE room_id = $1 AND user_id = $2 "
		   "AND until_ms > $3",
    [Q_MUTES_ACTIVE] = "SELECT room_id, user_id, until_ms FROM mutes "
		       "WHERE until_ms > $1",
    [Q_USER_DISABLE] = "UPDATE users SET disabled_ms = $2, "
		       "disabled_reason = coalesce($3, '') WHERE id = $1",
    [Q_USER_SESSIONS_DEL] = "DELETE FROM sessions WHERE user_id = $1",
    [Q_AUDIT_ADD] = "INSERT INTO audit (ts_ms, actor, action, target, room, "
		    "reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [Q_AUDIT_LIST] = "SELECT id, ts_ms, actor, action, target, room, reason, "
		     "detail FROM audit WHERE id < $1 ORDER BY id DESC "
		     "LIMIT $2",
    [Q_USER_PWHASH_SET] = "UPDATE users SET pwhash = $2 WHERE id = $1",
    [Q_MODERATOR_DEL] = "DELETE FROM moderators "
			"WHERE room_id = $1 AND user_id = $2",
    [Q_EVENTS_LOCK] = "SELECT pg_advisory_xact_lock($1)",
    [Q_COUNTER_GET] = "SELECT last FROM event_counter",
    [Q_COUNTER_SET] = "UPDATE event_counter SET last = $1",
    [Q_NOTIFY] = "SELECT pg_notify('" PG_CHANNEL "', $1::text)",
    [Q_SESSIONS_NOTIFY] = "SELECT pg_notify('" PG_SESSIONS "', $1)",
    [Q_FEED_AFTER] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3",
    /* what delete $1 rewrote: its message's tombstone, the message's
     * edits and the replies quoting it (effects.c, pw_edits_scrub) */
    [Q_FEED_REVISED] =
	"SELECT e.id, e.type, e.room_id, e.user_id, e.json FROM events e, "
	"events d WHERE d.id = $1 AND (e.id = d.target_id OR "
	"(e.target_id = d.target_id AND e.type IN ('edit', 'message')))",
    [Q_ROLES_ALL] = "SELECT id, created_by, 3 FROM rooms "
		    "WHERE created_by IS NOT NULL UNION ALL "
		    "SELECT room_id, user_id, 2 FROM moderators",
    [Q_ADMINS_ALL] = "SELECT 0, id, 3 FROM users WHERE admin <> 0",
    [Q_PRESENCE_SET] = "UPDATE users SET status = $2, status_text = $3 "
		       "WHERE id = $1",
    [Q_LAST_SEEN_SET] = "UPDATE users SET last_seen_ms = $2 WHERE id = $1",
    [Q_PRESENCE_ALL] = "SELECT id, status, status_text, last_seen_ms "
		       "FROM users WHERE status <> 'online' OR "
		       "status_text IS NOT NULL OR last_seen_ms IS NOT NULL",
    [Q_ROOMS_CREATED] = "SELECT count(*), coalesce(min(created_ms), 0) "
			"FROM rooms WHERE created_by = $1 "
			"AND created_ms >= $2",
    /* each message's reactions in an id range of a room, each emoji in
     * the order it was first used there */
    [Q_REACTIONS_PAGE] =
	"SELECT r.message_id, r.emoji, count(*), "
	"max((r.user_id = $4)::int), min(r.event_id) AS first "
	"FROM reactions r JOIN events e ON e.id = r.message_id "
	"WHERE e.room_id = $1 AND r.message_id BETWEEN $2 AND $3 "
	"GROUP BY r.message_id, r.emoji ORDER BY r.message_id, first",
    [Q_REACTION_ADD] = "INSERT INTO reactions (message_id, emoji, user_id, "
		       "ts_ms, event_id) VALUES ($1, $2, $3, $4, $5) "
		       "ON CONFLICT DO NOTHING",
    [Q_REACTION_DEL] = "DELETE FROM reactions WHERE message_id = $1 "
		       "AND emoji = $2 AND user_id = $3",
    [Q_REACTION_COUNT] = "SELECT count(*) FROM reactions "
			 "WHERE message_id = $1 AND emoji = $2",
    /* distinct emoji on the message, and whether $2 is one of them */
    [Q_REACTION_KINDS] = "SELECT count(DISTINCT emoji), "
			 "coalesce(max((emoji = $2)::int), 0) FROM reactions "
			 "WHERE message_id = $1",
    [Q_REACTIONS_DROP] = "DELETE FROM reactions WHERE message_id = $1",
    /* files and avatars (schema 004) */
    [Q_FILE_USE_ADD] = "INSERT INTO file_uses (file_id, event_id, room_id) "
		       "SELECT id, $2, $3 FROM files WHERE id = $1 "
		       "AND sha256 IS NOT NULL ON CONFLICT DO NOTHING",
    [Q_FILE_USES_DEL] = "DELETE FROM file_uses WHERE event_id = $1",
    [Q_FILE_ADD] = "INSERT INTO files (id, owner_id, length, received, name, "
		   "metadata, created_ms, expires_ms, sha256, type, width, "
		   "height) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
		   "$11, $12)",
    [Q_FILE_GET] = "SELECT id, owner_id, length, received, name, metadata, "
		   "created_ms, expires_ms, sha256, type, width, height "
		   "FROM files WHERE id = $1",
    [Q_FILE_OFFSET] = "UPDATE files SET received = $2 WHERE id = $1 AND "
		      "sha256 IS NULL",
    [Q_FILE_FINISH] =
	"UPDATE files SET received = $6, length = $6, created_ms = $8, "
	"name = coalesce($7, name), "
	"sha256 = $2, type = $3, width = $4, height = $5 "
	"WHERE id = $1",
    [Q_FILE_DEL] = "DELETE FROM files WHERE id = $1 RETURNING sha256",
    [Q_FILE_USAGE] = "SELECT coalesce(sum(length), 0) FROM files "
		     "WHERE owner_id = $1",
    [Q_FILE_ACCESS] = "SELECT 1 FROM files f WHERE f.id = $1 AND "
		      "(f.owner_id = $2 OR EXISTS (SELECT 1 FROM file_uses u "
		      "JOIN members m ON m.room_id = u.room_id AND "
		      "m.user_id = $2 WHERE u.file_id = f.id) OR EXISTS "
		      "(SELECT 1 FROM users a WHERE a.avatar = f.id))",
    [Q_FILE_BLOB_USED] = "SELECT 1 FROM files WHERE sha256 = $1 LIMIT 1",
    [Q_FILES_EXPIRED] = "SELECT id FROM files f WHERE (sha256 IS NULL AND "
			"expires_ms <= $1) OR (sha256 IS NOT NULL AND "
			"created_ms < $2 AND NOT EXISTS (SELECT 1 FROM "
			"file_uses u WHERE u.file_id = f.id) AND NOT EXISTS "
			"(SELECT 1 FROM users a WHERE a.avatar = f.id)) "
			"LIMIT 256",
    [Q_USER_AVATAR_SET] = "UPDATE users SET avatar = $2 WHERE id = $1",
};

/* The highest $N of a statement: how many parameters it takes. */
static int params_of(const char *sql)
{
	int n = 0;
	for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
		int v = atoi(p + 1);
		if (v > n)
			n = v;
	}
	return n;
}

struct pstmt *pgs_stmt(struct pconn *c, enum q q)
{
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		/* a lost connection is made again here, on its next use
		 * (never inside a transaction: that one is lost anyway) */
		if (c->pg)
			PQreset(c->pg);
		if (!c->pg || PQstatus(c->pg) != CONNECTION_OK)
			return NULL;
	}
	struct pstmt *s = &c->stmt[q];
	s->c = c;
	s->q = q;
	return s;
}

static void bind_at(struct pstmt *s, int i, const char *v, int len, int fmt,
		    Oid type)
{
	if (i < 1 || i > PG_PARAMS_MAX)
		return;
	s->val[i - 1] = v;
	s->len[i - 1] = len;
	s->fmt[i - 1] = fmt;
	s->type[i - 1] = type;
}

void pg_bind_int64(struct pstmt *s, int i, int64_t v)
{
	if (i < 1 || i > PG_PARAMS_MAX)
		return;
	snprintf(s->num[i - 1], sizeof(s->num[i - 1]), "%lld", (long long)v);
	bind_at(s, i, s->num[i - 1], 0, 0, INT8OID);
}

void pg_bind_text(struct pstmt *s, int i, const char *v)
{
	bind_at(s, i, v, 0, 0, 0);
}

void pg_bind_textn(struct pstmt *s, int i, const char *v, size_t len)
{
	(void)len; /* text parameters are NUL-terminated strings */
	bind_at(s, i, v, 0, 0, 0);
}

void pg_bind_blob(struct pstmt *s, int i, const void *v, int len)
{
	bind_at(s, i, v, len, 1, BYTEAOID);
}

/* A failed result as a step code, remembering its SQLSTATE. */
static int failure(struct pconn *c, const PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
	if (PQstatus(c->pg) != CONNECTION_OK || !state)
		return PG_BROKEN;
	if (!strcmp(state, "23505"))
		return PG_CONSTRAINT_UNIQUE;
	if (!strcmp(state, "23503"))
		return PG_CONSTRAINT_FK;
	if (!strncmp(state, "23", 2))
		return PG_CONSTRAINT;
	if (!strcmp(state, "53100"))
		return PG_FULL;
	if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3))
		return PG_BROKEN;
	return PG_ERROR;
}

/* Run s's statement. The first time on a server process it is prepared
 * (parsed and planned once, then run by name with new values: the writer
 * runs the same few statements for every send, under the events lock),
 * with the parameter types of that first call. A new server process (a
 * reconnect) starts again. A statement the server cannot prepare outside
 * a failed transaction runs unprepared from then on, as it always could;
 * one that fails to prepare inside a failed transaction is tried again on
 * its next use (PQexecParams then reports the same failure). */
static PGresult *exec_stmt(struct pconn *c, struct pstmt *s, int n)
{
	const char *sql = pg_sql_text[s->q];
	int pid = PQbackendPID(c->pg);
	char name[16];

	if (pid != c->prep_pid) {
		memset(c->prep, PREP_NOT_YET, sizeof(c->prep));
		c->prep_pid = pid;
	}
	snprintf(name, sizeof(name), "q%d", (int)s->q);
	if (c->prep[s->q] == PREP_NOT_YET) {
		PGresult *r = PQprepare(c->pg, name, sql, n, s->type);
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			c->prep[s->q] = PREP_DONE;
		else if (PQstatus(c->pg) == CONNECTION_OK &&
			 PQtransactionStatus(c->pg) == PQTRANS_IDLE)
			c->prep[s->q] = PREP_NEVER;
		PQclear(r);
	}
	if (c->prep[s->q] == PREP_DONE)
		return PQexecPrepared(c->pg, name, n, s->val, s->len, s->fmt,
				      0);
	return PQexecParams(c->pg, sql, n, s->type, s->val, s->len, s->fmt, 0);
}

int pg_step(struct pstmt *s)
{
	if (!s->ran) {
		struct pconn *c = s->c;
		int n = params_of(pg_sql_text[s->q]);
		bool idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
		s->ran = true;
		s->row = -1;
		s->res = exec_stmt(c, s, n);
		/* A pooled connection the server dropped while it sat idle
		 * (a restart) fails its next statement: a read outside a
		 * transaction runs once more on the connection made again,
		 * so the first request after an outage is not a 503. A write
		 * is not repeated: it may have run. */
		if (idle && PQstatus(c->pg) != CONNECTION_OK &&
		    !strncmp(pg_sql_text[s->q], "SELECT", 6)) {
			PQclear(s->res);
			s->res = NULL;
			PQreset(c->pg);
			if (PQstatus(c->pg) == CONNECTION_OK)
				s->res = exec_stmt(c, s, n);
		}
		switch (PQresultStatus(s->res)) {
		case PGRES_TUPLES_OK:
			s->nrows = PQntuples(s->res);
			c->changes = atoll(PQcmdTuples(s->res));
			/* INSERT ... RETURNING id reads as an INSERT */
			if (!strncmp(PQcmdStatus(s->res), "INSERT", 6) &&
			    s->nrows == 1 &&
			    strstr(pg_sql_text[s->q], "RETURNING id")) {
				c->last_insert =
				    atoll(PQgetvalue(s->res, 0, 0));
				s->nrows = 0;
			}
			break;
		case PGRES_COMMAND_OK:
			s->nrows = 0;
			c->changes = atoll(PQcmdTuples(s->res));
			break;
		default:
			return failure(c, s->res);
		}
	}
	if (!s->res)
		return PG_ERROR;
	if (s->row + 1 < s->nrows) {
		s->row++;
		return PG_ROW;
	}
	return PG_DONE;
}

int64_t pg_col_int64(struct pstmt *s, int i)
{
	if (!s->res || s->row < 0 || PQgetisnull(s->res, s->row, i))
		return 0;
	const char *v = PQgetvalue(s->res, s->row, i);
	if (v[0] == 't' && !v[1])
		return 1; /* a boolean */
	return atoll(v);
}

const char *pg_col_text(struct pstmt *s, int i)
{
	if (!s->res || s->row < 0 || PQgetisnull(s->res, s->row, i))
		return NULL;
	return PQgetvalue(s->res, s->row, i);
}

int pg_col_bytes(struct pstmt *s, int i)
{
	if (!s->res || s->row < 0)
		return 0;
	return PQgetlength(s->res, s->row, i);
}

bool pg_col_null(struct pstmt *s, int i)
{
	return !s->res || s->row < 0 || PQgetisnull(s->res, s->row, i);
}

int pg_col_count(struct pstmt *s)
{
	return s->res ? PQnfields(s->res) : 0;
}

int64_t pg_changes(struct pconn *c)
{
	return c->changes;
}

int64_t pg_last_insert_id(struct pconn *c)
{
	return c->last_insert;
}

int pg_errcode(struct pconn *c)
{
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK)
		return PG_BROKEN;
	return c->sqlstate[0] ? PG_ERROR : PG_BROKEN;
}

void pgs_stmt_done(struct pstmt *s)
{
	if (!s)
		return;
	PQclear(s->res);
	s->res = NULL;
	s->ran = false;
	s->row = -1;
	s->nrows = 0;
	memset(s->val, 0, sizeof(s->val));
	memset(s->type, 0, sizeof(s->type));
	memset(s->len, 0, sizeof(s->len));
	memset(s->fmt, 0, sizeof(s->fmt));
}

int pgs_run(struct pconn *c, enum q q)
{
	struct pstmt *s = pgs_stmt(c, q);
	if (!s)
		return PG_BROKEN;
	int rc = pg_step(s);
	while (rc == PG_ROW)
		rc = pg_step(s);
	pgs_stmt_done(s);
	return rc == PG_DONE ? PG_OK : rc;
}

/* Run SQL text without parameters (schema files, LISTEN): PG_OK or a
 * failure code. */
int pg_exec(struct pconn *c, const char *sql)
{
	PGresult *r = PQexec(c->pg, sql);
	ExecStatusType t = PQresultStatus(r);
	int rc = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK ? PG_OK
							       : failure(c, r);
	PQclear(r);
	return rc;
}

static void notice_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg; /* NOTICEs (e.g. "extension exists") are not errors */
}

int pg_connect(struct pconn *c, const char *url, char *err, size_t errlen)
{
	c->url = url;
	c->pg = PQconnectdb(url);
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		if (err && errlen)
			snprintf(
			    err, errlen, "cannot connect to PostgreSQL: %s",
			    c->pg ? PQerrorMessage(c->pg) : "out of memory");
		pg_disconnect(c);
		return -1;
	}
	PQsetNoticeProcessor(c->pg, notice_quiet, NULL);
	for (size_t i = 0; i < Q_COUNT; i++)
		c->stmt[i].row = -1;
	return 0;
}

void pg_disconnect(struct pconn *c)
{
	for (size_t i = 0; i < Q_COUNT; i++)
		pgs_stmt_done(&c->stmt[i]);
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
}
