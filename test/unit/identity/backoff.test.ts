import { describe, expect, it } from 'vitest';
import { fullJitterBackoff } from '../../../src/identity/index.js';

describe('fullJitterBackoff (capped exponential, full jitter)', () => {
  const o = { baseMs: 500, capMs: 30_000 };
  it('is uniform in [0, base * 2^attempt)', () => {
    expect(fullJitterBackoff(0, o, () => 0)).toBe(0);
    expect(fullJitterBackoff(0, o, () => 0.5)).toBe(250);
    expect(fullJitterBackoff(3, o, () => 0.5)).toBe(2000);
    expect(fullJitterBackoff(3, o, () => 0.999999)).toBeLessThan(4000);
  });
  it('never exceeds the cap, however many attempts (no overflow to Infinity)', () => {
    expect(fullJitterBackoff(1000, o, () => 0.999999)).toBeLessThan(30_000);
    expect(fullJitterBackoff(1000, o, () => 0.5)).toBe(15_000);
  });
});
