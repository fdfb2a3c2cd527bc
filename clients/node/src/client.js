// The HTTP client of `credpool serve`: every endpoint, with the lease as
// the everyday form. The token is kept in a private field; no error,
// inspect or log line shows it or a secret.

import { ApiError, ConnectionError, NoCredentialAvailable, NotFoundError, apiError } from './errors.js';
import { Lease } from './lease.js';
import { Servers, parseServers } from './failover.js';
import { defaultChecks, isNetworkError, parseRetryAfter } from './outcome.js';

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

/**
 * @typedef {{site: string, type?: string, purpose?: string, tags?: string[],
 *            ttlSeconds?: number, preferFresh?: boolean, level?: 'public'|'internal'|'sensitive'}} AcquireRequest
 * @typedef {{outcome: import('./outcome.js').Outcome, httpStatus?: number | null,
 *            retryAfter?: number | null}} Report
 * @typedef {{addr?: string | readonly string[], token?: string, timeoutMs?: number, failoverDeadlineMs?: number,
 *            checks?: readonly import('./outcome.js').Check[], fetch?: typeof fetch}} CredpoolOptions
 */

export class Credpool {
  #token;
  #fetch;
  /** @type {Servers} */
  #servers;

  /**
   * @param {CredpoolOptions} [options] `addr` and `token` default to
   * CREDPOOL_ADDR and CREDPOOL_TOKEN; `addr` is `http://host:port` (a bare
   * `host:port` means http), or several servers of one deployment (an array,
   * or URLs separated by commas) tried in turn when one is down or has no
   * leader, for up to `failoverDeadlineMs` (default 30000) per call (see
   * failover.js); `checks` classify answers before their status (default:
   * captcha pages and logouts).
   */
  constructor(options = {}) {
    const addr = options.addr ?? process.env.CREDPOOL_ADDR;
    const token = options.token ?? process.env.CREDPOOL_TOKEN;
    if (!addr || addr.length === 0) throw new TypeError('credpool: no server address (pass addr or set CREDPOOL_ADDR, e.g. http://127.0.0.1:8700)');
    if (!token) throw new TypeError('credpool: no API token (pass token or set CREDPOOL_TOKEN; `credpool token create --role crawler` makes one)');
    this.#servers = new Servers(parseServers(addr), options.failoverDeadlineMs ?? 30_000);
    this.#token = String(token);
    this.#fetch = options.fetch ?? globalThis.fetch;
    /** Milliseconds before a call to the server is given up. */
    this.timeoutMs = options.timeoutMs ?? 30_000;
    /** Checks run on answers before their status (see `reportResponse`). */
    this.checks = options.checks ?? defaultChecks;
  }

  /**
   * One call. Answers the parsed JSON (or text for text answers) and the
   * response headers; throws ApiError for a refusal, ConnectionError when
   * the server is not reached.
   * @param {string} method
   * @param {string} path
   * @param {{json?: unknown, text?: string, query?: Record<string, unknown>, idempotent?: boolean}} [opts]
   * `idempotent`: may be sent again after a server may have received it
   * (default: GETs only).
   */
  async #call(method, path, opts = {}) {
    const attempts = this.#servers.attempts(opts.idempotent ?? method === 'GET');
    for (;;) {
      const server = attempts.server();
      let pause;
      try {
        return await this.#callOn(server, method, path, opts);
      } catch (e) {
        if (e instanceof ConnectionError && e.transport) pause = attempts.afterTransportError(e.transport);
        else if (e instanceof ApiError) pause = attempts.afterRefusal(e);
        else pause = null;
        if (pause === null) throw e;
      }
      await sleep(pause);
    }
  }

  /**
   * One attempt of a call on `server`.
   * @param {string} server
   * @param {string} method
   * @param {string} path
   * @param {{json?: unknown, text?: string, query?: Record<string, unknown>}} opts
   */
  async #callOn(server, method, path, opts) {
    const url = new URL(path, server);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${this.#token}`, Accept: 'application/json' };
    let body;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.text !== undefined) {
      headers['Content-Type'] = 'text/plain; charset=utf-8';
      body = opts.text;
    } else if (method === 'POST') {
      headers['Content-Type'] = 'application/json';
      body = '{}';
    }
    let res;
    try {
      res = await this.#fetch(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e) {
      throw transportError(`cannot reach the credpool server at ${server} (${method} ${url.pathname}): ${describe(e)}`, e);
    }
    let text;
    try {
      text = await res.text();
    } catch (e) {
      throw transportError(`the credpool server at ${server} broke off its answer to ${method} ${url.pathname}: ${describe(e)}`, e);
    }
    const type = res.headers.get('content-type') ?? '';
    let data = text;
    if (type.includes('json')) {
      try {
        data = JSON.parse(text);
      } catch {
        throw new ConnectionError(`the credpool server at ${server} answered ${method} ${url.pathname} with invalid JSON`);
      }
    }
    const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
    if (!res.ok) {
      const err = /** @type {any} */ (data)?.error;
      if (err && typeof err.code === 'string') {
        // An unknown site's 404 is also the acquire answer: its suggestions.
        const alternatives = Array.isArray(/** @type {any} */ (data).alternatives) ? /** @type {any} */ (data).alternatives.map(String) : [];
        throw apiError(res.status, err.code, String(err.message ?? ''), retryAfter, alternatives);
      }
      throw new ApiError(res.status, 'http_error', `HTTP ${res.status} without an error body`, retryAfter);
    }
    return { data: /** @type {any} */ (data), retryAfter };
  }

  // ---- leases -----------------------------------------------------------

  /**
   * Leases a credential. Throws NoCredentialAvailable when none is free,
   * unless `maxWaitMs` lets it wait: then it sleeps until the answer's
   * `nextFreeAt` (or its Retry-After) and asks again, until the time is up.
   * @param {AcquireRequest} request
   * @param {{maxWaitMs?: number, onRefused?: (e: NoCredentialAvailable) => void}} [options]
   * @returns {Promise<Lease>}
   */
  async acquire(request, options = {}) {
    const deadline = Date.now() + (options.maxWaitMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      const { data, retryAfter } = await this.#call('POST', '/v1/acquire', {
        json: acquireBody(request),
        query: { level: request.level },
      });
      const got = this.#acquired(request.site, data, retryAfter);
      if (got instanceof Lease) return got;
      options.onRefused?.(got);
      const wait = waitFor(got, deadline, attempt);
      if (wait === null) throw got;
      await sleep(wait);
    }
  }

  /** @returns {Lease | NoCredentialAvailable} */
  #acquired(site, data, retryAfter) {
    if (data?.status === 'success' && data.lease) {
      return new Lease(this, data.lease, this.checks, data.warnings ?? []);
    }
    if (typeof data?.status !== 'string') {
      throw new ConnectionError(`the credpool server at ${this.addr} answered acquire without a status`);
    }
    return new NoCredentialAvailable({
      site,
      status: data.status,
      reason: data.reason ?? null,
      nextFreeAt: data.next_free_at ? new Date(data.next_free_at) : null,
      alternatives: data.alternatives ?? [],
      retryAfter,
      warnings: data.warnings ?? [],
    });
  }

  /**
   * Reports a lease by id (a Lease's own `report` is the usual form).
   * @param {string} leaseId
   * @param {Report} report
   */
  async report(leaseId, report) {
    // A repeat gets the first report's effect ("repeat": true).
    const { data } = await this.#call('POST', `/v1/leases/${encodeURIComponent(leaseId)}/report`, {
      json: reportBody(report),
      idempotent: true,
    });
    return effect(data);
  }

  /** Gives a lease back unused, by id. @param {string} leaseId */
  async release(leaseId) {
    const { data } = await this.#call('POST', `/v1/leases/${encodeURIComponent(leaseId)}/release`, { idempotent: true });
    return { lease: String(data.lease), released: data.released === true };
  }

  /**
   * Reports a lease and takes the next in one request. Throws
   * NoCredentialAvailable (the report was made) when nothing is free.
   * @param {string} leaseId
   * @param {Report} report
   * @param {AcquireRequest} next
   * @returns {Promise<{effect: import('./lease.js').ReportEffect, lease: Lease}>}
   */
  async reportAndAcquire(leaseId, report, next) {
    const { data, retryAfter } = await this.#call('POST', `/v1/leases/${encodeURIComponent(leaseId)}/report-and-acquire`, {
      json: { report: reportBody(report), next: acquireBody(next) },
    });
    const got = this.#acquired(next.site, data, retryAfter);
    if (!(got instanceof Lease)) throw got;
    return { effect: effect(data.report), lease: got };
  }

  /**
   * Leases a credential for `fn` and settles the lease when it is done:
   * `fn` reports through `lease.reportResponse(res)` (or `lease.report`);
   * if it returns without a report the lease is released, and if it throws
   * the error is reported (`network` for a connection failure, else
   * `failed`) and thrown on.
   * @template T
   * @param {AcquireRequest} request
   * @param {(lease: Lease) => Promise<T> | T} fn
   * @param {{maxWaitMs?: number}} [options]
   * @returns {Promise<T>}
   */
  async withLease(request, fn, options = {}) {
    const lease = await this.acquire(request, options);
    let result;
    try {
      result = await fn(lease);
    } catch (e) {
      if (!lease.settled) {
        await lease.reportError(e).catch(() => {});
      }
      throw e;
    }
    if (!lease.settled) {
      try {
        await lease.release();
      } catch (e) {
        // Its TTL ended it already: nothing is held.
        if (!(e instanceof NotFoundError)) throw e;
      }
    }
    return result;
  }

  // ---- credentials (operator, viewer, admin) -------------------------------

  /**
   * Lists credentials, masked at the token's level (or `level`).
   * @param {{site?: string, status?: string, level?: string}} [filter]
   */
  async listCredentials(filter = {}) {
    return (await this.#call('GET', '/v1/credentials', { query: filter })).data;
  }

  /** @param {string} id @param {{level?: string}} [options] */
  async getCredential(id, options = {}) {
    return (await this.#call('GET', `/v1/credentials/${encodeURIComponent(id)}`, { query: options })).data;
  }

  /**
   * Adds a credential (operator). Keys may be camelCase or the API's
   * snake_case: `{site, type, id, username, maxConcurrent, ratePerMinute,
   * expiresAt, tags, tokenScope, secrets: {password, cookies: [{name, value}],
   * headers, accessToken, refreshToken, apiKey, secretKey, recoveryCodes, totpSeed}}`.
   * @param {Record<string, any>} credential
   */
  async addCredential(credential) {
    const body = snakeKeys(credential);
    if (credential.secrets) body.secrets = snakeKeys(credential.secrets);
    if (body.expires_at instanceof Date) body.expires_at = body.expires_at.toISOString();
    return (await this.#call('POST', '/v1/credentials', { json: body })).data;
  }

  /**
   * Imports a file's text (operator): format `json`, `cookies-txt` or `cookie-json`.
   * @param {string} text
   * @param {{format: string, site?: string, skipInvalid?: boolean}} options
   */
  async importCredentials(text, options) {
    const query = { format: options.format, site: options.site, skip_invalid: options.skipInvalid };
    return (await this.#call('POST', '/v1/credentials/import', { text, query })).data;
  }

  /** @param {string} id */
  async removeCredential(id) {
    return (await this.#call('DELETE', `/v1/credentials/${encodeURIComponent(id)}`)).data;
  }

  /** @param {string} id */
  async unban(id) {
    return (await this.#call('POST', `/v1/credentials/${encodeURIComponent(id)}/unban`)).data;
  }

  /** @param {string} id */
  async resetChallenge(id) {
    return (await this.#call('POST', `/v1/credentials/${encodeURIComponent(id)}/reset-challenge`)).data;
  }

  /** A credential with its secrets (admin; audited by the server). @param {string} id */
  async reveal(id) {
    return (await this.#call('GET', `/v1/credentials/${encodeURIComponent(id)}/reveal`)).data;
  }

  /**
   * A credential as a file (admin; audited): `json` (parsed) or `cookies-txt` (text).
   * @param {string} id
   * @param {{format: 'json' | 'cookies-txt'}} options
   */
  async exportCredential(id, options) {
    return (await this.#call('GET', `/v1/credentials/${encodeURIComponent(id)}/export`, { query: options })).data;
  }

  // ---- health, stats, alerts, tickets, tokens ------------------------------

  async healthz() {
    return (await this.#call('GET', '/healthz')).data;
  }

  async readyz() {
    return (await this.#call('GET', '/readyz')).data;
  }

  /** @param {{site?: string}} [filter] */
  async stats(filter = {}) {
    return (await this.#call('GET', '/v1/stats', { query: filter })).data;
  }

  async alerts() {
    return (await this.#call('GET', '/v1/alerts')).data;
  }

  /** The Prometheus text (viewer). @returns {Promise<string>} */
  async metrics() {
    return (await this.#call('GET', '/metrics')).data;
  }

  /** Open challenge tickets (operator). */
  async tickets() {
    return (await this.#call('GET', '/v1/tickets')).data;
  }

  /** Answers a ticket with the code a person read (operator). @param {string} id @param {string} code */
  async answerTicket(id, code) {
    return (await this.#call('POST', `/v1/tickets/${encodeURIComponent(id)}/answer`, { json: { code } })).data;
  }

  async listTokens() {
    return (await this.#call('GET', '/v1/tokens')).data;
  }

  /**
   * A new token for the caller's tenant (admin); its `token` is shown once.
   * @param {{role: string, expiresInSeconds?: number}} options
   */
  async createToken(options) {
    const json = { role: options.role, expires_in_seconds: options.expiresInSeconds };
    return (await this.#call('POST', '/v1/tokens', { json })).data;
  }

  /** @param {string} id */
  async revokeToken(id) {
    return (await this.#call('DELETE', `/v1/tokens/${encodeURIComponent(id)}`)).data;
  }

  /** The servers, comma-separated, the one in use first. */
  get addr() {
    const { urls, current } = this.#servers;
    return [...urls.slice(current), ...urls.slice(0, current)].join(',');
  }

  toJSON() {
    return { addr: this.addr, token: '[hidden]' };
  }

  toString() {
    return `Credpool(${this.addr})`;
  }

  [INSPECT](_depth, options, inspect) {
    return `Credpool ${inspect ? inspect(this.toJSON(), options) : JSON.stringify(this.toJSON())}`;
  }
}

/** @param {AcquireRequest} r */
function acquireBody(r) {
  if (!r || typeof r.site !== 'string') throw new TypeError('acquire needs {site: string, ...}');
  return {
    site: r.site,
    type: r.type,
    purpose: r.purpose,
    tags: r.tags,
    ttl_seconds: r.ttlSeconds,
    prefer_fresh: r.preferFresh,
  };
}

/** @param {Report} r */
function reportBody(r) {
  return {
    outcome: r.outcome,
    http_status: r.httpStatus ?? undefined,
    retry_after: r.retryAfter ?? undefined,
  };
}

function effect(data) {
  return {
    lease: String(data.lease),
    status: String(data.status),
    health: Number(data.health),
    cooldownUntil: data.cooldown_until ? new Date(data.cooldown_until) : null,
  };
}

/**
 * Milliseconds to wait before asking again, or null when the deadline is
 * past. A pool that names when a credential is free (rate limits, rests)
 * is taken at its word: its nextFreeAt has whole seconds (the time is within
 * the second after it) and its Retry-After is rounded up, so the wait ends
 * at the earlier of those two upper bounds, when the credential is free.
 * When every credential is leased, nextFreeAt is only the leases' end (a
 * holder may give one back any moment), so the wait is a backoff from
 * 100 ms up to it. Jitter keeps waiting workers from asking in step.
 */
function waitFor(refused, deadline, attempt) {
  const now = Date.now();
  if (now >= deadline) return null;
  const backoff = Math.min(100 * 2 ** Math.min(attempt, 10), 2_000) * (0.5 + Math.random() / 2);
  let until = null;
  if (refused.nextFreeAt) {
    let at = refused.nextFreeAt.getTime() + 1000;
    if (refused.retryAfter != null) at = Math.min(at, now + refused.retryAfter * 1000);
    until = at - now;
  }
  let wait;
  if (until === null) wait = Math.min(backoff, (refused.retryAfter ?? 5) * 1000);
  else if (refused.reason === 'all-leased') wait = Math.min(backoff, until);
  else wait = until >= 50 ? until : backoff;
  wait = Math.min(Math.max(wait, 20), 5_000);
  return Math.min(wait, deadline - now);
}

function snakeKeys(obj) {
  /** @type {Record<string, any>} */
  const out = {};
  for (const [k, v] of Object.entries(obj)) out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  return out;
}

/** A failure's kind, never a value the request carried. */
function describe(e) {
  const parts = [];
  for (let x = /** @type {any} */ (e), d = 0; x && d < 4; x = x.cause, d++) {
    parts.push(x.code ?? x.name ?? 'error');
  }
  return `${parts.join(' <- ')}${isNetworkError(e) ? '' : ' (not a connection error)'}`;
}

/** A ConnectionError that keeps the fetch error, to tell whether it was sent. */
function transportError(message, cause) {
  const err = new ConnectionError(message);
  Object.defineProperty(err, 'transport', { value: cause, enumerable: false });
  return err;
}

/** @param {number} ms */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
