#!/usr/bin/env bash
# search.sh: full-text search through curl. Words inside Chinese and
# Japanese text (no spaces between words), Latin prefixes, mixed text,
# snippets with their hits marked, newest-first pages (before/limit,
# has_more), membership as of now, hostile query syntax; the same cases on
# a database made at schema version 4 (before the CJK-aware index) and then
# upgraded. And the personal "settings" event: a PATCH /api/me reaches every
# live connection of that user on WebSocket, SSE and long-poll, and nobody
# else's.
# shellcheck shell=bash
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

ZH='大家好，我们今天讨论一下性能优化'
JA='東京でラーメンを食べました'
MIX='今天的deploy很顺利, Release 2.0'

# search TOKEN QUERY [curl args]: GET /api/search with q url-encoded.
search() {
	local token=$1 q=$2
	shift 2
	api GET /api/search -G --data-urlencode "q=$q" \
		-H "Authorization: Bearer $token" "$@"
}

# finds TOKEN QUERY WANT-TEXT...: the result texts, newest first, are these.
finds() {
	local token=$1 q=$2
	shift 2
	search "$token" "$q"
	local got want
	got=$(jq -r '.results[].text' <<<"$BODY" 2>/dev/null | paste -sd'|' -)
	want=$(printf '%s\n' "$@" | paste -sd'|' -)
	if [ "$STATUS" = 200 ] && [ "$got" = "$want" ]; then
		ok "search '$q' finds ${want:-nothing}"
	else
		fail "search '$q': $STATUS, got '$got', want '$want'"
	fi
}

send() { # TOKEN ROOM TEXT
	api_json POST "/api/rooms/$2/messages" "$1" "$(jq -cn --arg t "$3" '{text:$t}')"
	[ "$STATUS" = 200 ] || [ "$STATUS" = 201 ] || [ "$STATUS" = 202 ] ||
		fail_now "send '$3': $STATUS $BODY"
}

# The cases that must hold on any database.
cjk_cases() {
	local who=$1 tag=$2
	finds "$ALICE" "性能" "$ZH"
	finds "$ALICE" "优化" "$ZH"
	finds "$ALICE" "讨论一下" "$ZH"
	finds "$ALICE" "能性"
	finds "$ALICE" "ラーメン" "$JA"
	finds "$ALICE" "東京" "$JA"
	finds "$ALICE" "食べ" "$JA"
	finds "$ALICE" "deploy" "$MIX"
	finds "$ALICE" "dep 顺利" "$MIX"
	finds "$ALICE" "deploy 失败"
	finds "$ALICE" "rel" "$MIX"
	finds "$ALICE" "hel" "hello world"
	finds "$ALICE" "ello"
	finds "$ALICE" "今" "$MIX" "$ZH"
	# snippet: the hit is a part of its own, the parts join to the text
	search "$ALICE" "性能"
	check "$tag: the snippet marks 性能 as the hit" \
		test "$(jget '[.results[0].snippet[] | select(.hit) | .text] | join(",")')" = "性能"
	check "$tag: the snippet's parts are the text" \
		test "$(jget '[.results[0].snippet[].text] | join("")')" = "$ZH"
	finds "$who" "性能"
}

start_natterd
ALICE=$(register alice)
BOB=$(register bob)
api_json POST /api/rooms "$ALICE" '{"name":"dev"}'
expect 201 "" "alice creates dev"
send "$ALICE" dev "$ZH"
send "$ALICE" dev "$JA"
send "$ALICE" dev "hello world"
send "$ALICE" dev "$MIX"
cjk_cases "$BOB" fresh

# snippet of a long text: a window around the hit, cut with an ellipsis
LONG="$(printf 'word%.0s ' $(seq 1 60))needle $(printf 'tail%.0s ' $(seq 1 60))"
send "$ALICE" dev "$LONG"
search "$ALICE" needle
check "a long text's snippet is a window around the hit" \
	test "$(jget '[.results[0].snippet[].text] | join("") | length')" -lt 200
check "the window is cut with … on both sides" \
	test "$(jget '[.results[0].snippet[].text] | (first + "|" + last)')" = "…|…"
check "the hit of a long text is marked" \
	test "$(jget '[.results[0].snippet[] | select(.hit) | .text] | join(",")')" = "needle"

# paging: newest first, before= walks back, has_more says when to stop
for i in 1 2 3 4 5; do send "$ALICE" dev "页面 page $i"; done
search "$ALICE" "页面" --data limit=2
check "page 1: the two newest" test "$(jget '[.results[].text] | join(",")')" = "页面 page 5,页面 page 4"
check "page 1: has_more" test "$(jget .has_more)" = true
B=$(jget '.results[-1].id')
search "$ALICE" "页面" --data limit=2 --data "before=$B"
check "page 2: the next two" test "$(jget '[.results[].text] | join(",")')" = "页面 page 3,页面 page 2"
B=$(jget '.results[-1].id')
search "$ALICE" "页面" --data limit=2 --data "before=$B"
check "page 3: the last, no more" test "$(jget '([.results[].text] | join(",")) + " " + (.has_more | tostring)')" = "页面 page 1 false"

# membership as of now
api_json POST /api/rooms/dev/join "$BOB" '{}'
finds "$BOB" "性能" "$ZH"
api_json POST /api/rooms/dev/leave "$BOB" '{}'
finds "$BOB" "性能"

# hostile syntax is plain words; bad parameters are clear errors
for q in '"*) OR (' 'NEAR(hello world)' 'text:hello' '^hello' '*' '"' '性能"* OR' '，。' '-hello'; do
	search "$ALICE" "$q"
	expect 200 "" "query $q is harmless"
done
finds "$ALICE" 'hello"*) (wor' "hello world"
search "$ALICE" ""
expect 400 bad_parameter "an empty q is a 400"
search "$ALICE" "x" --data limit=0
expect 400 bad_parameter "limit=0 is a 400"
search "$ALICE" "x" --data before=abc
expect 400 bad_parameter "before=abc is a 400"
search "$ALICE" "$(printf 'a%.0s' $(seq 300))"
expect 400 bad_parameter "a 300-byte q is a 400"
api GET "/api/search?q=%ff%fe" -H "Authorization: Bearer $ALICE"
expect 400 bad_parameter "a q that is not UTF-8 is a 400"
api GET "/api/search?q=x"
expect 401 unauthorized "search without a login is a 401"

# --- settings follow the user to every live connection -------------------
api GET /api/me -H "Authorization: Bearer $ALICE"
WSBASE=${BASE/http:/ws:}
"$WSCLIENT" --token "$ALICE" --timeout 6 "$WSBASE/ws" >"$WORK/set.ws" 2>&1 &
WSPID=$!
timeout 6 curl -sN -H "Authorization: Bearer $ALICE" "$BASE/events" >"$WORK/set.sse" 2>/dev/null &
SSEPID=$!
timeout 6 curl -sN -H "Authorization: Bearer $BOB" "$BASE/events" >"$WORK/bob.sse" 2>/dev/null &
BOBPID=$!
CUR=$(curl -sf -H "Authorization: Bearer $ALICE" "$BASE/poll?timeout=0" | jq -r '.cursor // empty')
# A poll answers with whatever comes first (bob coming online, say): poll
# on from each answer's cursor until the settings event is there.
(
	c=${CUR:-0}
	: >"$WORK/set.poll"
	for _ in 1 2 3 4 5 6; do
		out=$(timeout 6 curl -sf -H "Authorization: Bearer $ALICE" \
			"$BASE/poll?since=$c&timeout=5" 2>/dev/null) || break
		if jq -e '[.events[] | select(.type == "settings")] | length > 0' <<<"$out" >/dev/null; then
			printf '%s' "$out" >"$WORK/set.poll"
			break
		fi
		c=$(jq -r '.cursor // empty' <<<"$out")
		[ -n "$c" ] || break
	done
) &
POLLPID=$!
sleep 1
api_json PATCH /api/me "$ALICE" '{"settings":{"theme":"dark","font_size":17},"display_name":"Alice 爱丽丝"}'
expect 200 "" "alice changes her settings"
api_json PATCH /api/me "$ALICE" '{"settings":{"font_size":null}}'
expect 200 "" "alice removes a setting"
wait "$POLLPID" || true
wait "$WSPID" "$SSEPID" "$BOBPID" 2>/dev/null || true
WANT='{"theme":"dark","font_size":17} Alice 爱丽丝'
got_ws=$(grep -a '"type":"settings"' "$WORK/set.ws" | head -n1 | jq -c '(.settings | tostring) + " " + .display_name' -r || true)
got_sse=$(grep -a '^data: {"type":"settings"' "$WORK/set.sse" | head -n1 | sed 's/^data: //' | jq -r '(.settings | tostring) + " " + .display_name' || true)
got_poll=$(jq -r '[.events[] | select(.type == "settings")][0] | (.settings | tostring) + " " + .display_name' "$WORK/set.poll" || true)
check "WebSocket gets the whole settings object and display name ($got_ws)" test "$got_ws" = "$WANT"
check "SSE gets it ($got_sse)" test "$got_sse" = "$WANT"
check "long-poll gets it ($got_poll)" test "$got_poll" = "$WANT"
check "the second change arrives too, without the removed key" \
	test "$(grep -a '"type":"settings"' "$WORK/set.ws" | sed -n 2p | jq -c .settings)" = '{"theme":"dark"}'
check "the settings event is ephemeral (no id) and from alice" \
	test "$(grep -a '"type":"settings"' "$WORK/set.ws" | head -n1 | jq -r '(has("id") | tostring) + " " + .from')" = "false alice"
check "bob's connection gets none of alice's settings" \
	bash -c "! grep -q settings '$WORK/bob.sse' && grep -q . '$WORK/bob.sse'"
api_json PATCH /api/me "$ALICE" '{"settings":"dark"}'
expect 422 invalid_settings "settings that are not an object are a 422"
stop_natterd

# --- a database made at schema version 4, then upgraded ---------------------
# The schema files up to 004 make the database main's natterd made (its
# writer filled the old index per batch, as here); carol's messages were
# stored before the upgrade. natterd then upgrades it at start-up.
stop_natterd
rm -f "$WORK"/natter.db*
{
	cat "$NATTER_DB_DIR/schema.sql"
	echo 'PRAGMA user_version = 1;'
	for v in 2 3 4; do
		cat "$NATTER_DB_DIR"/migrations/00$v-*.sql
		echo "PRAGMA user_version = $v;"
	done
	cat <<SQL
INSERT INTO users (username, display_name, pwhash, created_ms)
VALUES ('carol', 'carol', '\$argon2id\$x', 0);
INSERT INTO rooms (name, created_ms, created_by) VALUES ('old', 0, 1);
INSERT INTO members VALUES (2, 1, 0);
INSERT INTO events (room_id, type, user_id, ts_ms, json)
VALUES (2, 'room', 1, 0, '{}');
INSERT INTO events (room_id, type, user_id, ts_ms, text, json)
VALUES (2, 'message', 1, 1, '$ZH', '{}'), (2, 'message', 1, 2, '$JA', '{}'),
       (2, 'message', 1, 3, 'hello world', '{}'),
       (2, 'message', 1, 4, '$MIX', '{}');
UPDATE events SET json = json_object('id', id, 'type', type, 'room', 'old',
	'from', 'carol', 'ts', '1970-01-01T00:00:00.00' || ts_ms || 'Z')
	|| '' WHERE text IS NULL;
UPDATE events SET json = json_object('id', id, 'type', type, 'room', 'old',
	'from', 'carol', 'ts', '1970-01-01T00:00:00.00' || ts_ms || 'Z',
	'text', text) WHERE text IS NOT NULL;
INSERT INTO events_fts (rowid, text) SELECT id, text FROM events
WHERE text IS NOT NULL;
SQL
} | sqlite3 "$WORK/natter.db" >/dev/null
check "the old database is at schema version 4" \
	test "$(sqlite3 "$WORK/natter.db" 'PRAGMA user_version')" = 4
check "its index sees 大家好，我们今天讨论一下性能优化 as words that 性能 is not" \
	test "$(sqlite3 "$WORK/natter.db" "SELECT count(*) FROM events_fts WHERE events_fts MATCH '\"性能\"*'")" = 0
start_natterd
latest=$(( $(ls "$NATTER_DB_DIR"/migrations/[0-9]*.sql | wc -l) + 1 ))
check "the upgrade took it to the latest version ($latest)" \
	test "$(sqlite3 "$WORK/natter.db" 'PRAGMA user_version')" = "$latest"
ALICE=$(register alice)
BOB=$(register bob)
api_json POST /api/rooms/old/join "$ALICE" '{}'
expect 200 "" "alice joins the old room"
cjk_cases "$BOB" upgraded
send "$ALICE" old "升级以后的新消息"
finds "$ALICE" "新消息" "升级以后的新消息"
stop_natterd
# and it still opens (no migration twice)
start_natterd
finds "$ALICE" "性能" "$ZH"
finish
