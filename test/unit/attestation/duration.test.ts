/**
 * TTL durations for policy and config files (src/identity/duration.ts). Imported from the module file so
 * this test does not depend on src/identity/index.ts re-exporting it.
 */
import { describe, expect, it } from 'vitest';
import { DurationError, formatDuration, parseDuration } from '../../../src/identity/duration.js';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DurationError);
    return (e as DurationError).code;
  }
  throw new Error('expected a DurationError');
}

describe('parseDuration', () => {
  it('parses single units', () => {
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration('007s')).toBe(7000);
  });

  it('parses compound durations, largest unit first, each unit once', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1m1s500ms')).toBe(61_500);
    expect(parseDuration('1d1h1m1s1ms')).toBe(86_400_000 + 3_600_000 + 60_000 + 1000 + 1);
    expect(codeOf(() => parseDuration('30m1h'))).toBe('duration/syntax');
    expect(codeOf(() => parseDuration('1m1m'))).toBe('duration/syntax');
    expect(codeOf(() => parseDuration('1s1m'))).toBe('duration/syntax');
  });

  it('refuses everything else with duration/syntax', () => {
    for (const bad of ['', '1', '3600', 'h', '1H', '1 h', ' 1h', '1h ', '-1s', '+1s', '1.5h', '1e3s', '1us', '1ns', '1w', '1y',
      'ms', '1hm', '1h-', '0x10s', '１s', '1000000000s']) {
      expect(codeOf(() => parseDuration(bad)), bad).toBe('duration/syntax');
    }
    expect(codeOf(() => parseDuration('1s'.padStart(40, '0')))).toBe('duration/syntax'); // > 32 chars
    expect(codeOf(() => parseDuration(3600))).toBe('duration/syntax');
    expect(codeOf(() => parseDuration(null))).toBe('duration/syntax');
    expect(codeOf(() => parseDuration(undefined))).toBe('duration/syntax');
  });

  it('enforces inclusive bounds with duration/out-of-range', () => {
    const b = { min: 1000, max: 3_600_000 };
    expect(parseDuration('1s', b)).toBe(1000);
    expect(parseDuration('1h', b)).toBe(3_600_000);
    expect(codeOf(() => parseDuration('999ms', b))).toBe('duration/out-of-range');
    expect(codeOf(() => parseDuration('1h1ms', b))).toBe('duration/out-of-range');
    expect(codeOf(() => parseDuration('0s', b))).toBe('duration/out-of-range');
    try {
      parseDuration('2h', b);
    } catch (e) {
      expect((e as DurationError).detail).toEqual({ ms: 7_200_000, min: 1000, max: 3_600_000 });
      expect((e as Error).message).toMatch(/1s\.\.1h/);
    }
  });

  it('formatDuration is the canonical inverse', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(90_000)).toBe('1m30s');
    expect(formatDuration(1)).toBe('1ms');
    expect(formatDuration(86_400_000 + 1)).toBe('1d1ms');
    for (const ms of [0, 1, 999, 1000, 59_999, 61_000, 3_599_999, 86_400_000 * 3 + 7, Number.MAX_SAFE_INTEGER]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(() => formatDuration(-1)).toThrow(RangeError);
    expect(() => formatDuration(1.5)).toThrow(RangeError);
  });
});
