/* sendbatch: many sendmsg() calls submitted with one system call, through
 * io_uring (liburing), for a loop that writes to many sockets per wake-up.
 * Decided at start-up: sendbatch_new() returns NULL where io_uring is
 * missing (built without liburing, an old kernel), disabled
 * (kernel.io_uring_disabled) or filtered (seccomp, a container's policy, a
 * systemd unit's SystemCallFilter with SystemCallErrorNumber), and the
 * caller keeps its plain sendmsg() path.
 *
 * Every send is non-blocking (MSG_DONTWAIT): a full socket completes at
 * once with -EAGAIN, so sendbatch_run() never waits for a peer; it
 * returns when the kernel has answered every send. The msghdr, its iovecs
 * and the bytes they point at must stay valid until then. One thread per
 * batch. */
#ifndef NATTER_NET_SENDBATCH_H
#define NATTER_NET_SENDBATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct sendbatch;

/* A batch of up to entries sends (rounded up to a power of two by the
 * kernel), or NULL with why (a static string) when io_uring is not usable
 * here. */
struct sendbatch *sendbatch_new(unsigned entries, const char **why);
void sendbatch_free(struct sendbatch *b);

/* Room for this many more sends before sendbatch_run. */
unsigned sendbatch_room(const struct sendbatch *b);
/* Queue sendmsg(fd, mh, MSG_NOSIGNAL | MSG_DONTWAIT); tag comes back with
 * its result. false when the batch is full (run it first). */
bool sendbatch_add(struct sendbatch *b, int fd, const struct msghdr *mh,
		   void *tag);

typedef void (*sendbatch_done_fn)(void *tag, ssize_t result, void *arg);
/* Submit every queued send with one system call and report each: result
 * is what sendmsg() would have returned, or -errno. A send that is not
 * reported was not sent (the kernel refused the submission; the batch is
 * then unusable: sendbatch_room() is 0 from then on), and the caller
 * writes it the plain way. Returns the number reported, -1 if none were
 * because of such a refusal. */
int sendbatch_run(struct sendbatch *b, sendbatch_done_fn done, void *arg);

#endif
