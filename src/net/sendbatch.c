/* sendbatch: see sendbatch.h. Without liburing (configure found no
 * liburing-dev) every batch is unavailable and callers use sendmsg(). */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>

#include "net/sendbatch.h"

#ifdef HAVE_LIBURING

#include <liburing.h>

#include "util/util.h"

struct sendbatch {
	struct io_uring ring;
	unsigned cap;	 /* SQ entries */
	unsigned queued; /* sends since the last run */
	bool broken;	 /* the kernel refused a submission: not used again */
};

struct sendbatch *sendbatch_new(unsigned entries, const char **why)
{
	struct sendbatch *b = xcalloc(1, sizeof(*b));
	int rc = io_uring_queue_init(entries, &b->ring, 0);

	if (rc < 0) {
		free(b);
		*why = rc == -ENOSYS   ? "io_uring is not in this kernel"
		       : rc == -EPERM  ? "io_uring is not permitted here "
					 "(kernel.io_uring_disabled, seccomp)"
		       : rc == -ENOMEM ? "no memory for an io_uring"
				       : "io_uring_setup failed";
		return NULL;
	}
	struct io_uring_probe *p = io_uring_get_probe_ring(&b->ring);
	bool ok = p && io_uring_opcode_supported(p, IORING_OP_SENDMSG);
	if (p)
		io_uring_free_probe(p);
	if (!ok) {
		io_uring_queue_exit(&b->ring);
		free(b);
		*why = "this kernel's io_uring has no sendmsg";
		return NULL;
	}
	b->cap = b->ring.sq.ring_entries;
	return b;
}

void sendbatch_free(struct sendbatch *b)
{
	if (!b)
		return;
	io_uring_queue_exit(&b->ring);
	free(b);
}

unsigned sendbatch_room(const struct sendbatch *b)
{
	return b->broken ? 0 : b->cap - b->queued;
}

bool sendbatch_add(struct sendbatch *b, int fd, const struct msghdr *mh,
		   void *tag)
{
	if (b->broken || b->queued == b->cap)
		return false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	if (!sqe)
		return false;
	io_uring_prep_sendmsg(sqe, fd, mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	io_uring_sqe_set_data(sqe, tag);
	b->queued++;
	return true;
}

int sendbatch_run(struct sendbatch *b, sendbatch_done_fn done, void *arg)
{
	unsigned want = b->queued, submitted = 0;
	int rc, tries = 0;

	b->queued = 0;
	if (b->broken)
		return -1;
	/* The sends complete while the kernel takes them (MSG_DONTWAIT), so
	 * one io_uring_enter both submits them and fills the completion
	 * ring; reaping reads shared memory. */
	while (submitted < want) {
		rc = io_uring_submit(&b->ring);
		if (rc > 0) {
			submitted += (unsigned)rc;
			continue;
		}
		if ((rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) &&
		    ++tries < 8)
			continue;
		/* The kernel would not take the rest: they were not sent;
		 * the ring is not used again (io_uring_queue_exit drops
		 * them), and the caller writes them the plain way. */
		b->broken = true;
		break;
	}
	unsigned seen = 0;
	while (seen < submitted) {
		struct io_uring_cqe *cqe;
		rc = io_uring_wait_cqe(&b->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			b->broken = true;
			break;
		}
		void *tag = io_uring_cqe_get_data(cqe);
		ssize_t res = cqe->res;
		io_uring_cqe_seen(&b->ring, cqe);
		seen++;
		done(tag, res, arg);
	}
	return seen ? (int)seen : (b->broken ? -1 : 0);
}

#else /* !HAVE_LIBURING */

struct sendbatch {
	int unused;
};

struct sendbatch *sendbatch_new(unsigned entries, const char **why)
{
	(void)entries;
	*why = "built without liburing";
	return NULL;
}

void sendbatch_free(struct sendbatch *b)
{
	(void)b;
}

unsigned sendbatch_room(const struct sendbatch *b)
{
	(void)b;
	return 0;
}

bool sendbatch_add(struct sendbatch *b, int fd, const struct msghdr *mh,
		   void *tag)
{
	(void)b;
	(void)fd;
	(void)mh;
	(void)tag;
	return false;
}

int sendbatch_run(struct sendbatch *b, sendbatch_done_fn done, void *arg)
{
	(void)b;
	(void)done;
	(void)arg;
	return -1;
}

#endif
