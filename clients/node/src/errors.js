// Typed errors. None carries a secret: messages come from the server's
// error codes and messages (which never echo a value the client sent), and
// from what this client knows (addresses, lease ids, status codes).

/** Base of every error this package throws. */
export class CredpoolError extends Error {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = 'CredpoolError';
  }
}

/** The server refused a request: `{"error": {"code", "message"}}` with an HTTP status. */
export class ApiError extends CredpoolError {
  /**
   * @param {number} status HTTP status
   * @param {string} code the server's error code, e.g. `lease_not_found`
   * @param {string} message the server's message
   * @param {number | null} [retryAfter] seconds, when the server sent Retry-After
   */
  constructor(status, code, message, retryAfter = null) {
    super(`credpool server answered ${status} ${code}: ${message}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.serverMessage = message;
    this.retryAfter = retryAfter;
  }
}

/** 401 (no known, live token) or 403 (the token's role may not). */
export class AuthError extends ApiError {
  constructor(status, code, message, retryAfter = null) {
    super(status, code, message, retryAfter);
    this.name = 'AuthError';
  }
}

/** 404: no such credential, lease, ticket or token (a lease also ends by its TTL). */
export class NotFoundError extends ApiError {
  constructor(status, code, message, retryAfter = null) {
    super(status, code, message, retryAfter);
    this.name = 'NotFoundError';
  }
}

/**
 * 404 `unknown_site`: the pool has no credential at all for the site (a typo,
 * or a site never added); waiting will not help. `alternatives` names known
 * sites that look like it (`did you mean jd.com?`).
 */
export class UnknownSiteError extends NotFoundError {
  constructor(status, code, message, retryAfter = null, alternatives = []) {
    super(status, code, message, retryAfter);
    this.name = 'UnknownSiteError';
    this.alternatives = alternatives;
  }
}

/** The server could not be reached, or its answer was not what the API promises. */
export class ConnectionError extends CredpoolError {
  constructor(message, options) {
    super(message, options);
    this.name = 'ConnectionError';
  }
}

/**
 * Acquire was answered without a credential.
 * `status` is `no-available` or `all-blocked`; `reason` says why (`all-leased`,
 * `all-rate-limited`, `all-cooling`, `all-refreshing`, `all-banned`, `none-match`,
 * `mixed`); `nextFreeAt` is when one is expected to be free (or null);
 * `alternatives` are sites or types that could serve instead.
 */
export class NoCredentialAvailable extends CredpoolError {
  /**
   * @param {{site: string, status: string, reason: string | null, nextFreeAt: Date | null,
   *          alternatives: string[], retryAfter: number | null, warnings?: string[]}} info
   */
  constructor(info) {
    const when = info.nextFreeAt ? `, next free at ${info.nextFreeAt.toISOString()}` : '';
    super(`no credential available for ${info.site}: ${info.status} (${info.reason ?? 'no reason given'})${when}`);
    this.name = 'NoCredentialAvailable';
    this.site = info.site;
    this.status = info.status;
    this.reason = info.reason;
    this.nextFreeAt = info.nextFreeAt;
    this.alternatives = info.alternatives;
    this.retryAfter = info.retryAfter;
    this.warnings = info.warnings ?? [];
  }
}

/** A lease was used after it was reported or released. */
export class LeaseSettledError extends CredpoolError {
  constructor(leaseId, how) {
    super(`lease ${leaseId} was already ${how}`);
    this.name = 'LeaseSettledError';
    this.leaseId = leaseId;
  }
}

/** The error for a server refusal, by status. */
export function apiError(status, code, message, retryAfter, alternatives = []) {
  if (status === 404 && code === 'unknown_site') return new UnknownSiteError(status, code, message, retryAfter, alternatives);
  if (status === 401 || status === 403) return new AuthError(status, code, message, retryAfter);
  if (status === 404) return new NotFoundError(status, code, message, retryAfter);
  return new ApiError(status, code, message, retryAfter);
}
