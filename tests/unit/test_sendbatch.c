/* test_sendbatch: batched sendmsg() through io_uring (net/sendbatch.h).
 * Where io_uring is usable here: sends to many sockets in one batch arrive
 * whole and in order, each reported with its byte count; a full socket
 * reports -EAGAIN at once (never waits for the reader) and a closed peer
 * -EPIPE, both without a signal; a batch refuses more than its room and is
 * reusable after a run. Where it is not (no liburing, filtered), new says
 * why and returns NULL, which is what natterd's fallback keys on. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/sendbatch.h"

#define NS 16

struct rec {
	int n;
	void *tag[64];
	ssize_t res[64];
};

static void done(void *tag, ssize_t res, void *arg)
{
	struct rec *r = arg;
	assert_true(r->n < 64);
	r->tag[r->n] = tag;
	r->res[r->n++] = res;
}

static struct sendbatch *batch_or_skip(unsigned entries)
{
	const char *why = NULL;
	struct sendbatch *b = sendbatch_new(entries, &why);
	if (!b) {
		assert_non_null(why);
		print_message("io_uring not usable here (%s): skipped\n", why);
	}
	return b;
}

static void test_many_sockets(void **state)
{
	(void)state;
	struct sendbatch *b = batch_or_skip(NS);
	if (!b)
		skip();
	int sv[NS][2];
	char hdr[NS][16], body[NS][32];
	struct iovec iov[NS][2];
	struct msghdr mh[NS];
	struct rec r = {0};

	assert_true(sendbatch_room(b) >= NS);
	for (int i = 0; i < NS; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
		fcntl(sv[i][0], F_SETFL, O_NONBLOCK);
		int hl = snprintf(hdr[i], sizeof(hdr[i]), "h%02d:", i);
		int bl = snprintf(body[i], sizeof(body[i]), "body of %d", i);
		iov[i][0] = (struct iovec){hdr[i], (size_t)hl};
		iov[i][1] = (struct iovec){body[i], (size_t)bl};
		mh[i] = (struct msghdr){.msg_iov = iov[i], .msg_iovlen = 2};
		assert_true(sendbatch_add(b, sv[i][0], &mh[i], &sv[i][0]));
	}
	/* twice: a batch is reusable after a run */
	for (int round = 0; round < 2; round++) {
		if (round) {
			r.n = 0;
			for (int i = 0; i < NS; i++)
				assert_true(sendbatch_add(b, sv[i][0], &mh[i],
							  &sv[i][0]));
		}
		assert_int_equal(sendbatch_run(b, done, &r), NS);
		assert_int_equal(r.n, NS);
		for (int k = 0; k < r.n; k++) {
			int i = (int)((int(*)[2])r.tag[k] - sv);
			assert_int_equal(
			    r.res[k],
			    (ssize_t)(iov[i][0].iov_len + iov[i][1].iov_len));
		}
		for (int i = 0; i < NS; i++) {
			char got[64], want[64];
			/* (snprintf: GCC cannot bound the parts) */
			strcpy(want, hdr[i]);
			strcat(want, body[i]);
			ssize_t n = read(sv[i][1], got, sizeof(got) - 1);
			assert_int_equal(n, (ssize_t)strlen(want));
			got[n] = '\0';
			assert_string_equal(got, want);
		}
	}
	for (int i = 0; i < NS; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
	sendbatch_free(b);
}

static void test_full_and_closed(void **state)
{
	(void)state;
	struct sendbatch *b = batch_or_skip(4);
	if (!b)
		skip();
	int full[2], gone[2];
	static char big[1 << 16];
	struct iovec iov = {big, sizeof(big)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct rec r = {0};

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, full), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, gone), 0);
	/* fill the first socket until the kernel takes nothing more */
	fcntl(full[0], F_SETFL, O_NONBLOCK);
	while (send(full[0], big, sizeof(big), MSG_DONTWAIT) > 0)
		;
	close(gone[1]);
	assert_true(sendbatch_add(b, full[0], &mh, &full[0]));
	assert_true(sendbatch_add(b, gone[0], &mh, &gone[0]));
	assert_int_equal(sendbatch_run(b, done, &r), 2);
	for (int k = 0; k < 2; k++) {
		if (r.tag[k] == &full[0])
			assert_int_equal(r.res[k], -EAGAIN);
		else
			assert_int_equal(r.res[k], -EPIPE);
	}
	/* room: no more than the ring holds */
	unsigned room = sendbatch_room(b);
	for (unsigned i = 0; i < room; i++)
		assert_true(sendbatch_add(b, full[0], &mh, &full[0]));
	assert_false(sendbatch_add(b, full[0], &mh, &full[0]));
	r.n = 0;
	assert_int_equal(sendbatch_run(b, done, &r), (int)room);
	assert_int_equal(sendbatch_run(b, done, &r), 0); /* empty */
	close(full[0]);
	close(full[1]);
	close(gone[0]);
	sendbatch_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_many_sockets),
	    cmocka_unit_test(test_full_and_closed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
