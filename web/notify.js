// notify.js: telling the person that something arrived: the polite live
// region that screen readers read for new messages in the open room, and
// desktop notifications as a room's notification level asks. It counts
// nothing (unread counts are app.js's) and stores nothing (the levels are
// settings, settings.js's).

const ANNOUNCE_KEEP = 5;

// Whether text names username as @username.
export function notifyMentions(text, username) {
  if (!username || typeof text !== 'string') return false;
  const name = username.replace(/[.]/g, '\\.');
  return new RegExp(`(^|[^A-Za-z0-9_.-])@${name}(?![A-Za-z0-9_-])`, 'i').test(text);
}

// A desktop notification for a message, if the room's prefs ({notify,
// muted}) want one for it, the browser allows them (asked for in
// settings) and the page is not in front. msg: {title, body, tag}.
export function notifyDesktop(prefs, mention, msg, onclick) {
  if (prefs.muted || prefs.notify === 'none' || (prefs.notify === 'mentions' && !mention)) return;
  if (!('Notification' in window) || Notification.permission !== 'granted' || !document.hidden) return;
  try {
    const n = new Notification(msg.title, {
      body: msg.body.slice(0, 200),
      tag: msg.tag,
      lang: document.documentElement.lang,
    });
    n.onclick = () => {
      window.focus();
      onclick();
      n.close();
    };
  } catch (e) {
    /* some browsers allow notifications only from a service worker */
  }
}

// Say line through the polite live region (#announce): screen readers
// read it when idle. Only the last few lines are kept: it is no history.
export function notifyAnnounce(line) {
  const box = document.getElementById('announce');
  const p = document.createElement('p');
  p.textContent = line;
  box.append(p);
  while (box.children.length > ANNOUNCE_KEEP) box.firstElementChild.remove();
}
