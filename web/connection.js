// connection.js: one live event stream from natterd, over whichever
// transport gets through. The ladder is WebSocket -> SSE -> long-poll:
//
//   - WebSocket must deliver its hello within 3 s of being opened,
//   - SSE its hello within 4 s (a buffering proxy holds it back),
//   - long-poll answers its first request (timeout=0) at once.
//
// A transport that fails before its hello is not blamed straight away: a
// quick probe (GET /poll?timeout=0) tells a blocked transport (probe
// answers) from a server that is down or restarting (probe fails: wait
// and retry the same rung), an ended session (401, or 403 disabled) and a cursor the
// server does not know (400 bad_cursor, e.g. after its database was reset).
//
// What worked is remembered per server (localStorage) and tried first on
// the next visit; while on a lower rung the client probes the higher ones
// in the background now and then and moves up when one answers.
// Reconnects use jittered exponential backoff and honor Retry-After; SSE
// reconnects after a hello are left to the browser, which honors the
// server's retry: and resumes with Last-Event-ID.
//
// This module knows nothing about rooms or messages: it hands hellos and
// events to its owner and asks it for the cursor to resume from.

import { retryAfterSeconds } from './api.js';
import { transportPref, tuning } from './store.js';

export const KINDS = ['ws', 'sse', 'poll'];

const HELLO_DEADLINE = { ws: 3000, sse: 4000, poll: 10000 };
const POLL_TIMEOUT = 25;           // seconds the server may hold a poll
const SSE_RESUME_DEADLINE = 30000; // browser-driven SSE reconnect, then ours
const WS_PING_EVERY = 25000;
const WS_DEAD_AFTER = 70000;       // nothing received (not even a pong)
const BACKOFF_BASE = 500;
const BACKOFF_MAX = 30000;
const UPGRADE_FIRST = 60000;
const UPGRADE_MAX = 15 * 60000;
const PREF_MAX_AGE = 7 * 24 * 3600 * 1000;

function withSince(path, since) {
  if (since == null) return path;
  return path + (path.includes('?') ? '&' : '?') + 'since=' + since;
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
}

// --- transports ------------------------------------------------------------
// Each one: start(since), close(), helloSeen, kind; send(obj) for ws.
// It reports through its handlers h: hello(m), event(ev), frame(m) (ws
// acks/errors), synced(cursor) (every event up to cursor was delivered),
// reconnecting() (browser-driven retry), fail(info) once, after which it
// is closed. info: {reason, helloSeen, status, code, retryAfter}.

// What the three share: state, and failing once (close, then report).
class Transport {
  constructor(kind, h) {
    this.kind = kind;
    this.h = h;
    this.helloSeen = false;
    this.closed = false;
  }
  fail(reason, info = {}) {
    if (this.closed) return;
    this.close();
    this.h.fail({ reason, helloSeen: this.helloSeen, ...info });
  }
}

class WsTransport extends Transport {
  constructor(h) {
    super('ws', h);
  }
  start(since) {
    const url = new URL(withSince('/ws', since), location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    try {
      this.ws = new WebSocket(url.href);
    } catch (e) {
      setTimeout(() => this.fail('ws_failed'), 0);
      return;
    }
    this.lastRx = Date.now();
    this.ws.onmessage = (e) => this.onMessage(e);
    this.ws.onclose = (e) => this.fail(this.helloSeen ? 'closed' : 'ws_failed', { wsCode: e.code });
  }
  onMessage(e) {
    this.lastRx = Date.now();
    const m = parse(e.data);
    if (!m || typeof m !== 'object') return;
    switch (m.type) {
      case 'hello':
        this.helloSeen = true;
        this.helloCursor = m.cursor;
        this.h.hello(m);
        // The server queued the replay right behind the hello, so the
        // pong to this ping means "everything up to hello.cursor is here".
        this.awaitingSync = true;
        this.send({ op: 'ping' });
        this.pinger = setInterval(() => this.keepAlive(), WS_PING_EVERY / 2);
        break;
      case 'pong':
        if (this.awaitingSync) {
          this.awaitingSync = false;
          if (Number.isSafeInteger(this.helloCursor)) this.h.synced(this.helloCursor);
        }
        break;
      case 'error':
        // Refused before the hello: say why, so no probe is needed.
        if (!this.helloSeen && m.error === 'bad_cursor') {
          this.fail('ws_failed', { status: 400, code: 'bad_cursor' });
          break;
        }
        this.h.frame(m);
        break;
      case 'ack':
        this.h.frame(m);
        break;
      default:
        this.h.event(m);
    }
  }
  keepAlive() {
    const idle = Date.now() - this.lastRx;
    if (idle > WS_DEAD_AFTER) this.fail('closed');
    else if (idle > WS_PING_EVERY) this.send({ op: 'ping' });
  }
  send(obj) {
    if (this.closed || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }
  close() {
    this.closed = true;
    clearInterval(this.pinger);
    if (this.ws) {
      this.ws.onmessage = this.ws.onclose = null;
      try {
        this.ws.close(1000);
      } catch (e) {
        /* already closing */
      }
    }
  }
}

class SseTransport extends Transport {
  constructor(h) {
    super('sse', h);
  }
  start(since) {
    const es = (this.es = new EventSource(withSince('/events', since)));
    es.addEventListener('hello', (e) => {
      const m = parse(e.data);
      if (!m) return;
      this.helloSeen = true;
      clearTimeout(this.watch);
      this.watch = null;
      this.h.hello(m);
    });
    // EventSource dispatches by the `event:` name: listen for every type
    // the app knows how to show (its table of event views).
    for (const type of this.h.types) {
      es.addEventListener(type, (e) => {
        const m = parse(e.data);
        if (m) this.h.event(m);
      });
    }
    es.onerror = () => {
      if (this.closed) return;
      if (!this.helloSeen || es.readyState === EventSource.CLOSED) {
        this.fail(this.helloSeen ? 'closed' : 'sse_failed');
        return;
      }
      // The browser reconnects on its own (retry:, Last-Event-ID); give
      // it a while, then take over.
      this.h.reconnecting();
      if (!this.watch) this.watch = setTimeout(() => this.fail('closed'), SSE_RESUME_DEADLINE);
    };
  }
  close() {
    this.closed = true;
    clearTimeout(this.watch);
    if (this.es) this.es.close();
  }
}

class PollTransport extends Transport {
  constructor(h) {
    super('poll', h);
  }
  start(since) {
    this.since = since;
    this.loop();
  }
  async loop() {
    let first = true;
    while (!this.closed) {
      const timeout = first ? 0 : POLL_TIMEOUT;
      const ctl = (this.ctl = new AbortController());
      const timer = setTimeout(() => ctl.abort(), (timeout + 15) * 1000);
      let res, body;
      try {
        res = await fetch(withSince('/poll?timeout=' + timeout, this.since), {
          credentials: 'same-origin',
          cache: 'no-store',
          signal: ctl.signal,
          headers: { Accept: 'application/json' },
        });
        body = parse(await res.text());
      } catch (e) {
        clearTimeout(timer);
        this.fail(this.helloSeen ? 'closed' : 'poll_failed');
        return;
      }
      clearTimeout(timer);
      if (this.closed) return;
      if (!res.ok || !body || !Array.isArray(body.events)) {
        this.fail(this.helloSeen ? 'closed' : 'poll_failed', {
          status: res.status,
          code: body && body.error,
          reason: body && body.reason,
          retryAfter: retryAfterSeconds(res),
        });
        return;
      }
      if (first || body.recovered === false) {
        first = false;
        this.helloSeen = true;
        this.h.hello({ type: 'hello', cursor: body.cursor, recovered: body.recovered !== false, transport: 'poll' });
        if (this.closed) return;
      }
      for (const ev of body.events) this.h.event(ev);
      if (Number.isSafeInteger(body.cursor)) {
        this.since = body.cursor;
        this.h.synced(body.cursor);
      }
    }
  }
  close() {
    this.closed = true;
    if (this.ctl) this.ctl.abort();
  }
}

const TRANSPORTS = { ws: WsTransport, sse: SseTransport, poll: PollTransport };

// What an HTTP answer to a probe (or a poll) means for the ladder.
// 403 disabled: an admin disabled the account, and says why.
function classify(status, code, retryAfter, reason) {
  if (status === 401) return { result: 'unauthorized' };
  if (status === 403 && code === 'disabled') return { result: 'unauthorized', disabled: true, reason: reason || '' };
  if (status === 400 && code === 'bad_cursor') return { result: 'bad_cursor' };
  if (status === 429 || status >= 500 || status === 0) return { result: 'down', retryAfter };
  return { result: 'ok' };
}

// --- the connection -----------------------------------------------------------

export class Connection {
  // opts: eventTypes (the event type names to receive), getCursor(),
  // onHello(m, kind), onEvent(ev), onFrame(m),
  // onSynced(cursor), onState(state), onBadCursor(), onUnauthorized(),
  // report(kind, reason).
  constructor(opts) {
    this.o = opts;
    // What worked here last time, unless that was long ago (networks move).
    let pref = transportPref.get();
    if (pref && !(Date.now() - pref.at < PREF_MAX_AGE)) pref = null;
    this.level = pref && KINDS.includes(pref.transport) ? KINDS.indexOf(pref.transport) : 0;
    this.reason = (pref && pref.reason) || 'ok';
    this.t = null;
    this.attempt = 0;
    this.stopped = true;
    this.everLive = false;
    this.worked = new Set();
    this.retriedSame = null;
    this.upgradeFirst = Number(tuning().upgradeFirstMs) || UPGRADE_FIRST;
    this.upgradeDelay = this.upgradeFirst;
    this.state = { phase: 'idle', kind: this.kind };
    this.onOnline = () => this.retryNow();
    this.onOffline = () => {
      if (!this.live) this.setState({ ...this.state, offline: true });
    };
  }

  get kind() {
    return KINDS[this.level];
  }
  get live() {
    return this.state.phase === 'live';
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.retryTimer);
    clearTimeout(this.deadline);
    clearTimeout(this.upTimer);
    if (this.t) this.t.close();
    this.t = null;
    this.setState({ phase: 'stopped', kind: this.kind });
  }

  // Reconnect at once (a button, the browser coming back online).
  retryNow() {
    if (this.stopped || this.live) return;
    this.connect();
  }

  // Send a command over the WebSocket; false when not possible now.
  send(obj) {
    return !!(this.live && this.t && this.t.kind === 'ws' && this.t.send(obj));
  }

  setState(s) {
    this.state = { ...s, offline: typeof navigator !== 'undefined' && navigator.onLine === false };
    this.o.onState(this.state);
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    clearTimeout(this.deadline);
    if (this.t) this.t.close();
    const kind = this.kind;
    let t = null;
    t = this.t = new TRANSPORTS[kind](this.handlers(() => t));
    this.setState({ phase: this.everLive ? 'reconnecting' : 'connecting', kind });
    this.deadline = setTimeout(() => {
      if (this.t === t && !t.helloSeen) {
        t.close();
        this.earlyFail(t, { reason: kind + '_timeout' });
      }
    }, HELLO_DEADLINE[kind]);
    t.start(this.o.getCursor());
  }

  // Handlers for one transport: anything it reports after it was
  // replaced (this.t moved on) is ignored.
  handlers(getT) {
    const cur = () => this.t === getT() && this.t;
    return {
      types: this.o.eventTypes,
      hello: (m) => cur() && this.onHello(getT(), m),
      event: (ev) => cur() && this.o.onEvent(ev),
      frame: (m) => cur() && this.o.onFrame(m),
      synced: (c) => cur() && this.o.onSynced(c),
      reconnecting: () => cur() && this.setState({ phase: 'reconnecting', kind: getT().kind }),
      fail: (info) => {
        if (!cur()) return;
        if (info.helloSeen) this.lateFail(getT(), info);
        else this.earlyFail(getT(), info);
      },
    };
  }

  onHello(t, m) {
    clearTimeout(this.deadline);
    this.attempt = 0;
    this.everLive = true;
    this.worked.add(t.kind);
    this.retriedSame = null;
    this.setState({ phase: 'live', kind: t.kind });
    transportPref.set({ transport: t.kind, reason: this.reason, at: Date.now() });
    const key = t.kind + ':' + this.reason;
    if (this.reported !== key) {
      this.reported = key;
      this.o.report(t.kind, this.reason);
    }
    this.o.onHello(m, t.kind);
    if (this.level > 0 && !this.upTimer) this.scheduleUpgrade();
  }

  lateFail(t, info) {
    if (this.stopped) return;
    const c = info.status ? classify(info.status, info.code, info.retryAfter, info.reason) : null;
    if (c && c.result === 'unauthorized') return this.unauthorized(c);
    if (c && c.result === 'bad_cursor') {
      this.o.onBadCursor();
      return this.connect();
    }
    this.scheduleRetry(info.retryAfter);
  }

  async earlyFail(t, info) {
    clearTimeout(this.deadline);
    if (this.stopped) return;
    const kind = t.kind;
    this.setState({ phase: this.everLive ? 'reconnecting' : 'connecting', kind, checking: true });
    const c = info.status ? classify(info.status, info.code, info.retryAfter, info.reason) : await this.probe();
    if (this.t !== t || this.stopped) return; // superseded meanwhile
    switch (c.result) {
      case 'unauthorized':
        return this.unauthorized(c);
      case 'bad_cursor':
        this.o.onBadCursor();
        if (this.attempt++ > 0) return this.scheduleRetry();
        return this.connect();
      case 'down':
        return this.scheduleRetry(c.retryAfter);
      default:
        // The server answers, so this transport is what does not get
        // through. One that worked earlier in this page gets a second
        // chance (a restart can race with the probe).
        if (kind === 'poll') return this.scheduleRetry();
        if (this.worked.has(kind) && this.retriedSame !== kind) {
          this.retriedSame = kind;
          return this.scheduleRetry();
        }
        this.reason = info.reason === 'sse_timeout' || info.reason === 'ws_timeout' ? info.reason : kind + '_failed';
        this.level++;
        this.connect();
    }
  }

  unauthorized(c) {
    this.stop();
    this.o.onUnauthorized(c && c.disabled ? { disabled: true, reason: c.reason } : undefined);
  }

  // Is the server there, do we still have a session, is the cursor known?
  async probe() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    try {
      const res = await fetch(withSince('/poll?timeout=0', this.o.getCursor()), {
        credentials: 'same-origin',
        cache: 'no-store',
        signal: ctl.signal,
      });
      const body = parse(await res.text());
      if (res.ok) return { result: 'ok' };
      return classify(res.status, body && body.error, retryAfterSeconds(res), body && body.reason);
    } catch (e) {
      return { result: 'down' };
    } finally {
      clearTimeout(timer);
    }
  }

  scheduleRetry(retryAfter) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const base = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** this.attempt);
    let delay = base / 2 + (Math.random() * base) / 2;
    // Retry-After (429 at a stream cap, 503 busy) is a floor, spread
    // over half as much again so a crowd refused at once does not return
    // at once.
    if (retryAfter) delay = Math.max(delay, retryAfter * 1000 * (1 + Math.random() / 2));
    this.attempt++;
    const retryAt = Date.now() + delay;
    this.setState({ phase: 'waiting', kind: this.kind, retryAt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // --- moving up the ladder in the background ---

  scheduleUpgrade() {
    clearTimeout(this.upTimer);
    const delay = this.upgradeDelay * (0.75 + Math.random() * 0.5);
    this.upTimer = setTimeout(() => this.tryUpgrade(), delay);
  }

  async tryUpgrade() {
    this.upTimer = null;
    if (this.stopped) return;
    if (!this.live || this.level === 0) {
      if (this.level > 0) this.scheduleUpgrade();
      return;
    }
    for (let lv = 0; lv < this.level; lv++) {
      const ok = await this.probeTransport(KINDS[lv]);
      if (this.stopped) return;
      if (ok && this.live) {
        this.level = lv;
        this.reason = 'ok';
        this.upgradeDelay = this.upgradeFirst;
        this.connect();
        return;
      }
    }
    this.upgradeDelay = Math.min(this.upgradeDelay * 2, UPGRADE_MAX);
    this.scheduleUpgrade();
  }

  // Open kind on the side and see whether its hello arrives in time.
  probeTransport(kind) {
    return new Promise((resolve) => {
      let t = null;
      const done = (ok) => {
        clearTimeout(timer);
        if (t) t.close();
        t = null;
        resolve(ok);
      };
      const quiet = () => {};
      t = new TRANSPORTS[kind]({
        types: [],
        hello: () => done(true),
        fail: () => done(false),
        reconnecting: () => done(false),
        event: quiet,
        frame: quiet,
        synced: quiet,
      });
      const timer = setTimeout(() => done(false), HELLO_DEADLINE[kind]);
      t.start(this.o.getCursor());
    });
  }
}
