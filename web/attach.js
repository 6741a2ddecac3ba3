// attach.js: files in the web client. The composer's attach button, drag
// and drop onto the conversation, and pasting an image start tus uploads
// (upload.js) shown in a tray with a progress bar, pause/resume and cancel
// per file; finished ones go out with the next message. In the timeline a
// message's images show inline (opening a full-size view) and other files
// as cards with name, size and type. Every string comes from i18n.

import { TusUpload } from './upload.js';
import { t, i18nOnChange } from './i18n.js';
import { friendly } from './api.js';

const INLINE = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

export function sizeText(n) {
  if (n < 1024) return t('files.bytes', { n });
  if (n < 1024 * 1024) return t('files.kib', { n: (n / 1024).toFixed(n < 10240 ? 1 : 0) });
  if (n < 1024 * 1024 * 1024) return t('files.mib', { n: (n / 1048576).toFixed(n < 10485760 ? 1 : 0) });
  return t('files.gib', { n: (n / 1073741824).toFixed(1) });
}

// --- the tray of uploads ------------------------------------------------------------

const uploads = []; // {up, room, li, bar, state: 'running'|'paused'|'done'|'failed', file}
let currentRoom = () => null;
let changed = () => {};

function button(cls, key, onClick) {
  const b = h('button', 'link-btn ' + cls, t(key));
  b.type = 'button';
  b.dataset.i18n = key;
  b.addEventListener('click', onClick);
  return b;
}

function trayRender() {
  const tray = document.getElementById('upload-tray');
  if (!tray) return;
  const room = currentRoom();
  let shown = 0;
  for (const u of uploads) {
    u.li.hidden = u.room !== room;
    if (!u.li.hidden) shown++;
  }
  tray.hidden = shown === 0;
  changed();
}

function setState(u, state, message) {
  u.state = state;
  u.li.dataset.state = state;
  u.status.textContent = message != null ? message : t('files.' + state);
  u.pause.hidden = state !== 'running';
  u.resume.hidden = state !== 'paused';
  trayRender();
}

export function attachFiles(list) {
  const room = currentRoom();
  if (!room) return;
  const tray = document.getElementById('upload-tray');
  for (const file of list) {
    const li = h('li', 'upload');
    const name = h('span', 'upload-name', file.name || t('files.pasted'));
    const size = h('span', 'upload-size', sizeText(file.size));
    const bar = h('progress', 'upload-bar');
    bar.max = Math.max(1, file.size);
    bar.value = 0;
    bar.setAttribute('aria-label', t('files.progress', { name: file.name }));
    const status = h('span', 'upload-status');
    status.setAttribute('role', 'status');
    const u = { room, li, bar, status, state: 'running', file: null };
    u.up = new TusUpload(file, {
      onProgress: (sent, total) => { bar.value = sent; bar.max = Math.max(1, total); },
    });
    u.pause = button('upload-pause', 'files.pause', () => { u.up.pause(); setState(u, 'paused'); });
    u.resume = button('upload-resume', 'files.resume', () => { setState(u, 'running'); u.up.resume(); });
    u.cancel = button('upload-cancel', 'files.cancel', () => {
      u.up.cancel();
      uploads.splice(uploads.indexOf(u), 1);
      li.remove();
      trayRender();
    });
    li.append(name, size, bar, status, u.pause, u.resume, u.cancel);
    tray.append(li);
    uploads.push(u);
    setState(u, 'running');
    u.up.start().then((f) => {
      u.file = f;
      bar.value = bar.max;
      setState(u, 'done');
    }, (e) => {
      if (e && e.code === 'cancelled') return;
      setState(u, 'failed', friendly(e));
    });
  }
}

// What the next message of room carries: {ids, pending} (pending: uploads
// still running or paused there).
export function readyFiles(room) {
  const ids = [];
  let pending = 0;
  for (const u of uploads) {
    if (u.room !== room) continue;
    if (u.state === 'done' && u.file) ids.push(u.file.id);
    else if (u.state === 'running' || u.state === 'paused') pending++;
  }
  return { ids: ids.slice(0, 10), pending };
}

// The message went out: its files leave the tray.
export function sentFiles(ids) {
  for (let i = uploads.length - 1; i >= 0; i--) {
    const u = uploads[i];
    if (u.file && ids.includes(u.file.id)) {
      u.li.remove();
      uploads.splice(i, 1);
    }
  }
  trayRender();
}

export function initAttach(opts) {
  currentRoom = opts.room;
  changed = opts.changed || changed;
  const input = document.getElementById('attach-input');
  document.getElementById('attach').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    attachFiles([...input.files]);
    input.value = '';
  });
  const zone = document.getElementById('main') || document.body;
  zone.addEventListener('dragover', (e) => {
    if (!e.dataTransfer || ![...e.dataTransfer.types].includes('Files')) return;
    e.preventDefault();
    zone.classList.add('drop-target');
  });
  zone.addEventListener('dragleave', (e) => {
    if (e.target === zone) zone.classList.remove('drop-target');
  });
  zone.addEventListener('drop', (e) => {
    zone.classList.remove('drop-target');
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    e.preventDefault();
    attachFiles([...e.dataTransfer.files]);
  });
  document.getElementById('composer-input').addEventListener('paste', (e) => {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (!files.length) return;
    e.preventDefault();
    attachFiles(files);
  });
  i18nOnChange(() => {
    for (const u of uploads) setState(u, u.state, u.state === 'failed' ? u.status.textContent : null);
  });
}

export function attachRoomChanged() {
  trayRender();
}

// --- in the timeline ----------------------------------------------------------------

function viewer(f) {
  let dlg = document.getElementById('file-viewer');
  if (!dlg) {
    dlg = h('dialog', 'file-viewer');
    dlg.id = 'file-viewer';
    dlg.addEventListener('click', (e) => { if (e.target === dlg) dlg.close(); });
    document.body.append(dlg);
  }
  dlg.replaceChildren();
  const img = h('img', 'file-full');
  img.src = f.url;
  img.alt = f.name;
  const bar = h('div', 'file-viewer-bar');
  const link = h('a', 'file-download', t('files.download'));
  link.href = f.url;
  link.download = f.name;
  const close = h('button', 'link-btn', t('files.close'));
  close.type = 'button';
  close.addEventListener('click', () => dlg.close());
  bar.append(h('span', 'file-viewer-name', f.name), link, close);
  dlg.append(img, bar);
  dlg.showModal();
  close.focus();
}

// The files of a message, or null for none.
export function filesNode(files) {
  if (!Array.isArray(files) || !files.length) return null;
  const box = h('div', 'msg-files');
  for (const f of files) {
    if (!f || typeof f.url !== 'string' || !f.url.startsWith('/files/')) continue;
    if (INLINE.has(f.type) && f.width > 0 && f.height > 0) {
      const b = h('button', 'file-image');
      b.type = 'button';
      b.setAttribute('aria-label', t('files.view', { name: f.name }));
      const img = h('img');
      img.src = f.url;
      img.alt = f.name;
      img.loading = 'lazy';
      img.width = Math.min(f.width, 320);
      img.height = Math.round(img.width * (f.height / f.width));
      b.append(img);
      b.addEventListener('click', () => viewer(f));
      box.append(b);
    } else {
      const a = h('a', 'file-card');
      a.href = f.url;
      a.download = f.name;
      a.append(h('span', 'file-name', f.name || t('files.unnamed')),
        h('span', 'file-meta', `${sizeText(f.size)} · ${f.type}`));
      box.append(a);
    }
  }
  return box;
}
