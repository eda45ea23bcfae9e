/**
 * A SPIFFE Workload API client (for the CLI now, cloud/edge components later).
 *
 * - Every call carries `workload.spiffe.io: true` (Workload Endpoint 5); plaintext h2c, no TLS, no client
 *   credentials (Workload Endpoint 3).
 * - Responses are parsed strictly with the identity core before anything is handed out: each X509-SVID's
 *   `spiffe_id` must equal the leaf's single URI SAN and pass the SPIFFE leaf rules (X509-SVID 2, 4),
 *   `x509_svid` must be concatenated DER (no PEM), `x509_svid_key` unencrypted PKCS#8 DER whose public key
 *   is the leaf's (the equivalent of go-spiffe `x509svid.ParseRaw`), bundles must be CA certificates or
 *   JWK Sets, map keys canonical `spiffe://<td>`, hints unique, counts bounded. A response that breaks a
 *   rule is a `workload-api/bad-response` error, never a partial result.
 * - Watches reconnect with go-spiffe's linear backoff (1 s, 2 s, ... capped at 30 s; reset after a good
 *   message) and stop for good on InvalidArgument and Unimplemented, which the spec says not to retry
 *   (Workload Endpoint App. A). Timers are injectable for tests.
 * - X509-SVIDs are not validated against time or the bundle here (go-spiffe does not either); relying
 *   parties validate peers' SVIDs with `validateX509Svid`.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  BundleError,
  BundleSet,
  checkSvidLeaf,
  EdgewardError,
  JsonError,
  MAX_BUNDLE_MAP_TRUST_DOMAINS,
  MAX_CHAIN_CERTS,
  MAX_JWT_SVID_BYTES,
  parseCertificate,
  parseJwtBundleJwks,
  parseStrictJson,
  SpiffeId,
  splitDerCerts,
  TrustBundle,
  TrustDomain,
  type ParsedCertificate,
} from '../../identity/index.js';
import { endpointToString, grpcTarget, parseEndpoint, resolveEndpoint, type WorkloadEndpoint } from './endpoint.js';
import {
  fromStruct,
  workloadApiServiceDefinition,
  WORKLOAD_API_HEADER,
  WORKLOAD_API_HEADER_VALUE,
  type JsonValue,
  type JWTBundlesResponse,
  type JWTSVIDRequest,
  type JWTSVIDResponse,
  type ValidateJWTSVIDRequest,
  type ValidateJWTSVIDResponse,
  type X509BundlesResponse,
  type X509SVIDResponse,
} from './proto.js';

export const WORKLOAD_API_CLIENT_ERROR_CODES = [
  /** InvalidArgument: missing security header or a mandatory field (not retried). */
  'workload-api/invalid-argument',
  /** PermissionDenied: no identity issued for this caller (retried by watches). */
  'workload-api/permission-denied',
  /** Unavailable: server not ready, attestation failed, load shedding, connection failure (retried). */
  'workload-api/unavailable',
  /** Unimplemented: the server does not offer the RPC (not retried). */
  'workload-api/unimplemented',
  'workload-api/deadline-exceeded',
  'workload-api/cancelled',
  /** Any other gRPC status (code in `detail.grpc_code`). */
  'workload-api/rpc-failed',
  /** The server's response broke the Workload API or SVID rules (cause has the identity-core error). */
  'workload-api/bad-response',
  /** Invalid arguments from our caller (empty audience, bad SPIFFE ID) rejected before any call. */
  'workload-api/bad-request',
  /** The client was closed. */
  'workload-api/closed',
] as const;
export type WorkloadApiClientErrorCode = (typeof WORKLOAD_API_CLIENT_ERROR_CODES)[number];
export class WorkloadApiClientError extends EdgewardError<WorkloadApiClientErrorCode> {}

/** At most this many SVIDs in one response. */
export const MAX_SVIDS_PER_RESPONSE = 256;
/** At most this many CRLs in one response (kept as raw DER). */
export const MAX_CRLS_PER_RESPONSE = 64;
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** go-spiffe watch backoff: linear from 1 s, capped at 30 s. */
export const DEFAULT_BACKOFF_INITIAL_MS = 1000;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;

/** The timer port (real timers by default; tests drive a fake). */
export interface ClientTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: ClientTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface WorkloadApiClientOptions {
  timers?: ClientTimers;
  /** Watch reconnect backoff: delay = min(initialMs * attempt, maxMs). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Deadline of one-shot calls (fetch*, validate); default 30 s. */
  callTimeoutMs?: number;
  /** Largest response message accepted; default 4 MiB. */
  maxResponseBytes?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

export interface X509Svid {
  spiffeId: SpiffeId;
  /** Leaf first, then intermediates, as DER. */
  chainDer: Buffer[];
  certificates: ParsedCertificate[];
  leaf: ParsedCertificate;
  /** Unencrypted PKCS#8 DER as received. */
  keyPkcs8: Buffer;
  privateKey: KeyObject;
  hint: string;
}

export interface X509Context {
  /** In server order; the first is the default identity (Workload API 5.2). */
  svids: X509Svid[];
  defaultSvid: X509Svid;
  /** The SVIDs' own trust domain bundles and the federated bundles. */
  bundles: BundleSet;
  /** Federated trust domains only (a subset of `bundles`). */
  federatedTrustDomains: TrustDomain[];
  crl: Buffer[];
}

export interface JwtSvid {
  spiffeId: SpiffeId;
  token: string;
  hint: string;
  audience: string[];
  /** `exp` in epoch ms. */
  expiresAt: number;
  /** Claims as the token carries them (not verified: the token came from our own agent). */
  claims: Record<string, unknown>;
}

export interface ValidatedJwtSvidResult {
  spiffeId: SpiffeId;
  claims: { [key: string]: JsonValue };
}

export interface WatchErrorInfo {
  /** True when the watch will try again after `delayMs`; false when it stopped for good. */
  retrying: boolean;
  delayMs?: number;
}

export interface Watch {
  close(): void;
}

// ---------------------------------------------------------------------------------------------------
// errors

function badResponse(message: string, cause?: unknown): WorkloadApiClientError {
  return new WorkloadApiClientError('workload-api/bad-response', `bad Workload API response: ${message}`, cause === undefined ? undefined : { cause });
}

function asBadResponse(e: unknown): WorkloadApiClientError {
  if (e instanceof WorkloadApiClientError) return e;
  if (e instanceof EdgewardError) return badResponse(`${String(e.code)}: ${e.message}`, e);
  return badResponse('unparseable message', e);
}

/** Map a gRPC status to the typed client error. */
export function clientErrorFromStatus(method: string, status: { code: number; details?: string }): WorkloadApiClientError {
  const S = grpc.status;
  let code: WorkloadApiClientErrorCode;
  switch (status.code) {
    case S.INVALID_ARGUMENT:
      code = 'workload-api/invalid-argument';
      break;
    case S.PERMISSION_DENIED:
      code = 'workload-api/permission-denied';
      break;
    case S.UNAVAILABLE:
      code = 'workload-api/unavailable';
      break;
    case S.UNIMPLEMENTED:
      code = 'workload-api/unimplemented';
      break;
    case S.DEADLINE_EXCEEDED:
      code = 'workload-api/deadline-exceeded';
      break;
    case S.CANCELLED:
      code = 'workload-api/cancelled';
      break;
    default:
      code = 'workload-api/rpc-failed';
  }
  const details = (status.details ?? '').slice(0, 512);
  return new WorkloadApiClientError(code, `${method}: ${details || grpc.status[status.code] || 'error'}`, {
    detail: { grpc_code: status.code, method },
  });
}

/** Codes the spec says not to retry (Workload Endpoint App. A). */
function isTerminal(e: WorkloadApiClientError): boolean {
  return e.code === 'workload-api/invalid-argument' || e.code === 'workload-api/unimplemented' || e.code === 'workload-api/closed';
}

// ---------------------------------------------------------------------------------------------------
// strict response parsing (exported for tests and for other transports)

function parseTrustDomainKey(key: string, what: string): TrustDomain {
  let td: TrustDomain;
  try {
    td = TrustDomain.parse(key);
  } catch (e) {
    throw badResponse(`${what} key is not a trust domain ID`, e);
  }
  // Map keys are trust domain IDs `spiffe://<td>` in canonical form (Workload API 5.2, 6).
  if (td.idString !== key) throw badResponse(`${what} key must be a canonical spiffe://<trust domain> ID`);
  return td;
}

function parseCaCerts(der: Buffer, td: TrustDomain, what: string): TrustBundle {
  if (!Buffer.isBuffer(der) || der.length === 0) throw badResponse(`${what} is empty`);
  let certs: Buffer[];
  try {
    certs = splitDerCerts(der);
  } catch (e) {
    throw badResponse(`${what} is not concatenated DER certificates`, e);
  }
  try {
    return TrustBundle.create({ trustDomain: td, x509Authorities: certs });
  } catch (e) {
    throw badResponse(`${what} holds a certificate that is not a CA (X509-SVID 4.1)`, e);
  }
}

function samePublicKey(priv: KeyObject, leaf: ParsedCertificate): boolean {
  const a = createPublicKey(priv).export({ type: 'spki', format: 'der' });
  const b = leaf.publicKey().export({ type: 'spki', format: 'der' });
  return a.equals(b);
}

function parseSvid(m: X509SVIDResponse['svids'][number], index: number): { svid: X509Svid; bundle: TrustBundle } {
  const what = `svids[${index}]`;
  if (typeof m !== 'object' || m === null) throw badResponse(`${what} is not a message`);
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(m.spiffe_id);
  } catch (e) {
    throw badResponse(`${what}.spiffe_id is not a SPIFFE ID`, e);
  }
  if (!Buffer.isBuffer(m.x509_svid) || m.x509_svid.length === 0) throw badResponse(`${what}.x509_svid is empty`);
  let chainDer: Buffer[];
  try {
    chainDer = splitDerCerts(m.x509_svid);
  } catch (e) {
    throw badResponse(`${what}.x509_svid is not concatenated DER certificates`, e);
  }
  if (chainDer.length > MAX_CHAIN_CERTS) throw badResponse(`${what}.x509_svid has more than ${MAX_CHAIN_CERTS} certificates`);
  let certificates: ParsedCertificate[];
  try {
    certificates = chainDer.map((d) => parseCertificate(d));
  } catch (e) {
    throw badResponse(`${what}.x509_svid holds an invalid certificate`, e);
  }
  const leaf = certificates[0]!;
  let leafId: SpiffeId;
  try {
    leafId = checkSvidLeaf(leaf); // exactly one URI SAN, leaf profile (X509-SVID 2, 4.1, 4.3, 4.4)
  } catch (e) {
    throw badResponse(`${what}.x509_svid leaf is not an X509-SVID`, e);
  }
  if (!leafId.equals(id)) throw badResponse(`${what}.spiffe_id does not match the leaf certificate's URI SAN`);
  for (const [i, c] of certificates.slice(1).entries()) {
    if (!c.isCA) throw badResponse(`${what}.x509_svid certificate ${i + 1} is not a CA (intermediates only after the leaf)`);
  }
  if (!Buffer.isBuffer(m.x509_svid_key) || m.x509_svid_key.length === 0) throw badResponse(`${what}.x509_svid_key is empty`);
  let privateKey: KeyObject;
  try {
    // Unencrypted PKCS#8 DER only (Workload API 5.2): no PEM, no SEC1, no passphrase.
    privateKey = createPrivateKey({ key: m.x509_svid_key, format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw badResponse(`${what}.x509_svid_key is not an unencrypted PKCS#8 DER private key`, e);
  }
  let matches: boolean;
  try {
    matches = samePublicKey(privateKey, leaf);
  } catch (e) {
    throw badResponse(`${what}.x509_svid_key cannot be compared with the leaf key`, e);
  }
  if (!matches) throw badResponse(`${what}.x509_svid_key does not match the leaf certificate's public key`);
  const bundle = parseCaCerts(m.bundle, id.trustDomain, `${what}.bundle`);
  if (typeof m.hint !== 'string') throw badResponse(`${what}.hint is not a string`);
  return {
    svid: { spiffeId: id, chainDer, certificates, leaf, keyPkcs8: Buffer.from(m.x509_svid_key), privateKey, hint: m.hint },
    bundle,
  };
}

function parseCrls(crl: unknown): Buffer[] {
  if (crl === undefined || crl === null) return [];
  if (!Array.isArray(crl)) throw badResponse('crl is not a list');
  if (crl.length > MAX_CRLS_PER_RESPONSE) throw badResponse(`more than ${MAX_CRLS_PER_RESPONSE} CRLs`);
  return crl.map((c: unknown, i) => {
    if (!Buffer.isBuffer(c)) throw badResponse(`crl[${i}] is not bytes`);
    return Buffer.from(c);
  });
}

function mapEntries<V>(map: Record<string, V> | null | undefined, what: string): Array<[string, V]> {
  const entries = Object.entries(map ?? {});
  if (entries.length > MAX_BUNDLE_MAP_TRUST_DOMAINS) throw badResponse(`${what} has more than ${MAX_BUNDLE_MAP_TRUST_DOMAINS} trust domains`);
  return entries;
}

/** X509SVIDResponse -> X509Context (strict; throws WorkloadApiClientError 'workload-api/bad-response'). */
export function parseX509SvidResponse(r: X509SVIDResponse): X509Context {
  if (typeof r !== 'object' || r === null || !Array.isArray(r.svids)) throw badResponse('not an X509SVIDResponse');
  // Workload API 5.2: svids is required and non-empty.
  if (r.svids.length === 0) throw badResponse('svids is empty');
  if (r.svids.length > MAX_SVIDS_PER_RESPONSE) throw badResponse(`more than ${MAX_SVIDS_PER_RESPONSE} SVIDs`);
  const svids: X509Svid[] = [];
  const own = new Map<string, Buffer[]>();
  const hints = new Set<string>();
  r.svids.forEach((m, i) => {
    const { svid, bundle } = parseSvid(m, i);
    // Workload API 5.2: a hint, if set, MUST be unique within one response.
    if (svid.hint !== '') {
      if (hints.has(svid.hint)) throw badResponse(`svids[${i}].hint repeats another SVID's hint`);
      hints.add(svid.hint);
    }
    const td = svid.spiffeId.trustDomain.name;
    own.set(td, [...(own.get(td) ?? []), ...bundle.x509Authorities]);
    svids.push(svid);
  });
  const bundles: TrustBundle[] = [...own].map(([name, certs]) =>
    TrustBundle.create({ trustDomain: TrustDomain.parse(name), x509Authorities: certs }),
  );
  const federatedTrustDomains: TrustDomain[] = [];
  for (const [key, der] of mapEntries(r.federated_bundles, 'federated_bundles')) {
    const td = parseTrustDomainKey(key, 'federated_bundles');
    if (own.has(td.name)) throw badResponse(`federated_bundles repeats the SVIDs' own trust domain ${td.name}`);
    bundles.push(parseCaCerts(der, td, `federated_bundles[${key}]`));
    federatedTrustDomains.push(td);
  }
  return { svids, defaultSvid: svids[0]!, bundles: BundleSet.of(bundles), federatedTrustDomains, crl: parseCrls(r.crl) };
}

/** X509BundlesResponse -> BundleSet (strict). */
export function parseX509BundlesResponse(r: X509BundlesResponse): BundleSet {
  if (typeof r !== 'object' || r === null) throw badResponse('not an X509BundlesResponse');
  parseCrls(r.crl);
  const entries = mapEntries(r.bundles, 'bundles');
  // Workload API 6: the map contains at least the caller's own trust domain.
  if (entries.length === 0) throw badResponse('bundles is empty');
  return BundleSet.of(entries.map(([key, der]) => parseCaCerts(der, parseTrustDomainKey(key, 'bundles'), `bundles[${key}]`)));
}

/** JWTBundlesResponse -> BundleSet of JWT authorities (strict). */
export function parseJwtBundlesResponse(r: JWTBundlesResponse): BundleSet {
  if (typeof r !== 'object' || r === null) throw badResponse('not a JWTBundlesResponse');
  const entries = mapEntries(r.bundles, 'bundles');
  if (entries.length === 0) throw badResponse('bundles is empty');
  return BundleSet.of(
    entries.map(([key, jwks]) => {
      const td = parseTrustDomainKey(key, 'bundles');
      if (!Buffer.isBuffer(jwks)) throw badResponse(`bundles[${key}] is not bytes`);
      try {
        return parseJwtBundleJwks(td, jwks);
      } catch (e) {
        if (e instanceof BundleError) throw badResponse(`bundles[${key}] is not a valid JWK Set (${e.code})`, e);
        throw e;
      }
    }),
  );
}

function decodeSegment(seg: string, what: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]+$/.test(seg)) throw badResponse(`JWT-SVID ${what} is not base64url`);
  let v: unknown;
  try {
    v = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(seg, 'base64url')));
  } catch (e) {
    throw badResponse(`JWT-SVID ${what} is not JSON${e instanceof JsonError ? ` (${e.code})` : ''}`, e);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badResponse(`JWT-SVID ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * JWTSVIDResponse -> JwtSvid[] (strict about structure, like go-spiffe `jwtsvid.ParseInsecure`: the
 * signature is not checked, but `sub` must equal `spiffe_id`, `aud` must contain every requested
 * audience and `exp` must be present).
 */
export function parseJwtSvidResponse(r: JWTSVIDResponse, audience: readonly string[], spiffeId?: SpiffeId): JwtSvid[] {
  if (typeof r !== 'object' || r === null || !Array.isArray(r.svids)) throw badResponse('not a JWTSVIDResponse');
  if (r.svids.length === 0) throw badResponse('svids is empty');
  if (r.svids.length > MAX_SVIDS_PER_RESPONSE) throw badResponse(`more than ${MAX_SVIDS_PER_RESPONSE} SVIDs`);
  const hints = new Set<string>();
  return r.svids.map((m, i) => {
    const what = `svids[${i}]`;
    let id: SpiffeId;
    try {
      id = SpiffeId.parse(m.spiffe_id);
    } catch (e) {
      throw badResponse(`${what}.spiffe_id is not a SPIFFE ID`, e);
    }
    if (spiffeId !== undefined && !id.equals(spiffeId)) throw badResponse(`${what} is for ${id.toString()}, not the requested ID`);
    const token = m.svid;
    if (typeof token !== 'string' || token.length === 0) throw badResponse(`${what}.svid is empty`);
    if (token.length > MAX_JWT_SVID_BYTES) throw badResponse(`${what}.svid is longer than ${MAX_JWT_SVID_BYTES} bytes`);
    const parts = token.split('.');
    if (parts.length !== 3) throw badResponse(`${what}.svid is not a JWS compact serialization`);
    decodeSegment(parts[0]!, 'header');
    const claims = decodeSegment(parts[1]!, 'claims');
    if (claims['sub'] !== id.toString()) throw badResponse(`${what}: token sub does not equal spiffe_id`);
    const aud = claims['aud'];
    const audList = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : undefined;
    if (audList === undefined || audList.length === 0) throw badResponse(`${what}: token aud is missing`);
    for (const a of audience) if (!audList.includes(a)) throw badResponse(`${what}: token aud lacks a requested audience`);
    const exp = claims['exp'];
    if (typeof exp !== 'number' || !Number.isFinite(exp)) throw badResponse(`${what}: token exp is missing`);
    const hint = typeof m.hint === 'string' ? m.hint : '';
    if (hint !== '') {
      if (hints.has(hint)) throw badResponse(`${what}.hint repeats another SVID's hint`);
      hints.add(hint);
    }
    return { spiffeId: id, token, hint, audience: audList, expiresAt: exp * 1000, claims };
  });
}

/** ValidateJWTSVIDResponse -> result (strict about the SPIFFE ID). */
export function parseValidateJwtSvidResponse(r: ValidateJWTSVIDResponse): ValidatedJwtSvidResult {
  if (typeof r !== 'object' || r === null) throw badResponse('not a ValidateJWTSVIDResponse');
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(r.spiffe_id);
  } catch (e) {
    throw badResponse('spiffe_id is not a SPIFFE ID', e);
  }
  try {
    return { spiffeId: id, claims: fromStruct(r.claims) };
  } catch (e) {
    throw badResponse('claims are not a valid google.protobuf.Struct', e);
  }
}

// ---------------------------------------------------------------------------------------------------
// the client

type MethodDef = grpc.MethodDefinition<unknown, unknown>;

interface CancellableCall {
  cancel(): void;
}

export class WorkloadApiClient {
  readonly endpoint: WorkloadEndpoint;
  readonly #client: grpc.Client;
  readonly #methods: grpc.ServiceDefinition;
  readonly #timers: ClientTimers;
  readonly #backoffInitial: number;
  readonly #backoffMax: number;
  readonly #callTimeoutMs: number;
  readonly #calls = new Set<CancellableCall>();
  readonly #watches = new Set<Watch>();
  #closed = false;

  /** `endpoint`: a `unix:///path` / `tcp://IP:port` URI or a parsed endpoint. Throws EndpointError. */
  constructor(endpoint: string | WorkloadEndpoint, options: WorkloadApiClientOptions = {}) {
    this.endpoint = typeof endpoint === 'string' ? parseEndpoint(endpoint) : parseEndpoint(endpointToString(endpoint));
    this.#timers = options.timers ?? realTimers;
    this.#backoffInitial = options.backoff?.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
    this.#backoffMax = options.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    for (const [k, v] of [
      ['backoff.initialMs', this.#backoffInitial],
      ['backoff.maxMs', this.#backoffMax],
      ['callTimeoutMs', this.#callTimeoutMs],
    ] as const) {
      if (!Number.isFinite(v) || v <= 0) throw new WorkloadApiClientError('workload-api/bad-request', `${k} must be a positive number`);
    }
    this.#methods = workloadApiServiceDefinition();
    this.#client = new grpc.Client(grpcTarget(this.endpoint), grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
      ...options.channelOptions,
    });
  }

  /** A client for `explicit` if given, else for SPIFFE_ENDPOINT_SOCKET (Workload Endpoint 4). */
  static fromEnv(explicit?: string, options?: WorkloadApiClientOptions, env?: Readonly<Record<string, string | undefined>>): WorkloadApiClient {
    return new WorkloadApiClient(resolveEndpoint(explicit, env), options);
  }

  get closed(): boolean {
    return this.#closed;
  }

  #method(name: string): MethodDef {
    const m = this.#methods[name];
    if (m === undefined) throw new WorkloadApiClientError('workload-api/bad-request', `unknown method ${name}`);
    return m as MethodDef;
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(WORKLOAD_API_HEADER, WORKLOAD_API_HEADER_VALUE);
    return md;
  }

  #assertOpen(): void {
    if (this.#closed) throw new WorkloadApiClientError('workload-api/closed', 'the Workload API client is closed');
  }

  /** The first message of a server stream, then cancel it. */
  #first<Res, T>(name: string, parse: (r: Res) => T): Promise<T> {
    try {
      this.#assertOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const def = this.#method(name);
    return new Promise<T>((resolve, reject) => {
      const call = this.#client.makeServerStreamRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        {},
        this.#metadata(),
        { deadline: Date.now() + this.#callTimeoutMs },
      );
      this.#calls.add(call);
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        this.#calls.delete(call);
        return true;
      };
      call.on('data', (msg: unknown) => {
        if (!settle()) return;
        call.cancel();
        try {
          resolve(parse(msg as Res));
        } catch (e) {
          reject(asBadResponse(e));
        }
      });
      call.on('error', () => {}); // the outcome is taken from 'status'
      call.on('status', (st: grpc.StatusObject) => {
        if (!settle()) return;
        if (this.#closed) reject(new WorkloadApiClientError('workload-api/closed', 'the Workload API client is closed'));
        else if (st.code === grpc.status.OK) reject(badResponse(`${name} stream ended without a message`));
        else reject(clientErrorFromStatus(name, st));
      });
    });
  }

  #unary<Req, Res, T>(name: string, req: Req, parse: (r: Res) => T): Promise<T> {
    try {
      this.#assertOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const def = this.#method(name);
    return new Promise<T>((resolve, reject) => {
      const call = this.#client.makeUnaryRequest(
        def.path,
        def.requestSerialize as (r: Req) => Buffer,
        def.responseDeserialize as (b: Buffer) => Res,
        req,
        this.#metadata(),
        { deadline: Date.now() + this.#callTimeoutMs },
        (err: grpc.ServiceError | null, res?: Res) => {
          this.#calls.delete(call);
          if (err) {
            reject(this.#closed ? new WorkloadApiClientError('workload-api/closed', 'the Workload API client is closed') : clientErrorFromStatus(name, err));
            return;
          }
          try {
            resolve(parse(res as Res));
          } catch (e) {
            reject(asBadResponse(e));
          }
        },
      );
      this.#calls.add(call);
    });
  }

  /**
   * Keep a server stream open: `onUpdate` gets every parsed message (each a complete state); `onError`
   * gets every failure. Reconnects with linear backoff; stops on InvalidArgument/Unimplemented.
   */
  #watch<Res, T>(
    name: string,
    parse: (r: Res) => T,
    onUpdate: (v: T) => void,
    onError: (e: WorkloadApiClientError, info: WatchErrorInfo) => void,
  ): Watch {
    this.#assertOpen();
    const def = this.#method(name);
    let stopped = false;
    let attempt = 0;
    let timer: unknown;
    let call: grpc.ClientReadableStream<unknown> | undefined;
    const report = (e: WorkloadApiClientError, info: WatchErrorInfo): void => {
      try {
        onError(e, info);
      } catch {
        // a throwing callback must not break the watch
      }
    };
    const watch: Watch = {
      close: () => {
        if (stopped) return;
        stopped = true;
        this.#watches.delete(watch);
        if (timer !== undefined) this.#timers.clearTimeout(timer);
        timer = undefined;
        const c = call;
        call = undefined;
        if (c !== undefined) {
          this.#calls.delete(c);
          c.cancel();
        }
      },
    };
    const failed = (e: WorkloadApiClientError): void => {
      if (stopped) return;
      if (isTerminal(e)) {
        watch.close();
        report(e, { retrying: false });
        return;
      }
      attempt++;
      const delayMs = Math.min(this.#backoffInitial * attempt, this.#backoffMax);
      report(e, { retrying: true, delayMs });
      timer = this.#timers.setTimeout(() => {
        timer = undefined;
        connect();
      }, delayMs);
    };
    const connect = (): void => {
      if (stopped) return;
      if (this.#closed) {
        watch.close();
        return;
      }
      const c = this.#client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, this.#metadata(), {});
      call = c;
      this.#calls.add(c);
      c.on('data', (msg: unknown) => {
        if (stopped || call !== c) return;
        let v: T;
        try {
          v = parse(msg as Res);
        } catch (e) {
          // A bad message is reported and dropped; the previous state stays in force.
          report(asBadResponse(e), { retrying: true, delayMs: 0 });
          return;
        }
        attempt = 0; // go-spiffe resets the backoff after a good update
        try {
          onUpdate(v);
        } catch {
          // a throwing callback must not break the watch
        }
      });
      c.on('error', () => {}); // the outcome is taken from 'status'
      c.on('status', (st: grpc.StatusObject) => {
        if (call !== c) return;
        call = undefined;
        this.#calls.delete(c);
        if (stopped) return;
        failed(
          st.code === grpc.status.OK
            ? new WorkloadApiClientError('workload-api/unavailable', `${name}: stream closed by the server`, { detail: { grpc_code: 0, method: name } })
            : clientErrorFromStatus(name, st),
        );
      });
    };
    this.#watches.add(watch);
    connect();
    return watch;
  }

  /** The current X.509 context (first message of FetchX509SVID). */
  fetchX509Svid(): Promise<X509Context> {
    return this.#first<X509SVIDResponse, X509Context>('FetchX509SVID', parseX509SvidResponse);
  }

  /** Follow FetchX509SVID (each update is the complete state; absent SVIDs/bundles are withdrawn). */
  watchX509Svid(onUpdate: (ctx: X509Context) => void, onError: (e: WorkloadApiClientError, info: WatchErrorInfo) => void): Watch {
    return this.#watch<X509SVIDResponse, X509Context>('FetchX509SVID', parseX509SvidResponse, onUpdate, onError);
  }

  fetchX509Bundles(): Promise<BundleSet> {
    return this.#first<X509BundlesResponse, BundleSet>('FetchX509Bundles', parseX509BundlesResponse);
  }

  watchX509Bundles(onUpdate: (b: BundleSet) => void, onError: (e: WorkloadApiClientError, info: WatchErrorInfo) => void): Watch {
    return this.#watch<X509BundlesResponse, BundleSet>('FetchX509Bundles', parseX509BundlesResponse, onUpdate, onError);
  }

  /** JWT-SVIDs for `audience` (at least one), optionally only the one for `spiffeId`. */
  fetchJwtSvid(audience: readonly string[], spiffeId?: string | SpiffeId): Promise<JwtSvid[]> {
    if (!Array.isArray(audience) || audience.length === 0 || audience.some((a) => typeof a !== 'string' || a.length === 0)) {
      return Promise.reject(new WorkloadApiClientError('workload-api/bad-request', 'at least one non-empty audience is required (JWT-SVID 3.2)'));
    }
    let wanted: SpiffeId | undefined;
    if (spiffeId !== undefined) {
      try {
        wanted = typeof spiffeId === 'string' ? SpiffeId.parse(spiffeId) : spiffeId;
      } catch (e) {
        return Promise.reject(new WorkloadApiClientError('workload-api/bad-request', 'spiffeId is not a SPIFFE ID', { cause: e }));
      }
    }
    const req: JWTSVIDRequest = { audience: [...audience], spiffe_id: wanted?.toString() ?? '' };
    return this.#unary<JWTSVIDRequest, JWTSVIDResponse, JwtSvid[]>('FetchJWTSVID', req, (r) => parseJwtSvidResponse(r, audience, wanted));
  }

  fetchJwtBundles(): Promise<BundleSet> {
    return this.#first<JWTBundlesResponse, BundleSet>('FetchJWTBundles', parseJwtBundlesResponse);
  }

  watchJwtBundles(onUpdate: (b: BundleSet) => void, onError: (e: WorkloadApiClientError, info: WatchErrorInfo) => void): Watch {
    return this.#watch<JWTBundlesResponse, BundleSet>('FetchJWTBundles', parseJwtBundlesResponse, onUpdate, onError);
  }

  /** Ask the agent to validate `token` for `audience`. */
  validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvidResult> {
    if (typeof token !== 'string' || token.length === 0 || typeof audience !== 'string' || audience.length === 0) {
      return Promise.reject(new WorkloadApiClientError('workload-api/bad-request', 'token and audience are required'));
    }
    const req: ValidateJWTSVIDRequest = { audience, svid: token };
    return this.#unary<ValidateJWTSVIDRequest, ValidateJWTSVIDResponse, ValidatedJwtSvidResult>('ValidateJWTSVID', req, parseValidateJwtSvidResponse);
  }

  /** Stop all watches, cancel calls in flight and close the channel. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#watches]) w.close();
    for (const c of [...this.#calls]) c.cancel();
    this.#calls.clear();
    this.#client.close();
  }
}
