// Crawlee integration: each request of an HTTP crawler (CheerioCrawler,
// HttpCrawler, JSDOMCrawler) leases a credential before navigation, sends
// its cookies and headers, and reports what the site answered; a request
// met with a block, a logout, a captcha or a rate limit is retried with
// another credential. Crawlee itself is not imported: the hooks only use
// the crawling context it hands them.

import { CredpoolError, NoCredentialAvailable } from './errors.js';
import { classify, isNetworkError, responseInfo } from './outcome.js';

/** Thrown (after the report) so that Crawlee retries the request with another credential. */
export class CredentialRefused extends CredpoolError {
  /** @param {string} outcome @param {number} status */
  constructor(outcome, status) {
    super(`credpool: the site answered ${status} (${outcome}); retrying with another credential`);
    this.name = 'CredentialRefused';
    this.outcome = outcome;
    this.httpStatus = status;
  }
}

/** Outcomes after which the request is retried with another credential. */
const RETRY = new Set(['blocked', 'expired', 'challenged', 'rate-limited', 'network']);

/** Bytes of an error page read for the checks. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * @typedef {import('./client.js').AcquireRequest} AcquireRequest
 * @typedef {{type: 'refused', at: number, request: string, error: NoCredentialAvailable}
 *   | {type: 'leased', at: number, request: string, lease: string, credential: string}
 *   | {type: 'settled', at: number, request: string, lease: string, credential: string,
 *      outcome: string, httpStatus: number | null}} CrawlEvent
 * @typedef {{maxWaitMs?: number, checks?: readonly import('./outcome.js').Check[],
 *            onEvent?: (event: CrawlEvent) => void}} CredpoolCrawleeOptions
 */

export class CredpoolCrawlee {
  /** @type {WeakMap<object, import('./lease.js').Lease>} open lease per Crawlee Request */
  #open = new WeakMap();

  /**
   * @param {import('./client.js').Credpool} pool
   * @param {AcquireRequest | ((request: any) => AcquireRequest)} acquire what to lease, or a
   *   function of the Crawlee Request (a site per request)
   * @param {CredpoolCrawleeOptions} [options] `maxWaitMs`: how long a request waits out
   *   "nothing free" (sleeping until the pool's nextFreeAt), default 20 s; `checks`: answer
   *   checks (default: the client's); `onEvent`: each lease, refusal and report, for records
   */
  constructor(pool, acquire, options = {}) {
    this.pool = pool;
    this.acquire = typeof acquire === 'function' ? acquire : () => acquire;
    this.maxWaitMs = options.maxWaitMs ?? 20_000;
    this.checks = options.checks ?? pool.checks;
    this.onEvent = options.onEvent ?? (() => {});
    this.preNavigationHook = this.preNavigationHook.bind(this);
    this.postNavigationHook = this.postNavigationHook.bind(this);
    this.errorHandler = this.errorHandler.bind(this);
  }

  /**
   * Leases a credential (waiting out "nothing free") and puts its cookies
   * and headers on the request.
   * @param {any} context Crawlee's crawling context
   * @param {any} gotOptions the request options the hook may change
   */
  async preNavigationHook(context, gotOptions) {
    const { request } = context;
    await this.#settle(request, 'failed', null); // a lease left by an earlier attempt
    const lease = await this.pool.acquire(this.acquire(request), {
      maxWaitMs: this.maxWaitMs,
      onRefused: (error) => this.onEvent({ type: 'refused', at: Date.now(), request: request.id ?? request.url, error }),
    });
    this.#open.set(request, lease);
    this.onEvent({ type: 'leased', at: Date.now(), request: request.id ?? request.url, lease: lease.id, credential: lease.credential.id });
    gotOptions.headers = { ...(gotOptions.headers ?? {}), ...lease.requestHeaders() };
    // A redirect to a login page must be seen, not followed.
    gotOptions.followRedirect = false;
  }

  /**
   * Reports an answer that is refused by its status (reading the error
   * page for the checks) and throws so that Crawlee retries with another
   * credential; a page that may be fine waits for the request handler.
   * @param {any} context
   */
  async postNavigationHook(context) {
    const { request, response } = context;
    if (!response || !this.#open.has(request)) return;
    const info = responseInfo(response);
    if (info.status < 300) return;
    let body;
    if (info.status >= 400 && typeof response.on === 'function') {
      body = await readSome(response, MAX_ERROR_BODY);
    }
    const credential = this.#open.get(request)?.credential.id;
    const c = classify({ ...info, body, requestUrl: request.url, credential }, this.checks);
    await this.#report(request, c);
    if (RETRY.has(c.outcome)) throw new CredentialRefused(c.outcome, info.status);
  }

  /**
   * Wraps a request handler: the page's checks (captcha, logout) run on
   * its body first; then the handler; the lease is reported success when
   * the handler returns, `failed` when it throws.
   * @template {(context: any) => any} H
   * @param {H} handler
   * @returns {H}
   */
  wrapRequestHandler(handler) {
    const self = this;
    return /** @type {H} */ (async function credpoolRequestHandler(context) {
      const { request, response } = context;
      if (self.#open.has(request) && response) {
        const info = responseInfo(response);
        const body = context.body == null ? undefined : String(context.body);
        const credential = self.#open.get(request)?.credential.id;
        const c = classify({ ...info, body, requestUrl: request.url, credential }, self.checks);
        if (c.outcome !== 'success') {
          await self.#report(request, c);
          if (RETRY.has(c.outcome)) throw new CredentialRefused(c.outcome, info.status);
          throw new CredpoolError(`credpool: the site answered ${info.status} (${c.outcome})`);
        }
      }
      try {
        const result = await handler(context);
        await self.#settle(request, 'success', response ? responseInfo(response).status : null);
        return result;
      } catch (e) {
        await self.#settle(request, 'failed', null);
        throw e;
      }
    });
  }

  /**
   * Crawlee's errorHandler (before a retry) and failedRequestHandler: a
   * lease still open is reported (`network` for a connection failure or
   * time-out, else `failed`).
   * @param {any} context
   * @param {unknown} error
   */
  async errorHandler(context, error) {
    await this.#settle(context.request, isNetworkError(error) || /timed out/i.test(String(/** @type {any} */ (error)?.message)) ? 'network' : 'failed', null);
  }

  /**
   * Crawler options with the hooks in, the handlers wrapped and Crawlee's
   * own session pool off (credpool is the session pool): spread your own
   * options in, e.g. `new CheerioCrawler(cp.crawlerOptions({requestHandler, maxConcurrency: 8}))`.
   * @template {Record<string, any>} O
   * @param {O} options
   */
  crawlerOptions(options) {
    const chain = (mine, theirs) =>
      theirs
        ? async (context, error) => {
            await mine(context, error);
            return theirs(context, error);
          }
        : mine;
    if (typeof options.requestHandler !== 'function') throw new TypeError('crawlerOptions needs a requestHandler');
    return {
      maxRequestRetries: 6,
      ...options,
      useSessionPool: false,
      persistCookiesPerSession: false,
      preNavigationHooks: [...(options.preNavigationHooks ?? []), this.preNavigationHook],
      postNavigationHooks: [this.postNavigationHook, ...(options.postNavigationHooks ?? [])],
      requestHandler: this.wrapRequestHandler(options.requestHandler),
      errorHandler: chain(this.errorHandler, options.errorHandler),
      failedRequestHandler: chain(this.errorHandler, options.failedRequestHandler),
      // Waiting out "nothing free" happens before navigation.
      navigationTimeoutSecs: Math.max(options.navigationTimeoutSecs ?? 30, Math.ceil(this.maxWaitMs / 1000) + 30),
    };
  }

  async #report(request, c) {
    const lease = this.#open.get(request);
    if (!lease) return;
    this.#open.delete(request);
    this.onEvent({ type: 'settled', at: Date.now(), request: request.id ?? request.url, lease: lease.id, credential: lease.credential.id, outcome: c.outcome, httpStatus: c.httpStatus });
    await lease.report(c.outcome, { httpStatus: c.httpStatus, retryAfter: c.retryAfter });
  }

  async #settle(request, outcome, httpStatus) {
    await this.#report(request, { outcome, httpStatus, retryAfter: null });
  }
}

/**
 * Crawler options that take every request's cookies and headers from
 * credpool and report every page (see CredpoolCrawlee#crawlerOptions).
 * @template {Record<string, any>} O
 * @param {import('./client.js').Credpool} pool
 * @param {AcquireRequest | ((request: any) => AcquireRequest)} acquire
 * @param {O} options Crawlee options, with a requestHandler
 * @param {CredpoolCrawleeOptions} [credpoolOptions]
 */
export function withCredpool(pool, acquire, options, credpoolOptions = {}) {
  return new CredpoolCrawlee(pool, acquire, credpoolOptions).crawlerOptions(options);
}

/** Up to `max` bytes of a response stream, as text (the rest is dropped). */
function readSome(stream, max) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    const done = () => {
      stream.removeAllListeners?.('data');
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    stream.on('data', (chunk) => {
      if (size < max) {
        chunks.push(Buffer.from(chunk));
        size += chunk.length;
      }
    });
    stream.on('end', done);
    stream.on('error', done);
    stream.on('close', done);
  });
}
