// kit.mjs: what every browser end-to-end scenario shares: the natterd and
// nginx processes, the browser, Person (one user in one browser context),
// assertions, and scenario() itself. The scenarios live in scenarios/*.mjs,
// one file per area; e2e.mjs runs them in order on one shared natterd.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const env = process.env;
export const require = createRequire(path.join(env.E2E_DEPS_DIR || here, 'package.json'));
const { chromium } = require('playwright-core');

export const NATTERD = env.NATTERD;
export const WORK = env.E2E_WORK || fs.mkdtempSync('/tmp/natter-e2e.');
export const SHOTS = env.E2E_SCREENSHOTS || path.join(here, 'screenshots');
export const ONLY = env.E2E_ONLY ? new RegExp(env.E2E_ONLY, 'i') : null;
export const SCENARIO_TIMEOUT = 150000;
export const PASSWORD = 'correct horse battery';

fs.mkdirSync(SHOTS, { recursive: true });

// --- processes -------------------------------------------------------------------

export const children = new Set();

export function killAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch (e) {
      /* gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(1);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function waitExit(child, ms) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class Natterd {
  // extra: more natterd flags (the shared server turns per-user limits off:
  // scenarios seed their rooms with bursts of fetches; the one scenario about
  // those limits starts a server of its own with the defaults).
  constructor(name, extra = []) {
    this.name = name;
    this.extra = extra;
    this.dir = path.join(WORK, name);
    fs.mkdirSync(this.dir, { recursive: true });
    this.db = path.join(this.dir, 'natter.db');
    this.log = path.join(this.dir, 'natterd.log');
    this.port = 0;
  }

  // port 0: any free port (read back from the log).
  async start(port = 0) {
    const out = fs.openSync(this.log, 'a');
    const args = [
      '--listen', `127.0.0.1:${port}`, '--db', this.db,
      '--db-dir', env.NATTER_DB_DIR, '--web-root', env.NATTER_WEB_ROOT,
      '--argon2-memory-kib', '1024', '--argon2-time', '1', '--log-level', 'debug',
      ...this.extra,
    ];
    const child = spawn(NATTERD, args, { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.child = child;
    children.add(child);
    child.once('exit', () => children.delete(child));
    const started = fs.statSync(this.log).size;
    for (let i = 0; i < 200; i++) {
      const text = fs.readFileSync(this.log, 'utf8').slice(started);
      const m = /listening\b.*\bport=(\d+)/.exec(text);
      if (m && m[1] !== '0') {
        this.port = Number(m[1]);
        this.base = `http://127.0.0.1:${this.port}`;
        return this;
      }
      if (child.exitCode !== null) throw new Error(`${this.name}: natterd exited at start-up:\n${text}`);
      await sleep(50);
    }
    throw new Error(`${this.name}: natterd did not report its port`);
  }

  async stop() {
    if (!this.child) return;
    const c = this.child;
    this.child = null;
    c.kill('SIGTERM');
    if (!(await waitExit(c, 10000))) {
      c.kill('SIGKILL');
      await waitExit(c, 5000);
      throw new Error(`${this.name}: natterd did not exit within 10 s of SIGTERM`);
    }
  }

  tail(n = 30) {
    try {
      return fs.readFileSync(this.log, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
    } catch (e) {
      return '';
    }
  }
}

export class Nginx {
  constructor(name, template, upstream) {
    this.name = name;
    this.template = template;
    this.upstream = upstream;
    this.prefix = path.join(WORK, name);
  }

  async start() {
    fs.mkdirSync(this.prefix, { recursive: true });
    this.port = await freePort();
    const user = process.getuid && process.getuid() === 0 ? 'user root root;' : '';
    const conf = fs.readFileSync(path.join(here, this.template), 'utf8')
      .replaceAll('@USER@', user)
      .replaceAll('@PREFIX@', this.prefix)
      .replaceAll('@PORT@', String(this.port))
      .replaceAll('@UPSTREAM@', String(this.upstream));
    const confPath = path.join(this.prefix, 'nginx.conf');
    fs.writeFileSync(confPath, conf);
    const out = fs.openSync(path.join(this.prefix, 'stderr.log'), 'a');
    const child = spawn(env.NGINX || 'nginx', ['-p', this.prefix, '-e', path.join(this.prefix, 'error.log'), '-c', confPath], {
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
    this.child = child;
    children.add(child);
    child.once('exit', () => children.delete(child));
    for (let i = 0; i < 100; i++) {
      if (await canConnect(this.port)) {
        this.base = `http://127.0.0.1:${this.port}`;
        return this;
      }
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    let log = '';
    for (const f of ['stderr.log', 'error.log']) {
      try {
        log += fs.readFileSync(path.join(this.prefix, f), 'utf8');
      } catch (e) {
        /* none */
      }
    }
    throw new Error(`${this.name}: nginx did not start:\n${log}`);
  }

  async stop() {
    if (!this.child) return;
    const c = this.child;
    this.child = null;
    c.kill('SIGTERM');
    if (!(await waitExit(c, 5000))) c.kill('SIGKILL');
  }
}

// --- the browser -------------------------------------------------------------------

// The browser's language is set, not left to the machine's: the client
// picks its own from it.
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'en-US' };
export const DESKTOP = { viewport: { width: 1280, height: 800 }, locale: 'en-US' };
// The narrowest phone the layout is made for.
export const PHONE360 = { ...PHONE, viewport: { width: 360, height: 740 } };

export let browser;
export const openContexts = new Set();

export async function launch() {
  browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
}

// A person: a browser context (own cookies and localStorage) and a page.
export class Person {
  constructor(name, base, device = DESKTOP) {
    this.name = name;
    this.base = base;
    this.device = device;
    this.problems = [];
  }

  async open() {
    this.page = await this.tab();
    return this;
  }

  // A new page (tab) in this person's context, watched like the first.
  async tab() {
    if (!this.ctx) {
      this.ctx = await browser.newContext({ ...this.device });
      openContexts.add(this.ctx);
    }
    const page = await this.ctx.newPage();
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => this.problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // CSP violations and script errors; failed loads while the server
      // is deliberately down are expected.
      const t = m.text();
      if (m.type() === 'error' && /Content Security Policy|Refused to|Uncaught/i.test(t)) {
        this.problems.push(`console: ${t}`);
      }
    });
    await page.goto(this.base + '/');
    return page;
  }

  // Log in on a new page, or on the one open (again: false).
  async login(again = true) {
    if (again) await this.open();
    const p = this.page;
    await p.waitForSelector('#auth:not([hidden])');
    await p.fill('#auth-username', this.name);
    await p.fill('#auth-password', PASSWORD);
    await p.click('#auth-submit');
    await p.waitForSelector('#app:not([hidden])');
    return this;
  }

  // The settings dialog, opened from the user area (in the drawer on a phone).
  async openSettings() {
    const p = this.page;
    if (await this.narrow()) {
      await p.click('#open-nav');
      await p.waitForSelector('#open-settings', { state: 'visible' });
    }
    await p.click('#open-settings');
    await p.waitForSelector('#settings[open] #settings-body .set-section');
  }

  async closeSettings() {
    await this.page.click('#settings-close');
    await this.page.waitForSelector('#settings:not([open])', { state: 'attached' });
  }

  // The settings as the server holds them.
  serverSettings() {
    return this.page.evaluate(async () => (await (await fetch('/api/me')).json()).settings);
  }

  async register() {
    await this.open();
    const p = this.page;
    await p.click('#tab-register');
    await p.fill('#auth-username', this.name);
    await p.fill('#auth-password', PASSWORD);
    await p.click('#auth-submit');
    await p.waitForSelector('#app:not([hidden])');
    return this;
  }

  async waitLive(transport, timeout = 20000) {
    try {
      await this.page.waitForFunction(
        (t) => {
          const c = document.getElementById('conn');
          return c && c.dataset.phase === 'live' && (!t || c.dataset.transport === t);
        },
        transport,
        { timeout },
      );
    } catch (e) {
      const st = await this.connState();
      throw new Error(`${this.name}: not live${transport ? ' on ' + transport : ''} within ${timeout} ms (now: ${st.phase}/${st.transport} "${st.text}")`);
    }
  }

  connState() {
    return this.page.evaluate(() => {
      const c = document.getElementById('conn');
      return { phase: c.dataset.phase, transport: c.dataset.transport, text: document.getElementById('conn-text').textContent };
    });
  }

  async narrow() {
    return this.page.evaluate(() => getComputedStyle(document.getElementById('open-nav')).display !== 'none');
  }

  // Create or join through the sidebar form (the drawer on a phone).
  async enterRoom(name) {
    const p = this.page;
    if (await this.narrow()) {
      await p.click('#open-nav');
      await p.waitForSelector('#sidebar .room-form', { state: 'visible' });
    }
    await p.fill('#room-name-input', name);
    await p.click('#room-form-submit');
    await p.waitForFunction((n) => document.getElementById('room-title').textContent === '#' + n, name);
    await p.waitForSelector('#history-top :is(.room-intro, button)', { timeout: 10000 });
  }

  async openRoom(name) {
    const p = this.page;
    if (await this.narrow()) await p.click('#open-nav');
    await p.click(`.room-btn[data-room="${name}"]`);
    await p.waitForFunction((n) => document.getElementById('room-title').textContent === '#' + n, name);
  }

  async openDm(room) {
    const p = this.page;
    if (await this.narrow()) await p.click('#open-nav');
    await p.click(`#dm-list .room-btn[data-room="${room}"]`);
    await p.waitForFunction((r) => document.querySelector('#dm-list .room-btn[aria-current="page"]')?.dataset.room === r, room);
  }

  async say(text) {
    await this.page.fill('#composer-input', text);
    await this.page.press('#composer-input', 'Enter');
  }

  // Wait until text shows as a delivered (not pending) message.
  async sees(text, timeout = 10000) {
    try {
      await this.page.waitForFunction(
        (t) => [...document.querySelectorAll('#message-list .msg:not(.pending) .msg-text')].some((e) => e.textContent === t),
        text,
        { timeout },
      );
    } catch (e) {
      throw new Error(`${this.name} did not see ${JSON.stringify(text)} within ${timeout} ms`);
    }
  }

  // Delivered message texts of the open room, in order.
  texts() {
    return this.page.evaluate(() =>
      [...document.querySelectorAll('#message-list .msg:not(.pending) .msg-text')].map((e) => e.textContent));
  }

  ids() {
    return this.page.evaluate(() => [...document.querySelectorAll('#message-list [data-id]')].map((e) => e.dataset.id));
  }

  // The room's stored messages, straight from the API (this person's cookie).
  history(room) {
    return this.page.evaluate(async (r) => {
      const res = await fetch(`/api/rooms/${encodeURIComponent(r)}/messages?limit=200`);
      const body = await res.json();
      return body.events.filter((e) => e.type === 'message').map((e) => e.text);
    }, room);
  }

  async shot(file) {
    await this.page.screenshot({ path: path.join(SHOTS, file) });
  }

  checkClean() {
    if (this.problems.length) throw new Error(`${this.name}: ${this.problems.join('; ')}`);
  }

  async close() {
    if (this.ctx) {
      openContexts.delete(this.ctx);
      await this.ctx.close().catch(() => {});
    }
    this.ctx = null;
  }
}

// --- checks ----------------------------------------------------------------------------

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

export function exactlyOnce(list, texts, who) {
  for (const t of texts) {
    const n = list.filter((x) => x === t).length;
    assert(n === 1, `${who}: ${JSON.stringify(t)} appears ${n} times (want exactly 1)`);
  }
}

export function noDuplicateIds(ids, who) {
  const seen = new Set();
  for (const id of ids) {
    assert(!seen.has(id), `${who}: event id ${id} is shown twice`);
    seen.add(id);
  }
}

// A counter of the shared server in cluster mode is each node's own: the
// sum over the nodes (as a Prometheus query would), null if none has it.
export async function metric(base, name, labels) {
  if (server && server.nodes && server.nodes.length && base === server.base) {
    let sum = null;
    for (const node of server.nodes) {
      const v = await metric(node, name, labels);
      if (v !== null) sum = (sum || 0) + v;
    }
    return sum;
  }
  const res = await fetch(base + '/metrics');
  const text = await res.text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) return Number(line.trim().split(/\s+/).pop());
  }
  return null;
}

// --- languages, accessibility, layout ---------------------------------------------------

export const WEB = env.NATTER_WEB_ROOT || path.join(here, '../../web');
export const catalog = (lang) => JSON.parse(fs.readFileSync(path.join(WEB, 'i18n', lang + '.json'), 'utf8'));
export const forms = (v) => (typeof v === 'string' ? [v] : Object.values(v));
export const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(',');

// The pieces of English that must not show on a Chinese page: every text
// of the English catalog that the Chinese one does not share (language
// names and "WebSocket" are the same in both), cut at its placeholders,
// the pieces that hold a word.
export function englishPieces() {
  const en = catalog('en');
  const zh = catalog('zh-CN');
  const pieces = new Set();
  for (const [key, v] of Object.entries(en)) {
    const same = forms(v).some((s) => forms(zh[key]).includes(s));
    if (same) continue;
    for (const s of forms(v)) {
      for (const piece of s.split(/\{\w+\}/)) {
        const p = piece.trim();
        if (/[A-Za-z]{2,}/.test(p) && p.length >= 3) pieces.add(p);
      }
    }
  }
  return [...pieces];
}

// What a person meets on the page: the visible text and the names and
// hints of visible elements (aria-label, placeholder, title).
export function pageWords(page) {
  return page.evaluate(() => {
    const out = [document.body.innerText];
    for (const e of document.querySelectorAll('[aria-label], [placeholder], [title]')) {
      if (!e.checkVisibility()) continue;
      for (const a of ['aria-label', 'placeholder', 'title']) if (e.hasAttribute(a)) out.push(e.getAttribute(a));
    }
    return out.join('\n');
  });
}

// No English on a page meant to be Chinese: no piece of the English
// catalog, and no Latin word but those allowed (names, "natter",
// "WebSocket", key names, image format names).
export async function assertNoEnglish(page, where, allow = []) {
  const words = await pageWords(page);
  // Room names and topics are people's words, in whatever language.
  const rooms = await page.evaluate(async () => {
    const res = await fetch('/api/rooms');
    return res.ok ? (await res.json()).rooms.map((r) => `${r.name} ${r.topic || ''}`).join(' ') : '';
  });
  const ok = new Set(['natter', 'WebSocket', 'SSE', 'Enter', 'Shift', 'Ctrl', 'English', 'HTTP',
    'PNG', 'JPEG', 'GIF', 'WebP', ...allow,
    ...(rooms.match(/[A-Za-z]{2,}/g) || [])].map((w) => w.toLowerCase()));
  const pieces = englishPieces().filter((p) => words.includes(p));
  assert(!pieces.length, `${where}: English text on the zh-CN page: ${JSON.stringify(pieces.slice(0, 5))}`);
  const latin = [...new Set(words.match(/[A-Za-z]{2,}/g) || [])].filter((w) => !ok.has(w.toLowerCase()));
  assert(!latin.length, `${where}: Latin words on the zh-CN page: ${JSON.stringify(latin.slice(0, 10))}`);
}

// axe-core, evaluated in the page through the DevTools protocol (an
// injected <script> would be refused by natter's CSP, which stays on).
export const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export async function assertAccessible(page, where) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const res = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] } })
      .then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 4) }))));
  const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert(!bad.length, `${where}: axe finds ${bad.map((v) => `${v.id} (${v.impact}) at ${v.nodes.join(', ')}`).join('; ')}`);
  return res;
}

// Nothing of the page reaches past the viewport's left or right edge.
export async function assertFits(page, where) {
  const out = await page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const bad = [];
    if (document.documentElement.scrollWidth > w) bad.push(`page scrolls sideways (${document.documentElement.scrollWidth} > ${w})`);
    for (const e of document.querySelectorAll('body *')) {
      if (!e.checkVisibility({ visibilityProperty: true }) || e.closest('.visually-hidden')) continue;
      const r = e.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      if (r.left < -0.5 || r.right > w + 0.5) bad.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className} [${Math.round(r.left)}, ${Math.round(r.right)}]`);
    }
    return bad;
  });
  assert(!out.length, `${where}: cut off at the edges: ${out.slice(0, 5).join('; ')}`);
}

// The hover time of a continued message lies wholly on the screen, in
// its gutter, clear of the text.
export async function assertContTime(page, where) {
  const li = await page.$('#message-list .msg.cont:not(.pending)');
  assert(li, `${where}: no continued message to hover`);
  await li.hover();
  const g = await li.evaluate((e) => {
    const t = e.querySelector('.gutter .msg-time').getBoundingClientRect();
    const body = e.querySelector('.msg-body').getBoundingClientRect();
    return { left: t.left, right: t.right, body: body.left, visible: getComputedStyle(e.querySelector('.gutter .msg-time')).visibility };
  });
  assert(g.visible === 'visible', `${where}: the hover time does not show`);
  assert(g.left >= 0 && g.right <= g.body, `${where}: the hover time spans [${g.left}, ${g.right}], outside [0, ${g.body}]`);
  // The widest time of the day in this language, whatever the clock says now.
  const w = await li.evaluate((e) => {
    const t = e.querySelector('.gutter .msg-time');
    const was = t.textContent;
    t.textContent = new Intl.DateTimeFormat(document.documentElement.lang, { hour: 'numeric', minute: '2-digit', hourCycle: 'h12' })
      .format(new Date(2026, 0, 1, 12, 58));
    const r = t.getBoundingClientRect();
    const out = { text: t.textContent, left: r.left, right: r.right, body: e.querySelector('.msg-body').getBoundingClientRect().left };
    t.textContent = was;
    return out;
  });
  assert(w.left >= 0 && w.right <= w.body, `${where}: "${w.text}" as hover time spans [${w.left}, ${w.right}], outside [0, ${w.body}]`);
}

// --- scenarios ------------------------------------------------------------------------------

export let server; // the shared natterd (or, in cluster mode, the balancer)
export const results = [];
export const skipped = [];

export async function scenario(name, fn) {
  if (ONLY && !ONLY.test(name)) return;
  const people = [];
  const t0 = Date.now();
  try {
    let timer;
    await Promise.race([
      fn(people),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timed out after ${SCENARIO_TIMEOUT / 1000} s`)), SCENARIO_TIMEOUT);
      }),
    ]).finally(() => clearTimeout(timer));
    for (const p of people) p.checkClean();
    results.push(true);
    console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    if (e instanceof Skip) {
      skipped.push(name);
      console.log(`ok - ${name} # SKIP ${e.message}`);
      return;
    }
    results.push(false);
    console.log(`not ok - ${name}`);
    console.log('  ' + String(e && e.stack || e).split('\n').slice(0, 6).join('\n  '));
    for (const p of people) {
      if (p.page && !p.page.isClosed()) {
        await p.page.screenshot({ path: path.join(SHOTS, `FAILED-${p.name}.png`) }).catch(() => {});
      }
    }
  } finally {
    for (const p of people) await p.close();
  }
}

export const person = (people, ...args) => {
  const p = new Person(...args);
  people.push(p);
  return p;
};

// The shared natterd every scenario in scenarios/ talks to (per-user rate
// limits off: scenarios seed rooms with bursts; the limits scenario starts
// a server of its own).
//
// Cluster mode (tests/e2e/cluster.sh): E2E_SHARED_BASE is a balancer in
// front of several nodes that someone else started and stops; the shared
// server is then that URL. Scenarios that start a `new Natterd(...)` of
// their own (admin, restart, reset, limits, presence with a short grace)
// still get one node on SQLite, in both modes.
export const CLUSTER = !!env.E2E_SHARED_BASE;

export class SharedCluster {
  constructor(base, nodes, logs) {
    this.name = 'cluster';
    this.base = base.replace(/\/+$/, '');
    this.port = Number(new URL(this.base).port);
    this.nodes = nodes; // each node's own URL
    this.logs = logs;
    this.log = null; // no one log file: each node has its own
  }

  async stop() {
    /* cluster.sh stops the nodes */
  }

  // Each node's last lines, but for the balancer's health checks (every
  // 300 ms per node, they would fill the tail).
  tail(n = 30) {
    return this.logs.map((f) => {
      let t = '';
      try {
        t = fs.readFileSync(f, 'utf8').trimEnd().split('\n')
          .filter((l) => !/ path=\/healthz /.test(l)).slice(-n).join('\n');
      } catch (e) {
        /* none */
      }
      return `--- ${f} ---\n${t}`;
    }).join('\n');
  }
}

export async function startShared() {
  if (CLUSTER) {
    const words = (v) => (v || '').split(/\s+/).filter(Boolean);
    server = new SharedCluster(env.E2E_SHARED_BASE, words(env.E2E_SHARED_NODES), words(env.E2E_SHARED_LOGS));
    return server;
  }
  server = await new Natterd('natterd', [
    '--rate-commands', '0', '--rate-send', '0', '--rate-typing', '0',
  ]).start();
  return server;
}

// A scenario that needs what only one node can give calls this first: in
// cluster mode it ends the scenario as skipped, with the reason printed.
export class Skip extends Error {}
export function singleNodeOnly(reason) {
  if (CLUSTER) throw new Skip(reason);
}
