#!/usr/bin/env bash
# presence.sh: online/away/dnd/offline from the connections of every
# transport, with a grace period so that a reconnect shows nothing; status
# text kept across a restart; presence events only to users who share a
# room. Each case runs on a fresh natterd with short grace (2 s), away
# (3 s) and coalescing (100 ms) times; observers read the raw SSE stream.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

GRACE=2
AWAY=60 # the away case sets its own
PIDS=()

# A fresh server and database for each case.
fresh() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
	stop_natterd
	rm -f "$WORK"/natter.db*
	start_natterd --presence-grace "$GRACE" --presence-away "$AWAY" \
		--presence-coalesce-ms 100 "$@"
	WSBASE="ws://127.0.0.1:$PORT"
}

# user NAME: register, join the lobby, print the token.
user() {
	local t
	t=$(register "$1")
	api_json POST /api/rooms/lobby/join "$t" '{}' >/dev/null
	echo "$t"
}

# Waits poll for the expected state instead of sleeping a fixed time, with
# timeouts generous for a loaded machine (they only cost time on failure).
LONG=10

# wait_hello FILE: until a stream written to FILE is subscribed (its hello:
# "event: hello" on SSE, a {"type":"hello",...} frame on a WebSocket).
wait_hello() {
	local i
	for i in $(seq 1 $((LONG * 10))); do
		grep -qa -e '^event: hello' -e '"type":"hello"' "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# observe TOKEN FILE: a raw SSE stream into FILE, in the background; returns
# once it is subscribed.
observe() {
	curl -sN -H "Authorization: Bearer $1" "$BASE/events" >"$2" 2>/dev/null &
	PIDS+=($!)
	wait_hello "$2" || fail "the SSE stream into $2 did not start"
}

# ws TOKEN [FILE]: a WebSocket connection of TOKEN's user; its pid in
# WS_PID. With FILE (its frames), returns once it is subscribed.
ws() {
	"$WSCLIENT" --token "$1" --timeout 60 "$WSBASE/ws" >"${2:-/dev/null}" 2>&1 &
	WS_PID=$!
	PIDS+=($WS_PID)
	[ -z "${2:-}" ] || wait_hello "$2" || fail "the WebSocket into $2 did not start"
}

# states FILE USER: the statuses of USER's presence events, one a line.
states() {
	grep '^data: ' "$1" | sed 's/^data: //' |
		jq -r --arg u "$2" 'select(.type=="presence" and .from==$u) | .status' 2>/dev/null || true
}

# wait_state FILE USER STATUS SECONDS: until USER's newest event is STATUS.
wait_state() {
	local i
	for i in $(seq 1 $(($4 * 10))); do
		[ "$(states "$1" "$2" | tail -n1)" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

# --- three transports, two connections of one user -----------------------
# A suspended SSE stream learns that its client went only when it next
# writes (a heartbeat): 1 s here, so the SSE close below is noticed soon.
fresh --sse-heartbeat 1
ALICE=$(user alice)
BOB=$(user bob)
observe "$BOB" "$WORK/bob1"
ws "$ALICE"
WS1=$WS_PID
check "WebSocket: bob sees alice online" wait_state "$WORK/bob1" alice online $LONG
api_get "/api/presence?users=alice" "$BOB"
expect 200 "" "GET /api/presence?users=alice"
check "it says online" test "$(jget '.presence[0].status')" = online
curl -sN -H "Authorization: Bearer $ALICE" "$BASE/events" >"$WORK/alice1" 2>&1 &
SSE1=$!
PIDS+=($SSE1)
wait_hello "$WORK/alice1" || fail "alice's SSE stream did not start"
kill -KILL "$WS1"
sleep $((GRACE + 1))
check "closing one of two connections keeps her online" \
	test "$(states "$WORK/bob1" alice | tr '\n' ' ')" = "online "
# long-poll: polls keep her live across the gaps between them
( while :; do curl -sf -H "Authorization: Bearer $ALICE" \
	"$BASE/poll?timeout=1" >/dev/null || sleep 0.2; done ) &
POLL=$!
PIDS+=($POLL)
sleep 0.5
kill -KILL "$SSE1"
sleep $((GRACE + 1))
check "long-poll alone keeps her online" \
	test "$(states "$WORK/bob1" alice | tr '\n' ' ')" = "online "
kill -KILL "$POLL"
check "no polls: offline after poll timeout + grace" \
	wait_state "$WORK/bob1" alice offline $((GRACE + 8 + LONG))
api_get "/api/presence?users=alice" "$BOB"
check "last_seen is kept once offline" test "$(jget '.presence[0].last_seen')" != null
check "the bob stream saw exactly online, offline" \
	test "$(states "$WORK/bob1" alice | tr '\n' ' ')" = "online offline "

# --- kill -9 of a client: offline after the grace period, not before -------
fresh
ALICE=$(user alice)
BOB=$(user bob)
observe "$BOB" "$WORK/bob2"
ws "$ALICE"
check "online" wait_state "$WORK/bob2" alice online $LONG
kill -KILL "$WS_PID"
T0=$(date +%s%N)
# Halfway into the grace, a copy of bob's stream; it counts only if it was
# taken inside the grace (the server's grace starts after the kill, so an
# offline event cannot be in a copy finished less than GRACE after it).
sleep $((GRACE / 2))
cp "$WORK/bob2" "$WORK/bob2.early"
MS=$((($(date +%s%N) - T0) / 1000000))
if [ "$MS" -lt $((GRACE * 1000)) ]; then
	check "not offline before the grace period (${MS} ms after kill -9)" \
		test "$(states "$WORK/bob2.early" alice | tail -n1)" = online
else
	echo "# not checked: not offline before the grace period (the look came ${MS} ms after kill -9: machine busy)"
fi
wait_state "$WORK/bob2" alice offline $((GRACE + LONG)) || true
T1=$(date +%s%N)
MS=$(((T1 - T0) / 1000000))
check "offline after the grace period (${MS} ms after kill -9)" \
	test "$(states "$WORK/bob2" alice | tail -n1)" = offline -a "$MS" -ge $((GRACE * 1000))

# --- a reconnect within the grace period shows others nothing ------------
fresh
ALICE=$(user alice)
BOB=$(user bob)
observe "$BOB" "$WORK/bob3"
ws "$ALICE"
check "online" wait_state "$WORK/bob3" alice online $LONG
for i in 1 2 3 4 5; do # a reload, a blip, a fallback: five in a row
	kill -KILL "$WS_PID"
	sleep 0.3
	ws "$ALICE" "$WORK/alice3.$i"
done
sleep $((GRACE + 1))
check "no offline/online pair on bob's raw SSE stream" \
	test "$(states "$WORK/bob3" alice | tr '\n' ' ')" = "online "

# --- away after inactivity, back on activity; dnd and text chosen ----------
AWAY=3
fresh
ALICE=$(user alice)
BOB=$(user bob)
EVE=$(register eve) # shares no room with anyone
api_json POST /api/rooms/lobby/leave "$EVE" '{}'
api_get /api/rooms "$EVE"
check "eve is in no room" test "$(jget '[.rooms[]|select(.joined)]|length')" = 0
observe "$BOB" "$WORK/bob4"
observe "$EVE" "$WORK/eve4"
ws "$ALICE"
check "online" wait_state "$WORK/bob4" alice online $LONG
check "away after $AWAY s without activity" wait_state "$WORK/bob4" alice away $((AWAY + LONG))
api_json POST /api/activity "$ALICE" '{}'
expect 204 "" "POST /api/activity"
check "online again on activity" wait_state "$WORK/bob4" alice online $LONG
printf '{"op":"activity"}\n' | "$WSCLIENT" --token "$ALICE" --send-stdin --timeout 1 "$WSBASE/ws" >"$WORK/ws-act" 2>&1 || true
check "the WebSocket activity op is accepted" bash -c "! grep -q error '$WORK/ws-act'"
api_json PATCH /api/me "$ALICE" '{"status":"dnd","status_text":"🍕 lunch"}'
expect 200 "" "PATCH /api/me status dnd with text"
check "the answer has it" test "$(jget .status_choice):$(jget .status_text)" = "dnd:🍕 lunch"
check "bob sees dnd" wait_state "$WORK/bob4" alice dnd $LONG
LAST=$(grep '^data: ' "$WORK/bob4" | sed 's/^data: //' | jq -c 'select(.type=="presence")' | tail -n1)
check "the event carries the text" test "$(jq -r .status_text <<<"$LAST")" = "🍕 lunch"
api_get /api/rooms/lobby/members "$BOB"
check "members come with status and text" \
	test "$(jget '.members[]|select(.username=="alice")|.status+":"+.status_text')" = "dnd:🍕 lunch"
api_json PATCH /api/me "$ALICE" '{"status":"busy"}'
expect 422 invalid_status "an unknown status is refused"
api_json PATCH /api/me "$ALICE" "{\"status_text\":\"$(printf 'x%.0s' $(seq 101))\"}"
expect 422 invalid_status_text "101 characters are refused"
api_json PATCH /api/me "$ALICE" '{"status_text":"a\u202eb"}'
expect 422 invalid_status_text "a bidi override is refused"
api_json PATCH /api/me "$ALICE" '{"status_text":"a\u0007b"}'
expect 422 invalid_status_text "a control character is refused"
api_get "/api/presence?users=alice,nobody" "$BOB"
expect 404 no_such_user "an unknown user is a clear 404"
api_get "/api/presence?users=alice" "$EVE"
expect 403 forbidden "someone sharing no room is not shown"
api_get "/api/presence" "$BOB"
expect 200 "" "GET /api/presence: everyone bob shares a room with"
check "lists bob and alice" test "$(jget '[.presence[].user]|sort|join(",")')" = "alice,bob"
check "eve (no shared room) received no presence event" \
	test -z "$(states "$WORK/eve4" alice)"
check "eve's stream is live (hello)" grep -q '^event: hello' "$WORK/eve4"

# --- status text and last_seen kept across a restart ------------------------
for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
PIDS=()
stop_natterd
start_natterd --presence-grace "$GRACE" --presence-away "$AWAY" --presence-coalesce-ms 100
api_get /api/me "$ALICE"
expect 200 "" "GET /api/me after a restart"
check "status and text survived" test "$(jget .status_choice):$(jget .status_text)" = "dnd:🍕 lunch"
check "she is offline, last seen before the restart" \
	test "$(jget .status)" = offline -a "$(jget .last_seen)" != null
api_json PATCH /api/me "$ALICE" '{"status":"online","status_text":null}'
expect 200 "" "status back to automatic, text cleared"
check "text is gone" test "$(jget .status_text)" = null

for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
finish
