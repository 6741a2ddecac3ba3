/* test_store: the store module through store.h, each test on its own
 * database in a fresh temporary directory (under $NATTER_TEST_TMP, or
 * /tmp), with the schema files from $NATTER_DB_DIR (or ../db, db).
 *
 * Faults SQLite would only show on a sick disk are injected by editing the
 * test's own database file with sqlite3 directly (a trigger that fails);
 * nothing reaches into store.c's internals. */

#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store_contract.h"
#include "testdir.h"
#include "model/search.h"
#include "store/store.h"
#include "util/util.h"

/* --- fixture -------------------------------------------------------------- */

struct fx;
static struct fx *contract_fx; /* the open contract case's directory */
static int latest_version(const struct fx *fx, char names[64][256]);

struct fx {
	char dir[512];
	char path[600];
	const char *db_dir;
	struct store *st;
};

static int fx_setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));

	if (testdir_make(fx->dir, sizeof(fx->dir), "test_store") < 0) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/natter.db", fx->dir);
	fx->db_dir = testdir_db();
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	store_close(fx->st);
	testdir_remove(fx->dir);
	free(fx);
	return 0;
}

static struct store *open_with(struct fx *fx, const char *dir,
			       unsigned interval_ms, unsigned batch_max,
			       char *err, size_t errlen)
{
	struct store_config cfg = {
	    .path = fx->path,
	    .db_dir = dir,
	    .sync_full = false,
	    .commit_interval_ms = interval_ms,
	    .commit_batch_max = batch_max,
	    .readers = 2,
	};
	return store_open(&cfg, err, errlen);
}

static struct store *fx_open(struct fx *fx, unsigned interval_ms,
			     unsigned batch_max)
{
	char err[512] = "";
	fx->st =
	    open_with(fx, fx->db_dir, interval_ms, batch_max, err, sizeof(err));
	if (!fx->st)
		fprintf(stderr, "store_open: %s\n", err);
	assert_non_null(fx->st);
	return fx->st;
}

static void fx_close(struct fx *fx)
{
	store_close(fx->st);
	fx->st = NULL;
}

/* natter_search_text, which the search index's triggers call (migration
 * 005), as natterd registers it. */
static void search_text_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const char *text = (const char *)sqlite3_value_text(argv[0]);
	if (!text) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_text(
	    ctx, search_index_text(text, (size_t)sqlite3_value_bytes(argv[0])),
	    -1, free);
}

/* Run SQL on the test's database behind the store's back. */
static void sql(struct fx *fx, const char *q)
{
	sqlite3 *db;
	char *msg = NULL;
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	sqlite3_create_function(db, "natter_search_text", 1, SQLITE_UTF8, NULL,
				search_text_fn, NULL, NULL);
	if (sqlite3_exec(db, q, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", q, msg);
	sqlite3_close(db);
}

static int sql_int(struct fx *fx, const char *q)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int v;
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* --- synchronous writes --------------------------------------------------- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int calls;
	int status;
	struct event *ev;
};

static void waiter_init(struct waiter *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void waiter_fini(struct waiter *w)
{
	event_unref(w->ev);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

static void waiter_done(void *arg, int status, struct event *ev)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->calls++;
	w->status = status;
	w->ev = ev ? event_ref(ev) : NULL;
	w->done = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

/* Submit and wait; the event (if any) is returned with a reference. */
static int write_sync(struct store *st, const struct store_write *w,
		      struct event **ev)
{
	struct waiter wt;
	int status;

	waiter_init(&wt);
	store_write_submit(st, w, waiter_done, &wt);
	waiter_wait(&wt);
	assert_int_equal(wt.calls, 1);
	status = wt.status;
	if (status >= 0)
		assert_non_null(wt.ev);
	else
		assert_null(wt.ev);
	if (ev) {
		*ev = wt.ev;
		wt.ev = NULL;
	}
	waiter_fini(&wt);
	return status;
}

static int64_t user_new(struct store *st, const char *name)
{
	int64_t id = 0;
	assert_int_equal(store_user_create(st, name, "$argon2id$x", &id),
			 STORE_OK);
	assert_true(id > 0);
	return id;
}

static int64_t room_id(struct store *st, const char *name)
{
	int64_t id = 0;
	assert_int_equal(store_room_by_name(st, name, &id, NULL), STORE_OK);
	return id;
}

static int op(struct store *st, enum event_type o, int64_t user,
	      const char *username, int64_t room, int64_t *id)
{
	struct store_write w = {
	    .type = o, .user_id = user, .username = username, .room_id = room};
	struct event *ev = NULL;
	int status = write_sync(st, &w, &ev);
	if (id)
		*id = ev ? event_id(ev) : 0;
	event_unref(ev);
	return status;
}

static int say(struct store *st, int64_t user, int64_t room, const char *text,
	       const char *client_id, int64_t *id)
{
	struct store_write w = {.type = EVENT_MESSAGE,
				.user_id = user,
				.room_id = room,
				.text = text,
				.client_id = client_id};
	struct event *ev = NULL;
	int status = write_sync(st, &w, &ev);
	if (id)
		*id = ev ? event_id(ev) : 0;
	event_unref(ev);
	return status;
}

static int64_t json_id(json_t *env)
{
	return json_integer_value(json_object_get(env, "id"));
}

/* --- a recording commit hook ---------------------------------------------- */

struct rec {
	pthread_mutex_t mu;
	int64_t *ids;
	size_t n, cap;
	bool ordered; /* every id is the previous + 1 */
	size_t hooks_at_first_done;
	size_t dones;
};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->ordered = true;
}

static void rec_fini(struct rec *r)
{
	free(r->ids);
	pthread_mutex_destroy(&r->mu);
}

static void rec_hook(void *arg, struct event *ev)
{
	struct rec *r = arg;
	pthread_mutex_lock(&r->mu);
	if (r->n && event_id(ev) != r->ids[r->n - 1] + 1)
		r->ordered = false;
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		r->ids = xrealloc(r->ids, r->cap * sizeof(*r->ids));
	}
	r->ids[r->n++] = event_id(ev);
	pthread_mutex_unlock(&r->mu);
}

/* The store answers with plain structs and shared envelopes; these turn
 * them into the JSON the API builds, so the assertions read as before. */
static json_t *rooms_json(struct store *st, int64_t user_id)
{
	struct store_room *v = NULL;
	size_t n = 0;
	if (store_rooms_list(st, user_id, &v, &n) < 0)
		return NULL;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char ts[32];
		format_ts(v[i].created_ms, ts);
		json_array_append_new(
		    arr,
		    json_pack("{s:s, s:s, s:s, s:I, s:b}", "name", v[i].name,
			      "topic", v[i].topic, "created", ts, "members",
			      (json_int_t)v[i].members, "joined", v[i].joined));
	}
	store_rooms_free(v, n);
	return arr;
}

static json_t *members_json(struct store *st, int64_t room_id)
{
	struct store_member *v = NULL;
	size_t n = 0;
	if (store_room_members(st, room_id, &v, &n) < 0)
		return NULL;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
		    arr, json_pack("{s:s, s:s}", "username", v[i].username,
				   "display_name", v[i].display_name));
	store_members_free(v, n);
	return arr;
}

static json_t *events_json(struct event **evs, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const char *text = event_json(evs[i], &len);
		json_array_append_new(arr, json_loadb(text, len, 0, NULL));
		event_unref(evs[i]);
	}
	free(evs);
	return arr;
}

static json_t *history_json(struct store *st, int64_t room_id, int64_t before,
			    int64_t after, unsigned limit, bool *more)
{
	struct event **evs = NULL;
	size_t n = 0;
	if (store_history(st, room_id, before, after, limit, &evs, &n, more) <
	    0)
		return NULL;
	return events_json(evs, n);
}

static json_t *search_json(struct store *st, int64_t user_id, const char *q,
			   unsigned limit)
{
	struct event **evs = NULL;
	size_t n = 0;
	bool more;
	if (store_search(st, user_id, q, -1, limit, &evs, &n, &more) < 0)
		return NULL;
	return events_json(evs, n);
}

/* --- tests ---------------------------------------------------------------- */

static void test_fresh_lobby(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	char name[33];
	int64_t id = 0;
	json_t *rooms;

	assert_int_equal(store_room_by_name(st, "LoBBy", &id, name), STORE_OK);
	assert_true(id > 0);
	assert_string_equal(name, "lobby");
	assert_int_equal(store_room_by_name(st, "nope", &id, NULL),
			 STORE_NOTFOUND);
	assert_int_equal(store_last_event_id(st), 0);

	rooms = rooms_json(st, 0);
	assert_non_null(rooms);
	assert_int_equal(json_array_size(rooms), 1);
	json_t *r = json_array_get(rooms, 0);
	assert_string_equal(json_string_value(json_object_get(r, "name")),
			    "lobby");
	assert_int_equal(json_integer_value(json_object_get(r, "members")), 0);
	assert_true(json_is_false(json_object_get(r, "joined")));
	assert_true(json_is_string(json_object_get(r, "created")));
	json_decref(rooms);
	fx_close(fx);

	assert_int_equal(sql_int(fx, "PRAGMA user_version"),
			 latest_version(fx, (char[64][256]){0}));
	assert_int_equal(sql_int(fx, "SELECT journal_mode = 'wal' FROM "
				     "pragma_journal_mode"),
			 1);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void copy_file(const char *from, const char *to)
{
	char *text = NULL;
	size_t cap = 0;
	FILE *f = fopen(from, "r");
	assert_non_null(f);
	ssize_t n = getdelim(&text, &cap, '\0', f);
	assert_true(n > 0);
	fclose(f);
	write_file(to, text);
	free(text);
}

/* Run the real db/ file rel (e.g. "schema.sql") on the test's database. */
static void sql_file(struct fx *fx, const char *rel)
{
	char path[800], *text = NULL;
	size_t cap = 0;
	snprintf(path, sizeof(path), "%s/%s", fx->db_dir, rel);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_true(getdelim(&text, &cap, '\0', f) > 0);
	fclose(f);
	sql(fx, text);
	free(text);
}

/* A db_dir of the test's own, fx->dir/name: the real schema.sql and the
 * real migrations named in migs (NULL-terminated). */
static void db_dir_make(struct fx *fx, const char *name,
			const char *const *migs, char dir[700], char mig[720])
{
	char from[800], to[800];

	snprintf(dir, 700, "%s/%s", fx->dir, name);
	snprintf(mig, 720, "%s/migrations", dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(mig, 0700), 0);
	snprintf(from, sizeof(from), "%s/schema.sql", fx->db_dir);
	snprintf(to, sizeof(to), "%s/schema.sql", dir);
	copy_file(from, to);
	for (; *migs; migs++) {
		snprintf(from, sizeof(from), "%s/migrations/%s", fx->db_dir,
			 *migs);
		snprintf(to, sizeof(to), "%s/%s", mig, *migs);
		copy_file(from, to);
	}
}

/* The schema version this build upgrades to: schema.sql is 1, and each
 * db/migrations/NNN-*.sql file one more. Every real migration's name, in
 * order, goes to names (NULL-terminated, at most 63). */
static int latest_version(const struct fx *fx, char names[64][256])
{
	char mig[700];
	snprintf(mig, sizeof(mig), "%s/migrations", fx->db_dir);
	DIR *d = opendir(mig);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len > 4 && !strcmp(de->d_name + len - 4, ".sql") &&
		    isdigit((unsigned char)de->d_name[0])) {
			assert_true(n < 63);
			snprintf(names[n++], 256, "%s", de->d_name);
		}
	}
	closedir(d);
	qsort(names, (size_t)n, 256,
	      (int (*)(const void *, const void *))strcmp);
	names[n][0] = '\0';
	return n + 1;
}

static void test_schema_versions(void **state)
{
	struct fx *fx = *state;
	char dir[700], mig[720], p[800], err[512], want[128];
	char names[64][256];
	const char *all[64];
	int latest = latest_version(fx, names);
	for (int i = 0; i < latest; i++)
		all[i] = names[i][0] ? names[i] : NULL;

	fx_open(fx, 2, 64);
	fx_close(fx);
	assert_int_equal(sql_int(fx, "PRAGMA user_version"), latest);
	/* 003: messages are indexed per commit, not by a per-row trigger. */
	assert_int_equal(sql_int(fx, "SELECT count(*) FROM sqlite_master "
				     "WHERE name = 'events_fts_insert'"),
			 0);

	/* A newer build's db_dir: only the one missing migration is applied
	 * (re-running an applied one would fail: its tables exist). */
	db_dir_make(fx, "newer", all, dir, mig);
	snprintf(p, sizeof(p), "%s/%03d-extra.sql", mig, latest + 1);
	write_file(p, "CREATE TABLE extra (x INTEGER);\n");
	fx->st = open_with(fx, dir, 2, 64, err, sizeof(err));
	if (!fx->st)
		fail_msg("%s", err);
	fx_close(fx);
	assert_int_equal(sql_int(fx, "PRAGMA user_version"), latest + 1);
	assert_int_equal(sql_int(fx, "SELECT count(*) FROM sqlite_master "
				     "WHERE name = 'extra'"),
			 1);

	/* This build knows the latest version only: refused, with the
	 * reason. */
	err[0] = '\0';
	assert_null(open_with(fx, fx->db_dir, 2, 64, err, sizeof(err)));
	snprintf(want, sizeof(want),
		 "database schema version %d is newer than this natterd "
		 "supports (%d)",
		 latest + 1, latest);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, fx->path));
	sql(fx, "PRAGMA user_version = 99");
	assert_null(open_with(fx, fx->db_dir, 2, 64, err, sizeof(err)));
	snprintf(want, sizeof(want),
		 "database schema version 99 is newer than this natterd "
		 "supports (%d)",
		 latest);
	assert_non_null(strstr(err, want));

	/* A gap in the migrations is refused too. */
	snprintf(p, sizeof(p), "%s/002-search.sql", mig);
	assert_int_equal(unlink(p), 0);
	assert_null(open_with(fx, dir, 2, 64, err, sizeof(err)));
	assert_non_null(strstr(err, "migration 002 is missing"));
}

static size_t search_n(struct store *st, int64_t user, const char *q,
		       json_t **out);

/* A version-2 database with messages (indexed by 002's per-row trigger)
 * moves to 3 and on to 4: old messages stay searchable, new ones are
 * indexed once; 004 rebuilt events without its type list, with target_id,
 * and kept the id high-water mark. */
static void test_migrate_search_2_to_3(void **state)
{
	struct fx *fx = *state;
	char dir[700], mig[720], err[512] = "";
	static const char *const upto2[] = {"002-search.sql", NULL};

	db_dir_make(fx, "db2", upto2, dir, mig);
	/* This build needs 3, so a 2-only db_dir is refused... */
	assert_null(open_with(fx, dir, 2, 64, err, sizeof(err)));
	assert_non_null(strstr(err, "migration"));

	/* ...so make the version-2 database by hand, as a natterd of that
	 * version left it: schema.sql and 002 (with its per-row search
	 * trigger), a user in the lobby and an old message. The newer
	 * migrations then run on it exactly as on a real upgrade. */
	sql_file(fx, "schema.sql");
	sql_file(fx, "migrations/002-search.sql");
	sql(fx,
	    "INSERT INTO users (username, display_name, pwhash, created_ms) "
	    "VALUES ('alice', 'alice', 'x', 0); "
	    "INSERT INTO members (room_id, user_id, joined_ms) "
	    "SELECT id, 1, 0 FROM rooms WHERE name = 'lobby'; "
	    "INSERT INTO events (room_id, type, user_id, ts_ms, text, json) "
	    "SELECT id, 'join', 1, 0, NULL, '{}' FROM rooms "
	    "WHERE name = 'lobby'; "
	    "INSERT INTO events (room_id, type, user_id, ts_ms, text, json) "
	    "SELECT id, 'message', 1, 0, 'ancient walrus', '{}' FROM rooms "
	    "WHERE name = 'lobby'; "
	    "UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'events'; "
	    "PRAGMA user_version = 2;");
	int64_t alice = 1;

	struct store *st = fx_open(fx, 2, 64);
	int64_t lobby = room_id(st, "lobby");
	assert_int_equal(sql_int(fx, "PRAGMA user_version"),
			 latest_version(fx, (char[64][256]){0}));
	assert_int_equal(sql_int(fx, "SELECT count(*) FROM "
				     "pragma_table_info('events') "
				     "WHERE name = 'target_id'"),
			 1);
	assert_int_equal(sql_int(fx, "SELECT count(*) FROM sqlite_master "
				     "WHERE sql LIKE '%CHECK (type IN%'"),
			 0);
	assert_int_equal(search_n(st, alice, "walrus", NULL), 1);
	assert_int_equal(say(st, alice, lobby, "modern walrus", NULL, NULL), 0);
	assert_int_equal(search_n(st, alice, "walrus", NULL), 2);
	assert_int_equal(search_n(st, alice, "modern", NULL), 1);
	/* The next id comes after the old high-water mark, never below it. */
	assert_true(sql_int(fx, "SELECT max(id) FROM events") > 1000);
}

static void test_bad_paths(void **state)
{
	struct fx *fx = *state;
	char err[512] = "", dir[700], p[800];
	struct store_config cfg = {
	    .db_dir = fx->db_dir, .readers = 1, .commit_batch_max = 8};

	assert_null(
	    open_with(fx, "/nonexistent/natter-db", 2, 64, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/natter-db/schema.sql"));

	/* schema.sql but no migrations directory */
	snprintf(dir, sizeof(dir), "%s/nomig", fx->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(p, sizeof(p), "%s/schema.sql", dir);
	write_file(p, "CREATE TABLE t (x);\n");
	assert_null(open_with(fx, dir, 2, 64, err, sizeof(err)));
	assert_non_null(strstr(err, dir));
	assert_non_null(strstr(err, "migrations"));

	/* a database in a directory that does not exist */
	cfg.path = "/nonexistent/dir/natter.db";
	assert_null(store_open(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/dir/natter.db"));

	/* a file that is not a database */
	write_file(fx->path, "this is not a database, just some text.....");
	assert_null(open_with(fx, fx->db_dir, 2, 64, err, sizeof(err)));
	assert_non_null(strstr(err, fx->path));

	store_close(NULL);
}

static void test_users(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	struct store_user u;
	int64_t id = user_new(st, "Alice"), id2 = 0;

	assert_int_equal(store_user_create(st, "aLICE", "h", &id2),
			 STORE_EXISTS);
	assert_int_equal(store_user_by_name(st, "ALICE", &u), STORE_OK);
	assert_int_equal(u.id, id);
	assert_string_equal(u.username, "Alice");
	assert_string_equal(u.display_name, "Alice");
	assert_string_equal(u.settings, "{}");
	assert_string_equal(u.pwhash, "$argon2id$x");
	assert_true(u.created_ms > 0);
	store_user_fini(&u);

	assert_int_equal(store_user_update(st, id, "Alice L.", NULL), STORE_OK);
	assert_int_equal(store_user_update(st, id, NULL, "{\"theme\":1}"),
			 STORE_OK);
	assert_int_equal(store_user_update(st, id, NULL, "[1]"), STORE_ERR);
	assert_int_equal(store_user_update(st, id, NULL, "{bad"), STORE_ERR);
	assert_int_equal(store_user_update(st, 999, "x", NULL), STORE_NOTFOUND);
	assert_int_equal(store_user_by_id(st, id, &u), STORE_OK);
	assert_string_equal(u.display_name, "Alice L.");
	assert_string_equal(u.settings, "{\"theme\":1}");
	store_user_fini(&u);
	store_user_fini(NULL);

	assert_int_equal(store_user_by_name(st, "bob", &u), STORE_NOTFOUND);
	assert_int_equal(store_user_by_id(st, 999, &u), STORE_NOTFOUND);
	assert_int_equal(store_user_create(st, "not a name", "h", &id2),
			 STORE_ERR);
	assert_true(user_new(st, "bob") != id);
}

static void test_sessions(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), uid = 0;
	uint8_t h1[32], h2[32];

	memset(h1, 0xA1, sizeof(h1));
	memset(h2, 0xB2, sizeof(h2));
	assert_int_equal(store_session_create(st, h1, alice, 10000), STORE_OK);
	assert_int_equal(store_session_create(st, h1, alice, 10000),
			 STORE_EXISTS);
	assert_int_equal(store_session_create(st, h2, 4242, 10000),
			 STORE_NOTFOUND);
	assert_int_equal(store_session_lookup(st, h1, 9999, &uid), STORE_OK);
	assert_int_equal(uid, alice);
	assert_int_equal(store_session_lookup(st, h2, 0, &uid), STORE_NOTFOUND);
	/* expired at expires_ms, and gone afterwards */
	assert_int_equal(store_session_lookup(st, h1, 10000, &uid),
			 STORE_NOTFOUND);
	assert_int_equal(store_session_lookup(st, h1, 0, &uid), STORE_NOTFOUND);

	assert_int_equal(store_session_create(st, h2, alice, 10000), STORE_OK);
	assert_int_equal(store_session_delete(st, h2), STORE_OK);
	assert_int_equal(store_session_lookup(st, h2, 0, &uid), STORE_NOTFOUND);
	assert_int_equal(store_session_delete(st, h2), STORE_OK); /* again */
	/* a session that expired while natterd was down is purged at open */
	assert_int_equal(store_session_create(st, h2, alice, 1), STORE_OK);
	fx_close(fx);
	assert_int_equal(sql_int(fx, "SELECT count(*) FROM sessions"), 1);
	fx_open(fx, 2, 64);
	fx_close(fx);
	assert_int_equal(sql_int(fx, "SELECT count(*) FROM sessions"), 0);
}

/* store_session_user: the user's name with the session, from memory for
 * session_cache_ms; a logout is immediate, expiry is honoured from the
 * cache, and a row deleted behind the store's back lasts at most the TTL. */
static void test_session_cache(void **state)
{
	struct fx *fx = *state;
	char err[512] = "";
	struct store_config cfg = {.path = fx->path,
				   .db_dir = fx->db_dir,
				   .commit_batch_max = 64,
				   .readers = 2,
				   .session_cache_ms = 300};
	struct store *st = fx->st = store_open(&cfg, err, sizeof(err));
	assert_non_null(st);
	int64_t alice = user_new(st, "Alice"), uid = 0;
	char name[33];
	uint8_t h1[32], h2[32], h3[32];
	int64_t far = now_ms() + 3600 * 1000;

	memset(h1, 0x11, sizeof(h1));
	memset(h2, 0x22, sizeof(h2));
	memset(h3, 0x11, sizeof(h3));
	h3[31] = 0x12; /* same cache slot as h1, another session */
	assert_int_equal(store_session_create(st, h1, alice, far), STORE_OK);
	assert_int_equal(store_session_create(st, h2, alice, far), STORE_OK);
	assert_int_equal(store_session_user(st, h1, now_ms(), &uid, name),
			 STORE_OK);
	assert_int_equal(uid, alice);
	assert_string_equal(name, "Alice");
	assert_int_equal(store_session_user(st, h3, now_ms(), &uid, name),
			 STORE_NOTFOUND);

	/* logout: gone at once, though cached a moment ago */
	assert_int_equal(store_session_user(st, h2, now_ms(), &uid, name),
			 STORE_OK);
	assert_int_equal(store_session_delete(st, h2), STORE_OK);
	assert_int_equal(store_session_user(st, h2, now_ms(), &uid, name),
			 STORE_NOTFOUND);

	/* expiry is checked on a cache hit too */
	assert_int_equal(store_session_user(st, h1, far, &uid, name),
			 STORE_NOTFOUND);

	/* deleted by hand: still answered from memory, then not */
	assert_int_equal(store_session_user(st, h1, now_ms(), &uid, name),
			 STORE_OK);
	sql(fx, "DELETE FROM sessions");
	assert_int_equal(store_session_user(st, h1, now_ms(), &uid, name),
			 STORE_OK);
	usleep(350 * 1000);
	assert_int_equal(store_session_user(st, h1, now_ms(), &uid, name),
			 STORE_NOTFOUND);
}

static void test_rooms(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), bob = user_new(st, "bob");
	struct store_write w = {.type = EVENT_ROOM,
				.user_id = alice,
				.username = "alice",
				.room_name = "Dev",
				.topic = "all things dev"};
	struct event *ev = NULL;
	json_t *env, *list;
	size_t len;
	char name[33];
	int64_t dev = 0;

	assert_int_equal(write_sync(st, &w, &ev), STORE_OK);
	assert_int_equal(event_type(ev), EVENT_ROOM);
	assert_int_equal(event_user(ev), alice);
	assert_int_equal(store_room_by_name(st, "dev", &dev, name), STORE_OK);
	assert_string_equal(name, "Dev");
	assert_int_equal(event_room(ev), dev);
	assert_int_equal(event_id(ev), 1);
	assert_int_equal(store_last_event_id(st), 1);
	env = json_loads(event_json(ev, &len), 0, NULL);
	assert_non_null(env);
	assert_int_equal(json_id(env), 1);
	assert_string_equal(json_string_value(json_object_get(env, "room")),
			    "Dev");
	assert_string_equal(json_string_value(json_object_get(env, "topic")),
			    "all things dev");
	assert_string_equal(json_string_value(json_object_get(env, "from")),
			    "alice");
	json_decref(env);
	event_unref(ev);

	/* taken, ignoring case; the creator is a member */
	w.room_name = "DEV";
	w.user_id = bob;
	assert_int_equal(write_sync(st, &w, NULL), STORE_EXISTS);
	w.room_name = "bad name!";
	assert_int_equal(write_sync(st, &w, NULL), STORE_ERR);
	assert_int_equal(store_is_member(st, dev, alice), 1);
	assert_int_equal(store_is_member(st, dev, bob), 0);

	list = rooms_json(st, alice);
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 2);
	json_t *r0 = json_array_get(list, 0), *r1 = json_array_get(list, 1);
	assert_string_equal(json_string_value(json_object_get(r0, "name")),
			    "Dev");
	assert_string_equal(json_string_value(json_object_get(r0, "topic")),
			    "all things dev");
	assert_true(json_is_true(json_object_get(r0, "joined")));
	assert_int_equal(json_integer_value(json_object_get(r0, "members")), 1);
	assert_string_equal(json_string_value(json_object_get(r1, "name")),
			    "lobby");
	json_decref(list);
}

struct pairs {
	int n;
	int64_t room, user;
};

static void pair_count(void *arg, int64_t room, int64_t user)
{
	struct pairs *p = arg;
	p->n++;
	p->room = room;
	p->user = user;
}

static void test_membership(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), bob = user_new(st, "bob");
	int64_t lobby = room_id(st, "lobby"), id = 0;
	struct event *ev = NULL;
	struct pairs p = {0};
	json_t *m;

	struct store_write w = {
	    .type = EVENT_JOIN, .user_id = alice, .room_id = lobby};
	assert_int_equal(write_sync(st, &w, &ev), STORE_OK);
	assert_int_equal(event_type(ev), EVENT_JOIN);
	assert_int_equal(event_room(ev), lobby);
	assert_int_equal(event_user(ev), alice);
	event_unref(ev);
	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL),
			 STORE_EXISTS);
	assert_int_equal(op(st, EVENT_JOIN, bob, "bob", lobby, NULL), STORE_OK);
	assert_int_equal(op(st, EVENT_JOIN, bob, "bob", 999, NULL),
			 STORE_NOTFOUND);
	assert_int_equal(op(st, EVENT_JOIN, 999, "ghost", lobby, NULL),
			 STORE_NOTFOUND);
	assert_int_equal(store_is_member(st, lobby, alice), 1);

	m = members_json(st, lobby);
	assert_int_equal(json_array_size(m), 2);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(m, 0), "username")),
			    "alice");
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(m, 1), "display_name")),
			    "bob");
	json_decref(m);

	assert_int_equal(op(st, EVENT_LEAVE, bob, "bob", lobby, &id), STORE_OK);
	assert_int_equal(id, 3);
	assert_int_equal(op(st, EVENT_LEAVE, bob, "bob", lobby, NULL),
			 STORE_NOTMEMBER);
	assert_int_equal(say(st, bob, lobby, "hi", NULL, NULL),
			 STORE_NOTMEMBER);
	assert_int_equal(say(st, alice, lobby, "hi", NULL, &id), STORE_OK);
	assert_int_equal(id, 4);
	assert_int_equal(store_is_member(st, lobby, bob), 0);

	assert_int_equal(store_members_each(st, pair_count, &p), 0);
	assert_int_equal(p.n, 1);
	assert_int_equal(p.room, lobby);
	assert_int_equal(p.user, alice);
}

/* Sent back-to-back so they share a batch (the window is long). */
struct pair_wait {
	struct waiter a, b;
};

static void test_dedupe(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 300, 64);
	struct rec rec;
	int64_t alice, bob, lobby, id1 = 0, id2 = 0, id3 = 0;
	struct pair_wait pw;
	size_t la, lb;

	rec_init(&rec);
	store_set_commit_hook(st, rec_hook, &rec);
	alice = user_new(st, "alice");
	bob = user_new(st, "bob");
	lobby = room_id(st, "lobby");
	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL), 0);
	assert_int_equal(op(st, EVENT_JOIN, bob, "bob", lobby, NULL), 0);

	/* across batches */
	assert_int_equal(say(st, alice, lobby, "one", "c-1", &id1), STORE_OK);
	assert_int_equal(say(st, alice, lobby, "one again", "c-1", &id2),
			 STORE_DUPLICATE);
	assert_int_equal(id1, id2);
	/* another user's client_id space is its own */
	assert_int_equal(say(st, bob, lobby, "one", "c-1", &id3), STORE_OK);
	assert_true(id3 > id1);

	/* within one batch */
	struct store_write w = {.type = EVENT_MESSAGE,
				.user_id = alice,
				.room_id = lobby,
				.text = "two",
				.client_id = "c-2"};
	waiter_init(&pw.a);
	waiter_init(&pw.b);
	store_write_submit(st, &w, waiter_done, &pw.a);
	store_write_submit(st, &w, waiter_done, &pw.b);
	waiter_wait(&pw.a);
	waiter_wait(&pw.b);
	assert_int_equal(pw.a.status, STORE_OK);
	assert_int_equal(pw.b.status, STORE_DUPLICATE);
	assert_int_equal(event_id(pw.a.ev), event_id(pw.b.ev));
	assert_int_equal(event_type(pw.b.ev), EVENT_MESSAGE);
	assert_int_equal(event_room(pw.b.ev), lobby);
	assert_int_equal(event_user(pw.b.ev), alice);
	const char *ja = event_json(pw.a.ev, &la),
		   *jb = event_json(pw.b.ev, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ja, jb, la);
	json_t *env = json_loadb(ja, la, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(env, "text")),
			    "two");
	assert_string_equal(
	    json_string_value(json_object_get(env, "client_id")), "c-2");
	json_decref(env);
	waiter_fini(&pw.a);
	waiter_fini(&pw.b);

	/* without a client_id nothing is deduplicated, and none is sent */
	assert_int_equal(say(st, alice, lobby, "same", NULL, &id1), STORE_OK);
	assert_int_equal(say(st, alice, lobby, "same", NULL, &id2), STORE_OK);
	assert_true(id2 == id1 + 1);

	fx_close(fx);
	/* joins 2, messages c-1, bob c-1, c-2, two without: one hook each */
	assert_int_equal(rec.n, 7);
	assert_true(rec.ordered);
	rec_fini(&rec);
}

static void test_reopen(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), lobby = room_id(st, "lobby");
	int64_t id = 0, last;
	bool more;

	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL), 0);
	struct store_write w = {
	    .type = EVENT_ROOM, .user_id = alice, .room_name = "dev"};
	assert_int_equal(write_sync(st, &w, NULL), STORE_OK);
	for (int i = 0; i < 5; i++)
		assert_int_equal(say(st, alice, lobby, "x", NULL, NULL), 0);
	assert_int_equal(say(st, alice, lobby, "keep", "k-1", NULL), 0);
	last = store_last_event_id(st);
	assert_int_equal(last, 8);
	fx_close(fx);

	st = fx_open(fx, 2, 64);
	assert_int_equal(store_last_event_id(st), last);
	struct store_user u;
	assert_int_equal(store_user_by_name(st, "alice", &u), STORE_OK);
	assert_int_equal(u.id, alice);
	store_user_fini(&u);
	assert_int_equal(store_room_by_name(st, "DEV", NULL, NULL), STORE_OK);
	assert_int_equal(store_is_member(st, lobby, alice), 1);
	json_t *h = history_json(st, lobby, -1, -1, 100, &more);
	assert_int_equal(json_array_size(h), 7);
	json_decref(h);
	assert_int_equal(say(st, alice, lobby, "again", "k-1", &id),
			 STORE_DUPLICATE);
	assert_int_equal(id, last);
	assert_int_equal(say(st, alice, lobby, "y", NULL, &id), STORE_OK);
	assert_int_equal(id, last + 1);
	fx_close(fx);

	/* Even once the newest events are gone, ids are not reused. */
	sql(fx, "DELETE FROM events WHERE id >= 5");
	st = fx_open(fx, 2, 64);
	assert_int_equal(store_last_event_id(st), last + 1);
	assert_int_equal(say(st, alice, lobby, "z", NULL, &id), STORE_OK);
	assert_int_equal(id, last + 2);
}

#define THREADS 4
#define PER_THREAD 250

struct sender {
	struct store *st;
	int64_t user, room;
	int index;
	int64_t *ids;  /* [PER_THREAD], filled by done */
	int *calls;    /* [PER_THREAD] */
	int *statuses; /* [PER_THREAD] */
};

struct slot {
	struct sender *s;
	int i;
};

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;

static void sender_done(void *arg, int status, struct event *ev)
{
	struct slot *sl = arg;
	pthread_mutex_lock(&slot_mu);
	sl->s->calls[sl->i]++;
	sl->s->statuses[sl->i] = status;
	sl->s->ids[sl->i] = ev ? event_id(ev) : -1;
	pthread_mutex_unlock(&slot_mu);
	free(sl);
}

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	char text[64], cid[32];
	for (int i = 0; i < PER_THREAD; i++) {
		struct slot *sl = xmalloc(sizeof(*sl));
		sl->s = s;
		sl->i = i;
		snprintf(text, sizeof(text), "thread %d message %d", s->index,
			 i);
		snprintf(cid, sizeof(cid), "t%d-%d", s->index, i);
		struct store_write w = {.type = EVENT_MESSAGE,
					.user_id = s->user,
					.room_id = s->room,
					.text = text,
					.client_id = cid};
		store_write_submit(s->st, &w, sender_done, sl);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 5, 128);
	struct rec rec;
	struct sender s[THREADS];
	pthread_t th[THREADS];
	int64_t lobby = room_id(st, "lobby"), users[THREADS], first;
	bool more;

	rec_init(&rec);
	store_set_commit_hook(st, rec_hook, &rec);
	for (int t = 0; t < THREADS; t++) {
		char name[16];
		snprintf(name, sizeof(name), "user%d", t);
		users[t] = user_new(st, name);
		assert_int_equal(
		    op(st, EVENT_JOIN, users[t], name, lobby, NULL), STORE_OK);
	}
	first = store_last_event_id(st) + 1;
	for (int t = 0; t < THREADS; t++) {
		s[t] = (struct sender){
		    .st = st, .user = users[t], .room = lobby, .index = t};
		s[t].ids = xcalloc(PER_THREAD, sizeof(int64_t));
		s[t].calls = xcalloc(PER_THREAD, sizeof(int));
		s[t].statuses = xcalloc(PER_THREAD, sizeof(int));
		assert_int_equal(
		    pthread_create(&th[t], NULL, sender_main, &s[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);

	/* history is complete once every write is done: close then reopen */
	fx_close(fx);
	assert_int_equal(rec.n, THREADS + THREADS * PER_THREAD);
	assert_true(rec.ordered);
	assert_int_equal(rec.ids[0], 1);

	char *seen = xcalloc(THREADS * PER_THREAD, 1);
	for (int t = 0; t < THREADS; t++) {
		int64_t prev = 0;
		for (int i = 0; i < PER_THREAD; i++) {
			assert_int_equal(s[t].calls[i], 1);
			assert_int_equal(s[t].statuses[i], STORE_OK);
			/* one thread's jobs keep their order */
			assert_true(s[t].ids[i] > prev);
			prev = s[t].ids[i];
			int64_t k = s[t].ids[i] - first;
			assert_true(k >= 0 && k < THREADS * PER_THREAD);
			assert_int_equal(seen[k], 0);
			seen[k] = 1;
		}
		free(s[t].ids);
		free(s[t].calls);
		free(s[t].statuses);
	}
	free(seen);

	st = fx_open(fx, 5, 128);
	json_t *h = history_json(st, lobby, -1, first - 1, 5000, &more);
	assert_non_null(h);
	assert_false(more);
	assert_int_equal(json_array_size(h), THREADS * PER_THREAD);
	for (size_t i = 0; i < json_array_size(h); i++)
		assert_int_equal(json_id(json_array_get(h, i)),
				 first + (int64_t)i);
	json_decref(h);
	rec_fini(&rec);
}

/* Proof of group commit by behaviour: every hook of a batch runs before any
 * of its done callbacks. */
static void gc_hook(void *arg, struct event *ev)
{
	struct rec *r = arg;
	(void)ev;
	pthread_mutex_lock(&r->mu);
	r->n++;
	pthread_mutex_unlock(&r->mu);
}

static void gc_done(void *arg, int status, struct event *ev)
{
	struct rec *r = arg;
	(void)ev;
	pthread_mutex_lock(&r->mu);
	if (status == STORE_OK && r->dones++ == 0)
		r->hooks_at_first_done = r->n;
	pthread_mutex_unlock(&r->mu);
}

static void test_group_commit(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	struct rec rec;
	int64_t alice = user_new(st, "alice");
	struct store_write w = {
	    .type = EVENT_ROOM, .user_id = alice, .room_name = "r"};
	assert_int_equal(write_sync(st, &w, NULL), STORE_OK);
	int64_t r = room_id(st, "r");
	fx_close(fx);

	/* a batch of 10, or 5 s: the 10th submit starts the commit */
	st = fx_open(fx, 5000, 10);
	rec_init(&rec);
	store_set_commit_hook(st, gc_hook, &rec);
	for (int i = 0; i < 10; i++) {
		struct store_write m = {.type = EVENT_MESSAGE,
					.user_id = alice,
					.room_id = r,
					.text = "batched"};
		store_write_submit(st, &m, gc_done, &rec);
	}
	fx_close(fx);
	assert_int_equal(rec.dones, 10);
	assert_int_equal(rec.hooks_at_first_done, 10);
	rec_fini(&rec);
}

static void test_batch_failure(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	struct rec rec;
	int64_t alice = user_new(st, "alice"), lobby = room_id(st, "lobby");
	int64_t last, id = 0;
	struct waiter w[3];
	const char *texts[3] = {"ok-1", "sick", "ok-2"};

	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL), 0);
	fx_close(fx);
	/* "sick" makes SQLite fail as a full disk would (not a constraint);
	 * "reject" fails a constraint (one job's own problem). */
	sql(fx, "CREATE TRIGGER sick BEFORE INSERT ON events "
		"WHEN new.text = 'sick' BEGIN "
		"SELECT abs(-9223372036854775807 - 1); END;"
		"CREATE TRIGGER reject BEFORE INSERT ON events "
		"WHEN new.text = 'reject' BEGIN "
		"SELECT RAISE(ABORT, 'rejected'); END;");

	st = fx_open(fx, 3000, 3);
	rec_init(&rec);
	store_set_commit_hook(st, rec_hook, &rec);
	last = store_last_event_id(st);
	for (int i = 0; i < 3; i++) {
		struct store_write m = {.type = EVENT_MESSAGE,
					.user_id = alice,
					.room_id = lobby,
					.text = texts[i]};
		waiter_init(&w[i]);
		store_write_submit(st, &m, waiter_done, &w[i]);
	}
	for (int i = 0; i < 3; i++) {
		waiter_wait(&w[i]);
		assert_int_equal(w[i].status, STORE_ERR);
		assert_null(w[i].ev);
		waiter_fini(&w[i]);
	}
	assert_int_equal(rec.n, 0);
	assert_int_equal(store_last_event_id(st), last);

	/* one rejected job does not fail its batch-mates (the last one comes
	 * as chat sends it: sender and room already resolved) */
	for (int i = 0; i < 3; i++) {
		struct store_write m = {.type = EVENT_MESSAGE,
					.user_id = alice,
					.username = i == 2 ? "alice" : NULL,
					.room_id = lobby,
					.room_name = i == 2 ? "lobby" : NULL,
					.text = i == 1 ? "reject" : "fine"};
		waiter_init(&w[i]);
		store_write_submit(st, &m, waiter_done, &w[i]);
	}
	for (int i = 0; i < 3; i++)
		waiter_wait(&w[i]);
	assert_int_equal(w[0].status, STORE_OK);
	assert_int_equal(w[1].status, STORE_ERR);
	assert_int_equal(w[2].status, STORE_OK);
	/* the id counter rolled back past both failures: no gap */
	assert_int_equal(event_id(w[0].ev), last + 1);
	assert_int_equal(event_id(w[2].ev), last + 2);
	size_t l0, l2;
	const char *j0 = event_json(w[0].ev, &l0),
		   *j2 = event_json(w[2].ev, &l2);
	assert_non_null(strstr(j0, "\"room\":\"lobby\",\"from\":\"alice\""));
	assert_non_null(strstr(j2, "\"room\":\"lobby\",\"from\":\"alice\""));
	for (int i = 0; i < 3; i++)
		waiter_fini(&w[i]);
	fx_close(fx);
	assert_int_equal(rec.n, 2);
	assert_true(rec.ordered);
	rec_fini(&rec);

	st = fx_open(fx, 2, 64);
	bool more;
	json_t *h = history_json(st, lobby, -1, last, 100, &more);
	assert_int_equal(json_array_size(h), 2);
	json_decref(h);
	/* the batch's messages were indexed once each, the rejected one not */
	assert_int_equal(search_n(st, alice, "fine", NULL), 2);
	assert_int_equal(search_n(st, alice, "reject", NULL), 0);
	assert_int_equal(say(st, alice, lobby, "later", NULL, &id), STORE_OK);
	assert_int_equal(id, last + 3);
}

static void test_history(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), lobby = room_id(st, "lobby");
	int64_t ids[26];
	bool more = true;
	json_t *h;
	char text[16];

	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, &ids[0]), 0);
	for (int i = 1; i < 26; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		assert_int_equal(say(st, alice, lobby, text, NULL, &ids[i]), 0);
	}

	/* newest page */
	h = history_json(st, lobby, -1, -1, 10, &more);
	assert_int_equal(json_array_size(h), 10);
	assert_true(more);
	assert_int_equal(json_id(json_array_get(h, 0)), ids[16]);
	assert_int_equal(json_id(json_array_get(h, 9)), ids[25]);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(h, 9), "text")),
	    "m25");
	json_decref(h);
	/* older */
	h = history_json(st, lobby, ids[16], -1, 10, &more);
	assert_int_equal(json_array_size(h), 10);
	assert_true(more);
	assert_int_equal(json_id(json_array_get(h, 0)), ids[6]);
	assert_int_equal(json_id(json_array_get(h, 9)), ids[15]);
	json_decref(h);
	h = history_json(st, lobby, ids[6], -1, 10, &more);
	assert_int_equal(json_array_size(h), 6);
	assert_false(more);
	assert_int_equal(json_id(json_array_get(h, 0)), ids[0]);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(h, 0), "type")),
	    "join");
	json_decref(h);
	/* exactly a page left: no more */
	h = history_json(st, lobby, ids[10], -1, 10, &more);
	assert_int_equal(json_array_size(h), 10);
	assert_false(more);
	json_decref(h);

	/* forwards */
	h = history_json(st, lobby, -1, 0, 10, &more);
	assert_int_equal(json_array_size(h), 10);
	assert_true(more);
	assert_int_equal(json_id(json_array_get(h, 0)), ids[0]);
	json_decref(h);
	h = history_json(st, lobby, -1, ids[20], 10, &more);
	assert_int_equal(json_array_size(h), 5);
	assert_false(more);
	assert_int_equal(json_id(json_array_get(h, 0)), ids[21]);
	json_decref(h);
	h = history_json(st, lobby, -1, ids[25], 10, &more);
	assert_int_equal(json_array_size(h), 0);
	assert_false(more);
	json_decref(h);
	/* both bounds: the oldest after `after`, below `before` */
	h = history_json(st, lobby, ids[10], ids[2], 5, &more);
	assert_int_equal(json_array_size(h), 5);
	assert_true(more);
	assert_int_equal(json_id(json_array_get(h, 0)), ids[3]);
	json_decref(h);
	/* another room's history is its own */
	h = history_json(st, 4242, -1, -1, 10, NULL);
	assert_int_equal(json_array_size(h), 0);
	json_decref(h);
}

static void test_events_after(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), bob = user_new(st, "bob");
	int64_t lobby = room_id(st, "lobby"), secret, m1 = 0, m2 = 0, m3 = 0;
	struct event **evs;
	size_t n;

	/* bob joins first: replay follows membership as of each event, so
	 * a join before his would not be his to see */
	assert_int_equal(op(st, EVENT_JOIN, bob, "bob", lobby, NULL), 0);
	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL), 0);
	struct store_write w = {
	    .type = EVENT_ROOM, .user_id = alice, .room_name = "secret"};
	assert_int_equal(write_sync(st, &w, NULL), STORE_OK);
	secret = room_id(st, "secret");
	assert_int_equal(say(st, alice, lobby, "public", NULL, &m1), 0);
	assert_int_equal(say(st, alice, secret, "private", NULL, &m2), 0);
	assert_int_equal(say(st, bob, lobby, "reply", "b-1", &m3), 0);

	/* bob: lobby only */
	assert_int_equal(store_events_after(st, bob, 0, 100, &evs, &n), 0);
	assert_int_equal(n, 4); /* two joins, two messages */
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(event_room(evs[i]), lobby);
		if (i)
			assert_true(event_id(evs[i]) > event_id(evs[i - 1]));
	}
	assert_int_equal(event_id(evs[2]), m1);
	assert_int_equal(event_type(evs[2]), EVENT_MESSAGE);
	assert_int_equal(event_user(evs[2]), alice);
	assert_int_equal(event_id(evs[3]), m3);
	assert_int_equal(event_user(evs[3]), bob);
	size_t len;
	const char *json = event_json(evs[3], &len);
	json_t *env = json_loadb(json, len, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(env, "from")),
			    "bob");
	assert_string_equal(
	    json_string_value(json_object_get(env, "client_id")), "b-1");
	json_decref(env);
	for (size_t i = 0; i < n; i++)
		event_unref(evs[i]);
	free(evs);

	/* alice: both rooms, after and limit */
	assert_int_equal(store_events_after(st, alice, m1 - 1, 2, &evs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(event_id(evs[0]), m1);
	assert_int_equal(event_id(evs[1]), m2);
	assert_int_equal(event_type(evs[1]), EVENT_MESSAGE);
	assert_int_equal(event_room(evs[1]), secret);
	for (size_t i = 0; i < n; i++)
		event_unref(evs[i]);
	free(evs);
	assert_int_equal(store_events_after(st, alice, m3, 10, &evs, &n), 0);
	assert_int_equal(n, 0);
	free(evs);
	assert_int_equal(store_events_after(st, alice, 0, 0, &evs, &n), 0);
	assert_int_equal(n, 0);
	free(evs);

	/* membership is as of each event (it used to be as of now, which
	 * replayed nothing here): bob gets the lobby up to and including his
	 * own leave, and nothing of it after */
	int64_t left = 0;
	assert_int_equal(op(st, EVENT_LEAVE, bob, "bob", lobby, &left), 0);
	assert_int_equal(say(st, alice, lobby, "after", NULL, NULL), 0);
	assert_int_equal(store_events_after(st, bob, 0, 100, &evs, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(event_id(evs[4]), left);
	assert_int_equal(event_type(evs[4]), EVENT_LEAVE);
	for (size_t i = 0; i < n; i++)
		event_unref(evs[i]);
	free(evs);
	assert_int_equal(store_events_after(st, bob, left, 100, &evs, &n), 0);
	assert_int_equal(n, 0);
	free(evs);
}

static size_t search_n(struct store *st, int64_t user, const char *q,
		       json_t **out)
{
	json_t *r = search_json(st, user, q, 50);
	size_t n;
	if (!r)
		fail_msg("search_json(%s) failed", q);
	n = json_array_size(r);
	if (out)
		*out = r;
	else
		json_decref(r);
	return n;
}

static void test_search(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), bob = user_new(st, "bob");
	int64_t lobby = room_id(st, "lobby"), dev, m1 = 0, m2 = 0;
	json_t *r;

	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL), 0);
	assert_int_equal(op(st, EVENT_JOIN, bob, "bob", lobby, NULL), 0);
	struct store_write w = {.type = EVENT_ROOM,
				.user_id = alice,
				.room_name = "dev",
				.topic = "quick topic"};
	assert_int_equal(write_sync(st, &w, NULL), STORE_OK);
	dev = room_id(st, "dev");
	assert_int_equal(say(st, alice, dev, "the quick brown fox", NULL, &m1),
			 0);
	assert_int_equal(say(st, alice, lobby, "foo or bar", NULL, NULL), 0);
	assert_int_equal(
	    say(st, bob, lobby, "Quicker than light, Café", NULL, &m2), 0);

	assert_int_equal(search_n(st, alice, "brown", &r), 1);
	assert_int_equal(json_id(json_array_get(r, 0)), m1);
	json_decref(r);
	/* prefixes, case, and newest first */
	assert_int_equal(search_n(st, alice, "QUI", &r), 2);
	assert_int_equal(json_id(json_array_get(r, 0)), m2);
	assert_int_equal(json_id(json_array_get(r, 1)), m1);
	json_decref(r);
	assert_int_equal(search_n(st, alice, "quick fox", NULL), 1);
	assert_int_equal(search_n(st, alice, "cafe", NULL), 1);
	assert_int_equal(search_n(st, alice, "café", NULL), 1);
	/* membership: bob is not in dev */
	assert_int_equal(search_n(st, bob, "quick", &r), 1);
	assert_int_equal(json_id(json_array_get(r, 0)), m2);
	json_decref(r);
	assert_int_equal(search_n(st, bob, "brown", NULL), 0);
	/* room topics and non-members are not searched */
	assert_int_equal(search_n(st, alice, "topic", NULL), 0);
	assert_int_equal(search_n(st, 4242, "quick", NULL), 0);

	/* hostile queries are only words */
	assert_int_equal(search_n(st, alice, "\"foo OR (bar", NULL), 1);
	assert_int_equal(search_n(st, alice, "foo NOT bar", NULL), 0);
	assert_int_equal(search_n(st, alice, "NEAR(foo bar)", NULL), 0);
	assert_int_equal(search_n(st, alice, "bar) OR (fo", NULL), 1);
	assert_int_equal(search_n(st, alice, "text:foo", NULL), 0);
	assert_int_equal(search_n(st, alice, "* ) ( \" ^ - + :", NULL), 0);
	assert_int_equal(search_n(st, alice, "", NULL), 0);
	assert_int_equal(search_n(st, alice, "\xe2\x80\x94", NULL), 0);
	assert_int_equal(search_n(st, alice, "\xff\xfe", NULL), 0);
	r = search_json(st, alice, NULL, 10);
	assert_int_equal(json_array_size(r), 0);
	json_decref(r);
	/* limit */
	r = search_json(st, alice, "quick", 1);
	assert_int_equal(json_array_size(r), 1);
	json_decref(r);
}

/* A done callback that submits again while the store is closing. */
struct drain {
	struct store *st;
	int ok, closed, calls;
};

static void drain_late(void *arg, int status, struct event *ev)
{
	struct drain *d = arg;
	(void)ev;
	if (status == STORE_CLOSED)
		d->closed++;
}

static void drain_done(void *arg, int status, struct event *ev)
{
	struct drain *d = arg;
	(void)ev;
	d->calls++;
	if (status == STORE_OK)
		d->ok++;
	if (d->calls == 1) {
		struct store_write w = {.type = EVENT_MESSAGE,
					.user_id = 1,
					.room_id = 1,
					.text = "too late"};
		store_write_submit(d->st, &w, drain_late, d);
	}
}

static void test_close_drains(void **state)
{
	struct fx *fx = *state;
	struct store *st = fx_open(fx, 2, 64);
	int64_t alice = user_new(st, "alice"), lobby = room_id(st, "lobby");
	struct drain d = {0};
	bool more;

	assert_int_equal(alice, 1);
	assert_int_equal(lobby, 1);
	assert_int_equal(op(st, EVENT_JOIN, alice, "alice", lobby, NULL), 0);
	fx_close(fx);

	/* a long window: the jobs are still queued when close starts */
	st = fx_open(fx, 10000, 1000);
	d.st = st;
	for (int i = 0; i < 50; i++) {
		struct store_write w = {.type = EVENT_MESSAGE,
					.user_id = alice,
					.room_id = lobby,
					.text = "queued"};
		store_write_submit(st, &w, drain_done, &d);
	}
	fx_close(fx);
	assert_int_equal(d.calls, 50);
	assert_int_equal(d.ok, 50);
	assert_int_equal(d.closed, 1);

	st = fx_open(fx, 2, 64);
	json_t *h = history_json(st, lobby, -1, -1, 100, &more);
	assert_int_equal(json_array_size(h), 51);
	json_decref(h);
}

/* The backend contract (store_contract.c) against SQLite: each case gets a
 * fresh database in its own directory. */
static struct store *contract_open(void *arg)
{
	(void)arg;
	struct fx *fx = xcalloc(1, sizeof(*fx));
	if (testdir_make(fx->dir, sizeof(fx->dir), "store_contract") < 0) {
		free(fx);
		return NULL;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/natter.db", fx->dir);
	fx->db_dir = testdir_db();
	char err[512] = "";
	struct store *st = open_with(fx, fx->db_dir, 0, 64, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "store_open: %s\n", err);
		testdir_remove(fx->dir);
		free(fx);
		return NULL;
	}
	/* one store per case: remember its directory by the store */
	contract_fx = fx;
	return st;
}

static void contract_close(void *arg, struct store *st)
{
	(void)arg;
	store_close(st);
	testdir_remove(contract_fx->dir);
	free(contract_fx);
	contract_fx = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fresh_lobby, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_schema_versions, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_paths, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_users, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sessions, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rooms, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_membership, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_dedupe, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reopen, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_search_2_to_3,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_session_cache, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_batch_failure, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_history, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_events_after, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_search, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_close_drains, fx_setup,
					    fx_teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	struct store_contract_factory sqlite = {
	    .name = "store_contract(sqlite)",
	    .open = contract_open,
	    .close = contract_close,
	};
	return failed + store_contract_run(&sqlite);
}
