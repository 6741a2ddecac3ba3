#!/usr/bin/env bash
# conn-caps: HTTP connections per client address (connections-per-address,
# issue 17 point 2). One address opens far more connections than the cap:
# past the cap its requests are answered 429 too_many_connections (JSON,
# Retry-After) and closed, past twice the cap new connections are closed at
# once; both counted in /metrics; an ordinary client from another address
# (127.0.0.2) is served meanwhile, and the address is served again once its
# connections close. Over TLS, clients count under their own address, not
# the terminator's loopback socketpairs.
. "$(dirname "$0")/lib.sh"

metric() {
	curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
# flood PORT N SRC HOLD: open N connections from SRC, then send a request
# on each; print how each was answered (101/200/429/closed), then hold
# them open for HOLD seconds before closing.
flood() {
	python3 - "$@" <<'PY'
import socket, sys, time, json
port, n, src, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
socks = []
refused = 0
for _ in range(n):
    s = socket.socket()
    s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port))
        socks.append(s)
    except OSError:
        refused += 1
time.sleep(0.3)
codes = {"closed": refused}
body429 = ""
for s in socks:
    try:
        s.settimeout(3)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = s.recv(4096)
        if not got:
            raise OSError
        code = got.split(b" ")[1].decode()
        if code == "429" and not body429:
            body429 = got.decode(errors="replace")
    except OSError:
        code = "closed"
    codes[code] = codes.get(code, 0) + 1
print(json.dumps(codes, sort_keys=True))
print(json.dumps(body429))
sys.stdout.flush()
time.sleep(hold)
PY
}

start_natterd --connections-per-address 20
if ! curl -sf -o /dev/null --interface 127.0.0.2 "$BASE/healthz"; then
	echo "conn-caps.sh: SKIP, cannot send from 127.0.0.2 (no 127.0.0.0/8 on lo)"
	exit 77
fi
flood "$PORT" 60 127.0.0.1 4 >"$WORK/flood.out" &
FPID=$!
for _ in $(seq 1 50); do [ -s "$WORK/flood.out" ] && break; sleep 0.1; done
sleep 0.3
# while the flood holds its connections: another address is served
code=$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 --max-time 5 "$BASE/healthz" || true)
check "a client from another address is served during the flood ($code)" test "$code" = 200
code=$(curl -s -o "$WORK/own.out" -w '%{http_code}' --max-time 5 "$BASE/healthz" || true)
check "a new connection from the flooding address is refused ($code)" test "$code" = 429 -o "$code" = 000
wait $FPID
counts=$(head -n1 "$WORK/flood.out")
body=$(sed -n 2p "$WORK/flood.out" | jq -r .)
echo "# flood from one address: $counts"
check "20 of 60 are served, the other 40 refused ($counts)" \
	test "$(jq -r '."200"' <<<"$counts")" = 20 -a \
	"$(jq -r '(."429" // 0) + (.closed // 0)' <<<"$counts")" = 40
check "past the cap: 429 too_many_connections in JSON with Retry-After" \
	bash -c "grep -q '\"error\":\"too_many_connections\"' <<<'$body' && grep -qi '^Retry-After: [1-9]' <<<'${body//$'\r'/}'"
check "past twice the cap: closed at once (20 answered 429, 20 closed)" \
	test "$(jq -r '."429"' <<<"$counts")" -ge 19 -a "$(jq -r '.closed' <<<"$counts")" -ge 19
a=$(metric 'natter_connections_refused_address_total{how="answered"}')
c=$(metric 'natter_connections_refused_address_total{how="closed"}')
check "/metrics counts them (answered $a, closed $c)" test "${a:-0}" -ge 20 -a "${c:-0}" -ge 19
# the flood's connections closed: the address is served again
for _ in $(seq 1 30); do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/healthz" || true)
	[ "$code" = 200 ] && break
	sleep 0.1
done
check "once they closed, the address is served again ($code)" test "$code" = 200
stop_natterd

# --- TLS: counted by the client's address ----------------------------------------
if command -v openssl >/dev/null; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
		-days 2 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
	start_natterd --connections-per-address 5 --tls-listen 127.0.0.1:0 \
		--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
	TPORT=
	for _ in $(seq 1 50); do
		TPORT=$(sed -n 's/.*listening tls.* port=\([0-9]*\).*/\1/p' "$WORK/natterd.log" | head -n1)
		[ -n "$TPORT" ] && break
		sleep 0.1
	done
	# 8 keep-alive HTTPS connections from 127.0.0.3 (over its cap of 5)
	python3 - "$TPORT" "$WORK/cert.pem" >"$WORK/tls.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
codes = []
socks = []
for _ in range(8):
    raw = socket.socket()
    raw.bind(("127.0.0.3", 0))
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    socks.append(s)
time.sleep(0.3)
for s in socks:
    try:
        s.settimeout(3)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = s.recv(4096)
        codes.append(got.split(b" ")[1].decode() if got else "closed")
    except OSError:
        codes.append("closed")
print(" ".join(sorted(codes)))
sys.stdout.flush()
time.sleep(3)
PY
	TPID=$!
	for _ in $(seq 1 50); do [ -s "$WORK/tls.out" ] && break; sleep 0.1; done
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/cert.pem" --interface 127.0.0.4 \
		--max-time 5 "https://127.0.0.1:$TPORT/healthz" || true)
	check "an HTTPS client from another address is served meanwhile ($code)" test "$code" = 200
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/healthz" || true)
	check "plain HTTP from 127.0.0.1 is not charged for the TLS clients ($code)" test "$code" = 200
	wait $TPID || true
	out=$(head -n1 "$WORK/tls.out")
	check "HTTPS from one address: 5 served, 3 refused 429 ($out)" \
		test "$out" = "200 200 200 200 200 429 429 429"
	stop_natterd
fi
finish
