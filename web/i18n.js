// i18n.js: the client's words, numbers and dates in the reader's language.
//
// Every string a person sees comes from a message catalog, one plain JSON
// file per language under i18n/ (served as it is: no build step). A
// catalog maps a key to a string with {placeholders}, or, for a string
// that depends on a count, to an object of Intl.PluralRules categories
// ({"one": "…", "other": "…"}). English is always loaded too, as the
// fallback for a key a catalog lacks; the e2e suite checks that both
// catalogs hold the same keys, so that fallback is a safety net only.
//
// The language is the person's choice in settings, or else the first of
// navigator.languages that natter speaks (zh, zh-CN, zh-Hans, zh-SG: zh-CN;
// English otherwise). Times follow the locale's 12/24-hour habit unless the
// person chose one. Changing either re-renders the static page (elements
// marked data-i18n*) at once and tells the listeners, which redraw what
// they drew: no reload.
//
// This module knows nothing about rooms or the server's API; it only
// fetches its own catalogs (connect-src 'self').

export const LANGUAGES = ['en', 'zh-CN'];
const CATALOG_URL = '/static/i18n/';

const catalogs = new Map(); // language -> its catalog, once loaded
let lang = null;        // the active language, once a catalog is loaded
let hourPref = 'auto'; // 'auto' | '12' | '24'
let fmt = null;         // formatters for lang and hourPref, built lazily
const listeners = new Set();

// The language for a preference: one of LANGUAGES, or 'auto' (or anything
// else) for the first match in the browser's list.
export function i18nPick(pref, langs = navigator.languages || [navigator.language]) {
  if (LANGUAGES.includes(pref)) return pref;
  for (const l of langs) {
    const tag = String(l || '').toLowerCase();
    if (/^zh(-(cn|sg|hans)(-.*)?)?$/.test(tag)) return 'zh-CN';
    if (tag === 'en' || tag.startsWith('en-')) return 'en';
  }
  return 'en';
}

async function load(which) {
  if (catalogs.has(which)) return catalogs.get(which);
  const res = await fetch(CATALOG_URL + which + '.json', { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`catalog ${which}: HTTP ${res.status}`);
  const cat = await res.json();
  catalogs.set(which, cat);
  return cat;
}

// Load the catalogs for a preference and make it the active language.
// Rejects (leaving the previous language active) when a catalog cannot
// be fetched.
export async function i18nSetLanguage(pref) {
  const want = i18nPick(pref);
  await load('en');
  await load(want);
  if (want === lang) return;
  lang = want;
  fmt = null;
  document.documentElement.lang = lang;
  i18nApplyPage();
  notify();
}

// Whether a catalog is loaded (t() has words to give).
export function i18nReady() {
  return lang !== null;
}

export function i18nLanguage() {
  return lang || 'en';
}

// '12', '24' or 'auto' (the locale's habit).
export function i18nSetHourCycle(pref) {
  const p = pref === '12' || pref === '24' ? pref : 'auto';
  if (p === hourPref) return;
  hourPref = p;
  fmt = null;
  notify();
}

// fn() runs after the language or the hour cycle changed.
export function i18nOnChange(fn) {
  listeners.add(fn);
}

function notify() {
  for (const fn of listeners) fn();
}

function lookup(key) {
  const cat = lang && catalogs.get(lang);
  if (cat && Object.hasOwn(cat, key)) return cat[key];
  const en = catalogs.get('en');
  if (en && Object.hasOwn(en, key)) return en[key];
  return null;
}

// The text for key, with {name} placeholders filled from vars. A plural
// entry picks its form by vars.n. Numbers are formatted for the locale.
export function t(key, vars = {}) {
  let s = lookup(key);
  if (s == null) return key;
  if (typeof s === 'object') {
    const n = Number(vars.n) || 0;
    s = s[formats().plural.select(n)] ?? s.other ?? '';
  }
  return s.replace(/\{(\w+)\}/g, (m, name) => {
    if (!Object.hasOwn(vars, name)) return m;
    const v = vars[name];
    return typeof v === 'number' ? formats().number.format(v) : String(v);
  });
}

// Whether the active catalogs have a text for key.
export function i18nHas(key) {
  return lookup(key) != null;
}

// --- the static page -------------------------------------------------------
// data-i18n="key" sets an element's text; data-i18n-label, -placeholder
// and -title set aria-label, placeholder and title.

const ATTRS = [
  ['i18nLabel', 'aria-label'],
  ['i18nPlaceholder', 'placeholder'],
  ['i18nTitle', 'title'],
];

export function i18nApplyPage(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const [data, attr] of ATTRS) {
    const sel = '[data-' + data.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()) + ']';
    for (const el of root.querySelectorAll(sel)) el.setAttribute(attr, t(el.dataset[data]));
  }
}

// --- numbers and dates -----------------------------------------------------

// Dates and times of an English interface follow the browser's own
// English (en-GB writes 24-hour times); Chinese is zh-CN.
function dateLocale() {
  const nav = navigator.language || '';
  if (i18nLanguage() === 'en' && /^en(-|$)/i.test(nav)) return nav;
  return i18nLanguage();
}

function formats() {
  if (fmt) return fmt;
  const loc = dateLocale();
  const hc = hourPref === '12' ? { hourCycle: 'h12' } : hourPref === '24' ? { hourCycle: 'h23' } : {};
  fmt = {
    plural: new Intl.PluralRules(i18nLanguage()),
    number: new Intl.NumberFormat(i18nLanguage()),
    time: new Intl.DateTimeFormat(loc, { hour: 'numeric', minute: '2-digit', ...hc }),
    full: new Intl.DateTimeFormat(loc, { dateStyle: 'full', timeStyle: 'medium', ...hc }),
    day: new Intl.DateTimeFormat(loc, { weekday: 'long', month: 'long', day: 'numeric' }),
    dayYear: new Intl.DateTimeFormat(loc, { year: 'numeric', month: 'long', day: 'numeric' }),
    relDay: new Intl.RelativeTimeFormat(i18nLanguage(), { numeric: 'auto' }),
    relShort: new Intl.RelativeTimeFormat(i18nLanguage(), { numeric: 'always', style: 'short' }),
  };
  return fmt;
}

// "3:04 PM" / "15:04"
export function timeShort(d) {
  return formats().time.format(d);
}

// The whole date and time, for a tooltip.
export function timeFull(d) {
  return formats().full.format(d);
}

function capitalize(s) {
  return s.charAt(0).toLocaleUpperCase(i18nLanguage()) + s.slice(1);
}

// A day separator: "Today", "Yesterday", "Monday, 30 November", or with
// the year for another year.
export function dayLabel(d, now = new Date()) {
  const midnight = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate());
  const days = Math.round((midnight(d) - midnight(now)) / 86400000);
  if (days === 0 || days === -1) return capitalize(formats().relDay.format(days, 'day'));
  if (d.getFullYear() !== now.getFullYear()) return formats().dayYear.format(d);
  return formats().day.format(d);
}

// "in 5 sec." / "5秒后": a countdown.
export function inSeconds(n) {
  return formats().relShort.format(Math.max(0, Math.round(n)), 'second');
}

// --- errors from the server -------------------------------------------------

// The text for a server error: the catalog's words for its stable code
// (error.<code>), else the server's own (English) message, else a generic
// line with the status. vars may carry {n}: the seconds of a rate limit.
export function errorText(code, message, status, vars = {}) {
  if (code && i18nHas('error.' + code)) return t('error.' + code, vars);
  // No JSON answer (a proxy's page): its status line is no message.
  if (message && !/^http_/.test(code || '')) return message;
  return t('error.http', { status: status || 0 });
}
