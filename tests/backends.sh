# backends.sh: PostgreSQL and Redis for natter's tests, started from Debian's
# packages by the test itself and stopped when it exits, and the natterd
# nodes and haproxy of the cluster tests. Sourced by the PostgreSQL store
# contract run (tests/unit/store_pg.sh), the cluster tests
# (tests/integration/cluster.sh, cluster-redis.sh) and the browser suite
# against a cluster (tests/e2e/cluster.sh).
#
#   backends_need          skip (77) when postgresql-15 or redis-server is
#                          missing; fail instead when NATTER_REQUIRE_ROOT_TESTS=1
#                          or CI is set, so CI never skips silently
#   pg_start               initdb + pg_ctl on a free loopback port, the unix
#                          socket in its own directory; as `nobody` (a data
#                          directory it owns) when run as root, since
#                          PostgreSQL refuses to run as root. Sets PG_URL,
#                          PG_PORT, PG_DATA.
#   pg_stop / pg_restart   pg_ctl stop -m fast / stop then start again
#   redis_start            redis-server on a free loopback port, no
#                          persistence (--save ''). Sets REDIS_URL, REDIS_PORT.
#   redis_stop
#   backends_stop          both (run from the EXIT trap)
#   node_start I STORE BUS DIR [ARGS...]
#                          natterd node I in the background on
#                          127.0.0.1:${NODE_PORT[I]:-0} with --store STORE,
#                          --bus BUS (none when BUS is empty), the tests'
#                          limits off (rate limits, streams per user and
#                          address), fast Argon2, --files-dir DIR/files, then
#                          ARGS; logs to DIR/nodeI.log. Waits for the port it
#                          logs: sets NODE_PID[I], NODE_PORT[I]; on failure
#                          prints the log to stderr and returns 1
#   haproxy_start DIR PORT...
#                          haproxy (DIR/haproxy.cfg, log DIR/haproxy.log) on a
#                          free loopback port: HTTP mode, round robin over
#                          127.0.0.1:PORT..., no stickiness, health checks on
#                          /healthz every 300 ms, tunnel timeouts of 120 s
#                          (WebSocket, SSE, long-poll). Sets LB_PORT,
#                          HAPROXY_PID; the caller waits for it to answer
# shellcheck shell=bash

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_URL= PG_PORT= PG_DATA= PG_RUN= PG_AS=()
REDIS_URL= REDIS_PORT= REDIS_PID= REDIS_DIR=

backends_skip() {
	if [ "${NATTER_REQUIRE_ROOT_TESTS:-0}" = 1 ] || [ -n "${CI:-}" ]; then
		echo "FAIL: $1 (NATTER_REQUIRE_ROOT_TESTS=1 or CI: not skipping)" >&2
		exit 1
	fi
	echo "$1: skipped"
	exit 77
}

backends_need() {
	[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] ||
		backends_skip "PostgreSQL 15 not installed ($PG_BIN; apt-get install postgresql)"
	command -v redis-server >/dev/null 2>&1 ||
		backends_skip "redis-server not installed (apt-get install redis-server)"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
	PG_RUN=$(mktemp -d /tmp/natter-pg.XXXXXX)
	PG_DATA=$PG_RUN/data
	PG_PORT=$(free_port)
	PG_AS=()
	if [ "$(id -u)" = 0 ]; then
		chown nobody: "$PG_RUN"
		chmod 0700 "$PG_RUN"
		PG_AS=(runuser -u nobody --)
	fi
	"${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U natter -A trust \
		-E UTF8 --locale=C.UTF-8 >"$PG_RUN/initdb.log" 2>&1 ||
		{ cat "$PG_RUN/initdb.log" >&2; return 1; }
	pg_launch
	"${PG_AS[@]}" "$PG_BIN/createdb" -h "$PG_RUN" -p "$PG_PORT" -U natter natter ||
		return 1
	PG_URL="postgresql://natter@127.0.0.1:$PG_PORT/natter"
	export PG_URL
}

pg_launch() {
	"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t 30 -l "$PG_RUN/pg.log" \
		-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_RUN -c fsync=on -c max_connections=200" \
		start >/dev/null || { cat "$PG_RUN/pg.log" >&2; return 1; }
}

pg_stop() {
	[ -n "$PG_DATA" ] && [ -d "$PG_DATA" ] || return 0
	"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
}

pg_restart() {
	pg_stop
	pg_launch
}

redis_start() {
	REDIS_DIR=$(mktemp -d /tmp/natter-redis.XXXXXX)
	REDIS_PORT=$(free_port)
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
		--appendonly no --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
		--daemonize no &
	REDIS_PID=$!
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
		sleep 0.05
	done
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
	export REDIS_URL
}

redis_stop() {
	[ -n "$REDIS_PID" ] || return 0
	kill -TERM "$REDIS_PID" 2>/dev/null || true
	wait "$REDIS_PID" 2>/dev/null || true
	REDIS_PID=
}

backends_stop() {
	redis_stop
	pg_stop
	[ -n "$PG_RUN" ] && rm -rf "$PG_RUN"
	[ -n "$REDIS_DIR" ] && rm -rf "$REDIS_DIR"
	return 0
}

node_start() { # index store bus dir [args...]
	local i=$1 store=$2 bus=$3 dir=$4 log=$4/node$1.log port _
	shift 4
	local busarg=() from=0
	[ -n "$bus" ] && busarg=(--bus "$bus")
	# a restart appends to the log: only this run's lines count
	[ -f "$log" ] && from=$(wc -l <"$log")
	"$NATTERD" --listen "127.0.0.1:${NODE_PORT[i]:-0}" --store "$store" "${busarg[@]}" \
		--db-dir "$NATTER_DB_DIR" --web-root "$NATTER_WEB_ROOT" \
		--argon2-memory-kib 1024 --argon2-time 1 \
		--rate-commands 0 --rate-send 0 --rate-typing 0 \
		--streams-per-user 0 --streams-per-address 0 \
		--files-dir "$dir/files" "$@" >>"$log" 2>&1 &
	NODE_PID[i]=$!
	port=
	for _ in $(seq 1 200); do
		port=$(tail -n +$((from + 1)) "$log" |
			sed -n 's/.*listening.* port=\([0-9]*\).*/\1/p' | tail -n1)
		[ -n "$port" ] && [ "$port" != 0 ] && break
		if ! kill -0 "${NODE_PID[i]}" 2>/dev/null; then
			cat "$log" >&2
			echo "node $i exited at start-up" >&2
			return 1
		fi
		sleep 0.05
	done
	if [ -z "$port" ] || [ "$port" = 0 ]; then
		echo "node $i did not report its port" >&2
		return 1
	fi
	NODE_PORT[i]=$port
}

haproxy_start() { # dir port...
	local dir=$1 p n=0
	shift
	LB_PORT=$(free_port)
	{
		cat <<CFG
global
	maxconn 2000
defaults
	mode http
	timeout connect 2s
	timeout client 120s
	timeout server 120s
	timeout tunnel 120s
	retries 3
	option redispatch
frontend natter
	bind 127.0.0.1:$LB_PORT
	default_backend nodes
backend nodes
	balance roundrobin
	option httpchk GET /healthz
	default-server inter 300ms fall 1 rise 2
CFG
		for p in "$@"; do
			n=$((n + 1))
			printf '\tserver n%d 127.0.0.1:%s check\n' "$n" "$p"
		done
	} >"$dir/haproxy.cfg"
	haproxy -f "$dir/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
	# shellcheck disable=SC2034 # the caller stops it
	HAPROXY_PID=$!
}
