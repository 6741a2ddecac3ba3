#!/usr/bin/env bash
# avatars.sh: a user's avatar through curl. Set from a finished tus upload
# (PUT /api/me/avatar) or a one-shot form upload (POST, curl -F), replaced,
# cleared (DELETE); only PNG, JPEG, GIF and WebP by their bytes, at most
# avatar-max-size; someone else's or an unfinished upload is refused. The
# URL in /api/me and room members, served to any logged-in user (not
# anonymously) with safe headers and an ETag that changes with the avatar;
# the sweep keeps the avatar. The "profile" event reaches a co-member on
# WebSocket, SSE and long-poll, and not a stranger; it is not replayed.
# shellcheck shell=bash
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd --avatar-max-size 4k --upload-expiry 2
WSBASE="ws://127.0.0.1:$PORT"

AL=$(register av_alice)
BO=$(register av_bob)
EV=$(register av_eve)
api_json POST /api/rooms "$AL" '{"name":"av-lobby"}' >/dev/null
api_json POST /api/rooms/av-lobby/join "$BO" '{}'
expect 200 "" "bob joins #av-lobby"
# a second room they share: a change still reaches bob once per connection
api_json POST /api/rooms "$AL" '{"name":"av-den"}' >/dev/null
api_json POST /api/rooms/av-den/join "$BO" '{}'
expect 200 "" "bob joins #av-den"
C0=$(jget .event.id)
# eve shares no room with alice (everyone starts in #lobby)
api_json POST /api/rooms/lobby/leave "$EV" '{}'
expect 200 "" "eve leaves #lobby"
api_json POST /api/rooms/lobby/leave "$BO" '{}'
expect 200 "" "bob leaves #lobby (one shared room: one event per change)"

TUS=(-H 'Tus-Resumable: 1.0.0')
header() { { grep -i "^$1:" "$WORK/h" || true; } | head -n1 | cut -d' ' -f2- | tr -d '\r'; }

# upload TOKEN FILE [LENGTH]: a tus upload of FILE (all of it unless LENGTH
# is larger: then unfinished); prints its id.
upload() {
	local len=${3:-$(stat -c %s "$2")}
	curl -sS -D "$WORK/h" -o /dev/null -X POST -H "Authorization: Bearer $1" "${TUS[@]}" \
		-H "Upload-Length: $len" "$BASE/api/uploads"
	local loc
	loc=$(header Location)
	curl -sS -o /dev/null -X PATCH -H "Authorization: Bearer $1" "${TUS[@]}" \
		-H 'Content-Type: application/offset+octet-stream' -H 'Upload-Offset: 0' \
		--data-binary "@$2" "$BASE$loc"
	echo "${loc#/api/uploads/}"
}

# png FILE R G B: a 16x16 PNG of one colour.
png() {
	python3 - "$@" <<'PY'
import struct, sys, zlib
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
w = h = 16
px = bytes(int(v) for v in sys.argv[2:5])
raw = b''.join(b'\x00' + px * w for _ in range(h))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
                              + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
PY
}
png "$WORK/red.png" 220 40 40
png "$WORK/blue.png" 40 40 220
printf '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n' >"$WORK/evil.png"
head -c 6000 /dev/urandom >"$WORK/noise.bin"
python3 -c "import sys; sys.stdout.buffer.write(open('$WORK/red.png','rb').read() + b'\0' * 5000)" >"$WORK/big.png"

api_get /api/me "$AL"
check "no avatar at first: null" [ "$(jget .avatar)" = null ]

# --- the event on every transport, to a co-member only ----------------------------
# recv_poll TOKEN OUT: long-polls until $WORK/stop exists, events to OUT.
# A long-poll keeps nothing between polls, and profile events are
# ephemeral: each poll waits long (it is answered at the first event), so
# the only gaps are the few milliseconds between an answer and the next
# poll, never at a moment the test changes an avatar.
# polls_held: wait (up to 3 s) until both pollers' polls are held, so the
# next change lands inside a poll, not in the gap between two.
polls_held() {
	local i
	for i in $(seq 1 30); do
		[ "$(curl -s "$BASE/metrics" | awk '$1 == "natter_connections{transport=\"poll\"}" { print $2 }')" = 2 ] && return 0
		sleep 0.1
	done
	return 0 # the event checks below tell
}
recv_poll() {
	local cursor=$C0 body
	while [ ! -e "$WORK/stop" ] && kill -0 "$NATTERD_PID" 2>/dev/null; do
		body=$(curl -sf -H "Authorization: Bearer $1" "$BASE/poll?since=$cursor&timeout=4") || continue
		jq -c '.events[]' <<<"$body" >>"$2"
		cursor=$(jq -r .cursor <<<"$body")
	done
}
"$WSCLIENT" --token "$BO" --since "$C0" --count 200 --timeout 30 "$WSBASE/ws" >"$WORK/ws.out" 2>"$WORK/ws.err" &
WS_PID=$!
curl -sN -H "Authorization: Bearer $BO" -H "Last-Event-ID: $C0" "$BASE/events" >"$WORK/sse.out" &
SSE_PID=$!
curl -sN -H "Authorization: Bearer $EV" "$BASE/events" >"$WORK/sse-eve.out" &
SSE2_PID=$!
: >"$WORK/poll.out"
: >"$WORK/poll-eve.out"
recv_poll "$BO" "$WORK/poll.out" &
POLL_PID=$!
recv_poll "$EV" "$WORK/poll-eve.out" &
POLL2_PID=$!
sleep 1

# --- set ----------------------------------------------------------------------------
RED=$(upload "$AL" "$WORK/red.png")
polls_held
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$RED\"}"
expect 200 "" "set an avatar from a finished upload"
URL1=$(jget .avatar)
check "the avatar is a /files URL" [ "$URL1" = "/files/$RED/avatar" ]
api_get /api/me "$AL"
check "/api/me carries it" [ "$(jget .avatar)" = "$URL1" ]
api_get /api/rooms/av-lobby/members "$BO"
check "room members carry it" [ "$(jget '.members[] | select(.username == "av_alice") | .avatar')" = "$URL1" ]
check "a member without one: null" [ "$(jget '.members[] | select(.username == "av_bob") | .avatar')" = null ]

curl -s -D "$WORK/h" -o "$WORK/dl" -H "Authorization: Bearer $EV" "$BASE$URL1"
check "any logged-in user (not a co-member) gets the bytes" cmp -s "$WORK/dl" "$WORK/red.png"
check "served as image/png" [ "$(header Content-Type)" = image/png ]
check "inline" grep -qi '^Content-Disposition: inline' "$WORK/h"
check "nosniff" grep -qi '^X-Content-Type-Options: nosniff' "$WORK/h"
check "CSP sandbox" grep -qi '^Content-Security-Policy: sandbox' "$WORK/h"
ETAG1=$(header ETag)
check "an ETag" [ -n "$ETAG1" ]
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BO" -H "If-None-Match: $ETAG1" "$BASE$URL1")
expect 304 "" "If-None-Match: 304"
api GET "$URL1"
expect 401 unauthorized "anonymous: 401"

# --- the sweep keeps an avatar --------------------------------------------------------
sleep 2.5
api_json POST /api/rooms/av-lobby/messages "$AL" '{"text":"tick"}' >/dev/null
sleep 1
api_get /api/me "$AL"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BO" "$BASE$URL1")
expect 200 "" "the avatar outlives the unused-file expiry"

# --- replace ------------------------------------------------------------------------
BLUE=$(upload "$AL" "$WORK/blue.png")
polls_held
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$BLUE\"}"
expect 200 "" "replace the avatar"
URL2=$(jget .avatar)
check "a new URL" [ "$URL2" != "$URL1" ]
curl -s -D "$WORK/h" -o "$WORK/dl" -H "Authorization: Bearer $BO" "$BASE$URL2"
check "the new bytes" cmp -s "$WORK/dl" "$WORK/blue.png"
check "the ETag changed" [ "$(header ETag)" != "$ETAG1" ]
api_get "$URL1" "$BO"
expect 404 not_found "the replaced avatar is no longer served to others"

# --- refused --------------------------------------------------------------------------
SVG=$(upload "$AL" "$WORK/evil.png")
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$SVG\"}"
expect 415 unsupported_type "an SVG named .png is refused"
NOISE=$(upload "$AL" "$WORK/noise.bin")
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$NOISE\"}"
expect 415 unsupported_type "random bytes are refused"
BIG=$(upload "$AL" "$WORK/big.png")
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$BIG\"}"
expect 413 avatar_too_large "a PNG over avatar-max-size is refused"
PART=$(upload "$AL" "$WORK/red.png" 9999)
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$PART\"}"
expect 404 no_such_file "an unfinished upload is refused"
BOBS=$(upload "$BO" "$WORK/red.png")
api_json PUT /api/me/avatar "$AL" "{\"upload\":\"$BOBS\"}"
expect 404 no_such_file "someone else's upload is refused"
api_json PUT /api/me/avatar "$AL" '{"upload":"../../etc/passwd"}'
expect 404 no_such_file "a malformed id is refused"
api_json PUT /api/me/avatar "$AL" '{"upload":7}'
expect 422 invalid_upload "a non-string upload is refused"
api_json PUT /api/me/avatar "$AL" '{"file":"x"}'
expect 422 invalid_upload "an unknown member is refused"
api_json PUT /api/me/avatar "$AL" 'not json'
check "bad JSON is a 4xx" [ "${STATUS:0:1}" = 4 ]
api_json PUT /api/me/avatar "" "{\"upload\":\"$BLUE\"}"
expect 401 unauthorized "no session: 401"
api_get /api/me "$AL"
check "refusals left the avatar as it was" [ "$(jget .avatar)" = "$URL2" ]

# --- one-shot form upload (curl -F) ------------------------------------------------------
api POST /api/me/avatar -H "Authorization: Bearer $AL" -F "file=@$WORK/evil.png"
expect 415 unsupported_type "form: an SVG named .png is refused"
api POST /api/me/avatar -H "Authorization: Bearer $AL" -F "file=@$WORK/big.png"
expect 413 avatar_too_large "form: over avatar-max-size is refused"
head -c 20000 /dev/urandom >"$WORK/huge.bin"
api POST /api/me/avatar -H "Authorization: Bearer $AL" -F "file=@$WORK/huge.bin"
expect 413 avatar_too_large "form: a body far over the limit is refused before it is read"
api POST /api/me/avatar -H "Authorization: Bearer $AL" -F "other=@$WORK/red.png"
expect 422 no_file "form: no file field"
api_get /api/me "$AL"
check "refused forms left the avatar as it was" [ "$(jget .avatar)" = "$URL2" ]
polls_held
api POST /api/me/avatar -H "Authorization: Bearer $AL" -F "file=@$WORK/red.png"
expect 200 "" "form: curl -F file=@red.png sets it"
URL3=$(jget .avatar)
check "form: a new URL" [ "$URL3" != "$URL2" ] && [ "${URL3#/files/}" != "$URL3" ]
curl -s -o "$WORK/dl" -H "Authorization: Bearer $EV" "$BASE$URL3"
check "form: the bytes are served" cmp -s "$WORK/dl" "$WORK/red.png"

# --- clear ----------------------------------------------------------------------------
polls_held
api DELETE /api/me/avatar -H "Authorization: Bearer $AL"
expect 200 "" "clear the avatar"
check "null after clearing" [ "$(jget .avatar)" = null ]
api_get /api/me "$AL"
check "/api/me: null" [ "$(jget .avatar)" = null ]

# --- the events --------------------------------------------------------------------------
sleep 1.5
touch "$WORK/stop"
kill "$WS_PID" "$SSE_PID" "$SSE2_PID" 2>/dev/null || true
wait "$WS_PID" "$SSE_PID" "$SSE2_PID" "$POLL_PID" "$POLL2_PID" 2>/dev/null || true
sel='select(.type == "profile") | .avatar'
grep -a '"type":"profile"' "$WORK/ws.out" | jq -r "$sel" >"$WORK/ws.av" || true
grep -a '^data: .*"type":"profile"' "$WORK/sse.out" | sed 's/^data: //' | jq -r "$sel" >"$WORK/sse.av" || true
jq -r "$sel" "$WORK/poll.out" >"$WORK/poll.av" || true
printf '%s\n%s\n%s\n%s\n' "$URL1" "$URL2" "$URL3" null >"$WORK/want.av"
for t in ws sse poll; do
	check "$t: a co-member sees set, replace, form, clear" cmp -s "$WORK/$t.av" "$WORK/want.av"
done
check "the events name the user, once for both shared rooms" \
	[ "$(grep -a '"type":"profile"' "$WORK/ws.out" | head -n1 | jq -r '.from + " " + (.room // "none")')" = "av_alice none" ]
check "a stranger gets no profile event (SSE)" bash -c "! grep -q '\"type\":\"profile\"' '$WORK/sse-eve.out'"
check "a stranger gets no profile event (long-poll)" bash -c "! grep -q '\"type\":\"profile\"' '$WORK/poll-eve.out'"
check "the stranger's stream was live" grep -q 'event: hello' "$WORK/sse-eve.out"
api_get "/poll?since=$C0&timeout=0" "$BO"
check "profile events are ephemeral: not replayed from a cursor" \
	[ "$(jget '[.events[] | select(.type == "profile")] | length')" = 0 ]
finish
