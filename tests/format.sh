#!/usr/bin/env bash
# format.sh: checks that natter's C follows its .clang-format (every .c and
# .h under src/, tests/ and contrib/). Prints each file that does not, with
# the command that fixes it, and "format: N files, M not formatted"; exits 1
# on any. clang-format's output differs between its major versions: this
# is the one Debian 12 ships (14), which contrib/setup.sh installs.
#
# Usage: tests/format.sh [SRCDIR]   (default: the tree this script is in;
# under make check, $NATTER_SRCDIR)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=${1:-${NATTER_SRCDIR:-$here/..}}
command -v clang-format >/dev/null 2>&1 || {
	echo "format: clang-format not found (apt-get install clang-format; contrib/setup.sh deps does)" >&2
	exit 1
}
[ -f "$top/.clang-format" ] || { echo "format: no $top/.clang-format" >&2; exit 1; }

n=0 bad=0
while IFS= read -r -d '' f; do
	n=$((n + 1))
	if ! clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "format: ${f#"$top"/} is not formatted (clang-format -i ${f#"$top"/})"
		bad=$((bad + 1))
	fi
done < <(find "$top/src" "$top/tests" "$top/contrib" -name '*.[ch]' -print0 | sort -z)
echo "format: $n files, $bad not formatted"
[ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
