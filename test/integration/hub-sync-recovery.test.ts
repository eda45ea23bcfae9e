/**
 * Sync recovery with the real cloud resource store and CloudHub against the real EdgeHub and sealed edge
 * store (over ws:// on 127.0.0.1; the edge still checks the cloud's SVID chain), for the cases a review of
 * issue #5 found: a Node status naming another node must not wedge the outbox; an edge store restored from
 * an old backup, a row that no longer authenticates, a store reused by another node name or against another
 * cloud must all end converged with what the cloud assigns; the default secrets key path must not change
 * once the data dir exists.
 */
import { mkdirSync, mkdtempSync, symlinkSync, copyFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultSecretsKeyFile } from '../../src/edge/hub/index.js';
import { cm, edgeStoreDir, newDek, openEdgeStore, sleep, startCloud, startEdge, until, type Log } from './hub-sync-rig.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

it('a Node status naming another node is refused at the edge, and skipped (not a 4400) by the cloud: the outbox drains', async () => {
  const cloud = await startCloud();
  cleanup.push(() => cloud.close());
  const store = openEdgeStore(edgeStoreDir(), newDek());
  cleanup.push(() => store.close());
  const edge = startEdge('n1', cloud.port, store);
  cleanup.push(() => edge.hub.close());
  await until(() => edge.hub.status().state === 'synced', 'first sync');

  // The edge refuses a Node status about another node (an operator typo through `edge report-status`)...
  expect(() => edge.hub.reportStatus({ kind: 'Node', name: 'n2', phase: 'Ready' })).toThrow(/about this node/);
  // ...and one that reaches the outbox anyway (an older agent wrote it) does not wedge the session.
  store.appendStatus({ kind: 'Node', name: 'n2', phase: 'Ready', at: Date.now() });
  edge.hub.reportStatus({ kind: 'Node', name: 'n1', phase: 'Ready' });
  // Meanwhile a resource is applied.
  const v = cloud.store.apply([cm('app', ['n1'])])[0]!.version;
  await until(() => store.get('ConfigMap', 'app') !== undefined, 'the edge stores it');
  await sleep(1500);
  cloud.hub.flushAcks();
  expect(edge.closes.filter((c) => c === 4400)).toEqual([]);
  expect(cloud.store.acksOf('ConfigMap', 'app').map((a) => a.version)).toEqual([v]);
  await until(() => store.outboxSize() === 0, 'the outbox drains');
  expect(cloud.store.nodeStatus('n1').some((s) => s.kind === 'Node' && s.phase === 'Ready')).toBe(true);
  expect(cloud.store.nodeStatus('n1').some((s) => s.kind === 'Node' && s.name === 'n2')).toBe(false);
  expect(cloud.logs.some((l) => l['event'] === 'security.hub_foreign_status')).toBe(true);
});

it('an edge store restored from an old backup is detected (outbox seq below the recorded one): resync, and new status arrives', async () => {
  const cloud = await startCloud();
  cleanup.push(() => cloud.close());
  const dir = edgeStoreDir();
  const dek = newDek();
  const db = join(dir, 'state.db');
  const acked = (name: string, v: number) => () => (cloud.hub.flushAcks(), cloud.store.acksOf('ConfigMap', name).some((a) => a.node === 'n1' && a.version === v));

  // 1. a@1 stored and acknowledged; then a backup of the edge store.
  let store = openEdgeStore(dir, dek);
  let edge = startEdge('n1', cloud.port, store);
  const a1 = cloud.store.apply([cm('a', ['n1'], 'one')])[0]!.version;
  await until(acked('a', a1), 'a@1 acked');
  await until(() => store.outboxSize() === 0, 'outbox drained');
  await edge.hub.close();
  store.close();
  copyFileSync(db, `${db}.bak`);

  // 2. Life goes on: a@2, b@3, a few status entries, all acknowledged.
  store = openEdgeStore(dir, dek);
  edge = startEdge('n1', cloud.port, store);
  const [a2, b3] = cloud.store.apply([cm('a', ['n1'], 'two'), cm('b', ['n1'])]).map((o) => o.version);
  await until(acked('a', a2!), 'a@2 acked');
  await until(acked('b', b3!), 'b@3 acked');
  for (let i = 0; i < 5; i++) edge.hub.reportStatus({ kind: 'ConfigMap', name: 'a', phase: 'Running', message: `tick ${i}` });
  await until(() => store.outboxSize() === 0, 'outbox drained');
  await edge.hub.close();
  store.close();

  // 3. The node is restored from the backup (disk replaced, VM snapshot, ...).
  for (const s of ['', '-wal', '-shm']) if (existsSync(`${db}${s}`)) rmSync(`${db}${s}`);
  copyFileSync(`${db}.bak`, db);
  store = openEdgeStore(dir, dek);
  cleanup.push(() => store.close());
  edge = startEdge('n1', cloud.port, store);
  cleanup.push(() => edge.hub.close());
  await until(() => edge.hub.status().state === 'synced', 'synced after restore');
  edge.hub.reportStatus({ kind: 'ConfigMap', name: 'a', phase: 'Failed', message: 'after restore' });
  await until(() => store.outboxSize() === 0, 'outbox "drained"');
  await sleep(500);
  cloud.hub.flushAcks();

  // The restored store's highest outbox seq is below what the cloud recorded: the cloud resets what it knew
  // of the store (acks a@2, b@3) and sends everything again; the edge converges to a@2 and b@3...
  await until(() => store.get('ConfigMap', 'a')?.version === a2 && store.get('ConfigMap', 'b')?.version === b3, 'converged after the restore');
  expect({ a: store.get('ConfigMap', 'a')?.version, b: store.get('ConfigMap', 'b')?.version }).toEqual({ a: a2, b: b3 });
  // ...and the status reported after the restore reaches the cloud.
  await until(() => cloud.store.statusOf('ConfigMap', 'a')[0]?.phase === 'Failed', 'the status reported after the restore');
});

it('a row that no longer authenticates makes the edge ask for a resync, and the cloud sends it again', async () => {
  const cloud = await startCloud();
  cleanup.push(() => cloud.close());
  const dir = edgeStoreDir();
  const dek = newDek();
  let store = openEdgeStore(dir, dek);
  let edge = startEdge('n1', cloud.port, store);
  const v = cloud.store.apply([cm('a', ['n1'])])[0]!.version;
  await until(() => (cloud.hub.flushAcks(), cloud.store.acksOf('ConfigMap', 'a')[0]?.version === v), 'acked');
  await edge.hub.close();
  store.close();

  // One flipped bit in the sealed body.
  const raw = new Database(join(dir, 'state.db'));
  const row = raw.prepare("SELECT body FROM resources WHERE kind='ConfigMap' AND name='a'").get() as { body: Buffer };
  row.body.writeUInt8(row.body.readUInt8(0) ^ 1, 0);
  raw.prepare("UPDATE resources SET body=? WHERE kind='ConfigMap' AND name='a'").run(row.body);
  raw.close();

  const logs: Log = [];
  store = openEdgeStore(dir, dek, logs);
  cleanup.push(() => store.close());
  edge = startEdge('n1', cloud.port, store);
  cleanup.push(() => edge.hub.close());
  await until(() => edge.hub.status().state === 'synced', 'synced');
  await sleep(300);
  expect(logs.some((l) => l['event'] === 'security.edge_store_row_refused')).toBe(true);
  expect(store.get('ConfigMap', 'a')?.version).toBe(v);
});

it('a store reused under another node name (no binding yet: resync) drops the other node\'s objects', async () => {
  const cloud = await startCloud();
  cleanup.push(() => cloud.close());
  const store = openEdgeStore(edgeStoreDir(), newDek());
  cleanup.push(() => store.close());
  let edge = startEdge('n1', cloud.port, store);
  cloud.store.apply([cm('only-for-n1', ['n1'])]);
  await until(() => store.get('ConfigMap', 'only-for-n1') !== undefined, 'stored');
  await edge.hub.close();
  // join --force --node n2 with the same data dir
  edge = startEdge('n2', cloud.port, store);
  cleanup.push(() => edge.hub.close());
  await until(() => edge.hub.status().state === 'synced', 'n2 synced');
  await sleep(300);
  cloud.hub.flushAcks();
  expect(cloud.logs.some((l) => l['event'] === 'security.hub_foreign_ack')).toBe(false);
  expect(store.get('ConfigMap', 'only-for-n1')).toBeUndefined();
});

it('a store reused against another cloud (lower versions) takes the new cloud\'s objects', async () => {
  const cloudA = await startCloud();
  cleanup.push(() => cloudA.close());
  const store = openEdgeStore(edgeStoreDir(), newDek());
  cleanup.push(() => store.close());
  let edge = startEdge('n1', cloudA.port, store);
  for (let i = 0; i < 5; i++) cloudA.store.apply([cm('app', ['n1'], `from-A-${i}`)]);
  await until(() => store.get('ConfigMap', 'app')?.version === 5, 'A@5 stored');
  await edge.hub.close();
  await cloudA.close();
  cleanup.pop();

  const cloudB = await startCloud();
  cleanup.push(() => cloudB.close());
  const v = cloudB.store.apply([cm('app', ['n1'], 'from-B')])[0]!.version; // version 1
  edge = startEdge('n1', cloudB.port, store);
  cleanup.push(() => edge.hub.close());
  await until(() => (cloudB.hub.flushAcks(), cloudB.store.acksOf('ConfigMap', 'app').length > 0), 'B sees an ack');
  expect(cloudB.store.acksOf('ConfigMap', 'app')[0]!.version).toBe(v);
  expect(store.get('ConfigMap', 'app')!.data).toEqual({ data: { k: 'from-B' } });
});

it('the default secrets key path of a data dir is the same before and after the dir exists (symlinked parent)', () => {
  const root = mkdtempSync(join(tmpdir(), 'rev-kek-'));
  mkdirSync(join(root, 'real'));
  symlinkSync(join(root, 'real'), join(root, 'link'));
  const data = join(root, 'link', 'edge-data');
  const env = { XDG_CONFIG_HOME: join(root, 'cfg') };
  const before = defaultSecretsKeyFile(data, env); // first start: DATA not there yet
  mkdirSync(data);
  const after = defaultSecretsKeyFile(data, env); // every later start
  expect(after).toBe(before);
});
