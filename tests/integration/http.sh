#!/usr/bin/env bash
# http.sh: what the http layer answers before and around the handlers,
# against the real natterd: every error natter sends is JSON (the 503 at the
# stream cap, 414 and 431 for an oversized request line or headers); an
# oversized body is refused with 413 without reading the rest of it (a
# chunked one as soon as it passes max-body, an absurd Content-Length at
# once); near the descriptor limit requests get a 503 and past it clients
# are refused at once, not left hanging; a NUL in a form field is refused; the CSP of static files; the
# CSRF and WebSocket Origin checks compare the scheme; and a history page
# checks the room and the membership before anything else, whatever bytes
# the room name holds.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd --max-body 65536 --max-connections 1
HOSTPORT="127.0.0.1:$PORT"

ALICE=$(register alice)
BOB=$(register bob)
check "alice and bob registered" test -n "$ALICE" -a -n "$BOB"
api_json POST /api/rooms "$ALICE" '{"name":"attic"}'
expect 201 "" "alice creates a room bob is not in"

# raw REQUEST [SECONDS]: send REQUEST (printf format) on a new connection,
# print what comes back until the server closes or SECONDS pass.
raw() {
	local req=$1 t=${2:-5}
	(
		exec 3<>"/dev/tcp/127.0.0.1/$PORT"
		# shellcheck disable=SC2059
		printf "$req" >&3
		timeout "$t" cat <&3
	) 2>/dev/null || true
}

# --- every error is JSON ----------------------------------------------------
# One stream is the cap: a second one is refused with a JSON 503.
curl -sN -H "Authorization: Bearer $ALICE" "$BASE/events" >"$WORK/sse.out" 2>/dev/null &
SSEPID=$!
for _ in $(seq 1 50); do
	grep -q hello "$WORK/sse.out" 2>/dev/null && break
	sleep 0.1
done
api_get /poll?timeout=0 "$BOB" -D "$WORK/h503"
expect 503 busy "a stream over the cap is a JSON 503"
check "the 503 says when to retry" grep -qi '^retry-after: 5' "$WORK/h503"
kill "$SSEPID" 2>/dev/null || true
wait "$SSEPID" 2>/dev/null || true

api GET "/healthz?x=$(head -c 9000 /dev/zero | tr '\0' a)"
expect 414 uri_too_long "a request URI over 8 KiB is a JSON 414"
api GET /healthz -H "X-Big: $(head -c 17000 /dev/zero | tr '\0' a)"
expect 431 headers_too_large "headers over 16 KiB are a JSON 431"
api GET /healthz
expect 200 "" "an ordinary request is still served"

# The answers libmicrohttpd 0.9.75 gives itself, before any callback of
# natter's runs, with a short HTML page compiled into the library (it has
# no option to replace them): the documented exceptions to "every error is
# JSON" (README, top of http/http.c). Asserted so that a library change
# that lets natter answer them is noticed, and so that each stays a clean
# 4xx/5xx that closes the connection. Everything natter answers itself,
# including everything past the request line and headers, is JSON (the
# checks above).
mhd_answer() { # BYTES: the status line libmicrohttpd answers raw bytes with
	python3 - "$PORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
got = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
head, _, body = got.partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0].decode(errors="replace")
kind = "json" if body.startswith(b"{") else "html" if b"<html" in body.lower() else "empty" if not body else "other"
print(status + " " + kind)
PY
}
r=$(mhd_answer 'GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n')
check "a header line without a colon: libmicrohttpd's own 400 ($r)" grep -q '^HTTP/1.1 400' <<<"$r"
r=$(mhd_answer 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n')
check "a malformed Content-Length: libmicrohttpd's own 400 ($r)" grep -q '^HTTP/1.1 400' <<<"$r"
r=$(mhd_answer 'GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n')
check "an unsupported HTTP version: libmicrohttpd's own 505 ($r)" grep -q ' 505 ' <<<"$r"
r=$(mhd_answer "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: $(head -c 40000 /dev/zero | tr '\0' a)\r\n\r\n")
check "headers beyond the connection's 32 KiB pool: libmicrohttpd's own 431 ($r)" grep -qE ' 4(13|14|31) ' <<<"$r"
api GET /healthz
expect 200 "" "and natter serves on"

# --- oversized bodies: 413 without reading the rest -------------------------
# 70,000 bytes of a chunked body, over max-body, and then nothing: the
# answer must come at once, not when the body (never) ends.
OUT=$(raw 'POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n'"$(head -c 70000 /dev/zero | tr '\0' a)"'\r\n' 3)
check "a chunked body over max-body is answered 413 at once" \
	grep -q '^HTTP/1.1 413' <<<"$OUT"
check "... with a JSON body_too_large" grep -q '"error":"body_too_large"' <<<"$OUT"
check "... and the connection closed" grep -qi '^connection: close' <<<"$OUT"
OUT=$(raw 'POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9223372036854775808\r\n\r\n' 3)
check "a Content-Length of 2^63 is answered 413 at once" grep -q '^HTTP/1.1 413' <<<"$OUT"
check "... with a JSON body_too_large" grep -q '"error":"body_too_large"' <<<"$OUT"
OUT=$(raw 'POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n{' 3)
check "an announced Content-Length over max-body is answered 413 at once" \
	grep -q '"error":"body_too_large"' <<<"$OUT"
api GET /healthz
expect 200 "" "the server is fine after the refused bodies"

# --- forms: no NUL ----------------------------------------------------------
api POST /api/rooms/lobby/messages -H "Authorization: Bearer $ALICE" --data 'text=a%00b'
expect 400 bad_form "a %00 in a form field is refused, not cut short"
api POST /api/rooms/lobby/messages -H "Authorization: Bearer $ALICE" --data 'text=hi&client_id=c%00d'
expect 400 bad_form "a %00 in any form field is refused"
api POST /api/rooms/lobby/messages -H "Authorization: Bearer $ALICE" --data 'text=a%2500b+c'
expect 201 "" "an escaped percent sign is fine"
check "... and arrives decoded once" test "$(jget .event.text)" = 'a%00b c'
api_json POST /api/rooms/lobby/messages "$ALICE" '{"text":"a\u0000b"}'
expect 400 bad_json "JSON refuses \\u0000 the same way"

# --- static files: CSP ------------------------------------------------------
curl -s -D "$WORK/hstatic" -o /dev/null "$BASE/"
CSP=$(grep -i '^content-security-policy:' "$WORK/hstatic" || true)
check "the CSP has object-src 'none'" grep -q "object-src 'none'" <<<"$CSP"
check "the CSP has base-uri 'none'" grep -q "base-uri 'none'" <<<"$CSP"
check "the CSP has frame-ancestors 'none'" grep -q "frame-ancestors 'none'" <<<"$CSP"

# --- CSRF and Origin: the scheme counts ---------------------------------------
JAR="$WORK/cookies"
api_json POST /api/login "" '{"username":"alice","password":"correct horse"}' -c "$JAR"
expect 200 "" "alice logs in with a cookie jar"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' \
	-H "Origin: https://$HOSTPORT" --data '{"name":"schemeroom"}'
expect 403 csrf "an https Origin on a plain-http server is not same-origin"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' \
	-H "Origin: http://$HOSTPORT" --data '{"name":"schemeroom"}'
expect 201 "" "the http Origin of this server is"
"$WSCLIENT" --token "$ALICE" --origin "https://$HOSTPORT" --timeout 5 \
	"ws://$HOSTPORT/ws" >/dev/null 2>"$WORK/err" && rc=0 || rc=$?
check "a WebSocket from the https Origin of a plain server is refused (403)" \
	bash -c "[ $rc = 2 ] && grep -q 403 '$WORK/err'"
stop_natterd
start_natterd --allowed-origin "https://$HOSTPORT"
HOSTPORT2="127.0.0.1:$PORT"
api_json POST /api/login "" '{"username":"alice","password":"correct horse"}' -c "$JAR"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' \
	-H "Origin: https://$HOSTPORT" --data '{"name":"proxyroom"}'
expect 201 "" "behind a TLS proxy, the public https origin is listed in allowed-origin"
api POST /api/rooms -b "$JAR" -H 'Content-Type: application/json' \
	-H "Origin: https://$HOSTPORT2" -H 'X-Forwarded-Proto: https' --data '{"name":"fwdroom"}'
expect 403 csrf "X-Forwarded-Proto is not believed"

# Over TLS the reverse holds: natterd serves https there, so an http Origin
# for the same host is another origin.
stop_natterd
start_natterd --tls-self-signed --tls-listen 127.0.0.1:0
TPORT=
for _ in $(seq 1 100); do
	TPORT=$(sed -n 's/.*listening tls.* port=\([0-9]*\).*/\1/p' "$WORK/natterd.log" | head -n1)
	[ -n "$TPORT" ] && break
	sleep 0.05
done
SELF="$WORK/natter-selfsigned-cert.pem"
api_json POST /api/login "" '{"username":"alice","password":"correct horse"}' -c "$JAR"
STATUS=$(curl -s -o "$WORK/body" -w '%{http_code}' -b "$JAR" --cacert "$SELF" \
	-H 'Content-Type: application/json' -H "Origin: http://127.0.0.1:$TPORT" \
	--data '{"name":"tlsroom"}' "https://127.0.0.1:$TPORT/api/rooms") || STATUS=000
BODY=$(cat "$WORK/body")
expect 403 csrf "an http Origin over TLS is not same-origin"
STATUS=$(curl -s -o "$WORK/body" -w '%{http_code}' -b "$JAR" --cacert "$SELF" \
	-H 'Content-Type: application/json' -H "Origin: https://127.0.0.1:$TPORT" \
	--data '{"name":"tlsroom"}' "https://127.0.0.1:$TPORT/api/rooms") || STATUS=000
BODY=$(cat "$WORK/body")
expect 201 "" "the https Origin of this server over TLS is"

# --- the connection limit: a 503, never a hang -------------------------------
# With 200 descriptors, natterd keeps 64 in reserve: libmicrohttpd takes at
# most 136: from 104 on new connections are closed at once, and from 73 on
# requests are answered 503 busy.
stop_natterd
printf '#!/bin/sh\nulimit -n 200\nexec "%s" "$@"\n' "$NATTERD" >"$WORK/natterd-200"
chmod +x "$WORK/natterd-200"
NATTERD_REAL=$NATTERD
NATTERD="$WORK/natterd-200"
start_natterd
NATTERD=$NATTERD_REAL
IDLE=()
open_idle() {
	local fd
	for _ in $(seq 1 "$1"); do
		exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
		IDLE+=("$fd")
	done
	sleep 0.5
}
open_idle 80
api GET /healthz -D "$WORK/hbusy" --max-time 5
expect 503 busy "near the descriptor budget a request is a JSON 503"
check "... with Retry-After" grep -qi '^retry-after: 5' "$WORK/hbusy"
open_idle 100
T0=$(date +%s)
api GET /healthz --max-time 5
T1=$(date +%s)
check "past the connection limit a client is refused at once, not left hanging (status $STATUS)" \
	test "$STATUS" != 200 -a $((T1 - T0)) -lt 4
for fd in "${IDLE[@]}"; do exec {fd}>&-; done
sleep 0.5
api GET /healthz --max-time 5
expect 200 "" "once the idle connections are gone, requests are served again"
api GET /metrics
check "the refusals are counted in /metrics" grep -q '^natter_rejected_busy_total [1-9]' <<<"$BODY"
stop_natterd
start_natterd

# --- history: room and membership first ---------------------------------------
api_get "/api/rooms/attic/messages?before=0" "$BOB"
expect 403 not_a_member "before=0 on a room bob is not in is a 403"
api_get "/api/rooms/nosuchroom/messages?before=0" "$BOB"
expect 404 no_such_room "before=0 on a room that does not exist is a 404"
api_get "/api/rooms/attic/messages?before=0" "$ALICE"
expect 200 "" "before=0 on alice's own room is an empty page"
check "... naming the room" test "$(jget .room)" = attic
for bad in '%FF%FE' '%C3%28' 'caf%C3%A9' 'a%20b' '%2e%2e' '%0a' '%7F'; do
	api_get "/api/rooms/$bad/messages?before=0" "$ALICE"
	expect 404 no_such_room "room name '$bad' with before=0 is a clean JSON 404"
done
# libmicrohttpd ends the decoded path at a %00: then it names no endpoint.
api_get "/api/rooms/a%00b/messages?before=0" "$ALICE"
expect 404 not_found "room name 'a%00b' with before=0 is a clean JSON 404"
api POST "/api/rooms/%FF/messages" -H "Authorization: Bearer $ALICE" --data 'text=hi'
expect 404 no_such_room "a send to a non-UTF-8 room name is a clean JSON 404"
api_get /healthz ""
expect 200 "" "the server is still up"

finish
