/**
 * The demo's child processes (`edgeward demo`, issue #3 onwards): this package's own CLI started with
 * `process.execPath`, output kept bounded, stopped only by the PID recorded here (SIGTERM, then SIGKILL after a
 * grace period). Also the demo's typed error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EdgewardError } from '../../identity/index.js';

/** How long a child may take to get ready (cloud listening, join done, Workload API listening). */
export const READY_TIMEOUT_MS = 60_000;
/** SIGTERM first; SIGKILL if the child has not exited after this long. */
const STOP_GRACE_MS = 5_000;
/** Lines kept of each child's output (bounded: architecture.md 9). */
const MAX_KEPT_LINES = 400;
const MAX_LINE_CHARS = 4_000;

/**
 * - `demo/step-failed`: a step of the demo failed (a child exited or did not get ready, an answer was not
 *   what the demo expected); the message names the step and the child's own error line.
 * - `demo/interrupted`: Ctrl-C or SIGTERM before the demo finished; everything started was stopped.
 * - `demo/not-built`: `bin/edgeward.js` of this package was not found, so no child can be started.
 */
export type DemoErrorCode = 'demo/step-failed' | 'demo/interrupted' | 'demo/not-built';
export class DemoError extends EdgewardError<DemoErrorCode> {}

// ------------------------------------------------------------------------------------ child processes

export interface Child {
  readonly what: string;
  readonly pid: number;
  readonly proc: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  exited(): boolean;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolve with the first stdout line matching `re` (printed already or later). */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
  /** The child's own error line, for a failure message. */
  failure(): string;
  /** SIGTERM this PID (only it), SIGKILL after the grace period; resolves once it has exited. */
  stop(): Promise<void>;
}

function keepLine(list: string[], line: string): void {
  list.push(line.length > MAX_LINE_CHARS ? line.slice(0, MAX_LINE_CHARS) : line);
  if (list.length > MAX_KEPT_LINES) list.splice(0, list.length - MAX_KEPT_LINES);
}

export function startChild(what: string, bin: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new DemoError('demo/step-failed', `${what}: could not start a child process`);
  const pid = proc.pid;
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  const lines = (into: string[]): ((chunk: string) => void) => {
    let buf = '';
    return (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        keepLine(into, buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      if (buf.length > MAX_LINE_CHARS) {
        keepLine(into, buf);
        buf = '';
      }
      notify();
    };
  };
  proc.stdout!.setEncoding('utf8').on('data', lines(stdout));
  proc.stderr!.setEncoding('utf8').on('data', lines(stderr));
  let done = false;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('error', () => {
      done = true;
      resolve({ code: null, signal: null });
      notify();
    });
    proc.once('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
      notify();
    });
  });
  const failure = (): string => {
    const cliLine = stderr.find((l) => l.startsWith('edgeward: '));
    if (cliLine !== undefined) return cliLine.slice('edgeward: '.length);
    for (let i = stderr.length - 1; i >= 0; i--) {
      try {
        const o = JSON.parse(stderr[i]!) as Record<string, unknown>;
        if (typeof o['code'] === 'string' && typeof o['level'] === 'number' && o['level'] >= 50) return `${o['code']}: ${String(o['err'] ?? o['msg'] ?? '')}`;
      } catch {
        // not a log line
      }
    }
    return 'no error message';
  };
  return {
    what,
    pid,
    proc,
    stdout,
    stderr,
    exited: () => done,
    exit,
    failure,
    waitForLine(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = stdout.find((l) => re.test(l));
          if (hit !== undefined) {
            cleanup();
            resolve(hit);
          } else if (done) {
            cleanup();
            reject(new DemoError('demo/step-failed', `${what} exited before it was ready: ${failure()}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new DemoError('demo/step-failed', `${what} was not ready within ${timeoutMs / 1000} s: ${failure()}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (done) return;
      try {
        process.kill(pid, 'SIGTERM'); // only the process started here
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        if (!done) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }, STOP_GRACE_MS);
      await exit;
      clearTimeout(t);
    },
  };
}

