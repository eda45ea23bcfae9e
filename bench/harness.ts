/**
 * A tiny benchmark harness. Every figure is printed beside a baseline measured in the same run, because
 * these machines are noisy: absolute numbers move between runs, ratios much less.
 */
import { performance } from 'node:perf_hooks';

export interface Rate {
  opsPerSec: number;
  iterations: number;
}

/** Run `fn` repeatedly for about `ms` milliseconds (after a warm-up) and return operations per second. */
export function measure(fn: () => unknown, ms = 1500): Rate {
  const warmEnd = performance.now() + Math.min(300, ms / 4);
  while (performance.now() < warmEnd) fn();
  let iterations = 0;
  const start = performance.now();
  let now = start;
  const end = start + ms;
  while (now < end) {
    for (let i = 0; i < 16; i++) fn();
    iterations += 16;
    now = performance.now();
  }
  return { opsPerSec: (iterations * 1000) / (now - start), iterations };
}

/** Like `measure` for async operations, keeping `concurrency` operations in flight. */
export async function measureAsync(fn: () => Promise<unknown>, ms = 1500, concurrency = 32): Promise<Rate> {
  const run = async (until: number): Promise<number> => {
    let n = 0;
    const worker = async (): Promise<void> => {
      while (performance.now() < until) {
        await fn();
        n++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return n;
  };
  await run(performance.now() + Math.min(300, ms / 4));
  const start = performance.now();
  const iterations = await run(start + ms);
  return { opsPerSec: (iterations * 1000) / (performance.now() - start), iterations };
}

export interface Row {
  figure: string;
  value: number;
  baseline: number;
  baselineName: string;
  target?: number;
}

/** Print rows as an aligned table plus one JSON line (for scripts). */
export function report(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
  for (const r of rows) {
    const ratio = r.value / r.baseline;
    const verdict = r.target === undefined ? '' : ratio >= r.target ? '  ok' : `  BELOW TARGET ${(r.target * 100).toFixed(0)}%`;
    console.log(
      `  ${r.figure.padEnd(44)} ${fmt(r.value).padStart(9)}/s   baseline ${fmt(r.baseline).padStart(9)}/s (${r.baselineName})   ratio ${(ratio * 100).toFixed(0)}%${verdict}`,
    );
  }
  console.log(JSON.stringify({ bench: title, rows: rows.map((r) => ({ ...r, ratio: r.value / r.baseline })) }));
}

/** An operation's error as one line of text: `CODE: message` (or `Name: message`). */
export function errorText(e: unknown): string {
  return e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e);
}

/** Errors as `COUNT (Nx first kind; ...)`, at most three kinds (each cut to 160 characters), or `0`. */
export function errorSummary(errors: readonly string[]): string {
  if (errors.length === 0) return '0';
  const counts = new Map<string, number>();
  for (const e of errors) counts.set(e.slice(0, 160), (counts.get(e.slice(0, 160)) ?? 0) + 1);
  return `${errors.length} (${[...counts].slice(0, 3).map(([e, c]) => `${c}x ${e}`).join('; ')})`;
}

export interface PoolResult<T> {
  /** Latency (ms) of each operation that succeeded, in completion order. */
  ms: number[];
  /** The values of the operations that succeeded, in completion order. */
  ok: T[];
  /** `errorText` of each operation that failed. */
  errors: string[];
  wallMs: number;
}

/**
 * Closed loop: `n` operations `fn(0..n-1)`, `inFlight` at a time (each worker takes the next operation when
 * its own completes); latency per operation. A failed operation is counted, never thrown.
 */
export async function pool<T>(n: number, inFlight: number, fn: (i: number) => Promise<T>): Promise<PoolResult<T>> {
  const ms: number[] = [];
  const ok: T[] = [];
  const errors: string[] = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const s = performance.now();
      try {
        const v = await fn(i);
        ms.push(performance.now() - s);
        ok.push(v);
      } catch (e) {
        errors.push(errorText(e));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, worker));
  return { ms, ok, errors, wallMs: performance.now() - t0 };
}
