#!/usr/bin/env bash
# ops.sh: roles against the real natterd. The first account is the server's
# admin; a room's creator owns it and names moderators; the lobby has no
# owner; each role's rights and refusals; roles in the members list and in
# GET /api/me; roles survive a restart.
. "$(dirname "$0")/lib.sh"

start_natterd

ADMIN=$(register root)
OWNER=$(register olga)
MOD=$(register mia)
USER=$(register ulf)
OUT=$(register otto)

# --- admin ------------------------------------------------------------------
api_get /api/me "$ADMIN"
check "the first account is an admin" test "$(jget .admin)" = true
api_get /api/me "$OWNER"
check "the second account is not" test "$(jget .admin)" = false

# --- owner, moderators, members -----------------------------------------------
api_json POST /api/rooms "$OWNER" '{"name":"ops"}'
expect 201 "" "olga creates ops"
for t in "$MOD" "$USER"; do
	api_json POST /api/rooms/ops/join "$t" '{}'
	expect 200 "" "a member joins ops"
done
api_get /api/rooms/ops/members "$OWNER"
check "members list: olga owner, mia and ulf members" \
	test "$(jq -c '[.members[] | [.username, .role]]' <<<"$BODY")" = \
	'[["mia","member"],["olga","owner"],["ulf","member"]]'

api PUT /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OWNER"
expect 200 "" "the owner names mia moderator"
check "the answer says her role" test "$(jq -c . <<<"$BODY")" = \
	'{"room":"ops","user":"mia","role":"moderator"}'
api PUT /api/rooms/OPS/moderators/MIA -H "Authorization: Bearer $OWNER"
expect 200 "" "naming her again is fine (names ignore case)"
check "canonical names in the answer" test "$(jget .room)/$(jget .user)" = ops/mia
api_get /api/rooms/ops/members "$USER"
check "members list says mia is moderator" \
	test "$(jq -r '.members[] | select(.username == "mia") | .role' <<<"$BODY")" = moderator

api PUT /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $MOD"
expect 403 forbidden "a moderator cannot name moderators"
api PUT /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $USER"
expect 403 forbidden "a member cannot name moderators"
api PUT /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OUT"
expect 403 forbidden "a non-member cannot name moderators"
api PUT /api/rooms/ops/moderators/otto -H "Authorization: Bearer $OWNER"
expect 422 not_a_member "a non-member cannot be made moderator"
api PUT /api/rooms/ops/moderators/nobody -H "Authorization: Bearer $OWNER"
expect 404 no_such_user "an unknown user"
api PUT /api/rooms/nowhere/moderators/mia -H "Authorization: Bearer $OWNER"
expect 404 no_such_room "an unknown room"
api PUT /api/rooms/ops/moderators/olga -H "Authorization: Bearer $ADMIN"
expect 403 forbidden "the owner's role does not change"
api PUT /api/rooms/ops/moderators/mia
expect 401 "" "without a session: 401"
api GET /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OWNER"
expect 405 "" "GET on a moderator is a 405"

api PUT /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $ADMIN"
expect 200 "" "an admin names moderators in any room, member or not"
check "ulf is moderator" test "$(jget .role)" = moderator
api DELETE /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $OWNER"
expect 200 "" "the owner unnames ulf"
check "ulf is member again" test "$(jget .role)" = member
api DELETE /api/rooms/ops/moderators/ulf -H "Authorization: Bearer $OWNER"
expect 200 "" "unnaming twice is fine"
api DELETE /api/rooms/ops/moderators/mia -H "Authorization: Bearer $MOD"
expect 403 forbidden "a moderator cannot unname herself"

# --- the lobby has no owner ---------------------------------------------------
for t in "$OWNER" "$USER"; do
	api_json POST /api/rooms/lobby/join "$t" '{}'
done
api_get /api/rooms/lobby/members "$OWNER"
check "nobody owns the lobby" \
	test "$(jq '[.members[] | select(.role == "owner")] | length' <<<"$BODY")" = 0
api PUT /api/rooms/lobby/moderators/ulf -H "Authorization: Bearer $OWNER"
expect 403 forbidden "only an admin names lobby moderators"
api PUT /api/rooms/lobby/moderators/ulf -H "Authorization: Bearer $ADMIN"
expect 200 "" "the admin names ulf lobby moderator"

# --- a moderator who leaves stops being one ----------------------------------
api_json POST /api/rooms/ops/leave "$MOD" '{}'
api_json POST /api/rooms/ops/join "$MOD" '{}'
api_get /api/rooms/ops/members "$OWNER"
check "mia is a plain member after leaving and joining" \
	test "$(jq -r '.members[] | select(.username == "mia") | .role' <<<"$BODY")" = member
api PUT /api/rooms/ops/moderators/mia -H "Authorization: Bearer $OWNER"
expect 200 "" "named again"

# --- roles persist ------------------------------------------------------------
stop_natterd
start_natterd
api_get /api/rooms/ops/members "$USER"
check "after a restart: owner and moderator kept" \
	test "$(jq -c '[.members[] | [.username, .role]]' <<<"$BODY")" = \
	'[["mia","moderator"],["olga","owner"],["ulf","member"]]'
api_get /api/me "$ADMIN"
check "after a restart: still admin" test "$(jget .admin)" = true

finish
