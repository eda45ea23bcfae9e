/**
 * The cloud process of the benches (a library, not a bench: scripts/bench.mjs skips imported files): start
 * one real `node bin/edgeward.js cloud start` child in a temp data dir on 127.0.0.1:0, pinned to CPU 1 with
 * `taskset -c 1` when the machine has two CPUs and taskset works (the bench itself is pinned to CPU 0), wait
 * for its EDGEWARD_CLOUD= and EDGEWARD_BUNDLE_DIGEST= lines, keep its warn/error log lines, and stop only
 * its PID. Also the /proc readings the benches take of it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/bench/cloud-process.js -> repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'edgeward.js');

export function tasksetWorks(cpu: number): boolean {
  return spawnSync('taskset', ['-c', String(cpu), 'true'], { stdio: 'ignore' }).status === 0;
}
/** Whether children are pinned to CPU 1. */
export const PIN = cpus().length >= 2 && tasksetWorks(1);

/** `node ARGS` on CPU 1 when possible (taskset execs node: the child's PID is node's). */
export function pinnedSpawn(nodeArgs: string[], opts: Parameters<typeof spawn>[2]): ChildProcess {
  const [cmd, args] = PIN ? ['taskset', ['-c', '1', process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  return spawn(cmd, args, opts);
}

function clkTck(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
}
export const CLK_TCK = clkTck();

/** utime + stime of `pid` in ms (/proc/PID/stat fields 14 and 15). */
export function cpuMs(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): utime = field 14 = rest[11], stime = field 15 = rest[12].
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
}

export interface BenchCloud {
  child: ChildProcess;
  pid: number;
  /** `HOST:PORT` as printed. */
  address: string;
  digest: string;
  adminSocket: string;
  pinning: string;
  warnLines: () => string[];
  log: () => string;
}

export interface BenchCloudOptions {
  /** The bench's temp dir: the cloud's data dir and config file go below it. */
  dir: string;
  /** Lines of the cloud's YAML config (`--config`). */
  config: readonly string[];
  /** Node options before the script (e.g. `--cpu-prof`, `--heapsnapshot-signal`). */
  nodeOptions?: readonly string[];
  readyTimeoutMs?: number;
}

/** Start the cloud and resolve once it printed its address and bundle digest. */
export function startBenchCloud(o: BenchCloudOptions): Promise<BenchCloud> {
  const dataDir = join(o.dir, 'cloud');
  const configFile = join(o.dir, 'cloud.yaml');
  writeFileSync(configFile, [...o.config, ''].join('\n'));
  const nodeArgs = [...(o.nodeOptions ?? []), BIN, 'cloud', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--config', configFile];
  const pinning = PIN ? 'cloud pinned to CPU 1 (taskset -c 1)' : `cloud unpinned (${cpus().length} CPU(s); taskset -c 1 needs >= 2 CPUs and a working taskset)`;
  const child = pinnedSpawn(nodeArgs, { cwd: ROOT, env: { ...process.env, EDGEWARD_DEBUG: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const warns: string[] = [];
  let errBuf = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    log = (log + s).slice(-16_000);
    errBuf += s;
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      // pino levels: 40 warn, 50 error, 60 fatal.
      if (/"level":\s*(4|5|6)0\b/.test(line) && warns.length < 1000) warns.push(line.slice(0, 400));
    }
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`cloud not ready: ${log}`)), o.readyTimeoutMs ?? 30_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const a = /^EDGEWARD_CLOUD=(\S+)$/m.exec(out);
      const d = /^EDGEWARD_BUNDLE_DIGEST=(\S+)$/m.exec(out);
      if (a !== null && d !== null && child.pid !== undefined) {
        clearTimeout(timer);
        resolve({ child, pid: child.pid, address: a[1]!, digest: d[1]!, adminSocket: join(dataDir, 'admin', 'admin.sock'), pinning, warnLines: () => warns, log: () => log });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`cloud exited (${String(code ?? signal)}): ${log}`));
    });
  });
}

/** SIGTERM the cloud (its PID only), SIGKILL after `graceMs` (a --cpu-prof profile is written at a clean exit). */
export async function stopBenchCloud(c: { child: ChildProcess; pid: number }, graceMs: number): Promise<void> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => c.child.once('exit', () => resolve()));
  process.kill(c.pid, 'SIGTERM');
  const t = setTimeout(() => {
    if (c.child.exitCode === null && c.child.signalCode === null) process.kill(c.pid, 'SIGKILL');
  }, graceMs);
  await gone;
  clearTimeout(t);
}
