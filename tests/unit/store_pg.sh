#!/usr/bin/env bash
# store_pg.sh: the store contract against PostgreSQL. Starts a
# PostgreSQL of its own from Debian's packages (tests/backends.sh: a free
# loopback port, as `nobody` when run as root), runs test_store_pg against
# it and stops it. Skips (77) when PostgreSQL is not installed, unless
# NATTER_REQUIRE_ROOT_TESTS=1 or CI is set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../backends.sh"
backends_need
trap backends_stop EXIT
pg_start
NATTER_TEST_PG=$PG_URL "${TEST_STORE_PG:-tests/unit/test_store_pg}"
