// One lease: the credential's secrets for the caller's request, and the
// report of what the site answered. The secrets live in private fields, so
// no inspect, JSON, log line or error shows them.

import { LeaseSettledError } from './errors.js';
import { classify, defaultChecks, isNetworkError, responseInfo } from './outcome.js';

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

/**
 * @typedef {{id: string, site: string, type: string, status: string, health: number,
 *            [more: string]: unknown}} LeasedCredential
 * @typedef {{lease: string, status: string, health: number, cooldownUntil: Date | null}} ReportEffect
 */

export class Lease {
  /** @type {import('./client.js').Credpool} */
  #client;
  /** @type {any} */
  #secrets;
  /** @type {readonly import('./outcome.js').Check[]} */
  #checks;
  /** @type {string | null} how it was settled */
  #settled = null;

  /**
   * Made by {@link Credpool#acquire}; not meant to be built by hand.
   * @param {import('./client.js').Credpool} client
   * @param {any} lease the server's `lease` object
   * @param {readonly import('./outcome.js').Check[]} checks
   * @param {string[]} warnings
   */
  constructor(client, lease, checks = defaultChecks, warnings = []) {
    this.#client = client;
    this.#secrets = lease.secrets ?? {};
    this.#checks = checks;
    /** The lease id, for report and release. */
    this.id = String(lease.id);
    /** The leased credential's summary (or its view, when acquired with `level`). */
    this.credential = /** @type {LeasedCredential} */ (Object.freeze({ ...lease.credential }));
    /** @type {Date} */
    this.grantedAt = new Date(lease.granted_at);
    /** @type {Date} the lease ends by itself then */
    this.expiresAt = new Date(lease.expires_at);
    /** @type {string[]} */
    this.warnings = warnings;
  }

  /** The credential's cookies, as name and value pairs. */
  get cookies() {
    return (this.#secrets.cookies ?? []).map((/** @type {any} */ c) => ({ name: c.name, value: c.value }));
  }

  /** The cookies as one `Cookie` header value (`a=1; b=2`), or '' without any. */
  get cookieHeader() {
    return this.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  /** The credential's own headers, name to value. */
  get headers() {
    /** @type {Record<string, string>} */
    const out = {};
    for (const h of this.#secrets.headers ?? []) out[h.name] = h.value;
    return out;
  }

  /** @returns {string | null} */
  get accessToken() {
    return this.#secrets.access_token ?? null;
  }

  /** @returns {string | null} */
  get refreshToken() {
    return this.#secrets.refresh_token ?? null;
  }

  /** @returns {string | null} */
  get password() {
    return this.#secrets.password ?? null;
  }

  /** @returns {string | null} */
  get apiKey() {
    return this.#secrets.api_key ?? null;
  }

  /** @returns {string | null} */
  get secretKey() {
    return this.#secrets.secret_key ?? null;
  }

  /** @returns {string[]} */
  get recoveryCodes() {
    return [...(this.#secrets.recovery_codes ?? [])];
  }

  /**
   * Every header a request with this credential needs: its own headers,
   * `Cookie` when it has cookies, `Authorization: Bearer` when it has an
   * access token (unless its own headers set one).
   * @returns {Record<string, string>}
   */
  requestHeaders() {
    const out = this.headers;
    const names = new Set(Object.keys(out).map((k) => k.toLowerCase()));
    const cookie = this.cookieHeader;
    if (cookie && !names.has('cookie')) out.Cookie = cookie;
    if (this.accessToken && !names.has('authorization')) out.Authorization = `Bearer ${this.accessToken}`;
    return out;
  }

  /** Whether it was reported or released. */
  get settled() {
    return this.#settled !== null;
  }

  /**
   * Reports an outcome: `success`, `blocked`, `challenged`, `expired`,
   * `rate-limited`, `network` or `failed`.
   * @param {import('./outcome.js').Outcome} outcome
   * @param {{httpStatus?: number | null, retryAfter?: number | null}} [detail]
   * @returns {Promise<ReportEffect>}
   */
  async report(outcome, detail = {}) {
    this.#settle('reported');
    return this.#client.report(this.id, { outcome, ...detail });
  }

  /**
   * Reports what the site answered: the checks (captcha page, logout, or
   * the client's own) first, then the status (401 expired, 403 blocked, 429
   * rate-limited with its Retry-After, 5xx network, other 4xx failed, else
   * success). Pass `body` for the checks that read the page; a fetch
   * `Response` is read from a clone when no body is given.
   * @param {any} response
   * @param {{body?: string, requestUrl?: string}} [options]
   * @returns {Promise<{outcome: import('./outcome.js').Outcome, effect: ReportEffect}>}
   */
  async reportResponse(response, options = {}) {
    const info = responseInfo(response);
    let body = options.body;
    if (body === undefined && typeof response?.clone === 'function' && typeof response?.text === 'function') {
      body = await response.clone().text().catch(() => undefined);
    }
    const c = classify({ ...info, body, requestUrl: options.requestUrl }, this.#checks);
    const effect = await this.report(c.outcome, { httpStatus: c.httpStatus, retryAfter: c.retryAfter });
    return { outcome: c.outcome, effect };
  }

  /**
   * Reports an error met while using the credential: a connection failure
   * as `network`, anything else as `failed`.
   * @param {unknown} err
   */
  async reportError(err) {
    return this.report(isNetworkError(err) ? 'network' : 'failed');
  }

  /** Gives the lease back unused. */
  async release() {
    this.#settle('released');
    return this.#client.release(this.id);
  }

  /**
   * Reports this lease and takes the next in one request (a crawler's
   * loop step). Throws NoCredentialAvailable when nothing is free; this
   * lease is reported either way.
   * @param {import('./outcome.js').Outcome} outcome
   * @param {import('./client.js').AcquireRequest} next
   * @param {{httpStatus?: number | null, retryAfter?: number | null}} [detail]
   */
  async reportAndAcquire(outcome, next, detail = {}) {
    this.#settle('reported');
    return this.#client.reportAndAcquire(this.id, { outcome, ...detail }, next);
  }

  #settle(how) {
    if (this.#settled) throw new LeaseSettledError(this.id, this.#settled);
    this.#settled = how;
  }

  /** What inspect, console.log and JSON show: no secret. */
  toJSON() {
    return {
      id: this.id,
      credential: this.credential,
      grantedAt: this.grantedAt,
      expiresAt: this.expiresAt,
      settled: this.#settled,
      secrets: '[hidden]',
    };
  }

  toString() {
    return `Lease(${this.id} on ${this.credential.id})`;
  }

  [INSPECT](_depth, options, inspect) {
    return `Lease ${inspect ? inspect(this.toJSON(), options) : JSON.stringify(this.toJSON())}`;
  }
}
