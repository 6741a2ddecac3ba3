#!/usr/bin/env bash
# transports-sendmsg: transports.sh once more with natterd's WebSocket
# writes forced onto the sendmsg() fallback (--no-io-uring), the path taken
# where io_uring is missing or filtered, so that both write paths pass the
# same tests.
NATTER_TEST_FLAGS="--no-io-uring ${NATTER_TEST_FLAGS:-}"
export NATTER_TEST_FLAGS
exec "$(dirname "$0")/transports.sh"
