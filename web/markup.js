// markup: a message's rendered form (the envelope's "html", which the server
// made safe when the message was sent) turned into DOM nodes through an
// allowlist, as a second line of defence. The string is parsed by DOMParser
// into an inert document (nothing in it runs or loads); only the elements
// and attributes listed here are copied, as new nodes of this page's
// document, and every other element leaves only its text behind. The raw
// string never reaches innerHTML. Links open in a new tab, without an
// opener or a referrer.

const ATTRS = {
  p: [], br: [], strong: [], em: [], del: [], code: ['class'], pre: [], blockquote: [],
  ul: [], ol: ['start'], li: [], hr: [],
  h1: [], h2: [], h3: [], h4: [], h5: [], h6: [],
  table: [], thead: [], tbody: [], tr: [], th: ['align'], td: ['align'],
  a: ['href', 'title'], span: ['class', 'data-user', 'role', 'title', 'aria-label'],
};
// Elements whose content is not text a reader should see.
const DROP = new Set(['script', 'style', 'template', 'noscript', 'iframe', 'object', 'embed', 'svg', 'math']);
const CHECK = {
  href: (v) => /^(https?:\/\/|mailto:)/i.test(v),
  class: (v) => /^(mention|emoji|language-[A-Za-z0-9_+#.-]{1,32})$/.test(v),
  start: (v) => /^[0-9]{1,9}$/.test(v),
  align: (v) => /^(left|center|right)$/.test(v),
  role: (v) => v === 'img',
  'data-user': (v) => /^[A-Za-z0-9_.-]{1,32}$/.test(v),
  title: (v) => v.length <= 200,
  'aria-label': (v) => v.length <= 64,
};
const MAX_DEPTH = 40;

function copy(src, dst, depth) {
  for (const n of src.childNodes) {
    if (n.nodeType === Node.TEXT_NODE) {
      dst.append(n.data);
      continue;
    }
    if (n.nodeType !== Node.ELEMENT_NODE) continue;
    const tag = n.localName;
    if (DROP.has(tag)) continue;
    if (!Object.hasOwn(ATTRS, tag) || depth >= MAX_DEPTH) {
      copy(n, dst, depth + 1); // its text only
      continue;
    }
    let el = document.createElement(tag);
    for (const name of ATTRS[tag]) {
      const v = n.getAttribute(name);
      if (v !== null && CHECK[name] ? CHECK[name](v) : v !== null) el.setAttribute(name, v);
    }
    if (tag === 'a') {
      if (!el.hasAttribute('href')) {
        el = document.createElement('span'); // a link to nowhere is its text
      } else {
        el.target = '_blank';
        el.rel = 'noopener noreferrer nofollow ugc';
      }
    }
    copy(n, el, depth + 1);
    // a block that may scroll sideways can be scrolled from the keyboard
    if (tag === 'pre') el.tabIndex = 0;
    if (tag === 'table') {
      // a wide table scrolls inside the message, never past the column
      const wrap = document.createElement('div');
      wrap.className = 'md-table';
      wrap.tabIndex = 0;
      wrap.append(el);
      el = wrap;
    }
    dst.append(el);
  }
}

// A fragment of safe nodes for html (a string); text if it is not one.
export function renderMarkup(html) {
  const frag = document.createDocumentFragment();
  if (typeof html !== 'string') return frag;
  const doc = new DOMParser().parseFromString(html, 'text/html');
  copy(doc.body, frag, 0);
  return frag;
}
