#!/usr/bin/env bash
# setup.sh: get natter from a fresh clone to a running server or a test run,
# on Debian 12 (bookworm).
#
#   contrib/setup.sh run     install what is missing, build, run natterd on
#                            127.0.0.1:8080 in the foreground (Ctrl-C stops it)
#   contrib/setup.sh test    install what is missing, build, make check
#                            (and make distcheck when NATTER_DISTCHECK=1)
#   contrib/setup.sh build   install what is missing, build
#   contrib/setup.sh deps    only install what is missing (for run and test)
#
# Packages come from apt and nowhere else; nothing else touches the network.
# As root it calls apt-get directly, otherwise through sudo if there is one.
# When every package is already installed it does not call apt at all.
# The build is out of tree, in ./build; `run` keeps its database in ./state.
#
# Environment:
#   NATTER_DISTCHECK=1        test: also run `make distcheck` (slow; CI sets it)
#   NATTER_CONFIGURE_FLAGS    extra ../configure flags, used when build/ is
#                             first configured (e.g. "--enable-werror")
#   NATTER_LISTEN             run: address to listen on (127.0.0.1:8080)
# Arguments after `run` are passed on to natterd (e.g. --log-level debug).
set -euo pipefail

# --- packages -----------------------------------------------------------------
# What building and running natter needs (Debian 12 package names).
BUILD_PACKAGES=(
	build-essential autoconf automake libtool pkg-config autoconf-archive
	libmicrohttpd-dev libsqlite3-dev libjansson-dev libargon2-dev
	libcmocka-dev libwslay-dev libmbedtls-dev liburing-dev
	libcmark-gfm-dev libcmark-gfm-extensions-dev libicu-dev libpq-dev
	libmagic-dev libhiredis-dev
	curl ca-certificates sqlite3
)
# TEST_PACKAGES: what `test` needs on top of BUILD_PACKAGES: jq for the
# integration tests, openssl for the TLS tests, chromium and nginx for the
# browser end-to-end tests (nginx plays the restrictive proxies), and a
# Chinese font and a colour emoji font so that their screenshots show
# characters and reactions, not boxes;
# clang and its libFuzzer runtime for tests/fuzz (NATTER_FUZZ=1);
# clang-format for tests/format.sh (the code follows .clang-format); python3
# for the reconnect-storm and rate-limit tests; PostgreSQL and Redis for
# the PostgreSQL store contract and the cluster test, which start their
# own servers (tests/backends.sh), and haproxy to balance the cluster.
TEST_PACKAGES=(
	curl jq openssl chromium nginx-light fonts-wqy-microhei fonts-noto-color-emoji
	clang libclang-rt-14-dev clang-format python3
	postgresql postgresql-contrib redis-server haproxy
)
# The e2e tests need Node.js >= 20 with npm (this machine image ships it).
# Where no node is installed at all, fall back to Debian's packages.
command -v node >/dev/null 2>&1 || TEST_PACKAGES+=(nodejs npm)

# --- helpers ------------------------------------------------------------------
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

usage() {
	cat <<'EOF'
usage: contrib/setup.sh COMMAND [natterd args...]
  run     install missing packages, build, run natterd on 127.0.0.1:8080
  test    install missing packages, build, make check
          (then make distcheck if NATTER_DISTCHECK=1)
  build   install missing packages, build in ./build
  deps    install missing packages only
EOF
}

# Print, one per line, the packages among "$@" that are not installed.
missing_packages() {
	local status line name
	declare -A installed=()
	# dpkg-query exits 1 when it does not know a package: that is "missing".
	status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "$@" \
		2>/dev/null || true)
	while IFS= read -r line; do
		name=${line%% *}
		case "${line#* }" in
		ii*) installed[$name]=1 ;;
		esac
	done <<<"$status"
	for name in "$@"; do
		[[ -n ${installed[$name]:-} ]] || printf '%s\n' "$name"
	done
}

# True when apt's package lists were downloaded less than a day ago.
apt_lists_fresh() {
	find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 \
		2>/dev/null | grep -q .
}

apt_update() {
	say "apt-get update"
	"${sudo[@]}" apt-get "${apt_opts[@]}" update ||
		die "apt-get update failed (network or apt sources?)"
	updated=1
}

apt_install() {
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@"
}

# Install whatever is missing among "$@". Calls apt only if something is.
install_packages() {
	local -a want=() missing=() sudo=() apt_opts
	local p updated
	# The same package may be in both lists: ask once.
	for p in "$@"; do
		[[ " ${want[*]} " == *" $p "* ]] || want+=("$p")
	done

	if ! command -v dpkg-query >/dev/null 2>&1 ||
		! command -v apt-get >/dev/null 2>&1; then
		say "not a Debian system: skipping package installation."
		say "make sure the equivalents of these are installed: ${want[*]}"
		return 0
	fi

	mapfile -t missing < <(missing_packages "${want[@]}")
	if ((${#missing[@]} == 0)); then
		say "all ${#want[@]} required packages are installed."
		return 0
	fi

	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 ||
			die "not root and sudo is missing: as root, run: apt-get install ${missing[*]}"
		sudo=(sudo)
	fi

	# Wait for a concurrent apt/unattended-upgrades instead of failing.
	apt_opts=(-o DPkg::Lock::Timeout=600)
	say "installing ${#missing[@]} missing package(s): ${missing[*]}"
	updated=0
	if apt_lists_fresh; then
		say "apt package lists are less than a day old: not updating them."
	else
		apt_update
	fi
	if ! apt_install "${missing[@]}"; then
		# Lists that looked fresh may still be stale (a version since
		# replaced on the mirror): update once and try again.
		((updated == 0)) || die "apt-get install failed for: ${missing[*]}"
		say "apt-get install failed with the current lists: updating them and retrying."
		apt_update
		apt_install "${missing[@]}" ||
			die "apt-get install failed for: ${missing[*]}"
	fi

	# Make sure apt did what we asked (e.g. a package that does not exist).
	mapfile -t missing < <(missing_packages "${want[@]}")
	((${#missing[@]} == 0)) || die "still not installed: ${missing[*]}"
	say "packages installed."
}

# Build out of tree in ./build, regenerating configure when needed.
build() {
	# An in-tree ./configure run makes an out-of-tree one impossible.
	[[ ! -f config.status ]] ||
		die "the source tree was configured in place (config.status exists): run 'make distclean' in $srcdir, then retry."

	command -v autoreconf >/dev/null 2>&1 || die "autoreconf not found: apt-get install autoconf automake"
	if [[ ! -x configure || ! -f Makefile.in ||
		configure -ot configure.ac || configure -ot Makefile.am ]]; then
		say "autoreconf -fi"
		mkdir -p m4 # ACLOCAL_AMFLAGS=-I m4; git does not keep empty dirs
		autoreconf -fi || die "autoreconf failed"
	fi

	mkdir -p build
	if [[ ! -f build/Makefile ]]; then
		say "configuring in ./build"
		# shellcheck disable=SC2086 # flags are meant to split
		(cd build && ../configure ${NATTER_CONFIGURE_FLAGS:-}) ||
			die "configure failed: see build/config.log"
	fi

	say "make -j$(nproc)"
	make -C build -j"$(nproc)" || die "build failed"
	say "build done: build/src/natterd"
}

run_tests() {
	local log
	# Tests run one at a time: several of them measure time (deadlines,
	# stalls) and should not compete with each other for two cores.
	say "make check"
	make -C build -j"$(nproc)" all || die "build failed"
	if ! make -C build check; then
		[[ -f build/test-suite.log ]] && cat build/test-suite.log
		die "make check failed (log: build/test-suite.log)"
	fi
	say "make check passed."

	if [[ ${NATTER_DISTCHECK:-0} == 1 ]]; then
		say "make distcheck"
		if ! make -C build distcheck; then
			for log in build/natter-*/_build/sub/test-suite.log; do
				[[ -f $log ]] && { say "== $log"; cat "$log"; }
			done
			die "make distcheck failed"
		fi
		say "make distcheck passed."
	else
		say "skipping make distcheck (set NATTER_DISTCHECK=1 to run it)."
	fi
}

# --- main ---------------------------------------------------------------------
(($# >= 1)) || { usage >&2; exit 2; }
cmd=$1
shift

srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$srcdir"

[[ $cmd == run || $# -eq 0 ]] || die "'$cmd' takes no arguments (got: $*)"

case $cmd in
run)
	install_packages "${BUILD_PACKAGES[@]}"
	build
	mkdir -p state
	listen=${NATTER_LISTEN:-127.0.0.1:8080}
	say "natterd listens on http://$listen/ (database: state/natter.db); press Ctrl-C to stop it."
	exec build/src/natterd --listen "$listen" --db "$srcdir/state/natter.db" \
		--db-dir "$srcdir/db" --web-root "$srcdir/web" "$@"
	;;
test)
	install_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
	build
	run_tests
	;;
build)
	install_packages "${BUILD_PACKAGES[@]}"
	build
	;;
deps)
	install_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
	;;
-h | --help | help)
	usage
	;;
*)
	usage >&2
	exit 2
	;;
esac
