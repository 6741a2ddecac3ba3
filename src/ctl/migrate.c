/* ctl/migrate: natterctl migrate, a single node's SQLite database copied
 * into a PostgreSQL database for cluster mode, every id kept (events,
 * users, rooms), and with them sessions (users stay logged in), read
 * markers, mentions, reactions, roles, the audit log, statistics and the
 * files' rows. The files' bytes stay where they are on disk: the nodes are
 * given that directory (README, "Cluster mode").
 *
 * Both databases are first opened through the store (store_open), which
 * brings each to its newest schema; then the copy runs table by table in
 * one PostgreSQL transaction from one SQLite read snapshot, over the
 * columns both tables have (a column only one side has keeps its
 * default). Events get their search index as the PostgreSQL writer builds
 * it. The target must hold no users and no events: a migration is done
 * once, into a fresh database, and a failure leaves it as it was. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "ctl/ctl.h"
#include "model/search.h"
#include "store/store.h"
#include "util/util.h"

#define COLS_MAX 32
#define BYTEAOID 17

/* In the order foreign keys need: a row's references are copied first.
 * users.avatar names a file whose owner is a user: it is set last. */
static const char *const tables[] = {
    "users",	 "sessions",	 "rooms",    "members",
    "events",	 "moderators",	 "bans",     "mutes",
    "audit",	 "invites",	 "mentions", "read_markers",
    "reactions", "stat_samples", "files",    "file_uses",
};

struct mig {
	struct ctl *c;
	sqlite3 *db;
	PGconn *pg;
	json_t *counts;
};

__attribute__((format(printf, 2, 3))) static int mfail(int code,
						       const char *fmt, ...)
{
	va_list ap;
	fputs("natterctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* Run sql on PostgreSQL, expecting no rows: 0 or -1 (printed). */
static int pg_cmd(struct mig *m, const char *sql)
{
	PGresult *r = PQexec(m->pg, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
		 PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		mfail(CTL_EDB, "postgresql: %s", PQerrorMessage(m->pg));
	PQclear(r);
	return ok ? 0 : -1;
}

/* The columns table has in SQLite (names malloc'd), or -1. */
static int sqlite_columns(struct mig *m, const char *table, char **out, int max)
{
	char sql[128];
	sqlite3_stmt *s = NULL;
	int n = 0;
	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	while (sqlite3_step(s) == SQLITE_ROW && n < max)
		out[n++] = xstrdup((const char *)sqlite3_column_text(s, 1));
	sqlite3_finalize(s);
	return n;
}

/* Whether PostgreSQL's table has column (0: no; -1: cannot ask). */
static int pg_has_column(struct mig *m, const char *table, const char *col)
{
	const char *v[2] = {table, col};
	PGresult *r = PQexecParams(
	    m->pg,
	    "SELECT 1 FROM information_schema.columns WHERE table_schema = "
	    "current_schema() AND table_name = $1 AND column_name = $2",
	    2, NULL, v, NULL, NULL, 0);
	int has = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) > 0 : -1;
	PQclear(r);
	return has;
}

/* What a message's row is found by: its text and its files' names, as
 * both stores index it. A malloc'd string, or NULL for no index. */
static char *index_text(sqlite3_stmt *s, int type_col, int text_col,
			int json_col)
{
	const char *type = (const char *)sqlite3_column_text(s, type_col);
	const char *text = (const char *)sqlite3_column_text(s, text_col);
	if (!type || strcmp(type, "message") || !text)
		return NULL;
	struct buf b;
	buf_init(&b);
	buf_puts(&b, text);
	json_t *env =
	    json_loads((const char *)sqlite3_column_text(s, json_col), 0, NULL);
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(env, "files"), i, f)
	{
		const char *name =
		    json_string_value(json_object_get(f, "name"));
		if (name) {
			buf_puts(&b, " ");
			buf_puts(&b, name);
		}
	}
	json_decref(env);
	char *out =
	    utf8_valid(b.data, b.len) ? search_index_text(b.data, b.len) : NULL;
	buf_fini(&b);
	return out;
}

/* Copy one table's rows over the columns both sides have. */
static int copy_table(struct mig *m, const char *table)
{
	char *cols[COLS_MAX];
	int ncols = sqlite_columns(m, table, cols, COLS_MAX), nuse = 0;
	int type_col = -1, text_col = -1, json_col = -1;
	bool events = strcmp(table, "events") == 0;
	int code = CTL_EDB;
	int64_t rows = 0;
	sqlite3_stmt *s = NULL;
	struct buf sql, list;

	buf_init(&sql);
	buf_init(&list);
	if (ncols < 0)
		return mfail(CTL_EDB, "sqlite: cannot read %s", table);
	if (ncols == 0) /* a table this database never had */
		return CTL_OK;
	for (int i = 0; i < ncols; i++) {
		/* set once the files are there (copy_avatars) */
		if (!strcmp(table, "users") && !strcmp(cols[i], "avatar"))
			continue;
		int has = pg_has_column(m, table, cols[i]);
		if (has < 0)
			goto out;
		if (!has)
			continue;
		if (events && !strcmp(cols[i], "type"))
			type_col = nuse;
		if (events && !strcmp(cols[i], "text"))
			text_col = nuse;
		if (events && !strcmp(cols[i], "json"))
			json_col = nuse;
		buf_printf(&list, "%s%s", nuse ? ", " : "", cols[i]);
		nuse++;
	}
	if (nuse == 0) {
		mfail(CTL_EDB, "postgresql has no table %s", table);
		goto out;
	}
	bool tsv = events && type_col >= 0 && text_col >= 0 && json_col >= 0 &&
		   pg_has_column(m, table, "tsv") == 1;
	buf_printf(&sql, "INSERT INTO %s (%s%s) VALUES (", table, list.data,
		   tsv ? ", tsv" : "");
	for (int i = 0; i < nuse; i++)
		buf_printf(&sql, "%s$%d", i ? ", " : "", i + 1);
	if (tsv)
		buf_printf(&sql, ", to_tsvector('natter', $%d::text)",
			   nuse + 1);
	buf_puts(&sql, ")");

	PGresult *r = PQprepare(m->pg, table, sql.data, 0, NULL);
	bool prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!prepared) {
		mfail(CTL_EDB, "postgresql: %s", PQerrorMessage(m->pg));
		goto out;
	}
	sql.len = 0;
	buf_printf(&sql, "SELECT %s FROM %s ORDER BY rowid", list.data, table);
	if (sqlite3_prepare_v2(m->db, sql.data, -1, &s, NULL) != SQLITE_OK) {
		/* a WITHOUT ROWID table: its primary key's order */
		sql.len = 0;
		buf_printf(&sql, "SELECT %s FROM %s", list.data, table);
		if (sqlite3_prepare_v2(m->db, sql.data, -1, &s, NULL) !=
		    SQLITE_OK) {
			mfail(CTL_EDB, "sqlite: %s", sqlite3_errmsg(m->db));
			goto out;
		}
	}
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *val[COLS_MAX + 1];
		int len[COLS_MAX + 1], fmt[COLS_MAX + 1];
		int n = nuse;
		char *ix = NULL;
		for (int i = 0; i < nuse; i++) {
			int t = sqlite3_column_type(s, i);
			fmt[i] = t == SQLITE_BLOB; /* bytea, binary */
			val[i] = t == SQLITE_NULL ? NULL
				 : t == SQLITE_BLOB
				     ? sqlite3_column_blob(s, i)
				     : (const char *)sqlite3_column_text(s, i);
			len[i] = sqlite3_column_bytes(s, i);
		}
		if (tsv) {
			ix = index_text(s, type_col, text_col, json_col);
			val[n] = ix;
			len[n] = 0;
			fmt[n++] = 0;
		}
		r = PQexecPrepared(m->pg, table, n, val, len, fmt, 0);
		bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		free(ix);
		if (!ok) {
			mfail(CTL_EDB, "postgresql: %s: %s", table,
			      PQerrorMessage(m->pg));
			goto out;
		}
		rows++;
	}
	if (rc != SQLITE_DONE) {
		mfail(CTL_EDB, "sqlite: %s", sqlite3_errmsg(m->db));
		goto out;
	}
	json_object_set_new(m->counts, table, json_integer(rows));
	code = CTL_OK;
out:
	sqlite3_finalize(s);
	for (int i = 0; i < ncols; i++)
		free(cols[i]);
	buf_fini(&sql);
	buf_fini(&list);
	return code;
}

/* users.avatar, now that the files are there. */
static int copy_avatars(struct mig *m)
{
	sqlite3_stmt *s = NULL;
	int code = CTL_OK;
	if (pg_has_column(m, "users", "avatar") != 1 ||
	    sqlite3_prepare_v2(m->db,
			       "SELECT id, avatar FROM users "
			       "WHERE avatar IS NOT NULL",
			       -1, &s, NULL) != SQLITE_OK)
		return CTL_OK; /* one side has no avatars */
	while (code == CTL_OK && sqlite3_step(s) == SQLITE_ROW) {
		const char *v[2] = {(const char *)sqlite3_column_text(s, 0),
				    (const char *)sqlite3_column_text(s, 1)};
		PGresult *r = PQexecParams(
		    m->pg, "UPDATE users SET avatar = $2 WHERE id = $1::bigint",
		    2, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			code = mfail(CTL_EDB, "postgresql: avatars: %s",
				     PQerrorMessage(m->pg));
		PQclear(r);
	}
	sqlite3_finalize(s);
	return code;
}

/* The counters past the copied ids: the event counter every node's
 * writer takes ids from, and the tables' identity sequences. */
static int counters(struct mig *m)
{
	if (pg_cmd(m, "UPDATE event_counter SET last = greatest(last, "
		      "(SELECT coalesce(max(id), 0) FROM events))") < 0)
		return CTL_EDB;
	static const char *const ident[] = {"users", "rooms", "audit",
					    "stat_samples"};
	for (size_t i = 0; i < sizeof(ident) / sizeof(*ident); i++) {
		char sql[256];
		snprintf(sql, sizeof(sql),
			 "SELECT setval(pg_get_serial_sequence('%s', 'id'), "
			 "max(id)) FROM %s HAVING max(id) IS NOT NULL",
			 ident[i], ident[i]);
		if (pg_cmd(m, sql) < 0)
			return CTL_EDB;
	}
	return CTL_OK;
}

/* The target is fresh: no users, no events. */
static int target_empty(struct mig *m)
{
	PGresult *r = PQexec(m->pg, "SELECT (SELECT count(*) FROM users) + "
				    "(SELECT count(*) FROM events)");
	int code = CTL_OK;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		code = mfail(CTL_EDB, "postgresql: %s", PQerrorMessage(m->pg));
	else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0)
		code = mfail(CTL_ECONFLICT,
			     "the PostgreSQL database is not empty (%s users "
			     "and events): migrate into a fresh one",
			     PQgetvalue(r, 0, 0));
	PQclear(r);
	return code;
}

/* Each database opened once through the store: its newest schema. */
static int schema_up(struct ctl *c, const char *path)
{
	char err[256];
	struct store_config sc = {.path = path,
				  .db_dir = c->db_dir,
				  .sync_full = true,
				  .commit_batch_max = 64,
				  .readers = 1};
	struct store *st = store_open(&sc, err, sizeof(err));
	if (!st)
		return mfail(CTL_EDB, "cannot open %s: %s", path, err);
	store_close(st);
	return CTL_OK;
}

int ctl_migrate(struct ctl *c, const char *url)
{
	struct mig m = {.c = c, .counts = json_object()};
	int code;

	if (strncmp(url, "postgresql://", 13) &&
	    strncmp(url, "postgres://", 11)) {
		json_decref(m.counts);
		return mfail(CTL_EUSAGE, "migrate needs a postgresql:// URL");
	}
	if ((code = schema_up(c, c->db)) != CTL_OK ||
	    (code = schema_up(c, url)) != CTL_OK) {
		json_decref(m.counts);
		return code;
	}
	code = CTL_EDB;
	if (sqlite3_open_v2(c->db, &m.db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		mfail(CTL_EDB, "cannot open %s: %s", c->db,
		      sqlite3_errmsg(m.db));
		goto out;
	}
	sqlite3_busy_timeout(m.db, 10000);
	m.pg = PQconnectdb(url);
	if (PQstatus(m.pg) != CONNECTION_OK) {
		mfail(CTL_EDB, "cannot connect to PostgreSQL: %s",
		      PQerrorMessage(m.pg));
		goto out;
	}
	PQclear(PQexec(m.pg, "SET client_min_messages = warning"));
	/* one snapshot of the source (natterd may be running: it waits) */
	if (sqlite3_exec(m.db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    pg_cmd(&m, "BEGIN") < 0)
		goto out;
	/* no other node writes meanwhile: the writers' lock */
	if (pg_cmd(&m, "LOCK TABLE event_counter IN EXCLUSIVE MODE") < 0)
		goto out;
	if ((code = target_empty(&m)) != CTL_OK)
		goto out;
	/* the rooms a fresh schema starts with (the lobby) come from the
	 * source, ids and all */
	code = CTL_EDB;
	if (pg_cmd(&m, "DELETE FROM rooms") < 0)
		goto out;
	for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++)
		if ((code = copy_table(&m, tables[i])) != CTL_OK)
			goto out;
	if ((code = copy_avatars(&m)) != CTL_OK ||
	    (code = counters(&m)) != CTL_OK)
		goto out;
	code = CTL_EDB;
	if (pg_cmd(&m, "COMMIT") < 0)
		goto out;
	json_dumpf(m.counts, c->out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	fputc('\n', c->out);
	code = CTL_OK;
out:
	if (m.pg && code != CTL_OK)
		PQclear(PQexec(m.pg, "ROLLBACK"));
	PQfinish(m.pg);
	if (m.db)
		sqlite3_exec(m.db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(m.db);
	json_decref(m.counts);
	return code;
}
