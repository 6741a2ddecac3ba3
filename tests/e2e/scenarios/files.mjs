// files.mjs: browser scenarios for files: an image larger than 1 MiB
// uploaded in tus chunks through the buffering nginx (stock
// client_max_body_size 1m) and seen inline by another user, with its
// full-size view; a paused and resumed upload that ends as a file card;
// the tray and the cards in zh-CN; an avatar set and removed in settings
// and seen live (and after a reload) by another user on a 360 px phone.

import zlib from 'node:zlib';
import crypto from 'node:crypto';
import {
  DESKTOP, Nginx, PHONE360, assert, person, scenario, server,
} from '../kit.mjs';

// A PNG of random pixels: it does not compress, so w*h*3 bytes and more.
function noisePng(w, h) {
  const crcTable = [];
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crcTable[n] = c >>> 0;
  }
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2;
  const rows = [];
  for (let y = 0; y < h; y++) rows.push(Buffer.from([0]), crypto.randomBytes(w * 3));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.concat(rows), { level: 0 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// A PNG of one colour, w by h (RGB).
function solidPng(w, h, rgb) {
  const crc32 = (buf) => (zlib.crc32 ? zlib.crc32(buf) : crcSlow(buf));
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2;
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(w * 3).map((_, i) => rgb[i % 3])]);
  const rows = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crcSlow(buf) {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// Wait until the message list shows avatar images, all loaded (want), or
// none: only initials (!want).
function avatarShown(p, want) {
  return p.page.waitForFunction((w) => {
    const imgs = [...document.querySelectorAll('#message-list .msg:not(.pending) .avatar img.avatar-img')];
    const ok = imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth === 48);
    return w ? ok : imgs.length === 0;
  }, want, { timeout: 20000 });
}

async function uploaded(p, timeout = 30000) {
  await p.page.waitForSelector('#upload-tray .upload[data-state="done"]', { timeout });
}

export default async function () {
  await scenario('files: an image through the buffering proxy, inline in another window', async (people) => {
    const proxy = await new Nginx('nginx-files', 'nginx-poll.conf.in', server.port).start();
    try {
      const ann = person(people, 'fi_ann', proxy.base, DESKTOP);
      const ben = person(people, 'fi_ben', proxy.base, DESKTOP);
      await ann.register();
      await ben.register();
      await ann.waitLive('poll', 30000);
      await ben.waitLive('poll', 30000);
      await ann.enterRoom('fi-pictures');
      await ben.enterRoom('fi-pictures');

      const png = noisePng(720, 540);
      assert(png.length > 1024 * 1024, `the test image is ${png.length} bytes, want more than 1 MiB`);
      await ann.page.setInputFiles('#attach-input', { name: 'garden.png', mimeType: 'image/png', buffer: png }, { timeout: 60000 });
      await ann.page.waitForSelector('#upload-tray .upload');
      await ann.shot('files-uploading-desktop.png');
      await uploaded(ann, 60000);
      await ann.page.fill('#composer-input', 'the garden today');
      await ann.page.press('#composer-input', 'Enter');
      await ben.sees('the garden today', 20000);
      // Inline, decoded: the bytes made it whole through the proxy.
      await ben.page.waitForFunction(() => {
        const img = document.querySelector('#message-list .msg:not(.pending) .file-image img');
        return img && img.complete && img.naturalWidth === 720 && img.naturalHeight === 540;
      }, null, { timeout: 20000 });
      assert(await ann.page.$('#upload-tray .upload') === null, 'the sent file left the tray');
      await ben.shot('files-inline-desktop.png');

      // The full-size view opens from the keyboard and closes with Escape.
      await ben.page.focus('#message-list .file-image');
      await ben.page.keyboard.press('Enter');
      await ben.page.waitForSelector('#file-viewer[open] img.file-full');
      await ben.shot('files-viewer-desktop.png');
      await ben.page.keyboard.press('Escape');
      await ben.page.waitForFunction(() => !document.querySelector('#file-viewer[open]'));

      // What the server answers for it: an image, inline, sandboxed.
      const head = await ben.page.evaluate(async () => {
        const a = document.querySelector('#message-list .file-image img');
        const res = await fetch(a.src);
        return {
          status: res.status,
          type: res.headers.get('Content-Type'),
          disp: res.headers.get('Content-Disposition'),
          csp: res.headers.get('Content-Security-Policy'),
          nosniff: res.headers.get('X-Content-Type-Options'),
        };
      });
      assert(head.status === 200 && head.type === 'image/png', `file answer ${JSON.stringify(head)}`);
      assert(/^inline/.test(head.disp) && /sandbox/.test(head.csp) && head.nosniff === 'nosniff',
        `file headers ${JSON.stringify(head)}`);
    } finally {
      await proxy.stop();
    }
  });

  await scenario('files: a paused and resumed upload, then a file card', async (people) => {
    const pia = person(people, 'fi_pia', server.base, DESKTOP);
    const quinn = person(people, 'fi_quinn', server.base, { ...PHONE360, locale: 'zh-CN' });
    await pia.register();
    await quinn.register();
    await pia.enterRoom('fi-papers');
    await quinn.enterRoom('fi-papers');

    const data = crypto.randomBytes(3 * 1024 * 1024 + 321);
    await pia.page.setInputFiles('#attach-input', { name: 'report-2026.bin', mimeType: 'application/octet-stream', buffer: data }, { timeout: 60000 });
    await pia.page.waitForFunction(() => {
      const bar = document.querySelector('#upload-tray .upload-bar');
      return bar && bar.value > 0;
    }, null, { timeout: 20000 });
    await pia.page.click('#upload-tray .upload-pause');
    await pia.page.waitForSelector('#upload-tray .upload[data-state="paused"]');
    const at = await pia.page.$eval('#upload-tray .upload-bar', (b) => b.value);
    await new Promise((r) => setTimeout(r, 1200));
    const still = await pia.page.$eval('#upload-tray .upload-bar', (b) => b.value);
    assert(still === at && at < data.length, `paused at ${at}, then ${still} of ${data.length}`);
    await pia.shot('files-paused-desktop.png');
    // Sending while it waits is refused with a reason.
    await pia.page.press('#composer-input', 'Enter');
    await pia.page.waitForFunction(() => document.getElementById('composer-error').textContent.length > 0);
    await pia.page.click('#upload-tray .upload-resume');
    await uploaded(pia, 60000);
    await pia.page.press('#composer-input', 'Enter');
    await quinn.page.waitForFunction(() => {
      const c = document.querySelector('#message-list .msg:not(.pending) .file-card');
      return c && /report-2026\.bin/.test(c.textContent) && /3\.0 MB/.test(c.textContent);
    }, null, { timeout: 20000 });
    await quinn.shot('files-card-phone360.png');
    // The card downloads the same bytes.
    const same = await quinn.page.evaluate(async () => {
      const a = document.querySelector('#message-list .file-card');
      const buf = await (await fetch(a.href)).arrayBuffer();
      return { n: buf.byteLength, disp: a.getAttribute('download') };
    });
    assert(same.n === data.length && same.disp === 'report-2026.bin', `download ${JSON.stringify(same)}`);
    // No horizontal scrolling at 360 px.
    const fits = await quinn.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    assert(fits, 'the file card fits a 360 px screen');

    // The tray in Chinese, on the phone.
    await quinn.page.setInputFiles('#attach-input', { name: '报告.bin', mimeType: 'application/octet-stream', buffer: data.subarray(0, 300000) }, { timeout: 60000 });
    await uploaded(quinn, 30000);
    const status = await quinn.page.textContent('#upload-tray .upload-status');
    assert(status === '可以发送', `the tray says "${status}" in zh-CN`);
    await quinn.shot('files-tray-phone360-zh.png');
  });

  await scenario('files: avatar set in settings, seen live by another user, then removed', async (people) => {
    const ava = person(people, 'av_ava', server.base, DESKTOP);
    const bo = person(people, 'av_bo', server.base, { ...PHONE360, locale: 'zh-CN' });
    await ava.register();
    await bo.register();
    await ava.enterRoom('av-faces');
    await bo.enterRoom('av-faces');
    await ava.say('hello, no face yet');
    await ava.say('a second line in the same run');
    await bo.sees('a second line in the same run', 20000);
    await avatarShown(bo, false);
    const initial = await bo.page.$$eval('#message-list .msg:not(.pending) .avatar', (a) => a.map((e) => e.textContent));
    assert(initial.includes('A'), `initials before an avatar: ${JSON.stringify(initial)}`);

    // ava sets one from the settings dialog (the tus uploader).
    await ava.openSettings();
    await ava.page.setInputFiles('#set-avatar-file', { name: 'me.png', mimeType: 'image/png', buffer: solidPng(48, 48, [230, 120, 30]) });
    await ava.page.waitForSelector('#settings .set-avatar-preview img.avatar-img');
    const saved = await ava.page.textContent('#settings-status');
    assert(saved === 'Avatar saved.', `settings status "${saved}"`);
    await ava.shot('files-avatar-settings-desktop.png');
    await ava.closeSettings();
    await avatarShown(ava, true);

    // bo sees it live, one picture per run of messages.
    await avatarShown(bo, true);
    const n = await bo.page.$$eval('#message-list .msg:not(.pending) .avatar img.avatar-img', (a) => a.length);
    assert(n === 1, `one avatar for a run of two messages, got ${n}`);
    const fits = await bo.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    assert(fits, 'the timeline fits a 360 px screen');
    await bo.shot('files-avatar-live-phone360-zh.png');

    // After a reload too, and in the member list.
    await bo.page.reload();
    await bo.page.waitForSelector('#app:not([hidden])');
    await avatarShown(bo, true);
    const member = await bo.page.evaluate(async () => {
      const res = await fetch('/api/rooms/av-faces/members');
      return (await res.json()).members.find((m) => m.username === 'av_ava').avatar;
    });
    assert(/^\/files\/[0-9a-f]{32}\/avatar$/.test(member), `member avatar ${member}`);
    await bo.page.waitForFunction(() => document.querySelectorAll('#member-list .avatar img.avatar-img').length === 1);

    // Removed from the keyboard: bo is back to the initial, live.
    await ava.openSettings();
    await ava.page.focus('#set-avatar-remove');
    await ava.page.keyboard.press('Enter');
    await ava.page.waitForFunction(() => document.getElementById('settings-status').textContent === 'Avatar removed.');
    assert(await ava.page.$('#settings .set-avatar-preview img') === null, 'the preview shows the initial');
    await ava.closeSettings();
    await avatarShown(bo, false);
    await bo.shot('files-avatar-removed-phone360-zh.png');
  });
}
