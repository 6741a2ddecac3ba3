/* store/postgresql/feed: every committed event, this node's and the other
 * nodes', to the commit hook exactly once and in id order.
 *
 * Writers commit ids in id order (writer.c: the advisory lock is held to
 * the commit) and NOTIFY natter_events with their newest id. The feed
 * thread LISTENs on a connection of its own; on each wake-up (a batch of
 * notifications, or a second without any, in case one was missed while
 * the connection was down) it fetches `id > seen` once, a page at a time,
 * and hands the rows to the hook: one query per node per wake-up, however
 * many subscribers. This node's writer, after its commit, first fetches
 * the ids between what was handed over and its batch's first id (an
 * earlier commit of another node not yet notified) and then hands over
 * its own events: so a node's own commit never overtakes an earlier id
 * from another node. fmu orders the two; seen says how far it went.
 *
 * The feed thread only waits on its sockets and the database: it never
 * runs on, or blocks, an event loop. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/postgresql/pg.h"
#include "util/util.h"

#define FEED_PAGE 1000
#define FEED_IDLE_MS 1000 /* fetch anyway after this long without a notify */

static void hand_over(struct pgst *st, struct event *ev)
{
	st->hook(st->hook_arg, ev);
	st->seen = event_id(ev);
	atomic_store(&st->last_id, st->seen);
}

/* Under fmu: the envelopes another node's delete rewrote (the message's
 * tombstone, its edits, the replies quoting it), read back as committed
 * and handed to the hook as revisions, so that this node's ring holds
 * what history holds and a resume from before the message never brings
 * its text back. A read that fails leaves the ring entries to age out. */
static void revisions_of(struct pgst *st, const int64_t *deletes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct pstmt *s = pgs_stmt(&st->fetch, Q_FEED_REVISED);
		if (!s)
			return;
		pg_bind_int64(s, 1, deletes[i]);
		while (pg_step(s) == PG_ROW) {
			struct event *ev = pgs_row_event(s);
			if (!ev)
				continue;
			event_revision_set(ev);
			st->hook(st->hook_arg, ev);
			event_unref(ev);
		}
		pgs_stmt_done(s);
	}
}

/* Under fmu: hand over every committed id in (seen, below), in order.
 * 0, or -1 when the database could not be read (seen is then where it
 * got to; a later wake-up goes on from there). */
static int catch_up(struct pgst *st, int64_t below)
{
	for (;;) {
		struct pstmt *s = pgs_stmt(&st->fetch, Q_FEED_AFTER);
		int64_t *deletes = NULL;
		size_t ndel = 0;
		int rc, rows = 0;

		if (!s)
			return -1;
		pg_bind_int64(s, 1, st->seen);
		pg_bind_int64(s, 2, below);
		pg_bind_int64(s, 3, FEED_PAGE);
		while ((rc = pg_step(s)) == PG_ROW) {
			struct event *ev = pgs_row_event(s);
			rows++;
			if (!ev) { /* a type this build does not know */
				st->seen = pg_col_int64(s, 0);
				continue;
			}
			if (event_type(ev) == EVENT_DELETE) {
				deletes = xrealloc(
				    deletes, (ndel + 1) * sizeof(*deletes));
				deletes[ndel++] = event_id(ev);
			}
			hand_over(st, ev);
			event_unref(ev);
		}
		pgs_stmt_done(s);
		revisions_of(st, deletes, ndel);
		free(deletes);
		if (rc != PG_DONE)
			return -1;
		if (rows < FEED_PAGE)
			return 0;
	}
}

void pgs_feed_own(struct pgst *st, int64_t first, struct event **evs, size_t n,
		  struct event **revs, size_t nrev)
{
	pthread_mutex_lock(&st->fmu);
	/* This batch's revisions come from the writer; another node's are
	 * read back by catch_up when its delete arrives. */
	for (size_t i = 0; i < nrev && st->hook; i++)
		st->hook(st->hook_arg, revs[i]);
	if (st->hook) {
		/* the ids before this batch (another node's) go first; if
		 * they cannot be read, the feed thread hands over this batch
		 * too, from the database, once it can */
		if (st->seen >= first - 1 || catch_up(st, first) == 0)
			for (size_t i = 0; i < n; i++)
				if (event_id(evs[i]) > st->seen)
					hand_over(st, evs[i]);
	} else {
		st->seen = event_id(evs[n - 1]);
		atomic_store(&st->last_id, st->seen);
	}
	pthread_mutex_unlock(&st->fmu);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
				      : -1;
}

/* A node ended sessions (users.c): forget them here too; tell chat of an
 * account changed ("u:ID") or registered ("n:ID:NAME") on any node. */
static void session_word(struct pgst *st, const char *w)
{
	if (!strncmp(w, "u:", 2)) {
		pgs_session_forget_user(st, atoll(w + 2));
		if (st->user_hook)
			st->user_hook(st->user_hook_arg, 'u', atoll(w + 2),
				      NULL);
	} else if (!strncmp(w, "n:", 2)) {
		const char *name = strchr(w + 2, ':');
		if (name && st->user_hook)
			st->user_hook(st->user_hook_arg, 'n', atoll(w + 2),
				      name + 1);
	} else if (!strncmp(w, "h:", 2) && strlen(w) == 2 + 64) {
		uint8_t hash[32];
		for (int i = 0; i < 32; i++) {
			int hi = hexval(w[2 + 2 * i]),
			    lo = hexval(w[3 + 2 * i]);
			if (hi < 0 || lo < 0)
				return;
			hash[i] = (uint8_t)(hi << 4 | lo);
		}
		pgs_session_forget(st, hash);
	}
}

static int listen_open(struct pgst *st)
{
	pg_disconnect(&st->listen);
	if (pg_connect(&st->listen, st->url, NULL, 0) < 0)
		return -1;
	if (pg_exec(&st->listen,
		    "LISTEN " PG_CHANNEL "; LISTEN " PG_SESSIONS) != PG_OK) {
		pg_disconnect(&st->listen);
		return -1;
	}
	return 0;
}

static void *feed_main(void *arg)
{
	struct pgst *st = arg;
	bool up = st->listen.pg != NULL;

	pthread_setname_np(pthread_self(), "store-feed");
	for (;;) {
		struct pollfd p[2] = {
		    {.fd = st->feed_wake[0], .events = POLLIN},
		    {.fd = up ? PQsocket(st->listen.pg) : -1,
		     .events = POLLIN}};
		int n = poll(p, 2, FEED_IDLE_MS);
		if (n < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break; /* stop */
		if (!up) {
			/* the database went away: try again each second; a
			 * new LISTEN may have missed notifies, so fetch */
			up = listen_open(st) == 0;
			if (up)
				atomic_store(&st->reachable, true);
		} else if (p[1].revents) {
			PGnotify *nt;
			if (!PQconsumeInput(st->listen.pg)) {
				up = false;
				atomic_store(&st->reachable, false);
			}
			while ((nt = PQnotifies(st->listen.pg))) {
				if (!strcmp(nt->relname, PG_SESSIONS))
					session_word(st, nt->extra);
				PQfreemem(nt);
			}
		}
		pthread_mutex_lock(&st->fmu);
		if (st->hook)
			catch_up(st, INT64_MAX);
		pthread_mutex_unlock(&st->fmu);
	}
	return NULL;
}

int pgs_feed_start(struct pgst *st, char *err, size_t errlen)
{
	if (pipe2(st->feed_wake, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "store: pipe: %s", strerror(errno));
		return -1;
	}
	if (listen_open(st) < 0) {
		snprintf(err, errlen, "PostgreSQL: cannot LISTEN %s",
			 PG_CHANNEL);
		return -1;
	}
	if (pthread_create(&st->feed_thread, NULL, feed_main, st) != 0) {
		snprintf(err, errlen, "store: cannot start the feed thread");
		return -1;
	}
	st->feed_started = true;
	return 0;
}

void pgs_feed_stop(struct pgst *st)
{
	if (st->feed_started) {
		ssize_t w = write(st->feed_wake[1], "x", 1);
		(void)w;
		pthread_join(st->feed_thread, NULL);
		st->feed_started = false;
	}
	for (int i = 0; i < 2; i++)
		if (st->feed_wake[i] >= 0) {
			close(st->feed_wake[i]);
			st->feed_wake[i] = -1;
		}
}
