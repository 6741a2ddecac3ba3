// limits.mjs: browser scenario 24: the per-user send limit, on a server of its own.

import {
  DESKTOP, Natterd, assert, exactlyOnce, metric, noDuplicateIds, person, scenario, server,
} from '../kit.mjs';

export default async function () {
  await scenario('24 a burst past the send limit: the client waits out retry_after, every message arrives once, none failed', async (people) => {
    // natterd's default limits, on a server of this scenario's own
    const limited = await new Natterd('natterd-limits').start();
    const quinn = person(people, 'quincy', limited.base, DESKTOP);
    const ruth = person(people, 'ruth', limited.base, DESKTOP);
    await quinn.register();
    await ruth.register();
    await quinn.waitLive('ws');
    await ruth.waitLive('ws');
    await quinn.enterRoom('burst');
    await ruth.enterRoom('burst');
    const before = (await metric(limited.base, 'natter_rate_limited_total', { what: 'send' })) || 0;
    // 40 messages in one go (typed and Enter, in the page, without a
    // round trip each): the default limit is 5 a second after a burst of
    // 20, so the server refuses some.
    const texts = [];
    for (let i = 1; i <= 40; i++) texts.push(`burst message ${i}`);
    await quinn.page.evaluate((list) => {
      const ta = document.getElementById('composer-input');
      for (const t of list) {
        ta.value = t;
        ta.dispatchEvent(new Event('input', { bubbles: true }));
        ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
      }
    }, texts);
    await ruth.sees('burst message 40', 30000);
    await quinn.sees('burst message 40', 30000);
    for (const t of texts) await ruth.sees(t, 30000);
    const after = await metric(limited.base, 'natter_rate_limited_total', { what: 'send' });
    assert(after > before, `the server refused none of the burst (${before} -> ${after}): the test proves nothing`);
    await quinn.page.waitForFunction(() => !document.querySelector('#message-list .msg.pending'), null, { timeout: 30000 });
    assert(!(await quinn.page.$('#message-list .msg.failed')), 'a rate-limited message was shown as failed');
    for (const p of [quinn, ruth]) {
      const t = await p.texts();
      exactlyOnce(t, texts, p.name);
      noDuplicateIds(await p.ids(), p.name);
      const order = t.filter((x) => x.startsWith('burst message '));
      assert(order.length === 40, `${p.name}: ${order.length} burst messages shown`);
    }
    const stored = await ruth.history('burst');
    exactlyOnce(stored, texts, 'history');
    await quinn.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await quinn.shot('burst-rate-limited.png');
    console.log(`  rate_limited sends during the burst: ${after - before}`);
    await limited.stop();
  });
}
