// reactions: what a message shows besides its text, and how one acts on
// it: the quote of the message it replies to, the reaction chips under it
// ({emoji, count, me}; a click toggles one's own), the small emoji picker
// (a grid of buttons: arrows move, Enter picks, Escape closes), the menu
// of a message (reply, react, edit, delete) that a touch screen opens
// with a long press, and applying a live reaction event to a message.
// It knows no room state and talks to no server: app.js passes what to
// do as callbacks. Every user string reaches the page through textContent.

import { t } from './i18n.js';

// The picker's choices: the server's shortcode table holds the same ones.
export const PICKER = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '🔥', '👀', '✅', '👎', '💯', '🚀', '😍', '👏', '🤷'];
const LONG_PRESS_MS = 450;

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// A reaction event {target_id, emoji, op, count, from} applied to msg (a
// message event): a new message object, or null when it changes nothing.
// count is the emoji's count after the event, so applying it twice (the
// live event and a reply to our own PUT) gives the same result.
export function reactionApplied(msg, ev, me) {
  if (!msg || msg.deleted || typeof ev.emoji !== 'string' || !Number.isSafeInteger(ev.count)) return null;
  const list = Array.isArray(msg.reactions) ? msg.reactions.map((x) => ({ ...x })) : [];
  let item = list.find((x) => x.emoji === ev.emoji);
  if (!item) {
    if (ev.count <= 0) return null;
    item = { emoji: ev.emoji, count: 0, me: false };
    list.push(item);
  }
  item.count = ev.count;
  if (ev.from === me) item.me = ev.op === 'add';
  return { ...msg, reactions: list.filter((x) => x.count > 0) };
}

// The aggregate a PUT or DELETE answered, for msg: a new message object.
export function reactionsReplaced(msg, reactions) {
  if (!msg || msg.deleted || !Array.isArray(reactions)) return null;
  return { ...msg, reactions: reactions.filter((x) => x && typeof x.emoji === 'string' && x.count > 0) };
}

// The chips under a message; onToggle(emoji, mine) when one is clicked.
export function reactionChips(ev, onToggle) {
  const list = Array.isArray(ev.reactions) ? ev.reactions : [];
  if (!list.length) return null;
  const row = h('div', 'reactions');
  row.setAttribute('role', 'group');
  row.setAttribute('aria-label', t('react.label'));
  for (const x of list) {
    const b = h('button', 'reaction' + (x.me ? ' me' : ''));
    b.type = 'button';
    b.setAttribute('aria-pressed', x.me ? 'true' : 'false');
    b.title = t(x.me ? 'react.chip_me' : 'react.chip', { emoji: x.emoji, n: x.count });
    b.setAttribute('aria-label', b.title);
    b.append(h('span', 'reaction-emoji', x.emoji), h('span', 'reaction-count', String(x.count)));
    b.addEventListener('click', () => onToggle(x.emoji, !!x.me));
    row.append(b);
  }
  return row;
}

// The quote above a reply: who and what it answers; onJump() shows it.
export function quoteNode(q, author, onJump) {
  if (!q || !Number.isSafeInteger(q.id)) return null;
  const b = h('button', 'reply-quote' + (q.deleted ? ' deleted' : ''));
  b.type = 'button';
  b.dataset.replyTo = q.id;
  b.setAttribute('aria-label', t('reply.jump', { name: author }));
  b.append(h('span', 'reply-quote-author', author));
  b.append(h('span', 'reply-quote-text', q.deleted ? t('reply.deleted') : (q.excerpt || '')));
  b.addEventListener('click', onJump);
  return b;
}

let picker = null;

export function pickerClose(refocus = true) {
  if (!picker) return;
  const { el, anchor } = picker;
  picker = null;
  el.remove();
  document.removeEventListener('pointerdown', outside, true);
  if (refocus && anchor && anchor.isConnected) anchor.focus();
}

function outside(e) {
  if (picker && !picker.el.contains(e.target) && e.target !== picker.anchor) pickerClose(false);
}

// Open the emoji picker by anchor (a button); onPick(emoji).
export function pickerOpen(anchor, onPick) {
  pickerClose(false);
  const el = h('div', 'emoji-picker');
  el.setAttribute('role', 'dialog');
  el.setAttribute('aria-label', t('react.picker'));
  const grid = h('div', 'emoji-grid');
  grid.setAttribute('role', 'grid');
  const cols = window.innerWidth <= 400 ? 4 : 8;
  const buttons = PICKER.map((emoji, i) => {
    const b = h('button', 'emoji-choice', emoji);
    b.type = 'button';
    b.tabIndex = i === 0 ? 0 : -1;
    b.setAttribute('aria-label', t('react.add_one', { emoji }));
    b.addEventListener('click', () => {
      pickerClose();
      onPick(emoji);
    });
    return b;
  });
  grid.append(...buttons);
  el.append(grid);
  el.addEventListener('keydown', (e) => {
    const i = buttons.indexOf(document.activeElement);
    let j = i;
    if (e.key === 'ArrowRight') j = i + 1;
    else if (e.key === 'ArrowLeft') j = i - 1;
    else if (e.key === 'ArrowDown') j = i + cols;
    else if (e.key === 'ArrowUp') j = i - cols;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = buttons.length - 1;
    else if (e.key === 'Escape' || e.key === 'Tab') {
      e.preventDefault();
      e.stopPropagation();
      pickerClose();
      return;
    } else return;
    e.preventDefault();
    if (j < 0 || j >= buttons.length || i < 0) return;
    buttons[i].tabIndex = -1;
    buttons[j].tabIndex = 0;
    buttons[j].focus();
  });
  document.body.append(el);
  // Under the anchor, kept inside the window (360 px phones included).
  const a = anchor.getBoundingClientRect();
  const w = el.offsetWidth;
  const left = Math.max(8, Math.min(a.right - w, window.innerWidth - w - 8));
  let top = a.bottom + 4;
  if (top + el.offsetHeight > window.innerHeight - 8) top = Math.max(8, a.top - el.offsetHeight - 4);
  el.style.left = `${left}px`;
  el.style.top = `${top}px`;
  picker = { el, anchor };
  document.addEventListener('pointerdown', outside, true);
  buttons[0].focus();
}

// The menu of a message: reply and react for everyone, edit for its
// author, delete for its author or a moderator. acts: {reply, react(btn),
// edit?, del?}.
export function messageMenu(acts) {
  const bar = h('div', 'msg-menu');
  bar.setAttribute('role', 'group');
  bar.setAttribute('aria-label', t('msg.actions'));
  const add = (cls, key, fn) => {
    const b = h('button', 'msg-menu-btn ' + cls, t(key));
    b.type = 'button';
    b.addEventListener('click', () => {
      // a touch menu closes once used
      const li = b.closest('.msg');
      if (li) li.classList.remove('menu-open');
      fn(b);
    });
    bar.append(b);
  };
  add('msg-reply', 'msg.reply', acts.reply);
  add('msg-react', 'msg.react', acts.react);
  if (acts.edit) add('msg-edit', 'msg.edit', acts.edit);
  if (acts.del) add('msg-delete danger', 'msg.delete', acts.del);
  return bar;
}

// A touch screen has no hover: a long press on a message opens its menu
// (the class menu-open), a tap elsewhere closes it.
export function longPress(li) {
  let timer = null;
  let x = 0;
  let y = 0;
  const stop = () => {
    clearTimeout(timer);
    timer = null;
  };
  li.addEventListener('pointerdown', (e) => {
    if (e.pointerType !== 'touch') return;
    x = e.clientX;
    y = e.clientY;
    stop();
    timer = setTimeout(() => {
      timer = null;
      for (const o of document.querySelectorAll('.msg.menu-open')) if (o !== li) o.classList.remove('menu-open');
      li.classList.add('menu-open');
      const first = li.querySelector('.msg-menu-btn');
      if (first) first.focus({ preventScroll: true });
    }, LONG_PRESS_MS);
  });
  li.addEventListener('pointermove', (e) => {
    if (timer && Math.hypot(e.clientX - x, e.clientY - y) > 10) stop();
  });
  for (const type of ['pointerup', 'pointercancel', 'pointerleave']) li.addEventListener(type, stop);
  // the long press must not also select text or open the browser's menu
  li.addEventListener('contextmenu', (e) => {
    if (li.classList.contains('menu-open')) e.preventDefault();
  });
}

document.addEventListener('pointerdown', (e) => {
  for (const o of document.querySelectorAll('.msg.menu-open')) if (!o.contains(e.target)) o.classList.remove('menu-open');
});
