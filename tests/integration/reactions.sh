#!/usr/bin/env bash
# reactions.sh: reactions and replies. Reactions from two users are
# aggregated per reader in history ({emoji, count, me}); a repeated PUT or
# DELETE stores no event; only members react, never on a deleted message,
# at most 20 different emoji on one message. A reply carries its
# original's id, author and a plain-text excerpt; a bad reply_to is a 400.
# Reaction, edit and delete events reach receivers on all three
# transports exactly once across kills and resumes, and a receiver that
# resumes from the bus's ring gets a deleted message as its tombstone,
# never its text.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

start_natterd
WSBASE="ws://127.0.0.1:$PORT"

ANN=$(register re_ann)
BEN=$(register re_ben)
CAT=$(register re_cat)
api_json POST /api/rooms "$ANN" '{"name":"rx"}' >/dev/null
api_json POST /api/rooms "$CAT" '{"name":"rx-other"}' >/dev/null
api_json POST /api/rooms/rx/join "$BEN" '{}'
expect 200 "" "ben joins #rx"
C0=$(jget .event.id)

react() { # METHOD TOKEN MSG EMOJI(url-encoded)
	api "$1" "/api/rooms/rx/messages/$3/reactions/$4" -H "Authorization: Bearer $2"
}
last_event() { curl -sf -H "Authorization: Bearer $ANN" "$BASE/api/rooms/rx/messages?limit=1" | jq -r '.events[-1].id'; }
THUMB=%F0%9F%91%8D # 👍

api_json POST /api/rooms/rx/messages "$ANN" '{"text":"**first** message"}'
M1=$(jget .event.id)

# --- toggled from two users, aggregated for each reader ------------------------
react PUT "$ANN" "$M1" "$THUMB"
expect 200 "" "ann reacts 👍"
check "the answer carries the event and ann's aggregate" \
	[ "$(jq -c '[.event.type, .event.op, .event.emoji, .event.count, .reactions]' <<<"$BODY")" = '["reaction","add","👍",1,[{"emoji":"👍","count":1,"me":true}]]' ]
react PUT "$BEN" "$M1" ":+1:"
expect 200 "" "ben reacts with the shortcode :+1:"
check "a shortcode is stored as its emoji" [ "$(jget .event.emoji)/$(jget .event.count)" = "👍/2" ]
react PUT "$BEN" "$M1" "%E2%9D%A4%EF%B8%8F" # ❤️
expect 200 "" "ben reacts ❤️"
api_get "/api/rooms/rx/messages?limit=50" "$ANN"
check "ann's history: 👍 2 (me), ❤️ 1 (not me), in first-use order" \
	[ "$(jget ".events[] | select(.id == $M1) | .reactions | @json")" = '[{"emoji":"👍","count":2,"me":true},{"emoji":"❤️","count":1,"me":false}]' ]
api_get "/api/rooms/rx/messages?limit=50" "$BEN"
check "ben's history: both mine" \
	[ "$(jget ".events[] | select(.id == $M1) | [.reactions[].me] | @json")" = '[true,true]' ]

# --- idempotent: a repeated PUT or DELETE stores nothing ------------------------
L=$(last_event)
react PUT "$ANN" "$M1" "$THUMB"
expect 200 "" "a repeated PUT"
check "answers the current aggregate and no event" [ "$(jget .event)/$(jget '.reactions[0].count')" = "null/2" ]
react DELETE "$CAT" "$M1" "$THUMB"
expect 404 no_such_message "a non-member cannot unreact (404)"
react PUT "$CAT" "$M1" "$THUMB"
expect 404 no_such_message "a non-member cannot react (404)"
react DELETE "$ANN" "$M1" "%F0%9F%94%A5"
expect 200 "" "a DELETE of a reaction never made"
check "stores no event" [ "$(jget .event)" = null ]
check "no event was added by any of them" [ "$(last_event)" = "$L" ]
react DELETE "$ANN" "$M1" "$THUMB"
expect 200 "" "ann takes her 👍 back"
check "the count drops to 1" [ "$(jget .event.op)/$(jget .event.count)/$(jget '.reactions[0].me')" = "remove/1/false" ]
react DELETE "$ANN" "$M1" "$THUMB"
check "a repeated DELETE stores nothing" [ "$STATUS/$(jget .event)" = "200/null" ]

# --- what a reaction may be ------------------------------------------------------
for e in "%F0%9F%87%AB%F0%9F%87%B7" "%F0%9F%91%A8%E2%80%8D%F0%9F%91%A9%E2%80%8D%F0%9F%91%A7" "%F0%9F%91%8D%F0%9F%8F%BD" "%E2%9C%85"; do
	react PUT "$BEN" "$M1" "$e"
	expect 200 "" "one emoji grapheme cluster is a reaction ($e)"
done
for e in "a" "%F0%9F%91%8D%F0%9F%91%8D" ":nosuchcode:" "%20" "1" "%FF" "%F0%9F%91%8Dx"; do
	react PUT "$BEN" "$M1" "$e"
	expect 400 bad_emoji "not one emoji is refused ($e)"
done
react PUT "$BEN" 999999 "$THUMB"
expect 404 no_such_message "a reaction on no message"
api_json POST /api/rooms/rx-other/messages "$CAT" '{"text":"elsewhere"}'
OTHER=$(jget .event.id)
react PUT "$BEN" "$OTHER" "$THUMB"
expect 404 no_such_message "a reaction on a message of another room"
react PUT "$BEN" "$C0" "$THUMB"
expect 404 no_such_message "a reaction on an event that is no message"

# --- a sane cap on distinct emoji per message ---------------------------------------
api_json POST /api/rooms/rx/messages "$ANN" '{"text":"react to me a lot"}'
M2=$(jget .event.id)
n=0
for code in "+1" "-1" "100" "angry" "blush" "broken_heart" "bug" "clap" "coffee" "cry" "eyes" "fire" "grin" "heart" "heart_eyes" "joy" "laughing" "ok_hand" "party" "pray"; do
	react PUT "$BEN" "$M2" ":$code:"
	[ "$STATUS" = 200 ] && n=$((n + 1))
done
check "20 different emoji on one message" [ "$n" = 20 ]
react PUT "$ANN" "$M2" ":rocket:"
expect 409 too_many_reactions "the 21st different emoji is refused"
react PUT "$ANN" "$M2" ":fire:"
expect 200 "" "one of the 20 may still be added to"

# --- WebSocket react / unreact ----------------------------------------------------------
printf '{"op":"react","room":"rx","id":%s,"emoji":":eyes:"}\n' "$M1" >"$WORK/react.json"
"$WSCLIENT" --token "$ANN" --send-file "$WORK/react.json" --count 2 --timeout 10 "$WSBASE/ws" >"$WORK/react.out" 2>&1 || true
check "a WebSocket react is acked with its reaction event" grep -aq '"type":"ack".*"type":"reaction".*"op":"add"' "$WORK/react.out"
printf '{"op":"unreact","room":"rx","id":%s,"emoji":"👀"}\n' "$M1" >"$WORK/unreact.json"
"$WSCLIENT" --token "$ANN" --send-file "$WORK/unreact.json" --count 2 --timeout 10 "$WSBASE/ws" >"$WORK/unreact.out" 2>&1 || true
check "a WebSocket unreact is acked with its removal" grep -aq '"type":"ack".*"type":"reaction".*"op":"remove"' "$WORK/unreact.out"
printf '{"op":"react","room":"rx","id":%s,"emoji":"nope"}\n' "$M1" >"$WORK/bad.json"
"$WSCLIENT" --token "$ANN" --send-file "$WORK/bad.json" --count 2 --timeout 5 "$WSBASE/ws" >"$WORK/bad.out" 2>&1 || true
check "a WebSocket react with no emoji is a bad_emoji error, as over HTTP" grep -aq '"type":"error","error":"bad_emoji"' "$WORK/bad.out"

# --- replies -------------------------------------------------------------------------
LONG=$(printf '汉字%.0s' $(seq 1 80)) # 160 CJK characters
api_json POST /api/rooms/rx/messages "$ANN" "$(jq -nc --arg t "# Title *with* \`code\`
$LONG" '{text:$t}')"
ORIG=$(jget .event.id)
api_json POST /api/rooms/rx/messages "$BEN" "{\"text\":\"agreed\",\"reply_to\":$ORIG,\"client_id\":\"re-r1\"}"
expect 201 "" "a reply"
Q=$(jget .event.reply_to)
check "the quote names the original and its author" [ "$(jq -c '[.id, .author]' <<<"$Q")" = "[$ORIG,\"re_ann\"]" ]
EX=$(jq -r .excerpt <<<"$Q")
check "the excerpt is plain text (no markup)" bash -c '[[ "$1" == "Title with code 汉字"* ]]' _ "$EX"
check "the excerpt is cut at 100 characters plus an ellipsis, UTF-8-safe" \
	[ "$(python3 -c 'import sys; s=sys.argv[1]; print(len(s), s[-1])' "$EX")" = "101 …" ]
REPLY=$(jget .event.id)
api_json POST /api/rooms/rx/messages "$BEN" "{\"text\":\"agreed\",\"reply_to\":$ORIG,\"client_id\":\"re-r1\"}"
check "a retried reply is the first" [ "$(jget .event.id)" = "$REPLY" ]
api_json POST /api/rooms/rx/messages "$BEN" "{\"text\":\"x\",\"reply_to\":$OTHER}"
expect 400 bad_reply_to "a reply to a message of another room"
api_json POST /api/rooms/rx/messages "$BEN" '{"text":"x","reply_to":999999}'
expect 400 bad_reply_to "a reply to no message"
api_json POST /api/rooms/rx/messages "$BEN" "{\"text\":\"x\",\"reply_to\":$C0}"
expect 400 bad_reply_to "a reply to an event that is no message"
api_json POST /api/rooms/rx/messages "$BEN" '{"text":"x","reply_to":"12"}'
expect 422 invalid_field "a reply_to that is no integer"
printf '{"op":"send","room":"rx","text":"ws reply","reply_to":%s}\n' "$ORIG" >"$WORK/reply.json"
"$WSCLIENT" --token "$BEN" --send-file "$WORK/reply.json" --count 2 --timeout 10 "$WSBASE/ws" >"$WORK/reply.out" 2>&1 || true
check "a WebSocket send carries reply_to too" grep -aq "\"type\":\"ack\".*\"reply_to\":{\"id\":$ORIG" "$WORK/reply.out"

# A deleted original: its replies' quotes say so and keep no text of it;
# its reactions go with it; a reply to it now is fine and shows it deleted.
react PUT "$BEN" "$ORIG" "$THUMB" >/dev/null
api DELETE "/api/rooms/rx/messages/$ORIG" -H "Authorization: Bearer $ANN"
expect 200 "" "the original is deleted"
api_get "/api/rooms/rx/messages?limit=100" "$BEN"
check "the reply's quote shows the original deleted, without its excerpt" \
	[ "$(jget ".events[] | select(.id == $REPLY) | .reply_to | @json")" = "{\"id\":$ORIG,\"author\":\"re_ann\",\"deleted\":true}" ]
check "the reply keeps its own text" [ "$(jget ".events[] | select(.id == $REPLY) | .text")" = agreed ]
check "the deleted message has no reactions left" [ "$(jget ".events[] | select(.id == $ORIG) | .reactions")" = null ]
check "no page holds the deleted text" bash -c '! grep -q "汉字汉字" <<<"$1"' _ "$BODY"
react PUT "$BEN" "$ORIG" "$THUMB"
expect 409 message_deleted "no reaction on a deleted message"
api_json POST /api/rooms/rx/messages "$BEN" "{\"text\":\"late\",\"reply_to\":$ORIG}"
check "a reply to a deleted message shows it deleted" [ "$STATUS/$(jget .event.reply_to.deleted)" = "201/true" ]

# --- the ring: a resume from before a deleted message gets its tombstone -----------
api_json POST /api/rooms/rx/messages "$ANN" '{"text":"ringsecret walrus"}'
RM=$(jget .event.id)
api_json PATCH "/api/rooms/rx/messages/$RM" "$ANN" '{"text":"ringsecret walrus edited"}' >/dev/null
api_json POST /api/rooms/rx/messages "$BEN" "{\"text\":\"quoting\",\"reply_to\":$RM}" >/dev/null
api DELETE "/api/rooms/rx/messages/$RM" -H "Authorization: Bearer $ANN"
expect 200 "" "a message still in the ring is deleted"
ring_check() { # WHERE
	api_get "/poll?since=$((RM - 1))&timeout=1" "$BEN"
	check "$1: long-poll resume gets the tombstone, not the text" \
		[ "$(jget ".events[] | select(.id == $RM) | .deleted")" = true ]
	check "$1: long-poll: no deleted text in any event" bash -c '! grep -q ringsecret <<<"$1"' _ "$BODY"
	timeout 4 curl -sN -H "Authorization: Bearer $BEN" -H "Last-Event-ID: $((RM - 1))" "$BASE/events" |
		grep --line-buffered -a '^data: {.*"id":' | head -n 4 >"$WORK/ring-sse.out" || true
	check "$1: SSE resume: the tombstone first, no deleted text" \
		bash -c 'grep -q "\"id\":$2,.*\"deleted\":true" "$1" && ! grep -q ringsecret "$1"' _ "$WORK/ring-sse.out" "$RM"
	"$WSCLIENT" --token "$BEN" --since "$((RM - 1))" --count 4 --timeout 10 "$WSBASE/ws" >"$WORK/ring-ws.out" 2>&1 || true
	check "$1: WebSocket resume: the tombstone, no deleted text" \
		bash -c 'grep -q "\"id\":$2,.*\"deleted\":true" "$1" && ! grep -q ringsecret "$1"' _ "$WORK/ring-ws.out" "$RM"
}
ring_check "from the ring"
stop_natterd
start_natterd
WSBASE="ws://127.0.0.1:$PORT"
ring_check "from the store, after a restart"

# === reaction, edit and delete events exactly once across kills ===================
# Receivers on all three transports are SIGKILLed and resumed from their
# last cursor over and over while reactions, edits and deletes are made.
api_get "/api/rooms/rx/messages?limit=1" "$BEN"
C1=$(jget '.events[-1].id')
last_id() { { grep -ao '^{"id":[0-9]*' "$1" 2>/dev/null || true; } | tail -n1 | cut -d: -f2; }
changes() { grep -ac '"type":"\(edit\|delete\|reaction\)"' "$1" 2>/dev/null || true; }
NCHANGES=16
DEADLINE=$((SECONDS + 60))
recv_ws() {
	local out=$1 cursor
	while [ "$(changes "$out")" -lt "$NCHANGES" ] && [ $SECONDS -lt $DEADLINE ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C1}
		timeout -s KILL "0.$((RANDOM % 7 + 3))" "$WSCLIENT" --token "$BEN" --since "$cursor" \
			--timeout 60 "$WSBASE/ws" 2>/dev/null | grep -a --line-buffered '^{"id":' >>"$out" || true
	done
}
recv_sse() {
	local out=$1 cursor
	while [ "$(changes "$out")" -lt "$NCHANGES" ] && [ $SECONDS -lt $DEADLINE ]; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C1}
		timeout -s KILL "0.$((RANDOM % 7 + 3))" curl -sN -H "Authorization: Bearer $BEN" \
			-H "Last-Event-ID: $cursor" "$BASE/events" 2>/dev/null |
			grep --line-buffered -a '^data: {"id":.*}$' | sed -u 's/^data: //' >>"$out" || true
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
: >"$WORK/c-ws"; : >"$WORK/c-sse"; : >"$WORK/c-poll"
recv_ws "$WORK/c-ws" & P1=$!
recv_sse "$WORK/c-sse" & P2=$!
recv_poll "$WORK/c-poll" & P3=$!

# 4 messages: each reacted to by two users (one retried, adding nothing),
# one reaction taken back, then edited or deleted: 4 x 4 = 16 changes.
for i in 1 2 3 4; do
	api_json POST /api/rooms/rx/messages "$ANN" "{\"text\":\"kr$i\"}"
	id=$(jget .event.id)
	react PUT "$ANN" "$id" "$THUMB"; [ "$STATUS" = 200 ] || fail "react $id: $STATUS $BODY"
	react PUT "$ANN" "$id" "$THUMB"; [ "$(jget .event)" = null ] || fail "a retried react on $id stored an event"
	react PUT "$BEN" "$id" ":fire:"; [ "$STATUS" = 200 ] || fail "react $id: $STATUS $BODY"
	react DELETE "$ANN" "$id" "$THUMB"; [ "$STATUS" = 200 ] || fail "unreact $id: $STATUS $BODY"
	if [ $((i % 2)) = 0 ]; then
		api DELETE "/api/rooms/rx/messages/$id" -H "Authorization: Bearer $ANN"
	else
		api_json PATCH "/api/rooms/rx/messages/$id" "$ANN" "{\"text\":\"kr$i edited\"}"
	fi
	[ "$STATUS" = 200 ] || fail "change $id: $STATUS $BODY"
	sleep 0.3
done
wait $P1 $P2 $P3 || true
for f in c-ws c-sse c-poll; do
	sel='select(.type == "edit" or .type == "delete" or .type == "reaction") | .id'
	n=$(jq -r "$sel" "$WORK/$f" | sort | uniq -d | wc -l)
	m=$(jq -r "$sel" "$WORK/$f" | sort -u | wc -l)
	check "$f: all $NCHANGES reaction, edit and delete events, each once, across kills and resumes ($m, $n twice)" \
		[ "$m" = "$NCHANGES" ] && [ "$n" = 0 ]
done

finish
