/**
 * Timers driven by a ManualClock (the edge's `Timers` port): nothing fires until the test moves time, with
 * `advance` (every timer due, in order) or `fireNext` (the next one, then lets promises settle).
 */
import type { ManualClock } from '../../src/identity/index.js';
import type { Timers } from '../../src/edge/index.js';

export class FakeTimers implements Timers {
  #next = 1;
  readonly pending = new Map<number, { at: number; fn: () => void }>();
  constructor(private readonly clock: ManualClock) {}
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.pending.set(id, { at: this.clock.now() + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  /** When the next timer is due (undefined: none). */
  nextAt(): number | undefined {
    return this.pending.size === 0 ? undefined : Math.min(...[...this.pending.values()].map((t) => t.at));
  }
  /** Run every timer due up to now + ms, in order, moving the clock. */
  advance(ms: number): void {
    const end = this.clock.now() + ms;
    for (;;) {
      const due = [...this.pending].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (due === undefined) break;
      this.pending.delete(due[0]);
      if (due[1].at > this.clock.now()) this.clock.set(due[1].at);
      due[1].fn();
    }
    this.clock.set(end);
  }
  /** Move the clock to the next timer, run it, and let the promises it started settle. */
  async fireNext(): Promise<void> {
    const [id, t] = [...this.pending].sort((a, b) => a[1].at - b[1].at)[0]!;
    this.pending.delete(id);
    if (t.at > this.clock.now()) this.clock.set(t.at);
    t.fn();
    for (let i = 0; i < 20; i++) await Promise.resolve();
    await new Promise((r) => setImmediate(r));
  }
}
