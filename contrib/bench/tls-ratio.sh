#!/usr/bin/env bash
# contrib/bench/tls-ratio.sh: what TLS costs natterd, as two ratios measured
# in one run on this machine:
#  1. HTTP requests per second over HTTPS against plain HTTP, keep-alive
#     (wrk on GET /healthz);
#  2. WebSocket fan-out deliveries per second of natterd CPU time over wss://
#     against ws://: K receivers in one room, one sender (always plain ws://,
#     so its cost is the same on both sides) sends M messages; deliveries are
#     K * M, CPU is natterd's utime + stime over the sending phase.
# Each side runs ROUNDS times in turn on a fresh natterd; each round gives
# its ratios, and the summary is their median.
#
#   contrib/bench/tls-ratio.sh          # K=100 M=3000 ROUNDS=3 WRK_SECONDS=6
#
# Environment: NATTERD, WSCLIENT (tests/wsclient, built by make check),
# NATTER_DB_DIR, NATTER_WEB_ROOT (default: the in-tree build), K, M, ROUNDS,
# WRK_SECONDS, WRK_CONNECTIONS.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NATTERD=${NATTERD:-$TOP/src/natterd}
WSCLIENT=${WSCLIENT:-$TOP/tests/wsclient}
DB_DIR=${NATTER_DB_DIR:-$TOP/db}
WEB_ROOT=${NATTER_WEB_ROOT:-$TOP/web}
K=${K:-100}
M=${M:-3000}
ROUNDS=${ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-6}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-50}
HZ=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/natter-tls-ratio.XXXXXX)
PID=

cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk jq curl; do
	command -v "$tool" >/dev/null || { echo "tls-ratio: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$WSCLIENT" ] || { echo "tls-ratio: build $WSCLIENT first (make check)" >&2; exit 1; }

# Two free ports (natterd logs its ports at info level, which would also
# log every request and slow the benchmark down).
free_ports() {
	python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])'
}

# Fresh natterd with a plain and a TLS listener; sets PID, PORT, TPORT, CA.
start() {
	rm -rf "$WORK/db" && mkdir "$WORK/db"
	read -r PORT TPORT < <(free_ports)
	"$NATTERD" --listen "127.0.0.1:$PORT" --tls-listen "127.0.0.1:$TPORT" \
		--tls-self-signed --db "$WORK/db/natter.db" --db-dir "$DB_DIR" \
		--web-root "$WEB_ROOT" --argon2-memory-kib 1024 --argon2-time 1 \
		--log-level warn --log-file "$WORK/db/log" --send-queue-max 16M &
	PID=$!
	CA="$WORK/db/natter-selfsigned-cert.pem"
	for _ in $(seq 1 100); do
		curl -s -o /dev/null --cacert "$CA" "https://127.0.0.1:$TPORT/healthz" && return 0
		sleep 0.05
	done
	echo "tls-ratio: natterd did not start" >&2
	cat "$WORK/db/log" >&2
	exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }

# wrk against URL: "requests/s requests-per-natterd-CPU-second". wrk runs on
# the same machine, so on few cores its own TLS work holds the first back.
rps() {
	local c0 c1 out
	c0=$(cpu_ticks)
	out=$(wrk -t2 -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" "$1")
	c1=$(cpu_ticks)
	awk -v c=$((c1 - c0)) -v hz="$HZ" '/^Requests\/sec/ { r = $2 }
		/requests in/ { n = $1 }
		END { printf "%.0f %.0f\n", r, n / (c / hz) }' <<<"$out"
}

register() {
	curl -s -H 'Content-Type: application/json' \
		-d "{\"username\":\"$1\",\"password\":\"correct horse\"}" \
		"http://127.0.0.1:$PORT/api/register" | jq -r .token
}

# fanout ws|wss: deliveries per natterd CPU second, and wall seconds.
fanout() {
	local scheme=$1 port tls=()
	start
	[ "$scheme" = wss ] && { port=$TPORT; tls=(--tls "$CA"); } || port=$PORT
	local s r
	s=$(register sender)
	r=$(register receiver)
	curl -s -o /dev/null -H "Authorization: Bearer $s" -H 'Content-Type: application/json' \
		-d '{"name":"bench"}' "http://127.0.0.1:$PORT/api/rooms"
	curl -s -o /dev/null -H "Authorization: Bearer $r" -H 'Content-Type: application/json' \
		-d '{}' "http://127.0.0.1:$PORT/api/rooms/bench/join"
	: >"$WORK/send"
	for i in $(seq 1 "$M"); do
		echo "{\"op\":\"send\",\"room\":\"bench\",\"text\":\"message $i of the fan-out benchmark\",\"client_id\":\"b$i\"}" >>"$WORK/send"
	done
	local pids=()
	for i in $(seq 1 "$K"); do
		"$WSCLIENT" "${tls[@]}" --token "$r" --count "$M" --timeout 300 \
			"$scheme://127.0.0.1:$port/ws" >"$WORK/recv.$i" 2>&1 &
		pids+=($!)
	done
	# Every receiver has its hello: all are subscribed.
	for _ in $(seq 1 600); do
		[ "$(cat "$WORK"/recv.* | grep -c '"type":"hello"')" -ge "$K" ] && break
		sleep 0.1
	done
	local c0 t0 c1 t1 bad=0
	c0=$(cpu_ticks)
	t0=$(date +%s%N)
	"$WSCLIENT" --token "$s" --send-file "$WORK/send" --timeout 300 \
		"ws://127.0.0.1:$PORT/ws" >/dev/null 2>&1 &
	local sender=$!
	for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
	c1=$(cpu_ticks)
	t1=$(date +%s%N)
	kill "$sender" 2>/dev/null || true
	wait "$sender" 2>/dev/null || true
	stop
	[ "$bad" -eq 0 ] || echo "tls-ratio: $bad $scheme receivers did not get all $M messages" >&2
	awk -v d=$((K * M)) -v c=$((c1 - c0)) -v hz="$HZ" -v ns=$((t1 - t0)) \
		'BEGIN { printf "%.0f %.2f %.2f\n", d / (c / hz), c / hz, ns / 1e9 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "natterd: $NATTERD; $(nproc) CPUs; K=$K receivers, M=$M messages, $ROUNDS rounds"
: >"$WORK/ratios"
for round in $(seq 1 "$ROUNDS"); do
	start
	h=$(rps "http://127.0.0.1:$PORT/healthz")
	hs=$(rps "https://127.0.0.1:$TPORT/healthz")
	stop
	w=$(fanout ws)
	ws=$(fanout wss)
	echo "round $round: http $h, https $hs (req/s, req per CPU-s);" \
		"ws $w, wss $ws (deliveries per CPU-s, CPU s, wall s)"
	awk -v h="$h" -v hs="$hs" -v w="$w" -v ws="$ws" 'BEGIN {
		split(h, a, " "); split(hs, b, " "); split(w, c, " "); split(ws, d, " ")
		printf "%.3f %.3f %.3f\n", b[1] / a[1], b[2] / a[2], d[1] / c[1]
	}' >>"$WORK/ratios"
done
R1=$(cut -d' ' -f1 "$WORK/ratios" | median)
R2=$(cut -d' ' -f2 "$WORK/ratios" | median)
R3=$(cut -d' ' -f3 "$WORK/ratios" | median)
awk -v r1="$R1" -v r2="$R2" -v r3="$R3" 'BEGIN {
	printf "HTTPS/HTTP keep-alive requests/s (median of rounds): %.0f%%\n", 100 * r1
	printf "HTTPS/HTTP requests per natterd CPU-second: %.0f%%\n", 100 * r2
	printf "wss/ws fan-out deliveries per natterd CPU-second: %.0f%%\n", 100 * r3
}'
