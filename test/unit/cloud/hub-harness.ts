/**
 * Harness of the CloudHub unit tests: a fake resource store (the `CloudHubStore` port), a plain HTTP server
 * on 127.0.0.1 whose upgrades go to the hub with the node named by a test header (authentication is the
 * node API server's job, tested in test/integration/cloud-hub.test.ts), a ManualClock driving the sweep,
 * and a `ws` client that records what it receives.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import WebSocket from 'ws';
import { createCloudHub, type CloudHub, type CloudHubLimits, type CloudHubStore, type CloudHubTiming } from '../../../src/cloud/hub/index.js';
import type { AckItemInput, ResourceChange, StoredResource, SyncItem } from '../../../src/cloud/index.js';
import { ManualClock } from '../../../src/identity/index.js';
import { decodeCloudToEdgeHub, type CloudToEdgeHubMessage, type ResourceKind, type StatusEntry } from '../../../src/protocol/index.js';
import { eventually } from '../../helpers/wait.js';

export const HOUR = 3_600_000;

export interface LogLine extends Record<string, unknown> {
  level: string;
  msg: string;
}

export const until = <T>(fn: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> => eventually(what, fn, { timeoutMs, intervalMs: 5 });

/** The ResourceStore port in memory, recording the hub's calls. */
export class FakeStore implements CloudHubStore {
  readonly resources = new Map<string, StoredResource>();
  version = 0;
  readonly pending = new Map<string, SyncItem[]>();
  readonly ackCalls: Array<{ node: string; items: AckItemInput[] }> = [];
  readonly statusCalls: Array<{ node: string; entries: StatusEntry[] }> = [];
  readonly lastSeq = new Map<string, number>();
  readonly bindings = new Map<string, string>();
  private readonly listeners = new Set<(c: ResourceChange) => void>();
  failBind = false;

  bindStore(node: string, storeId: string): { reset: boolean } {
    if (this.failBind) throw new Error('disk on fire');
    const prev = this.bindings.get(node);
    this.bindings.set(node, storeId);
    return { reset: prev !== undefined && prev !== storeId };
  }
  /** What the node lacks: `pending` if set for it, else computed from the resources and its acks (as the real store). */
  pendingFor(node: string): SyncItem[] {
    const fixed = this.pending.get(node);
    if (fixed !== undefined) return fixed;
    const acked = this.acked.get(node) ?? new Map<string, number>();
    const out: SyncItem[] = [];
    for (const [key, r] of this.resources) {
      const a = acked.get(key);
      if (!r.deleted && this.targets(r, node)) {
        if (a === undefined || a < r.version) out.push({ op: 'put', resource: r });
      } else if (a !== undefined) out.push({ op: 'delete', kind: r.kind, name: r.name, version: r.version });
    }
    return out.sort((x, y) => (x.op === 'put' ? x.resource.version : x.version) - (y.op === 'put' ? y.resource.version : y.version));
  }
  readonly acked = new Map<string, Map<string, number>>();
  recordAcks(node: string, items: readonly AckItemInput[]): void {
    this.ackCalls.push({ node, items: [...items] });
    let m = this.acked.get(node);
    if (m === undefined) this.acked.set(node, (m = new Map()));
    for (const i of items) {
      const key = `${i.kind}/${i.name}`;
      if (i.deleted === true) m.delete(key);
      else if (i.version > (m.get(key) ?? 0)) m.set(key, i.version);
    }
  }
  recordAckBatch(batch: ReadonlyArray<{ node: string; items: readonly AckItemInput[] }>): Array<{ node: string; kind: ResourceKind; name: string }> {
    this.ackBatches++;
    for (const b of batch) this.recordAcks(b.node, b.items);
    return [];
  }
  /** How many recordAckBatch calls (one transaction each in the real store). */
  ackBatches = 0;
  recordStatus(node: string, entries: readonly StatusEntry[]): number {
    this.statusCalls.push({ node, entries: [...entries] });
    const last = Math.max(this.lastSeq.get(node) ?? 0, ...entries.map((e) => e.seq));
    this.lastSeq.set(node, last);
    return last;
  }
  currentVersion(): number {
    return this.version;
  }
  targets(r: StoredResource, node: string): boolean {
    return r.nodes.includes(node) || r.nodes.includes('*');
  }
  get(kind: ResourceKind, name: string): StoredResource | undefined {
    const r = this.resources.get(`${kind}/${name}`);
    if (r !== undefined) return r.deleted ? undefined : r;
    // A resource given only through a fixed `pending` list (the hub reads it again when it sends it).
    for (const items of this.pending.values()) {
      for (const i of items) if (i.op === 'put' && i.resource.kind === kind && i.resource.name === name) return i.resource;
    }
    return undefined;
  }
  headFor(kind: ResourceKind, name: string, node: string): { version: number; targeted: boolean } | undefined {
    const r = this.get(kind, name);
    return r === undefined ? undefined : { version: r.version, targeted: this.targets(r, node) };
  }
  onChange(listener: (c: ResourceChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Write a ConfigMap (a new version) and notify, as the real store does after its commit. */
  put(name: string, nodes: string[], data: Record<string, string> = { k: name }): StoredResource {
    const prev = this.resources.get(`ConfigMap/${name}`);
    const r: StoredResource = { kind: 'ConfigMap', name, version: ++this.version, nodes, data: { data }, deleted: false, createdAt: 1, updatedAt: 1 };
    this.resources.set(`ConfigMap/${name}`, r);
    const change: ResourceChange = prev === undefined || prev.deleted ? { version: r.version, resource: r } : { version: r.version, resource: r, previousNodes: prev.nodes };
    for (const l of this.listeners) l(change);
    return r;
  }
  del(name: string): StoredResource {
    const prev = this.resources.get(`ConfigMap/${name}`)!;
    const r: StoredResource = { ...prev, version: ++this.version, data: {}, deleted: true };
    this.resources.set(`ConfigMap/${name}`, r);
    for (const l of this.listeners) l({ version: r.version, resource: r, previousNodes: prev.nodes });
    return r;
  }
}

export class Client {
  readonly messages: CloudToEdgeHubMessage[] = [];
  private seen = 0;
  closeCode: number | undefined;
  readonly closed: Promise<number>;
  readonly opened: Promise<void>;
  readonly refused: Promise<{ status: number; body: Record<string, unknown> }>;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.messages.push(decodeCloudToEdgeHub(data)));
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    this.opened.catch(() => {});
    this.refused = new Promise((resolve, reject) => {
      ws.once('open', () => reject(new Error('accepted')));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
      });
    });
    this.refused.catch(() => {});
    this.closed = new Promise((resolve) => ws.on('close', (code) => resolve((this.closeCode = code))));
    ws.on('error', () => {});
  }
  send(m: unknown): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }
  hello(storeId = '00000000-0000-4000-8000-000000000001'): void {
    this.send({ v: 1, kind: 'hello', storeId, agent: 'edgeward-test/1', outboxSeq: 0 });
  }
  async until(kind: CloudToEdgeHubMessage['kind']): Promise<CloudToEdgeHubMessage[]> {
    const start = this.seen;
    const i = await until(() => {
      const j = this.messages.findIndex((m, k) => k >= start && m.kind === kind);
      return j === -1 ? undefined : j + 1;
    }, `a ${kind} message`);
    this.seen = i;
    return this.messages.slice(start, i);
  }
  rest(): CloudToEdgeHubMessage[] {
    const r = this.messages.slice(this.seen);
    this.seen = this.messages.length;
    return r;
  }
  async sync(storeId?: string): Promise<CloudToEdgeHubMessage[]> {
    this.hello(storeId);
    await this.until('welcome');
    return (await this.until('synced')).slice(0, -1);
  }
  /** Stop reading (a peer that hangs or reads too slowly). */
  pause(): void {
    (this.ws as unknown as { _socket: Socket })._socket.pause();
  }
  /** A ping answered: the hub has seen it (ws answers pings by itself). */
  async pingPong(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.ws.once('pong', () => resolve());
      this.ws.ping();
    });
  }
}

export interface Harness {
  hub: CloudHub;
  store: FakeStore;
  clock: ManualClock;
  logs: LogLine[];
  /** Authentication results of `reauthenticate`: a node listed here throws. */
  refuseAuth: Set<string>;
  connect(node: string, o?: { notAfter?: number }): Client;
  open(node: string, o?: { notAfter?: number }): Promise<Client>;
  waitForLog(pred: (l: LogLine) => boolean, from?: number): Promise<LogLine>;
  close(): Promise<void>;
}

export async function startHarness(o: { limits?: Partial<CloudHubLimits>; timing?: Partial<CloudHubTiming> } = {}): Promise<Harness> {
  const store = new FakeStore();
  const clock = new ManualClock(1_700_000_000_000);
  const logs: LogLine[] = [];
  const push = (level: string) => (obj: Record<string, unknown>, msg: string) => void logs.push({ ...obj, level, msg });
  const logger = { debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') };
  const refuseAuth = new Set<string>();
  const hub = createCloudHub({
    store,
    logger,
    clock,
    authenticate: (chain) => {
      const node = chain[0]!.toString('utf8');
      if (refuseAuth.has(node)) throw new Error('superseded');
      return { nodeName: node };
    },
    sweepTimer: false,
    ...(o.limits !== undefined ? { limits: o.limits } : {}),
    ...(o.timing !== undefined ? { timing: o.timing } : {}),
  });
  const server: Server = createServer((_req, res) => {
    res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    const node = String(req.headers['x-node']);
    const notAfter = Number(req.headers['x-not-after'] ?? clock.now() + HOUR);
    const refusal = hub.handleUpgrade(req, socket, head, node, { chainDer: [Buffer.from(node)], notAfter });
    if (refusal !== undefined) {
      const body = JSON.stringify({ v: 1, kind: 'error', code: refusal.code, message: refusal.message });
      socket.end(`HTTP/1.1 ${refusal.status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const clients: Client[] = [];
  const connect = (node: string, c: { notAfter?: number } = {}): Client => {
    const headers: Record<string, string> = { 'x-node': node };
    if (c.notAfter !== undefined) headers['x-not-after'] = String(c.notAfter);
    const client = new Client(new WebSocket(`ws://127.0.0.1:${port}/v1/hub`, { headers, perMessageDeflate: false }));
    clients.push(client);
    return client;
  };
  return {
    hub,
    store,
    clock,
    logs,
    refuseAuth,
    connect,
    async open(node, c) {
      const client = connect(node, c);
      await client.opened;
      // The hub has the session once the upgrade completed.
      await until(() => hub.stats().sessions > 0, 'the session');
      return client;
    },
    waitForLog: (pred, from = 0) => until(() => logs.slice(from).find(pred), 'a log line'),
    async close() {
      for (const c of clients) c.ws.terminate();
      await hub.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
