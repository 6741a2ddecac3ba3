#!/usr/bin/env bash
# transports.sh: one bus, three transports. A receiver on each of
# WebSocket, SSE and long-poll in one room; 1,000 messages sent over
# WebSocket and HTTP POST (JSON and form) in turn; every receiver gets all
# of them with the same ids in the same order, exactly once: first with
# steady connections, then while every receiver is killed and resumed from
# its last cursor again and again. Then a WebSocket consumer that stops
# reading is cut loose without stalling anyone, and bad input is refused.
# NATTER_TEST_FLAGS=--no-io-uring runs it on the sendmsg() write path.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

N=${TRANSPORT_MESSAGES:-1000}
start_natterd --send-queue-max 65536 --poll-timeout-max 55
WSBASE="ws://127.0.0.1:$PORT"
# WebSocket writes take one of two paths (net/sendbatch.h): io_uring
# batches where the kernel allows them, else sendmsg(); transports-sendmsg.sh
# runs this file again with the fallback forced.
case " ${NATTER_TEST_FLAGS:-} " in
*" --no-io-uring "*) want_path="one sendmsg() per connection" ;;
*) want_path="ws: writes: " ;;
esac
check "natterd says which write path it took ($want_path)" \
	grep -qF "$want_path" "$WORK/natterd.log"
grep -o 'ws: writes: [^"]*' "$WORK/natterd.log" | head -n1

SENDER=$(register sender)
RWS=$(register rws)
RSSE=$(register rsse)
RPOLL=$(register rpoll)
api_json POST /api/rooms "$SENDER" '{"name":"t"}' >/dev/null
for tok in "$RWS" "$RSSE" "$RPOLL"; do
	api_json POST /api/rooms/t/join "$tok" '{}'
done
C0=$(jget .event.id)

# --- receivers ---------------------------------------------------------------
# Each appends one JSON line per event it receives to its file and resumes
# from the last id in that file. With KILLS=1 each connection is SIGKILLed
# after a random 0.3-1.2 s and restarted.
last_id() { { grep -o '"id":[0-9]*' "$1" 2>/dev/null || true; } | tail -n1 | cut -d: -f2; }
msg_count() { grep -c '"type":"message","room":"t"' "$1" 2>/dev/null || true; }
life() { if [ "$KILLS" = 1 ]; then echo "0.$((RANDOM % 9 + 3))"; else echo 120; fi; }

recv_ws() {
	local out=$1 cursor
	while [ "$(msg_count "$out")" -lt "$N" ] && [ $SECONDS -lt "$DEADLINE" ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C0}
		timeout -s KILL "$(life)" "$WSCLIENT" --token "$RWS" --since "$cursor" \
			--timeout 120 "$WSBASE/ws" >>"$out" 2>>"$out.err" || true
		echo restart >>"$out.restarts"
	done
}
recv_sse() {
	local out=$1 cursor
	while [ "$(msg_count "$out")" -lt "$N" ] && [ $SECONDS -lt "$DEADLINE" ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C0}
		# Only whole data lines count: a line cut by the kill is dropped.
		timeout -s KILL "$(life)" curl -sN -H "Authorization: Bearer $RSSE" \
			-H "Last-Event-ID: $cursor" "$BASE/events" 2>>"$out.err" |
			grep --line-buffered -a '^data: {.*}$' | sed -u 's/^data: //' >>"$out" || true
		echo restart >>"$out.restarts"
	done
}
recv_poll() {
	local out=$1 cursor=$C0 body n=0
	while [ "$(msg_count "$out")" -lt "$N" ] && [ $SECONDS -lt "$DEADLINE" ]; do
		# A poll killed mid-flight loses its answer; the cursor is unchanged.
		body=$(timeout -s KILL "$(life)" curl -sf -H "Authorization: Bearer $RPOLL" \
			"$BASE/poll?since=$cursor&timeout=5") || { echo restart >>"$out.restarts"; continue; }
		# Polls usually answer within milliseconds, before any kill: so
		# with KILLS=1 every 4th answer is also dropped unread, as if the
		# client died just after the server answered.
		n=$((n + 1))
		if [ "$KILLS" = 1 ] && [ $((n % 4)) = 0 ]; then
			echo restart >>"$out.restarts"
			continue
		fi
		jq -c '.events[]' <<<"$body" >>"$out"
		cursor=$(jq -r .cursor <<<"$body")
	done
}

# --- senders: WebSocket, then JSON POST, then form POST, in turn ----------------
send_all() {
	local tag=$1 i
	: >"$WORK/ws-send.txt"
	for i in $(seq 1 "$N"); do
		case $((i % 3)) in
		0) echo "{\"op\":\"send\",\"room\":\"t\",\"text\":\"$tag $i\",\"client_id\":\"$tag-$i\"}" >>"$WORK/ws-send.txt" ;;
		esac
	done
	# The WebSocket sender runs concurrently with the HTTP senders.
	"$WSCLIENT" --token "$SENDER" --send-file "$WORK/ws-send.txt" --timeout 120 \
		--count "$N" "$WSBASE/ws" >"$WORK/ws-sender.out" 2>&1 &
	local wspid=$!
	for i in $(seq 1 "$N"); do
		case $((i % 3)) in
		1) curl -s -o /dev/null -H "Authorization: Bearer $SENDER" -H 'Content-Type: application/json' \
			--data "{\"text\":\"$tag $i\",\"client_id\":\"$tag-$i\"}" "$BASE/api/rooms/t/messages" ;;
		2) curl -s -o /dev/null -H "Authorization: Bearer $SENDER" \
			--data "text=$tag+$i&client_id=$tag-$i" "$BASE/api/rooms/t/messages" ;;
		esac
	done
	wait "$wspid" || true
}

# Expected: every message id in room t after $1, in order, from history.
expected_ids() {
	local after=$1 more=true
	while [ "$more" = true ]; do
		api_get "/api/rooms/t/messages?after=$after&limit=200" "$SENDER"
		jq -r '.events[] | select(.type=="message") | .id' <<<"$BODY"
		more=$(jget .has_more)
		after=$(jget '.events[-1].id')
	done
}

run_round() {
	local name=$1 start=$2
	for t in ws sse poll; do : >"$WORK/$name.$t"; : >"$WORK/$name.$t.restarts"; done
	# Generous: a round takes ~40 s on an idle machine, but a loaded one
	# (parallel builds, benchmarks) slows every restart down a lot.
	DEADLINE=$((SECONDS + 600))
	C0=$start
	recv_ws "$WORK/$name.ws" & local p1=$!
	recv_sse "$WORK/$name.sse" & local p2=$!
	recv_poll "$WORK/$name.poll" & local p3=$!
	sleep 1
	send_all "$name"
	wait "$p1" "$p2" "$p3" || true
	expected_ids "$start" >"$WORK/$name.expected"
	check "$name: history holds all $N messages" test "$(wc -l <"$WORK/$name.expected")" -eq "$N"
	for t in ws sse poll; do
		jq -r 'select(.type=="message" and .room=="t") | .id' "$WORK/$name.$t" >"$WORK/$name.$t.ids"
		check "$name: $t receiver got all $N messages, same ids, same order, none twice" \
			cmp -s "$WORK/$name.expected" "$WORK/$name.$t.ids"
	done
}

KILLS=0
run_round steady "$C0"
check "steady: the WebSocket sender saw acks" grep -q '"type":"ack"' "$WORK/ws-sender.out"

KILLS=1
START=$(tail -n1 "$WORK/steady.expected")
run_round killed "$START"
for t in ws sse poll; do
	check "killed: the $t receiver was restarted several times" \
		test "$(wc -l <"$WORK/killed.$t.restarts")" -ge 3
done

# --- a WebSocket consumer that stops reading ---------------------------------------
SLOW=$(register slow)
api_json POST /api/rooms/t/join "$SLOW" '{}' >/dev/null
RSS0=$(awk '/VmRSS/ {print $2}' /proc/"$NATTERD_PID"/status)
"$WSCLIENT" --token "$SLOW" --rcvbuf 4096 --stall 30 --timeout 60 "$WSBASE/ws" >"$WORK/slow.out" 2>&1 &
SLOWPID=$!
: >"$WORK/fast.ws"
"$WSCLIENT" --token "$RWS" --timeout 60 --count 300 "$WSBASE/ws" >"$WORK/fast.ws" 2>&1 &
FASTPID=$!
sleep 0.5
BIG=$(head -c 3900 /dev/zero | tr '\0' x)
T0=$SECONDS
for i in $(seq 1 300); do
	curl -s -o /dev/null -H "Authorization: Bearer $SENDER" -H 'Content-Type: application/json' \
		--data "{\"text\":\"big $i $BIG\"}" "$BASE/api/rooms/t/messages"
done
check "a fast reader receives 300 large messages while a slow one stalls" wait "$FASTPID"
# A stall would block the senders for good; 120 s leaves room for a loaded
# machine (the 300 sends take ~15 s on an idle one).
check "the 300 sends finished in $((SECONDS - T0)) s (no stall)" test $((SECONDS - T0)) -lt 120
api GET /metrics
check "the stalled consumer was cut loose (slow_consumer_disconnects)" \
	bash -c "grep -q '^natter_slow_consumer_disconnects_total{transport=\"ws\"} [1-9]' <<<'$BODY'"
RSS1=$(awk '/VmRSS/ {print $2}' /proc/"$NATTERD_PID"/status)
# AddressSanitizer keeps freed memory in quarantine (256 MiB by default),
# so there the bound is looser: it still catches per-subscriber copies.
RSS_MAX=65536
ldd "$NATTERD" 2>/dev/null | grep -q libasan && RSS_MAX=$((320 * 1024))
check "natterd RSS stayed bounded (grew $(( (RSS1 - RSS0) / 1024 )) MiB < $((RSS_MAX / 1024)) MiB)" \
	test $((RSS1 - RSS0)) -lt "$RSS_MAX"
kill "$SLOWPID" 2>/dev/null || true
wait "$SLOWPID" 2>/dev/null || true
check "the stalled consumer saw a 1008 close when it read again" grep -q '^close 1008' "$WORK/slow.out"

# --- bad input --------------------------------------------------------------------------
"$WSCLIENT" --token "$RWS" --origin http://evil.example --timeout 5 "$WSBASE/ws" >/dev/null 2>"$WORK/err" && rc=0 || rc=$?
check "a foreign Origin is refused with 403" bash -c "[ $rc = 2 ] && grep -q 403 '$WORK/err'"
"$WSCLIENT" --timeout 5 "$WSBASE/ws" >/dev/null 2>"$WORK/err" && rc=0 || rc=$?
check "a WebSocket without auth is refused with 401" bash -c "[ $rc = 2 ] && grep -q 401 '$WORK/err'"
api GET /events
expect 401 unauthorized "SSE without auth is a 401"
api GET /poll
expect 401 unauthorized "long-poll without auth is a 401"
for bad in abc -5 99999999999; do
	api GET "/events?since=$bad" -H "Authorization: Bearer $RSSE"
	expect 400 bad_cursor "SSE since=$bad is a 400"
	api GET "/poll?since=$bad" -H "Authorization: Bearer $RPOLL"
	expect 400 bad_cursor "long-poll since=$bad is a 400"
done
api GET "/events" -H "Authorization: Bearer $RSSE" -H "Last-Event-ID: nope"
expect 400 bad_cursor "SSE Last-Event-ID of garbage is a 400"
"$WSCLIENT" --token "$RWS" --since abc --timeout 5 "$WSBASE/ws" >/dev/null 2>"$WORK/err" && rc=0 || rc=$?
check "a WebSocket since=abc is refused with 400" bash -c "[ $rc = 2 ] && grep -q 400 '$WORK/err'"
"$WSCLIENT" --token "$RWS" --since 99999999999 --timeout 5 "$WSBASE/ws" >"$WORK/fut" 2>&1 || true
check "a WebSocket since in the future gets bad_cursor and a 1008 close" \
	bash -c "grep -q bad_cursor '$WORK/fut' && grep -q '^close 1008' '$WORK/fut'"

# A long-poll answer holds at most send-queue-max (64 KiB here) of events
# past its first: 30 messages of ~4 KB come in several answers, each under
# the cap, which together hold all 30 in order, once.
api_json POST /api/rooms/t/messages "$SENDER" '{"text":"before the big ones"}' >/dev/null
BIG0=$(jget .event.id)
BIGTEXT=$(head -c 3900 /dev/zero | tr '\0' b)
for i in $(seq 1 30); do
	api_json POST /api/rooms/t/messages "$SENDER" "{\"text\":\"$i $BIGTEXT\"}" >/dev/null
done
cursor=$BIG0 answers=0 maxbytes=0
: >"$WORK/bigpoll"
while [ "$(grep -c . "$WORK/bigpoll")" -lt 30 ] && [ $answers -lt 20 ]; do
	curl -sf -H "Authorization: Bearer $RPOLL" "$BASE/poll?since=$cursor&timeout=0" >"$WORK/bp.json"
	bytes=$(wc -c <"$WORK/bp.json")
	[ "$bytes" -gt "$maxbytes" ] && maxbytes=$bytes
	jq -r '.events[] | select(.type == "message") | .text | split(" ")[0]' "$WORK/bp.json" >>"$WORK/bigpoll"
	cursor=$(jq .cursor "$WORK/bp.json")
	answers=$((answers + 1))
done
check "long-poll splits a 120 KB backlog into answers under 64 KiB (answers: $answers, largest: $maxbytes B)" \
	bash -c "[ $answers -ge 2 ] && [ $maxbytes -le 70000 ]"
check "and those answers hold all 30 big messages, in order, once" \
	bash -c "seq 1 30 | cmp -s - '$WORK/bigpoll'"

printf '%s\n' 'not json' '[1,2]' '{"op":"dance"}' '{"op":"send","room":"t"}' '{"op":"ping"}' >"$WORK/badcmds"
"$WSCLIENT" --token "$RWS" --send-file "$WORK/badcmds" --timeout 3 "$WSBASE/ws" >"$WORK/badout" 2>&1 || true
check "malformed JSON gets a bad_json error frame" grep -q '"error":"bad_json"' "$WORK/badout"
check "an unknown op gets an unknown_op error frame" grep -q '"error":"unknown_op"' "$WORK/badout"
check "a send without text gets an error frame" grep -q '"error":"invalid' "$WORK/badout"
check "the connection stays after bad commands (pong arrives)" grep -q '"type":"pong"' "$WORK/badout"

# A masked text frame of 20,000 bytes (limit 16,384): close 1009.
HEX="81fe4e2000000000$(head -c 20000 /dev/zero | tr '\0' a | od -An -v -tx1 | tr -d ' \n')"
"$WSCLIENT" --token "$RWS" --raw-send "$HEX" --timeout 5 "$WSBASE/ws" >"$WORK/big" 2>&1 || true
check "an oversized message is closed with 1009" grep -q '^close 1009' "$WORK/big"
"$WSCLIENT" --token "$RWS" --raw-send "818200000000fffe" --timeout 5 "$WSBASE/ws" >"$WORK/utf" 2>&1 || true
check "invalid UTF-8 is closed with 1007" grep -q '^close 1007' "$WORK/utf"

api GET /healthz
expect 200 "" "natterd still healthy after all of it"

# Resume from SQLite: restarted with a ring of 16 (empty at start), a
# WebSocket from a cursor before the 31 big-message section is older than
# the ring, so its history is read on the history pool, off the event
# loop, and the subscribe completes on the loop: every message since then
# once, in order, and then a live one, none twice.
stop_natterd
start_natterd --ring-size 16 --send-queue-max 1048576
WSBASE="ws://127.0.0.1:$PORT"
OLD=$((BIG0 - 1))
"$WSCLIENT" --token "$RWS" --since "$OLD" --timeout 6 "$WSBASE/ws" >"$WORK/old" 2>&1 &
OLDPID=$!
sleep 2
api_json POST /api/rooms/t/messages "$SENDER" '{"text":"live after replay"}' >/dev/null
LIVE=$(jget .event.id)
wait "$OLDPID" || true
{ grep -o '"id":[0-9]*' "$WORK/old" || true; } | cut -d: -f2 >"$WORK/old.ids"
check "an old cursor resumes from SQLite: hello recovered" grep -q '"recovered":true' "$WORK/old"
check "every message since the cursor arrives, then the live one ($(grep -c . "$WORK/old.ids") events)" \
	bash -c "[ \$(grep -c '\"type\":\"message\",\"room\":\"t\"' '$WORK/old') -eq 32 ] && [ \$(tail -n1 '$WORK/old.ids') = $LIVE ]"
check "ids strictly increase and none comes twice" \
	bash -c "sort -n -u '$WORK/old.ids' | cmp -s - '$WORK/old.ids' && [ \$(head -n1 '$WORK/old.ids') -gt $OLD ]"
# SSE and long-poll read such history on the same pool (from an HTTP worker)
timeout 3 curl -sN -H "Authorization: Bearer $RSSE" -H "Last-Event-ID: $OLD" \
	"$BASE/events" >"$WORK/old.sse" 2>/dev/null || true
check "SSE from the old cursor gets the same 32 messages" \
	bash -c "[ \$(grep -c '^data: {\"id\":[0-9]*,\"type\":\"message\",\"room\":\"t\"' '$WORK/old.sse') -eq 32 ]"
curl -sf -H "Authorization: Bearer $RPOLL" "$BASE/poll?since=$OLD&timeout=0" >"$WORK/old.poll"
check "long-poll from the old cursor starts at the first of them" \
	bash -c "[ \$(jq '[.events[] | select(.type == \"message\")][0].id' '$WORK/old.poll') -eq $BIG0 ]"
finish
