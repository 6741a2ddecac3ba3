/* ctl: natterctl's subcommands (see ctl.h). Account changes go through
 * store.h; the file-level work (backup, export, import, listings) uses
 * SQLite directly, each in one transaction or snapshot, with a busy
 * timeout so that it waits for natterd's writer rather than failing. */
#define _GNU_SOURCE /* asprintf, getline */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "core/auth.h"
#include "ctl/ctl.h"
#include "store/store.h"
#include "store/sqlite/sqlfn.h"
#include "util/util.h"

#define BUSY_MS 10000
#define PASSWORD_LINE_MAX 4096

static int fail(int code, const char *fmt, ...)
{
	va_list ap;
	fputs("natterctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* --- accounts, through the store ------------------------------------------ */

static struct store *open_store(struct ctl *c)
{
	char err[256];
	struct store_config sc = {.path = c->db,
				  .db_dir = c->db_dir,
				  .sync_full = true,
				  .commit_batch_max = 64,
				  .readers = 1};
	struct store *st = store_open(&sc, err, sizeof(err));
	if (!st)
		fail(CTL_EDB, "cannot open the database %s: %s", c->db, err);
	return st;
}

static void audit(struct store *st, const char *action, const char *target,
		  const char *reason)
{
	struct store_audit a = {.actor = "natterctl",
				.action = (char *)action,
				.target = (char *)target,
				.reason = (char *)reason};
	if (store_audit_add(st, &a) != STORE_OK)
		fail(CTL_EDB, "warning: the audit row for %s was not written",
		     action);
}

/* The password: the first line of --password-file or of stdin, without
 * its newline. 0, or an exit status after saying why. */
static int password_read(struct ctl *c, char *pw, size_t cap)
{
	FILE *f = c->in;
	if (c->password_file) {
		f = fopen(c->password_file, "r");
		if (!f)
			return fail(CTL_EIO, "cannot read %s: %s",
				    c->password_file, strerror(errno));
	} else if (isatty(fileno(f))) {
		fputs("password: ", stderr);
	}
	bool got = fgets(pw, (int)cap, f) != NULL;
	if (f != c->in)
		fclose(f);
	if (!got)
		return fail(CTL_EINPUT, "no password given (stdin or "
					"--password-file)");
	pw[strcspn(pw, "\r\n")] = '\0';
	size_t n = strlen(pw);
	if (n < AUTH_PASSWORD_MIN || n > AUTH_PASSWORD_MAX ||
	    !utf8_valid(pw, n)) {
		secure_zero(pw, cap);
		return fail(
		    CTL_EINPUT,
		    "a password is %d to %d bytes of UTF-8, on one line",
		    AUTH_PASSWORD_MIN, AUTH_PASSWORD_MAX);
	}
	return 0;
}

/* The Argon2id hash of a password read as password_read says. */
static int password_hash(struct ctl *c, char out[AUTH_HASH_MAX])
{
	char pw[PASSWORD_LINE_MAX];
	int rc = password_read(c, pw, sizeof(pw));
	if (rc)
		return rc;
	struct auth_config ac = {.memory_kib = c->argon2_memory_kib,
				 .time_cost = c->argon2_time,
				 .parallelism = 1,
				 .fail_max = 1,
				 .fail_window_s = 1,
				 .hash_max = 1};
	struct auth *a = auth_new(&ac);
	rc = a && auth_password_hash(a, pw, strlen(pw), out) == 0
		 ? 0
		 : fail(CTL_EINPUT, "cannot hash the password");
	secure_zero(pw, sizeof(pw));
	auth_free(a);
	return rc;
}

int ctl_user_create(struct ctl *c, const char *name, bool admin)
{
	char hash[AUTH_HASH_MAX];
	int64_t id;
	if (!auth_username_valid(name))
		return fail(CTL_EINPUT,
			    "user names are 1-32 letters, digits, _ . or -");
	int rc = password_hash(c, hash);
	if (rc)
		return rc;
	struct store *st = open_store(c);
	if (!st)
		return CTL_EDB;
	rc = store_user_create(st, name, hash, &id);
	if (rc == STORE_EXISTS)
		rc = fail(CTL_ECONFLICT, "user %s exists", name);
	else if (rc != STORE_OK)
		rc = fail(CTL_EDB, "cannot create user %s", name);
	else if (admin && store_user_admin_set(st, id, true) != STORE_OK)
		rc = fail(CTL_EDB, "cannot make %s an admin", name);
	if (rc == CTL_OK) {
		audit(st, admin ? "create_admin" : "create", name, NULL);
		fprintf(c->out, "created user %s (id %" PRId64 ")\n", name, id);
	}
	secure_zero(hash, sizeof(hash));
	store_close(st);
	return rc;
}

/* Open the store and find name: the store (caller closes) and *u, or NULL
 * after saying why (*code). */
static struct store *open_user(struct ctl *c, const char *name,
			       struct store_user *u, int *code)
{
	struct store *st = open_store(c);
	*code = CTL_EDB;
	if (!st)
		return NULL;
	int rc = store_user_by_name(st, name, u);
	if (rc == STORE_OK)
		return st;
	*code = rc == STORE_NOTFOUND
		    ? fail(CTL_ENOTFOUND, "no user %s", name)
		    : fail(CTL_EDB, "cannot read user %s", name);
	store_close(st);
	return NULL;
}

int ctl_user_disable(struct ctl *c, const char *name, bool disabled,
		     const char *reason)
{
	struct store_user u;
	int code;
	if (reason && (!utf8_valid(reason, strlen(reason)) ||
		       utf8_count(reason, strlen(reason)) > 200))
		return fail(CTL_EINPUT, "a reason is at most 200 characters");
	struct store *st = open_user(c, name, &u, &code);
	if (!st)
		return code;
	code = CTL_OK;
	if (store_user_disable(st, u.id, disabled, reason) != STORE_OK)
		code = fail(CTL_EDB, "cannot change user %s", name);
	if (code == CTL_OK) {
		audit(st, disabled ? "disable" : "enable", u.username, reason);
		fprintf(c->out, "%s user %s\n",
			disabled ? "disabled" : "enabled", u.username);
	}
	store_user_fini(&u);
	store_close(st);
	return code;
}

int ctl_user_reset_password(struct ctl *c, const char *name)
{
	char hash[AUTH_HASH_MAX];
	struct store_user u;
	int code;
	struct store *st = open_user(c, name, &u, &code);
	if (!st)
		return code;
	code = password_hash(c, hash);
	if (code == CTL_OK &&
	    store_user_password_set(st, u.id, hash) != STORE_OK)
		code = fail(CTL_EDB, "cannot change the password of %s", name);
	if (code == CTL_OK) {
		audit(st, "reset_password", u.username, NULL);
		fprintf(c->out, "new password for %s; its sessions ended\n",
			u.username);
	}
	secure_zero(hash, sizeof(hash));
	store_user_fini(&u);
	store_close(st);
	return code;
}

int ctl_user_admin(struct ctl *c, const char *name, bool admin)
{
	struct store_user u;
	int code;
	struct store *st = open_user(c, name, &u, &code);
	if (!st)
		return code;
	code = CTL_OK;
	if (store_user_admin_set(st, u.id, admin) != STORE_OK)
		code = fail(CTL_EDB, "cannot change user %s", name);
	if (code == CTL_OK) {
		audit(st, admin ? "grant_admin" : "revoke_admin", u.username,
		      NULL);
		fprintf(c->out, "%s is %san admin\n", u.username,
			admin ? "" : "no longer ");
	}
	store_user_fini(&u);
	store_close(st);
	return code;
}

/* --- the file itself ---------------------------------------------------- */

/* An existing natter database, opened directly (read-only unless rw). */
static sqlite3 *open_db(struct ctl *c, bool rw)
{
	sqlite3 *db = NULL;
	if (access(c->db, F_OK) != 0) {
		fail(CTL_EDB, "no database %s", c->db);
		return NULL;
	}
	int flags = rw ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
	if (sqlite3_open_v2(c->db, &db, flags, NULL) != SQLITE_OK) {
		fail(CTL_EDB, "cannot open %s: %s", c->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, BUSY_MS);
	sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	if (sqlite_functions_register(db) != SQLITE_OK) {
		fail(CTL_EDB, "%s: %s", c->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static int db_fail(sqlite3 *db, const char *what)
{
	return fail(CTL_EDB, "%s: %s", what, sqlite3_errmsg(db));
}

int ctl_room_list(struct ctl *c)
{
	sqlite3 *db = open_db(c, false);
	sqlite3_stmt *s = NULL;
	int rc, code = CTL_OK;
	if (!db)
		return CTL_EDB;
	if (sqlite3_prepare_v2(
		db,
		"SELECT r.name, (SELECT count(*) FROM members m "
		"WHERE m.room_id = r.id), (SELECT count(*) FROM events e "
		"WHERE e.room_id = r.id), coalesce(u.username, '-'), r.topic "
		"FROM rooms r LEFT JOIN users u ON u.id = r.created_by "
		"ORDER BY r.name",
		-1, &s, NULL) != SQLITE_OK) {
		code = db_fail(db, "cannot list rooms");
		goto out;
	}
	fprintf(c->out, "%-32s %8s %10s %-32s %s\n", "ROOM", "MEMBERS",
		"EVENTS", "OWNER", "TOPIC");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fprintf(c->out, "%-32s %8lld %10lld %-32s %s\n",
			sqlite3_column_text(s, 0),
			(long long)sqlite3_column_int64(s, 1),
			(long long)sqlite3_column_int64(s, 2),
			sqlite3_column_text(s, 3), sqlite3_column_text(s, 4));
	if (rc != SQLITE_DONE)
		code = db_fail(db, "cannot list rooms");
out:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return code;
}

/* One statement bound to (id) or (name), stepped to its end. */
static int run_bound(sqlite3 *db, const char *sql, int64_t id, const char *t)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return rc;
	if (t)
		sqlite3_bind_text(s, 1, t, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int ctl_room_delete(struct ctl *c, const char *name, const char *reason)
{
	sqlite3 *db;
	sqlite3_stmt *s = NULL;
	int64_t id = 0, events = 0;
	char canon[33] = "";
	int code = CTL_EDB;

	if (reason && strlen(reason) > 500)
		return fail(CTL_EINPUT, "the reason is longer than 500 bytes");
	if (!strcasecmp(name, "lobby"))
		return fail(CTL_EINPUT, "the lobby cannot be deleted: every "
					"account starts in it");
	db = open_db(c, true);
	if (!db)
		return CTL_EDB;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		code = db_fail(db, "cannot begin");
		goto out;
	}
	if (sqlite3_prepare_v2(db,
			       "SELECT id, name, (SELECT count(*) FROM events "
			       "e WHERE e.room_id = r.id) FROM rooms r WHERE "
			       "name = ?1 COLLATE NOCASE",
			       -1, &s, NULL) != SQLITE_OK) {
		code = db_fail(db, "cannot read the room");
		goto rollback;
	}
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		id = sqlite3_column_int64(s, 0);
		snprintf(canon, sizeof(canon), "%s", sqlite3_column_text(s, 1));
		events = sqlite3_column_int64(s, 2);
	}
	sqlite3_finalize(s);
	s = NULL;
	if (!id) {
		code = fail(CTL_ENOTFOUND, "no room %s", name);
		goto rollback;
	}
	/* its files stay while another message (or an avatar) uses them;
	 * natterd's sweep removes the rest; the events' mentions and
	 * reactions, and the room's members, roles, bans, mutes, invitations
	 * and read markers go by their foreign keys */
	if (run_bound(db, "DELETE FROM file_uses WHERE room_id = ?1", id,
		      NULL) != SQLITE_OK ||
	    run_bound(db, "DELETE FROM events WHERE room_id = ?1", id, NULL) !=
		SQLITE_OK ||
	    run_bound(db, "DELETE FROM rooms WHERE id = ?1", id, NULL) !=
		SQLITE_OK) {
		code = db_fail(db, "cannot delete the room");
		goto rollback;
	}
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO audit (ts_ms, actor, action, "
			       "target, room, reason, detail) VALUES (?1, "
			       "'natterctl', 'delete_room', '', ?2, ?3, ?4)",
			       -1, &s, NULL) != SQLITE_OK) {
		code = db_fail(db, "cannot write the audit log");
		goto rollback;
	}
	char detail[48];
	snprintf(detail, sizeof(detail), "%lld events", (long long)events);
	sqlite3_bind_int64(s, 1, now_ms());
	sqlite3_bind_text(s, 2, canon, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, reason ? reason : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, detail, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	s = NULL;
	if (rc != SQLITE_DONE) {
		code = db_fail(db, "cannot write the audit log");
		goto rollback;
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		code = db_fail(db, "cannot commit");
		goto rollback;
	}
	fprintf(c->out, "deleted room %s (%lld events)\n", canon,
		(long long)events);
	code = CTL_OK;
	goto out;
rollback:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return code;
}

int ctl_backup(struct ctl *c, const char *file)
{
	sqlite3 *src = NULL, *dst = NULL;
	sqlite3_backup *b = NULL;
	int code = CTL_OK;
	if (access(file, F_OK) == 0)
		return fail(CTL_ECONFLICT, "%s exists; not overwriting it",
			    file);
	src = open_db(c, false);
	if (!src)
		return CTL_EDB;
	if (sqlite3_open_v2(file, &dst,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			    NULL) != SQLITE_OK) {
		code = fail(CTL_EIO, "cannot create %s: %s", file,
			    sqlite3_errmsg(dst));
		goto out;
	}
	/* One step copies every page inside one read transaction: a
	 * snapshot, however much natterd writes meanwhile (WAL lets it). */
	b = sqlite3_backup_init(dst, "main", src, "main");
	int rc = b ? sqlite3_backup_step(b, -1) : SQLITE_ERROR;
	for (int tries = 0;
	     (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 100;
	     tries++) {
		sqlite3_sleep(100);
		rc = sqlite3_backup_step(b, -1);
	}
	if (sqlite3_backup_finish(b) != SQLITE_OK || rc != SQLITE_DONE) {
		code = fail(CTL_EDB, "backup failed: %s", sqlite3_errmsg(dst));
		goto out;
	}
	b = NULL;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(dst, "PRAGMA integrity_check", -1, &s, NULL) !=
		SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(s, 0), "ok") != 0)
		code =
		    fail(CTL_EDB, "the copy in %s fails integrity_check", file);
	sqlite3_finalize(s);
	if (code == CTL_OK)
		fprintf(c->out, "backup of %s written to %s\n", c->db, file);
out:
	sqlite3_close(dst);
	sqlite3_close(src);
	if (code != CTL_OK && dst)
		unlink(file);
	return code;
}

/* --- export and import ------------------------------------------------------
 */

/* The tables exported, in an order that import can insert them in, with
 * the columns each has (import accepts only these). "%s" in where is the
 * room filter's place (the room's id is ?1). */
static const struct table {
	const char *name;
	const char *cols;
	const char *where_room; /* NULL: the table has no room */
} tables[] = {
    {"user",
     "id, username, display_name, settings, created_ms, admin, disabled_ms, "
     "disabled_reason, pwhash",
     "id IN (SELECT user_id FROM members WHERE room_id = ?1 UNION "
     "SELECT user_id FROM events WHERE room_id = ?1 UNION "
     "SELECT subject_id FROM events WHERE room_id = ?1 UNION "
     "SELECT created_by FROM rooms WHERE id = ?1 UNION "
     "SELECT granted_by FROM moderators WHERE room_id = ?1 UNION "
     "SELECT by_id FROM bans WHERE room_id = ?1)"},
    {"room", "id, name, topic, created_ms, created_by", "id = ?1"},
    {"member", "room_id, user_id, joined_ms", "room_id = ?1"},
    {"moderator", "room_id, user_id, granted_by, granted_ms", "room_id = ?1"},
    {"ban", "room_id, user_id, by_id, reason, created_ms", "room_id = ?1"},
    {"event",
     "id, room_id, type, user_id, ts_ms, client_id, text, json, target_id, "
     "subject_id",
     "room_id = ?1"},
    {"reaction", "message_id, emoji, user_id, event_id, ts_ms",
     "message_id IN (SELECT id FROM events WHERE room_id = ?1)"},
};

static const char *table_sql(const char *kind)
{
	static const char *const names[][2] = {
	    {"user", "users"},	      {"room", "rooms"},
	    {"member", "members"},    {"moderator", "moderators"},
	    {"ban", "bans"},	      {"event", "events"},
	    {"reaction", "reactions"}};
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (strcmp(names[i][0], kind) == 0)
			return names[i][1];
	return NULL;
}

/* One row as {"kind": kind, column: value...}, a line on out. */
static int row_write(FILE *out, sqlite3_stmt *s, const char *kind, bool secrets)
{
	json_t *o = json_pack("{s:s}", "kind", kind);
	for (int i = 0; i < sqlite3_column_count(s); i++) {
		const char *col = sqlite3_column_name(s, i);
		json_t *v;
		if (!secrets && strcmp(col, "pwhash") == 0)
			continue;
		switch (sqlite3_column_type(s, i)) {
		case SQLITE_INTEGER:
			v = json_integer(sqlite3_column_int64(s, i));
			break;
		case SQLITE_FLOAT:
			v = json_real(sqlite3_column_double(s, i));
			break;
		case SQLITE_TEXT:
			v = json_stringn(
			    (const char *)sqlite3_column_text(s, i),
			    (size_t)sqlite3_column_bytes(s, i));
			break;
		default:
			v = json_null();
		}
		json_object_set_new(o, col, v ? v : json_null());
	}
	int rc = json_dumpf(o, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return rc < 0 || fputc('\n', out) == EOF ? -1 : 0;
}

int ctl_export(struct ctl *c, const char *room, bool secrets)
{
	sqlite3 *db = open_db(c, false);
	int64_t room_id = 0;
	int code = CTL_OK;
	if (!db)
		return CTL_EDB;
	/* one snapshot for every table */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		code = db_fail(db, "cannot read");
		goto out;
	}
	if (room) {
		sqlite3_stmt *s = NULL;
		sqlite3_prepare_v2(db,
				   "SELECT id FROM rooms WHERE name = ?1 "
				   "COLLATE NOCASE",
				   -1, &s, NULL);
		sqlite3_bind_text(s, 1, room, -1, SQLITE_STATIC);
		if (s && sqlite3_step(s) == SQLITE_ROW)
			room_id = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
		if (!room_id) {
			code = fail(CTL_ENOTFOUND, "no room %s", room);
			goto out;
		}
	}
	for (size_t t = 0; t < ARRAY_LEN(tables) && code == CTL_OK; t++) {
		char sql[1024];
		snprintf(sql, sizeof(sql),
			 "SELECT %s FROM %s%s%s ORDER BY 1, 2", tables[t].cols,
			 table_sql(tables[t].name), room ? " WHERE " : "",
			 room ? tables[t].where_room : "");
		sqlite3_stmt *s = NULL;
		if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
			code = db_fail(db, "cannot read");
			break;
		}
		if (room)
			sqlite3_bind_int64(s, 1, room_id);
		int rc;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			if (row_write(c->out, s, tables[t].name, secrets) < 0) {
				code = fail(CTL_EIO, "cannot write: %s",
					    strerror(errno));
				break;
			}
		if (code == CTL_OK && rc != SQLITE_DONE)
			code = db_fail(db, "cannot read");
		sqlite3_finalize(s);
	}
	if (code == CTL_OK && fflush(c->out) != 0)
		code = fail(CTL_EIO, "cannot write: %s", strerror(errno));
out:
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return code;
}

/* Insert one exported line: 0, or an exit status after saying why. */
static int line_import(sqlite3 *db, json_t *o, size_t lineno)
{
	const char *kind = json_string_value(json_object_get(o, "kind"));
	const struct table *t = NULL;
	for (size_t i = 0; kind && i < ARRAY_LEN(tables); i++)
		if (strcmp(tables[i].name, kind) == 0)
			t = &tables[i];
	if (!t)
		return fail(CTL_EINPUT, "line %zu: unknown kind", lineno);

	struct buf cols, vals;
	const char *key;
	json_t *v;
	int n = 0, code = CTL_OK;
	buf_init(&cols);
	buf_init(&vals);
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "kind") == 0)
			continue;
		/* only the table's own columns, by name */
		char pat[72];
		snprintf(pat, sizeof(pat), ", %s,", key);
		char list[400];
		snprintf(list, sizeof(list), ", %s,", t->cols);
		if (strlen(key) > 32 || !strstr(list, pat)) {
			code = fail(CTL_EINPUT, "line %zu: %s has no column %s",
				    lineno, kind, key);
			goto out;
		}
		buf_printf(&cols, "%s%s", n ? ", " : "", key);
		buf_printf(&vals, "%s?%d", n ? ", " : "", n + 1);
		n++;
	}
	if (strcmp(kind, "user") == 0 && !json_object_get(o, "pwhash")) {
		/* exported without secrets: no password works until an
		 * operator sets one (natterctl user reset-password) */
		buf_printf(&cols, "%spwhash", n ? ", " : "");
		buf_printf(&vals, "%s'!'", n ? ", " : "");
	}
	char *sql = NULL;
	if (asprintf(&sql, "INSERT INTO %s (%s) VALUES (%s)", table_sql(kind),
		     cols.data ? cols.data : "",
		     vals.data ? vals.data : "") < 0) {
		code = fail(CTL_EIO, "out of memory");
		goto out;
	}
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		code = fail(CTL_EINPUT, "line %zu: %s", lineno,
			    sqlite3_errmsg(db));
		free(sql);
		goto out;
	}
	free(sql);
	int i = 1;
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "kind") == 0)
			continue;
		if (json_is_integer(v))
			sqlite3_bind_int64(s, i, json_integer_value(v));
		else if (json_is_real(v))
			sqlite3_bind_double(s, i, json_real_value(v));
		else if (json_is_string(v))
			sqlite3_bind_text(s, i, json_string_value(v),
					  (int)json_string_length(v),
					  SQLITE_TRANSIENT);
		else if (!json_is_null(v)) {
			code = fail(CTL_EINPUT, "line %zu: %s is no scalar",
				    lineno, key);
			break;
		}
		i++;
	}
	if (code == CTL_OK && sqlite3_step(s) != SQLITE_DONE)
		code = fail(CTL_EINPUT, "line %zu: %s", lineno,
			    sqlite3_errmsg(db));
	sqlite3_finalize(s);
out:
	buf_fini(&cols);
	buf_fini(&vals);
	return code;
}

int ctl_import(struct ctl *c, const char *file)
{
	FILE *f = strcmp(file, "-") == 0 ? c->in : fopen(file, "r");
	if (!f)
		return fail(CTL_EIO, "cannot read %s: %s", file,
			    strerror(errno));
	/* the schema, as natterd would create it */
	struct store *st = open_store(c);
	if (!st) {
		if (f != c->in)
			fclose(f);
		return CTL_EDB;
	}
	store_close(st);
	sqlite3 *db = open_db(c, true);
	int code = CTL_OK;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	if (!db) {
		code = CTL_EDB;
		goto out;
	}
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		code = db_fail(db, "cannot write");
		goto out;
	}
	sqlite3_stmt *s = NULL;
	sqlite3_prepare_v2(db,
			   "SELECT (SELECT count(*) FROM users) + "
			   "(SELECT count(*) FROM events)",
			   -1, &s, NULL);
	bool empty = s && sqlite3_step(s) == SQLITE_ROW &&
		     sqlite3_column_int64(s, 0) == 0;
	sqlite3_finalize(s);
	if (!empty) {
		code = fail(CTL_ECONFLICT,
			    "%s is not empty: import needs a fresh database",
			    c->db);
		goto rollback;
	}
	/* the seed rooms (the lobby) come from the export, ids and all */
	if (sqlite3_exec(db, "DELETE FROM rooms", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		code = db_fail(db, "cannot write");
		goto rollback;
	}
	ssize_t len;
	while (code == CTL_OK && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len <= 1)
			continue;
		json_error_t jerr;
		json_t *o = json_loadb(line, (size_t)len, 0, &jerr);
		if (!json_is_object(o))
			code = fail(CTL_EINPUT, "line %zu: not a JSON object",
				    lineno);
		else
			code = line_import(db, o, lineno);
		json_decref(o);
	}
	if (code == CTL_OK && ferror(f))
		code = fail(CTL_EIO, "cannot read %s", file);
	/* the search index, as the writer keeps it */
	if (code == CTL_OK &&
	    sqlite3_exec(db,
			 "INSERT INTO events_search (rowid, text) "
			 "SELECT id, natter_search_text(text) "
			 "FROM events WHERE text IS NOT NULL",
			 NULL, NULL, NULL) != SQLITE_OK)
		code = db_fail(db, "cannot index");
	if (code == CTL_OK && sqlite3_exec(db, "PRAGMA foreign_key_check", NULL,
					   NULL, NULL) != SQLITE_OK)
		code = db_fail(db, "foreign keys");
	if (code == CTL_OK &&
	    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		code = db_fail(db, "cannot commit");
	if (code == CTL_OK) {
		fprintf(c->out, "imported %zu lines into %s\n", lineno, c->db);
		goto out;
	}
rollback:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
	free(line);
	sqlite3_close(db);
	if (f != c->in)
		fclose(f);
	return code;
}

int ctl_stats(struct ctl *c)
{
	static const struct {
		const char *key, *sql;
	} q[] = {
	    {"users", "SELECT count(*) FROM users"},
	    {"admins", "SELECT count(*) FROM users WHERE admin"},
	    {"disabled", "SELECT count(*) FROM users WHERE disabled_ms "
			 "IS NOT NULL"},
	    {"rooms", "SELECT count(*) FROM rooms"},
	    {"memberships", "SELECT count(*) FROM members"},
	    {"events", "SELECT count(*) FROM events"},
	    {"messages", "SELECT count(*) FROM events WHERE type = 'message'"},
	    {"last_event_id", "SELECT coalesce(max(id), 0) FROM events"},
	    {"sessions", "SELECT count(*) FROM sessions"},
	    {"bans", "SELECT count(*) FROM bans"},
	    {"audit_rows", "SELECT count(*) FROM audit"},
	    {"schema_version", "PRAGMA user_version"},
	    {"bytes", "SELECT page_count * page_size FROM "
		      "pragma_page_count(), pragma_page_size()"},
	};
	sqlite3 *db = open_db(c, false);
	int code = CTL_OK;
	if (!db)
		return CTL_EDB;
	json_t *o = json_object();
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (size_t i = 0; i < ARRAY_LEN(q) && code == CTL_OK; i++) {
		sqlite3_stmt *s = NULL;
		if (sqlite3_prepare_v2(db, q[i].sql, -1, &s, NULL) !=
			SQLITE_OK ||
		    sqlite3_step(s) != SQLITE_ROW)
			code = db_fail(db, "cannot read");
		else
			json_object_set_new(
			    o, q[i].key,
			    json_integer(sqlite3_column_int64(s, 0)));
		sqlite3_finalize(s);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (code == CTL_OK) {
		json_dumpf(o, c->out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', c->out);
	}
	json_decref(o);
	sqlite3_close(db);
	return code;
}
