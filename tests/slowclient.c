/* slowclient: many deliberately slow clients for natter's flood tests.
 * Opens N connections to HOST:PORT and, on each, sends a prefix at once
 * and then one more byte every --every milliseconds (never finishing),
 * for --hold seconds. Reports how many connections the server closed and
 * when, so a test can assert that a deadline closed them:
 *
 *   opened=N refused=R closed=C open=O first_close_ms=A last_close_ms=B
 *
 * Modes (the prefix and what trickles):
 *   headers  "GET / HTTP/1.1\r\nHost: h\r\n", then a header, byte by byte
 *   body     a POST's complete headers announcing a 1 MB body, then body
 *   hello    a TLS record header announcing a 512-byte ClientHello and its
 *            first bytes, then nothing more (a half handshake)
 * --bind picks the source address (127.0.0.2 etc.: another client).
 * Only libc: poll() over every socket in one thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: slowclient --port P [--host 127.0.0.1] [--bind ADDR]\n"
		"  [--conns N]\n"
		"  [--mode headers|body|hello] [--every MS] [--hold S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *mode = "headers", *bind_to = NULL;
	int port = 0, n = 100, every = 1000, hold = 15;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--host"))
			host = argv[++i];
		else if (!strcmp(argv[i], "--bind"))
			bind_to = argv[++i];
		else if (!strcmp(argv[i], "--port"))
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--conns"))
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--mode"))
			mode = argv[++i];
		else if (!strcmp(argv[i], "--every"))
			every = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--hold"))
			hold = atoi(argv[++i]);
		else
			usage();
	}
	if (port <= 0 || n <= 0)
		usage();

	static const unsigned char hello[] = {
	    0x16, 0x03, 0x01, 0x02, 0x00, /* handshake record, 512 bytes */
	    0x01, 0x00, 0x01, 0xfc,	  /* ClientHello, 508 bytes */
	    0x03, 0x03, 0x00, 0x01, 0x02, 0x03};
	const char *prefix, *trickle;
	size_t prefix_len;
	if (!strcmp(mode, "headers")) {
		prefix = "GET / HTTP/1.1\r\nHost: h\r\n";
		trickle =
		    "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
	} else if (!strcmp(mode, "body")) {
		prefix = "POST /api/login HTTP/1.1\r\nHost: h\r\n"
			 "Content-Type: application/json\r\n"
			 "Content-Length: 1000000\r\n\r\n";
		trickle = "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	} else if (!strcmp(mode, "hello")) {
		prefix = (const char *)hello;
		trickle = NULL;
	} else {
		usage();
		return 2;
	}
	prefix_len = trickle ? strlen(prefix) : sizeof(hello);

	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((unsigned short)port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		usage();
	struct sockaddr_in src = {.sin_family = AF_INET};
	if (bind_to && inet_pton(AF_INET, bind_to, &src.sin_addr) != 1)
		usage();
	struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
	size_t *pos = calloc((size_t)n, sizeof(*pos));
	int opened = 0, refused = 0, closed = 0;
	long long start = mono_ms(), first = -1, last = -1;
	for (int i = 0; i < n; i++) {
		pf[i].fd = -1;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 ||
		    (bind_to &&
		     bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    write(fd, prefix, prefix_len) != (ssize_t)prefix_len) {
			refused++;
			if (fd >= 0)
				close(fd);
			continue;
		}
		fcntl(fd, F_SETFL, O_NONBLOCK);
		pf[i].fd = fd;
		pf[i].events = POLLIN;
		opened++;
	}
	long long next = mono_ms() + every;
	while (mono_ms() - start < (long long)hold * 1000) {
		int wait = (int)(next - mono_ms());
		if (wait < 0)
			wait = 0;
		poll(pf, (nfds_t)n, wait);
		for (int i = 0; i < n; i++) {
			if (pf[i].fd < 0 ||
			    !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t r = read(pf[i].fd, buf, sizeof(buf));
			if (r > 0 || (r < 0 && errno == EAGAIN))
				continue; /* an answer (408?): wait for close */
			close(pf[i].fd);
			pf[i].fd = -1;
			closed++;
			last = mono_ms() - start;
			if (first < 0)
				first = last;
		}
		if (mono_ms() >= next) {
			next += every;
			for (int i = 0; trickle && i < n; i++) {
				if (pf[i].fd < 0)
					continue;
				size_t k = pos[i]++ % strlen(trickle);
				if (write(pf[i].fd, trickle + k, 1) < 0 &&
				    errno != EAGAIN) {
					close(pf[i].fd);
					pf[i].fd = -1;
					closed++;
					last = mono_ms() - start;
					if (first < 0)
						first = last;
				}
			}
		}
	}
	int still = 0;
	for (int i = 0; i < n; i++)
		if (pf[i].fd >= 0) {
			still++;
			close(pf[i].fd);
		}
	printf("opened=%d refused=%d closed=%d open=%d first_close_ms=%lld "
	       "last_close_ms=%lld\n",
	       opened, refused, closed, still, first, last);
	free(pf);
	free(pos);
	return 0;
}
