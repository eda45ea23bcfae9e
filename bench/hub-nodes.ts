/**
 * The simulated edge nodes of `npm run bench -- hub` (bench/hub.ts), in their own process: a child that
 * bench/hub.ts spawns with an IPC channel, never a bench by itself (bench/hub.ts imports its types, so
 * scripts/bench.mjs counts it as a library, and started any other way it exits with a message).
 *
 * It does what a real node does, minus the store:
 * - join: one pinned bootstrap (GET /v1/bundle + digest check), then per node a new P-256 key and a
 *   join_token attestation over the node API (`attestNode`, which checks the returned node SVID), each on
 *   its own CloudClient (own connections), `inFlight` at a time; each node then builds its TLS client
 *   context once (its SVID, key and trusted roots), as an edge keeps one until its SVID rotates;
 * - connect: per node one `wss://HOST:PORT/v1/hub` session, TLS 1.3 only, the client certificate is the
 *   node's X509-SVID, the server must be `spiffe://TD/edgeward/cloud` of the bundle (checked by SPIFFE ID
 *   inside the handshake, as src/edge/cloud-client does), `perMessageDeflate: false`; sends `hello` (a
 *   random storeId), acks every put/delete at once (no real store: this measures the cloud), answers
 *   pings (ws does) and sends a ping every 10 s like the real edge (random phase per session);
 * - rounds: counts the puts of one resource carrying a marker and reports when every open session acked it.
 *
 * The same sessions, with the same certificates and the same put/ack handling, connect to the bare
 * baseline server (bench/hub-bare.ts): there `/v1/hub` is a plain ws server with no logic at all.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage } from 'node:http';
import { createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { WebSocket, type ClientOptions } from 'ws';
import {
  certIssuedBy,
  derToPem,
  generateP256,
  parseBundleJson,
  parseCertificate,
  pkcs8FromPrivateKey,
  TrustDomain,
  type TrustBundle,
} from '../src/identity/index.js';
import {
  decodeCloudToEdgeHub,
  encodeHubMessage,
  HUB_PATH,
  HUB_PING_INTERVAL_MS,
  HUB_PROTOCOL_VERSION,
  MAX_HUB_CLOUD_FRAME_BYTES,
} from '../src/protocol/index.js';
import { CloudClient, parseCloudAddress, type CloudAddress } from '../src/edge/cloud-client/index.js';
import { checkCloudServer, peerChain } from '../src/edge/cloud-client/index.js';
import { attestNode } from '../src/edge/join/index.js';
import { errorText, pool } from './harness.js';

/** The environment variable bench/hub.ts sets for its children (`nodes` here, `bare` for hub-bare.ts). */
export const HUB_BENCH_CHILD_ENV = 'EDGEWARD_BENCH_HUB_CHILD';

export interface NodeSpec {
  name: string;
  token: string;
}

export type ParentToNodes =
  /** `extraRootPem`: one more root each node's TLS context trusts (the bare server's; see connect). */
  | { kind: 'join'; address: string; digest: string; nodes: NodeSpec[]; inFlight: number; extraRootPem: string }
  /** Open one session per joined node; the server must present `spiffe://trustDomain/edgeward/cloud` of `bundleJson` (default: the cloud's bundle from the joins). */
  | { kind: 'connect'; target: 'cloud' | 'bare'; address: string; trustDomain: string; bundleJson?: string; inFlight: number }
  /** Count acked puts of ConfigMap `name` whose data carries `round: marker`; report when all open sessions did. */
  | { kind: 'expect'; round: number; name: string; marker: string }
  | { kind: 'stats' }
  | { kind: 'disconnect' }
  | { kind: 'exit' };

export interface NodesStats {
  open: number;
  welcomed: number;
  synced: number;
  putsAcked: number;
  deletesAcked: number;
  pingsSent: number;
  /** close code -> count, since the last connect. */
  closes: Record<string, number>;
  errors: string[];
  rssKiB: number;
}

export type NodesToParent =
  | { kind: 'ready' }
  | { kind: 'joined'; ok: number; errors: string[]; ms: number; msPerJoin: { p50: number; p99: number; max: number } }
  | { kind: 'connected'; open: number; errors: string[]; ms: number; msPerSession: { p50: number; p99: number; max: number } }
  /** Times are epoch ms (performance.timeOrigin + performance.now(), comparable across processes). */
  | { kind: 'round'; round: number; count: number; firstAckAt: number; lastAckAt: number }
  | { kind: 'stats'; stats: NodesStats }
  | { kind: 'disconnected'; ms: number }
  | { kind: 'failed'; message: string };

const now = (): number => performance.timeOrigin + performance.now();
const clock = { now: () => Date.now() };
const AGENT = 'edgeward-bench/0.1.0';
/** How long one session may take to open (upgrade + hello + catch-up), and one join. */
const CONNECT_TIMEOUT_MS = 60_000;

interface Joined {
  name: string;
  /**
   * The node's TLS client context (its SVID and key, TLS 1.3 only, the cloud's roots plus the bare server's),
   * built once at join as an edge keeps its context until its SVID rotates. Which server is acceptable is
   * decided per connection by `checkServerIdentity` against that server's bundle, by SPIFFE ID.
   */
  context: SecureContext;
}

function percentiles(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number): number => (s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!);
  return { p50: at(50), p99: at(99), max: s[s.length - 1] ?? NaN };
}

const errText = (e: unknown): string => errorText(e).slice(0, 200);

/**
 * What the node presents and trusts (as src/edge/cloud-client's mtlsMaterial): only the leaf when an
 * authority of the bundle issued it (RFC 8446 4.4.2), with the bundle's self-signed roots as `ca`.
 */
function material(chainDer: readonly Buffer[], bundle: TrustBundle): { certPem: string; caPem: string } {
  const pem = (ders: readonly Buffer[]): string => ders.map((d) => derToPem(d, 'CERTIFICATE')).join('');
  const authorities = bundle.x509Authorities.map((d) => parseCertificate(d));
  const roots = authorities.filter((a) => a.issuerRaw.equals(a.subjectRaw));
  const leaf = parseCertificate(chainDer[0]!);
  if (chainDer.length > 1 && roots.length > 0 && authorities.some((a) => certIssuedBy(leaf, a))) {
    return { certPem: pem([chainDer[0]!]), caPem: pem(roots.map((r) => r.raw)) };
  }
  return { certPem: pem(chainDer), caPem: pem(bundle.x509Authorities) };
}

// ---------------------------------------------------------------------------------------------------

const joined: Joined[] = [];
/** The cloud's bundle as the last attestation returned it. */
let cloudBundle: TrustBundle | undefined;
const sessions = new Set<WebSocket>();
let stats: NodesStats = freshStats();
let expectation: { round: number; name: string; marker: string; target: number; count: number; first: number; last: number; seen: WeakSet<WebSocket> } | undefined;

function freshStats(): NodesStats {
  return { open: 0, welcomed: 0, synced: 0, putsAcked: 0, deletesAcked: 0, pingsSent: 0, closes: {}, errors: [], rssKiB: 0 };
}

function send(m: NodesToParent): void {
  process.send!(m);
}

function noteError(e: string): void {
  if (stats.errors.length < 50) stats.errors.push(e);
}

async function join(m: Extract<ParentToNodes, { kind: 'join' }>): Promise<void> {
  const address = parseCloudAddress(m.address);
  const boot = new CloudClient({ address, clock });
  const bundle = await boot.fetchBundle(m.digest);
  boot.close();
  const td = bundle.trustDomain;
  const t0 = performance.now();
  const r = await pool(m.nodes.length, m.inFlight, async (i) => {
    const spec = m.nodes[i]!;
    const client = new CloudClient({ address, clock, bundle });
    try {
      const key = generateP256();
      const a = await attestNode(client, { method: 'join_token', token: spec.token }, spec.name, key, td, clock);
      const mat = material(a.chainDer, a.bundle);
      cloudBundle = a.bundle;
      const keyPem = derToPem(pkcs8FromPrivateKey(key.privateKey), 'PRIVATE KEY');
      const context = createSecureContext({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', cert: mat.certPem, key: keyPem, ca: mat.caPem + m.extraRootPem });
      joined.push({ name: spec.name, context });
    } finally {
      client.close();
    }
  });
  send({ kind: 'joined', ok: joined.length, errors: r.errors.slice(0, 20).map((e) => e.slice(0, 200)), ms: performance.now() - t0, msPerJoin: percentiles(r.ms) });
}

/** One session; resolves when it is usable (cloud: `synced` received; bare: open). */
function openSession(node: Joined, address: CloudAddress, target: 'cloud' | 'bare', td: TrustDomain, bundle: TrustBundle): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const done = (e?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e === undefined) resolve();
      else reject(e);
    };
    // ws hands these to tls.connect, which takes a prebuilt `secureContext` (not in @types/ws' ClientOptions).
    const options: ClientOptions & { secureContext: SecureContext } = {
      perMessageDeflate: false,
      maxPayload: MAX_HUB_CLOUD_FRAME_BYTES,
      handshakeTimeout: CONNECT_TIMEOUT_MS,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      secureContext: node.context,
      rejectUnauthorized: true,
      // Inside the handshake, after OpenSSL verified the chain to the bundle: the server must be the cloud by ID.
      // (tls.connect's signature: an Error refuses; @types/ws declares a boolean, which is not what ws passes on.)
      checkServerIdentity: ((_host: string, cert: PeerCertificate) => checkCloudServer(peerChain(cert), bundle, td, clock.now())) as unknown as ClientOptions['checkServerIdentity'],
    };
    const ws = new WebSocket(`wss://${address.host}:${address.port}${HUB_PATH}`, options);
    const timer = setTimeout(() => {
      done(new Error(`session not ready within ${CONNECT_TIMEOUT_MS} ms`));
      ws.terminate();
    }, CONNECT_TIMEOUT_MS);
    let pinger: NodeJS.Timeout | undefined;
    ws.on('unexpected-response', (req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body = (body + s).slice(0, 2000)));
      res.on('end', () => {
        let code = '';
        try {
          code = String((JSON.parse(body) as { code?: unknown }).code ?? '');
        } catch {
          code = body.slice(0, 80);
        }
        done(new Error(`upgrade refused: HTTP ${res.statusCode} ${code}`));
        req.destroy();
      });
    });
    ws.on('error', (e) => {
      noteError(errText(e));
      done(e);
    });
    ws.on('open', () => {
      sessions.add(ws);
      stats.open++;
      if (target === 'cloud') ws.send(encodeHubMessage({ v: HUB_PROTOCOL_VERSION, kind: 'hello', storeId: randomUUID(), agent: AGENT, outboxSeq: 0 }));
      else done();
      // A ping every 10 s like the real edge, with a random phase so that 10,000 sessions do not ping together.
      const first = setTimeout(() => {
        ping();
        pinger = setInterval(ping, HUB_PING_INTERVAL_MS);
      }, Math.floor(Math.random() * HUB_PING_INTERVAL_MS));
      const ping = (): void => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.ping();
          stats.pingsSent++;
        }
      };
      ws.once('close', () => clearTimeout(first));
    });
    ws.on('close', (code) => {
      if (sessions.delete(ws)) stats.open--;
      if (pinger !== undefined) clearInterval(pinger);
      stats.closes[String(code)] = (stats.closes[String(code)] ?? 0) + 1;
      done(new Error(`closed with ${code} before it was ready`));
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        noteError('binary frame from the server');
        ws.terminate();
        return;
      }
      let m;
      try {
        m = decodeCloudToEdgeHub(data as Buffer);
      } catch (e) {
        noteError(`undecodable frame: ${errText(e)}`);
        ws.terminate();
        return;
      }
      switch (m.kind) {
        case 'welcome':
          stats.welcomed++;
          break;
        case 'synced':
          stats.synced++;
          done();
          break;
        case 'put': {
          const r = m.resource;
          ws.send(encodeHubMessage({ v: HUB_PROTOCOL_VERSION, kind: 'ack', items: [{ kind: r.kind, name: r.name, version: r.version }] }));
          stats.putsAcked++;
          const x = expectation;
          if (x !== undefined && r.kind === 'ConfigMap' && r.name === x.name && (r.data['data'] as Record<string, unknown> | undefined)?.['round'] === x.marker && !x.seen.has(ws)) {
            x.seen.add(ws);
            const t = now();
            if (x.count === 0) x.first = t;
            x.count++;
            x.last = t;
            if (x.count === x.target) send({ kind: 'round', round: x.round, count: x.count, firstAckAt: x.first, lastAckAt: x.last });
          }
          break;
        }
        case 'delete':
          ws.send(encodeHubMessage({ v: HUB_PROTOCOL_VERSION, kind: 'ack', items: [{ kind: m.resource.kind, name: m.resource.name, version: m.version, deleted: true }] }));
          stats.deletesAcked++;
          break;
        case 'error':
          noteError(`error frame: ${m.code}: ${m.message.slice(0, 100)}`);
          break;
        case 'status.ack':
        case 'nudge':
          break;
      }
    });
  });
}

async function connect(m: Extract<ParentToNodes, { kind: 'connect' }>): Promise<void> {
  const address = parseCloudAddress(m.address);
  const td = TrustDomain.parse(m.trustDomain);
  let bundle: TrustBundle;
  if (m.bundleJson !== undefined) {
    // The bare server's own CA (its certificate is an X509-SVID of the same shape as the cloud's).
    bundle = parseBundleJson(td, m.bundleJson);
  } else if (cloudBundle !== undefined) {
    bundle = cloudBundle;
  } else {
    throw new Error('connect: no bundle (join first, or give bundleJson)');
  }
  stats = freshStats();
  const t0 = performance.now();
  const r = await pool(joined.length, m.inFlight, (i) => openSession(joined[i]!, address, m.target, td, bundle));
  send({ kind: 'connected', open: stats.open, errors: r.errors.slice(0, 20).map((e) => e.slice(0, 200)), ms: performance.now() - t0, msPerSession: percentiles(r.ms) });
}

async function disconnect(): Promise<void> {
  const t0 = performance.now();
  const all = [...sessions];
  await Promise.all(
    all.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          const t = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 10_000);
          ws.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          ws.close(1001, 'bench done');
        }),
    ),
  );
  send({ kind: 'disconnected', ms: performance.now() - t0 });
}

function rssKiB(): number {
  return Math.round(process.memoryUsage.rss() / 1024);
}

async function onMessage(m: ParentToNodes): Promise<void> {
  switch (m.kind) {
    case 'join':
      return join(m);
    case 'connect':
      return connect(m);
    case 'expect':
      expectation = { ...m, target: stats.open, count: 0, first: 0, last: 0, seen: new WeakSet() };
      return;
    case 'stats':
      send({ kind: 'stats', stats: { ...stats, closes: { ...stats.closes }, errors: [...stats.errors], rssKiB: rssKiB() } });
      return;
    case 'disconnect':
      return disconnect();
    case 'exit':
      for (const ws of sessions) ws.terminate();
      process.exit(0);
  }
}

if (process.env[HUB_BENCH_CHILD_ENV] !== 'nodes' || typeof process.send !== 'function') {
  console.error('hub-nodes: the simulated nodes of `npm run bench -- hub`; bench/hub.ts starts this process, it is not a bench by itself');
  process.exit(2);
}
process.on('message', (m: ParentToNodes) => {
  onMessage(m).catch((e: unknown) => send({ kind: 'failed', message: errText(e) }));
});
process.on('disconnect', () => process.exit(0));
send({ kind: 'ready' });
