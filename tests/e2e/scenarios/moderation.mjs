// moderation.mjs: browser scenarios 15-16: room moderators and admins, seen from the browser.

import {
  DESKTOP, PASSWORD, assert, person, scenario, server,
} from '../kit.mjs';

export default async function () {
  await scenario('15 moderation: the owner removes a member from the member list; the member sees why and the room leaves their list', async (people) => {
    const olga = person(people, 'oksana', server.base, DESKTOP);
    const ben = person(people, 'ben', server.base, DESKTOP);
    await olga.register();
    await ben.register();
    await olga.waitLive();
    await ben.waitLive();
    await olga.enterRoom('moderated');
    await ben.enterRoom('moderated');
    await ben.say('buy cheap watches');
    await olga.sees('buy cheap watches', 5000);

    // The owner's member list: roles, and a menu on others only.
    await olga.page.click('#members-toggle');
    await olga.page.waitForFunction(() => /ben/.test(document.getElementById('member-list').textContent));
    const roles = await olga.page.$$eval('#member-list .member-role', (es) => es.map((e) => e.textContent));
    assert(roles.length === 1 && roles[0] === 'owner', `one owner badge, got ${JSON.stringify(roles)}`);
    assert((await olga.page.$$('#member-list .member-actions')).length === 1, 'a moderation menu on ben only');
    // A plain member gets no menu.
    await ben.page.click('#members-toggle');
    await ben.page.waitForFunction(() => /oksana/.test(document.getElementById('member-list').textContent));
    assert(!(await ben.page.$('#member-list .member-actions')), 'a member has no moderation menu');

    olga.page.once('dialog', (d) => d.accept('spam'));
    await olga.page.click('#member-list .member-actions summary');
    await olga.page.waitForSelector('#member-list .member-actions[open] button[data-action="kick"]');
    await olga.shot('moderation-menu.png');
    await olga.page.click('#member-list button[data-action="kick"]');

    // Ben: told who and why, and the room leaves his list.
    await ben.page.waitForSelector('#toast:not([hidden])', { timeout: 5000 });
    const toast = await ben.page.textContent('#toast');
    assert(/oksana removed you from #moderated/.test(toast) && /spam/.test(toast), `ben's notice: ${toast}`);
    await ben.page.waitForFunction(() => !document.querySelector('#room-list .room-btn[data-room="moderated"]'), null, { timeout: 5000 });
    await ben.page.waitForFunction(() => /removed ben from #moderated/.test(document.getElementById('message-list').textContent), null, { timeout: 5000 });
    await ben.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ben.shot('moderation-removed.png');

    // Olga: the notice with the reason, and ben gone from the members.
    await olga.page.waitForFunction(() => /removed ben from #moderated/.test(document.getElementById('message-list').textContent), null, { timeout: 5000 });
    await olga.page.waitForFunction(() => !/ben/.test(document.getElementById('member-list').textContent), null, { timeout: 5000 });
    const reason = await olga.page.textContent('#message-list .sys-moderation .sys-reason');
    assert(reason.includes('spam'), `the reason shows: ${reason}`);
    await olga.shot('moderation-owner.png');

    // Ben's messages after this are refused; a reload keeps it so.
    await ben.page.reload();
    await ben.page.waitForSelector('#app:not([hidden])');
    await ben.waitLive();
    assert(!(await ben.page.$('#room-list .room-btn[data-room="moderated"]')), 'after a reload the room is not in ben\'s list');

    // A mute from the menu: ben, back in the room, is told, and his
    // message fails with the reason instead of waiting to go out later.
    await ben.enterRoom('moderated');
    await olga.page.waitForFunction(() => /ben/.test(document.getElementById('member-list').textContent), null, { timeout: 5000 });
    olga.page.once('dialog', (d) => d.accept('cool down'));
    await olga.page.click('#member-list .member-actions summary');
    await olga.page.click('#member-list button[data-action="mute"]');
    await ben.page.waitForFunction(() => /oksana muted you in #moderated for 10 min/.test(document.getElementById('toast').textContent), null, { timeout: 5000 });
    await ben.say('let me explain');
    await ben.page.waitForSelector('#message-list .msg.pending.failed', { timeout: 10000 });
    const failed = await ben.page.textContent('#message-list .msg.pending.failed');
    assert(/muted in this room/.test(failed), `the failed message says why: ${failed}`);
    await ben.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ben.shot('moderation-muted.png');
  });

  await scenario('16 an admin disables an account: its open page is logged out at once and told why; logging in is refused', async (people) => {
    const dora = person(people, 'dora', server.base, DESKTOP);
    await dora.register();
    await dora.waitLive();
    // The server's admin is its first account: scenario 1's alice, or, when
    // this area runs alone, scenario 15's oksana.
    let admin = null;
    for (const username of ['alice', 'oksana']) {
      const r = await fetch(server.base + '/api/login', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD }),
      });
      const j = r.ok ? await r.json() : null;
      if (j && j.user && j.user.admin) { admin = j.token; break; }
    }
    assert(admin, 'no admin account found (run scenario 1 or 13 first)');
    const res = await fetch(server.base + '/api/admin/users/dora/disable', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + admin },
      body: JSON.stringify({ reason: 'spam account' }),
    });
    assert(res.status === 200, `disable answered ${res.status}`);
    await dora.page.waitForSelector('#auth:not([hidden])', { timeout: 3000 });
    const notice = await dora.page.textContent('#auth');
    assert(/disabled this account/.test(notice) && /spam account/.test(notice), `the login page says why: ${notice}`);
    await dora.shot('disabled-logged-out.png');
    // A page opened later with the same (kept) session hears it from the
    // server's 403 disabled, which carries the reason: no live event
    // involved.
    const status = await dora.page.evaluate(async () => {
      const r = await fetch('/api/me');
      return { status: r.status, body: await r.json() };
    });
    assert(status.status === 403 && status.body.error === 'disabled' && status.body.reason === 'spam account',
      `a disabled session's request answers 403 disabled with the reason: ${JSON.stringify(status)}`);
    const later = await dora.tab();
    await later.waitForSelector('#auth:not([hidden])', { timeout: 5000 });
    await later.waitForFunction(() => /spam account/.test(document.getElementById('auth-error').textContent), null, { timeout: 5000 });
    const told = await later.textContent('#auth-error');
    assert(/disabled this account/.test(told), `a new page is told why at once: ${told}`);
    await later.close();
    await dora.page.click('#tab-login');
    await dora.page.fill('#auth-username', 'dora');
    await dora.page.fill('#auth-password', PASSWORD);
    await dora.page.click('#auth-submit');
    await dora.page.waitForFunction(() => /disabled this account/.test(document.getElementById('auth').textContent) && /spam account/.test(document.getElementById('auth').textContent), null, { timeout: 5000 });
    await dora.shot('disabled-login.png');
  });
}
