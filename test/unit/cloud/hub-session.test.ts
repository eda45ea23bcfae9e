/**
 * CloudHub session life (contract "Cloud hub", "Transport", "Close codes"), with a fake resource store and
 * a ManualClock driving the one-second sweep: hello timeout, idle limit reset by any frame, ping or pong,
 * the peer SVID's NotAfter, first-session-wins with a probe, ban/evict, re-authentication, max sessions,
 * slow readers, nudges and shutdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HUB_CLOUD_IDLE_MS, HUB_HELLO_TIMEOUT_MS, HUB_PROBE_MS } from '../../../src/protocol/index.js';
import { startHarness, until, type Harness } from './hub-harness.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('CloudHub deadlines (one sweep, no timer per session)', () => {
  it('closes a session that sends no hello within 10 s with 4408 hub/hello-timeout', async () => {
    h = await startHarness();
    const c = await h.open('n1');
    h.clock.advance(HUB_HELLO_TIMEOUT_MS - 1);
    h.hub.sweep();
    expect(c.closeCode).toBeUndefined();
    h.clock.advance(1);
    h.hub.sweep();
    expect(await c.closed).toBe(4408);
    expect(c.rest()).toEqual([{ v: 1, kind: 'error', code: 'hub/hello-timeout', message: 'no hello received' }]);
    await h.waitForLog((l) => l.event === 'security.hub_hello_timeout' && l.node === 'n1');
    await h.waitForLog((l) => l.event === 'hub.session_closed' && l.code === 4408 && l.reason === 'hub/hello-timeout');
  });

  it('closes a session on which nothing arrived for 30 s with 4408; a ping resets the limit', async () => {
    h = await startHarness();
    const c = await h.open('n1');
    await c.sync();
    h.clock.advance(HUB_CLOUD_IDLE_MS - 5000);
    await c.pingPong(); // seen by the hub at this time
    h.clock.advance(HUB_CLOUD_IDLE_MS - 1);
    h.hub.sweep();
    expect(c.closeCode).toBeUndefined();
    h.clock.advance(1);
    h.hub.sweep();
    expect(await c.closed).toBe(4408);
    expect(c.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/heartbeat-timeout' });
  });

  it('terminates a closing session that does not finish the closing handshake', async () => {
    h = await startHarness();
    const c = await h.open('n1');
    await c.sync();
    c.pause(); // never answers the close frame
    h.clock.advance(HUB_CLOUD_IDLE_MS);
    h.hub.sweep();
    await until(() => h.hub.stats().closing === 1, 'closing');
    h.clock.advance(2000);
    h.hub.sweep();
    await until(() => h.hub.stats().sessions === 0, 'the session gone');
  });

  it('closes the session at the peer SVID NotAfter with 4410', async () => {
    h = await startHarness();
    const c = await h.open('n1', { notAfter: h.clock.now() + 5000 });
    await c.sync();
    h.clock.advance(4999);
    h.hub.sweep();
    expect(c.closeCode).toBeUndefined();
    h.clock.advance(1);
    h.hub.sweep();
    expect(await c.closed).toBe(4410);
    expect(c.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/svid-expired' });
  });
});

describe('CloudHub: the first session of a node wins', () => {
  it('refuses a second connection with 409 and probes the first; a live first stays, a silent one is dropped', async () => {
    h = await startHarness();
    const first = await h.open('n1');
    await first.sync();
    const second = h.connect('n1');
    expect(await second.refused).toEqual({ status: 409, body: { v: 1, kind: 'error', code: 'hub/session-exists', message: 'this node already has a live hub session' } });
    await h.waitForLog((l) => l.event === 'security.hub_duplicate_session' && l.node === 'n1');
    // The first answered the probe ping (ws pongs by itself): the probe is over.
    await until(() => h.logs.some((l) => l.event === 'hub.session_opened') && h.hub.stats().live === 1, 'live');
    await first.pingPong();
    h.clock.advance(HUB_PROBE_MS);
    h.hub.sweep();
    expect(first.closeCode).toBeUndefined();
    expect(h.hub.stats()).toMatchObject({ sessions: 1, refusedDuplicate: 1 });
    // Silent now: the next attempt is refused too, and the probe drops the first.
    first.pause();
    expect((await h.connect('n1').refused).status).toBe(409);
    h.clock.advance(HUB_PROBE_MS - 1);
    h.hub.sweep();
    expect(h.hub.stats().sessions).toBe(1);
    h.clock.advance(1);
    h.hub.sweep();
    expect(h.hub.stats().sessions).toBe(0);
    await h.waitForLog((l) => l.event === 'hub.session_probe_failed' && l.node === 'n1');
    const third = await h.open('n1');
    await third.sync();
    expect(h.hub.stats().live).toBe(1);
  });

  it('lets a new connection take over from a session the hub is closing, which still gets its close code', async () => {
    h = await startHarness();
    const first = await h.open('n1');
    await first.sync();
    h.refuseAuth.add('n1');
    h.hub.reauthenticate('n1');
    h.refuseAuth.delete('n1');
    const second = await h.open('n1');
    expect(await first.closed).toBe(4401);
    await second.sync();
    expect(h.hub.stats()).toMatchObject({ sessions: 1, live: 1 });
  });
});

describe('CloudHub: identity and registry changes', () => {
  it('closes a banned node with 4403 and an evicted one with 4404 (dropping its buffered acks)', async () => {
    h = await startHarness({ timing: { ackFlushMs: 60_000 } });
    h.store.put('a', ['n1', 'n2']);
    const c1 = await h.open('n1');
    await c1.sync();
    const c2 = await h.open('n2');
    await c2.sync();
    expect(h.hub.closeNode('n1', 'banned')).toBe(1);
    expect(await c1.closed).toBe(4403);
    expect(c1.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/banned' });
    c2.send({ v: 1, kind: 'ack', items: [{ kind: 'ConfigMap', name: 'a', version: 1 }] });
    await until(() => h.hub.stats().pendingAcks === 1, 'the buffered ack');
    expect(h.hub.closeNode('n2', 'evicted')).toBe(1);
    expect(await c2.closed).toBe(4404);
    expect(h.hub.stats().pendingAcks).toBe(0);
    h.hub.flushAcks();
    expect(h.store.ackCalls).toEqual([]);
    expect(h.hub.closeNode('n3', 'banned')).toBe(0);
    await h.waitForLog((l) => l.event === 'security.hub_session_closed' && l.code === 'hub/evicted');
  });

  it('re-authenticates sessions (one node, or all): a chain that no longer authenticates is closed with 4401', async () => {
    h = await startHarness();
    const cs = await Promise.all(['n1', 'n2', 'n3'].map(async (n) => {
      const c = await h.open(n);
      await c.sync();
      return c;
    }));
    h.hub.reauthenticate('n1');
    expect(h.hub.stats().live).toBe(3);
    h.refuseAuth.add('n2');
    h.refuseAuth.add('n3');
    h.hub.reauthenticate('n2');
    expect(await cs[1]!.closed).toBe(4401);
    expect(cs[1]!.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/reauthenticate' });
    h.hub.recheckAll();
    expect(await cs[2]!.closed).toBe(4401);
    expect(cs[0]!.closeCode).toBeUndefined();
    await h.waitForLog((l) => l.event === 'security.hub_reauthentication_failed' && l.node === 'n3');
  });
});

describe('CloudHub limits', () => {
  it('refuses a session over maxSessions with 503 before the upgrade', async () => {
    h = await startHarness({ limits: { maxSessions: 2 } });
    await h.open('n1');
    await h.open('n2');
    expect(await h.connect('n3').refused).toMatchObject({ status: 503, body: { code: 'hub/overloaded' } });
    await h.waitForLog((l) => l.event === 'security.hub_overloaded' && l.node === 'n3');
    expect(h.hub.stats()).toMatchObject({ sessions: 2, maxSessions: 2, refusedOverloaded: 1 });
  });

  it('stops queueing for a node that does not read, and closes it with 4429 when it stays backed up; others are served', async () => {
    h = await startHarness({ timing: { slowReaderMs: 10_000 } });
    const slow = await h.open('slow');
    await slow.sync();
    const fast = await h.open('fast');
    await fast.sync();
    slow.pause();
    const big = 'x'.repeat(100 * 1024);
    // Until the kernel buffers of the paused peer are full and its output backs up in the hub.
    for (let i = 0; i < 1000 && h.hub.stats().behind === 0; i++) {
      h.store.put(`big-${i}`, ['slow', 'fast'], { v: big });
      await fast.until('put');
    }
    expect(h.hub.stats()).toMatchObject({ behind: 1, slowReadersClosed: 0 });
    h.clock.advance(9_999);
    h.hub.sweep();
    expect(h.hub.stats().slowReadersClosed).toBe(0);
    h.clock.advance(1);
    h.hub.sweep();
    await h.waitForLog((l) => l.event === 'hub.slow_reader' && l.node === 'slow');
    expect(h.hub.stats()).toMatchObject({ slowReadersClosed: 1, live: 1 });
    expect(fast.closeCode).toBeUndefined();
  });

  it('sends a burst larger than the water mark to a reading node without queueing it all: the rest comes from the store', async () => {
    h = await startHarness();
    const c = await h.open('n1');
    await c.sync();
    const big = 'y'.repeat(100 * 1024);
    for (let i = 0; i < 40; i++) h.store.put(`burst-${i}`, ['n1'], { v: `${i}${big}` }); // 4 MB in one turn
    // Every resource arrives in its final state; none twice from the store.
    await until(() => new Set(c.messages.flatMap((m) => (m.kind === 'put' ? [m.resource.name] : []))).size === 40, 'all 40 resources', 20_000);
    const puts = c.messages.filter((m) => m.kind === 'put');
    expect(puts.length).toBe(40);
    expect(h.hub.stats()).toMatchObject({ behind: 0, live: 1, slowReadersClosed: 0 });
    expect(c.messages.filter((m) => m.kind === 'synced')).toHaveLength(1); // only the one after hello
  });
});

describe('CloudHub nudges, stats and shutdown', () => {
  it('nudges one node or every synced node about entries', async () => {
    h = await startHarness();
    const c1 = await h.open('n1');
    await c1.sync();
    const c2 = await h.open('n2');
    await c2.sync();
    const waiting = await h.open('n3'); // no hello yet: gets nothing
    h.hub.nudgeEntries('n1');
    expect(await c1.until('nudge')).toEqual([{ v: 1, kind: 'nudge', topic: 'entries' }]);
    h.hub.nudgeEntries();
    await c1.until('nudge');
    await c2.until('nudge');
    expect(c2.rest()).toEqual([]);
    expect(waiting.messages).toEqual([]);
    expect(h.hub.stats()).toMatchObject({ sessions: 3, awaitingHello: 1, live: 2, catchingUp: 0, closing: 0, opened: 3 });
  });

  it('closes every session with 1001 on shutdown and refuses new upgrades', async () => {
    h = await startHarness();
    const c = await h.open('n1');
    await c.sync();
    await h.hub.close();
    expect(await c.closed).toBe(1001);
    expect(c.rest().pop()).toMatchObject({ kind: 'error', code: 'hub/going-away' });
    expect((await h.connect('n2').refused).status).toBe(503);
  });
});

describe('CloudHub rate limits (a node with a valid SVID must not make the cloud work at will)', () => {
  it('refuses a node that reconnects faster than its connect budget with 503 and security.hub_rate_limited', async () => {
    h = await startHarness({ limits: { connectBurst: 3, connectsPerSecond: 1 / 6 } });
    for (let i = 0; i < 3; i++) {
      const c = await h.open('n1');
      c.ws.close(1000);
      await c.closed;
      await until(() => h!.hub.stats().sessions === 0, 'the session gone');
    }
    expect((await h.connect('n1').refused).status).toBe(503);
    await h.waitForLog((l) => l.event === 'security.hub_rate_limited' && l.code === 'hub/connect-rate' && l.node === 'n1');
    // Another node is not affected, and the budget refills with time (the hub's clock).
    const other = await h.open('n2');
    other.ws.close(1000);
    h.clock.advance(6_000);
    const again = await h.open('n1');
    again.ws.close(1000);
  });

  it('closes a session that floods status frames (each one a durable write) with 4429', async () => {
    h = await startHarness();
    const c = await h.open('n1');
    await c.sync();
    for (let i = 1; i <= 500; i++) c.send({ v: 1, kind: 'status', entries: [{ seq: i, kind: 'Node', name: 'n1', phase: 'Ready', at: 1 }] });
    expect(await c.closed).toBe(4429);
    await h.waitForLog((l) => l.event === 'security.hub_rate_limited' && l.code === 'hub/status-rate');
    expect(h.store.statusCalls.length).toBeLessThanOrEqual(400);
  });

  it('refuses more inventory than one edge store can hold on one session (4400)', async () => {
    h = await startHarness();
    h.store.put('a', ['n1']);
    const c = await h.open('n1');
    await c.sync();
    const items = Array.from({ length: 1000 }, () => ({ kind: 'ConfigMap' as const, name: 'a', version: 1 }));
    for (let i = 0; i < 21; i++) c.send({ v: 1, kind: 'ack', items, inventory: true });
    expect(await c.closed).toBe(4400);
  });
});
