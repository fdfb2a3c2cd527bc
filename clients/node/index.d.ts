// Types of the `credpool` package (hand-written; the code is plain ESM with JSDoc).

export type Outcome = 'success' | 'blocked' | 'challenged' | 'expired' | 'rate-limited' | 'network' | 'failed';
export declare const OUTCOMES: readonly Outcome[];

export type CredentialType = 'account' | 'session' | 'token' | 'api-key' | 'device';
export type ViewLevel = 'public' | 'internal' | 'sensitive';

export interface AcquireRequest {
  site: string;
  type?: CredentialType;
  purpose?: string;
  tags?: string[];
  ttlSeconds?: number;
  preferFresh?: boolean;
  /** Show the leased credential at this level instead of its summary. */
  level?: ViewLevel;
}

export interface AcquireOptions {
  /** How long to wait out "nothing free" (sleeping until nextFreeAt); 0 (the default) throws at once. */
  maxWaitMs?: number;
  /** Called with each refusal while waiting. */
  onRefused?: (error: NoCredentialAvailable) => void;
}

export interface ReportDetail {
  httpStatus?: number | null;
  /** Seconds the site asked to wait (429 Retry-After). */
  retryAfter?: number | null;
}

export interface Report extends ReportDetail {
  outcome: Outcome;
}

export interface ReportEffect {
  lease: string;
  /** The credential's status after the report, e.g. `active`, `cooling`, `suspended`, `banned`. */
  status: string;
  health: number;
  cooldownUntil: Date | null;
}

export interface LeasedCredential {
  id: string;
  site: string;
  type: CredentialType;
  status: string;
  health: number;
  [more: string]: unknown;
}

/** What a check sees of an answer. Header names are lowercase. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  url: string;
  requestUrl?: string;
  body?: string;
  /** The leased credential's id (Crawlee hooks). */
  credential?: string;
}

/** Classifies an answer before its status does; null lets the next check (or the status) speak. */
export type Check = (answer: Answer) => Outcome | { outcome: Outcome; retryAfter?: number } | null | undefined;

export interface CredpoolOptions {
  /**
   * `http://host:port`, or several servers of one deployment (an array, or
   * URLs separated by commas) tried in turn; default CREDPOOL_ADDR.
   */
  addr?: string | readonly string[];
  /** API token; default CREDPOOL_TOKEN. */
  token?: string;
  /** Per call; default 30000. */
  timeoutMs?: number;
  /**
   * How long (ms) one call goes on trying the next server while servers are
   * down or without a leader; default 30000. Acquire is sent again only when
   * no server can have received it (connection refused).
   */
  failoverDeadlineMs?: number;
  /** Answer checks; default `defaultChecks` (captcha pages, logouts). */
  checks?: readonly Check[];
  fetch?: typeof fetch;
}

export interface NameValue {
  name: string;
  value: string;
}

export interface NewCredential {
  site: string;
  type: CredentialType;
  id?: string;
  username?: string;
  phone?: string;
  email?: string;
  expiresAt?: string | Date;
  tags?: string[];
  tokenScope?: string[];
  maxConcurrent?: number;
  ratePerMinute?: number;
  secrets?: {
    password?: string;
    cookies?: NameValue[];
    headers?: NameValue[];
    accessToken?: string;
    refreshToken?: string;
    apiKey?: string;
    secretKey?: string;
    recoveryCodes?: string[];
    totpSeed?: string;
  };
}

/** JSON as the server answers it (snake_case keys). */
export type Json = any;

export declare class Credpool {
  constructor(options?: CredpoolOptions);
  readonly addr: string;
  timeoutMs: number;
  checks: readonly Check[];

  acquire(request: AcquireRequest, options?: AcquireOptions): Promise<Lease>;
  report(leaseId: string, report: Report): Promise<ReportEffect>;
  release(leaseId: string): Promise<{ lease: string; released: boolean }>;
  reportAndAcquire(leaseId: string, report: Report, next: AcquireRequest): Promise<{ effect: ReportEffect; lease: Lease }>;
  /** Leases for `fn`; released if `fn` returns unreported, reported a failure if it throws. */
  withLease<T>(request: AcquireRequest, fn: (lease: Lease) => Promise<T> | T, options?: AcquireOptions): Promise<T>;

  listCredentials(filter?: { site?: string; status?: string; level?: ViewLevel }): Promise<Json[]>;
  getCredential(id: string, options?: { level?: ViewLevel }): Promise<Json>;
  addCredential(credential: NewCredential): Promise<Json>;
  importCredentials(text: string, options: { format: 'json' | 'cookies-txt' | 'cookie-json'; site?: string; skipInvalid?: boolean }): Promise<Json>;
  removeCredential(id: string): Promise<{ id: string; removed: boolean }>;
  unban(id: string): Promise<Json>;
  resetChallenge(id: string): Promise<Json>;
  reveal(id: string): Promise<Json>;
  exportCredential(id: string, options: { format: 'json' | 'cookies-txt' }): Promise<Json>;

  healthz(): Promise<{ status: string }>;
  readyz(): Promise<{ status: string; tenants: number }>;
  stats(filter?: { site?: string }): Promise<Json[]>;
  alerts(): Promise<Json[]>;
  metrics(): Promise<string>;
  tickets(): Promise<Json[]>;
  answerTicket(id: string, code: string): Promise<Json>;
  listTokens(): Promise<Json[]>;
  createToken(options: { role: 'crawler' | 'viewer' | 'operator' | 'admin'; expiresInSeconds?: number }): Promise<Json>;
  revokeToken(id: string): Promise<Json>;
}

/** A leased credential. Its secrets are in private fields: inspect, JSON and toString never show them. */
export declare class Lease {
  readonly id: string;
  readonly credential: Readonly<LeasedCredential>;
  readonly grantedAt: Date;
  readonly expiresAt: Date;
  readonly warnings: string[];
  readonly cookies: NameValue[];
  /** `a=1; b=2`, or '' without cookies. */
  readonly cookieHeader: string;
  readonly headers: Record<string, string>;
  readonly accessToken: string | null;
  readonly refreshToken: string | null;
  readonly password: string | null;
  readonly apiKey: string | null;
  readonly secretKey: string | null;
  readonly recoveryCodes: string[];
  readonly settled: boolean;
  /** The credential's headers plus Cookie and Authorization: Bearer. */
  requestHeaders(): Record<string, string>;
  report(outcome: Outcome, detail?: ReportDetail): Promise<ReportEffect>;
  /** Checks first, then 401 expired, 403 blocked, 429 rate-limited (Retry-After), 5xx network, other 4xx failed, else success. */
  reportResponse(response: unknown, options?: { body?: string; requestUrl?: string }): Promise<{ outcome: Outcome; effect: ReportEffect }>;
  reportError(error: unknown): Promise<ReportEffect>;
  release(): Promise<{ lease: string; released: boolean }>;
  reportAndAcquire(outcome: Outcome, next: AcquireRequest, detail?: ReportDetail): Promise<{ effect: ReportEffect; lease: Lease }>;
  toJSON(): object;
}

export declare class CredpoolError extends Error {}
export declare class ApiError extends CredpoolError {
  readonly status: number;
  readonly code: string;
  readonly serverMessage: string;
  readonly retryAfter: number | null;
}
export declare class AuthError extends ApiError {}
export declare class NotFoundError extends ApiError {}
/** 404 `unknown_site`: no credential at all for the site; waiting will not help. */
export declare class UnknownSiteError extends NotFoundError {
  /** Known sites that look like it (`did you mean jd.com?`). */
  readonly alternatives: string[];
}
export declare class ConnectionError extends CredpoolError {}
export declare class LeaseSettledError extends CredpoolError {
  readonly leaseId: string;
}
export declare class NoCredentialAvailable extends CredpoolError {
  readonly site: string;
  /** `no-available` or `all-blocked`. */
  readonly status: string;
  /** `none-match`, `all-leased`, `all-rate-limited`, `all-cooling`, `all-refreshing`, `all-banned` or `mixed`. */
  readonly reason: string | null;
  readonly nextFreeAt: Date | null;
  readonly alternatives: string[];
  /** Seconds, from the server's Retry-After. */
  readonly retryAfter: number | null;
  readonly warnings: string[];
}

export declare function classify(answer: Answer, checks?: readonly Check[]): { outcome: Outcome; httpStatus: number; retryAfter: number | null };
export declare const defaultChecks: readonly Check[];
export declare const captchaCheck: Check;
export declare const logoutCheck: Check;
export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | null;
export declare function responseInfo(response: unknown): { status: number; headers: Record<string, string>; url: string };
export declare function isNetworkError(error: unknown): boolean;
export declare function sleep(ms: number): Promise<void>;
