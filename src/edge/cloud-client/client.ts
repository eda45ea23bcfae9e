/**
 * The edge's client of the cloud node API (contract: HTTPS, TLS 1.3 only, one listener):
 *
 *   GET  /v1/bundle  bootstrap: the bundle is trusted only if its digest equals the pinned `sha256:HEX`
 *                    (compared in constant time); no trust on first use, nothing else is sent before.
 *   POST /v1/attest  attest.begin / attest.response (no client certificate).
 *   POST /v1/node    renew / svids / entries / jwt requests over mTLS with the node SVID.
 *
 * After the bootstrap every connection checks the server's chain as an X509-SVID of the pinned bundle
 * whose SPIFFE ID is exactly `spiffe://TD/edgeward/cloud` (by ID, never by host name) inside the TLS
 * handshake (`checkServerIdentity` with `rejectUnauthorized`): a failing peer is destroyed before the
 * handshake completes, so no request line or body is ever written to it (TLSSocket buffers writes until
 * the connection is secure). TLS sessions are not cached, so every connection is checked in full.
 */
import { Agent, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { createSecureContext, type DetailedPeerCertificate, type PeerCertificate, type SecureContext } from 'node:tls';
import { timingSafeEqual, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bundleDigest,
  certIssuedBy,
  derToPem,
  EdgewardError,
  parseBundleJson,
  parseCertificate,
  pkcs8FromPrivateKey,
  SpiffeId,
  validateX509Svid,
  type Clock,
  type ParsedCertificate,
  type TrustBundle,
  type TrustDomain,
  type X509BundleSource,
} from '../../identity/index.js';
import {
  decodeCloudToEdge,
  encodeNodeApiMessage,
  type CloudToEdgeMessage,
  type EdgeToCloudMessage,
} from '../../protocol/index.js';
import { CloudClientError, CloudRefusedError, JoinError } from './errors.js';
import { exchange } from './exchange.js';
export { MAX_CLOUD_RESPONSE_BYTES } from './exchange.js';

export const DEFAULT_CLOUD_TIMEOUT_MS = 15_000;
const MAX_PEER_CHAIN = 10;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const TLS_VERSIONS = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

/**
 * The bootstrap's TLS context (no client certificate, nothing verified: the digest check decides). Built
 * once per process: building a context (SSL_CTX_new and its settings) costs more than the GET itself.
 */
let bootstrapContext: SecureContext | undefined;
function bootstrapSecureContext(): SecureContext {
  bootstrapContext ??= createSecureContext({ ...TLS_VERSIONS });
  return bootstrapContext;
}

export interface CloudAddress {
  host: string;
  port: number;
  /** `HOST:PORT` as given (IPv6 in brackets). */
  text: string;
}

/** Parse `HOST:PORT` (`[v6]:PORT` for IPv6). */
export function parseCloudAddress(value: string): CloudAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]{1,253})):([1-9][0-9]{0,4})$/.exec(value ?? '');
  const port = m === null ? NaN : Number(m[3]);
  const host = m === null ? '' : (m[1] ?? m[2] ?? '');
  if (m === null || port > 65535 || (m[1] !== undefined && isIP(host) !== 6)) {
    throw new CloudClientError('cloud-client/bad-address', 'the cloud address must be HOST:PORT (e.g. 10.0.0.5:8443 or [::1]:8443)');
  }
  return { host, port, text: value };
}

/** Check a pinned digest's syntax: `sha256:` + 64 lower-case hex digits. */
export function parseBundleDigest(value: string): string {
  if (typeof value !== 'string' || !DIGEST.test(value)) throw new JoinError('join/bad-input', '--bundle-digest must be sha256: followed by 64 lower-case hex digits');
  return value;
}

/** Constant-time equality of two digests (both `sha256:HEX`). */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The cloud's SPIFFE ID in trust domain `td`. */
export function cloudSpiffeId(td: TrustDomain): SpiffeId {
  return SpiffeId.fromSegments(td, 'edgeward', 'cloud');
}

/** The node's credentials for mTLS: its X509-SVID chain (leaf first) and private key. */
export interface NodeCredentials {
  chainDer: readonly Buffer[];
  privateKey: KeyObject;
}

export interface CloudClientOptions {
  address: CloudAddress;
  clock: Clock;
  /** The pinned bundle (after the bootstrap); absent until `fetchBundle`. */
  bundle?: TrustBundle | undefined;
  timeoutMs?: number;
}

/** The peer's certificate chain as TLS reports it, leaf first, DER, bounded (stops at a self-reference). */
export function peerChain(cert: PeerCertificate | DetailedPeerCertificate | undefined): Buffer[] {
  const out: Buffer[] = [];
  let c = cert as DetailedPeerCertificate | undefined;
  while (c !== undefined && c !== null && Buffer.isBuffer(c.raw) && out.length < MAX_PEER_CHAIN) {
    out.push(c.raw);
    const next = c.issuerCertificate;
    if (next === undefined || next === null || next === c || (Buffer.isBuffer(next.raw) && next.raw.equals(c.raw))) break;
    c = next;
  }
  return out;
}

/** Parsed X.509 authorities per bundle (bundles are immutable, so each is parsed once). */
const bundleAuthorities = new WeakMap<TrustBundle, readonly ParsedCertificate[]>();

function authoritiesOf(bundle: TrustBundle): readonly ParsedCertificate[] {
  let out = bundleAuthorities.get(bundle);
  if (out === undefined) {
    const parsed: ParsedCertificate[] = [];
    for (const der of bundle.x509Authorities) {
      try {
        parsed.push(parseCertificate(der));
      } catch {
        // an authority that does not parse issues nothing a validator accepts
      }
    }
    out = parsed;
    bundleAuthorities.set(bundle, out);
  }
  return out;
}

/**
 * What the mTLS connections present and trust, for a node SVID chain and the cloud's bundle.
 *
 * The cloud validates node SVIDs against this same bundle, whose every CA is a trust anchor (X509-SVID
 * validation), and retires a signing CA only once everything it signed has expired; RFC 8446 4.4.2 lets a
 * sender omit certificates the peer is known to hold. So when an authority of the bundle issued the leaf,
 * only the leaf is sent: each certificate the cloud receives costs it a decode and a chain-building
 * attempt in the handshake. OpenSSL completes a certificate that comes without its chain from the
 * context's `ca` store (and would then send the bundle's root too), so that context trusts only the
 * bundle's self-signed authorities: OpenSSL's verification of the cloud (no partial chains) ends at one of
 * them in any case, the cloud sends its signing CA, and the cloud's identity is checked against the whole
 * bundle by `#checkChain`. Otherwise the whole chain is presented, with the whole bundle as `ca`.
 */
function mtlsMaterial(chainDer: readonly Buffer[], bundle: TrustBundle, caPem: string): { certPem: string; caPem: string } {
  const pem = (ders: readonly Buffer[]): string => ders.map((d) => derToPem(d, 'CERTIFICATE')).join('');
  if (chainDer.length > 1) {
    try {
      const leaf = parseCertificate(chainDer[0]!);
      const authorities = authoritiesOf(bundle);
      const roots = authorities.filter((a) => a.issuerRaw.equals(a.subjectRaw));
      if (roots.length > 0 && authorities.some((a) => certIssuedBy(leaf, a))) {
        return { certPem: pem([chainDer[0]!]), caPem: pem(roots.map((r) => r.raw)) };
      }
    } catch {
      // not parseable here: present it as it is and let the cloud refuse it
    }
  }
  return { certPem: pem(chainDer), caPem };
}

/**
 * The server's chain must be an X509-SVID of `bundles` in trust domain `td` whose SPIFFE ID is exactly
 * `spiffe://TD/edgeward/cloud` (by ID, never by host name). Returns the refusal, or undefined when it is the cloud.
 */
export function checkCloudServer(chain: readonly Buffer[], bundles: X509BundleSource, td: TrustDomain, now: number): CloudClientError | undefined {
  try {
    const v = validateX509Svid(chain, bundles, now, { trustDomain: td });
    if (!v.spiffeId.equals(cloudSpiffeId(td))) {
      return new CloudClientError('cloud-client/untrusted-server', `the server is ${v.spiffeId.toString().slice(0, 200)}, not the cloud`);
    }
    return undefined;
  } catch (e) {
    const code = e instanceof EdgewardError ? e.code : 'unknown';
    return new CloudClientError('cloud-client/untrusted-server', `the server's certificate is not the cloud's X509-SVID (${code})`, { cause: e });
  }
}

/** A node API answer: the message, CloudRefusedError for the cloud's `error`, CloudClientError for anything malformed. */
export function decodeCloudReply(path: string, status: number, body: Buffer): CloudToEdgeMessage {
  let reply: CloudToEdgeMessage;
  try {
    reply = decodeCloudToEdge(body);
  } catch (e) {
    throw new CloudClientError('cloud-client/bad-response', `the cloud's answer to ${path} is not a node API message (HTTP ${status})`, { cause: e });
  }
  if (reply.kind === 'error') throw new CloudRefusedError(reply.code, reply.message, status);
  if (status !== 200) throw new CloudClientError('cloud-client/bad-response', `HTTP ${status} without an error message`);
  return reply;
}

export class CloudClient {
  readonly address: CloudAddress;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  #bundle: TrustBundle | undefined;
  #caPem = '';
  #creds: { chainDer: readonly Buffer[]; keyPem: string } | undefined;
  /**
   * TLS contexts built once per bundle and per (bundle, credentials) instead of once per connection (a
   * context parses the CA, certificate and key PEM). Dropped when the bundle or the credentials change.
   */
  #verifyContext: SecureContext | undefined;
  #mtls: { certPem: string; context: SecureContext } | undefined;
  #agent: Agent;
  #closed = false;

  constructor(opts: CloudClientOptions) {
    this.address = opts.address;
    this.#clock = opts.clock;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_CLOUD_TIMEOUT_MS;
    this.#agent = new Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 2, maxCachedSessions: 0 });
    if (opts.bundle !== undefined) this.setBundle(opts.bundle);
  }

  get bundle(): TrustBundle | undefined {
    return this.#bundle;
  }

  /** Trust this bundle from now on (after a renewal brought a newer one). */
  setBundle(b: TrustBundle): void {
    this.#bundle = b;
    this.#caPem = b.x509Authorities.map((d) => derToPem(d, 'CERTIFICATE')).join('');
    this.#verifyContext = undefined;
    this.#mtls = undefined;
  }

  /** Present these credentials on /v1/node calls from now on. */
  setCredentials(c: NodeCredentials): void {
    this.#creds = {
      chainDer: Object.freeze([...c.chainDer]),
      keyPem: derToPem(pkcs8FromPrivateKey(c.privateKey), 'PRIVATE KEY'),
    };
    this.#mtls = undefined;
  }

  /**
   * Bootstrap: fetch the cloud's bundle and accept it only if its digest is `pinned`. The trust domain is
   * read from the server certificate's SPIFFE ID; it is part of the digest, so it is pinned too.
   */
  async fetchBundle(pinned: string): Promise<TrustBundle> {
    parseBundleDigest(pinned);
    const { status, body, chain } = await this.#send('GET', '/v1/bundle', undefined, { verify: false });
    if (status !== 200) throw new CloudClientError('cloud-client/bad-response', `GET /v1/bundle answered HTTP ${status}`);
    let td: TrustDomain;
    let bundle: TrustBundle;
    try {
      const leaf = parseCertificate(chain[0] ?? Buffer.alloc(0));
      const id = SpiffeId.parse(leaf.uris[0] ?? '');
      td = id.trustDomain;
      bundle = parseBundleJson(td, body);
    } catch (e) {
      // Whatever the server sent, without the pinned digest it is not the cloud's bundle.
      throw new JoinError('join/bundle-digest-mismatch', 'the cloud did not present a bundle with the pinned digest', { cause: e });
    }
    if (!digestsEqual(bundleDigest(bundle), pinned)) {
      throw new JoinError('join/bundle-digest-mismatch', 'the cloud bundle does not match --bundle-digest (wrong cloud, or a man in the middle)', {
        detail: { trust_domain: td.name },
      });
    }
    // The server we talked to must be the cloud of that bundle, as every later connection will check.
    const err = this.#checkChain(chain, bundle);
    if (err !== undefined) throw err;
    this.setBundle(bundle);
    return bundle;
  }

  /** POST /v1/attest (attest.begin / attest.response). */
  attest(message: EdgeToCloudMessage): Promise<CloudToEdgeMessage> {
    return this.#call('/v1/attest', message, false);
  }

  /** POST /v1/node over mTLS with the node SVID. */
  node(message: EdgeToCloudMessage): Promise<CloudToEdgeMessage> {
    return this.#call('/v1/node', message, true);
  }

  close(): void {
    this.#closed = true;
    this.#agent.destroy();
  }

  #checkChain(chain: readonly Buffer[], bundle: TrustBundle): CloudClientError | undefined {
    return checkCloudServer(chain, bundle, bundle.trustDomain, this.#clock.now());
  }

  async #call(path: string, message: EdgeToCloudMessage, mtls: boolean): Promise<CloudToEdgeMessage> {
    if (this.#bundle === undefined) throw new CloudClientError('cloud-client/not-ready', 'the cloud bundle is not known yet');
    if (mtls && this.#creds === undefined) throw new CloudClientError('cloud-client/not-ready', 'no node SVID to authenticate with');
    const body = Buffer.from(encodeNodeApiMessage(message), 'utf8');
    const { status, body: answer } = await this.#send('POST', path, body, { verify: true, mtls });
    return decodeCloudReply(path, status, answer);
  }

  #send(
    method: 'GET' | 'POST',
    path: string,
    body: Buffer | undefined,
    o: { verify: boolean; mtls?: boolean },
  ): Promise<{ status: number; body: Buffer; chain: Buffer[] }> {
    if (this.#closed) return Promise.reject(new CloudClientError('cloud-client/unreachable', 'the client is closed'));
    // node:https hands `secureContext` to tls.connect (its RequestOptions type does not list it).
    const opts: RequestOptions & { secureContext?: SecureContext } = {
      host: this.address.host,
      port: this.address.port,
      method,
      path,
      ...TLS_VERSIONS,
      headers: body === undefined ? { accept: 'application/json' } : { 'content-type': 'application/json', 'content-length': String(body.length), accept: 'application/json' },
    };
    if (isIP(this.address.host) === 0) opts.servername = this.address.host;
    if (o.verify) {
      const bundle = this.#bundle!;
      opts.agent = this.#agent;
      // `ca`, `cert` and `key` stay in the options although the prebuilt `secureContext` is what TLS uses:
      // the agent keys its pooled connections by them, so a connection is only reused for the same
      // bundle and the same credentials (never an mTLS one for an anonymous call or the reverse).
      opts.ca = this.#caPem;
      opts.rejectUnauthorized = true;
      // Called inside the handshake after OpenSSL verified the chain to the bundle; an error destroys the
      // socket before 'secureConnect', so the buffered request is never sent.
      opts.checkServerIdentity = (_host, cert) => this.#checkChain(peerChain(cert), bundle);
      if (o.mtls === true && this.#creds !== undefined) {
        if (this.#mtls === undefined) {
          const m = mtlsMaterial(this.#creds.chainDer, bundle, this.#caPem);
          this.#mtls = { certPem: m.certPem, context: createSecureContext({ ...TLS_VERSIONS, ca: m.caPem, cert: m.certPem, key: this.#creds.keyPem }) };
        }
        opts.cert = this.#mtls.certPem;
        opts.key = this.#creds.keyPem;
        opts.secureContext = this.#mtls.context;
      } else {
        this.#verifyContext ??= createSecureContext({ ...TLS_VERSIONS, ca: this.#caPem });
        opts.secureContext = this.#verifyContext;
      }
    } else {
      // Bootstrap only: a GET without a body; nothing the answer says is trusted before the digest check.
      opts.agent = false;
      opts.rejectUnauthorized = false;
      opts.secureContext = bootstrapSecureContext();
    }
    let chain: Buffer[] = [];
    const onResponse = o.verify
      ? undefined
      : (res: IncomingMessage): void => {
          chain = peerChain((res.socket as unknown as { getPeerCertificate(d: boolean): DetailedPeerCertificate }).getPeerCertificate(true));
        };
    return exchange(opts, body, { addressText: this.address.text, timeoutMs: this.#timeoutMs, trustedWhat: 'the pinned bundle', ...(onResponse === undefined ? {} : { onResponse }) }).then(
      (r) => ({ status: r.status, body: r.body, chain }),
    );
  }
}
