/**
 * The SPIRE-mode edge's HTTPS client of the cloud node API (issue #4 "Bring your own SPIRE").
 *
 * Same transport as the joined agent's CloudClient (TLS 1.3 only, `POST /v1/node` over mTLS), but all
 * trust material comes from the identity port (`IdentitySource`, here the SPIRE agent's Workload API):
 * - the client certificate is the node SVID `spiffe://TD/edgeward/node/NAME` the source holds now;
 * - the server must present an X509-SVID that chains to the trust domain's bundle from the same source and
 *   whose ID is exactly `spiffe://TD/edgeward/cloud` (by ID, never by host name), checked inside the
 *   handshake (`checkServerIdentity` with `rejectUnauthorized`), so nothing is sent to any other server.
 *   No digest pinning: the bundle comes from the local, kernel-attested SPIRE agent.
 * - `rebuild()` (on rotation) retires the connection pool so that the next request presents the new SVID
 *   and trusts the new bundle; TLS sessions are not cached (every connection is checked in full).
 * - A connection on which a request succeeded that the cloud closes (a ban or an eviction closes them at
 *   once, or the keep-alive timeout) is reported through `onSessionClosed`, so the agent can contact the
 *   cloud again and learn why, instead of waiting for its next period.
 */
import { Agent, type RequestOptions } from 'node:https';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import {
  derToPem,
  pkcs8FromPrivateKey,
  type Clock,
  type IdentitySource,
  type TrustDomain,
} from '../../identity/index.js';
import { encodeNodeApiMessage, type CloudToEdgeMessage, type EdgeToCloudMessage } from '../../protocol/index.js';
import { checkCloudServer, decodeCloudReply, peerChain, type CloudAddress } from '../cloud-client/client.js';
import { exchange } from '../cloud-client/exchange.js';
import { CloudClientError } from '../cloud-client/errors.js';


export interface SpireCloudClientOptions {
  address: CloudAddress;
  /** The node SVID and the bundles (SPIRE's Workload API). */
  source: IdentitySource;
  trustDomain: TrustDomain;
  clock: Clock;
  timeoutMs: number;
  /** The cloud closed a connection on which a request had succeeded. */
  onSessionClosed?: () => void;
}

interface Material {
  agent: Agent;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export class SpireCloudClient {
  readonly address: CloudAddress;
  readonly #o: SpireCloudClientOptions;
  #material: Material | undefined;
  /** Sockets a request succeeded on (so their closing ends a session). */
  readonly #authed = new WeakSet<Socket>();
  readonly #watched = new WeakSet<Socket>();
  #closed = false;

  constructor(o: SpireCloudClientOptions) {
    this.address = o.address;
    this.#o = o;
  }

  /** Drop the pooled connections: the next request uses the source's current SVID and bundle. */
  rebuild(): void {
    const m = this.#material;
    this.#material = undefined;
    m?.agent.destroy();
  }

  close(): void {
    this.#closed = true;
    this.rebuild();
  }

  /** POST /v1/node over mTLS with the node SVID. Throws CloudRefusedError (the cloud said no) or CloudClientError. */
  async node(message: EdgeToCloudMessage): Promise<CloudToEdgeMessage> {
    const body = Buffer.from(encodeNodeApiMessage(message), 'utf8');
    const { status, body: answer } = await this.#send('/v1/node', body);
    return decodeCloudReply('/v1/node', status, answer);
  }

  #materials(): Material {
    if (this.#material !== undefined) return this.#material;
    const svid = this.#o.source.svid(); // throws (typed) when the SVID expired and SPIRE sent no new one
    const bundle = this.#o.source.bundles().get(this.#o.trustDomain);
    if (bundle === undefined) throw new CloudClientError('cloud-client/not-ready', `no bundle for trust domain ${this.#o.trustDomain.name} from the Workload API`);
    this.#material = {
      agent: new Agent({ keepAlive: true, maxSockets: 4, maxFreeSockets: 1, maxCachedSessions: 0 }),
      caPem: bundle.x509Authorities.map((d) => derToPem(d, 'CERTIFICATE')).join(''),
      certPem: svid.chainDer.map((d) => derToPem(Buffer.from(d), 'CERTIFICATE')).join(''),
      keyPem: derToPem(pkcs8FromPrivateKey(svid.privateKey), 'PRIVATE KEY'),
    };
    return this.#material;
  }

  /** The server's chain must be an X509-SVID of the trust domain's bundle with the cloud's exact ID. */
  #checkServer(chain: readonly Buffer[]): Error | undefined {
    return checkCloudServer(chain, this.#o.source.bundles(), this.#o.trustDomain, this.#o.clock.now());
  }

  #send(path: string, body: Buffer): Promise<{ status: number; body: Buffer }> {
    if (this.#closed) return Promise.reject(new CloudClientError('cloud-client/unreachable', 'the client is closed'));
    let m: Material;
    try {
      m = this.#materials();
    } catch (e) {
      return Promise.reject(e);
    }
    const opts: RequestOptions = {
      host: this.address.host,
      port: this.address.port,
      method: 'POST',
      path,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      agent: m.agent,
      ca: m.caPem,
      cert: m.certPem,
      key: m.keyPem,
      rejectUnauthorized: true,
      // Inside the handshake, after OpenSSL verified the chain to the bundle: an error destroys the socket
      // before 'secureConnect', so the buffered request is never sent.
      checkServerIdentity: (_host, cert) => this.#checkServer(peerChain(cert)),
      headers: { 'content-type': 'application/json', 'content-length': String(body.length), accept: 'application/json' },
    };
    if (isIP(this.address.host) === 0) opts.servername = this.address.host;
    return exchange(opts, body, {
      addressText: this.address.text,
      timeoutMs: this.#o.timeoutMs,
      trustedWhat: 'the SPIRE bundle',
      onSocket: (s: Socket) => {
        if (this.#watched.has(s)) return;
        this.#watched.add(s);
        s.once('close', () => {
          // Only the live pool's sockets count: retired pools (rotation, close) are closed by us.
          if (this.#closed || this.#material?.agent !== m.agent || !this.#authed.has(s)) return;
          this.#o.onSessionClosed?.();
        });
      },
    }).then(({ status, body: answer, socket }) => {
      if (status === 200) this.#authed.add(socket);
      return { status, body: answer };
    });
  }
}
