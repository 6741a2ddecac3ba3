/* api: the JSON API handlers (accounts, rooms, history, search). Each
 * answers one route; http.c has authenticated the request where the route
 * needs it, and has read the whole body. A handler may be called several
 * times for one request when it runs an async chat command: req->phase
 * tells it where it is. */
#ifndef NATTER_API_H
#define NATTER_API_H

#include "request.h"

enum MHD_Result api_register(struct request *req);
enum MHD_Result api_login(struct request *req);
enum MHD_Result api_logout(struct request *req);
enum MHD_Result api_me_get(struct request *req);
enum MHD_Result api_me_patch(struct request *req);
enum MHD_Result api_rooms_list(struct request *req);
enum MHD_Result api_rooms_create(struct request *req);
enum MHD_Result api_room_join(struct request *req, const char *room);
enum MHD_Result api_room_leave(struct request *req, const char *room);
enum MHD_Result api_room_members(struct request *req, const char *room);
enum MHD_Result api_history(struct request *req, const char *room);
enum MHD_Result api_send(struct request *req, const char *room);
/* POST /api/rooms/{room}/typing: the typing signal for clients that have no
 * WebSocket (SSE, long-poll, curl). */
enum MHD_Result api_typing(struct request *req, const char *room);
enum MHD_Result api_search(struct request *req);
/* POST /api/client-report {"transport","reason"}: counted in /metrics. */
enum MHD_Result api_client_report(struct request *req);

#endif
