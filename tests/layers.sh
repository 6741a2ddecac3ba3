#!/usr/bin/env bash
# layers.sh: checks that natter's source keeps its shape.
#
#  1. Every `#include "LAYER/x.h"` in src/ names a layer the including file
#     may use: dependencies run one way, http -> transport -> core -> store
#     -> model -> util, with net (event loops, TLS) a leaf that only the
#     transports, http and main use. main.c may include anything; ctl
#     (natterctl, a program of its own) sits on util, model, store and core.
#  2. No include cycle between headers; tsort finds them.
#  3. No source file over 1,000 lines.
#
# Usage: tests/layers.sh [SRCDIR]   (default: the src/ beside this script;
# under make check, $NATTER_SRCDIR/src). Prints one line per problem and
# "layers: N passed, M failed"; exits 1 on any problem.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${1:-${NATTER_SRCDIR:-$here/..}/src}
[ -d "$src" ] || { echo "layers: no source directory $src" >&2; exit 1; }

# What each layer may include (besides system headers).
declare -A allowed=(
	[util]="util"
	[net]="util net"
	[model]="util model"
	[store]="util model store"
	[core]="util model store core"
	[transport]="util net model core transport"
	[http]="util net model core transport http"
	[ctl]="util model store core ctl"
)
max_lines=1000

passed=0
failed=0
bad() {
	echo "layers: $*"
	failed=$((failed + 1))
}

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

cd "$src"
while IFS= read -r file; do
	layer=${file%%/*}
	[ "$file" = main.c ] && layer=main
	echo "$file $file" >>"$edges"
	while IFS= read -r inc; do
		target=${inc%%/*}
		[ "$inc" != "$target" ] || continue # autoconfig.h and the like
		[ -f "$inc" ] || { bad "$file includes $inc, which does not exist"; continue; }
		if [ "$layer" != main ] &&
			[[ " ${allowed[$layer]:-} " != *" $target "* ]]; then
			bad "$file ($layer) includes $inc: $layer may use only: ${allowed[$layer]:-nothing}"
		fi
		echo "$file $inc" >>"$edges"
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
	lines=$(wc -l <"$file")
	if [ "$lines" -gt "$max_lines" ]; then
		bad "$file has $lines lines (more than $max_lines): split it by what changes together"
	fi
done < <(find . -name '*.[ch]' | sed 's|^\./||' | sort)

# Two headers that include each other (directly or through others).
if ! cycles=$(tsort "$edges" 2>&1 >/dev/null); then
	bad "include cycle: $(echo "$cycles" | grep -v 'input contains a loop' | sed 's/^tsort: //' | tr '\n' ' ')"
elif [ -n "$cycles" ]; then
	bad "include cycle: $(echo "$cycles" | sed 's/^tsort: //' | tr '\n' ' ')"
fi

[ "$failed" -eq 0 ] && passed=1
echo "layers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
