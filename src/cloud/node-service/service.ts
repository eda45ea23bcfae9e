/**
 * The cloud's node API logic (issue #4), behind the HTTPS server: node attestation sessions, node
 * authentication by X509-SVID, node SVID renewal, and workload SVIDs / JWT-SVIDs / entries for the
 * entries delegated to a node. Transport-free: the server hands in request bodies, the source address and
 * the client certificate chain, and gets back an HTTP status and a message to encode.
 *
 * SPIRE's model (reference spiffe.md §3): attestation is a challenge/response conversation driven by the
 * attestor plugins (src/attestation); the CSR contributes only its public key (the cloud picks the SPIFFE
 * ID, lifetime and extensions: KubeEdge copies them from the CSR, kubeedge.md §4); a renewed node SVID's
 * serial is pending until first used, the old one valid until then (§3 "Agent rotation"); a banned node
 * can neither attest, renew nor fetch anything (§3 "Ban/evict"); a node gets SVIDs only for entries
 * delegated to it (parent = node ID, or a node alias whose selectors it has).
 *
 * Every refusal is a typed error whose code and short message go on the wire (never a cause or a stack),
 * and a security event in the log `{ event: 'security.<what>', code, node?, source }`. Anything unexpected
 * becomes `500 internal` with a generic message and an error log line. `attest` and `handle` never throw.
 */
import { randomBytes } from 'node:crypto';
import {
  DEFAULT_ATTEST_RATE_LIMIT,
  findNodeAttestor,
  JoinTokenError,
  NodeAttestationError,
  nodeNameFromSpiffeId,
  NodeNameError,
  nodeSpiffeId,
  RateLimiter,
  type RateLimitOptions,
  selectorKey,
  TpmAttestationError,
  X509PopError,
  type NodeAttestationDone,
  type NodeAttestationMethod,
  type NodeAttestorPlugin,
  type NodeAttestorSession,
  type RegistrationEntry,
} from '../../attestation/index.js';
import {
  bundleToJson,
  CsrError,
  EdgewardError,
  validateX509Svid,
  verifyCsr,
  X509SvidError,
  type CaManager,
  type Clock,
  type IssuedCert,
  type SpiffeId,
  type TrustDomain,
  type X509BundleSource,
} from '../../identity/index.js';
import {
  decodeEdgeToCloud,
  MAX_NODE_API_ENTRIES,
  NodeApiError,
  nodeApiErrorFrom,
  type AttestBeginMessage,
  type AttestResponseMessage,
  type CloudToEdgeMessage,
  type EdgeToCloudMessage,
  type IssuedSvid,
  type JwtRequestMessage,
  type NodeApiErrorMessage,
  type NodeEntry,
  type SvidsRequestMessage,
} from '../../protocol/index.js';
import { CloudStoreError, type CloudStore } from '../store/index.js';
import { DEVICE_HTTP_STATUS, DeviceError, type DeviceIssuer } from '../devices/index.js';
import { NodeServiceError } from './errors.js';
import { rateLimitKey } from './source-key.js';

/** Attestation sessions live this long (contract: TTL 60 s). */
export const ATTEST_SESSION_TTL_MS = 60_000;
/** Most attestation sessions open at once (contract: 10 000); beyond that `node-api/busy` (503). */
export const MAX_ATTEST_SESSIONS = 10_000;
/** Random bytes of a session id (base64url: 22 characters). */
export const ATTEST_SESSION_ID_BYTES = 16;
/** Default node SVID lifetime (issue #4: 1 h). */
export const DEFAULT_NODE_SVID_TTL_MS = 3_600_000;

export interface NodeServiceLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface NodeServiceDeps {
  trustDomain: TrustDomain;
  store: CloudStore;
  /** The CA; its owner ticks and persists it. */
  ca: CaManager;
  clock: Clock;
  /** join_token always; x509pop/tpm when configured. */
  attestors: readonly NodeAttestorPlugin[];
  /** Node SVID lifetime (default 1 h); at most the CA's maxX509SvidTtlMs. */
  nodeSvidTtlMs: number;
  /** Cap (and default) for workload X509-SVID lifetimes; the CA's maximum caps it again. */
  maxWorkloadSvidTtlMs: number;
  /** Cap (and default) for JWT-SVID lifetimes; the CA's maximum caps it again. */
  maxJwtSvidTtlMs: number;
  logger: NodeServiceLogger;
  /** Per source address, attestation attempts (default: DEFAULT_ATTEST_RATE_LIMIT, 1/s burst 5, as SPIRE). */
  rateLimiter?: RateLimiter;
  /**
   * Per-node budget for requests that make the CA sign (renew, workload SVIDs, JWT-SVIDs; one token per
   * signature), so that one compromised node cannot keep the CA busy. Default: burst 256, 32 per second.
   */
  signingRateLimiter?: RateLimiter;
  /** Session ids (default crypto.randomBytes). */
  random?: (n: number) => Buffer;
  /**
   * Device X509-SVIDs (issue #6: `device.enroll`, `device.renew`; src/cloud/devices). Absent: those
   * requests are refused with `device/not-served`.
   */
  devices?: DeviceIssuer;
}

/** An HTTP status and the body to encode (`encodeNodeApiMessage`). */
export interface NodeReply {
  status: number;
  message: CloudToEdgeMessage;
}

export interface AuthenticatedNode {
  nodeName: string;
  spiffeId: SpiffeId;
  /** Serial of the client certificate (lower-case hex): the node's current or (now promoted) pending one. */
  serialHex: string;
}

export interface NodeService {
  /** POST /v1/attest. `source` = remote address. Never throws. */
  attest(body: Buffer, source: string): NodeReply;
  /**
   * Validate a client chain (leaf first, DER) as a node X509-SVID of the trust domain whose node exists,
   * is not banned and whose serial is current or pending (a pending one is promoted). Throws only
   * `NodeServiceError`: 'node-api/unauthenticated' (401) | 'node/unknown' (401) | 'node/banned' (403) |
   * 'internal' (500, message "internal error"); turn it into a reply with `nodeErrorReply`. Logs the refusal.
   */
  authenticate(chainDer: readonly Buffer[], source: string): AuthenticatedNode;
  /** POST /v1/node after `authenticate`. Never throws. */
  handle(body: Buffer, node: AuthenticatedNode, source: string): NodeReply;
  /** Drop expired attestation sessions. */
  sweep(now: number): void;
  readonly stats: { readonly sessions: number };
}

// ------------------------------------------------------------------------------------------ errors -> wire

/** Classes whose codes and messages are written for peers. Anything else becomes `internal`. */
const PEER_ERRORS = [NodeApiError, NodeServiceError, JoinTokenError, X509PopError, TpmAttestationError, NodeAttestationError, CsrError, DeviceError] as const;

const STATUS: Readonly<Record<string, number>> = {
  'node-api/too-large': 413,
  'node-api/unauthenticated': 401,
  'node/unknown': 401,
  'node/banned': 403,
  'node/credential-mismatch': 403,
  'node/entry-not-delegated': 403,
  'node/too-many-entries': 500,
  'node-api/unknown-session': 400,
  'node-api/busy': 503,
  'rate-limit/exceeded': 429,
  // SPIRE mode: not a malformed request, a service this cloud does not offer.
  'node-api/attestation-external': 403,
  'node-api/external-identity': 403,
};

function isPeerError(e: unknown): e is EdgewardError {
  if (!PEER_ERRORS.some((C) => e instanceof C)) return false;
  const code = (e as EdgewardError).code;
  // Configuration problems are the cloud's fault, not the caller's.
  return !code.endsWith('/config') && !code.endsWith('/bad-config');
}

/**
 * The HTTP status of a wire error code: the table above; `node-api/*` codec errors, `csr/*`, `*\/malformed`
 * and attestation protocol errors 400; other attestation failures (bad token, untrusted certificate, stale
 * nonce...) 403; `internal` 500.
 */
export function nodeApiHttpStatus(code: string): number {
  const s = STATUS[code] ?? DEVICE_HTTP_STATUS[code];
  if (s !== undefined) return s;
  if (code === 'internal') return 500;
  if (code.startsWith('node-api/') || code.startsWith('csr/') || code.endsWith('/malformed')) return 400;
  if (code === 'node-attestation/unsupported-method' || code === 'node-attestation/malformed-response' || code === 'node-attestation/bad-state') return 400;
  return 403;
}

/** The reply for a failure: a peer-facing typed error's code and message, or `500 internal`. */
export function nodeErrorReply(e: unknown): NodeReply {
  const message: NodeApiErrorMessage = isPeerError(e) ? nodeApiErrorFrom(e) : { v: 1, kind: 'error', code: 'internal', message: 'internal error' };
  return { status: nodeApiHttpStatus(message.code), message };
}

/** Per-node signing budget (see NodeServiceDeps.signingRateLimiter). */
export const DEFAULT_SIGNING_RATE_LIMIT: Readonly<RateLimitOptions> = Object.freeze({ capacity: 256, refillPerSecond: 32, maxKeys: 100_000 });

// ------------------------------------------------------------------------------------------ the service

interface Session {
  readonly source: string;
  readonly nodeName: string;
  readonly method: NodeAttestationMethod;
  readonly csr: Buffer;
  readonly attestor: NodeAttestorSession;
  readonly expiresAt: number;
}

/** Security event names by code (the `security.<what>` of the log line). */
export function eventFor(code: string, phase: 'attest' | 'authenticate' | 'request'): string {
  if (code === 'rate-limit/exceeded') return 'security.rate_limited';
  if (code === 'node-api/busy') return 'security.attestation_busy';
  if (code === 'node/banned') return 'security.node_banned';
  if (code === 'node/entry-not-delegated') return 'security.entry_not_delegated';
  if (code === 'node-api/unknown-session') return 'security.attestation_session_refused';
  if (code.startsWith('node-api/')) return phase === 'authenticate' ? 'security.authentication_failed' : 'security.malformed_request';
  if (phase === 'attest') return 'security.attestation_failed';
  if (phase === 'authenticate') return 'security.authentication_failed';
  return 'security.request_refused';
}

function jwtExpiry(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
  if (typeof payload.exp !== 'number' || !Number.isSafeInteger(payload.exp)) throw new Error('minted JWT-SVID has no exp');
  return payload.exp * 1000;
}

export function toNodeEntry(e: RegistrationEntry): NodeEntry {
  const n: NodeEntry = {
    id: e.id,
    spiffeId: e.spiffeId.toString(),
    parentId: e.parentId.toString(),
    selectors: e.selectors.map(selectorKey),
    revision: e.revision,
  };
  if (e.x509SvidTtlMs !== undefined) n.x509SvidTtlMs = e.x509SvidTtlMs;
  if (e.jwtSvidTtlMs !== undefined) n.jwtSvidTtlMs = e.jwtSvidTtlMs;
  if (e.dnsNames.length > 0) n.dnsNames = [...e.dnsNames];
  if (e.hint !== undefined) n.hint = e.hint;
  return n;
}

/** Exhaustiveness guard of a switch over the message kinds (a kind added to the protocol but not handled here). */
export function unhandledKind(m: never): NodeApiError {
  return new NodeApiError('node-api/unknown-kind', `unhandled kind ${String((m as { kind?: unknown }).kind).slice(0, 40)}`);
}

export type NodeApiPhase = 'attest' | 'authenticate' | 'request';

/**
 * The reply for a failed node-API call, logged: `internal` (with its cause) as `node_api.internal_error`,
 * every refusal as a security event (`eventFor` unless the caller maps codes itself) with `code`, `node`,
 * `source` and the error's detail.
 */
export function logRefusal(
  logger: NodeServiceLogger,
  e: unknown,
  phase: NodeApiPhase,
  source: string,
  node: string | undefined,
  o: { event?: (code: string, phase: NodeApiPhase) => string; fields?: Record<string, unknown> } = {},
): NodeReply {
  const reply = nodeErrorReply(e);
  const code = reply.message.kind === 'error' ? reply.message.code : 'internal';
  const who = node === undefined ? {} : { node };
  if (code === 'internal') {
    logger.error(
      { event: 'node_api.internal_error', code: e instanceof EdgewardError ? e.code : 'internal', err: e instanceof Error ? e.message : String(e), ...who, source },
      'node API request failed',
    );
    return reply;
  }
  const detail = e instanceof EdgewardError && e.detail !== undefined ? { detail: e.detail } : {};
  logger.warn({ event: (o.event ?? eventFor)(code, phase), code, ...who, source, ...o.fields, ...detail }, 'node API request refused');
  return reply;
}

/**
 * Validate a client chain (leaf first) as a node X509-SVID of `td` (X509-SVID 5) and name the node.
 * Throws `node-api/unauthenticated` for a missing or invalid chain or a non-node ID.
 */
export function validateNodeChain(
  chainDer: readonly Buffer[],
  bundles: Parameters<typeof validateX509Svid>[1],
  now: number,
  td: TrustDomain,
): { spiffeId: SpiffeId; name: string; serialHex: string; notAfter: number } {
  if (!Array.isArray(chainDer) || chainDer.length === 0) {
    throw new NodeServiceError('node-api/unauthenticated', 'a client certificate (node X509-SVID) is required');
  }
  try {
    const v = validateX509Svid(chainDer, bundles, now, { trustDomain: td });
    return { spiffeId: v.spiffeId, name: nodeNameFromSpiffeId(v.spiffeId, td), serialHex: v.leaf.serialHex, notAfter: v.leaf.notAfter };
  } catch (e) {
    if (e instanceof X509SvidError || e instanceof NodeNameError) {
      throw new NodeServiceError('node-api/unauthenticated', 'the client certificate is not a valid node X509-SVID of this trust domain', {
        cause: e,
        detail: { reason: e.code },
      });
    }
    throw e;
  }
}

/** `entries.result` with the entries delegated to `nodeName` (bounded: `node/too-many-entries`). */
export function delegatedEntriesReply(store: CloudStore, nodeName: string): NodeReply {
  const entries = store.entriesDelegatedTo(nodeName);
  if (entries.length > MAX_NODE_API_ENTRIES) {
    throw new NodeServiceError('node/too-many-entries', `more than ${MAX_NODE_API_ENTRIES} entries are delegated to this node`);
  }
  return { status: 200, message: { v: 1, kind: 'entries.result', entries: entries.map(toNodeEntry) } };
}

export function createNodeService(deps: NodeServiceDeps): NodeService {
  const { trustDomain: td, store, ca, clock, logger } = deps;
  const positive = (n: unknown): boolean => typeof n === 'number' && Number.isSafeInteger(n) && n >= 1000;
  const problems: string[] = [];
  if (!positive(deps.nodeSvidTtlMs) || deps.nodeSvidTtlMs > ca.maxX509SvidTtlMs) {
    problems.push(`nodeSvidTtlMs must be an integer from 1000 to the CA's maxX509SvidTtlMs (${ca.maxX509SvidTtlMs})`);
  }
  if (!positive(deps.maxWorkloadSvidTtlMs)) problems.push('maxWorkloadSvidTtlMs must be an integer >= 1000');
  if (!positive(deps.maxJwtSvidTtlMs)) problems.push('maxJwtSvidTtlMs must be an integer >= 1000');
  if (!ca.trustDomain.equals(td)) problems.push('the CA belongs to another trust domain');
  const methods = deps.attestors.map((a) => a.method);
  if (new Set(methods).size !== methods.length) problems.push('two attestors for one method');
  if (problems.length > 0) throw new NodeServiceError('node-service/bad-config', problems.join('; '));

  const limiter = deps.rateLimiter ?? new RateLimiter(DEFAULT_ATTEST_RATE_LIMIT);
  const signingLimiter = deps.signingRateLimiter ?? new RateLimiter(DEFAULT_SIGNING_RATE_LIMIT);
  const random = deps.random ?? randomBytes;
  const workloadTtlCap = Math.min(deps.maxWorkloadSvidTtlMs, ca.maxX509SvidTtlMs);
  const jwtTtlCap = Math.min(deps.maxJwtSvidTtlMs, ca.maxJwtSvidTtlMs);
  const sessions = new Map<string, Session>();

  const bundleSource: X509BundleSource = {
    x509AuthoritiesFor: (t) => (t.equals(td) ? ca.x509Authorities() : undefined),
  };
  // ca.bundle() is one object per CA sequence and bundleToJson memoises per bundle object.
  const bundleJson = (): string => bundleToJson(ca.bundle());

  /** Log a refusal (or an internal error) and build its reply. */
  const refuse = (e: unknown, phase: NodeApiPhase, source: string, node?: string): NodeReply => logRefusal(logger, e, phase, source, node);


  /** Map store refusals that mean something to the node; anything else stays internal. */
  const storeError = (e: unknown, name: string): unknown => {
    if (e instanceof CloudStoreError) {
      if (e.code === 'cloud-store/node-banned') return new NodeServiceError('node/banned', `node ${name} is banned`);
      if (e.code === 'cloud-store/fingerprint-mismatch') {
        return new NodeServiceError('node/credential-mismatch', `node ${name} is attested with another credential; an operator must evict it first`);
      }
    }
    return e;
  };

  const issue = (spiffeId: SpiffeId, csr: Buffer, ttlMs: number, dnsNames: readonly string[], now: number): IssuedCert =>
    // The CSR contributes its public key only (mintX509SvidFromCsr): ID, lifetime and extensions are ours.
    ca.issueX509SvidFromCsr({ spiffeId, csr, ttlMs, dnsNames, now });

  const chainOf = (leaf: IssuedCert, now: number): Buffer[] => [leaf.der, ...ca.intermediates(now)];

  const sweep = (now: number): void => {
    for (const [id, s] of sessions) if (s.expiresAt <= now) sessions.delete(id);
  };

  // ---- attestation

  const finish = (done: NodeAttestationDone, csr: Buffer, source: string, now: number): NodeReply => {
    const name = done.nodeName;
    const extras = done.method === 'x509pop' ? [`x509pop:subject:cn:${name}`] : done.method === 'tpm' ? [`tpm:ek-hash:${done.fingerprint}`] : [];
    const leaf = issue(nodeSpiffeId(td, name), csr, deps.nodeSvidTtlMs, [], now);
    try {
      store.upsertAttestedNode({
        name,
        method: done.method,
        fingerprint: done.fingerprint,
        serialHex: leaf.serialHex,
        notAfter: leaf.notAfter,
        reattestable: done.reattestable,
        selectors: extras,
      });
    } catch (e) {
      throw storeError(e, name);
    }
    logger.info({ event: 'node.attested', node: name, method: done.method, serial: leaf.serialHex, source }, 'node attested');
    return {
      status: 200,
      message: { v: 1, kind: 'attest.result', svidChainDer: chainOf(leaf, now), bundle: bundleJson(), reattestable: done.reattestable },
    };
  };

  const openSession = (s: Omit<Session, 'expiresAt'> & { expiresAt?: number }, challenge: Buffer, now: number): NodeReply => {
    if (sessions.size >= MAX_ATTEST_SESSIONS) sweep(now);
    if (sessions.size >= MAX_ATTEST_SESSIONS) throw new NodeServiceError('node-api/busy', 'too many attestations in progress; retry later');
    let id: string;
    do {
      const bytes = random(ATTEST_SESSION_ID_BYTES);
      if (!Buffer.isBuffer(bytes) || bytes.length !== ATTEST_SESSION_ID_BYTES) throw new Error('random source returned the wrong number of bytes');
      id = bytes.toString('base64url');
    } while (sessions.has(id));
    sessions.set(id, { ...s, expiresAt: s.expiresAt ?? now + ATTEST_SESSION_TTL_MS });
    return { status: 200, message: { v: 1, kind: 'attest.challenge', sessionId: id, challenge } };
  };

  const begin = (m: AttestBeginMessage, source: string, now: number, ctx: { node?: string }): NodeReply => {
    ctx.node = m.nodeName;
    const plugin = findNodeAttestor(deps.attestors, m.method);
    // Reference §3 "Ban/evict": a banned node cannot attest (checked before a join token is spent).
    if (store.getNode(m.nodeName)?.banned === true) throw new NodeServiceError('node/banned', `node ${m.nodeName} is banned`);
    // A bad CSR is refused before the attestor runs (and before it burns a join token).
    verifyCsr(m.csr);
    const attestor = plugin.begin(m.payload, { nodeName: m.nodeName, now });
    const step = attestor.step(undefined, now);
    if (step.kind === 'done') return finish(step, m.csr, source, now);
    return openSession({ source, nodeName: m.nodeName, method: plugin.method, csr: m.csr, attestor }, step.challenge, now);
  };

  const respond = (m: AttestResponseMessage, source: string, now: number, ctx: { node?: string }): NodeReply => {
    const s = sessions.get(m.sessionId);
    if (s !== undefined) ctx.node = s.nodeName;
    // Single use: whatever happens next, this id is spent.
    if (s !== undefined) sessions.delete(m.sessionId);
    const reason = s === undefined ? 'unknown' : s.expiresAt <= now ? 'expired' : s.source !== source ? 'wrong-source' : undefined;
    if (s === undefined || reason !== undefined) {
      throw new NodeServiceError('node-api/unknown-session', 'unknown or expired attestation session; start again', {
        detail: { reason: reason ?? 'unknown' },
      });
    }
    const step = s.attestor.step(m.response, now);
    if (step.kind === 'done') return finish(step, s.csr, source, now);
    return openSession({ ...s }, step.challenge, now); // next round: same deadline
  };

  // ---- authenticated requests

  const delegated = (node: AuthenticatedNode): ReadonlyMap<string, RegistrationEntry> =>
    new Map(store.entriesDelegatedTo(node.nodeName).map((e) => [e.id, e]));

  const notDelegated = (entryId: string): NodeServiceError =>
    new NodeServiceError('node/entry-not-delegated', `entry ${entryId} is not delegated to this node`, { detail: { entry: entryId } });

  const svids = (m: SvidsRequestMessage, node: AuthenticatedNode, now: number): NodeReply => {
    const entries = delegated(node);
    // All or nothing: one entry that is not the node's refuses the whole request (contract).
    for (const c of m.csrs) if (!entries.has(c.entryId)) throw notDelegated(c.entryId);
    const out: IssuedSvid[] = m.csrs.map((c) => {
      const e = entries.get(c.entryId)!;
      const ttl = Math.min(e.x509SvidTtlMs ?? workloadTtlCap, workloadTtlCap);
      return { entryId: c.entryId, svidChainDer: chainOf(issue(e.spiffeId, c.csr, ttl, e.dnsNames, now), now) };
    });
    return { status: 200, message: { v: 1, kind: 'svids.result', svids: out } };
  };

  const jwt = (m: JwtRequestMessage, node: AuthenticatedNode, now: number): NodeReply => {
    const e = delegated(node).get(m.entryId);
    if (e === undefined) throw notDelegated(m.entryId);
    const cap = Math.min(e.jwtSvidTtlMs ?? jwtTtlCap, jwtTtlCap);
    const ttlMs = Math.min(m.ttlMs ?? cap, cap);
    const token = ca.mintJwtSvid({ spiffeId: e.spiffeId, audience: m.audience, ttlMs, now });
    return { status: 200, message: { v: 1, kind: 'jwt.result', token, expiresAt: jwtExpiry(token) } };
  };

  /**
   * `device.enroll` / `device.renew` (issue #6). A refusal is logged as `security.device_enroll_refused
   * {device, node, code, reason}` (a token refusal also as `security.device_token_refused` by the issuer).
   */
  const device = (m: Extract<EdgeToCloudMessage, { kind: 'device.enroll' | 'device.renew' }>, node: AuthenticatedNode, now: number, source: string): NodeReply => {
    try {
      const issuer = deps.devices;
      if (issuer === undefined) throw new DeviceError('device/not-served', 'this cloud does not issue device SVIDs');
      const message = m.kind === 'device.enroll' ? issuer.enroll(m, node.nodeName, now) : issuer.renew(m, node.nodeName, now);
      return { status: 200, message };
    } catch (e) {
      const reason = e instanceof EdgewardError ? e.detail?.['reason'] : undefined;
      return logRefusal(logger, e, 'request', source, node.nodeName, {
        event: () => 'security.device_enroll_refused',
        fields: { kind: m.kind, ...(m.device === undefined ? {} : { device: m.device }), ...(reason === undefined ? {} : { reason }) },
      });
    }
  };

  const dispatch = (m: EdgeToCloudMessage, node: AuthenticatedNode, now: number, source: string): NodeReply => {
    switch (m.kind) {
      case 'renew.request': {
        const leaf = issue(node.spiffeId, m.csr, deps.nodeSvidTtlMs, [], now);
        try {
          store.setPendingSerial(node.nodeName, leaf.serialHex, leaf.notAfter);
        } catch (e) {
          throw storeError(e, node.nodeName);
        }
        logger.info({ event: 'node.renewed', node: node.nodeName, serial: leaf.serialHex }, 'node SVID renewed');
        return { status: 200, message: { v: 1, kind: 'renew.result', svidChainDer: chainOf(leaf, now), bundle: bundleJson() } };
      }
      case 'svids.request':
        return svids(m, node, now);
      case 'entries.request':
        return delegatedEntriesReply(store, node.nodeName);
      case 'jwt.request':
        return jwt(m, node, now);
      case 'device.enroll':
      case 'device.renew':
        return device(m, node, now, source);
      case 'attest.begin':
      case 'attest.response':
      case 'error':
        throw new NodeApiError('node-api/unexpected-kind', `${m.kind} is not accepted on the node endpoint`);
      default:
        throw unhandledKind(m);
    }
  };

  return {
    attest(body: Buffer, source: string): NodeReply {
      const ctx: { node?: string } = {};
      try {
        const now = clock.now();
        let m: EdgeToCloudMessage;
        try {
          m = decodeEdgeToCloud(body);
        } catch (e) {
          // Malformed attempts cost a token too (architecture.md 9: a flood of garbage is still a flood).
          if (!limiter.take(rateLimitKey(source), now).allowed) throw new NodeServiceError('rate-limit/exceeded', 'too many attestation attempts; slow down');
          throw e;
        }
        // An attempt = a request that does not continue an open session (those are bounded by the session cap).
        if (m.kind !== 'attest.response' && !limiter.take(rateLimitKey(source), now).allowed) {
          throw new NodeServiceError('rate-limit/exceeded', 'too many attestation attempts; slow down');
        }
        switch (m.kind) {
          case 'attest.begin':
            return begin(m, source, now, ctx);
          case 'attest.response':
            return respond(m, source, now, ctx);
          default:
            throw new NodeApiError('node-api/unexpected-kind', `${m.kind} is not accepted on the attestation endpoint`);
        }
      } catch (e) {
        return refuse(e, 'attest', source, ctx.node);
      }
    },

    authenticate(chainDer: readonly Buffer[], source: string): AuthenticatedNode {
      let name: string | undefined;
      try {
        const v = validateNodeChain(chainDer, bundleSource, clock.now(), td);
        const { spiffeId, serialHex } = v;
        name = v.name;
        // Current or pending serial (a pending one is promoted on first use, reference §3 "Agent rotation"):
        // one store call reads the node's row once and says why a refusal is one.
        const check = store.serialStatus(name, serialHex);
        if (check === 'unknown-node') throw new NodeServiceError('node/unknown', `node ${name} is not attested; attest again`);
        if (check === 'banned') throw new NodeServiceError('node/banned', `node ${name} is banned`);
        if (check === 'superseded') {
          throw new NodeServiceError('node-api/unauthenticated', 'this node SVID was superseded or revoked', { detail: { reason: 'serial' } });
        }
        return { nodeName: name, spiffeId, serialHex };
      } catch (e) {
        refuse(e, 'authenticate', source, name);
        if (e instanceof NodeServiceError) throw e;
        // Unexpected (store I/O...): logged above with its cause; the caller sees only `internal`.
        throw new NodeServiceError('internal', 'internal error', { cause: e });
      }
    },

    handle(body: Buffer, node: AuthenticatedNode, source: string): NodeReply {
      try {
        const now = clock.now();
        const m = decodeEdgeToCloud(body);
        // The connection may have authenticated a while ago: a ban or a newer serial in force refuses now.
        if (!store.isSerialCurrent(node.nodeName, node.serialHex)) {
          const n = store.getNode(node.nodeName);
          if (n === undefined) throw new NodeServiceError('node/unknown', `node ${node.nodeName} is not attested; attest again`);
          if (n.banned) throw new NodeServiceError('node/banned', `node ${node.nodeName} is banned`);
          throw new NodeServiceError('node-api/unauthenticated', 'this node SVID was superseded or revoked');
        }
        const signatures =
          m.kind === 'svids.request'
            ? m.csrs.length
            : m.kind === 'renew.request' || m.kind === 'jwt.request' || m.kind === 'device.enroll' || m.kind === 'device.renew'
              ? 1
              : 0;
        if (signatures > 0 && !signingLimiter.take(node.nodeName, now, Math.min(signatures, signingLimiter.capacity)).allowed) {
          throw new NodeServiceError('rate-limit/exceeded', 'too many signing requests from this node; slow down');
        }
        return dispatch(m, node, now, source);
      } catch (e) {
        return refuse(e, 'request', source, node?.nodeName);
      }
    },

    sweep,

    get stats() {
      return { sessions: sessions.size };
    },
  };
}
