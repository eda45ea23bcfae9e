/**
 * The edge hub store (src/edge/hub/store.ts) over real SQLite files through the host's StateFiles: the
 * durable, sealed copy of the node's desired state and its status outbox (contract #5 "Edge store and
 * sealing"; the KubeEdge edgecore.db it replaces keeps every object, secrets included, in plain JSON:
 * kubeedge.md §5).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { hostStateFiles } from '../../src/cli/host/index.js';
import {
  MAX_OUTBOX_ROWS,
  TOMBSTONE_MIN_AGE_MS,
  openEdgeHubStore,
  type EdgeHubStore,
  type HubItem,
} from '../../src/edge/hub/store.js';
import { EdgeStoreError } from '../../src/edge/hub/store-errors.js';
import type { WireResource } from '../../src/protocol/index.js';
import { tempDir } from '../helpers/index.js';

interface LogLine {
  level: 'info' | 'warn';
  obj: Record<string, unknown>;
  msg: string;
}

function recordingLogger(): { lines: LogLine[]; info(o: Record<string, unknown>, m: string): void; warn(o: Record<string, unknown>, m: string): void; events(name: string): LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    events: (name) => lines.filter((l) => l.obj['event'] === name),
  };
}

function fakeClock(start = 1_700_000_000_000): { now(): number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

interface Fixture {
  dir: string;
  dek: Buffer;
  clock: ReturnType<typeof fakeClock>;
  log: ReturnType<typeof recordingLogger>;
  open(dek?: Buffer): EdgeHubStore;
}

async function fixture(): Promise<Fixture> {
  const dir = join(await tempDir(), 'data', 'hub');
  const dek = randomBytes(32);
  const clock = fakeClock();
  const log = recordingLogger();
  const opened: EdgeHubStore[] = [];
  const f: Fixture = {
    dir,
    dek,
    clock,
    log,
    open: (k = dek) => {
      const s = openEdgeHubStore({ dir, files: hostStateFiles, dek: k, clock, logger: log });
      opened.push(s);
      return s;
    },
  };
  return f;
}

const cm = (name: string, version: number, data: Record<string, string> = { LOG_LEVEL: 'info' }): HubItem => ({
  op: 'put',
  resource: { kind: 'ConfigMap', name, version, data: { data } } satisfies WireResource,
});
const secret = (name: string, version: number, value: string): HubItem => ({
  op: 'put',
  resource: { kind: 'Secret', name, version, data: { data: { password: Buffer.from(value).toString('base64') } } },
});
const del = (name: string, version: number, kind: 'ConfigMap' | 'Secret' = 'ConfigMap'): HubItem => ({ op: 'delete', kind, name, version });

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EdgeStoreError);
    return (e as EdgeStoreError).code;
  }
  return undefined;
}

/** Raw access to the file behind a closed store, as an attacker with the disk would have. */
function raw(f: Fixture): Database.Database {
  return new Database(join(f.dir, 'state.db'));
}

describe('edge hub store: files and identity', () => {
  it('creates DATA/hub 0700 and state.db 0600, with a UUID v4 store id kept across reopen', async () => {
    const f = await fixture();
    const s = f.open();
    expect(s.storeId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(statSync(f.dir).mode & 0o777).toBe(0o700);
    for (const name of readdirSync(f.dir)) expect(statSync(join(f.dir, name)).mode & 0o777, name).toBe(0o600);
    const id = s.storeId;
    s.close();
    const again = f.open();
    expect(again.storeId).toBe(id);
    again.close();
    // Another store (another data dir) has another identity.
    const g = await fixture();
    const other = g.open();
    expect(other.storeId).not.toBe(id);
    other.close();
  });

  it('refuses another data key at open (edge-store/key-unavailable), and a key of the wrong size', async () => {
    const f = await fixture();
    f.open().close();
    expect(codeOf(() => f.open(randomBytes(32)))).toBe('edge-store/key-unavailable');
    expect(codeOf(() => f.open(randomBytes(16)))).toBe('edge-store/invalid');
    // The right key still opens it: the failed attempt changed nothing.
    f.open().close();
  });

  it('never writes a resource body in clear (a secret value is absent from the database and its WAL)', async () => {
    const f = await fixture();
    const s = f.open();
    const marker = 'CorrectHorseBatteryStaple-7f3a';
    s.apply([secret('db-password', 3, marker), cm('app-config', 4, { MARKER_VALUE: marker })]);
    expect(s.get('Secret', 'db-password')?.data).toEqual({ data: { password: Buffer.from(marker).toString('base64') } });
    const files = readdirSync(f.dir).map((n) => readFileSync(join(f.dir, n)));
    s.close();
    const after = readdirSync(f.dir).map((n) => readFileSync(join(f.dir, n)));
    for (const b of [...files, ...after]) {
      expect(b.includes(Buffer.from(marker))).toBe(false);
      expect(b.includes(Buffer.from(Buffer.from(marker).toString('base64')))).toBe(false);
    }
  });
});

describe('edge hub store: apply', () => {
  it('is idempotent: an item is stored only if newer; every item is acknowledged, superseded ones included', async () => {
    const f = await fixture();
    const s = f.open();
    const r1 = s.apply([cm('app', 5, { A: '1' })], { reportStored: true });
    expect(r1.acks).toEqual([{ kind: 'ConfigMap', name: 'app', version: 5 }]);
    expect(r1.changed).toEqual([{ op: 'put', resource: { kind: 'ConfigMap', name: 'app', version: 5, data: { data: { A: '1' } }, updatedAt: f.clock.now() } }]);
    expect(r1.reported).toBe(1);
    // The same item again (a redelivery after a reconnect): acknowledged, not rewritten.
    const r2 = s.apply([cm('app', 5, { A: 'changed?' })], { reportStored: true });
    expect(r2.acks).toEqual([{ kind: 'ConfigMap', name: 'app', version: 5 }]);
    expect(r2.changed).toEqual([]);
    expect(r2.superseded).toEqual([{ kind: 'ConfigMap', name: 'app', version: 5 }]);
    expect(r2.reported).toBe(0);
    // Newer: stored. Older afterwards: superseded.
    s.apply([cm('app', 9, { A: '2' })]);
    const r3 = s.apply([cm('app', 7, { A: 'old' })]);
    expect(r3.superseded).toHaveLength(1);
    expect(s.get('ConfigMap', 'app')).toMatchObject({ version: 9, data: { data: { A: '2' } } });
    // Within one batch, items apply in order.
    const r4 = s.apply([cm('b', 2, { X: 'a' }), cm('b', 3, { X: 'b' }), cm('b', 3, { X: 'c' })]);
    expect(r4.acks.map((a) => a.version)).toEqual([2, 3, 3]);
    expect(r4.superseded).toEqual([{ kind: 'ConfigMap', name: 'b', version: 3 }]);
    expect(s.get('ConfigMap', 'b')?.data).toEqual({ data: { X: 'b' } });
    expect(s.pendingStatus(10).map((e) => [e.name, e.phase, e.observedVersion])).toEqual([['app', 'Stored', 5]]);
    s.close();
  });

  it('keeps tombstones: an older put after a delete does not resurrect the object; a newer one does', async () => {
    const f = await fixture();
    const s = f.open();
    s.apply([cm('app', 3)]);
    const d = s.apply([del('app', 6)]);
    expect(d.acks).toEqual([{ kind: 'ConfigMap', name: 'app', version: 6, deleted: true }]);
    expect(d.changed).toEqual([{ op: 'delete', kind: 'ConfigMap', name: 'app', version: 6, existed: true }]);
    expect(s.get('ConfigMap', 'app')).toBeUndefined();
    // A late put older than the delete (e.g. from an earlier session): acknowledged, ignored.
    const late = s.apply([cm('app', 5)]);
    expect(late.superseded).toEqual([{ kind: 'ConfigMap', name: 'app', version: 5 }]);
    expect(s.get('ConfigMap', 'app')).toBeUndefined();
    // The tombstone survives a restart.
    s.close();
    const t = f.open();
    t.apply([cm('app', 4)]);
    expect(t.list()).toEqual([]);
    // A delete of an object never seen records a tombstone too.
    expect(t.apply([del('ghost', 10)]).changed).toEqual([{ op: 'delete', kind: 'ConfigMap', name: 'ghost', version: 10, existed: false }]);
    expect(t.apply([cm('ghost', 9)]).superseded).toHaveLength(1);
    // Re-created later with a newer version.
    t.apply([cm('app', 8, { B: 'x' })]);
    expect(t.get('ConfigMap', 'app')).toMatchObject({ version: 8, data: { data: { B: 'x' } } });
    t.close();
  });

  it('is one transaction: an invalid item rolls back the whole batch and nothing is acknowledged', async () => {
    const f = await fixture();
    const s = f.open();
    s.apply([cm('keep', 1, { K: 'v1' })]);
    let acks: unknown;
    const bad: HubItem = { op: 'put', resource: { kind: 'ConfigMap', name: 'bad', version: 3, data: { data: { K: 42 } } } as unknown as WireResource };
    expect(
      codeOf(() => {
        acks = s.apply([cm('keep', 2, { K: 'v2' }), cm('new', 2), del('keep', 5), bad], { reportStored: true }).acks;
      }),
    ).toBe('edge-store/invalid');
    expect(acks).toBeUndefined();
    // The earlier items of the batch were written inside the transaction, then rolled back.
    expect(s.get('ConfigMap', 'keep')).toMatchObject({ version: 1, data: { data: { K: 'v1' } } });
    expect(s.get('ConfigMap', 'new')).toBeUndefined();
    expect(s.outboxSize()).toBe(0);
    // Other invalid items.
    expect(codeOf(() => s.apply([{ op: 'put', resource: { kind: 'Pod', name: 'x', version: 1, data: {} } } as unknown as HubItem]))).toBe('edge-store/invalid');
    expect(codeOf(() => s.apply([cm('Bad_Name', 1)]))).toBe('edge-store/invalid');
    expect(codeOf(() => s.apply([cm('x', 0)]))).toBe('edge-store/invalid');
    expect(codeOf(() => s.apply([del('x', 1.5)]))).toBe('edge-store/invalid');
    expect(codeOf(() => s.apply([{ op: 'patch' } as unknown as HubItem]))).toBe('edge-store/invalid');
    expect(codeOf(() => s.apply(Array.from({ length: 1001 }, (_, i) => cm(`n${i}`, 1))))).toBe('edge-store/invalid');
    expect(s.list().map((r) => r.name)).toEqual(['keep']);
    s.close();
  });

  it('lists live resources sorted by kind and name, optionally of one kind; returns copies', async () => {
    const f = await fixture();
    const s = f.open();
    s.apply([cm('b', 1), secret('s', 2, 'pw'), cm('a', 3), { op: 'put', resource: { kind: 'Workload', name: 'w', version: 4, data: { spec: { image: 'x' } } } }, del('a', 5)]);
    expect(s.list().map((r) => `${r.kind}/${r.name}@${r.version}`)).toEqual(['ConfigMap/b@1', 'Secret/s@2', 'Workload/w@4']);
    expect(s.list('ConfigMap').map((r) => r.name)).toEqual(['b']);
    const got = s.get('ConfigMap', 'b')!;
    (got.data['data'] as Record<string, string>)['LOG_LEVEL'] = 'mutated';
    expect(s.get('ConfigMap', 'b')!.data).toEqual({ data: { LOG_LEVEL: 'info' } });
    expect(s.get('ConfigMap', 'nope')).toBeUndefined();
    s.close();
  });
});

describe('edge hub store: tampered rows are refused, never served', () => {
  it('refuses bodies swapped between rows, a changed version column, and a tombstone turned live', async () => {
    const f = await fixture();
    const s = f.open();
    s.apply([cm('one', 1, { V: 'one' }), cm('two', 2, { V: 'two' }), cm('three', 3, { V: 'three' }), cm('four', 4), del('gone', 5), cm('ok', 6)]);
    s.close();
    const db = raw(f);
    const row = (name: string): { iv: Buffer; tag: Buffer; body: Buffer } => db.prepare('SELECT iv, tag, body FROM resources WHERE name = ?').get(name) as never;
    const one = row('one');
    const two = row('two');
    const setRow = db.prepare('UPDATE resources SET iv = ?, tag = ?, body = ? WHERE name = ?');
    setRow.run(two.iv, two.tag, two.body, 'one');
    setRow.run(one.iv, one.tag, one.body, 'two');
    // Lower a version (so that an older put would win), and raise another (so that newer ones are ignored).
    db.prepare("UPDATE resources SET version = 1 WHERE name = 'three'").run();
    db.prepare("UPDATE resources SET version = 99 WHERE name = 'four'").run();
    // Resurrect a tombstone.
    db.prepare("UPDATE resources SET deleted = 0 WHERE name = 'gone'").run();
    db.close();

    const t = f.open();
    expect(t.list().map((r) => r.name)).toEqual(['ok']);
    for (const n of ['one', 'two', 'three', 'four', 'gone']) expect(t.get('ConfigMap', n), n).toBeUndefined();
    const refused = f.log.events('security.edge_store_row_refused');
    expect(refused.map((l) => l.obj['name']).sort()).toEqual(['four', 'gone', 'one', 'three', 'two']);
    expect(refused.every((l) => l.level === 'warn')).toBe(true);
    // Logged once per row, not on every read.
    t.list();
    expect(f.log.events('security.edge_store_row_refused')).toHaveLength(5);
    // The cloud's next item for a refused row replaces it, even with a version below the forged column.
    const healed = t.apply([cm('four', 5, { V: 'fresh' })]);
    expect(healed.refused).toEqual([{ kind: 'ConfigMap', name: 'four' }]);
    expect(t.get('ConfigMap', 'four')).toMatchObject({ version: 5, data: { data: { V: 'fresh' } } });
    t.close();
  });

  it('refuses a row moved from another store (the store id is authenticated), even under the same data key', async () => {
    const f = await fixture();
    const a = f.open();
    a.apply([cm('app', 1, { FROM: 'a' })]);
    a.close();
    const g = await fixture();
    const b = g.open(f.dek);
    b.apply([cm('app', 1, { FROM: 'b' })]);
    b.close();
    const src = raw(f);
    const r = src.prepare("SELECT iv, tag, body FROM resources WHERE name = 'app'").get() as { iv: Buffer; tag: Buffer; body: Buffer };
    src.close();
    const dst = raw(g);
    dst.prepare("UPDATE resources SET iv = ?, tag = ?, body = ? WHERE name = 'app'").run(r.iv, r.tag, r.body);
    dst.close();
    const b2 = openEdgeHubStore({ dir: g.dir, files: hostStateFiles, dek: f.dek, clock: g.clock, logger: g.log });
    expect(b2.get('ConfigMap', 'app')).toBeUndefined();
    expect(g.log.events('security.edge_store_row_refused')).toHaveLength(1);
    b2.close();
  });

  it('refuses a changed store id or key check at open', async () => {
    const f = await fixture();
    f.open().close();
    const db = raw(f);
    db.prepare("UPDATE meta SET value = '00000000-0000-4000-8000-000000000000' WHERE key = 'store_id'").run();
    db.close();
    expect(codeOf(() => f.open())).toBe('edge-store/key-unavailable');
    const db2 = raw(f);
    db2.prepare("UPDATE meta SET value = 'not-a-uuid' WHERE key = 'store_id'").run();
    db2.close();
    expect(codeOf(() => f.open())).toBe('edge-store/corrupt');
  });
});

describe('edge hub store: status outbox', () => {
  it('keeps entries in seq order until acknowledged; seqs are never reused, also across restarts', async () => {
    const f = await fixture();
    const s = f.open();
    const at = f.clock.now();
    const seqs = [
      s.appendStatus({ kind: 'ConfigMap', name: 'app', phase: 'Stored', observedVersion: 3, at }),
      s.appendStatus({ kind: 'Node', name: 'edge-1', phase: 'Ready', message: 'all good', at }),
      s.appendStatus({ kind: 'Workload', name: 'w', phase: 'Failed', message: 'x'.repeat(1024), at }),
    ];
    expect(seqs).toEqual([1, 2, 3]);
    expect(s.pendingStatus(2)).toEqual([
      { seq: 1, kind: 'ConfigMap', name: 'app', phase: 'Stored', observedVersion: 3, at },
      { seq: 2, kind: 'Node', name: 'edge-1', phase: 'Ready', message: 'all good', at },
    ]);
    expect(s.ackStatus(2)).toBe(2);
    expect(s.ackStatus(2)).toBe(0);
    expect(s.outboxSize()).toBe(1);
    expect(s.ackStatus(3)).toBe(1);
    s.close();
    const t = f.open();
    expect(t.outboxSize()).toBe(0);
    expect(t.appendStatus({ kind: 'ConfigMap', name: 'app', phase: 'Stored', at })).toBe(4);
    expect(t.pendingStatus(100).map((e) => e.seq)).toEqual([4]);
    // Invalid entries.
    for (const e of [
      { kind: 'Pod', name: 'x', phase: 'Ready', at },
      { kind: 'ConfigMap', name: 'x', phase: 'ready', at },
      { kind: 'ConfigMap', name: 'x', phase: 'Ready', message: 'y'.repeat(1025), at },
      { kind: 'ConfigMap', name: 'x', phase: 'Ready', observedVersion: 0, at },
      { kind: 'ConfigMap', name: 'x', phase: 'Ready', at: -1 },
      { kind: 'Node', name: 'Not_A_Node', phase: 'Ready', at },
      { kind: 'ConfigMap', name: 'x', phase: 'Ready', at, extra: 1 },
    ]) {
      expect(codeOf(() => t.appendStatus(e as never)), JSON.stringify(e).slice(0, 80)).toBe('edge-store/invalid');
    }
    expect(codeOf(() => t.pendingStatus(0))).toBe('edge-store/invalid');
    expect(codeOf(() => t.ackStatus(-1))).toBe('edge-store/invalid');
    t.close();
  });

  it(`is bounded: at ${MAX_OUTBOX_ROWS} rows a new entry is refused (edge-store/outbox-full, event) until the cloud acknowledges`, async () => {
    const f = await fixture();
    const s = f.open();
    s.appendStatus({ kind: 'Node', name: 'edge-1', phase: 'Ready', at: 1 });
    s.close();
    // Fill it directly (as 100,000 reports during a long outage would).
    const db = raw(f);
    const ins = db.prepare("INSERT INTO outbox (kind, name, phase, at) VALUES ('Node', 'edge-1', 'Ready', 2)");
    db.transaction(() => {
      for (let i = 1; i < MAX_OUTBOX_ROWS; i++) ins.run();
    })();
    db.close();
    const t = f.open();
    expect(t.outboxSize()).toBe(MAX_OUTBOX_ROWS);
    expect(codeOf(() => t.appendStatus({ kind: 'Node', name: 'edge-1', phase: 'Ready', at: 3 }))).toBe('edge-store/outbox-full');
    expect(f.log.events('edge.hub_outbox_full')).toHaveLength(1);
    // Resources are still stored when the outbox is full; their Stored entries are left out.
    const r = t.apply([cm('app', 1)], { reportStored: true });
    expect(r.reported).toBe(0);
    expect(t.get('ConfigMap', 'app')).toBeDefined();
    expect(t.ackStatus(10)).toBe(10);
    expect(t.appendStatus({ kind: 'Node', name: 'edge-1', phase: 'Ready', at: 4 })).toBe(MAX_OUTBOX_ROWS + 1);
    expect(t.pendingStatus(1)[0]!.seq).toBe(11);
    t.close();
  });
});

describe('edge hub store: status detail and coalescing (issue #6)', () => {
  it('keeps a detail with the entry; replace drops the unsent entries of the same object first', async () => {
    const f = await fixture();
    const s = f.open();
    const at = f.clock.now();
    expect(s.appendStatus({ kind: 'ConfigMap', name: 'app', phase: 'Stored', at })).toBe(1);
    for (let i = 0; i < 50; i++) {
      s.appendStatus({ kind: 'Device', name: 'plant-a/t-1', phase: 'Online', detail: { twins: { t: { value: String(i), at } }, lastSeen: at }, at }, { replace: true });
    }
    const pending = s.pendingStatus(100);
    // One entry per object: the ConfigMap's and the newest of the device's fifty.
    expect(pending.map((e) => [e.seq, e.kind, e.name])).toEqual([
      [1, 'ConfigMap', 'app'],
      [51, 'Device', 'plant-a/t-1'],
    ]);
    expect(pending[1]?.detail).toEqual({ twins: { t: { value: '49', at } }, lastSeen: at });
    // Survives a restart; a detail that is not a bounded JSON object is refused.
    s.close();
    const t = f.open();
    expect(t.pendingStatus(100)[1]?.detail).toEqual({ twins: { t: { value: '49', at } }, lastSeen: at });
    expect(codeOf(() => t.appendStatus({ kind: 'Device', name: 'plant-a/t-1', phase: 'Online', detail: { x: 'y'.repeat(9000) }, at }))).toBe('edge-store/invalid');
    // A Device is named NAMESPACE/NAME.
    expect(codeOf(() => t.appendStatus({ kind: 'Device', name: 't-1', phase: 'Online', at }))).toBe('edge-store/invalid');
    t.close();
  });
});

describe('edge hub store: synced version and tombstone pruning', () => {
  it('keeps the synced version across restarts and prunes only old tombstones at or below it', async () => {
    const f = await fixture();
    const s = f.open();
    expect(s.syncedVersion()).toBe(0);
    s.apply([cm('a', 1), del('a', 2), del('b', 3), del('c', 8)]);
    s.setSyncedVersion(5);
    expect(s.syncedVersion()).toBe(5);
    // Too recent: kept (an older put could still be in flight).
    expect(s.apply([cm('a', 1)]).superseded).toHaveLength(1);
    f.clock.advance(TOMBSTONE_MIN_AGE_MS + 1);
    s.setSyncedVersion(5);
    s.close();
    const db = raw(f);
    expect((db.prepare('SELECT name FROM resources ORDER BY name').all() as { name: string }[]).map((r) => r.name)).toEqual(['c']);
    db.close();
    const t = f.open();
    expect(t.syncedVersion()).toBe(5);
    expect(t.apply([cm('c', 7)]).superseded).toHaveLength(1);
    expect(codeOf(() => t.setSyncedVersion(-1))).toBe('edge-store/invalid');
    t.close();
  });
});
