#!/usr/bin/env bash
# run.sh: natter's browser end-to-end tests. Debian's chromium, driven by
# playwright-core from npm, uses the real web client against a real natterd
# (started here, on free ports, with a temporary database), directly and
# through nginx configured as two kinds of restrictive proxy.
#
#   tests/e2e/run.sh                 run every scenario
#   E2E_ONLY=proxy tests/e2e/run.sh  run the scenarios whose name matches
#
# Needs: Node.js 20 or newer with npm, and Debian's chromium and
# nginx-light (or nginx); npm installs playwright-core and axe-core from
# package-lock.json when it is missing.
#
# Environment:
#   NATTERD           natterd binary (default: ../../build/src/natterd, then
#                     ../../src/natterd for an in-tree build)
#   NATTER_DB_DIR     db/ with schema and migrations (default: the repo's)
#   NATTER_WEB_ROOT   web/ (default: the repo's)
#   NATTER_TEST_TMP   where to put work files and screenshots
#                     (default: a temporary directory; screenshots then go
#                     to tests/e2e/screenshots)
#   CHROMIUM, NGINX   the browser and proxy binaries
#   E2E_DEPS_DIR      where node_modules lives (default: here when run by
#                     hand, $NATTER_TEST_TMP/e2e-deps under make check)
#   E2E_ONLY          a regular expression: run only the matching scenarios
#   KEEP_WORK=1       keep the work directory (logs) even when all pass
#   E2E_SHARED_BASE   use this URL as the shared server instead of starting
#                     a natterd (tests/e2e/cluster.sh sets it to a balancer
#                     in front of three nodes, with E2E_SHARED_NODES and
#                     E2E_SHARED_LOGS: the nodes' URLs and log files)
#   NATTER_REQUIRE_E2E=1  a missing node, npm, chromium or nginx is a
#                     failure (exit 1) instead of a skip; CI sets it
#
# Prints one line per scenario and a last line "e2e: N passed, M failed";
# exits non-zero on any failure. Where node (>= 20), npm, chromium or nginx
# is missing it says which and exits 77, which automake's test driver
# reports as SKIP, so a packager's `make check` passes without a browser.
set -euo pipefail
if [ "${NATTER_DISTCHECK_SKIP:-}" = 1 ]; then
	echo "e2e: skipped inside make distcheck (make check ran it on the same sources)"
	exit 77
fi

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

die() {
	printf 'e2e: error: %s\n' "$*" >&2
	echo "e2e: 0 passed, 1 failed"
	exit 1
}

# The programs (tools.sh): a missing natterd, db/ or web/ is an error; a
# missing tool outside natter (browser, node, proxy) skips the tests with
# exit 77, automake's SKIP, unless NATTER_REQUIRE_E2E=1.
# shellcheck disable=SC1091 # sourced by its path
. "$here/tools.sh"
e2e_tools_check

if [ -n "${NATTER_TEST_TMP:-}" ]; then
	mkdir -p "$NATTER_TEST_TMP"
	work=$(mktemp -d "$NATTER_TEST_TMP/e2e.XXXXXX")
	: "${E2E_SCREENSHOTS:=$NATTER_TEST_TMP/e2e-screenshots}"
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/natter-e2e.XXXXXX")
	: "${E2E_SCREENSHOTS:=$here/screenshots}"
fi

# node_modules: beside package.json when run by hand (or when a developer
# already installed it there); under NATTER_TEST_TMP when run by make check,
# which must not write into the source tree. npm's cache makes a repeated
# install quick.
if [ -z "${E2E_DEPS_DIR:-}" ]; then
	if [ -f "$here/node_modules/playwright-core/package.json" ] ||
		[ -z "${NATTER_TEST_TMP:-}" ]; then
		E2E_DEPS_DIR=$here
	else
		E2E_DEPS_DIR=$NATTER_TEST_TMP/e2e-deps
	fi
fi
# Every package in package.json must be there (an older install may lack
# one added since).
if [ ! -f "$E2E_DEPS_DIR/node_modules/playwright-core/package.json" ] ||
	[ ! -f "$E2E_DEPS_DIR/node_modules/axe-core/package.json" ] ||
	[ ! -f "$E2E_DEPS_DIR/node_modules/tus-js-client/package.json" ]; then
	mkdir -p "$E2E_DEPS_DIR"
	if [ "$E2E_DEPS_DIR" != "$here" ]; then
		cp "$here/package.json" "$here/package-lock.json" "$E2E_DEPS_DIR/"
	fi
	echo "e2e: installing npm dependencies in $E2E_DEPS_DIR"
	(cd "$E2E_DEPS_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
		die "npm ci failed"
fi

export NATTERD NATTER_DB_DIR NATTER_WEB_ROOT CHROMIUM NGINX E2E_DEPS_DIR E2E_SCREENSHOTS
export E2E_WORK=$work

rc=0
node "$here/e2e.mjs" || rc=$?
if [ "$rc" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then
	rm -rf "$work"
else
	echo "e2e: work files (logs) kept in $work"
fi
exit "$rc"
