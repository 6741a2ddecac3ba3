// e2e.mjs: the browser end-to-end scenarios, run by run.sh (which sets the
// environment: NATTERD, NATTER_DB_DIR, NATTER_WEB_ROOT, CHROMIUM, NGINX,
// E2E_DEPS_DIR, E2E_WORK, E2E_SCREENSHOTS). It starts natterd and nginx
// itself, on free ports, and stops them however it ends.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const require = createRequire(path.join(env.E2E_DEPS_DIR || here, 'package.json'));
const { chromium } = require('playwright-core');

const NATTERD = env.NATTERD;
const WORK = env.E2E_WORK || fs.mkdtempSync('/tmp/natter-e2e.');
const SHOTS = env.E2E_SCREENSHOTS || path.join(here, 'screenshots');
const ONLY = env.E2E_ONLY ? new RegExp(env.E2E_ONLY, 'i') : null;
const SCENARIO_TIMEOUT = 150000;
const PASSWORD = 'correct horse battery';

fs.mkdirSync(SHOTS, { recursive: true });

// --- processes -------------------------------------------------------------------

const children = new Set();

function killAll() {
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function waitExit(child, ms) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

class Natterd {
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

class Nginx {
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
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'en-US' };
const DESKTOP = { viewport: { width: 1280, height: 800 }, locale: 'en-US' };
// The narrowest phone the layout is made for.
const PHONE360 = { ...PHONE, viewport: { width: 360, height: 740 } };

let browser;
const openContexts = new Set();

async function launch() {
  browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
}

// A person: a browser context (own cookies and localStorage) and a page.
class Person {
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

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function exactlyOnce(list, texts, who) {
  for (const t of texts) {
    const n = list.filter((x) => x === t).length;
    assert(n === 1, `${who}: ${JSON.stringify(t)} appears ${n} times (want exactly 1)`);
  }
}

function noDuplicateIds(ids, who) {
  const seen = new Set();
  for (const id of ids) {
    assert(!seen.has(id), `${who}: event id ${id} is shown twice`);
    seen.add(id);
  }
}

async function metric(base, name, labels) {
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

const WEB = env.NATTER_WEB_ROOT || path.join(here, '../../web');
const catalog = (lang) => JSON.parse(fs.readFileSync(path.join(WEB, 'i18n', lang + '.json'), 'utf8'));
const forms = (v) => (typeof v === 'string' ? [v] : Object.values(v));
const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(',');

// The pieces of English that must not show on a Chinese page: every text
// of the English catalog that the Chinese one does not share (language
// names and "WebSocket" are the same in both), cut at its placeholders,
// the pieces that hold a word.
function englishPieces() {
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
function pageWords(page) {
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
// "WebSocket", key names).
async function assertNoEnglish(page, where, allow = []) {
  const words = await pageWords(page);
  // Room names and topics are people's words, in whatever language.
  const rooms = await page.evaluate(async () => {
    const res = await fetch('/api/rooms');
    return res.ok ? (await res.json()).rooms.map((r) => `${r.name} ${r.topic || ''}`).join(' ') : '';
  });
  const ok = new Set(['natter', 'WebSocket', 'SSE', 'Enter', 'Shift', 'Ctrl', 'English', 'HTTP', ...allow,
    ...(rooms.match(/[A-Za-z]{2,}/g) || [])].map((w) => w.toLowerCase()));
  const pieces = englishPieces().filter((p) => words.includes(p));
  assert(!pieces.length, `${where}: English text on the zh-CN page: ${JSON.stringify(pieces.slice(0, 5))}`);
  const latin = [...new Set(words.match(/[A-Za-z]{2,}/g) || [])].filter((w) => !ok.has(w.toLowerCase()));
  assert(!latin.length, `${where}: Latin words on the zh-CN page: ${JSON.stringify(latin.slice(0, 10))}`);
}

// axe-core, evaluated in the page through the DevTools protocol (an
// injected <script> would be refused by natter's CSP, which stays on).
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
async function assertAccessible(page, where) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const res = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] } })
      .then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 4) }))));
  const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert(!bad.length, `${where}: axe finds ${bad.map((v) => `${v.id} (${v.impact}) at ${v.nodes.join(', ')}`).join('; ')}`);
  return res;
}

// Nothing of the page reaches past the viewport's left or right edge.
async function assertFits(page, where) {
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
async function assertContTime(page, where) {
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

let server; // the shared natterd
const results = [];

async function scenario(name, fn) {
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

const person = (people, ...args) => {
  const p = new Person(...args);
  people.push(p);
  return p;
};

async function main() {
  await launch();
  server = await new Natterd('natterd', [
    '--rate-commands', '0', '--rate-send', '0', '--rate-typing', '0',
  ]).start();

  await scenario('1 two people chat in real time (WebSocket)', async (people) => {
    const alice = person(people, 'alice', server.base, DESKTOP);
    const bob = person(people, 'bob', server.base, PHONE);
    await alice.open();
    await alice.shot('login-desktop.png');
    await alice.page.close();
    await alice.register();
    await bob.register();
    await alice.waitLive('ws');
    await bob.waitLive('ws');
    assert((await alice.connState()).text.includes('WebSocket'), 'the live transport is shown');

    await alice.enterRoom('garden');
    await bob.enterRoom('garden');

    await alice.say('Hi Bob, welcome to the garden');
    await bob.sees('Hi Bob, welcome to the garden', 5000);
    await bob.say('Thanks Alice! The tulips are out.');
    await alice.sees('Thanks Alice! The tulips are out.', 5000);

    // Shift+Enter makes a new line; Enter sends.
    await alice.page.fill('#composer-input', 'first line');
    await alice.page.press('#composer-input', 'Shift+Enter');
    await alice.page.type('#composer-input', 'second line');
    await alice.page.press('#composer-input', 'Enter');
    await bob.sees('first line\nsecond line', 5000);

    // User text is text, never markup.
    const evil = '<img src=x onerror="window.__pwned=1"><b>bold?</b>';
    await bob.say(evil);
    await alice.sees(evil, 5000);
    const injected = await alice.page.evaluate(() =>
      !!document.querySelector('#message-list img, #message-list b') || !!window.__pwned);
    assert(!injected, 'message text was interpreted as HTML');

    // Who is typing.
    await bob.page.fill('#composer-input', 'hmm');
    await bob.page.type('#composer-input', ' let me think');
    await alice.page.waitForFunction(() => /bob is typing/.test(document.getElementById('typing').textContent), null, { timeout: 5000 });
    await bob.page.fill('#composer-input', '');

    // Members.
    await alice.page.click('#members-toggle');
    await alice.page.waitForFunction(() => /bob/.test(document.getElementById('member-list').textContent));

    // Unread counts while looking at another room.
    await alice.openRoom('lobby');
    await bob.say('Are you still there, Alice?');
    await alice.page.waitForFunction(() => {
      const b = document.querySelector('.room-btn[data-room="garden"] .badge');
      return b && b.textContent === '1';
    }, null, { timeout: 5000 });
    await alice.openRoom('garden');
    await alice.sees('Are you still there, Alice?');
    assert(!(await alice.page.$('.room-btn[data-room="garden"] .badge')), 'unread badge cleared on opening');
    await alice.say('Yes! Looking at the roses.');
    await bob.sees('Yes! Looking at the roses.', 5000);

    // The room view, with the member list open and bob typing.
    await bob.page.fill('#composer-input', 'one sec');
    await alice.page.waitForFunction(() => /bob is typing/.test(document.getElementById('typing').textContent), null, { timeout: 5000 });
    await alice.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await alice.shot('room-desktop.png');
    await bob.page.fill('#composer-input', '');
    await alice.page.click('#close-members');
    await bob.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await bob.shot('room-phone.png');
    await bob.page.click('#open-nav');
    await bob.page.waitForTimeout(400);
    await bob.shot('rooms-phone.png');
    await bob.page.keyboard.press('Escape');

    for (const p of [alice, bob]) {
      const t = await p.texts();
      exactlyOnce(t, ['Hi Bob, welcome to the garden', 'Thanks Alice! The tulips are out.', 'Yes! Looking at the roses.'], p.name);
      noDuplicateIds(await p.ids(), p.name);
    }
    await alice.ctx.storageState({ path: path.join(WORK, 'alice.json') });
    await bob.ctx.storageState({ path: path.join(WORK, 'bob.json') });
  });

  await scenario('2 a reload shows history with nothing twice; older pages load on scrolling up', async (people) => {
    const alice = person(people, 'alice', server.base, DESKTOP);
    const bob = person(people, 'bob', server.base, DESKTOP);
    alice.device = { ...DESKTOP, storageState: path.join(WORK, 'alice.json') };
    bob.device = { ...DESKTOP, storageState: path.join(WORK, 'bob.json') };
    await alice.open();
    await bob.open();
    await alice.page.waitForSelector('#app:not([hidden])');
    await alice.waitLive();
    await bob.waitLive();
    await alice.openRoom('garden').catch(() => {});
    await bob.openRoom('garden').catch(() => {});
    const said = ['Hi Bob, welcome to the garden', 'Thanks Alice! The tulips are out.', 'Yes! Looking at the roses.'];
    await alice.sees(said[2]);
    await bob.say('After the reload');
    await alice.sees('After the reload');

    for (let i = 0; i < 2; i++) {
      await alice.page.reload();
      await alice.page.waitForSelector('#app:not([hidden])');
      await alice.waitLive();
      await alice.sees('After the reload');
      await alice.page.waitForTimeout(500);
      const t = await alice.texts();
      exactlyOnce(t, [...said, 'After the reload'], 'alice after reload');
      noDuplicateIds(await alice.ids(), 'alice after reload');
      const stored = await alice.history('garden');
      assert(t.length === stored.length, `alice shows ${t.length} messages, the server has ${stored.length}`);
    }
    await bob.say('Live again after two reloads');
    await alice.sees('Live again after two reloads');
    exactlyOnce(await alice.texts(), ['Live again after two reloads'], 'alice');

    // History pages: 130 messages, newest page first, older ones on scroll.
    await alice.enterRoom('archive');
    await alice.page.evaluate(async () => {
      for (let i = 1; i <= 130; i++) {
        const res = await fetch('/api/rooms/archive/messages', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: `archived message ${i}`, client_id: `seed-${i}` }),
        });
        if (!res.ok) throw new Error('seed failed: ' + res.status);
      }
    });
    await alice.sees('archived message 130');
    await alice.page.reload();
    await alice.page.waitForSelector('#app:not([hidden])');
    await alice.sees('archived message 130');
    let t = await alice.texts();
    assert(t.length < 130, `the first page shows ${t.length} messages, not all 130`);
    for (let i = 0; i < 20 && t.length < 130; i++) {
      await alice.page.evaluate(() => {
        document.getElementById('messages').scrollTop = 0;
      });
      await alice.page.waitForTimeout(400);
      t = await alice.texts();
    }
    const want = Array.from({ length: 130 }, (_, i) => `archived message ${i + 1}`);
    assert(JSON.stringify(t) === JSON.stringify(want), `scrolling up did not load all 130 messages in order (have ${t.length})`);
    await alice.page.waitForSelector('#history-top .room-intro');
    noDuplicateIds(await alice.ids(), 'alice (archive)');
  });

  await scenario('3 behind a buffering proxy without Upgrade: long-poll, nothing lost', async (people) => {
    const proxy = await new Nginx('nginx-poll', 'nginx-poll.conf.in', server.port).start();
    try {
      const carol = person(people, 'carol', proxy.base, DESKTOP);
      const dave = person(people, 'dave', proxy.base, DESKTOP);
      await carol.register();
      await dave.register();
      await carol.waitLive('poll', 30000);
      await dave.waitLive('poll', 30000);
      const st = await carol.connState();
      assert(st.text.includes('long-poll'), `the interface shows long-poll (shows "${st.text}")`);

      await carol.enterRoom('through-proxy');
      await dave.enterRoom('through-proxy');
      const fromCarol = Array.from({ length: 6 }, (_, i) => `carol via poll #${i + 1}`);
      const fromDave = Array.from({ length: 4 }, (_, i) => `dave via poll #${i + 1}`);
      for (const m of fromCarol) await carol.say(m);
      for (const m of fromDave) await dave.say(m);
      for (const m of [...fromCarol, ...fromDave]) {
        await carol.sees(m, 15000);
        await dave.sees(m, 15000);
      }
      await sleep(1500);
      for (const p of [carol, dave]) {
        const t = await p.texts();
        exactlyOnce(t, [...fromCarol, ...fromDave], p.name);
        const order = t.filter((x) => x.startsWith('carol via'));
        assert(JSON.stringify(order) === JSON.stringify(fromCarol), `${p.name}: carol's messages out of order`);
        noDuplicateIds(await p.ids(), p.name);
      }
      exactlyOnce(await carol.history('through-proxy'), [...fromCarol, ...fromDave], 'server history');
      await carol.shot('room-desktop-long-poll.png');

      // What worked is remembered: the next visit starts on long-poll.
      const pref = await carol.page.evaluate(() => JSON.parse(localStorage.getItem('natter:transport')));
      assert(pref && pref.transport === 'poll', `remembered transport is ${JSON.stringify(pref)}`);
      const t0 = Date.now();
      await carol.page.reload();
      await carol.waitLive('poll', 10000);
      assert(Date.now() - t0 < 3000 + 2000, 'a remembered long-poll starts without trying the ladder again');

      const n = await metric(server.base, 'natter_client_transport_total', { transport: 'poll', reason: 'sse_timeout' });
      assert(n !== null && n >= 2, `natter_client_transport_total{transport="poll",reason="sse_timeout"} is ${n}, want >= 2`);
    } finally {
      await proxy.stop();
    }
  });

  await scenario('4 behind a streaming proxy without Upgrade: SSE', async (people) => {
    const proxy = await new Nginx('nginx-sse', 'nginx-sse.conf.in', server.port).start();
    try {
      const erin = person(people, 'erin', proxy.base, DESKTOP);
      const frank = person(people, 'frank', server.base, DESKTOP);
      await erin.register();
      await frank.register();
      await erin.waitLive('sse', 20000);
      await frank.waitLive('ws');
      const st = await erin.connState();
      assert(st.text.includes('SSE'), `the interface shows SSE (shows "${st.text}")`);
      await erin.enterRoom('mixed');
      await frank.enterRoom('mixed');
      const msgs = [];
      for (let i = 1; i <= 3; i++) {
        msgs.push(`erin over sse ${i}`, `frank over ws ${i}`);
        await erin.say(`erin over sse ${i}`);
        await frank.say(`frank over ws ${i}`);
      }
      for (const m of msgs) {
        await erin.sees(m, 10000);
        await frank.sees(m, 10000);
      }
      await sleep(1000);
      for (const p of [erin, frank]) {
        exactlyOnce(await p.texts(), msgs, p.name);
        noDuplicateIds(await p.ids(), p.name);
      }
      await erin.shot('room-desktop-sse.png');
      const n = await metric(server.base, 'natter_client_transport_total', { transport: 'sse', reason: 'ws_failed' });
      assert(n !== null && n >= 1, `natter_client_transport_total{transport="sse",reason="ws_failed"} is ${n}, want >= 1`);
    } finally {
      await proxy.stop();
    }
  });

  await scenario('5 natterd restarts mid-conversation: every transport reconnects, each message once', async (people) => {
    const own = new Natterd('natterd-restart');
    const port = await freePort();
    await own.start(port);
    const sseProxy = await new Nginx('nginx-sse-restart', 'nginx-sse.conf.in', port).start();
    const pollProxy = await new Nginx('nginx-poll-restart', 'nginx-poll.conf.in', port).start();
    try {
      const gina = person(people, 'gina', own.base, DESKTOP);
      const hank = person(people, 'hank', own.base, PHONE);
      const sven = person(people, 'sven', sseProxy.base, DESKTOP);
      const paula = person(people, 'paula', pollProxy.base, DESKTOP);
      const everyone = [gina, hank, sven, paula];
      for (const p of everyone) await p.register();
      await gina.waitLive('ws');
      await hank.waitLive('ws');
      await sven.waitLive('sse');
      await paula.waitLive('poll', 30000);
      for (const p of everyone) await p.enterRoom('restart');
      await gina.say('before the restart');
      for (const p of everyone) await p.sees('before the restart', 15000);

      await own.stop();
      for (const p of [gina, hank]) {
        await p.page.waitForFunction(() => document.getElementById('conn').dataset.phase !== 'live', null, { timeout: 10000 });
      }
      // Typed while the server is away.
      const hankWhileDown = ['hank while down 1', 'hank while down 2', 'hank while down 3'];
      for (const m of hankWhileDown) await hank.say(m);
      await hank.page.waitForFunction(
        () => /offline, 3 messages waiting/i.test(document.getElementById('outbox-banner').textContent), null, { timeout: 5000 });
      await hank.page.evaluate(() => document.activeElement && document.activeElement.blur());
      await hank.shot('offline-phone.png');
      await sven.say('sven while down');
      await paula.say('paula while down');
      // gina writes, then closes the tab: the outbox must survive that.
      await gina.say('gina while down');
      await gina.page.waitForSelector('#message-list .msg.pending');
      const stored = await gina.page.evaluate(() =>
        Object.keys(localStorage).filter((k) => k.endsWith(':outbox')).map((k) => localStorage.getItem(k)).join(''));
      assert(stored.includes('gina while down'), 'the outbox is kept in localStorage');
      await gina.page.close();

      await sleep(2000);
      await own.start(port);
      assert(own.port === port, 'natterd came back on the same port');
      await hank.waitLive('ws', 40000);
      await sven.waitLive('sse', 40000);
      await paula.waitLive('poll', 40000);
      await gina.open(); // a new tab: same cookies and localStorage
      await gina.page.waitForSelector('#app:not([hidden])');
      await gina.waitLive(null, 20000);
      await gina.openRoom('restart').catch(() => {});
      const all = ['before the restart', ...hankWhileDown, 'sven while down', 'paula while down', 'gina while down'];
      for (const m of all) {
        for (const p of everyone) await p.sees(m, 20000);
      }
      await hank.say('after the restart');
      for (const p of everyone) await p.sees('after the restart', 15000);
      await sleep(1500);
      for (const p of everyone) {
        exactlyOnce(await p.texts(), [...all, 'after the restart'], p.name);
        noDuplicateIds(await p.ids(), p.name);
        assert(await p.page.$eval('#outbox-banner', (e) => e.hidden), `${p.name}: the outbox banner is gone`);
      }
      exactlyOnce(await hank.history('restart'), [...all, 'after the restart'], 'server history');
    } finally {
      await sseProxy.stop();
      await pollProxy.stop();
      await own.stop().catch(() => {});
    }
  });

  await scenario('6 keyboard only: register, create a room, send, switch rooms', async (people) => {
    const ivy = person(people, 'ivy', server.base, DESKTOP);
    await ivy.open();
    const p = ivy.page;
    const k = p.keyboard;
    await p.waitForSelector('#auth:not([hidden])');
    await p.waitForFunction(() => document.activeElement && document.activeElement.id === 'auth-username');
    await k.press('Shift+Tab'); // to the "Create account" tab
    await k.press('Enter');
    await k.press('Tab');
    await k.type('ivy');
    await k.press('Tab');
    await k.type(PASSWORD);
    await k.press('Enter');
    await p.waitForSelector('#app:not([hidden])');
    await ivy.waitLive();
    await p.waitForFunction(() => document.activeElement && document.activeElement.id === 'composer-input');
    await k.type('hello from the keyboard');
    await k.press('Enter');
    await ivy.sees('hello from the keyboard');
    // Shift+Tab back from the composer reaches the room form.
    for (let i = 0; i < 20; i++) {
      if (await p.evaluate(() => document.activeElement && document.activeElement.id === 'room-name-input')) break;
      await k.press('Shift+Tab');
    }
    assert(await p.evaluate(() => document.activeElement.id === 'room-name-input'), 'the room form is reachable with Tab');
    await k.type('quiet');
    await k.press('Enter');
    await p.waitForFunction(() => document.getElementById('room-title').textContent === '#quiet');
    await p.waitForFunction(() => document.activeElement && document.activeElement.id === 'composer-input');
    await k.type('in quiet');
    await k.press('Enter');
    await ivy.sees('in quiet');
    await k.press('Alt+ArrowUp');
    await p.waitForFunction(() => document.getElementById('room-title').textContent === '#lobby');
    await ivy.sees('hello from the keyboard');

    // Log out: back to the login form, nothing of ivy left in storage.
    await p.click('#logout');
    await p.waitForSelector('#auth:not([hidden])');
    const left = await p.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('natter:u:ivy:')));
    assert(!left.length, `logout left ${left.join(', ')} in localStorage`);
    const me = await p.evaluate(async () => (await fetch('/api/me')).status);
    assert(me === 401, `after logout /api/me answers ${me}`);
  });

  await scenario('7 the server database is reset: the stale cursor is dropped, the client starts over', async (people) => {
    const own = new Natterd('natterd-reset');
    const port = await freePort();
    await own.start(port);
    try {
      const kim = person(people, 'kim', own.base, DESKTOP);
      await kim.register();
      await kim.waitLive('ws');
      for (let i = 1; i <= 5; i++) await kim.say(`old world ${i}`);
      await kim.sees('old world 5');
      await kim.page.waitForFunction(() => Number(localStorage.getItem('natter:u:kim:cursor')) >= 6);
      await own.stop();
      for (const f of fs.readdirSync(own.dir)) if (f.startsWith('natter.db')) fs.rmSync(path.join(own.dir, f));
      await own.start(port);
      // The session is gone with the database: kim is asked to log in.
      await kim.page.waitForSelector('#auth:not([hidden])', { timeout: 40000 });
      const msg = await kim.page.textContent('#auth-error');
      assert(/session has ended/i.test(msg), `login form says "${msg}"`);
      await kim.page.click('#tab-register');
      await kim.page.fill('#auth-username', 'kim');
      await kim.page.fill('#auth-password', PASSWORD);
      await kim.page.click('#auth-submit');
      await kim.page.waitForSelector('#app:not([hidden])');
      // Its stored cursor (>= 6) is newer than anything the new server has.
      await kim.waitLive('ws', 20000);
      await kim.say('new world');
      await kim.sees('new world');
      const t = await kim.texts();
      assert(!t.some((x) => x.startsWith('old world')), 'messages of the old database are still shown');
      const lee = person(people, 'lee', own.base, DESKTOP);
      await lee.register();
      await lee.waitLive('ws');
      await lee.say('hello kim');
      await kim.sees('hello kim');
    } finally {
      await own.stop().catch(() => {});
    }
  });

  await scenario('8 a remembered long-poll starts at once and moves up to WebSocket in the background', async (people) => {
    const max = person(people, 'max', server.base, DESKTOP);
    await max.open();
    await max.page.evaluate(() => {
      localStorage.setItem('natter:transport', JSON.stringify({ transport: 'poll', reason: 'sse_timeout', at: Date.now() }));
      localStorage.setItem('natter:tuning', JSON.stringify({ upgradeFirstMs: 3000 }));
    });
    await max.page.reload();
    await max.page.click('#tab-register');
    await max.page.fill('#auth-username', 'max');
    await max.page.fill('#auth-password', PASSWORD);
    await max.page.click('#auth-submit');
    await max.page.waitForSelector('#app:not([hidden])');
    await max.waitLive('poll', 5000);
    await max.waitLive('ws', 20000);
    const pref = await max.page.evaluate(() => JSON.parse(localStorage.getItem('natter:transport')));
    assert(pref.transport === 'ws' && pref.reason === 'ok', `remembered ${JSON.stringify(pref)} after moving up`);
    await max.say('upgraded');
    await max.sees('upgraded');
  });

  await scenario('9 the catalogs: the same keys, plural forms and placeholders in en and zh-CN', async () => {
    const en = catalog('en');
    const zh = catalog('zh-CN');
    const missing = [...Object.keys(en).filter((k) => !(k in zh)), ...Object.keys(zh).filter((k) => !(k in en))];
    assert(!missing.length, `keys in one catalog only: ${missing.join(', ')}`);
    for (const [lang, cat] of [['en', en], ['zh-CN', zh]]) {
      const need = new Intl.PluralRules(lang).resolvedOptions().pluralCategories.sort().join(',');
      for (const [k, v] of Object.entries(cat)) {
        assert(typeof v === 'string' || (v && typeof v === 'object'), `${lang} ${k}: neither a text nor plural forms`);
        if (typeof v === 'object') {
          assert(Object.keys(v).sort().join(',') === need, `${lang} ${k}: plural forms ${Object.keys(v)}, want ${need}`);
        }
        assert(typeof v === typeof en[k], `${lang} ${k}: a plural in one catalog, a text in the other`);
        for (const s of forms(v)) {
          assert(placeholders(s) === placeholders(forms(en[k])[forms(en[k]).length - 1]), `${lang} ${k}: placeholders {${placeholders(s)}} differ from English`);
        }
      }
    }
    // Every key the page and the scripts name literally is in the catalogs.
    const used = new Set();
    const html = fs.readFileSync(path.join(WEB, 'index.html'), 'utf8');
    for (const m of html.matchAll(/data-i18n(?:-\w+)?="([^"]+)"/g)) used.add(m[1]);
    for (const f of fs.readdirSync(WEB).filter((x) => x.endsWith('.js'))) {
      const js = fs.readFileSync(path.join(WEB, f), 'utf8');
      for (const m of js.matchAll(/\bt\('([\w.-]+)'\s*[,)]/g)) used.add(m[1]);
    }
    const unknown = [...used].filter((k) => !(k in en));
    assert(!unknown.length, `keys used but in no catalog: ${unknown.join(', ')}`);
  });

  await scenario('10 zh-CN: the client speaks Chinese when the browser prefers it, no English left; language switched live', async (people) => {
    const ZH = { ...DESKTOP, locale: 'zh-CN' };
    const wang = person(people, 'wang', server.base, ZH);
    const li = person(people, 'li', server.base, ZH);
    const names = ['wang', 'li', 'chaguan', 'lobby'];
    await wang.open();
    const p = wang.page;
    await p.waitForSelector('#auth:not([hidden])');
    assert((await p.evaluate(() => document.documentElement.lang)) === 'zh-CN', '<html lang> is zh-CN');
    assert((await p.textContent('#auth-submit')) === '登录', `the login button says "${await p.textContent('#auth-submit')}"`);
    await assertNoEnglish(p, 'login');
    await p.click('#tab-register');
    await p.fill('#auth-username', 'wang');
    await p.fill('#auth-password', 'short');
    await p.click('#auth-submit');
    await p.waitForFunction(() => document.getElementById('auth-error').textContent !== '');
    await assertNoEnglish(p, 'register, with an error');
    await p.fill('#auth-password', PASSWORD);
    await p.click('#auth-submit');
    await p.waitForSelector('#app:not([hidden])');
    await wang.waitLive('ws');
    await li.register();
    await li.waitLive('ws');
    await wang.enterRoom('chaguan');
    await li.enterRoom('chaguan');
    const said = '大家好，我们今天讨论一下性能优化';
    await wang.say(said);
    await wang.say('第二句');
    await li.sees('第二句');
    // A message from someone else in the open room is announced.
    await li.say('好的，开始吧');
    await wang.sees('好的，开始吧');
    await p.waitForFunction(() => document.getElementById('announce').textContent.includes('li：好的，开始吧'), null, { timeout: 5000 });
    const own = await p.textContent('#announce');
    assert(!own.includes(said), 'the live region announces the person\'s own messages');
    await p.click('#members-toggle');
    await p.waitForFunction(() => /li/.test(document.getElementById('member-list').textContent));
    await assertNoEnglish(p, 'room', names);
    // Times follow Chinese habits (24-hour) and the day is "今天".
    const time = await p.textContent('#message-list .msg .msg-time');
    assert(/^\d{1,2}:\d{2}$/.test(time), `a zh-CN time reads "${time}"`);
    assert((await p.textContent('#message-list .day')) === '今天', 'the day separator reads 今天');

    await wang.openSettings();
    await assertNoEnglish(p, 'settings', names);
    // Switch to English: applied at once, without a reload.
    await p.evaluate(() => {
      window.__sameDocument = true;
    });
    await p.click('#set-language-en');
    await p.waitForFunction(() => document.documentElement.lang === 'en');
    await p.waitForFunction(() => document.getElementById('settings-title').textContent === 'Settings');
    assert(await p.evaluate(() => window.__sameDocument === true), 'switching the language reloaded the page');
    assert((await p.getAttribute('#composer-input', 'placeholder')) === 'Message #chaguan', 'the composer speaks English');
    assert((await p.textContent('#conn-text')) === 'Live · WebSocket', `the connection reads "${await p.textContent('#conn-text')}"`);
    assert((await p.textContent('#message-list .day')) === 'Today', 'the day separator reads Today');
    assert((await p.textContent('#set-language-en')) !== null, 'the dialog stays open');
    assert(await p.evaluate(() => document.activeElement && document.activeElement.id === 'set-language-en'), 'the focus stays on the choice');
    await p.waitForFunction(async () => (await (await fetch('/api/me')).json()).settings.language === 'en');
    // And back to the browser's language.
    await p.click('#set-language-auto');
    await p.waitForFunction(() => document.documentElement.lang === 'zh-CN');
    await p.waitForFunction(() => document.getElementById('settings-title').textContent === '设置');
    await wang.closeSettings();
    await assertNoEnglish(p, 'room, after switching back', names);
  });

  await scenario('11 settings follow the user: by keyboard, to another tab at once, to another browser after logging in again', async (people) => {
    const sato = person(people, 'sato', server.base, DESKTOP);
    await sato.register();
    await sato.waitLive('ws');
    const p = sato.page;
    const k = p.keyboard;
    const tab2 = await sato.tab();
    await tab2.waitForSelector('#app:not([hidden])');
    // The focused element: a radio button by its group's name, else by id.
    const focused = () => p.evaluate(() => {
      const e = document.activeElement;
      return e && (e.type === 'radio' ? e.name : e.id);
    });

    // Keyboard only: from the message box back to the settings button.
    await p.focus('#composer-input');
    for (let i = 0; i < 30 && (await focused()) !== 'open-settings'; i++) await k.press('Shift+Tab');
    assert((await focused()) === 'open-settings', 'the settings button is reachable with Tab');
    await k.press('Enter');
    await p.waitForSelector('#settings[open]');
    for (let i = 0; i < 30 && (await focused()) !== 'set-theme'; i++) await k.press('Tab');
    assert((await focused()) === 'set-theme', 'the theme choice is reachable with Tab');
    await k.press('ArrowRight'); // light
    await k.press('ArrowRight'); // dark
    await p.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
    // The other tab follows at once.
    await tab2.waitForFunction(() => document.documentElement.dataset.theme === 'dark', null, { timeout: 3000 });
    await k.press('Tab');
    await k.press('ArrowRight'); // compact
    await k.press('Tab');
    assert((await focused()) === 'set-font_size', 'the text size is next');
    for (let i = 0; i < 3; i++) await k.press('ArrowRight');
    await p.waitForFunction(() => document.documentElement.style.fontSize === '18px');
    await p.click('#set-time_format-24');
    await p.click('#set-send_key-ctrl_enter');
    await p.selectOption('#set-notify-lobby', 'mentions');
    await p.fill('#set-display-name', 'Sato Aiko');
    await p.press('#set-display-name', 'Enter');
    await p.waitForFunction(() => document.getElementById('me-name').textContent === 'Sato Aiko');
    await k.press('Escape');
    await p.waitForSelector('#settings:not([open])', { state: 'attached' });
    assert((await focused()) === 'open-settings', 'closing the dialog gives the focus back to its button');
    for (const [who, page] of [['this tab', p], ['the other tab', tab2]]) {
      await page.waitForFunction(() => {
        const r = document.documentElement;
        return r.dataset.density === 'compact' && r.style.fontSize === '18px'
          && /Ctrl\+Enter sends/.test(document.getElementById('composer-keys').textContent)
          && document.getElementById('me-name').textContent === 'Sato Aiko';
      }, null, { timeout: 3000 }).catch(() => {
        throw new Error(`${who}: density, text size, send key or name not applied`);
      });
    }
    // Ctrl+Enter sends now; Enter makes a new line.
    await p.fill('#composer-input', 'line one');
    await p.press('#composer-input', 'Enter');
    await p.type('#composer-input', 'line two');
    await p.press('#composer-input', 'Control+Enter');
    await sato.sees('line one\nline two');
    const time = await p.textContent('#message-list .msg .msg-time');
    assert(/^\d{1,2}:\d{2}$/.test(time), `a 24-hour time reads "${time}"`);
    const want = { theme: 'dark', density: 'compact', font_size: 18, time_format: '24', send_key: 'ctrl_enter', 'room:lobby': { notify: 'mentions' } };
    for (let i = 0; i < 50; i++) {
      const got = await sato.serverSettings();
      if (Object.entries(want).every(([key, v]) => JSON.stringify(got[key]) === JSON.stringify(v))) break;
      assert(i < 49, `the server holds ${JSON.stringify(got)}`);
      await sleep(100);
    }
    await tab2.close();

    // Lobby notifies of mentions only: while sato is elsewhere, a message
    // there makes it bold without a count; a mention counts. Muted: silent.
    await sato.enterRoom('dojo');
    const kenji = person(people, 'kenji', server.base, DESKTOP);
    await kenji.register();
    await kenji.waitLive('ws');
    // Desktop notifications, as if allowed and the page were in the
    // background: the browser's own needs a person to say yes.
    await p.evaluate(() => {
      window.__notes = [];
      window.Notification = class {
        static permission = 'granted';
        constructor(title, o) {
          window.__notes.push(`${title}|${o.body}`);
        }
      };
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    });
    await kenji.say('hello everyone');
    const lobby = '.room-btn[data-room="lobby"]';
    await p.waitForSelector(`${lobby}.has-unread`);
    assert(!(await p.$(`${lobby} .badge`)), 'a message without a mention shows a count');
    await kenji.say('@sato are you there?');
    await p.waitForFunction((sel) => {
      const b = document.querySelector(sel + ' .badge');
      return b && b.textContent === '1' && b.getAttribute('aria-label') === '1 unread mention';
    }, lobby);
    let notes = await p.evaluate(() => window.__notes);
    assert(JSON.stringify(notes) === JSON.stringify(['kenji in #lobby|@sato are you there?']), `desktop notifications: ${JSON.stringify(notes)}`);
    await sato.openSettings();
    await p.check('#set-mute-lobby');
    await sato.closeSettings();
    await p.waitForSelector(`${lobby}.is-muted .muted-mark`);
    assert(!(await p.$(`${lobby} .badge`)) && !(await p.$(`${lobby}.has-unread`)), 'a muted room still shows unread');
    await kenji.say('@sato still muted?');
    await kenji.sees('@sato still muted?');
    await sleep(300);
    assert(!(await p.$(`${lobby} .badge`)), 'a muted room counts a mention');
    notes = await p.evaluate(() => window.__notes);
    assert(notes.length === 1, `a muted room notifies: ${JSON.stringify(notes)}`);
    await p.evaluate(() => delete document.hidden);

    await p.click('#logout');
    await p.waitForSelector('#auth:not([hidden])');

    // Another browser: the settings come with the account.
    const again = person(people, 'sato', server.base, { ...DESKTOP, colorScheme: 'light' });
    // A settings event on the stream (the server pushes none yet) applies
    // like any other change; so does a reconnect, which re-reads /api/me.
    let toPage = null;
    let sockets = [];
    await (again.ctx = await browser.newContext({ ...again.device })).routeWebSocket(/\/ws(\?|$)/, (ws) => {
      const up = ws.connectToServer();
      toPage = ws;
      sockets = [ws, up];
    });
    openContexts.add(again.ctx);
    await again.login();
    await again.waitLive('ws');
    const q = again.page;
    await q.waitForFunction(() => {
      const r = document.documentElement;
      return r.dataset.theme === 'dark' && r.dataset.density === 'compact' && r.style.fontSize === '18px'
        && document.getElementById('me-name').textContent === 'Sato Aiko';
    }, null, { timeout: 5000 });
    await again.openSettings();
    assert((await q.inputValue('#set-notify-lobby')) === 'mentions', 'the room notification level came along');
    assert(await q.isChecked('#set-mute-lobby'), 'muting came along');
    assert(await q.$('.room-btn[data-room="lobby"] .muted-mark'), 'the muted room is marked in the room list');
    assert(await q.isChecked('#set-send_key-ctrl_enter'), 'Ctrl+Enter came along');
    toPage.send(JSON.stringify({ type: 'settings', settings: { theme: 'light', font_size: 16, 'room:lobby': { notify: 'none' } } }));
    await q.waitForFunction(() => document.documentElement.dataset.theme === 'light' && document.documentElement.style.fontSize === '16px');
    await q.waitForFunction(() => document.getElementById('set-theme-light').checked && !document.getElementById('set-mute-lobby').checked
      && document.getElementById('set-notify-lobby').value === 'none');
    assert(!(await q.$('.room-btn[data-room="lobby"] .muted-mark')), 'the room list still shows lobby muted');
    await again.closeSettings();
    // Changed elsewhere while this browser is connected: it learns on reconnecting.
    await q.evaluate(() => fetch('/api/me', { method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ settings: { theme: 'dark', language: 'zh-CN' } }) }));
    for (const s of sockets) s.close();
    await q.waitForFunction(() => document.documentElement.dataset.theme === 'dark' && document.documentElement.lang === 'zh-CN', null, { timeout: 15000 });
  });

  await scenario('12 accessibility and looks: axe on the login, room and settings pages, both themes and languages, desktop and 360 px phone', async (people) => {
    const guide = person(people, 'guide', server.base, DESKTOP);
    await guide.register();
    // A room per language, so that a Chinese page shows no English message.
    const rooms = { en: 'tour', 'zh-CN': 'canguan' };
    await guide.enterRoom('tour');
    await guide.say('Welcome! The guide is at https://example.org/');
    await guide.enterRoom('canguan');
    await guide.say('欢迎参观 https://example.org/');
    const looks = [];
    for (const [lang, locale] of [['en', 'en-US'], ['zh-CN', 'zh-CN']]) {
      for (const [dev, device] of [['desktop', DESKTOP], ['phone360', PHONE360]]) {
        const name = `ax_${lang === 'en' ? 'en' : 'zh'}_${dev === 'desktop' ? 'd' : 'p'}`;
        for (const theme of ['light', 'dark']) {
          const who = person(people, name, server.base, { ...device, locale, colorScheme: theme });
          const tag = `${lang}-${theme}-${dev}`;
          await who.open();
          const p = who.page;
          await p.waitForSelector('#auth:not([hidden])');
          await p.waitForFunction(() => document.getElementById('auth-submit').textContent !== '');
          await assertAccessible(p, `login ${tag}`);
          if (dev === 'phone360') await assertFits(p, `login ${tag}`);
          await who.shot(`login-${tag}.png`);
          if (theme === 'light') {
            await p.click('#tab-register');
            await p.fill('#auth-username', name);
            await p.fill('#auth-password', PASSWORD);
            await p.click('#auth-submit');
            await p.waitForSelector('#app:not([hidden])');
            await who.enterRoom(rooms[lang]);
            await who.say(lang === 'en' ? 'Hello everyone, glad to be here.' : '大家好，很高兴来到这里。');
            await who.say(lang === 'en' ? 'A second line from me.' : '我再说一句。');
            await who.sees(lang === 'en' ? 'A second line from me.' : '我再说一句。');
          } else {
            await who.login(false);
            await who.openRoom(rooms[lang]);
          }
          await who.waitLive();
          // The login page followed the system's theme; from here on the
          // theme is the person's choice (kept from the last round).
          await who.openSettings();
          await p.click(`#set-theme-${theme}`);
          await who.closeSettings();
          assert((await p.evaluate(() => document.documentElement.dataset.theme)) === theme, `${tag}: the theme is not ${theme}`);
          if (await who.narrow()) await p.keyboard.press('Escape');
          await p.evaluate(() => document.activeElement && document.activeElement.blur());
          await p.waitForFunction(() => document.getElementById('message-list').children.length > 2);
          looks.push(await assertAccessible(p, `room ${tag}`));
          if (dev === 'phone360') {
            await assertFits(p, `room ${tag}`);
            await assertContTime(p, `room ${tag}`);
          }
          await who.shot(`room-${tag}.png`);
          await who.openSettings();
          await assertAccessible(p, `settings ${tag}`);
          if (dev === 'phone360') await assertFits(p, `settings ${tag}`);
          await who.shot(`settings-${tag}.png`);
          await who.closeSettings();
          if (lang === 'zh-CN') await assertNoEnglish(p, `room ${tag}`, ['canguan', 'tour', 'lobby', 'guide', 'https', 'example', 'org', 'ax', 'zh']);
          await who.close();
        }
      }
    }
    // Moderate and minor findings are not failures; list them once.
    const minor = new Set(looks.flat().map((v) => `${v.id} (${v.impact})`));
    if (minor.size) console.log(`  axe, not serious: ${[...minor].join(', ')}`);
  });

  await scenario('13 search finds a Chinese word inside a sentence, highlights it, and opens the message far back in its room', async (people) => {
    const lin = person(people, 'lin', server.base, DESKTOP);
    await lin.register();
    await lin.waitLive();
    await lin.enterRoom('sousuo'); // a room of its own: others' rooms share this server
    const zh = '大家好，我们今天讨论一下性能优化';
    await lin.say(zh);
    await lin.sees(zh);
    // 60 more after it: the message lies beyond the first history page.
    await lin.page.evaluate(async () => {
      for (let i = 1; i <= 60; i++) {
        const res = await fetch('/api/rooms/sousuo/messages', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: `filler ${i}` }),
        });
        if (!res.ok) throw new Error(`send ${i}: ${res.status}`);
      }
    });
    const evil = '<img src=x onerror="window.__pwned=1">性能测试 <b>bold</b>';
    await lin.say(evil);
    await lin.sees(evil);
    await lin.say('ラーメンを食べました');
    await lin.openRoom('lobby');

    // Search from the keyboard: type, Enter, arrow down to a result, Enter.
    const p = lin.page;
    await p.focus('#search-input');
    await p.keyboard.type('性能');
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => document.querySelectorAll('#search-list .search-hit').length === 2, null, { timeout: 5000 })
      .catch(async () => { throw new Error(`results: ${await p.textContent('#search-results')}`); });
    const hits = await p.$$eval('#search-list .search-hit', (bs) => bs.map((b) => ({
      marks: [...b.querySelectorAll('mark')].map((m) => m.textContent),
      text: b.querySelector('.search-snippet').textContent,
      room: b.querySelector('.search-room').textContent,
    })));
    assert(hits[0].text === evil && hits[1].text === zh, `newest first, whole texts: ${JSON.stringify(hits)}`);
    assert(hits.every((x) => x.marks.join() === '性能' && x.room === '#sousuo'), `性能 is marked: ${JSON.stringify(hits)}`);
    const injected = await p.evaluate(() => !!document.querySelector('#search-list img, #search-list b') || !!window.__pwned);
    assert(!injected, 'a snippet was interpreted as HTML');
    assert(/2 results/.test(await p.textContent('#search-status')), 'the count is shown');
    await p.evaluate(() => document.activeElement && document.activeElement.blur());
    await lin.shot('search-desktop.png');
    await p.focus('#search-input');
    await p.keyboard.press('ArrowDown');
    await p.keyboard.press('ArrowDown');
    assert(await p.evaluate(() => document.activeElement.classList.contains('search-hit')
      && document.activeElement.textContent.includes('讨论一下')), 'arrow keys move through the results');
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => document.getElementById('room-title').textContent === '#sousuo');
    await p.waitForFunction((t) => {
      const li = document.querySelector('#message-list li.found');
      if (!li || li.querySelector('.msg-text').textContent !== t) return false;
      const box = document.getElementById('messages').getBoundingClientRect();
      const r = li.getBoundingClientRect();
      return r.top >= box.top && r.bottom <= box.bottom;
    }, zh, { timeout: 10000 }).catch(() => { throw new Error('the message was not shown in its room'); });
    await lin.shot('search-jump-desktop.png');

    // Japanese, one character, a Latin prefix; Escape closes the results.
    for (const [q, want] of [['ラーメン', 1], ['食べ', 1], ['性', 2], ['fill', 20], ['能性', 0]]) {
      await p.fill('#search-input', q);
      await p.press('#search-input', 'Enter');
      await p.waitForFunction((n) => !/…/.test(document.getElementById('search-status').textContent)
        && document.querySelectorAll('#search-list .search-hit').length === n, want, { timeout: 5000 })
        .catch(async () => { throw new Error(`'${q}': ${await p.textContent('#search-results')}`); });
    }
    // a page of 20 fillers, then the next
    await p.fill('#search-input', 'filler');
    await p.press('#search-input', 'Enter');
    await p.waitForSelector('#search-more:not([hidden])');
    await p.click('#search-more');
    await p.waitForFunction(() => document.querySelectorAll('#search-list .search-hit').length === 40);
    await p.focus('#search-input');
    await p.keyboard.press('Escape');
    await p.waitForSelector('#search-results', { state: 'hidden' });

    // The phone: search from the drawer, in Chinese.
    const ph = person(people, 'lin', server.base, { ...PHONE360, locale: 'zh-CN' });
    await ph.login();
    await ph.waitLive();
    await ph.page.click('#open-nav');
    await ph.page.fill('#search-input', '性能');
    await ph.page.press('#search-input', 'Enter');
    await ph.page.waitForFunction(() => document.querySelectorAll('#search-list .search-hit').length === 2);
    await ph.page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left === 0); // drawer open
    await ph.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await assertFits(ph.page, 'search phone zh-CN');
    await ph.shot('search-phone-zh.png');
  });

  await scenario('14 settings changed in one browser reach another browser of the same user within 2 s', async (people) => {
    const mei = person(people, 'mei', server.base, DESKTOP);
    await mei.register();
    await mei.waitLive();
    const other = person(people, 'mei', server.base, PHONE);
    await other.login();
    await other.waitLive();
    const q = other.page;
    assert(await q.evaluate(() => document.documentElement.dataset.theme !== 'dark'), 'not dark to begin with');
    await mei.openSettings();
    const t0 = Date.now();
    await mei.page.click('#set-theme-dark');
    await q.waitForFunction(() => document.documentElement.dataset.theme === 'dark', null, { timeout: 2000 })
      .catch(() => { throw new Error('the theme did not reach the other browser within 2 s'); });
    const took = Date.now() - t0;
    await mei.page.fill('#set-display-name', 'Mei 美玲');
    await mei.page.press('#set-display-name', 'Enter');
    await q.waitForFunction(() => document.getElementById('me-name').textContent === 'Mei 美玲', null, { timeout: 2000 })
      .catch(() => { throw new Error('the display name did not reach the other browser within 2 s'); });
    await mei.closeSettings();
    // and back the other way, from the phone
    await other.openSettings();
    await q.click('#set-density-compact');
    await mei.page.waitForFunction(() => document.documentElement.dataset.density === 'compact', null, { timeout: 2000 })
      .catch(() => { throw new Error('density did not reach the desktop within 2 s'); });
    await other.closeSettings();
    await q.evaluate(() => document.activeElement && document.activeElement.blur());
    await other.shot('settings-pushed-phone.png');
    console.log(`  the theme reached the other browser in ${took} ms`);
  });

  await scenario('15 moderation: the owner removes a member from the member list; the member sees why and the room leaves their list', async (people) => {
    const olga = person(people, 'oksana', server.base, DESKTOP);
    const ben = person(people, 'ben', server.base, DESKTOP);
    await olga.register();
    await ben.register();
    await olga.waitLive();
    await ben.waitLive();
    await olga.enterRoom('moderated');
    await ben.enterRoom('moderated');
    await ben.say('buy cheap watches');
    await olga.sees('buy cheap watches', 5000);

    // The owner's member list: roles, and a menu on others only.
    await olga.page.click('#members-toggle');
    await olga.page.waitForFunction(() => /ben/.test(document.getElementById('member-list').textContent));
    const roles = await olga.page.$$eval('#member-list .member-role', (es) => es.map((e) => e.textContent));
    assert(roles.length === 1 && roles[0] === 'owner', `one owner badge, got ${JSON.stringify(roles)}`);
    assert((await olga.page.$$('#member-list .member-actions')).length === 1, 'a moderation menu on ben only');
    // A plain member gets no menu.
    await ben.page.click('#members-toggle');
    await ben.page.waitForFunction(() => /oksana/.test(document.getElementById('member-list').textContent));
    assert(!(await ben.page.$('#member-list .member-actions')), 'a member has no moderation menu');

    olga.page.once('dialog', (d) => d.accept('spam'));
    await olga.page.click('#member-list .member-actions summary');
    await olga.page.waitForSelector('#member-list .member-actions[open] button[data-action="kick"]');
    await olga.shot('moderation-menu.png');
    await olga.page.click('#member-list button[data-action="kick"]');

    // Ben: told who and why, and the room leaves his list.
    await ben.page.waitForSelector('#toast:not([hidden])', { timeout: 5000 });
    const toast = await ben.page.textContent('#toast');
    assert(/oksana removed you from #moderated/.test(toast) && /spam/.test(toast), `ben's notice: ${toast}`);
    await ben.page.waitForFunction(() => !document.querySelector('#room-list .room-btn[data-room="moderated"]'), null, { timeout: 5000 });
    await ben.page.waitForFunction(() => /removed ben from #moderated/.test(document.getElementById('message-list').textContent), null, { timeout: 5000 });
    await ben.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ben.shot('moderation-removed.png');

    // Olga: the notice with the reason, and ben gone from the members.
    await olga.page.waitForFunction(() => /removed ben from #moderated/.test(document.getElementById('message-list').textContent), null, { timeout: 5000 });
    await olga.page.waitForFunction(() => !/ben/.test(document.getElementById('member-list').textContent), null, { timeout: 5000 });
    const reason = await olga.page.textContent('#message-list .sys-moderation .sys-reason');
    assert(reason.includes('spam'), `the reason shows: ${reason}`);
    await olga.shot('moderation-owner.png');

    // Ben's messages after this are refused; a reload keeps it so.
    await ben.page.reload();
    await ben.page.waitForSelector('#app:not([hidden])');
    await ben.waitLive();
    assert(!(await ben.page.$('#room-list .room-btn[data-room="moderated"]')), 'after a reload the room is not in ben\'s list');

    // A mute from the menu: ben, back in the room, is told, and his
    // message fails with the reason instead of waiting to go out later.
    await ben.enterRoom('moderated');
    await olga.page.waitForFunction(() => /ben/.test(document.getElementById('member-list').textContent), null, { timeout: 5000 });
    olga.page.once('dialog', (d) => d.accept('cool down'));
    await olga.page.click('#member-list .member-actions summary');
    await olga.page.click('#member-list button[data-action="mute"]');
    await ben.page.waitForFunction(() => /oksana muted you in #moderated for 10 min/.test(document.getElementById('toast').textContent), null, { timeout: 5000 });
    await ben.say('let me explain');
    await ben.page.waitForSelector('#message-list .msg.pending.failed', { timeout: 10000 });
    const failed = await ben.page.textContent('#message-list .msg.pending.failed');
    assert(/muted in this room/.test(failed), `the failed message says why: ${failed}`);
    await ben.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ben.shot('moderation-muted.png');
  });

  await scenario('16 an admin disables an account: its open page is logged out at once and told why; logging in is refused', async (people) => {
    const dora = person(people, 'dora', server.base, DESKTOP);
    await dora.register();
    await dora.waitLive();
    // The server's admin is its first account: scenario 1's alice, or, when
    // this scenario runs alone, the first person of scenario 13.
    let admin = null;
    for (const username of ['alice', 'olga']) {
      const r = await fetch(server.base + '/api/login', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD }),
      });
      const j = r.ok ? await r.json() : null;
      if (j && j.user && j.user.admin) { admin = j.token; break; }
    }
    assert(admin, 'no admin account found (run scenario 1 or 13 first)');
    const res = await fetch(server.base + '/api/admin/users/dora/disable', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + admin },
      body: JSON.stringify({ reason: 'spam account' }),
    });
    assert(res.status === 200, `disable answered ${res.status}`);
    await dora.page.waitForSelector('#auth:not([hidden])', { timeout: 3000 });
    const notice = await dora.page.textContent('#auth');
    assert(/disabled this account/.test(notice) && /spam account/.test(notice), `the login page says why: ${notice}`);
    await dora.shot('disabled-logged-out.png');
    await dora.page.click('#tab-login');
    await dora.page.fill('#auth-username', 'dora');
    await dora.page.fill('#auth-password', PASSWORD);
    await dora.page.click('#auth-submit');
    await dora.page.waitForFunction(() => /disabled by an admin/.test(document.getElementById('auth').textContent), null, { timeout: 5000 });
    await dora.shot('disabled-login.png');
  });

  await scenario('17 Markdown: bold, a link and a code block rendered; formatting help by keyboard; a 360 px phone fits', async (people) => {
    const ann = person(people, 'md-ann', server.base, DESKTOP);
    const ben = person(people, 'md-ben', server.base, PHONE);
    await ann.register();
    await ben.register();
    await ann.waitLive();
    await ben.waitLive();
    await ann.enterRoom('markdown');
    await ben.enterRoom('markdown');

    const src = '**bold words** and a [link](https://example.org/docs) :+1:\n\n```\nint main(void) { return 0; } /* ' + 'x'.repeat(160) + ' */\n```';
    await ann.say(src);
    const long = 'averyveryverylongwordwithoutanyspaces'.repeat(6) + ' and `inline <code>`';
    await ann.say(long);
    for (const p of [ann, ben]) {
      await p.page.waitForSelector('#message-list .msg:not(.pending) .msg-text.md pre code', { timeout: 10000 });
      await p.page.waitForFunction(() => [...document.querySelectorAll('#message-list .msg-text.md code')].some((c) => c.textContent === 'inline <code>'), null, { timeout: 10000 });
      const got = await p.page.evaluate(() => {
        const md = [...document.querySelectorAll('#message-list .msg:not(.pending) .msg-text.md')].find((e) => e.querySelector('pre'));
        const a = md.querySelector('a');
        const pre = md.querySelector('pre');
        const list = document.getElementById('message-list').getBoundingClientRect();
        return {
          strong: md.querySelector('strong') && md.querySelector('strong').textContent,
          href: a && a.getAttribute('href'), target: a && a.target, rel: a && a.rel, link: a && a.textContent,
          emoji: md.querySelector('span.emoji') && md.querySelector('span.emoji').textContent,
          mono: getComputedStyle(pre.querySelector('code')).fontFamily,
          scrolls: pre.scrollWidth > pre.clientWidth && getComputedStyle(pre).overflowX === 'auto',
          preRight: pre.getBoundingClientRect().right, listRight: list.right,
          asterisks: md.textContent.includes('**'),
        };
      });
      assert(got.strong === 'bold words', `${p.name}: bold is not rendered (${got.strong})`);
      assert(got.href === 'https://example.org/docs' && got.link === 'link', `${p.name}: the link is not rendered (${got.href})`);
      assert(got.target === '_blank' && /noopener/.test(got.rel) && /noreferrer/.test(got.rel), `${p.name}: the link does not open safely in a new tab (${got.target} ${got.rel})`);
      assert(got.emoji === '👍', `${p.name}: :+1: is not an emoji (${got.emoji})`);
      assert(/mono|Menlo|Consolas|Courier/i.test(got.mono), `${p.name}: code is not monospace (${got.mono})`);
      assert(got.scrolls, `${p.name}: the long code line does not scroll inside its block`);
      assert(got.preRight <= got.listRight + 0.5, `${p.name}: the code block reaches past the message column`);
      assert(!got.asterisks, `${p.name}: the asterisks show`);
      // Nothing sticks out: the page does not scroll sideways and every
      // message box (text, code block, table) lies inside the viewport;
      // what is wider scrolls inside its own box.
      const out = await p.page.evaluate(() => {
        const w = document.documentElement.clientWidth;
        const bad = [];
        if (document.documentElement.scrollWidth > w) bad.push(`page scrolls sideways (${document.documentElement.scrollWidth} > ${w})`);
        for (const e of document.querySelectorAll('#message-list .msg-text, #message-list .msg-text > *')) {
          const r = e.getBoundingClientRect();
          if (r.left < -0.5 || r.right > w + 0.5) bad.push(`${e.localName}.${e.className} [${Math.round(r.left)}, ${Math.round(r.right)}]`);
        }
        return bad;
      });
      assert(!out.length, `${p.name}: formatted messages reach past the edge: ${out.join('; ')}`);
    }
    await ann.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ann.shot('markdown-desktop.png');
    await ben.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ben.shot('markdown-phone.png');

    // A reload renders history the same way (the stored envelope has html).
    await ben.page.reload();
    await ben.waitLive();
    await ben.page.waitForSelector('#message-list .msg-text.md pre code', { timeout: 10000 });

    // The formatting help: opened and closed from the keyboard, translated.
    const p = ann.page;
    await p.focus('#composer-input');
    await p.keyboard.press('Tab');
    let focused = await p.evaluate(() => document.activeElement && document.activeElement.id);
    for (let i = 0; i < 4 && focused !== 'fmt-help-open'; i++) {
      await p.keyboard.press('Tab');
      focused = await p.evaluate(() => document.activeElement && document.activeElement.id);
    }
    assert(focused === 'fmt-help-open', `the formatting help button is not reachable by Tab (focus on ${focused})`);
    await p.keyboard.press('Enter');
    await p.waitForSelector('#fmt-help:popover-open', { timeout: 5000 });
    const help = await p.evaluate(() => document.getElementById('fmt-help').textContent);
    assert(/bold/.test(help) && /\*\*…\*\*/.test(help), 'the formatting help lists bold');
    await assertAccessible(p, 'formatting help');
    await ann.shot('markdown-help.png');
    await p.keyboard.press('Escape');
    await p.waitForSelector('#fmt-help:not(:popover-open)', { state: 'attached', timeout: 5000 });
  });

  await scenario('18 an XSS corpus sent as messages is rendered inert, with no CSP violation', async (people) => {
    const eve = person(people, 'md-eve', server.base, DESKTOP);
    const vic = person(people, 'md-vic', server.base, DESKTOP);
    await eve.register();
    await vic.register();
    await eve.waitLive();
    await vic.waitLive();
    await eve.enterRoom('xss');
    await vic.enterRoom('xss');
    const corpus = [
      '<script>window.__pwned=1</script>',
      '<img src=x onerror="window.__pwned=2">',
      '[click](javascript:window.__pwned=3)',
      '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
      '![pic](https://example.org/x.png)',
      '<a href="javascript:window.__pwned=4">a</a>',
      '[x](https://example.org" onmouseover="window.__pwned=5)',
      '<svg onload="window.__pwned=6"></svg>',
      '<iframe src="javascript:window.__pwned=7"></iframe>',
      '**<style>body{display:none}</style>**',
      '`<script>window.__pwned=8</script>`',
      '<details open ontoggle="window.__pwned=9">',
      '[vb](vbscript:msgbox) [file](file:///etc/passwd)',
      '&lt;script&gt; &#x3C;b&#x3E;',
    ];
    for (const m of corpus) await eve.say(m);
    await vic.page.waitForFunction((n) => document.querySelectorAll('#message-list .msg:not(.pending) .msg-text').length >= n, corpus.length, { timeout: 15000 });
    await vic.page.waitForTimeout(500);
    // hover every message so that a hover handler would have run
    for (const li of await vic.page.$$('#message-list .msg-text a')) await li.hover().catch(() => {});
    const bad = await vic.page.evaluate(() => {
      const out = [];
      if (window.__pwned) out.push(`script ran (${window.__pwned})`);
      const list = document.getElementById('message-list');
      for (const e of list.querySelectorAll('script, img, iframe, svg, style, object, embed, details, input, form')) out.push(`<${e.localName}> in a message`);
      for (const e of list.querySelectorAll('.msg-text *')) {
        for (const a of e.attributes) {
          if (/^on/i.test(a.name) || a.name === 'style' || a.name === 'src') out.push(`${e.localName}[${a.name}]`);
          if (a.name === 'href' && !/^(https?:|mailto:)/i.test(a.value)) out.push(`href ${a.value}`);
        }
      }
      if (getComputedStyle(document.body).display === 'none') out.push('a style reached the page');
      return out;
    });
    assert(!bad.length, `XSS corpus: ${bad.join('; ')}`);
    // what was typed as text is shown as text
    const texts = await vic.texts();
    assert(texts.includes('<script>window.__pwned=1</script>'), 'raw HTML is not shown as text');
    assert(texts.includes('<script>window.__pwned=8</script>'), 'code is not shown as text');
    assert(texts.includes('<script> <b>'), `entities are not shown as characters: ${texts.slice(-1)}`);
    const img = await vic.page.evaluate(() => [...document.querySelectorAll('#message-list .msg-text a')].some((a) => a.getAttribute('href') === 'https://example.org/x.png'));
    assert(img, 'an image is not turned into a link');
    await vic.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await vic.shot('markdown-xss.png');

    // The client's allowlist holds even if the server's html were hostile.
    // Chromium's DOMParser document inherits the page's CSP and reports each
    // on* or style attribute it parses as a blocked inline handler or style:
    // that is the policy holding, expected here only, so those reports made
    // during this check are set aside; any other problem still counts.
    const before = vic.problems.length;
    const leaks = await vic.page.evaluate(async () => {
      const src = document.querySelector('script[type=module]').src;
      const { renderMarkup } = await import(new URL('markup.js', src).href);
      const hostile = [
        '<img src=x onerror="window.__pwned=10">',
        '<script>window.__pwned=11</script><p>ok</p>',
        '<a href="javascript:window.__pwned=12">j</a>',
        '<a href=" data:text/html,x">d</a>',
        '<p onclick="window.__pwned=13" style="color:red" class="evil">p</p>',
        '<span class="mention" data-user="x&quot; onmouseover=&quot;1">m</span>',
        '<svg><a href="https://example.org">s</a></svg>',
        '<iframe srcdoc="<script>parent.__pwned=14</script>"></iframe>',
        '<form action="https://example.org"><input name=a></form>',
        '<code class="language-js x">c</code>',
      ];
      const out = [];
      for (const html of hostile) {
        const div = document.createElement('div');
        div.append(renderMarkup(html));
        document.body.append(div);
        for (const e of div.querySelectorAll('*')) {
          if (!['p', 'a', 'span', 'code'].includes(e.localName)) out.push(`<${e.localName}> from ${html}`);
          for (const a of e.attributes) {
            const ok = (a.name === 'href' && /^https?:/.test(a.value)) || ['target', 'rel'].includes(a.name) ||
              (a.name === 'class' && a.value === 'mention');
            if (!ok) out.push(`${e.localName}[${a.name}=${a.value}] from ${html}`);
          }
        }
        div.remove();
      }
      await new Promise((r) => setTimeout(r, 300));
      if (window.__pwned) out.push(`script ran (${window.__pwned})`);
      return out;
    });
    assert(!leaks.length, `the client's allowlist lets through: ${leaks.join('; ')}`);
    const during = vic.problems.splice(before);
    vic.problems.push(...during.filter((m) => !/Executing inline event handler|Applying inline style/.test(m)));
  });

  await scenario('19 edit and delete: seen live by another user, Up edits the last message, a reload shows the current state', async (people) => {
    const ed = person(people, 'ed-ann', server.base, DESKTOP);
    const vi = person(people, 'ed-ben', server.base, PHONE);
    await ed.register();
    await vi.register();
    await ed.waitLive();
    await vi.waitLive();
    await ed.enterRoom('edits');
    await vi.enterRoom('edits');
    await ed.say('first draft');
    await ed.say('this one goes away');
    await vi.sees('this one goes away', 5000);

    // Up in the empty composer edits the last message; Enter saves.
    await ed.page.focus('#composer-input');
    await ed.page.keyboard.press('ArrowUp');
    await ed.page.waitForSelector('#composer-editing:not([hidden])');
    assert(await ed.page.inputValue('#composer-input') === 'this one goes away', 'Up did not load the last message');
    await ed.page.keyboard.press('Escape');
    await ed.page.waitForSelector('#composer-editing[hidden]', { state: 'attached' });
    assert(await ed.page.inputValue('#composer-input') === '', 'Escape did not leave the edit');

    // Edit the first message from its menu (hover).
    const first = ed.page.locator('#message-list .msg:not(.pending)', { hasText: 'first draft' }).first();
    await first.hover();
    await first.locator('.msg-edit').click();
    await ed.page.fill('#composer-input', 'final **text**');
    await ed.page.press('#composer-input', 'Enter');
    for (const p of [ed, vi]) {
      await p.page.waitForFunction(() => [...document.querySelectorAll('#message-list .msg')].some((li) =>
        li.querySelector('.msg-text strong') && li.querySelector('.msg-text').textContent === 'final text' && li.querySelector('.msg-edited')), null, { timeout: 10000 });
    }
    // Delete the second message from its menu.
    ed.page.once('dialog', (d) => d.accept());
    const second = ed.page.locator('#message-list .msg:not(.pending)', { hasText: 'this one goes away' }).first();
    await second.hover();
    await second.locator('.msg-delete').click();
    for (const p of [ed, vi]) {
      await p.page.waitForFunction(() => document.querySelectorAll('#message-list .msg.deleted .tombstone').length === 1 &&
        ![...document.querySelectorAll('#message-list .msg-text')].some((e) => e.textContent === 'this one goes away'), null, { timeout: 10000 });
    }
    // Someone else's message has no menu.
    await vi.say('bens line');
    await ed.sees('bens line', 5000);
    const other = ed.page.locator('#message-list .msg', { hasText: 'bens line' }).first();
    assert(await other.locator('.msg-menu').count() === 0, "another person's message offers edit and delete");
    await ed.page.locator('#message-list .msg', { hasText: 'final text' }).first().hover();
    await ed.shot('edit-delete-desktop.png');
    await vi.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await vi.shot('edit-delete-phone.png');

    // A reload shows the current state, once, without replaying the edits.
    await vi.page.reload();
    await vi.waitLive();
    await vi.sees('final text', 10000);
    const after = await vi.texts();
    assert(after.filter((t) => t === 'final text').length === 1, `after a reload: ${JSON.stringify(after)}`);
    assert(!after.includes('first draft') && !after.includes('this one goes away'), `old text after a reload: ${JSON.stringify(after)}`);
    assert(await vi.page.locator('#message-list .msg.deleted').count() === 1, 'the tombstone is gone after a reload');
    noDuplicateIds(await vi.ids(), vi.name);
  });

  await scenario('20 people: a direct message round trip by keyboard, and a private room joined by invitation', async (people) => {
    const olga = person(people, 'olga', server.base, DESKTOP);
    const pete = person(people, 'pete', server.base, PHONE);
    const quinn = person(people, 'quinn', server.base, DESKTOP);
    await pete.register();
    await quinn.register();
    await olga.register();
    await olga.waitLive('ws');
    await pete.waitLive('ws');
    await quinn.waitLive('ws');
    const p = olga.page;
    // Who is around: pete and quinn said hello in the lobby.
    await pete.say('hello from pete');
    await quinn.say('hello from quinn');
    await olga.sees('hello from quinn', 5000);

    // A new message, by keyboard, with the username suggested.
    await p.focus('#dm-new');
    await p.keyboard.press('Enter');
    await p.waitForSelector('#dm-form:not([hidden])');
    assert(await p.evaluate(() => document.activeElement.id === 'dm-users-input'), 'the DM field takes the focus');
    await p.keyboard.type('pe');
    await p.waitForFunction(() => [...document.querySelectorAll('#user-suggestions option')].some((o) => o.value === 'pete'));
    await p.keyboard.type('te');
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => document.getElementById('room-title').textContent === 'pete');
    const dm = await p.evaluate(() => document.querySelector('#dm-list .room-btn[aria-current="page"]').dataset.room);
    assert(/^dm-\d+$/.test(dm), `the conversation is listed under direct messages (${dm})`);
    await olga.say('Psst, pete: lunch at noon?');

    // pete, on a phone, finds it in his list live and answers.
    await pete.page.click('#open-nav');
    await pete.page.waitForSelector(`#dm-list .room-btn[data-room="${dm}"]`, { timeout: 5000 });
    await pete.page.waitForFunction((d) => /olga/.test(document.querySelector(`#dm-list .room-btn[data-room="${d}"]`).textContent), dm, { timeout: 3000 });
    await pete.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await pete.shot('dm-list-phone.png');
    await pete.page.click(`#dm-list .room-btn[data-room="${dm}"]`);
    await pete.page.waitForFunction(() => document.getElementById('room-title').textContent === 'olga');
    await pete.sees('Psst, pete: lunch at noon?', 5000);
    await pete.say('Noon works. See you there.');
    await olga.sees('Noon works. See you there.', 5000);
    await assertFits(pete.page, 'dm phone');

    // The same people again: the same conversation.
    await p.click('#dm-new');
    await p.fill('#dm-users-input', 'PETE');
    await p.click('#dm-form-submit');
    await p.waitForFunction((d) => document.querySelector('#dm-list .room-btn[aria-current="page"]')?.dataset.room === d, dm);
    assert((await p.$$('#dm-list .room-btn')).length === 1, 'one conversation with pete, not two');

    // quinn, outside, sees nothing of it.
    const qrooms = await quinn.page.evaluate(async () => (await (await fetch('/api/rooms')).json()).rooms.map((r) => r.name));
    assert(!qrooms.includes(dm), 'the conversation is not in an outsider\'s room list');
    assert(!(await quinn.texts()).some((x) => /lunch|Noon/.test(x)), 'an outsider never sees the conversation');

    // A private room: made with the checkbox, joined by quinn on invitation.
    await p.check('#room-private-input');
    await olga.enterRoom('vault');
    assert(await p.$('.room-btn[data-room="vault"] .lock-mark'), 'the private room is marked');
    const listed = await quinn.page.evaluate(async () => (await (await fetch('/api/rooms')).json()).rooms.some((r) => r.name === 'vault'));
    assert(!listed, 'the private room is not listed to others');
    await p.click('#members-toggle');
    await p.fill('#invite-input', 'quinn');
    await p.press('#invite-input', 'Enter');
    await p.waitForFunction(() => /quinn/.test(document.getElementById('invite-status').textContent));
    await quinn.page.waitForSelector('#invites-box:not([hidden]) #invite-list button', { timeout: 5000 });
    await quinn.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await quinn.shot('invite-desktop.png');
    await quinn.page.click('#invite-list button');
    await quinn.page.waitForFunction(() => document.getElementById('room-title').textContent === '#vault');
    await quinn.page.waitForSelector('#invites-box[hidden]', { state: 'attached' });
    await olga.say('Welcome to the vault, quinn.');
    await quinn.sees('Welcome to the vault, quinn.', 5000);
    await p.click('#close-members');
    await olga.openDm(dm);
    await p.evaluate(() => document.activeElement && document.activeElement.blur());
    await olga.shot('dm-desktop.png');
    await assertAccessible(p, 'dm desktop');
  });

  await scenario('21 mentions: the server marks @name and @room, the one mentioned sees them highlighted', async (people) => {
    const rita = person(people, 'rita', server.base, DESKTOP);
    const sam = person(people, 'sam', server.base, DESKTOP);
    await rita.register();
    await sam.register();
    await rita.waitLive('ws');
    await sam.waitLive();
    await rita.say('Hey @SAM, the build is green (not `@sam` in code)');
    // Rendered once on the server: the mention shows the canonical name, the
    // code span its text without the backticks.
    await sam.sees('Hey @sam, the build is green (not @sam in code)', 5000);
    const seen = await sam.page.evaluate(() => {
      const li = [...document.querySelectorAll('#message-list .msg')].find((e) => /build is green/.test(e.textContent));
      return { row: li.classList.contains('mentions-me'), marks: [...li.querySelectorAll('.mention-me')].map((e) => e.textContent) };
    });
    assert(seen.row, 'the message that mentions sam is highlighted for him');
    assert(seen.marks.length === 1 && seen.marks[0] === '@sam', `one mention marked, not the one in code (${JSON.stringify(seen.marks)})`);
    const own = await rita.page.evaluate(() => {
      const li = [...document.querySelectorAll('#message-list .msg')].find((e) => /build is green/.test(e.textContent));
      return { row: li.classList.contains('mentions-me'), marks: li.querySelectorAll('.mention').length };
    });
    assert(!own.row && own.marks === 1, 'the author sees the mention marked, not her own row highlighted');
    await sam.say('@room lunch?');
    await rita.sees('@room lunch?', 5000);
    assert(await rita.page.evaluate(() => [...document.querySelectorAll('#message-list .msg.mentions-me')].some((e) => /lunch/.test(e.textContent))), '@room mentions rita');
    await sam.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await sam.shot('mention-desktop.png');
    await assertAccessible(sam.page, 'mentions');
    // @ autocomplete in the composer, by keyboard.
    await sam.page.click('#members-toggle');
    await sam.page.waitForFunction(() => /rita/.test(document.getElementById('member-list').textContent));
    await sam.page.click('#close-members');
    await sam.page.focus('#composer-input');
    await sam.page.keyboard.type('thanks @RI');
    await sam.page.waitForSelector('#mention-list:not([hidden]) [role="option"][aria-selected="true"]');
    assert((await sam.page.textContent('#mention-list [aria-selected="true"]')).startsWith('@rita'), 'rita is offered first');
    assert(await sam.page.getAttribute('#composer-input', 'aria-activedescendant') === 'mention-opt-0', 'the composer points at the chosen option');
    await sam.shot('mention-autocomplete-desktop.png');
    await sam.page.keyboard.press('Enter'); // takes the name, sends nothing
    assert(await sam.page.inputValue('#composer-input') === 'thanks @rita ', 'Enter completes the name');
    await sam.page.keyboard.type('see you');
    await sam.page.keyboard.press('Enter');
    await rita.sees('thanks @rita see you', 5000);
    assert(await rita.page.evaluate(() => [...document.querySelectorAll('#message-list .msg.mentions-me')].some((e) => /see you/.test(e.textContent))), 'the completed mention mentions rita');
  });

  await scenario('22 read on one device: the unread badge clears on the other within 2 s; counts come from the server', async (people) => {
    const tara = person(people, 'tara', server.base, DESKTOP);
    const uma = person(people, 'uma', server.base, DESKTOP);
    await tara.register();
    await uma.register();
    await tara.enterRoom('tea');
    await uma.enterRoom('tea');
    await tara.openRoom('lobby');
    const phone = person(people, 'tara', server.base, PHONE);
    await phone.login();
    await tara.waitLive();
    await phone.waitLive();
    await uma.say('anyone for tea, @tara?');
    const badge = () => (want) => {
      const b = document.querySelector('.room-btn[data-room="tea"] .badge');
      return want === 0 ? !b : b && b.textContent === String(want);
    };
    await tara.page.waitForFunction(badge(), 1, { timeout: 5000 });
    await phone.page.waitForFunction(badge(), 1, { timeout: 5000 });
    assert(/^\(1\) /.test(await tara.page.title()), 'the tab title carries the unread total');
    await tara.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await tara.shot('unread-before-desktop.png');
    // A third device that was away gets the count from the server.
    const later = person(people, 'tara', server.base, DESKTOP);
    await later.login();
    await later.page.waitForFunction(badge(), 1, { timeout: 5000 });
    await later.close();
    // Reading on the phone clears the desktop's badge.
    await phone.openRoom('tea');
    await phone.sees('anyone for tea, @tara?');
    const t0 = Date.now();
    await tara.page.waitForFunction(badge(), 0, { timeout: 2000 });
    const took = Date.now() - t0;
    assert(!/^\(\d+\) /.test(await tara.page.title()), 'the tab title has no unread total any more');
    await tara.shot('unread-after-desktop.png');
    const rooms = await tara.page.evaluate(async () => (await (await fetch('/api/rooms')).json()).rooms);
    const tea = rooms.find((r) => r.name === 'tea');
    assert(tea.unread === 0 && tea.mentions === 0, `the server counts nothing unread (${JSON.stringify(tea)})`);
    console.log(`  badge cleared on the other device in ${took} ms`);
  });

  await scenario('23 desktop notifications for a mention and a DM while the tab is hidden, never for your own', async (people) => {
    const vera = person(people, 'vera', server.base, DESKTOP);
    const walt = person(people, 'walt', server.base, DESKTOP);
    await vera.open();
    await vera.ctx.grantPermissions(['notifications'], { origin: server.base });
    // Record every notification the page makes (the real one is made too).
    await vera.ctx.addInitScript(() => {
      const N = window.Notification;
      if (!N) return;
      window.__notes = [];
      window.Notification = class extends N {
        constructor(title, opts) {
          super(title, opts);
          window.__notes.push({ title, body: (opts && opts.body) || '' });
        }
      };
    });
    await vera.page.close();
    await vera.register();
    await walt.register();
    await vera.waitLive();
    await walt.waitLive();
    assert(await vera.page.evaluate(() => Notification.permission) === 'granted', 'the permission is granted');
    await vera.page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await walt.say('@vera the report is ready');
    await vera.page.waitForFunction(() => window.__notes.some((n) => /the report is ready/.test(n.body)), null, { timeout: 5000 });
    // A direct message.
    await walt.page.click('#dm-new');
    await walt.page.fill('#dm-users-input', 'vera');
    await walt.page.press('#dm-users-input', 'Enter');
    await walt.page.waitForFunction(() => document.getElementById('room-title').textContent === 'vera');
    await walt.say('just between us');
    await vera.page.waitForFunction(() => window.__notes.some((n) => n.body === 'just between us' && n.title === 'walt'), null, { timeout: 5000 });
    // Her own message, from another device, is never notified.
    await vera.page.evaluate(async () => {
      const r = await fetch('/api/rooms/lobby/messages', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'note to @vera from myself' }) });
      if (r.status !== 201) throw new Error('send failed ' + r.status);
    });
    await walt.openRoom('lobby');
    await walt.sees('note to @vera from myself', 5000);
    await vera.page.waitForTimeout(500);
    const notes = await vera.page.evaluate(() => window.__notes);
    assert(!notes.some((n) => /from myself/.test(n.body)), 'no notification for her own message');
    assert(notes.length === 2, `two notifications, not ${notes.length}: ${JSON.stringify(notes)}`);
  });

  await scenario('24 a burst past the send limit: the client waits out retry_after, every message arrives once, none failed', async (people) => {
    // natterd's default limits, on a server of this scenario's own
    const limited = await new Natterd('natterd-limits').start();
    const quinn = person(people, 'quincy', limited.base, DESKTOP);
    const ruth = person(people, 'ruth', limited.base, DESKTOP);
    await quinn.register();
    await ruth.register();
    await quinn.waitLive('ws');
    await ruth.waitLive('ws');
    await quinn.enterRoom('burst');
    await ruth.enterRoom('burst');
    const before = (await metric(limited.base, 'natter_rate_limited_total', { what: 'send' })) || 0;
    // 40 messages in one go (typed and Enter, in the page, without a
    // round trip each): the default limit is 5 a second after a burst of
    // 20, so the server refuses some.
    const texts = [];
    for (let i = 1; i <= 40; i++) texts.push(`burst message ${i}`);
    await quinn.page.evaluate((list) => {
      const ta = document.getElementById('composer-input');
      for (const t of list) {
        ta.value = t;
        ta.dispatchEvent(new Event('input', { bubbles: true }));
        ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
      }
    }, texts);
    await ruth.sees('burst message 40', 30000);
    await quinn.sees('burst message 40', 30000);
    for (const t of texts) await ruth.sees(t, 30000);
    const after = await metric(limited.base, 'natter_rate_limited_total', { what: 'send' });
    assert(after > before, `the server refused none of the burst (${before} -> ${after}): the test proves nothing`);
    await quinn.page.waitForFunction(() => !document.querySelector('#message-list .msg.pending'), null, { timeout: 30000 });
    assert(!(await quinn.page.$('#message-list .msg.failed')), 'a rate-limited message was shown as failed');
    for (const p of [quinn, ruth]) {
      const t = await p.texts();
      exactlyOnce(t, texts, p.name);
      noDuplicateIds(await p.ids(), p.name);
      const order = t.filter((x) => x.startsWith('burst message '));
      assert(order.length === 40, `${p.name}: ${order.length} burst messages shown`);
    }
    const stored = await ruth.history('burst');
    exactlyOnce(stored, texts, 'history');
    await quinn.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await quinn.shot('burst-rate-limited.png');
    console.log(`  rate_limited sends during the burst: ${after - before}`);
    await limited.stop();
  });

  await browser.close();
  await server.stop();
}

let crashed = null;
try {
  await main();
} catch (e) {
  crashed = e;
  console.log('not ok - setup: ' + (e && e.stack || e));
  results.push(false);
  if (server) console.log('--- natterd log (tail) ---\n' + server.tail());
}
killAll();
const passed = results.filter(Boolean).length;
const failed = results.length - passed;
if (failed && server && !crashed) console.log('--- natterd log (tail) ---\n' + server.tail(40));
console.log(`screenshots: ${SHOTS}`);
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed || !results.length ? 1 : 0);
