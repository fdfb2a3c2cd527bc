// The README's examples, run as written against a live server and a
// loopback site.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Credpool } from '../src/index.js';
import { canary, startServer } from './support/server.js';

const run = promisify(execFile);
const examples = fileURLToPath(new URL('../examples/', import.meta.url));
let server;
let site;
const cookie = canary('example');

before(async () => {
  server = await startServer();
  const op = new Credpool({ addr: server.addr, token: server.tokens.operator });
  for (const id of ['e1', 'e2']) {
    await op.addCredential({ site: 'shop.example', type: 'session', id, maxConcurrent: 1, secrets: { cookies: [{ name: 'sid', value: cookie }] } });
  }
  const srv = http.createServer((req, res) => {
    const ok = (req.headers.cookie ?? '').includes(`sid=${cookie}`);
    res.writeHead(ok ? 200 : 401, { 'content-type': 'text/html' });
    res.end(ok ? `<html><title>page ${req.url}</title></html>` : 'log in');
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  site = { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(r); }) };
});

after(async () => {
  await site?.close();
  await server?.stop();
});

async function example(file, env) {
  const cwd = mkdtempSync(join(tmpdir(), 'credpool-example-'));
  try {
    const out = await run(process.execPath, [join(examples, file)], {
      cwd,
      env: { ...process.env, CREDPOOL_ADDR: server.addr, CREDPOOL_TOKEN: server.tokens.crawler, CRAWLEE_LOG_LEVEL: 'OFF', ...env },
      timeout: 60_000,
    });
    return out.stdout;
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

test('the lease example fetches a page with a leased session and reports it', async () => {
  const out = await example('lease.js', { PAGE_URL: `${site.url}/item/1` });
  assert.match(out, /^200 success with e[12]$/m);
  assert.match(out, /^\d+ bytes$/m);
  assert.ok(!out.includes(cookie), 'the example printed a secret');
  const viewer = new Credpool({ addr: server.addr, token: server.tokens.viewer });
  assert.equal((await viewer.stats({ site: 'shop.example' }))[0].successes, 1);
});

test('the Crawlee example crawls through the pool', async () => {
  const out = await example('crawlee.js', { START_URL: `${site.url}/item/7` });
  assert.match(out, /\/item\/7: page \/item\/7/);
});

test("README shows the lease example as the file has it", async () => {
  const { readFileSync } = await import('node:fs');
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const code = readFileSync(join(examples, 'lease.js'), 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('//'))
    .join('\n')
    .trim();
  assert.ok(readme.includes(code), 'README.md\'s Node example differs from clients/node/examples/lease.js');
});
