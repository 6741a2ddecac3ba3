// admin.js: the admin page, for server admins only (the Admin button in
// the user menu shows for them; the server answers 403 to anyone else).
// Three tabs: statistics (GET /api/admin/stats, drawn as SVG by hand: no
// chart library), users (GET /api/admin/users, disable and enable with a
// reason, grant and revoke admin) and the audit log (GET /api/admin/audit).
//
// Every chart is a <figure>: an <svg role="img"> with a <title> and a
// <desc> that says in words what it shows, and the same figures as a table
// under a <details> for screen readers, keyboards and copying. Colours
// come from style.css classes (series s0..s5), so both themes work.

import { api, friendly, enc } from './api.js';
import { t, i18nOnChange, i18nApplyPage } from './i18n.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const TABS = ['stats', 'users', 'audit'];
const RANGES = [7, 30, 1];
const SERIES_MAX = 6; // more rooms or reasons than this fold into "other"

const st = {
  me: null,       // the logged-in user, {username, admin}
  tab: 'stats',
  days: 7,
  stats: null,    // the last answer of /api/admin/stats
  users: [], usersMore: false, usersQuery: '',
  audit: [], auditNext: 0,
  opener: null,
  busy: null,     // the tab whose request is under way
  disabling: '',  // the user whose disable reason is being asked
};

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function s(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

function status(text, bad) {
  const p = $('admin-status');
  p.textContent = text || '';
  p.classList.toggle('bad', !!bad);
}

const num = (n) => t('admin.num', { n });
const ms = (n) => t('admin.ms', { n: Math.round(n * 10) / 10 });

// "2026-12-01" or a bucket's unix seconds as a short label.
function dayLabel(d) {
  const date = typeof d === 'number' ? new Date(d * 1000) : new Date(d + 'T00:00:00Z');
  return date.toLocaleDateString(document.documentElement.lang || undefined, { month: 'numeric', day: 'numeric', timeZone: 'UTC' });
}
function bucketLabel(tsec, bucket) {
  if (bucket >= 86400) return dayLabel(tsec);
  const d = new Date(tsec * 1000);
  return d.toLocaleTimeString(document.documentElement.lang || undefined, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' });
}

// --- charts ------------------------------------------------------------------

const W = 560, H = 220, PAD = { l: 58, r: 10, t: 10, b: 34 };

// A nice upper bound for the y axis and its ticks.
function scale(max) {
  if (max <= 0) return { top: 1, ticks: [0, 1] };
  const step = Math.pow(10, Math.floor(Math.log10(max)));
  const top = [1, 2, 5, 10].map((m) => m * step).find((v) => v >= max) || max;
  return { top, ticks: [0, top / 2, top] };
}

function axes(svg, labels, top, ticks, fmt = num) {
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  for (const v of ticks) {
    const y = PAD.t + ih - (v / top) * ih;
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: PAD.l - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, fmt(v)));
  }
  const every = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((l, i) => {
    if (i % every) return;
    const x = PAD.l + (iw * (i + 0.5)) / labels.length;
    svg.append(s('text', { x, y: H - PAD.b + 18, class: 'tick', 'text-anchor': 'middle' }, l));
  });
}

// series: [{name, values[]}] over labels; stacked bars.
function barChart(labels, series, fmt = num) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart' });
  const totals = labels.map((_, i) => series.reduce((a, sr) => a + (sr.values[i] || 0), 0));
  const { top, ticks } = scale(Math.max(0, ...totals));
  axes(svg, labels, top, ticks, fmt);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const bw = Math.max(2, (iw / Math.max(1, labels.length)) * 0.7);
  labels.forEach((l, i) => {
    let y = PAD.t + ih;
    series.forEach((sr, k) => {
      const v = sr.values[i] || 0;
      if (!v) return;
      const bh = (v / top) * ih;
      y -= bh;
      const x = PAD.l + (iw * (i + 0.5)) / labels.length - bw / 2;
      const r = s('rect', { x, y, width: bw, height: bh, class: 's' + (k % SERIES_MAX) });
      r.append(s('title', {}, `${l} · ${sr.name}: ${fmt(v)}`));
      svg.append(r);
    });
  });
  return svg;
}

// series: [{name, values[]}] as lines with dots; a null value (nothing
// measured then) leaves its point out.
function lineChart(labels, series, fmt = num) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart' });
  const max = Math.max(0, ...series.flatMap((sr) => sr.values.filter((v) => v != null)));
  const { top, ticks } = scale(max);
  axes(svg, labels, top, ticks, fmt);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  series.forEach((sr, k) => {
    const pts = [];
    sr.values.forEach((v, i) => {
      if (v != null) pts.push([PAD.l + (iw * (i + 0.5)) / labels.length, PAD.t + ih - (v / top) * ih, i]);
    });
    if (pts.length > 1) svg.append(s('polyline', { points: pts.map((p) => p[0] + ',' + p[1]).join(' '), class: 'line s' + k }));
    for (const [x, y, i] of pts) {
      const c = s('circle', { cx: x, cy: y, r: 3, class: 's' + k });
      c.append(s('title', {}, `${labels[i]} · ${sr.name}: ${fmt(sr.values[i])}`));
      svg.append(c);
    }
  });
  return svg;
}

// rows: [{name, value}] as horizontal bars.
function hbarChart(rows, fmt = num) {
  const rh = 26, hh = Math.max(40, rows.length * rh + 8);
  const svg = s('svg', { viewBox: `0 0 ${W} ${hh}`, class: 'chart' });
  const max = Math.max(1, ...rows.map((r) => r.value));
  const lw = 150, iw = W - lw - 60;
  rows.forEach((r, i) => {
    const y = 4 + i * rh;
    svg.append(s('text', { x: lw - 8, y: y + 16, class: 'tick', 'text-anchor': 'end' }, r.name));
    const rect = s('rect', { x: lw, y: y + 3, width: Math.max(2, (r.value / max) * iw), height: rh - 8, class: 's0' });
    rect.append(s('title', {}, `${r.name}: ${fmt(r.value)}`));
    svg.append(rect, s('text', { x: lw + Math.max(2, (r.value / max) * iw) + 6, y: y + 16, class: 'tick' }, fmt(r.value)));
  });
  return svg;
}

function legend(series) {
  const ul = h('ul', 'chart-legend');
  series.forEach((sr, k) => {
    const li = h('li');
    li.append(h('span', 'swatch s' + (k % SERIES_MAX)), document.createTextNode(sr.name));
    ul.append(li);
  });
  return ul;
}

// A table of the same figures: header row, then one row per label.
function table(caption, head, rows) {
  const d = h('details', 'chart-table');
  d.append(h('summary', '', t('admin.table')));
  const tb = h('table');
  tb.append(h('caption', 'visually-hidden', caption));
  const tr = h('tr');
  head.forEach((c) => { const th = h('th', '', c); th.scope = 'col'; tr.append(th); });
  const thead = h('thead');
  thead.append(tr);
  const body = h('tbody');
  for (const r of rows) {
    const row = h('tr');
    r.forEach((c, i) => {
      const cell = h(i ? 'td' : 'th', '', c);
      if (!i) cell.scope = 'row';
      row.append(cell);
    });
    body.append(row);
  }
  tb.append(thead, body);
  d.append(tb);
  return d;
}

let figId = 0;
function figure(title, desc, svg, extra, tbl) {
  const f = h('figure', 'chart-fig');
  const id = 'admin-fig-' + ++figId;
  const cap = h('figcaption', 'chart-title', title);
  cap.id = id;
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-labelledby', id + ' ' + id + '-d');
  svg.prepend(s('title', {}, title));
  const d = s('desc', { id: id + '-d' }, desc);
  svg.insertBefore(d, svg.children[1] || null);
  f.append(cap, svg);
  if (extra) f.append(extra);
  if (tbl) f.append(tbl);
  return f;
}

function empty(title) {
  const f = h('figure', 'chart-fig');
  f.append(h('figcaption', 'chart-title', title), h('p', 'chart-empty', t('admin.no_data')));
  return f;
}

// Keep the biggest series, fold the rest into "other".
function fold(series) {
  series.sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
  if (series.length <= SERIES_MAX) return series;
  const keep = series.slice(0, SERIES_MAX - 1);
  const rest = series.slice(SERIES_MAX - 1);
  const n = rest[0].values.length;
  keep.push({ name: t('admin.other'), values: Array.from({ length: n }, (_, i) => rest.reduce((a, sr) => a + (sr.values[i] || 0), 0)), total: 0 });
  return keep;
}

// The days of the range, oldest first, as "YYYY-MM-DD".
function days(stats) {
  const out = [];
  const from = Date.parse(stats.from), to = Date.parse(stats.to);
  for (let d = Math.floor(from / 86400000) * 86400000; d < to; d += 86400000) out.push(new Date(d).toISOString().slice(0, 10));
  return out;
}
function buckets(stats) {
  const out = [], b = stats.bucket_s;
  const from = Math.floor(Date.parse(stats.from) / 1000 / b) * b, to = Date.parse(stats.to) / 1000;
  for (let x = from; x < to; x += b) out.push(x);
  return out;
}

function chartMessages(stats) {
  const title = t('admin.chart.messages');
  if (!stats.messages_per_day.length) return empty(title);
  const ds = days(stats), labels = ds.map(dayLabel);
  const by = new Map();
  for (const r of stats.messages_per_day) {
    if (!by.has(r.room)) by.set(r.room, { name: r.room === '(direct)' ? t('admin.direct') : '#' + r.room, values: ds.map(() => 0), total: 0 });
    const sr = by.get(r.room), i = ds.indexOf(r.day);
    if (i >= 0) sr.values[i] += r.messages;
    sr.total += r.messages;
  }
  const series = fold([...by.values()]);
  const total = stats.totals.messages;
  return figure(title, t('admin.desc.messages', { n: total, rooms: by.size, days: ds.length }), barChart(labels, series),
    legend(series), table(title, [t('admin.col.day'), ...series.map((x) => x.name)], ds.map((d, i) => [d, ...series.map((x) => num(x.values[i]))])));
}

function chartActive(stats) {
  const title = t('admin.chart.active');
  if (!stats.active_users_per_day.length) return empty(title);
  const ds = days(stats), labels = ds.map(dayLabel);
  const values = ds.map((d) => (stats.active_users_per_day.find((r) => r.day === d) || { users: 0 }).users);
  const series = [{ name: t('admin.series.users'), values }];
  return figure(title, t('admin.desc.active', { n: Math.max(...values), days: ds.length }), barChart(labels, series), null,
    table(title, [t('admin.col.day'), t('admin.series.users')], ds.map((d, i) => [d, num(values[i])])));
}

function chartConnections(stats) {
  const title = t('admin.chart.connections');
  if (!stats.connections.length) return empty(title);
  const bs = buckets(stats), labels = bs.map((b) => bucketLabel(b, stats.bucket_s));
  const series = ['ws', 'sse', 'poll'].map((k) => ({
    name: t('admin.transport.' + k),
    values: bs.map((b) => (stats.connections.find((r) => r.t === b) || {})[k] || 0),
  }));
  const peaks = series.map((x) => Math.max(...x.values));
  return figure(title, t('admin.desc.connections', { ws: peaks[0], sse: peaks[1], poll: peaks[2] }), lineChart(labels, series), legend(series),
    table(title, [t('admin.col.time'), ...series.map((x) => x.name)], bs.map((b, i) => [labels[i], ...series.map((x) => num(x.values[i]))])));
}

function chartFallbacks(stats) {
  const title = t('admin.chart.fallbacks');
  if (!stats.fallbacks.length) return empty(title);
  const bs = buckets(stats), labels = bs.map((b) => bucketLabel(b, stats.bucket_s));
  const by = new Map();
  for (const r of stats.fallbacks) {
    const key = r.transport + '/' + r.reason;
    if (!by.has(key)) by.set(key, { name: t('admin.fallback', { transport: t('admin.transport.' + r.transport), reason: t('admin.reason.' + r.reason) }), values: bs.map(() => 0), total: 0 });
    const sr = by.get(key), i = bs.indexOf(r.t);
    if (i >= 0) sr.values[i] += r.count;
    sr.total += r.count;
  }
  const series = fold([...by.values()]);
  const total = series.reduce((a, x) => a + x.values.reduce((p, q) => p + q, 0), 0);
  return figure(title, t('admin.desc.fallbacks', { n: total }), barChart(labels, series), legend(series),
    table(title, [t('admin.col.time'), ...series.map((x) => x.name)], bs.map((b, i) => [labels[i], ...series.map((x) => num(x.values[i]))])));
}

function chartTop(stats) {
  const title = t('admin.chart.top');
  if (!stats.top_rooms.length) return empty(title);
  const rows = stats.top_rooms.map((r) => ({ name: r.room === '(direct)' ? t('admin.direct') : '#' + r.room, value: r.messages, senders: r.senders }));
  return figure(title, t('admin.desc.top', { room: rows[0].name, n: rows[0].value }), hbarChart(rows), null,
    table(title, [t('admin.col.room'), t('admin.col.messages'), t('admin.col.senders')], rows.map((r) => [r.name, num(r.value), num(r.senders)])));
}

function chartLatency(stats) {
  const title = t('admin.chart.latency');
  const o = stats.latency_overall;
  if (!o || !o.count) return empty(title);
  const bs = buckets(stats), labels = bs.map((b) => bucketLabel(b, stats.bucket_s));
  const at = (b) => stats.latency.find((r) => r.t === b) || {};
  // a bucket with no delivery has no latency (not 0 ms)
  const series = ['p50', 'p95', 'p99'].map((p) => ({ name: t('admin.pct.' + p), values: bs.map((b) => (at(b).count ? at(b)[p + '_ms'] : null)) }));
  const summary = h('p', 'chart-summary', t('admin.latency_overall', { p50: ms(o.p50_ms), p95: ms(o.p95_ms), p99: ms(o.p99_ms), n: o.count }));
  const extra = h('div');
  extra.append(legend(series), summary);
  return figure(title, summary.textContent, lineChart(labels, series, ms), extra,
    table(title, [t('admin.col.time'), ...series.map((x) => x.name)], bs.map((b, i) => [labels[i], ...series.map((x) => (x.values[i] == null ? '–' : ms(x.values[i])))])));
}

function renderStats(body) {
  const bar = h('div', 'admin-toolbar');
  const label = h('span', 'admin-label', t('admin.range'));
  label.id = 'admin-range-label';
  const group = h('div', 'seg');
  group.setAttribute('role', 'group');
  group.setAttribute('aria-labelledby', label.id);
  for (const d of RANGES) {
    const b = h('button', 'seg-btn', t('admin.range_days', { n: d }));
    b.type = 'button';
    b.setAttribute('aria-pressed', String(st.days === d));
    b.addEventListener('click', () => { st.days = d; loadStats(); });
    group.append(b);
  }
  bar.append(label, group);
  body.append(bar);
  const x = st.stats;
  if (!x) {
    body.append(h('p', 'chart-empty', st.busy ? t('admin.loading') : ''));
    return;
  }
  const sum = h('dl', 'admin-totals');
  for (const [k, v] of [['messages', x.totals.messages], ['active_users', x.totals.active_users], ['sends', x.totals.sends], ['deliveries', x.totals.deliveries]]) {
    const div = h('div');
    div.append(h('dt', '', t('admin.total.' + k)), h('dd', '', num(v)));
    sum.append(div);
  }
  body.append(sum);
  const grid = h('div', 'chart-grid');
  grid.append(chartMessages(x), chartActive(x), chartConnections(x), chartFallbacks(x), chartTop(x), chartLatency(x));
  body.append(grid);
}

async function loadStats() {
  st.busy = 'stats';
  render();
  const to = Math.floor(Date.now() / 1000);
  try {
    st.stats = await api('GET', `/api/admin/stats?from=${to - st.days * 86400}&to=${to + 60}`);
    status('');
  } catch (e) {
    status(friendly(e), true);
  }
  st.busy = null;
  render();
}

// --- users -------------------------------------------------------------------

async function loadUsers(more) {
  st.busy = 'users';
  try {
    const after = more && st.users.length ? '&after=' + enc(st.users[st.users.length - 1].username) : '';
    const r = await api('GET', `/api/admin/users?limit=50&q=${enc(st.usersQuery)}${after}`);
    st.users = more ? st.users.concat(r.users) : r.users;
    st.usersMore = r.has_more;
    status('');
  } catch (e) {
    status(friendly(e), true);
  }
  st.busy = null;
  render();
}

async function userAction(u, what, reason) {
  try {
    if (what === 'disable') await api('POST', `/api/admin/users/${enc(u.username)}/disable`, { body: { reason } });
    else if (what === 'enable') await api('POST', `/api/admin/users/${enc(u.username)}/enable`, { body: {} });
    else await api(what === 'grant' ? 'PUT' : 'DELETE', `/api/admin/users/${enc(u.username)}/admin`);
    status(t('admin.done.' + what, { name: u.username }));
    st.disabling = '';
    await loadUsers(false);
  } catch (e) {
    status(friendly(e), true);
  }
}

function userRow(u) {
  const li = h('li', 'admin-user');
  const names = h('div', 'admin-user-names');
  names.append(h('span', 'admin-user-name', u.display_name || u.username), h('span', 'admin-user-handle', '@' + u.username));
  const badges = h('div', 'admin-badges');
  if (u.admin) badges.append(h('span', 'badge', t('admin.badge.admin')));
  if (u.disabled) badges.append(h('span', 'badge badge-bad', u.disabled_reason ? t('admin.badge.disabled_why', { reason: u.disabled_reason }) : t('admin.badge.disabled')));
  names.append(badges);
  const acts = h('div', 'admin-actions');
  const me = st.me && u.username === st.me.username;
  const btn = (key, fn) => {
    const b = h('button', 'btn btn-small', t('admin.action.' + key));
    b.type = 'button';
    // the visible words first (WCAG 2.5.3), then whose row it is
    b.setAttribute('aria-label', `${t('admin.action.' + key)} (${u.username})`);
    b.addEventListener('click', fn);
    return b;
  };
  if (!me) {
    if (u.disabled) acts.append(btn('enable', () => userAction(u, 'enable')));
    else acts.append(btn('disable', () => { st.disabling = u.username; render(); }));
    acts.append(u.admin ? btn('revoke', () => userAction(u, 'revoke')) : btn('grant', () => userAction(u, 'grant')));
  } else {
    acts.append(h('span', 'admin-you', t('admin.you')));
  }
  li.append(names, acts);
  if (st.disabling === u.username) {
    const f = h('form', 'admin-reason');
    const id = 'admin-reason-' + u.username;
    const lab = h('label', '', t('admin.reason_label', { name: u.username }));
    lab.htmlFor = id;
    const inp = h('input');
    inp.id = id;
    inp.maxLength = 200;
    inp.type = 'text';
    const ok = h('button', 'btn btn-small btn-danger', t('admin.action.disable'));
    ok.type = 'submit';
    const cancel = h('button', 'btn btn-small btn-ghost', t('admin.cancel'));
    cancel.type = 'button';
    cancel.addEventListener('click', () => { st.disabling = ''; render(); });
    f.addEventListener('submit', (e) => { e.preventDefault(); userAction(u, 'disable', inp.value.trim()); });
    f.append(lab, inp, ok, cancel);
    li.append(f);
    queueMicrotask(() => inp.focus());
  }
  return li;
}

function renderUsers(body) {
  const f = h('form', 'admin-toolbar');
  f.setAttribute('role', 'search');
  const lab = h('label', 'admin-label', t('admin.search'));
  lab.htmlFor = 'admin-user-q';
  const q = h('input');
  q.id = 'admin-user-q';
  q.type = 'search';
  q.maxLength = 32;
  q.value = st.usersQuery;
  q.placeholder = t('admin.search_placeholder');
  const go = h('button', 'btn btn-small', t('admin.search_go'));
  go.type = 'submit';
  f.addEventListener('submit', (e) => { e.preventDefault(); st.usersQuery = q.value.trim(); loadUsers(false); });
  f.append(lab, q, go);
  body.append(f);
  const ul = h('ul', 'admin-users');
  ul.setAttribute('aria-label', t('admin.users_label'));
  for (const u of st.users) ul.append(userRow(u));
  body.append(ul);
  if (!st.users.length && !st.busy) body.append(h('p', 'chart-empty', t('admin.no_users')));
  if (st.usersMore) {
    const m = h('button', 'btn btn-small', t('admin.more'));
    m.type = 'button';
    m.addEventListener('click', () => loadUsers(true));
    body.append(m);
  }
}

// --- audit log ---------------------------------------------------------------

async function loadAudit(more) {
  st.busy = 'audit';
  try {
    const r = await api('GET', `/api/admin/audit?limit=50${more && st.auditNext ? '&before=' + st.auditNext : ''}`);
    st.audit = more ? st.audit.concat(r.entries) : r.entries;
    st.auditNext = r.has_more ? r.next_before : 0;
    status('');
  } catch (e) {
    status(friendly(e), true);
  }
  st.busy = null;
  render();
}

function renderAudit(body) {
  if (!st.audit.length) {
    body.append(h('p', 'chart-empty', st.busy ? t('admin.loading') : t('admin.no_audit')));
    return;
  }
  const wrap = h('div', 'admin-audit-wrap');
  const tb = h('table', 'admin-audit');
  tb.append(h('caption', 'visually-hidden', t('admin.tab.audit')));
  const head = h('tr');
  for (const c of ['when', 'who', 'action', 'user', 'room', 'reason']) {
    const th = h('th', '', t('admin.col.' + c));
    th.scope = 'col';
    head.append(th);
  }
  const thead = h('thead');
  thead.append(head);
  const tbody = h('tbody');
  for (const a of st.audit) {
    const tr = h('tr');
    const when = h('td');
    const time = h('time', '', new Date(a.ts).toLocaleString(document.documentElement.lang || undefined));
    time.dateTime = a.ts;
    when.append(time);
    const action = t('admin.act.' + a.action);
    tr.append(when, h('td', '', a.actor), h('td', '', action === 'admin.act.' + a.action ? a.action : action),
      h('td', '', a.user), h('td', '', a.room ? '#' + a.room : ''), h('td', '', [a.reason, a.detail].filter(Boolean).join(' · ')));
    tbody.append(tr);
  }
  tb.append(thead, tbody);
  wrap.append(tb);
  body.append(wrap);
  if (st.auditNext) {
    const m = h('button', 'btn btn-small', t('admin.more'));
    m.type = 'button';
    m.addEventListener('click', () => loadAudit(true));
    body.append(m);
  }
}

// --- the dialog --------------------------------------------------------------

function render() {
  const d = $('admin');
  if (!d.open) return;
  const focused = document.activeElement && d.contains(document.activeElement) ? document.activeElement.id : null;
  for (const k of TABS) {
    const b = $('admin-tab-' + k);
    b.setAttribute('aria-selected', String(st.tab === k));
    b.tabIndex = st.tab === k ? 0 : -1;
  }
  const body = $('admin-body');
  body.setAttribute('aria-labelledby', 'admin-tab-' + st.tab);
  body.setAttribute('aria-busy', String(!!st.busy));
  body.replaceChildren();
  if (st.tab === 'stats') renderStats(body);
  else if (st.tab === 'users') renderUsers(body);
  else renderAudit(body);
  i18nApplyPage(d);
  if (focused && $(focused)) $(focused).focus();
}

function selectTab(k, focus) {
  st.tab = k;
  status('');
  render();
  if (focus) $('admin-tab-' + k).focus();
  if (k === 'stats' && !st.stats) loadStats();
  if (k === 'users') loadUsers(false);
  if (k === 'audit') loadAudit(false);
}

export function adminOpen(opener) {
  const d = $('admin');
  if (d.open || !st.me || !st.me.admin) return;
  st.opener = opener || document.activeElement;
  st.stats = null;
  d.showModal();
  selectTab(st.tab, true);
}

// Who is logged in (null: nobody): the Admin button shows for admins.
export function adminSetUser(me) {
  st.me = me;
  $('open-admin').hidden = !(me && me.admin);
  if (!me || !me.admin) {
    if ($('admin').open) $('admin').close();
    st.stats = null;
    st.users = [];
    st.audit = [];
  }
}

// Once, at page load.
export function adminBind() {
  const d = $('admin');
  $('open-admin').addEventListener('click', () => adminOpen($('open-admin')));
  $('admin-close').addEventListener('click', () => d.close());
  for (const k of TABS) $('admin-tab-' + k).addEventListener('click', () => selectTab(k, false));
  // Arrow keys move between the tabs (the tablist pattern).
  $('admin-tabs').addEventListener('keydown', (e) => {
    const i = TABS.indexOf(st.tab);
    let j = -1;
    if (e.key === 'ArrowRight') j = (i + 1) % TABS.length;
    else if (e.key === 'ArrowLeft') j = (i + TABS.length - 1) % TABS.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = TABS.length - 1;
    if (j < 0) return;
    e.preventDefault();
    selectTab(TABS[j], true);
  });
  d.addEventListener('close', () => {
    st.disabling = '';
    if (st.opener && st.opener.isConnected) st.opener.focus();
    st.opener = null;
  });
  i18nOnChange(() => render());
}
