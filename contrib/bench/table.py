#!/usr/bin/python3
"""Turn the JSON lines of contrib/bench/run into RESULTS.md: one table with
ratios, then the issue's targets checked against the numbers.

    table.py RESULTS.jsonl DATE NPROC CPU-MODEL VERSIONS ELAPSED-S QUICK
"""
import json
import os
import sys

# A run that started with the 1-minute load average above this (other work
# on the machine) is left out when its scenario has a run below it.
MAX_LOAD = float(os.environ.get("BENCH_MAX_LOAD", "4"))

SERVERS = ["natter", "nchan", "tornado"]

# scenario label -> (title, [(metric key, metric title, higher is better)])
THR = [
    ("sends_per_s", "messages published/s", True),
    ("deliveries_per_s", "deliveries/s", True),
    ("deliveries_per_cpu_s", "deliveries per server CPU-s", True),
    ("p50_ms", "latency p50 ms", False),
    ("p99_ms", "latency p99 ms", False),
    ("p999_ms", "latency p99.9 ms", False),
    ("max_ms", "latency max ms", False),
    ("ldr", "lost/dup/reordered", None),
    ("peak_rss_mib", "server peak RSS MiB", False),
]
SCENARIOS = [
    ("lat-1k-100", "chat-like, paced: 1,000 WS subscribers x 100 msg/s (4 publishers, 1 in flight each)", THR),
    ("lat-10k-10", "chat-like, paced: 10,000 WS subscribers x 10 msg/s (4 publishers, 1 in flight each)", THR),
    ("rooms-1k-paced", "chat-like, paced: 1,000 rooms x 10 WS subscribers, 1 msg/s per room (10 publishers, 1 in flight each)", THR),
    ("idle-10k", "idle: 10,000 WebSocket connections",
     [("connected", "connected", True), ("rss_per_conn_b", "RSS per connection, B", False)]),
    ("idle-19k", "idle: 19,000 WebSocket connections",
     [("connected", "connected", True), ("rss_per_conn_b", "RSS per connection, B", False)]),
    ("bcast-5k", "burst: 1 room x 5,000 WS subscribers, ~100 B, 32 in flight", THR),
    ("flat-1k", "burst: 1,000 WS subscribers, 32 in flight", THR),
    ("flat-10k", "burst: 10,000 WS subscribers, 32 in flight", THR),
    ("rooms-1k", "burst: 1,000 rooms x 10 WS subscribers, 32 in flight", THR),
    ("bcast-5k-sse", "burst over SSE: 5,000 subscribers, 32 in flight", THR),
    ("bcast-5k-poll", "burst over long-poll: 5,000 subscribers, 32 in flight", THR),
    ("flat-1k-ws32", "burst: 1,000 WS subscribers, natter published over WS, 32 in flight from 1 publisher", THR),
    ("durable-http", "sends from 100 concurrent senders, HTTP POST",
     [("sends_per_s", "acknowledged sends/s", True), ("server_cpu_s", "server CPU s", False)]),
    ("durable-ws", "sends from 100 concurrent senders, WebSocket",
     [("sends_per_s", "acknowledged sends/s", True), ("server_cpu_s", "server CPU s", False)]),
    ("durable-ws-16", "sends from 100 concurrent senders, WebSocket, 16 in flight each",
     [("sends_per_s", "acknowledged sends/s", True), ("server_cpu_s", "server CPU s", False)]),
    ("burst-stalled", "burst to readers that stopped reading (send-queue-max 64 KiB)",
     [("stalled", "stalled WebSocket readers", None),
      ("offered_kib", "bytes offered to them, KiB", None),
      ("peak_growth_kib", "server RSS growth, KiB", False),
      ("bound_kib", "bound: queues x send-queue-max + 32 MiB, KiB", None),
      ("cut_loose", "stalled readers cut loose (1008)", None),
      ("readers_ok", "normal readers with every message", None)]),
    ("history", "history pages (GET .../messages?limit=50) with wrk",
     [("requests_per_s", "requests/s", True)]),
]


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "{:.1f}".format(v)
    return "{:.2f}".format(v)


def value(r, key):
    if r is None:
        return None
    if r.get("failed_run"):
        return "failed"
    if key == "ldr":
        if "lost" not in r:
            return None
        return "{}/{}/{}".format(r["lost"], r["dup"], r["reordered"])
    if key == "peak_rss_mib":
        return r.get("peak_rss_kib", 0) / 1024.0
    if key == "readers_ok":
        if "readers" not in r:
            return None
        return "{}/{}".format(r["readers_complete"], r["readers"])
    return r.get(key)


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "-"
    return "{:.2f}x".format(a / b)


def main():
    path, date, nproc, cpu, versions, elapsed, quick = sys.argv[1:8]
    rows = [json.loads(l) for l in open(path) if l.strip()]
    # Repeated runs (--repeat): the run with the median headline metric
    # stands for its scenario; its note gains the runs and their loads.
    groups = {}
    for r in rows:
        groups.setdefault((r.get("label"), r.get("server")), []).append(r)
    res = {}
    for k, rs in groups.items():
        ok = [r for r in rs if not r.get("failed_run")]
        if not ok:
            res[k] = rs[-1]
            continue
        calm = [r for r in ok if r.get("load1") is None or r["load1"] <= MAX_LOAD]
        dropped = len(ok) - len(calm) if calm else 0
        if calm:
            ok = calm
        label = k[0] or ""
        key = ("rss_per_conn_b" if label.startswith("idle") else
               "sends_per_s" if label.startswith("durable") else
               "requests_per_s" if label == "history" else
               "deliveries_per_cpu_s" if "deliveries_per_cpu_s" in ok[0] else None)
        if key:
            ok.sort(key=lambda r: r.get(key) or 0)
        med = dict(ok[len(ok) // 2])
        if len(rs) > 1:
            extra = "median of {} runs".format(len(ok))
            if dropped:
                extra += ", {} more left out (load1 > {:g})".format(dropped, MAX_LOAD)
            if key:
                extra += " ({} {})".format(key, ", ".join(fmt(r.get(key)) for r in ok))
            med["note"] = "; ".join(x for x in (med.get("note"), extra) if x)
        loads = [r.get("load1") for r in rs if r.get("load1") is not None]
        if loads:
            med["note"] = "; ".join(x for x in (med.get("note"), "load1 at start {}".format(
                "/".join("{:.1f}".format(x) for x in loads))) if x)
        res[k] = med
    present = [s for s in SERVERS if any(k[1] == s for k in res)]
    out = []
    out.append("# natter benchmarks\n")
    out.append("Written by `contrib/bench/run` (issue 5){}.\n".format(
        " -- QUICK run, message counts / 10" if quick == "1" else ""))
    out.append("- date: {}".format(date))
    out.append("- machine: {} cores ({}), shared by the server and the load tool; "
               "loopback only".format(nproc, cpu))
    out.append("- versions: {}".format(versions))
    out.append("- suite wall time: {} s".format(elapsed))
    out.append("- each scenario runs against a freshly started server; CPU seconds "
               "are the server's utime+stime from the first publish to the last "
               "delivery; ratios are natter / peer (for latency and memory, "
               "lower is better)\n")
    head = "| scenario | metric | " + " | ".join(present)
    sep = "|---|---|" + "---|" * len(present)
    peers = [p for p in present if p != "natter"]
    if "natter" in present:
        head += "".join(" | natter/{}".format(p) for p in peers)
        sep += "---|" * len(peers)
    out.append(head + " | notes |")
    out.append(sep + "---|")
    for label, title, metrics in SCENARIOS:
        if not any((label, s) in res for s in present):
            continue
        notes = "; ".join("{}: {}".format(s, res[(label, s)]["note"])
                          for s in present if (label, s) in res and res[(label, s)].get("note"))
        for i, (key, mt, _) in enumerate(metrics):
            vals = [value(res.get((label, s)), key) for s in present]
            line = "| {} | {} | ".format(title if i == 0 else "", mt)
            line += " | ".join(fmt(v) for v in vals)
            if "natter" in present:
                nv = vals[present.index("natter")]
                for p in peers:
                    line += " | " + ratio(nv, vals[present.index(p)])
            line += " | {} |".format(notes if i == 0 else "")
            out.append(line)
    out.append("")
    out.append("Peers lack features natter has, so only what both do is compared: "
               "nchan keeps no history, no accounts and no durable store (its "
               "publish is an in-memory POST); the Tornado server has no rooms, "
               "no auth, no SSE or long-poll, and acknowledges nothing (its "
               "publishers count the echo of their own message).\n")
    out.append("Publishing is like for like: natter and nchan both take every message "
               "as an HTTP POST with one request in flight per publisher (natter's is "
               "durable, acknowledged after the fsync'd commit; nchan's is in memory). "
               "Chat-like rows are paced (one message at a time); burst rows have 32 "
               "publishers, so messages queue and a server can write many per system "
               "call.\n")
    out.append("Per server CPU-second: on loopback, waking the reading process is "
               "charged to the writer, so a server's CPU per delivery also depends on "
               "how fast the load tool reads (natter-bench: epoll, one read per wake-up); "
               "compare ratios from one sitting, not absolute figures across machines.\n")

    # Targets
    def g(label, server, key):
        r = res.get((label, server))
        return None if r is None or r.get("failed_run") else r.get(key)

    t = []

    def target(name, ok, detail):
        t.append("| {} | {} | {} |".format(name, {True: "met", False: "NOT met", None: "n/a"}[ok], detail))

    for lab in ("lat-1k-100", "lat-10k-10"):
        n, c = g(lab, "natter", "deliveries_per_cpu_s"), g(lab, "nchan", "deliveries_per_cpu_s")
        target("paced deliveries per CPU-s >= 2x nchan, " + lab,
               None if n is None or not c else n >= 2 * c,
               "-" if n is None or not c else "natter/nchan {:.2f}x".format(n / c))
    for lab in ("flat-1k", "flat-10k"):
        n, c, tt = (g(lab, s, "deliveries_per_cpu_s") for s in SERVERS)
        ok = None
        parts = []
        if n is not None and c:
            parts.append("natter/nchan {:.2f}x (want 2x)".format(n / c))
            ok = n >= 2 * c
        if n is not None and tt:
            parts.append("natter/tornado {:.1f}x (want 20x)".format(n / tt))
            ok = (ok is not False) and n >= 20 * tt
        target("burst deliveries per CPU-s, " + lab, ok, ", ".join(parts))
    p = g("lat-1k-100", "natter", "p99_ms")
    target("p99 < 20 ms, 1,000 subs x 100 msg/s", None if p is None else p < 20,
           "p99 {} ms".format(fmt(p)))
    p = g("lat-10k-10", "natter", "p99_ms")
    target("p99 < 50 ms, 10,000 subs x 10 msg/s", None if p is None else p < 50,
           "p99 {} ms".format(fmt(p)))
    n, c = g("rooms-1k-paced", "natter", "p99_ms"), g("rooms-1k-paced", "nchan", "p99_ms")
    target("many rooms paced p99 within 2x nchan", None if n is None or not c else n <= 2 * c,
           "-" if n is None or not c else "natter {} ms, nchan {} ms".format(fmt(n), fmt(c)))
    c = g("idle-19k", "natter", "connected")
    b = g("idle-19k", "natter", "rss_per_conn_b")
    if b is None:
        b = g("idle-10k", "natter", "rss_per_conn_b")
    target("19,000 WebSocket connections", None if c is None else c >= 19000,
           "{} connected".format(fmt(c)))
    target("< 2 KB RSS per idle connection", None if b is None else b < 2000,
           "{} B".format(fmt(b)))
    ws = g("bcast-5k", "natter", "deliveries_per_cpu_s")
    sse = g("bcast-5k-sse", "natter", "deliveries_per_cpu_s")
    poll = g("bcast-5k-poll", "natter", "deliveries_per_cpu_s")
    if ws and sse:
        target("SSE within 1.5x of WS (deliveries per CPU-s)", ws / sse <= 1.5,
               "WS/SSE {:.2f}x".format(ws / sse))
    if ws and poll:
        target("long-poll within 3x of WS", ws / poll <= 3, "WS/poll {:.2f}x".format(ws / poll))
    d = g("durable-http", "natter", "sends_per_s")
    d2 = g("durable-ws", "natter", "sends_per_s")
    d3 = g("durable-ws-16", "natter", "sends_per_s")
    best = max([x for x in (d, d2, d3) if x is not None], default=None)
    target(">= 50,000 durable sends/s from 100 senders", None if best is None else best >= 50000,
           "HTTP {} /s, WS {} /s, WS pipelined {} /s".format(fmt(d), fmt(d2), fmt(d3)))
    r = res.get(("burst-stalled", "natter"))
    if r is not None and not r.get("failed_run"):
        target("memory bounded by the per-connection queue limits in a burst",
               bool(r.get("ok")),
               "RSS +{} KiB (bound {} KiB) while {} KiB were offered to {} stalled "
               "readers; {} cut loose; {}/{} readers complete".format(
                   fmt(r["peak_growth_kib"]), fmt(r["bound_kib"]), fmt(r["offered_kib"]),
                   r["stalled"], r["cut_loose"], r["readers_complete"], r["readers"]))
    bad = [(r.get("label"), r.get("server")) for r in rows
           if r.get("lost", 0) or r.get("dup", 0) or r.get("reordered", 0)]
    target("0 lost, duplicated or reordered", not bad,
           "all clean" if not bad else "unclean: " + ", ".join("{} on {}".format(*x) for x in bad))
    out.append("## Targets (natter)\n")
    out.append("| target | status | numbers |")
    out.append("|---|---|---|")
    out.extend(t)
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
