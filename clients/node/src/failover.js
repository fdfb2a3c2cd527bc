// Several servers of one deployment, and when a call may be sent again.
//
// A call goes to the server that answered last. When that server cannot be
// reached, breaks the connection, times out, or answers 503 `no_leader` /
// `not_leader` (no server leads the tenant just now), the call goes to the
// next server, after a pause that doubles from 50 ms to 2 s (or the
// answer's Retry-After), until `failoverDeadlineMs` has passed since its
// first attempt.
//
// Only a call that cannot take effect twice is sent again after a server
// may have received it: report and release (the server answers a repeat
// with the same effect) and every read. Acquire takes a lease, so it is
// sent again only when nothing reached a server (connection refused, no
// connection in time): a connection broken after the request went out may
// have left a lease behind, and so may a 503 `no_leader` from a standby
// whose forward to the leader was cut; the error is thrown instead.

const MAX_PAUSE_MS = 2_000;
const FIRST_PAUSE_MS = 50;
/** No server leads the tenant just now (the call may still have been applied). */
const NO_LEADER_CODES = new Set(['no_leader', 'not_leader']);
/** Connection errors raised before a byte of the request was written. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * The base URLs in `addr`: one, several separated by commas, or an array.
 * @param {string | readonly string[]} addr
 * @returns {string[]}
 */
export function parseServers(addr) {
  const parts = typeof addr === 'string' ? addr.split(',') : [...addr];
  const out = [];
  for (const raw of parts) {
    const one = String(raw).trim();
    if (!one) continue;
    const base = /^[a-z]+:\/\//i.test(one) ? one : `http://${one}`;
    let url;
    try {
      url = new URL(base);
    } catch {
      throw new TypeError('credpool: a server address is not a URL like http://127.0.0.1:8700');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError('credpool: a server address must be http:// or https://');
    }
    out.push(url.origin);
  }
  if (out.length === 0) throw new TypeError('credpool: no server address (pass addr or set CREDPOOL_ADDR, e.g. http://127.0.0.1:8700)');
  return out;
}

/** True when the fetch error shows the request never left this process. */
export function nothingSent(e) {
  for (let x = /** @type {any} */ (e), d = 0; x && d < 5; x = x.cause, d++) {
    if (typeof x.code === 'string' && NOT_SENT_CODES.has(x.code)) return true;
  }
  return false;
}

/** The servers, and which one calls start on (shared by every call). */
export class Servers {
  /** @param {string[]} urls @param {number} deadlineMs */
  constructor(urls, deadlineMs) {
    this.urls = urls;
    this.deadlineMs = deadlineMs;
    this.current = 0;
  }

  /** @param {boolean} idempotent */
  attempts(idempotent) {
    return new Attempts(this, idempotent);
  }

  /**
   * The server after `index`; later calls start there unless another call
   * moved on already.
   * @param {number} index
   */
  failed(index) {
    const following = (index + 1) % this.urls.length;
    if (this.current === index) this.current = following;
    return following;
  }
}

/** One call's attempts: which server next, and whether to go on. */
class Attempts {
  /** @param {Servers} servers @param {boolean} idempotent */
  constructor(servers, idempotent) {
    this.servers = servers;
    this.idempotent = idempotent;
    this.start = Date.now();
    this.failures = 0;
    this.index = servers.current;
  }

  server() {
    return this.servers.urls[this.index];
  }

  /** The pause (ms) before the next attempt, or null: throw. */
  afterTransportError(e) {
    if (!this.idempotent && !nothingSent(e)) {
      // Not sent again, but the next call starts on another server.
      this.servers.failed(this.index);
      return null;
    }
    return this.#next(null);
  }

  /** As afterTransportError, for a refusal (an ApiError). */
  afterRefusal(e) {
    if (!(e.status === 503 && NO_LEADER_CODES.has(e.code))) return null;
    if (!this.idempotent) {
      // Not sent again, but the next call starts on another server.
      this.servers.failed(this.index);
      return null;
    }
    return this.#next(e.retryAfter ?? null);
  }

  /** @param {number | null} retryAfterSeconds */
  #next(retryAfterSeconds) {
    const n = this.servers.urls.length;
    this.index = this.servers.failed(this.index);
    this.failures += 1;
    const remaining = this.start + this.servers.deadlineMs - Date.now();
    if (remaining <= 0) return null;
    const rounds = Math.floor((this.failures - 1) / n);
    let pause;
    if (retryAfterSeconds !== null) pause = Math.min(retryAfterSeconds * 1000, MAX_PAUSE_MS);
    else if (rounds === 0 && this.failures % n !== 0) pause = 0; // a server not tried yet
    else pause = Math.min(FIRST_PAUSE_MS * 2 ** rounds, MAX_PAUSE_MS);
    return Math.min(pause, remaining);
  }
}
