// people.mjs: browser scenarios 20-23: direct messages, private rooms, mentions, read state, notifications.

import {
  DESKTOP, Natterd, PHONE, PHONE360, assert, assertAccessible, assertFits, person, scenario, server, sleep,
} from '../kit.mjs';

// The presence dot of user in the member list: its status, or null.
function memberStatus(page, user) {
  return page.evaluate((u) => {
    for (const li of document.querySelectorAll('#member-list .member')) {
      if (!li.querySelector('.member-name').textContent.startsWith(u)) continue;
      const dot = li.querySelector('.presence-dot');
      const m = dot && /presence-(online|away|dnd|offline)/.exec(dot.className);
      return { status: m ? m[1] : null, text: (li.querySelector('.member-status') || {}).textContent || '' };
    }
    return null;
  }, user);
}

async function waitStatus(page, user, status, timeout, text) {
  const t0 = Date.now();
  for (;;) {
    const s = await memberStatus(page, user);
    if (s && s.status === status && (text === undefined || s.text === text)) return Date.now() - t0;
    if (Date.now() - t0 > timeout) throw new Error(`${user}: ${JSON.stringify(s)} after ${timeout} ms, want ${status}${text ? ' ' + text : ''}`);
    await sleep(50);
  }
}

export default async function () {
  await scenario('20 people: a direct message round trip by keyboard, and a private room joined by invitation', async (people) => {
    const olga = person(people, 'olga', server.base, DESKTOP);
    const pete = person(people, 'pete', server.base, PHONE);
    const quinn = person(people, 'quinn', server.base, DESKTOP);
    await pete.register();
    await quinn.register();
    await olga.register();
    await olga.waitLive('ws');
    await pete.waitLive('ws');
    await quinn.waitLive('ws');
    const p = olga.page;
    // Who is around: pete and quinn said hello in the lobby.
    await pete.say('hello from pete');
    await quinn.say('hello from quinn');
    await olga.sees('hello from quinn', 5000);

    // A new message, by keyboard, with the username suggested.
    await p.focus('#dm-new');
    await p.keyboard.press('Enter');
    await p.waitForSelector('#dm-form:not([hidden])');
    assert(await p.evaluate(() => document.activeElement.id === 'dm-users-input'), 'the DM field takes the focus');
    await p.keyboard.type('pe');
    await p.waitForFunction(() => [...document.querySelectorAll('#user-suggestions option')].some((o) => o.value === 'pete'));
    await p.keyboard.type('te');
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => document.getElementById('room-title').textContent === 'pete');
    const dm = await p.evaluate(() => document.querySelector('#dm-list .room-btn[aria-current="page"]').dataset.room);
    assert(/^dm-\d+$/.test(dm), `the conversation is listed under direct messages (${dm})`);
    await olga.say('Psst, pete: lunch at noon?');

    // pete, on a phone, finds it in his list live and answers.
    await pete.page.click('#open-nav');
    await pete.page.waitForSelector(`#dm-list .room-btn[data-room="${dm}"]`, { timeout: 5000 });
    await pete.page.waitForFunction((d) => /olga/.test(document.querySelector(`#dm-list .room-btn[data-room="${d}"]`).textContent), dm, { timeout: 3000 });
    await pete.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await pete.shot('dm-list-phone.png');
    await pete.page.click(`#dm-list .room-btn[data-room="${dm}"]`);
    await pete.page.waitForFunction(() => document.getElementById('room-title').textContent === 'olga');
    await pete.sees('Psst, pete: lunch at noon?', 5000);
    await pete.say('Noon works. See you there.');
    await olga.sees('Noon works. See you there.', 5000);
    await assertFits(pete.page, 'dm phone');

    // The same people again: the same conversation.
    await p.click('#dm-new');
    await p.fill('#dm-users-input', 'PETE');
    await p.click('#dm-form-submit');
    await p.waitForFunction((d) => document.querySelector('#dm-list .room-btn[aria-current="page"]')?.dataset.room === d, dm);
    assert((await p.$$('#dm-list .room-btn')).length === 1, 'one conversation with pete, not two');

    // quinn, outside, sees nothing of it.
    const qrooms = await quinn.page.evaluate(async () => (await (await fetch('/api/rooms')).json()).rooms.map((r) => r.name));
    assert(!qrooms.includes(dm), 'the conversation is not in an outsider\'s room list');
    assert(!(await quinn.texts()).some((x) => /lunch|Noon/.test(x)), 'an outsider never sees the conversation');

    // A private room: made with the checkbox, joined by quinn on invitation.
    await p.check('#room-private-input');
    await olga.enterRoom('vault');
    assert(await p.$('.room-btn[data-room="vault"] .lock-mark'), 'the private room is marked');
    const listed = await quinn.page.evaluate(async () => (await (await fetch('/api/rooms')).json()).rooms.some((r) => r.name === 'vault'));
    assert(!listed, 'the private room is not listed to others');
    await p.click('#members-toggle');
    await p.fill('#invite-input', 'quinn');
    await p.press('#invite-input', 'Enter');
    await p.waitForFunction(() => /quinn/.test(document.getElementById('invite-status').textContent));
    await quinn.page.waitForSelector('#invites-box:not([hidden]) #invite-list button', { timeout: 5000 });
    await quinn.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await quinn.shot('invite-desktop.png');
    await quinn.page.click('#invite-list button');
    await quinn.page.waitForFunction(() => document.getElementById('room-title').textContent === '#vault');
    await quinn.page.waitForSelector('#invites-box[hidden]', { state: 'attached' });
    await olga.say('Welcome to the vault, quinn.');
    await quinn.sees('Welcome to the vault, quinn.', 5000);
    await p.click('#close-members');
    await olga.openDm(dm);
    await p.evaluate(() => document.activeElement && document.activeElement.blur());
    await olga.shot('dm-desktop.png');
    await assertAccessible(p, 'dm desktop');
  });

  await scenario('21 mentions: the server marks @name and @room, the one mentioned sees them highlighted', async (people) => {
    const rita = person(people, 'rita', server.base, DESKTOP);
    const sam = person(people, 'sam', server.base, DESKTOP);
    await rita.register();
    await sam.register();
    await rita.waitLive('ws');
    await sam.waitLive();
    await rita.say('Hey @SAM, the build is green (not `@sam` in code)');
    // Rendered once on the server: the mention shows the canonical name, the
    // code span its text without the backticks.
    await sam.sees('Hey @sam, the build is green (not @sam in code)', 5000);
    const seen = await sam.page.evaluate(() => {
      const li = [...document.querySelectorAll('#message-list .msg')].find((e) => /build is green/.test(e.textContent));
      return { row: li.classList.contains('mentions-me'), marks: [...li.querySelectorAll('.mention-me')].map((e) => e.textContent) };
    });
    assert(seen.row, 'the message that mentions sam is highlighted for him');
    assert(seen.marks.length === 1 && seen.marks[0] === '@sam', `one mention marked, not the one in code (${JSON.stringify(seen.marks)})`);
    const own = await rita.page.evaluate(() => {
      const li = [...document.querySelectorAll('#message-list .msg')].find((e) => /build is green/.test(e.textContent));
      return { row: li.classList.contains('mentions-me'), marks: li.querySelectorAll('.mention').length };
    });
    assert(!own.row && own.marks === 1, 'the author sees the mention marked, not her own row highlighted');
    await sam.say('@room lunch?');
    await rita.sees('@room lunch?', 5000);
    assert(await rita.page.evaluate(() => [...document.querySelectorAll('#message-list .msg.mentions-me')].some((e) => /lunch/.test(e.textContent))), '@room mentions rita');
    // Someone who joins later reads that @room in history, not as a
    // mention of them; the next @room is theirs.
    const tess = person(people, 'tess', server.base, DESKTOP);
    await tess.register();
    await tess.waitLive();
    await tess.sees('@room lunch?', 5000);
    const before = await tess.page.evaluate(() => {
      const li = [...document.querySelectorAll('#message-list .msg')].find((e) => /lunch\?/.test(e.textContent));
      return { row: li.classList.contains('mentions-me'), marks: li.querySelectorAll('.mention-me').length };
    });
    assert(!before.row && before.marks === 0, `an @room from before tess joined is not highlighted for her (${JSON.stringify(before)})`);
    await sam.say('@room dessert?');
    await tess.sees('@room dessert?', 5000);
    assert(await tess.page.evaluate(() => [...document.querySelectorAll('#message-list .msg.mentions-me')].some((e) => /dessert/.test(e.textContent))), 'an @room after she joined mentions tess');
    await sam.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await sam.shot('mention-desktop.png');
    await assertAccessible(sam.page, 'mentions');
    // @ autocomplete in the composer, by keyboard.
    await sam.page.click('#members-toggle');
    await sam.page.waitForFunction(() => /rita/.test(document.getElementById('member-list').textContent));
    await sam.page.click('#close-members');
    await sam.page.focus('#composer-input');
    await sam.page.keyboard.type('thanks @RI');
    await sam.page.waitForSelector('#mention-list:not([hidden]) [role="option"][aria-selected="true"]');
    assert((await sam.page.textContent('#mention-list [aria-selected="true"]')).startsWith('@rita'), 'rita is offered first');
    assert(await sam.page.getAttribute('#composer-input', 'aria-activedescendant') === 'mention-opt-0', 'the composer points at the chosen option');
    await sam.shot('mention-autocomplete-desktop.png');
    await sam.page.keyboard.press('Enter'); // takes the name, sends nothing
    assert(await sam.page.inputValue('#composer-input') === 'thanks @rita ', 'Enter completes the name');
    await sam.page.keyboard.type('see you');
    await sam.page.keyboard.press('Enter');
    await rita.sees('thanks @rita see you', 5000);
    assert(await rita.page.evaluate(() => [...document.querySelectorAll('#message-list .msg.mentions-me')].some((e) => /see you/.test(e.textContent))), 'the completed mention mentions rita');
  });

  await scenario('22 read on one device: the unread badge clears on the other within 2 s; counts come from the server', async (people) => {
    const tara = person(people, 'tara', server.base, DESKTOP);
    const uma = person(people, 'uma', server.base, DESKTOP);
    await tara.register();
    await uma.register();
    await tara.enterRoom('tea');
    await uma.enterRoom('tea');
    await tara.openRoom('lobby');
    const phone = person(people, 'tara', server.base, PHONE);
    await phone.login();
    await tara.waitLive();
    await phone.waitLive();
    await uma.say('anyone for tea, @tara?');
    const badge = () => (want) => {
      const b = document.querySelector('.room-btn[data-room="tea"] .badge');
      return want === 0 ? !b : b && b.textContent === String(want);
    };
    await tara.page.waitForFunction(badge(), 1, { timeout: 5000 });
    await phone.page.waitForFunction(badge(), 1, { timeout: 5000 });
    assert(/^\(1\) /.test(await tara.page.title()), 'the tab title carries the unread total');
    await tara.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await tara.shot('unread-before-desktop.png');
    // A third device that was away gets the count from the server.
    const later = person(people, 'tara', server.base, DESKTOP);
    await later.login();
    await later.page.waitForFunction(badge(), 1, { timeout: 5000 });
    await later.close();
    // Reading on the phone clears the desktop's badge.
    await phone.openRoom('tea');
    await phone.sees('anyone for tea, @tara?');
    const t0 = Date.now();
    await tara.page.waitForFunction(badge(), 0, { timeout: 2000 });
    const took = Date.now() - t0;
    assert(!/^\(\d+\) /.test(await tara.page.title()), 'the tab title has no unread total any more');
    await tara.shot('unread-after-desktop.png');
    const rooms = await tara.page.evaluate(async () => (await (await fetch('/api/rooms')).json()).rooms);
    const tea = rooms.find((r) => r.name === 'tea');
    assert(tea.unread === 0 && tea.mentions === 0, `the server counts nothing unread (${JSON.stringify(tea)})`);
    console.log(`  badge cleared on the other device in ${took} ms`);
  });

  await scenario('23 desktop notifications for a mention and a DM while the tab is hidden, never for your own', async (people) => {
    const vera = person(people, 'vera', server.base, DESKTOP);
    const walt = person(people, 'walt', server.base, DESKTOP);
    await vera.open();
    await vera.ctx.grantPermissions(['notifications'], { origin: server.base });
    // Record every notification the page makes (the real one is made too).
    await vera.ctx.addInitScript(() => {
      const N = window.Notification;
      if (!N) return;
      window.__notes = [];
      window.Notification = class extends N {
        constructor(title, opts) {
          super(title, opts);
          window.__notes.push({ title, body: (opts && opts.body) || '' });
        }
      };
    });
    await vera.page.close();
    await vera.register();
    await walt.register();
    await vera.waitLive();
    await walt.waitLive();
    assert(await vera.page.evaluate(() => Notification.permission) === 'granted', 'the permission is granted');
    await vera.page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await walt.say('@vera the report is ready');
    await vera.page.waitForFunction(() => window.__notes.some((n) => /the report is ready/.test(n.body)), null, { timeout: 5000 });
    // A direct message.
    await walt.page.click('#dm-new');
    await walt.page.fill('#dm-users-input', 'vera');
    await walt.page.press('#dm-users-input', 'Enter');
    await walt.page.waitForFunction(() => document.getElementById('room-title').textContent === 'vera');
    await walt.say('just between us');
    await vera.page.waitForFunction(() => window.__notes.some((n) => n.body === 'just between us' && n.title === 'walt'), null, { timeout: 5000 });
    // Her own message, from another device, is never notified.
    await vera.page.evaluate(async () => {
      const r = await fetch('/api/rooms/lobby/messages', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'note to @vera from myself' }) });
      if (r.status !== 201) throw new Error('send failed ' + r.status);
    });
    await walt.openRoom('lobby');
    await walt.sees('note to @vera from myself', 5000);
    await vera.page.waitForTimeout(500);
    const notes = await vera.page.evaluate(() => window.__notes);
    assert(!notes.some((n) => /from myself/.test(n.body)), 'no notification for her own message');
    assert(notes.length === 2, `two notifications, not ${notes.length}: ${JSON.stringify(notes)}`);
  });

  await scenario('presence: dots follow a connect within 2 s and a disconnect after the grace period; status text set in one browser is seen in another', async (people) => {
    // a server of its own with a short grace period (3 s)
    const srv = await new Natterd('natterd-presence', [
      '--rate-commands', '0', '--presence-grace', '3', '--presence-coalesce-ms', '100',
    ]).start();
    const ana = person(people, 'pr_ana', srv.base, DESKTOP);
    const ben = person(people, 'pr_ben', srv.base, { ...DESKTOP, locale: 'zh-CN', colorScheme: 'dark' });
    const cleo = person(people, 'pr_cleo', srv.base, PHONE360);
    await ben.register();
    await ben.waitLive();
    await ben.close();
    await ana.register();
    await ana.waitLive('ws');
    await ana.page.click('#members-toggle');
    await ana.page.waitForSelector('#member-list .member .presence-dot');
    await waitStatus(ana.page, 'pr_ana', 'online', 2000);
    await waitStatus(ana.page, 'pr_ben', 'offline', 2000);

    // ben comes back: ana's dot turns green within 2 s of his connection
    await ben.login();
    await ben.waitLive();
    const upMs = await waitStatus(ana.page, 'pr_ben', 'online', 2000);
    console.log(`  online shown ${upMs} ms after pr_ben was live`);

    // ben picks do-not-disturb and a status text, by keyboard, in Chinese
    const b = ben.page;
    await b.focus('#status-btn');
    await b.keyboard.press('Enter');
    await b.waitForSelector('#status-form:not([hidden])');
    await b.check('#status-form input[value="dnd"]');
    await b.fill('#status-text', '🍕 午饭中');
    await ben.shot('presence-picker-zh-dark.png');
    await assertAccessible(b, 'presence: the status picker');
    await b.keyboard.press('Enter');
    await b.waitForSelector('#status-form', { state: 'hidden' });
    await waitStatus(ana.page, 'pr_ben', 'dnd', 2000, '🍕 午饭中');
    await b.waitForFunction(() => document.getElementById('me-status').textContent === '🍕 午饭中');
    await ana.shot('presence-members-en.png');

    // a phone at 360 px sees the same
    await cleo.register();
    await cleo.waitLive();
    await cleo.page.click('#members-toggle');
    await waitStatus(cleo.page, 'pr_ben', 'dnd', 3000, '🍕 午饭中');
    await assertFits(cleo.page, 'presence: members at 360 px');
    await cleo.shot('presence-members-360.png');

    // ben reloads: no offline flicker for ana
    const seen = [];
    await ana.page.exposeFunction('__prSeen', (st) => seen.push(st));
    await ana.page.evaluate(() => {
      const obs = new MutationObserver(() => {
        for (const li of document.querySelectorAll('#member-list .member')) {
          if (!li.querySelector('.member-name').textContent.startsWith('pr_ben')) continue;
          const dot = li.querySelector('.presence-dot');
          window.__prSeen(dot ? dot.className : '');
        }
      });
      obs.observe(document.getElementById('member-list'), { childList: true, subtree: true, attributes: true });
    });
    await b.reload();
    await ben.waitLive();
    await sleep(4000);
    assert(!seen.some((c) => /offline/.test(c)), `a reload showed pr_ben offline to pr_ana: ${seen.join(' | ')}`);

    // ben leaves for good: still shown within the grace, offline after it
    await ben.close();
    const t0 = Date.now();
    await sleep(1500);
    assert((await memberStatus(ana.page, 'pr_ben')).status === 'dnd', 'offline before the grace period ended');
    await waitStatus(ana.page, 'pr_ben', 'offline', 6000);
    const downMs = Date.now() - t0;
    assert(downMs >= 3000, `offline ${downMs} ms after the disconnect, before the 3 s grace`);
    console.log(`  offline shown ${downMs} ms after pr_ben's browser closed (grace 3 s)`);
    await ana.shot('presence-offline-en.png');
    await srv.stop();
  });

  await scenario('presence: desktop-notification permission is asked in context, on the first mention, not on load; "Not now" is kept', async (people) => {
    const dee = person(people, 'pr_dee', server.base, DESKTOP);
    const eli = person(people, 'pr_eli', server.base, DESKTOP);
    await dee.register();
    await eli.register();
    await dee.waitLive();
    await eli.waitLive();
    const perm = await dee.page.evaluate(() => Notification.permission);
    assert(perm === 'default', `the browser starts undecided (${perm}): the test would prove nothing`);
    assert(await dee.page.isHidden('#notify-ask'), 'asked on page load');
    await eli.say('@pr_dee a question for you');
    await dee.page.waitForSelector('#notify-ask:not([hidden])', { timeout: 5000 });
    await dee.shot('presence-notify-ask.png');
    await dee.page.click('#notify-ask-no');
    assert(await dee.page.isHidden('#notify-ask'), '"Not now" did not close it');
    assert(await dee.page.evaluate(() => localStorage.getItem('natter:notify-asked')) === '1', 'the answer is not kept');
    await eli.say('@pr_dee another one');
    await dee.sees('@pr_dee another one', 5000);
    await dee.page.waitForTimeout(500);
    assert(await dee.page.isHidden('#notify-ask'), 'asked again after "Not now"');
  });
}
