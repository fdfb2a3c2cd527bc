// Several servers: a call moves on from a server that is down, hangs up or
// has no leader, and acquire is not sent twice when it may have arrived.
// The live server is real; the broken peers are a closed port, a socket
// that reads the request and hangs up, and an HTTP peer answering 503
// `no_leader` (what a standby says while no server leads the tenant).

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError, ConnectionError, Credpool, sleep } from '../src/index.js';
import { cli, serve, startServer } from './support/server.js';

let server;
let operator;
let viewer;
let n = 0;

before(async () => {
  server = await startServer();
  operator = new Credpool({ addr: server.addr, token: server.tokens.operator });
  viewer = new Credpool({ addr: server.addr, token: server.tokens.viewer });
});

after(async () => {
  await server?.stop();
});

/** A new site with one session credential. */
async function oneSession() {
  const site = `fo${process.pid}x${n++}.example`;
  await operator.addCredential({
    site,
    type: 'session',
    id: `${site}-s0`,
    maxConcurrent: 1,
    secrets: { cookies: [{ name: 'sid', value: 'v0' }] },
  });
  return site;
}

async function openLeases(site) {
  const [s] = await viewer.stats({ site });
  return s.open_leases;
}

/** A loopback port nothing listens on. */
async function deadAddr() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = /** @type {net.AddressInfo} */ (srv.address());
  await new Promise((r) => srv.close(r));
  return `http://127.0.0.1:${port}`;
}

/** Reads each request's first line, then hangs up without an answer. */
async function hangUpPeer() {
  const requests = [];
  const srv = net.createServer((sock) => {
    sock.once('data', (d) => {
      requests.push(d.toString('latin1').split('\r\n', 1)[0]);
      sock.destroy();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = /** @type {net.AddressInfo} */ (srv.address());
  return { addr: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => srv.close(r)) };
}

/** Answers everything 503 no_leader with Retry-After: 1. */
async function noLeaderPeer() {
  const requests = [];
  const srv = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    req.resume();
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', connection: 'close' });
    res.end(JSON.stringify({ error: { code: 'no_leader', message: 'no server leads the tenant' } }));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = /** @type {import('node:net').AddressInfo} */ (srv.address());
  return { addr: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => srv.close(r)) };
}

test('the first server dead, the second alive: every call goes through', async () => {
  const site = await oneSession();
  const dead = await deadAddr();
  const pool = new Credpool({ addr: `${dead}, ${server.addr}`, token: server.tokens.crawler });
  // Acquire too: a refused connection carried nothing.
  const lease = await pool.acquire({ site });
  assert.equal(lease.cookieHeader, 'sid=v0');
  const effect = await lease.report('success');
  assert.equal(effect.status, 'active');
  assert.ok(pool.addr.startsWith(server.addr), pool.addr);
  const list = new Credpool({ addr: [dead, server.addr], token: server.tokens.viewer });
  assert.equal((await list.stats({ site }))[0].site, site);
});

test('every server dead: a ConnectionError after the failover deadline', async () => {
  const pool = new Credpool({ addr: [await deadAddr(), await deadAddr()], token: 'cpt_unused', failoverDeadlineMs: 500 });
  const started = Date.now();
  await assert.rejects(pool.stats(), (e) => e instanceof ConnectionError && /ECONNREFUSED/.test(e.message) && !e.message.includes('cpt_unused'));
  const took = Date.now() - started;
  assert.ok(took >= 500 && took < 20_000, `${took} ms`);
});

test('an acquire that may have arrived is not sent again; report, release and reads are', async () => {
  const site = await oneSession();
  const peer = await hangUpPeer();
  try {
    const pool = new Credpool({ addr: [peer.addr, server.addr], token: server.tokens.crawler });
    await assert.rejects(pool.acquire({ site }), ConnectionError);
    assert.deepEqual(peer.requests, ['POST /v1/acquire HTTP/1.1']);
    assert.equal(await openLeases(site), 0, 'the live server never saw the acquire');
    // The next call starts on the other server.
    const first = await pool.acquire({ site });
    assert.equal(await openLeases(site), 1);

    const again = new Credpool({ addr: [peer.addr, server.addr], token: server.tokens.crawler });
    const effect = await again.report(first.id, { outcome: 'success' });
    assert.equal(effect.status, 'active');
    assert.match(peer.requests.at(-1), new RegExp(`^POST /v1/leases/${first.id}/report `));
    assert.equal(await openLeases(site), 0);

    const second = await pool.acquire({ site });
    const third = new Credpool({ addr: [peer.addr, server.addr], token: server.tokens.crawler });
    await third.release(second.id);
    assert.match(peer.requests.at(-1), new RegExp(`^POST /v1/leases/${second.id}/release `));
    assert.equal(await openLeases(site), 0);

    const reader = new Credpool({ addr: [peer.addr, server.addr], token: server.tokens.viewer });
    assert.equal((await reader.listCredentials({ site }))[0].id, `${site}-s0`);
    assert.match(peer.requests.at(-1), /^GET \/v1\/credentials/);
  } finally {
    await peer.close();
  }
});

test('503 no_leader: reads go to the next server after its Retry-After; acquire does not', async () => {
  const site = await oneSession();
  const peer = await noLeaderPeer();
  try {
    const reader = new Credpool({ addr: [peer.addr, server.addr], token: server.tokens.viewer });
    const started = Date.now();
    assert.equal((await reader.stats({ site }))[0].site, site);
    assert.deepEqual(peer.requests, [`GET /v1/stats?site=${site}`]);
    assert.ok(Date.now() - started >= 1000, 'Retry-After: 1 was honoured');

    // A standby says no_leader also when its forward was cut after it was
    // sent: an acquire may have been applied, so it is not sent again.
    const pool = new Credpool({ addr: [peer.addr, server.addr], token: server.tokens.crawler });
    await assert.rejects(pool.acquire({ site }), (e) => e instanceof ApiError && e.code === 'no_leader' && e.retryAfter === 1);
    assert.equal(await openLeases(site), 0);
    // The next call starts on the other server.
    const lease = await pool.acquire({ site });
    await lease.report('success');

    const alone = new Credpool({ addr: peer.addr, token: server.tokens.viewer, failoverDeadlineMs: 300 });
    await assert.rejects(alone.stats(), (e) => e instanceof ApiError && e.code === 'no_leader');
  } finally {
    await peer.close();
  }
});

test('a server killed mid-run: reports get through, leases go on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'credpool-node-fo-'));
  const rport = await freePort();
  const redis = spawn('redis-server', ['--port', String(rport), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const nodes = [];
  try {
    for (let i = 0; i < 50; i++) {
      if (await canConnect(rport)) break;
      await sleep(100);
    }
    writeFileSync(join(dir, 'credpool.toml'), '');
    cli(dir, ['init']);
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      nodes.push(await serve(dir, join(dir, 'credpool.toml'), ['--store', `redis://127.0.0.1:${rport}/0`, '--advertise', url, '--lock-ttl', '1s', '--listen', `127.0.0.1:${port}`]));
    }
    const addrs = nodes.map((n) => n.addr);
    const leader = async () => {
      for (const [i, n] of nodes.entries()) {
        if (n.killed) continue;
        try {
          const h = await (await fetch(`${n.addr}/v1/health`)).json();
          if (h.tenants?.default?.leader) return i;
        } catch {
          // not answering
        }
      }
      return null;
    };
    let first = null;
    for (let i = 0; i < 300 && first === null; i++) {
      first = await leader();
      if (first === null) await sleep(100);
    }
    assert.notEqual(first, null, 'no leader');
    const site = `killed${process.pid}.example`;
    const op = new Credpool({ addr: addrs, token: nodes[0].tokens.operator });
    for (let i = 0; i < 4; i++) {
      await op.addCredential({ site, type: 'session', id: `${site}-${i}`, maxConcurrent: 1, secrets: { cookies: [{ name: 'sid', value: `v${i}` }] } });
    }
    const pool = new Credpool({ addr: addrs, token: nodes[0].tokens.crawler, timeoutMs: 5_000 });
    const reported = [];
    const acquireErrors = [];
    let stop = false;
    const crawl = (async () => {
      while (!stop) {
        let lease;
        try {
          lease = await pool.acquire({ site }, { maxWaitMs: 10_000 });
        } catch (e) {
          // Not sent again when it may have been applied.
          acquireErrors.push(e instanceof ApiError ? e.code : 'connection');
          await sleep(e instanceof ApiError ? 1000 : 50);
          continue;
        }
        await lease.report('success');
        reported.push(lease.id);
      }
    })();
    await sleep(1500);
    const before = reported.length;
    nodes[first].killed = true;
    nodes[first].kill();
    await sleep(5000);
    stop = true;
    await crawl;
    assert.ok(before > 0 && reported.length > before, `${before} then ${reported.length}: ${acquireErrors}`);
    for (const code of acquireErrors) assert.ok(['connection', 'no_leader', 'not_leader'].includes(code), code);
    const viewer = new Credpool({ addr: addrs, token: nodes[0].tokens.viewer });
    const views = await viewer.listCredentials({ site, level: 'internal' });
    const counted = views.reduce((n, v) => n + v.success_count, 0);
    assert.ok(counted >= reported.length, `${counted} stored, ${reported.length} acknowledged`);
  } finally {
    for (const n of nodes) if (!n.killed) await n.stop();
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = /** @type {net.AddressInfo} */ (srv.address());
  await new Promise((r) => srv.close(r));
  return port;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
