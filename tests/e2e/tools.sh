# tools.sh: the browser suite's programs, found and checked. Sourced by
# run.sh and cluster.sh after they set `top` (the source tree) and define
# die(); sets NATTERD, NATTER_DB_DIR, NATTER_WEB_ROOT, CHROMIUM and NGINX
# where the environment does not, and defines
#   missing MESSAGE   a tool outside natter is missing: exit 77 (automake's
#                     SKIP), or die with NATTER_REQUIRE_E2E=1
#   e2e_tools_check   natterd, db/ and web/ are there (die if not); node >=
#                     20, npm, chromium and nginx are (missing if not)
# shellcheck shell=bash disable=SC2154 # top: set by the sourcing script

if [ -z "${NATTERD:-}" ]; then
	NATTERD=$top/build/src/natterd
	[ -x "$NATTERD" ] || NATTERD=$top/src/natterd
fi
: "${NATTER_DB_DIR:=$top/db}"
: "${NATTER_WEB_ROOT:=$top/web}"
: "${CHROMIUM:=$(command -v chromium || echo /usr/bin/chromium)}"
: "${NGINX:=$(command -v nginx || echo /usr/sbin/nginx)}"

# A missing tool outside natter (browser, node, proxy) skips the tests: exit
# 77 is automake's SKIP. NATTER_REQUIRE_E2E=1 turns that into a failure.
missing() {
	if [ "${NATTER_REQUIRE_E2E:-0}" = 1 ]; then
		die "$* (NATTER_REQUIRE_E2E=1: the browser tests must run)"
	fi
	echo "e2e: skipped: $*"
	exit 77
}

e2e_tools_check() {
	[ -x "$NATTERD" ] || die "no natterd binary at $NATTERD (build first, or set NATTERD)"
	[ -d "$NATTER_DB_DIR" ] || die "no db/ directory at $NATTER_DB_DIR"
	[ -f "$NATTER_WEB_ROOT/index.html" ] || die "no web client at $NATTER_WEB_ROOT"
	command -v node >/dev/null || missing "node is missing (Node.js 20 or newer)"
	command -v npm >/dev/null || missing "npm is missing (it comes with Node.js)"
	node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
		missing "playwright-core needs Node.js 20 or newer (this is $(node --version))"
	[ -x "$CHROMIUM" ] || missing "chromium is missing at $CHROMIUM (apt-get install chromium)"
	[ -x "$NGINX" ] || missing "nginx is missing at $NGINX (apt-get install nginx-light)"
}
