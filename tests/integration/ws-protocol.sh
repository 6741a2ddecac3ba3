#!/usr/bin/env bash
# ws-protocol.sh: WebSocket protocol errors against the real natterd, sent
# as raw bytes by tests/wsclient after a real handshake. Each must end with
# a close frame carrying 1002 (protocol error): a control frame over 125
# bytes, a fragmented control frame, a 1-byte close payload, a 64-bit
# length with the top bit set, a length not in its shortest form, reserved
# opcodes, RSV bits without an extension, an unmasked client frame, a stray
# continuation. A header announcing 2^40 bytes is closed with 1009 at once,
# long before the ping interval (60 s here) could end it. natterd serves
# on afterwards and holds no WebSocket connection.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd --ws-ping 60
WSBASE="ws://127.0.0.1:$PORT"
TOK=$(register proto)

# raw NAME HEX WANT: send HEX after the handshake; the close must be WANT.
raw() {
	local name=$1 hex=$2 want=$3 t0 t1
	t0=$(date +%s%N)
	"$WSCLIENT" --token "$TOK" --raw-send "$hex" --timeout 10 \
		"$WSBASE/ws" >"$WORK/out" 2>&1 || true
	t1=$(date +%s%N)
	local ms=$(((t1 - t0) / 1000000))
	if grep -q "^close $want\$" "$WORK/out" && [ "$ms" -lt 5000 ]; then
		ok "$name: close $want (${ms} ms)"
	else
		fail "$name: want close $want within 5 s, got $(grep '^close' "$WORK/out" || echo 'no close') after ${ms} ms"
		sed 's/^/    /' "$WORK/out" | head -n 5
	fi
}

M=01020304 # a mask key
raw "ping with a 126-byte payload" "89fe007e$M$(printf '00%.0s' $(seq 126))" 1002
raw "fragmented ping (no FIN)" "0980$M" 1002
raw "close with a 1-byte payload" "8881${M}55" 1002
raw "64-bit length with the top bit set" "81ff8000000000000001$M" 1002
raw "length not in its shortest form" "81fe0005${M}0000000000" 1002
raw "reserved data opcode 3" "8380$M" 1002
raw "reserved control opcode 0xb" "8b80$M" 1002
raw "RSV1 without an extension" "c180$M" 1002
raw "unmasked client frame" "81026869" 1002
raw "continuation with no message open" "8080$M" 1002
raw "a header announcing 2^40 bytes" "81ff0000010000000000$M" 1009

# A good client still gets its hello after all of it.
"$WSCLIENT" --token "$TOK" --timeout 3 "$WSBASE/ws" >"$WORK/good" 2>&1 || true
check "a well-behaved client still gets its hello" grep -q '"type":"hello"' "$WORK/good"
api GET /healthz
expect 200 "" "natterd still healthy"
sleep 0.5
api GET /metrics
check "no WebSocket connection left open" \
	bash -c "grep -Eq '^natter_connections\\{transport=\"ws\"\\} 0' <<<'$BODY'"
finish
