// chat.mjs: browser scenarios 1-8: talking in real time on every transport and through restrictive proxies, history, restarts.

import fs from 'node:fs';
import path from 'node:path';

import {
  DESKTOP, Natterd, Nginx, PASSWORD, PHONE, WORK, assert, exactlyOnce, freePort, metric, noDuplicateIds, person, scenario, server, sleep,
} from '../kit.mjs';

export default async function () {
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
}
