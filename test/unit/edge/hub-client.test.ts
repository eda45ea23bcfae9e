/**
 * EdgeHub session logic (src/edge/hub/client.ts) with a fake socket, a fake store, a ManualClock and fake
 * timers; the identities are real X509-SVIDs of a CaManager so the cloud check (by SPIFFE ID against the
 * bundle) is the real one. Contract #5: "Transport", "Close codes", "Wire messages", "Edge hub".
 */
import { describe, expect, it } from 'vitest';
import {
  BundleSet,
  CaManager,
  generateP256,
  ManualClock,
  MemoryKeyStore,
  SpiffeId,
  TrustDomain,
  type IdentitySource,
  type SvidWithKey,
} from '../../../src/identity/index.js';
import {
  decodeEdgeToCloudHub,
  HUB_DEAD_AFTER_MS,
  HUB_PING_INTERVAL_MS,
  MAX_HUB_CLOUD_FRAME_BYTES,
  MAX_HUB_EDGE_FRAME_BYTES,
  type AckItem,
  type EdgeToCloudHubMessage,
  type ResourceKind,
  type StatusEntry,
} from '../../../src/protocol/index.js';
import {
  createEdgeHub,
  EdgeHubError,
  HUB_BACKOFF_CAP_MS,
  HUB_GRACEFUL_JITTER_MS,
  HUB_WELCOME_TIMEOUT_MS,
  type HubConnectOptions,
  type HubItem,
  type HubSocketEvents,
  type HubStorePort,
  type LocalResource,
} from '../../../src/edge/hub/index.js';
import type { Timers } from '../../../src/edge/index.js';
import { FakeTimers } from '../../helpers/fake-timers.js';

const TD = TrustDomain.parse('hub.example');
const HOUR = 3_600_000;
const NODE_ID = SpiffeId.parse('spiffe://hub.example/edgeward/node/n1');
const CLOUD_ID = SpiffeId.parse('spiffe://hub.example/edgeward/cloud');

/** In-memory edge store with the store's semantics: newer versions win, tombstones kept, every item acked. */
class FakeStore implements HubStorePort {
  readonly storeId = '0b8e6f5c-2f43-4f7a-9d39-3c2a4f6f1e11';
  readonly rows = new Map<string, { kind: ResourceKind; name: string; version: number; deleted: boolean; data: Record<string, unknown> }>();
  readonly outbox: StatusEntry[] = [];
  seq = 0;
  synced = 0;
  applies: Array<{ items: HubItem[]; reportStored: boolean }> = [];
  failApply = false;
  resyncFlag = false;
  resyncsBegun = 0;
  forcedApplies = 0;
  apply(items: readonly HubItem[], options: { reportStored?: boolean; force?: boolean | ((kind: ResourceKind, name: string) => boolean) } = {}) {
    if (this.failApply) throw new Error('disk full');
    this.applies.push({ items: [...items], reportStored: options.reportStored === true });
    if (options.force !== undefined) this.forcedApplies++;
    const acks: AckItem[] = [];
    for (const it of items) {
      const kind = it.op === 'put' ? it.resource.kind : it.kind;
      const name = it.op === 'put' ? it.resource.name : it.name;
      const version = it.op === 'put' ? it.resource.version : it.version;
      acks.push(it.op === 'put' ? { kind, name, version } : { kind, name, version, deleted: true });
      const cur = this.rows.get(`${kind}/${name}`);
      const forced = cur !== undefined && (typeof options.force === 'function' ? options.force(kind, name) : options.force === true);
      if (!forced && cur !== undefined && cur.version >= version) continue;
      this.rows.set(`${kind}/${name}`, { kind, name, version, deleted: it.op === 'delete', data: it.op === 'put' ? it.resource.data : {} });
      if (it.op === 'put' && options.reportStored === true) this.appendStatus({ kind, name, phase: 'Stored', observedVersion: version, at: 1 });
    }
    return { acks, changed: [], superseded: [], refused: [], reported: 0 };
  }
  list(kind?: ResourceKind): LocalResource[] {
    return [...this.rows.values()].filter((r) => !r.deleted && (kind === undefined || r.kind === kind)).map((r) => ({ ...r, updatedAt: 1 }));
  }
  get(kind: ResourceKind, name: string): LocalResource | undefined {
    return this.list(kind).find((r) => r.name === name);
  }
  appendStatus(e: Omit<StatusEntry, 'seq'>): number {
    this.outbox.push({ ...e, seq: ++this.seq });
    return this.seq;
  }
  pendingStatus(limit: number): StatusEntry[] {
    return this.outbox.slice(0, limit);
  }
  ackStatus(seq: number): number {
    const before = this.outbox.length;
    while (this.outbox.length > 0 && this.outbox[0]!.seq <= seq) this.outbox.shift();
    return before - this.outbox.length;
  }
  outboxSize(): number {
    return this.outbox.length;
  }
  syncedVersion(): number {
    return this.synced;
  }
  setSyncedVersion(v: number): void {
    this.synced = v;
  }
  outboxHighSeq(): number {
    return this.seq;
  }
  needsResync(): boolean {
    return this.resyncFlag;
  }
  endResync(): void {
    this.resyncFlag = false;
  }
  beginResync(): void {
    this.resyncsBegun++;
    this.resyncFlag = true;
    for (const [k, r] of this.rows) if (r.deleted) this.rows.delete(k);
  }
}

interface FakeConn {
  o: HubConnectOptions;
  on: HubSocketEvents;
  sent: EdgeToCloudHubMessage[];
  raw: string[];
  pings: number;
  closed: { code: number; reason: string } | undefined;
  terminated: boolean;
}

function makeCa(td = TD) {
  const clock = new ManualClock(Date.UTC(2031, 0, 1));
  const ca = new CaManager({ trustDomain: td, caTtlMs: 48 * HOUR, maxX509SvidTtlMs: 4 * HOUR }, new MemoryKeyStore());
  ca.tick(clock.now());
  const svid = (id: SpiffeId, ttlMs = HOUR): SvidWithKey => {
    const k = generateP256();
    const issued = ca.issueX509Svid({ spiffeId: id, spki: k.spki, ttlMs, now: clock.now() });
    return { spiffeId: id, chainDer: [issued.der, ...ca.intermediates(clock.now())], privateKey: k.privateKey, notAfter: issued.notAfter, serialHex: issued.serialHex };
  };
  return { clock, ca, svid };
}

function rig(opts: { random?: () => number } = {}) {
  const { clock, ca, svid } = makeCa();
  const timers = new FakeTimers(clock);
  const store = new FakeStore();
  let current = svid(NODE_ID);
  const listeners = new Set<() => void>();
  const identity: IdentitySource = {
    // Like a real source: no SVID once it expired.
    svid: () => {
      if (clock.now() >= current.notAfter) throw new EdgeHubError('edge-hub/no-identity', 'expired');
      return current;
    },
    bundles: () => BundleSet.of([ca.bundle()]),
    onChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close: () => {},
  };
  const conns: FakeConn[] = [];
  const deferred: Array<() => void> = [];
  const logs: Array<Record<string, unknown>> = [];
  const log = (o: Record<string, unknown>) => void logs.push(o);
  const nudges: string[] = [];
  const refusals: string[] = [];
  const hub = createEdgeHub({
    address: { host: '127.0.0.1', port: 8443, text: '127.0.0.1:8443' },
    trustDomain: TD,
    identity,
    store,
    clock,
    timers,
    logger: { debug: log, info: log, warn: log, error: log },
    random: opts.random ?? (() => 0.5),
    onNudge: (t) => void nudges.push(t),
    onRefused: (c) => void refusals.push(c),
    defer: (fn) => void deferred.push(fn),
    connector: (o, on) => {
      const c: FakeConn = { o, on, sent: [], raw: [], pings: 0, closed: undefined, terminated: false };
      conns.push(c);
      return {
        send: (text) => {
          c.raw.push(text);
          c.sent.push(decodeEdgeToCloudHub(text)); // what the cloud's strict decoder receives
        },
        ping: () => void c.pings++,
        close: (code, reason) => {
          c.closed = { code, reason };
        },
        terminate: () => {
          c.terminated = true;
        },
      };
    },
  });
  const cloudChain = () => svid(CLOUD_ID).chainDer;
  /** Handshake the latest connection as the real cloud, open it, and welcome it. */
  const open = (welcome: Record<string, unknown> = {}): FakeConn => {
    const c = conns[conns.length - 1]!;
    expect(c.o.verifyServer(cloudChain())).toBeUndefined();
    c.on.open();
    cloudSays(c, { v: 1, kind: 'welcome', node: 'n1', sessionId: 'sess-0123456789abcdef', heartbeatMs: 30_000, resync: false, ...welcome });
    return c;
  };
  const cloudSays = (c: FakeConn, m: Record<string, unknown>) => c.on.message(Buffer.from(JSON.stringify(m)), false);
  const runDeferred = () => {
    for (let f = deferred.shift(); f !== undefined; f = deferred.shift()) f();
  };
  const fireChange = () => {
    for (const l of [...listeners]) l();
  };
  const rotate = () => {
    current = svid(NODE_ID);
    fireChange();
  };
  const events = (name: string) => logs.filter((l) => l['event'] === name);
  /** Let `ms` pass on an open session whose cloud answers every ping. */
  const keepAlive = (c: FakeConn, ms: number) => {
    for (let left = ms; left > 0; left -= Math.min(left, 5000)) {
      timers.advance(Math.min(left, 5000));
      c.on.activity();
    }
  };
  return { clock, timers, store, hub, conns, open, cloudSays, runDeferred, rotate, fireChange, events, keepAlive, logs, nudges, refusals, svid, current: () => current };
}

const cm = (name: string, version: number, value = 'v') => ({ v: 1, kind: 'put', resource: { kind: 'ConfigMap', name, version, data: { data: { k: value } } } });

describe('EdgeHub transport and handshake (contract "Transport")', () => {
  it('connects to wss://HOST:PORT/v1/hub with the node SVID, the bundle as CA, 1 MiB maxPayload', () => {
    const r = rig();
    r.hub.start();
    expect(r.conns).toHaveLength(1);
    const o = r.conns[0]!.o;
    expect(o.url).toBe('wss://127.0.0.1:8443/v1/hub');
    expect(o.maxPayload).toBe(MAX_HUB_CLOUD_FRAME_BYTES);
    expect(o.certPem).toContain('BEGIN CERTIFICATE');
    expect(o.keyPem).toContain('PRIVATE KEY');
    expect(o.caPem).toContain('BEGIN CERTIFICATE');
    expect(o.handshakeTimeoutMs).toBeGreaterThan(0);
  });

  it('accepts only spiffe://TD/edgeward/cloud of our bundle (by SPIFFE ID, not host name)', () => {
    const r = rig();
    r.hub.start();
    const o = r.conns[0]!.o;
    expect(o.verifyServer(r.svid(CLOUD_ID).chainDer)).toBeUndefined();
    // Another SVID of the same trust domain (a node) is not the cloud.
    expect(o.verifyServer(r.svid(SpiffeId.parse('spiffe://hub.example/edgeward/node/evil')).chainDer)?.message).toMatch(/not the cloud/);
    // The cloud ID from another trust domain's CA does not chain to our bundle.
    const other = makeCa(TrustDomain.parse('other.example'));
    expect(o.verifyServer(other.svid(SpiffeId.parse('spiffe://other.example/edgeward/cloud')).chainDer)).toBeInstanceOf(Error);
    expect(o.verifyServer([])).toBeInstanceOf(Error);
  });

  it('logs security.hub_untrusted_server and backs off when the server is not the cloud; nothing is sent', () => {
    const r = rig();
    r.hub.start();
    const c = r.conns[0]!;
    expect(c.o.verifyServer(r.svid(SpiffeId.parse('spiffe://hub.example/edgeward/node/evil')).chainDer)).toBeInstanceOf(Error);
    c.on.error(new Error('handshake aborted'));
    c.on.close(1006, '');
    expect(c.sent).toEqual([]);
    expect(r.events('security.hub_untrusted_server')).toHaveLength(1);
    expect(r.hub.status()).toMatchObject({ connected: false, state: 'waiting', reconnects: 1 });
  });

  it('refuses to talk on a socket whose server was never verified (deny by default)', () => {
    const r = rig();
    r.hub.start();
    const c = r.conns[0]!;
    c.on.open(); // without verifyServer
    expect(c.sent).toEqual([]);
    expect(c.terminated).toBe(true);
    expect(r.events('security.hub_untrusted_server')).toHaveLength(1);
  });
});

describe('EdgeHub session (contract "Wire messages": order, acks after commit, outbox)', () => {
  it('sends hello{storeId} first and is connected after welcome', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    expect(c.sent[0]).toEqual({ v: 1, kind: 'hello', storeId: r.store.storeId, agent: 'edgeward/0.1.0', outboxSeq: 0 });
    expect(r.hub.status()).toMatchObject({ connected: true, state: 'syncing', sessionId: 'sess-0123456789abcdef', cloud: '127.0.0.1:8443' });
    expect(r.events('edge.hub_connected')).toHaveLength(1);
  });

  it('applies the frames of one turn in one transaction, acks once after the commit, reports Stored, records synced', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    r.cloudSays(c, cm('a', 3));
    r.cloudSays(c, cm('b', 4));
    r.cloudSays(c, { v: 1, kind: 'delete', resource: { kind: 'Secret', name: 'old' }, version: 5 });
    // Nothing applied or acked before the deferred flush.
    expect(r.store.applies).toHaveLength(0);
    expect(c.sent.filter((m) => m.kind === 'ack')).toHaveLength(0);
    r.runDeferred();
    expect(r.store.applies).toHaveLength(1);
    expect(r.store.applies[0]!.items).toHaveLength(3);
    expect(r.store.applies[0]!.reportStored).toBe(true);
    const acks = c.sent.filter((m) => m.kind === 'ack');
    expect(acks).toEqual([
      {
        v: 1,
        kind: 'ack',
        items: [
          { kind: 'ConfigMap', name: 'a', version: 3 },
          { kind: 'ConfigMap', name: 'b', version: 4 },
          { kind: 'Secret', name: 'old', version: 5, deleted: true },
        ],
      },
    ]);
    // The Stored entries go up as one status batch.
    const status = c.sent.filter((m) => m.kind === 'status');
    expect(status).toHaveLength(1);
    expect(status[0]).toMatchObject({ entries: [{ seq: 1, kind: 'ConfigMap', name: 'a', phase: 'Stored', observedVersion: 3 }, { seq: 2, name: 'b', observedVersion: 4 }] });
    // `synced` flushes what is pending first, then records the version.
    r.cloudSays(c, cm('c', 6));
    r.cloudSays(c, { v: 1, kind: 'synced', version: 6 });
    expect(r.store.applies).toHaveLength(2);
    expect(r.store.synced).toBe(6);
    expect(r.hub.status()).toMatchObject({ state: 'synced', lastSyncedVersion: 6 });
    expect(r.events('edge.hub_synced')).toHaveLength(1);
  });

  it('flushes at 1000 items without waiting, and splits acks of long names to stay under 64 KiB', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    const long = (i: number) => `${String(i).padStart(4, '0')}${'x'.repeat(240)}`;
    for (let i = 0; i < 1000; i++) r.cloudSays(c, cm(long(i), i + 1));
    expect(r.store.applies).toHaveLength(1); // at 1000 items, at once
    const acks = c.raw.filter((t) => t.includes('"kind":"ack"'));
    expect(acks.length).toBeGreaterThan(1);
    for (const t of acks) expect(Buffer.byteLength(t)).toBeLessThanOrEqual(MAX_HUB_EDGE_FRAME_BYTES);
    expect(c.sent.filter((m) => m.kind === 'ack').flatMap((m) => (m.kind === 'ack' ? m.items : []))).toHaveLength(1000);
  });

  it('sends the outbox in batches of <= 100, the next only after status.ack; resends the unacked on reconnect', () => {
    const r = rig();
    for (let i = 0; i < 250; i++) r.store.appendStatus({ kind: 'Node', name: 'n1', phase: 'Running', message: `m${i}`, at: 1 });
    r.hub.start();
    const c = r.open();
    const batches = () => c.sent.filter((m) => m.kind === 'status');
    expect(batches()).toHaveLength(1);
    expect(batches()[0]!.kind === 'status' && batches()[0]!.entries.map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    r.cloudSays(c, { v: 1, kind: 'status.ack', seq: 100 });
    expect(batches()).toHaveLength(2);
    expect(r.store.outboxSize()).toBe(150);
    // The connection drops before the second batch is acknowledged: the next session sends it again.
    c.on.close(1006, '');
    r.timers.advance(HUB_BACKOFF_CAP_MS);
    const c2 = r.open();
    const again = c2.sent.filter((m) => m.kind === 'status');
    expect(again).toHaveLength(1);
    expect(again[0]!.kind === 'status' && again[0]!.entries[0]!.seq).toBe(101);
  });

  it('never drops entries it did not send: a status.ack beyond the batch in flight counts up to the batch', () => {
    const r = rig();
    for (let i = 0; i < 150; i++) r.store.appendStatus({ kind: 'Node', name: 'n1', phase: 'Running', at: 1 });
    r.hub.start();
    const c = r.open();
    r.cloudSays(c, { v: 1, kind: 'status.ack', seq: 10_000 });
    expect(r.store.outboxSize()).toBe(50);
    // A duplicate ack with nothing in flight is ignored... the second batch is in flight now; ack it.
    r.cloudSays(c, { v: 1, kind: 'status.ack', seq: 150 });
    expect(r.store.outboxSize()).toBe(0);
    r.cloudSays(c, { v: 1, kind: 'status.ack', seq: 150 });
    expect(r.events('security.hub_protocol_violation')).toEqual([]);
  });

  it('reportStatus validates before the outbox (a refused row would block it) and sends at once when connected', () => {
    const r = rig();
    r.hub.start();
    expect(() => r.hub.reportStatus({ kind: 'ConfigMap', name: 'Bad_Name', phase: 'Running' })).toThrow(EdgeHubError);
    expect(() => r.hub.reportStatus({ kind: 'ConfigMap', name: 'ok', phase: 'running' })).toThrow(/phase/);
    expect(() => r.hub.reportStatus({ kind: 'ConfigMap', name: 'ok', phase: 'Running', message: 'x'.repeat(1025) })).toThrow(EdgeHubError);
    expect(() => r.hub.reportStatus({ kind: 'ConfigMap', name: 'ok', phase: 'Running', observedVersion: 0 })).toThrow(EdgeHubError);
    expect(r.store.outboxSize()).toBe(0);
    // Offline: kept in the outbox.
    expect(r.hub.reportStatus({ kind: 'ConfigMap', name: 'ok', phase: 'Running', observedVersion: 3 })).toEqual({ seq: 1 });
    expect(r.hub.status().outbox).toBe(1);
    const c = r.open();
    expect(c.sent.filter((m) => m.kind === 'status')).toHaveLength(1);
    r.cloudSays(c, { v: 1, kind: 'status.ack', seq: 1 });
    r.hub.reportStatus({ kind: 'Node', name: 'n1', phase: 'Ready', message: 'all good' });
    expect(c.sent.filter((m) => m.kind === 'status')).toHaveLength(2);
  });

  it('passes nudges on and logs the cloud\'s error frames', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    r.cloudSays(c, { v: 1, kind: 'nudge', topic: 'entries' });
    expect(r.nudges).toEqual(['entries']);
    r.cloudSays(c, { v: 1, kind: 'error', code: 'hub/overloaded', message: 'too slow' });
    expect(r.events('edge.hub_cloud_error')[0]).toMatchObject({ code: 'hub/overloaded' });
  });

  it('after a resync catch-up, removes local resources the cloud did not send (they are no longer ours)', () => {
    const r = rig();
    r.store.apply([{ op: 'put', resource: { kind: 'ConfigMap', name: 'stale', version: 2, data: { data: {} } } }]);
    r.store.apply([{ op: 'put', resource: { kind: 'ConfigMap', name: 'kept', version: 3, data: { data: {} } } }]);
    r.hub.start();
    const c = r.open({ resync: true });
    r.cloudSays(c, cm('kept', 3));
    r.cloudSays(c, { v: 1, kind: 'synced', version: 9 });
    expect(r.store.list().map((x) => x.name)).toEqual(['kept']);
    expect(r.events('edge.hub_resync_pruned')[0]).toMatchObject({ removed: 1 });
    // The pruning is local: not acknowledged (the cloud has nothing recorded for it).
    expect(c.sent.filter((m) => m.kind === 'ack').flatMap((m) => (m.kind === 'ack' ? m.items : [])).map((i) => i.name)).toEqual(['kept']);
  });
});

describe('EdgeHub: invalid frames from the cloud are a protocol violation (4400), never a crash', () => {
  const cases: Array<[string, (r: ReturnType<typeof rig>, c: FakeConn) => void, string]> = [
    ['malformed JSON', (_r, c) => c.on.message(Buffer.from('{"v":1,'), false), 'hub/malformed'],
    ['a binary frame', (_r, c) => c.on.message(Buffer.from('{}'), true), 'hub/malformed'],
    ['an unknown kind', (r, c) => r.cloudSays(c, { v: 1, kind: 'explode' }), 'hub/unknown-kind'],
    ['an unknown version', (r, c) => r.cloudSays(c, { v: 2, kind: 'synced', version: 1 }), 'hub/unsupported-version'],
    ['an unknown field', (r, c) => r.cloudSays(c, { v: 1, kind: 'synced', version: 1, node: 'other' }), 'hub/unknown-field'],
    ['a kind only the cloud receives', (r, c) => r.cloudSays(c, { v: 1, kind: 'hello', storeId: r.store.storeId, agent: 'x', outboxSeq: 0 }), 'hub/unexpected-kind'],
    ['a second welcome', (r, c) => r.cloudSays(c, { v: 1, kind: 'welcome', node: 'n1', sessionId: 'sess-0123456789abcdef', heartbeatMs: 30_000, resync: false }), 'hub/unexpected-kind'],
    ['an invalid Secret', (r, c) => r.cloudSays(c, { v: 1, kind: 'put', resource: { kind: 'Secret', name: 's', version: 1, data: { data: { k: 'not base64!' } } } }), 'hub/bad-field'],
    ['a frame over 1 MiB', (_r, c) => c.on.message(Buffer.alloc(MAX_HUB_CLOUD_FRAME_BYTES + 1, 0x20), false), 'hub/too-large'],
  ];
  for (const [what, send, code] of cases) {
    it(`${what}: security.hub_protocol_violation ${code}, close 4400, reconnect with backoff`, () => {
      const r = rig();
      r.hub.start();
      const c = r.open();
      expect(() => send(r, c)).not.toThrow();
      expect(r.events('security.hub_protocol_violation')[0]).toMatchObject({ code });
      expect(c.closed).toEqual({ code: 4400, reason: code });
      c.on.close(4400, code);
      expect(r.hub.status()).toMatchObject({ connected: false, state: 'waiting' });
      // Later frames on the dead session are ignored.
      r.cloudSays(c, cm('late', 9));
      r.runDeferred();
      expect(r.store.applies).toHaveLength(0);
    });
  }

  it('anything but welcome first is a violation', () => {
    const r = rig();
    r.hub.start();
    const c = r.conns[0]!;
    c.o.verifyServer(r.svid(CLOUD_ID).chainDer);
    c.on.open();
    r.cloudSays(c, cm('a', 1));
    expect(r.events('security.hub_protocol_violation')[0]).toMatchObject({ code: 'hub/unexpected-kind' });
    expect(c.closed?.code).toBe(4400);
  });

  it('a welcome for another node is a violation (the cloud took us for someone else)', () => {
    const r = rig();
    r.hub.start();
    r.open({ node: 'n2' });
    expect(r.events('security.hub_protocol_violation')[0]).toMatchObject({ code: 'hub/bad-field' });
  });

  it('a store failure is not acknowledged: the session ends with 4500 and reconnects', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    r.store.failApply = true;
    r.cloudSays(c, cm('a', 1));
    r.runDeferred();
    expect(c.sent.filter((m) => m.kind === 'ack')).toEqual([]);
    expect(c.closed?.code).toBe(4500);
    expect(r.events('edge.hub_store_failed')).toHaveLength(1);
  });
});

describe('EdgeHub heartbeats and reconnects (contract "Transport", "Close codes")', () => {
  it('pings every HUB_PING_INTERVAL_MS and terminates a session silent for HUB_DEAD_AFTER_MS', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    r.timers.advance(HUB_PING_INTERVAL_MS);
    expect(c.pings).toBe(1);
    c.on.activity(); // the pong
    r.timers.advance(HUB_PING_INTERVAL_MS);
    expect(c.pings).toBe(2);
    expect(c.terminated).toBe(false);
    // No pong from now on: dead HUB_DEAD_AFTER_MS after the last thing heard.
    r.timers.advance(HUB_DEAD_AFTER_MS - HUB_PING_INTERVAL_MS - 1);
    expect(c.terminated).toBe(false);
    r.timers.advance(1);
    expect(c.terminated).toBe(true);
    expect(r.events('edge.hub_heartbeat_timeout')).toHaveLength(1);
    c.on.close(1006, '');
    expect(r.hub.status().state).toBe('waiting');
  });

  it('gives up on a cloud that never answers hello', () => {
    const r = rig();
    r.hub.start();
    const c = r.conns[0]!;
    c.o.verifyServer(r.svid(CLOUD_ID).chainDer);
    c.on.open();
    for (let t = 0; t < HUB_WELCOME_TIMEOUT_MS; t += 1000) {
      r.timers.advance(1000);
      c.on.activity(); // pongs keep coming, but no welcome
    }
    expect(r.events('edge.hub_welcome_timeout')).toHaveLength(1);
    expect(c.closed?.code).toBe(4408);
  });

  it('backs off with full jitter (base 1 s, cap 60 s) and resets after a session stayed up 60 s', () => {
    const r = rig({ random: () => 0.999 });
    r.hub.start();
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) {
      const c = r.conns[r.conns.length - 1]!;
      c.on.error(new Error('ECONNREFUSED'));
      c.on.close(1006, '');
      const st = r.hub.status();
      delays.push(st.nextAttemptAt! - r.clock.now());
      r.timers.advance(st.nextAttemptAt! - r.clock.now());
    }
    expect(delays).toEqual([999, 1998, 3996, 7992, 15984, 31968, 59940, 59940, 59940]);
    expect(r.events('edge.hub_unreachable').length).toBeGreaterThan(0);
    // A session that stays up 60 s resets the attempt count.
    const c = r.open();
    r.keepAlive(c, 60_000);
    c.on.close(1006, '');
    expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBe(999);
  });

  it('reacts to close codes: 1000/1001/4401/4410 after a small jitter, 4403 at the cap (banned), 4404 re-attests', () => {
    for (const code of [1000, 1001, 4401, 4410]) {
      const r = rig({ random: () => 0.999 });
      r.hub.start();
      const c = r.open();
      r.keepAlive(c, 20_000);
      c.on.close(code, '');
      expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBeLessThan(HUB_GRACEFUL_JITTER_MS);
    }
    {
      const r = rig({ random: () => 0.5 });
      r.hub.start();
      const c = r.open();
      c.on.close(4403, 'banned');
      expect(r.events('edge.hub_banned')).toHaveLength(1);
      expect(r.refusals).toEqual(['hub/banned']);
      expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBe(HUB_BACKOFF_CAP_MS / 2);
    }
    {
      const r = rig({ random: () => 0.5 });
      r.hub.start();
      const c = r.open();
      c.on.close(4404, 'evicted');
      expect(r.refusals).toEqual(['hub/evicted']);
      expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBe(HUB_BACKOFF_CAP_MS / 2);
      // The node re-attested: the new SVID is tried right away.
      r.rotate();
      expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBeLessThan(HUB_GRACEFUL_JITTER_MS);
    }
    {
      const r = rig({ random: () => 0.5 });
      r.hub.start();
      const c = r.open();
      c.on.close(4400, 'hub/protocol');
      expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBe(500);
    }
  });

  it('graceful closes right after connecting, again and again, fall back to backoff (no reconnect storm)', () => {
    const r = rig({ random: () => 0.999 });
    r.hub.start();
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const c = r.open();
      c.on.close(1001, '');
      delays.push(r.hub.status().nextAttemptAt! - r.clock.now());
      r.timers.advance(delays[delays.length - 1]!);
    }
    expect(delays.slice(0, 3).every((d) => d < HUB_GRACEFUL_JITTER_MS)).toBe(true);
    expect(delays[4]).toBeGreaterThanOrEqual(HUB_GRACEFUL_JITTER_MS);
  });

  it('reads HTTP refusals of the upgrade: 403 node/banned at the cap, 409 session-exists with backoff, 401 tells the agent', () => {
    const body = (code: string) => Buffer.from(JSON.stringify({ v: 1, kind: 'error', code, message: 'refused' }));
    const r = rig({ random: () => 0.5 });
    r.hub.start();
    let c = r.conns[0]!;
    c.on.refused(409, body('hub/session-exists'));
    c.on.close(1006, '');
    expect(r.events('edge.hub_refused')[0]).toMatchObject({ status: 409, code: 'hub/session-exists' });
    expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBe(500);
    r.timers.advance(500);
    c = r.conns[1]!;
    c.on.refused(403, body('node/banned'));
    c.on.close(1006, '');
    expect(r.events('edge.hub_banned')[0]).toMatchObject({ status: 403, code: 'node/banned' });
    expect(r.hub.status().nextAttemptAt! - r.clock.now()).toBe(HUB_BACKOFF_CAP_MS / 2);
    expect(r.hub.status().lastError).toMatch(/node\/banned/);
    r.timers.advance(HUB_BACKOFF_CAP_MS);
    c = r.conns[2]!;
    c.on.refused(401, body('node-api/unauthenticated'));
    c.on.close(1006, '');
    expect(r.refusals).toEqual(['hub/session-exists', 'node/banned', 'node-api/unauthenticated']);
    // A refusal body that is not a node API message is still a refusal, by status.
    r.timers.advance(HUB_BACKOFF_CAP_MS);
    c = r.conns[3]!;
    c.on.refused(502, Buffer.from('<html>bad gateway</html>'));
    c.on.close(1006, '');
    expect(r.events('edge.hub_refused').at(-1)).toMatchObject({ status: 502, code: 'http/502' });
  });
});

describe('EdgeHub identity changes (contract "Identity changes")', () => {
  it('reconnects gracefully (close 1000) with the new node SVID when it rotates', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    const oldCert = c.o.certPem;
    r.rotate();
    expect(c.closed).toEqual({ code: 1000, reason: 'svid rotated' });
    expect(r.events('edge.hub_rotating')).toHaveLength(1);
    c.on.close(1000, '');
    r.timers.advance(HUB_GRACEFUL_JITTER_MS);
    expect(r.conns).toHaveLength(2);
    expect(r.conns[1]!.o.certPem).not.toBe(oldCert);
  });

  it('a bundle-only change (same SVID) keeps the session', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    r.fireChange(); // listeners fire without a new serial: nothing to do
    expect(c.closed).toBeUndefined();
    expect(r.hub.status().connected).toBe(true);
  });

  it('closes the session (4410) when the cloud\'s SVID reaches NotAfter, and reconnects after a jitter', () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    r.keepAlive(c, HOUR - 5000);
    expect(c.closed).toBeUndefined();
    r.keepAlive(c, 5000); // the cloud SVID's NotAfter (1 h)
    expect(c.closed).toEqual({ code: 4410, reason: 'cloud SVID expired' });
    expect(r.events('edge.hub_cloud_svid_expired')).toHaveLength(1);
  });

  it('does not connect without a usable SVID (expired): logs once, keeps retrying, connects once renewed', () => {
    const r = rig();
    r.clock.advance(2 * HOUR); // past the node SVID's NotAfter
    r.hub.start();
    expect(r.conns).toHaveLength(0);
    r.timers.advance(10 * HUB_BACKOFF_CAP_MS);
    expect(r.conns).toHaveLength(0);
    expect(r.events('edge.hub_no_identity')).toHaveLength(1);
    expect(r.hub.status().lastError).toMatch(/edge-hub\/no-identity/);
    r.rotate(); // a new SVID (re-attested): tried after a small jitter
    r.timers.advance(HUB_GRACEFUL_JITTER_MS);
    expect(r.conns).toHaveLength(1);
  });

  it('close() closes the session with 1001 and stops reconnecting', async () => {
    const r = rig();
    r.hub.start();
    const c = r.open();
    const closing = r.hub.close();
    expect(c.closed).toEqual({ code: 1001, reason: 'edge shutting down' });
    c.on.close(1001, '');
    await closing;
    expect(r.hub.status().state).toBe('closed');
    r.timers.advance(10 * HUB_BACKOFF_CAP_MS);
    expect(r.conns).toHaveLength(1);
    expect(() => r.hub.reportStatus({ kind: 'Node', name: 'n1', phase: 'Ready' })).toThrow(EdgeHubError);
  });
});
