/* fuzz_tls_pump: the TLS bridge's read-ahead framing (net/tls_pump.c
 * bio_recv and ra_stash): what mbedTLS reads from the client's socket
 * goes through a per-loop read-ahead buffer, is stashed on the heap when
 * the loop turns to another connection, and is handed out in whatever
 * sizes mbedTLS asks for (a record's 5-byte header, then its body, or a
 * big read straight into its buffer). The input is split in two: a
 * stream of bytes the "client" sends (written to a socketpair in chunks
 * the input chooses), and a script of read sizes and stashes. Whatever
 * the script, the bytes read back must be exactly the bytes sent, in
 * order, none lost or repeated, and nothing may read or write out of
 * bounds (AddressSanitizer). The record parsing itself is mbedTLS's. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tls_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* first byte: how much of the input is the script */
	size_t nscript = (size_t)data[0] * (size - 1) / 256;
	const uint8_t *script = data + 1;
	const uint8_t *sent = data + 1 + nscript;
	size_t nsent = size - 1 - nscript;
	if (nsent > 60000)
		nsent = 60000; /* fits a socketpair's buffer */

	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) < 0)
		abort();
	int big = 1 << 20;
	setsockopt(sp[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));

	static struct tls_loop tl;
	struct tls_conn *c = calloc(1, sizeof(*c));
	c->tl = &tl;
	c->fd = sp[0];

	unsigned char *got = malloc(nsent + 1);
	size_t ngot = 0, wrote = 0, si = 0;
	bool eof = false;
	unsigned char buf[TLS_CHUNK + 64];
	unsigned idle = 0; /* steps in a row that moved no byte */
	for (unsigned steps = 0; !eof && steps < 100000; steps++) {
		uint8_t op = nscript ? script[si++ % nscript] : 0x45;
		/* A script that stops sending (or never shuts down) would only
		 * spin: after a whole pass of it with nothing moved, the
		 * client sends what is left and shuts its side. */
		if (idle > nscript + 8)
			op = (uint8_t)((op | 1) & ~2);
		size_t before = wrote;
		/* the client sends the next chunk (its size from the script) */
		if (wrote < nsent && (op & 1)) {
			size_t chunk = 1 + (size_t)op * 97 % 9000;
			if (chunk > nsent - wrote)
				chunk = nsent - wrote;
			ssize_t w =
			    send(sp[1], sent + wrote, chunk, MSG_NOSIGNAL);
			if (w > 0)
				wrote += (size_t)w;
		}
		if (wrote == nsent && !(op & 2))
			shutdown(sp[1], SHUT_WR);
		/* the loop turns to another connection */
		if ((op & 0x0c) == 0x0c)
			ra_stash(c);
		/* mbedTLS asks: a header, a body, or a big read */
		size_t want = (op & 0x30) == 0x00   ? 5
			      : (op & 0x30) == 0x10 ? 1 + (size_t)op % 64
			      : (op & 0x30) == 0x20
				  ? 1 + (size_t)op * 131 % 4096
				  : TLS_RA + (size_t)op * 61 % 9000;
		int n = bio_recv(c, buf, want);
		if (n == MBEDTLS_ERR_SSL_WANT_READ) {
			idle = wrote == before ? idle + 1 : 0;
			continue;
		}
		idle = 0;
		if (n < 0)
			abort(); /* a socketpair never fails so */
		if (n == 0) {
			eof = true;
			break;
		}
		if ((size_t)n > want || ngot + (size_t)n > nsent)
			abort(); /* more than asked, or than sent */
		memcpy(got + ngot, buf, (size_t)n);
		ngot += (size_t)n;
	}
	if (eof && (ngot != nsent || memcmp(got, sent, nsent) != 0))
		abort(); /* lost, repeated or reordered bytes */
	if (c->ra != tl.ra)
		free(c->ra);
	free(c);
	free(got);
	close(sp[0]);
	close(sp[1]);
	return 0;
}
