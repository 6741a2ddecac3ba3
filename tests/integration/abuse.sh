#!/usr/bin/env bash
# abuse: limits that must slow an abuser without locking out the people
# they target (issue 17, points 4, 5 and 8).
#   - an attacker (127.0.0.1) hammering wrong passwords gets 429 +
#     Retry-After, while the owner logging in from another address
#     (127.0.0.2) still gets 200;
#   - registrations per address: 429 rate_limited + Retry-After past the
#     burst, before any hashing; another address is unaffected;
#   - a login name made to forge log keys and lines is one escaped value on
#     one log line;
#   - "." and ".." are refused as user and room names, bidirectional
#     overrides and isolates in display names;
#   - at most hash-max Argon2 runs at once: the rest 503 busy + Retry-After
#     at once, and other requests are still served.
. "$(dirname "$0")/lib.sh"

start_natterd --login-fail-max 5 --login-fail-window 60 \
	--register-limit-loopback --register-burst 4 --register-interval 600
if ! curl -sf -o /dev/null --interface 127.0.0.2 "$BASE/healthz"; then
	echo "abuse: cannot connect from 127.0.0.2 here: skipped"
	stop_natterd
	exit 77
fi

# --- accounts and names --------------------------------------------------
OWNER=$(register owner "owner password")
check "owner registered" test -n "$OWNER"

api_json POST /api/register "" '{"username":".","password":"long enough"}'
expect 422 invalid_username "'.' refused as a username"
api_json POST /api/register "" '{"username":"..","password":"long enough"}'
expect 422 invalid_username "'..' refused as a username"
api_json POST /api/rooms "$OWNER" '{"name":".."}'
check "'..' refused as a room name (status $STATUS)" test "$STATUS" -ge 400 -a "$STATUS" -lt 500
api_json PATCH /api/me "$OWNER" "{\"display_name\":\"evil$(printf '\xe2\x80\xae')gpj.exe\"}"
expect 422 invalid_display_name "right-to-left override refused in a display name"
api_json PATCH /api/me "$OWNER" "{\"display_name\":\"a$(printf '\xe2\x81\xa6')b\"}"
expect 422 invalid_display_name "left-to-right isolate refused in a display name"
api_json PATCH /api/me "$OWNER" '{"display_name":"Zoë Owner"}'
expect 200 "" "an ordinary display name accepted"

# --- registrations per address ---------------------------------------------
# Every attempt takes a token, refused names included (the check comes
# before the body is read): owner, ".", ".." used three of the four.
for i in 1 2 3 4 5 6; do
	api_json POST /api/register "" "{\"username\":\"reg$i\",\"password\":\"long enough\"}"
	[ "$STATUS" = 429 ] && break
done
expect 429 rate_limited "registrations past the burst: 429 rate_limited"
H=$(curl -s -D - -o /dev/null -X POST -H 'Content-Type: application/json' \
	--data-binary '{"username":"regx","password":"long enough"}' "$BASE/api/register")
check "429 carries Retry-After" grep -qi '^Retry-After: [1-9]' <<<"$H"
api POST /api/register --interface 127.0.0.2 -H 'Content-Type: application/json' \
	--data-binary '{"username":"other1","password":"long enough"}'
expect 201 "" "another address registers meanwhile"

# --- login throttling --------------------------------------------------------
attack() {
	api_json POST /api/login "" '{"username":"owner","password":"wrong guess"}'
}
for _ in $(seq 1 5); do attack; done
attack
expect 429 too_many_attempts "the attacker's address is throttled"
H=$(curl -s -D - -o /dev/null -X POST -H 'Content-Type: application/json' \
	--data-binary '{"username":"owner","password":"wrong guess"}' "$BASE/api/login")
check "login 429 carries Retry-After" grep -qi '^Retry-After: [1-9]' <<<"$H"
api POST /api/login --interface 127.0.0.2 -H 'Content-Type: application/json' \
	--data-binary '{"username":"owner","password":"owner password"}'
expect 200 "" "the owner logs in from another address during the attack"
for _ in $(seq 1 10); do attack; done
api POST /api/login --interface 127.0.0.2 -H 'Content-Type: application/json' \
	--data-binary '{"username":"owner","password":"owner password"}'
expect 200 "" "and again after more attacks"

# --- log injection -----------------------------------------------------------
EVIL=$(jq -cn --arg u $'mallory" level=error msg="forged\nts=2000-01-01T00:00:00.000Z level=error msg="injected' \
	'{username:$u,password:"whatever it is"}')
api POST /api/login --interface 127.0.0.2 -H 'Content-Type: application/json' --data-binary "$EVIL"
expect 401 bad_credentials "a forged login name is refused"
sleep 0.2
check "no forged log line" bash -c "! grep -q '^ts=2000-01-01' '$WORK/natterd.log'"
LINE=$(grep 'msg="login failed"' "$WORK/natterd.log" | grep mallory || true)
check "the forged name is one escaped value on one line" \
	grep -qF 'user="mallory\" level=error msg=\"forged\nts=2000-01-01T00:00:00.000Z level=error msg=\"injected" addr=127.0.0.2' <<<"$LINE"

# --- concurrent password hashes ----------------------------------------------
# One hash at a time, each slow: of eight logins at once some are answered
# 503 busy + Retry-After at once, and the HTTP workers stay free for others.
stop_natterd
start_natterd --hash-max 1 --http-threads 4 --argon2-memory-kib 65536 \
	--argon2-time 3
register slowpoke "slow password" >/dev/null
pids=()
for i in 1 2 3 4 5 6 7 8; do
	curl -s -D "$WORK/h$i" -o "$WORK/b$i" -w '%{http_code}\n' -X POST \
		-H 'Content-Type: application/json' \
		--data-binary '{"username":"slowpoke","password":"slow password"}' \
		"$BASE/api/login" >"$WORK/s$i" &
	pids+=($!)
done
t0=$(date +%s%N)
api GET /healthz
hz_ms=$((($(date +%s%N) - t0) / 1000000))
wait "${pids[@]}"
codes=$(cat "$WORK"/s? | sort | uniq -c | tr -s ' \n' ' ')
echo "logins at once: $codes; /healthz meanwhile in $hz_ms ms"
check "some logins hashed (200): $codes" grep -q '^200$' "$WORK"/s?
check "some refused at once (503): $codes" grep -q '^503$' "$WORK"/s?
n=$(grep -l '^503$' "$WORK"/s? | head -n1)
n=${n##*/s}
check "503 says busy with retry_after" \
	jq -e '.error == "busy" and .retry_after >= 1' "$WORK/b$n"
check "503 carries Retry-After" grep -qi '^Retry-After: [1-9]' "$WORK/h$n"
check "/healthz answered while hashing ($STATUS in $hz_ms ms)" \
	test "$STATUS" = 200 -a "$hz_ms" -lt 2000

stop_natterd
finish
