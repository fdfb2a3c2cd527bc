// A real CheerioCrawler through credpool (a live `credpool serve`) against
// a loopback site whose sessions misbehave in known ways: every page is
// fetched with a leased session's cookie, a block, a captcha and a logout
// are reported and the page retried with another session, and no
// exclusive session serves two requests at once.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { CheerioCrawler, Configuration, log } from '@crawlee/cheerio';
import { Credpool } from '../src/index.js';
import { CredpoolCrawlee, withCredpool } from '../src/crawlee.js';
import { canary, startServer } from './support/server.js';

let server;
let pool;
let viewer;

before(async () => {
  server = await startServer();
  pool = new Credpool({ addr: server.addr, token: server.tokens.crawler });
  viewer = new Credpool({ addr: server.addr, token: server.tokens.viewer });
  log.setLevel(log.LEVELS.OFF);
});

after(async () => {
  await server?.stop();
});

/** Sessions by cookie value: how each one answers. */
function sessions() {
  return {
    good: [canary('good'), canary('good'), canary('good')],
    blocked: canary('blocked'),
    captcha: canary('captcha'),
    gone: canary('gone'),
  };
}

function startSite(sids) {
  const inFlight = new Map();
  const record = { requests: [], overlaps: 0 };
  const srv = http.createServer((req, res) => {
    const sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1] ?? '';
    const n = (inFlight.get(sid) ?? 0) + 1;
    inFlight.set(sid, n);
    if (n > 1) record.overlaps++;
    record.requests.push({ sid, url: req.url });
    setTimeout(() => {
      inFlight.set(sid, inFlight.get(sid) - 1);
      const html = (status, body, headers = {}) => {
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
        res.end(body);
      };
      if (sids.good.includes(sid)) return html(200, `<html><title>${req.url}</title></html>`);
      if (sid === sids.blocked) return html(403, '<html>access denied</html>');
      if (sid === sids.captcha) return html(200, '<html><form id="captcha" action="/captcha"></form></html>');
      if (sid === sids.gone) return html(302, '', { location: '/login' });
      return html(401, 'who are you');
    }, 15);
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () =>
      resolve({ url: `http://127.0.0.1:${srv.address().port}`, record, close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(r); }) }),
    );
  });
}

test('a CheerioCrawler takes its cookies from credpool, reports every page and retries refusals elsewhere', async () => {
  const sids = sessions();
  const op = new Credpool({ addr: server.addr, token: server.tokens.operator });
  const all = [...sids.good.map((v, i) => [`good${i}`, v]), ['blocked', sids.blocked], ['captcha', sids.captcha], ['gone', sids.gone]];
  for (const [id, value] of all) {
    await op.addCredential({ site: 'crawl.test', type: 'session', id, maxConcurrent: 1, secrets: { cookies: [{ name: 'sid', value }] } });
  }
  const site = await startSite(sids);
  const events = [];
  const handled = [];
  const failed = [];
  try {
    const crawler = new CheerioCrawler(
      withCredpool(
        pool,
        { site: 'crawl.test', type: 'session', ttlSeconds: 60 },
        {
          maxConcurrency: 4,
          async requestHandler({ request, $ }) {
            handled.push({ url: request.url, title: $('title').text() });
          },
          async failedRequestHandler({ request }) {
            failed.push(request.url);
          },
        },
        { onEvent: (e) => events.push(e), maxWaitMs: 10_000 },
      ),
      new Configuration({ persistStorage: false, purgeOnStart: true }),
    );
    const urls = Array.from({ length: 40 }, (_, i) => `${site.url}/item/${i}`);
    await crawler.run(urls);
  } finally {
    await site.close();
  }
  assert.deepEqual(failed, []);
  assert.equal(handled.length, 40);
  for (const h of handled) assert.equal(h.title, new URL(h.url).pathname, 'the handler saw the good page');
  // Every request the site saw carried a credpool session; none was used twice at once.
  const known = new Set([...sids.good, sids.blocked, sids.captcha, sids.gone]);
  assert.ok(site.record.requests.every((r) => known.has(r.sid)), 'a request without a credpool cookie');
  assert.equal(site.record.overlaps, 0, 'an exclusive session served two requests at once');
  // Each bad session met a request, was reported, and its page was retried.
  const settled = events.filter((e) => e.type === 'settled');
  const byCred = (id) => settled.filter((e) => e.credential === id).map((e) => e.outcome);
  assert.ok(byCred('blocked').includes('blocked'), JSON.stringify(byCred('blocked')));
  assert.ok(byCred('captcha').includes('challenged'), JSON.stringify(byCred('captcha')));
  assert.ok(byCred('gone').includes('expired'), JSON.stringify(byCred('gone')));
  assert.equal(settled.filter((e) => e.outcome === 'success').length, 40);
  assert.equal(settled.length, site.record.requests.length, 'every page fetched was reported');
  assert.equal(events.filter((e) => e.type === 'leased').length, settled.length, 'every lease was settled');
  // The server counted the same reports.
  const [stats] = await viewer.stats({ site: 'crawl.test' });
  assert.equal(stats.successes, 40);
  assert.equal(stats.failures.blocked, byCred('blocked').filter((o) => o === 'blocked').length);
  assert.equal(stats.open_leases, 0);
});

test('requests wait out "nothing free" with nextFreeAt instead of failing', async () => {
  const op = new Credpool({ addr: server.addr, token: server.tokens.operator });
  const sids = sessions();
  await op.addCredential({ site: 'one.test', type: 'session', id: 'only', maxConcurrent: 1, secrets: { cookies: [{ name: 'sid', value: sids.good[0] }] } });
  const site = await startSite(sids);
  const events = [];
  let handled = 0;
  try {
    const cp = new CredpoolCrawlee(pool, { site: 'one.test' }, { onEvent: (e) => events.push(e), maxWaitMs: 15_000 });
    const crawler = new CheerioCrawler(
      cp.crawlerOptions({ maxConcurrency: 4, maxRequestRetries: 0, requestHandler: async () => { handled++; } }),
      new Configuration({ persistStorage: false, purgeOnStart: true }),
    );
    await crawler.run(Array.from({ length: 8 }, (_, i) => `${site.url}/item/${i}`));
  } finally {
    await site.close();
  }
  assert.equal(handled, 8, 'every request got the one session in turn (no retries allowed)');
  assert.equal(site.record.overlaps, 0);
  const refused = events.filter((e) => e.type === 'refused');
  assert.ok(refused.length >= 1, 'four workers and one session: some had to wait');
  assert.ok(refused.every((e) => e.error.reason === 'all-leased'), JSON.stringify(refused.map((e) => e.error.reason)));
});
