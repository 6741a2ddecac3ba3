#!/usr/bin/env bash
# run.sh: build natter's libFuzzer harnesses in their own build dir
# (configure --enable-fuzzers, CC=clang) and run each for FUZZ_SECONDS
# (20 by default) from its committed seed corpus (tests/fuzz/corpus/NAME)
# plus a work corpus kept in the build dir between runs. Skips (77) unless
# NATTER_FUZZ=1: `make check` runs it only where asked (CI sets it);
# `make fuzz` runs it for 10 minutes a harness.
#
# Environment: NATTER_SRCDIR (the source tree), NATTER_FUZZ_BUILD (the
# build dir, default ./fuzz-build), FUZZ_SECONDS, FUZZ_ONLY (a regex of
# harness names), FUZZ_JOBS (parallel harnesses, default 1).
# A crash leaves its input in NATTER_FUZZ_BUILD/crashes/NAME/ and fails.
set -euo pipefail

if [ "${NATTER_DISTCHECK_SKIP:-}" = 1 ]; then
	echo "fuzz: skipped inside make distcheck (make check ran it on the same sources)"
	exit 77
fi
if [ "${NATTER_FUZZ:-0}" != 1 ]; then
	echo "fuzz: skipped (set NATTER_FUZZ=1, or run make fuzz)"
	exit 77
fi
src=${NATTER_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bld=${NATTER_FUZZ_BUILD:-$PWD/fuzz-build}
secs=${FUZZ_SECONDS:-20}
names="route ws_frame cmd auth addr markdown tls_pump tus cluster"

if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz: clang is missing: apt-get install clang libclang-rt-14-dev" >&2
	exit 1
fi

mkdir -p "$bld"
if [ ! -f "$bld/Makefile" ]; then
	(cd "$bld" && "$src/configure" --enable-fuzzers CC=clang \
		CFLAGS="-O1 -g" >configure.log 2>&1) || {
		tail -20 "$bld/configure.log" >&2
		exit 1
	}
fi
targets=
for n in $names; do targets="$targets tests/fuzz/fuzz_$n"; done
# shellcheck disable=SC2086
make -C "$bld" -j"${FUZZ_MAKE_JOBS:-2}" $targets >"$bld/make.log" 2>&1 || {
	tail -30 "$bld/make.log" >&2
	exit 1
}

fail=0
run_one() {
	local n=$1
	local work="$bld/corpus/$n" crash="$bld/crashes/$n"
	mkdir -p "$work" "$crash"
	local seeds="$src/tests/fuzz/corpus/$n"
	local log="$bld/fuzz_$n.log"
	echo "fuzz: $n for ${secs}s"
	if "$bld/tests/fuzz/fuzz_$n" -max_total_time="$secs" -max_len=8192 \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$crash/" "$work" "$seeds" >"$log" 2>&1; then
		grep -E '^stat::number_of_executed_units' "$log" |
			sed "s/^/fuzz: $n: /"
	else
		echo "fuzz: $n FAILED; its log:" >&2
		grep -v '^#' "$log" | tail -60 >&2
		return 1
	fi
}
for n in $names; do
	if [ -n "${FUZZ_ONLY:-}" ] && ! [[ $n =~ $FUZZ_ONLY ]]; then
		continue
	fi
	run_one "$n" || fail=1
done
exit $fail
