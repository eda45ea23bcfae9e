/**
* Test rig (test/integration/hub-sync-recovery.test.ts): the REAL cloud ResourceStore (SQLite) + REAL CloudHub, and the REAL EdgeHub + REAL edge store
 * (sealed SQLite), connected by a plain ws:// WebSocket (the node is named by a header, as in
 * test/unit/cloud/hub-harness.ts; the edge's cloud check runs on a real cloud SVID chain).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { createCloudHub, type CloudHub } from '../../src/cloud/hub/index.js';
import { createResourceStore } from '../../src/cloud/index.js';
import { createEdgeHub, openEdgeHubStore, type EdgeHub, type EdgeHubStore } from '../../src/edge/hub/index.js';
import { realTimers } from '../../src/edge/svid/timers.js';
import { BundleSet, CaManager, generateP256, ManualClock, MemoryKeyStore, SpiffeId, TrustDomain, type IdentitySource, type SvidWithKey } from '../../src/identity/index.js';
import { parseResourceDocument } from '../../src/protocol/index.js';
import { eventually } from '../helpers/wait.js';

export const TD = TrustDomain.parse('rev.example');
const HOUR = 3_600_000;

export type Log = Array<Record<string, unknown>>;
const logger = (logs: Log) => {
  const f = (o: Record<string, unknown>, msg: string) => void (logs.length < 20_000 && logs.push({ ...o, msg }));
  return { debug: f, info: f, warn: f, error: f };
};

export const until = <T>(fn: () => T | undefined | false, what: string, timeoutMs = 15_000): Promise<T> => eventually(what, fn, { timeoutMs });
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function cm(name: string, nodes: string[], v = 'x') {
  return parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name, nodes }, data: { k: v } });
}

export async function startCloud() {
  const dir = mkdtempSync(join(tmpdir(), 'rev-cloud-'));
  const clock = { now: () => Date.now() };
  const store = createResourceStore(join(dir, 'resources.db'), { files: hostStateFiles, clock });
  const logs: Log = [];
  const hub: CloudHub = createCloudHub({ store, logger: logger(logs), clock, authenticate: (chain) => ({ nodeName: chain[0]!.toString('utf8') }), sweepTimer: false });
  const server: Server = createServer((_q, r) => void r.writeHead(404).end());
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    const node = String(req.headers['x-node']);
    const refusal = hub.handleUpgrade(req, socket, head, node, { chainDer: [Buffer.from(node)], notAfter: Date.now() + HOUR });
    if (refusal !== undefined) {
      const body = JSON.stringify({ v: 1, kind: 'error', code: refusal.code, message: refusal.message });
      socket.end(`HTTP/1.1 ${refusal.status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    dir,
    store,
    hub,
    logs,
    port,
    async close() {
      await hub.close();
      await new Promise<void>((r) => server.close(() => r()));
      store.close();
    },
  };
}

export function makeIdentity(node: string): { identity: IdentitySource; cloudChain: () => Buffer[] } {
  const clock = new ManualClock(Date.now() - 60_000);
  const ca = new CaManager({ trustDomain: TD, caTtlMs: 48 * HOUR, maxX509SvidTtlMs: 4 * HOUR }, new MemoryKeyStore());
  ca.tick(clock.now());
  const svid = (id: SpiffeId): SvidWithKey => {
    const k = generateP256();
    const issued = ca.issueX509Svid({ spiffeId: id, spki: k.spki, ttlMs: 3 * HOUR, now: clock.now() });
    return { spiffeId: id, chainDer: [issued.der, ...ca.intermediates(clock.now())], privateKey: k.privateKey, notAfter: issued.notAfter, serialHex: issued.serialHex };
  };
  const mine = svid(SpiffeId.parse(`spiffe://${TD.name}/edgeward/node/${node}`));
  const cloud = svid(SpiffeId.parse(`spiffe://${TD.name}/edgeward/cloud`));
  return {
    identity: { svid: () => mine, bundles: () => BundleSet.of([ca.bundle()]), onChange: () => () => {}, close: () => {} },
    cloudChain: () => cloud.chainDer.map((d) => Buffer.from(d)),
  };
}

export function edgeStoreDir(): string {
  return join(mkdtempSync(join(tmpdir(), 'rev-edge-')), 'hub');
}

export function openEdgeStore(dir: string, dek: Buffer, logs: Log = []): EdgeHubStore {
  return openEdgeHubStore({ dir, files: hostStateFiles, dek, clock: { now: () => Date.now() }, logger: logger(logs) });
}

export function startEdge(node: string, port: number, store: EdgeHubStore, id = makeIdentity(node)) {
  const logs: Log = [];
  const closes: number[] = [];
  const hub: EdgeHub = createEdgeHub({
    address: { host: '127.0.0.1', port, text: `127.0.0.1:${port}` },
    trustDomain: TD,
    identity: id.identity,
    store,
    clock: { now: () => Date.now() },
    timers: realTimers,
    logger: logger(logs) as never,
    random: () => 0.05, // short backoff
    connector: (o, on) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/hub`, { headers: { 'x-node': node }, perMessageDeflate: false, maxPayload: o.maxPayload });
      ws.on('open', () => {
        if (o.verifyServer(id.cloudChain()) !== undefined) throw new Error('cloud check failed');
        on.open();
      });
      ws.on('message', (d: Buffer, b: boolean) => on.message(d, b));
      ws.on('ping', () => on.activity());
      ws.on('pong', () => on.activity());
      ws.on('error', (e) => on.error(e));
      ws.on('unexpected-response', (_q, res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          on.refused(res.statusCode ?? 0, Buffer.concat(parts));
          ws.terminate();
        });
      });
      let done = false;
      ws.on('close', (code, reason) => {
        if (done) return;
        done = true;
        closes.push(code);
        on.close(code, reason.toString());
      });
      return {
        send: (t) => ws.send(t, () => {}),
        ping: () => {
          try {
            ws.ping();
          } catch {
            /* closing */
          }
        },
        close: (c, r) => ws.close(c, r),
        terminate: () => ws.terminate(),
      };
    },
  });
  hub.start();
  return { hub, logs, closes };
}

export const newDek = () => randomBytes(32);
