#!/usr/bin/env bash
# slowloris.sh: the header and body deadlines. 500 clients trickle header
# bytes (one every 0.5 s, which libmicrohttpd's idle timeout alone would
# let run forever) and 50 trickle a body; all are closed at the deadline
# (header-timeout 4 s here) and counted in /metrics, while an ordinary
# client is served the whole time. What the deadlines must not touch: a
# WebSocket, an SSE stream and a long-poll open longer than the deadline,
# and an upload slower than a fast one but above body-min-rate. Bounded
# well under 60 s.
. "$(dirname "$0")/lib.sh"
: "${SLOWCLIENT:?SLOWCLIENT must point at tests/slowclient}"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

HT=4
start_natterd --header-timeout $HT --body-min-rate 1024 --poll-timeout-max 55
TOK=$(register alice)
api_json POST /api/rooms "$TOK" '{"name":"t"}' >/dev/null

metric() { curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# --- streams outlive the deadline --------------------------------------------
timeout 50 "$WSCLIENT" --token "$TOK" --timeout 45 --count 1 \
	"ws://127.0.0.1:$PORT/ws" >"$WORK/ws.out" 2>&1 &
WS_PID=$!
curl -sN --max-time 45 "$BASE/events?token=$TOK" >"$WORK/sse.out" 2>&1 &
SSE_PID=$!
curl -s --max-time 20 "$BASE/poll?token=$TOK&timeout=$((HT + 4))" \
	-o "$WORK/poll.out" -w '%{http_code}' >"$WORK/poll.code" 2>&1 &
POLL_PID=$!

# --- the flood, and an ordinary client during it -----------------------------
"$SLOWCLIENT" --port "$PORT" --conns 500 --mode headers --every 500 \
	--hold $((HT + 6)) >"$WORK/headers.out" &
H_PID=$!
"$SLOWCLIENT" --port "$PORT" --conns 50 --mode body --every 500 \
	--hold $((HT * 2 + 6)) >"$WORK/body.out" &
B_PID=$!
sleep 0.5
served=0 worst=0
for i in $(seq 1 20); do
	t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 \
		-H "Authorization: Bearer $TOK" "$BASE/api/rooms") || t="000 5"
	[ "${t% *}" = 200 ] && served=$((served + 1))
	ms=$(awk -v s="${t#* }" 'BEGIN {printf "%d", s * 1000}')
	[ "$ms" -gt "$worst" ] && worst=$ms
	sleep 0.4
done
check "an ordinary client is served during the flood ($served/20, slowest ${worst} ms)" \
	test "$served" = 20 -a "$worst" -lt 2000

# A POST whose body comes at 8 KB/s for ~6 s (above the minimum rate, past
# the grace): answered, not cut.
head -c 48000 /dev/zero | tr '\0' a >"$WORK/big.txt"
code=$(curl -s -o "$WORK/upload.out" -w '%{http_code}' --limit-rate 8k \
	-H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
	--data-binary @"$WORK/big.txt" "$BASE/api/rooms/t/messages") || code=000
check "a slow but steady upload is answered (status $code)" test "$code" = 400

wait $H_PID $B_PID
read -r hl <"$WORK/headers.out"
read -r bl <"$WORK/body.out"
echo "# headers: $hl"
echo "# body:    $bl"
val() { sed -n "s/.*\b$1=\([-0-9]*\).*/\1/p" <<<"$2"; }
check "500 slow-header clients connected" test "$(val opened "$hl")" = 500
check "every slow-header client was closed" test "$(val closed "$hl")" = 500
check "closed at the header deadline (first $(val first_close_ms "$hl") ms, last $(val last_close_ms "$hl") ms)" \
	test "$(val first_close_ms "$hl")" -ge $((HT * 1000 - 100)) -a \
	"$(val last_close_ms "$hl")" -le $((HT * 1000 + 2500))
check "every slow-body client was closed" test "$(val closed "$bl")" = 50
check "closed after the body grace ($(val first_close_ms "$bl") ms)" \
	test "$(val first_close_ms "$bl")" -ge $((HT * 1000 - 100)) -a \
	"$(val last_close_ms "$bl")" -le $((HT * 1000 + 2500))
h=$(metric natter_slow_headers_closed_total)
b=$(metric natter_slow_body_closed_total)
check "/metrics counts them (headers $h, body $b)" test "${h:-0}" -ge 500 -a "${b:-0}" = 50

# An idle keep-alive connection is not a slow client: its next request,
# sent after more than the deadline, is served on the same connection.
exec {KA}<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&"$KA"
IFS= read -r -t 3 -u "$KA" first || first=
sleep $((HT + 2))
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&"$KA"
second=
# (the first answer's body has no newline: the status line may follow it)
while IFS= read -r -t 3 -u "$KA" line; do
	case $line in *HTTP/1.1*) second=HTTP/1.1${line#*HTTP/1.1} && break ;; esac
done
exec {KA}<&-
check "an idle keep-alive connection outlives the deadline (${first%$'\r'} / ${second%$'\r'})" \
	test "${first:0:12}" = "HTTP/1.1 200" -a "${second:0:12}" = "HTTP/1.1 200"
# Two requests in a row share one connection.
out=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects} ' \
	"$BASE/healthz" "$BASE/healthz")
check "keep-alive within the deadline reuses the connection ($out)" \
	test "$out" = "1 0 "

# --- the streams ---------------------------------------------------------------
wait $POLL_PID || true
check "a long-poll longer than the deadline is answered (status $(cat "$WORK/poll.code"))" \
	test "$(cat "$WORK/poll.code")" = 200
check "the SSE stream is still open after the deadline" kill -0 $SSE_PID
check "the WebSocket is still open after the deadline" kill -0 $WS_PID
api_json POST /api/rooms/t/messages "$TOK" '{"text":"after the flood"}'
expect 201 "" "a message is sent after the flood"
wait $WS_PID || true
check "the WebSocket received it" grep -q 'after the flood' "$WORK/ws.out"
sleep 0.3
check "the SSE stream received it" grep -q 'after the flood' "$WORK/sse.out"
kill $SSE_PID 2>/dev/null || true
finish
