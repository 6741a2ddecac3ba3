// e2e.mjs: the browser end-to-end suite, run by run.sh (which sets the
// environment: NATTERD, NATTER_DB_DIR, NATTER_WEB_ROOT, CHROMIUM, NGINX,
// E2E_DEPS_DIR, E2E_WORK, E2E_SCREENSHOTS). It starts natterd and nginx
// itself, on free ports, and stops them however it ends. What scenarios
// share is in kit.mjs; the scenarios are in scenarios/, one file per area,
// run in the order of AREAS below.

import { browser, CLUSTER, killAll, launch, results, server, SHOTS, skipped, startShared } from './kit.mjs';

const AREAS = ['chat', 'interface', 'moderation', 'messages', 'people', 'admin', 'files', 'limits'];

async function main() {
  await launch();
  await startShared();
  for (const area of AREAS) {
    const run = (await import(`./scenarios/${area}.mjs`)).default;
    await run();
  }
  await browser.close();
  await server.stop();
}

let crashed = null;
try {
  await main();
} catch (e) {
  crashed = e;
  console.log('not ok - setup: ' + (e && e.stack || e));
  results.push(false);
  if (server) console.log('--- natterd log (tail) ---\n' + server.tail());
}
killAll();
const passed = results.filter(Boolean).length;
const failed = results.length - passed;
if (failed && server && !crashed) console.log('--- natterd log (tail) ---\n' + server.tail(40));
console.log(`screenshots: ${SHOTS}`);
if (CLUSTER) console.log(`cluster mode: the shared server is ${server ? server.base : '(none)'}, ${skipped.length} skipped`);
console.log(`e2e: ${passed} passed, ${failed} failed${skipped.length ? `, ${skipped.length} skipped` : ''}`);
process.exit(failed || !results.length ? 1 : 0);
