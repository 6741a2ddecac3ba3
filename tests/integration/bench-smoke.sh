#!/usr/bin/env bash
# bench-smoke: a short run of the load tool (contrib/bench/natter-bench)
# against a real natterd, so that the tool cannot rot: 50 WebSocket
# subscribers in 2 rooms, 200 messages, then SSE and long-poll; nothing may
# be lost, duplicated or reordered. The benchmarks themselves are `make bench`.
. "$(dirname "$0")/lib.sh"

: "${NATTER_BENCH:?NATTER_BENCH must point at contrib/bench/natter-bench}"
start_natterd

for t in ws sse poll; do
	out=$(timeout 60 "$NATTER_BENCH" --url "$BASE" --transport "$t" \
		--subs 50 --rooms 2 --pubs 2 --messages 200 --procs 2 \
		--server-pid "$NATTERD_PID" --timeout 30 --drain 10 --json \
		2>"$WORK/bench-$t.err") || true
	echo "$out"
	line=$(tail -n1 <<<"$out")
	if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
		cat "$WORK/bench-$t.err"
		fail "$t: the load tool printed no JSON line"
		continue
	fi
	check "$t: 50 subscribers connected" \
		test "$(jq -r .connected <<<"$line")" = 50
	check "$t: 200 sends acknowledged" \
		test "$(jq -r .acked <<<"$line")" = 200
	check "$t: every delivery arrived (5000)" \
		test "$(jq -r .deliveries <<<"$line")" = 5000
	check "$t: lost=dup=reordered=0" \
		test "$(jq -r '"\(.lost) \(.dup) \(.reordered)"' <<<"$line")" = "0 0 0"
	check "$t: server CPU measured" \
		jq -e '.server_cpu_s >= 0 and .peak_rss_kib > 0' >/dev/null <<<"$line"
done

# the suite's chat-like mode: paced sends over HTTP POST, one in flight per
# publisher, many rooms (contrib/bench/run's lat-* and rooms-1k-paced)
out=$(timeout 60 "$NATTER_BENCH" --url "$BASE" --subs 40 --rooms 10 --pubs 4 \
	--messages 100 --rate 200 --publish-via http --window 1 --procs 2 \
	--server-pid "$NATTERD_PID" --timeout 30 --drain 10 --json \
	2>"$WORK/bench-paced.err") || true
echo "$out"
line=$(tail -n1 <<<"$out")
if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
	cat "$WORK/bench-paced.err"
	fail "paced: the load tool printed no JSON line"
else
	check "paced: published over HTTP, 1 in flight" \
		test "$(jq -r '"\(.publish_via) \(.window) \(.rate)"' <<<"$line")" = "http 1 200"
	check "paced: 100 sends acknowledged" test "$(jq -r .acked <<<"$line")" = 100
	check "paced: every delivery arrived (400)" \
		test "$(jq -r .deliveries <<<"$line")" = 400
	check "paced: lost=dup=reordered=0" \
		test "$(jq -r '"\(.lost) \(.dup) \(.reordered)"' <<<"$line")" = "0 0 0"
	check "paced: took about 0.5 s or more (paced, not flat out)" \
		jq -e '.publish_s >= 0.4' >/dev/null <<<"$line"
fi

stop_natterd
finish
