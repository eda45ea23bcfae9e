/**
 * Long-running `edgeward` processes (cloud, edge agents) for integration and end-to-end tests. Each
 * daemon records its PID; `stop()` signals only that PID (toolchain.md), SIGTERM first, SIGKILL after a
 * grace period. stdout lines and stderr JSON log lines are kept so tests can wait for a line or a log event.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI_PATH, REPO_ROOT } from './process.js';

export interface LogLine {
  [key: string]: unknown;
  event?: string;
  code?: string;
  msg?: string;
}

export interface Daemon {
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout, line by line, as printed so far. */
  readonly stdout: string[];
  /** stderr lines that parsed as JSON objects (structured logs). */
  readonly logs: LogLine[];
  /** All stderr text (for failure messages). */
  stderrText(): string;
  /** Resolve with the first stdout line matching `re` (already printed or future). */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolve with the first log line satisfying `pred` (already logged or future). */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolve when the process has exited (with its code). */
  exited(): Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartDaemonOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** Start `node bin/edgeward.js ...args`. */
export function startDaemon(args: readonly string[], opts: StartDaemonOptions = {}): Daemon {
  const env: Record<string, string | undefined> = { ...process.env, EDGEWARD_DEBUG: undefined, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [CLI_PATH, ...args], { cwd: opts.cwd ?? REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start edgeward ${args.join(' ')}`);
  const pid = child.pid;
  const stdout: string[] = [];
  const logs: LogLine[] = [];
  let stderr = '';
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  let outBuf = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    outBuf += s;
    let i;
    while ((i = outBuf.indexOf('\n')) >= 0) {
      stdout.push(outBuf.slice(0, i));
      outBuf = outBuf.slice(i + 1);
    }
    notify();
  });
  let errBuf = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
    errBuf += s;
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      try {
        const v = JSON.parse(line) as unknown;
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) logs.push(v as LogLine);
      } catch {
        // not a log line
      }
    }
    notify();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exit.then(notify);
  let done = false;
  void exit.then(() => {
    done = true;
  });

  const waitFor = <T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = find();
        if (hit !== undefined) {
          cleanup();
          resolve(hit);
        } else if (done) {
          cleanup();
          reject(new Error(`edgeward ${args[0] ?? ''} ${args[1] ?? ''} exited before ${what}; stderr:\n${stderr.slice(-3000)}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; stderr:\n${stderr.slice(-3000)}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  return {
    pid,
    child,
    stdout,
    logs,
    stderrText: () => stderr,
    waitForLine: (re, timeoutMs = 20_000) => waitFor(() => stdout.find((l) => re.test(l)), `a stdout line ${re}`, timeoutMs),
    waitForLog: (pred, timeoutMs = 20_000) => waitFor(() => logs.find(pred), 'a log line', timeoutMs),
    exited: () => exit,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (done) return exit;
      process.kill(pid, signal); // only the process this helper started
      const t = setTimeout(() => {
        if (!done) process.kill(pid, 'SIGKILL');
      }, 5000);
      const code = await exit;
      clearTimeout(t);
      return code;
    },
  };
}
