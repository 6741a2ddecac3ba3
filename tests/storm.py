#!/usr/bin/env python3
"""storm: many WebSocket clients reconnecting at once with an old cursor.

    storm.py --port P --tokens FILE --since C --expect FILE --clients N
             [--first I] [--deadline S] [--addrs K]

Client i (i from --first) uses token line i % len(tokens), connects from
127.0.0.(2 + i % K) (so per-address caps see K addresses), and opens
/ws?since=C. A refusal before the upgrade (429, 503) is waited out as a
browser would: Retry-After (or 1 s) stretched by a random half, then again.
After the upgrade it reads the hello (which must say recovered: true) and
events until it has the last id of --expect (one event id per line: the
ids every client must receive). A connection that breaks first is resumed
from the last id seen, as the web client does.

Prints one JSON line: clients, done, per-client duplicates and gaps,
refusals by status, attempts, and the completion time percentiles (ms from
the start). Exit 0 when every client got every expected id exactly once
before the deadline, else 1. Only the standard library: it runs anywhere
the tests run.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import re
import sys
import time


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


class Client:
    def __init__(self, i, token, since, expect, addr):
        self.i, self.token, self.addr = i, token, addr
        self.cursor = since
        self.expect = expect
        self.last = expect[-1] if expect else since
        self.got = []
        self.refused = {}
        self.attempts = 0
        self.bad_hello = 0
        self.done_ms = None

    async def read_frame(self, r):
        h = await r.readexactly(2)
        op, n = h[0] & 0x0F, h[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await r.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await r.readexactly(8), "big")
        return op, await r.readexactly(n)

    async def once(self, port, t0):
        """One connection: True when done, else a delay before the next."""
        self.attempts += 1
        key = base64.b64encode(os.urandom(16)).decode()
        try:
            r, w = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(self.addr, 0))
        except OSError:
            self.refused["connect"] = self.refused.get("connect", 0) + 1
            return 0.5 + random.random()
        try:
            w.write((f"GET /ws?since={self.cursor}&token={self.token} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
            head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1")
            status = int(head.split(" ", 2)[1])
            if status != 101:
                self.refused[str(status)] = self.refused.get(str(status), 0) + 1
                m = re.search(r"(?im)^retry-after:\s*(\d+)", head)
                wait = int(m.group(1)) if m else 1
                return wait * (1 + random.random() / 2)
            hello = False
            while True:
                op, data = await self.read_frame(r)
                if op == 8:
                    return 0.2 + random.random()
                if op != 1:
                    continue
                m = json.loads(data)
                if m.get("type") == "error" and not hello:
                    # refused after the upgrade (the history pool is
                    # full): wait as told, like a refusal before it
                    code = "ws_" + str(m.get("error"))
                    self.refused[code] = self.refused.get(code, 0) + 1
                    wait = m.get("retry_after") or 1
                    return wait * (1 + random.random() / 2)
                if m.get("type") == "hello":
                    hello = True
                    if m.get("recovered") is False:
                        self.bad_hello += 1
                    continue
                eid = m.get("id")
                if not isinstance(eid, int) or m.get("type") == "ack":
                    continue
                if not hello:
                    self.bad_hello += 1
                self.got.append(eid)
                self.cursor = max(self.cursor, eid)
                if eid >= self.last:
                    self.done_ms = (time.monotonic() - t0) * 1000
                    return True
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            return 0.2 + random.random()
        finally:
            w.close()

    async def run(self, port, t0, deadline):
        while time.monotonic() - t0 < deadline:
            res = await self.once(port, t0)
            if res is True:
                return
            await asyncio.sleep(res)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--since", type=int, required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=60)
    ap.add_argument("--addrs", type=int, default=200)
    ap.add_argument("--start-at", type=float, default=0,
                    help="wall-clock time to start at (processes in step)")
    a = ap.parse_args()
    tokens = [t.strip() for t in open(a.tokens) if t.strip()]
    expect = [int(x) for x in open(a.expect) if x.strip()]
    clients = [Client(i, tokens[i % len(tokens)], a.since, expect,
                      f"127.0.0.{2 + i % a.addrs}")
               for i in range(a.first, a.first + a.clients)]
    if a.start_at:
        await asyncio.sleep(max(0, a.start_at - time.time()))
    t0 = time.monotonic()
    await asyncio.gather(*(c.run(a.port, t0, a.deadline) for c in clients))
    want = expect
    dups = gaps = 0
    for c in clients:
        dups += len(c.got) - len(set(c.got))
        gaps += len(set(want) - set(c.got))
    refused = {}
    for c in clients:
        for k, v in c.refused.items():
            refused[k] = refused.get(k, 0) + v
    done = [c.done_ms for c in clients if c.done_ms is not None]
    out = {
        "clients": len(clients), "done": len(done),
        "duplicates": dups, "gaps": gaps,
        "bad_hello": sum(c.bad_hello for c in clients),
        "attempts": sum(c.attempts for c in clients), "refused": refused,
        "ms_p50": pct(done, 50), "ms_p99": pct(done, 99),
        "ms_max": max(done) if done else None,
    }
    print(json.dumps(out))
    ok = len(done) == len(clients) and dups == 0 and gaps == 0 \
        and out["bad_hello"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
