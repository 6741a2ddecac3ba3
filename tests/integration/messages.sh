#!/usr/bin/env bash
# messages.sh: messages people shape. Markdown is rendered once, when a
# message is sent: the envelope carries the source ("text") and the safe
# HTML ("html"), byte for byte the same live on WebSocket, SSE and
# long-poll, on resume from a cursor, in history pages and in search;
# raw HTML and script links come out inert; bad input is refused with a
# JSON error and stores nothing.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd
WSBASE="ws://127.0.0.1:$PORT"

ANN=$(register ann)
BEN=$(register ben)
api_json POST /api/rooms "$ANN" '{"name":"md"}' >/dev/null
api_json POST /api/rooms/md/join "$BEN" '{}'
expect 200 "" "ben joins #md"
C0=$(jget .event.id)

# --- live receivers on WebSocket and SSE -------------------------------------
"$WSCLIENT" --token "$BEN" --since "$C0" --count 3 --timeout 20 "$WSBASE/ws" >"$WORK/ws.out" 2>"$WORK/ws.err" &
WS_PID=$!
timeout 20 curl -sN -H "Authorization: Bearer $BEN" -H "Last-Event-ID: $C0" "$BASE/events" |
	grep --line-buffered -a '^data: {.*"type":"message".*}$' | sed -u 's/^data: //' | head -n 3 >"$WORK/sse.out" &
SSE_PID=$!
sleep 0.5

# --- sends: HTTP JSON, WebSocket, HTTP form ------------------------------------
SRC1='**bold** _it_ [docs](https://example.org/a?b=1&c=2) `<code>` :+1:'
api_json POST /api/rooms/md/messages "$ANN" "$(jq -nc --arg t "$SRC1" '{text:$t,client_id:"m-1"}')"
expect 201 "" "a Markdown message is sent over HTTP"
E1=$(jget .event)
check "its envelope keeps the source as text" [ "$(jq -r .text <<<"$E1")" = "$SRC1" ]
WANT1='<p><strong>bold</strong> <em>it</em> <a target="_blank" rel="noopener noreferrer nofollow ugc" href="https://example.org/a?b=1&amp;c=2">docs</a> <code>&lt;code&gt;</code> <span class="emoji" role="img" title=":+1:" aria-label="+1">👍</span></p>'
check "its envelope carries the rendered html" [ "$(jq -r .html <<<"$E1" | tr -d '\n')" = "$WANT1" ]

SRC2=$'<script>alert(1)</script>\n\n[x](javascript:alert(2)) ![i](https://example.org/i.png)\n```c\nint a = 1 < 2;\n```'
jq -nc --arg t "$SRC2" '{op:"send",room:"md",text:$t,client_id:"m-2"}' >"$WORK/send2.json"
# the new message and its ack: two frames after the hello
"$WSCLIENT" --token "$ANN" --send-file "$WORK/send2.json" --count 2 --timeout 10 "$WSBASE/ws" >"$WORK/ack2.out" 2>&1 || true
E2=$({ grep -a '"type":"ack"' "$WORK/ack2.out" || true; } | head -n1 | jq -c .event)
H2=$(jq -r .html <<<"$E2")
check "a message sent over WebSocket is acked with its html" [ -n "$H2" ] && [ "$H2" != null ]
check "raw HTML is text" grep -qF '&lt;script&gt;alert(1)&lt;/script&gt;' <<<"$H2"
check "no script element, no javascript: link" bash -c '! grep -qiE "<script|javascript:|<img" <<<"$1"' _ "$H2"
check "an image becomes a link to it" grep -qF 'href="https://example.org/i.png"' <<<"$H2"
check "a code block keeps its language and escapes <" grep -qF '<pre><code class="language-c">int a = 1 &lt; 2;' <<<"$H2"

api POST /api/rooms/md/messages -H "Authorization: Bearer $ANN" --data-urlencode 'text=plain ~~gone~~' --data-urlencode 'client_id=m-3'
expect 201 "" "a form POST is rendered too"
check "strikethrough" [ "$(jget .event.html | tr -d '\n')" = '<p>plain <del>gone</del></p>' ]

# --- every transport carries the same bytes ----------------------------------
wait "$WS_PID" || true
wait "$SSE_PID" || true
api_get "/poll?since=$C0&timeout=2" "$BEN"
expect 200 "" "long-poll from the cursor"
jget '.events[] | select(.type == "message")' | jq -c . >"$WORK/poll.out"
grep -a '"type":"message"' "$WORK/ws.out" | jq -c . >"$WORK/ws.msgs"
jq -c . "$WORK/sse.out" >"$WORK/sse.msgs"
api_get "/api/rooms/md/messages?limit=50" "$BEN"
expect 200 "" "history page"
jget '.events[] | select(.type == "message")' | jq -c . >"$WORK/history.out"
for f in ws.msgs sse.msgs poll.out history.out; do
	check "$f: three messages, each with html" [ "$(jq -r 'select(.html != null) | .id' "$WORK/$f" | wc -l)" = 3 ]
	check "$f: the same envelopes as history" cmp -s "$WORK/$f" "$WORK/history.out"
done

# A receiver that resumes after the first message gets the other two once.
ID1=$(jq -r .id <<<"$E1")
"$WSCLIENT" --token "$BEN" --since "$ID1" --count 2 --timeout 10 "$WSBASE/ws" >"$WORK/ws-resume.out" 2>&1 || true
check "a resumed WebSocket gets each later message once, with html" \
	[ "$(grep -a '"type":"message"' "$WORK/ws-resume.out" | jq -r 'select(.html != null) | .id' | sort -u | wc -l)" = 2 ]

# --- search shows the rendered form, and finds by the source's words ---------
api_get "/api/search?q=bold" "$BEN"
expect 200 "" "search"
check "search finds the message with its html" [ "$(jget '.results[0].html' | tr -d '\n')" = "$WANT1" ]
api_get "/api/search?q=strong" "$BEN"
check "markup is not searchable, only the text" [ "$(jget '.results | length')" = 0 ]

# --- a retried client_id is the first event, html and all --------------------
api_json POST /api/rooms/md/messages "$ANN" "$(jq -nc --arg t "$SRC1" '{text:$t,client_id:"m-1"}')"
check "a retried send answers the first event" [ "$(jget .event.id)" = "$ID1" ] && [ "$(jget .event.html | tr -d '\n')" = "$WANT1" ]

# --- bad input: a JSON error, nothing stored ----------------------------------
LAST=$(curl -sf -H "Authorization: Bearer $BEN" "$BASE/api/rooms/md/messages?limit=1" | jq -r '.events[-1].id')
api_json POST /api/rooms/md/messages "$ANN" "$(jq -nc --arg t "$(head -c 4001 /dev/zero | tr '\0' '*')" '{text:$t}')"
expect 422 text_too_long "4,001 characters of Markdown are refused"
api_json POST /api/rooms/md/messages "$ANN" '{"text":"   "}'
expect 422 invalid "blank text is refused"
api_json POST /api/rooms/md/messages "$ANN" '{"text":"**"'
check "malformed JSON gets a JSON error" jq -e '.error' <<<"$BODY" >/dev/null
LONG=$(printf '**a** %.0s' $(seq 1 600))
api_json POST /api/rooms/md/messages "$ANN" "$(jq -nc --arg t "$LONG" '{text:$t}')"
expect 201 "" "3,600 characters of markup are fine"
check "and render in full" [ "$(jget .event.html | grep -o '<strong>a</strong>' | wc -l)" = 600 ]
api_get "/api/rooms/md/messages?after=$LAST" "$BEN"
check "only the accepted message was stored" [ "$(jget '.events | length')" = 1 ]

# === edit and delete ==========================================================
# Receivers on all three transports are SIGKILLed and resumed from their
# last cursor over and over while edits and deletes are made; each gets
# every edit and delete event exactly once.
api_json POST /api/rooms/md/join "$ANN" '{}' >/dev/null || true
api_get "/api/rooms/md/messages?limit=1" "$BEN"
C1=$(jget '.events[-1].id')
last_id() { { grep -ao '"id":[0-9]*' "$1" 2>/dev/null || true; } | tail -n1 | cut -d: -f2; }
changes() { grep -ac '"type":"\(edit\|delete\)"' "$1" 2>/dev/null || true; }
NCHANGES=12
DEADLINE=$((SECONDS + 60))
recv_ws() {
	local out=$1 cursor
	while [ "$(changes "$out")" -lt "$NCHANGES" ] && [ $SECONDS -lt $DEADLINE ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C1}
		timeout -s KILL "0.$((RANDOM % 7 + 3))" "$WSCLIENT" --token "$BEN" --since "$cursor" \
			--timeout 60 "$WSBASE/ws" 2>/dev/null | grep -a --line-buffered '"id":' >>"$out" || true
	done
}
recv_sse() {
	local out=$1 cursor
	while [ "$(changes "$out")" -lt "$NCHANGES" ] && [ $SECONDS -lt $DEADLINE ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C1}
		timeout -s KILL "0.$((RANDOM % 7 + 3))" curl -sN -H "Authorization: Bearer $BEN" \
			-H "Last-Event-ID: $cursor" "$BASE/events" 2>/dev/null |
			grep --line-buffered -a '^data: {.*"id":.*}$' | sed -u 's/^data: //' >>"$out" || true
	done
}
recv_poll() {
	local out=$1 cursor=$C1 body
	while [ "$(changes "$out")" -lt "$NCHANGES" ] && [ $SECONDS -lt $DEADLINE ]; do
		body=$(timeout -s KILL "0.$((RANDOM % 7 + 3))" curl -sf -H "Authorization: Bearer $BEN" \
			"$BASE/poll?since=$cursor&timeout=2") || continue
		jq -c '.events[]' <<<"$body" >>"$out"
		cursor=$(jq -r .cursor <<<"$body")
	done
}
: >"$WORK/c-ws" ; : >"$WORK/c-sse"; : >"$WORK/c-poll"
recv_ws "$WORK/c-ws" & P1=$!
recv_sse "$WORK/c-sse" & P2=$!
recv_poll "$WORK/c-poll" & P3=$!

# ann's messages: 4 edited twice (the last over WebSocket), 4 deleted; each
# change retried once, which must add no event.
IDS=()
for i in 1 2 3 4 5 6 7 8; do
	api_json POST /api/rooms/md/messages "$ANN" "{\"text\":\"orig$i zebra$i\"}"
	IDS+=("$(jget .event.id)")
	sleep 0.1
done
for i in 0 1 2 3; do
	id=${IDS[$i]}
	api_json PATCH "/api/rooms/md/messages/$id" "$ANN" "{\"text\":\"edit$i lion$i\"}"
	[ "$STATUS" = 200 ] || fail "edit $id: $STATUS $BODY"
	FIRST=$(jget .event.id)
	api_json PATCH "/api/rooms/md/messages/$id" "$ANN" "{\"text\":\"edit$i lion$i\"}"
	[ "$(jget .duplicate)/$(jget .event.id)" = "true/$FIRST" ] || fail "a retried edit of $id is not the first: $BODY"
	echo "{\"op\":\"edit\",\"room\":\"md\",\"id\":$id,\"text\":\"**final$i** tiger$i\"}" >"$WORK/edit.json"
	"$WSCLIENT" --token "$ANN" --send-file "$WORK/edit.json" --count 2 --timeout 10 "$WSBASE/ws" >"$WORK/edit.out" 2>&1 || true
	grep -aq '"type":"ack".*"type":"edit"' "$WORK/edit.out" || fail "the WebSocket edit of $id is not acked: $(cat "$WORK/edit.out")"
	sleep 0.2
done
ok "edits by the author, over HTTP and WebSocket, retries answered with the first"
for i in 4 5 6 7; do
	id=${IDS[$i]}
	api DELETE "/api/rooms/md/messages/$id" -H "Authorization: Bearer $ANN"
	[ "$STATUS" = 200 ] || fail "delete $id: $STATUS $BODY"
	FIRST=$(jget .event.id)
	api DELETE "/api/rooms/md/messages/$id" -H "Authorization: Bearer $ANN"
	[ "$(jget .duplicate)/$(jget .event.id)" = "true/$FIRST" ] || fail "a retried delete of $id is not the first: $BODY"
	sleep 0.2
done
ok "deletes by the author, retries answered with the first"

api_json PATCH "/api/rooms/md/messages/${IDS[0]}" "$BEN" '{"text":"hijack"}'
expect 403 not_author "someone else cannot edit"
api DELETE "/api/rooms/md/messages/${IDS[0]}" -H "Authorization: Bearer $BEN"
expect 403 not_author "someone else cannot delete"
api_json PATCH "/api/rooms/md/messages/${IDS[4]}" "$ANN" '{"text":"back from the dead"}'
expect 409 message_deleted "a deleted message cannot be edited"
api DELETE "/api/rooms/md/messages/999999" -H "Authorization: Bearer $ANN"
expect 404 no_such_message "an unknown id"
api DELETE "/api/rooms/md/messages/abc" -H "Authorization: Bearer $ANN"
expect 404 no_such_message "an id that is no number"
api DELETE "/api/rooms/lobby/messages/${IDS[0]}" -H "Authorization: Bearer $ANN"
expect 404 no_such_message "a message of another room"
api_json PATCH "/api/rooms/md/messages/${IDS[0]}" "$ANN" '{"text":5}'
expect 422 invalid_field "an edit without string text"
api_json PATCH "/api/rooms/md/messages/${IDS[0]}" "$ANN" '{"text":"   "}'
expect 422 invalid "an edit to blank text"

wait $P1 $P2 $P3 || true
for f in c-ws c-sse c-poll; do
	n=$(jq -r 'select(.type == "edit" or .type == "delete") | .id' "$WORK/$f" | sort | uniq -d | wc -l)
	m=$(jq -r 'select(.type == "edit" or .type == "delete") | .id' "$WORK/$f" | sort -u | wc -l)
	check "$f: all $NCHANGES edits and deletes, each once, across kills and resumes" [ "$m" = "$NCHANGES" ] && [ "$n" = 0 ]
done

# --- history and search show the current state ---------------------------------
api_get "/api/rooms/md/messages?limit=200" "$BEN"
check "an edited message: current text, html and an edited time" \
	[ "$(jget ".events[] | select(.id == ${IDS[0]}) | [.text, .html, (.edited != null)] | @json")" = '["**final0** tiger0","<p><strong>final0</strong> tiger0</p>",true]' ]
check "a deleted message: a tombstone" \
	[ "$(jget ".events[] | select(.id == ${IDS[4]}) | [.deleted, .text, .html] | @json")" = '[true,null,null]' ]
check "a deleted message's text is in no event" bash -c '! grep -q "zebra[4-7]" <<<"$1"' _ "$BODY"
api_get "/api/search?q=tiger0" "$BEN"
check "search finds the current text" [ "$(jget '.results | length')" = 1 ]
for w in zebra0 lion0 zebra5; do
	api_get "/api/search?q=$w" "$BEN"
	check "search no longer finds $w" [ "$(jget '.results | length')" = 0 ]
done

# --- the deleted text has left the database file --------------------------------
stop_natterd
sqlite3 "$WORK/natter.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
check "the database file still holds the live text" grep -qa tiger1 "$WORK/natter.db"
check "no deleted text in the database file" bash -c '! grep -qa "zebra[4-7]" "$1"*' _ "$WORK/natter.db"

finish
