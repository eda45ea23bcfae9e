/**
 * CloudHub sync logic (contract "Cloud hub", "Reliable sync"), with a fake resource store: the catch-up
 * after hello with back-pressure, fan-out to the targeted sessions only (deletes to the nodes no longer
 * targeted), buffered acks written per flush, acks that cross an untargeting, status entries, and failures
 * that close one session and nothing else.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { StoredResource } from '../../../src/cloud/index.js';
import { MAX_HUB_ACK_ITEMS, type CloudToEdgeHubMessage } from '../../../src/protocol/index.js';
import { startHarness, until, type Harness } from './hub-harness.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const names = (ms: CloudToEdgeHubMessage[]): string[] =>
  ms.map((m) => (m.kind === 'put' ? `put ${m.resource.name}@${m.resource.version}` : m.kind === 'delete' ? `delete ${m.resource.name}@${m.version}` : m.kind));

function resource(name: string, version: number, nodes: string[], size = 10): StoredResource {
  return { kind: 'ConfigMap', name, version, nodes, data: { data: { v: 'z'.repeat(size) } }, deleted: false, createdAt: 1, updatedAt: 1 };
}

describe('CloudHub catch-up', () => {
  it('answers hello with welcome (resync when the edge store changed), the lacking items in order, then synced', async () => {
    h = await startHarness();
    h.store.version = 7;
    h.store.pending.set('n1', [
      { op: 'put', resource: resource('a', 3, ['n1']) },
      { op: 'delete', kind: 'ConfigMap', name: 'b', version: 5 },
      { op: 'put', resource: resource('c', 7, ['*']) },
    ]);
    const c = await h.open('n1');
    c.hello('00000000-0000-4000-8000-00000000000a');
    const [welcome] = await c.until('welcome');
    expect(welcome).toMatchObject({ v: 1, kind: 'welcome', node: 'n1', heartbeatMs: 10_000, resync: false });
    expect((welcome as { sessionId: string }).sessionId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(names(await c.until('synced'))).toEqual(['put a@3', 'delete b@5', 'put c@7', 'synced']);
    expect(c.messages.at(-1)).toEqual({ v: 1, kind: 'synced', version: 7 });
    expect(h.store.bindings.get('n1')).toBe('00000000-0000-4000-8000-00000000000a');
    c.ws.close();
    await c.closed;
    // Another edge store: the store says so, and welcome tells the edge.
    const again = await h.open('n1');
    again.hello('00000000-0000-4000-8000-00000000000b');
    expect((await again.until('welcome'))[0]).toMatchObject({ resync: true });
  });

  it('sends a catch-up far larger than the send buffer limit with back-pressure, complete and in order', async () => {
    h = await startHarness({ limits: { sendHighWaterBytes: 512 * 1024 } });
    const items = Array.from({ length: 2000 }, (_, i) => ({ op: 'put' as const, resource: resource(`r-${i}`, i + 1, ['n1'], 2048) }));
    h.store.pending.set('n1', items);
    h.store.version = 2000;
    const c = await h.open('n1');
    const got = await c.sync();
    expect(got.length).toBe(2000); // ~4 MB, never more than the water mark queued at once
    expect(got.map((m) => (m.kind === 'put' ? m.resource.version : 0))).toEqual(items.map((i) => i.resource.version));
    expect(h.hub.stats()).toMatchObject({ live: 1, slowReadersClosed: 0 });
  });
});

describe('CloudHub fan-out', () => {
  it('sends a change to every synced session it targets (the same frame), never to others or to sessions before hello', async () => {
    h = await startHarness();
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => h.open(n)));
    await a!.sync();
    await b!.sync();
    // c has not said hello: it gets its catch-up later, nothing live before.
    h.store.put('for-a', ['a']);
    h.store.put('for-ab', ['a', 'b']);
    h.store.put('for-all', ['*']);
    expect(names(await a!.until('put'))).toEqual(['put for-a@1']);
    expect(names(await a!.until('put'))).toEqual(['put for-ab@2']);
    expect(names(await a!.until('put'))).toEqual(['put for-all@3']);
    expect(names(await b!.until('put'))).toEqual(['put for-ab@2']);
    expect(names(await b!.until('put'))).toEqual(['put for-all@3']);
    expect(c!.messages).toEqual([]);
    expect(names(await c!.sync())).toEqual(['put for-all@3']);
    const forAb = (x: typeof a): CloudToEdgeHubMessage | undefined => x!.messages.find((m) => m.kind === 'put' && m.resource.name === 'for-ab');
    expect(forAb(a)).toEqual(forAb(b));
    expect(forAb(a)).toEqual({ v: 1, kind: 'put', resource: { kind: 'ConfigMap', name: 'for-ab', version: 2, data: { data: { k: 'for-ab' } } } });
  });

  it('sends a delete to the nodes a change stops targeting, and a deletion to every node it targeted', async () => {
    h = await startHarness();
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => h.open(n)));
    for (const x of [a, b, c]) await x!.sync();
    h.store.put('cm', ['a', 'b']);
    await a!.until('put');
    await b!.until('put');
    h.store.put('cm', ['b']); // a is no longer targeted
    expect(names(await a!.until('delete'))).toEqual(['delete cm@2']);
    expect(names(await b!.until('put'))).toEqual(['put cm@2']);
    h.store.put('cm', ['*']);
    h.store.put('cm', ['c']); // from every node to c: a and b delete it
    expect(names(await a!.until('delete'))).toEqual(['put cm@3', 'delete cm@4']);
    expect(names(await b!.until('delete'))).toEqual(['put cm@3', 'delete cm@4']);
    h.store.del('cm');
    expect(names(await c!.until('delete'))).toEqual(['put cm@3', 'put cm@4', 'delete cm@5']);
    // a and b got nothing more (the marker is the next thing they see).
    h.store.put('marker', ['*']);
    expect(names(await a!.until('put'))).toEqual(['put marker@6']);
    expect(names(await b!.until('put'))).toEqual(['put marker@6']);
  });
});

describe('CloudHub acks', () => {
  it('buffers acks and writes them per node once per flush', async () => {
    h = await startHarness({ timing: { ackFlushMs: 200 } });
    for (let i = 1; i <= 3; i++) h.store.put(`cm-${i}`, ['a', 'b']);
    const a = await h.open('a');
    const b = await h.open('b');
    await a.sync();
    await b.sync();
    a.send({ v: 1, kind: 'ack', items: [{ kind: 'ConfigMap', name: 'cm-1', version: 1 }] });
    a.send({ v: 1, kind: 'ack', items: [{ kind: 'ConfigMap', name: 'cm-2', version: 2 }, { kind: 'ConfigMap', name: 'cm-3', version: 3 }] });
    b.send({ v: 1, kind: 'ack', items: [{ kind: 'ConfigMap', name: 'cm-1', version: 1 }] });
    await until(() => h.store.ackCalls.length === 2, 'the flush');
    expect(h.store.ackCalls).toEqual([
      { node: 'a', items: [{ kind: 'ConfigMap', name: 'cm-1', version: 1 }, { kind: 'ConfigMap', name: 'cm-2', version: 2 }, { kind: 'ConfigMap', name: 'cm-3', version: 3 }] },
      { node: 'b', items: [{ kind: 'ConfigMap', name: 'cm-1', version: 1 }] },
    ]);
    expect(h.hub.stats().pendingAcks).toBe(0);
  });

  it('flushes at once when 1000 acks are buffered', async () => {
    h = await startHarness({ timing: { ackFlushMs: 60_000 } });
    for (let i = 1; i <= MAX_HUB_ACK_ITEMS; i++) h.store.put(`cm-${i}`, ['a']);
    const a = await h.open('a');
    const items = await a.sync();
    a.send({ v: 1, kind: 'ack', items: items.map((m) => (m.kind === 'put' ? { kind: m.resource.kind, name: m.resource.name, version: m.resource.version } : null)) });
    await until(() => h.store.ackCalls.length === 1, 'the flush');
    expect(h.store.ackCalls[0]!.items).toHaveLength(MAX_HUB_ACK_ITEMS);
  });

  it('sends a delete for an ack that crossed an untargeting or a deletion (not recorded), and ignores acks of versions never sent to the node', async () => {
    h = await startHarness({ timing: { ackFlushMs: 60_000 } });
    h.store.put('moved', ['a']); // 1
    h.store.put('gone', ['a']); // 2
    h.store.put('other', ['b']); // 3
    const a = await h.open('a');
    await a.sync();
    h.store.put('moved', ['b']); // 4: a no longer targeted (its delete is sent live)
    h.store.del('gone'); // 5
    await a.until('delete');
    await a.until('delete');
    // The acks of what a received before those changes arrive now; plus one for b's resource at its version.
    a.send({ v: 1, kind: 'ack', items: [
      { kind: 'ConfigMap', name: 'moved', version: 1 },
      { kind: 'ConfigMap', name: 'gone', version: 2 },
      { kind: 'ConfigMap', name: 'other', version: 3 },
    ] });
    await until(() => h.hub.stats().pendingAcks === 3, 'buffered');
    h.hub.flushAcks();
    // None is recorded (none is the node's now); each gets a delete at the global version (5), which tells
    // the node nothing of the resource's own version, nor whether the name exists.
    expect(h.store.ackCalls).toEqual([]);
    expect(names(await a.until('delete'))).toEqual(['delete moved@5']);
    expect(names(await a.until('delete'))).toEqual(['delete gone@5']);
    expect(names(await a.until('delete'))).toEqual(['delete other@5']);
    await h.waitForLog((l) => l.event === 'security.hub_foreign_ack' && l.node === 'a' && l.items === 3);
  });
});

describe('CloudHub status', () => {
  it('stores status entries under the session node and acknowledges the last seq', async () => {
    h = await startHarness();
    const a = await h.open('a');
    await a.sync();
    const entries = [
      { seq: 4, kind: 'ConfigMap', name: 'x', phase: 'Stored', observedVersion: 2, at: 5 },
      { seq: 5, kind: 'Node', name: 'a', phase: 'Ready', at: 6 },
    ];
    a.send({ v: 1, kind: 'status', entries });
    expect(await a.until('status.ack')).toEqual([{ v: 1, kind: 'status.ack', seq: 5 }]);
    expect(h.store.statusCalls).toEqual([{ node: 'a', entries }]);
  });

  it('does not store a status entry about another node, logs it, and keeps the session (one bad entry must not wedge the outbox)', async () => {
    h = await startHarness();
    const a = await h.open('a');
    await a.sync();
    const entries = [
      { seq: 1, kind: 'Node' as const, name: 'b', phase: 'Ready', at: 6 },
      { seq: 2, kind: 'Node' as const, name: 'a', phase: 'Ready', at: 7 },
    ];
    a.send({ v: 1, kind: 'status', entries });
    // The seq advances past the foreign entry (the store skips it), so the edge's outbox drains.
    expect(await a.until('status.ack')).toEqual([{ v: 1, kind: 'status.ack', seq: 2 }]);
    await h.waitForLog((l) => l.event === 'security.hub_foreign_status' && l.code === 'hub/foreign-status');
    expect(h.logs.some((l) => l.event === 'security.hub_protocol_violation')).toBe(false);
  });
});

describe('CloudHub failures stay in their session', () => {
  it('closes a session whose store call fails with 4500 hub/internal; the others go on', async () => {
    h = await startHarness();
    const ok = await h.open('ok');
    await ok.sync();
    h.store.failBind = true;
    const bad = await h.open('bad');
    bad.hello();
    expect(await bad.closed).toBe(4500);
    expect(bad.rest().pop()).toEqual({ v: 1, kind: 'error', code: 'hub/internal', message: 'internal error' });
    await h.waitForLog((l) => l.event === 'hub.internal_error' && l.node === 'bad');
    h.store.put('still', ['ok']);
    expect(names(await ok.until('put'))).toEqual(['put still@1']);
  });

  it('closes with 4400 on a binary frame and on anything before hello', async () => {
    h = await startHarness();
    const a = await h.open('a');
    a.ws.send(Buffer.from('{"v":1,"kind":"hello"}'), { binary: true });
    expect(await a.closed).toBe(4400);
    expect(a.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/malformed' });
    const b = await h.open('b');
    b.send({ v: 1, kind: 'status', entries: [{ seq: 1, kind: 'Node', name: 'b', phase: 'Ready', at: 6 }] });
    expect(await b.closed).toBe(4400);
    expect(b.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/unexpected-kind' });
    expect(h.hub.stats().protocolViolations).toBe(2);
  });
});
