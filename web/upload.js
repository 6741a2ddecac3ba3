// upload.js: a small tus 1.0 client (core + creation + termination) for
// the browser, so that a file reaches natter through proxies that refuse
// large bodies (chunks below 1 MiB, 512 KiB by default) and across a
// dropped connection or a reload. One PATCH per chunk; after a failure it
// waits (1 s, doubling up to 30 s), asks the server's offset with HEAD and
// goes on from there. The upload's URL is remembered in localStorage under
// the file's name, size, type and time, so choosing the same file again
// after a reload resumes it instead of starting over.
//
// It knows nothing of rooms or messages: it hands back the finished file
// object ({id, name, size, type, width, height, url}).

const TUS = '1.0.0';
export const CHUNK_DEFAULT = 512 * 1024;
const KEY = 'natter.tus.';

// UTF-8 safe base64 for Upload-Metadata.
function b64(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

export class UploadError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(res) {
  let code = 'http_' + res.status;
  let message = res.statusText || code;
  try {
    const j = await res.json();
    if (j && j.error) { code = j.error; message = j.message || code; }
  } catch { /* no JSON body */ }
  return new UploadError(res.status, code, message);
}

export class TusUpload {
  // opts: {chunkSize, onProgress(sent, total), endpoint}
  constructor(file, opts = {}) {
    this.file = file;
    this.chunk = Math.max(16 * 1024, Math.min(opts.chunkSize || CHUNK_DEFAULT, 1024 * 1024 - 1024));
    this.onProgress = opts.onProgress || (() => {});
    this.endpoint = opts.endpoint || '/api/uploads';
    this.url = null;
    this.offset = 0;
    this.paused = false;
    this.cancelled = false;
    this.ctl = new AbortController();
    this.key = KEY + [file.name, file.size, file.type, file.lastModified].join('|');
    this.result = null;
  }

  async head() {
    const res = await fetch(this.url, {
      method: 'HEAD', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Tus-Resumable': TUS }, signal: this.ctl.signal,
    });
    if (!res.ok) return null;
    const off = Number(res.headers.get('Upload-Offset'));
    return Number.isFinite(off) ? off : null;
  }

  async create() {
    const res = await fetch(this.endpoint, {
      method: 'POST', credentials: 'same-origin', cache: 'no-store', signal: this.ctl.signal,
      headers: {
        'Tus-Resumable': TUS,
        'Upload-Length': String(this.file.size),
        'Upload-Metadata': `filename ${b64(this.file.name || 'file')},filetype ${b64(this.file.type || '')}`,
      },
    });
    if (res.status !== 201) throw await errorOf(res);
    this.url = res.headers.get('Location');
    this.offset = 0;
    try { localStorage.setItem(this.key, this.url); } catch { /* full or blocked */ }
  }

  // Start, or resume a remembered upload of the same file. Resolves with
  // the file object; rejects with an UploadError (limits, quota) or when
  // cancelled.
  async start() {
    let remembered = null;
    try { remembered = localStorage.getItem(this.key); } catch { /* blocked */ }
    if (remembered) {
      this.url = remembered;
      const off = await this.head().catch(() => null);
      if (off == null) {
        this.url = null;
        this.forget();
      } else {
        this.offset = off;
      }
    }
    if (!this.url) await this.create();
    this.onProgress(this.offset, this.file.size);
    return this.run();
  }

  async run() {
    let wait = 1000;
    while (this.offset < this.file.size || this.file.size === 0) {
      if (this.cancelled) throw new UploadError(0, 'cancelled', 'cancelled');
      if (this.paused) return new Promise((resolve, reject) => { this.resumeWith = { resolve, reject }; });
      if (this.file.size === 0) break;
      const end = Math.min(this.offset + this.chunk, this.file.size);
      let res;
      try {
        res = await fetch(this.url, {
          method: 'PATCH', credentials: 'same-origin', cache: 'no-store', signal: this.ctl.signal,
          headers: {
            'Tus-Resumable': TUS,
            'Upload-Offset': String(this.offset),
            'Content-Type': 'application/offset+octet-stream',
          },
          body: this.file.slice(this.offset, end),
        });
      } catch (e) {
        if (this.paused || this.cancelled) continue;
        // A dropped connection: wait, then ask where the server is.
        await sleep(wait, this.ctl.signal);
        wait = Math.min(wait * 2, 30000);
        const off = await this.head().catch(() => null);
        if (off != null) this.offset = off;
        continue;
      }
      if (res.status === 204) {
        this.offset = Number(res.headers.get('Upload-Offset')) || end;
        wait = 1000;
        this.onProgress(this.offset, this.file.size);
      } else if (res.status === 409 || res.status === 423) {
        await sleep(res.status === 423 ? wait : 0, this.ctl.signal);
        const off = await this.head().catch(() => null);
        if (off != null) this.offset = off;
        if (off != null && off >= this.file.size) break;
      } else if (res.status === 404) {
        // expired or gone: start over
        this.forget();
        await this.create();
      } else if (res.status >= 500 || res.status === 429 || res.status === 408) {
        await sleep(wait, this.ctl.signal);
        wait = Math.min(wait * 2, 30000);
      } else {
        throw await errorOf(res);
      }
    }
    const res = await fetch(this.url, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    if (!res.ok) throw await errorOf(res);
    const body = await res.json();
    this.forget();
    this.result = body.file;
    return body.file;
  }

  pause() {
    if (this.paused || this.result) return;
    this.paused = true;
    this.ctl.abort();
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    this.ctl = new AbortController();
    const w = this.resumeWith;
    this.resumeWith = null;
    const go = async () => {
      const off = await this.head().catch(() => null);
      if (off != null) this.offset = off;
      return this.run();
    };
    if (w) go().then(w.resolve, w.reject);
  }

  // Termination: the server forgets the upload.
  async cancel() {
    this.cancelled = true;
    this.ctl.abort();
    this.forget();
    if (this.resumeWith) this.resumeWith.reject(new UploadError(0, 'cancelled', 'cancelled'));
    if (this.url && !this.result) {
      await fetch(this.url, { method: 'DELETE', credentials: 'same-origin', headers: { 'Tus-Resumable': TUS } }).catch(() => {});
    }
  }

  forget() {
    try { localStorage.removeItem(this.key); } catch { /* blocked */ }
  }
}
