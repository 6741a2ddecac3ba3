#!/usr/bin/env bash
# ops.sh: roles against the real natterd. The first account is the server's
# admin; a room's creator owns it and names moderators; the lobby has no
# owner; each role's rights and refusals; roles in the members list and in
# GET /api/me; roles survive a restart.
. "$(dirname "$0")/lib.sh"

start_natterd

ADMIN=$(register root)
OWNER=$(register olga)
MOD=$(register mia)
USER=$(register ulf)
OUT=$(register otto)

# --- admin ------------------------------------------------------------------
api_get /api/me "$ADMIN"
check "the first account is an admin" test "$(jget .admin)" = true
api_get /api/me "$OWNER"
check "the second account is not" test "$(jget .admin)" = false

# --- owner, moderators, members -----------------------------------------------
api_json POST /api/rooms "$OWNER" '{"name":"ops"}'
expect 201 "" "olga creates ops"
for t in "$MOD" "$USER"; do
	api_json POST /api/rooms/ops/join "$t" '{}'
	expect 200 "" "a member joins ops"
done
api_get /api/rooms/ops/members "$OWNER"
check "members list: olga owner, mia and ulf members" \
	test "$(jq -c '[.members[] | [.username, .role]]' <<<"$BODY")" = \
	'[["mia","member"],["olga","owner"],["ulf","member"]]'

api PUT /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OWNER"
expect 200 "" "the owner names mia moderator"
check "the answer says her role" test "$(jq -c . <<<"$BODY")" = \
	'{"room":"ops","user":"mia","role":"moderator"}'
api PUT /api/rooms/OPS/moderators/MIA -H "Authorization: Bearer $OWNER"
expect 200 "" "naming her again is fine (names ignore case)"
check "canonical names in the answer" test "$(jget .room)/$(jget .user)" = ops/mia
api_get /api/rooms/ops/members "$USER"
check "members list says mia is moderator" \
	test "$(jq -r '.members[] | select(.username == "mia") | .role' <<<"$BODY")" = moderator

api PUT /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $MOD"
expect 403 forbidden "a moderator cannot name moderators"
api PUT /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $USER"
expect 403 forbidden "a member cannot name moderators"
api PUT /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OUT"
expect 403 forbidden "a non-member cannot name moderators"
api PUT /api/rooms/ops/moderators/otto -H "Authorization: Bearer $OWNER"
expect 422 not_a_member "a non-member cannot be made moderator"
api PUT /api/rooms/ops/moderators/nobody -H "Authorization: Bearer $OWNER"
expect 404 no_such_user "an unknown user"
api PUT /api/rooms/nowhere/moderators/mia -H "Authorization: Bearer $OWNER"
expect 404 no_such_room "an unknown room"
api PUT /api/rooms/ops/moderators/olga -H "Authorization: Bearer $ADMIN"
expect 403 forbidden "the owner's role does not change"
api PUT /api/rooms/ops/moderators/mia
expect 401 "" "without a session: 401"
api GET /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OWNER"
expect 405 "" "GET on a moderator is a 405"

api PUT /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $ADMIN"
expect 200 "" "an admin names moderators in any room, member or not"
check "ulf is moderator" test "$(jget .role)" = moderator
api DELETE /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $OWNER"
expect 200 "" "the owner unnames ulf"
check "ulf is member again" test "$(jget .role)" = member
api DELETE /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $OWNER"
expect 200 "" "unnaming twice is fine"
api DELETE /api/rooms/ops/moderators/mia -H "Authorization: Bearer $MOD"
expect 403 forbidden "a moderator cannot unname herself"

# --- the lobby has no owner ---------------------------------------------------
for t in "$OWNER" "$USER"; do
	api_json POST /api/rooms/lobby/join "$t" '{}'
done
api_get /api/rooms/lobby/members "$OWNER"
check "nobody owns the lobby" \
	test "$(jq '[.members[] | select(.role == "owner")] | length' <<<"$BODY")" = 0
api PUT /api/rooms/lobby/moderators/ulf -H "Authorization: Bearer $OWNER"
expect 403 forbidden "only an admin names lobby moderators"
api PUT /api/rooms/lobby/moderators/ulf -H "Authorization: Bearer $ADMIN"
expect 200 "" "the admin names ulf lobby moderator"

# --- a moderator who leaves stops being one ----------------------------------
api_json POST /api/rooms/ops/leave "$MOD" '{}'
api_json POST /api/rooms/ops/join "$MOD" '{}'
api_get /api/rooms/ops/members "$OWNER"
check "mia is a plain member after leaving and joining" \
	test "$(jq -r '.members[] | select(.username == "mia") | .role' <<<"$BODY")" = member
api PUT /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OWNER"
expect 200 "" "named again"

# --- roles persist ------------------------------------------------------------
stop_natterd
start_natterd
api_get /api/rooms/ops/members "$USER"
check "after a restart: owner and moderator kept" \
	test "$(jq -c '[.members[] | [.username, .role]]' <<<"$BODY")" = \
	'[["mia","moderator"],["olga","owner"],["ulf","member"]]'
api_get /api/me "$ADMIN"
check "after a restart: still admin" test "$(jget .admin)" = true

# --- moderation: rights and refusals --------------------------------------------
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"
WSBASE="ws://127.0.0.1:$PORT"
api_json POST /api/rooms/ops/join "$OUT" '{}'
kick() { api_json POST "/api/rooms/$1/kicks" "$2" "{\"user\":\"$3\",\"reason\":\"${4:-}\"}"; }
kick ops "$USER" otto
expect 403 forbidden "a member cannot remove anyone"
kick ops "$MOD" olga
expect 403 forbidden "a moderator cannot remove the owner"
kick ops "$MOD" root
expect 403 forbidden "a moderator cannot remove an admin"
kick ops "$MOD" mia
expect 403 forbidden "nobody removes themselves (that is leave)"
kick ops "$MOD" nobody
expect 404 no_such_user "removing an unknown user"
kick nowhere "$MOD" otto
expect 404 no_such_room "removing from an unknown room"
api_json POST /api/rooms/ops/kicks "$MOD" '{"reason":"x"}'
expect 422 invalid_field "a kick without a user"
api_json POST /api/rooms/ops/kicks "$MOD" "{\"user\":\"otto\",\"reason\":\"$(printf 'r%.0s' $(seq 201))\"}"
expect 422 text_too_long "a reason over 200 characters"
api_json POST /api/rooms/ops/kicks "$MOD" '{"user":"otto","reason":7}'
expect 422 invalid_field "a non-string reason"
api_json POST /api/rooms/lobby/kicks "$MOD" '{"user":"ulf"}'
expect 403 forbidden "a moderator of ops is nobody in the lobby"
api PUT /api/rooms/ops/moderators/otto -H "Authorization: Bearer $OWNER"
kick ops "$MOD" otto
expect 403 forbidden "a moderator cannot remove another moderator"
kick ops "$OWNER" otto "over to you"
expect 201 "" "the owner removes a moderator"
check "the kick event names both and the reason" test \
	"$(jq -c '.event | [.type, .room, .from, .user, .reason]' <<<"$BODY")" = \
	'["kick","ops","olga","otto","over to you"]'
api_get /api/rooms/ops/members "$OWNER"
check "otto is no longer a member" \
	test "$(jq '[.members[] | select(.username == "otto")] | length' <<<"$BODY")" = 0
kick ops "$OWNER" otto
expect 422 not_a_member "removing a non-member"
api_json POST /api/rooms/ops/join "$OUT" '{}'
expect 200 "" "a removed user may join again"
api_get /api/rooms/ops/members "$OWNER"
check "and is a plain member again" \
	test "$(jq -r '.members[] | select(.username == "otto") | .role' <<<"$BODY")" = member
kick ops "$ADMIN" olga "admin override"
expect 201 "" "an admin removes even the owner"
api_json POST /api/rooms/ops/join "$OWNER" '{}'
api_get /api/rooms/ops/members "$USER"
check "the creator is owner again on re-joining" \
	test "$(jq -r '.members[] | select(.username == "olga") | .role' <<<"$BODY")" = owner

# --- a removed user's open streams stop getting the room at once ---------------
api_json POST /api/rooms/ops/messages "$OWNER" '{"text":"before"}'
C0=$(jget .event.id)
"$WSCLIENT" --token "$USER" --since "$C0" --timeout 8 "$WSBASE/ws" >"$WORK/ulf.ws" 2>"$WORK/ulf.ws.err" &
WS_PID=$!
curl -sN -H "Authorization: Bearer $USER" -H "Last-Event-ID: $C0" --max-time 8 "$BASE/events" |
	grep --line-buffered -a '^data: {.*}$' | sed -u 's/^data: //' >"$WORK/ulf.sse" &
SSE_PID=$!
(
	cursor=$C0
	while [ ! -e "$WORK/stop-poll" ]; do
		body=$(curl -sf -H "Authorization: Bearer $USER" "$BASE/poll?since=$cursor&timeout=2") || break
		jq -c '.events[]' <<<"$body" >>"$WORK/ulf.poll"
		cursor=$(jq -r .cursor <<<"$body")
	done
) &
POLL_PID=$!
sleep 1
kick ops "$MOD" ulf "spam"
expect 201 "" "the moderator removes ulf while ulf listens on all three transports"
KICK_ID=$(jget .event.id)
api_json POST /api/rooms/ops/messages "$OWNER" '{"text":"after the kick"}'
api_json POST /api/rooms/lobby/messages "$ADMIN" '{"text":"lobby still flows"}'
sleep 1
touch "$WORK/stop-poll"
wait "$POLL_PID" || true
wait "$WS_PID" "$SSE_PID" 2>/dev/null || true
for t in ws sse poll; do
	f="$WORK/ulf.$t"
	check "$t: ulf got the kick event" grep -q "\"id\":$KICK_ID,\"type\":\"kick\"" "$f"
	check "$t: and nothing of ops after it" \
		bash -c "! grep -q 'after the kick' '$f'"
	check "$t: while the lobby still reaches ulf" grep -q 'lobby still flows' "$f"
done
api_get "/poll?since=$C0&timeout=0" "$USER"
check "resume after the kick: the kick, nothing of ops after it" \
	test "$(jq -c '[.events[] | select(.room == "ops") | .type]' <<<"$BODY")" = '["kick"]'
api_get "/api/rooms/ops/messages?after=$C0" "$OWNER"
check "history holds the kick and the message after it" \
	test "$(jq -c '[.events[] | .type]' <<<"$BODY")" = '["kick","message"]'
api_get /api/rooms/ops/messages "$USER"
expect 403 not_a_member "the removed user no longer reads the room"

# --- bans ------------------------------------------------------------------------
api_json POST /api/rooms/ops/join "$USER" '{}'
api_json POST /api/rooms/ops/bans "$MOD" '{"user":"ulf","reason":"again"}'
expect 201 "" "the moderator bans a member"
check "the ban event removes ulf" \
	test "$(jq -c '.event | [.type, .user, .reason]' <<<"$BODY")" = '["ban","ulf","again"]'
api_json POST /api/rooms/ops/join "$USER" '{}'
expect 403 banned "a banned user cannot join"
api_json POST /api/rooms/ops/bans "$USER" '{"user":"otto"}'
expect 403 forbidden "a member cannot ban"
api_json POST /api/rooms/ops/leave "$OUT" '{}'
api_json POST /api/rooms/ops/bans "$MOD" '{"user":"otto","reason":"pre-emptive"}'
expect 201 "" "a non-member can be banned too"
check "with no event (nobody was removed)" test "$(jget .event)" = null
api_json POST /api/rooms/ops/join "$OUT" '{}'
expect 403 banned "and cannot join"
api_get /api/rooms/ops/bans "$MOD"
expect 200 "" "moderators list the bans"
check "the bans: who, by whom, why" \
	test "$(jq -c '[.bans[] | [.user, .by, .reason]]' <<<"$BODY")" = \
	'[["otto","mia","pre-emptive"],["ulf","mia","again"]]'
api_get /api/rooms/ops/bans "$OUT"
expect 403 forbidden "others do not"
api DELETE /api/rooms/ops/bans/ulf -H "Authorization: Bearer $OUT"
expect 403 forbidden "a non-moderator cannot lift a ban"
api DELETE /api/rooms/ops/bans/ulf -H "Authorization: Bearer $MOD"
expect 200 "" "the moderator lifts ulf's ban"
api DELETE /api/rooms/ops/bans/ulf -H "Authorization: Bearer $MOD"
expect 404 not_banned "lifting it twice"
api_json POST /api/rooms/ops/join "$USER" '{}'
expect 200 "" "ulf joins again"
stop_natterd
start_natterd
api_json POST /api/rooms/ops/join "$OUT" '{}'
expect 403 banned "a ban survives a restart"
WSBASE="ws://127.0.0.1:$PORT"
printf '%s\n' '{"op":"kick","room":"ops","user":"ulf","reason":"ws"}' >"$WORK/kick.cmd"
"$WSCLIENT" --token "$MOD" --send-file "$WORK/kick.cmd" --timeout 3 "$WSBASE/ws" >"$WORK/kick.ws" 2>&1 || true
check "kick over WebSocket is acknowledged" grep -q '"type":"ack"' "$WORK/kick.ws"
printf '%s\n' '{"op":"ban","room":"ops","user":"olga"}' >"$WORK/ban.cmd"
"$WSCLIENT" --token "$MOD" --send-file "$WORK/ban.cmd" --timeout 3 "$WSBASE/ws" >"$WORK/ban.ws" 2>&1 || true
check "banning the owner over WebSocket: an error frame" grep -q '"forbidden"' "$WORK/ban.ws"

# --- mutes -----------------------------------------------------------------------
api_json POST /api/rooms/ops/join "$USER" '{}'
mute() { api_json POST "/api/rooms/$1/mutes" "$2" "$3"; }
mute ops "$USER" '{"user":"mia","seconds":60}'
expect 403 forbidden "a member cannot mute"
mute ops "$MOD" '{"user":"olga","seconds":60}'
expect 403 forbidden "a moderator cannot mute the owner"
for bad in '{"user":"ulf"}' '{"user":"ulf","seconds":0}' '{"user":"ulf","seconds":-5}' \
	'{"user":"ulf","seconds":"60"}' '{"user":"ulf","seconds":99999999}' '{"user":"ulf","seconds":1.5}'; do
	mute ops "$MOD" "$bad"
	expect 422 invalid "mute refuses $bad"
done
mute ops "$MOD" '{"user":"nobody","seconds":60}'
expect 404 no_such_user "muting an unknown user"
"$WSCLIENT" --token "$USER" --timeout 3 "$WSBASE/ws" >"$WORK/ulf-mute.ws" 2>&1 &
MWS=$!
sleep 0.5
api_get "/api/rooms/ops/messages?limit=100" "$OWNER"
BEFORE=$(jq '.events | length' <<<"$BODY")
mute ops "$MOD" '{"user":"ulf","seconds":60,"reason":"cool down"}'
expect 201 "" "the moderator mutes ulf for a minute"
check "the answer says until when" test "$(jget .seconds)/$(jget .user)" = 60/ulf
api_json POST /api/rooms/ops/messages "$USER" '{"text":"can I talk?"}'
expect 403 muted "a muted user's HTTP send is refused"
RA=$(jget .retry_after)
check "with retry_after in (0, 60]: $RA" test "$RA" -gt 0 -a "$RA" -le 60
check "and a Retry-After header" bash -c "curl -s -D - -o /dev/null -H 'Authorization: Bearer $USER' \
	-H 'Content-Type: application/json' --data '{\"text\":\"x\"}' $BASE/api/rooms/ops/messages | grep -qi '^retry-after: [0-9]'"
api_json POST /api/rooms/ops/typing "$USER" '{}'
expect 403 muted "typing too"
printf '%s\n' '{"op":"send","room":"ops","text":"ws talk","client_id":"m1"}' >"$WORK/mute.cmd"
"$WSCLIENT" --token "$USER" --send-file "$WORK/mute.cmd" --timeout 2 "$WSBASE/ws" >"$WORK/mute.ws" 2>&1 || true
check "a WebSocket send: error muted with retry_after" \
	bash -c "grep '\"type\":\"error\"' '$WORK/mute.ws' | jq -s -e 'any(.[]; .error == \"muted\" and .retry_after > 0 and .client_id == \"m1\")' >/dev/null"
api_json POST /api/rooms/lobby/messages "$USER" '{"text":"other rooms are fine"}'
expect 201 "" "a mute holds in its room only"
api_get "/api/rooms/ops/messages?limit=100" "$OWNER"
check "nothing of the muted user was stored" test "$(jq '.events | length' <<<"$BODY")" = "$BEFORE"
wait "$MWS" || true
check "ulf's open connection was told of the mute" \
	bash -c "jq -s -e 'any(.[]; .type == \"mute\" and .room == \"ops\" and .from == \"mia\" and .reason == \"cool down\" and .seconds == 60)' '$WORK/ulf-mute.ws' >/dev/null"
stop_natterd
start_natterd
WSBASE="ws://127.0.0.1:$PORT"
api_json POST /api/rooms/ops/messages "$USER" '{"text":"after restart"}'
expect 403 muted "a mute survives a restart"
api DELETE /api/rooms/ops/mutes/ulf -H "Authorization: Bearer $USER"
expect 403 forbidden "the muted user cannot lift it"
api DELETE /api/rooms/ops/mutes/ulf -H "Authorization: Bearer $MOD"
expect 200 "" "the moderator lifts the mute"
api DELETE /api/rooms/ops/mutes/ulf -H "Authorization: Bearer $MOD"
expect 404 not_muted "lifting it twice"
api_json POST /api/rooms/ops/messages "$USER" '{"text":"thanks"}'
expect 201 "" "ulf talks again"
mute ops "$MOD" '{"user":"ulf","seconds":1}'
expect 201 "" "a one-second mute"
api_json POST /api/rooms/ops/messages "$USER" '{"text":"too soon"}'
expect 403 muted "refused during it"
sleep 1.2
api_json POST /api/rooms/ops/messages "$USER" '{"text":"on time"}'
expect 201 "" "accepted once it is over"

# --- disabling an account ---------------------------------------------------------
api_json POST /api/admin/users/ulf/disable "$OWNER" '{"reason":"x"}'
expect 403 forbidden "only admins disable accounts"
api_json POST /api/admin/users/root/disable "$ADMIN" '{}'
expect 422 invalid "an admin cannot disable their own account"
api_json POST /api/admin/users/nobody/disable "$ADMIN" '{}'
expect 404 no_such_user "disabling an unknown user"
api_json POST /api/admin/users/ulf/disable "$ADMIN" '{"reason":5}'
expect 422 invalid_field "a non-string reason"
ULF2=$(api_json POST /api/login "" '{"username":"ulf","password":"correct horse"}' && jget .token)
check "ulf has a second session" test -n "$ULF2"

"$WSCLIENT" --token "$USER" --timeout 10 "$WSBASE/ws" >"$WORK/d.ws" 2>&1 &
DWS=$!
curl -sN -H "Authorization: Bearer $ULF2" --max-time 10 "$BASE/events" >"$WORK/d.sse" 2>/dev/null &
DSSE=$!
curl -s -o "$WORK/d.poll" -w '%{http_code}' -H "Authorization: Bearer $USER" \
	"$BASE/poll?timeout=9" >"$WORK/d.poll.status" &
DPOLL=$!
sleep 1
T0=$(date +%s%N)
api_json POST /api/admin/users/ulf/disable "$ADMIN" '{"reason":"spam account"}'
expect 200 "" "the admin disables ulf"
check "the answer says so" test "$(jq -c '[.user, .disabled, .reason]' <<<"$BODY")" = '["ulf",true,"spam account"]'
for pid in $DWS $DSSE $DPOLL; do wait "$pid" 2>/dev/null || true; done
T1=$(date +%s%N)
MS=$(((T1 - T0) / 1000000))
check "all three connections ended within 1 s (${MS} ms)" test "$MS" -lt 1000
check "WebSocket: the disabled event, then close 4001" \
	bash -c "grep -q '\"type\":\"disabled\"' '$WORK/d.ws' && grep -q '^close 4001' '$WORK/d.ws'"
check "SSE: the disabled event ended the stream" grep -q '^event: disabled' "$WORK/d.sse"
check "long-poll: answered 403 disabled with the reason" \
	test "$(cat "$WORK/d.poll.status")/$(jq -r '.error + "/" + .reason' "$WORK/d.poll")" = "403/disabled/spam account"
# Every later request of the account says why, not a bare 401: the API
# (cookie or bearer), and each stream's handshake before it starts.
api_get /api/me "$USER"
expect 403 disabled "the first session's requests answer 403 disabled"
check "... with the reason" test "$(jget .reason)" = "spam account"
api_get /api/me "$ULF2"
expect 403 disabled "and the second's"
api_get /events "$ULF2" --max-time 3
expect 403 disabled "an SSE stream is refused 403 disabled"
api_get "/poll?timeout=1&token=$ULF2" "" --max-time 3
expect 403 disabled "a long-poll with ?token= too"
check "... with the reason" test "$(jget .reason)" = "spam account"
api_json POST /api/login "" '{"username":"ulf","password":"correct horse"}'
expect 403 disabled "logging in answers 403 disabled"
check "... with the reason" test "$(jget .reason)" = "spam account"
api_json POST /api/login "" '{"username":"ulf","password":"wrong horse"}'
expect 401 bad_credentials "a wrong password still says only that"
"$WSCLIENT" --token "$USER" --timeout 3 "$WSBASE/ws" >/dev/null 2>"$WORK/d.ws2.err" && rc=0 || rc=$?
check "a new WebSocket with the old token is refused 403 before the upgrade" \
	bash -c "test $rc = 2 && grep -q 403 '$WORK/d.ws2.err'"
api_json POST /api/admin/users/ulf/enable "$OWNER" '{}'
expect 403 forbidden "only admins enable accounts"
api_json POST /api/admin/users/ulf/enable "$ADMIN" '{}'
expect 200 "" "the admin enables ulf again"
check "the answer says so" test "$(jget .disabled)" = false
api_get /api/me "$ULF2"
expect 401 "" "enabling ends the old sessions"
api_json POST /api/login "" '{"username":"ulf","password":"correct horse"}'
expect 200 "" "ulf logs in again"

# --- the audit log ---------------------------------------------------------------
api_get /api/admin/audit "$OWNER"
expect 403 forbidden "only admins read the audit log"
api_get "/api/admin/audit?limit=0" "$ADMIN"
expect 400 bad_parameter "limit 0"
api_get "/api/admin/audit?before=x" "$ADMIN"
expect 400 bad_parameter "a bad before"
api_get "/api/admin/audit?limit=200" "$ADMIN"
expect 200 "" "the admin reads the audit log"
jq -c '[.entries[] | [.actor, .action, .user, .room, .reason, .detail]] | reverse' <<<"$BODY" >"$WORK/audit.json"
check "every action is there, oldest first: $(cat "$WORK/audit.json")" test "$(cat "$WORK/audit.json")" = "$(jq -c . <<'JSON'
[["olga","moderator","mia","ops","",""],
 ["olga","moderator","mia","ops","",""],
 ["root","moderator","ulf","ops","",""],
 ["olga","unmoderator","ulf","ops","",""],
 ["olga","unmoderator","ulf","ops","",""],
 ["root","moderator","ulf","lobby","",""],
 ["olga","moderator","mia","ops","",""],
 ["olga","moderator","otto","ops","",""],
 ["olga","kick","otto","ops","over to you",""],
 ["root","kick","olga","ops","admin override",""],
 ["mia","kick","ulf","ops","spam",""],
 ["mia","ban","ulf","ops","again",""],
 ["mia","ban","otto","ops","pre-emptive",""],
 ["mia","unban","ulf","ops","",""],
 ["mia","kick","ulf","ops","ws",""],
 ["mia","mute","ulf","ops","cool down","seconds=60"],
 ["mia","unmute","ulf","ops","",""],
 ["mia","mute","ulf","ops","","seconds=1"],
 ["root","disable","ulf","","spam account",""],
 ["root","enable","ulf","","",""]]
JSON
)"
check "refusals leave no row" test "$(jq '[.entries[] | select(.actor == "ulf")] | length' <<<"$BODY")" = 0
check "each row has a time" test "$(jq '[.entries[] | select(.ts | test("^20[0-9-]+T"))] | length' <<<"$BODY")" = 20
api_get "/api/admin/audit?limit=5" "$ADMIN"
NB=$(jget .next_before)
check "a first page of 5 with more" test "$(jq '.entries | length' <<<"$BODY")/$(jget .has_more)" = 5/true
api_get "/api/admin/audit?limit=5&before=$NB" "$ADMIN"
check "the next page starts below it" test "$(jq "[.entries[] | select(.id >= $NB)] | length" <<<"$BODY")" = 0

# --- a moderator deletes any message of the room; a member only their own --
DAN=$(register dan)
ERIN=$(register erin)
FAY=$(register fay)
api_json POST /api/rooms "$DAN" '{"name":"delroom"}'
expect 201 "" "dan creates delroom (he owns it)"
api_json POST /api/rooms/delroom/join "$ERIN" '{}'
expect 200 "" "erin joins"
api_json POST /api/rooms/delroom/join "$FAY" '{}'
expect 200 "" "fay joins"
api_json POST /api/rooms/delroom/messages "$ERIN" '{"text":"erin writes this"}'
expect 201 "" "erin sends"
EID=$(jget .event.id)
api_json DELETE "/api/rooms/delroom/messages/$EID" "$FAY" ''
expect 403 not_author "fay, a plain member, may not delete erin's message"
api_json DELETE "/api/rooms/delroom/messages/$EID" "$DAN" ''
expect 200 "" "dan, the room's owner, deletes erin's message"
check "the delete names it" test "$(jget .event.target_id)" = "$EID"
api_get "/api/rooms/delroom/messages?limit=50" "$ERIN"
check "erin's message is a tombstone" test "$(jq "[.events[] | select(.id == $EID and .deleted == true and (has(\"text\") | not))] | length" <<<"$BODY")" = 1
api_json PATCH "/api/rooms/delroom/messages/$EID" "$DAN" '{"text":"rewritten"}'
expect 403 not_author "a moderator may delete but not edit someone else's message"
api_get "/api/admin/audit?limit=5" "$ADMIN"
check "the audit log has the moderator's delete" test "$(jq "[.entries[] | select(.actor == \"dan\" and .action == \"delete\" and .room == \"delroom\" and .detail == \"message $EID\")] | length" <<<"$BODY")" = 1

finish
