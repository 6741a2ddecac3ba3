#!/usr/bin/env python3
"""presence-waves: what presence costs when many users come and go.

Starts natterd (short grace), registers USERS users in rooms of ROOM_SIZE
(each leaves the lobby and joins its group room), then runs WAVES waves:
a wave connects WAVE users over WebSocket at once, makes half of them blip
(close and reconnect at once, within the grace), and disconnects them all.
Every SSE client counts the presence events it receives. The load is split
over PROCS client processes (one process may hold 20,000 fds).

Reports, per connection change (a connect or a disconnect): presence
events published by the server (natter_presence_published_total) and
delivered to clients; and natterd's CPU seconds, per thread, compared with
a baseline run in which presence hardly publishes (a 10 s coalescing delay
and a 1 h grace: only users connected longer than 10 s are announced, and
nobody goes offline), so the difference is what presence costs on top of
the connections themselves.

  contrib/bench/presence-waves.py [--users N] [--wave N] [--waves N]
      [--room-size N] [--procs N] [--natterd PATH]
"""
import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


async def request(port, method, path, token=None, body=None):
    r, w = await asyncio.open_connection('127.0.0.1', port)
    data = json.dumps(body).encode() if body is not None else b''
    head = f'{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n'
    if token:
        head += f'Authorization: Bearer {token}\r\n'
    if body is not None:
        head += f'Content-Type: application/json\r\nContent-Length: {len(data)}\r\n'
    w.write(head.encode() + b'\r\n' + data)
    await w.drain()
    resp = await r.read()
    w.close()
    status = int(resp.split(b' ', 2)[1])
    payload = resp.split(b'\r\n\r\n', 1)[1] if b'\r\n\r\n' in resp else b''
    return status, payload


async def setup_users(port, names, room_size, conc=8):
    tokens = {}
    sem = asyncio.Semaphore(conc)

    async def one(i, name):
        async with sem:
            for _ in range(200):
                st, body = await request(port, 'POST', '/api/register', None,
                                         {'username': name, 'password': 'correct horse'})
                if st != 503:  # busy hashing: try again shortly
                    break
                await asyncio.sleep(0.05)
            if st != 201:
                raise RuntimeError(f'register {name}: {st} {body[:200]}')
            tok = json.loads(body)['token']
            await request(port, 'POST', '/api/rooms/lobby/leave', tok, {})
            room = f'g{i // room_size}'
            st, body = await request(port, 'POST', f'/api/rooms/{room}/join', tok, {})
            if st == 404:
                st, body = await request(port, 'POST', '/api/rooms', tok, {'name': room})
                if st == 409:  # created meanwhile by a room mate
                    st, body = await request(port, 'POST', f'/api/rooms/{room}/join', tok, {})
            if st not in (200, 201):
                raise RuntimeError(f'{name} into {room}: {st} {body[:200]}')
            tokens[name] = tok
    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    return tokens


class Ws:
    """A WebSocket of one user: the upgrade, then raw frames read and the
    presence events in them counted (server frames are not masked, so the
    JSON is in the bytes as it is)."""
    def __init__(self):
        self.presence = 0

    async def open(self, port, token):
        self.r, self.w = await asyncio.open_connection('127.0.0.1', port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.w.write((f'GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                      f'Upgrade: websocket\r\nConnection: Upgrade\r\n'
                      f'Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n').encode())
        await self.w.drain()
        buf = b''
        while b'"hello"' not in buf:
            chunk = await self.r.read(65536)
            if not chunk:
                raise RuntimeError('closed before hello: ' + buf[:200].decode(errors='replace'))
            buf += chunk
        self.presence += buf.count(b'"type":"presence"')
        self.task = asyncio.ensure_future(self.pump())

    async def pump(self):
        try:
            while True:
                chunk = await self.r.read(65536)
                if not chunk:
                    return
                self.presence += chunk.count(b'"type":"presence"')
        except (ConnectionError, asyncio.CancelledError):
            return

    def close(self):
        self.task.cancel()
        self.w.transport.abort()


def client_proc(port, tokens, waves, grace, q_in, q_out):
    """One client process: its share of every wave, step by step."""
    async def main():
        loop = asyncio.get_running_loop()

        async def wait_word():
            # never block the loop: the streams must keep being read
            return await loop.run_in_executor(None, q_in.get)
        delivered = 0
        for _ in range(waves):
            await wait_word()  # connect
            conns = []
            for i in range(0, len(tokens), 200):
                batch = [Ws() for _ in tokens[i:i + 200]]
                await asyncio.gather(*(c.open(port, t) for c, t in zip(batch, tokens[i:i + 200])))
                conns += batch
            q_out.put('connected')
            await wait_word()  # blip half: close and reconnect at once
            half = conns[: len(conns) // 2]
            for c in half:
                c.close()
                delivered += c.presence
            again = [Ws() for _ in half]
            await asyncio.gather(*(c.open(port, t) for c, t in zip(again, tokens[: len(half)])))
            conns = again + conns[len(half):]
            q_out.put('blipped')
            await wait_word()  # disconnect
            await asyncio.sleep(0.2)
            for c in conns:
                c.close()
                delivered += c.presence
            q_out.put('gone')
        q_out.put(('delivered', delivered))
    asyncio.run(main())


def cpu(pid):
    """natterd's CPU seconds per thread name."""
    tck = os.sysconf('SC_CLK_TCK')
    out = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{tid}/stat') as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index('(') + 1:s.rindex(')')]
        fields = s[s.rindex(')') + 2:].split()
        t = (int(fields[11]) + int(fields[12])) / tck
        name = re.sub(r'\d+$', '', name)
        out[name] = out.get(name, 0) + t
    return out


def metric(port, name):
    st, body = asyncio.run(request(port, 'GET', '/metrics'))
    m = re.search(rf'^{name} (\d+)', body.decode(), re.M)
    return int(m.group(1)) if m else 0


def run(args, presence_on, work, tokens):
    log = open(os.path.join(work, 'natterd.log'), 'a')
    grace = 2 if presence_on else 3600
    coalesce = 250 if presence_on else 10000
    proc = subprocess.Popen([
        args.natterd, '--listen', '127.0.0.1:0', '--db', os.path.join(work, 'db'),
        '--db-dir', os.path.join(TOP, 'db'), '--web-root', os.path.join(TOP, 'web'),
        '--argon2-memory-kib', '1024', '--argon2-time', '1', '--log-level', 'info',
        '--rate-commands', '0', '--streams-per-user', '0', '--streams-per-address', '0',
        '--connections-per-address', '0',
        '--presence-grace', str(grace), '--presence-coalesce-ms', str(coalesce),
        '--max-connections', '19000'], stdout=log, stderr=log)
    port = None
    skip = len(open(os.path.join(work, 'natterd.log')).readlines())
    for _ in range(1200):
        time.sleep(0.05)
        for line in open(os.path.join(work, 'natterd.log')).readlines()[skip:]:
            m = re.search(r'listening.*port=(\d+)', line)
            if m and m.group(1) != '0':
                port = int(m.group(1))
        if port:
            break
    if not port:
        proc.kill()
        sys.exit('natterd did not start: ' + open(os.path.join(work, 'natterd.log')).read()[-2000:])
    try:
        names = [f'pw{i}' for i in range(args.users)]
        if not tokens:
            t0 = time.time()
            tokens.update(asyncio.run(setup_users(port, names, args.room_size)))
            print(f'  {args.users} users in rooms of {args.room_size}: {time.time() - t0:.1f} s', file=sys.stderr)
        cpu0 = cpu(proc.pid)
        pub0 = metric(port, 'natter_presence_published_total')
        # waves rotate through the users; each process takes a slice
        per = args.wave // args.procs
        procs, qs, outs = [], [], []
        for p in range(args.procs):
            q_in = mp.Queue()
            q_out = mp.Queue()
            outs.append(q_out)
            start = (p * per) % args.users
            toks = [tokens[names[(start + i) % args.users]] for i in range(per)]
            pr = mp.Process(target=client_proc, args=(port, toks, args.waves, grace, q_in, q_out))
            pr.start()
            procs.append(pr)
            qs.append(q_in)

        def step(word, wait):
            for q in qs:
                q.put(word)
            for q in outs:
                q.get()
            time.sleep(wait)
        t1 = time.time()
        for _ in range(args.waves):
            step('connect', 0.6 if presence_on else 0.1)
            step('blip', 0.6 if presence_on else 0.1)
            step('gone', grace + 1.5 if presence_on else 0.1)
        delivered = 0
        for q in outs:
            m = q.get()
            if not isinstance(m, tuple):
                raise RuntimeError(f'a client process is out of step: {m!r}')
            delivered += m[1]
        for pr in procs:
            pr.join()
        secs = time.time() - t1
        cpu1 = cpu(proc.pid)
        pub1 = metric(port, 'natter_presence_published_total')
        changes = args.waves * per * args.procs * 3  # connect, disconnect; half blip out+in
        d = {k: cpu1.get(k, 0) - cpu0.get(k, 0) for k in cpu1}
        res = {'changes': changes, 'published': pub1 - pub0, 'delivered': delivered,
               'cpu': d, 'secs': secs}
        print(f'  {"on" if presence_on else "off"}: {res}', file=sys.stderr)
        return res
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--users', type=int, default=10000)
    ap.add_argument('--wave', type=int, default=5000, help='users per wave')
    ap.add_argument('--waves', type=int, default=4)
    ap.add_argument('--room-size', type=int, default=50)
    ap.add_argument('--procs', type=int, default=2)
    ap.add_argument('--natterd', default=os.path.join(TOP, 'build', 'src', 'natterd'))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix='natter-presence-bench.')
    open(os.path.join(work, 'natterd.log'), 'w').close()
    tokens = {}
    try:
        on = run(args, True, work, tokens)
        off = run(args, False, work, tokens)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, r in (('presence on', on), ('baseline: 10 s coalescing, 1 h grace', off)):
        total = sum(r['cpu'].values())
        top = ', '.join(f'{k} {v:.2f}' for k, v in sorted(r['cpu'].items(), key=lambda kv: -kv[1]) if v >= 0.01)
        print(f'{name}: {r["changes"]} connection changes in {r["secs"]:.1f} s; '
              f'presence published {r["published"]} ({r["published"] / r["changes"]:.3f} per change), '
              f'delivered {r["delivered"]} ({r["delivered"] / r["changes"]:.2f} per change); '
              f'natterd CPU {total:.2f} s ({top})')
    extra = sum(on['cpu'].values()) - sum(off['cpu'].values())
    base = sum(off['cpu'].values())
    print(f'presence cost: {extra:.2f} CPU s on top of {base:.2f} CPU s for the connections '
          f'({100 * extra / base if base else 0:.0f}%)')


if __name__ == '__main__':
    main()
