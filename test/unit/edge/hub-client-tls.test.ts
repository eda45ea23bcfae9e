/**
 * EdgeHub over a real `ws` connection inside real TLS 1.3 on 127.0.0.1 (contract #5 "Transport"): mutual
 * TLS with the node SVID, the server checked by SPIFFE ID, the session against a minimal stand-in cloud,
 * the edge store a real SQLite file. The cloud side here is a bare WebSocketServer, not CloudHub (that is
 * test/integration/edge-hub.test.ts): it lets the tests misbehave on purpose.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  BundleSet,
  CaManager,
  derToPem,
  generateP256,
  MemoryKeyStore,
  parseCertificate,
  pkcs8FromPrivateKey,
  SpiffeId,
  TrustDomain,
  type IdentitySource,
  type SvidWithKey,
} from '../../../src/identity/index.js';
import { decodeEdgeToCloudHub, MAX_HUB_CLOUD_FRAME_BYTES, type EdgeToCloudHubMessage } from '../../../src/protocol/index.js';
import { createEdgeHub, openEdgeHubStore, type EdgeHub, type EdgeHubStore } from '../../../src/edge/hub/index.js';
import { realTimers } from '../../../src/edge/index.js';
import { hostStateFiles } from '../../../src/cli/host/index.js';
import { tempDir } from '../../helpers/index.js';

const TD = TrustDomain.parse('tls-hub.example');
const HOUR = 3_600_000;
const clock = { now: () => Date.now() };

function makeCa(td: TrustDomain) {
  const ca = new CaManager({ trustDomain: td, caTtlMs: 48 * HOUR, maxX509SvidTtlMs: 4 * HOUR }, new MemoryKeyStore());
  ca.tick(Date.now());
  const svid = (id: string): SvidWithKey => {
    const k = generateP256();
    const spiffeId = SpiffeId.parse(id);
    const issued = ca.issueX509Svid({ spiffeId, spki: k.spki, ttlMs: HOUR, now: Date.now() });
    return { spiffeId, chainDer: [issued.der, ...ca.intermediates(Date.now())], privateKey: k.privateKey, notAfter: issued.notAfter, serialHex: issued.serialHex };
  };
  return { ca, svid };
}

const pem = (s: SvidWithKey) => ({
  cert: s.chainDer.map((d) => derToPem(Buffer.from(d), 'CERTIFICATE')).join(''),
  key: derToPem(pkcs8FromPrivateKey(s.privateKey), 'PRIVATE KEY'),
});

interface Cloud {
  server: Server;
  port: number;
  /** Frames received per connection, decoded strictly. */
  frames: EdgeToCloudHubMessage[];
  peers: string[];
  closes: number[];
  connections: WebSocket[];
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (let c = cleanups.pop(); c !== undefined; c = cleanups.pop()) await c();
});

/** A stand-in cloud presenting `serverSvid`, requiring a client certificate of `ca`. */
async function startCloud(
  serverSvid: SvidWithKey,
  caPem: string,
  onConnection: (ws: WebSocket, cloud: Cloud) => void,
  refuse?: { status: number; body: string },
): Promise<Cloud> {
  const server = createServer({ ...pem(serverSvid), ca: caPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  const cloud: Cloud = { server, port: 0, frames: [], peers: [], closes: [], connections: [] };
  server.on('upgrade', (req, socket, head) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate(false);
    cloud.peers.push(parseCertificate(peer.raw).uris[0] ?? '');
    if (refuse !== undefined) {
      socket.end(`HTTP/1.1 ${refuse.status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(refuse.body)}\r\nconnection: close\r\n\r\n${refuse.body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      cloud.connections.push(ws);
      ws.on('message', (data) => cloud.frames.push(decodeEdgeToCloudHub(data as Buffer)));
      ws.on('close', (code) => cloud.closes.push(code));
      onConnection(ws, cloud);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cloud.port = (server.address() as AddressInfo).port;
  cleanups.push(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return cloud;
}

async function edge(nodeSvid: SvidWithKey, bundleCa: CaManager, port: number): Promise<{ hub: EdgeHub; store: EdgeHubStore; logs: Array<Record<string, unknown>> }> {
  const dir = await tempDir('edgeward-hub-tls-');
  const logs: Array<Record<string, unknown>> = [];
  const log = (o: Record<string, unknown>) => void logs.push(o);
  const logger = { debug: log, info: log, warn: log, error: log };
  const store = openEdgeHubStore({ dir, files: hostStateFiles, dek: randomBytes(32), clock, logger });
  const identity: IdentitySource = { svid: () => nodeSvid, bundles: () => BundleSet.of([bundleCa.bundle()]), onChange: () => () => {}, close: () => {} };
  // random 0.99: the first backoff is ~1 s, so a test sees one attempt before it ends.
  const hub = createEdgeHub({ address: { host: '127.0.0.1', port, text: `127.0.0.1:${port}` }, trustDomain: TD, identity, store, clock, timers: realTimers, logger, random: () => 0.99 });
  cleanups.push(async () => {
    await hub.close();
    store.close();
  });
  return { hub, store, logs };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const caPemOf = (ca: CaManager) => ca.bundle().x509Authorities.map((d) => derToPem(d, 'CERTIFICATE')).join('');
const welcome = { v: 1, kind: 'welcome', node: 'n1', sessionId: 'tls-session-0123456789', heartbeatMs: 30_000, resync: false };

describe('EdgeHub over real mTLS (TLS 1.3, ws)', () => {
  it('presents the node SVID, sends hello first, stores a put, acks it after the commit, reports Stored', async () => {
    const { ca, svid } = makeCa(TD);
    const cloud = await startCloud(svid(`spiffe://${TD.name}/edgeward/cloud`), caPemOf(ca), (ws) => {
      ws.once('message', () => {
        ws.send(JSON.stringify(welcome));
        ws.send(JSON.stringify({ v: 1, kind: 'put', resource: { kind: 'Secret', name: 'db', version: 7, data: { data: { password: Buffer.from('hunter2').toString('base64') } } } }));
        ws.send(JSON.stringify({ v: 1, kind: 'synced', version: 7 }));
      });
    });
    const e = await edge(svid(`spiffe://${TD.name}/edgeward/node/n1`), ca, cloud.port);
    e.hub.start();
    await until('ack and status', () => cloud.frames.some((f) => f.kind === 'ack') && cloud.frames.some((f) => f.kind === 'status'));
    expect(cloud.peers).toEqual([`spiffe://${TD.name}/edgeward/node/n1`]);
    expect(cloud.frames[0]).toMatchObject({ kind: 'hello', storeId: e.store.storeId });
    expect(cloud.frames.find((f) => f.kind === 'ack')).toEqual({ v: 1, kind: 'ack', items: [{ kind: 'Secret', name: 'db', version: 7 }] });
    expect(cloud.frames.find((f) => f.kind === 'status')).toMatchObject({ entries: [{ kind: 'Secret', name: 'db', phase: 'Stored', observedVersion: 7 }] });
    expect(e.store.get('Secret', 'db')?.version).toBe(7);
    await until('synced', () => e.hub.status().lastSyncedVersion === 7);
    expect(e.hub.status()).toMatchObject({ connected: true, state: 'synced' });
  });

  it('never talks to a server that is not spiffe://TD/edgeward/cloud (a node SVID of the same CA)', async () => {
    const { ca, svid } = makeCa(TD);
    let connected = 0;
    const cloud = await startCloud(svid(`spiffe://${TD.name}/edgeward/node/impostor`), caPemOf(ca), () => void connected++);
    const e = await edge(svid(`spiffe://${TD.name}/edgeward/node/n1`), ca, cloud.port);
    e.hub.start();
    await until('the refusal', () => e.logs.some((l) => l['event'] === 'security.hub_untrusted_server'));
    expect(connected).toBe(0);
    expect(cloud.frames).toEqual([]);
    expect(e.hub.status()).toMatchObject({ connected: false });
    expect(e.hub.status().lastError).toMatch(/untrusted-server/);
  });

  it('never talks to a cloud of another trust domain', async () => {
    const ours = makeCa(TD);
    const theirs = makeCa(TrustDomain.parse('other.example'));
    const cloud = await startCloud(theirs.svid('spiffe://other.example/edgeward/cloud'), caPemOf(ours.ca), () => {});
    const e = await edge(ours.svid(`spiffe://${TD.name}/edgeward/node/n1`), ours.ca, cloud.port);
    e.hub.start();
    await until('the refusal', () => e.logs.some((l) => l['event'] === 'security.hub_untrusted_server' || l['event'] === 'edge.hub_unreachable'));
    expect(cloud.frames).toEqual([]);
    expect(e.hub.status().lastError).toMatch(/untrusted-server|certificate/);
  });

  it('closes with 4400 on a binary frame and on a frame over 1 MiB (ws closes that with 1009)', async () => {
    const { ca, svid } = makeCa(TD);
    let n = 0;
    const cloud = await startCloud(svid(`spiffe://${TD.name}/edgeward/cloud`), caPemOf(ca), (ws) => {
      const mine = n++;
      ws.once('message', () => {
        ws.send(JSON.stringify(welcome));
        if (mine === 0) ws.send(Buffer.from('{"v":1}'), { binary: true });
        else ws.send(`{"v":1,"kind":"synced","version":1,"pad":"${'x'.repeat(MAX_HUB_CLOUD_FRAME_BYTES)}"}`);
      });
    });
    const e = await edge(svid(`spiffe://${TD.name}/edgeward/node/n1`), ca, cloud.port);
    e.hub.start();
    await until('two closes', () => cloud.closes.length >= 2, 20_000);
    expect(cloud.closes.slice(0, 2)).toEqual([4400, 1009]);
    const violations = e.logs.filter((l) => l['event'] === 'security.hub_protocol_violation').map((l) => l['code']);
    expect(violations).toEqual(['hub/malformed', 'hub/too-large']);
  });

  it('reads an HTTP refusal of the upgrade (409 hub/session-exists) and backs off', async () => {
    const { ca, svid } = makeCa(TD);
    const body = JSON.stringify({ v: 1, kind: 'error', code: 'hub/session-exists', message: 'a session for this node is open' });
    const cloud = await startCloud(svid(`spiffe://${TD.name}/edgeward/cloud`), caPemOf(ca), () => {}, { status: 409, body });
    const e = await edge(svid(`spiffe://${TD.name}/edgeward/node/n1`), ca, cloud.port);
    e.hub.start();
    await until('the refusal', () => e.logs.some((l) => l['event'] === 'edge.hub_refused'));
    expect(e.logs.find((l) => l['event'] === 'edge.hub_refused')).toMatchObject({ status: 409, code: 'hub/session-exists' });
    expect(e.hub.status()).toMatchObject({ connected: false, state: 'waiting' });
    expect(e.hub.status().lastError).toMatch(/hub\/session-exists/);
  });
});
