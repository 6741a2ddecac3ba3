#!/usr/bin/env bash
# cli.sh: natterd's command line, start-up checks and signals: --help and
# --version, invalid values named at start-up, flags over the config file,
# a database from a newer schema refused, SIGHUP reopening the log file,
# SIGTERM exiting 0.
. "$(dirname "$0")/lib.sh"

"$NATTERD" --help >"$WORK/help" 2>&1 && rc=0 || rc=$?
check "--help exits 0 and documents --listen" bash -c "[ $rc = 0 ] && grep -q -- '--listen' '$WORK/help'"
"$NATTERD" --version >"$WORK/version" 2>&1 && rc=0 || rc=$?
check "--version exits 0 and names natterd" bash -c "[ $rc = 0 ] && grep -q '^natterd ' '$WORK/version'"

refuse() { # refuse WHAT EXPECTED-TEXT ARGS...: natterd must exit 1 naming the problem
	local what=$1 text=$2
	shift 2
	"$NATTERD" --db "$WORK/never.db" --db-dir "$NATTER_DB_DIR" --web-root "$NATTER_WEB_ROOT" "$@" \
		>"$WORK/refuse" 2>&1 && rc=0 || rc=$?
	check "$what" bash -c "[ $rc = 1 ] && grep -q -- '$text' '$WORK/refuse'"
}
refuse "an invalid --log-level is refused, naming the key" "log-level" --log-level loud
refuse "a --listen without a port is refused, naming the key" "listen" --listen 127.0.0.1
refuse "an unknown flag is refused" "--frobnicate" --frobnicate 1
refuse "poll-timeout above poll-timeout-max is refused" "poll-timeout" --poll-timeout 60 --poll-timeout-max 30
printf 'listen = 127.0.0.1:0\nlog-level = loud\n' >"$WORK/bad.conf"
refuse "a bad config file value is refused with file:line" "bad.conf:2" --config "$WORK/bad.conf"
printf 'color = blue\n' >"$WORK/unknown.conf"
refuse "an unknown config key is refused" "color" --config "$WORK/unknown.conf"
refuse "a missing web root is refused" "web-root" --listen 127.0.0.1:0 --web-root "$WORK/nowhere"

# Flags win over the file: the file says port 1, the flag (from
# start_natterd) says 0, any free port.
printf 'listen = 127.0.0.1:1\nsse-heartbeat = 5\n' >"$WORK/good.conf"
start_natterd --config "$WORK/good.conf" --log-file "$WORK/natterd.log"
api GET /healthz
expect 200 "" "starts with a config file and a log file"
check "the --listen flag wins over the file's listen" test "$PORT" != 1

# SIGHUP reopens the log file (as after logrotate moved it).
mv "$WORK/natterd.log" "$WORK/natterd.log.1"
kill -HUP "$NATTERD_PID"
sleep 0.3
api GET /healthz
sleep 0.2
check "after SIGHUP, new lines go to a new log file" grep -q 'path=/healthz' "$WORK/natterd.log"
check "the rotated file keeps the old lines" grep -q 'natterd started' "$WORK/natterd.log.1"
stop_natterd && ok "SIGTERM exits 0"
check "the log says it stopped" grep -q 'natterd stopped' "$WORK/natterd.log"

# A database from a newer schema is refused with a clear message.
V=$(sqlite3 "$WORK/natter.db" 'PRAGMA user_version')
sqlite3 "$WORK/natter.db" 'PRAGMA user_version = 99'
refuse "a database from a newer schema is refused" "newer than this natterd" --listen 127.0.0.1:0 --db "$WORK/natter.db"
sqlite3 "$WORK/natter.db" "PRAGMA user_version = $V"

# The connection cap: one stream allowed, the second gets 503 + Retry-After.
# (An idle SSE stream is suspended; natterd notices a vanished client at
# its next heartbeat, so the test uses a 1 s heartbeat.)
start_natterd --max-connections 1 --sse-heartbeat 1
TOKEN=$(register capped)
curl -sN -H "Authorization: Bearer $TOKEN" "$BASE/events" >/dev/null &
STREAM=$!
sleep 0.5
api GET /poll -H "Authorization: Bearer $TOKEN" -D "$WORK/cap.headers"
expect 503 "" "a stream beyond --max-connections is refused with 503"
check "the 503 carries Retry-After" grep -qi '^retry-after: [0-9]' "$WORK/cap.headers"
api GET /metrics
check "refusals are counted in /metrics" grep -q '^natter_rejected_busy_total 1$' <<<"$BODY"
kill "$STREAM" 2>/dev/null || true
wait "$STREAM" 2>/dev/null || true
sleep 2.5
api GET "/poll?timeout=0" -H "Authorization: Bearer $TOKEN"
expect 200 "" "once the stream is gone a new one is accepted"

finish
