#!/usr/bin/env bash
# files.sh: uploads and downloads through curl. tus 1.0 (discovery,
# creation, 256 KiB chunks, a connection cut mid-chunk and resumed from
# HEAD's offset, offset conflicts, termination, expiry), the one-shot form
# upload, messages carrying files on WebSocket, SSE, long-poll and in
# history, dedupe by content, safe serving (a PNG named .html and an HTML
# file named .png), Range, ETag, non-members, size limit and quota, a
# message delete that unshares its file, and a 100 MiB upload that does
# not grow natterd's memory.
# shellcheck shell=bash
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd
WSBASE="ws://127.0.0.1:$PORT"
FILES="$WORK/files"

AL=$(register fi_alice)
BO=$(register fi_bob)
EV=$(register fi_eve)
api_json POST /api/rooms "$AL" '{"name":"fi-lobby"}' >/dev/null
api_json POST /api/rooms/fi-lobby/join "$BO" '{}'
expect 200 "" "bob joins #fi-lobby"
C0=$(jget .event.id)

TUS=(-H 'Tus-Resumable: 1.0.0')
OCT=(-H 'Content-Type: application/offset+octet-stream')

# header NAME: a header's value from $WORK/h (curl -D), without CR.
header() { { grep -i "^$1:" "$WORK/h" || true; } | head -n1 | cut -d' ' -f2- | tr -d '\r'; }

# create TOKEN LENGTH [NAME]: a tus upload; sets UP (its path) and UID.
create() {
	local meta=()
	[ -n "${3:-}" ] && meta=(-H "Upload-Metadata: filename $(printf '%s' "$3" | base64 -w0),filetype $(printf 'x/y' | base64 -w0)")
	api POST /api/uploads -D "$WORK/h" -H "Authorization: Bearer $1" "${TUS[@]}" \
		-H "Upload-Length: $2" "${meta[@]}"
	UP=$(header Location)
	UID_=$(jget .id 2>/dev/null || true)
}

# patch TOKEN PATH OFFSET FILE [curl args]: one PATCH.
patch() {
	local t=$1 p=$2 off=$3 f=$4
	shift 4
	api PATCH "$p" -D "$WORK/h" -H "Authorization: Bearer $t" "${TUS[@]}" "${OCT[@]}" \
		-H "Upload-Offset: $off" --data-binary "@$f" "$@"
}

# offset TOKEN PATH: HEAD's Upload-Offset.
offset() {
	curl -s -I -H "Authorization: Bearer $1" "${TUS[@]}" "$BASE$2" -o /dev/null -D "$WORK/h"
	header Upload-Offset
}

# --- discovery ------------------------------------------------------------------
api OPTIONS /api/uploads -D "$WORK/h"
expect 204 "" "OPTIONS /api/uploads"
check "Tus-Version 1.0.0" [ "$(header Tus-Version)" = 1.0.0 ]
check "Tus-Extension lists creation, termination, expiration" \
	[ "$(header Tus-Extension)" = creation,termination,expiration ]
check "Tus-Max-Size is 100 MiB by default" [ "$(header Tus-Max-Size)" = 104857600 ]
check "no CORS headers" [ -z "$(header Access-Control-Allow-Origin)" ]

# --- tus: 256 KiB chunks, a cut mid-chunk, resumed from HEAD's offset ----------
SIZE=$((1024 * 1024 + 12345))
# Pseudo-random but the same every run: about 1 in 90 runs of fresh random
# bytes looks like something to libmagic (a DOS executable, zlib, MPEG
# audio: 17 of 1,500 8 KiB samples here), and the type is checked below.
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(2026).randbytes(int(sys.argv[1])))' \
	"$SIZE" >"$WORK/big.bin"
create "$AL" "$SIZE" "big.bin"
expect 201 "" "create a tus upload"
check "Location under /api/uploads" [ "${UP#/api/uploads/}" != "$UP" ]
check "Upload-Expires is an HTTP date" grep -qi '^Upload-Expires: .* GMT' "$WORK/h"
CH=262144
split -b "$CH" -d -a 2 "$WORK/big.bin" "$WORK/chunk."
patch "$AL" "$UP" 0 "$WORK/chunk.00"
expect 204 "" "first 256 KiB chunk"
check "Upload-Offset after it is 262144" [ "$(header Upload-Offset)" = 262144 ]
patch "$AL" "$UP" 0 "$WORK/chunk.01"
expect 409 offset_mismatch "a PATCH at a stale offset is 409"
api PATCH "$UP" -H "Authorization: Bearer $AL" "${TUS[@]}" -H 'Content-Type: text/plain' \
	-H 'Upload-Offset: 262144' --data-binary @"$WORK/chunk.01"
expect 415 content_type "a PATCH that is not offset+octet-stream is 415"
api PATCH "$UP" -H "Authorization: Bearer $AL" "${OCT[@]}" -H 'Upload-Offset: 262144' \
	--data-binary @"$WORK/chunk.01"
expect 412 tus_version "a PATCH without Tus-Resumable is 412"
patch "$BO" "$UP" 262144 "$WORK/chunk.01"
expect 404 no_such_upload "someone else's upload is 404"
# The second chunk through a connection cut after about 100 KB.
curl -s -o /dev/null --limit-rate 40k -m 2.5 -X PATCH -H "Authorization: Bearer $AL" "${TUS[@]}" "${OCT[@]}" \
	-H 'Upload-Offset: 262144' --data-binary @"$WORK/chunk.01" "$BASE$UP" || true
sleep 0.3
OFF=$(offset "$AL" "$UP")
check "the cut PATCH kept what arrived (offset $OFF)" [ "$OFF" -gt 262144 ] && [ "$OFF" -lt $((2 * CH)) ]
# Resume from the server's offset, then go on in 256 KiB chunks.
while [ "$OFF" -lt "$SIZE" ]; do
	{ tail -c +$((OFF + 1)) "$WORK/big.bin" | head -c "$CH" >"$WORK/next"; } || true
	patch "$AL" "$UP" "$OFF" "$WORK/next"
	[ "$STATUS" = 204 ] || break
	OFF=$(header Upload-Offset)
done
expect 204 "" "resumed from HEAD's offset to the end"
check "offset is the length" [ "$OFF" = "$SIZE" ]
api_get "$UP" "$AL"
expect 200 "" "GET the finished upload"
check "complete, with a file object" [ "$(jget .complete)" = true ] && [ "$(jget .file.name)" = big.bin ]
BIG=$(jget .file.id)
BIGURL=$(jget .file.url)
check "the type comes from the bytes" [ "$(jget .file.type)" = application/octet-stream ]
SHA=$(sha256sum "$WORK/big.bin" | cut -d' ' -f1)
check "the content is stored by its SHA-256" [ -f "$FILES/blobs/${SHA:0:2}/$SHA" ]
check "no part file is left" [ -z "$(ls "$FILES/uploads")" ]
patch "$AL" "$UP" "$SIZE" "$WORK/chunk.00"
expect 409 upload_complete "a PATCH to a complete upload is 409"

# Before it is shared, only its owner reads it.
api_get "$BIGURL" "$BO"
expect 404 not_found "an unshared file is 404 to others"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AL" "$BASE$BIGURL")
expect 200 "" "its owner reads it"

# --- a message carries it, on every transport -------------------------------------
"$WSCLIENT" --token "$BO" --since "$C0" --count 1 --timeout 20 "$WSBASE/ws" >"$WORK/ws.out" 2>"$WORK/ws.err" &
WS_PID=$!
timeout 20 curl -sN -H "Authorization: Bearer $BO" -H "Last-Event-ID: $C0" "$BASE/events" |
	grep --line-buffered -a '^data: {.*"type":"message".*}$' | sed -u 's/^data: //' | head -n 1 >"$WORK/sse.out" &
SSE_PID=$!
sleep 0.5
api_json POST /api/rooms/fi-lobby/messages "$BO" "{\"text\":\"x\",\"files\":[\"$BIG\"]}"
expect 422 no_such_file "someone else's upload cannot be sent"
api_json POST /api/rooms/fi-lobby/messages "$AL" '{"text":"x","files":["nope"]}'
expect 422 no_such_file "an unknown id cannot be sent"
api_json POST /api/rooms/fi-lobby/messages "$AL" "{\"text\":\"\",\"files\":[\"$BIG\"]}"
expect 201 "" "a message of one file and no text"
M1=$(jget .event.id)
check "the event carries the file object" \
	[ "$(jget '.event.files[0] | [.id, .name, .size, .type] | join(" ")')" = "$BIG big.bin $SIZE application/octet-stream" ]
wait "$WS_PID" || true
wait "$SSE_PID" || true
api_get "/poll?since=$C0&timeout=2" "$BO"
jget '.events[] | select(.type == "message")' | jq -c . >"$WORK/poll.out"
api_get "/api/rooms/fi-lobby/messages?limit=50" "$BO"
jget '.events[] | select(.type == "message")' | jq -c . >"$WORK/history.out"
grep -a '"type":"message"' "$WORK/ws.out" | jq -c . >"$WORK/ws.msgs" || true
jq -c . "$WORK/sse.out" >"$WORK/sse.msgs" || true
check "history has the files" [ "$(jq -r '.files[0].id' "$WORK/history.out")" = "$BIG" ]
for f in ws.msgs sse.msgs poll.out; do
	check "$f: the same envelope as history" cmp -s "$WORK/$f" "$WORK/history.out"
done
api GET /api/search -G --data-urlencode "q=big" -H "Authorization: Bearer $BO"
check "search finds the message by its file's name" [ "$(jget '[.results[].id] | join(",")')" = "$M1" ]

# --- downloads: members only, Range, ETag --------------------------------------------
curl -s -D "$WORK/h" -o "$WORK/dl" -H "Authorization: Bearer $BO" "$BASE$BIGURL"
check "a member downloads the same bytes" cmp -s "$WORK/dl" "$WORK/big.bin"
check "ETag is the content's hash" [ "$(header ETag)" = "\"$SHA\"" ]
check "Cache-Control: private" grep -qi '^Cache-Control: private' "$WORK/h"
check "an octet stream is an attachment" grep -qi '^Content-Disposition: attachment' "$WORK/h"
api_get "$BIGURL" "$EV"
expect 404 not_found "a non-member gets 404"
api GET "$BIGURL"
expect 401 unauthorized "no session: 401"
curl -s -D "$WORK/h" -o "$WORK/part" -H "Authorization: Bearer $BO" -H 'Range: bytes=1000-1999' "$BASE$BIGURL"
check "Range: 206" grep -q '^HTTP/1.1 206' "$WORK/h"
check "Content-Range" [ "$(header Content-Range)" = "bytes 1000-1999/$SIZE" ]
{ tail -c +1001 "$WORK/big.bin" | head -c 1000 >"$WORK/want"; } || true
check "the range's bytes" cmp -s "$WORK/part" "$WORK/want"
curl -s -D "$WORK/h" -o "$WORK/part" -H "Authorization: Bearer $BO" -H 'Range: bytes=-100' "$BASE$BIGURL"
check "a suffix range: the last 100 bytes" cmp -s "$WORK/part" <(tail -c 100 "$WORK/big.bin")
curl -s -D "$WORK/h" -o /dev/null -H "Authorization: Bearer $BO" -H "Range: bytes=$SIZE-" "$BASE$BIGURL"
check "Range past the end: 416" grep -q '^HTTP/1.1 416' "$WORK/h"
check "416 says the size" [ "$(header Content-Range)" = "bytes */$SIZE" ]
curl -s -D "$WORK/h" -o /dev/null -H "Authorization: Bearer $BO" -H "If-None-Match: \"$SHA\"" "$BASE$BIGURL"
check "If-None-Match: 304" grep -q '^HTTP/1.1 304' "$WORK/h"

# --- safe serving --------------------------------------------------------------------
python3 - "$WORK/img.png" <<'EOF'
import struct, sys, zlib
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
w, h = 40, 30
raw = b''.join(b'\x00' + b'\x20\x80\xe0' * w for _ in range(h))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
                              + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
EOF
cp "$WORK/img.png" "$WORK/photo.html"
printf '<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n' >"$WORK/page.png"
api POST /api/rooms/fi-lobby/files -H "Authorization: Bearer $AL" -F "file=@$WORK/photo.html" -F 'text=a picture'
expect 201 "" "one-shot form upload (curl -F)"
check "typed from the bytes: image/png 40x30" \
	[ "$(jget '.file | [.type, .width, .height, .name] | join(" ")')" = "image/png 40 30 photo.html" ]
check "the message carries it, with the text" \
	[ "$(jget '.event.text + " " + .event.files[0].id')" = "a picture $(jget .file.id)" ]
PNGURL=$(jget .file.url)
curl -s -D "$WORK/h" -o "$WORK/dl" -H "Authorization: Bearer $BO" "$BASE$PNGURL"
check "a PNG named .html: Content-Type image/png" [ "$(header Content-Type)" = image/png ]
check "a PNG named .html: inline" grep -qi '^Content-Disposition: inline' "$WORK/h"
check "a PNG named .html: nosniff" grep -qi '^X-Content-Type-Options: nosniff' "$WORK/h"
check "a PNG named .html: CSP sandbox" grep -qi '^Content-Security-Policy: sandbox' "$WORK/h"
check "the CSP allows no script" bash -c "! grep -i '^Content-Security-Policy:.*script-src' '$WORK/h'"
api POST /api/rooms/fi-lobby/files -H "Authorization: Bearer $AL" -F "file=@$WORK/page.png"
expect 201 "" "an HTML file named .png"
HTMLURL=$(jget .file.url)
check "typed text/html from its bytes" [ "$(jget .file.type)" = text/html ]
curl -s -D "$WORK/h" -o "$WORK/dl" -H "Authorization: Bearer $BO" "$BASE$HTMLURL"
check "an HTML file named .png: not text/html" [ "$(header Content-Type)" = application/octet-stream ]
check "an HTML file named .png: attachment" grep -qi '^Content-Disposition: attachment' "$WORK/h"
check "an HTML file named .png: nosniff" grep -qi '^X-Content-Type-Options: nosniff' "$WORK/h"
check "an HTML file named .png: CSP sandbox" grep -qi '^Content-Security-Policy: sandbox' "$WORK/h"
api POST /api/rooms/fi-lobby/files -H "Authorization: Bearer $EV" -F "file=@$WORK/img.png"
expect 403 not_a_member "a form upload to a room you are not in"
api POST /api/rooms/fi-lobby/files -H "Authorization: Bearer $AL" -F "other=@$WORK/img.png"
expect 422 no_file "a form without a file field"

# --- dedupe: the same bytes twice are stored once ---------------------------------------
api POST /api/rooms/fi-lobby/files -H "Authorization: Bearer $BO" -F "file=@$WORK/img.png;filename=again.png"
expect 201 "" "the same image again, by bob"
AGAIN=$(jget .event.id)
AGAINURL=$(jget .file.url)
PSHA=$(sha256sum "$WORK/img.png" | cut -d' ' -f1)
check "one copy on disk for two files" [ "$(find "$FILES/blobs" -name "$PSHA" | wc -l)" = 1 ]

# --- termination ----------------------------------------------------------------------
create "$AL" 1000 "gone.txt"
T1=$UP
head -c 500 /dev/zero >"$WORK/half"
patch "$AL" "$T1" 0 "$WORK/half"
expect 204 "" "half an upload"
api DELETE "$T1" -H "Authorization: Bearer $AL" "${TUS[@]}"
expect 204 "" "termination: DELETE"
api GET "$T1" -H "Authorization: Bearer $AL" "${TUS[@]}"
expect 404 no_such_upload "a terminated upload is gone"
check "its part file is gone" [ -z "$(ls "$FILES/uploads")" ]

# --- deleting a message unshares its file -----------------------------------------------
api DELETE "/api/rooms/fi-lobby/messages/$AGAIN" -H "Authorization: Bearer $BO"
expect 200 "" "bob deletes his message"
check "the tombstone has no files" [ "$(jget '.event.files // "none"')" = none ]
api_get "$AGAINURL" "$AL"
expect 404 not_found "its file is no longer shared with the room"
api GET /api/search -G --data-urlencode "q=again" -H "Authorization: Bearer $BO"
check "a deleted message is no longer found by its file's name" [ "$(jget '.results | length')" = 0 ]
api GET /api/search -G --data-urlencode "q=photo" -H "Authorization: Bearer $BO"
check "the other is found by name" [ "$(jget '.results | length')" = 1 ]
api_get "$PNGURL" "$BO"
expect 200 "" "the other file with the same bytes is still there"

# --- the 100 MiB upload: memory stays flat --------------------------------------------------
HUNDRED=$((100 * 1024 * 1024))
head -c "$HUNDRED" /dev/urandom >"$WORK/huge.bin"
create "$AL" "$HUNDRED" "huge.bin"
expect 201 "" "create a 100 MiB upload"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$NATTERD_PID/status"; }
R0=$(rss)
peak=$R0
patch "$AL" "$UP" 0 "$WORK/huge.bin" &
PP=$!
while kill -0 "$PP" 2>/dev/null; do
	r=$(rss)
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 0.05
done
wait "$PP" || true
r=$(rss)
[ "$r" -gt "$peak" ] && peak=$r
check "100 MiB upload done" [ "$(offset "$AL" "$UP")" = "$HUNDRED" ]
GROW=$(((peak - R0) / 1024))
check "natterd's RSS grew by less than 16 MiB (${GROW} MiB)" [ "$GROW" -lt 16 ]
echo "# rss before ${R0} KiB, peak ${peak} KiB"
rm -f "$WORK/huge.bin" "$WORK/big.bin"
api DELETE "$UP" -H "Authorization: Bearer $AL" "${TUS[@]}"
expect 204 "" "delete the 100 MiB file"
check "its content is gone from disk" [ "$(find "$FILES/blobs" -type f | wc -l)" -le 3 ]

# --- limits, quota and expiry on a server of their own -------------------------------------
stop_natterd
rm -f "$WORK/natter.db"*
rm -rf "$FILES"
start_natterd --file-max-size 1M --file-quota 2M --upload-expiry 3
LI=$(register fi_limits)
create "$LI" $((1024 * 1024 + 1))
expect 413 file_too_large "over file-max-size: 413 before any byte"
api OPTIONS /api/uploads -D "$WORK/h"
check "Tus-Max-Size follows the config" [ "$(header Tus-Max-Size)" = 1048576 ]
create "$LI" $((1024 * 1024))
expect 201 "" "1 MiB within the quota"
create "$LI" $((1024 * 1024))
expect 201 "" "another 1 MiB: the quota is full"
Q2=$UP
create "$LI" 1
expect 507 quota_exceeded "past file-quota: 507"
head -c 300000 /dev/zero >"$WORK/z"
api POST /api/rooms -H "Authorization: Bearer $LI" -H 'Content-Type: application/json' -d '{"name":"fi-lim"}'
api POST /api/rooms/fi-lim/files -H "Authorization: Bearer $LI" -F "file=@$WORK/z"
expect 507 quota_exceeded "a form upload past the quota"
patch "$LI" "$Q2" 0 "$WORK/z"
expect 204 "" "a partial upload"
sleep 4.5
api GET "$Q2" -H "Authorization: Bearer $LI" "${TUS[@]}"
expect 404 no_such_upload "an unfinished upload expires"
check "its part file is removed" [ -z "$(ls "$FILES/uploads")" ]
create "$LI" 1
expect 201 "" "expired uploads no longer count against the quota"

finish
