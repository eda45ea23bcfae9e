/**
 * The baseline server of `npm run bench -- hub` (bench/hub.ts): a bare TLS 1.3 WebSocket server, `ws` over
 * node:https with the cloud's TLS settings (TLS 1.3 only, client certificate requested, no session
 * tickets, an X509-SVID server certificate of the same shape as the cloud's), `perMessageDeflate: false`,
 * and no application logic: it accepts every upgrade on `/v1/hub`, answers pings (ws does), and counts
 * text frames. On `broadcast` it sends one frame to every client and reports when `expect` answers came
 * back. A child that bench/hub.ts spawns with an IPC channel; not a bench by itself.
 */
import { createServer } from 'node:https';
import { constants as cryptoConstants } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';
import { HUB_PATH, MAX_HUB_EDGE_FRAME_BYTES } from '../src/protocol/index.js';

/** Set by bench/hub.ts for its children (a value import of hub-nodes.ts would run that child's code). */
const HUB_BENCH_CHILD_ENV = 'EDGEWARD_BENCH_HUB_CHILD';

export type ParentToBare =
  | { kind: 'start'; certPem: string; keyPem: string }
  | { kind: 'broadcast'; round: number; frame: string; expect: number }
  | { kind: 'count' }
  | { kind: 'exit' };

export type BareToParent =
  | { kind: 'listening'; port: number }
  /** Epoch ms (performance.timeOrigin + performance.now()). */
  | { kind: 'echoed'; round: number; count: number; sentAt: number; sendDoneAt: number; lastAt: number }
  | { kind: 'count'; clients: number }
  | { kind: 'failed'; message: string };

const now = (): number => performance.timeOrigin + performance.now();

function send(m: BareToParent): void {
  process.send!(m);
}

let wss: WebSocketServer | undefined;
let round: { round: number; expect: number; count: number; sentAt: number; sendDoneAt: number } | undefined;

function start(m: Extract<ParentToBare, { kind: 'start' }>): void {
  const server = createServer({
    cert: m.certPem,
    key: m.keyPem,
    minVersion: 'TLSv1.3',
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
    requestCert: true,
    rejectUnauthorized: false,
    noDelay: true,
  });
  server.maxConnections = 1_000_000;
  wss = new WebSocketServer({ server, path: HUB_PATH, perMessageDeflate: false, maxPayload: MAX_HUB_EDGE_FRAME_BYTES });
  wss.on('connection', (ws) => {
    ws.on('error', () => undefined);
    ws.on('message', (_data, isBinary) => {
      if (isBinary || round === undefined) return;
      round.count++;
      if (round.count === round.expect) send({ kind: 'echoed', round: round.round, count: round.count, sentAt: round.sentAt, sendDoneAt: round.sendDoneAt, lastAt: now() });
    });
  });
  server.listen({ host: '127.0.0.1', port: 0 }, () => send({ kind: 'listening', port: (server.address() as AddressInfo).port }));
}

function broadcast(m: Extract<ParentToBare, { kind: 'broadcast' }>): void {
  const sentAt = now();
  round = { round: m.round, expect: m.expect, count: 0, sentAt, sendDoneAt: 0 };
  for (const ws of wss!.clients) ws.send(m.frame);
  round.sendDoneAt = now();
}

if (process.env[HUB_BENCH_CHILD_ENV] !== 'bare' || typeof process.send !== 'function') {
  console.error('hub-bare: the baseline server of `npm run bench -- hub`; bench/hub.ts starts this process, it is not a bench by itself');
  process.exit(2);
}
process.on('message', (m: ParentToBare) => {
  try {
    switch (m.kind) {
      case 'start':
        return start(m);
      case 'broadcast':
        return broadcast(m);
      case 'count':
        return send({ kind: 'count', clients: wss?.clients.size ?? 0 });
      case 'exit':
        process.exit(0);
    }
  } catch (e) {
    send({ kind: 'failed', message: e instanceof Error ? e.message : String(e) });
  }
});
process.on('disconnect', () => process.exit(0));
