/* presence: the state machine of presence.h and the thread that ticks it.
 *
 * One lock (p->lock) guards the users and the timer heap. Each user keeps
 * its live connection count, when the last one went (gone_ms), its last
 * activity, its choice and text, and what was last published (pub).
 *
 * Timers: a min-heap of (due, user) with lazy deletion: a user's own due
 * is the one that counts, an entry whose due differs is stale and
 * skipped. Only what can change the effective state schedules anything:
 *   - a connect that would change it (offline -> online, idle away ->
 *     online): now + coalesce;
 *   - the last disconnect: gone + grace;
 *   - an activity report while shown away by idleness: now + coalesce;
 *   - a choice or a new text: now + coalesce.
 * The away-by-idleness deadline is computed when a user's timer fires:
 * evaluating a user always schedules its next deadline (last activity +
 * away), so an activity report while online costs one store of a number.
 *
 * Invariants
 *   P1 pub is what others were last told; an event is published only when
 *      the effective state or the text differs from it.
 *   P2 Only presence_tick publishes, and it runs callbacks after dropping
 *      the lock, in the order the changes were found; seq grows with each.
 *   P3 While a user has a pending change (conns or text), u->due is set
 *      and a heap entry carries it, so the change is looked at. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/presence.h"
#include "util/imap.h"
#include "util/util.h"

struct puser {
	int64_t id;
	unsigned conns;
	int64_t gone_ms;   /* when conns last fell to 0 */
	int64_t active_ms; /* last activity (a connect counts) */
	int64_t seen_ms;   /* last time connected; 0: never */
	enum presence_status chosen;
	int64_t chosen_ms;	     /* when chosen, wall clock; 0: loaded */
	enum presence_status remote; /* the other nodes' (cluster.h) */
	char text[PRESENCE_TEXT_BYTES];
	bool text_dirty; /* text differs from what was published */
	enum presence_status pub;
	uint64_t seq;
	int64_t due; /* 0: nothing scheduled */
};

struct timer {
	int64_t due, user;
};

struct change {
	int64_t user;
	struct presence_info info;
	bool offline; /* save last_seen */
};

struct presence {
	struct presence_config cfg;
	struct presence_ops ops;
	void *arg;

	pthread_mutex_t lock;
	struct imap users; /* id -> struct puser * */
	struct timer *heap;
	size_t nheap, heap_cap;
	uint64_t seq, published;

	pthread_cond_t cond;
	pthread_t thread;
	bool started, stop;
	int64_t waiting_until; /* the thread sleeps until then */
};

/* ---- heap ---- */

static void heap_push(struct presence *p, int64_t due, int64_t user)
{
	if (p->nheap == p->heap_cap) {
		p->heap_cap = p->heap_cap ? p->heap_cap * 2 : 64;
		p->heap = xrealloc(p->heap, p->heap_cap * sizeof(*p->heap));
	}
	size_t i = p->nheap++;
	while (i > 0 && p->heap[(i - 1) / 2].due > due) {
		p->heap[i] = p->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	p->heap[i] = (struct timer){due, user};
}

static struct timer heap_pop(struct presence *p)
{
	struct timer top = p->heap[0], last = p->heap[--p->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= p->nheap)
			break;
		if (c + 1 < p->nheap && p->heap[c + 1].due < p->heap[c].due)
			c++;
		if (p->heap[c].due >= last.due)
			break;
		p->heap[i] = p->heap[c];
		i = c;
	}
	if (p->nheap)
		p->heap[i] = last;
	return top;
}

/* ---- users (under p->lock) ---- */

static struct puser *user_get(struct presence *p, int64_t id)
{
	struct puser *u = imap_get_ptr(&p->users, id);
	if (!u) {
		u = xcalloc(1, sizeof(*u));
		u->id = id;
		u->chosen = PRESENCE_ONLINE;
		u->pub = PRESENCE_OFFLINE;
		imap_put(&p->users, id, (uintptr_t)u);
	}
	return u;
}

static void schedule(struct presence *p, struct puser *u, int64_t due)
{
	if (u->due && u->due <= due)
		return; /* an earlier look re-schedules what is left */
	u->due = due;
	heap_push(p, due, u->id);
	if (p->started && due < p->waiting_until)
		pthread_cond_signal(&p->cond);
}

/* What this node's own connections show, before any choice. */
static enum presence_status local(const struct presence *p,
				  const struct puser *u, int64_t now)
{
	/* gone: offline once the grace is over; one never shown online
	 * stays offline (a connection that came and went within the
	 * coalescing delay is no news) */
	if (!u->conns &&
	    (u->pub == PRESENCE_OFFLINE || now - u->gone_ms >= p->cfg.grace_ms))
		return PRESENCE_OFFLINE;
	if (now - u->active_ms >= p->cfg.away_ms)
		return PRESENCE_AWAY;
	return PRESENCE_ONLINE;
}

static int rank(enum presence_status s)
{
	return s == PRESENCE_ONLINE ? 2 : s == PRESENCE_AWAY ? 1 : 0;
}

/* What others should see now: the best of this node's and the other
 * nodes' (online beats away beats offline), then the choice. */
static enum presence_status effective(const struct presence *p,
				      const struct puser *u, int64_t now)
{
	enum presence_status here = local(p, u, now);
	if (rank(u->remote) > rank(here))
		here = u->remote;
	if (here == PRESENCE_OFFLINE)
		return PRESENCE_OFFLINE;
	if (u->chosen != PRESENCE_ONLINE)
		return u->chosen;
	return here;
}

/* When effective() may next change by itself; 0: never. */
static int64_t next_deadline(const struct presence *p, const struct puser *u,
			     int64_t now)
{
	if (!u->conns) {
		/* a grace already over: nothing left to wait for here (the
		 * other nodes may still show the user) */
		int64_t end = u->gone_ms + p->cfg.grace_ms;
		return (u->pub != PRESENCE_OFFLINE || u->text_dirty) &&
			       end > now
			   ? end
			   : 0;
	}
	if (u->chosen == PRESENCE_ONLINE && now - u->active_ms < p->cfg.away_ms)
		return u->active_ms + p->cfg.away_ms;
	return 0;
}

static void info_fill(const struct presence *p, const struct puser *u,
		      int64_t now, struct presence_info *out)
{
	(void)p;
	out->status = u->pub;
	out->chosen = u->chosen;
	memcpy(out->text, u->text, sizeof(out->text));
	out->last_seen_ms =
	    u->conns || u->remote != PRESENCE_OFFLINE ? now : u->seen_ms;
	out->seq = u->seq;
}

/* ---- lifecycle ---- */

struct presence *presence_new(const struct presence_config *cfg,
			      const struct presence_ops *ops, void *arg)
{
	struct presence *p = xcalloc(1, sizeof(*p));
	p->cfg = *cfg;
	if (p->cfg.grace_ms < 0)
		p->cfg.grace_ms = 0;
	if (p->cfg.coalesce_ms < 0)
		p->cfg.coalesce_ms = 0;
	if (ops)
		p->ops = *ops;
	p->arg = arg;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	p->waiting_until = INT64_MAX;
	return p;
}

void presence_free(struct presence *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->started)
		pthread_join(p->thread, NULL);
	int64_t now = now_ms();
	int64_t *ids = xmalloc((p->users.len + 1) * sizeof(*ids));
	int64_t *ms = xmalloc((p->users.len + 1) * sizeof(*ms));
	size_t n = 0;
	for (size_t i = 0; i < p->users.cap; i++) {
		if (p->users.keys[i] == IMAP_EMPTY)
			continue;
		struct puser *u = (struct puser *)p->users.vals[i];
		/* connected (here or on another node), or gone within the
		 * grace time (not saved yet) */
		if (u->conns || u->pub != PRESENCE_OFFLINE) {
			ids[n] = u->id;
			ms[n++] = u->conns || u->remote != PRESENCE_OFFLINE
				      ? now
				      : u->seen_ms;
		}
		free(u);
	}
	if (n && p->ops.save_seen)
		p->ops.save_seen(p->arg, ids, ms, n);
	free(ids);
	free(ms);
	imap_fini(&p->users);
	free(p->heap);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* ---- what is known ---- */

void presence_load(struct presence *p, int64_t user,
		   enum presence_status chosen, const char *text,
		   int64_t last_seen_ms)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	if (chosen == PRESENCE_AWAY || chosen == PRESENCE_DND)
		u->chosen = chosen;
	snprintf(u->text, sizeof(u->text), "%s", text ? text : "");
	u->seen_ms = last_seen_ms;
	u->gone_ms = last_seen_ms;
	pthread_mutex_unlock(&p->lock);
}

void presence_get(struct presence *p, int64_t user, int64_t now,
		  struct presence_info *out)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = imap_get_ptr(&p->users, user);
	if (u)
		info_fill(p, u, now, out);
	else
		*out = (struct presence_info){PRESENCE_OFFLINE, PRESENCE_ONLINE,
					      "", 0, 0};
	pthread_mutex_unlock(&p->lock);
}

/* ---- what happens ---- */

void presence_connect(struct presence *p, int64_t user, int64_t now)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	u->conns++;
	u->active_ms = now;
	u->seen_ms = now;
	if (effective(p, u, now) != u->pub)
		schedule(p, u, now + p->cfg.coalesce_ms);
	pthread_mutex_unlock(&p->lock);
}

void presence_disconnect(struct presence *p, int64_t user, int64_t now)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	assert(u->conns > 0);
	if (u->conns && --u->conns == 0) {
		u->gone_ms = now;
		u->seen_ms = now;
		schedule(p, u, now + p->cfg.grace_ms);
	}
	pthread_mutex_unlock(&p->lock);
}

void presence_activity(struct presence *p, int64_t user, int64_t now)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	u->active_ms = now;
	if (u->conns)
		u->seen_ms = now;
	if (effective(p, u, now) != u->pub)
		schedule(p, u, now + p->cfg.coalesce_ms);
	pthread_mutex_unlock(&p->lock);
}

int presence_choose(struct presence *p, int64_t user,
		    enum presence_status chosen, const char *text, int64_t now)
{
	if (chosen != PRESENCE_ONLINE && chosen != PRESENCE_AWAY &&
	    chosen != PRESENCE_DND)
		return -1;
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	u->chosen = chosen;
	u->chosen_ms = now;
	if (chosen == PRESENCE_ONLINE)
		u->active_ms = now; /* back from away by choice: active */
	if (text && strcmp(text, u->text)) {
		snprintf(u->text, sizeof(u->text), "%s", text);
		u->text_dirty = true;
	}
	if (u->text_dirty || effective(p, u, now) != u->pub)
		schedule(p, u, now + p->cfg.coalesce_ms);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* ---- the other nodes ---- */

size_t presence_local_list(struct presence *p, int64_t now,
			   struct presence_local **out)
{
	pthread_mutex_lock(&p->lock);
	size_t n = 0;
	*out = xmalloc((p->users.len + 1) * sizeof(**out));
	for (size_t i = 0; i < p->users.cap; i++) {
		if (p->users.keys[i] == IMAP_EMPTY)
			continue;
		struct puser *u = (struct puser *)p->users.vals[i];
		enum presence_status st = local(p, u, now);
		if (st == PRESENCE_OFFLINE)
			continue;
		struct presence_local *l = &(*out)[n++];
		l->user = u->id;
		l->status = st;
		l->chosen = u->chosen;
		l->chosen_ms = u->chosen_ms;
		memcpy(l->text, u->text, sizeof(l->text));
		l->seen_ms = u->conns ? now : u->seen_ms;
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}

void presence_remote_set(struct presence *p, int64_t user,
			 enum presence_status status, int64_t seen_ms,
			 int64_t now)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	if (u->remote != status) {
		/* seen elsewhere until then */
		if (status == PRESENCE_OFFLINE && !seen_ms)
			seen_ms = now;
		if (status == PRESENCE_OFFLINE && seen_ms > u->seen_ms)
			u->seen_ms = seen_ms;
		u->remote = status;
		if (effective(p, u, now) != u->pub)
			schedule(p, u, now + p->cfg.coalesce_ms);
	}
	pthread_mutex_unlock(&p->lock);
}

void presence_remote_choose(struct presence *p, int64_t user,
			    enum presence_status chosen, const char *text,
			    int64_t chosen_ms, int64_t now)
{
	pthread_mutex_lock(&p->lock);
	struct puser *u = user_get(p, user);
	if (chosen_ms > u->chosen_ms) {
		u->chosen = chosen;
		u->chosen_ms = chosen_ms;
		if (strcmp(text, u->text)) {
			snprintf(u->text, sizeof(u->text), "%s", text);
			u->text_dirty = true;
		}
		if (u->text_dirty || effective(p, u, now) != u->pub)
			schedule(p, u, now + p->cfg.coalesce_ms);
	}
	pthread_mutex_unlock(&p->lock);
}

/* Look at u (its timer fired): note a change in *out. Under the lock. */
static bool evaluate(struct presence *p, struct puser *u, int64_t now,
		     struct change *out)
{
	enum presence_status eff = effective(p, u, now);
	bool changed = eff != u->pub || u->text_dirty;
	if (changed) {
		u->pub = eff;
		u->text_dirty = false;
		/* microseconds of the wall clock, or one more than the last:
		 * it grows here, and across the nodes of a cluster (clocks in
		 * step) a later change has the larger seq, so a client that
		 * reads one node and streams from another orders them right */
		p->seq = (uint64_t)now * 1000 > p->seq ? (uint64_t)now * 1000
						       : p->seq + 1;
		u->seq = p->seq;
		p->published++;
		out->user = u->id;
		out->offline = eff == PRESENCE_OFFLINE;
		info_fill(p, u, now, &out->info);
	}
	int64_t next = next_deadline(p, u, now);
	if (next)
		schedule(p, u, next > now ? next : now);
	return changed;
}

int64_t presence_tick(struct presence *p, int64_t now)
{
	struct change *ch = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&p->lock);
	while (p->nheap && p->heap[0].due <= now) {
		struct timer t = heap_pop(p);
		struct puser *u = imap_get_ptr(&p->users, t.user);
		if (!u || u->due != t.due)
			continue; /* stale */
		u->due = 0;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			ch = xrealloc(ch, cap * sizeof(*ch));
		}
		if (evaluate(p, u, now, &ch[n]))
			n++;
	}
	int64_t next = p->nheap ? p->heap[0].due : INT64_MAX;
	pthread_mutex_unlock(&p->lock);

	int64_t *ids = n ? xmalloc(n * sizeof(*ids)) : NULL;
	int64_t *ms = n ? xmalloc(n * sizeof(*ms)) : NULL;
	size_t gone = 0;
	for (size_t i = 0; i < n; i++) {
		if (p->ops.publish)
			p->ops.publish(p->arg, ch[i].user, &ch[i].info);
		if (ch[i].offline) {
			ids[gone] = ch[i].user;
			ms[gone++] = ch[i].info.last_seen_ms;
		}
	}
	/* one commit for everyone who went offline in this tick */
	if (gone && p->ops.save_seen)
		p->ops.save_seen(p->arg, ids, ms, gone);
	free(ids);
	free(ms);
	free(ch);
	return next;
}

uint64_t presence_published(struct presence *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t n = p->published;
	pthread_mutex_unlock(&p->lock);
	return n;
}

/* ---- the thread ---- */

static void *presence_main(void *arg)
{
	struct presence *p = arg;
	pthread_setname_np(pthread_self(), "presence");
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->lock);
		int64_t now = now_ms();
		int64_t next = presence_tick(p, now);
		pthread_mutex_lock(&p->lock);
		if (p->stop)
			break;
		if (p->nheap && p->heap[0].due < next)
			next = p->heap[0].due; /* scheduled meanwhile */
		/* Wall clock deadlines, waited for on the monotonic clock;
		 * wake at least once a minute in case the wall clock moved. */
		int64_t wait = next == INT64_MAX ? 60000 : next - now;
		if (wait > 60000)
			wait = 60000;
		if (wait <= 0)
			continue;
		p->waiting_until = now + wait;
		struct timespec ts = mono_deadline(wait);
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
		p->waiting_until = INT64_MAX;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int presence_start(struct presence *p)
{
	pthread_mutex_lock(&p->lock);
	p->started = true;
	pthread_mutex_unlock(&p->lock);
	if (pthread_create(&p->thread, NULL, presence_main, p) != 0) {
		p->started = false;
		return -1;
	}
	return 0;
}

/* ---- words ---- */

static const char *const names[] = {
    [PRESENCE_OFFLINE] = "offline",
    [PRESENCE_ONLINE] = "online",
    [PRESENCE_AWAY] = "away",
    [PRESENCE_DND] = "dnd",
};

const char *presence_status_name(enum presence_status s)
{
	return (unsigned)s < ARRAY_LEN(names) ? names[s] : "offline";
}

int presence_status_parse(const char *s, enum presence_status *out)
{
	for (size_t i = 0; s && i < ARRAY_LEN(names); i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum presence_status)i;
			return 0;
		}
	return -1;
}

bool presence_text_valid(const char *s, size_t len)
{
	if (len == 0)
		return true;
	return len < PRESENCE_TEXT_BYTES && text_visible_valid(s, len) &&
	       utf8_count(s, len) <= PRESENCE_TEXT_MAX;
}
