/**
 * The socket port of the EdgeHub (client.ts): one WebSocket connection attempt to the cloud's hub, with
 * the hub's TLS settings. `wsHubConnector` is the production one (`ws`); unit tests drive a fake.
 *
 * TLS 1.3 only; the client certificate is the node SVID; OpenSSL verifies the server's chain to the trust
 * domain's bundle (`rejectUnauthorized`, `ca`), then `checkServerIdentity` runs the hub's cloud check (an
 * X509-SVID of the bundle with the ID `spiffe://TD/edgeward/cloud`, never the host name) inside the
 * handshake, so a failing server gets nothing. No compression (`perMessageDeflate: false`: no
 * decompression bombs, less memory per session), no redirects, frames bounded by `maxPayload`.
 */
import { WebSocket, type ClientOptions } from 'ws';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { PeerCertificate } from 'node:tls';
import { peerChain } from '../cloud-client/client.js';

/** Largest HTTP refusal body read (a node API error message). */
export const MAX_HUB_REFUSAL_BYTES = 4096;

/** How to reach and authenticate the cloud for one connection attempt. */
export interface HubConnectOptions {
  /** `wss://HOST:PORT/v1/hub`. */
  readonly url: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** The trust domain's bundle authorities (OpenSSL verifies the server's chain to them). */
  readonly caPem: string;
  /**
   * The cloud check, called inside the handshake with the server's chain (leaf first): undefined when it
   * is `spiffe://TD/edgeward/cloud` of the bundle, else the refusal (the handshake is then aborted).
   */
  verifyServer(chain: readonly Buffer[]): Error | undefined;
  readonly maxPayload: number;
  readonly handshakeTimeoutMs: number;
}

export interface HubSocketEvents {
  /** The upgrade completed (after `verifyServer` accepted the server). */
  open(): void;
  message(data: Buffer | string, isBinary: boolean): void;
  /** A ping or a pong arrived. */
  activity(): void;
  /** The server answered the upgrade with an HTTP status (a refusal) and this body (bounded). */
  refused(status: number, body: Buffer): void;
  error(e: unknown): void;
  /** Always called once at the end, whatever happened before. */
  close(code: number, reason: string): void;
}

export interface HubSocket {
  send(text: string): void;
  ping(): void;
  close(code: number, reason: string): void;
  terminate(): void;
}

export type HubConnector = (o: HubConnectOptions, on: HubSocketEvents) => HubSocket;

/** The production connector: a `ws` client with the hub's TLS settings. */
export const wsHubConnector: HubConnector = (o, on) => {
  // Node's checkServerIdentity returns the refusal (an Error) or undefined; @types/ws types it as boolean.
  const checkServerIdentity = ((_host: string, cert: PeerCertificate): Error | undefined => o.verifyServer(peerChain(cert))) as unknown as ClientOptions['checkServerIdentity'];
  const ws = new WebSocket(o.url, {
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    cert: o.certPem,
    key: o.keyPem,
    ca: o.caPem,
    rejectUnauthorized: true,
    // The host name is only SNI: the server's identity is its SPIFFE ID (verifyServer).
    checkServerIdentity,
    maxPayload: o.maxPayload,
    perMessageDeflate: false,
    handshakeTimeout: o.handshakeTimeoutMs,
    followRedirects: false,
    autoPong: true,
    skipUTF8Validation: false,
  });
  let closed = false;
  ws.on('open', () => on.open());
  ws.on('message', (data, isBinary) => {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    on.message(buf, isBinary);
  });
  ws.on('ping', () => on.activity());
  ws.on('pong', () => on.activity());
  ws.on('error', (e) => on.error(e));
  ws.on('close', (code, reason) => {
    if (closed) return;
    closed = true;
    on.close(code, reason.toString('utf8').slice(0, 123));
  });
  ws.on('unexpected-response', (req: ClientRequest, res: IncomingMessage) => {
    // A refused upgrade: read the (small) error body, then drop the connection.
    const parts: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      on.refused(res.statusCode ?? 0, Buffer.concat(parts));
      res.destroy();
      req.destroy();
      ws.terminate();
    };
    const guard = setTimeout(finish, 5_000);
    guard.unref();
    res.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_HUB_REFUSAL_BYTES) {
        parts.length = 0;
        finish();
        return;
      }
      parts.push(b);
    });
    res.on('end', finish);
    res.on('error', finish);
    res.on('close', finish);
  });
  return {
    send: (text) => ws.send(text, () => {}),
    ping: () => {
      try {
        ws.ping();
      } catch {
        // not open (closing): the close event ends the session
      }
    },
    close: (code, reason) => {
      try {
        ws.close(code, reason);
      } catch {
        ws.terminate();
      }
    },
    terminate: () => ws.terminate(),
  };
};
