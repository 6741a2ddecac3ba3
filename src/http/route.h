/* route: matching a request's method and path against natter's one route
 * table (the table itself, and what each flag makes http check, live in
 * http.c). A pattern is a path of literal segments, "{name}" segments
 * (one segment, any bytes, handed to the handler) and, last, "**" (zero or
 * more segments, handed over as the rest of the path). Rows with the same
 * pattern form one path: its methods make the Allow header of a 405.
 *
 * Paths are split on '/'; leading slashes and one trailing slash are
 * ignored. A path of more than ROUTE_SEGMENTS_MAX segments, or with a
 * segment of ROUTE_SEGMENT_MAX bytes or more, matches nothing: no handler
 * ever sees it. Pure functions: no I/O, no allocation, no state. */
#ifndef NATTER_ROUTE_H
#define NATTER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

#define ROUTE_SEGMENTS_MAX 8
#define ROUTE_PARAMS_MAX 4 /* "{name}" segments in one pattern */
#define ROUTE_SEGMENT_MAX 64

/* What a route asks of a request before its handler runs (http.c). */
enum route_flag {
	/* A session (bearer token or cookie). A path whose every row needs
	 * one answers 401 before it answers 404 or 405. */
	ROUTE_AUTH = 1 << 0,
	/* A session, or ?token= (EventSource and WebSocket clients cannot set
	 * headers); checked after the method. */
	ROUTE_TOKEN = 1 << 1,
	/* State-changing: a cookie-authenticated request that is not a GET
	 * must come from one of our origins. */
	ROUTE_CSRF = 1 << 2,
	/* An Origin, when sent, must be ours whatever the credentials
	 * (cross-site WebSocket hijacking). */
	ROUTE_ORIGIN = 1 << 3,
	/* The body streams to the handler (request.h's sink): the route's
	 * checks and its handler run as soon as the headers are in, before
	 * any byte of the body is read; max-body does not apply. */
	ROUTE_STREAM = 1 << 4,
};

typedef enum MHD_Result (*route_fn)(struct request *req);
/* For a pattern with a "{name}" or "**" segment: arg is what the first
 * matched (the others: request_param()). */
typedef enum MHD_Result (*route_arg_fn)(struct request *req, const char *arg);

struct route {
	const char *method; /* "GET" (which HEAD matches too), "POST"...;
			       NULL: any method */
	const char *pattern;
	unsigned flags; /* enum route_flag */
	route_fn fn;	/* exactly one of fn and arg_fn */
	route_arg_fn arg_fn;
};

enum route_result {
	ROUTE_FOUND,	 /* m->route is the row to run */
	ROUTE_NO_METHOD, /* the path exists, the method not: m->allow */
	ROUTE_NO_PATH,	 /* no row matches the path */
	ROUTE_BAD_PATH,	 /* too many or too long segments */
};

struct route_match {
	const struct route *route;   /* ROUTE_FOUND: the row */
	unsigned flags_all;	     /* AND of the flags of the path's rows */
	unsigned flags_any;	     /* OR of them */
	char allow[64];		     /* ROUTE_NO_METHOD: "GET, POST" */
	char arg[ROUTE_SEGMENT_MAX]; /* what the first "{name}" matched */
	/* What each "{name}" matched, in order (param[0] is arg). */
	char param[ROUTE_PARAMS_MAX][ROUTE_SEGMENT_MAX];
	int nparams;
	const char *rest; /* what "**" matched: points into url */
};

/* Match method and url against the n rows of table, in order: the first
 * row whose pattern matches the path picks the path. */
enum route_result route_match(const struct route *table, size_t n,
			      const char *method, const char *url,
			      struct route_match *m);
/* Whether method is GET or HEAD (reads: never state-changing). */
bool route_method_is_read(const char *method);

#endif
