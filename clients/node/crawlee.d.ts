// Types of `credpool/crawlee` (hand-written).

import type { AcquireRequest, Check, Credpool, CredpoolError, NoCredentialAvailable } from './index.js';

export type CrawlEvent =
  | { type: 'refused'; at: number; request: string; error: NoCredentialAvailable }
  | { type: 'leased'; at: number; request: string; lease: string; credential: string }
  | { type: 'settled'; at: number; request: string; lease: string; credential: string; outcome: string; httpStatus: number | null };

export interface CredpoolCrawleeOptions {
  /** How long a request waits out "nothing free"; default 20000. */
  maxWaitMs?: number;
  /** Answer checks; default the pool's. */
  checks?: readonly Check[];
  /** Each lease, refusal and report, for the crawler's own records. */
  onEvent?: (event: CrawlEvent) => void;
}

/** Thrown after a refusal is reported, so that Crawlee retries with another credential. */
export declare class CredentialRefused extends CredpoolError {
  readonly outcome: string;
  readonly httpStatus: number;
}

export declare class CredpoolCrawlee {
  constructor(pool: Credpool, acquire: AcquireRequest | ((request: any) => AcquireRequest), options?: CredpoolCrawleeOptions);
  preNavigationHook(context: any, gotOptions: any): Promise<void>;
  postNavigationHook(context: any): Promise<void>;
  wrapRequestHandler<H extends (context: any) => any>(handler: H): H;
  errorHandler(context: any, error: unknown): Promise<void>;
  /** The crawler's options with the hooks in, the handlers wrapped and Crawlee's session pool off. */
  crawlerOptions<O extends { requestHandler: (context: any) => any }>(options: O): O & Record<string, any>;
}

export declare function withCredpool<O extends { requestHandler: (context: any) => any }>(
  pool: Credpool,
  acquire: AcquireRequest | ((request: any) => AcquireRequest),
  options: O,
  credpoolOptions?: CredpoolCrawleeOptions,
): O & Record<string, any>;
