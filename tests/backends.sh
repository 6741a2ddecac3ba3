# backends.sh: PostgreSQL and Redis for natter's tests, started from Debian's
# packages by the test itself and stopped when it exits. Sourced by the
# PostgreSQL store contract run (tests/unit/test_store_pg.sh) and the
# cluster test (tests/integration/cluster.sh).
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
