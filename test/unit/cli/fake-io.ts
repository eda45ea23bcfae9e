/** An in-memory CliIo for running commands in-process. */
import type { CliIo } from '../../../src/cli/index.js';

export interface FakeIo extends CliIo {
  readonly out: string[];
  readonly err: string[];
  stdoutText(): string;
  stderrText(): string;
}

export function fakeIo(opts: { now?: number; env?: Record<string, string> } = {}): FakeIo {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    env: opts.env ?? {},
    now: () => opts.now ?? Date.now(),
    stdoutText: () => out.join(''),
    stderrText: () => err.join(''),
  };
}
