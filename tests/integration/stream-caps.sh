#!/usr/bin/env bash
# stream-caps: concurrent streams (WebSocket, SSE and long-poll together)
# are capped per user and per client address (issue 17, point 1). Past a
# cap: 429 too_many_streams with Retry-After and JSON before any upgrade
# or stream starts, counted in natter_streams_refused_total{cap}; a slot
# comes back when its stream ends, on every transport; another user (and
# another address) is served meanwhile.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

metric() {
	curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
PIDS=()
sse_open() { # token -> a background SSE stream, its pid in PIDS
	curl -sN -H "Authorization: Bearer $1" "$BASE/events" >"$WORK/sse.$RANDOM" 2>&1 &
	PIDS+=($!)
}
ws_open() { # token -> a background WebSocket, its pid in PIDS
	"$WSCLIENT" --token "$1" --timeout 60 "ws://127.0.0.1:$PORT/ws" >/dev/null 2>&1 &
	PIDS+=($!)
}
kill_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap 'kill_all; cleanup' EXIT
# wait until the server counts n open connections of transport t
wait_conns() {
	for _ in $(seq 1 100); do
		[ "$(metric "natter_connections{transport=\"$1\"}")" = "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

# a heartbeat each second: a killed SSE client is noticed (and its slot
# freed) within a second
start_natterd --streams-per-user 3 --streams-per-address 5 --sse-heartbeat 1
ALICE=$(register alice)
BOB=$(register bob)

# --- per user: 2 SSE + 1 WebSocket, then every transport is refused -----------
sse_open "$ALICE"
sse_open "$ALICE"
ws_open "$ALICE"
check "alice holds 2 SSE streams and a WebSocket" wait_conns sse 2
check "... and the WebSocket" wait_conns ws 1
api_get /events "$ALICE" -D "$WORK/hdr" --max-time 3
expect 429 too_many_streams "a 4th stream (SSE): 429 too_many_streams"
check "the refusal carries Retry-After" grep -qi '^Retry-After: [1-9]' "$WORK/hdr"
check "... and retry_after in its JSON" test "$(jget .retry_after)" -ge 1
api_get "/poll?timeout=1" "$ALICE" --max-time 3
expect 429 too_many_streams "a long-poll over the cap: 429"
set +e
"$WSCLIENT" --token "$ALICE" --timeout 3 "ws://127.0.0.1:$PORT/ws" >"$WORK/ws4.out" 2>"$WORK/ws4.err"
rc=$?
set -e
check "a WebSocket over the cap is refused before the upgrade (rc $rc: $(head -c 80 "$WORK/ws4.err"))" \
	test "$rc" = 2 -a "$(grep -c 429 "$WORK/ws4.err")" -ge 1
check "natter_streams_refused_total{cap=\"user\"} counts them" \
	test "$(metric 'natter_streams_refused_total{cap="user"}')" = 3

# --- another user is served; the address cap (5) ------------------------------------
api_get "/poll?timeout=1" "$BOB" --max-time 5
expect 200 "" "bob long-polls meanwhile (4th stream of the address)"
sse_open "$BOB"
sse_open "$BOB"
check "bob holds 2 SSE streams (5 from this address)" wait_conns sse 4
api_get "/poll?timeout=1" "$BOB" --max-time 3
expect 429 too_many_streams "a 6th stream from the address: 429"
check "natter_streams_refused_total{cap=\"address\"} counted" \
	test "$(metric 'natter_streams_refused_total{cap="address"}')" = 1
if curl -sf -o /dev/null --interface 127.0.0.2 "$BASE/healthz"; then
	api_get "/poll?timeout=1" "$BOB" --interface 127.0.0.2 --max-time 5
	expect 200 "" "another address is served"
fi

# --- slots come back when streams end ------------------------------------------------
kill_all
check "every stream closed" wait_conns sse 0
check "... the WebSocket too" wait_conns ws 0
sse_open "$ALICE"
sse_open "$ALICE"
ws_open "$ALICE"
check "alice opens 3 streams again once hers ended" wait_conns sse 2
check "... and the WebSocket" wait_conns ws 1
api_get "/poll?timeout=1" "$ALICE" --max-time 3
expect 429 too_many_streams "and is refused a 4th again"
kill_all
wait_conns sse 0 || true
wait_conns ws 0 || true
# long-polls release their slot when they answer: 5 in a row all succeed
okp=0
for _ in 1 2 3 4 5; do
	api_get "/poll?timeout=0" "$ALICE" --max-time 3
	[ "$STATUS" = 200 ] && okp=$((okp + 1))
done
check "finished long-polls hold no slot ($okp of 5 served)" test "$okp" = 5
# refused WebSocket handshakes (bad version) give their slot back
for _ in 1 2 3 4; do
	curl -s -o /dev/null -H "Authorization: Bearer $ALICE" -H 'Upgrade: websocket' \
		-H 'Connection: Upgrade' -H 'Sec-WebSocket-Version: 8' \
		-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$BASE/ws"
done
api_get "/poll?timeout=0" "$ALICE" --max-time 3
expect 200 "" "refused handshakes hold no slot"

kill_all
stop_natterd

# --- the server's cap holds exactly under a burst of handshakes -----------------------
# 60 connections opened first, then 60 WebSocket handshakes sent at once
# against max-connections 6: exactly 6 are upgraded, every other one hears
# 503 busy before the upgrade (a cap checked before the slot is counted
# lets several through together).
start_natterd --max-connections 6
CAROL=$(register carol)
python3 - "$PORT" "$CAROL" >"$WORK/burst.out" <<'PY'
import socket, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
req = ("GET /ws?token=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % token).encode()
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
for s in socks:
    s.sendall(req)
codes = {}
for s in socks:
    s.settimeout(5)
    try:
        line = s.recv(64).split(b"\r\n")[0].decode()
        code = line.split(" ")[1]
    except Exception:
        code = "none"
    codes[code] = codes.get(code, 0) + 1
time.sleep(0.5)
print(" ".join("%s=%d" % kv for kv in sorted(codes.items())))
for s in socks:
    s.close()
PY
check "exactly 6 of 60 racing handshakes upgraded ($(cat "$WORK/burst.out"))" \
	test "$(cat "$WORK/burst.out")" = "101=6 503=54"
check "their slots came back" wait_conns ws 0
api_get "/poll?timeout=0" "$CAROL" --max-time 3
expect 200 "" "a stream is served again once they ended"
stop_natterd
finish
