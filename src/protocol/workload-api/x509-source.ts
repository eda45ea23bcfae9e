/**
 * `WorkloadApiX509Source`: the identity port (`IdentitySource`, src/identity) backed by a SPIFFE Workload
 * API (an external SPIRE agent, or another Edgeward agent), like go-spiffe's `workloadapi.X509Source`.
 *
 * - Follows FetchX509SVID over `WorkloadApiClient` and keeps the latest SVID + bundles.
 * - `create()` resolves once the first acceptable X.509 context arrives; it rejects with
 *   `x509-source/timeout` when none arrives in time, `x509-source/unavailable` when the server refuses
 *   for good (InvalidArgument/Unimplemented, Workload Endpoint App. A), or with the refusal of the first
 *   context (`x509-source/unexpected-id`, `.../no-matching-svid`, `.../invalid-svid`).
 * - Every context is checked before it replaces the current one: one SVID is picked (hint, function, or by
 *   default the SVID whose ID equals `expectedId`, else the default SVID = the first, Workload API 5.2),
 *   its ID must satisfy `expectedId` (compared exactly, architecture.md rule 8), and its chain must
 *   validate against the bundle of its own trust domain from the same context (X509-SVID 5). A refused
 *   context is logged as a security event and the previous SVID stays in force.
 * - When the stream breaks, the source reconnects with capped exponential backoff and full jitter
 *   (delay = random() * min(max, initial * 2^(attempt-1))), reset after an accepted context. Meanwhile it
 *   keeps serving the last SVID until it expires; after that `svid()` throws `x509-source/expired`.
 * - `onChange` listeners run when the picked SVID or the bundles change (not on identical updates).
 *
 * Time comes from the injected `Clock`, timers from the injected `ClientTimers`, so the whole behaviour is
 * testable with a ManualClock and fake timers.
 */
import { createHash } from 'node:crypto';
import {
  EdgewardError,
  fullJitterBackoff,
  SpiffeId,
  validateX509Svid,
  X509SvidError,
  type BundleSet,
  type Clock,
  type IdentitySource,
  type SvidWithKey,
} from '../../identity/index.js';
import {
  WorkloadApiClient,
  WorkloadApiClientError,
  type ClientTimers,
  type Watch,
  type WatchErrorInfo,
  type X509Context,
  type X509Svid,
} from './client.js';
import { endpointToString, resolveEndpoint, type WorkloadEndpoint } from './endpoint.js';

export const X509_SOURCE_ERROR_CODES = [
  /** No acceptable X.509 context arrived within `timeoutMs` (cause: the last stream error, if any). */
  'x509-source/timeout',
  /** The Workload API refused for good (InvalidArgument / Unimplemented): not retried. */
  'x509-source/unavailable',
  /** The picked SVID's SPIFFE ID does not satisfy `expectedId`. */
  'x509-source/unexpected-id',
  /** `pickSvid` found no SVID in the context (e.g. no SVID with the requested hint). */
  'x509-source/no-matching-svid',
  /** The picked SVID does not validate against the bundle received with it (cause: X509SvidError). */
  'x509-source/invalid-svid',
  /** The last SVID has expired and no new one arrived. */
  'x509-source/expired',
  /** No SVID yet (only before `create()` resolves). */
  'x509-source/not-ready',
  'x509-source/closed',
  /** Invalid options given to `create()`. */
  'x509-source/bad-options',
] as const;
export type X509SourceErrorCode = (typeof X509_SOURCE_ERROR_CODES)[number];
export class X509SourceError extends EdgewardError<X509SourceErrorCode> {}

export const DEFAULT_X509_SOURCE_TIMEOUT_MS = 30_000;
export const DEFAULT_X509_SOURCE_BACKOFF_INITIAL_MS = 500;
export const DEFAULT_X509_SOURCE_BACKOFF_MAX_MS = 30_000;

/** pino-compatible logger subset. */
export interface X509SourceLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

/** The part of `WorkloadApiClient` the source uses (a fake in unit tests). */
export interface X509ContextWatcher {
  watchX509Svid(onUpdate: (ctx: X509Context) => void, onError: (e: WorkloadApiClientError, info: WatchErrorInfo) => void): Watch;
  close(): void;
}

export type SvidPicker = (svids: readonly X509Svid[]) => X509Svid | undefined;

export interface X509SourceOptions {
  /** `unix:///path` or `tcp://IP:port` (or parsed); default SPIFFE_ENDPOINT_SOCKET from `env`. */
  endpoint?: string | WorkloadEndpoint | undefined;
  /** Where SPIFFE_ENDPOINT_SOCKET is read from when `endpoint` is not given (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** The SPIFFE ID we must receive: exactly this ID, or any ID the predicate accepts. */
  expectedId?: SpiffeId | ((id: SpiffeId) => boolean) | undefined;
  /** Which SVID of the context is ours: the one with this hint, or the one the function returns. */
  pickSvid?: string | SvidPicker | undefined;
  clock?: Clock;
  timers?: ClientTimers;
  /** Uniform [0, 1) for the backoff jitter (default Math.random). */
  random?: () => number;
  logger?: X509SourceLogger;
  /** How long `create()` waits for the first acceptable context (default 30 s). */
  timeoutMs?: number;
  /** Reconnect backoff (default 500 ms doubling up to 30 s, full jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Use this watcher instead of a `WorkloadApiClient` on `endpoint` (tests); it is closed with the source. */
  watcher?: X509ContextWatcher;
}

export interface X509SourceStatus {
  /** True while a stream is open and its last event was an accepted or identical context. */
  connected: boolean;
  /** Contexts accepted so far (identical updates included). */
  updates: number;
  /** Contexts refused so far. */
  refused: number;
  /** The last error (stream failure or refusal), if any since the last accepted context. */
  lastError?: { code: string; message: string } | undefined;
}

const systemClock: Clock = { now: () => Date.now() };
const realTimers: ClientTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};
const nullLogger: X509SourceLogger = { info: () => {}, warn: () => {}, error: () => {} };

interface Current {
  svid: SvidWithKey;
  bundles: BundleSet;
  fingerprint: string;
}

function positive(v: number | undefined, dflt: number, what: string): number {
  const n = v ?? dflt;
  if (!Number.isFinite(n) || n <= 0) throw new X509SourceError('x509-source/bad-options', `${what} must be a positive number`);
  return n;
}

/** A digest of what listeners care about: the picked SVID's chain and every bundle's authorities. */
function fingerprint(svid: X509Svid, bundles: BundleSet): string {
  const h = createHash('sha256');
  for (const d of svid.chainDer) h.update(String(d.length)).update(':').update(d);
  for (const b of bundles.bundles()) {
    h.update('|').update(b.trustDomain.name);
    for (const d of b.x509Authorities) h.update(String(d.length)).update(':').update(d);
  }
  return h.digest('hex');
}

export class WorkloadApiX509Source implements IdentitySource {
  readonly #watcher: X509ContextWatcher;
  readonly #endpointText: string;
  readonly #expectedId: SpiffeId | ((id: SpiffeId) => boolean) | undefined;
  readonly #pick: string | SvidPicker | undefined;
  readonly #clock: Clock;
  readonly #timers: ClientTimers;
  readonly #random: () => number;
  readonly #log: X509SourceLogger;
  readonly #backoffInitial: number;
  readonly #backoffMax: number;
  readonly #listeners = new Set<() => void>();
  #current: Current | undefined;
  #watch: Watch | undefined;
  #retryTimer: unknown;
  #attempt = 0;
  #closed = false;
  #connected = false;
  #updates = 0;
  #refused = 0;
  #lastError: { code: string; message: string } | undefined;
  /** Settles `create()`: set until the first context is accepted or the start fails. */
  #ready: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(watcher: X509ContextWatcher, endpointText: string, o: X509SourceOptions) {
    this.#watcher = watcher;
    this.#endpointText = endpointText;
    this.#expectedId = o.expectedId;
    this.#pick = o.pickSvid;
    this.#clock = o.clock ?? systemClock;
    this.#timers = o.timers ?? realTimers;
    this.#random = o.random ?? Math.random;
    this.#log = o.logger ?? nullLogger;
    this.#backoffInitial = positive(o.backoff?.initialMs, DEFAULT_X509_SOURCE_BACKOFF_INITIAL_MS, 'backoff.initialMs');
    this.#backoffMax = positive(o.backoff?.maxMs, DEFAULT_X509_SOURCE_BACKOFF_MAX_MS, 'backoff.maxMs');
  }

  /**
   * Connect and wait for the first acceptable X.509 context. Throws EndpointError for a missing or invalid
   * endpoint, X509SourceError otherwise (see the file comment).
   */
  static async create(options: X509SourceOptions = {}): Promise<WorkloadApiX509Source> {
    const timeoutMs = positive(options.timeoutMs, DEFAULT_X509_SOURCE_TIMEOUT_MS, 'timeoutMs');
    const e = options.expectedId;
    if (e !== undefined && !(e instanceof SpiffeId) && typeof e !== 'function') {
      throw new X509SourceError('x509-source/bad-options', 'expectedId must be a SpiffeId or a predicate');
    }
    if (e instanceof SpiffeId && e.isTrustDomainId) {
      throw new X509SourceError('x509-source/bad-options', 'expectedId must be a workload SPIFFE ID with a path (X509-SVID 2)');
    }
    const p = options.pickSvid;
    if (p !== undefined && typeof p !== 'function' && (typeof p !== 'string' || p.length === 0)) {
      throw new X509SourceError('x509-source/bad-options', 'pickSvid must be a non-empty hint or a function');
    }
    let watcher = options.watcher;
    let endpointText = 'injected';
    if (watcher === undefined) {
      const ep = typeof options.endpoint === 'object' ? options.endpoint : resolveEndpoint(options.endpoint, options.env ?? process.env);
      const initialMs = options.backoff?.initialMs ?? DEFAULT_X509_SOURCE_BACKOFF_INITIAL_MS;
      const maxMs = options.backoff?.maxMs ?? DEFAULT_X509_SOURCE_BACKOFF_MAX_MS;
      watcher = new WorkloadApiClient(ep, {
        ...(options.timers === undefined ? {} : { timers: options.timers }),
        // grpc-js reconnects a failed channel on its own backoff (up to 120 s by default); keep it within ours
        // so that a restarted agent is found again promptly.
        channelOptions: { 'grpc.initial_reconnect_backoff_ms': Math.max(100, Math.floor(initialMs)), 'grpc.max_reconnect_backoff_ms': Math.max(1000, Math.floor(maxMs)) },
      });
      endpointText = endpointToString(ep);
    }
    const source = new WorkloadApiX509Source(watcher, endpointText, options);
    await source.#start(timeoutMs);
    return source;
  }

  #start(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        const last = this.#lastError;
        fail(
          new X509SourceError(
            'x509-source/timeout',
            `no X509-SVID from the Workload API at ${this.#endpointText} within ${timeoutMs} ms${last === undefined ? '' : ` (last error: ${last.code})`}`,
            { detail: { endpoint: this.#endpointText, timeout_ms: timeoutMs } },
          ),
        );
      }, timeoutMs);
      const fail = (e: Error): void => {
        if (this.#ready === undefined) return;
        this.#ready = undefined;
        this.#timers.clearTimeout(timer);
        this.#shutdown();
        reject(e);
      };
      this.#ready = {
        resolve: () => {
          this.#ready = undefined;
          this.#timers.clearTimeout(timer);
          resolve();
        },
        reject: fail,
      };
      this.#connect();
    });
  }

  #connect(): void {
    if (this.#closed) return;
    try {
      this.#watch = this.#watcher.watchX509Svid(
        (ctx) => this.#onContext(ctx),
        (e, info) => this.#onStreamError(e, info),
      );
    } catch (e) {
      // The client was closed under us (or the watcher failed): treat it as a broken stream.
      const err = e instanceof WorkloadApiClientError ? e : new WorkloadApiClientError('workload-api/unavailable', 'cannot open the stream', { cause: e });
      this.#onStreamError(err, { retrying: err.code !== 'workload-api/closed' });
    }
  }

  #pickSvid(ctx: X509Context): X509Svid {
    const p = this.#pick;
    let svid: X509Svid | undefined;
    if (typeof p === 'string') svid = ctx.svids.find((s) => s.hint === p);
    else if (typeof p === 'function') svid = p(ctx.svids);
    else {
      const e = this.#expectedId;
      svid = (e instanceof SpiffeId ? ctx.svids.find((s) => s.spiffeId.equals(e)) : undefined) ?? ctx.defaultSvid;
    }
    if (svid === undefined || !ctx.svids.includes(svid)) {
      throw new X509SourceError('x509-source/no-matching-svid', typeof p === 'string' ? `no SVID with hint "${p.slice(0, 64)}" in the X.509 context` : 'pickSvid chose no SVID of the X.509 context');
    }
    return svid;
  }

  /** Check a context; returns the new state or throws X509SourceError. */
  #check(ctx: X509Context): Current {
    const picked = this.#pickSvid(ctx);
    const e = this.#expectedId;
    const ok = e === undefined ? true : e instanceof SpiffeId ? picked.spiffeId.equals(e) : e(picked.spiffeId) === true;
    if (!ok) {
      throw new X509SourceError(
        'x509-source/unexpected-id',
        `the Workload API issued ${picked.spiffeId.toString()}${e instanceof SpiffeId ? `, expected ${e.toString()}` : ', which expectedId refuses'}`,
        { detail: { spiffe_id: picked.spiffeId.toString(), ...(e instanceof SpiffeId ? { expected: e.toString() } : {}) } },
      );
    }
    try {
      // X509-SVID 5: against the bundle of the SVID's own trust domain, at our time.
      validateX509Svid(picked.chainDer, ctx.bundles, this.#clock.now());
    } catch (err) {
      if (!(err instanceof X509SvidError)) throw err;
      throw new X509SourceError('x509-source/invalid-svid', `the SVID for ${picked.spiffeId.toString()} does not validate against its bundle: ${err.code}`, {
        cause: err,
        detail: { spiffe_id: picked.spiffeId.toString(), reason: err.code },
      });
    }
    return {
      svid: Object.freeze({
        spiffeId: picked.spiffeId,
        chainDer: Object.freeze(picked.chainDer.map((d) => Buffer.from(d))),
        privateKey: picked.privateKey,
        notAfter: picked.leaf.notAfter,
        serialHex: picked.leaf.serialHex,
      }),
      bundles: ctx.bundles,
      fingerprint: fingerprint(picked, ctx.bundles),
    };
  }

  #onContext(ctx: X509Context): void {
    if (this.#closed) return;
    let next: Current;
    try {
      next = this.#check(ctx);
    } catch (e) {
      if (!(e instanceof X509SourceError)) throw e;
      this.#refused++;
      this.#lastError = { code: e.code, message: e.message };
      this.#log.warn(
        { event: 'security.x509_source_refused', code: e.code, endpoint: this.#endpointText, ...(e.detail ?? {}), kept_previous: this.#current !== undefined },
        'refused an X.509 context from the Workload API',
      );
      // The first context decides whether the configuration is right at all: fail fast.
      this.#ready?.reject(e);
      return;
    }
    this.#connected = true;
    this.#attempt = 0; // reset the backoff after a good context
    this.#updates++;
    this.#lastError = undefined;
    const prev = this.#current;
    this.#current = next;
    if (prev !== undefined && prev.fingerprint === next.fingerprint) return;
    this.#log.info(
      {
        event: prev === undefined ? 'x509_source.ready' : 'x509_source.rotated',
        spiffe_id: next.svid.spiffeId.toString(),
        serial: next.svid.serialHex,
        not_after: new Date(next.svid.notAfter).toISOString(),
        trust_domains: next.bundles.trustDomains().map((t) => t.name),
      },
      prev === undefined ? 'X509-SVID received from the Workload API' : 'X509-SVID or bundles updated from the Workload API',
    );
    if (prev === undefined) {
      this.#ready?.resolve();
      return;
    }
    for (const l of [...this.#listeners]) {
      try {
        l();
      } catch (err) {
        this.#log.error({ event: 'x509_source.listener_failed', err: err instanceof Error ? err.message : String(err) }, 'an onChange listener threw');
      }
    }
  }

  #onStreamError(e: WorkloadApiClientError, info: WatchErrorInfo): void {
    if (this.#closed) return;
    if (e.code === 'workload-api/bad-response') {
      // A malformed message: the client dropped it and the stream stays open; the previous state stays.
      this.#refused++;
      this.#lastError = { code: e.code, message: e.message };
      this.#log.warn({ event: 'security.x509_source_bad_response', code: e.code, endpoint: this.#endpointText }, 'dropped a malformed Workload API message');
      return;
    }
    this.#connected = false;
    this.#lastError = { code: e.code, message: e.message };
    const w = this.#watch;
    this.#watch = undefined;
    if (!info.retrying) {
      // InvalidArgument / Unimplemented / closed: the spec says not to retry (Workload Endpoint App. A).
      w?.close();
      this.#log.error({ event: 'x509_source.stopped', code: e.code, endpoint: this.#endpointText }, 'the Workload API refused for good; not retrying');
      this.#ready?.reject(new X509SourceError('x509-source/unavailable', `the Workload API at ${this.#endpointText} refused: ${e.code}`, { cause: e }));
      return;
    }
    // Replace the client's linear retry with ours. The client arms its retry timer right after this
    // callback returns, so close the watch (which clears that timer) in a microtask.
    if (w !== undefined) queueMicrotask(() => w.close());
    this.#attempt++;
    const delayMs = fullJitterBackoff(this.#attempt - 1, { baseMs: this.#backoffInitial, capMs: this.#backoffMax }, this.#random);
    this.#log.warn(
      { event: 'x509_source.stream_error', code: e.code, endpoint: this.#endpointText, attempt: this.#attempt, retry_in_ms: delayMs, serving_last: this.#current !== undefined },
      'Workload API stream failed; reconnecting',
    );
    if (this.#retryTimer !== undefined) this.#timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, delayMs);
  }

  /** The current SVID; throws X509SourceError 'x509-source/expired' once it has expired. */
  svid(): SvidWithKey {
    if (this.#closed) throw new X509SourceError('x509-source/closed', 'the X.509 source is closed');
    const c = this.#current;
    if (c === undefined) throw new X509SourceError('x509-source/not-ready', 'no X509-SVID received yet');
    if (this.#clock.now() > c.svid.notAfter) {
      throw new X509SourceError('x509-source/expired', `the last X509-SVID (${c.svid.spiffeId.toString()}) expired and no new one arrived`, {
        detail: { spiffe_id: c.svid.spiffeId.toString(), not_after: c.svid.notAfter, last_error: this.#lastError?.code ?? 'none' },
      });
    }
    return c.svid;
  }

  /** The bundles received with the current SVID (own trust domain + federated). */
  bundles(): BundleSet {
    if (this.#closed) throw new X509SourceError('x509-source/closed', 'the X.509 source is closed');
    const c = this.#current;
    if (c === undefined) throw new X509SourceError('x509-source/not-ready', 'no X.509 bundles received yet');
    return c.bundles;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  status(): X509SourceStatus {
    return { connected: this.#connected, updates: this.#updates, refused: this.#refused, lastError: this.#lastError };
  }

  get closed(): boolean {
    return this.#closed;
  }

  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#connected = false;
    if (this.#retryTimer !== undefined) this.#timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#watch?.close();
    this.#watch = undefined;
    this.#watcher.close();
    this.#listeners.clear();
  }

  /** Stop following the Workload API. Idempotent. `svid()` and `bundles()` throw afterwards. */
  close(): void {
    this.#ready?.reject(new X509SourceError('x509-source/closed', 'the X.509 source was closed before it was ready'));
    this.#shutdown();
  }
}
