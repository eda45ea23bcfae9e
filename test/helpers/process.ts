/**
 * Child processes for tests. Each helper stops only the PID it started (toolchain.md: other processes on
 * the machine may run identical command lines), never by name.
 */
import { execFile, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is test/helpers/process.ts). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI_PATH = join(REPO_ROOT, 'bin', 'edgeward.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  cwd?: string;
  /** Merged over process.env (EDGEWARD_DEBUG is removed unless given here). */
  env?: Record<string, string | undefined>;
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
  /** Kill the child (only it) after this long; default 20 s. */
  timeoutMs?: number;
}

/** Run `node bin/edgeward.js ...args` (needs a build: `npm test` builds first). Never rejects on exit codes. */
export function runCli(args: readonly string[], opts: RunCliOptions = {}): Promise<RunResult> {
  const env: Record<string, string | undefined> = { ...process.env, EDGEWARD_DEBUG: undefined, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {}); // the child may exit without reading its input
    child.stdin.end(opts.input);
  });
}

export interface OpensslResult {
  code: number;
  stdout: string;
  /** stdout as bytes (DER output). */
  stdoutBytes: Buffer;
  stderr: string;
}

export interface OpensslOptions {
  cwd?: string;
  /** Return the result of a failing command instead of throwing (for tests that expect a failure). */
  allowFailure?: boolean;
  timeoutMs?: number;
}

/** Run `openssl ...args` with optional stdin; throws with openssl's stderr when it exits non-zero. */
export function openssl(args: readonly string[], input?: string | Buffer, opts: OpensslOptions = {}): Promise<OpensslResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'openssl',
      [...args],
      { cwd: opts.cwd, encoding: 'buffer', maxBuffer: 16 * 1024 * 1024, timeout: opts.timeoutMs ?? 20_000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        const result = { code, stdout: stdout.toString('utf8'), stdoutBytes: stdout, stderr: stderr.toString('utf8') };
        if (error !== null && (typeof error.code !== 'number' || opts.allowFailure !== true)) {
          reject(new Error(`openssl ${args.join(' ')} failed (${String(error.code ?? error.signal)}): ${result.stderr.trim()}`));
          return;
        }
        resolve(result);
      },
    );
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/** Run the project's build (`scripts/build.mjs`): tests that start `bin/edgeward.js` need an up-to-date dist/. */
export function buildProject(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'build.mjs')], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (out += b.toString()));
    c.once('close', (code) => resolve({ code, out }));
  });
}
