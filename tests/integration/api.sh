#!/usr/bin/env bash
# api.sh: the curl walkthrough and every error case of the JSON API, against
# the real natterd: accounts, sessions (bearer and cookie), rooms, sending,
# dedupe by client_id, history paging, persistence across a restart, login
# throttling, and 100 parallel senders.
. "$(dirname "$0")/lib.sh"

start_natterd --login-fail-max 3 --login-fail-window 60 --max-body 65536

# --- liveness ---------------------------------------------------------------
api GET /healthz
expect 200 "" "healthz answers"

# --- accounts -----------------------------------------------------------------
api_json POST /api/register "" '{"username":"alice","password":"correct horse"}'
expect 201 "" "register alice"
ALICE=$(jget .token)
check "register returns a 43-character token" test "${#ALICE}" -eq 43
check "register sets an HttpOnly SameSite=Lax cookie" \
	bash -c "curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
	 --data '{\"username\":\"carol\",\"password\":\"correct horse\"}' $BASE/api/register |
	 grep -i '^set-cookie: natter_session=.*HttpOnly.*SameSite=Lax'"
api_json POST /api/register "" '{"username":"ALICE","password":"correct horse"}'
expect 409 username_taken "usernames are unique ignoring case"
api_json POST /api/register "" '{"username":"bad name","password":"correct horse"}'
expect 422 invalid_username "username with a space is refused"
api_json POST /api/register "" "{\"username\":\"$(printf 'x%.0s' $(seq 33))\",\"password\":\"correct horse\"}"
expect 422 invalid_username "33-character username is refused"
api_json POST /api/register "" '{"username":"dave","password":"short"}'
expect 422 invalid_password "7-character password is refused"
api_json POST /api/register "" "{\"username\":\"dave\",\"password\":\"$(head -c 1025 /dev/zero | tr '\0' a)\"}"
expect 422 invalid_password "1025-byte password is refused"
api_json POST /api/register "" '{"username":"dave",'
expect 400 bad_json "malformed JSON is a 400"
api POST /api/register -H 'Content-Type: text/plain' --data 'hello'
expect 415 unsupported_media_type "a text/plain body is a 415"
api_json POST /api/register "" '{"username":"dave","password":12345678}'
expect 422 invalid_field "a non-string password is a 422"
api GET /api/register
expect 405 method_not_allowed "GET on register is a 405"
api_json POST /api/register "" "{\"username\":\"big\",\"password\":\"$(head -c 70000 /dev/zero | tr '\0' a)\"}"
expect 413 body_too_large "a body over max-body is a 413"

BOB=$(register bob)
check "bob registered" test -n "$BOB"

api_get /api/me "$ALICE"
expect 200 "" "GET /api/me with a bearer token"
check "me is alice" test "$(jget .username)" = alice
api_json PATCH /api/me "$ALICE" '{"display_name":"Alice A.","settings":{"theme":"dark","sound":true}}'
expect 200 "" "PATCH /api/me"
check "display name changed" test "$(jget .display_name)" = "Alice A."
api_json PATCH /api/me "$ALICE" '{"settings":{"sound":null,"lang":"fr"}}'
check "settings merge: null removes, new key added" \
	test "$(jq -c .settings <<<"$BODY")" = '{"theme":"dark","lang":"fr"}'
api_json PATCH /api/me "$ALICE" '{"settings":"dark"}'
expect 422 invalid_settings "settings must be an object"
api_json PATCH /api/me "$ALICE" '{"password":"x"}'
expect 422 unknown_field "unknown fields are refused"
api_get /api/me ""
expect 401 unauthorized "no credentials is a 401"
api_get /api/me "not-a-real-token"
expect 401 unauthorized "a bogus token is a 401"

# --- login, cookies, CSRF, logout -----------------------------------------------
JAR="$WORK/cookies"
api_json POST /api/login "" '{"username":"Alice","password":"correct horse"}' -c "$JAR"
expect 200 "" "login (case-insensitive username) with a cookie jar"
api GET /api/me -b "$JAR"
expect 200 "" "cookie authenticates GET /api/me"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' -H 'Origin: http://evil.example' --data '{"name":"x"}'
expect 403 csrf "cookie POST from a foreign Origin is refused (CSRF)"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' -H 'Sec-Fetch-Site: cross-site' --data '{"name":"x"}'
expect 403 csrf "cookie POST marked cross-site is refused (CSRF)"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' -H "Origin: $BASE" --data '{"name":"cookieroom"}'
expect 201 "" "cookie POST from our own Origin is accepted"
api POST /api/logout -b "$JAR" -c "$JAR"
expect 200 "" "logout"
api GET /api/me -b "$JAR"
expect 401 unauthorized "cookie no longer works after logout"
api_get /api/me "$ALICE"
expect 200 "" "other sessions survive one logout"

api_json POST /api/login "" '{"username":"alice","password":"wrong password"}'
expect 401 bad_credentials "wrong password is a 401"
api_json POST /api/login "" '{"username":"nobody","password":"wrong password"}'
expect 401 bad_credentials "unknown user is the same 401"

# --- rooms ---------------------------------------------------------------------------
api_get /api/rooms "$ALICE"
expect 200 "" "list rooms"
check "a fresh database has a lobby that alice joined at registration" \
	test "$(jq -r '.rooms[] | select(.name=="lobby") | .joined' <<<"$BODY")" = true
api_json POST /api/rooms "$ALICE" '{"name":"general","topic":"talk"}'
expect 201 "" "create room general"
check "room creation returns a room event" test "$(jget .event.type)" = room
api_json POST /api/rooms "$BOB" '{"name":"GENERAL"}'
expect 409 room_exists "room names are unique ignoring case"
api_json POST /api/rooms "$BOB" '{"name":"no/slash"}'
expect 422 invalid_room_name "invalid room name is a 422"
api_json POST /api/rooms/general/messages "$BOB" '{"text":"hi"}'
expect 403 not_a_member "a non-member cannot send"
api_get /api/rooms/general/messages "$BOB"
expect 403 not_a_member "a non-member cannot read history"
api_get /api/rooms/general/members "$BOB"
expect 403 not_a_member "a non-member cannot list members"
api_json POST /api/rooms/nowhere/join "$BOB" '{}'
expect 404 no_such_room "joining a missing room is a 404"
api_json POST /api/rooms/general/join "$BOB" '{}'
expect 200 "" "bob joins general"
JOIN_ID=$(jget .event.id)
api_json POST /api/rooms/general/join "$BOB" '{}'
expect 409 already_member "joining twice is a 409"
api_get /api/rooms/general/members "$ALICE"
check "members lists alice and bob" test "$(jq -c '[.members[].username]' <<<"$BODY")" = '["alice","bob"]'

# --- sending -----------------------------------------------------------------------------
api_json POST /api/rooms/general/messages "$ALICE" '{"text":"hello bob","client_id":"c-1"}'
expect 201 "" "send a message (JSON)"
FIRST_ID=$(jget .event.id)
check "event ids increase" test "$FIRST_ID" -gt "$JOIN_ID"
check "envelope has type, room, from, ts, text, client_id" \
	test "$(jq -c '[.event.type,.event.room,.event.from,.event.text,.event.client_id,(.event.ts|test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"))]' <<<"$BODY")" = '["message","general","alice","hello bob","c-1",true]'
api_json POST /api/rooms/general/messages "$ALICE" '{"text":"hello bob","client_id":"c-1"}'
expect 200 "" "a retried client_id is answered 200"
check "retry returns the first event id, marked duplicate" \
	test "$(jq -c '[.event.id,.duplicate]' <<<"$BODY")" = "[$FIRST_ID,true]"
api POST /api/rooms/general/messages -H "Authorization: Bearer $BOB" --data-urlencode 'text=hi alice & all' --data 'client_id=f-1'
expect 201 "" "send a message (form body)"
check "form text decoded" test "$(jget .event.text)" = "hi alice & all"
api_json POST /api/rooms/general/messages "$ALICE" '{"text":""}'
expect 422 invalid "empty text is refused"
api_json POST /api/rooms/general/messages "$ALICE" '{"text":"   "}'
expect 422 invalid "blank text is refused"
api_json POST /api/rooms/general/messages "$ALICE" "{\"text\":\"$(printf 'é%.0s' $(seq 4001))\"}"
expect 422 text_too_long "4001 characters is too long"
api_json POST /api/rooms/general/messages "$ALICE" "{\"text\":\"$(printf 'é%.0s' $(seq 4000))\"}"
expect 201 "" "4000 two-byte characters is fine"
printf '{"text":"bad \xff utf8"}' >"$WORK/bad.json"
api POST /api/rooms/general/messages -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' --data-binary @"$WORK/bad.json"
expect 400 bad_json "invalid UTF-8 is refused"
api_json POST /api/rooms/general/messages "$ALICE" '{"text":"x","client_id":"has space"}'
expect 422 invalid "a client_id with a space is refused"
api_json POST /api/rooms/nowhere/messages "$ALICE" '{"text":"x"}'
expect 404 no_such_room "sending to a missing room is a 404"
api DELETE /api/rooms/general/messages -H "Authorization: Bearer $ALICE"
expect 405 method_not_allowed "DELETE on messages is a 405"
api_get /api/nothing-here "$ALICE"
expect 404 not_found "unknown API path is a 404"

# --- history -------------------------------------------------------------------------------
for i in $(seq 1 25); do
	api_json POST /api/rooms/general/messages "$BOB" "{\"text\":\"msg $i\"}" >/dev/null
done
api_get "/api/rooms/general/messages?limit=10" "$ALICE"
expect 200 "" "newest page"
check "newest page: 10 events, ascending, has_more" \
	test "$(jq -c '[(.events|length), (.events[0].id < .events[9].id), .has_more, .events[9].text]' <<<"$BODY")" = '[10,true,true,"msg 25"]'
OLDEST=$(jget '.events[0].id')
api_get "/api/rooms/general/messages?before=$OLDEST&limit=10" "$ALICE"
check "before= pages older events" test "$(jq -r '.events[9].id < '"$OLDEST"' and (.events|length)==10' <<<"$BODY")" = true
api_get "/api/rooms/general/messages?after=$FIRST_ID&limit=200" "$ALICE"
check "after= pages newer events in order without has_more" \
	test "$(jq -r '[.events[].id] as $i | ($i == ($i|sort)) and (.has_more == false) and (.events[0].id > '"$FIRST_ID"')' <<<"$BODY")" = true
api_get "/api/rooms/general/messages?limit=201" "$ALICE"
expect 400 bad_parameter "limit over 200 is a 400"
api_get "/api/rooms/general/messages?before=1&after=1" "$ALICE"
expect 400 bad_parameter "before and after together is a 400"
api_get "/api/rooms/general/messages?before=abc" "$ALICE"
expect 400 bad_parameter "a non-numeric cursor is a 400"

api_get "/api/search?q=msg%2025" "$ALICE"
expect 200 "" "search"
check "search finds msg 25" test "$(jq -r '[.results[].text] | index("msg 25") != null' <<<"$BODY")" = true
api_get "/api/search?q=%22msg%20OR%20(" "$ALICE"
expect 200 "" "a hostile search query is harmless"

# --- typing (for clients without a WebSocket) ----------------------------------------
curl -sN -H "Authorization: Bearer $BOB" "$BASE/events" >"$WORK/typing.sse" &
SSEPID=$!
sleep 0.5
api_json POST /api/rooms/general/typing "$ALICE" '{}'
expect 204 "" "POST typing is a 204"
sleep 0.5
kill "$SSEPID" 2>/dev/null || true
wait "$SSEPID" 2>/dev/null || true
check "a room member's SSE stream shows the typing event" \
	grep -q '^data: {"type":"typing","room":"general","from":"alice"' "$WORK/typing.sse"
api_json POST /api/rooms/busy-none/typing "$ALICE" '{}'
expect 404 no_such_room "typing in a missing room is a 404"
api_json POST /api/rooms/cookieroom/typing "$BOB" '{}'
expect 403 not_a_member "typing in a room you are not in is a 403"

# --- leave --------------------------------------------------------------------------------
api_json POST /api/rooms/general/leave "$BOB" '{}'
expect 200 "" "bob leaves general"
api_json POST /api/rooms/general/leave "$BOB" '{}'
expect 403 not_a_member "leaving twice is a 403"

# --- login throttling -----------------------------------------------------------------------
for i in 1 2 3; do
	api_json POST /api/login "" '{"username":"bob","password":"wrong wrong"}'
done
api_json POST /api/login "" '{"username":"bob","password":"correct horse"}' -D "$WORK/headers"
expect 429 too_many_attempts "after 3 failures even the right password waits (429)"
check "429 carries Retry-After" grep -qi '^retry-after: [0-9]' "$WORK/headers"

# --- 100 parallel senders ----------------------------------------------------------------------
api_json POST /api/rooms "$ALICE" '{"name":"busy"}' >/dev/null
BEFORE=$(curl -s -H "Authorization: Bearer $ALICE" "$BASE/api/rooms/busy/messages?limit=1" | jq '.events[-1].id')
seq 1 100 | xargs -P 100 -I{} curl -s -o "$WORK/par.{}" -H "Authorization: Bearer $ALICE" \
	-H 'Content-Type: application/json' --data '{"text":"parallel {}","client_id":"p-{}"}' "$BASE/api/rooms/busy/messages"
IDS=$(cat "$WORK"/par.* | jq -r .event.id | sort -n)
check "100 parallel sends all acknowledged" test "$(wc -l <<<"$IDS")" -eq 100
check "100 parallel sends got 100 distinct ids" test "$(uniq <<<"$IDS" | wc -l)" -eq 100
check "parallel ids are contiguous (none missing)" \
	test "$(( $(tail -n1 <<<"$IDS") - $(head -n1 <<<"$IDS") ))" -eq 99
check "parallel ids follow the room event" test "$(head -n1 <<<"$IDS")" -gt "$BEFORE"
api_get "/api/rooms/busy/messages?limit=200" "$ALICE"
check "history holds the 100 messages exactly once" \
	test "$(jq '[.events[] | select(.type=="message")] | length' <<<"$BODY")" -eq 100

# --- restart keeps everything ----------------------------------------------------------------------
LAST=$(tail -n1 <<<"$IDS")
stop_natterd && ok "SIGTERM: natterd exits 0 promptly"
start_natterd
api_get /api/me "$ALICE"
expect 200 "" "sessions survive a restart"
api_get "/api/rooms/general/messages?limit=200" "$ALICE"
check "history survives a restart" test "$(jq '[.events[] | select(.text=="msg 25")] | length' <<<"$BODY")" -eq 1
api_json POST /api/rooms/general/messages "$ALICE" '{"text":"after restart"}'
expect 201 "" "send after restart"
check "event ids continue after a restart" test "$(jget .event.id)" -gt "$LAST"
api_json POST /api/rooms/general/messages "$ALICE" '{"text":"hello bob","client_id":"c-1"}'
check "client_id dedupe survives a restart" test "$(jq -c '[.event.id,.duplicate]' <<<"$BODY")" = "[$FIRST_ID,true]"
sqlite3 "$WORK/natter.db" .dump >"$WORK/dump.sql"
check "passwords are stored as Argon2id with the configured cost" \
	grep -qF 'argon2id$v=19$m=1024,t=1,p=1$' "$WORK/dump.sql"
check "no plain password is stored" bash -c "! grep -qF 'correct horse' '$WORK/dump.sql'"

finish
