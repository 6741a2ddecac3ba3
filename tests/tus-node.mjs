// tus-node.mjs: tus-js-client (a tus client natter did not write) uploads
// to natterd from Node.js: a file in 256 KiB chunks, then another aborted
// part way and resumed from its upload URL (the client asks HEAD for the
// offset). Prints one JSON line per upload: {id, url, size}; exits non-zero
// on any error. Run by tests/integration/tus-client.sh.
//   node tus-node.mjs BASE TOKEN FILE1 FILE2
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const deps = process.env.E2E_DEPS_DIR;
const require = createRequire(path.join(deps, 'package.json'));
const tus = require('tus-js-client');

const [base, token, file1, file2] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}` };

function upload(file, opts = {}) {
  return new Promise((resolve, reject) => {
    const buf = fs.readFileSync(file);
    const up = new tus.Upload(buf, {
      endpoint: `${base}/api/uploads`,
      chunkSize: 256 * 1024,
      retryDelays: [0, 200, 500],
      headers,
      metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
      uploadUrl: opts.uploadUrl || null,
      onProgress: (sent) => {
        if (opts.abortAt && sent >= opts.abortAt && !up.aborted) {
          up.aborted = true;
          up.abort().then(() => resolve({ aborted: true, url: up.url, sent }));
        }
      },
      onError: reject,
      onSuccess: () => resolve({ url: up.url, size: buf.length }),
    });
    up.start();
  });
}

const first = await upload(file1);
console.log(JSON.stringify({ ...first, id: first.url.split('/').pop() }));
const cut = await upload(file2, { abortAt: 512 * 1024 });
if (!cut.aborted) throw new Error('the second upload was not aborted');
const done = await upload(file2, { uploadUrl: cut.url });
if (done.url !== cut.url) throw new Error(`resumed at ${done.url}, not ${cut.url}`);
console.log(JSON.stringify({ ...done, id: done.url.split('/').pop(), resumed_after: cut.sent }));
