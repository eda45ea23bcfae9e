/**
 * Per-source token buckets for attestation attempts (issue #4 "attempts rate-limited per source"; SPIRE
 * limits AttestAgent to 1/s per IP, reference spiffe.md §3 "Default rate limits"), bounded in keys
 * (architecture.md 9 "Bounded everything"), driven by an injected clock (architecture.md 5).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ATTEST_RATE_LIMIT, RateLimiter, RateLimitError } from '../../../src/attestation/index.js';

const T0 = 1_000_000;

describe('RateLimiter', () => {
  it('allows a burst of `capacity`, then refuses with the time until the next token', () => {
    const rl = new RateLimiter({ capacity: 3, refillPerSecond: 1, maxKeys: 10 });
    expect([1, 2, 3].map(() => rl.take('10.0.0.1', T0).allowed)).toEqual([true, true, true]);
    expect(rl.take('10.0.0.1', T0)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 1000 });
    expect(rl.take('10.0.0.1', T0 + 400)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 600 });
  });

  it('refills continuously at refillPerSecond and never above capacity', () => {
    const rl = new RateLimiter({ capacity: 2, refillPerSecond: 2, maxKeys: 10 });
    rl.take('k', T0);
    rl.take('k', T0);
    expect(rl.take('k', T0 + 499).allowed).toBe(false);
    expect(rl.take('k', T0 + 500)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
    // An hour idle refills to capacity (2), not 7200 tokens.
    expect(rl.take('k', T0 + 3_600_000)).toEqual({ allowed: true, remaining: 1, retryAfterMs: 0 });
    expect(rl.take('k', T0 + 3_600_000).allowed).toBe(true);
    expect(rl.take('k', T0 + 3_600_000).allowed).toBe(false);
  });

  it('keeps sources apart', () => {
    const rl = new RateLimiter({ capacity: 1, refillPerSecond: 1, maxKeys: 10 });
    expect(rl.take('a', T0).allowed).toBe(true);
    expect(rl.take('a', T0).allowed).toBe(false);
    expect(rl.take('b', T0).allowed).toBe(true);
  });

  it('a clock that goes backwards refills nothing', () => {
    const rl = new RateLimiter({ capacity: 1, refillPerSecond: 1, maxKeys: 10 });
    expect(rl.take('a', T0).allowed).toBe(true);
    expect(rl.take('a', T0 - 10_000).allowed).toBe(false);
    expect(rl.take('a', T0 + 999).allowed).toBe(false);
    expect(rl.take('a', T0 + 1000).allowed).toBe(true);
  });

  it('tracks at most maxKeys sources and evicts the least recently used one', () => {
    const rl = new RateLimiter({ capacity: 1, refillPerSecond: 0.001, maxKeys: 2 });
    expect(rl.take('a', T0).allowed).toBe(true);
    expect(rl.take('b', T0).allowed).toBe(true);
    expect(rl.take('a', T0 + 1).allowed).toBe(false); // touches a: b is now least recently used
    expect(rl.take('c', T0 + 2).allowed).toBe(true); // evicts b
    expect(rl.size).toBe(2);
    expect(rl.take('a', T0 + 3).allowed).toBe(false); // a kept its empty bucket
    expect(rl.take('b', T0 + 4).allowed).toBe(true); // b starts afresh (evicted), c goes
    expect(rl.size).toBe(2);
    for (let i = 0; i < 1000; i++) rl.take(`10.0.${i >> 8}.${i & 255}`, T0 + 5);
    expect(rl.size).toBe(2);
  });

  it('peek decides like take without spending or reordering', () => {
    const rl = new RateLimiter({ capacity: 2, refillPerSecond: 1, maxKeys: 2 });
    expect(rl.peek('a', T0)).toEqual({ allowed: true, remaining: 1, retryAfterMs: 0 });
    expect(rl.size).toBe(0);
    rl.take('a', T0);
    rl.take('a', T0);
    expect(rl.peek('a', T0 + 250)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 750 });
    expect(rl.take('a', T0 + 1000).allowed).toBe(true);
    expect(rl.delete('a')).toBe(true);
    expect(rl.size).toBe(0);
  });

  it('costs above one', () => {
    const rl = new RateLimiter({ capacity: 5, refillPerSecond: 1, maxKeys: 2 });
    expect(rl.take('a', T0, 4).allowed).toBe(true);
    expect(rl.take('a', T0, 2)).toEqual({ allowed: false, remaining: 1, retryAfterMs: 1000 });
    expect(() => rl.take('a', T0, 6)).toThrow(RateLimitError); // can never be satisfied
  });

  it('refuses nonsensical configuration', () => {
    for (const o of [
      { capacity: 0, refillPerSecond: 1, maxKeys: 1 },
      { capacity: 1, refillPerSecond: 0, maxKeys: 1 },
      { capacity: 1, refillPerSecond: Number.POSITIVE_INFINITY, maxKeys: 1 },
      { capacity: 1, refillPerSecond: 1, maxKeys: 0 },
      { capacity: 1, refillPerSecond: 1, maxKeys: 1.5 },
      { capacity: Number.NaN, refillPerSecond: 1, maxKeys: 1 },
    ]) {
      expect(() => new RateLimiter(o)).toThrow(expect.objectContaining({ code: 'rate-limit/bad-config' }));
    }
    expect(() => new RateLimiter().take('a', Number.NaN)).toThrow(RateLimitError);
  });

  it('defaults: SPIRE\'s 1/s per source with a burst of 5', () => {
    expect(DEFAULT_ATTEST_RATE_LIMIT).toEqual({ capacity: 5, refillPerSecond: 1, maxKeys: 10_000 });
    const rl = new RateLimiter();
    for (let i = 0; i < 5; i++) expect(rl.take('ip', T0).allowed).toBe(true);
    expect(rl.take('ip', T0).allowed).toBe(false);
    expect(rl.take('ip', T0 + 1000).allowed).toBe(true);
  });
});
