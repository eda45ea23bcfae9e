/**
 * Bounded waiting for tests (never a timing assert): poll a condition until it yields a value.
 */

export interface EventuallyOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Poll this often (default 10 ms). */
  intervalMs?: number;
  /** Appended to the timeout error (e.g. recent logs), computed only on failure. */
  detail?: () => string;
}

/**
 * Resolve with the first value of `f` that is neither undefined nor false; an exception counts as "not yet"
 * (the last one is named in the timeout error).
 */
export async function eventually<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, opts: EventuallyOptions = {}): Promise<T> {
  const end = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const extra = opts.detail === undefined ? '' : `\n${opts.detail()}`;
      throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}${extra}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}
