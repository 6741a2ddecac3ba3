#!/usr/bin/env bash
# natterctl.sh: the operator's tool against real databases, with natterd
# running: accounts (create, disable, enable, reset-password, grant and
# revoke admin) and how natterd sees them, a backup taken while 20 senders
# write (the copy passes integrity_check and holds every message
# acknowledged before it began), export then import into a fresh database
# (the same history, ids kept), stats, room list, room delete, and every subcommand's
# errors and exit codes.
. "$(dirname "$0")/lib.sh"
: "${NATTERCTL:?NATTERCTL must point at the natterctl binary}"

ctl() { "$NATTERCTL" --db "$WORK/natter.db" --db-dir "$NATTER_DB_DIR" \
	--argon2-memory-kib 1024 --argon2-time 1 "$@"; }
# status CMD...: runs it, output in $WORK/out and $WORK/err, sets RC.
run() { RC=0; "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?; }

# --- accounts before natterd ever ran -------------------------------------------
run ctl user create root --password-file /dev/null
check "an empty password file: exit 5 (bad input)" test "$RC" = 5
printf 'short\n' >"$WORK/pw"
run ctl user create root --password-file "$WORK/pw"
check "a short password: exit 5" test "$RC" = 5
printf 'correct horse\n' >"$WORK/pw"
run ctl user create root --password-file "$WORK/pw"
check "user create from a password file: exit 0" test "$RC" = 0
run ctl user create 'bad name' --password-file "$WORK/pw"
check "a bad user name: exit 5" test "$RC" = 5
run ctl user create ROOT --password-file "$WORK/pw"
check "a taken name (any case): exit 4 (conflict)" test "$RC" = 4
check "and says so" grep -q 'exists' "$WORK/err"
echo 'correct horse' | ctl user create olga >/dev/null
check "user create from stdin" test $? = 0

start_natterd --session-cache-ms 500
api_json POST /api/login "" '{"username":"root","password":"correct horse"}'
expect 200 "" "the created user logs in"
ROOT=$(jget .token)
check "the first account made by natterctl is the admin" test "$(jget .user.admin)" = true
api_json POST /api/login "" '{"username":"olga","password":"correct horse"}'
OLGA=$(jget .token)
check "the second is not" test "$(jget .user.admin)" = false

# --- changes while natterd runs ----------------------------------------------------
run ctl user grant-admin olga
check "grant-admin: exit 0" test "$RC" = 0
api_get /api/me "$OLGA"
check "natterd sees olga as admin" test "$(jget .admin)" = true
# admin_status TOKEN WANT: the status of an admin-only request, polled for
# up to 3 s (rights checks answer from natterd's role cache, which
# re-reads the admins once a second, with no request needed)
admin_status() {
	local i
	for i in $(seq 1 30); do
		api_get "/api/admin/users?limit=1" "$1"
		[ "$STATUS" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
check "grant-admin reaches the rights checks: an admin-only request is served" admin_status "$OLGA" 200
run ctl user revoke-admin olga
api_get /api/me "$OLGA"
check "revoke-admin: natterd sees it" test "$(jget .admin)" = false
check "revoke-admin reaches the rights checks: refused" admin_status "$OLGA" 403
run ctl user grant-admin nobody
check "grant-admin of an unknown user: exit 3 (not found)" test "$RC" = 3
run ctl user disable olga --reason "from the shell"
check "user disable: exit 0" test "$RC" = 0
api_json POST /api/login "" '{"username":"olga","password":"correct horse"}'
expect 403 disabled "logging in is refused at once"
sleep 0.7
api_get /api/me "$OLGA"
expect 403 disabled "an open session is refused within the session cache's lifetime"
check "... with the reason" test "$(jget .reason)" = "from the shell"
run ctl user enable olga
check "user enable: exit 0" test "$RC" = 0
echo 'battery staple' | ctl user reset-password olga >/dev/null
check "reset-password: exit 0" test $? = 0
api_json POST /api/login "" '{"username":"olga","password":"correct horse"}'
expect 401 bad_credentials "the old password no longer works"
api_json POST /api/login "" '{"username":"olga","password":"battery staple"}'
expect 200 "" "the new one does"
OLGA=$(jget .token)
run ctl user disable nobody
check "disable of an unknown user: exit 3" test "$RC" = 3
run ctl user disable olga --reason "$(printf 'r%.0s' $(seq 201))"
check "a reason over 200 characters: exit 5" test "$RC" = 5
echo 'battery staple' | ctl user reset-password nobody >/dev/null 2>&1 && RC=0 || RC=$?
check "reset-password of an unknown user: exit 3" test "$RC" = 3
api_get /api/admin/audit "$ROOT"
check "natterctl's actions are in the audit log" \
	test "$(jq -c '[.entries[] | select(.actor == "natterctl") | .action] | reverse' <<<"$BODY")" = \
	'["create","create","grant_admin","revoke_admin","disable","enable","reset_password"]'

# --- backup while 20 senders write ---------------------------------------------------
api_json POST /api/rooms "$ROOT" '{"name":"busy"}'
TOKENS=()
for i in $(seq 1 20); do
	T=$(register "s$i")
	TOKENS+=("$T")
	api_json POST /api/rooms/busy/join "$T" '{}'
done
for i in $(seq 0 19); do
	(
		for j in $(seq 1 400); do
			[ -e "$WORK/stop" ] && break
			id=$(curl -sf -H "Authorization: Bearer ${TOKENS[$i]}" -H 'Content-Type: application/json' \
				--data "{\"text\":\"s$i m$j\"}" "$BASE/api/rooms/busy/messages" | jq -r .event.id) || continue
			echo "$id" >>"$WORK/acked.$i"
		done
	) &
done
# wait until the senders are well under way (a loaded machine is slow)
for _ in $(seq 1 200); do
	[ "$(cat "$WORK"/acked.* 2>/dev/null | wc -l)" -ge 60 ] && break
	sleep 0.1
done
cat "$WORK"/acked.* | sort >"$WORK/before-backup"
run ctl backup "$WORK/copy.db"
check "backup while 20 senders write: exit 0" test "$RC" = 0
sleep 0.5
touch "$WORK/stop"
wait $(jobs -p | grep -v "^$NATTERD_PID\$") 2>/dev/null || true
check "the senders had written before the backup ($(wc -l <"$WORK/before-backup"))" \
	test "$(wc -l <"$WORK/before-backup")" -ge 60
check "and went on writing while it ran" \
	test "$(cat "$WORK"/acked.* | wc -l)" -gt "$(wc -l <"$WORK/before-backup")"
check "the copy passes integrity_check" test "$(sqlite3 "$WORK/copy.db" 'PRAGMA integrity_check')" = ok
sqlite3 "$WORK/copy.db" 'SELECT id FROM events ORDER BY id' >"$WORK/in-copy"
check "the copy holds every message acknowledged before the backup began" \
	test -z "$(comm -23 "$WORK/before-backup" <(sort "$WORK/in-copy") | head -1)"
run ctl backup "$WORK/copy.db"
check "backup onto an existing file: exit 4" test "$RC" = 4
run ctl backup /nonexistent/dir/copy.db
check "backup into a missing directory: exit 6 (file)" test "$RC" = 6

# --- export, import -------------------------------------------------------------------
api_json POST /api/rooms/busy/kicks "$ROOT" '{"user":"s3","reason":"test"}'
api_json POST /api/rooms/busy/bans "$ROOT" '{"user":"s4"}'
api PUT /api/rooms/busy/moderators/s5 -H "Authorization: Bearer $ROOT"
run ctl export --with-secrets
check "export: exit 0" test "$RC" = 0
cp "$WORK/out" "$WORK/all.jsonl"
check "export is JSON Lines, one object each" \
	test "$(jq -c 'select(type == "object") | .kind' "$WORK/all.jsonl" | wc -l)" = "$(wc -l <"$WORK/all.jsonl")"
check "every event is there" \
	test "$(jq -r 'select(.kind == "event")' "$WORK/all.jsonl" | jq -s length)" = \
	"$(sqlite3 "$WORK/natter.db" 'SELECT count(*) FROM events')"
run ctl export
check "without --with-secrets no password hash leaves" bash -c "! grep -q pwhash '$WORK/out'"
run ctl export --room busy
check "export --room: only that room's events" \
	test "$(jq -r 'select(.kind == "event") | .room_id' "$WORK/out" | sort -u | wc -l)" = 1
run ctl export --room nowhere
check "export of an unknown room: exit 3" test "$RC" = 3

FRESH="$WORK/fresh.db"
run "$NATTERCTL" --db "$FRESH" --db-dir "$NATTER_DB_DIR" import "$WORK/all.jsonl"
check "import into a fresh database: exit 0 ($(cat "$WORK/err"))" test "$RC" = 0
run "$NATTERCTL" --db "$FRESH" --db-dir "$NATTER_DB_DIR" export --with-secrets
check "export of the import equals the export (compared with jq)" \
	test "$(jq -cS . "$WORK/out" | sha256sum)" = "$(jq -cS . "$WORK/all.jsonl" | sha256sum)"
run "$NATTERCTL" --db "$FRESH" --db-dir "$NATTER_DB_DIR" import "$WORK/all.jsonl"
check "import into a non-empty database: exit 4" test "$RC" = 4
echo '{"kind":"user","id":1,"username":"x","bogus":1}' >"$WORK/bad.jsonl"
run "$NATTERCTL" --db "$WORK/fresh2.db" --db-dir "$NATTER_DB_DIR" import "$WORK/bad.jsonl"
check "an unknown column: exit 5, nothing imported" \
	test "$RC/$(sqlite3 "$WORK/fresh2.db" 'SELECT count(*) FROM users')" = 5/0
echo 'not json' >"$WORK/bad.jsonl"
run "$NATTERCTL" --db "$WORK/fresh2.db" --db-dir "$NATTER_DB_DIR" import "$WORK/bad.jsonl"
check "a line that is not JSON: exit 5 with its line number" \
	bash -c "test $RC = 5 && grep -q 'line 1' '$WORK/err'"
run "$NATTERCTL" --db "$WORK/fresh2.db" --db-dir "$NATTER_DB_DIR" import "$WORK/missing.jsonl"
check "a missing import file: exit 6" test "$RC" = 6

# The imported database serves the same history, ids and all.
api_get "/api/rooms/busy/messages?limit=200" "$ROOT"
jq -c '.events' <<<"$BODY" >"$WORK/hist.orig"
stop_natterd
mv "$WORK/natter.db" "$WORK/orig.db"
rm -f "$WORK/natter.db-wal" "$WORK/natter.db-shm"
cp "$FRESH" "$WORK/natter.db"
start_natterd
api_json POST /api/login "" '{"username":"root","password":"correct horse"}'
expect 200 "" "the imported account logs in with its password"
ROOT=$(jget .token)
api_get "/api/rooms/busy/messages?limit=200" "$ROOT"
check "the same history page through natterd (ids kept)" \
	test "$(jq -c '.events' <<<"$BODY")" = "$(cat "$WORK/hist.orig")"
api_get "/api/search?q=m1" "$ROOT"
check "search works on the imported history" test "$(jq '.results | length' <<<"$BODY")" -gt 0
api_json POST /api/rooms/busy/messages "$ROOT" '{"text":"after import"}'
check "new events continue above the imported ids" \
	test "$(jget .event.id)" -gt "$(sqlite3 "$WORK/orig.db" 'SELECT max(id) FROM events')"
api_json POST /api/rooms/busy/join "$(register z1)" '{}'
api_json POST /api/login "" '{"username":"s4","password":"correct horse"}'
api_json POST /api/rooms/busy/join "$(jget .token)" '{}'
expect 403 banned "bans came along"

# --- stats, room list, usage ------------------------------------------------------------
run ctl stats
check "stats: exit 0, JSON with the counts" \
	test "$RC/$(jq .users "$WORK/out")" = "0/$(sqlite3 "$WORK/natter.db" 'SELECT count(*) FROM users')"
run ctl room list
check "room list: the rooms with members and owner" \
	bash -c "test $RC = 0 && grep -Eq '^busy +[0-9]+ +[0-9]+ +root' '$WORK/out'"
run "$NATTERCTL" --db "$WORK/none.db" stats
check "stats of a missing database: exit 2" test "$RC" = 2
run "$NATTERCTL" --db "$WORK/none.db" room list
check "room list of a missing database: exit 2" test "$RC" = 2
run "$NATTERCTL" --db "$WORK/none.db" export
check "export of a missing database: exit 2" test "$RC" = 2
run "$NATTERCTL" --db "$WORK/none.db" backup "$WORK/x.db"
check "backup of a missing database: exit 2" test "$RC" = 2
for bad in "" "frobnicate" "user" "user create" "user explode x" "room" "backup" "stats extra" "--bogus stats"; do
	# shellcheck disable=SC2086
	run "$NATTERCTL" --db "$WORK/natter.db" $bad
	check "usage error '$bad': exit 1" test "$RC" = 1
done
run "$NATTERCTL" --help
check "--help: exit 0 with the usage" bash -c "test $RC = 0 && grep -q 'usage: natterctl' '$WORK/out'"

# --- room delete, while natterd runs ---------------------------------------------------
api_json POST /api/rooms "$ROOT" '{"name":"doomed"}'
expect 201 "" "a room to delete"
api_json POST /api/rooms/doomed/messages "$ROOT" '{"text":"quokkaword in the doomed room"}'
api_json POST /api/rooms/doomed/messages "$ROOT" '{"text":"@s4 also here"}'
run ctl room delete lobby
check "room delete lobby: exit 5 (every account starts there)" test "$RC" = 5
run ctl room delete nosuchroom
check "room delete of an unknown room: exit 3" test "$RC" = 3
run ctl room delete DOOMED --reason "spam room"
check "room delete (any case): exit 0, says how many events went" \
	bash -c "test $RC = 0 && grep -q 'deleted room doomed (3 events)' '$WORK/out'"
check "nothing of it is left in the file" test "$(sqlite3 "$WORK/natter.db" \
	"SELECT (SELECT count(*) FROM rooms WHERE name = 'doomed') +
		(SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = e.room_id)) +
		(SELECT count(*) FROM members m WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = m.room_id))")" = 0
check "the audit log says who, what and why" test "$(sqlite3 "$WORK/natter.db" \
	"SELECT actor || ' ' || action || ' ' || room || ' ' || reason FROM audit ORDER BY id DESC LIMIT 1")" = "natterctl delete_room doomed spam room"
api_json POST /api/rooms/doomed/messages "$ROOT" '{"text":"into the void"}'
check "the running natterd refuses a send to it" test "$STATUS" -ge 400
api_get "/api/search?q=quokkaword" "$ROOT"
check "its messages are gone from search" test "$(jq '.results | length' <<<"$BODY")" = 0
stop_natterd
start_natterd
api_get /api/rooms/doomed/messages "$ROOT"
expect 404 no_such_room "after a restart natterd knows no such room"
api_get /api/rooms "$ROOT"
check "and does not list it" test "$(jq '[.rooms[] | select(.name == "doomed")] | length' <<<"$BODY")" = 0

finish
