// A credential pool for one tenant, in JavaScript: the transpiled policy
// component (generated/policy.js, from `npm run transpile`) and the host
// imports of host.js. As in the Rust host, secret values stay here: the
// policy is told only which fields, cookie names and header names exist.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ManualClock, memoryStore, policyImports } from './host.js';

/** The policy's error, as a plain `{ tag, val }` (e.g. `lease-not-found`). */
export function policyError(e) {
  if (e && Object.hasOwn(e, 'payload')) return e.payload;
  throw e;
}

export class JsPool {
  /**
   * @param {object} options
   * @param {string} options.generated the directory `jco transpile` wrote
   * @param {object} [options.policy] the policy's configuration
   * @param {number} [options.startMs] the hand-moved clock's start
   */
  static async open({ generated, policy = {}, startMs = Date.now() }) {
    const clock = new ManualClock(startMs);
    const store = memoryStore();
    const events = [];
    const { instantiate } = await import(pathToFileURL(join(generated, 'policy.js')).href);
    const getCoreModule = async (name) => WebAssembly.compile(await readFile(join(generated, name)));
    const component = await instantiate(getCoreModule, policyImports({ clock, store, events }));
    const pool = component['credpool:policy/pool@0.1.0'] ?? component.pool;
    pool.configure(JSON.stringify(policy));
    return new JsPool(pool, clock, store, events);
  }

  constructor(pool, clock, store, events) {
    this.pool = pool;
    this.clock = clock;
    this.store = store;
    this.events = events;
    /** Secret values by credential id: never handed to the policy. */
    this.secrets = new Map();
  }

  /**
   * Adds a credential. `cookies` and `headers` are name → value; only the
   * names cross into the policy.
   */
  add({ id, site, kind = 'session', tags = [], cookies = {}, headers = {} }) {
    const meta = this.pool.add({
      id,
      site,
      kind,
      tags,
      cookieNames: Object.keys(cookies),
      headerNames: Object.keys(headers),
      secretFields: [],
      tokenScope: [],
      labels: [],
      localStorageNames: [],
      twoFactor: false,
    });
    this.secrets.set(meta.id, { cookies, headers });
    return meta;
  }

  /** A lease with the credential's id and secrets, or the policy's refusal. */
  acquire({ site, kind, tags = [], purpose }) {
    const resp = this.pool.acquire({ site, kind, purpose, tags, preferFresh: false });
    if (!resp.lease) return { resp };
    const id = this.pool.credentialId(resp.lease.credential);
    return { resp, id, secrets: this.secrets.get(id) };
  }

  report(leaseId, outcome) {
    return this.pool.report(leaseId, outcome);
  }

  release(leaseId) {
    return this.pool.release(leaseId);
  }

  stats(site) {
    return this.pool.stats(site);
  }

  tick() {
    return this.pool.tick();
  }

  remove(id) {
    this.pool.remove(id);
    this.secrets.delete(id);
  }
}
