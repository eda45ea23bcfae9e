/**
 * The node's device enrolment endpoint (issue #6): HTTPS with the node SVID as the server certificate; a device
 * sends a CSR for a key it made and a proof, the node relays both to the cloud over its node API, checks what the
 * cloud signed, and answers with the device's X509-SVID and the bundle. In the manner of EST (RFC 7030: TLS
 * client authentication with a manufacturer certificate, 3.3.2; re-enrolment with the current certificate, 4.2.2),
 * with JSON bodies.
 *
 *   GET  /v1/device/bundle   the trust domain's SPIFFE bundle (the client pins it by digest before trusting it)
 *   POST /v1/device/enroll   {token, csr}                  a one-time bootstrap token (`edgeward device token`)
 *                            {device, csr} + client cert   a manufacturer certificate (the handshake proved the key)
 *   POST /v1/device/renew    {csr} + client cert           the device's current SVID (mTLS)
 *
 *   200 {device, spiffeId, svidPem, bundle, expiresAt}     | 4xx/5xx {error: {code, message}}
 *
 * Client certificates are requested but not required by TLS (a token enrolment has none); the handler checks
 * them itself: a renewal's chain must be an X509-SVID of the bundle for a device of this node, not revoked; a
 * factory enrolment's chain is relayed for the cloud to check against the model's factory CAs. Everything is
 * bounded (16 KiB bodies, strict JSON, 10 s timeouts, connection cap, per-address and global rate limits) and
 * every refusal is a `security.device_enroll_refused` event. Tokens and keys are never logged.
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { deviceNameFromSpiffeId, deviceSpiffeId, formatDeviceName, isDeviceName } from '../../attestation/index.js';
import {
  bundleToJson,
  certToPem,
  derToPem,
  EdgewardError,
  parseStrictJson,
  validateX509Svid,
  verifyCsr,
  x509AuthoritiesPem,
  type Clock,
  type IdentitySource,
  type TrustDomain,
} from '../../identity/index.js';
import { DEVICE_REFUSAL_HTTP_STATUS, NODE_API_DEVICE_TOKEN_PATTERN, NODE_API_VERSION, type DeviceEnrollMessage, type DeviceRenewMessage, type NodeApiMessage } from '../../protocol/index.js';
import type { EdgeLogger } from '../main.js';
import type { DeviceDirectory } from './directory.js';
import { peerChain } from '../cloud-client/client.js';
import { CloudRefusedError } from '../cloud-client/errors.js';

export const MAX_ENROLL_BODY_BYTES = 16 * 1024;
/** How much of an oversized body is read and discarded so that the 413 reaches the peer. */
const MAX_DRAINED_BYTES = 1024 * 1024;
const MAX_CSR_PEM_CHARS = 12 * 1024;

export interface EnrollLimits {
  readonly maxConnections: number;
  readonly perAddressBurst: number;
  readonly perAddressPerSecond: number;
  readonly globalBurst: number;
  readonly globalPerSecond: number;
  readonly timeoutMs: number;
}

export const DEFAULT_ENROLL_LIMITS: EnrollLimits = Object.freeze({
  maxConnections: 256,
  perAddressBurst: 10,
  perAddressPerSecond: 1,
  globalBurst: 50,
  globalPerSecond: 20,
  timeoutMs: 10_000,
});

export interface EnrollServerOptions {
  listen: { host: string; port: number };
  trustDomain: TrustDomain;
  identity: IdentitySource;
  devices: DeviceDirectory;
  /** One node API call to the cloud (the joined agent passes CloudClient.node). */
  relay(m: DeviceEnrollMessage | DeviceRenewMessage): Promise<NodeApiMessage>;
  clock: Clock;
  logger: EdgeLogger;
  limits?: Partial<EnrollLimits>;
}

export interface EnrollServer {
  start(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  stats(): { listening: { host: string; port: number } | null; enrolled: number; renewed: number; refused: Record<string, number> };
}

/** A refusal: HTTP status, stable code, message for the peer. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly reason: string = code,
  ) {
    super(message);
  }
}



interface Bucket {
  tokens: number;
  at: number;
}

function take(b: Bucket, burst: number, perSecond: number, now: number): boolean {
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) * perSecond) / 1000);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

function csrDer(pem: unknown): Buffer {
  if (typeof pem !== 'string' || pem.length > MAX_CSR_PEM_CHARS) throw new Refusal(400, 'device-enroll/bad-request', 'csr must be a PEM certificate request');
  const m = /^-----BEGIN CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE REQUEST-----\s*$/.exec(pem);
  if (m === null) throw new Refusal(400, 'device-enroll/bad-request', 'csr must be one PEM CERTIFICATE REQUEST');
  const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  try {
    verifyCsr(der);
  } catch (e) {
    throw new Refusal(400, e instanceof EdgewardError ? e.code : 'csr/malformed', 'the CSR is not a valid self-signed PKCS#10 request');
  }
  return der;
}

/**
 * What the device is told when the cloud did not sign: the cloud's own device refusals pass on unchanged (contract
 * "Node API"); a CSR the cloud refused is a 400; the cloud busy (its rate limit) or unreachable is a 503 to retry
 * later; any other refusal of the node itself (banned, unauthenticated) is a 502.
 */
function cloudRefusal(e: unknown): Refusal {
  const code = e instanceof EdgewardError ? String(e.code) : 'unknown';
  const reason = `cloud:${code}`;
  const status = DEVICE_REFUSAL_HTTP_STATUS[code];
  if (status !== undefined) return new Refusal(status, code, e instanceof Error ? e.message.slice(0, 300) : 'refused by the cloud', reason);
  if (code.startsWith('csr/')) return new Refusal(400, code, 'the cloud refused the CSR', reason);
  if (e instanceof CloudRefusedError) {
    if (e.status === 429) return new Refusal(503, 'device-enroll/cloud-busy', 'the cloud is busy; try again later', reason);
    return new Refusal(502, 'device-enroll/cloud-refused', 'the cloud refused this node\'s request', reason);
  }
  return new Refusal(503, 'device-enroll/cloud-unreachable', 'the cloud cannot be reached to sign; try again later', reason);
}

export function createEnrollServer(o: EnrollServerOptions): EnrollServer {
  const limits: EnrollLimits = { ...DEFAULT_ENROLL_LIMITS, ...o.limits };
  const log = o.logger;
  const perAddress = new Map<string, Bucket>();
  const global: Bucket = { tokens: limits.globalBurst, at: o.clock.now() };
  const refused: Record<string, number> = {};
  let enrolled = 0;
  let renewed = 0;
  let server: HttpsServer | undefined;
  let listening: { host: string; port: number } | null = null;
  let unsubscribe: (() => void) | undefined;

  const bundle = () => {
    const b = o.identity.bundles().get(o.trustDomain);
    if (b === undefined) throw new Refusal(503, 'device-enroll/no-bundle', 'the node has no bundle');
    return b;
  };

  const secureContext = () => {
    const svid = o.identity.svid();
    return {
      key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      cert: svid.chainDer.map((d) => derToPem(d, 'CERTIFICATE')).join(''),
      ca: x509AuthoritiesPem(bundle()),
    };
  };

  /**
   * The request body as one strict JSON object. A body over the limit is read on and discarded (never buffered)
   * up to MAX_DRAINED_BYTES, so the peer receives its 413 instead of a connection reset; beyond that the
   * connection is cut.
   */
  const readBody = (req: IncomingMessage): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json') return reject(new Refusal(415, 'device-enroll/bad-content-type', 'the body must be application/json'));
      const tooLarge = (): Refusal => new Refusal(413, 'device-enroll/too-large', `the body is larger than ${MAX_ENROLL_BODY_BYTES} bytes`);
      const declared = Number(req.headers['content-length'] ?? '0');
      if (Number.isFinite(declared) && declared > MAX_DRAINED_BYTES) {
        req.destroy();
        return reject(tooLarge());
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_ENROLL_BODY_BYTES) chunks.push(c);
        else if (size > MAX_DRAINED_BYTES) {
          req.destroy();
          reject(tooLarge());
        }
      });
      req.on('end', () => {
        if (size > MAX_ENROLL_BODY_BYTES) return reject(tooLarge());
        try {
          // fatal UTF-8 decoding: invalid bytes are refused, not replaced
          const v = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)), { maxDepth: 4 });
          if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
          resolve(v as Record<string, unknown>);
        } catch {
          reject(new Refusal(400, 'device-enroll/bad-request', 'the body is not one strict JSON object'));
        }
      });
      req.on('error', () => reject(new Refusal(400, 'device-enroll/bad-request', 'the request was cut')));
    });

  const only = (body: Record<string, unknown>, allowed: readonly string[]): void => {
    for (const k of Object.keys(body)) if (!allowed.includes(k)) throw new Refusal(400, 'device-enroll/bad-request', `unknown field ${JSON.stringify(k.slice(0, 40))}`);
  };

  /** Relay to the cloud and check what it signed: a device SVID of our bundle for `expect` (or a device here), our CSR's key. */
  const relay = async (m: DeviceEnrollMessage | DeviceRenewMessage, expect: string | undefined): Promise<{ device: string; svidPem: string; expiresAt: number; serial: string }> => {
    let reply: NodeApiMessage;
    try {
      reply = await o.relay(m);
    } catch (e) {
      throw cloudRefusal(e);
    }
    if (reply.kind !== 'device.svid') throw new Refusal(502, 'device-enroll/bad-cloud-reply', `unexpected ${reply.kind} from the cloud`);
    if (expect !== undefined && reply.device !== expect) throw new Refusal(502, 'device-enroll/bad-cloud-reply', 'the cloud signed for another device');
    if (o.devices.get(reply.device) === undefined) throw new Refusal(404, 'device/unknown', `${reply.device} is not a device of this node`, 'not-on-this-node');
    let v: ReturnType<typeof validateX509Svid>;
    try {
      v = validateX509Svid(reply.svidChainDer, o.identity.bundles(), o.clock.now());
    } catch (e) {
      throw new Refusal(502, 'device-enroll/bad-cloud-reply', 'the cloud signed an SVID that does not verify against the bundle', `svid:${e instanceof EdgewardError ? e.code : 'invalid'}`);
    }
    if (!v.spiffeId.equals(deviceSpiffeId(o.trustDomain, reply.device))) throw new Refusal(502, 'device-enroll/bad-cloud-reply', 'the cloud signed another SPIFFE ID');
    if (!v.leaf.spki.equals(verifyCsr(m.csr).spki)) throw new Refusal(502, 'device-enroll/bad-cloud-reply', 'the cloud signed another key');
    return { device: reply.device, svidPem: reply.svidChainDer.map(certToPem).join(''), expiresAt: reply.expiresAt, serial: v.leaf.serialHex };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const socket = req.socket as TLSSocket;
    const peer = socket.remoteAddress ?? '?';
    const send = (status: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        connection: 'close',
        ...(status === 429 || status === 503 ? { 'retry-after': '1' } : {}),
      });
      res.end(text);
    };
    try {
      const now = o.clock.now();
      let b = perAddress.get(peer);
      if (b === undefined) {
        if (perAddress.size >= 10_000) perAddress.delete(perAddress.keys().next().value as string);
        perAddress.set(peer, (b = { tokens: limits.perAddressBurst, at: now }));
      }
      if (!take(b, limits.perAddressBurst, limits.perAddressPerSecond, now) || !take(global, limits.globalBurst, limits.globalPerSecond, now)) {
        throw new Refusal(429, 'device-enroll/rate-limited', 'too many requests; slow down');
      }
      const url = req.url ?? '';
      if (url === '/v1/device/bundle') {
        if (req.method !== 'GET') throw new Refusal(405, 'device-enroll/method-not-allowed', 'use GET');
        send(200, JSON.parse(bundleToJson(bundle())) as unknown);
        return;
      }
      if (url !== '/v1/device/enroll' && url !== '/v1/device/renew') throw new Refusal(404, 'device-enroll/not-found', 'no such endpoint');
      if (req.method !== 'POST') throw new Refusal(405, 'device-enroll/method-not-allowed', 'use POST');
      const body = await readBody(req);
      const chain = peerChain(socket.getPeerCertificate(true)); // empty when the client sent no certificate
      if (url === '/v1/device/renew') {
        only(body, ['csr']);
        const csr = csrDer(body['csr']);
        if (chain.length === 0) throw new Refusal(401, 'device-enroll/no-client-certificate', 'renewal needs the current device SVID as the client certificate');
        let device: string;
        let notBefore: number;
        try {
          const v = validateX509Svid(chain, o.identity.bundles(), now);
          device = formatDeviceName(deviceNameFromSpiffeId(v.spiffeId, o.trustDomain));
          notBefore = v.leaf.notBefore;
        } catch {
          throw new Refusal(401, 'device/renew-refused', 'the client certificate is not a valid device SVID of this trust domain');
        }
        const d = o.devices.get(device);
        if (d === undefined) throw new Refusal(404, 'device/unknown', `${device} is not a device of this node`);
        if (d.revokedBefore !== undefined && notBefore < d.revokedBefore) throw new Refusal(403, 'device/revoked', `${device} was revoked; enrol again with a new token`);
        const r = await relay({ v: NODE_API_VERSION, kind: 'device.renew', device, csr, svidChainDer: chain }, device);
        renewed++;
        log.info({ event: 'device.renewed', device: r.device, serial: r.serial, peer }, 'device SVID renewed');
        send(200, { device: r.device, spiffeId: deviceSpiffeId(o.trustDomain, r.device).toString(), svidPem: r.svidPem, bundle: bundleToJson(bundle()), expiresAt: r.expiresAt });
        return;
      }
      // enroll
      let r;
      let method: 'token' | 'factory';
      if (body['token'] !== undefined) {
        only(body, ['token', 'csr']);
        const token = body['token'];
        if (typeof token !== 'string' || !NODE_API_DEVICE_TOKEN_PATTERN.test(token)) throw new Refusal(400, 'device-enroll/bad-request', 'token is not a bootstrap token');
        const csr = csrDer(body['csr']);
        method = 'token';
        r = await relay({ v: NODE_API_VERSION, kind: 'device.enroll', csr, token }, undefined);
      } else {
        only(body, ['device', 'csr']);
        const device = body['device'];
        if (!isDeviceName(device)) throw new Refusal(400, 'device-enroll/bad-request', 'device must be NAMESPACE/NAME (or send a token)');
        const csr = csrDer(body['csr']);
        if (chain.length === 0) throw new Refusal(401, 'device-enroll/no-client-certificate', 'a factory enrolment needs the manufacturer certificate as the client certificate');
        const d = o.devices.get(device);
        if (d === undefined) throw new Refusal(404, 'device/unknown', `${device} is not a device of this node`);
        if (d.spec.factoryIdentity === undefined) throw new Refusal(403, 'device/factory-refused', `${device} has no factory identity; use a bootstrap token`);
        method = 'factory';
        r = await relay({ v: NODE_API_VERSION, kind: 'device.enroll', device, csr, factoryChainDer: chain }, device);
      }
      enrolled++;
      log.info({ event: 'device.enrolled', device: r.device, serial: r.serial, method, peer }, 'device enrolled');
      send(200, { device: r.device, spiffeId: deviceSpiffeId(o.trustDomain, r.device).toString(), svidPem: r.svidPem, bundle: bundleToJson(bundle()), expiresAt: r.expiresAt });
    } catch (e) {
      const f = e instanceof Refusal ? e : new Refusal(500, 'device-enroll/internal', 'internal error', e instanceof EdgewardError ? e.code : 'internal');
      refused[f.code] = (refused[f.code] ?? 0) + 1;
      const line = { event: 'security.device_enroll_refused', peer, path: (req.url ?? '').slice(0, 64), status: f.status, code: f.code, reason: f.reason };
      if (f.status >= 500) log.error(line, 'device enrolment failed');
      else log.warn(line, 'device enrolment refused');
      if (!res.headersSent) send(f.status, { error: { code: f.code, message: f.message } });
    }
  };

  return {
    async start() {
      const srv = createHttpsServer(
        {
          ...secureContext(),
          requestCert: true,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
          handshakeTimeout: limits.timeoutMs,
          headersTimeout: limits.timeoutMs,
          requestTimeout: limits.timeoutMs,
          // how often the two timeouts above are checked (Node's default is 30 s)
          connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(limits.timeoutMs / 2))),
          keepAliveTimeout: 1,
        },
        (req, res) => {
          void handle(req, res);
        },
      );
      // a connection that goes quiet (after the handshake, between requests) is closed too
      srv.timeout = limits.timeoutMs;
      srv.maxConnections = limits.maxConnections;
      srv.maxHeadersCount = 32;
      srv.on('tlsClientError', (e: Error & { code?: string }) => {
        refused['tls-handshake'] = (refused['tls-handshake'] ?? 0) + 1;
        log.warn({ event: 'security.device_enroll_tls_refused', code: e.code ?? 'tls', err: e.message.slice(0, 200) }, 'TLS handshake refused');
      });
      server = srv;
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(o.listen.port, o.listen.host, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      listening = { host: o.listen.host, port: (srv.address() as AddressInfo).port };
      unsubscribe = o.identity.onChange(() => {
        try {
          srv.setSecureContext(secureContext());
        } catch (e) {
          log.error({ event: 'device.enroll_identity_failed', err: e instanceof Error ? e.message : String(e) }, 'the enrolment endpoint could not take the new node SVID');
        }
      });
      log.info({ event: 'device.enroll_started', host: listening.host, port: listening.port }, 'device enrolment endpoint listening (HTTPS)');
      return listening;
    },
    async close() {
      unsubscribe?.();
      const srv = server;
      server = undefined;
      listening = null;
      if (srv === undefined) return;
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
    stats: () => ({ listening, enrolled, renewed, refused: { ...refused } }),
  };
}
