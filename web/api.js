// api.js: the JSON API over fetch. Every call resolves with the parsed body
// or throws an ApiError that carries the HTTP status, the server's error
// code and a message a person can read. Authentication is the HttpOnly
// session cookie, which the browser sends on its own (same origin).

import { errorText } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter, reason) {
    super(message);
    this.status = status;       // 0: the request never got an answer
    this.code = code;           // the server's "error" code, or "network"
    this.retryAfter = retryAfter; // seconds, from Retry-After, or null
    this.reason = reason;       // 403 disabled: the admin's reason
  }
  get offline() {
    return this.status === 0;
  }
}

// What to tell a person about a failed call, in their language: the
// catalog's words for the server's stable error code, or the server's own
// (English) message for a code this client does not know.
export function friendly(err) {
  if (!(err instanceof ApiError)) return String(err && err.message || err);
  return errorText(err.code, err.message, err.status, { n: Math.ceil(err.retryAfter || 60) });
}

export function retryAfterSeconds(res) {
  const h = res.headers.get('Retry-After');
  if (!h) return null;
  const n = Number(h);
  if (Number.isFinite(n)) return Math.max(0, n);
  const t = Date.parse(h);
  return Number.isFinite(t) ? Math.max(0, (t - Date.now()) / 1000) : null;
}

// One request. opts: {body, signal, timeout (ms, default 15000)}.
export async function api(method, path, opts = {}) {
  const ctl = new AbortController();
  const timeout = setTimeout(() => ctl.abort(), opts.timeout || 15000);
  if (opts.signal) {
    if (opts.signal.aborted) ctl.abort();
    else opts.signal.addEventListener('abort', () => ctl.abort(), { once: true });
  }
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    signal: ctl.signal,
    headers: { Accept: 'application/json' },
  };
  if (opts.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    clearTimeout(timeout);
    if (opts.signal && opts.signal.aborted) throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server.', null);
  }
  let body = null;
  try {
    const text = await res.text();
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    body = null;
  } finally {
    clearTimeout(timeout);
  }
  if (!res.ok) {
    const code = body && body.error ? body.error : `http_${res.status}`;
    const message = body && body.message ? body.message : res.statusText;
    let ra = retryAfterSeconds(res);
    if (ra == null && body && Number.isFinite(body.retry_after)) ra = body.retry_after;
    // 502/503/504 from a proxy mean the server is away, like no answer.
    const reason = body && typeof body.reason === 'string' ? body.reason : undefined;
    throw new ApiError(res.status, code, message, ra, reason);
  }
  return body;
}

export const enc = encodeURIComponent;
