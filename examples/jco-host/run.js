// Runs a sequence of pool calls (a JSON file) against the built-in policy
// component on Node, and prints one JSON line per step: what was acquired,
// what a report did, what was refused and why. tests/jco_host.rs runs the
// same file through the Rust host and compares the lines.
//
//   npm run transpile            # once: the component into generated/
//   node run.js [sequence.json]  # default: ./sequence.json

import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsPool, policyError } from './pool.js';

const here = dirname(fileURLToPath(import.meta.url));
const file = resolve(process.argv[2] ?? join(here, 'sequence.json'));
const sequence = JSON.parse(await readFile(file, 'utf8'));
const pool = await JsPool.open({
  generated: process.env.JCO_GENERATED ?? join(here, 'generated'),
  policy: sequence.policy ?? {},
  startMs: sequence.start_ms ?? Date.now(),
});

/** Leases by the name the sequence gave them (`"as": "a"`). */
const leases = new Map();

/** The contract's `outcome` from the sequence's word for it. */
function outcome(step) {
  if (step.outcome === 'success') return { tag: 'success' };
  return {
    tag: 'failure',
    val: { class: step.outcome, httpStatus: step.http_status, retryAfterSecs: step.retry_after_secs },
  };
}

/** Runs `f`; the policy's refusal becomes `{ error: tag }`. */
function attempt(f) {
  try {
    return f();
  } catch (e) {
    return { error: policyError(e).tag };
  }
}

function lease(name) {
  const id = leases.get(name);
  if (!id) throw new Error(`the sequence reports lease "${name}" before acquiring it`);
  return id;
}

const steps = {
  add: (s) => attempt(() => {
    const meta = pool.add(s);
    return { id: meta.id, status: meta.status };
  }),
  acquire: (s) => attempt(() => {
    const { resp, id, secrets } = pool.acquire(s);
    if (!resp.lease) return { status: resp.status, reason: resp.reason ?? null };
    leases.set(s.as, resp.lease.id);
    // The caller gets the secret values; the policy never saw them.
    const got = Object.keys(secrets?.cookies ?? {}).length + Object.keys(secrets?.headers ?? {}).length;
    return { status: resp.status, credential: id, lease_status: resp.lease.status, health: resp.lease.health, secrets: got };
  }),
  report: (s) => attempt(() => {
    const effect = pool.report(lease(s.lease), outcome(s));
    return { status: effect.status, health: effect.health, resting: effect.cooldownUntil !== undefined };
  }),
  release: (s) => attempt(() => {
    pool.release(lease(s.lease));
    return { released: true };
  }),
  advance: (s) => {
    pool.clock.advance(s.ms);
    return { advanced_ms: s.ms };
  },
  tick: () => attempt(() => {
    const t = pool.tick();
    return { leases_expired: t.leasesExpired, cooldowns_ended: t.cooldownsEnded };
  }),
  stats: (s) => attempt(() => {
    const [st] = pool.stats(s.site);
    return {
      site: st.site,
      total: st.total,
      active: st.byStatus.active,
      init: st.byStatus.init,
      cooling: st.byStatus.cooling,
      suspended: st.byStatus.suspended,
      open_leases: st.openLeases,
      granted: Number(st.granted),
      refused: Number(st.refused),
      successes: Number(st.successes),
    };
  }),
};

for (const [i, step] of sequence.steps.entries()) {
  const run = steps[step.op];
  if (!run) throw new Error(`step ${i}: unknown op "${step.op}" (known: ${Object.keys(steps).join(', ')})`);
  console.log(JSON.stringify({ step: i, op: step.op, ...run(step) }));
}
