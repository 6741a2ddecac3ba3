/* fuzz_ws_frame: the WebSocket receive tracker. The same bytes fed whole
 * and fed in pieces (cut where the input's first bytes say) must give the
 * same verdict, the verdict must be sticky, and the tracker must never
 * read outside what it is given (AddressSanitizer). A second pass reads
 * the stream as a client would (unmasked frames expected). */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "transport/ws_frame.h"

static int feed_pieces(bool from_client, uint64_t max, const uint8_t *cuts,
		       size_t ncuts, const uint8_t *p, size_t n)
{
	struct ws_frame_rx rx;
	ws_frame_rx_init(&rx, from_client, max);
	int rc = 0;
	size_t i = 0, c = 0;
	while (i < n) {
		size_t k = ncuts ? (size_t)cuts[c++ % ncuts] % 17 + 1 : 1;
		if (k > n - i)
			k = n - i;
		int r = ws_frame_rx_feed(&rx, p + i, k);
		if (rc)
			assert(r == rc); /* sticky */
		rc = r;
		i += k;
	}
	if (rc) {
		assert(!ws_frame_rx_idle(&rx));
		assert(ws_frame_rx_reason(&rx));
		assert(ws_frame_rx_feed(&rx, p, n) == rc);
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	/* Byte 0: cut pattern length; byte 1: message limit selector. */
	size_t ncuts = data[0] % 8;
	uint64_t max = data[1] & 1 ? 1u << (data[1] >> 4) : 64 * 1024;
	if (ncuts > size - 2)
		ncuts = size - 2;
	const uint8_t *cuts = data + 2;
	const uint8_t *p = data + 2 + ncuts;
	size_t n = size - 2 - ncuts;

	for (int side = 0; side < 2; side++) {
		struct ws_frame_rx rx;
		ws_frame_rx_init(&rx, side == 0, max);
		int whole = ws_frame_rx_feed(&rx, p, n);
		assert(whole == 0 || whole == WS_CLOSE_PROTOCOL ||
		       whole == WS_CLOSE_TOO_BIG);
		int pieces = feed_pieces(side == 0, max, cuts, ncuts, p, n);
		assert(whole == pieces);
		int bytes = feed_pieces(side == 0, max, NULL, 0, p, n);
		assert(whole == bytes);
	}
	return 0;
}
