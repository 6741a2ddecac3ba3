#!/usr/bin/env bash
# people.sh: direct conversations, private rooms, mentions and read
# markers. POST /api/dms gives
# one conversation per set of people, the same every time; a private room
# is joined only by invitation. To an outsider both are rooms that do not
# exist: 404 no_such_room on history, members, send, typing, join, leave
# and invitations, never in the room list or search, and never an event
# of theirs on the outsider's WebSocket, SSE or long-poll stream (asserted
# on the raw bytes, live and on resume from a cursor, also after a restart
# when replay comes from SQLite).
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd
WSBASE="ws://127.0.0.1:$PORT"

ALICE=$(register alice)
BOB=$(register bob)
CAROL=$(register carol)
EVE=$(register eve)
api_json POST /api/rooms/lobby/join "$EVE" '{}'
api_json POST /api/rooms/lobby/messages "$EVE" '{"text":"start marker"}'
C0=$(jget .event.id)

# Eve listens on all three transports from before anything private exists.
timeout -s KILL 30 "$WSCLIENT" --token "$EVE" --since "$C0" --timeout 30 \
	"$WSBASE/ws" >"$WORK/eve-ws" 2>/dev/null &
EVE_WS=$!
timeout -s KILL 30 curl -sN -H "Authorization: Bearer $EVE" \
	-H "Last-Event-ID: $C0" "$BASE/events" >"$WORK/eve-sse" 2>/dev/null &
EVE_SSE=$!
( cursor=$C0
  while :; do
	body=$(curl -sf -H "Authorization: Bearer $EVE" \
		"$BASE/poll?since=$cursor&timeout=2") || break
	echo "$body" >>"$WORK/eve-poll"
	cursor=$(jq -r .cursor <<<"$body")
  done ) &
EVE_POLL=$!
# Bob listens too: he must get what Eve must not.
timeout -s KILL 30 "$WSCLIENT" --token "$BOB" --since "$C0" --timeout 30 \
	"$WSBASE/ws" >"$WORK/bob-ws" 2>/dev/null &
BOB_WS=$!
sleep 0.5

# --- direct conversations ------------------------------------------------------
api_json POST /api/dms "$ALICE" '{"users":["bob","carol"]}'
expect 201 "" "alice opens a conversation with bob and carol" || true
DM=$(jget .room.name)
check "it is named dm-<id>" grep -qE '^dm-[0-9]+$' <<<"$DM"
check "the answer names the other people" \
	test "$(jget '.room.people|join(",")')" = "bob,carol"
check "its event lists everyone" \
	test "$(jget '.event.people|join(",")')" = "alice,bob,carol"
DM_EV=$(jget .event.id)

api_json POST /api/dms "$ALICE" '{"users":["carol","bob"]}'
expect 200 "" "the same set again, in another order" || true
check "is the same conversation" test "$(jget .room.name)" = "$DM"
check "answered with its first event" test "$(jget .event.id)" = "$DM_EV"
api_json POST /api/dms "$BOB" '{"users":["CAROL","alice","bob"]}'
expect 200 "" "bob asks for the same set (any case, himself included)" || true
check "and gets the same one" test "$(jget .room.name)" = "$DM"
api_json POST /api/dms "$ALICE" '{"users":["bob"]}'
expect 201 "" "alice and bob alone is another conversation" || true
DM2=$(jget .room.name)
check "with another name" test "$DM2" != "$DM"

api_json POST /api/dms "$ALICE" '{"users":["nobody"]}'
expect 404 no_such_user "a conversation with an unknown user" || true
api_json POST /api/dms "$ALICE" '{"users":[]}'
expect 422 invalid_field "an empty set of people" || true
api_json POST /api/dms "$ALICE" '{"users":"bob"}'
expect 422 invalid_field "users not an array" || true
api_json POST /api/dms "$ALICE" '{"users":["a","b","c","d","e","f","g","h","i"]}'
expect 422 invalid_field "more than 8 people" || true
api_json POST /api/rooms "$ALICE" '{"name":"dm-99"}'
expect 422 invalid_room_name "a room may not be named like a conversation" || true

api_get /api/rooms "$BOB"
check "bob's room list has it as kind dm" \
	test "$(jget ".rooms[]|select(.name==\"$DM\")|.kind")" = dm
check "with the other people's names" \
	test "$(jget ".rooms[]|select(.name==\"$DM\")|.people|join(\",\")")" = "alice,carol"
check "joined" test "$(jget ".rooms[]|select(.name==\"$DM\")|.joined")" = true

api_json POST "/api/rooms/$DM/messages" "$BOB" '{"text":"secret plan zebra"}'
expect 201 "" "bob writes in the conversation" || true
MSG=$(jget .event.id)
api_json POST "/api/rooms/$DM/messages" "$CAROL" '{"text":"count me in"}'
expect 201 "" "carol writes in it without ever joining" || true
api_get "/api/rooms/$DM/messages" "$ALICE"
check "alice reads both in history" test "$(jget '[.events[]|select(.type=="message")]|length')" = 2

# the outsider
api_get /api/rooms "$EVE"
check "eve's room list does not show it" test "$(jget "[.rooms[]|select(.kind!=\"public\")]|length")" = 0
api_get "/api/rooms/$DM/messages" "$EVE"
expect 404 no_such_room "eve: history" || true
api_get "/api/rooms/$DM/members" "$EVE"
expect 404 no_such_room "eve: members" || true
api_json POST "/api/rooms/$DM/messages" "$EVE" '{"text":"let me in"}'
expect 404 no_such_room "eve: send" || true
api_json POST "/api/rooms/$DM/typing" "$EVE" '{}'
expect 404 no_such_room "eve: typing" || true
api_json POST "/api/rooms/$DM/join" "$EVE" '{}'
expect 404 no_such_room "eve: join" || true
api_json POST "/api/rooms/$DM/leave" "$EVE" '{}'
expect 404 no_such_room "eve: leave" || true
api_json POST "/api/rooms/$DM/invites" "$EVE" '{"user":"eve"}'
expect 404 no_such_room "eve: invite" || true
api_get "/api/search?q=zebra" "$EVE"
check "eve: search finds nothing" test "$(jget '.results|length')" = 0
api_get "/api/search?q=zebra" "$CAROL"
check "carol: search finds the message" test "$(jget '.results|length')" = 1
api_json POST "/api/rooms/$DM/invites" "$ALICE" '{"user":"eve"}'
expect 409 dm_fixed "nobody is invited into a conversation" || true
api_json POST "/api/rooms/$DM/leave" "$BOB" '{}'
expect 409 dm_fixed "nobody leaves a conversation" || true
# over WebSocket too
echo "{\"op\":\"send\",\"room\":\"$DM\",\"text\":\"ws intruder\",\"client_id\":\"e1\"}" >"$WORK/eve-send"
"$WSCLIENT" --token "$EVE" --send-file "$WORK/eve-send" --timeout 3 --count 2 \
	"$WSBASE/ws" >"$WORK/eve-ws-send" 2>/dev/null || true
check "eve: WebSocket send is no_such_room" grep -q '"no_such_room"' "$WORK/eve-ws-send"
echo '{"op":"dm_open","users":["carol"],"client_id":"d1"}' >"$WORK/eve-dm"
"$WSCLIENT" --token "$EVE" --send-file "$WORK/eve-dm" --timeout 3 --count 2 \
	"$WSBASE/ws" >"$WORK/eve-ws-dm" 2>/dev/null || true
check "dm_open works over WebSocket" grep -q '"type":"dm"' "$WORK/eve-ws-dm"

# --- private rooms --------------------------------------------------------------
api_json POST /api/rooms "$ALICE" '{"name":"attic","private":true}'
expect 201 "" "alice makes a private room" || true
check "its event says private" test "$(jget .event.kind)" = private
api_json POST /api/rooms "$ALICE" '{"name":"porch","private":"yes"}'
expect 422 invalid_field "private must be a boolean" || true
api_json POST /api/rooms/attic/messages "$ALICE" '{"text":"attic secret walrus"}'
expect 201 "" "alice writes in it" || true
api_get /api/rooms "$BOB"
check "bob's list does not show it" test "$(jget '[.rooms[]|select(.name=="attic")]|length')" = 0
api_get /api/rooms "$ALICE"
check "alice's list shows it as private" test "$(jget '.rooms[]|select(.name=="attic")|.kind')" = private
for who in BOB EVE; do
	tok=${!who}
	api_get /api/rooms/attic/messages "$tok"
	expect 404 no_such_room "$who before an invitation: history" || true
	api_json POST /api/rooms/attic/join "$tok" '{}'
	expect 404 no_such_room "$who before an invitation: join" || true
done
api_json POST /api/rooms/attic/invites "$EVE" '{"user":"bob"}'
expect 404 no_such_room "an outsider cannot invite" || true
api_json POST /api/rooms/attic/invites "$ALICE" '{"user":"nobody"}'
expect 404 no_such_user "inviting an unknown user" || true
api_json POST /api/rooms/attic/invites "$ALICE" '{"user":"alice"}'
expect 409 already_member "inviting a member" || true
api_json POST /api/rooms/attic/invites "$ALICE" '{}'
expect 422 invalid_field "an invitation needs a user" || true
api_json POST /api/rooms/attic/invites "$ALICE" '{"user":"BOB"}'
expect 201 "" "alice invites bob" || true
check "the answer names him canonically" test "$(jget .invite.user)" = bob
api_get /api/invites "$BOB"
check "bob's invitations list it" test "$(jget '.invites[0].room+" "+.invites[0].by+" "+.invites[0].kind')" = "attic alice private"
api_get /api/invites "$EVE"
check "eve has none" test "$(jget '.invites|length')" = 0
api_json POST /api/rooms/attic/join "$EVE" '{}'
expect 404 no_such_room "eve still cannot join" || true
api_json POST /api/rooms/attic/join "$BOB" '{}'
expect 200 "" "bob accepts by joining" || true
api_get /api/invites "$BOB"
check "the invitation is used up" test "$(jget '.invites|length')" = 0
api_json POST /api/rooms/attic/messages "$BOB" '{"text":"attic reply narwhal"}'
expect 201 "" "bob writes in it" || true
api_get /api/rooms/attic/messages "$EVE"
expect 404 no_such_room "eve after the invitation: history" || true
api_get /api/rooms/attic/members "$EVE"
expect 404 no_such_room "eve after the invitation: members" || true
api_get "/api/search?q=narwhal" "$EVE"
check "eve after the invitation: search finds nothing" test "$(jget '.results|length')" = 0
api_get "/api/search?q=walrus" "$BOB"
check "bob's search finds the room's earlier message" test "$(jget '.results|length')" = 1
api_json POST /api/rooms/attic/leave "$BOB" '{}'
expect 200 "" "bob leaves the private room" || true
api_json POST /api/rooms/attic/join "$BOB" '{}'
expect 404 no_such_room "and cannot come back without a new invitation" || true

# --- mentions ----------------------------------------------------------------------
# @name of a member (any case) and @room, outside code; the event lists
# the canonical names, the mentions table every user mentioned.
api_json POST /api/rooms "$ALICE" '{"name":"den"}'
for tok in "$BOB" "$CAROL"; do api_json POST /api/rooms/den/join "$tok" '{}'; done
mentions_of() { jq -r '(.event.mentions // []) | join(",")' <<<"$BODY"; }
stored_mentions() {
	sqlite3 "$WORK/natter.db" "SELECT group_concat(u.username, ',') FROM (SELECT user_id FROM mentions WHERE event_id = $1 ORDER BY user_id) m JOIN users u ON u.id = m.user_id"
}
api_json POST /api/rooms/den/messages "$ALICE" '{"text":"hi @BOB and @carol, not @eve (no member) nor @nobody; `@carol` in code"}'
expect 201 "" "a message with mentions" || true
check "mentions: members only, canonical names, code ignored" test "$(mentions_of)" = "bob,carol"
MID=$(jget .event.id)
check "the mentions table has bob and carol" test "$(stored_mentions "$MID")" = "bob,carol"
api_json POST /api/rooms/den/messages "$ALICE" "$(jq -n '{text:"```\n@bob in a block\n```\nand an email a@bob.org"}')"
check "no mention in a code block" test "$(mentions_of)" = ""
api_json POST /api/rooms/den/messages "$BOB" '{"text":"@room standup in 5"}'
check "@room is listed as room" test "$(mentions_of)" = "room"
RID=$(jget .event.id)
check "@room mentions every other member" test "$(stored_mentions "$RID")" = "alice,carol"
api_json POST /api/rooms/den/messages "$EVE" '{"text":"@room let me in"}'
expect 403 not_a_member "@room by a non-member of a public room is refused" || true
api_json POST "/api/rooms/$DM/messages" "$EVE" '{"text":"@room hello"}'
expect 404 no_such_room "@room by an outsider of a conversation is refused" || true
api_get "/api/rooms/den/messages?after=$((MID - 1))&limit=1" "$CAROL"
check "history carries the mentions" test "$(jget '.events[0].mentions|join(",")')" = "bob,carol"
ZED=$(register zed)
api_json POST /api/rooms/den/join "$ZED" '{}'
ZJOIN=$(jget .event.id)
api_json POST /api/rooms/den/messages "$ALICE" '{"text":"welcome @zed"}'
check "a user registered a moment ago can be mentioned" test "$(mentions_of)" = "zed"

# --- unread counts and read markers ------------------------------------------------
room_field() { jq -r ".rooms[]|select(.name==\"$1\")|.$2" <<<"$BODY"; }
api_get /api/rooms "$CAROL"
check "carol: 4 unread in den" test "$(room_field den unread)" = 4
check "carol: 2 of them mention her (@carol, @room)" test "$(room_field den mentions)" = 2
api_get /api/rooms "$BOB"
check "bob: his own messages are not unread" test "$(room_field den unread)" = 3
check "bob: his own @room does not mention him" test "$(room_field den mentions)" = 1
api_get /api/rooms "$ZED"
check "the room list gives zed's join of den (an @room before it was not for zed)" \
	test "$(room_field den joined_id)" = "$ZJOIN"
check "and zed's counts start there: the earlier @room is no mention of zed" \
	test "$(room_field den mentions)" = 1
# carol's other devices listen on all three transports
timeout -s KILL 10 "$WSCLIENT" --token "$CAROL" --timeout 6 "$WSBASE/ws" >"$WORK/carol2-ws" 2>/dev/null &
C2WS=$!
timeout -s KILL 6 curl -sN -H "Authorization: Bearer $CAROL" "$BASE/events" >"$WORK/carol2-sse" 2>/dev/null &
C2SSE=$!
api_get /api/rooms "$CAROL"
timeout -s KILL 10 curl -sf -H "Authorization: Bearer $CAROL" \
	"$BASE/poll?since=$(curl -sf -H "Authorization: Bearer $CAROL" "$BASE/poll?timeout=0" | jq -r .cursor)&timeout=5" >"$WORK/carol2-poll" 2>/dev/null &
C2POLL=$!
sleep 0.5
api_json POST /api/rooms/den/read "$CAROL" "{\"id\":$RID}"
expect 200 "" "carol marks den read up to the @room message" || true
check "the answer is the new marker" test "$(jget .read)" = "$RID"
api_get /api/rooms "$CAROL"
check "carol: 1 unread left, no mention" test "$(room_field den unread)/$(room_field den mentions)" = 1/0
check "the room list has the marker" test "$(room_field den read)" = "$RID"
api_json POST /api/rooms/den/read "$CAROL" "{\"id\":$MID}"
expect 200 "" "an older id" || true
check "is a no-op answered with the current marker" test "$(jget .read)" = "$RID"
api_json POST /api/rooms/den/read "$CAROL" '{"id":"x"}'
expect 422 invalid_field "a bad id" || true
api_json POST /api/rooms/den/read "$CAROL" '{"id":99999999}'
expect 422 invalid_field "an id from the future" || true
api_json POST "/api/rooms/$DM/read" "$EVE" "{\"id\":$MID}"
expect 404 no_such_room "eve: read marker in a conversation" || true
api_json POST /api/rooms/attic/read "$EVE" "{\"id\":$MID}"
expect 404 no_such_room "eve: read marker in a private room" || true
wait "$C2WS" "$C2SSE" "$C2POLL" 2>/dev/null || true
for t in ws sse poll; do
	check "carol's other $t session got the new marker once" \
		test "$(grep -o "\"type\":\"read\",\"room\":\"den\",\"from\":\"carol\",\"ts\":\"[^\"]*\",\"read\":$RID" "$WORK/carol2-$t" | wc -l)" = 1
	check "and nothing for the no-op" test "$(grep -c "\"read\":$MID" "$WORK/carol2-$t")" = 0
done

# the last public message: every stream has reached it once it shows up
api_json POST /api/rooms/lobby/messages "$EVE" '{"text":"end marker"}'
sleep 2.5
kill "$EVE_WS" "$EVE_SSE" "$EVE_POLL" "$BOB_WS" 2>/dev/null || true
wait "$EVE_WS" "$EVE_SSE" "$EVE_POLL" "$BOB_WS" 2>/dev/null || true

leaks() { grep -cE "$DM|$DM2|attic|zebra|walrus|narwhal|\"type\":\"read\"" "$1" || true; }
for t in ws sse poll; do
	f="$WORK/eve-$t"
	check "eve's $t stream reached the end marker" grep -q 'end marker' "$f"
	check "eve's $t stream carries no event of the conversations or the private room" test "$(leaks "$f")" = 0
done
check "bob's stream has his conversation's messages" grep -q 'zebra' "$WORK/bob-ws"
check "bob's stream has his own join to the conversation" \
	grep -q "\"type\":\"join\",\"room\":\"$DM\",\"from\":\"bob\"" "$WORK/bob-ws"
check "bob's stream has the invitation" grep -q '"type":"invite","room":"attic","from":"alice"' "$WORK/bob-ws"
check "bob's stream has the private room after he joined" grep -q 'narwhal' "$WORK/bob-ws"
check "but not what was said there before" test "$(grep -c walrus "$WORK/bob-ws")" = 0
check "bob's stream carries a message's mentions" grep -q '"mentions":\["bob","carol"\]' "$WORK/bob-ws"

# --- resume from a cursor, from the ring and (after a restart) from SQLite ---
resume_check() {
	local what=$1
	"$WSCLIENT" --token "$EVE" --since "$C0" --timeout 2 "$WSBASE/ws" >"$WORK/eve-r-ws" 2>/dev/null || true
	timeout 2 curl -sN -H "Authorization: Bearer $EVE" -H "Last-Event-ID: $C0" \
		"$BASE/events" >"$WORK/eve-r-sse" 2>/dev/null || true
	curl -sf -H "Authorization: Bearer $EVE" "$BASE/poll?since=$C0&timeout=1" >"$WORK/eve-r-poll" || true
	for t in ws sse poll; do
		check "$what: eve's $t replay reaches the end marker" grep -q 'end marker' "$WORK/eve-r-$t"
		check "$what: eve's $t replay carries nothing private" test "$(leaks "$WORK/eve-r-$t")" = 0
	done
	"$WSCLIENT" --token "$CAROL" --since "$C0" --timeout 2 "$WSBASE/ws" >"$WORK/carol-r-ws" 2>/dev/null || true
	check "$what: carol's replay has the conversation" grep -q zebra "$WORK/carol-r-ws"
	check "$what: carol's replay has nothing of the private room" test "$(grep -c attic "$WORK/carol-r-ws")" = 0
	check "$what: carol's replay carries the mentions" grep -q '"mentions":\["room"\]' "$WORK/carol-r-ws"
}
resume_check "resume from the ring"
stop_natterd
start_natterd --ring-size 16
WSBASE="ws://127.0.0.1:$PORT"
resume_check "resume from SQLite after a restart"
api_json POST /api/dms "$CAROL" '{"users":["alice","bob"]}'
check "after a restart the same set still gets the same conversation" test "$(jget .room.name)" = "$DM"
api_get "/api/rooms/$DM/messages" "$EVE"
expect 404 no_such_room "after a restart eve still gets 404" || true
api_get /api/rooms/attic/messages "$BOB"
expect 404 no_such_room "after a restart the private room is still hidden from bob" || true
api_json POST /api/rooms/den/messages "$BOB" '{"text":"thanks @ZED"}'
check "after a restart the user directory still knows everyone" test "$(mentions_of)" = "zed"
api_get /api/rooms "$CAROL"
check "after a restart carol's marker and counts hold" test "$(room_field den read)/$(room_field den unread)" = "$RID/2"

finish
