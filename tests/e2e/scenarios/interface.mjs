// interface.mjs: browser scenarios 9-14: the catalogs and zh-CN, settings across tabs and browsers, accessibility, search.

import fs from 'node:fs';
import path from 'node:path';

import {
  DESKTOP, PASSWORD, PHONE, PHONE360, WEB, assert, assertAccessible, assertContTime, assertFits, assertNoEnglish, browser, catalog, forms, here, openContexts, person, placeholders, scenario, server, sleep,
} from '../kit.mjs';

export default async function () {
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
}
