#!/usr/bin/env bash
# tls.sh: natter over TLS (mbedTLS terminator -> socketpair -> libmicrohttpd).
# With a certificate made here by the openssl CLI: the curl walkthrough over
# https (Secure cookie, Strict-Transport-Security), SSE, long-poll and wss://
# each receiving a live event, the three transports delivering the same
# messages in the same order, the client's real address in the access log;
# protocol checks with openssl s_client (TLS 1.0/1.1, non-AEAD and
# non-ECDHE ciphers refused, server cipher order, ALPN, resumption); bad
# input (plain HTTP, garbage, a silent client, a client gone mid-handshake,
# a flood of handshakes) with natterd serving on and no descriptor leaked;
# SIGHUP reloading a good pair and refusing a broken one; then
# --tls-self-signed with TLS only, and a restart with the handshake timeout
# and cap, --hsts 0 and http-redirect.
. "$(dirname "$0")/lib.sh"
: "${WSCLIENT:?WSCLIENT must point at tests/wsclient}"

if ! command -v openssl >/dev/null; then
	echo "tls.sh: SKIP, the openssl command is not installed"
	exit 77
fi

# make_pair NAME: $WORK/NAME.crt and $WORK/NAME.key, ECDSA P-256.
make_pair() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
		-days 2 -keyout "$WORK/$1.key" -out "$WORK/$1.crt" 2>/dev/null
}
# The SHA-256 fingerprint of a PEM certificate, AB:CD:...
fp_file() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }
# The fingerprint of the certificate the server presents now.
fp_server() {
	openssl s_client -connect "127.0.0.1:$TPORT" </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256 | cut -d= -f2
}
tls_port() { sed -n 's/.*listening tls.* port=\([0-9]*\).*/\1/p' "$WORK/natterd.log" | head -n1; }
nfds() { ls "/proc/$NATTERD_PID/fd" | wc -l; }
# s_client ARGS...: one handshake (and nothing else) against the TLS port.
s_client() { openssl s_client -connect "127.0.0.1:$TPORT" -CAfile "$WORK/cert.pem" "$@" </dev/null 2>&1; }
# Wait until natterd holds at most $1 descriptors (connections closed).
fds_settle() {
	for _ in $(seq 1 50); do
		[ "$(nfds)" -le "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

make_pair first
cp "$WORK/first.crt" "$WORK/cert.pem"
cp "$WORK/first.key" "$WORK/key.pem"
start_natterd --tls-listen 127.0.0.1:0 --tls-cert "$WORK/cert.pem" \
	--tls-key "$WORK/key.pem"
for _ in $(seq 1 50); do TPORT=$(tls_port); [ -n "$TPORT" ] && break; sleep 0.1; done
[ -n "$TPORT" ] && [ "$TPORT" != 0 ] || fail_now "natterd did not report its TLS port"
PLAIN=$BASE
BASE="https://127.0.0.1:$TPORT"
TLS=(--cacert "$WORK/cert.pem")
# lib.sh's helpers (api, register) run curl without --cacert: same CA file.
export CURL_CA_BUNDLE="$WORK/cert.pem"

# --- the curl walkthrough over https ----------------------------------------------
check "the log names the certificate's SHA-256 fingerprint" \
	grep -q "sha256=$(fp_file "$WORK/cert.pem")" "$WORK/natterd.log"
rc=0; env -u CURL_CA_BUNDLE curl -s -o /dev/null "$BASE/healthz" || rc=$?
check "curl without the CA file refuses the certificate (exit $rc)" test "$rc" = 60

curl -sS -D "$WORK/h.reg" -o "$WORK/b.reg" "${TLS[@]}" -H 'Content-Type: application/json' \
	--data '{"username":"alice","password":"correct horse"}' "$BASE/api/register"
check "register over https: 201" grep -q '^HTTP/1.1 201' "$WORK/h.reg"
check "the session cookie is Secure" grep -qi '^Set-Cookie: natter_session=.*; Secure' "$WORK/h.reg"
check "responses carry Strict-Transport-Security" \
	grep -qi '^Strict-Transport-Security: max-age=31536000' "$WORK/h.reg"
curl -sS -D "$WORK/h.login" -o "$WORK/b.login" "${TLS[@]}" -c "$WORK/jar" \
	-H 'Content-Type: application/json' \
	--data '{"username":"alice","password":"correct horse"}' "$BASE/api/login"
check "login over https: 200 with a Secure cookie" \
	bash -c "grep -q '^HTTP/1.1 200' '$WORK/h.login' && grep -qi '^Set-Cookie: .*; Secure' '$WORK/h.login'"
ALICE=$(jq -r .token "$WORK/b.login")
api_json POST /api/rooms "$ALICE" '{"name":"tls"}'
expect 201 "" "create a room over https"
# A cookie jar marked Secure is sent back over https.
curl -sS -o "$WORK/b.me" -w '%{http_code}' "${TLS[@]}" -b "$WORK/jar" "$BASE/api/me" >"$WORK/s.me"
check "the Secure cookie authenticates over https" grep -q 200 "$WORK/s.me"
api_json POST /api/rooms/tls/messages "$ALICE" '{"text":"over tls","client_id":"t-1"}'
expect 201 "" "send over https"
FIRST=$(jget .event.id)
api_get "/api/rooms/tls/messages?limit=10" "$ALICE"
check "history over https holds the message" bash -c "jq -e '.events[] | select(.text==\"over tls\")' <<<'$BODY' >/dev/null"
api GET /static/app.js
expect 200 "" "a static file over https"
curl -s -o /dev/null -D "$WORK/h.plain" "$PLAIN/healthz"
check "plain HTTP carries no Strict-Transport-Security" bash -c "! grep -qi Strict-Transport '$WORK/h.plain'"
api GET /tls-probe-path
check "the access log shows the TLS client's real address" \
	grep -q 'path=/tls-probe-path .*addr=127\.0\.0\.1' "$WORK/natterd.log"

# --- SSE, long-poll, WebSocket over TLS: one live event each --------------------
BOB=$(register bob)
api_json POST /api/rooms/tls/join "$BOB" '{}'
C0=$(jget .event.id)
curl -sN "${TLS[@]}" -H "Authorization: Bearer $BOB" "$BASE/events?since=$C0" >"$WORK/sse.out" 2>&1 &
SSEPID=$!
curl -s "${TLS[@]}" -H "Authorization: Bearer $BOB" "$BASE/poll?since=$C0&timeout=10" >"$WORK/poll.out" 2>&1 &
POLLPID=$!
"$WSCLIENT" --tls "$WORK/cert.pem" --token "$BOB" --since "$C0" --count 1 --timeout 10 \
	"wss://127.0.0.1:$TPORT/ws" >"$WORK/wss.out" 2>"$WORK/wss.err" &
WSPID=$!
sleep 1
api_json POST /api/rooms/tls/messages "$ALICE" '{"text":"live event"}'
expect 201 "" "send the live event"
check "WebSocket over wss:// receives the live event" wait "$WSPID"
check "wss:// output holds it" grep -q '"text":"live event"' "$WORK/wss.out"
check "long-poll over https returns the event" wait "$POLLPID"
check "long-poll output holds it" grep -q '"text":"live event"' "$WORK/poll.out"
for _ in $(seq 1 30); do grep -q '"text":"live event"' "$WORK/sse.out" && break; sleep 0.1; done
check "SSE over https (curl -N --cacert) receives the live event" grep -q '^data: .*"text":"live event"' "$WORK/sse.out"
kill "$SSEPID" 2>/dev/null || true
wait "$SSEPID" 2>/dev/null || true
printf '%s\n' '{"op":"send","room":"tls","text":"from wss","client_id":"w-1"}' >"$WORK/wsin"
"$WSCLIENT" --tls "$WORK/cert.pem" --token "$ALICE" --send-file "$WORK/wsin" --timeout 3 \
	"wss://127.0.0.1:$TPORT/ws" >"$WORK/wsack.out" 2>&1 || true
check "a send over wss:// is acknowledged" grep -q '"type":"ack"' "$WORK/wsack.out"
"$WSCLIENT" --tls "$WORK/cert.pem" --token "$ALICE" --origin http://evil.example --timeout 5 \
	"wss://127.0.0.1:$TPORT/ws" >/dev/null 2>"$WORK/err" && rc=0 || rc=$?
check "a foreign Origin is refused over wss:// too (403)" bash -c "[ $rc = 2 ] && grep -q 403 '$WORK/err'"
"$WSCLIENT" --tls "$WORK/first.crt" --token "$ALICE" --timeout 5 \
	"wss://localhost:$TPORT/ws" >"$WORK/wsname.out" 2>&1 || true
check "wss://localhost verifies the name against the certificate" grep -q '"type":"hello"' "$WORK/wsname.out"

# --- the three transports over TLS: the same messages, in order, once -------------
N=${TLS_MESSAGES:-150}
RW=$(register rw); RS=$(register rs); RP=$(register rp)
for tok in "$RW" "$RS" "$RP"; do api_json POST /api/rooms/tls/join "$tok" '{}'; done
START=$(jget .event.id)
"$WSCLIENT" --tls "$WORK/cert.pem" --token "$RW" --since "$START" --timeout 60 --count "$N" \
	"wss://127.0.0.1:$TPORT/ws" >"$WORK/r.ws" 2>&1 &
P1=$!
curl -sN "${TLS[@]}" -H "Authorization: Bearer $RS" -H "Last-Event-ID: $START" "$BASE/events" 2>/dev/null |
	grep --line-buffered -a '^data: {.*}$' | sed -u 's/^data: //' >"$WORK/r.sse" &
P2=$!
(
	cursor=$START
	: >"$WORK/r.poll"
	for _ in $(seq 1 200); do
		[ "$(grep -c '"type":"message"' "$WORK/r.poll")" -ge "$N" ] && break
		body=$(curl -sf "${TLS[@]}" -H "Authorization: Bearer $RP" "$BASE/poll?since=$cursor&timeout=5") || continue
		jq -c '.events[]' <<<"$body" >>"$WORK/r.poll"
		cursor=$(jq -r .cursor <<<"$body")
	done
) &
P3=$!
sleep 1
: >"$WORK/bulk.ws"
for i in $(seq 1 "$N"); do
	[ $((i % 3)) = 0 ] && echo "{\"op\":\"send\",\"room\":\"tls\",\"text\":\"m $i\",\"client_id\":\"m-$i\"}" >>"$WORK/bulk.ws"
done
"$WSCLIENT" --tls "$WORK/cert.pem" --token "$ALICE" --send-file "$WORK/bulk.ws" --timeout 60 \
	--count "$((N / 3))" "wss://127.0.0.1:$TPORT/ws" >/dev/null 2>&1 &
P4=$!
for i in $(seq 1 "$N"); do
	case $((i % 3)) in
	1) curl -s -o /dev/null "${TLS[@]}" -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
		--data "{\"text\":\"m $i\",\"client_id\":\"m-$i\"}" "$BASE/api/rooms/tls/messages" ;;
	2) curl -s -o /dev/null "${TLS[@]}" -H "Authorization: Bearer $ALICE" \
		--data "text=m+$i&client_id=m-$i" "$BASE/api/rooms/tls/messages" ;;
	esac
done
wait "$P4" || true
wait "$P1" || true
wait "$P3" || true
for _ in $(seq 1 50); do [ "$(grep -c '"type":"message"' "$WORK/r.sse")" -ge "$N" ] && break; sleep 0.1; done
pkill -P "$$" -f "curl -sN" 2>/dev/null || true
kill "$P2" 2>/dev/null || true
wait "$P2" 2>/dev/null || true
after=$START
: >"$WORK/r.expected"
while :; do
	api_get "/api/rooms/tls/messages?after=$after&limit=200" "$ALICE"
	jq -r '.events[] | select(.type=="message") | .id' <<<"$BODY" >>"$WORK/r.expected"
	[ "$(jget .has_more)" = true ] || break
	after=$(jget '.events[-1].id')
done
check "history holds all $N messages" test "$(wc -l <"$WORK/r.expected")" -eq "$N"
for t in ws sse poll; do
	jq -r 'select(.type=="message" and .room=="tls") | .id' "$WORK/r.$t" >"$WORK/r.$t.ids" 2>/dev/null || true
	check "$t over TLS got all $N messages, same ids, same order, none twice" \
		cmp -s "$WORK/r.expected" "$WORK/r.$t.ids"
done

# --- protocol checks with openssl s_client -------------------------------------------
s_client -tls1 -cipher 'DEFAULT@SECLEVEL=0' >"$WORK/o" || true
check "TLS 1.0 is refused (protocol_version alert)" \
	bash -c "grep -q 'Cipher is (NONE)' '$WORK/o' && grep -q 'alert protocol version' '$WORK/o'"
s_client -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' >"$WORK/o" || true
check "TLS 1.1 is refused (protocol_version alert)" \
	bash -c "grep -q 'Cipher is (NONE)' '$WORK/o' && grep -q 'alert protocol version' '$WORK/o'"
s_client -tls1_2 >"$WORK/o" || true
check "TLS 1.2 is accepted and the chain verifies" \
	bash -c "grep -q 'New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256' '$WORK/o' && grep -q 'Verify return code: 0' '$WORK/o'"
s_client -tls1_2 -cipher AES128-SHA >"$WORK/o" || true
check "a non-AEAD cipher (AES128-SHA) is refused" grep -q 'Cipher is (NONE)' "$WORK/o"
s_client -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 >"$WORK/o" || true
check "a CBC cipher even with ECDHE is refused" grep -q 'Cipher is (NONE)' "$WORK/o"
s_client -tls1_2 -cipher AES128-GCM-SHA256 >"$WORK/o" || true
check "a non-ECDHE cipher (AES128-GCM-SHA256) is refused" grep -q 'Cipher is (NONE)' "$WORK/o"
s_client -tls1_2 -cipher 'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256' >"$WORK/o" || true
check "the server's cipher order wins over the client's" \
	grep -q 'Cipher is ECDHE-ECDSA-AES128-GCM-SHA256' "$WORK/o"
s_client -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305 >"$WORK/o" || true
check "ChaCha20-Poly1305 is offered" grep -q 'Cipher is ECDHE-ECDSA-CHACHA20-POLY1305' "$WORK/o"
s_client -alpn http/1.1 >"$WORK/o" || true
check "ALPN http/1.1 is answered" grep -q 'ALPN protocol: http/1.1' "$WORK/o"
s_client -sess_out "$WORK/sess" >"$WORK/o1" || true
s_client -sess_in "$WORK/sess" >"$WORK/o2" || true
check "session resumption with a ticket (Reused)" \
	bash -c "grep -q '^New,' '$WORK/o1' && grep -q '^Reused,' '$WORK/o2'"
s_client -no_ticket -sess_out "$WORK/sess2" >"$WORK/o1" || true
s_client -no_ticket -sess_in "$WORK/sess2" >"$WORK/o2" || true
check "session resumption from the session cache (Reused)" grep -q '^Reused,' "$WORK/o2"

# --- bad input ----------------------------------------------------------------------------
sleep 0.5
FD0=$(nfds)
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TPORT/healthz" || true)
check "plain HTTP to the TLS port gets no HTTP answer (status '$code')" test "$code" = 000
exec 3<>"/dev/tcp/127.0.0.1/$TPORT"
head -c 4000 /dev/urandom >&3 2>/dev/null || true
timeout 5 cat <&3 >/dev/null 2>&1 && rc=0 || rc=$?
exec 3<&-
check "a garbage ClientHello is closed at once" test "$rc" != 124
exec 3<>"/dev/tcp/127.0.0.1/$TPORT"
printf '\026\003\001\000\310\001\000\000\304\003\003' >&3
exec 3<&-
api GET /healthz
expect 200 "" "natterd serves after plain HTTP, garbage and a half ClientHello"

FLOOD=${TLS_FLOOD:-300}
T0=$(date +%s%N)
seq 1 "$FLOOD" | xargs -P 50 -I{} curl -s -o /dev/null -w '%{http_code}\n' "${TLS[@]}" \
	"$BASE/healthz" >"$WORK/flood" 2>/dev/null &
FPID=$!
sleep 0.3
curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "${TLS[@]}" "$BASE/api/me" \
	-H "Authorization: Bearer $ALICE" >"$WORK/during" || true
wait "$FPID" || true
MS=$((($(date +%s%N) - T0) / 1000000))
check "$FLOOD handshakes 50 at a time all served (in $MS ms)" \
	test "$(grep -c '^200$' "$WORK/flood")" -eq "$FLOOD"
check "another client is served during the flood ($(cat "$WORK/during") s)" grep -q '^200 ' "$WORK/during"
check "every connection closed: natterd is back to $FD0 descriptors" fds_settle "$FD0"

# --- SIGHUP: a new good pair is used, a broken one refused --------------------------------
"$WSCLIENT" --tls "$WORK/cert.pem" --token "$BOB" --count 1 --timeout 20 \
	"wss://127.0.0.1:$TPORT/ws" >"$WORK/across.out" 2>&1 &
ACROSS=$!
sleep 0.5
make_pair second
cp "$WORK/second.crt" "$WORK/cert.pem.new"; mv "$WORK/cert.pem.new" "$WORK/cert.pem"
cp "$WORK/second.key" "$WORK/key.pem.new"; mv "$WORK/key.pem.new" "$WORK/key.pem"
kill -HUP "$NATTERD_PID"
for _ in $(seq 1 30); do [ "$(grep -c 'tls certificate loaded' "$WORK/natterd.log")" -ge 2 ] && break; sleep 0.1; done
check "SIGHUP: new connections see the new certificate" test "$(fp_server)" = "$(fp_file "$WORK/second.crt")"
api_json POST /api/rooms/tls/messages "$ALICE" '{"text":"after reload"}'
check "SIGHUP: a wss:// connection opened before carries on" wait "$ACROSS"
check "SIGHUP: ... and received the message sent after" grep -q 'after reload' "$WORK/across.out"
cp "$WORK/first.key" "$WORK/key.pem"
kill -HUP "$NATTERD_PID"
for _ in $(seq 1 30); do grep -q 'tls certificate not reloaded' "$WORK/natterd.log" && break; sleep 0.1; done
check "SIGHUP with a key that does not match: refused with a log line" \
	grep -q 'tls certificate not reloaded.*does not belong' "$WORK/natterd.log"
check "SIGHUP with a key that does not match: the previous certificate stays" \
	test "$(fp_server)" = "$(fp_file "$WORK/second.crt")"
cp "$WORK/second.key" "$WORK/key.pem"
echo garbage >"$WORK/cert.pem"
kill -HUP "$NATTERD_PID"
for _ in $(seq 1 30); do [ "$(grep -c 'tls certificate not reloaded' "$WORK/natterd.log")" -ge 2 ] && break; sleep 0.1; done
check "SIGHUP with a broken certificate file: refused with a log line" \
	grep -q "tls certificate not reloaded.*tls-cert '$WORK/cert.pem'" "$WORK/natterd.log"
cp "$WORK/second.crt" "$WORK/cert.pem"
check "... and the previous certificate stays" test "$(fp_server)" = "$(fp_file "$WORK/second.crt")"
api GET /healthz
expect 200 "" "natterd healthy after the reloads"
stop_natterd
check "natterd stopped cleanly with TLS connections served" true

# --- --tls-self-signed, TLS only --------------------------------------------------------------
unset CURL_CA_BUNDLE
: >"$WORK/natterd.log"
"$NATTERD" --tls-self-signed --tls-listen 127.0.0.1:0 --db "$WORK/natter.db" \
	--db-dir "$NATTER_DB_DIR" --web-root "$NATTER_WEB_ROOT" --log-level debug \
	--argon2-memory-kib 1024 --argon2-time 1 >>"$WORK/natterd.log" 2>&1 &
NATTERD_PID=$!
TPORT=
for _ in $(seq 1 100); do TPORT=$(tls_port); [ -n "$TPORT" ] && break; sleep 0.05; done
[ -n "$TPORT" ] || fail_now "natterd --tls-self-signed did not start"
SELF="$WORK/natter-selfsigned-cert.pem"
check "--tls-self-signed created the pair next to the database" \
	test -s "$SELF" -a -s "$WORK/natter-selfsigned-key.pem"
check "the self-signed key is private (0600)" test "$(stat -c %a "$WORK/natter-selfsigned-key.pem")" = 600
check "the log says so and names its fingerprint" \
	bash -c "grep -q 'self-signed certificate created' '$WORK/natterd.log' && grep -q 'sha256=$(fp_file "$SELF")' '$WORK/natterd.log'"
check "it is ECDSA P-256 for DNS:localhost and IP:127.0.0.1" \
	bash -c "openssl x509 -noout -text -in '$SELF' | grep -q 'NIST CURVE: P-256' &&
		openssl x509 -noout -ext subjectAltName -in '$SELF' | grep -q 'DNS:localhost, IP Address:127.0.0.1'"
check "TLS only: no plain listener" bash -c "! grep -q 'msg=\"listening\" ' '$WORK/natterd.log'"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$SELF" "https://localhost:$TPORT/healthz" || true)
check "curl --cacert trusts it for https://localhost" test "$code" = 200
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$SELF" "https://127.0.0.1:$TPORT/healthz" || true)
check "... and for https://127.0.0.1" test "$code" = 200
stop_natterd
: >"$WORK/natterd.log"
FP=$(fp_file "$SELF")

# --- restart: the pair is kept; handshake cap; http-redirect ---------------------------------
start_natterd --tls-self-signed --tls-listen 127.0.0.1:0 --http-redirect \
	--tls-max-handshakes 2 --tls-handshake-timeout 2 --hsts 0
for _ in $(seq 1 50); do TPORT=$(tls_port); [ -n "$TPORT" ] && break; sleep 0.1; done
check "a restart keeps the self-signed pair" \
	bash -c "[ '$(fp_file "$SELF")' = '$FP' ] && ! grep -q 'certificate created' '$WORK/natterd.log'"
curl -s -o /dev/null -D "$WORK/h.redir" "$BASE/api/rooms?q=a%20b"
check "http-redirect: plain requests get 308 to the same path and query on https" \
	bash -c "grep -q '^HTTP/1.1 308' '$WORK/h.redir' &&
		grep -qi '^Location: https://127.0.0.1:$TPORT/api/rooms?q=a%20b' '$WORK/h.redir'"
curl -s -o /dev/null -D "$WORK/h.nohsts" --cacert "$SELF" "https://127.0.0.1:$TPORT/healthz"
check "--hsts 0 sends no Strict-Transport-Security" bash -c "! grep -qi Strict-Transport '$WORK/h.nohsts'"
T0=$(date +%s%N)
exec 3<>"/dev/tcp/127.0.0.1/$TPORT"
timeout 10 cat <&3 >/dev/null 2>&1 && rc=0 || rc=$?
exec 3<&-
MS=$((($(date +%s%N) - T0) / 1000000))
check "a client that never speaks is closed after the 2 s handshake timeout (${MS} ms)" \
	test "$rc" != 124 -a "$MS" -ge 1500 -a "$MS" -le 4500
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$SELF" "https://127.0.0.1:$TPORT/healthz" || true)
check "natterd serves after a silent client" test "$code" = 200
exec 4<>"/dev/tcp/127.0.0.1/$TPORT"
exec 5<>"/dev/tcp/127.0.0.1/$TPORT"
sleep 0.3
T0=$(date +%s%N)
exec 6<>"/dev/tcp/127.0.0.1/$TPORT"
timeout 5 cat <&6 >/dev/null 2>&1 && rc=0 || rc=$?
MS=$((($(date +%s%N) - T0) / 1000000))
check "beyond --tls-max-handshakes a new client is closed at once (${MS} ms)" test "$rc" != 124 -a "$MS" -lt 1000
exec 4<&- 5<&- 6<&-
sleep 0.3
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$SELF" "https://127.0.0.1:$TPORT/healthz" || true)
check "once they are gone, handshakes are accepted again" test "$code" = 200

# --- keep-alive over TLS and the header deadline ----------------------------------
# An idle HTTPS keep-alive connection is not a slow client: its header
# deadline starts at the first byte of its next request (the terminator
# counts what it hands over; a socketpair has no TCP_INFO), so a second
# request after more than the deadline is served on the same connection,
# while a request that then trickles in is still closed at the deadline.
stop_natterd
start_natterd --tls-listen 127.0.0.1:0 --tls-cert "$WORK/cert.pem" \
	--tls-key "$WORK/key.pem" --header-timeout 2
for _ in $(seq 1 50); do TPORT=$(tls_port); [ -n "$TPORT" ] && break; sleep 0.1; done
python3 - "$TPORT" "$WORK/cert.pem" >"$WORK/ka.out" 2>&1 <<'PY' || true
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.settimeout(5)
req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
def answer():
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"}"):
        chunk = s.recv(4096)
        if not chunk:
            return "closed"
        got += chunk
    return got.split(b"\r\n")[0].decode()
s.sendall(req)
print("first", answer())
time.sleep(3.5)  # idle longer than the 2 s header deadline
try:
    s.sendall(req)
    print("second", answer())
except OSError as e:
    print("second", "error", e)
# now a request that trickles: closed at the deadline
import select
t0 = time.time()
state = "still open"
try:
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    while time.time() - t0 < 8:
        r, _, _ = select.select([s], [], [], 0.5)
        if r and not s.recv(4096):
            state = "closed after %.1f s" % (time.time() - t0)
            break
        s.sendall(b"X")
except OSError:
    state = "closed after %.1f s" % (time.time() - t0)
print("slow", state)
PY
check "an idle HTTPS keep-alive connection's next request is served ($(tr '\n' ' ' <"$WORK/ka.out"))" \
	grep -q '^second HTTP/1.1 200' "$WORK/ka.out"
check "the first one was too" grep -q '^first HTTP/1.1 200' "$WORK/ka.out"
secs=$(sed -n 's/^slow closed after \([0-9]*\)\..*/\1/p' "$WORK/ka.out")
check "a request trickling in over TLS is still closed at the deadline (${secs:-never} s)" \
	test -n "$secs" -a "${secs:-99}" -le 4
finish
