// admin.mjs: the admin page, on a server of its own whose first account
// (ad_root) is its admin and whose history is seeded: messages over the
// API, then moved back over three days and metric samples added with the
// sqlite3 tool while natterd is stopped, so the charts have known figures.

import { spawnSync } from 'node:child_process';

import {
  DESKTOP, PHONE360, Natterd, PASSWORD, assert, assertAccessible, assertFits, person, scenario,
} from '../kit.mjs';

async function call(base, method, path, token, body) {
  const res = await fetch(base + path, {
    method,
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: 'Bearer ' + token } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function registerApi(base, name) {
  const r = await call(base, 'POST', '/api/register', null, { username: name, password: PASSWORD });
  assert(r.status === 201, `register ${name}: ${r.status}`);
  return r.body.token;
}

function sql(db, text) {
  const r = spawnSync('sqlite3', [db, text], { encoding: 'utf8' });
  assert(r.status === 0, `sqlite3: ${r.stderr}`);
  return r.stdout.trim();
}

// The figures each chart must show (what the page's tables say).
async function tableRows(page, n) {
  return page.$$eval('#admin-body .chart-fig', (figs, i) => {
    const t = figs[i].querySelector('table');
    return t ? [...t.querySelectorAll('tbody tr')].map((tr) => [...tr.children].map((c) => c.textContent)) : null;
  }, n);
}

export default async function () {
  await scenario('admin: the admin page draws its charts from a seeded history, manages users and shows the audit log; a non-admin cannot open it', async (people) => {
    const srv = await new Natterd('natterd-admin', ['--rate-commands', '0', '--rate-send', '0']).start();
    const root = await registerApi(srv.base, 'ad_root');
    const ann = await registerApi(srv.base, 'ad_ann');
    const bob = await registerApi(srv.base, 'ad_bob');
    for (const [tok, room] of [[root, 'ad_alpha'], [root, 'ad_beta']]) {
      assert((await call(srv.base, 'POST', '/api/rooms', tok, { name: room })).status === 201, 'room created');
    }
    for (const tok of [ann, bob]) {
      for (const room of ['ad_alpha', 'ad_beta']) await call(srv.base, 'POST', `/api/rooms/${room}/join`, tok, {});
    }
    // alpha: 6 by ann, 3 by bob; beta: 2 by bob
    const say = async (tok, room, text) => {
      const r = await call(srv.base, 'POST', `/api/rooms/${room}/messages`, tok, { text });
      assert(r.status === 201, `send: ${r.status}`);
    };
    for (let i = 1; i <= 6; i++) await say(ann, 'ad_alpha', `a${i}`);
    for (let i = 1; i <= 3; i++) await say(bob, 'ad_alpha', `b${i}`);
    for (let i = 1; i <= 2; i++) await say(bob, 'ad_beta', `c${i}`);
    await srv.stop();
    // ann's a1..a4 two days back, bob's b1 one day back; samples for the
    // last three days (peaks, fallbacks, latency buckets).
    const day = 86400;
    const now = Math.floor(Date.now() / 1000), m = now - (now % 60);
    sql(srv.db, `UPDATE events SET ts_ms = ts_ms - 2 * ${day}000 WHERE text IN ('a1','a2','a3','a4');
      UPDATE events SET ts_ms = ts_ms - ${day}000 WHERE text = 'b1';
      INSERT INTO stat_samples (minute, conn_ws, conn_sse, conn_poll, sends, deliveries, fallback, latency) VALUES
        (${m - 2 * day}, 12, 3, 1, 40, 120, '{"sse/ws_failed":4,"poll/sse_timeout":1}', '[5,20,30,10,3,1,0,0,0,0,0,0,0,0,0]'),
        (${m - day}, 18, 5, 2, 60, 200, '{"sse/ws_failed":2,"sse/ws_timeout":3}', '[10,40,20,5,2,1,1,0,0,0,0,0,0,0,0]'),
        (${m - 3600}, 9, 2, 4, 30, 90, '{"poll/sse_failed":2}', '[4,10,10,2,0,0,0,0,0,0,0,0,0,0,0]');`);
    await srv.start();

    // A non-admin: no Admin button, and the API says 403.
    const annP = person(people, 'ad_ann', srv.base, DESKTOP);
    await annP.login();
    await annP.waitLive();
    assert(await annP.page.$eval('#open-admin', (b) => b.hidden), 'a non-admin sees no Admin button');
    const denied = await annP.page.evaluate(async () => (await fetch('/api/admin/stats')).status);
    assert(denied === 403, `the stats API refuses a non-admin: ${denied}`);
    const deniedUsers = await annP.page.evaluate(async () => (await fetch('/api/admin/users')).status);
    assert(deniedUsers === 403, `the users API refuses a non-admin: ${deniedUsers}`);

    // The admin: the page opens from the user menu, six charts.
    const rootP = person(people, 'ad_root', srv.base, DESKTOP);
    await rootP.login();
    await rootP.waitLive();
    const p = rootP.page;
    assert(!(await p.$eval('#open-admin', (b) => b.hidden)), 'the admin sees the Admin button');
    await p.click('#open-admin');
    await p.waitForSelector('#admin[open] #admin-body .chart-grid');
    const figs = await p.$$eval('#admin-body .chart-fig', (fs) => fs.map((f) => ({
      title: f.querySelector('figcaption').textContent,
      svg: !!f.querySelector('svg[role="img"] title') && !!f.querySelector('svg desc'),
      marks: f.querySelectorAll('svg rect, svg circle').length,
    })));
    assert(figs.length === 6, `six charts, got ${figs.length}`);
    for (const f of figs) assert(f.svg && f.marks > 0, `chart "${f.title}" is an SVG with a title, a description and data: ${JSON.stringify(f)}`);
    const totals = await p.$$eval('#admin-body .admin-totals dd', (ds) => ds.map((d) => d.textContent));
    assert(totals[0] === '11' && totals[1] === '2', `totals: 11 messages, 2 active users, got ${totals}`);
    // messages per day by room, from its table: three days, alpha 4/1/4, beta 0/0/2
    const msgs = await tableRows(p, 0);
    const last3 = msgs.slice(-3).map((r) => r.slice(1).join('/'));
    assert(JSON.stringify(last3) === JSON.stringify(['4/0', '1/0', '4/2']), `messages per day: ${JSON.stringify(msgs)}`);
    const active = (await tableRows(p, 1)).slice(-3).map((r) => r[1]);
    assert(JSON.stringify(active) === JSON.stringify(['1', '1', '2']), `active users per day: ${active}`);
    const peaks = (await tableRows(p, 2)).map((r) => r.slice(1).map(Number));
    assert(Math.max(...peaks.map((r) => r[0])) === 18 && Math.max(...peaks.map((r) => r[2])) === 4, `peak connections: ${JSON.stringify(peaks)}`);
    const top = await tableRows(p, 4);
    assert(top[0][0] === '#ad_alpha' && top[0][1] === '9' && top[1][0] === '#ad_beta', `top rooms: ${JSON.stringify(top)}`);
    const lat = await p.textContent('#admin-body .chart-summary');
    assert(/median/.test(lat) && /95th/.test(lat), `latency summary: ${lat}`);
    await assertAccessible(p, 'admin statistics');
    await p.evaluate(() => document.activeElement && document.activeElement.blur());
    await rootP.shot('admin-stats.png');
    await p.evaluate(() => { document.documentElement.dataset.theme = 'dark'; });
    await rootP.shot('admin-stats-dark.png');
    await p.evaluate(() => { const b = document.getElementById('admin-body'); b.scrollTop = b.scrollHeight; });
    await rootP.shot('admin-stats-lower-dark.png');
    await p.evaluate(() => { document.getElementById('admin-body').scrollTop = 0; });
    await p.evaluate(() => { document.documentElement.dataset.theme = 'light'; });

    // A table fallback opens with the keyboard.
    await p.focus('#admin-body .chart-table summary');
    await p.keyboard.press('Enter');
    await p.waitForSelector('#admin-body .chart-table[open] table');

    // Users: find bob, disable him with a reason; the audit log says so.
    await p.keyboard.press('Escape');
    await p.waitForSelector('#admin:not([open])', { state: 'attached' });
    await p.click('#open-admin');
    await p.click('#admin-tab-users');
    await p.waitForSelector('#admin-body .admin-user');
    await p.fill('#admin-user-q', 'ad_b');
    await p.click('#admin-body .admin-toolbar button[type="submit"]');
    await p.waitForFunction(() => document.querySelectorAll('#admin-body .admin-user').length === 1);
    await p.click('#admin-body .admin-user button[aria-label="Disable (ad_bob)"]');
    await p.fill('#admin-reason-ad_bob', 'spam');
    await p.click('#admin-body .admin-reason button[type="submit"]');
    await p.waitForFunction(() => /Disabled: spam/.test(document.getElementById('admin-body').textContent));
    await assertAccessible(p, 'admin users');
    await rootP.shot('admin-users.png');
    const login = await call(srv.base, 'POST', '/api/login', null, { username: 'ad_bob', password: PASSWORD });
    assert(login.status === 403, `bob's login is refused: ${login.status}`);
    await p.click('#admin-tab-audit');
    await p.waitForSelector('#admin-body .admin-audit tbody tr');
    const row = await p.$eval('#admin-body .admin-audit tbody tr', (tr) => [...tr.children].map((c) => c.textContent));
    assert(row[1] === 'ad_root' && row[2] === 'account disabled' && row[3] === 'ad_bob' && row[5] === 'spam', `audit row: ${row}`);
    await rootP.shot('admin-audit.png');
    await p.click('#admin-close');

    // zh-CN at 360 px: the same page, in Chinese, fitting the screen.
    const phone = person(people, 'ad_root', srv.base, { ...PHONE360, locale: 'zh-CN' });
    await phone.login();
    await phone.waitLive();
    await phone.page.evaluate(() => fetch('/api/me', { method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ settings: { language: 'zh-CN' } }) }));
    await phone.page.reload();
    await phone.page.waitForSelector('#app:not([hidden])');
    await phone.page.click('#open-nav');
    await phone.page.waitForSelector('#open-admin', { state: 'visible' });
    await phone.page.click('#open-admin');
    await phone.page.waitForSelector('#admin[open] #admin-body .chart-grid');
    const zhTitle = await phone.page.textContent('#admin-title');
    assert(zhTitle === '服务器管理', `the title in Chinese: ${zhTitle}`);
    const zhChart = await phone.page.textContent('#admin-body .chart-fig figcaption');
    assert(zhChart === '各房间每日消息数', `a chart title in Chinese: ${zhChart}`);
    await assertFits(phone.page, 'admin at 360 px');
    await phone.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await phone.shot('admin-stats-zh-360.png');
    await srv.stop();
  });
}
