#!/usr/bin/env bash
# contrib/bench/burst.sh: memory stays bounded when a burst meets readers
# that stopped reading (issue 5). natterd runs with send-queue-max 64 KiB;
# STALLED WebSocket clients (tests/wsclient with a 4 KiB receive buffer)
# stop reading after the handshake; READERS normal clients read everything;
# then MESSAGES messages of ~4 KB are posted to the room as fast as 8
# parallel senders go. Offered to every stalled reader: MESSAGES x ~4 KB;
# what natterd may hold for it: at most send-queue-max, then it is cut
# loose (1008). Prints one JSON line:
#   {"label":"burst-stalled", "peak_growth_kib", "bound_kib", "offered_kib",
#    "cut_loose", "stalled", "readers_complete", "readers", ...}
# and exits 1 if growth exceeds the bound, a reader missed a message, or a
# stalled reader was not cut loose.
#
#   contrib/bench/burst.sh [STALLED [READERS [MESSAGES]]]
#
# Environment as for contrib/bench/run, plus WSCLIENT (default: the in-tree
# tests/wsclient; `make -C build tests/wsclient` builds it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NATTERD=${NATTERD:-$TOP/src/natterd}
WSCLIENT=${WSCLIENT:-$TOP/tests/wsclient}
DB_DIR=${NATTER_DB_DIR:-$TOP/db}
WEB_ROOT=${NATTER_WEB_ROOT:-$TOP/web}
STALLED=${1:-500}
READERS=${2:-20}
MESSAGES=${3:-500}
QUEUE=65536

[ -x "$NATTERD" ] || { echo "burst: no natterd at $NATTERD" >&2; exit 2; }
[ -x "$WSCLIENT" ] || { echo "burst: no wsclient at $WSCLIENT" >&2; exit 2; }

WORK=$(mktemp -d /tmp/natter-burst.XXXXXX)
SPID=
cleanup() {
	jobs -p | xargs -r kill 2>/dev/null || true
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NATTERD" --listen "127.0.0.1:$PORT" --db "$WORK/natter.db" --db-dir "$DB_DIR" \
	--web-root "$WEB_ROOT" --argon2-memory-kib 1024 --argon2-time 1 \
	--send-queue-max "$QUEUE" --log-level warn >"$WORK/log" 2>&1 &
SPID=$!
B="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$B/healthz" >/dev/null && break; sleep 0.1; done

register() {
	curl -sSf -H 'Content-Type: application/json' \
		-d "{\"username\":\"$1\",\"password\":\"burst-password\"}" "$B/api/register" | jq -r .token
}
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$SPID/status"; }
metric() { curl -sf "$B/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

SENDER=$(register sender)
STALL=$(register stalled)
READ=$(register reader)
LAST=$(curl -sSf -H "Authorization: Bearer $SENDER" "$B/api/rooms/lobby/messages?limit=1" | jq '.events[-1].id // 0')

for i in $(seq 1 "$READERS"); do
	"$WSCLIENT" --token "$READ" --since "$LAST" --count "$MESSAGES" --timeout 300 \
		"ws://127.0.0.1:$PORT/ws" >"$WORK/reader.$i" 2>/dev/null &
done
for i in $(seq 1 "$STALLED"); do
	"$WSCLIENT" --token "$STALL" --rcvbuf 4096 --stall 600 --timeout 700 \
		"ws://127.0.0.1:$PORT/ws" >/dev/null 2>&1 &
done
want=$((READERS + STALLED))
for _ in $(seq 1 300); do
	[ "$(metric 'natter_connections{transport="ws"}')" = "$want" ] && break
	sleep 0.2
done
sleep 1
BEFORE=$(kib VmRSS)

TEXT=$(head -c 3900 /dev/zero | tr '\0' m)
seq 1 "$MESSAGES" | xargs -P 8 -I{} curl -sSf -o /dev/null \
	-H "Authorization: Bearer $SENDER" -H 'Content-Type: application/json' \
	-d "{\"text\":\"{} $TEXT\"}" "$B/api/rooms/lobby/messages"

# Readers finish; stalled ones are cut loose once their queue is full.
for _ in $(seq 1 600); do
	done_readers=0
	for i in $(seq 1 "$READERS"); do
		[ "$(grep -c '"type":"message"' "$WORK/reader.$i" 2>/dev/null || true)" -ge "$MESSAGES" ] &&
			done_readers=$((done_readers + 1))
	done
	cut=$(metric 'natter_slow_consumer_disconnects_total{transport="ws"}')
	[ "$done_readers" = "$READERS" ] && [ "${cut:-0}" -ge "$STALLED" ] && break
	sleep 0.5
done
PEAK=$(kib VmHWM)
GROWTH=$((PEAK - BEFORE))
# What the queues may hold (send-queue-max each) plus 32 MiB for the burst's
# own working set (requests, events in the ring, malloc slack).
BOUND=$(( (STALLED + READERS) * QUEUE / 1024 + 32768 ))
OFFERED=$(( STALLED * MESSAGES * 4 ))
ok=true
{ [ "$GROWTH" -le "$BOUND" ] && [ "$done_readers" = "$READERS" ] && [ "${cut:-0}" -ge "$STALLED" ]; } || ok=false
jq -nc --argjson g "$GROWTH" --argjson b "$BOUND" --argjson o "$OFFERED" \
	--argjson cut "${cut:-0}" --argjson s "$STALLED" --argjson rc "$done_readers" \
	--argjson r "$READERS" --argjson m "$MESSAGES" --argjson before "$BEFORE" \
	--argjson peak "$PEAK" --argjson q "$QUEUE" --argjson ok "$ok" \
	'{label:"burst-stalled", server:"natter", peak_growth_kib:$g, bound_kib:$b,
	  offered_kib:$o, cut_loose:$cut, stalled:$s, readers_complete:$rc, readers:$r,
	  messages:$m, rss_before_kib:$before, peak_rss_kib:$peak, send_queue_max:$q, ok:$ok}'
$ok
