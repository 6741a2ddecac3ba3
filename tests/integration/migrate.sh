#!/usr/bin/env bash
# migrate: `natterctl migrate` moves a single node's SQLite database into
# PostgreSQL (issue 16) and natterd on PostgreSQL carries on as if nothing
# happened: the same tokens log in, history pages (edits, deletes, replies,
# reactions, mentions) are byte for byte the same JSON, unread counts and
# read markers, invitations, roles, status, search (Latin and CJK), files
# and avatars are all there, and the next event id follows the last.
# A second migrate into the same database is refused (exit 4) and changes
# nothing. PostgreSQL is started by the test (tests/backends.sh).
# Skips (77) without postgresql-15, unless NATTER_REQUIRE_ROOT_TESTS=1 or
# CI is set.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../backends.sh"
: "${NATTERCTL:?NATTERCTL must point at the natterctl binary}"

backends_need
trap 'cleanup; backends_stop' EXIT
pg_start || fail_now "PostgreSQL did not start"
ok "PostgreSQL started on port $PG_PORT"

ctl() { "$NATTERCTL" --db "$WORK/natter.db" --db-dir "$NATTER_DB_DIR" "$@"; }
FILES="$WORK/files"

# --- a community on one node (SQLite) -------------------------------------------
start_natterd --files-dir "$FILES"
A=$(register alice)
Bo=$(register bob)
api_json POST /api/rooms "$A" '{"name":"dev","topic":"the dev room"}'
expect 201 "" "alice creates dev"
api_json POST /api/rooms/dev/join "$Bo" '{}'
expect 200 "" "bob joins dev"
say() { # token room json -> id
	api_json POST "/api/rooms/$2/messages" "$1" "$3"
	[ "$STATUS" = 200 ] || [ "$STATUS" = 201 ] || { echo "send: $STATUS $BODY" >&2; return 1; }
	jget .event.id
}
M1=$(say "$A" dev '{"text":"the **walrus** plan","client_id":"m-1"}')
say "$Bo" dev "{\"text\":\"agreed\",\"reply_to\":$M1}" >/dev/null
api PUT "/api/rooms/dev/messages/$M1/reactions/%F0%9F%91%8D" -H "Authorization: Bearer $Bo"
expect 200 "" "bob reacts to the plan"
M3=$(say "$A" dev '{"text":"typo hre"}')
api_json PATCH "/api/rooms/dev/messages/$M3" "$A" '{"text":"typo here"}'
expect 200 "" "alice edits a message"
M4=$(say "$A" dev '{"text":"a secret to delete"}')
say "$Bo" dev "{\"text\":\"quoting it\",\"reply_to\":$M4}" >/dev/null
api DELETE "/api/rooms/dev/messages/$M4" -H "Authorization: Bearer $A"
expect 200 "" "alice deletes a message"
say "$A" dev '{"text":"@bob 性能测试 deploy 顺利"}' >/dev/null
api_json POST /api/dms "$A" '{"users":["bob"]}'
expect 201 "" "alice opens a DM with bob"
DM=$(jget .room.name)
say "$A" "$DM" '{"text":"psst"}' >/dev/null
api_json POST /api/rooms "$A" '{"name":"attic","private":true}'
expect 201 "" "alice creates a private room"
api_json POST /api/rooms/attic/invites "$A" '{"user":"bob"}'
expect 201 "" "and invites bob"
api PUT /api/rooms/dev/moderators/bob -H "Authorization: Bearer $A"
expect 200 "" "bob is made a moderator of dev"
api_json PATCH /api/me "$A" '{"status":"dnd","status_text":"🍕 lunch"}'
expect 200 "" "alice sets a status"
api_json POST /api/rooms/dev/read "$Bo" "{\"id\":$M1}"
expect 200 "" "bob reads up to the plan"
# a file in a message and an avatar (a 1x1 PNG)
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82' >"$WORK/dot.png"
api POST /api/rooms/dev/files -H "Authorization: Bearer $A" -F "file=@$WORK/dot.png;filename=blueprint.png" -F 'text=the diagram'
expect 201 "" "alice sends a file"
FILE_URL=$(jget '.event.files[0].url')
api POST /api/me/avatar -H "Authorization: Bearer $Bo" -F "file=@$WORK/dot.png"
expect 200 "" "bob sets an avatar"
AVATAR=$(jget .avatar)

# what must survive, as each user sees it
snapshot() { # dir
	mkdir -p "$1"
	api_get "/api/rooms/dev/messages?limit=200" "$A" && jq -S . <<<"$BODY" >"$1/dev"
	api_get "/api/rooms/$DM/messages?limit=200" "$Bo" && jq -S . <<<"$BODY" >"$1/dm"
	api_get /api/rooms "$Bo" && jq -S . <<<"$BODY" >"$1/rooms-bob"
	api_get /api/invites "$Bo" && jq -S '[.invites[] | del(.ts)]' <<<"$BODY" >"$1/invites"
	api_get /api/rooms/dev/members "$A" && jq -S '[.members[] | {username, role, avatar}]' <<<"$BODY" >"$1/members"
	api_get /api/me "$A" && jq -S '{username, admin, status_choice, status_text}' <<<"$BODY" >"$1/me"
	api_get "/api/search?q=walrus" "$Bo" && jq -S '[.results[].id]' <<<"$BODY" >"$1/search"
	api_get "/api/search?q=%E6%80%A7%E8%83%BD" "$Bo" && jq -S '[.results[].id]' <<<"$BODY" >"$1/search-cjk"
	api_get "/api/search?q=blueprint" "$A" && jq -S '[.results[].id]' <<<"$BODY" >"$1/search-file"
	curl -sS -H "Authorization: Bearer $Bo" "$BASE$FILE_URL" -o "$1/file"
	curl -sS -H "Authorization: Bearer $A" "$BASE$AVATAR" -o "$1/avatar"
}
snapshot "$WORK/before"
check "the snapshot has the history" test "$(jq '.events | length' "$WORK/before/dev")" -ge 8
check "and finds by Latin, CJK and a file's name" \
	test "$(jq length "$WORK/before/search")" = 1 -a "$(jq length "$WORK/before/search-cjk")" = 1 -a "$(jq length "$WORK/before/search-file")" = 1
api_get "/api/rooms/dev/messages?limit=1" "$A"
LAST=$(jget '.events[-1].id')
stop_natterd

# --- the migration ------------------------------------------------------------------
RC=0
ctl migrate "$PG_URL" >"$WORK/out" 2>"$WORK/err" || RC=$?
check "migrate: exit 0" test "$RC" = 0
[ "$RC" = 0 ] || cat "$WORK/err"
for t in users sessions rooms events mentions reactions files file_uses; do
	want=$(sqlite3 "$WORK/natter.db" "SELECT count(*) FROM $t")
	check "it copied every row of $t ($want)" test "$(jq -r ".$t" "$WORK/out")" = "$want"
done
RC=0
ctl migrate "$PG_URL" >"$WORK/out2" 2>"$WORK/err2" || RC=$?
check "a second migrate into the same database: exit 4" test "$RC" = 4
check "and says why" grep -q 'not empty' "$WORK/err2"
RC=0
ctl migrate "not-a-url" >/dev/null 2>&1 || RC=$?
check "migrate to something that is not a postgresql:// URL: exit 1" test "$RC" = 1

# --- natterd on PostgreSQL, same files directory ------------------------------------
start_natterd --store "$PG_URL" --files-dir "$FILES"
api_get /api/me "$A"
expect 200 "" "alice's token from before still logs in"
api_get /api/me "$Bo"
expect 200 "" "and bob's"
snapshot "$WORK/after"
for f in dev dm rooms-bob invites members me search search-cjk search-file file avatar; do
	if cmp -s "$WORK/before/$f" "$WORK/after/$f"; then
		ok "$f: the same after the migration"
	else
		fail "$f differs after the migration: $(diff "$WORK/before/$f" "$WORK/after/$f" | head -n 8 | tr '\n' ' ')"
	fi
done
NEXT=$(say "$A" dev '{"text":"on PostgreSQL now"}')
check "the next event's id ($NEXT) follows the last one migrated ($LAST)" test "$NEXT" -gt "$LAST"
api_json POST /api/rooms/dev/messages "$A" '{"text":"the **walrus** plan","client_id":"m-1"}'
check "a retried client_id from before is still known (no duplicate)" test "$(jget .event.id)" = "$M1"
R=$(register carol)
check "a new account registers (the user ids go on)" test -n "$R"
stop_natterd
finish
