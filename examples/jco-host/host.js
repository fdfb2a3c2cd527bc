// The host side of the credpool:policy world, in JavaScript: what the
// policy component imports (store, refresh, notify, log) plus the WASI
// interfaces Rust's std reaches, taken from @bytecodealliance/preview2-shim.
// The policy decides; this host keeps the records (in memory here), runs
// refreshes (none here), delivers alerts and writes logs.

import * as shim from '@bytecodealliance/preview2-shim';

/** A wall clock the caller moves by hand, in milliseconds since the epoch. */
export class ManualClock {
  constructor(startMs) {
    this.ms = startMs;
  }
  advance(ms) {
    this.ms += ms;
  }
  /** wasi:clocks/wall-clock's `now`. */
  datetime() {
    const ms = BigInt(this.ms);
    return { seconds: ms / 1000n, nanoseconds: Number(ms % 1000n) * 1_000_000 };
  }
}

/**
 * credpool:policy/store over a Map. Keys are scanned in ascending order, as
 * the contract asks; every write is "durable" at once.
 */
export function memoryStore(map = new Map()) {
  return {
    map,
    get: (key) => map.get(key),
    set: (key, value) => {
      map.set(key, Uint8Array.from(value));
    },
    setLazy: (key, value) => {
      map.set(key, Uint8Array.from(value));
    },
    delete: (key) => map.delete(key),
    compareAndSwap: (key, expected, next) => {
      if (!sameBytes(map.get(key), expected)) return false;
      if (next === undefined) map.delete(key);
      else map.set(key, Uint8Array.from(next));
      return true;
    },
    scan: (prefix, after, limit) => {
      const keys = [...map.keys()]
        .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
        .sort();
      const page = keys.slice(0, limit);
      return {
        entries: page.map((k) => [k, map.get(k)]),
        next: keys.length > page.length ? page[page.length - 1] : undefined,
      };
    },
  };
}

function sameBytes(a, b) {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/**
 * Every import the policy component needs, for jco's `instantiate`.
 * `events` collects what the policy sends out (alerts, tickets, refresh
 * requests, log lines): masked metadata only, never a secret.
 */
export function policyImports({ clock, store, events = [], logLevel = 'warn' }) {
  const wasi = {};
  // jco names an import by its interface (`wasi:cli/terminal-input`); the
  // shim exports it as `cli.terminalInput`.
  for (const [pkg, ifaces] of Object.entries(shim)) {
    for (const [name, impl] of Object.entries(ifaces)) {
      const kebab = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      wasi[`wasi:${pkg}/${kebab}`] = impl;
    }
  }
  // Time is the host's to give: a hand-moved clock makes a run repeatable.
  wasi['wasi:clocks/wall-clock'] = {
    now: () => clock.datetime(),
    resolution: () => ({ seconds: 0n, nanoseconds: 1_000_000 }),
  };
  return {
    ...wasi,
    'credpool:policy/store': store,
    'credpool:policy/refresh': {
      // No site here has a refresh configured: the policy hears so at once.
      start: (request) => {
        events.push({ refresh: request.method, credential: request.credentialId });
        throw { tag: 'not-configured', val: `no refresh is configured for ${request.site}` };
      },
    },
    'credpool:policy/notify': {
      raise: (alert) => events.push({ alert: alert.kind, site: alert.site, message: alert.message }),
      openTicket: (ticket) => events.push({ ticketOpened: ticket.id, kind: ticket.kind }),
      closeTicket: (id, closure) => events.push({ ticketClosed: id, closure }),
    },
    'credpool:policy/log': {
      enabled: (level) => LEVELS.indexOf(level) >= LEVELS.indexOf(logLevel),
      event: (level, name, fields) => {
        if (LEVELS.indexOf(level) >= LEVELS.indexOf(logLevel)) {
          process.stderr.write(`[CRED] ${level} ${name} ${fields.map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
        }
      },
    },
  };
}
