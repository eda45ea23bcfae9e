/**
 * The SPIFFE Workload API server (transport only): a gRPC server on a Unix socket whose callers are
 * identified by the kernel (SO_PEERCRED at accept time, src/edge/peercred), never by anything they send.
 * Who a caller is and what it gets is decided by the WorkloadIdentitySource port (source.ts).
 *
 * Spec (spiffe.md 1 and the Workload Endpoint / Workload API standards):
 * - Service `SpiffeWorkloadAPI` without a package (paths `/SpiffeWorkloadAPI/<Method>`); plaintext h2c
 *   over UDS, no TLS, no client credentials (Workload Endpoint 3, 4).
 * - Security header `workload.spiffe.io: true` on every `/SpiffeWorkloadAPI/` call, checked in a server
 *   interceptor before any handler runs: exactly one value, exactly "true" (case-sensitive), else
 *   InvalidArgument "security header missing from request" before any stream message (Workload
 *   Endpoint 5; SPIRE checks the same prefix only, so Envoy SDS on other services is unaffected).
 * - Streams send the complete state at once and again after every change that alters it (identical
 *   states are suppressed); a caller with no identity gets PermissionDenied "no identity issued" and
 *   never an empty message; losing every identity ends the stream with PermissionDenied.
 * - Attestation failure -> Unavailable; load shedding (rate and stream limits) -> Unavailable; WIT RPCs
 *   -> Unimplemented. All status codes come from status.ts.
 *
 * The socket file is mode 0777 (any local process may connect, as SPIRE's public socket): the security
 * comes from kernel attestation of each connection, not from file permissions.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  EdgewardError,
  MAX_JWT_AUDIENCE_LENGTH,
  MAX_JWT_AUDIENCES,
  MAX_JWT_SVID_BYTES,
  SpiffeId,
  SpiffeIdError,
  TrustDomain,
} from '../../identity/index.js';
import {
  toStruct,
  workloadApiServiceDefinition,
  WORKLOAD_API_HEADER,
  WORKLOAD_API_HEADER_VALUE,
  WORKLOAD_API_PATH_PREFIX,
  type JWTBundlesResponse,
  type JWTSVIDRequest,
  type JWTSVIDResponse,
  type ValidateJWTSVIDRequest,
  type ValidateJWTSVIDResponse,
  type X509BundlesResponse,
  type X509SVIDResponse,
} from '../../protocol/index.js';
import {
  attachUnixPeerServer,
  PeerCredError,
  peerCredAddon,
  UnixPeerRegistry,
  type UnixPeer,
  type UnixPeerRegistryOptions,
} from '../peercred/index.js';
import type { AttestedCaller, WorkloadIdentitySource, X509SvidView } from './source.js';
import { grpcStatusOf, isMappedError, WorkloadEndpointError, type WorkloadEndpointErrorCode } from './status.js';

/** pino-compatible subset. */
export interface WorkloadApiLogger {
  info(obj: Record<string, unknown>, msg?: string): void;
  warn(obj: Record<string, unknown>, msg?: string): void;
  error(obj: Record<string, unknown>, msg?: string): void;
}

export interface WorkloadApiLimits {
  /** Open streams (FetchX509SVID, FetchX509Bundles, FetchJWTBundles) over all callers. */
  maxStreams: number;
  /** Open streams of one caller process (pid). */
  maxStreamsPerCaller: number;
  /** Accepted Unix connections at once (net.Server maxConnections). */
  maxConnections: number;
  /** HTTP/2 concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentCallsPerConnection: number;
  /** Largest request message accepted (requests are tiny; a JWT-SVID is at most 16 KiB). */
  maxReceiveMessageBytes: number;
  /** Largest response message sent. */
  maxSendMessageBytes: number;
  /** FetchJWTSVID token bucket per caller pid: sustained rate ... */
  jwtSvidRatePerSecond: number;
  /** ... and burst. */
  jwtSvidBurst: number;
  /** Longest wait for `source.attest` before the call fails with Unavailable. */
  attestTimeoutMs: number;
  /** Grace period for in-flight calls in close() before connections are cut. */
  shutdownGraceMs: number;
}

export const DEFAULT_WORKLOAD_API_LIMITS: Readonly<WorkloadApiLimits> = Object.freeze({
  maxStreams: 4096,
  maxStreamsPerCaller: 64,
  maxConnections: 1024,
  maxConcurrentCallsPerConnection: 128,
  maxReceiveMessageBytes: 64 * 1024,
  maxSendMessageBytes: 4 * 1024 * 1024,
  jwtSvidRatePerSecond: 50,
  jwtSvidBurst: 100,
  attestTimeoutMs: 10_000,
  shutdownGraceMs: 2_000,
});

export interface WorkloadApiServerOptions {
  source: WorkloadIdentitySource;
  /** Absolute path of the Unix socket (at most 107 bytes). */
  socketPath: string;
  logger?: WorkloadApiLogger;
  limits?: Partial<WorkloadApiLimits>;
  /** Options of the peer-credential registry (tests: a fake procfs). */
  peerCredentials?: UnixPeerRegistryOptions;
  /** Monotonic milliseconds for the rate limiter (default performance.now). */
  now?: () => number;
}

export interface WorkloadApiServerStats {
  connections: number;
  streams: number;
}

export interface WorkloadApiServer {
  readonly socketPath: string;
  /** Create the socket (parent directory 0755 if missing, stale socket replaced) and start serving. */
  start(): Promise<void>;
  /** End open streams with Unavailable, close connections, remove the socket file. Idempotent. */
  close(): Promise<void>;
  stats(): WorkloadApiServerStats;
}

/** Events with a stable `event` field (architecture.md convention 6). */
export const WORKLOAD_API_EVENTS = {
  headerMissing: 'workload_api.header_missing',
  noIdentity: 'workload_api.no_identity',
  notEntitled: 'workload_api.not_entitled',
  attestationFailed: 'workload_api.attestation_failed',
  callerGone: 'workload_api.caller_gone',
  rateLimited: 'workload_api.rate_limited',
  tooManyStreams: 'workload_api.too_many_streams',
  invalidToken: 'workload_api.invalid_token',
  connectionRejected: 'workload_api.connection_rejected',
  sourceError: 'workload_api.source_error',
  internalError: 'workload_api.internal_error',
} as const;

const NOOP_LOGGER: WorkloadApiLogger = { info() {}, warn() {}, error() {} };
const MAX_SOCKET_PATH_BYTES = 107;
const MAX_RATE_BUCKETS = 4096;

type StreamMethod = 'FetchX509SVID' | 'FetchX509Bundles' | 'FetchJWTBundles';
type Method = StreamMethod | 'FetchJWTSVID' | 'ValidateJWTSVID' | 'FetchWITSVID' | 'FetchWITBundles';

function endpointError(code: WorkloadEndpointErrorCode, message: string, cause?: unknown): WorkloadEndpointError {
  return new WorkloadEndpointError(code, message, cause === undefined ? undefined : { cause });
}

/** Workload Endpoint 5: exactly one `workload.spiffe.io` value, exactly "true". */
export function hasSecurityHeader(md: grpc.Metadata): boolean {
  const v = md.get(WORKLOAD_API_HEADER);
  return v.length === 1 && v[0] === WORKLOAD_API_HEADER_VALUE;
}

function checkLimits(l: WorkloadApiLimits): void {
  const problems: string[] = [];
  for (const [k, v] of Object.entries(l)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) problems.push(`${k} must be a positive number`);
  }
  if (problems.length > 0) throw endpointError('workload-endpoint/bad-config', `invalid Workload API limits: ${problems.join('; ')}`);
}

function errnoOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

function codeOf(e: unknown): string {
  return e instanceof EdgewardError ? String(e.code) : (errnoOf(e) ?? 'unknown');
}

function trustDomainIdOf(spiffeId: string): string {
  return SpiffeId.parse(spiffeId).trustDomain.idString;
}

/** Bundle map keys are canonical trust domain IDs `spiffe://<td>` (Workload API 5.2, 6). */
function checkTdKey(key: string): string {
  let td: TrustDomain | undefined;
  try {
    td = TrustDomain.parse(key);
  } catch {
    td = undefined;
  }
  if (td === undefined || td.idString !== key) {
    throw new WorkloadEndpointError('workload-endpoint/source-failed', 'identity source returned a bundle key that is not a trust domain ID', {
      detail: { key: String(key).slice(0, 64) },
    });
  }
  return key;
}

function concat(parts: readonly Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Is something already accepting connections on this Unix socket? */
function socketInUse(path: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    const done = (v: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(true), timeoutMs); // a full backlog means someone owns it
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export function createWorkloadApiServer(opts: WorkloadApiServerOptions): WorkloadApiServer {
  const source = opts.source;
  const log = opts.logger ?? NOOP_LOGGER;
  const limits: WorkloadApiLimits = { ...DEFAULT_WORKLOAD_API_LIMITS, ...opts.limits };
  checkLimits(limits);
  const now = opts.now ?? ((): number => performance.now());
  const socketPath = opts.socketPath;
  const registry = new UnixPeerRegistry(opts.peerCredentials);

  type ActiveStream = { end(err: unknown): void };
  const streams = new Set<ActiveStream>();
  const streamsByPid = new Map<number, number>();
  const buckets = new Map<number, { tokens: number; at: number }>();
  const sockets = new Set<net.Socket>();
  let state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  let startPromise: Promise<void> | undefined;
  let closePromise: Promise<void> | undefined;
  let grpcServer: grpc.Server | undefined;
  let injector: ReturnType<grpc.Server['createConnectionInjector']> | undefined;
  let netServer: net.Server | undefined;
  let detach: (() => void) | undefined;
  let socketId: { dev: number; ino: number } | undefined;

  // ---- logging -------------------------------------------------------------------------------------

  const peerFields = (peer: UnixPeer | undefined): Record<string, unknown> =>
    peer === undefined ? {} : { pid: peer.cred.pid, uid: peer.cred.uid, gid: peer.cred.gid };

  const emit = (level: keyof WorkloadApiLogger, event: string, fields: Record<string, unknown>, msg: string): void => {
    try {
      log[level]({ event, ...fields }, msg);
    } catch {
      // a failing logger must not break a call
    }
  };

  /** Log the outcome of a denied or failed call (security events), return the status to send. */
  const report = (err: unknown, method: Method, peer: UnixPeer | undefined): grpc.StatusObject => {
    const status = grpcStatusOf(err);
    const code = codeOf(err);
    const cause = err instanceof Error ? err.cause : undefined;
    const fields: Record<string, unknown> = { method, ...peerFields(peer), code };
    if (cause !== undefined) fields['cause_code'] = codeOf(cause);
    switch (code) {
      case 'workload-endpoint/header-missing':
        emit('warn', WORKLOAD_API_EVENTS.headerMissing, fields, 'security header missing from request');
        break;
      case 'workload-endpoint/no-identity':
        emit('warn', WORKLOAD_API_EVENTS.noIdentity, fields, 'no identity issued');
        break;
      case 'workload-endpoint/not-entitled':
      case 'workload-api/permission-denied':
        emit('warn', WORKLOAD_API_EVENTS.notEntitled, fields, 'caller is not entitled to the requested SPIFFE ID');
        break;
      case 'workload-endpoint/attestation-failed':
        emit('warn', WORKLOAD_API_EVENTS.attestationFailed, fields, 'workload attestation failed');
        break;
      case 'workload-endpoint/caller-gone':
        emit('warn', WORKLOAD_API_EVENTS.callerGone, fields, 'caller process is gone');
        break;
      case 'workload-endpoint/rate-limited':
        emit('warn', WORKLOAD_API_EVENTS.rateLimited, fields, 'rate limit exceeded');
        break;
      case 'workload-endpoint/too-many-streams':
        emit('warn', WORKLOAD_API_EVENTS.tooManyStreams, fields, 'too many open streams');
        break;
      case 'workload-endpoint/invalid-token':
        emit('info', WORKLOAD_API_EVENTS.invalidToken, fields, 'JWT-SVID validation failed');
        break;
      case 'workload-endpoint/mint-failed':
      case 'workload-endpoint/source-failed':
      case 'workload-endpoint/bundle-missing':
        emit('error', WORKLOAD_API_EVENTS.sourceError, fields, 'identity source failed');
        break;
      default:
        if (!isMappedError(err)) emit('error', WORKLOAD_API_EVENTS.internalError, fields, 'internal error');
    }
    return { code: status.code, details: status.details, metadata: new grpc.Metadata() };
  };

  // ---- caller identity -----------------------------------------------------------------------------

  /** The kernel-verified peer of a call; resolve synchronously at the start of a handler. */
  const peerOf = (call: { getPeer(): string }): UnixPeer => {
    try {
      return registry.peerOf(call);
    } catch (e) {
      throw endpointError('workload-endpoint/attestation-failed', 'call has no kernel-verified peer', e);
    }
  };

  /** False when the watched process exited or was replaced (PID reuse); errors count as gone. */
  const alive = (peer: UnixPeer): boolean => {
    if (peer.watch === undefined) return true;
    try {
      return peer.watch.isAlive();
    } catch {
      return false;
    }
  };

  const attest = async (peer: UnixPeer): Promise<AttestedCaller> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let caller: AttestedCaller;
    try {
      caller = await Promise.race([
        source.attest(peer),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(endpointError('workload-endpoint/attestation-failed', 'attestation timed out')), limits.attestTimeoutMs);
        }),
      ]);
    } catch (e) {
      throw endpointError('workload-endpoint/attestation-failed', 'workload attestation failed', e);
    } finally {
      clearTimeout(timer);
    }
    // Never serve a caller whose process is gone by now (the source does the PID-reuse check after
    // reading the evidence; this re-check costs one read of the pinned /proc/<pid>/stat).
    if (caller.peer !== peer || !alive(peer)) {
      throw endpointError('workload-endpoint/attestation-failed', 'caller exited during attestation', new PeerCredError('peercred/proc-gone', 'process gone'));
    }
    return caller;
  };

  const svidsOf = (caller: AttestedCaller): readonly X509SvidView[] => {
    let svids: readonly X509SvidView[];
    try {
      svids = source.x509Svids(caller);
    } catch (e) {
      throw isMappedError(e) ? e : endpointError('workload-endpoint/source-failed', 'x509Svids failed', e);
    }
    if (svids.length === 0) throw endpointError('workload-endpoint/no-identity', 'no identity issued');
    return svids;
  };

  // ---- limits --------------------------------------------------------------------------------------

  let openStreams = 0;
  const acquireStream = (peer: UnixPeer): (() => void) => {
    const pid = peer.cred.pid;
    const mine = streamsByPid.get(pid) ?? 0;
    if (openStreams >= limits.maxStreams || mine >= limits.maxStreamsPerCaller) {
      throw endpointError('workload-endpoint/too-many-streams', 'too many open streams');
    }
    openStreams++;
    streamsByPid.set(pid, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      openStreams--;
      const left = (streamsByPid.get(pid) ?? 1) - 1;
      if (left <= 0) streamsByPid.delete(pid);
      else streamsByPid.set(pid, left);
    };
  };

  const takeJwtToken = (peer: UnixPeer): void => {
    const pid = peer.cred.pid;
    const t = now();
    const burst = limits.jwtSvidBurst;
    let b = buckets.get(pid);
    if (b === undefined) {
      if (buckets.size >= MAX_RATE_BUCKETS) {
        // Forget callers whose buckets have refilled; if that is not enough, the oldest ones.
        for (const [k, v] of buckets) if (v.tokens + ((t - v.at) * limits.jwtSvidRatePerSecond) / 1000 >= burst) buckets.delete(k);
        for (const k of buckets.keys()) {
          if (buckets.size < MAX_RATE_BUCKETS) break;
          buckets.delete(k);
        }
      }
      b = { tokens: burst, at: t };
      buckets.set(pid, b);
    }
    b.tokens = Math.min(burst, b.tokens + (Math.max(0, t - b.at) * limits.jwtSvidRatePerSecond) / 1000);
    b.at = t;
    if (b.tokens < 1) throw endpointError('workload-endpoint/rate-limited', 'rate limit exceeded');
    b.tokens -= 1;
  };

  // ---- messages ------------------------------------------------------------------------------------

  const x509State = (caller: AttestedCaller): { message: X509SVIDResponse; key: string } => {
    const svids = svidsOf(caller);
    const h = createHash('sha256');
    const hints = new Set<string>();
    const out: X509SVIDResponse = { svids: [], crl: [], federated_bundles: {} };
    for (const s of svids) {
      if (s.chainDer.length === 0 || s.keyPkcs8.length === 0 || s.bundleDer.length === 0) {
        throw endpointError('workload-endpoint/source-failed', `incomplete X509-SVID for ${s.spiffeId.slice(0, 256)}`);
      }
      // Workload API 5.2: a hint, if set, MUST be unique within one response; a repeat is dropped.
      let hint = s.hint;
      if (hint !== '' && hints.has(hint)) hint = '';
      if (hint !== '') hints.add(hint);
      const bundle = concat(s.bundleDer);
      out.svids.push({ spiffe_id: s.spiffeId, x509_svid: concat(s.chainDer), x509_svid_key: s.keyPkcs8, bundle, hint });
      h.update(`${s.spiffeId}\n${s.serialHex}\n${hint}\n`).update(createHash('sha256').update(bundle).digest());
    }
    let federated: ReadonlyMap<string, readonly Buffer[]> | undefined;
    try {
      federated = source.x509FederatedBundles?.(caller);
    } catch (e) {
      throw endpointError('workload-endpoint/source-failed', 'x509FederatedBundles failed', e);
    }
    for (const [td, certs] of [...(federated ?? new Map<string, readonly Buffer[]>())].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const der = concat(certs);
      out.federated_bundles[checkTdKey(td)] = der;
      h.update(`fed\n${td}\n`).update(createHash('sha256').update(der).digest());
    }
    return { message: out, key: h.digest('hex') };
  };

  /** Bundle streams: identity required (checklist 7), own trust domains present (Workload API 6). */
  const bundleState = <V>(caller: AttestedCaller, map: ReadonlyMap<string, V>, toBytes: (v: V) => Buffer): { bundles: Record<string, Buffer>; key: string } => {
    const svids = svidsOf(caller);
    for (const s of svids) {
      let td: string;
      try {
        td = trustDomainIdOf(s.spiffeId);
      } catch (e) {
        throw endpointError('workload-endpoint/source-failed', 'source returned an invalid SPIFFE ID', e);
      }
      if (!map.has(td)) throw endpointError('workload-endpoint/bundle-missing', `no bundle for own trust domain ${td.slice(0, 270)}`);
    }
    const h = createHash('sha256');
    const bundles: Record<string, Buffer> = {};
    for (const [td, v] of [...map].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const bytes = toBytes(v);
      bundles[checkTdKey(td)] = bytes;
      h.update(`${td}\n`).update(createHash('sha256').update(bytes).digest());
    }
    return { bundles, key: h.digest('hex') };
  };

  const x509BundlesState = (caller: AttestedCaller): { message: X509BundlesResponse; key: string } => {
    let map: ReadonlyMap<string, readonly Buffer[]>;
    try {
      map = source.x509Bundles();
    } catch (e) {
      throw endpointError('workload-endpoint/source-failed', 'x509Bundles failed', e);
    }
    const { bundles, key } = bundleState(caller, map, concat);
    return { message: { crl: [], bundles }, key };
  };

  const jwtBundlesState = (caller: AttestedCaller): { message: JWTBundlesResponse; key: string } => {
    let map: ReadonlyMap<string, Buffer>;
    try {
      map = source.jwtBundles();
    } catch (e) {
      throw endpointError('workload-endpoint/source-failed', 'jwtBundles failed', e);
    }
    const { bundles, key } = bundleState(caller, map, (b) => b);
    return { message: { bundles }, key };
  };

  // ---- handlers ------------------------------------------------------------------------------------

  /**
   * One server stream: attest once, send the first state at once, then the new state after each change
   * that alters it; end with the mapped status when the caller loses its identity or the source fails.
   */
  const serveStream = <M>(
    call: grpc.ServerWritableStream<unknown, M>,
    method: StreamMethod,
    build: (caller: AttestedCaller) => { message: M; key: string },
  ): void => {
    let peer: UnixPeer | undefined;
    let ended = false;
    let release: (() => void) | undefined;
    let unsubscribe: (() => void) | undefined;
    let scheduled = false;
    let awaitingDrain = false;
    let lastKey: string | undefined;
    let caller: AttestedCaller | undefined;
    const entry: ActiveStream = { end: (err) => finish(err) };

    const cleanup = (): void => {
      unsubscribe?.();
      unsubscribe = undefined;
      release?.();
      release = undefined;
      streams.delete(entry);
    };
    const finish = (err: unknown): void => {
      if (ended) return;
      ended = true;
      cleanup();
      const st = report(err, method, peer);
      call.emit('error', st);
    };
    call.once('cancelled', () => {
      ended = true;
      cleanup();
    });
    call.once('close', () => {
      ended = true;
      cleanup();
    });

    const send = (next: { message: M; key: string }): void => {
      lastKey = next.key;
      if (!call.write(next.message)) {
        // Backpressure: keep no queue; after 'drain' the then-current state is sent if it differs.
        awaitingDrain = true;
        call.once('drain', () => {
          awaitingDrain = false;
          flush();
        });
      }
    };
    const flush = (): void => {
      if (ended || awaitingDrain || caller === undefined || peer === undefined) return;
      if (!alive(peer)) {
        finish(endpointError('workload-endpoint/caller-gone', 'caller process exited or was replaced'));
        return;
      }
      let next: { message: M; key: string };
      try {
        next = build(caller);
      } catch (e) {
        finish(e);
        return;
      }
      if (next.key !== lastKey) send(next);
    };
    const schedule = (): void => {
      if (scheduled || ended) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        flush();
      });
    };

    try {
      if (state !== 'running') throw endpointError('workload-endpoint/shutting-down', 'server shutting down');
      if (!hasSecurityHeader(call.metadata)) throw endpointError('workload-endpoint/header-missing', 'security header missing from request');
      peer = peerOf(call);
      release = acquireStream(peer);
    } catch (e) {
      finish(e);
      return;
    }
    streams.add(entry);
    const p = peer;
    attest(p).then(
      (c) => {
        if (ended) return;
        caller = c;
        let first: { message: M; key: string };
        try {
          first = build(c); // no identity -> PermissionDenied, never an empty first message
        } catch (e) {
          finish(e);
          return;
        }
        send(first);
        unsubscribe = source.onChange(schedule);
      },
      (e: unknown) => finish(e),
    );
  };

  /** A unary call: resolve the peer synchronously, run `fn`, map errors. */
  const serveUnary = <Req, Res>(
    call: grpc.ServerUnaryCall<Req, Res>,
    callback: grpc.sendUnaryData<Res>,
    method: Method,
    fn: (peer: UnixPeer, req: Req) => Promise<Res>,
  ): void => {
    let peer: UnixPeer | undefined;
    let run: Promise<Res>;
    try {
      if (state !== 'running') throw endpointError('workload-endpoint/shutting-down', 'server shutting down');
      if (!hasSecurityHeader(call.metadata)) throw endpointError('workload-endpoint/header-missing', 'security header missing from request');
      peer = peerOf(call);
      run = fn(peer, call.request);
    } catch (e) {
      run = Promise.reject(e);
    }
    run.then(
      (res) => callback(null, res),
      (e: unknown) => callback(report(e, method, peer)),
    );
  };

  const fetchJwtSvid = async (peer: UnixPeer, req: JWTSVIDRequest): Promise<JWTSVIDResponse> => {
    // SPIRE order: request fields first (InvalidArgument), then rate limit and attestation.
    const audience = req.audience;
    if (!Array.isArray(audience) || audience.length === 0) throw endpointError('workload-endpoint/missing-field', 'audience must be specified');
    if (audience.length > MAX_JWT_AUDIENCES) throw endpointError('workload-endpoint/bad-field', `at most ${MAX_JWT_AUDIENCES} audiences`);
    if (audience.some((a) => typeof a !== 'string' || a.length === 0 || a.length > MAX_JWT_AUDIENCE_LENGTH)) {
      throw endpointError('workload-endpoint/bad-field', `each audience must be a non-empty string of at most ${MAX_JWT_AUDIENCE_LENGTH} characters`);
    }
    let wanted: string | undefined;
    if (req.spiffe_id !== '') {
      let id: SpiffeId;
      try {
        id = SpiffeId.parse(req.spiffe_id);
      } catch (e) {
        if (e instanceof SpiffeIdError) throw endpointError('workload-endpoint/bad-field', `invalid requested SPIFFE ID: ${e.code}`, e);
        throw e;
      }
      if (id.isTrustDomainId) throw endpointError('workload-endpoint/bad-field', 'invalid requested SPIFFE ID: no path');
      wanted = id.toString();
    }
    takeJwtToken(peer);
    const caller = await attest(peer);
    let svids: readonly { spiffeId: string; token: string; hint: string }[];
    try {
      svids = await source.jwtSvids(caller, audience, wanted);
    } catch (e) {
      throw isMappedError(e) ? e : endpointError('workload-endpoint/mint-failed', 'could not mint JWT-SVID', e);
    }
    // Only what was asked for, whatever the source returned.
    const chosen = wanted === undefined ? svids : svids.filter((s) => s.spiffeId === wanted);
    if (chosen.length === 0) {
      throw wanted !== undefined
        ? endpointError('workload-endpoint/not-entitled', 'caller is not entitled to that SPIFFE ID')
        : endpointError('workload-endpoint/no-identity', 'no identity issued');
    }
    const hints = new Set<string>();
    return {
      svids: chosen.map((s) => {
        let hint = s.hint;
        if (hint !== '' && hints.has(hint)) hint = '';
        if (hint !== '') hints.add(hint);
        return { spiffe_id: s.spiffeId, svid: s.token, hint };
      }),
    };
  };

  const validateJwtSvid = async (peer: UnixPeer, req: ValidateJWTSVIDRequest): Promise<ValidateJWTSVIDResponse> => {
    if (req.audience === '') throw endpointError('workload-endpoint/missing-field', 'audience must be specified');
    if (req.svid === '') throw endpointError('workload-endpoint/missing-field', 'svid must be specified');
    if (req.svid.length > MAX_JWT_SVID_BYTES) throw endpointError('workload-endpoint/invalid-token', 'could not validate JWT-SVID: jwt-svid/too-large');
    const caller = await attest(peer);
    svidsOf(caller); // a caller with no identity may not use the validator (SPIRE, checklist 7)
    let r: { spiffeId: string; claims: Record<string, unknown> };
    try {
      r = source.validateJwtSvid(req.svid, req.audience);
    } catch (e) {
      if (e instanceof EdgewardError) {
        throw endpointError('workload-endpoint/invalid-token', `could not validate JWT-SVID: ${String(e.code)}`, e);
      }
      throw endpointError('workload-endpoint/source-failed', 'validateJwtSvid failed', e);
    }
    const claims: Record<string, unknown> = { ...r.claims };
    // SPIRE always returns aud as a list.
    if (typeof claims['aud'] === 'string') claims['aud'] = [claims['aud']];
    let struct;
    try {
      struct = toStruct(claims);
    } catch (e) {
      throw endpointError('workload-endpoint/invalid-token', 'could not validate JWT-SVID: claims not representable', e);
    }
    return { spiffe_id: r.spiffeId, claims: struct };
  };

  const unimplemented = (method: Method) => (call: grpc.ServerWritableStream<unknown, unknown>): void => {
    let peer: UnixPeer | undefined;
    try {
      peer = registry.lookup(call.getPeer());
    } catch {
      peer = undefined;
    }
    call.emit('error', report(endpointError('workload-endpoint/unimplemented', `${method} is not implemented (WIT-SVIDs are not supported)`), method, peer));
  };

  const handlers: grpc.UntypedServiceImplementation = {
    FetchX509SVID: (call: grpc.ServerWritableStream<unknown, X509SVIDResponse>) => serveStream(call, 'FetchX509SVID', x509State),
    FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, X509BundlesResponse>) => serveStream(call, 'FetchX509Bundles', x509BundlesState),
    FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, JWTBundlesResponse>) => serveStream(call, 'FetchJWTBundles', jwtBundlesState),
    FetchJWTSVID: (call: grpc.ServerUnaryCall<JWTSVIDRequest, JWTSVIDResponse>, cb: grpc.sendUnaryData<JWTSVIDResponse>) =>
      serveUnary(call, cb, 'FetchJWTSVID', fetchJwtSvid),
    ValidateJWTSVID: (call: grpc.ServerUnaryCall<ValidateJWTSVIDRequest, ValidateJWTSVIDResponse>, cb: grpc.sendUnaryData<ValidateJWTSVIDResponse>) =>
      serveUnary(call, cb, 'ValidateJWTSVID', validateJwtSvid),
    FetchWITSVID: unimplemented('FetchWITSVID'),
    FetchWITBundles: unimplemented('FetchWITBundles'),
  };

  /** Security-header middleware: runs on the request metadata, before any handler (or message). */
  const headerInterceptor: grpc.ServerInterceptor = (descriptor, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            if (descriptor.path.startsWith(WORKLOAD_API_PATH_PREFIX) && !hasSecurityHeader(metadata)) {
              let peer: UnixPeer | undefined;
              try {
                peer = registry.lookup(call.getPeer());
              } catch {
                peer = undefined;
              }
              const method = descriptor.path.slice(WORKLOAD_API_PATH_PREFIX.length) as Method;
              call.sendStatus(report(endpointError('workload-endpoint/header-missing', 'security header missing from request'), method, peer));
              return;
            }
            mdNext(metadata);
          },
        });
      },
    });

  // ---- lifecycle -----------------------------------------------------------------------------------

  const prepareSocketPath = async (): Promise<void> => {
    if (typeof socketPath !== 'string' || !isAbsolute(socketPath) || socketPath.includes('\0') || socketPath.endsWith('/')) {
      throw endpointError('workload-endpoint/listen-failed', 'socketPath must be an absolute file path');
    }
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw endpointError('workload-endpoint/listen-failed', `socketPath is longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
    }
    const dir = dirname(socketPath);
    try {
      await stat(dir);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw endpointError('workload-endpoint/listen-failed', `cannot stat ${dir}`, e);
      try {
        await mkdir(dir, { recursive: true, mode: 0o755 });
        await chmod(dir, 0o755); // independent of the umask: workloads must reach the socket
      } catch (e2) {
        throw endpointError('workload-endpoint/listen-failed', `cannot create ${dir}`, e2);
      }
    }
    let st;
    try {
      st = await lstat(socketPath);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      throw endpointError('workload-endpoint/listen-failed', `cannot stat ${socketPath}`, e);
    }
    if (!st.isSocket()) throw endpointError('workload-endpoint/socket-path-not-socket', `${socketPath} exists and is not a socket`);
    if (await socketInUse(socketPath)) throw endpointError('workload-endpoint/socket-in-use', `another server is listening on ${socketPath}`);
    try {
      await unlink(socketPath); // a stale socket of a previous run
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw endpointError('workload-endpoint/listen-failed', `cannot remove stale socket ${socketPath}`, e);
    }
  };

  const doStart = async (): Promise<void> => {
    // Fail closed at start rather than refusing every connection later: without kernel peer
    // credentials no caller can be attested.
    try {
      peerCredAddon();
    } catch (e) {
      throw endpointError('workload-endpoint/listen-failed', 'kernel peer credentials are unavailable (peercred addon)', e);
    }
    await prepareSocketPath();
    const server = new grpc.Server({
      'grpc.max_receive_message_length': limits.maxReceiveMessageBytes,
      'grpc.max_send_message_length': limits.maxSendMessageBytes,
      'grpc.max_concurrent_streams': limits.maxConcurrentCallsPerConnection,
      interceptors: [headerInterceptor],
    });
    server.addService(workloadApiServiceDefinition(), handlers);
    grpcServer = server;
    injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const ns = net.createServer();
    ns.maxConnections = limits.maxConnections;
    netServer = ns;
    detach = attachUnixPeerServer(ns, injector, registry, {
      onAccepted: (_peer, socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      },
      onRejected: (e) => emit('warn', WORKLOAD_API_EVENTS.connectionRejected, { code: e.code }, 'connection refused: no kernel credentials'),
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(endpointError('workload-endpoint/listen-failed', `cannot listen on ${socketPath}`, e));
      ns.once('error', onError);
      ns.listen(socketPath, () => {
        ns.off('error', onError);
        resolve();
      });
    });
    ns.on('error', (e) => emit('error', WORKLOAD_API_EVENTS.internalError, { code: codeOf(e) }, 'socket server error'));
    try {
      await chmod(socketPath, 0o777);
      const st = await lstat(socketPath);
      socketId = { dev: st.dev, ino: st.ino };
    } catch (e) {
      throw endpointError('workload-endpoint/listen-failed', `cannot set mode of ${socketPath}`, e);
    }
  };

  const shutdown = async (): Promise<void> => {
    detach?.();
    detach = undefined;
    const ns = netServer;
    const netClosed = ns === undefined || !ns.listening ? Promise.resolve() : new Promise<void>((resolve) => ns.close(() => resolve()));
    const ending = endpointError('workload-endpoint/shutting-down', 'server shutting down');
    for (const s of [...streams]) s.end(ending);
    const server = grpcServer;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, limits.shutdownGraceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      server.forceShutdown();
    }
    injector?.destroy();
    for (const s of sockets) s.destroy();
    await netClosed;
    // Remove the socket file only if it is still the one we created.
    if (socketId !== undefined) {
      try {
        const st = await lstat(socketPath);
        if (st.isSocket() && st.dev === socketId.dev && st.ino === socketId.ino) await unlink(socketPath);
      } catch {
        // already gone
      }
    }
  };

  return {
    socketPath,
    start(): Promise<void> {
      if (state !== 'new') return Promise.reject(endpointError('workload-endpoint/bad-state', `cannot start a server that is ${state}`));
      state = 'starting';
      startPromise = doStart().then(
        () => {
          if (state === 'starting') state = 'running';
        },
        async (e: unknown) => {
          state = 'closing';
          await shutdown().catch(() => {});
          state = 'closed';
          throw e instanceof WorkloadEndpointError ? e : endpointError('workload-endpoint/listen-failed', 'cannot start the Workload API server', e);
        },
      );
      return startPromise;
    },
    close(): Promise<void> {
      closePromise ??= (async () => {
        if (state === 'new') {
          state = 'closed';
          return;
        }
        if (state === 'starting') await startPromise?.catch(() => {});
        if (state !== 'running') return;
        state = 'closing';
        await shutdown();
        state = 'closed';
      })();
      return closePromise;
    },
    stats(): WorkloadApiServerStats {
      return { connections: sockets.size, streams: streams.size };
    },
  };
}
