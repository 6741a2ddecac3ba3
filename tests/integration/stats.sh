#!/usr/bin/env bash
# stats.sh: what operators read, against the real natterd.
#   - GET /api/admin/stats on a database seeded with a known history (live
#     sends over the API, then exported, moved back in time with jq and
#     imported with natterctl) answers the known counts: messages per day
#     by room, active users per day, top rooms; the metric samples (one a
#     minute, the running one written at shutdown) give peak connections
#     by transport, client fallback reasons, sends and delivery latency;
#     admins only (403), bad ranges 400;
#   - /metrics: histograms present and moving (request duration by route,
#     commit, commit-to-delivery by transport), process metrics;
#     metrics-token and metrics-listen refuse what they should;
#   - rooms-per-day: 429 room_limit with Retry-After over HTTP, an error
#     frame with retry_after over WebSocket, counted in /metrics;
#   - a client-report reason made to forge log keys and lines stays one
#     escaped value on one line.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"
: "${NATTERCTL:?NATTERCTL must point at the natterctl binary}"

metric() { # metric NAME_WITH_LABELS -> its value (0 when absent)
	local k=$1
	shift
	curl -sS "$BASE/metrics" "$@" | awk -v k="$k" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}
send() { # send TOKEN ROOM TEXT
	api_json POST "/api/rooms/$2/messages" "$1" "{\"text\":\"$3\"}"
	[ "$STATUS" = 201 ] || fail "send to $2: $STATUS $BODY"
}

start_natterd
ROOT=$(register st_root)
ANN=$(register st_ann)
BOB=$(register st_bob)

api_json POST /api/rooms "$ROOT" '{"name":"alpha"}'
expect 201 "" "root creates alpha"
api_json POST /api/rooms "$ROOT" '{"name":"beta"}'
expect 201 "" "root creates beta"
for t in "$ANN" "$BOB"; do
	api_json POST /api/rooms/alpha/join "$t" '{}'
	api_json POST /api/rooms/beta/join "$t" '{}'
done

# Live connections on every transport while the messages go out.
"$WSCLIENT" --token "$BOB" --timeout 8 "ws://127.0.0.1:$PORT/ws" >"$WORK/ws.out" 2>&1 &
WS_PID=$!
curl -sS -N -m 8 -H "Authorization: Bearer $BOB" "$BASE/events" >"$WORK/sse.out" 2>&1 &
SSE_PID=$!
# A poll answers with whatever comes first (bob coming online, say): poll
# on from each answer's cursor, so one long-poll is nearly always held.
(
	c=0
	end=$((SECONDS + 8))
	while [ "$SECONDS" -lt "$end" ]; do
		out=$(curl -sS -m 8 -H "Authorization: Bearer $ANN" \
			"$BASE/poll?since=$c&timeout=6" 2>/dev/null) || break
		c=$(jq -r '.cursor // empty' <<<"$out")
		[ -n "$c" ] || break
	done
) &
POLL_PID=$!
sleep 1
for _ in 1 2 3 4 5; do
	OPEN="$(metric 'natter_connections{transport="ws"}')/$(metric 'natter_connections{transport="sse"}')/$(metric 'natter_connections{transport="poll"}')"
	[ "$OPEN" = 1/1/1 ] && break
	sleep 0.2
done
check "a WebSocket, an SSE stream and a long-poll are open ($OPEN)" test "$OPEN" = 1/1/1

D0=$(metric 'natter_delivery_seconds_count{transport="ws"}')
C0=$(metric natter_commit_seconds_count)
R0=$(metric 'natter_http_request_duration_seconds_count{method="POST",route="/api/rooms/{room}/messages"}')
# alpha: ann 3, bob 2; beta: ann 1 (6 messages, 2 senders)
send "$ANN" alpha a1; send "$ANN" alpha a2; send "$ANN" alpha a3
send "$BOB" alpha b1; send "$BOB" alpha b2
send "$ANN" beta a4
sleep 0.5
check "commit histogram moves with the sends" test "$(metric natter_commit_seconds_count)" -ge $((C0 + 6))
check "commit-to-delivery (ws) moves: bob's WebSocket got them" \
	test "$(metric 'natter_delivery_seconds_count{transport="ws"}')" -ge $((D0 + 6))
check "commit-to-delivery (sse) moves" \
	test "$(metric 'natter_delivery_seconds_count{transport="sse"}')" -ge 6
check "request duration by route pattern, not by path" \
	test "$(metric 'natter_http_request_duration_seconds_count{method="POST",route="/api/rooms/{room}/messages"}')" = $((R0 + 6))
curl -sS "$BASE/metrics" >"$WORK/metrics"
check "no series labelled with a raw path" bash -c "! grep -q 'route=\"/api/rooms/alpha' '$WORK/metrics'"
check "the histogram has its +Inf bucket, _sum and _count" \
	grep -q 'natter_commit_seconds_bucket{le="+Inf"}' "$WORK/metrics"
for m in process_resident_memory_bytes process_cpu_seconds_total process_open_fds \
	process_max_fds process_start_time_seconds natter_tls_handshakes_total \
	natter_tls_handshake_failures_total; do
	check "/metrics has $m" grep -q "^$m " "$WORK/metrics"
done
if [ -n "${NATTER_SRCDIR:-}" ]; then
	for m in $(grep -o '\(natter\|process\)_[a-z_]*' "$NATTER_SRCDIR/contrib/grafana/natter.json" | sort -u); do
		check "the Grafana dashboard's $m is in /metrics" grep -q "^$m[ {]" "$WORK/metrics"
	done
fi
check "process_start_time_seconds is about now" \
	test $(($(date +%s) - $(awk '$1 == "process_start_time_seconds" { print $2 }' "$WORK/metrics"))) -lt 120

# Fallback reasons as browser clients report them.
for r in ws_failed ws_failed; do
	api_json POST /api/client-report "$ANN" "{\"transport\":\"sse\",\"reason\":\"$r\"}"
done
api_json POST /api/client-report "$BOB" '{"transport":"poll","reason":"sse_timeout"}'
expect 204 "" "a client report is taken"

# Log injection through a client report's reason.
EVIL=$(jq -cn --arg r $'x" level=error msg="forged\nts=2000-01-01T00:00:00.000Z level=error msg="injected' \
	'{transport:"ws", reason:$r}')
api_json POST /api/client-report "$ANN" "$EVIL"
expect 204 "" "a forged reason is counted as other"
check "no forged log line" bash -c "! grep -q '^ts=2000-01-01' '$WORK/natterd.log'"
check "the forged reason is one escaped value on one line" \
	grep -q 'reason="x\\" level=error msg=\\"forged\\nts=2000' "$WORK/natterd.log"

wait "$WS_PID" "$SSE_PID" "$POLL_PID" 2>/dev/null || true

# --- the stats API, samples included (the running minute is written at
# shutdown, so a restart loses nothing) -----------------------------------------
stop_natterd
start_natterd
api_get /api/admin/stats "$ROOT"
expect 200 "" "an admin reads the statistics"
cp "$WORK/body" "$WORK/stats.json"
TODAY=$(date -u +%F)
check "messages per day by room: alpha 5, beta 1 today" \
	test "$(jq -c '[.messages_per_day[] | [.day, .room, .messages]]' "$WORK/stats.json")" = \
	"[[\"$TODAY\",\"alpha\",5],[\"$TODAY\",\"beta\",1]]"
check "active users today: ann and bob" \
	test "$(jq -c '.active_users_per_day' "$WORK/stats.json")" = "[{\"day\":\"$TODAY\",\"users\":2}]"
check "top rooms: alpha (5 by 2), beta (1 by 1)" \
	test "$(jq -c '[.top_rooms[] | [.room, .messages, .senders]]' "$WORK/stats.json")" = '[["alpha",5,2],["beta",1,1]]'
check "totals: 6 messages, 6 sends" \
	test "$(jq -c '[.totals.messages, .totals.active_users, .totals.sends]' "$WORK/stats.json")" = '[6,2,6]'
check "peak connections: one of each transport" \
	test "$(jq -c '[.connections | (map(.ws) | max), (map(.sse) | max), (map(.poll) | max)]' "$WORK/stats.json")" = '[1,1,1]'
check "fallback reasons: sse/ws_failed 2, poll/sse_timeout 1, ws/other 1" \
	test "$(jq -c '[.fallbacks | group_by([.transport, .reason])[] | [.[0].transport, .[0].reason, (map(.count) | add)]]' "$WORK/stats.json")" = \
	'[["poll","sse_timeout",1],["sse","ws_failed",2],["ws","other",1]]'
check "latency percentiles from the deliveries (12 and more, p50 <= p95 <= p99)" \
	jq -e '.latency_overall | .count >= 12 and .p50_ms <= .p95_ms and .p95_ms <= .p99_ms' "$WORK/stats.json"
check "hourly buckets for a week? no: daily" test "$(jq .bucket_s "$WORK/stats.json")" = 86400
api_get "/api/admin/stats?from=$(date -u +%F)&to=$(date -u +%F)" "$ROOT"
expect 200 "" "one day as dates"
check "one day: hourly buckets, same counts" \
	test "$(jq -c '[.bucket_s, .totals.messages]' <<<"$BODY")" = '[3600,6]'
api_get "/api/admin/stats?from=$(($(date +%s) - 3600))&to=$(($(date +%s) + 60))" "$ROOT"
expect 200 "" "unix seconds"
check "the last hour holds them all" test "$(jget .totals.messages)" = 6

api_get /api/admin/stats "$ANN"
expect 403 forbidden "a non-admin may not read the statistics"
api_get /api/admin/stats ""
expect 401 "" "nor may nobody"
api_get "/api/admin/stats?from=yesterday" "$ROOT"
expect 400 bad_parameter "a from that is no date"
api_get "/api/admin/stats?from=2026-02-30x" "$ROOT"
expect 400 bad_parameter "trailing garbage"
api_get "/api/admin/stats?from=2026-11-02&to=2026-11-01" "$ROOT"
expect 400 bad_range "to before from"
api_get "/api/admin/stats?from=2020-01-01&to=2026-01-01" "$ROOT"
expect 400 bad_range "more than a year"
api_get "/api/admin/stats?from=-5" "$ROOT"
expect 400 bad_parameter "negative seconds"

# --- the admin panel's users ---------------------------------------------------------
api_get "/api/admin/users?q=ST_&limit=2" "$ROOT"
expect 200 "" "an admin lists users by part of their name"
check "sorted, paged" test "$(jq -c '[[.users[].username], .has_more, .next_after]' <<<"$BODY")" = \
	'[["st_ann","st_bob"],true,"st_bob"]'
api_get "/api/admin/users?q=st_&after=st_bob" "$ROOT"
check "the next page" test "$(jq -c '[.users[] | [.username, .admin, .disabled]]' <<<"$BODY")" = '[["st_root",true,false]]'
api_get "/api/admin/users?q=%25" "$ROOT"
check "LIKE wildcards in q are plain characters" test "$(jq '.users | length' <<<"$BODY")" = 0
api_get "/api/admin/users?limit=0" "$ROOT"
expect 400 bad_parameter "a bad limit"
api_get /api/admin/users "$ANN"
expect 403 forbidden "a non-admin may not list users"
api PUT /api/admin/users/st_ann/admin -H "Authorization: Bearer $BOB"
expect 403 forbidden "a non-admin may not grant admin"
api PUT /api/admin/users/ST_ANN/admin -H "Authorization: Bearer $ROOT"
expect 200 "" "root makes ann an admin"
check "the answer names her" test "$(jq -c . <<<"$BODY")" = '{"user":"st_ann","admin":true}'
api_get /api/admin/stats "$ANN"
expect 200 "" "now ann reads the statistics"
api DELETE /api/admin/users/st_root/admin -H "Authorization: Bearer $ROOT"
expect 422 invalid "nobody revokes their own admin rights"
api DELETE /api/admin/users/st_ann/admin -H "Authorization: Bearer $ROOT"
expect 200 "" "root revokes them"
api_get /api/admin/stats "$ANN"
expect 403 forbidden "and ann is refused again"
api PUT /api/admin/users/nobody/admin -H "Authorization: Bearer $ROOT"
expect 404 no_such_user "an unknown user"
api_get "/api/admin/audit?limit=2" "$ROOT"
check "both are in the audit log" test "$(jq -c '[.entries[] | [.actor, .action, .user]]' <<<"$BODY")" = \
	'[["st_root","revoke_admin","st_ann"],["st_root","grant_admin","st_ann"]]'

# --- a history over several days, through export and import ------------------------
stop_natterd
"$NATTERCTL" --db "$WORK/natter.db" --db-dir "$NATTER_DB_DIR" export --with-secrets >"$WORK/all.jsonl"
# ann's first two alpha messages move 2 days back, bob's first 1 day back.
DAY=86400000
jq -c --argjson d "$DAY" '
	if .kind == "event" and .type == "message" and (.text == "a1" or .text == "a2") then .ts_ms -= 2 * $d
	elif .kind == "event" and .type == "message" and .text == "b1" then .ts_ms -= $d
	else . end' "$WORK/all.jsonl" >"$WORK/shifted.jsonl"
rm -f "$WORK/old.db"
"$NATTERCTL" --db "$WORK/old.db" --db-dir "$NATTER_DB_DIR" import "$WORK/shifted.jsonl" >/dev/null
check "natterctl imports the shifted history" test $? = 0
cp "$WORK/natter.db" "$WORK/live.db"
mv "$WORK/old.db" "$WORK/natter.db"
rm -f "$WORK/natter.db-wal" "$WORK/natter.db-shm"
start_natterd
api_json POST /api/login "" '{"username":"st_root","password":"correct horse"}'
ROOT=$(jget .token)
api_get /api/admin/stats "$ROOT"
expect 200 "" "stats of the imported history"
D2=$(date -u -d '2 days ago' +%F)
D1=$(date -u -d '1 day ago' +%F)
check "messages per day by room across three days" \
	test "$(jq -c '[.messages_per_day[] | [.day, .room, .messages]]' <<<"$BODY")" = \
	"[[\"$D2\",\"alpha\",2],[\"$D1\",\"alpha\",1],[\"$TODAY\",\"alpha\",2],[\"$TODAY\",\"beta\",1]]"
check "active users per day: 1, 1, 2" \
	test "$(jq -c '[.active_users_per_day[] | .users]' <<<"$BODY")" = '[1,1,2]'
api_get "/api/admin/stats?from=$D1&to=$D1" "$ROOT"
check "one past day alone: bob's message" \
	test "$(jq -c '[.totals.messages, .active_users_per_day[0].users]' <<<"$BODY")" = '[1,1]'
stop_natterd

# --- /metrics restricted -------------------------------------------------------------
start_natterd --metrics-token s3cret-token
api GET /metrics
expect 401 unauthorized "metrics-token: no token, 401"
api GET /metrics -H "Authorization: Bearer wrong"
expect 401 unauthorized "metrics-token: a wrong token, 401"
api GET /metrics -H "Authorization: Bearer s3cret-tok"
expect 401 unauthorized "metrics-token: a prefix of it, 401"
api GET /metrics -H "Authorization: Bearer s3cret-token"
expect 200 "" "metrics-token: the token, 200"
stop_natterd

start_natterd --metrics-listen 127.0.0.1:0
MPORT=$(sed -n 's/.*metrics listening.* port=\([0-9]*\).*/\1/p' "$WORK/natterd.log" | head -n1)
check "metrics-listen reports its port" test -n "$MPORT" -a "$MPORT" != "$PORT"
api GET /metrics
expect 404 not_found "metrics-listen: the client listener has no /metrics"
STATUS=$(curl -sS -o "$WORK/m" -w '%{http_code}' "http://127.0.0.1:$MPORT/metrics")
check "metrics-listen: its own address serves /metrics" test "$STATUS" = 200
check "with the histograms" grep -q '^# TYPE natter_delivery_seconds histogram' "$WORK/m"
STATUS=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/api/me")
check "metrics-listen serves nothing else" test "$STATUS" = 404
STATUS=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$MPORT/metrics")
check "metrics-listen: GET only" test "$STATUS" = 405
stop_natterd

RC=0
"$NATTERD" --metrics-listen localhost:9 --db "$WORK/x.db" --db-dir "$NATTER_DB_DIR" >"$WORK/err" 2>&1 || RC=$?
check "a bad metrics-listen is refused at start" test "$RC" != 0
check "naming the key" grep -q 'metrics-listen' "$WORK/err"

# --- rooms-per-day -----------------------------------------------------------------
start_natterd --rooms-per-day 2
api_json POST /api/login "" '{"username":"st_ann","password":"correct horse"}'
ANN=$(jget .token)
api_json POST /api/login "" '{"username":"st_bob","password":"correct horse"}'
BOB=$(jget .token)
api_json POST /api/rooms "$ANN" '{"name":"ann1"}'
expect 201 "" "ann's first room today"
api_json POST /api/dms "$ANN" '{"users":["st_bob","st_root"]}'
expect 201 "" "a direct conversation counts as her second"
api_json POST /api/rooms "$ANN" '{"name":"ann3"}'
expect 429 room_limit "her third: 429 room_limit"
RA=$(curl -sS -D - -o /dev/null -X POST -H "Authorization: Bearer $ANN" -H 'Content-Type: application/json' \
	--data '{"name":"ann4"}' "$BASE/api/rooms" | tr -d '\r' | awk -F': ' 'tolower($1) == "retry-after" { print $2 }')
check "with Retry-After of about a day" test "${RA:-0}" -gt 86000 -a "${RA:-0}" -le 86400
check "and retry_after in the body" test "$(jget .retry_after)" -gt 86000
api_json POST /api/dms "$ANN" '{"users":["st_root"]}'
expect 429 room_limit "a new direct conversation too"
DM1=$(api_json POST /api/dms "$ANN" '{"users":["st_root","st_bob"]}'; jget .room.name)
api_json POST /api/dms "$ANN" '{"users":["ST_ROOT","st_ann","st_bob","st_root"]}'
check "reopening her existing conversation with bob and root (any order and case) is not refused (status $STATUS)" \
	test "$STATUS" = 200
check "and answers the same conversation" test "$(jget .room.name)" = "$DM1" -a -n "$DM1"
api_get /api/rooms "$ANN"
check "nothing was created" test "$(jq '[.rooms[] | select(.name == "ann3" or .name == "ann4")] | length' <<<"$BODY")" = 0
printf '%s\n' '{"op":"room_create","name":"ann5","client_id":"c1"}' >"$WORK/ws-send"
"$WSCLIENT" --token "$ANN" --send-file "$WORK/ws-send" --timeout 2 "ws://127.0.0.1:$PORT/ws" >"$WORK/ws.out" 2>&1 || true
check "over WebSocket: an error frame room_limit with retry_after" \
	jq -se 'map(select(.type == "error" and .error == "room_limit" and .retry_after > 86000)) | length == 1' "$WORK/ws.out"
api_json POST /api/rooms "$BOB" '{"name":"bob1"}'
expect 201 "" "another user is not affected"
check "refusals are counted in /metrics" test "$(metric natter_rooms_day_limited_total)" = 4
stop_natterd

finish
