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

finish
