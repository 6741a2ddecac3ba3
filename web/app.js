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
import { adminBind, adminSetUser } from './admin.js';
import { UserStore, onStorageChange } from './store.js';
import { Connection } from './connection.js';
import { renderMarkup } from './markup.js';
import {
  reactionApplied, reactionsReplaced, reactionChips, quoteNode, pickerOpen, messageMenu, longPress,
} from './reactions.js';
import { initAttach, attachRoomChanged, readyFiles, sentFiles, filesNode } from './attach.js';
import { notifyMentions, notifyDesktop, notifyAnnounce } from './notify.js';
import {
  presenceStart, presenceEvent, presenceMembers, presenceLoad, presenceOf, presenceDot,
  presenceActivity, presenceChoose, presenceMe,
} from './presence.js';
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
// A muted sender's message fails too: sending it later, unseen, when the
// mute ends would surprise its author.
const PERMANENT = new Set(['not_a_member', 'no_such_room', 'invalid', 'invalid_field', 'text_too_long', 'muted', 'bad_reply_to', 'no_such_file']);

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
    // 'public', 'private' or 'dm' (GET /api/rooms says; dm-<id> names
    // are the server's own, so a conversation is known before that)
    this.kind = /^dm-\d+$/.test(name) ? 'dm' : 'public';
    this.people = null;      // dm: the other people's usernames
    this.known = false;      // listed by GET /api/rooms
    this.events = new Map(); // id -> event
    this.loaded = false;     // the newest page was fetched
    this.loading = false;
    this.loadingOlder = false;
    this.hasMore = false;
    this.error = null;
    this.unread = 0;
    this.mentions = 0;     // of the unread, those that mention us
    this.read = 0;         // our read marker (the server's, any device)
    this.joinedId = 0;     // our newest join: an @room before it was not for us
    this.readTimer = null;
    this.memberList = null;
    this.nodes = new Map();  // render cache: key -> element
  }
  sorted() {
    return [...this.events.values()].sort((a, b) => a.id - b.id);
  }
  oldestId() {
    let min = this.oldestChange || Infinity; // changes are not kept as rows
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
  avatars: new Map(),  // username -> avatar URL (absent: initials)
  users: new Set(),    // every username seen: suggestions for DMs, invitations
  invites: [],         // open invitations (GET /api/invites)
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

// A person's picture: their avatar image over the initial of their name
// (the initial shows when they have none, or while or if it fails to load).
function avatar(name, cls = 'avatar') {
  const a = h('div', `${cls} hue-${hue(name)}`, (name[0] || '?').toUpperCase());
  a.setAttribute('aria-hidden', 'true');
  const url = S.avatars.get(name);
  if (url) {
    const img = document.createElement('img');
    img.className = 'avatar-img';
    img.alt = '';
    img.decoding = 'async';
    img.src = url;
    img.addEventListener('error', () => img.remove(), { once: true });
    a.append(img);
  }
  return a;
}

// Learn name's avatar URL (null: none): true when it changed.
function setAvatar(name, url) {
  if (typeof name !== 'string' || url === undefined) return false;
  const clean = typeof url === 'string' && url.startsWith('/files/') ? url : null;
  if ((S.avatars.get(name) || null) === clean) return false;
  if (clean) S.avatars.set(name, clean);
  else S.avatars.delete(name);
  return true;
}

// Someone's avatar changed: draw every place that shows it again.
function avatarsChanged() {
  for (const r of S.rooms.values()) r.nodes.clear();
  if (S.me) $('me-avatar').replaceWith(Object.assign(avatar(S.me.username), { id: 'me-avatar' }));
  renderMembers();
  renderMessages();
  renderRooms();
}

// A co-member's (or our own) avatar changed elsewhere:
// {"type":"profile","room":..,"from":..,"avatar":URL or null}.
function profileReceived(ev) {
  for (const r of S.rooms.values()) {
    for (const m of r.memberList || []) if (m.username === ev.from) m.avatar = ev.avatar;
  }
  if (setAvatar(ev.from, ev.avatar)) avatarsChanged();
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
// Whether an @room in ev was for us: sent after our newest join of its
// room (the server records @room for the members at the commit).
function roomMentionForMe(ev) {
  const r = S.rooms.get(ev.room);
  return !r || !r.joinedId || !(ev.id <= r.joinedId);
}

// Whether ev mentions us: the server's list ("room" is everyone who was
// a member when it was sent, so not us if we joined after it), or for an
// event from before it kept one, @username in the text.
function mentionsMe(ev) {
  if (!S.me) return false;
  if (Array.isArray(ev.mentions)) {
    const me = S.me.username.toLowerCase();
    const roomForMe = roomMentionForMe(ev);
    return ev.mentions.some((n) => typeof n === 'string' && (n.toLowerCase() === me || (n === 'room' && roomForMe)));
  }
  return notifyMentions(ev.text, S.me.username);
}

// Where text has code (fenced blocks and `spans`): [start, end) pairs.
function codeRanges(text) {
  return [...text.matchAll(/```[\s\S]*?(?:```|$)|`[^`\n]+`/g)].map((m) => [m.index, m.index + m[0].length]);
}

// Plain text with the @names the server marked as mentions highlighted
// (never inside code, where the server did not look). base: where text
// starts in the message, code: codeRanges of the message.
function mentionText(text, mentions, base = 0, code = [], roomForMe = true) {
  if (!mentions || !mentions.length) return [text];
  const names = new Set(mentions.map((n) => String(n).toLowerCase()));
  const me = S.me ? S.me.username.toLowerCase() : '';
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_-](?:[A-Za-z0-9_.-]*[A-Za-z0-9_-])?)/g)) {
    const name = m[2].toLowerCase();
    if (!names.has(name)) continue;
    const at = m.index + m[1].length;
    if (code.some(([a, b]) => base + at >= a && base + at < b)) continue;
    if (at > last) out.push(text.slice(last, at));
    out.push(h('span', 'mention' + (name === me || (name === 'room' && roomForMe) ? ' mention-me' : ''), '@' + m[2]));
    last = at + 1 + m[2].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function richText(text, mentions, roomForMe = true) {
  const frag = document.createDocumentFragment();
  const code = mentions && mentions.length ? codeRanges(text) : [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    if (m.index > last) frag.append(...mentionText(text.slice(last, m.index), mentions, last, code, roomForMe));
    const a = h('a', null, m[0]);
    a.href = m[0];
    a.rel = 'noopener noreferrer nofollow';
    a.target = '_blank';
    frag.append(a);
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.append(...mentionText(text.slice(last), mentions, last, code, roomForMe));
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
    if (e instanceof ApiError && sessionOver(e)) {
      showAuth(e.status === 401 ? undefined : endedText(e));
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
    err.textContent = e instanceof ApiError && e.code === 'disabled' ? endedText(e) : friendly(e);
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
  adminSetUser(user);
  presenceStart(presenceChanged, (obj) => !!(S.conn && S.conn.send(obj)));
  presenceMe(user.username, { ...user, status: 'online' });
  renderMyStatus();
  $('me-name').textContent = displayName(user.username);
  $('me-username').textContent = '@' + user.username;
  setAvatar(user.username, user.avatar);
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
    onUnauthorized: (d) => sessionEnded(endedText(d && { code: 'disabled', reason: d.reason })),
    report: reportTransport,
  });
  S.conn.start();
  renderOutboxBanner();
}

// The session is over: gone (401), or its account disabled by an admin
// (403 disabled, which carries the reason; so does the live 'disabled'
// event on a stream that is open then). Shown at once.
function sessionOver(e) {
  return e.status === 401 || (e.status === 403 && e.code === 'disabled');
}
function endedText(e) {
  return e && e.code === 'disabled' ? t('auth.disabled', { reason: e.reason || '—' }) : t('auth.session_ended');
}
function sessionEnded(text) {
  if (S.conn) S.conn.stop();
  S.conn = null;
  settingsStop();
  adminSetUser(null);
  showAuth(text === undefined ? t('auth.session_ended') : text);
}

async function logout() {
  const waiting = S.outbox.length;
  if (waiting && !confirm(t('logout.confirm', { n: waiting }))) return;
  if (S.conn) S.conn.stop();
  S.conn = null;
  await settingsStop(); // saves what waits: the session still holds
  adminSetUser(null);
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
  closeSearch();
  $('search-input').value = '';
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
      r.kind = info.kind || 'public';
      // The server counts from our read marker, on every device.
      if (Number.isSafeInteger(info.read)) r.read = Math.max(r.read, info.read);
      if (Number.isSafeInteger(info.unread) && !(info.name === S.current && !document.hidden)) {
        r.unread = info.unread;
        r.mentions = info.mentions || 0;
      }
      if (Number.isSafeInteger(info.joined_id)) r.joinedId = info.joined_id;
      r.people = Array.isArray(info.people) ? info.people : null;
      for (const u of r.people || []) S.users.add(u);
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
    if (sessionOver(e)) return sessionEnded(endedText(e));
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
  const joined = [...S.rooms.values()].filter((r) => r.joined && r.kind !== 'dm')
    .sort((a, b) => (a.name === 'lobby' ? -1 : b.name === 'lobby' ? 1 : a.name.localeCompare(b.name)));
  const rest = [...S.rooms.values()].filter((r) => !r.joined && r.known)
    .sort((a, b) => a.name.localeCompare(b.name));

  const dms = [...S.rooms.values()].filter((r) => r.joined && r.kind === 'dm')
    .sort((a, b) => roomLabel(a).localeCompare(roomLabel(b)));
  const roomButton = (r) => {
    const li = h('li');
    const b = h('button', 'room-btn');
    b.type = 'button';
    b.dataset.room = r.name;
    if (r.name === S.current) b.setAttribute('aria-current', 'page');
    if (r.kind === 'dm') {
      const face = h('span', 'avatar-wrap');
      const peer = dmPeople(r)[0] || S.me.username;
      face.append(avatar(peer, 'avatar avatar-tiny'));
      if (dmPeople(r).length === 1) face.append(presenceDot(peer, h));
      b.append(face, h('span', 'room-btn-name', roomLabel(r)));
    } else {
      b.append(h('span', 'hash', '#'), h('span', 'room-btn-name', r.name));
    }
    if (r.kind === 'private') {
      b.append(lockMark());
    }
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
  };
  list.replaceChildren(...joined.map(roomButton));
  if (!joined.length && S.rooms.size) list.replaceChildren(h('li', 'side-note', t('rooms.none_joined')));
  $('dm-list').replaceChildren(...dms.map(roomButton));
  if (!dms.length) $('dm-list').replaceChildren(h('li', 'side-note', t('dms.none')));

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

  const total = [...joined, ...dms].reduce((n, r) => n + (r.name === S.current && !document.hidden ? 0 : badgeCount(r)), 0);
  const cur = S.current && S.rooms.get(S.current);
  document.title = (total ? `(${total}) ` : '') + (cur ? `${roomLabel(cur)} · natter` : 'natter');
  $('nav-unread').hidden = ![...joined, ...dms].some((r) => badgeCount(r) > 0 && r.name !== S.current);
}

// A direct conversation's other people; the name a room is shown by.
function dmPeople(r) {
  return r.people || [];
}
function composerPlaceholder(r) {
  return r.kind === 'dm'
    ? t('composer.placeholder_dm', { names: roomLabel(r) })
    : t('composer.placeholder', { room: r.name });
}
function roomLabel(r) {
  if (r.kind !== 'dm') return '#' + r.name;
  if (!r.people) return r.name; // not listed yet: GET /api/rooms names them
  const names = dmPeople(r).map(displayName);
  return names.length ? names.join(', ') : t('dms.self');
}

// What a room's badge counts, by its notification level: every message
// from others, or only those that mention us; nothing when muted.
function badgeCount(r) {
  const p = roomPrefs(r.name);
  if (p.muted) return 0;
  return p.notify === 'all' ? r.unread : r.mentions;
}

// A padlock, and the word for screen readers.
function lockMark() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', width: '13', height: '13', 'aria-hidden': 'true' })) {
    svg.setAttribute(k, v);
  }
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', 'M6 11h12v9H6zM8.5 11V8a3.5 3.5 0 0 1 7 0v3');
  path.setAttribute('class', 'icon-stroke');
  svg.append(path);
  const m = h('span', 'lock-mark');
  m.append(svg, h('span', 'visually-hidden', t('rooms.private_mark')));
  return m;
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
        const priv = $('room-private-input').checked;
        const res = await api('POST', '/api/rooms', { body: { name, topic, private: priv } });
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
    $('room-private-input').checked = false;
  } catch (e) {
    err.textContent = friendly(e);
  } finally {
    btn.disabled = false;
  }
}

// --- @ autocomplete in the composer ----------------------------------------------------
// Typing @ and the start of a name lists the room's members (and @room);
// arrows move, Enter or Tab takes one, Escape closes.

const mention = { items: [], active: 0, start: 0 };

function mentionClose() {
  mention.items = [];
  $('mention-list').hidden = true;
  const ta = $('composer-input');
  ta.removeAttribute('aria-activedescendant');
}

function mentionSuggest() {
  const ta = $('composer-input');
  const r = S.current && S.rooms.get(S.current);
  const before = ta.value.slice(0, ta.selectionStart);
  const m = /(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]{0,32})$/.exec(before);
  if (!m || !r || !r.memberList) return mentionClose();
  const part = m[2].toLowerCase();
  const names = r.memberList.map((x) => x.username)
    .filter((u) => u !== S.me.username && u.toLowerCase().startsWith(part))
    .sort((a, b) => a.localeCompare(b));
  if (r.kind !== 'dm' && 'room'.startsWith(part)) names.push('room');
  mention.items = names.slice(0, 8);
  mention.start = before.length - m[2].length - 1;
  mention.active = 0;
  if (!mention.items.length) return mentionClose();
  mentionRender();
}

function mentionRender() {
  const list = $('mention-list');
  list.replaceChildren(...mention.items.map((name, i) => {
    const li = h('li', 'mention-option');
    li.id = `mention-opt-${i}`;
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', String(i === mention.active));
    li.append(h('span', 'mention-name', '@' + name));
    if (name === 'room') li.append(h('span', 'mention-hint', t('mentions.everyone')));
    else if (S.names.get(name) && S.names.get(name) !== name) li.append(h('span', 'mention-hint', S.names.get(name)));
    li.addEventListener('mousedown', (e) => {
      e.preventDefault();
      mentionTake(i);
    });
    return li;
  }));
  list.hidden = false;
  const ta = $('composer-input');
  ta.setAttribute('aria-activedescendant', `mention-opt-${mention.active}`);
}

function mentionTake(i) {
  const ta = $('composer-input');
  const name = mention.items[i];
  const end = ta.selectionStart;
  const text = '@' + name + ' ';
  ta.value = ta.value.slice(0, mention.start) + text + ta.value.slice(end);
  const caret = mention.start + text.length;
  ta.setSelectionRange(caret, caret);
  mentionClose();
  ta.focus();
}

function mentionKey(e) {
  if (!mention.items.length || e.isComposing) return;
  const n = mention.items.length;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    mention.active = (mention.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
    mentionRender();
  } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
    mentionTake(mention.active);
  } else if (e.key === 'Escape') {
    mentionClose();
  } else {
    return;
  }
  e.preventDefault();
  e.stopImmediatePropagation();
}

// --- direct conversations and invitations ------------------------------------------

function toggleDmForm(force) {
  const form = $('dm-form');
  const open = force === undefined ? form.hidden : force;
  form.hidden = !open;
  $('dm-new').setAttribute('aria-expanded', String(open));
  if (open) {
    $('dm-form-error').textContent = '';
    $('dm-users-input').focus();
  }
}

// The datalist offers known usernames for the name being typed: each
// option is the whole field with its last name completed, so that a
// comma-separated list autocompletes one name after another.
function suggestUsers(input) {
  const v = input.value;
  const cut = input.id === 'dm-users-input' ? v.lastIndexOf(',') + 1 : 0;
  const head = v.slice(0, cut);
  const part = v.slice(cut).trim().toLowerCase();
  const taken = new Set(head.split(',').map((x) => x.trim().toLowerCase()));
  const names = [...S.users]
    .filter((u) => u !== S.me.username && !taken.has(u.toLowerCase()) && u.toLowerCase().startsWith(part))
    .sort((a, b) => a.localeCompare(b))
    .slice(0, 20);
  $('user-suggestions').replaceChildren(...names.map((u) => {
    const o = document.createElement('option');
    o.value = (head ? head.trimEnd() + ' ' : '') + u;
    return o;
  }));
}

async function submitDmForm(ev) {
  ev.preventDefault();
  const err = $('dm-form-error');
  err.textContent = '';
  const users = [...new Set($('dm-users-input').value.split(/[\s,]+/)
    .map((x) => x.trim().replace(/^@/, '')).filter(Boolean))];
  if (!users.length || users.length > 8 || !users.every((u) => ROOM_RE.test(u))) {
    err.textContent = t('dms.bad_users');
    return;
  }
  const btn = $('dm-form-submit');
  btn.disabled = true;
  try {
    const res = await api('POST', '/api/dms', { body: { users } });
    if (res && res.event && res.created) onEvent(res.event);
    const r = room(res.room.name);
    r.kind = 'dm';
    r.people = res.room.people || [];
    r.joined = true;
    $('dm-users-input').value = '';
    toggleDmForm(false);
    await loadRooms();
    openRoom(r.name, { focus: true });
  } catch (e) {
    err.textContent = friendly(e);
  } finally {
    btn.disabled = false;
  }
}

async function loadInvites() {
  try {
    const res = await api('GET', '/api/invites');
    S.invites = res.invites || [];
  } catch (e) {
    if (sessionOver(e)) return sessionEnded(endedText(e));
  }
  renderInvites();
}

function renderInvites() {
  $('invites-box').hidden = !S.invites.length;
  $('invite-list').replaceChildren(...S.invites.map((inv) => {
    const li = h('li', 'other-room');
    const info = h('div', 'other-info');
    info.append(h('span', 'other-name', t('invites.from', { room: inv.room, user: displayName(inv.by) })));
    const b = h('button', 'btn btn-side btn-small', t('invites.join'));
    b.type = 'button';
    b.setAttribute('aria-label', t('invites.join_label', { room: inv.room }));
    b.addEventListener('click', async () => {
      if (await joinRoom(inv.room, b)) loadInvites();
    });
    li.append(info, b);
    return li;
  }));
}

async function submitInviteForm(ev) {
  ev.preventDefault();
  const input = $('invite-input');
  const status = $('invite-status');
  const user = input.value.trim().replace(/^@/, '');
  status.textContent = '';
  if (!S.current || !ROOM_RE.test(user)) {
    status.textContent = t('error.no_such_user');
    return;
  }
  try {
    const res = await api('POST', `/api/rooms/${enc(S.current)}/invites`, { body: { user } });
    status.textContent = t('invites.sent', { user: res.invite.user });
    input.value = '';
  } catch (e) {
    status.textContent = t('invites.failed', { error: friendly(e) });
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
  if (S.edit && S.edit.room !== name) cancelEdit();
  if (S.reply && S.reply.room !== name) cancelReply();
  const r = room(name);
  const changed = S.current !== name;
  S.current = name;
  if (S.store) S.store.room = name;
  attachRoomChanged();
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
  else if (r.loaded) markReadSoon(r);
  if (!$('members').hidden || r.memberList == null) loadMembers(r);
  $('composer-input').placeholder = composerPlaceholder(r);
  if (opts.focus && !matchMedia('(pointer: coarse)').matches) $('composer-input').focus();
}

function renderHeader() {
  const r = S.current && S.rooms.get(S.current);
  $('room-title').textContent = r ? roomLabel(r) : '';
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
    if (sessionOver(e)) return sessionEnded(endedText(e));
    r.error = e.code === 'not_a_member' ? t('history.not_member') : friendly(e);
  } finally {
    r.loading = false;
  }
  if (r.name === S.current) {
    renderMessages({ bottom: S.stickBottom });
    markReadSoon(r);
  }
}

async function loadOlder(r, limit = PAGE) {
  if (r.loadingOlder || r.loading || !r.hasMore) return;
  const before = r.oldestId();
  if (before == null) return loadLatest(r);
  r.loadingOlder = true;
  r.error = null;
  renderHistoryTop();
  try {
    const res = await api('GET', `/api/rooms/${enc(r.name)}/messages?before=${before}&limit=${limit}`);
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
    intro.append(h('h2', null, r.kind === 'dm'
      ? t('history.beginning_dm', { names: roomLabel(r) })
      : t('history.beginning', { room: r.name })));
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
  const mine = ev.from === S.me.username;
  const li = h('li', 'msg' + (cont ? ' cont' : '') + (mine ? ' mine' : '') + (!mine && mentionsMe(ev) ? ' mentions-me' : ''));
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
  if (ev.deleted) {
    li.classList.add('deleted');
    body.append(h('div', 'msg-text tombstone', t('msg.deleted')));
    li.append(body);
    return li;
  }
  if (ev.reply_to) {
    const q = ev.reply_to;
    const quote = quoteNode(q, displayName(q.author || ''), () => jumpToMessage(ev.room, q.id));
    if (quote) body.append(quote);
  }
  // The rendered form when the server sent one (an event stored before
  // messages were rendered has only its text).
  const rendered = typeof ev.html === 'string';
  const text = h('div', 'msg-text' + (rendered ? ' md' : ''));
  text.append(rendered ? renderMarkup(ev.html) : richText(ev.text || '', ev.mentions, roomMentionForMe(ev)));
  // Mentions of you (or of everyone) stand out; the server marked who.
  const me = S.me ? S.me.username.toLowerCase() : '';
  const roomForMe = roomMentionForMe(ev);
  for (const span of text.querySelectorAll('span.mention')) {
    const who = (span.dataset.user || '').toLowerCase();
    if (who === me || (who === 'room' && roomForMe)) span.classList.add('mention-me');
  }
  body.append(text);
  const files = filesNode(ev.files);
  if (files) body.append(files);
  if (ev.edited) {
    const mark = h('span', 'msg-edited', t('msg.edited'));
    const d = new Date(ev.edited);
    if (!isNaN(d)) mark.title = timeFull(d);
    body.append(mark);
  }
  const chips = reactionChips(ev, (emoji, mine) => toggleReaction(ev.room, ev.id, emoji, mine));
  if (chips) body.append(chips);
  body.append(messageActions(ev));
  li.append(body);
  longPress(li);
  return li;
}

// The menu of a message: shown on hover, on keyboard focus, and on a
// touch screen after a long press. Reply and react for everyone; edit
// for its author; delete for its author or a moderator of the room.
function messageActions(ev) {
  const mine = ev.from === S.me.username;
  const r = S.rooms.get(ev.room);
  const mod = r && myRank(r) >= RANK.moderator;
  return messageMenu({
    reply: () => startReply(ev.room, ev.id),
    react: (btn) => pickerOpen(btn, (emoji) => toggleReaction(ev.room, ev.id, emoji, hasMine(ev.room, ev.id, emoji))),
    edit: mine ? () => startEdit(ev.room, ev.id) : null,
    del: mine || mod ? () => deleteMessage(ev.room, ev.id) : null,
  });
}

// --- reactions and replies ----------------------------------------------------------------

function hasMine(room, id, emoji) {
  const r = S.rooms.get(room);
  const ev = r && r.events.get(id);
  return !!(ev && Array.isArray(ev.reactions) && ev.reactions.some((x) => x.emoji === emoji && x.me));
}

// A message takes a new state (reactions): its cached nodes go.
function messageReplaced(r, now) {
  if (!now) return false;
  r.events.set(now.id, now);
  for (const key of [`${now.id}:0`, `${now.id}:1`]) r.nodes.delete(key);
  return true;
}

// Our reaction on or off: the server answers with the message's
// aggregate, which is applied at once (the live event follows).
async function toggleReaction(room, id, emoji, mine) {
  const r = S.rooms.get(room);
  try {
    const res = await api(mine ? 'DELETE' : 'PUT', `/api/rooms/${enc(room)}/messages/${id}/reactions/${encodeURIComponent(emoji)}`);
    if (r && res && messageReplaced(r, reactionsReplaced(r.events.get(id), res.reactions)) && r.name === S.current) {
      renderMessagesSoon();
    }
  } catch (e) {
    if (e.status === 401) return sessionEnded();
    $('composer-error').textContent = friendly(e);
  }
}

// A reaction event, live or replayed: the count it carries is the new one.
function onReaction(r, ev) {
  if (!Number.isSafeInteger(ev.target_id)) return;
  if (!r.reacted) r.reacted = new Map();
  const key = `${ev.target_id}:${ev.emoji}`;
  if ((r.reacted.get(key) || 0) >= ev.id) return;
  r.reacted.set(key, ev.id);
  const now = reactionApplied(r.events.get(ev.target_id), ev, S.me.username);
  if (messageReplaced(r, now) && r.name === S.current) renderMessagesSoon();
}

// Answer a message: the composer says to whom until it is sent or Esc.
function startReply(room, id) {
  const r = S.rooms.get(room);
  const ev = r && r.events.get(id);
  if (!ev || ev.deleted) return;
  if (S.edit) cancelEdit();
  S.reply = { room, id, author: ev.from };
  $('composer-reply-name').textContent = displayName(ev.from);
  $('composer-reply-text').textContent = (ev.text || '').slice(0, 100);
  $('composer-replying').hidden = false;
  $('composer-input').focus();
}

function cancelReply() {
  if (!S.reply) return;
  S.reply = null;
  $('composer-replying').hidden = true;
}

// --- edits and deletes -------------------------------------------------------------------------

// An edit or delete event: the message it names takes its new state, once,
// whichever comes first of the live event and a history page (a newer
// change is never undone by an older one seen later).
function applyChange(r, ev) {
  if (ev.type === 'reaction') {
    onReaction(r, ev);
    return false;
  }
  if (!Number.isSafeInteger(ev.target_id)) return false;
  if (!r.changed) r.changed = new Map();
  if ((r.changed.get(ev.target_id) || 0) >= ev.id) return false;
  r.changed.set(ev.target_id, ev.id);
  const old = r.events.get(ev.target_id);
  if (!old || old.deleted) return false;
  let now;
  if (ev.type === 'delete') {
    now = { id: old.id, type: old.type, room: old.room, from: old.from, ts: old.ts, deleted: true };
  } else {
    if (typeof ev.text !== 'string') return false; // scrubbed by a later delete
    now = { ...old, text: ev.text, html: ev.html, edited: ev.ts };
  }
  r.events.set(old.id, now);
  for (const key of [`${old.id}:0`, `${old.id}:1`]) r.nodes.delete(key);
  if (S.edit && S.edit.id === old.id && now.deleted) cancelEdit();
  if (S.reply && S.reply.id === old.id && now.deleted) cancelReply();
  return true;
}

function onChange(r, ev) {
  if (applyChange(r, ev) && r.name === S.current) renderMessagesSoon();
}

// Put a message of one's own into the composer to edit it.
function startEdit(room, id) {
  const r = S.rooms.get(room);
  const ev = r && r.events.get(id);
  if (!ev || ev.deleted || ev.from !== S.me.username) return;
  S.edit = { room, id };
  const ta = $('composer-input');
  ta.value = ev.text || '';
  $('composer-editing').hidden = false;
  document.body.classList.add('editing');
  autoGrow();
  updateCharCount();
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}

function cancelEdit() {
  if (!S.edit) return;
  S.edit = null;
  $('composer-editing').hidden = true;
  document.body.classList.remove('editing');
  $('composer-input').value = '';
  autoGrow();
  updateCharCount();
}

// The newest message of one's own in the room that can still be edited.
function lastOwnMessage(r) {
  const evs = r.sorted();
  for (let i = evs.length - 1; i >= 0; i--) {
    const ev = evs[i];
    if (ev.type === 'message' && ev.from === S.me.username && !ev.deleted) return ev;
  }
  return null;
}

async function submitEdit(text) {
  const { room, id } = S.edit;
  const err = $('composer-error');
  try {
    const res = await api('PATCH', `/api/rooms/${enc(room)}/messages/${id}`, { body: { text } });
    cancelEdit();
    // the event also comes over the live connection; whichever is first
    const r = S.rooms.get(room);
    if (r && res && res.event && res.event.type === 'edit') onChange(r, res.event);
  } catch (e) {
    err.textContent = friendly(e);
  }
}

async function deleteMessage(room, id) {
  if (!confirm(t('msg.delete_confirm'))) return;
  try {
    const res = await api('DELETE', `/api/rooms/${enc(room)}/messages/${id}`);
    const r = S.rooms.get(room);
    if (r && res && res.event && res.event.type === 'delete') onChange(r, res.event);
  } catch (e) {
    $('composer-error').textContent = friendly(e);
  }
}

// A one-line system notice: "alice joined #room" (key: its catalog text).
function noticeNode(key) {
  return (ev) => {
    const li = h('li', 'sys');
    const who = h('strong', null, ev.from ? displayName(ev.from) : t('event.someone'));
    const line = h('span', 'sys-text');
    const dm = S.rooms.get(ev.room)?.kind === 'dm';
    line.append(tNodes(dm && key === 'event.join' ? 'event.join_dm' : key, { room: ev.room }, { name: who }));
    li.append(line, timeEl(ev.ts));
    return li;
  };
}

// A kick or a ban: "{name} removed {user} from #{room}", and the reason.
function moderationNode(key) {
  return (ev) => {
    const li = h('li', 'sys sys-moderation');
    const who = h('strong', null, ev.from ? displayName(ev.from) : t('event.someone'));
    const whom = h('strong', null, ev.user ? displayName(ev.user) : t('event.someone'));
    const line = h('span', 'sys-text');
    line.append(tNodes(key, { room: ev.room }, { name: who, user: whom }));
    if (ev.reason) line.append(' ', h('span', 'sys-reason', t('event.reason', { reason: ev.reason })));
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
  const orig = m.reply_to && r.events.get(m.reply_to);
  if (orig && !orig.deleted) {
    const q = quoteNode({ id: orig.id, excerpt: (orig.text || '').slice(0, 100) }, displayName(orig.from),
      () => jumpToMessage(r.name, orig.id));
    if (q) body.append(q);
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

// --- search ----------------------------------------------------------------------------
// GET /api/search in the rooms we belong to, newest first, a page at a
// time. Each result's snippet comes as parts, the hits marked: each part
// becomes a text node (a hit inside <mark>), never HTML. A click opens the
// message in its room, with the history back to it loaded.

const SEARCH_PAGE = 20;
const SR = { q: '', results: [], hasMore: false, loading: false, error: null, note: null, seq: 0 };

async function runSearch(q, more = false) {
  q = q.trim();
  if (!q) return closeSearch();
  const seq = ++SR.seq;
  if (!more) Object.assign(SR, { q, results: [], hasMore: false });
  const last = SR.results[SR.results.length - 1];
  Object.assign(SR, { loading: true, error: null, note: null });
  renderSearch();
  try {
    const before = more && last ? `&before=${last.id}` : '';
    const res = await api('GET', `/api/search?q=${enc(SR.q)}&limit=${SEARCH_PAGE}${before}`);
    if (seq !== SR.seq) return;
    SR.results.push(...(res.results || []));
    SR.hasMore = !!res.has_more;
  } catch (e) {
    if (seq !== SR.seq) return;
    if (sessionOver(e)) return sessionEnded(endedText(e));
    SR.error = friendly(e);
  }
  SR.loading = false;
  renderSearch();
}

function closeSearch() {
  SR.seq++;
  Object.assign(SR, { q: '', results: [], hasMore: false, loading: false, error: null, note: null });
  renderSearch();
}

function snippetNode(res) {
  const p = h('p', 'search-snippet');
  const parts = Array.isArray(res.snippet) && res.snippet.length ? res.snippet : [{ text: res.text || '' }];
  for (const part of parts) {
    const text = typeof part.text === 'string' ? part.text : '';
    p.append(part.hit ? h('mark', null, text) : document.createTextNode(text));
  }
  return p;
}

function searchHitNode(res) {
  const b = h('button', 'search-hit');
  b.type = 'button';
  b.dataset.id = res.id;
  const meta = h('span', 'search-meta');
  meta.append(h('span', 'search-room', '#' + res.room), h('span', 'search-from', displayName(res.from)));
  const d = new Date(res.ts);
  const time = h('time', 'search-time', isNaN(d) ? '' : timeFull(d));
  if (!isNaN(d)) time.dateTime = d.toISOString();
  meta.append(time);
  b.append(meta, snippetNode(res));
  b.addEventListener('click', () => jumpToMessage(res.room, res.id));
  const li = h('li');
  li.append(b);
  return li;
}

function renderSearch() {
  const box = $('search-results');
  box.hidden = !SR.q;
  if (!SR.q) return;
  $('search-title').textContent = t('search.title', { q: SR.q });
  let status = '';
  if (SR.loading) status = t('search.loading');
  else if (SR.error) status = SR.error;
  else if (SR.note) status = SR.note;
  else status = SR.results.length ? t('search.count', { n: SR.results.length }) : t('search.none');
  $('search-status').textContent = status;
  $('search-list').replaceChildren(...SR.results.map(searchHitNode));
  $('search-more').hidden = !SR.hasMore || SR.loading;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Open room name at event id: history is one run back from the newest,
// so older pages are loaded until it holds id (at most 25 pages of 200).
async function jumpToMessage(name, id) {
  const r = room(name);
  openRoom(name);
  for (let i = 0; i < 200 && (r.loading || r.loadingOlder || !r.loaded) && !r.error; i++) await sleep(25);
  for (let i = 0; i < 25 && !r.events.has(id) && r.hasMore && !r.error; i++) {
    await loadOlder(r, 200);
    for (let j = 0; j < 200 && r.loadingOlder; j++) await sleep(25);
  }
  if (S.current !== name) return;
  renderMessages();
  const li = $('message-list').querySelector(`li[data-id="${id}"]`);
  if (!li) {
    SR.note = t('search.not_found');
    return renderSearch();
  }
  S.stickBottom = false;
  for (const old of document.querySelectorAll('#message-list .found')) old.classList.remove('found');
  li.classList.add('found');
  li.tabIndex = -1;
  li.scrollIntoView({ block: 'center' });
  li.focus({ preventScroll: true });
  setTimeout(() => li.classList.remove('found'), 4000);
}

// --- members ---------------------------------------------------------------------------

async function loadMembers(r) {
  try {
    const res = await api('GET', `/api/rooms/${enc(r.name)}/members`);
    r.memberList = res.members || [];
    presenceMembers(r.memberList);
    let pictures = false;
    for (const m of r.memberList) {
      S.users.add(m.username);
      if (m.display_name) S.names.set(m.username, m.display_name);
      if (setAvatar(m.username, m.avatar)) pictures = true;
    }
    if (pictures) avatarsChanged();
  } catch (e) {
    if (sessionOver(e)) return sessionEnded(endedText(e));
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
    const face = h('span', 'avatar-wrap');
    face.append(avatar(m.username, 'avatar avatar-small'), presenceDot(m.username, h));
    li.append(face);
    const names = h('div', 'member-names');
    const name = m.display_name || m.username;
    names.append(h('span', 'member-name', m.username === S.me.username ? t('members.you', { name }) : name));
    if (m.display_name && m.display_name !== m.username) names.append(h('span', 'member-user', '@' + m.username));
    const said = presenceOf(m.username).status_text;
    if (said) names.append(h('span', 'member-status', said));
    li.append(names);
    if (m.role === 'owner' || m.role === 'moderator') {
      li.append(h('span', 'member-role role-' + m.role, t('members.role_' + m.role)));
    }
    if (mayModerate(r, m)) li.append(moderationMenu(r, m));
    return li;
  }));
  $('leave-room').hidden = !r.joined || r.kind === 'dm';
  $('invite-form').hidden = !r.joined || r.kind === 'dm';
}

// --- presence ---------------------------------------------------------------------------

function presenceChanged(users) {
  if (!S.me) return;
  const r = S.rooms.get(S.current);
  if (r && r.memberList && users.some((u) => r.memberList.some((m) => m.username === u))) renderMembers();
  if ([...S.rooms.values()].some((x) => x.kind === 'dm')) renderRooms();
  if (users.includes(S.me.username)) renderMyStatus();
}

function renderMyStatus() {
  if (!S.me) return;
  const p = presenceOf(S.me.username);
  const btn = $('status-btn');
  btn.replaceChildren(presenceDot(S.me.username, h));
  btn.title = t('presence.change') + ' — ' + t('presence.' + p.status) + (p.status_text ? ' — ' + p.status_text : '');
  $('me-status').textContent = p.status_text || '';
}

function wireStatusPicker() {
  const form = $('status-form');
  const close = (focus = true) => {
    form.hidden = true;
    $('status-btn').setAttribute('aria-expanded', 'false');
    if (focus) $('status-btn').focus();
  };
  $('status-btn').addEventListener('click', async () => {
    if (!form.hidden) return close();
    form.hidden = false;
    $('status-btn').setAttribute('aria-expanded', 'true');
    $('status-error').textContent = '';
    try {
      const me = await api('GET', '/api/me');
      form.elements.status.value = me.status_choice || 'online';
      $('status-text').value = me.status_text || '';
    } catch (e) {
      $('status-text').value = presenceOf(S.me.username).status_text || '';
    }
    (form.querySelector('input[name="status"]:checked') || form.querySelector('input[name="status"]')).focus();
  });
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      close();
    }
  });
  $('status-cancel').addEventListener('click', () => close());
  $('status-clear').addEventListener('click', () => {
    $('status-text').value = '';
    $('status-text').focus();
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const me = await presenceChoose(form.elements.status.value, $('status-text').value.trim());
      meReceive(me);
      close();
    } catch (err) {
      $('status-error').textContent = err.status === 422 ? t('presence.invalid') : friendly(err);
    }
  });
}

// --- moderation -----------------------------------------------------------------------

const RANK = { member: 1, moderator: 2, owner: 3 };

function myRank(r) {
  if (S.me && S.me.admin) return 4;
  const me = (r.memberList || []).find((m) => m.username === S.me.username);
  return me ? RANK[me.role] || 1 : 0;
}

// Whether we may remove, ban or mute m (the server decides; this only
// hides what it would refuse): we moderate and outrank them.
function mayModerate(r, m) {
  if (m.username === S.me.username) return false;
  const mine = myRank(r);
  return mine >= RANK.moderator && mine > (RANK[m.role] || 1);
}

function moderationMenu(r, m) {
  const wrap = h('details', 'member-actions');
  const sum = h('summary', 'member-actions-toggle', '⋯');
  sum.title = t('moderation.menu', { name: m.username });
  sum.setAttribute('aria-label', sum.title);
  const menu = h('div', 'member-actions-menu');
  const kick = h('button', 'member-action', t('moderation.kick'));
  kick.type = 'button';
  kick.dataset.action = 'kick';
  kick.addEventListener('click', () => moderate(r, m, 'kicks', 'moderation.kick_prompt', wrap));
  const ban = h('button', 'member-action danger', t('moderation.ban'));
  ban.type = 'button';
  ban.dataset.action = 'ban';
  ban.addEventListener('click', () => moderate(r, m, 'bans', 'moderation.ban_prompt', wrap));
  const mute = h('button', 'member-action', t('moderation.mute'));
  mute.type = 'button';
  mute.dataset.action = 'mute';
  mute.addEventListener('click', () => moderate(r, m, 'mutes', 'moderation.mute_prompt', wrap, { seconds: 600 }));
  menu.append(kick, mute, ban);
  wrap.append(sum, menu);
  return wrap;
}

async function moderate(r, m, what, promptKey, wrap, extra = {}) {
  wrap.open = false;
  const reason = prompt(t(promptKey, { name: m.username, room: r.name }), '');
  if (reason === null) return;
  try {
    await api('POST', `/api/rooms/${enc(r.name)}/${what}`, { body: { user: m.username, reason, ...extra } });
    loadMembers(r);
  } catch (e) {
    if (sessionOver(e)) return sessionEnded(endedText(e));
    alert(t('moderation.failed', { name: m.username, error: friendly(e) }));
  }
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

// The newest event this client has of r.
function newestId(r) {
  let max = 0;
  for (const id of r.events.keys()) if (id > max) max = id;
  return max;
}

// We have seen r up to its newest event: move the server's marker (which
// tells our other devices), a moment later so that a burst is one call.
function markReadSoon(r) {
  if (!r || !r.joined || document.hidden) return;
  clearTimeout(r.readTimer);
  r.readTimer = setTimeout(async () => {
    const id = newestId(r);
    if (!id || id <= r.read) return;
    try {
      const res = await api('POST', `/api/rooms/${enc(r.name)}/read`, { body: { id } });
      if (res && Number.isSafeInteger(res.read)) r.read = Math.max(r.read, res.read);
    } catch (e) {
      if (sessionOver(e)) sessionEnded(endedText(e));
    }
  }, 250);
}

// Our marker moved on another device (a personal read event): what is
// before it is read here too.
function readElsewhere(ev) {
  const r = S.rooms.get(ev.room);
  if (!r || !Number.isSafeInteger(ev.read) || ev.read <= r.read) return;
  r.read = ev.read;
  const newest = newestId(r);
  if (newest && ev.read >= newest) {
    r.unread = 0;
    r.mentions = 0;
    saveUnread();
    renderRooms();
  } else {
    refreshRoomsSoon(); // some of it is still unread: the server counts
  }
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
  if (Object.hasOwn(EVENT_VIEWS, ev.type) && EVENT_VIEWS[ev.type].change) {
    if (!r.oldestChange || ev.id < r.oldestChange) r.oldestChange = ev.id;
    onChange(r, ev);
    return false;
  }
  if (!Object.hasOwn(EVENT_VIEWS, ev.type) || !EVENT_VIEWS[ev.type].render) return false;
  if (ev.client_id && S.me && ev.from === S.me.username) acked(ev.client_id);
  if (r.events.has(ev.id)) return false;
  r.events.set(ev.id, ev);
  const view = EVENT_VIEWS[ev.type];
  if (live && view.unread && ev.from !== S.me.username) {
    const mention = mentionsMe(ev);
    if (r.name !== S.current || document.hidden) {
      r.unread++;
      if (mention) r.mentions++;
      saveUnread();
      const msg = {
        title: r.kind === 'dm' ? displayName(ev.from) : t('notify.title', { name: displayName(ev.from), room: r.name }),
        body: ev.text || '',
        tag: 'natter:' + r.name,
      };
      notifyDesktop(roomPrefs(r.name), mention || r.kind === 'dm', msg, () => openRoom(r.name, { focus: true }));
    }
    if (mention || r.kind === 'dm') askNotifyInContext();
    if (r.name === S.current && view.speak) notifyAnnounce(view.speak(ev));
  }
  return true;
}

// A join or leave seen live: our own changes the room list, someone
// else's the member count.
function membershipChanged(r, ev, mine) {
  if (mine) {
    r.joined = ev.type === 'join';
    if (r.joined && ev.id > r.joinedId) r.joinedId = ev.id;
    refreshRoomsSoon();
  } else {
    r.members += ev.type === 'join' ? 1 : -1;
    if (r.name === S.current || r.memberList) loadMembers(r);
  }
}

// A kick or ban seen live: when it is us, the room leaves our list (its
// stream stops at this event) and we are told why; else the member list.
function removedBy(r, ev) {
  if (ev.user === S.me.username) {
    r.joined = false;
    if (r.memberList) r.memberList = r.memberList.filter((m) => m.username !== S.me.username);
    refreshRoomsSoon();
    renderRooms();
    if (r.name === S.current) renderMembers();
    const key = ev.type === 'ban' ? 'moderation.banned_you' : 'moderation.removed_you';
    showToast(t(key, { room: r.name, name: displayName(ev.from), reason: ev.reason || '—' }));
  } else {
    r.members = Math.max(0, r.members - 1);
    if (r.name === S.current || r.memberList) loadMembers(r);
  }
}

// Desktop notifications: asked for in context, the first time a mention or
// a direct message reaches us (never on page load); "Not now" is kept.
const NOTIFY_ASKED = 'natter:notify-asked';
function askNotifyInContext() {
  if (!('Notification' in window) || Notification.permission !== 'default') return;
  try {
    if (localStorage.getItem(NOTIFY_ASKED)) return;
  } catch (e) {
    return;
  }
  $('notify-ask').hidden = false;
}

function wireNotifyAsk() {
  const done = () => {
    $('notify-ask').hidden = true;
    try {
      localStorage.setItem(NOTIFY_ASKED, '1');
    } catch (e) {
      // private mode: we may ask again next time
    }
  };
  $('notify-ask-yes').addEventListener('click', async () => {
    done();
    await Notification.requestPermission().catch(() => {});
  });
  $('notify-ask-no').addEventListener('click', done);
}

// A short notice at the top of the window, gone after a while or on click.
function showToast(text) {
  const box = $('toast');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { box.hidden = true; }, 8000);
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
  // A moderator removed (kick) or removed and banned (ban) ev.user.
  kick: { render: moderationNode('event.kick'), live: removedBy },
  ban: { render: moderationNode('event.ban'), live: removedBy },
  // Personal: an admin disabled our account; the server ends this
  // connection right after it.
  disabled: {
    ephemeral: true,
    live: (r, ev) => sessionEnded(t('auth.disabled', { reason: ev.reason || '—' })),
  },
  // Personal: a moderator muted us in ev.room for ev.seconds (0: lifted).
  mute: {
    ephemeral: true,
    live: (r, ev) => showToast(ev.seconds > 0
      ? t('moderation.muted_you', {
        room: ev.room, name: displayName(ev.from), minutes: Math.max(1, Math.round(ev.seconds / 60)), reason: ev.reason || '—',
      })
      : t('moderation.unmuted_you', { room: ev.room, name: displayName(ev.from) })),
  },
  // Changes to a message: not shown as rows; the message shows its state.
  edit: { change: true },
  delete: { change: true },
  // {"target_id","emoji","op":"add"|"remove","count"}: the message's chips
  reaction: { change: true },
  dm: { render: noticeNode('event.dm'), live: () => refreshRoomsSoon() },
  // An invitation to a room, for us: {"type":"invite","room":..,"from":..}.
  invite: { ephemeral: true, live: () => loadInvites() },
  // Our read marker moved on another device: {"type":"read","room","read"}.
  read: { ephemeral: true, live: (r, ev) => readElsewhere(ev) },
  typing: { ephemeral: true, live: (r, ev) => onTyping(ev) },
  // Someone we share a room with (or we, on another device) changed:
  // {"type":"presence","from":..,"status":..,"status_text":..,"last_seen":..,"seq":..}.
  presence: { ephemeral: true, live: (r, ev) => presenceEvent(ev) },
  // The user's whole settings object and display name, changed on another
  // device: {"type":"settings","settings":{...},"display_name":"..."};
  // applied like a change made in another tab or read on a reconnect.
  settings: { ephemeral: true, live: (r, ev) => meReceive(ev) },
  profile: { ephemeral: true, live: (r, ev) => profileReceived(ev) },
};

function onEvent(ev) {
  if (!S.me || !ev || typeof ev !== 'object' || !ev.type) return;
  if (typeof ev.from === 'string') S.users.add(ev.from);
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
    markReadSoon(r);
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
  loadInvites();
  presenceLoad();
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
// Our settings and display name as the server holds them (GET /api/me, or
// a "settings" event after a change on another device).
function meReceive(me) {
  if (!S.me || !me || typeof me !== 'object') return;
  if (typeof me.status_choice === 'string') { // ours: a personal event or /api/me
    presenceMe(S.me.username, { ...me, status: me.status_choice === 'online' ? 'online' : me.status_choice });
  }
  settingsReceive(me.settings);
  if (me.avatar !== undefined && me.username === S.me.username && setAvatar(S.me.username, me.avatar)) avatarsChanged();
  if (typeof me.display_name === 'string' && me.display_name && me.display_name !== displayName(S.me.username)) {
    settingsChanged(['display_name'], me.display_name);
  }
}

async function reloadMe() {
  try {
    const res = await api('GET', '/api/me');
    const me = res.user || res;
    if (!S.me || me.username !== S.me.username) return;
    meReceive(me);
  } catch (e) {
    if (sessionOver(e)) sessionEnded(endedText(e));
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

function send(text, files = []) {
  const m = { client_id: newClientId(), room: S.current, text, ts: new Date().toISOString() };
  if (files.length) m.files = files;
  if (S.reply && S.reply.room === S.current) m.reply_to = S.reply.id;
  cancelReply();
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

function sendFailed(clientId, code, message, retryAfter = null) {
  S.inflight.delete(clientId);
  const m = S.outbox.find((x) => x.client_id === clientId);
  if (!m) return;
  if (PERMANENT.has(code)) {
    m.failed = friendly(new ApiError(422, code, message || code, retryAfter));
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
      const frame = { op: 'send', room: m.room, text: m.text, client_id: m.client_id };
      if (m.reply_to) frame.reply_to = m.reply_to;
      if (m.files) frame.files = m.files;
      if (!S.conn.send(frame)) break;
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
          body: { text: m.text, client_id: m.client_id, ...(m.reply_to ? { reply_to: m.reply_to } : {}), ...(m.files ? { files: m.files } : {}) },
        });
        S.flushRetry = 0;
        if (res && res.event) onEvent(res.event);
        acked(m.client_id);
      } catch (e) {
        S.inflight.delete(m.client_id);
        if (sessionOver(e)) return sessionEnded(endedText(e));
        if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          sendFailed(m.client_id, PERMANENT.has(e.code) ? e.code : 'invalid', e.message, e.retryAfter);
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
  const err = $('composer-error');
  const files = S.current && !S.edit ? readyFiles(S.current) : { ids: [], pending: 0 };
  if (files.pending && !text.trim()) {
    err.textContent = t('files.wait');
    return;
  }
  if ((!text.trim() && !files.ids.length) || !S.current) return;
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
  if (S.edit) {
    submitEdit(text);
    return;
  }
  ta.value = '';
  autoGrow();
  updateCharCount();
  // Others stop showing us as typing when the message arrives: the next
  // keystroke should announce us again at once.
  S.lastTypingSent = 0;
  send(text.trim() ? text : '', files.ids);
  if (files.ids.length) sentFiles(files.ids);
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
  if (S.current) $('composer-input').placeholder = composerPlaceholder(room(S.current));
  renderMessages();
  renderSearch();
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
  adminBind();
  settingsBind({
    changed: settingsChanged,
    rooms: joinedRoomNames,
    displayName: () => (S.me ? displayName(S.me.username) : ''),
    avatar: () => (S.me ? S.avatars.get(S.me.username) || null : null),
    avatarChanged: (url) => S.me && profileReceived({ from: S.me.username, avatar: url }),
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
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    runSearch($('search-input').value);
  });
  $('search-input').addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && SR.q) {
      e.preventDefault();
      e.stopPropagation();
      closeSearch();
    } else if (e.key === 'ArrowDown') {
      const first = document.querySelector('#search-list .search-hit');
      if (first) {
        e.preventDefault();
        first.focus();
      }
    }
  });
  $('search-list').addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const hits = [...document.querySelectorAll('#search-list .search-hit')];
    const i = hits.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    if (e.key === 'ArrowUp' && i === 0) return $('search-input').focus();
    hits[Math.min(hits.length - 1, Math.max(0, i + (e.key === 'ArrowDown' ? 1 : -1)))].focus();
  });
  $('search-close').addEventListener('click', () => {
    closeSearch();
    $('search-input').focus();
  });
  $('search-more').addEventListener('click', () => runSearch(SR.q, true));
  $('room-form').addEventListener('submit', submitRoomForm);
  $('dm-new').addEventListener('click', () => toggleDmForm());
  $('dm-form').addEventListener('submit', submitDmForm);
  $('invite-form').addEventListener('submit', submitInviteForm);
  for (const id of ['dm-users-input', 'invite-input']) {
    $(id).addEventListener('input', () => suggestUsers($(id)));
    $(id).addEventListener('focus', () => suggestUsers($(id)));
  }
  $('dm-form').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      toggleDmForm(false);
      $('dm-new').focus();
    }
  });
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
  ta.addEventListener('keydown', mentionKey); // first: it may take the key
  ta.addEventListener('input', mentionSuggest);
  ta.addEventListener('blur', () => setTimeout(mentionClose, 150));
  ta.addEventListener('keydown', (e) => {
    // Up in an empty composer edits one's last message; Escape stops.
    if (e.key === 'ArrowUp' && !ta.value && !S.edit && !e.altKey && !e.shiftKey && !e.ctrlKey && !e.metaKey) {
      const r = S.rooms.get(S.current);
      const last = r && lastOwnMessage(r);
      if (last) {
        e.preventDefault();
        startEdit(r.name, last.id);
      }
      return;
    }
    if (e.key === 'Escape' && S.edit) {
      e.preventDefault();
      e.stopPropagation();
      cancelEdit();
      return;
    }
    if (e.key === 'Escape' && S.reply) {
      e.preventDefault();
      e.stopPropagation();
      cancelReply();
      return;
    }
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
    if (ta.value.trim() && !S.edit) sendTyping();
  });
  $('composer').addEventListener('submit', submitComposer);
  $('composer-reply-cancel').addEventListener('click', () => {
    cancelReply();
    $('composer-input').focus();
  });
  initAttach({ room: () => S.current });
  $('composer-edit-cancel').addEventListener('click', () => {
    cancelEdit();
    $('composer-input').focus();
  });

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

  // What counts as the user being here, for presence (at most one report
  // a minute; coming back to the tab reports at once).
  for (const type of ['keydown', 'pointerdown']) {
    document.addEventListener(type, () => presenceActivity(), { passive: true, capture: true });
  }
  window.addEventListener('focus', () => presenceActivity(true));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) presenceActivity(true);
  });
  wireStatusPicker();
  wireNotifyAsk();

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && S.current && S.rooms.get(S.current)) {
      S.rooms.get(S.current).unread = 0;
      S.rooms.get(S.current).mentions = 0;
      saveUnread();
      renderRooms();
      markReadSoon(S.rooms.get(S.current));
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
