/**
 * The node API listener (issue #4; contract "Node API transport"): one HTTPS server (node:https) on
 * `--listen`.
 *
 * - TLS 1.3 only. The server certificate is the cloud SVID (`spiffe://TD/edgeward/cloud`) and is swapped in
 *   place (`setSecureContext`) when the identity changes. Client certificates are requested but not
 *   verified by OpenSSL (`rejectUnauthorized: false`): the backend validates them as X509-SVIDs of the
 *   trust domain (deny by default: no valid node SVID, no /v1/node).
 * - Routes: `GET /v1/bundle` (no client cert), `POST /v1/attest` (no client cert; ignored), `POST /v1/node`
 *   (node SVID as client cert). Everything else: 404 (405 for a known path with the wrong method).
 * - Bounded (architecture.md 9): request bodies at most 64 KiB, counted while streaming (413 and the
 *   connection is closed: the peer may not stream more); header and whole-request time limits against
 *   slowloris; a TLS handshake timeout; at most `maxConnections` connections.
 * - Every reply is JSON (a node API message; errors are `{v, kind:'error', code, message}`, never a cause).
 * - Connections that authenticated as a node are remembered: when the node is banned or evicted they are
 *   destroyed at once (`closeNode`), and any other change of the node's record makes the next request on
 *   them authenticate again (a superseded serial stops working on open connections too).
 * - The hub (issue #5): a WebSocket upgrade of `GET /v1/hub` (`HUB_PATH`) is authenticated like `/v1/node`
 *   (the node comes from the client certificate alone) and handed to the `hub` with the peer's chain and
 *   NotAfter; from then on the hub owns the socket (and closes it on ban/evict: the composition root calls
 *   the hub's `closeNode` too). A refused upgrade gets an HTTP status with a JSON node-API error body, a
 *   `security.*` event, and the socket is closed: 404 `http/not-found` (another path, or no hub), 426
 *   `hub/upgrade-required` (not a WebSocket upgrade), 400 `http/bad-request` (bad WebSocket headers), 401
 *   `node-api/unauthenticated` / `node/unknown`, 403 `node/banned`, and the hub's own 409/503.
 */
import { createServer, type Server } from 'node:https';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { constants as cryptoConstants } from 'node:crypto';
import type { Socket } from 'node:net';
import type { PeerCertificate, SecureContextOptions, TLSSocket } from 'node:tls';
import {
  bundleToJson,
  certIssuedBy,
  derToPem,
  EdgewardError,
  parseCertificate,
  type Clock,
  type ParsedCertificate,
  type TrustBundle,
} from '../../identity/index.js';
import {
  encodeNodeApiMessage,
  HUB_PATH,
  MAX_NODE_API_CHAIN_CERTS,
  MAX_NODE_API_MESSAGE_BYTES,
  NODE_API_ERROR_CODE_PATTERN,
  NODE_API_VERSION,
  type CloudToEdgeMessage,
} from '../../protocol/index.js';
import type { CloudIdentity } from '../ca/index.js';
import { nodeApiHttpStatus } from '../node-service/index.js';

export const NODE_API_PATHS = { bundle: '/v1/bundle', attest: '/v1/attest', node: '/v1/node' } as const;

/**
 * Transport-level refusals of the node API server (closed set; the node API's own codes come from the
 * codec and the node service).
 * - `http/not-found` (404), `http/method-not-allowed` (405), `http/unsupported-media-type` (415: the body
 *   must be `application/json`), `node-api/too-large` (413), `node-api/unauthenticated` (401: no client
 *   certificate), `hub/upgrade-required` (426: `/v1/hub` without a WebSocket upgrade), `internal` (500).
 */
export const NODE_API_SERVER_ERROR_CODES = [
  'http/not-found',
  'http/method-not-allowed',
  'http/unsupported-media-type',
  'node-api/too-large',
  'node-api/unauthenticated',
  'http/bad-request',
  'http/timeout',
  'hub/upgrade-required',
  'internal',
] as const;
export type NodeApiServerErrorCode = (typeof NODE_API_SERVER_ERROR_CODES)[number];
export class NodeApiServerError extends EdgewardError<NodeApiServerErrorCode> {}

/** An HTTP status and the node API message to send. */
export interface NodeApiReply {
  status: number;
  message: CloudToEdgeMessage;
}

/** What the server calls (the node service; contract "Cloud internal seam"). */
export interface NodeApiBackend<A extends { nodeName: string }> {
  attest(body: Buffer, source: string): NodeApiReply | Promise<NodeApiReply>;
  /** Throws a typed error (`node-api/unauthenticated`, `node/banned`, `node/unknown`) when refused. */
  authenticate(chainDer: readonly Buffer[], source: string): A;
  handle(body: Buffer, node: A, source: string): NodeApiReply | Promise<NodeApiReply>;
}

export interface NodeApiServerLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface NodeApiServerLimits {
  maxConnections: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Largest request body (default MAX_NODE_API_MESSAGE_BYTES, 64 KiB). */
  maxBodyBytes?: number;
}

/** The hub's refusal of an authenticated upgrade (409 another session, 503 overloaded): answered by the server. */
export interface NodeApiUpgradeRefusal {
  status: number;
  code: string;
  message: string;
}

/** Where authenticated `/v1/hub` upgrades go (the CloudHub, src/cloud/hub). */
export interface NodeApiUpgradeHandler {
  /** Returns a refusal without touching the socket, or takes the socket over. */
  handleUpgrade(
    req: IncomingMessage,
    socket: TLSSocket,
    head: Buffer,
    node: string,
    peer: { chainDer: readonly Buffer[]; notAfter: number },
  ): NodeApiUpgradeRefusal | undefined;
}

export interface NodeApiServerOptions<A extends { nodeName: string }> {
  host: string;
  port: number;
  identity: CloudIdentity;
  backend: NodeApiBackend<A>;
  limits: NodeApiServerLimits;
  logger: NodeApiServerLogger;
  clock: Clock;
  /** The hub; without it every upgrade is answered 404. */
  hub?: NodeApiUpgradeHandler;
}

export interface NodeApiServerStats {
  connections: number;
  authenticatedConnections: number;
  nodesConnected: number;
}

export interface NodeApiServer {
  /** Listen; resolves with the bound address (port 0 = any free port). */
  start(): Promise<{ host: string; port: number }>;
  /** Destroy every connection that authenticated as `node`. Returns how many were closed. */
  closeNode(node: string, reason: string): number;
  /** Forget the authentication of `node`'s connections (they authenticate again on the next request). */
  reauthenticate(node: string): void;
  stats(): NodeApiServerStats;
  close(): Promise<void>;
}

interface AuthState<A> {
  node: A;
  /** The client certificate's NotAfter: past it the connection must authenticate again (and fails). */
  notAfter: number;
}

const JSON_TYPE = 'application/json';
/** Lingering close (as nginx's lingering_close): how long, and how much, unread input is discarded. */
const LINGER_MS = 2_000;
const LINGER_BYTES = 1024 * 1024;

/**
 * When a request is refused before its body was read (413, 401, ...), closing the socket at once with
 * unread input makes the kernel send a reset, and the peer may lose the refusal it has not read yet. So the
 * socket is closed after the response only once the peer stops sending, or after LINGER_MS or LINGER_BYTES
 * of further (discarded, never buffered) input, whichever comes first. Node's HTTP server calls
 * `destroySoon()` after a `connection: close` response; this replaces it for this one socket.
 */
function lingerOnClose(socket: Socket): void {
  const s = socket as Socket & { destroySoon?: () => void };
  s.destroySoon = () => {
    let seen = 0;
    const kill = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(kill, LINGER_MS);
    timer.unref();
    socket.on('data', (d: Buffer) => {
      seen += d.length;
      if (seen > LINGER_BYTES) kill();
    });
    socket.once('end', kill);
    socket.once('close', () => clearTimeout(timer));
    socket.resume();
  };
}
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Shared by every upgraded socket until its new owner takes over (no closure per socket). */
function destroyOnError(this: Socket): void {
  this.destroy();
}


function errorMessage(code: string, message: string): CloudToEdgeMessage {
  const wire = code.length <= 64 && NODE_API_ERROR_CODE_PATTERN.test(code) ? code : 'internal';
  return { v: NODE_API_VERSION, kind: 'error', code: wire, message: message.slice(0, 256) };
}

/**
 * The peer's leaf certificate (DER) alone. The detailed `getPeerCertificate(true)` converts every
 * certificate of the peer's chain to an object and copies each one first (with OpenSSL 3 a copy re-decodes
 * the public key), which costs more than the signature checks; `getPeerX509Certificate()` wraps the leaf
 * without a copy (it does copy the first intermediate, when the peer sent one).
 */
function peerLeafDer(socket: TLSSocket): Buffer | undefined {
  const raw = socket.getPeerX509Certificate()?.raw;
  return Buffer.isBuffer(raw) && raw.length > 0 ? raw : undefined;
}

/** Parsed X.509 authorities per bundle (bundles are immutable: parsed once per bundle object). */
const bundleAuthorities = new WeakMap<TrustBundle, readonly ParsedCertificate[]>();

/**
 * True when a certificate of `bundle` could have issued `leaf` (names and key identifiers chain, RFC 5280
 * 6.1.3 (a)(4)): the leaf then validates against the bundle on its own and the rest of the peer's chain
 * is not needed. Nothing is decided here; the backend still validates the leaf in full.
 */
function issuedByBundleAuthority(leaf: ParsedCertificate, bundle: TrustBundle): boolean {
  let authorities = bundleAuthorities.get(bundle);
  if (authorities === undefined) {
    const parsed: ParsedCertificate[] = [];
    for (const der of bundle.x509Authorities) {
      try {
        parsed.push(parseCertificate(der));
      } catch {
        // an authority we cannot parse issues nothing the validator would accept
      }
    }
    authorities = parsed;
    bundleAuthorities.set(bundle, authorities);
  }
  return authorities.some((a) => certIssuedBy(leaf, a));
}

/** The peer's chain, leaf first, from `getPeerCertificate(true)` (issuer links; stops at self-reference). */
export function peerChainDer(socket: TLSSocket): Buffer[] {
  const leaf = socket.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
  if (leaf === null || typeof leaf !== 'object' || !Buffer.isBuffer(leaf.raw)) return [];
  const out: Buffer[] = [];
  const seen = new Set<object>();
  let cur: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = leaf;
  while (cur !== undefined && Buffer.isBuffer(cur.raw) && !seen.has(cur) && out.length <= MAX_NODE_API_CHAIN_CERTS) {
    if (out.some((b) => b.equals(cur!.raw))) break;
    out.push(cur.raw);
    seen.add(cur);
    const next: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = cur.issuerCertificate;
    if (next === undefined || next === null || next === cur) break;
    cur = next;
  }
  // A self-signed certificate after the leaf is a root that OpenSSL may have appended from its own store:
  // trust anchors come from our bundle, never from the peer, so it is dropped.
  while (out.length > 1) {
    const last = out[out.length - 1]!;
    let selfSigned = false;
    try {
      const c = parseCertificate(last);
      selfSigned = c.issuerRaw.equals(c.subjectRaw);
    } catch {
      selfSigned = false;
    }
    if (!selfSigned) break;
    out.pop();
  }
  return out;
}

export function createNodeApiServer<A extends { nodeName: string }>(opts: NodeApiServerOptions<A>): NodeApiServer {
  const { identity, backend, logger: log, clock, limits } = opts;
  const maxBody = limits.maxBodyBytes ?? MAX_NODE_API_MESSAGE_BYTES;
  const sockets = new Set<Socket>();
  const auth = new WeakMap<Socket, AuthState<A>>();
  const byNode = new Map<string, Set<Socket>>();
  let server: Server | undefined;
  let unsubscribe: (() => void) | undefined;

  const secureContext = (): SecureContextOptions => {
    const svid = identity.svid();
    return {
      key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      cert: svid.chainDer.map((d) => derToPem(d, 'CERTIFICATE')).join(''),
    };
  };

  const track = (socket: Socket, state: AuthState<A>): void => {
    const prev = auth.get(socket);
    if (prev !== undefined && prev.node.nodeName !== state.node.nodeName) untrack(socket);
    auth.set(socket, state);
    let set = byNode.get(state.node.nodeName);
    if (set === undefined) byNode.set(state.node.nodeName, (set = new Set()));
    set.add(socket);
  };
  /**
   * Make these connections authenticate again on their next request. They stay in `byNode`, so a ban or
   * evict that follows still finds and closes them.
   */
  const markStale = (set: Iterable<Socket>): void => {
    for (const s of set) {
      const st = auth.get(s);
      if (st !== undefined) auth.set(s, { ...st, notAfter: 0 });
    }
  };
  const untrack = (socket: Socket): void => {
    const st = auth.get(socket);
    if (st === undefined) return;
    auth.delete(socket);
    const set = byNode.get(st.node.nodeName);
    if (set !== undefined) {
      set.delete(socket);
      if (set.size === 0) byNode.delete(st.node.nodeName);
    }
  };

  const send = (res: ServerResponse, status: number, body: string, close = false): void => {
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string | number> = {
      'content-type': JSON_TYPE,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    };
    if (close) {
      headers['connection'] = 'close';
      if (!res.req.complete) lingerOnClose(res.req.socket);
    }
    res.writeHead(status, headers);
    res.end(body);
  };
  const sendMessage = (res: ServerResponse, status: number, message: CloudToEdgeMessage, close = false): void => {
    let body: string;
    try {
      body = encodeNodeApiMessage(message);
    } catch (e) {
      log.error({ event: 'node_api.encode_failed', code: e instanceof EdgewardError ? e.code : 'internal' }, 'reply cannot be encoded');
      status = 500;
      body = encodeNodeApiMessage(errorMessage('internal', 'internal error'));
    }
    send(res, status, body, close);
  };
  const refuse = (res: ServerResponse, status: number, code: NodeApiServerErrorCode, message: string, source: string, extra: Record<string, unknown> = {}, close = false): void => {
    log.warn({ event: `security.${code === 'node-api/unauthenticated' ? 'node_unauthenticated' : code === 'node-api/too-large' ? 'request_too_large' : 'http_refused'}`, code, source, ...extra }, 'node API request refused');
    sendMessage(res, status, errorMessage(code, message), close);
  };

  /** Read the body, at most maxBody bytes (counted as it streams). 'too-large' stops reading at once. */
  /** The peer went away (or was closed by a ban) before its request body arrived: nothing to answer. */
  const ABORTED = 'aborted' as const;
  const readBody = (req: IncomingMessage): Promise<Buffer | 'too-large' | typeof ABORTED> =>
    new Promise((resolve, reject) => {
      const declared = req.headers['content-length'];
      if (declared !== undefined && (!/^[0-9]{1,15}$/.test(declared) || Number(declared) > maxBody)) {
        resolve('too-large');
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      const finish = (v: Buffer | 'too-large' | typeof ABORTED | Error): void => {
        if (done) return;
        done = true;
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
        req.off('aborted', onAborted);
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > maxBody) {
          finish('too-large');
          // Nothing more is kept: what still arrives is discarded (bounded by the lingering close).
          req.resume();
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = (): void => finish(Buffer.concat(chunks, size));
      const onError = (e: Error): void => finish(req.socket.destroyed ? ABORTED : e);
      const onAborted = (): void => finish(ABORTED);
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onError);
      req.on('aborted', onAborted);
    });

  const isJson = (req: IncomingMessage): boolean => {
    const ct = req.headers['content-type'];
    if (ct === undefined) return false;
    return ct.split(';')[0]!.trim().toLowerCase() === JSON_TYPE;
  };

  type Refusal = { status: number; code: string; message: string; logged: boolean };

  /**
   * Authenticate the peer's certificate now (no cache): the node, the chain that authenticated it and the
   * leaf's NotAfter, or a refusal.
   */
  const verifyPeer = (socket: TLSSocket, source: string): { node: A; chain: Buffer[]; notAfter: number } | Refusal => {
    const now = clock.now();
    const leafDer = peerLeafDer(socket);
    if (leafDer === undefined) return { status: 401, code: 'node-api/unauthenticated', message: 'a node X509-SVID client certificate is required', logged: false };
    let leaf: ParsedCertificate | undefined;
    try {
      leaf = parseCertificate(leafDer);
    } catch {
      leaf = undefined; // the backend refuses it with its own typed error
    }
    // A leaf issued by an authority of our bundle (the embedded CA's signing CAs are in it) is validated
    // alone; otherwise (e.g. a SPIRE bundle holding only roots) the peer's whole chain is read and passed.
    let leafSuffices = false;
    if (leaf !== undefined) {
      try {
        leafSuffices = issuedByBundleAuthority(leaf, identity.bundle());
      } catch {
        leafSuffices = false;
      }
    }
    const chain = leafSuffices ? [leafDer] : peerChainDer(socket);
    if (chain.length === 0) return { status: 401, code: 'node-api/unauthenticated', message: 'a node X509-SVID client certificate is required', logged: false };
    try {
      const node = backend.authenticate(chain, source);
      // The backend accepted the chain, whose leaf is `leaf` (unparseable: do not cache).
      const notAfter = leaf !== undefined && leaf.raw.equals(chain[0]!) ? leaf.notAfter : now;
      return { node, chain, notAfter };
    } catch (e) {
      // The backend logged its refusal (security event); anything untyped is our fault, not the peer's.
      if (!(e instanceof EdgewardError)) throw e;
      return { status: nodeApiHttpStatus(e.code), code: e.code, message: e.message, logged: true };
    }
  };

  /** The authenticated node of this connection (cached per connection), or a reply refusing it. */
  const authenticate = (socket: TLSSocket, source: string): { node: A } | Refusal => {
    const now = clock.now();
    const cached = auth.get(socket);
    if (cached !== undefined && now < cached.notAfter) return { node: cached.node };
    if (cached !== undefined) untrack(socket);
    const v = verifyPeer(socket, source);
    if (!('node' in v)) return v;
    if (v.notAfter > now) track(socket, { node: v.node, notAfter: v.notAfter });
    return { node: v.node };
  };

  /**
   * Answer a refused upgrade on the raw socket (no HTTP response object exists for an upgrade request):
   * the status, a JSON node-API error body, then the socket is closed once the answer is written.
   */
  const refuseUpgrade = (socket: Socket, status: number, code: string, message: string): void => {
    if (socket.destroyed) return;
    const body = encodeNodeApiMessage(errorMessage(code, message));
    const extra = status === 426 ? 'upgrade: websocket\r\n' : '';
    const kill = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(kill, LINGER_MS);
    timer.unref();
    socket.once('finish', kill);
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `cache-control: no-store\r\nx-content-type-options: nosniff\r\n${extra}connection: close\r\n\r\n${body}`,
    );
  };

  /** `Sec-WebSocket-Key`: 16 bytes in base64 (RFC 6455 4.2.1). */
  const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;
  const onUpgrade = (req: IncomingMessage, socket: TLSSocket, head: Buffer): void => {
    const source = socket.remoteAddress ?? 'unknown';
    // Node's HTTP server let go of the socket (and of its error handling) for the upgrade.
    socket.on('error', destroyOnError);
    const refused = (status: number, code: string, message: string, extra: Record<string, unknown>, event = 'security.hub_upgrade_refused'): void => {
      log.warn({ event, code, status, source, ...extra }, 'hub upgrade refused');
      refuseUpgrade(socket, status, code, message);
    };
    try {
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (path !== HUB_PATH || opts.hub === undefined) {
        refused(404, 'http/not-found', 'no such node API path', { path: path.slice(0, 100) }, 'security.http_refused');
        return;
      }
      if (req.method !== 'GET' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
        refused(426, 'hub/upgrade-required', 'the hub is a WebSocket: GET with Upgrade: websocket', { path });
        return;
      }
      const key = req.headers['sec-websocket-key'];
      if (key === undefined || !WS_KEY.test(key) || req.headers['sec-websocket-version'] !== '13') {
        refused(400, 'http/bad-request', 'invalid WebSocket handshake headers (Sec-WebSocket-Key, Sec-WebSocket-Version: 13)', { path });
        return;
      }
      // Deny by default: the node is the client certificate's, and only if the backend accepts it now.
      const v = verifyPeer(socket, source);
      if (!('node' in v)) {
        if (!v.logged) log.warn({ event: 'security.node_unauthenticated', code: v.code, source }, 'node API request refused');
        refused(v.status, v.code, v.message, {});
        return;
      }
      // The hub owns the socket from here on (and closes it on ban/evict), not the per-request tracking.
      untrack(socket);
      socket.off('error', destroyOnError);
      const refusal = opts.hub.handleUpgrade(req, socket, head, v.node.nodeName, { chainDer: v.chain, notAfter: v.notAfter });
      if (refusal !== undefined) {
        // The hub logged its own security event.
        socket.on('error', destroyOnError);
        refuseUpgrade(socket, refusal.status, refusal.code, refusal.message);
      }
    } catch (e) {
      log.error({ event: 'node_api.internal_error', code: e instanceof EdgewardError ? e.code : 'internal', source, err: String(e) }, 'hub upgrade failed');
      if (socket.listenerCount('error') === 0) socket.on('error', destroyOnError);
      refuseUpgrade(socket, 500, 'internal', 'internal error');
    }
  };

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const socket = req.socket as TLSSocket;
    const source = socket.remoteAddress ?? 'unknown';
    const path = (req.url ?? '').split('?')[0];
    try {
      if (path === NODE_API_PATHS.bundle) {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.setHeader('allow', 'GET');
          refuse(res, 405, 'http/method-not-allowed', 'use GET', source, { path }, true);
          return;
        }
        send(res, 200, bundleToJson(identity.bundle()));
        return;
      }
      if (path === HUB_PATH) {
        res.setHeader('upgrade', 'websocket');
        refuse(res, 426, 'hub/upgrade-required', 'the hub is a WebSocket: GET with Upgrade: websocket', source, { path }, true);
        return;
      }
      if (path !== NODE_API_PATHS.attest && path !== NODE_API_PATHS.node) {
        refuse(res, 404, 'http/not-found', 'no such node API path', source, { path: path?.slice(0, 100) }, true);
        return;
      }
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        refuse(res, 405, 'http/method-not-allowed', 'use POST', source, { path }, true);
        return;
      }
      let node: A | undefined;
      if (path === NODE_API_PATHS.node) {
        // Deny by default, before reading anything else from the peer.
        const a = authenticate(socket, source);
        if (!('node' in a)) {
          if (!a.logged) log.warn({ event: 'security.node_unauthenticated', code: a.code, source }, 'node API request refused');
          sendMessage(res, a.status, errorMessage(a.code, a.message), true);
          return;
        }
        node = a.node;
      }
      if (!isJson(req)) {
        refuse(res, 415, 'http/unsupported-media-type', 'the body must be application/json', source, node ? { node: node.nodeName } : {}, true);
        return;
      }
      const body = await readBody(req);
      if (body === ABORTED) {
        log.debug({ event: 'node_api.request_aborted', source }, 'the peer closed the connection before its request arrived');
        return;
      }
      if (body === 'too-large') {
        refuse(res, 413, 'node-api/too-large', `request body is larger than ${maxBody} bytes`, source, node ? { node: node.nodeName } : {}, true);
        return;
      }
      const reply = node === undefined ? await backend.attest(body, source) : await backend.handle(body, node, source);
      sendMessage(res, reply.status, reply.message);
    } catch (e) {
      log.error({ event: 'node_api.internal_error', code: e instanceof EdgewardError ? e.code : 'internal', source, err: String(e) }, 'node API request failed');
      sendMessage(res, 500, errorMessage('internal', 'internal error'), true);
    }
  };

  return {
    async start() {
      const srv = createServer(
        {
          ...secureContext(),
          minVersion: 'TLSv1.3',
          // TLS 1.3 session tickets. Edge clients never resume (they keep no sessions), and a resumed
          // session would carry an earlier handshake's client certificate without a new proof of
          // possession of its key. Yet OpenSSL sends two tickets after every handshake; by default they
          // are stateless: the session, including the client's certificate chain, serialised, copied and
          // encrypted for every connection. With SSL_OP_NO_TICKET they are stateful (a session ID) and,
          // with no server-side session cache here, nothing is stored: no session can be resumed, so
          // every connection does a full handshake with its client certificate.
          secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
          requestCert: true,
          rejectUnauthorized: false,
          handshakeTimeout: Math.min(HANDSHAKE_TIMEOUT_MS, limits.headersTimeoutMs),
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          // How often Node checks the header and request deadlines (default 30 s would let a slowloris
          // connection live well past headersTimeout).
          connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(limits.headersTimeoutMs / 2))),
          maxHeaderSize: 16 * 1024,
          noDelay: true,
        },
        (req, res) => void onRequest(req, res),
      );
      srv.maxConnections = limits.maxConnections;
      srv.maxHeadersCount = 64;
      srv.on('connection', (s: Socket) => {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
      });
      srv.on('upgrade', (req: IncomingMessage, s: TLSSocket, head: Buffer) => onUpgrade(req, s, head));
      srv.on('secureConnection', (s: TLSSocket) => {
        s.once('close', () => untrack(s));
      });
      srv.on('tlsClientError', (e: Error & { code?: string }, s: TLSSocket) => {
        log.warn(
          { event: 'security.tls_handshake_failed', code: 'node-api/tls-handshake', source: s.remoteAddress ?? 'unknown', tls_error: typeof e.code === 'string' ? e.code : 'unknown' },
          'TLS handshake refused',
        );
      });
      srv.on('clientError', (e: Error & { code?: string; library?: unknown }, s: Socket) => {
        // TLS failures are reported (and logged) as tlsClientError; nothing can be sent on that socket.
        if (typeof e.library === 'string' || (e.code ?? '').startsWith('ERR_SSL')) {
          s.destroy();
          return;
        }
        log.warn({ event: 'security.http_malformed', code: 'http/bad-request', source: s.remoteAddress ?? 'unknown', http_error: e.code ?? 'unknown' }, 'malformed HTTP request');
        if (s.writable && !s.destroyed) {
          const status = e.code === 'HPE_HEADER_OVERFLOW' ? 431 : e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
          const body = encodeNodeApiMessage(errorMessage(status === 408 ? 'http/timeout' : 'http/bad-request', 'bad request'));
          s.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        }
        s.destroy();
      });
      unsubscribe = identity.onChange(() => {
        // The trust bundle may have changed too (an authority removed): every authenticated connection
        // is checked again against the current bundle on its next request.
        for (const set of byNode.values()) markStale(set);
        try {
          srv.setSecureContext(secureContext());
          log.info({ event: 'node_api.identity_rotated', serial: identity.svid().serialHex }, 'node API server certificate replaced');
        } catch (e) {
          log.error({ event: 'node_api.identity_rotation_failed', code: e instanceof EdgewardError ? e.code : 'internal' }, 'cannot replace the server certificate');
        }
      });
      await new Promise<void>((resolve, reject) => {
        const onError = (e: Error): void => reject(e);
        srv.once('error', onError);
        srv.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
          srv.off('error', onError);
          resolve();
        });
      });
      srv.on('error', (e) => log.error({ event: 'node_api.server_error', err: String(e) }, 'node API server error'));
      server = srv;
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') throw new NodeApiServerError('internal', 'the node API server has no TCP address');
      return { host: addr.address, port: addr.port };
    },
    closeNode(node, reason) {
      const set = byNode.get(node);
      if (set === undefined) return 0;
      const list = [...set];
      byNode.delete(node);
      for (const s of list) {
        auth.delete(s);
        s.destroy();
      }
      log.warn({ event: 'security.node_banned_connection_closed', code: `node/${reason}`, node, connections: list.length }, 'connections of a node closed');
      return list.length;
    },
    reauthenticate(node) {
      const set = byNode.get(node);
      if (set !== undefined) markStale(set);
    },
    stats() {
      let authed = 0;
      for (const set of byNode.values()) authed += set.size;
      return { connections: sockets.size, authenticatedConnections: authed, nodesConnected: byNode.size };
    },
    async close() {
      unsubscribe?.();
      unsubscribe = undefined;
      const srv = server;
      server = undefined;
      if (srv === undefined) return;
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
