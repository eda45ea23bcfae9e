/**
 * Human-readable durations for TTLs in configuration and policy files (`1h`, `5m`, `30s`, `500ms`,
 * `1h30m`), parsed to integer milliseconds with explicit bounds. Pure.
 *
 * Grammar (deliberately small, a subset of Go's time.ParseDuration that SPIRE config users know):
 *   duration := part+        part := digits unit        digits := [0-9]{1,9}
 *   unit     := "ms" | "s" | "m" | "h" | "d"
 * Units must appear in strictly decreasing order and at most once (`1h30m` yes, `30m1h` / `1m1m` no), so
 * every value has one canonical spelling up to leading zeros. No sign, no fraction, no whitespace, no
 * bare number (a bare `3600` is ambiguous: SPIRE's entry TTLs are seconds, JS timers are ms).
 */
import { EdgewardError } from './errors.js';

export const DURATION_ERROR_CODES = ['duration/syntax', 'duration/out-of-range'] as const;
export type DurationErrorCode = (typeof DURATION_ERROR_CODES)[number];

export class DurationError extends EdgewardError<DurationErrorCode> {}

/** Longest accepted input (characters). */
export const MAX_DURATION_LENGTH = 32;

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
type Unit = keyof typeof UNIT_MS;
const UNIT_ORDER: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];
const PART = /([0-9]{1,9})(ms|d|h|m|s)/y;

export interface DurationBounds {
  /** Smallest accepted value in ms (inclusive). Default 0. */
  min?: number;
  /** Largest accepted value in ms (inclusive). Default Number.MAX_SAFE_INTEGER. */
  max?: number;
}

function syntax(input: string, why: string): never {
  throw new DurationError('duration/syntax', `invalid duration "${input.slice(0, MAX_DURATION_LENGTH)}": ${why}`, {
    detail: { input: input.slice(0, MAX_DURATION_LENGTH) },
  });
}

/**
 * Parse `1h`, `5m`, `30s`, `500ms`, `2d`, `1h30m` ... to milliseconds and check `min <= ms <= max`.
 * Throws `DurationError` ('duration/syntax' for malformed input or a non-string, 'duration/out-of-range').
 */
export function parseDuration(input: unknown, bounds: DurationBounds = {}): number {
  if (typeof input !== 'string') {
    throw new DurationError('duration/syntax', `a duration must be a string such as "1h" or "30s" (got ${typeof input})`);
  }
  if (input.length === 0) syntax(input, 'empty');
  if (input.length > MAX_DURATION_LENGTH) syntax(input, `longer than ${MAX_DURATION_LENGTH} characters`);
  let total = 0;
  let pos = 0;
  let lastRank = -1;
  PART.lastIndex = 0;
  while (pos < input.length) {
    PART.lastIndex = pos;
    const m = PART.exec(input);
    if (m === null) syntax(input, 'expected <digits><unit> with unit ms, s, m, h or d');
    const unit = m[2] as Unit;
    const rank = UNIT_ORDER.indexOf(unit);
    if (rank <= lastRank) syntax(input, 'units must appear once each, largest first (e.g. "1h30m")');
    lastRank = rank;
    total += Number(m[1]) * UNIT_MS[unit];
    pos = PART.lastIndex;
  }
  if (!Number.isSafeInteger(total)) syntax(input, 'too large');
  const min = bounds.min ?? 0;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  if (total < min || total > max) {
    throw new DurationError(
      'duration/out-of-range',
      `duration "${input}" (${total} ms) is outside ${formatDuration(min)}..${formatDuration(max)}`,
      { detail: { ms: total, min, max } },
    );
  }
  return total;
}

/**
 * Canonical spelling of a non-negative integer number of ms (`3600000` -> `1h`, `90000` -> `1m30s`,
 * `0` -> `0s`); `parseDuration(formatDuration(x)) === x` for every safe integer x >= 0.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError('formatDuration needs a non-negative safe integer');
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const unit of UNIT_ORDER) {
    const size = UNIT_MS[unit];
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
