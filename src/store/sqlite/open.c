/* store/sqlite/open: opening natter's SQLite database in WAL mode and
 * bringing its schema up to date from db_dir (schema.sql, then
 * migrations/NNN-*.sql, counted by PRAGMA user_version, all in one
 * transaction); the connections, each with its own cache of prepared
 * statements; the pool of read connections; closing; and the backend's
 * ops table. It never logs: errors are returned with a human message. */

#define _GNU_SOURCE /* pthread_setname_np */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "model/search.h"
#include "store/sqlite/sqlfn.h"
#include "store/sqlite/sqlite.h"
#include "util/util.h"

static const char *const sql_text[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SAVEPOINT] = "SAVEPOINT job",
    [Q_RELEASE] = "RELEASE job",
    [Q_ROLLBACK_TO] = "ROLLBACK TO job",
    [Q_USER_NAME] = "SELECT username FROM users WHERE id = ?1",
    [Q_ROOM_BY_ID] = "SELECT id, name FROM rooms WHERE id = ?1",
    [Q_ROOM_BY_NAME] = "SELECT id, name FROM rooms WHERE name = ?1",
    [Q_IS_MEMBER] = "SELECT 1 FROM members WHERE room_id = ?1 AND user_id = ?2",
    [Q_MEMBER_ADD] = "INSERT INTO members (room_id, user_id, joined_ms) "
		     "VALUES (?1, ?2, ?3)",
    [Q_MEMBER_DEL] = "DELETE FROM members WHERE room_id = ?1 AND user_id = ?2",
    [Q_ROOM_ADD] = "INSERT INTO rooms (name, topic, created_ms, created_by, "
		   "kind, dm_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_ROOM_KIND] = "SELECT kind FROM rooms WHERE id = ?1",
    [Q_ROOM_RENAME] = "UPDATE rooms SET name = ?2 WHERE id = ?1",
    [Q_DM_BY_KEY] = "SELECT id FROM rooms WHERE dm_key = ?1",
    [Q_DM_FIRST] = "SELECT id, type, room_id, user_id, json FROM events "
		   "WHERE room_id = ?1 AND type = 'dm' ORDER BY id LIMIT 1",
    [Q_USER_ID_BY_NAME] = "SELECT id, username FROM users WHERE username = ?1",
    [Q_MENTION_ADD] = "INSERT OR IGNORE INTO mentions (event_id, user_id) "
		      "VALUES (?1, ?2)",
    [Q_MENTION_ROOM] = "INSERT OR IGNORE INTO mentions (event_id, user_id) "
		       "SELECT ?1, user_id FROM members "
		       "WHERE room_id = ?2 AND user_id <> ?3",
    [Q_INVITE_TAKE] = "DELETE FROM invites WHERE room_id = ?1 AND user_id = ?2",
    [Q_EVENT_BY_CLIENT] = "SELECT id, type, room_id, user_id, json, subject_id "
			  "FROM events WHERE user_id = ?1 AND client_id = ?2",
    [Q_EVENT_ADD] = "INSERT INTO events (id, room_id, type, user_id, ts_ms, "
		    "client_id, text, json, target_id, subject_id) "
		    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    /* a message is deleted when its text is gone */
    [Q_TARGET_GET] = "SELECT user_id, room_id, type, text, json "
		     "FROM events WHERE id = ?1",
    [Q_TARGET_LAST] = "SELECT id, type, room_id, user_id, json FROM events "
		      "WHERE target_id = ?1 AND type = ?2 "
		      "ORDER BY id DESC LIMIT 1",
    [Q_EVENT_SET] = "UPDATE events SET text = ?2, json = ?3 WHERE id = ?1",
    /* a message's edits and the messages replying to it */
    [Q_TARGET_EDITS] = "SELECT id, type, room_id, user_id, json FROM events "
		       "WHERE target_id = ?1 AND type IN ('edit', 'message')",
    [Q_EVENT_JSON_SET] = "UPDATE events SET json = ?2 WHERE id = ?1",
    [Q_REACTION_ADD] = "INSERT OR IGNORE INTO reactions (message_id, emoji, "
		       "user_id, ts_ms, event_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_REACTION_DEL] = "DELETE FROM reactions WHERE message_id = ?1 "
		       "AND emoji = ?2 AND user_id = ?3",
    [Q_REACTION_COUNT] = "SELECT count(*) FROM reactions "
			 "WHERE message_id = ?1 AND emoji = ?2",
    /* distinct emoji on the message, and whether ?2 is one of them */
    [Q_REACTION_KINDS] = "SELECT count(DISTINCT emoji), "
			 "coalesce(max(emoji = ?2), 0) FROM reactions "
			 "WHERE message_id = ?1",
    [Q_REACTIONS_DROP] = "DELETE FROM reactions WHERE message_id = ?1",
    /* each message's reactions in an id range of a room, each emoji in
     * the order it was first used there */
    [Q_REACTIONS_PAGE] =
	"SELECT r.message_id, r.emoji, count(*), max(r.user_id = ?4), "
	"min(r.event_id) AS first FROM reactions r "
	"JOIN events e ON e.id = r.message_id "
	"WHERE e.room_id = ?1 AND r.message_id BETWEEN ?2 AND ?3 "
	"GROUP BY r.message_id, r.emoji ORDER BY r.message_id, first",
    /* merges the index's segments, dropping what deletes left behind */
    [Q_FTS_OPTIMIZE] = "INSERT INTO events_search (events_search) "
		       "VALUES ('optimize')",
    /* the text and its files' names (migration 010's triggers agree) */
    [Q_FTS_INDEX] =
	"INSERT INTO events_search (rowid, text) "
	"SELECT id, natter_search_text(text || coalesce("
	"(SELECT ' ' || group_concat(json_extract(f.value, "
	"'$.name'), ' ') FROM json_each(events.json, '$.files') f), "
	"'')) FROM events WHERE id >= ?1 AND text IS NOT NULL",
    [Q_LAST_ID] = "SELECT max(coalesce((SELECT seq FROM sqlite_sequence "
		  "WHERE name = 'events'), 0), "
		  "coalesce((SELECT max(id) FROM events), 0))",
    [Q_SESSIONS_PURGE] = "DELETE FROM sessions WHERE expires_ms <= ?1",
    [Q_USER_ADD] = "INSERT INTO users (username, display_name, pwhash, "
		   "created_ms, admin) VALUES (?1, ?1, ?2, ?3, "
		   "NOT EXISTS (SELECT 1 FROM users))",
    [Q_USER_BY_NAME] = "SELECT id, username, display_name, settings, pwhash, "
		       "created_ms, admin, disabled_ms IS NOT NULL, "
		       "disabled_reason, avatar FROM users WHERE username = ?1",
    [Q_USER_BY_ID] = "SELECT id, username, display_name, settings, pwhash, "
		     "created_ms, admin, disabled_ms IS NOT NULL, "
		     "disabled_reason, avatar FROM users WHERE id = ?1",
    [Q_USER_UPDATE] = "UPDATE users SET "
		      "display_name = coalesce(?2, display_name), "
		      "settings = coalesce(?3, settings) WHERE id = ?1",
    [Q_SESSION_ADD] = "INSERT INTO sessions (hash, user_id, created_ms, "
		      "expires_ms) VALUES (?1, ?2, ?3, ?4)",
    [Q_SESSION_GET] = "SELECT user_id, expires_ms FROM sessions "
		      "WHERE hash = ?1",
    [Q_SESSION_USER] = "SELECT s.user_id, s.expires_ms, u.username, "
		       "u.disabled_ms IS NOT NULL FROM sessions s JOIN users u "
		       "ON u.id = s.user_id "
		       "WHERE s.hash = ?1",
    [Q_SESSION_DEL] = "DELETE FROM sessions WHERE hash = ?1",
    [Q_SESSION_DEL_EXPIRED] = "DELETE FROM sessions "
			      "WHERE hash = ?1 AND expires_ms <= ?2",
    /* user 0: every room; else the public ones and the user's own */
    [Q_ROOMS_LIST] =
	"SELECT x.id, x.name, x.topic, x.created_ms, x.members, x.joined, "
	"x.kind, x.people, x.marker, "
	"CASE WHEN x.joined THEN (SELECT count(*) FROM events e "
	"WHERE e.room_id = x.id AND e.id > x.marker AND e.type = 'message' "
	"AND e.user_id <> ?1) ELSE 0 END, "
	"CASE WHEN x.joined THEN (SELECT count(*) FROM mentions m "
	"JOIN events e ON e.id = m.event_id WHERE m.user_id = ?1 "
	"AND e.room_id = x.id AND e.id > x.marker AND e.user_id <> ?1) "
	"ELSE 0 END, x.joined_id "
	"FROM (SELECT r.id, r.name, r.topic, r.created_ms, "
	"(SELECT count(*) FROM members m WHERE m.room_id = r.id) AS members, "
	"EXISTS (SELECT 1 FROM members m "
	"WHERE m.room_id = r.id AND m.user_id = ?1) AS joined, "
	"r.kind, CASE WHEN r.kind = 'dm' THEN "
	"(SELECT group_concat(name, ',') FROM (SELECT u.username "
	"AS name FROM members m JOIN users u ON u.id = m.user_id "
	"WHERE m.room_id = r.id AND m.user_id <> ?1 "
	"ORDER BY u.username)) END AS people, "
	/* the read marker: the user's own, else their newest join of the
	 * room (what came before is not theirs to read) */
	"CASE WHEN ?1 = 0 THEN 0 ELSE coalesce("
	"(SELECT event_id FROM read_markers "
	"WHERE user_id = ?1 AND room_id = r.id), "
	"(SELECT max(id) FROM events WHERE room_id = r.id "
	"AND user_id = ?1 AND type IN ('join', 'room', 'dm')), "
	"0) END AS marker, "
	/* their newest join (what a client needs to tell an @room of
	 * before it from one meant for them) */
	"CASE WHEN ?1 = 0 THEN 0 ELSE coalesce("
	"(SELECT max(id) FROM events WHERE room_id = r.id "
	"AND user_id = ?1 AND type IN ('join', 'room', 'dm')), "
	"0) END AS joined_id "
	"FROM rooms r WHERE ?1 = 0 OR r.kind = 'public' OR joined) x "
	"ORDER BY x.name",
    [Q_INVITE_ADD] = "INSERT INTO invites (room_id, user_id, invited_by, "
		     "created_ms) VALUES (?1, ?2, ?3, ?4) "
		     "ON CONFLICT (room_id, user_id) DO NOTHING",
    [Q_INVITES_LIST] = "SELECT r.name, r.kind, coalesce(u.username, ''), "
		       "i.created_ms FROM invites i "
		       "JOIN rooms r ON r.id = i.room_id "
		       "LEFT JOIN users u ON u.id = i.invited_by "
		       "WHERE i.user_id = ?1 ORDER BY i.created_ms, r.name",
    /* forward only: the answer is the marker after the call */
    [Q_READ_SET] = "INSERT INTO read_markers (user_id, room_id, event_id) "
		   "VALUES (?1, ?2, ?3) ON CONFLICT (user_id, room_id) "
		   "DO UPDATE SET event_id = max(event_id, excluded.event_id) "
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
		       "WHERE m.room_id = ?1 ORDER BY u.username",
    [Q_MEMBERS_ALL] = "SELECT room_id, user_id FROM members",
    [Q_USERS_ALL] = "SELECT id, username FROM users",
    [Q_HISTORY_ASC] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE room_id = ?1 "
	"AND id > ?2 AND id < ?3 ORDER BY id ASC LIMIT ?4",
    [Q_HISTORY_DESC] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE room_id = ?1 "
	"AND id > ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
    [Q_SEARCH] =
	"SELECT e.id, e.type, e.room_id, e.user_id, e.json, e.subject_id "
	"FROM events_search f "
	"JOIN events e ON e.id = f.rowid "
	"WHERE events_search MATCH ?1 AND f.rowid < ?4 AND e.room_id IN "
	"(SELECT room_id FROM members WHERE user_id = ?2) "
	"ORDER BY f.rowid DESC LIMIT ?3",
    /* a superset: every room the user is in now or acted in since the
     * cursor (a room left since then has the leave); filtered in C */
    [Q_EVENTS_AFTER] =
	"SELECT id, type, room_id, user_id, json, subject_id FROM events "
	"WHERE id > ?1 AND (room_id IN "
	"(SELECT room_id FROM members WHERE user_id = ?2) "
	"OR room_id IN (SELECT room_id FROM events "
	"WHERE user_id = ?2 AND id > ?1) "
	"OR room_id IN (SELECT room_id FROM events "
	"WHERE subject_id = ?2 AND id > ?1)) ORDER BY id",
    [Q_READ_BEGIN] = "BEGIN",
    [Q_USER_ROOMS] = "SELECT room_id FROM members WHERE user_id = ?1",
    /* the events that changed the user's own membership: theirs, and
     * those acting on them (subject_id) */
    [Q_USER_EVENTS_DESC] = "SELECT room_id, type FROM events "
			   "WHERE coalesce(subject_id, user_id) = ?1 "
			   "AND id > ?2 ORDER BY id DESC",
    [Q_USER_ADMIN_SET] = "UPDATE users SET admin = ?2 WHERE id = ?1",
    /* 0 none, 1 member, 2 moderator, 3 owner (enum store_role) */
    [Q_ROOM_ROLE] =
	"SELECT CASE WHEN m.user_id IS NULL THEN 0 "
	"WHEN r.created_by = ?2 THEN 3 "
	"WHEN d.user_id IS NOT NULL THEN 2 ELSE 1 END "
	"FROM rooms r "
	"LEFT JOIN members m ON m.room_id = r.id AND m.user_id = ?2 "
	"LEFT JOIN moderators d ON d.room_id = r.id "
	"AND d.user_id = ?2 WHERE r.id = ?1",
    [Q_MODERATOR_ADD] = "INSERT OR IGNORE INTO moderators (room_id, user_id, "
			"granted_by, granted_ms) SELECT ?1, ?2, ?3, ?4 "
			"WHERE EXISTS (SELECT 1 FROM members "
			"WHERE room_id = ?1 AND user_id = ?2)",
    [Q_BAN_GET] = "SELECT 1 FROM bans WHERE room_id = ?1 AND user_id = ?2",
    [Q_BAN_ADD] = "INSERT OR REPLACE INTO bans (room_id, user_id, by_id, "
		  "reason, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_BAN_DEL] = "DELETE FROM bans WHERE room_id = ?1 AND user_id = ?2",
    [Q_BANS_LIST] = "SELECT u.username, coalesce(b2.username, ''), "
		    "b.reason, b.created_ms FROM bans b "
		    "JOIN users u ON u.id = b.user_id "
		    "LEFT JOIN users b2 ON b2.id = b.by_id "
		    "WHERE b.room_id = ?1 ORDER BY u.username",
    [Q_MUTE_ADD] = "INSERT OR REPLACE INTO mutes (room_id, user_id, "
		   "until_ms, by_id, reason, created_ms) "
		   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_MUTE_DEL] = "DELETE FROM mutes WHERE room_id = ?1 AND user_id = ?2 "
		   "AND until_ms > ?3",
    [Q_MUTES_ACTIVE] = "SELECT room_id, user_id, until_ms FROM mutes "
		       "WHERE until_ms > ?1",
    [Q_USER_DISABLE] = "UPDATE users SET disabled_ms = ?2, "
		       "disabled_reason = coalesce(?3, '') WHERE id = ?1",
    [Q_USER_SESSIONS_DEL] = "DELETE FROM sessions WHERE user_id = ?1",
    [Q_AUDIT_ADD] = "INSERT INTO audit (ts_ms, actor, action, target, room, "
		    "reason, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_AUDIT_LIST] = "SELECT id, ts_ms, actor, action, target, room, reason, "
		     "detail FROM audit WHERE id < ?1 ORDER BY id DESC "
		     "LIMIT ?2",
    [Q_USER_PWHASH_SET] = "UPDATE users SET pwhash = ?2 WHERE id = ?1",
    [Q_PRESENCE_SET] = "UPDATE users SET status = ?2, status_text = ?3 "
		       "WHERE id = ?1",
    [Q_LAST_SEEN_SET] = "UPDATE users SET last_seen_ms = ?2 WHERE id = ?1",
    [Q_PRESENCE_ALL] = "SELECT id, status, status_text, last_seen_ms "
		       "FROM users WHERE status <> 'online' OR "
		       "status_text IS NOT NULL OR last_seen_ms IS NOT NULL",
    [Q_FILE_USE_ADD] = "INSERT OR IGNORE INTO file_uses (file_id, event_id, "
		       "room_id) SELECT id, ?2, ?3 FROM files WHERE id = ?1 "
		       "AND sha256 IS NOT NULL",
    [Q_FILE_USES_DEL] = "DELETE FROM file_uses WHERE event_id = ?1",
    [Q_FILE_ADD] = "INSERT INTO files (id, owner_id, length, received, name, "
		   "metadata, created_ms, expires_ms, sha256, type, width, "
		   "height) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
		   "?11, ?12)",
    [Q_FILE_GET] = "SELECT id, owner_id, length, received, name, metadata, "
		   "created_ms, expires_ms, sha256, type, width, height "
		   "FROM files WHERE id = ?1",
    [Q_FILE_OFFSET] = "UPDATE files SET received = ?2 WHERE id = ?1 AND "
		      "sha256 IS NULL",
    [Q_FILE_FINISH] =
	"UPDATE files SET received = ?6, length = ?6, created_ms = ?8, "
	"name = coalesce(?7, name), "
	"sha256 = ?2, type = ?3, width = ?4, height = ?5 "
	"WHERE id = ?1",
    [Q_FILE_DEL] = "DELETE FROM files WHERE id = ?1 RETURNING sha256",
    [Q_FILE_USAGE] = "SELECT coalesce(sum(length), 0) FROM files "
		     "WHERE owner_id = ?1",
    [Q_FILE_ACCESS] = "SELECT 1 FROM files f WHERE f.id = ?1 AND "
		      "(f.owner_id = ?2 OR EXISTS (SELECT 1 FROM file_uses u "
		      "JOIN members m ON m.room_id = u.room_id AND "
		      "m.user_id = ?2 WHERE u.file_id = f.id) OR EXISTS "
		      "(SELECT 1 FROM users a WHERE a.avatar = f.id))",
    [Q_FILE_BLOB_USED] = "SELECT 1 FROM files WHERE sha256 = ?1 LIMIT 1",
    [Q_FILES_EXPIRED] = "SELECT id FROM files f WHERE (sha256 IS NULL AND "
			"expires_ms <= ?1) OR (sha256 IS NOT NULL AND "
			"created_ms < ?2 AND NOT EXISTS (SELECT 1 FROM "
			"file_uses u WHERE u.file_id = f.id) AND NOT EXISTS "
			"(SELECT 1 FROM users a WHERE a.avatar = f.id)) "
			"LIMIT 256",
    [Q_USER_AVATAR_SET] = "UPDATE users SET avatar = ?2 WHERE id = ?1",
    [Q_MODERATOR_DEL] = "DELETE FROM moderators "
			"WHERE room_id = ?1 AND user_id = ?2",
    /* 3 owner, 2 moderator (enum store_role) */
    [Q_ROLES_ALL] = "SELECT id, created_by, 3 FROM rooms "
		    "WHERE created_by IS NOT NULL UNION ALL "
		    "SELECT room_id, user_id, 2 FROM moderators",
    [Q_ADMINS_ALL] = "SELECT 0, id, 3 FROM users WHERE admin",
};

/* A migration file: version 1 is schema.sql. */
struct migration {
	int version;
	char *path;
};

/* --- helpers -------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

char *sq_col_dup(sqlite3_stmt *s, int i)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	return xstrdup(t ? t : "");
}

/* Rebuild an event from a row (id, type, room_id, user_id, json) starting
 * at column 0. NULL if the row is not an event this build knows. */
struct event *sq_row_event(sqlite3_stmt *s)
{
	enum event_type t;
	const char *json = (const char *)sqlite3_column_text(s, 4);
	/* events.type holds the table's names: they are database format */
	if (evtype_parse((const char *)sqlite3_column_text(s, 1), &t) < 0 ||
	    !json)
		return NULL;
	struct event *ev =
	    event_new(sqlite3_column_int64(s, 0), t, sqlite3_column_int64(s, 2),
		      sqlite3_column_int64(s, 3), json,
		      (size_t)sqlite3_column_bytes(s, 4));
	/* column 5, when selected: the user the event acts on */
	if (sqlite3_column_count(s) > 5)
		event_subject_set(ev, sqlite3_column_int64(s, 5));
	return ev;
}

/* --- connections ---------------------------------------------------------- */

sqlite3_stmt *sq_stmt(struct conn *c, enum q q)
{
	if (!c->stmt[q] && sqlite3_prepare_v3(c->db, sql_text[q], -1,
					      SQLITE_PREPARE_PERSISTENT,
					      &c->stmt[q], NULL) != SQLITE_OK)
		return NULL;
	return c->stmt[q];
}

/* Ready a used statement for its next use (and drop borrowed bindings). */
void sq_stmt_done(sqlite3_stmt *s)
{
	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
}

/* Run a statement that takes no arguments and returns no rows. */
int sq_run(struct conn *c, enum q q)
{
	sqlite3_stmt *s = sq_stmt(c, q);
	if (!s)
		return sqlite3_errcode(c->db);
	int rc = sqlite3_step(s);
	sq_stmt_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void conn_close(struct conn *c)
{
	for (size_t i = 0; i < Q_COUNT; i++) {
		sqlite3_finalize(c->stmt[i]);
		c->stmt[i] = NULL;
	}
	if (c->db) {
		int rc = sqlite3_close(c->db);
		assert(rc == SQLITE_OK); /* every statement is finalized */
		(void)rc;
		c->db = NULL;
	}
}

/* natter_search_text(text): see search_index_text. */
static void search_text_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const char *text = (const char *)sqlite3_value_text(argv[0]);
	if (!text) {
		sqlite3_result_null(ctx);
		return;
	}
	size_t len = (size_t)sqlite3_value_bytes(argv[0]);
	if (!utf8_valid(text, len)) { /* the writer stores only UTF-8 */
		sqlite3_result_text(ctx, text, (int)len, SQLITE_TRANSIENT);
		return;
	}
	char *out = search_index_text(text, len);
	sqlite3_result_text(ctx, out, -1, free);
}

int sqlite_functions_register(sqlite3 *db)
{
	/* what the search index holds of a message (migration 005) */
	return sqlite3_create_function(db, "natter_search_text", 1,
				       SQLITE_UTF8 | SQLITE_DETERMINISTIC |
					   SQLITE_INNOCUOUS,
				       NULL, search_text_fn, NULL, NULL);
}

static int conn_open(struct conn *c, const struct store_config *cfg,
		     bool create, char *err, size_t errlen)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
		    (create ? SQLITE_OPEN_CREATE : 0);
	char pragmas[192];

	if (sqlite3_open_v2(cfg->path, &c->db, flags, NULL) != SQLITE_OK) {
		seterr(err, errlen, "cannot open database %s: %s", cfg->path,
		       c->db ? sqlite3_errmsg(c->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	if (sqlite_functions_register(c->db) != SQLITE_OK) {
		seterr(err, errlen, "%s: %s", cfg->path, sqlite3_errmsg(c->db));
		goto fail;
	}
	/* synchronous is per connection: every writer honours the setting.
	 * temp_store: the writer's savepoint per job keeps a statement
	 * journal, which SQLite spills to a temporary file past 64 KiB; a
	 * profile of 100 concurrent senders showed 2.5 of every 3.5 pwrite()s
	 * going there. In memory it costs no system call (it lives only for
	 * one batch). */
	/* secure_delete: what a delete or an update frees is overwritten
	 * with zeros, so that a deleted message's text leaves the file. */
	snprintf(pragmas, sizeof(pragmas),
		 "PRAGMA foreign_keys = ON; PRAGMA synchronous = %s; "
		 "PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON;",
		 cfg->sync_full ? "FULL" : "NORMAL");
	if (sqlite3_exec(c->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
		seterr(err, errlen, "%s: %s", cfg->path, sqlite3_errmsg(c->db));
		goto fail;
	}
	return 0;
fail:
	conn_close(c);
	return -1;
}

/* --- schema and migrations ------------------------------------------------ */

static char *file_read(const char *path, char *err, size_t errlen)
{
	struct buf b;
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	buf_init(&b);
	if (!f) {
		seterr(err, errlen, "cannot read %s: %s", path,
		       strerror(errno));
		goto fail;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	if (ferror(f)) {
		seterr(err, errlen, "cannot read %s: %s", path,
		       strerror(errno));
		goto fail;
	}
	fclose(f);
	buf_puts(&b, ""); /* an empty file is still a string */
	return b.data;
fail:
	if (f)
		fclose(f);
	buf_fini(&b);
	return NULL;
}

static int migration_cmp(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

static void migrations_free(struct migration *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].path);
	free(m);
}

/* "NNN-name.sql" -> NNN; -1 for any other file name. */
static int migration_version(const char *name)
{
	size_t len = strlen(name), i = 0;
	long v = 0;

	while (name[i] >= '0' && name[i] <= '9' && v < 100000)
		v = v * 10 + (name[i++] - '0');
	if (i == 0 || name[i] != '-' || len < i + 5 ||
	    strcmp(name + len - 4, ".sql") != 0)
		return -1;
	return (int)v;
}

/* The schema files in db_dir, as versions 1 (schema.sql), 2, 3 ... in
 * order, each readable, with no gap and no duplicate. */
static int migrations_scan(const char *db_dir, struct migration **out,
			   size_t *nout, char *err, size_t errlen)
{
	struct migration *m = NULL;
	size_t n = 0;
	struct buf path;
	DIR *d = NULL;
	struct dirent *de;

	buf_init(&path);
	buf_printf(&path, "%s/schema.sql", db_dir);
	FILE *f = fopen(path.data, "r");
	if (!f) {
		seterr(err, errlen, "cannot read %s: %s", path.data,
		       strerror(errno));
		goto fail;
	}
	fclose(f);
	m = xmalloc(sizeof(*m));
	m[n].version = 1;
	m[n++].path = xstrdup(path.data);

	path.len = 0;
	buf_printf(&path, "%s/migrations", db_dir);
	d = opendir(path.data);
	if (!d) {
		seterr(err, errlen, "cannot read directory %s: %s", path.data,
		       strerror(errno));
		goto fail;
	}
	while ((de = readdir(d))) {
		int v = migration_version(de->d_name);
		if (v < 0)
			continue;
		if (v < 2) {
			seterr(err, errlen,
			       "%s/%s: migrations are numbered from 002",
			       path.data, de->d_name);
			goto fail;
		}
		m = xrealloc(m, (n + 1) * sizeof(*m));
		m[n].version = v;
		m[n].path = xmalloc(path.len + strlen(de->d_name) + 2);
		sprintf(m[n++].path, "%s/%s", path.data, de->d_name);
	}
	closedir(d);
	d = NULL;
	qsort(m, n, sizeof(*m), migration_cmp);
	for (size_t i = 1; i < n; i++) {
		if (m[i].version == m[i - 1].version) {
			seterr(err, errlen, "%s and %s have the same number",
			       m[i - 1].path, m[i].path);
			goto fail;
		}
		if (m[i].version != (int)i + 1) {
			seterr(err, errlen, "%s: migration %03zu is missing",
			       path.data, i + 1);
			goto fail;
		}
	}
	if ((int)n < SCHEMA_REQUIRED) {
		seterr(err, errlen,
		       "%s: migration %03d is missing (this natterd needs "
		       "schema version %d)",
		       path.data, (int)n + 1, SCHEMA_REQUIRED);
		goto fail;
	}
	buf_fini(&path);
	*out = m;
	*nout = n;
	return 0;
fail:
	if (d)
		closedir(d);
	buf_fini(&path);
	migrations_free(m, n);
	return -1;
}

static int user_version(sqlite3 *db, int *v)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*v = sqlite3_column_int(s, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(s);
	return rc;
}

/* sqlite3_exec's message, or the connection's when it gave none. */
#define ERRMSG(c, msg) ((msg) ? (msg) : sqlite3_errmsg((c)->db))

/* Bring the database to the newest version in m[], in one transaction. */
static int migrate(struct conn *c, const char *dbpath,
		   const struct migration *m, size_t n, char *err,
		   size_t errlen)
{
	int known = m[n - 1].version, v = 0;
	char *sql = NULL, *msg = NULL;
	bool in_tx = false;

	for (int pass = 0; pass < 2; pass++) {
		if (user_version(c->db, &v) != SQLITE_OK) {
			seterr(err, errlen, "%s: %s", dbpath,
			       sqlite3_errmsg(c->db));
			goto fail;
		}
		if (v > known || v < 0) {
			seterr(err, errlen,
			       "%s: database schema version %d is newer than "
			       "this natterd supports (%d)",
			       dbpath, v, known);
			goto fail;
		}
		if (v == known)
			break;
		if (in_tx)
			break;
		/* Look again once we hold the write lock: another process
		 * may have migrated in between. */
		if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) !=
		    SQLITE_OK) {
			seterr(err, errlen, "%s: %s", dbpath, ERRMSG(c, msg));
			goto fail;
		}
		in_tx = true;
	}
	for (size_t i = 0; i < n && v < known; i++) {
		char pragma[64];
		if (m[i].version <= v)
			continue;
		sql = file_read(m[i].path, err, errlen);
		if (!sql)
			goto fail;
		if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
			seterr(err, errlen, "%s: applying %s: %s", dbpath,
			       m[i].path, ERRMSG(c, msg));
			goto fail;
		}
		free(sql);
		sql = NULL;
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d",
			 m[i].version);
		if (sqlite3_exec(c->db, pragma, NULL, NULL, &msg) !=
		    SQLITE_OK) {
			seterr(err, errlen, "%s: %s", dbpath, ERRMSG(c, msg));
			goto fail;
		}
		v = m[i].version;
	}
	if (in_tx &&
	    sqlite3_exec(c->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
		seterr(err, errlen, "%s: %s", dbpath, ERRMSG(c, msg));
		goto fail;
	}
	return 0;
fail:
	if (in_tx && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_free(msg);
	free(sql);
	return -1;
}

/* WAL, schema, stale sessions and the id counter, on the writer's
 * connection before its thread starts. */
static int writer_prepare(struct sq *st, const struct store_config *cfg,
			  const struct migration *m, size_t n, char *err,
			  size_t errlen)
{
	sqlite3 *db = st->w.db;
	sqlite3_stmt *jm = NULL, *s = NULL;
	bool reported = false;

	/* answers with the journal mode now in force */
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &jm,
			       NULL) != SQLITE_OK ||
	    sqlite3_step(jm) != SQLITE_ROW)
		goto fail;
	if (sqlite3_stricmp((const char *)sqlite3_column_text(jm, 0), "wal")) {
		seterr(err, errlen, "%s: cannot switch to WAL mode", cfg->path);
		reported = true;
		goto fail;
	}
	sqlite3_finalize(jm); /* a pending statement would block COMMIT */
	jm = NULL;
	if (migrate(&st->w, cfg->path, m, n, err, errlen) < 0) {
		reported = true;
		goto fail;
	}

	s = sq_stmt(&st->w, Q_SESSIONS_PURGE);
	if (!s)
		goto fail;
	sqlite3_bind_int64(s, 1, now_ms());
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	sq_stmt_done(s);

	s = sq_stmt(&st->w, Q_LAST_ID);
	if (!s || sqlite3_step(s) != SQLITE_ROW)
		goto fail;
	atomic_store(&st->last_id, sqlite3_column_int64(s, 0));
	st->next_id = atomic_load(&st->last_id) + 1;
	sq_stmt_done(s);
	return 0;
fail:
	if (!reported)
		seterr(err, errlen, "%s: %s", cfg->path, sqlite3_errmsg(db));
	sq_stmt_done(s);
	sqlite3_finalize(jm);
	return -1;
}

/* --- open and close ------------------------------------------------------- */

void sq_free(struct sq *st)
{
	if (st->started) {
		pthread_mutex_lock(&st->qmu);
		st->closing = true;
		pthread_cond_broadcast(&st->qcv);
		pthread_mutex_unlock(&st->qmu);
		pthread_join(st->thread, NULL);
	}
	assert(!st->qhead);
	for (size_t i = 0; i < st->nconns; i++)
		conn_close(&st->conns[i]);
	conn_close(&st->w);
	pthread_cond_destroy(&st->pcv);
	pthread_mutex_destroy(&st->pmu);
	pthread_mutex_destroy(&st->smu);
	free(st->sessions);
	pthread_cond_destroy(&st->qcv);
	pthread_mutex_destroy(&st->qmu);
	free(st->idle);
	free(st->conns);
	free(st->batch);
	free(st);
}

struct store *sqlite_store_open(const struct store_config *cfg, char *err,
				size_t errlen)
{
	struct sq *st = NULL;
	struct migration *m = NULL;
	size_t nm = 0;
	pthread_condattr_t ca;

	if (!cfg || !cfg->path || !cfg->db_dir) {
		seterr(err, errlen, "store: no database path or db_dir");
		return NULL;
	}
	if (!sqlite3_threadsafe()) {
		seterr(err, errlen, "SQLite was built without thread support");
		return NULL;
	}
	if (migrations_scan(cfg->db_dir, &m, &nm, err, errlen) < 0)
		return NULL;

	st = xcalloc(1, sizeof(*st));
	st->base.ops = &sq_ops;
	st->interval_ms = cfg->commit_interval_ms;
	st->batch_max = cfg->commit_batch_max ? cfg->commit_batch_max : 1;
	st->batch = xcalloc(st->batch_max, sizeof(*st->batch));
	st->qtail = &st->qhead;
	pthread_mutex_init(&st->qmu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->qcv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&st->pmu, NULL);
	pthread_mutex_init(&st->smu, NULL);
	st->session_ms = cfg->session_cache_ms;
	if (st->session_ms)
		st->sessions = xcalloc(SESSION_SLOTS, sizeof(*st->sessions));
	pthread_cond_init(&st->pcv, NULL);

	if (conn_open(&st->w, cfg, true, err, errlen) < 0)
		goto fail;
	if (writer_prepare(st, cfg, m, nm, err, errlen) < 0)
		goto fail;

	st->nconns = cfg->readers < 1 ? 1 : cfg->readers;
	if (st->nconns > READERS_MAX)
		st->nconns = READERS_MAX;
	st->conns = xcalloc(st->nconns, sizeof(*st->conns));
	st->idle = xcalloc(st->nconns, sizeof(*st->idle));
	for (size_t i = 0; i < st->nconns; i++) {
		if (conn_open(&st->conns[i], cfg, false, err, errlen) < 0)
			goto fail;
		st->idle[st->nidle++] = &st->conns[i];
	}

	if (pthread_create(&st->thread, NULL, sq_writer_main, st) != 0) {
		seterr(err, errlen, "store: cannot start the writer thread");
		goto fail;
	}
	st->started = true;
	migrations_free(m, nm);
	return &st->base;
fail:
	migrations_free(m, nm);
	sq_free(st);
	return NULL;
}

void sq_close(struct store *base)
{
	sq_free(sq_of(base));
}

/* --- the connection pool -------------------------------------------------- */

struct conn *sq_pool_get(struct sq *st)
{
	struct conn *c;

	pthread_mutex_lock(&st->pmu);
	while (!st->nidle)
		pthread_cond_wait(&st->pcv, &st->pmu);
	c = st->idle[--st->nidle];
	pthread_mutex_unlock(&st->pmu);
	return c;
}

void sq_pool_put(struct sq *st, struct conn *c)
{
	pthread_mutex_lock(&st->pmu);
	st->idle[st->nidle++] = c;
	pthread_cond_signal(&st->pcv);
	pthread_mutex_unlock(&st->pmu);
}

int sq_status_of(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return STORE_EXISTS;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return STORE_NOTFOUND;
	default:
		return STORE_ERR;
	}
}

static bool sq_reachable(struct store *base)
{
	(void)base;
	return true; /* a file: a failure is STORE_ERR or STORE_FULL */
}

/* The SQLite backend's table (store/backend.h). */
const struct store_ops sq_ops = {
    .name = "sqlite",
    .reachable = sq_reachable,
    .close = sq_close,
    .write_submit = sq_write_submit,
    .set_commit_hook = sq_set_commit_hook,
    .set_user_hook = sq_set_user_hook,
    .last_event_id = sq_last_event_id,
    .user_create = sq_user_create,
    .user_by_name = sq_user_by_name,
    .user_by_id = sq_user_by_id,
    .user_update = sq_user_update,
    .user_avatar_set = sq_user_avatar_set,
    .session_create = sq_session_create,
    .session_lookup = sq_session_lookup,
    .session_delete = sq_session_delete,
    .session_user = sq_session_user,
    .room_by_name = sq_room_by_name,
    .rooms_list = sq_rooms_list,
    .invite_add = sq_invite_add,
    .invites_list = sq_invites_list,
    .users_each = sq_users_each,
    .read_marker_set = sq_read_marker_set,
    .room_members = sq_room_members,
    .is_member = sq_is_member,
    .members_each = sq_members_each,
    .presence_set = sq_presence_set,
    .last_seen_set = sq_last_seen_set,
    .presence_each = sq_presence_each,
    .user_admin_set = sq_user_admin_set,
    .room_role = sq_room_role,
    .moderator_set = sq_moderator_set,
    .ban_set = sq_ban_set,
    .bans_list = sq_bans_list,
    .mute_set = sq_mute_set,
    .mutes_each = sq_mutes_each,
    .user_disable = sq_user_disable,
    .roles_each = sq_roles_each,
    .user_password_set = sq_user_password_set,
    .audit_add = sq_audit_add,
    .audit_list = sq_audit_list,
    .sample_add = sq_sample_add,
    .samples_prune = sq_samples_prune,
    .stats = sq_stats,
    .rooms_created = sq_rooms_created,
    .users_search = sq_users_search,
    .history = sq_history,
    .reactions = sq_reactions,
    .search = sq_search,
    .events_after = sq_events_after,
    .file_create = sq_file_create,
    .file_get = sq_file_get,
    .file_offset_set = sq_file_offset_set,
    .file_finish = sq_file_finish,
    .file_delete = sq_file_delete,
    .file_usage = sq_file_usage,
    .file_access = sq_file_access,
    .file_blob_used = sq_file_blob_used,
    .files_sweep = sq_files_sweep,
};
