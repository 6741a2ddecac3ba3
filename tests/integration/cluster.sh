#!/usr/bin/env bash
# cluster: three natterd nodes on one PostgreSQL behind haproxy, round
# robin with no stickiness (issue 16). PostgreSQL is started by the test
# (tests/backends.sh: initdb + pg_ctl from Debian's packages on a free
# loopback port, as `nobody` when run as root).
#   - receivers on all three transports (WebSocket, SSE, long-poll), each
#     connecting and resuming through the balancer, so their connections
#     and every long-poll land on different nodes;
#   - three senders, one per node, each message with a client_id, retried
#     through the balancer (same client_id) when its node fails;
#   - node 1 is killed with SIGKILL mid-stream; its clients resume through
#     the balancer on the others;
#   - PostgreSQL is restarted mid-stream;
# and then every receiver has every message exactly once, all in the same
# order (history's), and every acknowledged message is in history once.
# Skips (77) without postgresql-15 or haproxy, unless
# NATTER_REQUIRE_ROOT_TESTS=1 or CI is set.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../backends.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

backends_need
command -v haproxy >/dev/null 2>&1 || backends_skip "haproxy not installed (apt-get install haproxy)"

M=${CLUSTER_MESSAGES:-150} # per sender
N=$((3 * M))
NODE_PID=() NODE_PORT=() HAPROXY_PID=
cluster_stop() {
	for p in "${NODE_PID[@]}" $HAPROXY_PID; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${NODE_PID[@]}" $HAPROXY_PID; do wait "$p" 2>/dev/null || true; done
	backends_stop
	cleanup
}
trap cluster_stop EXIT

pg_start || fail_now "PostgreSQL did not start"
ok "PostgreSQL started on port $PG_PORT"

for i in 1 2 3; do
	node_start "$i" "$PG_URL" "" "$WORK" --log-level info --poll-timeout-max 55 ||
		fail_now "node $i did not start"
done
ok "three nodes on one PostgreSQL: ports ${NODE_PORT[*]}"

haproxy_start "$WORK" "${NODE_PORT[1]}" "${NODE_PORT[2]}" "${NODE_PORT[3]}"
BASE="http://127.0.0.1:$LB_PORT"
for _ in $(seq 1 100); do curl -sf -o /dev/null "$BASE/healthz" && break; sleep 0.05; done
api GET /healthz
expect 200 "" "the balancer answers"

# --- people and a room, through the balancer (each request a new node) ------
S1=$(register cl_s1) && S2=$(register cl_s2) && S3=$(register cl_s3) &&
	RWS=$(register cl_rws) && RSSE=$(register cl_rsse) && RPOLL=$(register cl_rpoll) ||
	fail_now "registering through the balancer"
api_json POST /api/rooms "$S1" '{"name":"cl"}'
expect 201 "" "a room made on one node"
for tok in "$S2" "$S3" "$RWS" "$RSSE" "$RPOLL"; do
	api_json POST /api/rooms/cl/join "$tok" '{}'
	[ "$STATUS" = 201 ] || [ "$STATUS" = 200 ] || fail "join: $STATUS $BODY"
done
C0=$(jget .event.id)
api_get /api/rooms/cl/messages "$RPOLL"
expect 200 "" "history of the room from another node"

# --- receivers (as tests/integration/transports.sh), through the balancer ----
last_id() { { grep -o '"id":[0-9]*' "$1" 2>/dev/null || true; } | tail -n1 | cut -d: -f2; }
msg_count() { grep -c '"type":"message","room":"cl"' "$1" 2>/dev/null || true; }
recv_ws() {
	local out=$1 cursor
	while [ "$(msg_count "$out")" -lt "$N" ] && [ $SECONDS -lt "$DEADLINE" ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C0}
		"$WSCLIENT" --token "$RWS" --since "$cursor" --timeout 10 \
			"ws://127.0.0.1:$LB_PORT/ws" >>"$out" 2>>"$out.err" || true
		echo restart >>"$out.restarts"
		sleep 0.1
	done
}
recv_sse() {
	local out=$1 cursor
	while [ "$(msg_count "$out")" -lt "$N" ] && [ $SECONDS -lt "$DEADLINE" ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C0}
		timeout -s KILL 10 curl -sN -H "Authorization: Bearer $RSSE" \
			-H "Last-Event-ID: $cursor" "$BASE/events" 2>>"$out.err" |
			grep --line-buffered -a '^data: {.*}$' | sed -u 's/^data: //' >>"$out" || true
		echo restart >>"$out.restarts"
		sleep 0.1
	done
}
recv_poll() {
	local out=$1 cursor=$C0 body
	while [ "$(msg_count "$out")" -lt "$N" ] && [ $SECONDS -lt "$DEADLINE" ]; do
		body=$(curl -sf -H "Authorization: Bearer $RPOLL" \
			"$BASE/poll?since=$cursor&timeout=5") || { echo restart >>"$out.restarts"; sleep 0.1; continue; }
		jq -c '.events[]' <<<"$body" >>"$out"
		cursor=$(jq -r .cursor <<<"$body")
	done
}

# --- senders: one per node; a failed send is retried through the balancer ---
send_one() { # url token client_id -> prints the event id, or fails
	local body
	body=$(curl -sf --max-time 10 -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
		--data "{\"text\":\"cl $3\",\"client_id\":\"$3\"}" "$1/api/rooms/cl/messages") || return 1
	jq -r .event.id <<<"$body"
}
sender() { # index token
	local i=$1 tok=$2 k id tries
	for k in $(seq 1 "$M"); do
		tries=0
		until id=$(send_one "http://127.0.0.1:${NODE_PORT[$i]}" "$tok" "s$i-$k") ||
			id=$(send_one "$BASE" "$tok" "s$i-$k"); do
			tries=$((tries + 1))
			[ $tries -lt 300 ] || { echo "s$i-$k gave up" >>"$WORK/send.err"; break; }
			sleep 0.1
		done
		[ -n "$id" ] && echo "s$i-$k $id" >>"$WORK/acked.$i"
		echo "$k" >"$WORK/progress.$i"
	done
}
progress() { cat "$WORK"/progress.* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

DEADLINE=$((SECONDS + 300))
for t in ws sse poll; do : >"$WORK/r.$t"; : >"$WORK/r.$t.restarts"; done
recv_ws "$WORK/r.ws" & P1=$!
recv_sse "$WORK/r.sse" 2>>"$WORK/r.sse.shell" & P2=$!
recv_poll "$WORK/r.poll" & P3=$!
sleep 1
sender 1 "$S1" & Q1=$!
sender 2 "$S2" & Q2=$!
sender 3 "$S3" & Q3=$!

until [ "$(progress)" -ge $((N / 3)) ] || [ $SECONDS -ge "$DEADLINE" ]; do sleep 0.1; done
kill -KILL "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
NODE_PID[1]=
ok "node 1 killed with SIGKILL after $(progress) sends"

until [ "$(progress)" -ge $((2 * N / 3)) ] || [ $SECONDS -ge "$DEADLINE" ]; do sleep 0.1; done
pg_restart || fail_now "PostgreSQL did not come back"
ok "PostgreSQL restarted after $(progress) sends"

wait "$Q1" "$Q2" "$Q3" || true
check "no send gave up" test ! -s "$WORK/send.err"
wait "$P1" "$P2" "$P3" || true

# --- what everyone got -----------------------------------------------------------
expected_ids() {
	local after=$C0 more=true
	while [ "$more" = true ]; do
		api_get "/api/rooms/cl/messages?after=$after&limit=200" "$S2"
		[ "$STATUS" = 200 ] || { echo "history: $STATUS" >&2; return 1; }
		jq -r '.events[] | select(.type=="message") | .id' <<<"$BODY"
		more=$(jget .has_more)
		after=$(jget '.events[-1].id')
	done
}
expected_ids >"$WORK/expected"
check "history holds all $N messages" test "$(wc -l <"$WORK/expected")" -eq "$N"
check "history's ids are strictly increasing" bash -c "sort -n -c -u '$WORK/expected'"
cat "$WORK"/acked.* | sort >"$WORK/acked"
check "all $N sends were acknowledged" test "$(wc -l <"$WORK/acked")" -eq "$N"
check "every acknowledged message is in history, once" \
	bash -c "cut -d' ' -f2 '$WORK/acked' | sort -n | cmp -s - '$WORK/expected'"
for t in ws sse poll; do
	jq -r 'select(.type=="message" and .room=="cl") | .id' "$WORK/r.$t" >"$WORK/r.$t.ids"
	check "$t receiver got all $N messages exactly once, in history's order ($(wc -l <"$WORK/r.$t.restarts") reconnects)" \
		cmp -s "$WORK/expected" "$WORK/r.$t.ids"
done
for i in 2 3; do
	check "node $i logged no bus order violation" bash -c "! grep -q 'out of id order' '$WORK/node$i.log'"
done

N2=http://127.0.0.1:${NODE_PORT[2]}
N3=http://127.0.0.1:${NODE_PORT[3]}

# --- a logout on one node ends the session on every node at once -------------
# (not after session-cache-ms: the nodes tell each other by NOTIFY)
LO=$(BASE=$N2 register cl_logout)
BASE=$N3 api_get /api/me "$LO"
expect 200 "" "a session works on node 3 (and is in its cache now)"
BASE=$N2 api_json POST /api/logout "$LO" '{}'
check "logout on node 2" test "$STATUS" -lt 300
for _ in $(seq 1 20); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $LO" "$N3/api/me")" = 401 ] && break
	sleep 0.05
done
BASE=$N3 api_get /api/me "$LO"
expect 401 "" "node 3 refuses the ended session within 1 s (its cache keeps 5 s)"

# --- a delete on one node: every node's ring holds the tombstone, so a resume
# from before the message on another node never brings its text back -----
BASE=$N2 api_json POST /api/rooms/cl/messages "$S2" '{"text":"secret plans"}'
expect 201 "" "a message sent on node 2"
GONE=$(jget .event.id)
ring_has() { # ring_has PATTERN: node 3's resume from before $GONE shows it
	local i
	for i in $(seq 1 40); do
		BASE=$N3 api_get "/poll?since=$((GONE - 1))&timeout=1" "$RPOLL"
		jget ".events[] | select(.id == $GONE)" | grep -q "$1" && return 0
		sleep 0.05
	done
	return 1
}
check "node 3's resume has it" ring_has "secret plans"
BASE=$N2 api DELETE "/api/rooms/cl/messages/$GONE" -H "Authorization: Bearer $S2"
expect 200 "" "its author deletes it on node 2"
check "node 3's resume from before it gives the tombstone" ring_has '"deleted": true'
BASE=$N3 api_get "/poll?since=$((GONE - 1))&timeout=1" "$RPOLL"
no_text() { ! grep -q 'secret plans' <<<"$BODY"; }
check "and not the text" no_text

# --- accounts: a new one is @mentionable on every node at once; a disabled
# one's streams end on every node at once (NOTIFY, not a restart) ----------
NEWU=$(BASE=$N2 register cl_newcomer)
BASE=$N2 api_json POST /api/rooms/cl/join "$NEWU" '{}'
for _ in $(seq 1 40); do
	BASE=$N3 api_json POST /api/rooms/cl/messages "$S3" '{"text":"welcome @cl_newcomer"}'
	[ "$(jget '.event.mentions // [] | index("cl_newcomer")')" != null ] && break
	sleep 0.05
done
check "an account registered on node 2 is @mentioned on node 3 at once" \
	test "$(jget '.event.mentions // [] | index("cl_newcomer")')" != null
timeout 10 curl -sN -H "Authorization: Bearer $NEWU" "$N3/events" >"$WORK/disabled.sse" 2>/dev/null &
DIS_PID=$!
for _ in $(seq 1 40); do grep -q '^: \|^data:\|^event:\|^id:' "$WORK/disabled.sse" 2>/dev/null && break; sleep 0.05; done
BASE=$N2 api_json POST /api/admin/users/cl_newcomer/disable "$S1" '{"reason":"spam"}'
expect 200 "" "an admin disables the account on node 2"
for _ in $(seq 1 60); do kill -0 "$DIS_PID" 2>/dev/null || break; sleep 0.05; done
check "its SSE stream on node 3 ends within 3 s" bash -c "! kill -0 $DIS_PID 2>/dev/null"
check "after a disabled event" grep -q '^event: disabled' "$WORK/disabled.sse"
kill "$DIS_PID" 2>/dev/null || true
wait "$DIS_PID" 2>/dev/null || true
BASE=$N3 api_get /api/me "$NEWU"
expect 403 disabled "node 3 refuses its token with the reason"

# --- PostgreSQL away: 503 for writes, streams stay, recovery without restart --
curl -s "$N2/healthz" >"$WORK/hz"
check "/healthz names the backend" grep -q '"store":"postgresql"' "$WORK/hz"
curl -sN -H "Authorization: Bearer $RSSE" "$N3/events" >"$WORK/outage.sse" 2>/dev/null &
SSE_PID=$!
sleep 0.5
# a request now puts the sender's session in node 2's cache (session-cache-ms)
curl -s -o /dev/null -H "Authorization: Bearer $S2" "$N2/api/me"
pg_stop
for _ in $(seq 1 50); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$N2/healthz")" = 503 ] && break
	sleep 0.1
done
BASE=$N2 api GET /healthz
expect 503 store_unavailable "without PostgreSQL a node's /healthz is 503 store_unavailable"
BASE=$N2 api_json POST /api/rooms/cl/messages "$S2" '{"text":"outage","client_id":"outage-1"}' -D "$WORK/hdr"
expect 503 store_unavailable "without PostgreSQL a send is 503 store_unavailable"
check "with Retry-After" grep -qi '^Retry-After: ' "$WORK/hdr"
check "node 3's open SSE stream stays open" kill -0 "$SSE_PID"
pg_launch || fail_now "PostgreSQL did not start again"
for _ in $(seq 1 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$N2/healthz")" = 200 ] && break
	sleep 0.1
done
BASE=$N2 api GET /healthz
expect 200 "" "PostgreSQL back: /healthz is 200 again, no restart"
for _ in $(seq 1 50); do
	BASE=$N2 api_json POST /api/rooms/cl/messages "$S2" '{"text":"outage","client_id":"outage-1"}'
	[ "$STATUS" = 201 ] && break
	sleep 0.1
done
expect 201 "" "the retried send is stored"
for _ in $(seq 1 100); do grep -q '"text":"outage"' "$WORK/outage.sse" && break; sleep 0.1; done
check "and reaches node 3's stream that stayed open" grep -q '"text":"outage"' "$WORK/outage.sse"
kill "$SSE_PID" 2>/dev/null || true

# --- files: rows in PostgreSQL, bytes in one files-dir every node reaches ----
head -c 3000 /dev/urandom >"$WORK/blob.bin"
BASE=$N2 api POST /api/rooms/cl/files -H "Authorization: Bearer $S2" \
	-F "file=@$WORK/blob.bin;filename=zebrafile.bin" -F 'text=a file on node 2'
expect 201 "" "a file sent on node 2"
URL=$(jget '.event.files[0].url')
curl -sS -H "Authorization: Bearer $RPOLL" "$N3$URL" -o "$WORK/blob.n3"
check "a member downloads it from node 3, the same bytes" cmp -s "$WORK/blob.bin" "$WORK/blob.n3"
OUT=$(BASE=$N3 register cl_outsider)
check "an outsider gets 404 on node 3" \
	test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OUT" "$N3$URL")" = 404
BASE=$N3 api_get "/api/search?q=zebrafile" "$S3"
check "the file's name is found from another node" test "$(jget '.results | length')" -ge 1
finish
