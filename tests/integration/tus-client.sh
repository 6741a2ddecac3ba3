#!/usr/bin/env bash
# tus-client.sh: tus-js-client from npm uploads to natterd from Node.js
# (tests/tus-node.mjs): 256 KiB chunks, and an upload aborted part way and
# resumed from its URL; the files arrive whole (SHA-256) and can be sent.
# Skipped (77) where node >= 20 or npm is missing, like tests/e2e/run.sh;
# NATTER_REQUIRE_E2E=1 makes that a failure. The npm packages are those of
# tests/e2e/package.json, installed where run.sh installs them.
# shellcheck shell=bash
. "$(dirname "$0")/lib.sh"
: "${NATTER_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"

skip() {
	echo "tus-client: skipped: $*"
	[ -n "${NATTER_REQUIRE_E2E:-}" ] && exit 1
	exit 77
}
command -v node >/dev/null || skip "node is missing"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || skip "node is older than 20"
here=$NATTER_SRCDIR/tests/e2e
if [ -z "${E2E_DEPS_DIR:-}" ]; then
	if [ -f "$here/node_modules/tus-js-client/package.json" ]; then
		E2E_DEPS_DIR=$here
	else
		E2E_DEPS_DIR=$NATTER_TEST_TMP/e2e-deps
	fi
fi
if [ ! -f "$E2E_DEPS_DIR/node_modules/tus-js-client/package.json" ]; then
	command -v npm >/dev/null || skip "npm is missing"
	mkdir -p "$E2E_DEPS_DIR"
	[ "$E2E_DEPS_DIR" != "$here" ] && cp "$here/package.json" "$here/package-lock.json" "$E2E_DEPS_DIR/"
	(cd "$E2E_DEPS_DIR" && npm ci --no-audit --no-fund --loglevel=error) || skip "npm ci failed (offline?)"
fi
export E2E_DEPS_DIR

start_natterd
TOKEN=$(register fi_tusjs)
api_json POST /api/rooms "$TOKEN" '{"name":"fi-tusjs"}' >/dev/null
head -c $((1024 * 1024 + 777)) /dev/urandom >"$WORK/one.bin"
head -c $((2 * 1024 * 1024 + 5)) /dev/urandom >"$WORK/two.bin"
if node "$NATTER_SRCDIR/tests/tus-node.mjs" "$BASE" "$TOKEN" "$WORK/one.bin" "$WORK/two.bin" >"$WORK/out" 2>"$WORK/err"; then
	ok "tus-js-client uploads, aborts and resumes"
else
	fail "tus-js-client: $(tail -n 5 "$WORK/err")"
	finish
fi
n=0
while read -r line; do
	n=$((n + 1))
	f=$WORK/one.bin
	[ "$n" = 2 ] && f=$WORK/two.bin
	id=$(jq -r .id <<<"$line")
	api_get "/api/uploads/$id" "$TOKEN"
	check "upload $n is complete, $(stat -c %s "$f") bytes" \
		[ "$(jget .complete)" = true ] && [ "$(jget .file.size)" = "$(stat -c %s "$f")" ]
	url=$(jget .file.url)
	curl -s -o "$WORK/dl" -H "Authorization: Bearer $TOKEN" "$BASE$url"
	check "upload $n downloads the same bytes" cmp -s "$WORK/dl" "$f"
	api_json POST /api/rooms/fi-tusjs/messages "$TOKEN" "{\"text\":\"via tus-js-client\",\"files\":[\"$id\"]}"
	expect 201 "" "upload $n is sent in a message"
done <"$WORK/out"
check "two uploads reported" [ "$n" = 2 ]
check "the second resumed after an abort" [ "$(tail -n1 "$WORK/out" | jq -r '.resumed_after > 0')" = true ]
finish
