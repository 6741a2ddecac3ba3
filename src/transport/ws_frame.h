/* ws_frame: RFC 6455 frame bytes, with nothing but libc, so that natterd,
 * the load tool and the test clients share one implementation.
 *
 * Writer: the header of one frame (any opcode, masked or not, any length),
 * the wire size of a message that the server fragments, and a gather of
 * many messages as fragmented frames into one iovec array, for a single
 * writev/sendmsg (the payloads are referenced, never copied). Reader: a
 * byte-stream tracker that follows frame boundaries without buffering
 * payload, and checks every header as soon as it is complete, so a
 * protocol error or an oversized message is known when its header arrives,
 * not after its payload. It does not parse payloads, unmask data or check
 * UTF-8: wslay (or the caller) does that. */
#ifndef NATTER_WS_FRAME_H
#define NATTER_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define WS_FRAME_HDR_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask) */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

/* Close codes the tracker reports (RFC 6455 7.4.1). */
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_TOO_BIG 1009

/* --- writer --- */

/* Write the header of one frame with len payload bytes into h: the minimal
 * length encoding, masked with key when key is not NULL (client frames).
 * Returns the header's size (2..14). */
size_t ws_frame_header(uint8_t h[WS_FRAME_HDR_MAX], unsigned opcode, bool fin,
		       uint64_t len, const uint8_t key[4]);
/* XOR n bytes at p with key, p being at offset off of the payload. */
void ws_frame_mask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off);
/* Wire bytes of an unmasked message of len payload bytes sent as fragments
 * of at most frag_max bytes (the first with the message's opcode, the rest
 * continuations; an empty message is one empty frame). */
size_t ws_frame_wire_len(size_t len, size_t frag_max);

/* Messages gathered for one writev: at most WS_GATHER_FRAMES frames. */
#define WS_GATHER_FRAMES 256

struct ws_frame_gather {
	struct iovec iov[2 * WS_GATHER_FRAMES]; /* header, payload, ... */
	uint8_t hdr[WS_GATHER_FRAMES][WS_FRAME_HDR_MAX];
	int n;	      /* iov entries used */
	int nh;	      /* headers used (frames) */
	size_t skip;  /* wire bytes at the start, written already: left out */
	size_t bytes; /* bytes in iov */
};

/* Start a gather whose first skip wire bytes were written already (a
 * message cut short by a full socket). */
void ws_frame_gather_init(struct ws_frame_gather *g, size_t skip);
/* Append one unmasked message of len bytes at p as frames of at most
 * frag_max payload bytes (opcode, then continuations; FIN on the last).
 * p must stay valid until the write. false when the gather filled up:
 * what did not fit (the rest of this message, any later ones) goes in the
 * next gather, whose skip is the wire bytes written of the ones before. */
bool ws_frame_gather_add(struct ws_frame_gather *g, unsigned opcode,
			 const void *p, size_t len, size_t frag_max);

/* --- receive-side tracker --- */

/* Embedded in its owner; the fields are private to ws_frame.c. */
struct ws_frame_rx {
	uint64_t left;	  /* payload bytes of the current frame to come */
	uint64_t msg_len; /* payload bytes of the open data message */
	uint64_t msg_max; /* limit of one data message's payload */
	uint8_t hdr[WS_FRAME_HDR_MAX]; /* current header so far */
	uint8_t hlen;
	bool from_client; /* frames must be masked (else: must not be) */
	bool in_msg;	  /* a data frame without FIN came, not its last */
	uint16_t err;	  /* first violation's close code, 0 if none */
};

/* from_client: the tracker reads a client's frames (server side), which
 * must be masked; msg_max bounds a data message's total payload. */
void ws_frame_rx_init(struct ws_frame_rx *rx, bool from_client,
		      uint64_t msg_max);
/* Feed n received bytes. Returns 0, or the close code of the first
 * violation in the stream so far: WS_CLOSE_PROTOCOL for a reserved
 * opcode, RSV bits (no extension is negotiated), a wrong mask bit, a
 * control frame that is fragmented or longer than 125 bytes, a close
 * frame with a 1-byte payload, a 64-bit length with its top bit set, a
 * length not in its shortest form, a continuation with no message open or
 * a new data message inside one;
 * WS_CLOSE_TOO_BIG for a data message over msg_max. After a violation the
 * tracker stops and keeps returning that code. */
int ws_frame_rx_feed(struct ws_frame_rx *rx, const uint8_t *p, size_t n);
/* Between frames with no fragmented message open (and no violation). */
bool ws_frame_rx_idle(const struct ws_frame_rx *rx);
/* A short human reason for a close code the tracker returned. */
const char *ws_frame_rx_reason(const struct ws_frame_rx *rx);

#endif
