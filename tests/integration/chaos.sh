#!/usr/bin/env bash
# chaos.sh: kill -9 under load. Two senders (one over WebSocket, one over
# HTTP POST) send without pause, each retrying an unacknowledged message
# with the same client_id after a failure, while one receiver on each of
# WebSocket, SSE and long-poll follows the room and reconnects from its
# last id. natterd is SIGKILLed every CHAOS_ROUND_S seconds (CHAOS_KILLS
# times) and restarted on the same port. After each kill the database
# passes PRAGMA integrity_check; after each restart every acknowledged
# message is in history exactly once and history's ids strictly increase.
# At the end every receiver has seen exactly history's messages, in order,
# none twice. `make check` runs a few kills (< 60 s); `make chaos` runs
# CHAOS_KILLS=30.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

if ! command -v sqlite3 >/dev/null; then
	echo "chaos.sh: SKIP, the sqlite3 command is not installed"
	exit 77
fi
KILLS=${CHAOS_KILLS:-4}
ROUND=${CHAOS_ROUND_S:-4}

start_natterd
ARGS=(--listen "127.0.0.1:$PORT" --db "$WORK/natter.db" --db-dir "$NATTER_DB_DIR"
	--web-root "$NATTER_WEB_ROOT" --argon2-memory-kib 1024 --argon2-time 1
	--log-level info --poll-timeout-max 55)
WSBASE="ws://127.0.0.1:$PORT"
SENDER=$(register sender)
RWS=$(register rws)
RSSE=$(register rsse)
RPOLL=$(register rpoll)
api_json POST /api/rooms "$SENDER" '{"name":"t"}' >/dev/null
for tok in "$RWS" "$RSSE" "$RPOLL"; do
	api_json POST /api/rooms/t/join "$tok" '{}'
done
C0=$(jget .event.id)
stop_natterd

# Restart on the same port (SO_REUSEADDR), so clients simply reconnect.
restart() {
	: >>"$WORK/natterd.log"
	"$NATTERD" "${ARGS[@]}" >>"$WORK/natterd.log" 2>&1 &
	NATTERD_PID=$!
	for _ in $(seq 1 100); do
		curl -sf -o /dev/null "$BASE/healthz" && return 0
		sleep 0.05
	done
	fail_now "natterd did not come back on port $PORT"
}
restart
STOP="$WORK/stop"

# --- senders -------------------------------------------------------------------
# Each appends "client_id id" to its acked file for every acknowledgement.
send_http() {
	local i=1 out code
	while [ ! -e "$STOP" ]; do
		out=$(curl -s --max-time 5 -w ' %{http_code}' -H "Authorization: Bearer $SENDER" \
			-H 'Content-Type: application/json' \
			--data "{\"text\":\"h $i\",\"client_id\":\"h-$i\"}" \
			"$BASE/api/rooms/t/messages" 2>/dev/null) || out=" 000"
		code=${out##* }
		# 201, or 200 for a retry of one stored before the kill
		# (acknowledged now, with its first id).
		if [ "$code" = 201 ] || [ "$code" = 200 ]; then
			echo "h-$i $(jq -r .event.id <<<"${out% *}")" >>"$WORK/acked.http"
			i=$((i + 1))
		else
			sleep 0.05 # down, or restarting: the same client_id again
		fi
	done
}
send_ws() {
	local next=1 batch=0 cid
	: >"$WORK/ws.pending"
	while [ ! -e "$STOP" ]; do
		# The unacknowledged ones of the last run first, then new ones.
		cp "$WORK/ws.pending" "$WORK/ws.batch"
		while [ "$(wc -l <"$WORK/ws.batch")" -lt 50 ]; do
			echo "w-$next" >>"$WORK/ws.batch"
			next=$((next + 1))
		done
		sed 's/.*/{"op":"send","room":"t","text":"&","client_id":"&"}/' \
			"$WORK/ws.batch" >"$WORK/ws.send"
		batch=$((batch + 1))
		timeout -s KILL 20 "$WSCLIENT" --token "$SENDER" --send-file "$WORK/ws.send" \
			--timeout 1 "$WSBASE/ws" >"$WORK/ws.out.$batch" 2>/dev/null || true
		jq -r 'select(.type=="ack") | "\(.client_id) \(.id)"' "$WORK/ws.out.$batch" \
			2>/dev/null >>"$WORK/acked.ws" || true
		: >"$WORK/ws.pending"
		while read -r cid; do
			grep -q "^$cid " "$WORK/acked.ws" 2>/dev/null || echo "$cid" >>"$WORK/ws.pending"
		done <"$WORK/ws.batch"
		if [ -s "$WORK/ws.pending" ]; then sleep 0.1; fi
	done
	return 0
}

# --- receivers (as in transports.sh, until the stop file and caught up) ------------
last_id() { { grep -o '"id":[0-9]*' "$1" 2>/dev/null || true; } | tail -n1 | cut -d: -f2; }
done_reading() { [ -e "$STOP.read" ]; }
recv_ws() {
	local out=$1 cursor
	until done_reading; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C0}
		timeout -s KILL 10 "$WSCLIENT" --token "$RWS" --since "$cursor" \
			--timeout 5 "$WSBASE/ws" >>"$out" 2>/dev/null || sleep 0.1
	done
}
recv_sse() {
	local out=$1 cursor
	until done_reading; do
		cursor=$(last_id "$out"); cursor=${cursor:-$C0}
		timeout -s KILL 5 curl -sN -H "Authorization: Bearer $RSSE" \
			-H "Last-Event-ID: $cursor" "$BASE/events" 2>/dev/null |
			grep --line-buffered -a '^data: {.*}$' | sed -u 's/^data: //' >>"$out" || true
		sleep 0.1
	done
}
recv_poll() {
	local out=$1 cursor=$C0 body
	until done_reading; do
		body=$(curl -sf --max-time 10 -H "Authorization: Bearer $RPOLL" \
			"$BASE/poll?since=$cursor&timeout=2") || { sleep 0.1; continue; }
		jq -c '.events[]' <<<"$body" >>"$out"
		cursor=$(jq -r .cursor <<<"$body")
	done
}

# --- checks ----------------------------------------------------------------------
# History of room t (messages), "id client_id" per line, via the API.
history() {
	local after=$C0 more=true
	: >"$WORK/history"
	while [ "$more" = true ]; do
		api_get "/api/rooms/t/messages?after=$after&limit=200" "$SENDER"
		[ "$STATUS" = 200 ] || { echo "history: status $STATUS" >&2; return 1; }
		jq -r '.events[] | select(.type=="message") | "\(.id) \(.client_id)"' <<<"$BODY" >>"$WORK/history"
		more=$(jget .has_more)
		after=$(jget '.events[-1].id')
	done
}
# Every acknowledged message in history once, with its acknowledged id;
# ids strictly increasing; no client_id twice.
check_history() {
	local what=$1
	# Acknowledgements first: one that comes after the history read
	# would not be in it yet.
	cat "$WORK"/acked.* 2>/dev/null | sort -u >"$WORK/acked.all"
	history || { fail "$what: history unreadable"; return; }
	local acked missing dup order
	acked=$(wc -l <"$WORK/acked.all")
	missing=$(awk 'NR == FNR {h[$2 " " $1] = 1; next} !(($1 " " $2) in h)' \
		"$WORK/history" "$WORK/acked.all" | wc -l)
	dup=$(awk '{print $2}' "$WORK/history" | sort | uniq -d | wc -l)
	order=$(awk 'NR > 1 && $1 <= prev {bad++} {prev = $1} END {print bad + 0}' "$WORK/history")
	check "$what: all $acked acknowledged messages in history with their ids ($missing missing)" \
		test "$missing" = 0
	check "$what: no message twice in $(wc -l <"$WORK/history") ($dup duplicated)" test "$dup" = 0
	check "$what: ids strictly increase ($order out of order)" test "$order" = 0
}

send_http & SH=$!
send_ws & SW=$!
recv_ws "$WORK/r.ws" & R1=$!
recv_sse "$WORK/r.sse" & R2=$!
recv_poll "$WORK/r.poll" & R3=$!

integrity_ok=0
for k in $(seq 1 "$KILLS"); do
	sleep "$ROUND"
	kill -KILL "$NATTERD_PID"
	wait "$NATTERD_PID" 2>/dev/null || true
	NATTERD_PID=
	r=$(sqlite3 "$WORK/natter.db" 'PRAGMA integrity_check;' 2>&1)
	[ "$r" = ok ] && integrity_ok=$((integrity_ok + 1)) || echo "# kill $k: integrity_check: $r"
	restart
	if [ "$k" = "$KILLS" ] || [ $((k % 5)) = 1 ]; then
		check_history "after kill $k"
	fi
done
check "integrity_check ok after each of the $KILLS kills ($integrity_ok)" test "$integrity_ok" = "$KILLS"

touch "$STOP"
wait "$SH" "$SW" || true
check_history "at the end"
echo "# acknowledged: http $(wc -l <"$WORK/acked.http") ws $(sort -u "$WORK/acked.ws" | wc -l)"
check "both senders were acknowledged many times" \
	test "$(wc -l <"$WORK/acked.http")" -gt 50 -a "$(sort -u "$WORK/acked.ws" | wc -l)" -gt 50
awk '{print $1}' "$WORK/history" >"$WORK/expected"
# The receivers catch up (at most 20 s), then stop.
for _ in $(seq 1 200); do
	n=0
	for t in ws sse poll; do
		[ "$(last_id "$WORK/r.$t")" = "$(tail -n1 "$WORK/expected")" ] && n=$((n + 1))
	done
	[ "$n" = 3 ] && break
	sleep 0.1
done
touch "$STOP.read"
kill "$R1" "$R2" "$R3" 2>/dev/null || true
wait "$R1" "$R2" "$R3" 2>/dev/null || true
for t in ws sse poll; do
	jq -r 'select(.type=="message" and .room=="t") | .id' "$WORK/r.$t" >"$WORK/r.$t.ids" 2>/dev/null
	check "$t receiver: all $(wc -l <"$WORK/expected") messages, history's ids, in order, none twice" \
		cmp -s "$WORK/expected" "$WORK/r.$t.ids"
done
finish
