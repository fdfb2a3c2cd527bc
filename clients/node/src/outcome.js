// What an HTTP answer means for the credential that made the request.

/** @typedef {'success'|'blocked'|'challenged'|'expired'|'rate-limited'|'network'|'failed'} Outcome */

/** The outcomes the server knows. */
export const OUTCOMES = Object.freeze([
  'success',
  'blocked',
  'challenged',
  'expired',
  'rate-limited',
  'network',
  'failed',
]);

/**
 * A response reduced to what classification needs, from a fetch `Response`,
 * a got/Node `IncomingMessage` (Crawlee's HTTP crawlers), a Playwright-like
 * response (`status()`, `headers()`, `url()`) or a plain object
 * `{status, headers, url}`.
 * @param {any} res
 * @returns {{status: number, headers: Record<string, string>, url: string}}
 */
export function responseInfo(res) {
  if (res == null || typeof res !== 'object') {
    throw new TypeError('reportResponse needs a response object with a status');
  }
  const pick = (v) => (typeof v === 'function' ? v.call(res) : v);
  const status = Number(pick(res.status) ?? pick(res.statusCode));
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new TypeError('reportResponse needs a response object with a status');
  }
  /** @type {Record<string, string>} */
  const headers = {};
  const raw = pick(res.headers);
  if (raw && typeof raw.forEach === 'function' && typeof raw.get === 'function') {
    raw.forEach((v, k) => {
      headers[String(k).toLowerCase()] = String(v);
    });
  } else if (raw && typeof raw === 'object') {
    for (const [k, v] of Object.entries(raw)) {
      if (v != null) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
    }
  }
  const url = String(pick(res.url) ?? '');
  return { status, headers, url };
}

/**
 * Seconds from a Retry-After value (delay-seconds or an HTTP date), or null.
 * @param {string | undefined | null} value
 * @param {number} [now] ms since the epoch
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Math.min(Number(text), 0xffffffff);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

const CAPTCHA = /<form[^>]*\bid=["']?captcha\b|\bg-recaptcha\b|\bh-captcha\b|\bcf-turnstile\b|\bchallenge-form\b/i;
const LOGIN_PATH = /\/(log-?in|sign-?in|auth\/login)\b/i;

/**
 * A captcha page answered 2xx: challenged.
 * @type {Check}
 */
export function captchaCheck({ status, body }) {
  if (status >= 200 && status < 300 && typeof body === 'string' && CAPTCHA.test(body)) {
    return 'challenged';
  }
  return null;
}

/**
 * A redirect to a login page, or a page that ended on one (the session
 * was logged out): expired.
 * @type {Check}
 */
export function logoutCheck({ status, headers, url, requestUrl }) {
  if (status >= 300 && status < 400 && LOGIN_PATH.test(headers.location ?? '')) return 'expired';
  if (status >= 200 && status < 300 && url && LOGIN_PATH.test(pathOf(url))) {
    // A crawl that asked for the login page itself was not logged out.
    if (!requestUrl || !LOGIN_PATH.test(pathOf(requestUrl))) return 'expired';
  }
  return null;
}

function pathOf(url) {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/**
 * @typedef {{status: number, headers: Record<string, string>, url: string,
 *            requestUrl?: string, body?: string}} Answer
 * @typedef {(answer: Answer) => Outcome | {outcome: Outcome, retryAfter?: number} | null | undefined} Check
 */

/** The checks run when none are given: captcha pages, then logouts. */
export const defaultChecks = Object.freeze([captchaCheck, logoutCheck]);

/**
 * The outcome of an answer: the first check that speaks, else by status:
 * 401 expired, 403 blocked, 429 rate-limited (with Retry-After), 5xx
 * network, other 4xx failed, the rest success.
 * @param {Answer} answer
 * @param {readonly Check[]} [checks]
 * @returns {{outcome: Outcome, httpStatus: number, retryAfter: number | null}}
 */
export function classify(answer, checks = defaultChecks) {
  const retryAfter = parseRetryAfter(answer.headers['retry-after']);
  for (const check of checks) {
    const said = check(answer);
    if (!said) continue;
    const outcome = typeof said === 'string' ? said : said.outcome;
    if (!OUTCOMES.includes(outcome)) {
      throw new TypeError(`a check returned an unknown outcome (one of ${OUTCOMES.join(', ')} expected)`);
    }
    const ra = typeof said === 'object' && said.retryAfter != null ? said.retryAfter : retryAfter;
    return { outcome, httpStatus: answer.status, retryAfter: outcome === 'rate-limited' ? ra : null };
  }
  const s = answer.status;
  /** @type {Outcome} */
  let outcome = 'success';
  if (s === 401) outcome = 'expired';
  else if (s === 403) outcome = 'blocked';
  else if (s === 429) outcome = 'rate-limited';
  else if (s >= 500) outcome = 'network';
  else if (s >= 400) outcome = 'failed';
  return { outcome, httpStatus: s, retryAfter: outcome === 'rate-limited' ? retryAfter : null };
}

/**
 * Whether an error is a connection failure (refused, reset, timed out,
 * DNS), which is reported as `network`.
 * @param {unknown} err
 */
export function isNetworkError(err) {
  const codes = new Set([
    'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH',
    'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ERR_GOT_REQUEST_ERROR', 'ETIMEDOUT',
  ]);
  for (let e = /** @type {any} */ (err), depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (codes.has(e.code)) return true;
    if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.name === 'RequestError') return true;
    if (e instanceof TypeError && e.message === 'fetch failed') return true;
  }
  return false;
}
