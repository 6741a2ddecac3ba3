/* ws_frame: RFC 6455 frame headers out, frame boundaries in (see
 * ws_frame.h). Pure functions over bytes: no allocation, no I/O, no
 * natter dependencies, so contrib/ and tests/ link the same object.
 *
 * The tracker checks each field of a header as soon as its bytes are in (the
 * first two bytes, then the length, before the mask key); it never looks at
 * payload bytes,
 * which is what lets ws.c reject a frame announcing 2^40 bytes the moment
 * its header arrives instead of waiting for the payload (or a timeout). */
#include <string.h>

#include "transport/ws_frame.h"

size_t ws_frame_header(uint8_t h[WS_FRAME_HDR_MAX], unsigned opcode, bool fin,
		       uint64_t len, const uint8_t key[4])
{
	size_t n = 0;
	uint8_t mask = key ? 0x80 : 0;

	h[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
	if (len < 126) {
		h[n++] = (uint8_t)(mask | len);
	} else if (len <= 0xffff) {
		h[n++] = mask | 126;
		h[n++] = (uint8_t)(len >> 8);
		h[n++] = (uint8_t)len;
	} else {
		h[n++] = mask | 127;
		for (int i = 7; i >= 0; i--)
			h[n++] = (uint8_t)(len >> (8 * i));
	}
	if (key) {
		memcpy(h + n, key, 4);
		n += 4;
	}
	return n;
}

void ws_frame_mask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		p[i] ^= key[(off + i) & 3];
}

size_t ws_frame_wire_len(size_t len, size_t frag_max)
{
	if (len == 0)
		return 2;
	size_t full = len / frag_max, rem = len % frag_max;
	size_t full_hdr = frag_max < 126 ? 2 : frag_max <= 0xffff ? 4 : 10;
	size_t rem_hdr = rem == 0 ? 0 : rem < 126 ? 2 : rem <= 0xffff ? 4 : 10;
	return len + full * full_hdr + rem_hdr;
}

void ws_frame_gather_init(struct ws_frame_gather *g, size_t skip)
{
	g->n = g->nh = 0;
	g->skip = skip;
	g->bytes = 0;
}

/* Reference len bytes at p, minus what was written already. */
static void gather_bytes(struct ws_frame_gather *g, const void *p, size_t len)
{
	if (g->skip >= len) {
		g->skip -= len;
		return;
	}
	g->iov[g->n].iov_base = (char *)p + g->skip;
	g->iov[g->n].iov_len = len - g->skip;
	g->bytes += len - g->skip;
	g->skip = 0;
	g->n++;
}

bool ws_frame_gather_add(struct ws_frame_gather *g, unsigned opcode,
			 const void *p, size_t len, size_t frag_max)
{
	size_t off = 0;

	do {
		if (g->nh == WS_GATHER_FRAMES)
			return false;
		size_t flen = len - off < frag_max ? len - off : frag_max;
		uint8_t *h = g->hdr[g->nh++];
		size_t hl = ws_frame_header(h, off == 0 ? opcode : WS_OP_CONT,
					    off + flen >= len, flen, NULL);
		gather_bytes(g, h, hl);
		if (flen)
			gather_bytes(g, (const char *)p + off, flen);
		off += flen;
	} while (off < len);
	return g->nh < WS_GATHER_FRAMES;
}

void ws_frame_rx_init(struct ws_frame_rx *rx, bool from_client,
		      uint64_t msg_max)
{
	memset(rx, 0, sizeof(*rx));
	rx->from_client = from_client;
	rx->msg_max = msg_max;
}

/* Bytes of extended length after the first two (0, 2 or 8). */
static size_t ext_len(uint8_t b1)
{
	unsigned len7 = b1 & 0x7f;
	return len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
}

/* The first two bytes are in: 0 or a close code. */
static int check_start(const struct ws_frame_rx *rx)
{
	uint8_t b0 = rx->hdr[0], b1 = rx->hdr[1];
	unsigned op = b0 & 0x0f, len7 = b1 & 0x7f;
	bool fin = b0 & 0x80, masked = b1 & 0x80;

	if (b0 & 0x70) /* RSV1-3: no extension was negotiated */
		return WS_CLOSE_PROTOCOL;
	if (masked != rx->from_client)
		return WS_CLOSE_PROTOCOL;
	if (op & 0x08) {
		if (op > WS_OP_PONG)
			return WS_CLOSE_PROTOCOL;
		if (!fin || len7 > 125 || (op == WS_OP_CLOSE && len7 == 1))
			return WS_CLOSE_PROTOCOL;
		return 0;
	}
	if (op > WS_OP_BINARY)
		return WS_CLOSE_PROTOCOL;
	if ((op == WS_OP_CONT) != rx->in_msg)
		return WS_CLOSE_PROTOCOL;
	return 0;
}

/* The payload length, once its bytes are in. */
static uint64_t frame_len(const struct ws_frame_rx *rx)
{
	size_t ext = ext_len(rx->hdr[1]);
	uint64_t len = rx->hdr[1] & 0x7f;

	if (ext) {
		len = 0;
		for (size_t i = 0; i < ext; i++)
			len = len << 8 | rx->hdr[2 + i];
	}
	return len;
}

/* The length is in (the mask key may still be to come): 0 or a code. */
static int check_length(const struct ws_frame_rx *rx)
{
	unsigned op = rx->hdr[0] & 0x0f;
	size_t ext = ext_len(rx->hdr[1]);
	uint64_t len = frame_len(rx);

	if (len >> 63)
		return WS_CLOSE_PROTOCOL;
	/* RFC 6455 5.2: the minimal number of bytes must be used. */
	if ((ext == 2 && len < 126) || (ext == 8 && len <= 0xffff))
		return WS_CLOSE_PROTOCOL;
	if (op & 0x08)
		return 0;
	uint64_t sofar = op == WS_OP_CONT ? rx->msg_len : 0;
	if (len > rx->msg_max - sofar)
		return WS_CLOSE_TOO_BIG;
	return 0;
}

int ws_frame_rx_feed(struct ws_frame_rx *rx, const uint8_t *p, size_t n)
{
	while (n > 0 && !rx->err) {
		if (rx->left > 0) {
			size_t k = rx->left < n ? (size_t)rx->left : n;
			rx->left -= k;
			p += k;
			n -= k;
			continue;
		}
		rx->hdr[rx->hlen++] = *p++;
		n--;
		if (rx->hlen < 2)
			continue;
		/* Each check as soon as its bytes are in: a bad length is
		 * refused before its mask key arrives. */
		size_t ext = ext_len(rx->hdr[1]);
		size_t need = 2 + ext + ((rx->hdr[1] & 0x80) ? 4 : 0);
		if (rx->hlen == 2)
			rx->err = (uint16_t)check_start(rx);
		if (!rx->err && rx->hlen == 2 + ext)
			rx->err = (uint16_t)check_length(rx);
		if (rx->err || rx->hlen < need)
			continue;
		unsigned op = rx->hdr[0] & 0x0f;
		rx->left = frame_len(rx);
		if (!(op & 0x08)) {
			rx->msg_len =
			    (op == WS_OP_CONT ? rx->msg_len : 0) + rx->left;
			rx->in_msg = !(rx->hdr[0] & 0x80);
		}
		rx->hlen = 0;
	}
	return rx->err;
}

bool ws_frame_rx_idle(const struct ws_frame_rx *rx)
{
	return !rx->err && rx->left == 0 && rx->hlen == 0 && !rx->in_msg;
}

const char *ws_frame_rx_reason(const struct ws_frame_rx *rx)
{
	switch (rx->err) {
	case 0:
		return "";
	case WS_CLOSE_TOO_BIG:
		return "message too big";
	default:
		return "protocol error";
	}
}
