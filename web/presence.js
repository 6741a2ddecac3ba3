// presence: who is online, away, busy (dnd) or offline, and their status
// text, as the server tells it (a "presence" event on any transport, the
// snapshot GET /api/presence after each hello, room members); the
// activity reports that keep us from turning away; our own status picker.
// The newest word per user wins by its seq, so a snapshot that arrives
// after a live event never undoes it.
import { api } from './api.js';
import { t } from './i18n.js';

const ACTIVITY_EVERY = 60 * 1000; // at most one report a minute while active
const STATUSES = ['online', 'away', 'dnd', 'offline'];

const known = new Map(); // username -> {status, status_text, last_seen, seq}
let onChange = () => {};
let sendOp = () => false;
let lastReport = 0;

// changed(usernames): called after presence of some users changed.
// send(obj): a WebSocket command, false when there is no WebSocket.
export function presenceStart(changed, send) {
  onChange = changed;
  sendOp = send;
  known.clear();
  lastReport = 0;
}

// Apply one user's presence (an event, a member, a snapshot row); true
// when it changed what we show.
function apply(user, p) {
  if (typeof user !== 'string' || !p || !STATUSES.includes(p.status)) return false;
  const cur = known.get(user);
  const seq = Number.isSafeInteger(p.seq) ? p.seq : 0;
  if (cur && seq && cur.seq > seq) return false; // older than what we have
  if (cur && !seq && cur.seq) return false; // an unversioned read loses to any event
  known.set(user, {
    status: p.status,
    status_text: typeof p.status_text === 'string' ? p.status_text : '',
    last_seen: p.last_seen || null,
    seq: seq || (cur ? cur.seq : 0),
  });
  return !cur || cur.status !== p.status || cur.status_text !== (p.status_text || '');
}

export function presenceEvent(ev) {
  if (apply(ev.from, ev)) onChange([ev.from]);
}

export function presenceMembers(list) {
  const changed = list.filter((m) => apply(m.username, m)).map((m) => m.username);
  if (changed.length) onChange(changed);
}

// After each hello: everyone we share a room with, so a reconnect leaves
// no gap.
export async function presenceLoad() {
  try {
    const res = await api('GET', '/api/presence');
    const changed = (res.presence || []).filter((p) => apply(p.user, p)).map((p) => p.user);
    if (changed.length) onChange(changed);
  } catch (e) {
    // the next hello tries again; members carry it meanwhile
  }
}

// Our own state, from GET/PATCH /api/me or a settings event (our own
// presence events are not sent to us).
export function presenceMe(user, me) {
  if (!me || typeof me.status !== 'string') return;
  const cur = known.get(user);
  known.set(user, {
    status: me.status,
    status_text: typeof me.status_text === 'string' ? me.status_text : '',
    last_seen: me.last_seen || null,
    seq: cur ? cur.seq : 0,
  });
  onChange([user]);
}

export function presenceOf(user) {
  return known.get(user) || { status: 'offline', status_text: '', last_seen: null, seq: 0 };
}

// A status dot: its class says the state, its label says it in words.
export function presenceDot(user, h) {
  const p = presenceOf(user);
  const dot = h('span', 'presence-dot presence-' + p.status);
  dot.setAttribute('role', 'img');
  dot.setAttribute('aria-label', t('presence.' + p.status));
  dot.title = p.status_text ? t('presence.' + p.status) + ' — ' + p.status_text : t('presence.' + p.status);
  return dot;
}

// The user did something (typed, clicked, came back to the tab): tell the
// server at most once a minute, or at once when we were away.
export function presenceActivity(force = false) {
  const now = Date.now();
  if (!force && now - lastReport < ACTIVITY_EVERY) return;
  lastReport = now;
  if (!sendOp({ op: 'activity' })) api('POST', '/api/activity', { body: {} }).catch(() => {});
}

// Our own choice: status "online" (automatic), "away" or "dnd", and text.
export async function presenceChoose(status, text) {
  return api('PATCH', '/api/me', { body: { status, status_text: text || null } });
}
