/* test_ws_frame: ws_frame through ws_frame.h. The writer's header bytes for
 * each length encoding, masked and not, the fragmented wire size, and the
 * gather of messages into iovecs (fragments, a skipped prefix, a full
 * gather); the
 * receive tracker fed exactly the bytes of each protocol error RFC 6455
 * forbids (control frame over 125 bytes, fragmented control frame, 1-byte
 * close payload, 64-bit length with the top bit set, reserved opcodes, RSV
 * bits, a wrong mask bit, stray or nested continuations) and of a header
 * announcing 2^40 bytes, whole and one byte at a time; and that valid
 * streams (interleaved control frames, fragmented messages up to the limit)
 * pass. Pure functions: no fixtures. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "transport/ws_frame.h"

#define MAX 16384

static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};

/* A masked client frame with len payload bytes (of value 'a'): its size. */
static size_t client_frame(uint8_t *out, unsigned op, bool fin, size_t len)
{
	size_t h = ws_frame_header(out, op, fin, len, key);
	memset(out + h, 'a', len);
	ws_frame_mask(out + h, len, key, 0);
	return h + len;
}

/* Feed all of p, whole and again one byte at a time: the code both give. */
static int feed_both(const uint8_t *p, size_t n, bool from_client)
{
	struct ws_frame_rx whole, bytes;
	int rc = 0;

	ws_frame_rx_init(&whole, from_client, MAX);
	ws_frame_rx_init(&bytes, from_client, MAX);
	int a = ws_frame_rx_feed(&whole, p, n);
	for (size_t i = 0; i < n; i++)
		rc = ws_frame_rx_feed(&bytes, p + i, 1);
	assert_int_equal(a, rc);
	return a;
}

/* --- writer ------------------------------------------------------------- */

static void test_header_lengths(void **state)
{
	uint8_t h[WS_FRAME_HDR_MAX];
	(void)state;

	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 0, NULL), 2);
	assert_int_equal(h[0], 0x81);
	assert_int_equal(h[1], 0x00);
	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 125, NULL), 2);
	assert_int_equal(h[1], 125);
	assert_int_equal(ws_frame_header(h, WS_OP_CONT, false, 126, NULL), 4);
	assert_int_equal(h[0], 0x00);
	assert_int_equal(h[1], 126);
	assert_int_equal(h[2], 0);
	assert_int_equal(h[3], 126);
	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 65535, NULL), 4);
	assert_int_equal(h[2], 0xff);
	assert_int_equal(h[3], 0xff);
	assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 65536, NULL),
			 10);
	assert_int_equal(h[0], 0x82);
	assert_int_equal(h[1], 127);
	static const uint8_t len64[8] = {0, 0, 0, 0, 0, 1, 0, 0};
	assert_memory_equal(h + 2, len64, 8);
	assert_int_equal(
	    ws_frame_header(h, WS_OP_TEXT, true, (uint64_t)1 << 40, NULL), 10);
	static const uint8_t len40[8] = {0, 0, 1, 0, 0, 0, 0, 0};
	assert_memory_equal(h + 2, len40, 8);
}

static void test_header_masked(void **state)
{
	uint8_t f[64];
	(void)state;

	assert_int_equal(ws_frame_header(f, WS_OP_PING, true, 2, key), 6);
	assert_int_equal(f[0], 0x89);
	assert_int_equal(f[1], 0x82);
	assert_memory_equal(f + 2, key, 4);
	assert_int_equal(ws_frame_header(f, WS_OP_TEXT, true, 300, key), 8);
	assert_int_equal(f[1], 0x80 | 126);
	assert_memory_equal(f + 4, key, 4);

	/* Masking twice restores; an offset continues the key's phase. */
	uint8_t p[7] = "abcdefg", q[7];
	memcpy(q, p, 7);
	ws_frame_mask(q, 3, key, 0);
	ws_frame_mask(q + 3, 4, key, 3);
	assert_int_equal(q[0], 'a' ^ 0x12);
	assert_int_equal(q[3], 'd' ^ 0x78);
	assert_int_equal(q[4], 'e' ^ 0x12);
	ws_frame_mask(q, 7, key, 0);
	assert_memory_equal(p, q, 7);
}

static void test_wire_len(void **state)
{
	(void)state;
	assert_int_equal(ws_frame_wire_len(0, 4096), 2);
	assert_int_equal(ws_frame_wire_len(1, 4096), 3);
	assert_int_equal(ws_frame_wire_len(125, 4096), 127);
	assert_int_equal(ws_frame_wire_len(126, 4096), 130);
	assert_int_equal(ws_frame_wire_len(4096, 4096), 4100);
	assert_int_equal(ws_frame_wire_len(4097, 4096), 4096 + 4 + 1 + 2);
	assert_int_equal(ws_frame_wire_len(3 * 4096 + 200, 4096),
			 3 * 4100 + 204);
	assert_int_equal(ws_frame_wire_len(70000, 100000), 70010);
}

/* Concatenate a gather's iovecs. */
static size_t flatten(const struct ws_frame_gather *g, uint8_t *out)
{
	size_t n = 0;
	for (int i = 0; i < g->n; i++) {
		memcpy(out + n, g->iov[i].iov_base, g->iov[i].iov_len);
		n += g->iov[i].iov_len;
	}
	return n;
}

static void test_gather(void **state)
{
	static struct ws_frame_gather g;
	static uint8_t big[10000], out[20000], whole[20000];
	(void)state;

	memset(big, 'b', sizeof(big));
	ws_frame_gather_init(&g, 0);
	assert_true(ws_frame_gather_add(&g, WS_OP_TEXT, "hi", 2, 4096));
	assert_true(
	    ws_frame_gather_add(&g, WS_OP_TEXT, big, sizeof(big), 4096));
	assert_true(ws_frame_gather_add(&g, WS_OP_TEXT, "", 0, 4096));
	assert_int_equal(g.nh, 1 + 3 + 1);
	size_t want = ws_frame_wire_len(2, 4096) +
		      ws_frame_wire_len(sizeof(big), 4096) +
		      ws_frame_wire_len(0, 4096);
	assert_int_equal(g.bytes, want);
	size_t n = flatten(&g, whole);
	assert_int_equal(n, want);
	/* What a client reads: text "hi"; text+cont+cont(FIN); empty text. */
	static const uint8_t first[4] = {0x81, 2, 'h', 'i'};
	assert_memory_equal(whole, first, 4);
	assert_int_equal(whole[4], 0x01); /* text, no FIN */
	assert_int_equal(whole[5], 126);
	assert_int_equal(whole[4 + 4 + 4096], 0x00);	   /* continuation */
	assert_int_equal(whole[2 * (4 + 4096) + 4], 0x80); /* last: FIN */
	assert_int_equal(whole[n - 2], 0x81);
	assert_int_equal(whole[n - 1], 0);
	struct ws_frame_rx rx;
	ws_frame_rx_init(&rx, false, sizeof(big));
	assert_int_equal(ws_frame_rx_feed(&rx, whole, n), 0);
	assert_true(ws_frame_rx_idle(&rx));

	/* Skipping what was written: the same bytes from that offset on. */
	for (size_t skip = 1; skip < want; skip += 997) {
		ws_frame_gather_init(&g, skip);
		ws_frame_gather_add(&g, WS_OP_TEXT, "hi", 2, 4096);
		ws_frame_gather_add(&g, WS_OP_TEXT, big, sizeof(big), 4096);
		ws_frame_gather_add(&g, WS_OP_TEXT, "", 0, 4096);
		assert_int_equal(g.bytes, want - skip);
		assert_int_equal(flatten(&g, out), want - skip);
		assert_memory_equal(out, whole + skip, want - skip);
	}

	/* Full after WS_GATHER_FRAMES frames, part of a message included. */
	ws_frame_gather_init(&g, 0);
	int added = 0;
	while (ws_frame_gather_add(&g, WS_OP_TEXT, big, sizeof(big), 4096))
		added++;
	assert_int_equal(g.nh, WS_GATHER_FRAMES);
	assert_int_equal(added, WS_GATHER_FRAMES / 3);
	assert_false(ws_frame_gather_add(&g, WS_OP_TEXT, "x", 1, 4096));
	assert_int_equal(g.nh, WS_GATHER_FRAMES);
}

/* --- tracker: valid streams -------------------------------------------- */

static void test_rx_valid_stream(void **state)
{
	uint8_t s[40000];
	size_t n = 0;
	(void)state;

	/* A text message, a fragmented one with a ping and a pong inside,
	 * a message of exactly the limit in two fragments, a close. */
	n += client_frame(s + n, WS_OP_TEXT, true, 13);
	n += client_frame(s + n, WS_OP_TEXT, false, 200);
	n += client_frame(s + n, WS_OP_PING, true, 125);
	n += client_frame(s + n, WS_OP_PONG, true, 0);
	n += client_frame(s + n, WS_OP_CONT, true, 70);
	n += client_frame(s + n, WS_OP_BINARY, false, MAX - 1);
	n += client_frame(s + n, WS_OP_CONT, true, 1);
	n += client_frame(s + n, WS_OP_CLOSE, true, 2);
	assert_int_equal(feed_both(s, n, true), 0);

	struct ws_frame_rx rx;
	ws_frame_rx_init(&rx, true, MAX);
	assert_true(ws_frame_rx_idle(&rx));
	assert_int_equal(ws_frame_rx_feed(&rx, s, n), 0);
	assert_true(ws_frame_rx_idle(&rx));
}

static void test_rx_idle_tracks_boundaries(void **state)
{
	uint8_t s[512];
	struct ws_frame_rx rx;
	(void)state;

	ws_frame_rx_init(&rx, true, MAX);
	size_t n = client_frame(s, WS_OP_TEXT, true, 200);
	assert_int_equal(ws_frame_rx_feed(&rx, s, 1), 0); /* inside header */
	assert_false(ws_frame_rx_idle(&rx));
	assert_int_equal(ws_frame_rx_feed(&rx, s + 1, 9), 0); /* payload */
	assert_false(ws_frame_rx_idle(&rx));
	assert_int_equal(ws_frame_rx_feed(&rx, s + 10, n - 10), 0);
	assert_true(ws_frame_rx_idle(&rx));

	/* A fragment without FIN keeps a message open. */
	n = client_frame(s, WS_OP_TEXT, false, 3);
	assert_int_equal(ws_frame_rx_feed(&rx, s, n), 0);
	assert_false(ws_frame_rx_idle(&rx));
	n = client_frame(s, WS_OP_CONT, true, 3);
	assert_int_equal(ws_frame_rx_feed(&rx, s, n), 0);
	assert_true(ws_frame_rx_idle(&rx));
}

/* The server side reads unmasked frames from a server (a client's view). */
static void test_rx_server_frames(void **state)
{
	uint8_t s[64];
	(void)state;

	size_t n = ws_frame_header(s, WS_OP_TEXT, true, 3, NULL);
	memcpy(s + n, "abc", 3);
	n += 3;
	assert_int_equal(feed_both(s, n, false), 0);
	/* A masked frame from the server is an error for its client. */
	n = client_frame(s, WS_OP_TEXT, true, 3);
	assert_int_equal(feed_both(s, n, false), WS_CLOSE_PROTOCOL);
}

/* --- tracker: each protocol error -------------------------------------- */

/* The exact bytes a client sends, up to the byte that decides: neither
 * the mask key nor any payload needs to arrive. */
struct bad {
	const char *what;
	uint8_t bytes[16];
	size_t len;
	int code;
};

static void test_rx_protocol_errors(void **state)
{
	static const struct bad bad[] = {
	    {"ping with 126 bytes", {0x89, 0xfe}, 2, WS_CLOSE_PROTOCOL},
	    {"close with 126 bytes", {0x88, 0xfe}, 2, WS_CLOSE_PROTOCOL},
	    {"pong with 127-form length", {0x8a, 0xff}, 2, WS_CLOSE_PROTOCOL},
	    {"fragmented ping (no FIN)", {0x09, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"close with a 1-byte payload", {0x88, 0x81}, 2, WS_CLOSE_PROTOCOL},
	    {"64-bit length, top bit set",
	     {0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1},
	     10,
	     WS_CLOSE_PROTOCOL},
	    {"reserved data opcode 3", {0x83, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"reserved data opcode 7", {0x87, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"reserved control opcode 0xb", {0x8b, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"reserved control opcode 0xf", {0x8f, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"RSV1 without an extension", {0xc1, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"RSV2", {0xa1, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"RSV3", {0x91, 0x80}, 2, WS_CLOSE_PROTOCOL},
	    {"unmasked client frame", {0x81, 0x00}, 2, WS_CLOSE_PROTOCOL},
	    {"text, 16-bit form for 5 bytes",
	     {0x81, 0xfe, 0, 5},
	     4,
	     WS_CLOSE_PROTOCOL},
	    {"text, 64-bit form for 300 bytes",
	     {0x81, 0xff, 0, 0, 0, 0, 0, 0, 1, 0x2c},
	     10,
	     WS_CLOSE_PROTOCOL},
	    {"continuation with no message open",
	     {0x80, 0x80},
	     2,
	     WS_CLOSE_PROTOCOL},
	    {"2^40 bytes announced",
	     {0x81, 0xff, 0, 0, 1, 0, 0, 0, 0, 0},
	     10,
	     WS_CLOSE_TOO_BIG},
	    {"one byte over the limit (16-bit form)",
	     {0x81, 0xfe, 0x40, 0x01},
	     4,
	     WS_CLOSE_TOO_BIG},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ws_frame_rx rx;
		ws_frame_rx_init(&rx, true, MAX);
		/* Not before the deciding byte... */
		assert_int_equal(
		    ws_frame_rx_feed(&rx, bad[i].bytes, bad[i].len - 1), 0);
		/* ...and at once with it: no mask key, no payload. */
		int got =
		    ws_frame_rx_feed(&rx, bad[i].bytes + bad[i].len - 1, 1);
		if (got != bad[i].code)
			fail_msg("%s: got %d, want %d", bad[i].what, got,
				 bad[i].code);
		assert_false(ws_frame_rx_idle(&rx));
		assert_string_equal(ws_frame_rx_reason(&rx),
				    bad[i].code == WS_CLOSE_TOO_BIG
					? "message too big"
					: "protocol error");
		/* Sticky: later bytes change nothing. */
		static const uint8_t ok[6] = {0x81, 0x80, 1, 2, 3, 4};
		assert_int_equal(ws_frame_rx_feed(&rx, ok, sizeof(ok)), got);
		assert_int_equal(feed_both(bad[i].bytes, bad[i].len, true),
				 bad[i].code);
	}
}

static void test_rx_message_errors(void **state)
{
	uint8_t s[40000];
	size_t n;
	(void)state;

	/* A new data message while a fragmented one is open. */
	n = client_frame(s, WS_OP_TEXT, false, 5);
	n += client_frame(s + n, WS_OP_TEXT, true, 5);
	assert_int_equal(feed_both(s, n, true), WS_CLOSE_PROTOCOL);

	/* Fragments that add up to more than the limit: 1009 at the header
	 * of the fragment that crosses it. */
	n = client_frame(s, WS_OP_TEXT, false, MAX - 10);
	n += ws_frame_header(s + n, WS_OP_CONT, true, 11, key);
	assert_int_equal(feed_both(s, n, true), WS_CLOSE_TOO_BIG);

	/* After a complete message, the count starts again. */
	n = client_frame(s, WS_OP_TEXT, true, MAX);
	n += client_frame(s + n, WS_OP_TEXT, true, MAX / 2);
	assert_int_equal(feed_both(s, n, true), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_lengths),
	    cmocka_unit_test(test_header_masked),
	    cmocka_unit_test(test_wire_len),
	    cmocka_unit_test(test_gather),
	    cmocka_unit_test(test_rx_valid_stream),
	    cmocka_unit_test(test_rx_idle_tracks_boundaries),
	    cmocka_unit_test(test_rx_server_frames),
	    cmocka_unit_test(test_rx_protocol_errors),
	    cmocka_unit_test(test_rx_message_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
