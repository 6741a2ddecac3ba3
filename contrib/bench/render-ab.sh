#!/usr/bin/env bash
# render-ab.sh: what rendering Markdown costs a durable send (issue 12).
# One natterd (SQLite, durable commits) per run; 100 WebSocket senders,
# one send in flight each, messages of --size bytes that are plain ('x'
# padding: the renderer's fast path) or formatted (--markdown: emphasis,
# code, a link and strikethrough, over and over: cmark-gfm's full parse and
# the sanitiser). Runs alternate plain, formatted, plain, ... so that both
# see the same machine; prints one JSON line per run and the ratios of the
# medians (server CPU per acknowledged send, and sends per second).
#   contrib/bench/render-ab.sh [build-dir] [rounds] [size]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-$top/build}
ROUNDS=${2:-3}
SIZE=${3:-300}
NATTERD=$B/src/natterd
BENCH=$B/contrib/bench/natter-bench
WORK=$(mktemp -d /tmp/natter-render-ab.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run() { # label extra-args...
	local label=$1 port
	shift
	rm -rf "$WORK/d" && mkdir -p "$WORK/d"
	port=$(free_port)
	"$NATTERD" --listen "127.0.0.1:$port" --db "$WORK/d/natter.db" --db-dir "$top/db" \
		--web-root "$top/web" --argon2-memory-kib 1024 --argon2-time 1 \
		--rate-commands 0 --rate-send 0 --rate-typing 0 --streams-per-user 0 \
		--streams-per-address 0 --connections-per-address 0 --log-level warn \
		>"$WORK/d/log" 2>&1 &
	PID=$!
	for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.05; done
	"$BENCH" --url "http://127.0.0.1:$port" --server-pid "$PID" --json --label "$label" \
		--subs 0 --rooms 100 --pubs 100 --publish-via ws --window 1 \
		--messages 8000 --size "$SIZE" --timeout 120 "$@" 2>/dev/null | tail -n1 |
		jq -c --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
			'{label: .label, acked, sends_per_s, server_cpu_s, us_per_send: (if .acked > 0 then (.server_cpu_s * 1e6 / .acked) else null end), load1: ($load | tonumber)}' |
		tee -a "$WORK/runs"
	kill "$PID"
	wait "$PID" 2>/dev/null || true
	PID=
}
for _ in $(seq 1 "$ROUNDS"); do
	run plain
	run markdown --markdown
done
jq -s -c 'def med: sort | .[length / 2 | floor];
	(map(select(.label == "plain")) | {us: (map(.us_per_send) | med), sps: (map(.sends_per_s) | med)}) as $p |
	(map(select(.label == "markdown")) | {us: (map(.us_per_send) | med), sps: (map(.sends_per_s) | med)}) as $m |
	{size: '"$SIZE"', rounds: '"$ROUNDS"', plain_us_per_send: $p.us, markdown_us_per_send: $m.us,
	 cpu_ratio: ($m.us / $p.us), plain_sends_per_s: $p.sps, markdown_sends_per_s: $m.sps,
	 sends_ratio: ($m.sps / $p.sps)}' "$WORK/runs"
