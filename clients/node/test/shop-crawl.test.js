// A real CheerioCrawler crawl of the simulated shop (`credpool simulate
// --serve-sites`) through a live `credpool serve`: 30 accounts, 30 s, 8
// requests at once. The card's SLOs come from the crawler's own records
// (each acquire, lease, page and report), and are checked against the
// site's own records printed when it stops.
//
//   CREDPOOL_BIN=target/debug/credpool node --test clients/node/test/shop-crawl.test.js
//
// SHOP_ACCOUNTS, SHOP_SEED, SHOP_SECONDS, SHOP_CONCURRENCY and
// SHOP_DEFENCE_CHANGE_AT change the run.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheerioCrawler, Configuration, log } from '@crawlee/cheerio';
import { Credpool, defaultChecks } from '../src/index.js';
import { withCredpool } from '../src/crawlee.js';
import { cli, credpoolBin, serve, stopChild, untilLine } from './support/server.js';

const ACCOUNTS = Number(process.env.SHOP_ACCOUNTS ?? 30);
const SEED = Number(process.env.SHOP_SEED ?? 42);
const SECONDS = Number(process.env.SHOP_SECONDS ?? 30);
const CONCURRENCY = Number(process.env.SHOP_CONCURRENCY ?? 8);
// The shop halves its rate and starts blocking across the site half-way
// (SHOP_DEFENCE_CHANGE_AT, `none` for never), so the crawl meets 429s and
// 403s and must rest and retry.
const CHANGE_AT = process.env.SHOP_DEFENCE_CHANGE_AT ?? `${Math.round(SECONDS / 2)}s`;
const DEFENCE = CHANGE_AT === 'none' ? [] : ['--defence-change-at', CHANGE_AT];

/** The shop on loopback, its accounts in a fresh store: its ready line and a stop that answers its records. */
async function startShop(dir) {
  const env = { ...process.env };
  for (const k of ['CREDPOOL_ADDR', 'CREDPOOL_TOKEN', 'CREDENTIAL_ENCRYPTION_KEY', 'CREDPOOL_LOG']) delete env[k];
  const child = spawn(
    credpoolBin(),
    ['--data-dir', join(dir, 'data'), '--config', join(dir, 'credpool.toml'), 'simulate', '--serve-sites',
      '--sites', 'shop.sim', '--accounts', String(ACCOUNTS), '--seed', String(SEED), ...DEFENCE],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const [line] = await untilLine(child, () => out + (child.exitCode !== null ? err : ''), /^\{.*\}$/m, 'credpool simulate --serve-sites');
  const ready = JSON.parse(line);
  const stop = async () => {
    await stopChild(child);
    const last = out.trim().split('\n').at(-1);
    return JSON.parse(last);
  };
  return { ready, stop };
}

test(`a CheerioCrawler crawls the simulated shop through the pool for ${SECONDS} s and meets the card's SLOs`, { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'credpool-shop-'));
  writeFileSync(join(dir, 'credpool.toml'), '');
  cli(dir, ['init']);
  const shop = await startShop(dir);
  let server;
  let siteRecords;
  try {
    const site = shop.ready.sites[0];
    assert.equal(site.name, 'shop.sim');
    assert.equal(site.accounts, ACCOUNTS);
    server = await serve(dir, shop.ready.config);
    const viewer = new Credpool({ addr: server.addr, token: server.tokens.viewer });
    const pool = new Credpool({ addr: server.addr, token: server.tokens.crawler });

    // The server's lifecycle logs the accounts in.
    const until = Date.now() + 60_000;
    for (;;) {
      const [s] = await viewer.stats({ site: 'shop.sim' });
      if (s.by_status.active >= ACCOUNTS * 0.9) break;
      assert.ok(Date.now() < until, `accounts not logged in: ${JSON.stringify(s.by_status)}`);
      await new Promise((r) => setTimeout(r, 200));
    }

    // The crawler's own records.
    const events = [];
    const answers = []; // {credential, at, status, marker}
    const recorder = ({ status, body, credential }) => {
      const marker = body?.includes('account banned') ? 'banned' : body?.includes('access denied') ? 'denied' : null;
      answers.push({ credential, at: Date.now(), status, marker });
      return null;
    };
    let pagesOk = 0;
    let next = 0;
    const started = Date.now();
    const deadline = started + SECONDS * 1000;
    const url = () => `${site.url}/item/${next++}`;
    log.setLevel(log.LEVELS.OFF);
    const crawler = new CheerioCrawler(
      withCredpool(
        pool,
        { site: 'shop.sim' },
        {
          minConcurrency: CONCURRENCY,
          maxConcurrency: CONCURRENCY,
          maxRequestRetries: 8,
          async requestHandler({ $ }) {
            if (/^item \d+$/.test($('html').text().trim())) pagesOk++;
            if (Date.now() < deadline) await crawler.addRequests([url()]);
          },
          async failedRequestHandler() {
            if (Date.now() < deadline) await crawler.addRequests([url()]);
          },
        },
        { onEvent: (e) => events.push(e), checks: [recorder, ...defaultChecks], maxWaitMs: 20_000 },
      ),
      new Configuration({ persistStorage: false, purgeOnStart: true }),
    );
    await crawler.run(Array.from({ length: CONCURRENCY * 2 }, url));
    const elapsed = (Date.now() - started) / 1000;

    // Availability: acquires answered with a credential.
    const leased = events.filter((e) => e.type === 'leased');
    const refused = events.filter((e) => e.type === 'refused');
    const availability = leased.length / (leased.length + refused.length);
    // Banned for abuse: an account answered "account banned" after it had answered "access denied".
    const abused = new Set();
    const denied = new Set();
    for (const a of answers.sort((x, y) => x.at - y.at)) {
      if (a.marker === 'denied') denied.add(a.credential);
      if (a.marker === 'banned' && denied.has(a.credential)) abused.add(a.credential);
    }
    const bannedAccounts = new Set(answers.filter((a) => a.marker === 'banned').map((a) => a.credential));
    // Exclusive use: two leases of one credential whose spans overlap.
    const settledAt = new Map(events.filter((e) => e.type === 'settled').map((e) => [e.lease, e.at]));
    const spans = new Map();
    for (const e of leased) {
      const list = spans.get(e.credential) ?? [];
      list.push([e.at, settledAt.get(e.lease) ?? Infinity]);
      spans.set(e.credential, list);
    }
    let overlaps = 0;
    for (const list of spans.values()) {
      list.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < list.length; i++) if (list[i][0] < list[i - 1][1]) overlaps++;
    }
    const outcomes = {};
    for (const e of events.filter((x) => x.type === 'settled')) outcomes[e.outcome] = (outcomes[e.outcome] ?? 0) + 1;
    const unsettled = leased.filter((e) => !settledAt.has(e.lease)).length;

    await server.stop();
    server = null;
    siteRecords = (await shop.stop()).records[0];
    const figures =
      `crawl figures (shop.sim, ${ACCOUNTS} accounts, seed ${SEED}, ${SECONDS} s, ${CONCURRENCY} at once, defence change at ${CHANGE_AT}, ${elapsed.toFixed(0)} s in all): ` +
      `availability ${(availability * 100).toFixed(1)}% (${leased.length} of ${leased.length + refused.length} acquires); ` +
      `pages ok ${pagesOk} of ${settledAt.size} fetched (${(pagesOk / elapsed).toFixed(1)}/s); reports ${JSON.stringify(outcomes)}; ` +
      `accounts banned for abuse ${abused.size} (site's records: ${siteRecords.banned_for_abuse}); ` +
      `accounts banned ${bannedAccounts.size} (site: ${siteRecords.banned}, ${siteRecords.banned_at_random} at random); ` +
      `exclusive sessions used by two requests at once ${overlaps} (site: ${siteRecords.concurrent_use}); ` +
      `leases never settled ${unsettled}`;
    console.log(figures);

    assert.ok(leased.length >= SECONDS * 2, `too few requests for a crawl: ${figures}`);
    assert.ok(availability >= 0.95, `availability under 95%: ${figures}`);
    assert.equal(abused.size, 0, figures);
    assert.equal(siteRecords.banned_for_abuse, 0, figures);
    assert.equal(overlaps, 0, figures);
    assert.equal(siteRecords.concurrent_use, 0, figures);
    assert.equal(unsettled, 0, figures);
    assert.equal(siteRecords.pages_ok, pagesOk, `the site served ${siteRecords.pages_ok} good pages, the crawler saw ${pagesOk}`);
  } finally {
    await server?.stop();
    if (!siteRecords) await shop.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
});
