#!/usr/bin/env bash
# cluster.sh: natter's cluster mode measured on this machine. For 1, 2 and
# 3 natterd nodes on one PostgreSQL (started here, tests/backends.sh) behind
# haproxy round robin, and for one node on SQLite:
#   durable: 100 WebSocket senders, one send in flight each (sends/s);
#   fanout:  1,000 WebSocket subscribers in one room, 4 publishers
#            (deliveries per natterd CPU-second, all nodes' CPU summed;
#            PostgreSQL's own CPU is not in it: it is reported apart);
#   paced:   the same 1,000 subscribers, 100 msg/s from 4 HTTP
#            publishers, one in flight each (latency p50/p99: what the
#            PostgreSQL path adds to a chat-like message).
# Prints one JSON line per run and appends them to $OUT
# (contrib/bench/CLUSTER.jsonl). Nodes share the machine's cores, so compare
# per-CPU-second figures, not absolute rates.
#   contrib/bench/cluster.sh [build-dir]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-$top/build}
NATTERD=$B/src/natterd
BENCH=$B/contrib/bench/natter-bench
OUT=${OUT:-$top/contrib/bench/CLUSTER.jsonl}
MSG_DURABLE=${MSG_DURABLE:-40}  # per sender
MSG_FANOUT=${MSG_FANOUT:-300}
MSG_PACED=${MSG_PACED:-1000}    # at 100 msg/s
. "$top/tests/backends.sh"
backends_need
WORK=$(mktemp -d /tmp/natter-cluster-bench.XXXXXX)
PIDS=() HAPROXY_PID=
stop_nodes() {
	for p in "${PIDS[@]}" $HAPROXY_PID; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}" $HAPROXY_PID; do wait "$p" 2>/dev/null || true; done
	PIDS=() HAPROXY_PID=
}
trap 'stop_nodes; backends_stop; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

node() { # log, store args... -> PORT (not in a subshell: PIDS must stay)
	local log=$1 port
	shift
	"$NATTERD" --listen 127.0.0.1:0 "$@" --db-dir "$top/db" --web-root "$top/web" \
		--argon2-memory-kib 1024 --argon2-time 1 --log-level info \
		--rate-commands 0 --rate-send 0 --streams-per-user 0 --streams-per-address 0 --connections-per-address 0 \
		--register-burst 100000 >"$log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 200); do
		port=$(sed -n 's/.*listening.* port=\([0-9]*\).*/\1/p' "$log" | tail -n1)
		[ -n "$port" ] && [ "$port" != 0 ] && break
		sleep 0.05
	done
	PORT=$port
}

pg_cpu() { # PostgreSQL's CPU seconds so far (all its processes)
	local t=0 p
	for p in $(pgrep -u nobody postgres 2>/dev/null || pgrep postgres); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "scale=2; $t / $(getconf CLK_TCK)" | bc
}

run() { # label nodes(0: sqlite) bench-args...
	local label=$1 n=$2 ports=() url cpu0 cpu1 line
	shift 2
	if [ "$n" = 0 ]; then
		node "$WORK/sqlite.log" --db "$WORK/bench.db"
		ports+=("$PORT")
		url="http://127.0.0.1:${ports[0]}"
	else
		psql -q "$PG_URL" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' 2>/dev/null
		for i in $(seq 1 "$n"); do
			node "$WORK/node$i.log" --store "$PG_URL"
			ports+=("$PORT")
		done
	fi
	if [ "$n" = 1 ]; then
		# one node needs no balancer: the figures compare the store
		# path with SQLite's, not haproxy's tunnel (before 2026-12-01
		# the 1-node runs went through haproxy too)
		url="http://127.0.0.1:${ports[0]}"
	elif [ "$n" -gt 1 ]; then
		local lb
		lb=$(free_port)
		{
			printf 'defaults\n\tmode http\n\ttimeout connect 2s\n\ttimeout client 300s\n\ttimeout server 300s\n\ttimeout tunnel 300s\n'
			printf 'frontend f\n\tbind 127.0.0.1:%s\n\tdefault_backend b\nbackend b\n\tbalance roundrobin\n' "$lb"
			for i in "${!ports[@]}"; do printf '\tserver n%s 127.0.0.1:%s\n' "$i" "${ports[$i]}"; done
		} >"$WORK/haproxy.cfg"
		haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
		HAPROXY_PID=$!
		sleep 0.3
		url="http://127.0.0.1:$lb"
	fi
	cpu0=$( [ "$n" = 0 ] && echo 0 || pg_cpu)
	line=$(nice "$BENCH" --url "$url" --server-pid "$(IFS=,; echo "${PIDS[*]}")" \
		--label "$label" --json "$@" 2>"$WORK/err" | tail -n1) || true
	cpu1=$( [ "$n" = 0 ] && echo 0 || pg_cpu)
	if [ -n "$line" ] && jq -e . >/dev/null 2>&1 <<<"$line"; then
		line=$(jq -c --argjson nodes "$n" --arg pg "$(echo "$cpu1 - $cpu0" | bc)" \
			'{label: .label, nodes: $nodes, sends_per_s, deliveries_per_s, deliveries_per_cpu_s, server_cpu_s, postgres_cpu_s: ($pg|tonumber), p50_ms, p99_ms, lost, dup, reordered}' <<<"$line")
	else
		line="{\"label\":\"$label\",\"nodes\":$n,\"failed\":\"$(tail -n1 "$WORK/err" | tr -d '"')\"}"
	fi
	echo "$line" | tee -a "$OUT"
	stop_nodes
}

pg_start
for n in ${NODES:-0 1 2 3}; do
	run durable "$n" --subs 0 --rooms 100 --pubs 100 --publish-via ws --window 1 \
		--messages $((MSG_DURABLE * 100)) --timeout 120
	run fanout-1k "$n" --subs 1000 --pubs 4 --messages "$MSG_FANOUT" --procs 1 \
		--drain 30 --timeout 120
	# chat-like: what the PostgreSQL path adds to a message's latency
	run paced-1k-100 "$n" --subs 1000 --pubs 4 --messages "$MSG_PACED" --rate 100 \
		--procs 2 --drain 30 --timeout 60 --publish-via http --window 1
done
