# lib.sh: shared helpers for natter's integration tests. Each test sources
# it, calls start_natterd, and drives the real binary over real sockets.
# Everything a test writes stays under $NATTER_TEST_TMP (in the build tree).
# shellcheck shell=bash
set -euo pipefail

: "${NATTERD:?NATTERD must point at the natterd binary}"
: "${NATTER_DB_DIR:?NATTER_DB_DIR must point at db/}"
: "${NATTER_WEB_ROOT:?NATTER_WEB_ROOT must point at web/}"
: "${NATTER_TEST_TMP:=/tmp/natter-tests}"
mkdir -p "$NATTER_TEST_TMP"
TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "$NATTER_TEST_TMP/$TEST_NAME.XXXXXX")
PASSED=0
FAILED=0
NATTERD_PID=
PORT=
BASE=

cleanup() {
	stop_natterd || true
	[ "$FAILED" -eq 0 ] && [ -z "${KEEP_WORK:-}" ] && rm -rf "$WORK"
	return 0
}
trap cleanup EXIT

# Start natterd on a free port (port 0, read back from its log). Extra
# arguments are passed on (and win over these). The database persists in
# $WORK across restarts. Per-user rate limits, stream caps and the
# per-address connection cap are off: tests that drive load from one user
# or one address would meet them; rate-limits.sh, stream-caps.sh and
# conn-caps.sh set their own. NATTER_TEST_FLAGS (split on spaces) go
# before the arguments, e.g. --no-io-uring to run a test on the fallback.
start_natterd() {
	: >"$WORK/natterd.log"
	# shellcheck disable=SC2086 # NATTER_TEST_FLAGS: words on purpose
	"$NATTERD" --listen 127.0.0.1:0 --db "$WORK/natter.db" \
		--db-dir "$NATTER_DB_DIR" --web-root "$NATTER_WEB_ROOT" \
		--argon2-memory-kib 1024 --argon2-time 1 --log-level debug \
		--rate-commands 0 --rate-send 0 --rate-typing 0 \
		--streams-per-user 0 --streams-per-address 0 \
		--connections-per-address 0 \
		${NATTER_TEST_FLAGS:-} "$@" >>"$WORK/natterd.log" 2>&1 &
	NATTERD_PID=$!
	for _ in $(seq 1 100); do
		PORT=$(sed -n 's/.*listening.* port=\([0-9]*\).*/\1/p' "$WORK/natterd.log" | head -n1)
		[ -n "$PORT" ] && [ "$PORT" != 0 ] && break
		kill -0 "$NATTERD_PID" 2>/dev/null || { cat "$WORK/natterd.log"; fail_now "natterd exited at start-up"; }
		sleep 0.05
	done
	[ -n "$PORT" ] || fail_now "natterd did not report its port"
	BASE="http://127.0.0.1:$PORT"
}

# SIGTERM and wait; asserts a clean exit 0 within 10 s.
stop_natterd() {
	[ -n "$NATTERD_PID" ] || return 0
	kill -TERM "$NATTERD_PID" 2>/dev/null || true
	local rc=0
	for _ in $(seq 1 100); do
		kill -0 "$NATTERD_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$NATTERD_PID" 2>/dev/null; then
		kill -KILL "$NATTERD_PID"
		NATTERD_PID=
		fail "natterd did not exit within 10 s of SIGTERM"
		return 1
	fi
	wait "$NATTERD_PID" || rc=$?
	NATTERD_PID=
	[ "$rc" -eq 0 ] || fail "natterd exited with status $rc after SIGTERM"
}

ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
fail_now() { fail "$*"; finish; }

# Print the summary line and exit (non-zero on any failure).
finish() {
	echo "$TEST_NAME: $PASSED passed, $FAILED failed"
	if [ "$FAILED" -ne 0 ]; then
		echo "--- natterd log (tail) ---"
		tail -n 40 "$WORK/natterd.log" 2>/dev/null || true
		exit 1
	fi
	exit 0
}

# api METHOD PATH [curl args...]: sets STATUS and BODY.
api() {
	local method=$1 path=$2
	shift 2
	local out
	out=$(curl -sS -o "$WORK/body" -w '%{http_code}' -X "$method" "$@" "$BASE$path") || out=000
	STATUS=$out
	BODY=$(cat "$WORK/body" 2>/dev/null || true)
}

# JSON POST/PATCH helpers with a bearer token ("" for none).
api_json() {
	local method=$1 path=$2 token=$3 json=$4
	shift 4
	local auth=()
	[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
	api "$method" "$path" -H 'Content-Type: application/json' "${auth[@]}" --data-binary "$json" "$@"
}
api_get() {
	local path=$1 token=$2
	shift 2
	local auth=()
	[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
	api GET "$path" "${auth[@]}" "$@"
}

# expect STATUS [ERROR_CODE] DESCRIPTION
expect() {
	local want=$1 code=$2 what=$3
	if [ "$STATUS" != "$want" ]; then
		fail "$what: status $STATUS, want $want; body: ${BODY:0:300}"
		return 1
	fi
	if [ -n "$code" ]; then
		local got
		got=$(jq -r '.error // empty' <<<"$BODY" 2>/dev/null || true)
		if [ "$got" != "$code" ]; then
			fail "$what: error '$got', want '$code'; body: ${BODY:0:300}"
			return 1
		fi
	fi
	ok "$what"
}

# check COND-COMMAND DESCRIPTION: ok if the command succeeds.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

jget() { jq -r "$1" <<<"$BODY"; }

# register NAME -> prints the bearer token
register() {
	api_json POST /api/register "" "{\"username\":\"$1\",\"password\":\"${2:-correct horse}\"}"
	[ "$STATUS" = 201 ] || { echo "register $1 failed: $STATUS $BODY" >&2; return 1; }
	jget .token
}
