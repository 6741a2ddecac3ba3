#!/usr/bin/env bash
# cluster-redis: three natterd nodes on one PostgreSQL with `bus =
# redis://...` (both started by the test from Debian's packages,
# tests/backends.sh), no balancer: each client names its node.
#   - typing sent on node 1 reaches a member's SSE stream and long-poll on
#     node 2 and WebSocket on node 3;
#   - personal events made on node 1 reach the user's stream on node 2: a
#     read marker, settings, a mute (enforced on node 3 too), a profile
#     change (which also reaches a peer's stream on node 3) and an
#     invitation to a private room;
#   - a user connected only to node 1 is online in GET /api/presence on
#     node 2 (and an event says so), and a status chosen on node 3 shows
#     on node 2; kill -9 node 1: the user is offline on node 2 within the
#     node expiry (6.5 s) plus coalescing, well under 10 s;
#   - Redis stopped: messages still flow between nodes, /healthz says
#     "bus_ok": false (and 200: the node stays in the balancer);
#   - a node restarted while the others' users stay put knows them within
#     3 s (it asks for the others' whole sets; they would come by
#     themselves only every 30 s);
#   - Redis back on its port: typing crosses nodes again, no restart;
#   - with rate limits on, a user sending through two nodes in turn meets
#     one budget, not one per node, over HTTP and over a WebSocket on each
#     node (acks against rate_limited error frames), and so do typing
#     notices over those WebSockets; failed logins on one node lock the
#     login on the others.
# Skips (77) without postgresql-15 or redis-server, unless
# NATTER_REQUIRE_ROOT_TESTS=1 or CI is set (as cluster.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../backends.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

backends_need

NODE_PID=() NODE_PORT=() PIDS=()
cluster_stop() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "${NODE_PID[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${NODE_PID[@]}" "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	backends_stop
	cleanup
}
trap cluster_stop EXIT

pg_start || fail_now "PostgreSQL did not start"
redis_start
[ -n "$REDIS_PORT" ] && (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null ||
	fail_now "redis-server did not start"
ok "PostgreSQL on port $PG_PORT, Redis on port $REDIS_PORT"

for i in 1 2 3; do
	node_start "$i" "$PG_URL" "$REDIS_URL" "$WORK" --log-level info \
		--presence-grace 1 --presence-coalesce-ms 100 ||
		fail_now "node $i did not start"
done
N1=http://127.0.0.1:${NODE_PORT[1]}
N2=http://127.0.0.1:${NODE_PORT[2]}
N3=http://127.0.0.1:${NODE_PORT[3]}
ok "three nodes with bus = $REDIS_URL: ports ${NODE_PORT[*]}"

# wait_for SECONDS COMMAND...: until the command succeeds (0) or time is up.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
bus_ok() { curl -s "$1/healthz" | jq -e ".bus == \"redis\" and .bus_ok == $2" >/dev/null; }
check "every node's /healthz says bus redis, bus_ok true" \
	wait_for 10 bash -c "$(declare -f bus_ok); bus_ok $N1 true && bus_ok $N2 true && bus_ok $N3 true"

# --- people and a room ----------------------------------------------------------
A=$(BASE=$N1 register cr_a) && B=$(BASE=$N2 register cr_b) &&
	C=$(BASE=$N2 register cr_c) && W=$(BASE=$N3 register cr_w) &&
	P=$(BASE=$N1 register cr_p) || fail_now "registering"
BASE=$N1 api_json POST /api/rooms "$A" '{"name":"cr"}'
expect 201 "" "a room made on node 1"
for tok in "$B" "$C" "$W" "$P"; do
	BASE=$N2 api_json POST /api/rooms/cr/join "$tok" '{}'
	[ "$STATUS" = 201 ] || [ "$STATUS" = 200 ] || fail "join: $STATUS $BODY"
done
CUR=$(jget .event.id)

# sse TOKEN NODE FILE: a raw SSE stream in the background.
sse() {
	curl -sN -H "Authorization: Bearer $1" "$2/events" >"$3" 2>/dev/null &
	PIDS+=($!)
}
# typing_in FILE: the file shows cr_a typing in cr.
typing_in() { grep -q '"type":"typing","room":"cr","from":"cr_a"' "$1" 2>/dev/null; }

# --- typing on node 1 reaches node 2 (SSE, long-poll) and node 3 (WebSocket) ---
sse "$B" "$N2" "$WORK/b.sse"
sse "$W" "$N3" "$WORK/w3.sse"
# poll_until FILE: long-polls on node 2 (each answer's cursor the next
# since) until the typing event arrives, for 20 s at most.
poll_until() {
	local cursor=$CUR body end=$((SECONDS + 20))
	while ! typing_in "$1" && [ $SECONDS -lt $end ]; do
		body=$(curl -s -H "Authorization: Bearer $C" "$N2/poll?since=$cursor&timeout=5") || continue
		jq -c '.events[]' <<<"$body" >>"$1"
		cursor=$(jq -r .cursor <<<"$body")
	done
}
: >"$WORK/c.poll"
poll_until "$WORK/c.poll" &
POLL_PID=$!
PIDS+=($POLL_PID)
"$WSCLIENT" --token "$W" --timeout 20 "ws://127.0.0.1:${NODE_PORT[3]}/ws" >"$WORK/w.ws" 2>&1 &
PIDS+=($!)
sleep 1 # the streams subscribe
for _ in $(seq 1 30); do
	BASE=$N1 api_json POST /api/rooms/cr/typing "$A" '{}'
	typing_in "$WORK/b.sse" && typing_in "$WORK/w.ws" && ! kill -0 "$POLL_PID" 2>/dev/null && break
	sleep 0.2
done
expect 204 "" "typing posted on node 1"
check "reaches an SSE stream on node 2" typing_in "$WORK/b.sse"
wait "$POLL_PID" 2>/dev/null || true
check "reaches a long-poll on node 2" typing_in "$WORK/c.poll"
check "reaches a WebSocket on node 3" typing_in "$WORK/w.ws"
check "node 1's own subscriber got it once (its own message from Redis is dropped)" \
	test "$(grep -c '"type":"typing","room":"cr","from":"cr_a"' "$WORK/b.sse")" -ge 1

# --- personal events follow the user to every node: a read marker and
# settings changed on node 1 reach cr_b's stream on node 2; a mute made on
# node 1 reaches cr_b there and is enforced on node 3 -------------------------
BASE=$N1 api_json POST /api/rooms/cr/messages "$A" '{"text":"read me"}'
READ_ID=$(jget .event.id)
BASE=$N1 api_json POST /api/rooms/cr/read "$B" "{\"id\":$READ_ID}"
check "cr_b marks cr read on node 1: $STATUS" test "$STATUS" -lt 300
check "the read marker reaches cr_b's SSE stream on node 2" \
	wait_for 3 grep -q "\"type\":\"read\",\"room\":\"cr\".*\"read\":$READ_ID" "$WORK/b.sse"
BASE=$N1 api_json PATCH /api/me "$B" '{"settings":{"theme":"dark"}}'
check "cr_b changes a setting on node 1: $STATUS" test "$STATUS" -lt 300
check "the settings event reaches cr_b's SSE stream on node 2" \
	wait_for 3 grep -q '"type":"settings".*"theme":"dark"' "$WORK/b.sse"
BASE=$N1 api_json POST /api/rooms/cr/mutes "$A" '{"user":"cr_b","seconds":60,"reason":"calm"}'
expect 201 "" "the owner mutes cr_b on node 1"
check "the mute reaches cr_b's SSE stream on node 2" \
	wait_for 3 grep -q '"type":"mute","room":"cr"' "$WORK/b.sse"
muted_on() { # NODE: cr_b's send there is refused as muted
	BASE=$1 api_json POST /api/rooms/cr/messages "$B" '{"text":"still here?"}'
	[ "$STATUS" = 403 ] && [ "$(jget .error)" = muted ]
}
check "and cr_b's send on node 3 is refused: muted" wait_for 3 muted_on "$N3"
BASE=$N1 api DELETE /api/rooms/cr/mutes/cr_b -H "Authorization: Bearer $A"
check "the owner lifts the mute on node 1: $STATUS" test "$STATUS" -lt 300
unmuted_on() { BASE=$1 api_json POST /api/rooms/cr/messages "$B" '{"text":"back"}'; [ "$STATUS" = 201 ]; }
check "and cr_b sends on node 3 again" wait_for 3 unmuted_on "$N3"

# sse_event FILE JQ: an SSE stream shows an event for which JQ is true.
sse_event() {
	grep -a '^data: ' "$1" 2>/dev/null | sed 's/^data: //' |
		jq -c "select($2)" 2>/dev/null | grep -q .
}

# --- a profile change made on node 1 (cr_b clears its avatar: a "profile"
# event) reaches cr_b's other device on node 2 and a peer's stream (cr_w,
# who shares room cr) on node 3 ---------------------------------------------------
BASE=$N1 api DELETE /api/me/avatar -H "Authorization: Bearer $B"
expect 200 "" "cr_b changes its profile (clears its avatar) on node 1"
check "the profile event reaches cr_b's own SSE stream on node 2" \
	wait_for 5 sse_event "$WORK/b.sse" '.type=="profile" and .from=="cr_b"'
check "and a peer's (cr_w's) SSE stream on node 3" \
	wait_for 5 sse_event "$WORK/w3.sse" '.type=="profile" and .from=="cr_b"'

# --- an invitation to a private room made on node 1 reaches the invitee's
# stream on node 2 -------------------------------------------------------------------
BASE=$N1 api_json POST /api/rooms "$A" '{"name":"crpriv","private":true}'
expect 201 "" "a private room made on node 1"
BASE=$N1 api_json POST /api/rooms/crpriv/invites "$A" '{"user":"cr_b"}'
expect 201 "" "cr_b invited to it on node 1"
check "the invitation reaches cr_b's SSE stream on node 2" \
	wait_for 5 sse_event "$WORK/b.sse" '.type=="invite" and .room=="crpriv" and .to=="cr_b"'

# --- presence: cr_p connected to node 1 only is online everywhere ---------------
presence_on() { # NODE TOKEN USER -> prints the status
	curl -s -H "Authorization: Bearer $2" "$1/api/presence?users=$3" | jq -r '.presence[0].status'
}
is_status() { [ "$(presence_on "$1" "$2" "$3")" = "$4" ]; }
check "cr_p is offline on node 2 before connecting" is_status "$N2" "$B" cr_p offline
# cr_p on a WebSocket: its end is seen at once (an SSE stream's only at
# its next write)
"$WSCLIENT" --token "$P" --timeout 120 "ws://127.0.0.1:${NODE_PORT[1]}/ws" >/dev/null 2>&1 &
P_WS=$!
PIDS+=($P_WS)
check "cr_p, connected to node 1 only, is online in GET /api/presence on node 2 within 3 s" \
	wait_for 3 is_status "$N2" "$B" cr_p online
check "and on node 3" wait_for 3 is_status "$N3" "$W" cr_p online
check "room cr's member list on node 2 says cr_p is online" \
	test "$(curl -s -H "Authorization: Bearer $B" "$N2/api/rooms/cr/members" |
		jq -r '.members[] | select(.username=="cr_p") | .status')" = online
# presence_event FILE USER STATUS: an SSE stream shows that presence event.
presence_event() {
	grep -a '^data: ' "$1" 2>/dev/null | sed 's/^data: //' |
		jq -c --arg u "$2" --arg s "$3" 'select(.type=="presence" and .from==$u and .status==$s)' |
		grep -q .
}
check "node 2's SSE subscriber got the presence event" \
	wait_for 3 presence_event "$WORK/b.sse" cr_p online
BASE=$N3 api_json PATCH /api/me "$P" '{"status":"dnd","status_text":"deep work"}'
check "cr_p chooses dnd on node 3 (where it has no stream): $STATUS" test "$STATUS" -lt 300
check "node 2 shows dnd within 3 s" wait_for 3 is_status "$N2" "$B" cr_p dnd
check "with its text" test "$(curl -s -H "Authorization: Bearer $B" "$N2/api/presence?users=cr_p" |
	jq -r '.presence[0].status_text')" = "deep work"
BASE=$N1 api_json PATCH /api/me "$P" '{"status":"online"}'
check "back to automatic on node 1: online on node 2" wait_for 3 is_status "$N2" "$B" cr_p online

# a stream closed on node 1: offline on node 2 after node 1's grace (1 s)
# (SIGKILL: wsclient reads 2 s more after a SIGTERM)
kill -KILL "$P_WS" 2>/dev/null || true
T0=$SECONDS
check "cr_p's WebSocket on node 1 closed: offline on node 2 within 5 s (grace 1 s, heartbeat 2 s)" \
	wait_for 5 is_status "$N2" "$B" cr_p offline
ok "(it took $((SECONDS - T0)) s)"
"$WSCLIENT" --token "$P" --timeout 120 "ws://127.0.0.1:${NODE_PORT[1]}/ws" >/dev/null 2>&1 &
PIDS+=($!)
check "connected again: online on node 2" wait_for 3 is_status "$N2" "$B" cr_p online

# restart_node I [ARGS...]: SIGTERM node I, start it again on its port.
restart_node() {
	local i=$1
	shift
	kill -TERM "${NODE_PID[i]}"
	wait "${NODE_PID[i]}" 2>/dev/null || true
	node_start "$i" "$PG_URL" "$REDIS_URL" "$WORK" --log-level info \
		--presence-grace 1 --presence-coalesce-ms 100 "$@"
}
# Node 3 restarted: cr_p, quiet on node 1 all along, is in none of node
# 1's change sets; node 3 learns of it by asking node 1 for its whole set.
restart_node 3 || fail_now "node 3 did not start again"
T0=$SECONDS
check "node 3 restarted: cr_p (on node 1, unchanged) is online there within 3 s" \
	wait_for 3 is_status "$N3" "$W" cr_p online
ok "(it took $((SECONDS - T0)) s; whole sets come by themselves every 30 s)"

# kill -9 node 1: its users stop counting when it expires (6.5 s)
T0=$SECONDS
KILL_MS=$(date +%s%3N)
kill -KILL "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
NODE_PID[1]=
check "node 1 killed: cr_p is offline on node 2 within 10 s" \
	wait_for 10 is_status "$N2" "$B" cr_p offline
ok "(it took $((SECONDS - T0)) s)"
LAST=$(curl -s -H "Authorization: Bearer $B" "$N2/api/presence?users=cr_p" | jq -r '.presence[0].last_seen')
LAST_MS=$(( $(date -d "$LAST" +%s%3N) ))
check "its last_seen on node 2 ($LAST) is node 1's last word, before the kill" \
	test "$LAST_MS" -le "$KILL_MS" -a "$LAST_MS" -ge $((KILL_MS - 3000))
check "node 3 agrees" wait_for 2 is_status "$N3" "$W" cr_p offline

# --- Redis stopped: messages flow, typing and presence degrade -----------------
sse "$W" "$N3" "$WORK/w2.sse"
sleep 0.5
redis_stop
check "without Redis node 2's /healthz says bus_ok false" wait_for 5 bus_ok "$N2" false
BASE=$N2 api GET /healthz
expect 200 "" "and stays 200 (the store is fine)"
BASE=$N2 api_json POST /api/rooms/cr/messages "$B" '{"text":"no redis","client_id":"nr-1"}'
expect 201 "" "a message sent on node 2 without Redis is stored"
check "and reaches node 3's stream" wait_for 5 grep -q '"text":"no redis"' "$WORK/w2.sse"
BASE=$N3 api_get "/api/rooms/cr/messages?limit=5" "$W"
check "history on node 3 has it" grep -q '"no redis"' <<<"$BODY"

# --- Redis back on the same port: typing crosses nodes again ----------------------
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
	--appendonly no --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis2.log" \
	--daemonize no &
REDIS_PID=$!
check "Redis back: bus_ok true on nodes 2 and 3 within 10 s" \
	wait_for 10 bash -c "$(declare -f bus_ok); bus_ok $N2 true && bus_ok $N3 true"
: >"$WORK/w2.sse.typing"
for _ in $(seq 1 30); do
	BASE=$N2 api_json POST /api/rooms/cr/typing "$B" '{}'
	grep -q '"type":"typing","room":"cr","from":"cr_b"' "$WORK/w2.sse" && break
	sleep 0.2
done
check "typing on node 2 reaches node 3's SSE stream again" \
	grep -q '"type":"typing","room":"cr","from":"cr_b"' "$WORK/w2.sse"
check "node 2 counted a reconnect" \
	bash -c "curl -s '$N2/metrics' | grep -q '^natter_cluster_bus_reconnects_total [1-9]'"
for i in 2 3; do
	check "node $i logged no bus order violation" bash -c "! grep -q 'out of id order' '$WORK/node$i.log'"
done

# --- limits count over the cluster ----------------------------------------------
# Nodes 2 and 3 again with 1 send and 1 typing notice a second, bursts of
# 10 each, and 3 failed logins a window.
for i in 2 3; do
	restart_node "$i" --rate-send 1 --rate-send-burst 10 \
		--rate-typing 1 --rate-typing-burst 10 --login-fail-max 3 ||
		fail_now "node $i did not start with limits"
done
check "nodes 2 and 3 are on the bus again" \
	wait_for 10 bash -c "$(declare -f bus_ok); bus_ok $N2 true && bus_ok $N3 true"
RL=$(BASE=$N2 register cr_rl) || fail_now "registering cr_rl"
BASE=$N2 api_json POST /api/rooms/cr/join "$RL" '{}'
# 40 sends, one at a time, to node 2 and node 3 in turn: one budget is
# the burst and a token a second; a budget per node would be twice that.
SENT=0 REFUSED=0 T0=$(date +%s%3N)
for n in $(seq 1 40); do
	if [ $((n % 2)) = 0 ]; then NODE=$N2; else NODE=$N3; fi
	BASE=$NODE api_json POST /api/rooms/cr/messages "$RL" "{\"text\":\"rl $n\"}"
	case $STATUS in
	201) SENT=$((SENT + 1)) ;;
	429) REFUSED=$((REFUSED + 1)) ;;
	*) fail "send $n on $NODE: $STATUS $BODY" ;;
	esac
done
SECS=$(( ($(date +%s%3N) - T0 + 999) / 1000 ))
ok "40 sends over ${SECS} s: $SENT accepted, $REFUSED refused (429)"
check "some were refused" test "$REFUSED" -gt 0
check "at most one budget was taken: $SENT <= 10 + ${SECS} + 3 (a budget per node: 20 + 2 x ${SECS})" \
	test "$SENT" -le $((10 + SECS + 3))
BASE=$N3 api_get "/api/rooms/cr/messages?limit=100" "$RL"
check "history holds exactly the accepted ones" \
	test "$(jq '[.events[] | select(.from=="cr_rl" and .type=="message")] | length' <<<"$BODY")" = "$SENT"

# --- the WebSocket path meets the same budgets: cr_ws (fresh buckets) with
# one WebSocket on node 2 and one on node 3, a command at a time on each in
# turn. A send is answered by its ack or an error frame with its
# client_id; an accepted typing notice by nothing, so a ping follows it and
# its pong says the answer, if any, came before.
WS=$(BASE=$N2 register cr_ws) || fail_now "registering cr_ws"
BASE=$N2 api_json POST /api/rooms/cr/join "$WS" '{}'
WS_FD=() WS_PONGS=()
for i in 2 3; do
	mkfifo "$WORK/ws$i.in"
	"$WSCLIENT" --token "$WS" --send-stdin --timeout 120 \
		"ws://127.0.0.1:${NODE_PORT[i]}/ws" <"$WORK/ws$i.in" >"$WORK/ws$i.out" 2>&1 &
	PIDS+=($!)
	exec {fd}>"$WORK/ws$i.in"
	WS_FD[i]=$fd WS_PONGS[i]=0
done
# ws_answer I ID: what node I's socket answered the command with client_id
# ID: "ack", the error code, or nothing (yet).
ws_answer() {
	local lines
	lines=$(grep -F "\"client_id\":\"$2\"" "$WORK/ws$1.out" 2>/dev/null |
		grep -E '"type":"(ack|error)"') || return 0
	jq -r --arg id "$2" 'select(.client_id == $id) |
		if .type == "ack" then "ack" elif .type == "error" then .error else empty end' \
		<<<"$lines" | head -n1
}
# ws_pinged I: node I's socket has answered every ping sent on it.
ws_pinged() { [ "$(grep -c '^{"type":"pong"}$' "$WORK/ws$1.out")" -ge "${WS_PONGS[$1]}" ]; }
# ws_do I ID JSON: sends the command (client_id ID) and a ping on node I's
# socket; sets ANSWER to its answer ("none" when it has none), within 10 s.
# (Not in a subshell: it counts the pings in WS_PONGS.)
ws_do() {
	local i=$1 id=$2 json=$3 ans pinged end=$((SECONDS + 10))
	printf '%s\n{"op":"ping"}\n' "$json" >&"${WS_FD[i]}"
	WS_PONGS[i]=$((WS_PONGS[i] + 1))
	for (( ; ; )); do
		# the pong first: an answer it follows is in the file by then
		pinged=false
		ws_pinged "$i" && pinged=true
		ans=$(ws_answer "$i" "$id")
		[ -n "$ans" ] && break
		# (a send's ack may come after the pong, from the store)
		case $pinged/$json in true/*'"op":"send"'*) ;; true/*) ans=none && break ;; esac
		[ $SECONDS -lt $end ] || { ans=timeout && break; }
		sleep 0.02
	done
	ANSWER=$ans
}
for i in 2 3; do
	echo '{"op":"ping"}' >&"${WS_FD[i]}"
	WS_PONGS[i]=1
	check "cr_ws's WebSocket on node $i answers a ping" wait_for 10 ws_pinged "$i"
done
# ws_round N KIND: N commands (client_ids KIND1..KINDN) to node 2 and
# node 3 in turn; sets ACCEPTED, REFUSED, OTHER (the odd answers) and
# SECS (whole seconds taken, rounded up).
ws_round() {
	local n id json t0
	ACCEPTED=0 REFUSED=0 OTHER='' t0=$(date +%s%3N)
	for n in $(seq 1 "$1"); do
		id=$2$n
		if [ "$2" = send ]; then
			json="{\"op\":\"send\",\"room\":\"cr\",\"text\":\"ws $n\",\"client_id\":\"$id\"}"
		else
			json="{\"op\":\"typing\",\"room\":\"cr\",\"client_id\":\"$id\"}"
		fi
		ws_do $((2 + n % 2)) "$id" "$json"
		case $ANSWER in
		ack | none) ACCEPTED=$((ACCEPTED + 1)) ;;
		rate_limited) REFUSED=$((REFUSED + 1)) ;;
		*) OTHER="$OTHER $id:$ANSWER" ;;
		esac
	done
	SECS=$(( ($(date +%s%3N) - t0 + 999) / 1000 ))
}
# ws_refusal KIND: the first refusal frame of that kind (node 2's, then
# node 3's), as type/error/what/(retry_after >= 1).
ws_refusal() {
	grep -hF "\"client_id\":\"$1" "$WORK/ws2.out" "$WORK/ws3.out" |
		jq -r --arg k "$1" 'select(.type == "error" and (.client_id | startswith($k))) |
			[.type, .error, .what, (.retry_after >= 1)] | join("/")' | head -n1
}

# ws_budget KIND WHAT TAKEN: 40 commands of KIND through the two nodes in
# turn (1 a second, bursts of 10 on each node) are held to one budget: the
# burst and a token a second; a budget per node would be twice that.
ws_budget() {
	ws_round 40 "$1"
	ok "40 WebSocket $2 over ${SECS} s: $ACCEPTED $3, $REFUSED refused (rate_limited)"
	check "every one was $3 or refused as rate_limited:${OTHER:- yes}" test -z "$OTHER"
	check "some were refused" test "$REFUSED" -gt 0
	check "the refusal: an error frame rate_limited, what $1, retry_after >= 1" \
		test "$(ws_refusal "$1")" = "error/rate_limited/$1/true"
	check "at most one budget was taken: $ACCEPTED <= 10 + ${SECS} + 3 (a budget per node: 20 + 2 x ${SECS})" \
		test "$ACCEPTED" -le $((10 + SECS + 3))
}

ws_budget send sends acked
BASE=$N3 api_get "/api/rooms/cr/messages?limit=100" "$WS"
check "history holds exactly the acked ones" \
	test "$(jq '[.events[] | select(.from=="cr_ws" and .type=="message")] | length' <<<"$BODY")" = "$ACCEPTED"
ws_budget typing "typing notices" taken
for i in 2 3; do
	fd=${WS_FD[i]}
	exec {fd}>&- # (the sockets stay open; cluster_stop ends them)
done

for _ in 1 2 3; do
	BASE=$N2 api_json POST /api/login "" '{"username":"cr_rl","password":"wrong horse"}'
	[ "$STATUS" = 401 ] || fail "a wrong password on node 2: $STATUS $BODY"
done
ok "three wrong passwords for cr_rl on node 2"
# The failures travel at once; the lock lasts the window (300 s), so a
# pause for a loaded machine costs nothing.
sleep 2
HDRS=$(curl -sS -D - -o "$WORK/login.body" -H 'Content-Type: application/json' \
	-d '{"username":"cr_rl","password":"correct horse"}' "$N3/api/login")
check "node 3 throttles the right password too: $(head -n1 <<<"$HDRS" | tr -d '\r')" \
	grep -q '^HTTP/[0-9.]* 429' <<<"$HDRS"
check "as too_many_attempts" test "$(jq -r .error "$WORK/login.body")" = too_many_attempts
check "with a Retry-After" grep -qi '^retry-after: [1-9]' <<<"$HDRS"
finish
