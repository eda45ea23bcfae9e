import { describe, expect, it } from 'vitest';
import { ManualClock, SpiffeId, type KeyPair } from '../../../src/identity/index.js';
import { SvidCache, type SvidEntry, type X509SvidIssuer } from '../../../src/edge/svid/svid-cache.js';
import type { Timers } from '../../../src/edge/svid/timers.js';

// A fake issuer (a port of ours, allowed in unit tests) whose issuances finish when the test says so.
function slowIssuer() {
  const pending: Array<() => void> = [];
  let serial = 0;
  const issuer: X509SvidIssuer = {
    defaultX509SvidTtlMs: 3_600_000,
    issueX509Svid: (req: { spiffeId: SpiffeId; key: KeyPair; ttlMs: number }) =>
      new Promise((resolve) => {
        pending.push(() => resolve({ chainDer: [Buffer.from(req.spiffeId.toString())], serialHex: String(++serial), notBefore: 0, notAfter: req.ttlMs }));
      }),
  };
  return { issuer, release: () => pending.splice(0).forEach((f) => f()), pendingCount: () => pending.length };
}

const realTimersForTest: Timers = { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
const entry = (id: string, path: string, dns: string[] = []): SvidEntry => ({ id, spiffeId: SpiffeId.parse(`spiffe://example.org/${path}`), dnsNames: dns });
const flush = () => new Promise((r) => setTimeout(r, 5));

describe('SvidCache', () => {
  it('keeps an SVID issued while another entry changed (entry objects are replaced on every store change)', async () => {
    const { issuer, release } = slowIssuer();
    const cache = new SvidCache({ issuer, clock: new ManualClock(1000), timers: realTimersForTest, events: { changed: () => {}, issueFailed: () => {} } });
    const first = cache.reconcile([entry('a', 'a')]);
    // The store changes (entry b added): every entry object is new, entry a's content is the same.
    const second = cache.reconcile([entry('a', 'a'), entry('b', 'b')]);
    release();
    await Promise.all([first, second]);
    await flush();
    release();
    await flush();
    expect(cache.get('a')?.spiffeId).toBe('spiffe://example.org/a');
    expect(cache.get('b')?.spiffeId).toBe('spiffe://example.org/b');
    cache.close();
  });

  it('re-issues for the new content when an entry changes during issuance, and drops removed entries', async () => {
    const { issuer, release } = slowIssuer();
    const cache = new SvidCache({ issuer, clock: new ManualClock(1000), timers: realTimersForTest, events: { changed: () => {}, issueFailed: () => {} } });
    const p1 = cache.reconcile([entry('a', 'a'), entry('c', 'c')]);
    const p2 = cache.reconcile([entry('a', 'a', ['a.example.org'])]);
    release();
    await Promise.all([p1, p2]);
    for (let i = 0; i < 5 && cache.get('a') === undefined; i++) {
      await flush();
      release();
    }
    await flush();
    expect(cache.get('c')).toBeUndefined();
    expect(cache.get('a')?.shape).toContain('a.example.org');
    cache.close();
  });

  it('measures half-life from receipt, not from the back-dated NotBefore (no re-issue storm for short TTLs)', async () => {
    const clock = new ManualClock(100_000);
    let issued = 0;
    const issuer: X509SvidIssuer = {
      defaultX509SvidTtlMs: 4000,
      // As the CA does: NotBefore 10 s back (BACKDATE_MS), NotAfter = now + TTL.
      issueX509Svid: async (req) => ({ chainDer: [Buffer.alloc(1)], serialHex: String(++issued), notBefore: clock.now() - 10_000, notAfter: clock.now() + req.ttlMs }),
    };
    const cache = new SvidCache({ issuer, clock, timers: realTimersForTest, events: { changed: () => {}, issueFailed: () => {} } });
    await cache.reconcile([entry('a', 'a')]);
    await new Promise((r) => setTimeout(r, 300)); // several MIN_TIMER_MS periods of real time; the clock stands still
    expect(issued).toBe(1);
    // At about half of the 4 s lifetime (+-10%) it is due.
    clock.advance(2300);
    await cache.reconcile([entry('a', 'a')]);
    expect(issued).toBe(2);
    cache.close();
  });
});
