// app.js: natter's browser client. The user interface (log in, rooms,
// history, composer, members, typing) and the "never lose a message"
// rules: every message gets a client_id and waits in a persisted outbox
// until the server acknowledges it; events are kept by id so none is shown
// twice; the cursor (last event id) is persisted and resumed from.
// The live stream and its transport ladder live in connection.js.
//
// User text only ever reaches the page through textContent. Every other
// word comes from the message catalogs (i18n.js); the person's settings
// and their dialog live in settings.js; telling of new messages (live
// region, desktop notifications) in notify.js.

import { api, ApiError, friendly, enc } from './api.js';
import { UserStore, onStorageChange } from './store.js';
import { Connection } from './connection.js';
import { notifyMentions, notifyDesktop, notifyAnnounce } from './notify.js';
import { t, i18nOnChange, i18nReady, timeShort, timeFull, dayLabel, inSeconds } from './i18n.js';
import {
  settingsBoot, settingsBind, settingsStart, settingsStop, settingsReceive, settingsFlush,
  settingsGet, settingsOpen, roomPrefs,
} from './settings.js';

const PAGE = 50;
const TEXT_MAX = 4000;
const TYPING_SHOW_MS = 6000;
const TYPING_SEND_EVERY = 3000;
const ACK_TIMEOUT = 15000;
const USERNAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_RE = /^[A-Za-z0-9_.-]{1,32}$/;
// Errors for which retrying the same message cannot help.
const PERMANENT = new Set(['not_a_member', 'no_such_room', 'invalid', 'invalid_field', 'text_too_long']);

const $ = (id) => document.getElementById(id);

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// --- state -------------------------------------------------------------------

class Room {
  constructor(name) {
    this.name = name;
    this.topic = '';
    this.members = 0;
    this.joined = false;
    this.known = false;      // listed by GET /api/rooms
    this.events = new Map(); // id -> event
    this.loaded = false;     // the newest page was fetched
    this.loading = false;
    this.loadingOlder = false;
    this.hasMore = false;
    this.error = null;
    this.unread = 0;
    this.mentions = 0;     // of the unread, those that mention us
    this.memberList = null;
    this.nodes = new Map();  // render cache: key -> element
  }
  sorted() {
    return [...this.events.values()].sort((a, b) => a.id - b.id);
  }
  oldestId() {
    let min = Infinity;
    for (const id of this.events.keys()) if (id < min) min = id;
    return min === Infinity ? null : min;
  }
}

const S = {
  me: null,
  store: null,
  conn: null,
  rooms: new Map(),
  current: null,
  cursor: null,
  outbox: [],
  inflight: new Map(), // client_id -> ms when sent
  acked: new Set(),    // client_ids acknowledged while this page lives
  names: new Map(),    // username -> display name
  typing: new Map(),   // room -> Map(username -> expiry ms)
  connState: { phase: 'connecting' },
  posting: false,
  flushRetry: 0,
  lastTypingSent: 0,
  helloSeen: false,
};

function room(name) {
  let r = S.rooms.get(name);
  if (!r) {
    r = new Room(name);
    S.rooms.set(name, r);
  }
  return r;
}

function displayName(username) {
  return S.names.get(username) || username;
}

function newClientId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return 'c-' + [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

function chars(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// --- rendering helpers ------------------------------------------------------

function hue(name) {
  let x = 0;
  for (const c of name) x = (x * 31 + c.codePointAt(0)) >>> 0;
  return x % 12;
}

function avatar(name, cls = 'avatar') {
  const a = h('div', `${cls} hue-${hue(name)}`, (name[0] || '?').toUpperCase());
  a.setAttribute('aria-hidden', 'true');
  return a;
}

function timeEl(ts) {
  const d = new Date(ts);
  const el = h('time', 'msg-time', isNaN(d) ? '' : timeShort(d));
  if (!isNaN(d)) {
    el.dateTime = d.toISOString();
    el.title = timeFull(d);
  }
  return el;
}

// A catalog text whose {placeholders} are nodes: t() leaves a placeholder
// it has no value for as it is, and each is then replaced by its node.
function tNodes(key, texts, nodes) {
  const frag = document.createDocumentFragment();
  const parts = t(key, texts).split(/(\{\w+\})/);
  for (const part of parts) {
    const m = /^\{(\w+)\}$/.exec(part);
    if (m && Object.hasOwn(nodes, m[1])) frag.append(nodes[m[1]]);
    else if (part) frag.append(part);
  }
  return frag;
}

// Text with http(s) links made clickable; everything through textContent.
const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]}]/g;
function richText(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    const a = h('a', null, m[0]);
    a.href = m[0];
    a.rel = 'noopener noreferrer nofollow';
    a.target = '_blank';
    frag.append(a);
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}

// --- boot and authentication -------------------------------------------------

function show(which) {
  $('boot').hidden = which !== 'boot';
  $('auth').hidden = which !== 'auth';
  $('app').hidden = which !== 'app';
}

async function boot() {
  show('boot');
  $('boot-text').textContent = t('boot.loading');
  $('boot-retry').hidden = true;
  try {
    // The words first (and the look this browser last had).
    if (!i18nReady()) await settingsBoot();
    const me = await api('GET', '/api/me');
    await start(me.user || me);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showAuth();
      return;
    }
    // Without a catalog there are no words to say it with: the logo
    // breathes on and the page tries again.
    if (!i18nReady()) $('boot-text').textContent = '';
    else if (e instanceof ApiError && e.offline) $('boot-text').textContent = t('boot.offline');
    else $('boot-text').textContent = t('boot.failed', { error: friendly(e) });
    $('boot-retry').hidden = false;
    clearTimeout(S.bootTimer);
    S.bootTimer = setTimeout(boot, 5000);
  }
}

let authMode = 'login';

function setAuthMode(mode) {
  authMode = mode;
  const reg = mode === 'register';
  $('tab-login').setAttribute('aria-selected', String(!reg));
  $('tab-register').setAttribute('aria-selected', String(reg));
  $('auth-submit').textContent = reg ? t('auth.register') : t('auth.login');
  $('auth-form').setAttribute('aria-labelledby', reg ? 'tab-register' : 'tab-login');
  $('auth-password').autocomplete = reg ? 'new-password' : 'current-password';
  $('auth-hint').hidden = !reg;
  $('auth-error').textContent = '';
}

function showAuth(message) {
  show('auth');
  $('auth-error').textContent = message || '';
  $('auth-submit').disabled = false;
  setTimeout(() => $('auth-username').focus(), 0);
}

async function submitAuth(ev) {
  ev.preventDefault();
  const username = $('auth-username').value.trim();
  const password = $('auth-password').value;
  const err = $('auth-error');
  const reg = authMode === 'register';
  if (!username || !password) {
    err.textContent = t('auth.need_both');
    return;
  }
  if (reg && !USERNAME_RE.test(username)) {
    err.textContent = t('error.invalid_username');
    return;
  }
  if (reg && chars(password) < 8) {
    err.textContent = t('error.invalid_password');
    return;
  }
  const btn = $('auth-submit');
  btn.disabled = true;
  btn.textContent = reg ? t('auth.registering') : t('auth.logging_in');
  err.textContent = '';
  try {
    const res = await api('POST', reg ? '/api/register' : '/api/login', { body: { username, password } });
    $('auth-password').value = '';
    await start(res.user);
  } catch (e) {
    err.textContent = friendly(e);
    if (e instanceof ApiError && e.code === 'too_many_attempts') {
      const until = Date.now() + (e.retryAfter || 60) * 1000;
      const tick = () => {
        const left = Math.ceil((until - Date.now()) / 1000);
        if (left > 0) {
          err.textContent = t('error.too_many_attempts', { n: left });
          setTimeout(tick, 1000);
        } else {
          err.textContent = '';
          btn.disabled = false;
        }
      };
      tick();
      btn.textContent = reg ? t('auth.register') : t('auth.login');
      return;
    }
    btn.disabled = false;
  }
  btn.textContent = reg ? t('auth.register') : t('auth.login');
}

async function start(user) {
  S.me = user;
  S.names.set(user.username, user.display_name || user.username);
  S.store = new UserStore(user.username);
  S.cursor = S.store.cursor;
  S.outbox = S.store.outbox;
  S.inflight.clear();
  S.rooms.clear();
  S.helloSeen = false;
  const unread = S.store.unread;
  for (const [name, n] of Object.entries(unread)) if (n > 0) room(name).unread = n;
  for (const [name, n] of Object.entries(S.store.mentions)) if (n > 0 && S.rooms.has(name)) room(name).mentions = n;
  // Messages waiting from an earlier visit belong to rooms we know.
  for (const m of S.outbox) room(m.room);

  settingsStart(user);
  $('me-name').textContent = displayName(user.username);
  $('me-username').textContent = '@' + user.username;
  $('me-avatar').replaceWith(Object.assign(avatar(user.username), { id: 'me-avatar' }));
  $('announce').replaceChildren();
  renderComposerHelp();
  show('app');

  await loadRooms();
  const want = S.store.room;
  const joined = [...S.rooms.values()].filter((r) => r.joined);
  const first = (want && S.rooms.get(want) && S.rooms.get(want).joined && want)
    || (S.rooms.get('lobby') && S.rooms.get('lobby').joined && 'lobby')
    || (joined[0] && joined[0].name) || 'lobby';
  openRoom(first, { focus: true });

  S.conn = new Connection({
    eventTypes: Object.keys(EVENT_VIEWS),
    getCursor: () => S.cursor,
    onHello,
    onEvent,
    onFrame,
    onSynced: (c) => advanceCursor(c),
    onState: renderConn,
    onBadCursor,
    onUnauthorized: () => sessionEnded(),
    report: reportTransport,
  });
  S.conn.start();
  renderOutboxBanner();
}

function sessionEnded() {
  if (S.conn) S.conn.stop();
  S.conn = null;
  settingsStop();
  showAuth(t('auth.session_ended'));
}

async function logout() {
  const waiting = S.outbox.length;
  if (waiting && !confirm(t('logout.confirm', { n: waiting }))) return;
  if (S.conn) S.conn.stop();
  S.conn = null;
  await settingsStop(); // saves what waits: the session still holds
  try {
    await api('POST', '/api/logout');
  } catch (e) {
    /* the cookie goes away with the session either way */
  }
  clearTimeout(cursorTimer);
  cursorTimer = null;
  S.store.clear();
  S.store = null;
  S.me = null;
  S.rooms.clear();
  S.outbox = [];
  S.current = null;
  setAuthMode('login');
  $('auth-username').value = '';
  showAuth(t('auth.logged_out'));
}

function reportTransport(transport, reason) {
  api('POST', '/api/client-report', { body: { transport, reason } }).catch(() => {});
}

// --- rooms ---------------------------------------------------------------------

async function loadRooms() {
  const status = $('rooms-status');
  if (!S.rooms.size || ![...S.rooms.values()].some((r) => r.known)) status.textContent = t('rooms.loading');
  try {
    const res = await api('GET', '/api/rooms');
    const seen = new Set();
    for (const info of res.rooms || []) {
      const r = room(info.name);
      r.topic = info.topic || '';
      r.members = info.members || 0;
      r.joined = !!info.joined;
      r.known = true;
      seen.add(info.name);
    }
    for (const r of S.rooms.values()) {
      if (!seen.has(r.name)) {
        r.known = false;
        r.joined = false;
      }
    }
    status.textContent = '';
  } catch (e) {
    if (e.status === 401) return sessionEnded();
    status.textContent = t('rooms.load_failed', { error: friendly(e) });
  }
  renderRooms();
  renderHeader();
}

let roomsRefreshTimer = null;
function refreshRoomsSoon() {
  clearTimeout(roomsRefreshTimer);
  roomsRefreshTimer = setTimeout(loadRooms, 300);
}

function renderRooms() {
  const list = $('room-list');
  const others = $('other-rooms');
  const joined = [...S.rooms.values()].filter((r) => r.joined)
    .sort((a, b) => (a.name === 'lobby' ? -1 : b.name === 'lobby' ? 1 : a.name.localeCompare(b.name)));
  const rest = [...S.rooms.values()].filter((r) => !r.joined && r.known)
    .sort((a, b) => a.name.localeCompare(b.name));

  list.replaceChildren(...joined.map((r) => {
    const li = h('li');
    const b = h('button', 'room-btn');
    b.type = 'button';
    b.dataset.room = r.name;
    if (r.name === S.current) b.setAttribute('aria-current', 'page');
    b.append(h('span', 'hash', '#'), h('span', 'room-btn-name', r.name));
    const prefs = roomPrefs(r.name);
    if (prefs.muted) {
      b.classList.add('is-muted');
      b.append(mutedMark());
    } else if (r.unread > 0) {
      b.classList.add('has-unread');
      const n = badgeCount(r);
      if (n > 0) {
        const badge = h('span', 'badge', n > 99 ? '99+' : String(n));
        badge.setAttribute('aria-label', t(prefs.notify === 'all' ? 'rooms.unread' : 'rooms.mentions', { n }));
        b.append(badge);
      }
    }
    const waiting = S.outbox.filter((m) => m.room === r.name).length;
    if (waiting) b.append(h('span', 'waiting-dot', '•'));
    b.addEventListener('click', () => openRoom(r.name, { focus: true }));
    li.append(b);
    return li;
  }));
  if (!joined.length && S.rooms.size) list.replaceChildren(h('li', 'side-note', t('rooms.none_joined')));

  others.replaceChildren(...rest.map((r) => {
    const li = h('li', 'other-room');
    const info = h('div', 'other-info');
    info.append(h('span', 'other-name', '#' + r.name));
    const members = t('rooms.members', { n: r.members });
    info.append(h('span', 'other-meta', r.topic ? t('rooms.members_topic', { members, topic: r.topic }) : members));
    const b = h('button', 'btn btn-side btn-small', t('rooms.join'));
    b.type = 'button';
    b.setAttribute('aria-label', t('rooms.join_label', { room: r.name }));
    b.addEventListener('click', () => joinRoom(r.name, b));
    li.append(info, b);
    return li;
  }));
  if (!rest.length) others.replaceChildren(h('li', 'side-note', t('rooms.none_other')));

  const total = joined.reduce((n, r) => n + (r.name === S.current && !document.hidden ? 0 : badgeCount(r)), 0);
  document.title = (total ? `(${total}) ` : '') + (S.current ? `#${S.current} · natter` : 'natter');
  $('nav-unread').hidden = !joined.some((r) => badgeCount(r) > 0 && r.name !== S.current);
}

// What a room's badge counts, by its notification level: every message
// from others, or only those that mention us; nothing when muted.
function badgeCount(r) {
  const p = roomPrefs(r.name);
  if (p.muted) return 0;
  return p.notify === 'all' ? r.unread : r.mentions;
}

// A bell struck through, and the word for screen readers.
function mutedMark() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', width: '14', height: '14', 'aria-hidden': 'true' })) {
    svg.setAttribute(k, v);
  }
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', 'M6 16v-5a6 6 0 0 1 9.3-5M18 10.5V16l1.5 2h-15M10 20.5a2 2 0 0 0 4 0M4 4l16 16');
  path.setAttribute('class', 'icon-stroke');
  svg.append(path);
  const m = h('span', 'muted-mark');
  m.append(svg, h('span', 'visually-hidden', t('rooms.muted')));
  return m;
}

async function joinRoom(name, btn) {
  if (btn) {
    btn.disabled = true;
    btn.textContent = t('rooms.joining');
  }
  try {
    const res = await api('POST', `/api/rooms/${enc(name)}/join`);
    if (res && res.event) onEvent(res.event);
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'already_member')) {
      if (btn) {
        btn.disabled = false;
        btn.textContent = t('rooms.join');
      }
      $('room-form-error').textContent = t('rooms.join_failed', { room: name, error: friendly(e) });
      return false;
    }
  }
  room(name).joined = true;
  await loadRooms();
  openRoom(name, { focus: true });
  return true;
}

async function submitRoomForm(ev) {
  ev.preventDefault();
  const name = $('room-name-input').value.trim().replace(/^#/, '');
  const topic = $('room-topic-input').value.trim();
  const err = $('room-form-error');
  err.textContent = '';
  if (!ROOM_RE.test(name)) {
    err.textContent = t('error.invalid_room_name');
    return;
  }
  const btn = $('room-form-submit');
  btn.disabled = true;
  try {
    const existing = S.rooms.get(name);
    if (existing && existing.joined) {
      openRoom(name, { focus: true });
    } else if (existing && existing.known) {
      await joinRoom(name);
    } else {
      try {
        const res = await api('POST', '/api/rooms', { body: { name, topic } });
        if (res && res.event) onEvent(res.event);
        room(name).joined = true;
        await loadRooms();
        openRoom(name, { focus: true });
      } catch (e) {
        if (e instanceof ApiError && e.code === 'room_exists') await joinRoom(name);
        else throw e;
      }
    }
    $('room-name-input').value = '';
    $('room-topic-input').value = '';
  } catch (e) {
    err.textContent = friendly(e);
  } finally {
    btn.disabled = false;
  }
}

async function leaveRoom() {
  const name = S.current;
  if (!name || !confirm(t('members.leave_confirm', { room: name }))) return;
  try {
    await api('POST', `/api/rooms/${enc(name)}/leave`);
  } catch (e) {
    alert(t('members.leave_failed', { room: name, error: friendly(e) }));
    return;
  }
  room(name).joined = false;
  closePanels();
  await loadRooms();
  const next = [...S.rooms.values()].find((r) => r.joined);
  openRoom(next ? next.name : 'lobby', { focus: true });
}

// --- the room view -----------------------------------------------------------------

function openRoom(name, opts = {}) {
  const r = room(name);
  const changed = S.current !== name;
  S.current = name;
  if (S.store) S.store.room = name;
  r.unread = 0;
  r.mentions = 0;
  saveUnread();
  closeNav();
  renderRooms();
  renderHeader();
  renderTyping();
  if (changed) {
    $('message-list').replaceChildren();
    S.stickBottom = true;
  }
  renderMessages({ bottom: changed });
  if (!r.loaded && !r.loading) loadLatest(r);
  if (!$('members').hidden || r.memberList == null) loadMembers(r);
  $('composer-input').placeholder = t('composer.placeholder', { room: name });
  if (opts.focus && !matchMedia('(pointer: coarse)').matches) $('composer-input').focus();
}

function renderHeader() {
  const r = S.current && S.rooms.get(S.current);
  $('room-title').textContent = r ? '#' + r.name : '';
  $('room-topic').textContent = r ? r.topic : '';
  $('room-topic').hidden = !(r && r.topic);
  const n = r && r.memberList ? r.memberList.length : r ? r.members : 0;
  // The button's name is its hidden word "Members" and the count shown.
  $('member-count').textContent = n ? t('members.count', { n }) : '';
}

// The newest page of history. reset: forget what we had (recovered:false).
async function loadLatest(r, reset = false) {
  r.loading = true;
  r.error = null;
  if (r.name === S.current) renderHistoryTop();
  try {
    const res = await api('GET', `/api/rooms/${enc(r.name)}/messages?limit=${PAGE}`);
    if (reset) {
      r.events.clear();
      r.nodes.clear();
    }
    for (const ev of res.events || []) addEvent(r, ev, false);
    if (!r.loaded || reset) r.hasMore = !!res.has_more;
    r.loaded = true;
  } catch (e) {
    if (e.status === 401) return sessionEnded();
    r.error = e.code === 'not_a_member' ? t('history.not_member') : friendly(e);
  } finally {
    r.loading = false;
  }
  if (r.name === S.current) renderMessages({ bottom: S.stickBottom });
}

async function loadOlder(r) {
  if (r.loadingOlder || r.loading || !r.hasMore) return;
  const before = r.oldestId();
  if (before == null) return loadLatest(r);
  r.loadingOlder = true;
  r.error = null;
  renderHistoryTop();
  try {
    const res = await api('GET', `/api/rooms/${enc(r.name)}/messages?before=${before}&limit=${PAGE}`);
    for (const ev of res.events || []) addEvent(r, ev, false);
    r.hasMore = !!res.has_more;
  } catch (e) {
    r.error = friendly(e);
  } finally {
    r.loadingOlder = false;
  }
  if (r.name !== S.current) return;
  const box = $('messages');
  const fromBottom = box.scrollHeight - box.scrollTop;
  renderMessages();
  box.scrollTop = box.scrollHeight - fromBottom;
}

function renderHistoryTop() {
  const top = $('history-top');
  const r = S.rooms.get(S.current);
  top.replaceChildren();
  if (!r) return;
  if (r.loading || r.loadingOlder) {
    const p = h('p', 'history-note loading', r.loading ? t('history.loading') : t('history.loading_older'));
    p.setAttribute('role', 'status');
    top.append(p);
  } else if (r.error) {
    const p = h('p', 'history-note error', r.error + ' ');
    const b = h('button', 'link-btn', t('history.retry'));
    b.type = 'button';
    b.addEventListener('click', () => (r.loaded ? loadOlder(r) : loadLatest(r)));
    p.append(b);
    top.append(p);
  } else if (r.hasMore) {
    const b = h('button', 'btn btn-ghost btn-small', t('history.load_older'));
    b.type = 'button';
    b.addEventListener('click', () => loadOlder(r));
    top.append(b);
  } else if (r.loaded) {
    const intro = h('div', 'room-intro');
    intro.append(h('div', 'room-intro-hash', '#'));
    intro.append(h('h2', null, t('history.beginning', { room: r.name })));
    if (r.topic) intro.append(h('p', null, r.topic));
    top.append(intro);
  }
}

function isAtBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
  $('jump-latest').hidden = true;
}

// A message: avatar, author and time (unless it continues the previous
// one), and the text.
function messageNode(ev, cont) {
  const li = h('li', 'msg' + (cont ? ' cont' : '') + (ev.from === S.me.username ? ' mine' : ''));
  if (!cont) li.append(avatar(ev.from));
  else li.append(h('div', 'gutter'));
  const body = h('div', 'msg-body');
  if (!cont) {
    const meta = h('div', 'msg-meta');
    meta.append(h('span', 'msg-author', displayName(ev.from)), timeEl(ev.ts));
    body.append(meta);
  } else {
    li.firstChild.append(timeEl(ev.ts));
  }
  const text = h('div', 'msg-text');
  text.append(richText(ev.text || ''));
  body.append(text);
  li.append(body);
  return li;
}

// A one-line system notice: "alice joined #room" (key: its catalog text).
function noticeNode(key) {
  return (ev) => {
    const li = h('li', 'sys');
    const who = h('strong', null, ev.from ? displayName(ev.from) : t('event.someone'));
    const line = h('span', 'sys-text');
    line.append(tNodes(key, { room: ev.room }, { name: who }));
    li.append(line, timeEl(ev.ts));
    return li;
  };
}

function eventNode(r, ev, cont) {
  const key = `${ev.id}:${cont ? 1 : 0}`;
  let li = r.nodes.get(key);
  if (li) return li;
  li = EVENT_VIEWS[ev.type].render(ev, cont);
  li.dataset.id = ev.id;
  if (ev.client_id) li.dataset.clientId = ev.client_id;
  r.nodes.set(key, li);
  return li;
}

function pendingState(m) {
  if (m.failed) return t('pending.failed', { error: m.failed });
  if (S.inflight.has(m.client_id) || S.connState.phase === 'live') return t('pending.sending');
  return t('pending.waiting');
}

function pendingNode(r, m, cont) {
  const state = pendingState(m);
  const key = `p:${m.client_id}:${cont ? 1 : 0}:${state}`;
  let li = r.nodes.get(key);
  if (li) return li;
  li = h('li', 'msg mine pending' + (cont ? ' cont' : '') + (m.failed ? ' failed' : ''));
  r.nodes.set(key, li);
  li.dataset.clientId = m.client_id;
  li.append(cont ? h('div', 'gutter') : avatar(S.me.username));
  const body = h('div', 'msg-body');
  const st = h('span', 'msg-state', state);
  if (!cont) {
    const meta = h('div', 'msg-meta');
    meta.append(h('span', 'msg-author', displayName(S.me.username)), st);
    body.append(meta);
  }
  const text = h('div', 'msg-text');
  text.append(richText(m.text));
  if (cont) {
    text.append(' ');
    text.append(st);
  }
  body.append(text);
  if (m.failed) {
    const actions = h('div', 'msg-actions');
    const retry = h('button', 'link-btn', t('pending.retry'));
    retry.type = 'button';
    retry.addEventListener('click', () => {
      delete m.failed;
      saveOutbox();
      renderMessages();
      flushOutbox();
    });
    const drop = h('button', 'link-btn danger', t('pending.discard'));
    drop.type = 'button';
    drop.addEventListener('click', () => {
      S.outbox = S.outbox.filter((x) => x.client_id !== m.client_id);
      saveOutbox();
      renderMessages();
    });
    actions.append(retry, drop);
    body.append(actions);
  }
  li.append(body);
  return li;
}

// Make list's children exactly nodes, moving only what changed, so that
// a new message is one insertion (screen readers announce just that one).
function reconcile(list, nodes) {
  for (let i = 0; i < nodes.length; i++) {
    const have = list.children[i];
    if (have !== nodes[i]) list.insertBefore(nodes[i], have || null);
  }
  while (list.children.length > nodes.length) list.lastElementChild.remove();
}

let renderQueued = false;
function renderMessagesSoon() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderMessages();
  });
}

function renderMessages(opts = {}) {
  const r = S.rooms.get(S.current);
  if (!r || !S.me) return;
  const stick = opts.bottom || isAtBottom();
  const list = $('message-list');
  const nodes = [];
  let prev = null;
  let prevDay = null;
  for (const ev of r.sorted()) {
    const d = new Date(ev.ts);
    const day = isNaN(d) ? prevDay : d.toDateString();
    if (day !== prevDay && !isNaN(d)) {
      let sep = r.nodes.get('day:' + day);
      if (!sep) {
        sep = h('li', 'day');
        sep.append(h('span', null, dayLabel(d)));
        r.nodes.set('day:' + day, sep);
      }
      nodes.push(sep);
    }
    const cont = EVENT_VIEWS[ev.type].groups && prev && prev.type === ev.type && prev.from === ev.from
      && day === prevDay && new Date(ev.ts) - new Date(prev.ts) < 5 * 60000;
    nodes.push(eventNode(r, ev, cont));
    prev = ev;
    prevDay = day;
  }
  for (const m of S.outbox) {
    if (m.room !== r.name) continue;
    const cont = !m.failed && prev && prev.from === S.me.username && (prev.pending || prev.type === 'message');
    nodes.push(pendingNode(r, m, cont));
    prev = m.failed ? null : { from: S.me.username, pending: true };
  }
  if (!nodes.length && r.loaded && !r.hasMore) {
    nodes.push(h('li', 'empty', t('messages.empty')));
  }
  reconcile(list, nodes);
  // Forget pending nodes not shown any more (acknowledged or restated).
  const shown = new Set(nodes);
  for (const [key, node] of r.nodes) if (key.startsWith('p:') && !shown.has(node)) r.nodes.delete(key);
  renderHistoryTop();
  if (stick) scrollToBottom();
  else if (opts.newBelow) $('jump-latest').hidden = false;
  // A short room does not scroll, so scrolling up cannot ask for more.
  const box = $('messages');
  if (r.hasMore && !r.loadingOlder && !r.loading && r.loaded && box.scrollHeight <= box.clientHeight + 10) {
    loadOlder(r);
  }
}

// --- members ---------------------------------------------------------------------------

async function loadMembers(r) {
  try {
    const res = await api('GET', `/api/rooms/${enc(r.name)}/members`);
    r.memberList = res.members || [];
    for (const m of r.memberList) if (m.display_name) S.names.set(m.username, m.display_name);
  } catch (e) {
    if (e.status === 401) return sessionEnded();
    r.memberList = r.memberList || null;
  }
  if (r.name === S.current) {
    renderMembers();
    renderHeader();
  }
}

function renderMembers() {
  const r = S.rooms.get(S.current);
  const list = $('member-list');
  if (!r || !r.memberList) {
    list.replaceChildren(h('li', 'side-note', t('members.loading')));
    return;
  }
  const sorted = [...r.memberList].sort((a, b) => a.username.localeCompare(b.username));
  list.replaceChildren(...sorted.map((m) => {
    const li = h('li', 'member');
    li.append(avatar(m.username, 'avatar avatar-small'));
    const names = h('div', 'member-names');
    const name = m.display_name || m.username;
    names.append(h('span', 'member-name', m.username === S.me.username ? t('members.you', { name }) : name));
    if (m.display_name && m.display_name !== m.username) names.append(h('span', 'member-user', '@' + m.username));
    li.append(names);
    return li;
  }));
  $('leave-room').hidden = !r.joined;
}

// --- events from the stream ----------------------------------------------------------

function advanceCursor(id) {
  if (!Number.isSafeInteger(id)) return;
  if (S.cursor == null || id > S.cursor) {
    S.cursor = id;
    saveCursorSoon();
  }
}

let cursorTimer = null;
function saveCursorSoon() {
  if (cursorTimer) return;
  const store = S.store;
  cursorTimer = setTimeout(() => {
    cursorTimer = null;
    if (store && store === S.store) store.cursor = S.cursor;
  }, 200);
}

function saveOutbox() {
  if (S.store) S.store.outbox = S.outbox;
  renderOutboxBanner();
  renderRooms();
}

function saveUnread() {
  if (!S.store) return;
  const u = {};
  const m = {};
  for (const r of S.rooms.values()) {
    if (r.unread > 0) u[r.name] = r.unread;
    if (r.mentions > 0) m[r.name] = r.mentions;
  }
  S.store.unread = u;
  S.store.mentions = m;
}

// Add one persistent event to its room; true if it was new. Types this
// client has no view for (a newer server) are left out.
function addEvent(r, ev, live) {
  if (!Number.isSafeInteger(ev.id)) return false;
  if (!Object.hasOwn(EVENT_VIEWS, ev.type) || !EVENT_VIEWS[ev.type].render) return false;
  if (ev.client_id && S.me && ev.from === S.me.username) acked(ev.client_id);
  if (r.events.has(ev.id)) return false;
  r.events.set(ev.id, ev);
  const view = EVENT_VIEWS[ev.type];
  if (live && view.unread && ev.from !== S.me.username) {
    const mention = notifyMentions(ev.text, S.me.username);
    if (r.name !== S.current || document.hidden) {
      r.unread++;
      if (mention) r.mentions++;
      saveUnread();
      const msg = {
        title: t('notify.title', { name: displayName(ev.from), room: r.name }),
        body: ev.text || '',
        tag: 'natter:' + r.name,
      };
      notifyDesktop(roomPrefs(r.name), mention, msg, () => openRoom(r.name, { focus: true }));
    }
    if (r.name === S.current && view.speak) notifyAnnounce(view.speak(ev));
  }
  return true;
}

// A join or leave seen live: our own changes the room list, someone
// else's the member count.
function membershipChanged(r, ev, mine) {
  if (mine) {
    r.joined = ev.type === 'join';
    refreshRoomsSoon();
  } else {
    r.members += ev.type === 'join' ? 1 : -1;
    if (r.name === S.current || r.memberList) loadMembers(r);
  }
}

// --- event views -----------------------------------------------------------------------------
// One row per event type the client shows, and the only place that knows
// the types: render(ev, cont) draws it in the timeline (persistent types);
// live(r, ev, mine) applies what it changes when it arrives live; unread:
// it counts towards a room's unread badge (and may notify); speak(ev):
// what the live region says when one from someone else arrives in the
// open room; groups: consecutive events of the type by one author share a
// header. The transports receive exactly these types (SSE listens by
// name); anything else is ignored.
const EVENT_VIEWS = {
  message: {
    render: messageNode,
    live: (r, ev) => stopTyping(ev.room, ev.from),
    unread: true,
    speak: (ev) => t('announce.message', { name: displayName(ev.from), text: (ev.text || '').slice(0, 300) }),
    groups: true,
  },
  join: { render: noticeNode('event.join'), live: membershipChanged },
  leave: { render: noticeNode('event.leave'), live: membershipChanged },
  room: { render: noticeNode('event.room'), live: () => refreshRoomsSoon() },
  typing: { ephemeral: true, live: (r, ev) => onTyping(ev) },
  // The user's whole settings object, changed on another device:
  // {"type":"settings","settings":{...}}; applied like a change made in
  // another tab or read on a reconnect.
  settings: { ephemeral: true, live: (r, ev) => settingsReceive(ev.settings) },
};

function onEvent(ev) {
  if (!S.me || !ev || typeof ev !== 'object' || !ev.type) return;
  const view = Object.hasOwn(EVENT_VIEWS, ev.type) ? EVENT_VIEWS[ev.type] : null;
  if (view && view.ephemeral) return view.live(null, ev, ev.from === S.me.username);
  if (!Number.isSafeInteger(ev.id) || typeof ev.room !== 'string') return;
  advanceCursor(ev.id); // even for a type this client does not show
  if (!view) return;
  const r = room(ev.room);
  if (!addEvent(r, ev, true)) return;
  const mine = S.me && ev.from === S.me.username;
  if (view.live) view.live(r, ev, mine);
  if (r.name === S.current) {
    const bottom = isAtBottom() || mine;
    renderMessages({ bottom, newBelow: !bottom });
  }
  renderRooms();
}

function onFrame(m) {
  if (m.type === 'ack') {
    if (m.event) onEvent(m.event);
    acked(m.client_id);
  } else if (m.type === 'error') {
    if (m.client_id) sendFailed(m.client_id, m.error, m.message, m.retry_after);
  }
}

function onHello(m) {
  const first = !S.helloSeen;
  S.helloSeen = true;
  if (m.recovered === false) {
    // Events after our cursor are gone from the server's memory: start
    // again from its cursor and reload history rather than show a gap.
    S.cursor = Number.isSafeInteger(m.cursor) ? m.cursor : null;
    if (S.store) S.store.cursor = S.cursor;
    reloadAllHistory();
  } else if (S.cursor == null && Number.isSafeInteger(m.cursor)) {
    // First contact: live from m.cursor on; history up to it by REST.
    advanceCursor(m.cursor);
    reloadAllHistory(false);
  }
  if (!first) {
    loadRooms();
    const r = S.rooms.get(S.current);
    if (r) loadMembers(r);
    reloadMe();
  }
  settingsFlush();
  // Anything in flight may or may not have arrived: send it again, the
  // server answers a repeated client_id with the first id.
  S.inflight.clear();
  S.flushRetry = 0;
  flushOutbox();
  renderMessages();
}

// Back after a gap: the account may have changed on another device
// meanwhile (settings, display name).
async function reloadMe() {
  try {
    const res = await api('GET', '/api/me');
    const me = res.user || res;
    if (!S.me || me.username !== S.me.username) return;
    settingsReceive(me.settings);
    if (me.display_name && me.display_name !== displayName(S.me.username)) {
      settingsChanged(['display_name'], me.display_name);
    }
  } catch (e) {
    if (e.status === 401) sessionEnded();
  }
}

function reloadAllHistory(reset = true) {
  for (const r of S.rooms.values()) {
    if (r.name === S.current) loadLatest(r, reset);
    else if (reset) {
      r.events.clear();
      r.nodes.clear();
      r.loaded = false;
    }
  }
}

function onBadCursor() {
  // The server does not know our cursor (its database was reset): what
  // we hold belongs to another history. Start over.
  S.cursor = null;
  if (S.store) S.store.cursor = null;
  for (const r of S.rooms.values()) {
    r.events.clear();
    r.nodes.clear();
    r.loaded = false;
    r.unread = 0;
    r.mentions = 0;
  }
  saveUnread();
  S.helloSeen = false;
  loadRooms().then(() => {
    const r = S.rooms.get(S.current);
    if (r) loadLatest(r, true);
  });
}

// --- typing --------------------------------------------------------------------------------

function onTyping(ev) {
  if (!S.me || ev.from === S.me.username || !ev.room) return;
  let m = S.typing.get(ev.room);
  if (!m) S.typing.set(ev.room, (m = new Map()));
  m.set(ev.from, Date.now() + TYPING_SHOW_MS);
  renderTyping();
  setTimeout(renderTyping, TYPING_SHOW_MS + 50);
}

function stopTyping(roomName, user) {
  const m = S.typing.get(roomName);
  if (m && m.delete(user)) renderTyping();
}

function renderTyping() {
  const el = $('typing');
  const m = S.typing.get(S.current);
  const now = Date.now();
  const who = [];
  if (m) {
    for (const [u, until] of m) {
      if (until > now) who.push(displayName(u));
      else m.delete(u);
    }
  }
  el.replaceChildren();
  if (!who.length) return;
  const dots = h('span', 'typing-dots');
  dots.append(h('i'), h('i'), h('i'));
  dots.setAttribute('aria-hidden', 'true');
  let text;
  if (who.length === 1) text = t('typing.one', { a: who[0] });
  else if (who.length === 2) text = t('typing.two', { a: who[0], b: who[1] });
  else text = t('typing.many');
  el.append(dots, h('span', null, text));
}

function sendTyping() {
  const now = Date.now();
  if (!S.conn || !S.current || now - S.lastTypingSent < TYPING_SEND_EVERY) return;
  if (S.conn.send({ op: 'typing', room: S.current })) S.lastTypingSent = now;
}

// --- the outbox ------------------------------------------------------------------------------

function send(text) {
  const m = { client_id: newClientId(), room: S.current, text, ts: new Date().toISOString() };
  S.outbox.push(m);
  saveOutbox();
  renderMessages({ bottom: true });
  flushOutbox();
}

function acked(clientId) {
  S.inflight.delete(clientId);
  S.acked.add(clientId);
  const before = S.outbox.length;
  S.outbox = S.outbox.filter((m) => m.client_id !== clientId);
  if (S.outbox.length !== before) {
    saveOutbox();
    if (S.outbox.some((m) => m.room === S.current)) renderMessagesSoon();
  }
}

function sendFailed(clientId, code, message, retryAfter) {
  S.inflight.delete(clientId);
  const m = S.outbox.find((x) => x.client_id === clientId);
  if (!m) return;
  if (PERMANENT.has(code)) {
    m.failed = friendly(new ApiError(422, code, message || code));
    saveOutbox();
    if (m.room === S.current) renderMessages();
  } else {
    // rate_limited, storage_full, busy...: again once the server says
    retryFlushLater(retryAfter);
  }
}

function retryFlushLater(seconds) {
  clearTimeout(S.flushTimer);
  // The server said how long (rate_limited, storage_full, busy): that,
  // spread by up to half again; several refusals of one burst do not add
  // up to a longer wait. Else our own growing backoff.
  if (seconds > 0) {
    S.flushTimer = setTimeout(flushOutbox, seconds * 1000 * (1 + Math.random() / 2));
    return;
  }
  const base = Math.min(30000, 1000 * 2 ** S.flushRetry++);
  S.flushTimer = setTimeout(flushOutbox, base / 2 + (Math.random() * base) / 2);
}

// Send what waits. WebSocket: every message at once (one ordered stream).
// SSE and long-poll: POST one at a time, to keep their order.
function flushOutbox() {
  if (!S.conn || !S.conn.live) return;
  if (S.conn.kind === 'ws') {
    for (const m of S.outbox) {
      if (m.failed || S.inflight.has(m.client_id)) continue;
      if (!S.conn.send({ op: 'send', room: m.room, text: m.text, client_id: m.client_id })) break;
      S.inflight.set(m.client_id, Date.now());
    }
    renderMessagesSoon();
    return;
  }
  postLoop();
}

async function postLoop() {
  if (S.posting) return;
  S.posting = true;
  try {
    for (;;) {
      if (!S.conn || !S.conn.live || S.conn.kind === 'ws') break;
      const m = S.outbox.find((x) => !x.failed && !S.inflight.has(x.client_id));
      if (!m) break;
      S.inflight.set(m.client_id, Date.now());
      renderMessagesSoon();
      try {
        const res = await api('POST', `/api/rooms/${enc(m.room)}/messages`, {
          body: { text: m.text, client_id: m.client_id },
        });
        S.flushRetry = 0;
        if (res && res.event) onEvent(res.event);
        acked(m.client_id);
      } catch (e) {
        S.inflight.delete(m.client_id);
        if (e.status === 401) return sessionEnded();
        if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          sendFailed(m.client_id, PERMANENT.has(e.code) ? e.code : 'invalid', e.message);
          continue;
        }
        retryFlushLater(e.retryAfter);
        break;
      }
    }
  } finally {
    S.posting = false;
    renderMessagesSoon();
  }
}

// Messages sent over a WebSocket that was then cut may never be acked
// on it: after a while, send them again (same client_id).
setInterval(() => {
  const now = Date.now();
  let again = false;
  for (const [id, at] of S.inflight) {
    if (now - at > ACK_TIMEOUT && S.conn && S.conn.kind === 'ws') {
      S.inflight.delete(id);
      again = true;
    }
  }
  if (again) flushOutbox();
}, 5000);

function renderOutboxBanner() {
  const el = $('outbox-banner');
  const waiting = S.outbox.filter((m) => !m.failed).length;
  const failed = S.outbox.length - waiting;
  const phase = S.connState.phase;
  const live = phase === 'live';
  const parts = [];
  el.className = 'banner';
  // A reconnect that takes a moment (moving to another transport) is not
  // worth a warning: wait a little before saying "offline".
  const grace = 2000 - (Date.now() - (S.notLiveSince || 0));
  if (!live && S.conn && grace > 0 && S.helloSeen) {
    clearTimeout(S.bannerTimer);
    S.bannerTimer = setTimeout(renderOutboxBanner, grace + 50);
    if (waiting) parts.push(t('outbox.sending', { n: waiting }));
  } else if (!live && S.conn) {
    // Once connected, any gap is "offline" to the person: nothing goes out.
    const offline = S.connState.offline || phase === 'waiting' || S.helloSeen;
    if (waiting) parts.push(t(offline ? 'outbox.offline_waiting' : 'outbox.connecting_waiting', { n: waiting }));
    else if (offline) parts.push(t('outbox.offline'));
    el.classList.add('warn');
  } else if (waiting) {
    parts.push(t('outbox.sending', { n: waiting }));
  }
  if (failed) {
    parts.push(t('outbox.failed', { n: failed }));
    el.classList.add('warn');
  }
  el.textContent = parts.join(' ');
  el.hidden = !parts.length;
}

// --- connection state ----------------------------------------------------------------------------

let connTick = null;
function renderConn(st) {
  const prev = S.connState.phase;
  if (st.phase !== 'live' && (prev === 'live' || !S.notLiveSince)) S.notLiveSince = Date.now();
  S.connState = st;
  const box = $('conn');
  const text = $('conn-text');
  const retry = $('conn-retry');
  box.dataset.phase = st.phase;
  box.dataset.transport = st.kind || '';
  clearInterval(connTick);
  retry.hidden = true;
  const transport = st.kind ? t('transport.' + st.kind) : '';
  switch (st.phase) {
    case 'live':
      text.textContent = t('conn.live', { transport });
      box.title = t('conn.live_title', { transport });
      break;
    case 'connecting':
      text.textContent = t(st.checking ? 'conn.checking' : 'conn.connecting', { transport });
      box.title = t('conn.connecting_title');
      break;
    case 'reconnecting':
      text.textContent = t('conn.reconnecting', { transport });
      box.title = t('conn.reconnecting_title');
      break;
    case 'waiting': {
      const tick = () => {
        const when = inSeconds(Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000)));
        text.textContent = t(st.offline ? 'conn.offline_retry' : 'conn.disconnected_retry', { when });
      };
      tick();
      connTick = setInterval(tick, 1000);
      retry.hidden = false;
      box.title = t('conn.waiting_title');
      break;
    }
    case 'stopped':
      text.textContent = t('conn.stopped');
      break;
    default:
      text.textContent = t('conn.starting');
  }
  renderOutboxBanner();
  if (prev !== st.phase && S.outbox.some((m) => m.room === S.current)) renderMessagesSoon();
}

// --- composer ------------------------------------------------------------------------------------

function autoGrow() {
  const ta = $('composer-input');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight + 2, 200) + 'px';
}

function renderComposerHelp() {
  const ctrl = settingsGet('send_key') === 'ctrl_enter';
  $('composer-keys').textContent = t(ctrl ? 'composer.keys_ctrl_enter' : 'composer.keys_enter');
}

function updateCharCount() {
  const n = chars($('composer-input').value);
  const cc = $('char-count');
  cc.textContent = n > TEXT_MAX - 400 ? t('composer.count', { n, max: TEXT_MAX }) : '';
  cc.classList.toggle('over', n > TEXT_MAX);
}

function submitComposer(ev) {
  if (ev) ev.preventDefault();
  const ta = $('composer-input');
  const text = ta.value.replace(/^\s*\n/, '').replace(/\s+$/, '');
  if (!text.trim() || !S.current) return;
  const err = $('composer-error');
  if (chars(text) > TEXT_MAX) {
    err.textContent = t('composer.too_long', { n: chars(text), max: TEXT_MAX });
    return;
  }
  const r = S.rooms.get(S.current);
  if (r && r.known && !r.joined) {
    err.textContent = t('composer.not_member', { room: r.name });
    return;
  }
  err.textContent = '';
  ta.value = '';
  autoGrow();
  updateCharCount();
  // Others stop showing us as typing when the message arrives: the next
  // keystroke should announce us again at once.
  S.lastTypingSent = 0;
  send(text);
}

// --- panels (phone layout) --------------------------------------------------------------------

function openNav() {
  document.body.classList.add('nav-open');
  $('scrim').hidden = false;
  $('open-nav').setAttribute('aria-expanded', 'true');
  const cur = document.querySelector('.room-btn[aria-current="page"]') || document.querySelector('.room-btn');
  if (cur) cur.focus();
}

function closeNav() {
  if (!document.body.classList.contains('nav-open')) return;
  document.body.classList.remove('nav-open');
  $('open-nav').setAttribute('aria-expanded', 'false');
  if (!document.body.classList.contains('members-open')) $('scrim').hidden = true;
}

function toggleMembers(force) {
  const open = force != null ? force : $('members').hidden;
  $('members').hidden = !open;
  document.body.classList.toggle('members-open', open);
  $('members-toggle').setAttribute('aria-expanded', String(open));
  const narrow = matchMedia('(max-width: 1023px)').matches;
  $('scrim').hidden = !(open && narrow) && !document.body.classList.contains('nav-open');
  if (open) {
    const r = S.rooms.get(S.current);
    renderMembers();
    if (r) loadMembers(r);
    $('close-members').focus();
  }
}

function closePanels() {
  closeNav();
  if (!$('members').hidden && matchMedia('(max-width: 1023px)').matches) toggleMembers(false);
  $('scrim').hidden = true;
}

// --- wiring --------------------------------------------------------------------------------------

// --- language and settings --------------------------------------------------------------------

// The language or the time format changed: draw every text again. Cached
// timeline nodes carry times and day names, so they go.
function relabel() {
  $('auth-submit').textContent = authMode === 'register' ? t('auth.register') : t('auth.login');
  if (!$('boot').hidden && !$('boot-retry').hidden) $('boot-text').textContent = t('boot.offline');
  else if (!$('boot').hidden) $('boot-text').textContent = t('boot.loading');
  if (!S.me) return;
  for (const r of S.rooms.values()) r.nodes.clear();
  renderRooms();
  renderHeader();
  renderTyping();
  renderMembers();
  renderConn(S.connState);
  renderComposerHelp();
  updateCharCount();
  if (S.current) $('composer-input').placeholder = t('composer.placeholder', { room: S.current });
  renderMessages();
}

// settings.js applied a change (from this tab, another tab, the server).
function settingsChanged(keys, value) {
  if (!S.me) return;
  if (keys.includes('display_name') && value) {
    S.me.display_name = value;
    S.names.set(S.me.username, value);
    $('me-name').textContent = value;
    for (const r of S.rooms.values()) {
      r.nodes.clear();
      for (const m of r.memberList || []) if (m.username === S.me.username) m.display_name = value;
    }
    renderMembers();
    renderMessages();
  }
  if (keys.includes('send_key')) renderComposerHelp();
  if (keys.some((k) => k.startsWith('room:'))) renderRooms();
}

function joinedRoomNames() {
  return [...document.querySelectorAll('#room-list .room-btn')].map((b) => b.dataset.room);
}

function bind() {
  settingsBind({
    changed: settingsChanged,
    rooms: joinedRoomNames,
    displayName: () => (S.me ? displayName(S.me.username) : ''),
  });
  i18nOnChange(relabel);
  $('open-settings').addEventListener('click', () => settingsOpen($('open-settings')));
  $('boot-retry').addEventListener('click', boot);
  $('tab-login').addEventListener('click', () => setAuthMode('login'));
  $('tab-register').addEventListener('click', () => setAuthMode('register'));
  $('auth-form').addEventListener('submit', submitAuth);
  // Arrow keys move between the two tabs, as in any tab list.
  for (const id of ['tab-login', 'tab-register']) {
    $(id).addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
      const next = id === 'tab-login' ? 'tab-register' : 'tab-login';
      setAuthMode(next === 'tab-login' ? 'login' : 'register');
      $(next).focus();
    });
  }
  $('room-form').addEventListener('submit', submitRoomForm);
  $('refresh-rooms').addEventListener('click', loadRooms);
  $('logout').addEventListener('click', logout);
  $('leave-room').addEventListener('click', leaveRoom);
  $('open-nav').addEventListener('click', openNav);
  $('close-nav').addEventListener('click', () => {
    closeNav();
    $('open-nav').focus();
  });
  $('scrim').addEventListener('click', closePanels);
  $('members-toggle').addEventListener('click', () => toggleMembers());
  $('close-members').addEventListener('click', () => {
    toggleMembers(false);
    $('members-toggle').focus();
  });
  $('conn-retry').addEventListener('click', () => S.conn && S.conn.retryNow());
  $('jump-latest').addEventListener('click', () => {
    scrollToBottom();
    $('composer-input').focus();
  });

  const ta = $('composer-input');
  ta.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.isComposing || e.altKey || e.shiftKey) return;
    const ctrl = e.ctrlKey || e.metaKey;
    // Enter sends (Ctrl+Enter too); or, by the person's choice, only
    // Ctrl+Enter (Cmd+Enter) sends and Enter makes a new line.
    if (settingsGet('send_key') !== 'ctrl_enter' || ctrl) {
      e.preventDefault();
      submitComposer();
    }
  });
  ta.addEventListener('input', () => {
    $('composer-error').textContent = '';
    autoGrow();
    updateCharCount();
    if (ta.value.trim()) sendTyping();
  });
  $('composer').addEventListener('submit', submitComposer);

  const box = $('messages');
  box.addEventListener('scroll', () => {
    const r = S.rooms.get(S.current);
    if (r && box.scrollTop < 150) loadOlder(r);
    if (isAtBottom()) $('jump-latest').hidden = true;
  }, { passive: true });

  document.addEventListener('keydown', (e) => {
    // The settings dialog closes itself on Escape, and only itself.
    if (e.key === 'Escape' && !$('settings').open) {
      if (document.body.classList.contains('nav-open')) {
        closeNav();
        $('open-nav').focus();
      } else if (!$('members').hidden) {
        toggleMembers(false);
        $('members-toggle').focus();
      }
    }
    // Alt+Up / Alt+Down: previous / next room.
    if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && S.me && !$('app').hidden) {
      const names = [...document.querySelectorAll('.room-btn')].map((b) => b.dataset.room);
      const i = names.indexOf(S.current);
      const next = names[(i + (e.key === 'ArrowUp' ? -1 : 1) + names.length) % names.length];
      if (next) {
        e.preventDefault();
        openRoom(next, { focus: true });
      }
    }
  });

  window.addEventListener('pagehide', () => {
    if (S.store && S.cursor != null) S.store.cursor = S.cursor;
  });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && S.current && S.rooms.get(S.current)) {
      S.rooms.get(S.current).unread = 0;
      S.rooms.get(S.current).mentions = 0;
      saveUnread();
      renderRooms();
    }
  });

  // Another tab of ours queued or sent something. Merge rather than
  // replace: a message that only this tab knows must never vanish (the
  // worst a merge can do is send one again, and the server dedupes).
  onStorageChange((key) => {
    if (!S.store || !key.endsWith(':outbox')) return;
    const theirs = S.store.outbox.filter((m) => !S.acked.has(m.client_id));
    const ids = new Set(theirs.map((m) => m.client_id));
    const merged = theirs.concat(S.outbox.filter((m) => !ids.has(m.client_id)));
    merged.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    S.outbox = merged;
    renderOutboxBanner();
    renderMessagesSoon();
    flushOutbox();
  });

  setInterval(() => {
    if (S.me && !document.hidden) renderTyping();
  }, 2000);
  // Keep the room list fresh (rooms other people created).
  setInterval(() => {
    if (S.me && !document.hidden && S.conn && S.conn.live) loadRooms();
  }, 60000);
}

bind();
boot();
