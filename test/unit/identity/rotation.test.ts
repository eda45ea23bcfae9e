import { describe, expect, it } from 'vitest';
import { rotationJitter, rotationTime, shouldRotate } from '../../../src/identity/index.js';

// spiffe.md 3 "Agent rotation": rotate when remaining life <= half the lifetime, +-10% jitter.
describe('shouldRotate', () => {
  const cert = (serialHex: string) => ({ notBefore: 0, notAfter: 3_600_000, serialHex });
  it('is false early, true late, true when expired', () => {
    const c = cert('01');
    expect(shouldRotate(0, c)).toBe(false);
    expect(shouldRotate(0.44 * 3_600_000, c)).toBe(false);
    expect(shouldRotate(0.56 * 3_600_000, c)).toBe(true);
    expect(shouldRotate(3_600_001, c)).toBe(true);
  });
  it('rotates with 45%-55% of the lifetime left (1 h TTL -> 27-33 min left), spread by serial', () => {
    const times = Array.from({ length: 500 }, (_, i) => rotationTime(cert(i.toString(16))) / 3_600_000);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(0.45);
    expect(Math.max(...times)).toBeLessThanOrEqual(0.55);
    // Jitter actually spreads a fleet issued at one instant.
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(0.08);
  });
  it('is stable for one certificate (pure function of the serial)', () => {
    expect(rotationJitter('abcd')).toBe(rotationJitter('abcd'));
    const c = cert('abcd');
    const t = rotationTime(c);
    expect(shouldRotate(t - 1, c)).toBe(false);
    expect(shouldRotate(t, c)).toBe(true);
  });
});
