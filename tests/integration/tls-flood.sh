#!/usr/bin/env bash
# tls-flood.sh: TLS handshake fairness. One address (127.0.0.2) opens 600
# connections and sends each the first bytes of a ClientHello, never the
# rest. It gets at most tls-max-handshakes-per-addr of them in progress,
# the others refused at once; meanwhile ordinary clients from 127.0.0.1
# complete their handshakes and are served. Then, from several addresses
# at once, the half handshakes fill more than half the global cap: every
# handshake gets the short deadline (2 s, not the 10 s timeout) and an
# ordinary client is still served. Refusals and timeouts are counted in
# /metrics and logged as one rate-limited warning.
. "$(dirname "$0")/lib.sh"
: "${SLOWCLIENT:?SLOWCLIENT must point at tests/slowclient}"

if ! command -v openssl >/dev/null; then
	echo "tls-flood.sh: SKIP, the openssl command is not installed"
	exit 77
fi
if ! curl -s --max-time 2 --interface 127.0.0.2 -o /dev/null "http://127.0.0.1:1" 2>/dev/null &&
	! "$SLOWCLIENT" --bind 127.0.0.2 --port 9 --conns 1 --hold 0 >/dev/null 2>&1; then
	echo "tls-flood.sh: SKIP, cannot use 127.0.0.2 as a source address"
	exit 77
fi

tls_port() { sed -n 's/.*listening tls.* port=\([0-9]*\).*/\1/p' "$WORK/natterd.log" | head -n1; }
CAP=200 PER=20
start_natterd --tls-self-signed --tls-listen 127.0.0.1:0 \
	--tls-max-handshakes $CAP --tls-max-handshakes-per-addr $PER \
	--tls-handshake-timeout 10
for _ in $(seq 1 50); do TPORT=$(tls_port); [ -n "$TPORT" ] && break; sleep 0.1; done
[ -n "$TPORT" ] || fail_now "no TLS port"
CA="$WORK/natter-selfsigned-cert.pem"
HTTPS="https://127.0.0.1:$TPORT"
metric() { curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# served: N handshakes from 127.0.0.1, one after another; prints how many
# were answered 200 and the slowest time.
served() {
	local ok=0 worst=0 t
	for _ in $(seq 1 "$1"); do
		t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 \
			--cacert "$CA" "$HTTPS/healthz") || t="000 5"
		[ "${t% *}" = 200 ] && ok=$((ok + 1))
		ms=$(awk -v s="${t#* }" 'BEGIN {printf "%d", s * 1000}')
		[ "$ms" -gt "$worst" ] && worst=$ms
		sleep 0.2
	done
	echo "$ok $worst"
}

# --- one address, hundreds of half handshakes ----------------------------------
"$SLOWCLIENT" --bind 127.0.0.2 --port "$TPORT" --conns 600 --mode hello \
	--hold 6 >"$WORK/one.out" &
F=$!
sleep 1
read -r ok worst < <(served 10)
check "ordinary clients complete their handshakes during the flood ($ok/10, slowest $worst ms)" \
	test "$ok" = 10 -a "$worst" -lt 2000
wait $F
read -r line <"$WORK/one.out"
echo "# one address: $line"
closed=$(sed -n 's/.*closed=\([0-9]*\).*/\1/p' <<<"$line")
check "all but $PER of the 600 were refused at once ($closed closed)" \
	test "$closed" -ge $((600 - PER)) -a "$closed" -lt 600
r=$(curl -s "$BASE/metrics" | sed -n 's/^natter_tls_refused_total{reason="per_addr"} //p')
check "/metrics counts the per-address refusals ($r)" test "${r:-0}" -ge $((600 - PER))
n=$(grep -c 'level=warn msg="tls handshakes refused" reason=per_addr' "$WORK/natterd.log" || true)
check "one rate-limited warning, not a line per refusal ($n)" test "$n" -ge 1 -a "$n" -le 2

# --- many addresses: pressure shortens the deadline ----------------------------
sleep 0.5
T0=$(date +%s%N)
PIDS=()
for i in $(seq 3 9); do
	"$SLOWCLIENT" --bind "127.0.0.$i" --port "$TPORT" --conns $PER --mode hello \
		--hold 8 >"$WORK/many.$i" &
	PIDS+=($!)
done
sleep 0.5
read -r ok worst < <(served 5)
check "an ordinary client is served under pressure ($ok/5, slowest $worst ms)" \
	test "$ok" = 5 -a "$worst" -lt 2000
wait "${PIDS[@]}"
late=0
for i in $(seq 3 9); do
	read -r line <"$WORK/many.$i"
	c=$(sed -n 's/.*closed=\([0-9]*\).*/\1/p' <<<"$line")
	l=$(sed -n 's/.*last_close_ms=\([-0-9]*\).*/\1/p' <<<"$line")
	[ "$c" = $PER ] && [ "$l" -ge 1500 ] && [ "$l" -le 4000 ] || late=$((late + 1))
done
echo "# many addresses: $(cat "$WORK/many.3")"
check "under pressure ($((7 * PER)) of $CAP) half handshakes close after ~2 s, not 10 s" \
	test "$late" = 0
t=$(metric natter_tls_handshake_timeouts_total)
check "/metrics counts the timeouts ($t)" test "${t:-0}" -ge $((7 * PER))
h=$(metric natter_tls_handshakes_total)
check "/metrics counts the completed handshakes ($h)" test "${h:-0}" -ge 15
finish
