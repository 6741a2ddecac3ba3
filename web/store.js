// store.js: what the client keeps in localStorage, so that it survives a
// reload: the cursor (last event id seen), the outbox of messages not yet
// acknowledged, unread counts and the open room, all per user; and, per
// server (localStorage is per origin), which transport worked last time
// and the look of the page. Storage can be full or disabled: every write
// is best effort.

const PREFIX = 'natter:';

function read(key, fallback) {
  try {
    const v = localStorage.getItem(PREFIX + key);
    return v == null ? fallback : JSON.parse(v);
  } catch (e) {
    return fallback;
  }
}

function write(key, value) {
  try {
    if (value === undefined || value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch (e) {
    /* quota or privacy mode: keep going in memory */
  }
}

// Per server: {transport: "ws"|"sse"|"poll", reason, at: ms}.
export const transportPref = {
  get: () => read('transport', null),
  set: (v) => write('transport', v),
};

// Test and debugging knobs, e.g. {"upgradeFirstMs": 2000}. Unset in use.
export function tuning() {
  const t = read('tuning', null);
  return t && typeof t === 'object' ? t : {};
}

// Per user state.
export class UserStore {
  constructor(username) {
    this.u = 'u:' + username + ':';
  }
  get cursor() {
    const c = read(this.u + 'cursor', null);
    return Number.isSafeInteger(c) && c >= 0 ? c : null;
  }
  set cursor(v) {
    write(this.u + 'cursor', v);
  }
  get outbox() {
    const o = read(this.u + 'outbox', []);
    return Array.isArray(o) ? o.filter((m) => m && m.client_id && m.room && typeof m.text === 'string') : [];
  }
  set outbox(list) {
    write(this.u + 'outbox', list.length ? list : null);
  }
  get unread() {
    const u = read(this.u + 'unread', {});
    return u && typeof u === 'object' ? u : {};
  }
  set unread(map) {
    write(this.u + 'unread', map);
  }
  // Of the unread, those that mention this user (room -> count).
  get mentions() {
    const u = read(this.u + 'mentions', {});
    return u && typeof u === 'object' ? u : {};
  }
  set mentions(map) {
    write(this.u + 'mentions', Object.keys(map).length ? map : null);
  }
  get room() {
    return read(this.u + 'room', null);
  }
  set room(name) {
    write(this.u + 'room', name);
  }
  // Used on logout: nothing of this user stays in the browser.
  clear() {
    for (const k of ['cursor', 'outbox', 'unread', 'mentions', 'room']) write(this.u + k, null);
  }
}

// Outbox changes made by another tab of the same user.
export function onStorageChange(fn) {
  window.addEventListener('storage', (e) => {
    if (e.key && e.key.startsWith(PREFIX)) fn(e.key.slice(PREFIX.length));
  });
}

// Per browser: the look of the last person who used it here (theme,
// density, font size, language, time format), so that the page has it
// from the first paint, the login page included. Nothing private.
export const uiPrefs = {
  get: () => {
    const v = read('ui', null);
    return v && typeof v === 'object' ? v : {};
  },
  set: (v) => write('ui', v),
};
