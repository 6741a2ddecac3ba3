#!/usr/bin/env bash
# cluster.sh: the browser end-to-end suite (run.sh) against a cluster: three
# natterd nodes on one PostgreSQL with `bus = redis://...`, one shared
# --files-dir, behind haproxy round robin with no stickiness (as
# tests/integration/cluster.sh), so a browser's page, API calls and stream
# may each land on a different node. PostgreSQL and Redis are started here
# (tests/backends.sh) on free loopback ports and stopped at exit.
#
#   tests/e2e/cluster.sh                  every scenario
#   E2E_ONLY=proxy tests/e2e/cluster.sh   the scenarios whose name matches
#
# run.sh is told the balancer's URL in E2E_SHARED_BASE (kit.mjs's
# startShared then uses it instead of starting a natterd of its own), the
# nodes' URLs in E2E_SHARED_NODES (a per-node counter in /metrics is summed
# over them) and their logs in E2E_SHARED_LOGS. Scenarios that start a
# natterd of their own (admin, restart, reset, limits, presence with a
# short grace) still do: one node, SQLite.
#
# Skips (77) as run.sh where node >= 20, npm, chromium or nginx is missing
# (a failure with NATTER_REQUIRE_E2E=1), and as tests/integration/cluster.sh
# where postgresql-15, redis-server or haproxy is missing (a failure with
# NATTER_REQUIRE_ROOT_TESTS=1, CI or NATTER_REQUIRE_E2E=1). Environment as
# run.sh; KEEP_WORK=1 keeps the nodes' logs.
set -euo pipefail
if [ "${NATTER_DISTCHECK_SKIP:-}" = 1 ]; then
	echo "e2e-cluster: skipped inside make distcheck (make check ran it on the same sources)"
	exit 77
fi

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091 # sourced by its path
. "$top/tests/backends.sh"

die() {
	printf 'e2e-cluster: error: %s\n' "$*" >&2
	echo "e2e: 0 passed, 1 failed"
	exit 1
}

# The browser's tools: the same rule as run.sh (which checks again).
# shellcheck disable=SC1091 # sourced by its path
. "$here/tools.sh"
e2e_tools_check
export NATTERD NATTER_DB_DIR NATTER_WEB_ROOT CHROMIUM NGINX

# The cluster's: the same rule as tests/integration/cluster.sh; CI's
# NATTER_REQUIRE_E2E=1 makes them required too.
[ "${NATTER_REQUIRE_E2E:-0}" = 1 ] && export NATTER_REQUIRE_ROOT_TESTS=1
backends_need
command -v haproxy >/dev/null 2>&1 || backends_skip "haproxy not installed (apt-get install haproxy)"

if [ -n "${NATTER_TEST_TMP:-}" ]; then
	mkdir -p "$NATTER_TEST_TMP"
	work=$(mktemp -d "$NATTER_TEST_TMP/e2e-cluster.XXXXXX")
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/natter-e2e-cluster.XXXXXX")
fi

NODE_PID=() NODE_PORT=() HAPROXY_PID='' rc=1
# shellcheck disable=SC2317 # run by the EXIT trap
cluster_stop() {
	for p in "${NODE_PID[@]}" $HAPROXY_PID; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${NODE_PID[@]}" $HAPROXY_PID; do wait "$p" 2>/dev/null || true; done
	backends_stop
	if [ "$rc" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then
		rm -rf "$work"
	else
		echo "e2e-cluster: nodes' and haproxy's logs kept in $work"
	fi
}
trap cluster_stop EXIT

pg_start || die "PostgreSQL did not start"
redis_start
[ -n "$REDIS_PORT" ] && (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null ||
	die "redis-server did not start"
echo "e2e-cluster: PostgreSQL on port $PG_PORT, Redis on port $REDIS_PORT"

# The shared server's flags (kit.mjs: rate limits off) plus the cluster
# tests' (through the balancer every connection comes from 127.0.0.1).
for i in 1 2 3; do
	node_start "$i" "$PG_URL" "$REDIS_URL" "$work" --log-level debug \
		--connections-per-address 0 --poll-timeout-max 55 ||
		die "node $i did not start"
done
echo "e2e-cluster: three nodes with bus = $REDIS_URL: ports ${NODE_PORT[*]}"

# haproxy as tests/integration/cluster.sh: HTTP mode, round robin, no
# stickiness; tunnel timeouts long enough for WebSocket, SSE and long-poll.
haproxy_start "$work" "${NODE_PORT[1]}" "${NODE_PORT[2]}" "${NODE_PORT[3]}"
LB=http://127.0.0.1:$LB_PORT
up=0
for _ in $(seq 1 100); do
	# every node in the rotation: three health answers in a row
	n=0
	for _ in 1 2 3; do curl -sf -o /dev/null "$LB/healthz" && n=$((n + 1)); done
	[ "$n" = 3 ] && { up=1; break; }
	sleep 0.1
done
[ "$up" = 1 ] || { cat "$work/haproxy.log"; die "the balancer did not answer at $LB"; }
echo "e2e-cluster: haproxy round robin at $LB"

E2E_SHARED_BASE=$LB
E2E_SHARED_NODES="http://127.0.0.1:${NODE_PORT[1]} http://127.0.0.1:${NODE_PORT[2]} http://127.0.0.1:${NODE_PORT[3]}"
E2E_SHARED_LOGS="$work/node1.log $work/node2.log $work/node3.log"
export E2E_SHARED_BASE E2E_SHARED_NODES E2E_SHARED_LOGS
rc=0
"$here/run.sh" || rc=$?
exit "$rc"
