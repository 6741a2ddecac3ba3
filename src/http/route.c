/* route: the matcher behind natter's route table. It knows nothing of
 * what a route does; http.c owns the table and the checks its flags ask
 * for. */
#include <stdio.h>
#include <string.h>

#include "http/route.h"

struct path {
	int n;
	const char *seg[ROUTE_SEGMENTS_MAX]; /* into the url, not terminated */
	size_t len[ROUTE_SEGMENTS_MAX];
	const char *end; /* the url's NUL: an empty rest points there */
};

/* 0, or -1 for too many or too long segments. */
static int path_split(const char *url, struct path *p)
{
	const char *s = url;
	p->n = 0;
	p->end = url + strlen(url);
	while (*s == '/')
		s++;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (p->n == ROUTE_SEGMENTS_MAX || len >= ROUTE_SEGMENT_MAX)
			return -1;
		p->seg[p->n] = s;
		p->len[p->n] = len;
		p->n++;
		if (!e)
			break;
		s = e + 1;
	}
	return 0;
}

/* Whether pattern matches p; fills arg and rest. */
static bool pattern_match(const char *pattern, const struct path *p,
			  struct route_match *m)
{
	const char *s = pattern;
	int i = 0;

	m->arg[0] = '\0';
	m->nparams = 0;
	m->rest = NULL;
	while (*s == '/')
		s++;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len == 2 && !memcmp(s, "**", 2)) {
			m->rest = i < p->n ? p->seg[i] : p->end;
			return true;
		}
		if (i == p->n)
			return false;
		if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
			if (m->nparams == ROUTE_PARAMS_MAX)
				return false;
			char *to = m->param[m->nparams++];
			memcpy(to, p->seg[i], p->len[i]);
			to[p->len[i]] = '\0';
			if (m->nparams == 1)
				memcpy(m->arg, to, p->len[i] + 1);
		} else if (len != p->len[i] || memcmp(s, p->seg[i], len)) {
			return false;
		}
		i++;
		s = e ? e + 1 : s + len;
	}
	return i == p->n;
}

static bool method_match(const char *want, const char *method)
{
	if (!want || !strcmp(want, method))
		return true;
	return !strcmp(want, "GET") && !strcmp(method, "HEAD");
}

bool route_method_is_read(const char *method)
{
	return !strcmp(method, "GET") || !strcmp(method, "HEAD");
}

enum route_result route_match(const struct route *table, size_t n,
			      const char *method, const char *url,
			      struct route_match *m)
{
	struct path p;
	const char *pattern = NULL;

	memset(m, 0, sizeof(*m));
	if (path_split(url, &p) < 0)
		return ROUTE_BAD_PATH;
	for (size_t i = 0; i < n && !pattern; i++)
		if (pattern_match(table[i].pattern, &p, m))
			pattern = table[i].pattern;
	if (!pattern)
		return ROUTE_NO_PATH;
	m->flags_all = ~0u;
	for (size_t i = 0; i < n; i++) {
		const struct route *r = &table[i];
		if (strcmp(r->pattern, pattern))
			continue;
		m->flags_all &= r->flags;
		m->flags_any |= r->flags;
		if (!m->route && method_match(r->method, method))
			m->route = r;
		size_t used = strlen(m->allow);
		if (r->method)
			snprintf(m->allow + used, sizeof(m->allow) - used,
				 "%s%s", used ? ", " : "", r->method);
	}
	return m->route ? ROUTE_FOUND : ROUTE_NO_METHOD;
}
