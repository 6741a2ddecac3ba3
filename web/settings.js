// settings.js: the person's own settings, and the dialog that edits them.
//
// Settings live on the server, in the user's `settings` object (PATCH
// /api/me merges it key by key; null removes a key), so they follow the
// person to every device. One table, SETTINGS, names each setting, its
// values and default; it drives reading the object (anything unknown or
// out of range reads as the default), the dialog, and applying. Per-room
// notification choices are keys "room:<name>" holding {notify, muted}
// (a colon is never part of a room name), so that two devices changing
// two rooms do not overwrite each other. Keys this client does not know
// are kept as they are.
//
// A change applies at once in this tab, goes to the other tabs of this
// browser over a BroadcastChannel, and is saved to the server shortly
// after (changes made meanwhile go in the same PATCH; a failed save is
// retried). Settings that arrive from elsewhere (another tab, GET /api/me
// on a reconnect, a `settings` event on the stream) all go through
// settingsReceive(), where this tab's unsaved changes win.
//
// The look (theme, density, font size, language, time format) is also
// kept per browser (store.js uiPrefs) so that the next page load, the
// login page included, has it from the start.

import { api, friendly } from './api.js';
import { t, i18nSetLanguage, i18nSetHourCycle, i18nOnChange, i18nApplyPage } from './i18n.js';
import { uiPrefs } from './store.js';
import { TusUpload } from './upload.js';

// The settings, in the order the dialog shows them. values: the choices
// (the first is not necessarily the default); min/max: a number.
export const SETTINGS = [
  { key: 'theme', section: 'appearance', values: ['system', 'light', 'dark'], def: 'system', look: true },
  { key: 'density', section: 'appearance', values: ['comfortable', 'compact'], def: 'comfortable', look: true },
  { key: 'font_size', section: 'appearance', min: 14, max: 20, def: 15, look: true },
  { key: 'language', section: 'language', values: ['auto', 'en', 'zh-CN'], def: 'auto', look: true },
  { key: 'time_format', section: 'language', values: ['auto', '12', '24'], def: 'auto', look: true },
  { key: 'send_key', section: 'writing', values: ['enter', 'ctrl_enter'], def: 'enter' },
];
const SECTIONS = ['appearance', 'language', 'writing'];
export const NOTIFY_LEVELS = ['all', 'mentions', 'none'];
const ROOM_KEY = 'room:';
const SAVE_DELAY = 300;
const RETRY_DELAY = 5000;
// The language names are written in their own language.
const LANGUAGE_TAG = { en: 'en', 'zh-CN': 'zh-CN' };

const byKey = new Map(SETTINGS.map((s) => [s.key, s]));

const st = {
  user: null,     // username while someone is logged in
  raw: {},        // the settings object as the server holds it, plus pending
  pending: {},    // key -> value (null: remove) not yet saved
  inflight: {},   // what the PATCH under way sends
  saveTimer: null,
  saving: null,   // the promise of the PATCH under way
  channel: null,
  hooks: { changed: () => {}, rooms: () => [], displayName: () => '', avatar: () => null, avatarChanged: () => {} },
  opener: null,
};

// One setting's value from a settings object, always valid.
function valueOf(raw, key) {
  const s = byKey.get(key);
  const v = raw[key];
  if (s.values) return s.values.includes(v) ? v : s.def;
  return Number.isInteger(v) && v >= s.min && v <= s.max ? v : s.def;
}

export function settingsGet(key) {
  return valueOf(st.raw, key);
}

// {notify: 'all'|'mentions'|'none', muted: bool} for a room.
export function roomPrefs(name) {
  const v = st.raw[ROOM_KEY + name];
  const o = v && typeof v === 'object' ? v : {};
  return {
    notify: NOTIFY_LEVELS.includes(o.notify) ? o.notify : 'all',
    muted: o.muted === true,
  };
}

// --- applying ------------------------------------------------------------------

function look(raw) {
  const o = {};
  for (const s of SETTINGS) if (s.look) o[s.key] = valueOf(raw, s.key);
  return o;
}

function applyDocument(l) {
  const root = document.documentElement;
  if (l.theme === 'system') delete root.dataset.theme;
  else root.dataset.theme = l.theme;
  root.dataset.density = l.density;
  root.style.fontSize = l.font_size + 'px';
  i18nSetHourCycle(l.time_format);
  return i18nSetLanguage(l.language);
}

// Make raw the settings in force; tell the owner which keys changed.
// redraw: draw the open dialog again (not for a change made in it, which
// shows already: redrawing would pull a slider from under the pointer).
function adopt(raw, redraw) {
  const before = st.raw;
  st.raw = raw;
  const changed = [];
  for (const k of new Set([...Object.keys(before), ...Object.keys(raw)])) {
    if (JSON.stringify(before[k]) !== JSON.stringify(raw[k])) changed.push(k);
  }
  const l = look(raw);
  uiPrefs.set(l);
  applyDocument(l).catch((e) => status(t('settings.language_failed', { error: friendly(e) }), true));
  if (changed.length) st.hooks.changed(changed);
  if (changed.length && redraw && isOpen()) render();
}

// At page load, before anyone is known: the look this browser last had.
// Resolves once the language's catalog is loaded (rejects if it cannot be).
export function settingsBoot() {
  return applyDocument(look(uiPrefs.get()));
}

// Someone logged in (user as GET /api/me returns it).
export function settingsStart(user) {
  st.user = user.username;
  st.pending = {};
  st.inflight = {};
  adopt(user.settings && typeof user.settings === 'object' ? { ...user.settings } : {}, true);
}

// Logging out: save what waits, then forget the person (the look stays).
export async function settingsStop() {
  await flush().catch(() => {});
  clearTimeout(st.saveTimer);
  st.user = null;
  st.pending = {};
  st.raw = {};
  if (isOpen()) $('settings').close();
}

// The whole settings object, from the server (GET /api/me, or a
// `settings` event on the stream) or from another tab. Changes this tab
// has not saved yet (or is saving) stay on top.
export function settingsReceive(settings) {
  if (!st.user || !settings || typeof settings !== 'object') return;
  const raw = { ...settings };
  for (const [k, v] of Object.entries({ ...st.inflight, ...st.pending })) {
    if (v === null) delete raw[k];
    else raw[k] = v;
  }
  adopt(raw, true);
}

// --- changing and saving -------------------------------------------------------------

function change(key, value) {
  const raw = { ...st.raw };
  if (value === null) delete raw[key];
  else raw[key] = value;
  st.pending[key] = value;
  adopt(raw, false);
  if (st.channel) st.channel.postMessage({ user: st.user, settings: st.raw });
  saveSoon(SAVE_DELAY);
}

// Set one setting (a key of SETTINGS). The default is stored as no key.
export function settingsSet(key, value) {
  const s = byKey.get(key);
  if (!s || !st.user) return;
  change(key, value === s.def ? null : value);
}

// Set a room's notification level and/or mute.
export function settingsSetRoom(name, patch) {
  if (!st.user) return;
  const p = { ...roomPrefs(name), ...patch };
  const v = {};
  if (p.notify !== 'all') v.notify = p.notify;
  if (p.muted) v.muted = true;
  change(ROOM_KEY + name, Object.keys(v).length ? v : null);
}

function saveSoon(ms) {
  clearTimeout(st.saveTimer);
  st.saveTimer = setTimeout(() => flush().catch(() => {}), ms);
}

// Send what waits in one PATCH; a save under way is waited for first.
// On failure the changes wait again and are retried later (and with the
// next change). Resolves when saved, rejects when that failed.
function flush() {
  clearTimeout(st.saveTimer);
  if (st.saving) return st.saving.catch(() => {}).then(flush);
  if (!st.user || !Object.keys(st.pending).length) return Promise.resolve();
  st.saving = save().finally(() => {
    st.saving = null;
  });
  return st.saving;
}

async function save() {
  const sent = st.pending;
  const user = st.user;
  st.pending = {};
  st.inflight = sent;
  let res;
  try {
    res = await api('PATCH', '/api/me', { body: { settings: sent } });
  } catch (e) {
    st.inflight = {};
    // Newer changes made meanwhile win over what failed.
    if (st.user === user) {
      st.pending = { ...sent, ...st.pending };
      status(t('settings.save_failed', { error: friendly(e) }), true);
      if (e.status !== 401 && !(e.status === 403 && e.code === 'disabled')) saveSoon(RETRY_DELAY);
    }
    throw e;
  }
  st.inflight = {};
  if (st.user !== user) return;
  status(t('settings.saved'));
  const me = res && (res.user || res);
  if (me && me.settings) settingsReceive(me.settings);
  if (Object.keys(st.pending).length) saveSoon(0);
}

// Try now what waits (the connection is back).
export function settingsFlush() {
  return flush().catch(() => {});
}

async function saveDisplayName(name) {
  const clean = name.trim();
  if (!clean || clean === st.hooks.displayName()) return;
  try {
    const res = await api('PATCH', '/api/me', { body: { display_name: clean } });
    const me = res && (res.user || res);
    const dn = (me && me.display_name) || clean;
    st.hooks.changed(['display_name'], dn);
    if (st.channel) st.channel.postMessage({ user: st.user, display_name: dn });
    status(t('settings.saved'));
  } catch (e) {
    status(t('settings.save_failed', { error: friendly(e) }), true);
  }
}

// --- the dialog ---------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k in e && !k.startsWith('aria') && k !== 'for' && k !== 'lang') e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...kids);
  return e;
}

function isOpen() {
  return $('settings').open;
}

function status(text, bad = false) {
  const s = $('settings-status');
  s.textContent = text;
  s.classList.toggle('bad', bad);
}

function optionLabel(key, value) {
  const label = el('span', { text: t(`settings.${key}.${value}`) });
  if (key === 'language' && LANGUAGE_TAG[value]) label.lang = LANGUAGE_TAG[value];
  return label;
}

function choiceGroup(s) {
  const cur = settingsGet(s.key);
  const fs = el('fieldset', { class: 'set-group' }, el('legend', { text: t('settings.' + s.key) }));
  const opts = el('div', { class: 'set-options' });
  for (const v of s.values) {
    const input = el('input', { type: 'radio', name: 'set-' + s.key, id: `set-${s.key}-${v}`, value: v });
    input.checked = v === cur;
    input.addEventListener('change', () => input.checked && settingsSet(s.key, v));
    opts.append(el('label', { class: 'set-option', for: input.id }, input, optionLabel(s.key, v)));
  }
  fs.append(opts);
  return fs;
}

function rangeRow(s) {
  const id = 'set-' + s.key;
  const cur = settingsGet(s.key);
  const out = el('output', { for: id, class: 'set-value', text: t('settings.px', { n: cur }) });
  const input = el('input', { type: 'range', id, min: String(s.min), max: String(s.max), step: '1', value: String(cur) });
  input.setAttribute('aria-valuetext', t('settings.px', { n: cur }));
  input.addEventListener('input', () => {
    const n = Number(input.value);
    out.textContent = t('settings.px', { n });
    input.setAttribute('aria-valuetext', out.textContent);
    settingsSet(s.key, n);
  });
  return el('div', { class: 'set-group set-range' },
    el('label', { for: id, class: 'set-label', text: t('settings.' + s.key) }), el('div', { class: 'set-range-row' }, input, out));
}

// The avatar: an image uploaded with the tus uploader (so a proxy that
// refuses large bodies passes it), then made the avatar; or removed.
const AVATAR_TYPES = 'image/png,image/jpeg,image/gif,image/webp';
let avatarBusy = false;

async function avatarUpload(file) {
  if (!file || avatarBusy) return;
  avatarBusy = true;
  status(t('settings.avatar.uploading', { pct: 0 }));
  try {
    const up = new TusUpload(file, {
      onProgress: (sent, total) => status(t('settings.avatar.uploading', { pct: Math.floor((100 * sent) / Math.max(1, total)) })),
    });
    const f = await up.start();
    const res = await api('PUT', '/api/me/avatar', { body: { upload: f.id } });
    st.hooks.avatarChanged(res.avatar);
    status(t('settings.avatar.saved'));
  } catch (e) {
    status(t('settings.avatar.failed', { error: friendly(e) }), true);
  } finally {
    avatarBusy = false;
    if (isOpen()) render();
  }
}

async function avatarRemove() {
  try {
    const res = await api('DELETE', '/api/me/avatar');
    st.hooks.avatarChanged(res.avatar);
    status(t('settings.avatar.removed'));
  } catch (e) {
    status(t('settings.avatar.failed', { error: friendly(e) }), true);
  }
  if (isOpen()) render();
}

function avatarRow() {
  const url = st.hooks.avatar();
  const preview = el('div', { class: 'set-avatar-preview avatar', 'aria-hidden': 'true' });
  if (url) preview.append(el('img', { class: 'avatar-img', src: url, alt: '' }));
  else preview.textContent = (st.hooks.displayName()[0] || '?').toUpperCase();
  // (reached through the button; the label names it for assistive tech)
  const input = el('input', { type: 'file', id: 'set-avatar-file', accept: AVATAR_TYPES, class: 'set-avatar-input', tabIndex: -1, 'aria-labelledby': 'set-avatar-label' });
  input.addEventListener('change', () => {
    const f = input.files && input.files[0];
    input.value = '';
    avatarUpload(f);
  });
  const choose = el('button', { type: 'button', class: 'btn', id: 'set-avatar-choose', text: t(url ? 'settings.avatar.change' : 'settings.avatar.choose') });
  choose.disabled = avatarBusy;
  choose.addEventListener('click', () => input.click());
  const row = el('div', { class: 'set-avatar-row' }, preview, input, choose);
  if (url) {
    const remove = el('button', { type: 'button', class: 'btn btn-danger', id: 'set-avatar-remove', text: t('settings.avatar.remove') });
    remove.disabled = avatarBusy;
    remove.addEventListener('click', avatarRemove);
    row.append(remove);
  }
  return el('div', { class: 'set-group set-avatar' },
    el('span', { class: 'set-label', id: 'set-avatar-label', text: t('settings.avatar') }), row,
    el('p', { class: 'set-note', text: t('settings.avatar.hint') }));
}

function profileSection() {
  const input = el('input', { type: 'text', id: 'set-display-name', maxLength: 64, value: st.hooks.displayName(), autocomplete: 'nickname' });
  const form = el('form', { class: 'set-name-row', novalidate: true }, input,
    el('button', { type: 'submit', class: 'btn', id: 'set-display-name-save', text: t('settings.display_name.save') }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    saveDisplayName(input.value);
  });
  return el('section', { class: 'set-section', 'aria-labelledby': 'set-h-profile' },
    el('h3', { id: 'set-h-profile', text: t('settings.section.profile') }),
    el('label', { for: input.id, class: 'set-label', text: t('settings.display_name') }), form, avatarRow());
}

function roomsSection() {
  const sec = el('section', { class: 'set-section', 'aria-labelledby': 'set-h-notify' },
    el('h3', { id: 'set-h-notify', text: t('settings.section.notifications') }));
  const names = st.hooks.rooms();
  if (!names.length) sec.append(el('p', { class: 'set-note', text: t('settings.rooms.none') }));
  const list = el('ul', { class: 'set-rooms' });
  for (const name of names) {
    const p = roomPrefs(name);
    const sel = el('select', { id: 'set-notify-' + name, 'aria-label': t('settings.rooms.notify_for', { room: name }) });
    for (const v of NOTIFY_LEVELS) {
      const o = el('option', { value: v, text: t('settings.notify.' + v) });
      o.selected = v === p.notify;
      sel.append(o);
    }
    sel.addEventListener('change', () => settingsSetRoom(name, { notify: sel.value }));
    const mute = el('input', { type: 'checkbox', id: 'set-mute-' + name, 'aria-label': t('settings.rooms.mute_for', { room: name }) });
    mute.checked = p.muted;
    mute.addEventListener('change', () => settingsSetRoom(name, { muted: mute.checked }));
    list.append(el('li', { class: 'set-room' },
      el('span', { class: 'set-room-name', text: '#' + name }), sel,
      el('label', { class: 'set-mute', for: mute.id },
        mute, el('span', { text: t('settings.rooms.mute') }))));
  }
  if (names.length) sec.append(list);
  sec.append(desktopRow());
  return sec;
}

// Desktop notifications need the browser's permission, asked for once.
function desktopRow() {
  const row = el('p', { class: 'set-note', id: 'set-desktop' });
  if (!('Notification' in window)) {
    row.textContent = t('settings.desktop.unsupported');
  } else if (Notification.permission === 'granted') {
    row.textContent = t('settings.desktop.on');
  } else if (Notification.permission === 'denied') {
    row.textContent = t('settings.desktop.blocked');
  } else {
    const b = el('button', { type: 'button', class: 'btn btn-small', id: 'set-desktop-ask', text: t('settings.desktop.ask') });
    b.addEventListener('click', async () => {
      await Notification.requestPermission().catch(() => {});
      render();
      $('set-desktop').focus();
    });
    row.append(b);
  }
  row.tabIndex = -1;
  return row;
}

// Draw the dialog's body from the table, keeping the focus where it was.
function render() {
  const focused = document.activeElement && document.activeElement.id;
  const body = $('settings-body');
  const parts = [profileSection()];
  for (const sec of SECTIONS) {
    const s = el('section', { class: 'set-section', 'aria-labelledby': 'set-h-' + sec },
      el('h3', { id: 'set-h-' + sec, text: t('settings.section.' + sec) }));
    for (const row of SETTINGS.filter((x) => x.section === sec)) s.append(row.values ? choiceGroup(row) : rangeRow(row));
    parts.push(s);
  }
  parts.push(roomsSection());
  body.replaceChildren(...parts);
  i18nApplyPage($('settings'));
  if (focused && $(focused) && $('settings').contains($(focused))) $(focused).focus();
}

// Open the dialog; the focus goes back to opener when it closes.
export function settingsOpen(opener) {
  const d = $('settings');
  if (d.open) return;
  st.opener = opener || document.activeElement;
  status('');
  render();
  d.showModal();
  const first = d.querySelector('input:checked, input, select, button');
  if (first) first.focus();
}

// Once, at page load. hooks: changed(keys, value) after settings changed
// (keys of the settings object, or 'display_name' with the new name);
// rooms(): the names of the rooms the person is in, in the order shown;
// displayName(): the person's display name.
export function settingsBind(hooks) {
  Object.assign(st.hooks, hooks);
  i18nOnChange(() => {
    if (isOpen()) render();
  });
  if ('BroadcastChannel' in window) {
    st.channel = new BroadcastChannel('natter:settings');
    st.channel.onmessage = (e) => {
      const m = e.data || {};
      if (!st.user || m.user !== st.user) return;
      if (m.settings) settingsReceive(m.settings);
      if (typeof m.display_name === 'string') st.hooks.changed(['display_name'], m.display_name);
    };
  }
  const d = $('settings');
  $('settings-close').addEventListener('click', () => d.close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  d.addEventListener('click', (e) => {
    if (e.target !== d) return;
    const r = d.getBoundingClientRect();
    if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) d.close();
  });
  d.addEventListener('close', () => {
    flush().catch(() => {});
    if (st.opener && st.opener.isConnected) st.opener.focus();
    st.opener = null;
  });
}
