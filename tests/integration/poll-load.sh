#!/usr/bin/env bash
# poll-load: long-poll must never stall under load.
#
# 1. The burst: 896 keep-alive connections each send their next
#    GET /poll at the same moment, while natterd is frozen (SIGSTOP), as
#    happens when a delivery answers every poller at once and they all poll
#    again while the HTTP worker is still busy. Every one must be answered
#    within a few seconds. With libmicrohttpd's epoll loop the worker took
#    the requests 128 at a time and, after the seventh full batch, slept in
#    epoll_wait() for the 120 s connection timeout with all 896 requests
#    unread in the socket buffers (server-side Recv-Q > 0, the poll gauge
#    falling): the stall of issue 17, point 6. Several rounds.
# 2. The load: 1,000 long-poll subscribers, 1,000 messages at 200/s, three
#    runs with the load tool; every poller gets every message, in order,
#    and the tool's run stays within its time bound.
. "$(dirname "$0")/lib.sh"

: "${NATTER_BENCH:?NATTER_BENCH must point at contrib/bench/natter-bench}"
export LC_ALL=C
N=896 # a multiple of libmicrohttpd's epoll batch (128); bash's read -t needs fds < 1024

if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((N * 2 + 256)) ]; then
	echo "poll-load: needs $((N * 2 + 256)) file descriptors (ulimit -n is $(ulimit -n)): skipped"
	exit 77
fi

# One worker: the stall is per worker thread, and with one every connection
# shares it.
start_natterd --http-threads 1 --max-connections 4096
TOKEN=$(register poller)

printf -v REQ 'GET /poll?since=0&timeout=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n' "$TOKEN"

# read_reply FD SECONDS: read one HTTP response (Content-Length framed);
# sets RSTATUS. Fails on timeout or a closed connection.
read_reply() {
	local fd=$1 t=$2 line len=0 body
	RSTATUS=
	IFS= read -r -t "$t" -u "$fd" line || return 1
	line=${line%$'\r'}
	RSTATUS=$(cut -d' ' -f2 <<<"$line")
	while IFS= read -r -t "$t" -u "$fd" line; do
		line=${line%$'\r'}
		[ -z "$line" ] && break
		case "${line,,}" in
		content-length:*) len=${line#*:} && len=${len// /} ;;
		esac
	done
	[ "$len" -gt 0 ] && { IFS= read -r -N "$len" -t "$t" -u "$fd" body || return 1; }
	return 0
}

FDS=()
for _ in $(seq 1 $N); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
	FDS+=("$fd")
done
# A first poll on each: every connection is then an idle keep-alive one.
for fd in "${FDS[@]}"; do printf '%s' "$REQ" >&"$fd"; done
first=0
for fd in "${FDS[@]}"; do
	read_reply "$fd" 10 && [ "$RSTATUS" = 200 ] && first=$((first + 1))
done
check "$N keep-alive pollers answered ($first)" test "$first" = $N

for round in 1 2 3; do
	sleep 0.5 # the worker goes back to waiting
	kill -STOP "$NATTERD_PID"
	for fd in "${FDS[@]}"; do printf '%s' "$REQ" >&"$fd"; done
	sleep 0.3
	kill -CONT "$NATTERD_PID"
	start=$(date +%s%N)
	got=0
	for fd in "${FDS[@]}"; do
		left=$((30 - ($(date +%s%N) - start) / 1000000000))
		[ "$left" -lt 1 ] && left=1
		read_reply "$fd" "$left" && [ "$RSTATUS" = 200 ] && got=$((got + 1))
		[ "$got" -eq 0 ] && [ "$left" -le 1 ] && break
	done
	ms=$((($(date +%s%N) - start) / 1000000))
	echo "round $round: $got of $N answered in $ms ms"
	check "burst $round: all $N polls answered within 30 s ($got in $ms ms)" \
		test "$got" = $N
	[ "$got" = $N ] || break
done
for fd in "${FDS[@]}"; do exec {fd}>&-; done

for run in 1 2 3; do
	out=$(timeout 90 "$NATTER_BENCH" --url "$BASE" --transport poll \
		--subs 1000 --pubs 1 --messages 1000 --rate 200 --procs 2 \
		--timeout 40 --drain 15 --json 2>"$WORK/bench-$run.err") || true
	line=$(tail -n1 <<<"$out")
	if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
		cat "$WORK/bench-$run.err"
		fail "run $run: the load tool printed no JSON line"
		continue
	fi
	echo "run $run: $(jq -c '{connected,deliveries,lost,p99_ms,max_ms}' <<<"$line")"
	check "run $run: 1000 pollers connected" \
		test "$(jq -r .connected <<<"$line")" = 1000
	check "run $run: every poller got every message (1000000)" \
		test "$(jq -r .deliveries <<<"$line")" = 1000000
	check "run $run: lost=dup=reordered=0" \
		test "$(jq -r '"\(.lost) \(.dup) \(.reordered)"' <<<"$line")" = "0 0 0"
done

stop_natterd
finish
