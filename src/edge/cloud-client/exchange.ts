/**
 * One HTTPS request/response with the cloud, bounded: the answer may be at most
 * MAX_CLOUD_RESPONSE_BYTES (declared or streamed), the whole exchange at most `timeoutMs`, and every
 * failure is a typed error. OpenSSL chain failures (the server does not chain to the trusted bundle) map to
 * `cloud-client/untrusted-server`: the handshake failed, so nothing was sent. Shared by the joined edge's
 * CloudClient and the SPIRE-mode session.
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { EdgewardError } from '../../identity/index.js';
import { CloudClientError } from './errors.js';

/** Largest answer the edge reads (the node API's MAX_NODE_API_RESULT_BYTES). */
export const MAX_CLOUD_RESPONSE_BYTES = 4 * 1024 * 1024;

export interface CloudExchange {
  status: number;
  body: Buffer;
  /** The connection that carried the answer. */
  socket: Socket;
}

export interface ExchangeOptions {
  /** `HOST:PORT` for messages. */
  addressText: string;
  timeoutMs: number;
  /** What the server's chain was checked against, for the untrusted-server message ("the pinned bundle"). */
  trustedWhat: string;
  /** Called once per request with the socket assigned to it. */
  onSocket?: (socket: Socket) => void;
  /** Called when the response headers arrive, while the connection is certainly open. */
  onResponse?: (res: IncomingMessage) => void;
}

export function exchange(opts: RequestOptions, body: Buffer | undefined, o: ExchangeOptions): Promise<CloudExchange> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const fail = (e: unknown): void => {
      clearTimeout(deadline);
      if (settled) return;
      settled = true;
      const code = String((e as { code?: unknown } | undefined)?.code ?? '');
      if (e instanceof EdgewardError) reject(e);
      else if (/CERT|VERIFY|SELF_SIGNED|ISSUER/.test(code)) {
        reject(new CloudClientError('cloud-client/untrusted-server', `the server's certificate does not chain to ${o.trustedWhat} (${code})`, { cause: e }));
      } else {
        reject(new CloudClientError('cloud-client/unreachable', `cannot reach the cloud at ${o.addressText}: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
      }
    };
    const tooLarge = (): CloudClientError => new CloudClientError('cloud-client/bad-response', `the cloud's answer is larger than ${MAX_CLOUD_RESPONSE_BYTES} bytes`);
    const req = httpsRequest(opts, (res: IncomingMessage) => {
      o.onResponse?.(res);
      // Captured now: once the answer is read, a kept-alive socket goes back to the pool and res.socket is null.
      const socket = res.socket as Socket;
      const declared = Number(res.headers['content-length'] ?? '0');
      if (declared > MAX_CLOUD_RESPONSE_BYTES) {
        res.destroy();
        fail(tooLarge());
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (b: Buffer) => {
        size += b.length;
        if (size > MAX_CLOUD_RESPONSE_BYTES) {
          res.destroy();
          req.destroy();
          fail(tooLarge());
          return;
        }
        parts.push(b);
      });
      res.on('end', () => {
        clearTimeout(deadline);
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), socket });
      });
      res.on('error', fail);
      res.on('aborted', () => fail(new CloudClientError('cloud-client/unreachable', 'the cloud closed the connection mid-answer')));
    });
    if (o.onSocket !== undefined) req.on('socket', o.onSocket);
    // The whole exchange is bounded, not only idle periods (a server trickling bytes cannot hold it open).
    deadline = setTimeout(() => req.destroy(new CloudClientError('cloud-client/timeout', `no complete answer from the cloud within ${o.timeoutMs} ms`)), o.timeoutMs);
    req.on('error', fail);
    req.end(body);
  });
}
