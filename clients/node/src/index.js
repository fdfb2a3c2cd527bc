// credpool: a client of `credpool serve` for Node 20+ (built-in fetch only).

export { Credpool, sleep } from './client.js';
export { Lease } from './lease.js';
export {
  ApiError,
  AuthError,
  ConnectionError,
  CredpoolError,
  LeaseSettledError,
  NoCredentialAvailable,
  NotFoundError,
  UnknownSiteError,
} from './errors.js';
export {
  OUTCOMES,
  captchaCheck,
  classify,
  defaultChecks,
  isNetworkError,
  logoutCheck,
  parseRetryAfter,
  responseInfo,
} from './outcome.js';
