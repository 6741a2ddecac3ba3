/* api: the JSON API handlers (accounts, rooms, history, search). Each
 * answers one route; http.c has authenticated the request where the route
 * needs it, and has read the whole body. A handler may be called several
 * times for one request when it runs an async chat command: req->phase
 * tells it where it is. */
#ifndef NATTER_API_H
#define NATTER_API_H

#include "http/request.h"

enum MHD_Result api_register(struct request *req);
enum MHD_Result api_login(struct request *req);
enum MHD_Result api_logout(struct request *req);
enum MHD_Result api_me_get(struct request *req);
enum MHD_Result api_me_patch(struct request *req);
/* GET /api/presence, POST /api/activity (api_presence.c). */
enum MHD_Result api_presence_get(struct request *req);
enum MHD_Result api_activity(struct request *req);
/* PUT /api/me/avatar {"upload": ID}, DELETE /api/me/avatar (api_avatar.c):
 * 200 {"avatar": URL or null}. */
enum MHD_Result api_me_avatar_put(struct request *req);
enum MHD_Result api_me_avatar_delete(struct request *req);
/* POST /api/me/avatar: a multipart form with a field "file", streamed to
 * disk like POST /api/rooms/{room}/files, made the avatar (api_upload.c). */
enum MHD_Result api_me_avatar_form(struct request *req);
/* Make finished upload id of the requester their avatar (NULL: none) and
 * answer 200 {"avatar": URL or null} (and tell co-members), or the error;
 * *applied says whether it was made. */
enum MHD_Result api_avatar_apply(struct request *req, const char *id,
				 bool *applied);
enum MHD_Result api_rooms_list(struct request *req);
enum MHD_Result api_rooms_create(struct request *req);
enum MHD_Result api_room_join(struct request *req, const char *room);
enum MHD_Result api_room_leave(struct request *req, const char *room);
enum MHD_Result api_room_members(struct request *req, const char *room);
/* PUT/DELETE /api/rooms/{room}/moderators/{user}: name or unname one. */
enum MHD_Result api_room_moderator_put(struct request *req, const char *room);
enum MHD_Result api_room_moderator_delete(struct request *req,
					  const char *room);
/* Moderation: POST kicks, POST/GET bans, DELETE bans/{user}. */
enum MHD_Result api_room_kick(struct request *req, const char *room);
enum MHD_Result api_room_ban(struct request *req, const char *room);
enum MHD_Result api_room_unban(struct request *req, const char *room);
enum MHD_Result api_room_bans(struct request *req, const char *room);
/* POST mutes, DELETE mutes/{user}. */
enum MHD_Result api_room_mute(struct request *req, const char *room);
enum MHD_Result api_room_unmute(struct request *req, const char *room);
/* POST /api/admin/users/{user}/disable {"reason"}, .../enable. */
enum MHD_Result api_admin_user_disable(struct request *req, const char *user);
enum MHD_Result api_admin_user_enable(struct request *req, const char *user);
/* GET /api/admin/audit?before=&limit=: the audit log (admins). */
enum MHD_Result api_admin_audit(struct request *req);
/* GET /api/admin/stats?from=&to=: the statistics page's data (admins). */
enum MHD_Result api_admin_stats(struct request *req);
/* GET /api/admin/users?q=&after=&limit=: accounts by name (admins). */
enum MHD_Result api_admin_users(struct request *req);
/* PUT / DELETE /api/admin/users/{user}/admin: grant or revoke admin. */
enum MHD_Result api_admin_grant(struct request *req, const char *user);
enum MHD_Result api_admin_revoke(struct request *req, const char *user);
/* "owner", "moderator", "member" or "none" for an enum store_role. */
const char *api_role_name(int role);
/* POST /api/rooms/{room}/invites {"user":NAME}: a member invites NAME. */
enum MHD_Result api_room_invite(struct request *req, const char *room);
/* POST /api/rooms/{room}/read {"id":N}: the read marker, forward only. */
enum MHD_Result api_room_read(struct request *req, const char *room);
/* GET /api/invites: the requester's open invitations. */
enum MHD_Result api_invites_list(struct request *req);
/* POST /api/dms {"users":[NAME,...]}: the direct conversation of the
 * requester and those people, opened on first use. */
enum MHD_Result api_dms_open(struct request *req);
enum MHD_Result api_history(struct request *req, const char *room);
enum MHD_Result api_send(struct request *req, const char *room);
/* PATCH /api/rooms/{room}/messages/{id} {"text"}: edit by the author;
 * DELETE /api/rooms/{room}/messages/{id}: delete by the author. 200 with
 * the event; a retry that changes nothing answers the earlier event with
 * "duplicate": true. 403 not_author, 404 no_such_message, 409
 * message_deleted (an edit of a deleted message). */
enum MHD_Result api_message_edit(struct request *req, const char *room);
enum MHD_Result api_message_delete(struct request *req, const char *room);
/* PUT / DELETE /api/rooms/{room}/messages/{id}/reactions/{emoji} */
enum MHD_Result api_reaction_put(struct request *req, const char *room);
enum MHD_Result api_reaction_delete(struct request *req, const char *room);
/* POST /api/rooms/{room}/typing: the typing signal for clients that have no
 * WebSocket (SSE, long-poll, curl). */
enum MHD_Result api_typing(struct request *req, const char *room);
enum MHD_Result api_search(struct request *req);
/* POST /api/client-report {"transport","reason"}: counted in /metrics. */
enum MHD_Result api_client_report(struct request *req);

/* tus 1.0 uploads (api_upload.c): OPTIONS discovery; POST creation
 * (Upload-Length, Upload-Metadata); HEAD/GET an upload's offset (GET also
 * as JSON, with the file once complete); PATCH bytes (a streamed body,
 * Upload-Offset); DELETE termination. */
enum MHD_Result api_upload_options(struct request *req);
enum MHD_Result api_upload_options_id(struct request *req, const char *id);
enum MHD_Result api_upload_create(struct request *req);
enum MHD_Result api_upload_get(struct request *req, const char *id);
enum MHD_Result api_upload_patch(struct request *req, const char *id);
enum MHD_Result api_upload_delete(struct request *req, const char *id);
/* POST /api/rooms/{room}/files: a multipart form with a field "file" (and
 * an optional "text"), streamed to disk; sends a message carrying the
 * file and answers 201 {"file":{...},"event":{...}}. */
enum MHD_Result api_room_file(struct request *req, const char *room);
/* GET /files/{id}/{name}: a file, to its owner and members of a room
 * where a message carries it (api_file.c). */
enum MHD_Result api_file_get(struct request *req, const char *id);

/* --- shared by the api_*.c files ---------------------------------------- */

/* Answer {"error":code,"message":message} with status. */
enum MHD_Result api_fail(struct request *req, unsigned status, const char *code,
			 const char *message);
/* The envelope of ev parsed back into JSON (caller decrefs). */
json_t *api_event_json(struct event *ev);
/* A required string member: NULL (and answered 422) when absent. */
const char *api_field_str(struct request *req, json_t *obj, const char *name,
			  enum MHD_Result *ret);
/* Second half of every async chat command: map req->result to an answer
 * (status on success; exists_code/message for CHAT_EEXISTS if not NULL). */
enum MHD_Result api_answer_event(struct request *req, unsigned status,
				 const char *exists_code,
				 const char *exists_message);
/* Resolve a room the requester must belong to: 0, or -1 after answering. */
int api_member_room(struct request *req, const char *room, int64_t *id,
		    char name[33], enum MHD_Result *ret);
/* The user's rate limits for command name (core/cmd.h's cmd_admit): 0, or
 * -1 after answering 429 rate_limited with Retry-After (counted). */
int api_admit(struct request *req, const char *name, enum MHD_Result *ret);
/* A request that was answered already (a bad body) still costs the user
 * one command of their rate limit. */
void api_charge(struct request *req);
/* A command endpoint through the command table (core/cmd.h): room (a path
 * parameter, or NULL) is merged into args. -1: answered (*ret): 429
 * rate_limited (api_admit), a missing or mistyped member as 422
 * invalid_field, or a chat error. 0: an
 * ephemeral command ran; the caller answers. 1: the request is suspended
 * until the command's done callback. */
int api_command(struct request *req, const char *name, json_t *args,
		const char *room, enum MHD_Result *ret);
/* Append [<env>,<env>,...]: the events' stored envelope bytes, as they are. */
void api_events_write(struct buf *b, struct event **evs, size_t n);
/* Unref each event and free the array (from chat_history, chat_search). */
void api_events_free(struct event **evs, size_t n);

#endif
