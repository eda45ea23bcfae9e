/**
 * The cloud's resource store on a real SQLite file (issue #5 "Reliable sync"): versions, coalesced
 * catch-up per node (puts and deletes), idempotent acks, edge store binding, status with seq dedupe,
 * tombstones; and the resource admin methods (apply/get/delete) over the store.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { hostStateFiles } from '../../src/cli/host/index.js';
import {
  createResourceAdminHandlers,
  createResourceStore,
  MAX_LIVE_RESOURCES,
  RESOURCE_STORE_SCHEMA_VERSION,
  ResourceStoreError,
  type ResourceChange,
  type ResourceStore,
  type ResourceStoreViews,
  type SyncItem,
} from '../../src/cloud/index.js';
import { EdgewardError, ManualClock } from '../../src/identity/index.js';
import { parseResourceDocument, type ResourceDocument, type ResourceGetResult, type ResourceKind, type StatusEntry } from '../../src/protocol/index.js';
import { tempDir } from '../helpers/index.js';

const T0 = Date.UTC(2026, 0, 1);
const STORE_A = '11111111-1111-4111-8111-111111111111';
const STORE_B = '22222222-2222-4222-8222-222222222222';

type Store = ResourceStore & ResourceStoreViews;

async function open(): Promise<{ store: Store; path: string; clock: ManualClock; reopen: () => Store }> {
  const dir = await tempDir('edgeward-resources-');
  const path = join(dir, 'resources.db');
  const clock = new ManualClock(T0);
  const make = (): Store => createResourceStore(path, { files: hostStateFiles, clock });
  return { store: make(), path, clock, reopen: make };
}

function cm(name: string, data: Record<string, string> = { a: '1' }, nodes: string[] = ['edge-1']): ResourceDocument {
  return parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name, nodes }, data });
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(EdgewardError);
    return (e as EdgewardError).code;
  }
  throw new Error('expected a typed error');
}

/** A compact view of pendingFor: `put:ConfigMap/x@3`, `delete:ConfigMap/y@5`. */
function pending(store: ResourceStore, node: string): string[] {
  return store.pendingFor(node).map((i: SyncItem) => (i.op === 'put' ? `put:${i.resource.kind}/${i.resource.name}@${i.resource.version}` : `delete:${i.kind}/${i.name}@${i.version}`));
}

/** What an edge does with its catch-up: ack every item after "storing" it. */
function ackAll(store: ResourceStore, node: string, now = T0): void {
  const items = store.pendingFor(node).map((i) =>
    i.op === 'put' ? { kind: i.resource.kind, name: i.resource.name, version: i.resource.version } : { kind: i.kind, name: i.name, version: i.version, deleted: true },
  );
  if (items.length > 0) store.recordAcks(node, items, now);
}

function status(seq: number, name: string, phase = 'Stored', extra: Partial<StatusEntry> = {}): StatusEntry {
  return { seq, kind: 'ConfigMap', name, phase, at: T0 + seq, ...extra };
}

describe('resource store: apply, versions, get/list/delete', () => {
  it('creates the file 0600; apply is all-or-nothing; identical content keeps its version', async () => {
    const { store, path } = await open();
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(store.currentVersion()).toBe(0);
      const r1 = store.apply([cm('a'), cm('b')]);
      expect(r1).toEqual([
        { kind: 'ConfigMap', name: 'a', version: 1, action: 'created' },
        { kind: 'ConfigMap', name: 'b', version: 2, action: 'created' },
      ]);
      // Same content, targets listed in another order: unchanged, no version bump.
      expect(store.apply([cm('a', { a: '1' }, ['edge-1'])])).toEqual([{ kind: 'ConfigMap', name: 'a', version: 1, action: 'unchanged' }]);
      expect(store.currentVersion()).toBe(2);
      // Key order in a spec does not make content different.
      const w1 = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'w', nodes: ['n2', 'n1'] }, spec: { b: 1, a: { y: 2, x: 1 } } });
      const w2 = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'w', nodes: ['n1', 'n2'] }, spec: { a: { x: 1, y: 2 }, b: 1 } });
      expect(store.apply([w1])[0]?.action).toBe('created');
      expect(store.apply([w2])[0]).toMatchObject({ action: 'unchanged', version: 3 });
      // A change of data or of targets is 'configured' with a new version.
      expect(store.apply([cm('a', { a: '2' })])[0]).toEqual({ kind: 'ConfigMap', name: 'a', version: 4, action: 'configured' });
      expect(store.apply([cm('a', { a: '2' }, ['edge-1', 'edge-2'])])[0]).toMatchObject({ version: 5, action: 'configured' });
      // All or nothing: a repeated object in one apply refuses the whole apply.
      expect(codeOf(() => store.apply([cm('c'), cm('c', { a: 'x' })]))).toBe('resource/invalid');
      expect(store.get('ConfigMap', 'c')).toBeUndefined();
      expect(store.currentVersion()).toBe(5);
      const a = store.get('ConfigMap', 'a');
      expect(a).toMatchObject({ kind: 'ConfigMap', name: 'a', version: 5, nodes: ['edge-1', 'edge-2'], data: { data: { a: '2' } }, deleted: false, createdAt: T0 });
      expect(store.list().map((r) => `${r.kind}/${r.name}`)).toEqual(['ConfigMap/a', 'ConfigMap/b', 'Workload/w']);
      expect(store.list('Workload').map((r) => r.name)).toEqual(['w']);
      expect(store.list('Secret')).toEqual([]);
    } finally {
      store.close();
    }
  });

  it('re-validates what it is given (a caller may pass anything typed as a document)', async () => {
    const { store } = await open();
    try {
      const bad = [
        { kind: 'Pod', name: 'a', nodes: ['n'], data: { spec: {} } },
        { kind: 'ConfigMap', name: 'A', nodes: ['n'], data: { data: {} } },
        { kind: 'ConfigMap', name: 'a', nodes: [], data: { data: {} } },
        { kind: 'ConfigMap', name: 'a', nodes: ['*', 'n'], data: { data: {} } },
        { kind: 'ConfigMap', name: 'a', nodes: ['N'], data: { data: {} } },
        { kind: 'ConfigMap', name: 'a', nodes: ['n'], data: { data: { k: 1 } } },
        { kind: 'Secret', name: 'a', nodes: ['n'], data: { data: { k: 'not base64' } } },
        { kind: 'Workload', name: 'a', nodes: ['n'], data: { spec: { x: Infinity } } },
      ];
      for (const d of bad) expect(codeOf(() => store.apply([d as unknown as ResourceDocument])), JSON.stringify(d)).toBe('resource/invalid');
      expect(codeOf(() => store.apply(Array.from({ length: 1001 }, (_, i) => cm(`x${i}`))))).toBe('resource-store/too-many');
      expect(codeOf(() => store.get('Pod' as ResourceKind, 'a'))).toBe('resource/invalid');
      expect(codeOf(() => store.pendingFor('*'))).toBe('resource/invalid');
      expect(codeOf(() => store.recordAcks('Edge', [], T0))).toBe('resource/invalid');
      expect(store.currentVersion()).toBe(0);
    } finally {
      store.close();
    }
  });

  it('at most MAX_LIVE_RESOURCES live resources (tombstones do not count)', async () => {
    const { store } = await open();
    try {
      for (let i = 0; i < MAX_LIVE_RESOURCES; i += 1000) store.apply(Array.from({ length: 1000 }, (_, j) => cm(`r${i + j}`)));
      expect(store.list()).toHaveLength(MAX_LIVE_RESOURCES);
      expect(codeOf(() => store.apply([cm('one-more')]))).toBe('resource-store/too-many');
      expect(store.get('ConfigMap', 'one-more')).toBeUndefined();
      expect(store.delete('ConfigMap', 'r0')).toEqual({ version: MAX_LIVE_RESOURCES + 1 });
      expect(store.apply([cm('one-more')])[0]?.action).toBe('created');
    } finally {
      store.close();
    }
  });

  it('the version is monotonic and never reused, across deletes, pruned tombstones and reopening', async () => {
    const { store, reopen } = await open();
    store.apply([cm('a'), cm('b')]);
    expect(store.delete('ConfigMap', 'b')).toEqual({ version: 3 });
    expect(store.delete('ConfigMap', 'b')).toBeUndefined(); // no such live resource
    expect(store.get('ConfigMap', 'b')).toBeUndefined();
    store.close();
    expect(codeOf(() => store.list())).toBe('resource-store/io'); // closed
    const again = reopen();
    try {
      expect(again.currentVersion()).toBe(3);
      // b's tombstone was pruned (nobody acknowledged b): re-creating it still takes a new version.
      expect(again.apply([cm('b')])).toEqual([{ kind: 'ConfigMap', name: 'b', version: 4, action: 'created' }]);
      expect(again.get('ConfigMap', 'a')?.version).toBe(1);
    } finally {
      again.close();
    }
  });

  it('onChange: once per changed resource after commit, with the previous targets; a throwing listener breaks nothing', async () => {
    const { store } = await open();
    const errors: unknown[] = [];
    const s2 = createResourceStore(join((await tempDir()), 'r.db'), { files: hostStateFiles, clock: new ManualClock(T0), onListenerError: (e) => errors.push(e) });
    try {
      const seen: ResourceChange[] = [];
      const off = store.onChange((c) => {
        // After commit: the store already shows the change.
        expect(store.currentVersion()).toBeGreaterThanOrEqual(c.version);
        seen.push(c);
      });
      store.apply([cm('a'), cm('b')]);
      store.apply([cm('a'), cm('b', { a: '1' }, ['edge-2'])]);
      store.delete('ConfigMap', 'a');
      expect(seen.map((c) => [c.resource.name, c.version, c.resource.deleted, c.previousNodes])).toEqual([
        ['a', 1, false, undefined],
        ['b', 2, false, undefined],
        ['b', 3, false, ['edge-1']],
        ['a', 4, true, ['edge-1']],
      ]);
      expect(seen[3]?.resource.data).toEqual({});
      expect(seen[3]?.resource.nodes).toEqual(['edge-1']);
      off();
      store.apply([cm('c')]);
      expect(seen).toHaveLength(4);

      s2.onChange(() => {
        throw new Error('listener bug');
      });
      expect(s2.apply([cm('x')])[0]?.action).toBe('created');
      expect(errors).toHaveLength(1);
    } finally {
      store.close();
      s2.close();
    }
  });
});

describe('resource store: pendingFor and acks (what a node lacks)', () => {
  it('a missing ack and an old ack give a put; a current ack gives nothing', async () => {
    const { store } = await open();
    try {
      store.apply([cm('a'), cm('b'), cm('other', { a: '1' }, ['edge-2'])]);
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/a@1', 'put:ConfigMap/b@2']);
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 1 }], T0);
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/b@2']);
      store.apply([cm('a', { a: '2' })]);
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/b@2', 'put:ConfigMap/a@4']);
      const put = store.pendingFor('edge-1')[1];
      expect(put?.op === 'put' && put.resource.data).toEqual({ data: { a: '2' } });
      ackAll(store, 'edge-1');
      expect(pending(store, 'edge-1')).toEqual([]);
      expect(pending(store, 'edge-9')).toEqual([]);
    } finally {
      store.close();
    }
  });

  it("'*' targets every node, including nodes it has never seen", async () => {
    const { store } = await open();
    try {
      store.apply([cm('all', { a: '1' }, ['*']), cm('one')]);
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/all@1', 'put:ConfigMap/one@2']);
      expect(pending(store, 'brand-new')).toEqual(['put:ConfigMap/all@1']);
      const all = store.get('ConfigMap', 'all');
      expect(all !== undefined && store.targets(all, 'anyone')).toBe(true);
      const one = store.get('ConfigMap', 'one');
      expect(one !== undefined && store.targets(one, 'edge-2')).toBe(false);
    } finally {
      store.close();
    }
  });

  it('deletes: an acknowledged resource that is deleted gives a delete; the delete ack removes the ack row and the tombstone', async () => {
    const { store, path } = await open();
    try {
      store.apply([cm('a'), cm('b')]);
      ackAll(store, 'edge-1');
      store.apply([cm('a', { a: 'x' }, ['*'])]); // edge-2 targeted by '*' too
      ackAll(store, 'edge-2');
      expect(store.delete('ConfigMap', 'a')).toEqual({ version: 4 });
      expect(pending(store, 'edge-1')).toEqual(['delete:ConfigMap/a@4']);
      expect(pending(store, 'edge-2')).toEqual(['delete:ConfigMap/a@4']);
      // A node that never had it is not told to delete it.
      expect(pending(store, 'edge-3')).toEqual([]);
      ackAll(store, 'edge-1');
      expect(pending(store, 'edge-1')).toEqual([]);
      expect(store.acksOf('ConfigMap', 'a').map((a) => a.node)).toEqual(['edge-2']);
      // The tombstone stays while edge-2 holds an ack for it, then goes.
      const db = new Database(path, { readonly: true });
      const tomb = db.prepare("SELECT deleted, data FROM resources WHERE kind = 'ConfigMap' AND name = 'a'");
      expect(tomb.get()).toEqual({ deleted: 1, data: '{}' });
      ackAll(store, 'edge-2');
      expect(tomb.get()).toBeUndefined();
      db.close();
      expect(pending(store, 'edge-2')).toEqual([]);
    } finally {
      store.close();
    }
  });

  it('untargeting: a resource that no longer targets a node that acknowledged it gives that node a delete', async () => {
    const { store } = await open();
    try {
      store.apply([cm('a', { a: '1' }, ['edge-1', 'edge-2'])]);
      ackAll(store, 'edge-1');
      ackAll(store, 'edge-2');
      store.apply([cm('a', { a: '1' }, ['edge-2'])]);
      expect(pending(store, 'edge-1')).toEqual(['delete:ConfigMap/a@2']);
      expect(pending(store, 'edge-2')).toEqual(['put:ConfigMap/a@2']);
      ackAll(store, 'edge-1');
      expect(pending(store, 'edge-1')).toEqual([]);
      // Targeted again: a put at the new version.
      store.apply([cm('a', { a: '1' }, ['*'])]);
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/a@3']);
      // '*' -> a list without edge-2 while edge-2 holds an ack.
      ackAll(store, 'edge-2');
      store.apply([cm('a', { a: '1' }, ['edge-1'])]);
      expect(pending(store, 'edge-2')).toEqual(['delete:ConfigMap/a@4']);
    } finally {
      store.close();
    }
  });

  it('coalescing: 1000 updates of one object while a node is offline are one put at the final version', async () => {
    const { store } = await open();
    try {
      store.apply([cm('hot', { n: '0' })]);
      ackAll(store, 'edge-1');
      for (let i = 1; i <= 1000; i++) store.apply([cm('hot', { n: String(i) })]);
      const items = store.pendingFor('edge-1');
      expect(items).toHaveLength(1);
      expect(items[0]?.op === 'put' && [items[0].resource.version, items[0].resource.data]).toEqual([1001, { data: { n: '1000' } }]);
      // And create-then-delete while offline: nothing at all for a node that never had it.
      store.apply([cm('brief')]);
      store.delete('ConfigMap', 'brief');
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/hot@1001']);
    } finally {
      store.close();
    }
  });

  it('recordAckBatch records many nodes\' acks in one write, and refuses the whole batch if one entry is bad', async () => {
    const { store } = await open();
    try {
      store.apply([cm('a', { a: '1' }, ['*'])]);
      const nodes = Array.from({ length: 500 }, (_, i) => `edge-${i}`);
      store.recordAckBatch(nodes.map((node) => ({ node, items: [{ kind: 'ConfigMap' as const, name: 'a', version: 1 }] })), T0);
      expect(store.acksOf('ConfigMap', 'a')).toHaveLength(500);
      store.apply([cm('a', { a: '2' }, ['*'])]);
      // One malformed entry: nothing of the batch is written (checked before the transaction).
      expect(codeOf(() => store.recordAckBatch([{ node: 'edge-0', items: [{ kind: 'ConfigMap', name: 'a', version: 2 }] }, { node: 'Bad Node', items: [] }], T0))).toBe('resource/invalid');
      expect(store.acksOf('ConfigMap', 'a').find((a) => a.node === 'edge-0')?.version).toBe(1);
      expect(codeOf(() => store.recordAckBatch([{ node: 'edge-0', items: [{ kind: 'ConfigMap', name: 'a', version: 0 }] }], T0))).toBe('resource/invalid');
      store.recordAckBatch([], T0);
    } finally {
      store.close();
    }
  });

  it('recordAcks is idempotent: repeats and older acks are ignored; bogus versions are not recorded', async () => {
    const { store, clock } = await open();
    try {
      store.apply([cm('a')]);
      store.apply([cm('a', { a: '2' })]);
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 2 }], T0 + 5);
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 2 }], T0 + 6);
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 1 }], T0 + 7); // late resend of an older put
      expect(store.acksOf('ConfigMap', 'a')).toEqual([{ node: 'edge-1', version: 2, ackedAt: T0 + 5 }]);
      // A version the store never wrote for that object (or at all) is not recorded.
      store.recordAcks('edge-2', [{ kind: 'ConfigMap', name: 'a', version: 99 }], T0);
      store.recordAcks('edge-2', [{ kind: 'ConfigMap', name: 'never', version: 99 }], T0);
      expect(store.acksOf('ConfigMap', 'a').map((a) => a.node)).toEqual(['edge-1']);
      expect(store.acksOf('ConfigMap', 'never')).toEqual([]);
      // An older delete ack does not remove a newer put ack.
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 1, deleted: true }], T0);
      expect(store.acksOf('ConfigMap', 'a')).toHaveLength(1);
      // Bounds and shapes.
      expect(codeOf(() => store.recordAcks('edge-1', Array.from({ length: 1001 }, () => ({ kind: 'ConfigMap' as const, name: 'a', version: 1 })), T0))).toBe('resource-store/too-many');
      expect(codeOf(() => store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 0 }], T0))).toBe('resource/invalid');
      expect(codeOf(() => store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 1.5 }], T0))).toBe('resource/invalid');
      expect(codeOf(() => store.recordAcks('edge-1', [{ kind: 'Nope' as ResourceKind, name: 'a', version: 1 }], T0))).toBe('resource/invalid');
      clock.advance(1);
    } finally {
      store.close();
    }
  });

  it('an ack that arrives after the tombstone was pruned is kept, so the node is still told to delete', async () => {
    const { store } = await open();
    try {
      store.apply([cm('a')]); // v1, sent to edge-1; its ack is in flight
      store.delete('ConfigMap', 'a'); // v2; nobody had acked: the tombstone is pruned at once
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'a', version: 1 }], T0);
      expect(pending(store, 'edge-1')).toEqual(['delete:ConfigMap/a@2']);
      ackAll(store, 'edge-1');
      expect(pending(store, 'edge-1')).toEqual([]);
      // Same when the tombstone still exists: the late put ack is recorded and answered with the delete.
      store.apply([cm('b', { a: '1' }, ['*'])]); // v3
      ackAll(store, 'edge-2');
      store.apply([cm('b', { a: 'z' }, ['*'])]); // v4 put to edge-1 and edge-2 ...
      store.delete('ConfigMap', 'b'); // v5
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'b', version: 4 }], T0);
      expect(pending(store, 'edge-1')).toEqual(['delete:ConfigMap/b@5']);
      expect(pending(store, 'edge-2')).toEqual(['delete:ConfigMap/b@5']);
    } finally {
      store.close();
    }
  });

  it('recordAcks takes 1000 items in one call, and many one-item calls in a row (fan-out)', async () => {
    const { store } = await open();
    try {
      const docs = Array.from({ length: 1000 }, (_, i) => cm(`m${i}`, { a: '1' }, ['*']));
      store.apply(docs);
      expect(store.pendingFor('edge-1')).toHaveLength(1000);
      ackAll(store, 'edge-1');
      expect(store.pendingFor('edge-1')).toHaveLength(0);
      store.apply([cm('m0', { a: '2' }, ['*'])]);
      for (let n = 0; n < 2000; n++) store.recordAcks(`node-${n}`, [{ kind: 'ConfigMap', name: 'm0', version: 1001 }], T0);
      expect(store.ackSummary('ConfigMap', 'm0', 1001, 3)).toMatchObject({ total: 2001, current: 2000 });
      expect(store.acksOf('ConfigMap', 'm0')).toHaveLength(2001);
      expect(store.pendingFor('node-7')).toHaveLength(999);
    } finally {
      store.close();
    }
  });
});

describe('resource store: edge store binding, status, forgetting a node', () => {
  it('bindStore: the same store id changes nothing; another drops the acks and the status seq (resync)', async () => {
    const { store } = await open();
    try {
      store.apply([cm('a')]);
      // No binding yet (a first connection, or one after evict): the edge is told to resync.
      expect(store.bindStore('edge-1', STORE_A, T0)).toEqual({ reset: true });
      ackAll(store, 'edge-1');
      expect(store.recordStatus('edge-1', [status(1, 'a'), status(2, 'a', 'Running')], T0)).toBe(2);
      expect(store.bindStore('edge-1', STORE_A, T0, { outboxSeq: 2 })).toEqual({ reset: false });
      expect(pending(store, 'edge-1')).toEqual([]);
      // The same store with an outbox seq below the recorded one was rolled back (restored from a backup):
      // everything is sent again and its status seq starts over.
      expect(store.bindStore('edge-1', STORE_A, T0, { outboxSeq: 1 })).toEqual({ reset: true });
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/a@1']);
      expect(store.statusOf('ConfigMap', 'a')).toEqual([]);
      ackAll(store, 'edge-1');
      // The edge asks for a resync (its store lost a row).
      expect(store.bindStore('edge-1', STORE_A, T0, { outboxSeq: 5, resync: true })).toEqual({ reset: true });
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/a@1']);
      ackAll(store, 'edge-1');
      expect(store.bindStore('edge-1', STORE_A, T0, { outboxSeq: 5 })).toEqual({ reset: false });
      expect(pending(store, 'edge-1')).toEqual([]);
      // A new edge store (wiped data dir, restored disk): resend everything; its outbox starts at seq 1 again.
      expect(store.bindStore('edge-1', STORE_B, T0)).toEqual({ reset: true });
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/a@1']);
      expect(store.recordStatus('edge-1', [status(1, 'a', 'Stored')], T0)).toBe(1);
      expect(store.statusOf('ConfigMap', 'a')[0]).toMatchObject({ phase: 'Stored', seq: 1 });
      expect(codeOf(() => store.bindStore('edge-1', 'not-a-uuid', T0))).toBe('resource/invalid');
    } finally {
      store.close();
    }
  });

  it('recordStatus keeps a detail (a Device\'s reported twins, issue #6) and refuses an unbounded one', async () => {
    const { store } = await open();
    try {
      store.apply([{ kind: 'Device', name: 'plant-a/t-1', nodes: ['edge-1'], data: { spec: { deviceModelRef: { name: 'm' }, nodeName: 'edge-1' } } }]);
      const detail = { twins: { temperature: { value: '21.5', at: T0 } }, lastSeen: T0 };
      expect(store.recordStatus('edge-1', [{ seq: 1, kind: 'Device', name: 'plant-a/t-1', phase: 'Online', at: T0, detail }], T0)).toBe(1);
      expect(store.statusOf('Device', 'plant-a/t-1')[0]).toMatchObject({ node: 'edge-1', phase: 'Online', detail });
      expect(codeOf(() => store.recordStatus('edge-1', [{ seq: 2, kind: 'Device', name: 'plant-a/t-1', phase: 'Online', at: T0, detail: { x: 'y'.repeat(9000) } }], T0))).toBe('resource/invalid');
      expect(codeOf(() => store.recordStatus('edge-1', [{ seq: 2, kind: 'Device', name: 't-1', phase: 'Online', at: T0 }], T0))).toBe('resource/invalid');
    } finally {
      store.close();
    }
  });

  it('recordStatus: seq dedupe, out-of-order ignored, the latest status per (node, object)', async () => {
    const { store, clock } = await open();
    try {
      store.apply([cm('a'), cm('b')]);
      expect(store.recordStatus('edge-1', [status(1, 'a', 'Stored', { observedVersion: 1 }), status(2, 'b'), status(3, 'a', 'Running', { message: 'ok', observedVersion: 1 })], T0 + 10)).toBe(3);
      // A resend (at-least-once) and an older entry change nothing.
      expect(store.recordStatus('edge-1', [status(2, 'b', 'Failed'), status(3, 'a', 'Failed')], T0 + 11)).toBe(3);
      expect(store.recordStatus('edge-1', [status(1, 'a', 'Failed')], T0 + 11)).toBe(3);
      expect(store.statusOf('ConfigMap', 'a')).toEqual([
        { node: 'edge-1', kind: 'ConfigMap', name: 'a', phase: 'Running', message: 'ok', observedVersion: 1, at: T0 + 3, seq: 3, receivedAt: T0 + 10 },
      ]);
      // A batch that straddles the last seq: only the newer part applies.
      clock.advance(1);
      expect(store.recordStatus('edge-1', [status(3, 'b', 'Failed'), status(4, 'b', 'Running')], T0 + 12)).toBe(4);
      expect(store.statusOf('ConfigMap', 'b')[0]).toMatchObject({ phase: 'Running', seq: 4 });
      // Status about the node itself; status about another node or an unknown object is consumed but not stored.
      expect(
        store.recordStatus(
          'edge-1',
          [
            { seq: 5, kind: 'Node', name: 'edge-1', phase: 'Ready', at: T0 },
            { seq: 6, kind: 'Node', name: 'edge-2', phase: 'Ready', at: T0 },
            status(7, 'unknown-object'),
          ],
          T0,
        ),
      ).toBe(7);
      expect(store.nodeStatus('edge-1').map((s) => `${s.kind}/${s.name}:${s.phase}`)).toEqual(['ConfigMap/a:Running', 'ConfigMap/b:Running', 'Node/edge-1:Ready']);
      expect(store.nodeStatus('edge-2')).toEqual([]);
      // Per node: edge-2's seq starts on its own; status about a resource that does not target it is not stored.
      expect(store.recordStatus('edge-2', [status(1, 'a', 'Failed', { message: 'disk full' })], T0)).toBe(1);
      expect(store.statusOf('ConfigMap', 'a').map((s) => `${s.node}:${s.phase}`)).toEqual(['edge-1:Running']);
      store.apply([cm('a', { a: '1' }, ['edge-1', 'edge-2'])]);
      expect(store.recordStatus('edge-2', [status(2, 'a', 'Failed', { message: 'disk full' })], T0)).toBe(2);
      expect(store.statusOf('ConfigMap', 'a').map((s) => `${s.node}:${s.phase}`)).toEqual(['edge-1:Running', 'edge-2:Failed']);
      // Shapes and bounds.
      expect(codeOf(() => store.recordStatus('edge-1', [status(9, 'a', 'lower')], T0))).toBe('resource/invalid');
      expect(codeOf(() => store.recordStatus('edge-1', [status(9, 'a', 'Ok', { message: 'm'.repeat(1025) })], T0))).toBe('resource/invalid');
      expect(codeOf(() => store.recordStatus('edge-1', [status(0, 'a')], T0))).toBe('resource/invalid');
      expect(codeOf(() => store.recordStatus('edge-1', Array.from({ length: 101 }, (_, i) => status(100 + i, 'a')), T0))).toBe('resource-store/too-many');
      expect(store.recordStatus('edge-1', [], T0)).toBe(7);
    } finally {
      store.close();
    }
  });

  it('forgetNode (evict): acks, status and the binding go; tombstones only it held are pruned', async () => {
    const { store } = await open();
    try {
      store.apply([cm('a'), cm('b', { a: '1' }, ['*'])]);
      store.bindStore('edge-1', STORE_A, T0);
      ackAll(store, 'edge-1');
      ackAll(store, 'edge-2');
      store.recordStatus('edge-1', [status(1, 'a')], T0);
      store.delete('ConfigMap', 'a');
      store.forgetNode('edge-1');
      expect(store.acksOf('ConfigMap', 'a')).toEqual([]);
      expect(store.acksOf('ConfigMap', 'b').map((a) => a.node)).toEqual(['edge-2']);
      expect(store.nodeStatus('edge-1')).toEqual([]);
      // The node comes back (attests again): a first binding (resync), everything it is targeted by is pending.
      expect(store.bindStore('edge-1', STORE_A, T0)).toEqual({ reset: true });
      expect(pending(store, 'edge-1')).toEqual(['put:ConfigMap/b@2']);
      // The store forgot the old seq too.
      expect(store.recordStatus('edge-1', [status(1, 'b')], T0)).toBe(1);
    } finally {
      store.close();
    }
  });
});

describe('resource store: the file', () => {
  it('refuses a file written by a newer schema (resource-store/version) and a corrupt version table', async () => {
    const { store, path, reopen } = await open();
    store.close();
    const db = new Database(path);
    db.prepare('UPDATE schema_version SET version = ?').run(RESOURCE_STORE_SCHEMA_VERSION + 1);
    db.close();
    expect(codeOf(reopen)).toBe('resource-store/version');
    const db2 = new Database(path);
    db2.prepare('INSERT INTO schema_version (version) VALUES (1)').run();
    db2.close();
    expect(codeOf(reopen)).toBe('resource-store/corrupt');
  });

  it('a row that does not validate is resource-store/corrupt, not served', async () => {
    const { store, path } = await open();
    try {
      store.apply([cm('a')]);
      const db = new Database(path);
      db.prepare("UPDATE resources SET nodes = 'not json' WHERE name = 'a'").run();
      db.close();
      expect(codeOf(() => store.get('ConfigMap', 'a'))).toBe('resource-store/corrupt');
      expect(codeOf(() => store.pendingFor('edge-1'))).toBe('resource-store/corrupt');
    } finally {
      store.close();
    }
  });
});

describe('resource admin methods', () => {
  const logs: Array<Record<string, unknown>> = [];
  const logger = { info: (o: Record<string, unknown>) => void logs.push(o), warn: (o: Record<string, unknown>) => void logs.push(o) };
  const docs = [
    { apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: 'app-config', nodes: ['edge-1', 'edge-2'] }, data: { LOG_LEVEL: 'info' } },
    { apiVersion: 'edgeward.io/v1', kind: 'Secret', metadata: { name: 'db', nodes: ['*'] }, stringData: { password: 'hunter2' } },
  ];

  async function handlers(): Promise<{ h: ReturnType<typeof createResourceAdminHandlers>; store: Store; clock: ManualClock }> {
    const { store, clock } = await open();
    return { h: createResourceAdminHandlers({ store, clock, logger }), store, clock };
  }
  const call = async (h: ReturnType<typeof createResourceAdminHandlers>, m: 'resource.apply' | 'resource.get' | 'resource.delete', p: Record<string, unknown>): Promise<unknown> => {
    const f = h[m];
    if (f === undefined) throw new Error(`no handler ${m}`);
    return await f(p);
  };
  const failure = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(EdgewardError);
      return (e as EdgewardError).code;
    }
    throw new Error('expected a failure');
  };

  it('apply -> get -> delete, with acks, status, and secrets never in a view; events logged', async () => {
    const { h, store } = await handlers();
    try {
      expect(await call(h, 'resource.apply', { documents: docs })).toEqual({
        results: [
          { kind: 'ConfigMap', name: 'app-config', version: 1, action: 'created' },
          { kind: 'Secret', name: 'db', version: 2, action: 'created' },
        ],
      });
      expect(logs.filter((l) => l['event'] === 'resource.applied')).toHaveLength(2);
      expect(await call(h, 'resource.apply', { documents: docs })).toMatchObject({ results: [{ action: 'unchanged' }, { action: 'unchanged' }] });
      store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'app-config', version: 1 }], T0 + 1);
      await call(h, 'resource.apply', { documents: [{ ...docs[0], data: { LOG_LEVEL: 'debug' } }] });
      store.recordAcks('edge-2', [{ kind: 'ConfigMap', name: 'app-config', version: 3 }], T0 + 2);
      store.recordStatus('edge-2', [{ seq: 1, kind: 'ConfigMap', name: 'app-config', phase: 'Stored', observedVersion: 3, at: T0 + 3 }], T0 + 4);

      const list = (await call(h, 'resource.get', { kind: 'cm' })) as ResourceGetResult;
      expect(list.items).toHaveLength(1);
      expect(list.items[0]).toMatchObject({
        kind: 'ConfigMap',
        name: 'app-config',
        version: 3,
        source: 'cloud',
        acks: [
          { node: 'edge-1', version: 1, current: false, ackedAt: T0 + 1 },
          { node: 'edge-2', version: 3, current: true, ackedAt: T0 + 2 },
        ],
        acksTotal: 2,
        acksCurrent: 1,
      });
      const one = (await call(h, 'resource.get', { kind: 'ConfigMap', name: 'app-config' })) as ResourceGetResult;
      expect(one.items[0]?.status).toEqual([{ node: 'edge-2', phase: 'Stored', observedVersion: 3, at: T0 + 3 }]);

      const secret = (await call(h, 'resource.get', { kind: 'secrets', name: 'db' })) as ResourceGetResult;
      expect(secret.items[0]?.data).toEqual({ data: { password: '<redacted 7 bytes>' } });
      const text = JSON.stringify(await call(h, 'resource.get', { kind: 'secret' }));
      expect(text).not.toContain('hunter2');
      expect(text).not.toContain(Buffer.from('hunter2').toString('base64'));

      expect(await call(h, 'resource.delete', { kind: 'secret', name: 'db' })).toEqual({ kind: 'Secret', name: 'db', version: 4 });
      expect(logs.some((l) => l['event'] === 'resource.deleted' && l['name'] === 'db')).toBe(true);
      expect(await failure(call(h, 'resource.delete', { kind: 'secret', name: 'db' }))).toBe('resource/not-found');
      expect(await failure(call(h, 'resource.get', { kind: 'secret', name: 'db' }))).toBe('resource/not-found');
      expect(await call(h, 'resource.get', { kind: 'secret' })).toEqual({ items: [], total: 0 });
    } finally {
      store.close();
    }
  });

  it('apply is all or nothing, and reports every invalid document by number', async () => {
    const { h, store } = await handlers();
    try {
      const bad = [docs[0], { ...docs[1], kind: 'Pod' }, { apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: 'X', nodes: ['edge-1'] } }];
      try {
        await call(h, 'resource.apply', { documents: bad });
        throw new Error('expected a failure');
      } catch (e) {
        expect((e as EdgewardError).code).toBe('resource/invalid');
        expect((e as Error).message).toMatch(/2 of 3 documents are invalid; nothing was applied/);
        expect((e as Error).message).toMatch(/document 2: .*kind/);
        expect((e as Error).message).toMatch(/document 3: .*metadata\.name/);
      }
      expect(store.currentVersion()).toBe(0);
    } finally {
      store.close();
    }
  });

  it('validates parameters strictly', async () => {
    const { h, store } = await handlers();
    try {
      expect(await failure(call(h, 'resource.apply', {}))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.apply', { documents: [] }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.apply', { documents: 'x' }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.apply', { documents: docs, force: true }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.apply', { documents: Array.from({ length: 1001 }, () => docs[0]) }))).toBe('resource-store/too-many');
      expect(await failure(call(h, 'resource.apply', { documents: [null] }))).toBe('resource/invalid');
      expect(await failure(call(h, 'resource.get', {}))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.get', { kind: 'pods' }))).toBe('resource/invalid');
      expect(await failure(call(h, 'resource.get', { kind: 'cm', name: 'Bad' }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.get', { kind: 'cm', name: 5 }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.get', { kind: 'cm', extra: 1 }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.delete', { kind: 'cm' }))).toBe('cloud-admin/bad-request');
      expect(await failure(call(h, 'resource.delete', { kind: 'cm', name: 'x', all: true }))).toBe('cloud-admin/bad-request');
    } finally {
      store.close();
    }
  });

  it('a list fits one admin response: acks per item bounded, big lists truncated with the total', async () => {
    const { h, store } = await handlers();
    try {
      const big = 'v'.repeat(200 * 1024);
      const many = Array.from({ length: 8 }, (_, i) => ({ apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: `big-${i}`, nodes: ['*'] }, data: { k: big } }));
      await call(h, 'resource.apply', { documents: many });
      for (let n = 0; n < 50; n++) store.recordAcks(`node-${n}`, [{ kind: 'ConfigMap', name: 'big-0', version: 1 }], T0);
      const r = (await call(h, 'resource.get', { kind: 'cm' })) as ResourceGetResult;
      expect(r.truncated).toBe(true);
      expect(r.total).toBe(8);
      expect(r.items.length).toBeGreaterThan(0);
      expect(r.items.length).toBeLessThan(8);
      expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThan(1024 * 1024);
      expect(r.items[0]?.acks).toHaveLength(20);
      expect(r.items[0]?.acksTotal).toBe(50);
      expect(r.items[0]?.acksCurrent).toBe(50);
    } finally {
      store.close();
    }
  });
});
