#!/usr/bin/env bash
# rate-limits: per-user token buckets on every command path (issue 17,
# point 5): sends, typing notices and all commands together (invalid ones
# and pings included), over HTTP and WebSocket.
#   - HTTP: past the burst, 429 rate_limited with Retry-After and
#     retry_after; nothing stored past the limit; another user is served;
#   - WebSocket: an error frame rate_limited with retry_after and the
#     command's client_id; a flood of 30,000 messages of 4,000 characters
#     is cut down (at most burst + rate x seconds stored) and the socket
#     closed with 1008; pings and invalid frames take from the "all"
#     bucket and are cut down too;
#   - every refusal counted in natter_rate_limited_total{what}.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

metric() {
	curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
# stored messages of the lobby by user $2 (token $1)
stored() {
	api_get "/api/rooms/lobby/messages?limit=200" "$1"
	jq --arg u "$2" '[.events[] | select(.type=="message" and .from==$u)] | length' <<<"$BODY"
}

start_natterd --rate-send 5 --rate-send-burst 20 --rate-typing 2 \
	--rate-typing-burst 5 --rate-commands 50 --rate-commands-burst 100 \
	--rate-flood-close 200
ALICE=$(register alice)
BOB=$(register bob)
CAROL=$(register carol)
check "users registered" test -n "$ALICE" -a -n "$BOB" -a -n "$CAROL"

# --- HTTP sends ---------------------------------------------------------------
# 40 sends from 4 clients at once, 10 each on one keep-alive connection, so
# that even on a loaded machine they come faster than the bucket refills
# (40 curls one after another took 5.4 s there: the refill let all in).
t0=$(date +%s%N)
senders=()
for w in 1 2 3 4; do
	curl -s -D "$WORK/h.$w.hdr" -w '\n%{http_code}\n' -X POST \
		-H 'Content-Type: application/json' -H "Authorization: Bearer $ALICE" \
		--data-binary "{\"text\":\"http burst $w\"}" \
		$(for _ in $(seq 1 10); do echo "$BASE/api/rooms/lobby/messages"; done) \
		>"$WORK/h.$w.out" 2>/dev/null &
	senders+=($!)
done
wait "${senders[@]}" # not natterd, also a child of this shell
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
codes() { cat "$WORK"/h.[1-4].out | grep -E '^[0-9]{3}$'; }
n201=$(codes | grep -c '^201$' || true)
n429=$(codes | grep -c '^429$' || true)
LAST429=$(cat "$WORK"/h.[1-4].out | grep -m1 '"rate_limited"' || true)
H=$(cat "$WORK"/h.[1-4].hdr)
# The burst (20) gets through, plus what the bucket refilled at 5/s while
# the sends ran, plus one for a refill landing between two sends.
most=$((20 + 5 * elapsed_ms / 1000 + 1))
check "HTTP sends past the burst refused ($n201 accepted, at most $most in ${elapsed_ms} ms; $n429 refused)" \
	test "$n201" -ge 20 -a "$n201" -le "$most" -a "$n429" -ge 1 -a $((n201 + n429)) = 40
BODY=$LAST429
check "429 body: rate_limited with retry_after >= 1" \
	test "$(jq -r '.error' <<<"$BODY")/$(jq -r '.retry_after >= 1' <<<"$BODY")" = rate_limited/true
check "429 carries Retry-After" grep -qi '^Retry-After: [1-9]' <<<"$H"
check "only the accepted sends are stored ($n201)" test "$(stored "$ALICE" alice)" = "$n201"
api_json POST /api/rooms/lobby/messages "$BOB" '{"text":"bob is fine"}'
expect 201 "" "another user sends meanwhile"
check "natter_rate_limited_total{what=\"send\"} counts the refusals" \
	test "$(metric 'natter_rate_limited_total{what="send"}')" -ge "$n429"

# --- typing -------------------------------------------------------------------
# 12 notices on one keep-alive connection, one curl: quick even on a
# loaded machine, where 12 curls one after another let the refill in
t0=$(date +%s%N)
t204=$(curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' \
	-H "Authorization: Bearer $BOB" --data-binary '{}' \
	$(for _ in $(seq 1 12); do echo "$BASE/api/rooms/lobby/typing"; done) | grep -c '^204$' || true)
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
most=$((5 + 2 * elapsed_ms / 1000 + 1))
check "typing past its burst refused ($t204 of 12 accepted, at most $most in ${elapsed_ms} ms)" \
	test "$t204" -ge 5 -a "$t204" -le "$most" -a "$t204" -lt 12
api_json POST /api/rooms/lobby/typing "$BOB" '{}'
expect 429 rate_limited "typing over the limit: 429 rate_limited"
check "natter_rate_limited_total{what=\"typing\"} counted" \
	test "$(metric 'natter_rate_limited_total{what="typing"}')" -ge 1

# --- WebSocket: the error frame ------------------------------------------------
for i in $(seq 1 30); do
	echo "{\"op\":\"send\",\"room\":\"lobby\",\"text\":\"ws $i\",\"client_id\":\"s$i\"}"
done >"$WORK/burst"
set +e
"$WSCLIENT" --token "$BOB" --send-file "$WORK/burst" --timeout 3 \
	"ws://127.0.0.1:$PORT/ws" >"$WORK/burst.out" 2>&1
set -e
F=$(grep -m1 '"error":"rate_limited"' "$WORK/burst.out" || true)
check "WS error frame: rate_limited, retry_after >= 1, the client_id" \
	test "$(jq -r '[.type, .error, (.retry_after >= 1), (.client_id | startswith("s"))] | join("/")' <<<"$F")" \
	= "error/rate_limited/true/true"
check "a short burst over the limit is refused, not closed" \
	test "$(grep -c '^close 1008' "$WORK/burst.out")" = 0
: 30,000 sends of 4,000 characters -------------------------
sleep 5 # alice's send bucket refills (20 at 5/s)
python3 - "$WORK/flood" <<'EOF'
import json, sys
text = "x" * 4000
with open(sys.argv[1], "w") as f:
    for i in range(30000):
        f.write(json.dumps({"op": "send", "room": "lobby", "text": text,
                            "client_id": "w%d" % i}) + "\n")
EOF
before=$(stored "$ALICE" alice)
t0=$(date +%s.%N)
set +e
"$WSCLIENT" --token "$ALICE" --send-file "$WORK/flood" --timeout 30 \
	"ws://127.0.0.1:$PORT/ws" >"$WORK/flood.out" 2>"$WORK/flood.err"
rc=$?
set -e
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
acks=$(grep -c '"type":"ack"' "$WORK/flood.out" || true)
limited=$(grep -c '"error":"rate_limited"' "$WORK/flood.out" || true)
echo "# flood: rc=$rc in ${secs}s: $acks acked, $limited rate_limited frames"
check "the flood's socket was closed with 1008" grep -q '^close 1008' "$WORK/flood.out"
after=$(stored "$ALICE" alice)
stored_n=$((after - before))
max=$(echo "20 + 5 * ($secs + 1)" | bc | cut -d. -f1)
# Acks of sends still being committed when the socket is closed are not
# sent (the client resumes by cursor and sees them in history).
check "flood cut down: $stored_n of 30000 stored (at most $max; $acks acked)" \
	test "$stored_n" -ge 1 -a "$stored_n" -le "$max" -a "$acks" -le "$stored_n"
check "natter_rate_flood_closes_total counted" test "$(metric natter_rate_flood_closes_total)" -ge 1
api_json POST /api/rooms/lobby/messages "$BOB" '{"text":"bob still fine"}'
expect 201 "" "another user is served after the flood"

# --- pings and invalid frames: the "all" bucket ---------------------------------
all0=$(metric 'natter_rate_limited_total{what="all"}')
python3 - "$WORK/pings" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write('{"op":"ping"}\n' if i % 2 else 'not json\n')
EOF
set +e
"$WSCLIENT" --token "$CAROL" --send-file "$WORK/pings" --timeout 20 \
	"ws://127.0.0.1:$PORT/ws" >"$WORK/pings.out" 2>&1
set -e
pongs=$(grep -c '"type":"pong"' "$WORK/pings.out" || true)
check "pings and bad frames cut down ($pongs pongs of 1500) and closed 1008" \
	test "$pongs" -le 120 -a "$(grep -c '^close 1008' "$WORK/pings.out")" = 1
all1=$(metric 'natter_rate_limited_total{what="all"}')
check "natter_rate_limited_total{what=\"all\"} counted ($all0 -> $all1)" test "$all1" -gt "$all0"

# --- a calm client is never refused ------------------------------------------------
sleep 1
ok_n=0
for i in 1 2 3 4 5; do
	api_json POST /api/rooms/lobby/messages "$CAROL" "{\"text\":\"calm $i\"}"
	[ "$STATUS" = 201 ] && ok_n=$((ok_n + 1))
	sleep 0.3
done
check "a client within its rate is never refused ($ok_n of 5)" test "$ok_n" = 5

stop_natterd
finish
