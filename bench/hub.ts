/**
 * CloudHub capacity (issue #5): `npm run bench -- hub` (`BENCH_HUB_NODES=N` for fewer than 10,000 nodes).
 *
 * Processes (all real, all stopped by PID at the end):
 * - ONE `node bin/edgeward.js cloud start` child (temp data dir, `--listen 127.0.0.1:0`, a config file that
 *   lets every simulated node attest from 127.0.0.1 and allows 100,000 node API connections), pinned to
 *   CPU 1 with `taskset -c 1` when the machine has >= 2 CPUs and taskset works;
 * - the simulated nodes, bench/hub-nodes.ts, in a SECOND process on CPU 0 (scripts/bench.mjs pins this
 *   process there and children inherit it): N real nodes of the cloud, each with its own node X509-SVID;
 * - the baseline server, bench/hub-bare.ts, pinned like the cloud: a bare TLS 1.3 WebSocket server (ws over
 *   node:https, the cloud's TLS settings, an X509-SVID server certificate of the same shape, no logic).
 *
 * Setup (timed, reported, not a target): one join token per node through the admin socket (`token.create`,
 * 16 in flight) and one real join_token attestation per node over the node API (64 in flight, in the
 * nodes process; one pinned bootstrap GET /v1/bundle shared by all). Node names `bench-00001`...
 *
 * Measured, each beside its baseline from the same run:
 * 1. Sessions held: the nodes open one `wss://.../v1/hub` session each (mTLS with the node SVID, the server
 *    checked as spiffe://TD/edgeward/cloud; hello, catch-up, synced), 64 opening at a time; then stay idle
 *    (a ping every 10 s each, as the real edge). Baseline: the same nodes, certificates and client code
 *    against the bare server (ready at open).
 * 2. Cloud RSS per idle session: VmRSS of the cloud before opening the sessions and after they have been
 *    idle for one ping interval (both after the RSS settled), divided by N. Baseline: the same for the bare
 *    server. Target: <= 80 KB (1 KB = 1000 bytes) per session.
 * 3. Fan-out: one `resource.apply` of a ConfigMap targeted at `nodes: ['*']` through the admin socket; the
 *    time from just before the call to the moment the last node sent its ack (each node acks the put at
 *    once; the nodes process reports its last ack time, epoch ms comparable across processes), then
 *    confirmed with the cloud's recorded acks (`resource.get` polled after the nodes are done: an upper
 *    bound). 3 updates, p50 and max. Baseline: the bare server sends the same put frame to all N and the
 *    nodes answer it with the same ack (time to the last ack sent, and to the last one the server read).
 *    Target: every node acknowledged within 5 s.
 * Also: cloud CPU while N sessions are idle (pings) and per update, beside the bare server's.
 *
 * BENCH_HUB_HEAP_SNAPSHOT=DIR starts the cloud and the bare server with `--heapsnapshot-signal=SIGUSR2
 * --diagnostic-dir DIR` and writes one heap snapshot of each with every session open, after its fan-out
 * rounds (so that the per-session objects of the two can be compared). BENCH_HUB_CPU_PROF=DIR runs the cloud
 * with `--cpu-prof --cpu-prof-dir DIR` (the profile is written at its exit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { bundleToJson, CaManager, derToPem, generateP256, MemoryKeyStore, SpiffeId, TrustDomain } from '../src/identity/index.js';
import { adminCall, encodeHubMessage, HUB_PING_INTERVAL_MS, HUB_PROTOCOL_VERSION } from '../src/protocol/index.js';
import type { NodesStats, NodesToParent, ParentToNodes } from './hub-nodes.js';
import type { BareToParent, ParentToBare } from './hub-bare.js';
import { cpuMs, pinnedSpawn, PIN, ROOT, startBenchCloud, stopBenchCloud, type BenchCloud } from './cloud-process.js';
import { errorSummary, pool } from './harness.js';

/** dist/bench/hub.js -> repository root. */
const NODES_SCRIPT = join(ROOT, 'dist', 'bench', 'hub-nodes.js');
const BARE_SCRIPT = join(ROOT, 'dist', 'bench', 'hub-bare.js');
const CHILD_ENV = 'EDGEWARD_BENCH_HUB_CHILD';

const TD = 'bench.example';
const DEFAULT_NODES = 10_000;
const TOKEN_IN_FLIGHT = 16;
const JOIN_IN_FLIGHT = 64;
const CONNECT_IN_FLIGHT = 64;
const ROUNDS = 3;
const FANOUT_NAME = 'bench-fanout';
const TARGET_SESSIONS = 10_000;
const TARGET_BYTES_PER_SESSION = 80_000;
const TARGET_FANOUT_MS = 5_000;
/**
 * Quiet time before a "before" RSS sample: V8's memory reducer collects garbage some seconds after a process
 * stops allocating (the cloud has just served every join), so the sample is not inflated by garbage that the
 * sessions would then reuse.
 */
const SETTLE_MS = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.timeOrigin + performance.now();
const nodeName = (i: number): string => `bench-${String(i + 1).padStart(5, '0')}`;

// ---------------------------------------------------------------------------------------------------
// Figures.

const f2 = (n: number): string => (!Number.isFinite(n) ? 'n/a' : Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));
const ratio = (a: number, b: number): string => (Number.isFinite(a / b) && b !== 0 ? `x${(a / b).toFixed(2)}` : 'n/a');

function line(name: string, value: number, unit: string, base?: { value: number; name: string }, verdict?: string): string {
  return (
    `  ${name.padEnd(46)} ${f2(value).padStart(9)} ${unit.padEnd(6)}` +
    (base === undefined ? '' : `   baseline ${f2(base.value).padStart(8)} ${unit} (${base.name})   ratio ${ratio(value, base.value)}`) +
    (verdict === undefined ? '' : `   ${verdict}`)
  );
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------------------------------------------
// /proc.

function memKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)\\s+kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

function cpusAllowed(pid: number | 'self'): string {
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?';
}

/** The soft limit on open files of this process (children inherit it). */
function openFilesLimit(): number {
  const m = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m === null || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/**
 * VmRSS of `pid` once it settled: at least `minMs`, then sampled every second until two successive samples
 * differ by less than 0.5 % (at most `maxMs`). Also the CPU the process used per second meanwhile.
 */
async function settledRss(pid: number, minMs: number, maxMs = 30_000): Promise<{ rssKiB: number; cpuMsPerSec: number }> {
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  await sleep(minMs);
  let prev = memKiB(pid).rss;
  while (performance.now() - t0 < maxMs) {
    await sleep(1000);
    const cur = memKiB(pid).rss;
    if (Math.abs(cur - prev) <= prev * 0.005) {
      prev = cur;
      break;
    }
    prev = cur;
  }
  return { rssKiB: prev, cpuMsPerSec: ((cpuMs(pid) - c0) * 1000) / (performance.now() - t0) };
}

// ---------------------------------------------------------------------------------------------------
// Children.

const PINNING = PIN ? 'cloud and bare server pinned to CPU 1 (taskset -c 1)' : `unpinned (${cpus().length} CPU(s); taskset -c 1 needs >= 2 CPUs and a working taskset)`;

/** An IPC child: typed messages, waited for by kind. */
class Ipc<In extends { kind: string }, Out> {
  readonly child: ChildProcess;
  readonly pid: number;
  #queue: In[] = [];
  #waiters: Array<{ kind: string; resolve: (m: In) => void; reject: (e: Error) => void }> = [];
  #exited: string | undefined;

  constructor(child: ChildProcess, readonly name: string) {
    this.child = child;
    this.pid = child.pid!;
    child.on('message', (m: In) => {
      if (m.kind === 'failed') {
        const e = new Error(`${name}: ${(m as unknown as { message: string }).message}`);
        for (const w of this.#waiters.splice(0)) w.reject(e);
        return;
      }
      const i = this.#waiters.findIndex((w) => w.kind === m.kind);
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
      else this.#queue.push(m);
    });
    child.once('exit', (code, signal) => {
      this.#exited = `${name} exited (${String(code ?? signal)})`;
      for (const w of this.#waiters.splice(0)) w.reject(new Error(this.#exited));
    });
  }

  send(m: Out): void {
    this.child.send(m as unknown as object);
  }

  next<K extends In['kind']>(kind: K, timeoutMs: number): Promise<Extract<In, { kind: K }>> {
    const i = this.#queue.findIndex((m) => m.kind === kind);
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0] as Extract<In, { kind: K }>);
    if (this.#exited !== undefined) return Promise.reject(new Error(this.#exited));
    return new Promise((resolve, reject) => {
      const w = {
        kind,
        resolve: (m: In) => {
          clearTimeout(t);
          resolve(m as Extract<In, { kind: K }>);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`${this.name}: no ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    try {
      this.send({ kind: 'exit' } as unknown as Out);
    } catch {
      // the channel is gone already
    }
    const t = setTimeout(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) process.kill(this.pid, 'SIGKILL');
    }, 10_000);
    await gone;
    clearTimeout(t);
  }
}

type Cloud = BenchCloud;

/** The cloud process (bench/cloud-process.ts), with the hub bench's limits and its profiling options. */
function startCloud(dir: string, snapshotDir: string | undefined): Promise<Cloud> {
  const prof = process.env['BENCH_HUB_CPU_PROF'];
  return startBenchCloud({
    dir,
    // Every simulated node comes from 127.0.0.1: the per-source attestation limiter must allow them all.
    config: [`trustDomain: ${TD}`, 'rateLimit: { attestBurst: 100000, attestPerSecond: 100000, maxSources: 10000 }', 'server: { maxConnections: 100000 }', 'hub: { maxSessions: 50000 }'],
    nodeOptions: [
      ...(prof === undefined || prof === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', prof]),
      ...(snapshotDir === undefined ? [] : ['--heapsnapshot-signal=SIGUSR2', '--diagnostic-dir', snapshotDir]),
    ],
  });
}

/** SIGTERM the cloud (its PID only), SIGKILL after 15 s. */
const stopCloud = (c: Cloud): Promise<void> => stopBenchCloud(c, 15_000);

/** SIGUSR2 to a process started with `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir DIR`; waits for the file. */
async function heapSnapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const until = performance.now() + 300_000;
  let file: string | undefined;
  let size = -1;
  while (performance.now() < until) {
    await sleep(2000);
    file ??= readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (file === undefined) continue;
    const s = statSync(join(dir, file)).size;
    if (s === size && s > 0) break;
    size = s;
  }
  return file === undefined ? 'no heap snapshot written' : `${join(dir, file)} (${f2(size / 1048576)} MiB)`;
}

/** The ConfigMap of round `marker` (a small, typical config). */
function fanoutData(marker: string): Record<string, string> {
  return { round: marker, LOG_LEVEL: 'info', FEATURE_FLAGS: 'a,b,c', ENDPOINT: 'https://telemetry.example.org/v1/ingest', RETRY: '5' };
}

interface Round {
  /** ms from just before the trigger to the last node's ack (sent). */
  lastAckMs: number;
  firstAckMs: number;
  /** ms to the server having every ack: the cloud's recorded acks (polled: an upper bound) / the bare server's last read. */
  serverMs: number;
  /** The server's CPU during the round (ms). */
  cpuMs: number;
}

type CloudStatus = { hub?: Record<string, unknown>; nodeApi?: Record<string, unknown> } & Record<string, unknown>;

async function cloudStatus(c: Cloud): Promise<CloudStatus | undefined> {
  try {
    return (await adminCall(c.adminSocket, 'cloud.status')) as CloudStatus;
  } catch {
    return undefined;
  }
}

/**
 * How many nodes the cloud has recorded as acknowledging the current version of the fan-out ConfigMap: the
 * list view's `acksCurrent` (a count in the store; the view lists only the first acks by node).
 */
async function cloudAckCount(c: Cloud): Promise<number> {
  const r = (await adminCall(c.adminSocket, 'resource.get', { kind: 'ConfigMap' }, 30_000)) as {
    items?: Array<{ name: string; version: number; acksCurrent?: number; acks?: Array<{ version: number }> }>;
  };
  const item = r.items?.find((i) => i.name === FANOUT_NAME);
  if (item === undefined) return 0;
  return item.acksCurrent ?? (item.acks ?? []).filter((a) => a.version === item.version).length;
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const nEnv = process.env['BENCH_HUB_NODES'];
  const N = nEnv === undefined || nEnv === '' ? DEFAULT_NODES : Number(nEnv);
  if (!Number.isInteger(N) || N < 1 || N > 99_999) throw new Error('BENCH_HUB_NODES must be an integer 1..99999');
  // Each side holds one descriptor per session, plus its own (database, logs, listeners, pipes).
  const fdLimit = openFilesLimit();
  if (N + 500 > fdLimit) throw new Error(`${N} sessions need about ${N + 500} open files per process; the limit (ulimit -n) is ${fdLimit}`);
  if (!existsSync(NODES_SCRIPT) || !existsSync(BARE_SCRIPT)) throw new Error('dist/bench/hub-nodes.js or hub-bare.js is missing (run `npm run build`)');
  const snapshotDir = process.env['BENCH_HUB_HEAP_SNAPSHOT'] || undefined;

  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-hub-'));
  let cloud: Cloud | undefined;
  let nodes: Ipc<NodesToParent, ParentToNodes> | undefined;
  let bare: Ipc<BareToParent, ParentToBare> | undefined;
  try {
    cloud = await startCloud(dir, snapshotDir);
    const c = cloud;
    nodes = new Ipc<NodesToParent, ParentToNodes>(
      spawn(process.execPath, ['--max-old-space-size=8192', NODES_SCRIPT], { cwd: ROOT, env: { ...process.env, [CHILD_ENV]: 'nodes' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
      'nodes process',
    );
    const n = nodes;
    await n.next('ready', 30_000);
    console.log(
      `cloud pid ${c.pid} at ${c.address}; ${PINNING}; cloud cpus ${cpusAllowed(c.pid)}, nodes pid ${n.pid} cpus ${cpusAllowed(n.pid)}; ${cpus().length} CPUs; ${N} nodes; open files limit ${fdLimit}`,
    );

    // ---- setup: tokens, then joins (in the nodes process)
    const tTok = performance.now();
    const tokens: string[] = new Array<string>(N);
    const tok = await pool(N, TOKEN_IN_FLIGHT, async (i) => {
      const t = (await adminCall(c.adminSocket, 'token.create', { node: nodeName(i), ttlMs: 6 * 3_600_000 })) as { token: string };
      tokens[i] = t.token;
    });
    const tokensMs = performance.now() - tTok;
    if (tok.errors.length > 0) throw new Error(`token.create failed: ${errorSummary(tok.errors)}`);
    const joinCpu0 = cpuMs(c.pid);
    // The bare server's CA and certificate (an X509-SVID for spiffe://TD/edgeward/cloud of its own CA), made
    // now so that each node's TLS context, built once at join, trusts its root too.
    const ca = new CaManager({ trustDomain: TrustDomain.parse(TD) }, new MemoryKeyStore());
    const t = Date.now();
    ca.tick(t);
    const kp = generateP256();
    const issued = ca.issueX509Svid({ spiffeId: SpiffeId.parse(`spiffe://${TD}/edgeward/cloud`), spki: kp.spki, ttlMs: 3_600_000, now: t });
    const bareChain = [issued.der, ...ca.intermediates(t)];
    const bareRootPem = derToPem(ca.root.raw, 'CERTIFICATE');
    n.send({ kind: 'join', address: c.address, digest: c.digest, nodes: tokens.map((token, i) => ({ name: nodeName(i), token })), inFlight: JOIN_IN_FLIGHT, extraRootPem: bareRootPem });
    const joined = await n.next('joined', 30 * 60_000);
    const joinCpuMs = cpuMs(c.pid) - joinCpu0;
    console.log(
      `setup: ${N} join tokens over the admin socket in ${f2(tokensMs / 1000)} s (${f2((N * 1000) / tokensMs)}/s, ${TOKEN_IN_FLIGHT} in flight); ` +
        `${joined.ok} join_token attestations in ${f2(joined.ms / 1000)} s (${f2((joined.ok * 1000) / joined.ms)} joins/s, ${JOIN_IN_FLIGHT} in flight, ` +
        `p50 ${f2(joined.msPerJoin.p50)} ms, p99 ${f2(joined.msPerJoin.p99)} ms; cloud CPU ${f2(joinCpuMs / Math.max(1, joined.ok))} ms per join); errors ${errorSummary(joined.errors)}`,
    );
    if (joined.ok !== N) throw new Error(`only ${joined.ok} of ${N} nodes joined`);

    // ---- baseline: the bare server
    bare = new Ipc<BareToParent, ParentToBare>(
      pinnedSpawn(snapshotDir === undefined ? [BARE_SCRIPT] : ['--heapsnapshot-signal=SIGUSR2', '--diagnostic-dir', snapshotDir, BARE_SCRIPT], { cwd: ROOT, env: { ...process.env, [CHILD_ENV]: 'bare' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
      'bare server',
    );
    const b = bare;
    b.send({ kind: 'start', certPem: bareChain.map((d) => derToPem(d, 'CERTIFICATE')).join(''), keyPem: derToPem(kp.pkcs8(), 'PRIVATE KEY') });
    const { port: barePort } = await b.next('listening', 30_000);
    const bareBefore = await settledRss(b.pid, SETTLE_MS);
    const bareConnCpu0 = [cpuMs(b.pid), cpuMs(n.pid)];
    n.send({ kind: 'connect', target: 'bare', address: `127.0.0.1:${barePort}`, trustDomain: TD, bundleJson: bundleToJson(ca.bundle()), inFlight: CONNECT_IN_FLIGHT });
    const bareConn = await n.next('connected', 30 * 60_000);
    const bareConnCpu = [cpuMs(b.pid) - bareConnCpu0[0]!, cpuMs(n.pid) - bareConnCpu0[1]!];
    const bareIdle = await settledRss(b.pid, HUB_PING_INTERVAL_MS + 2000);
    n.send({ kind: 'stats' });
    const bareStats = (await n.next('stats', 30_000)).stats;
    const bareClients = await (async () => {
      b.send({ kind: 'count' });
      return (await b.next('count', 30_000)).clients;
    })();
    const bareRounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const marker = `bare-${r}`;
      const frame = encodeHubMessage({
        v: HUB_PROTOCOL_VERSION,
        kind: 'put',
        resource: { kind: 'ConfigMap', name: FANOUT_NAME, version: 1000 + r, data: { data: fanoutData(marker) } },
      });
      n.send({ kind: 'expect', round: r, name: FANOUT_NAME, marker });
      n.send({ kind: 'stats' });
      await n.next('stats', 30_000); // the expectation is in place before the trigger
      const cpu0 = cpuMs(b.pid);
      const t0 = now();
      b.send({ kind: 'broadcast', round: r, frame, expect: bareStats.open });
      const [nr, br] = await Promise.all([n.next('round', 120_000), b.next('echoed', 120_000)]);
      bareRounds.push({ lastAckMs: nr.lastAckAt - t0, firstAckMs: nr.firstAckAt - t0, serverMs: br.lastAt - t0, cpuMs: cpuMs(b.pid) - cpu0 });
      await sleep(2000);
    }
    const bareSnapshot = snapshotDir === undefined ? '' : `bare server heap snapshot with ${bareStats.open} sessions: ${await heapSnapshot(b.pid, snapshotDir)}`;
    n.send({ kind: 'disconnect' });
    await n.next('disconnected', 120_000);
    await b.stop();
    bare = undefined;
    console.log(
      `baseline: ${bareStats.open} sessions on the bare server in ${f2(bareConn.ms / 1000)} s (errors ${errorSummary(bareConn.errors)}); ` +
        `CPU per session: server ${f2(bareConnCpu[0]! / Math.max(1, bareStats.open))} ms, nodes ${f2(bareConnCpu[1]! / Math.max(1, bareStats.open))} ms; ` +
        `VmRSS ${f2(bareBefore.rssKiB / 1024)} -> ${f2(bareIdle.rssKiB / 1024)} MiB; fan-out ${bareRounds.map((r) => f2(r.lastAckMs)).join(', ')} ms`,
    );

    // ---- the cloud
    const cloudBefore = await settledRss(c.pid, SETTLE_MS);
    const connCpu0 = cpuMs(c.pid);
    const nodesConnCpu0 = cpuMs(n.pid);
    n.send({ kind: 'connect', target: 'cloud', address: c.address, trustDomain: TD, inFlight: CONNECT_IN_FLIGHT });
    const cloudConn = await n.next('connected', 30 * 60_000);
    const connCpuMs = cpuMs(c.pid) - connCpu0;
    const nodesConnCpuMs = cpuMs(n.pid) - nodesConnCpu0;
    console.log(`cloud: ${cloudConn.open} sessions open in ${f2(cloudConn.ms / 1000)} s (errors ${errorSummary(cloudConn.errors)})`);
    if (cloudConn.open === 0) throw new Error('no hub session could be opened on the cloud');
    const cloudIdle = await settledRss(c.pid, HUB_PING_INTERVAL_MS + 2000);
    n.send({ kind: 'stats' });
    const cloudStats0 = (await n.next('stats', 30_000)).stats;
    const status0 = await cloudStatus(c);

    const cloudRounds: Round[] = [];
    let ackConfirmError: string | undefined;
    const versions: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const marker = `cloud-${r}`;
      n.send({ kind: 'expect', round: r, name: FANOUT_NAME, marker });
      n.send({ kind: 'stats' });
      await n.next('stats', 30_000);
      const doc = { apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: FANOUT_NAME, nodes: ['*'] }, data: fanoutData(marker) };
      const cpu0 = cpuMs(c.pid);
      const t0 = now();
      const applied = (await adminCall(c.adminSocket, 'resource.apply', { documents: [doc] }, 60_000)) as { results: Array<{ version: number; action: string }> };
      versions.push(applied.results[0]?.version ?? NaN);
      const nr = await n.next('round', 120_000);
      // Confirm with the cloud's own records (after the nodes are done, so the polling does not load the fan-out).
      let serverMs = NaN;
      if (ackConfirmError === undefined) {
        const until = performance.now() + 60_000;
        for (;;) {
          let count: number;
          try {
            count = await cloudAckCount(c);
          } catch (e) {
            ackConfirmError = e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e);
            break;
          }
          if (count >= cloudStats0.open) {
            serverMs = now() - t0;
            break;
          }
          if (performance.now() > until) {
            ackConfirmError = `the cloud recorded ${count} of ${cloudStats0.open} acks within 60 s`;
            break;
          }
          await sleep(20);
        }
      }
      cloudRounds.push({ lastAckMs: nr.lastAckAt - t0, firstAckMs: nr.firstAckAt - t0, serverMs, cpuMs: cpuMs(c.pid) - cpu0 });
      await sleep(2000);
    }
    n.send({ kind: 'stats' });
    const cloudStats1: NodesStats = (await n.next('stats', 30_000)).stats;
    const status1 = await cloudStatus(c);
    const memEnd = memKiB(c.pid);

    const snapshot = snapshotDir === undefined ? '' : `cloud heap snapshot with ${cloudStats1.open} sessions: ${await heapSnapshot(c.pid, snapshotDir)}`;

    n.send({ kind: 'disconnect' });
    const disc = await n.next('disconnected', 120_000);
    const cloudAfter = await settledRss(c.pid, 3000);

    // ---- report
    const kb = (kib: number): number => (kib * 1024) / 1000;
    const perCloud = (kb(cloudIdle.rssKiB - cloudBefore.rssKiB) * 1000) / Math.max(1, cloudStats0.open);
    const perBare = (kb(bareIdle.rssKiB - bareBefore.rssKiB) * 1000) / Math.max(1, bareStats.open);
    const fan = cloudRounds.map((r) => r.lastAckMs);
    const bareFan = bareRounds.map((r) => r.lastAckMs);
    const recorded = cloudRounds.map((r) => r.serverMs);
    const bareRead = bareRounds.map((r) => r.serverMs);
    const held = cloudStats1.open;
    const sessionsOk = held >= Math.min(N, TARGET_SESSIONS) && cloudConn.errors.length === 0;
    const memOk = perCloud <= TARGET_BYTES_PER_SESSION;
    // The target counts an update as acknowledged when the cloud has recorded every node's ack.
    const fanMax = Math.max(...recorded);
    const fanOk = cloudRounds.length === ROUNDS && recorded.every(Number.isFinite) && fanMax <= TARGET_FANOUT_MS;
    const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
    const verdict = (ok: boolean): string => (ok ? 'ok' : 'MISSED');

    console.log(`\nhub (1): sessions, ${N} simulated nodes in one process, ${CONNECT_IN_FLIGHT} opening at a time`);
    console.log(line('sessions held (after the fan-out rounds)', held, '', { value: bareStats.open, name: 'bare ws server' }, `target ${TARGET_SESSIONS}: ${verdict(sessionsOk)}${N < TARGET_SESSIONS ? ` (only ${N} nodes in this run)` : ''}`));
    console.log(line('time to open all sessions', cloudConn.ms / 1000, 's', { value: bareConn.ms / 1000, name: 'bare ws server' }));
    console.log(line('  per session (upgrade+hello+synced), p50', cloudConn.msPerSession.p50, 'ms', { value: bareConn.msPerSession.p50, name: 'bare: upgrade' }));
    console.log(line('  per session, p99', cloudConn.msPerSession.p99, 'ms', { value: bareConn.msPerSession.p99, name: 'bare: upgrade' }));
    console.log(line('server CPU per session opened', connCpuMs / Math.max(1, cloudConn.open), 'ms', { value: bareConnCpu[0]! / Math.max(1, bareStats.open), name: 'bare ws server' }));
    console.log(line('  nodes process CPU per session opened', nodesConnCpuMs / Math.max(1, cloudConn.open), 'ms', { value: bareConnCpu[1]! / Math.max(1, bareStats.open), name: 'same nodes, bare server' }));
    console.log(`  cloud's view: ${JSON.stringify(status1?.hub ?? status0?.hub ?? 'cloud.status has no hub section').slice(0, 300)}; bare server clients ${bareClients}`);
    console.log(`  errors opening: cloud ${errorSummary(cloudConn.errors)}; bare ${errorSummary(bareConn.errors)}; sessions closed meanwhile: ${JSON.stringify(cloudStats1.closes)}; node-side errors: ${errorSummary(cloudStats1.errors)}`);

    console.log(`\nhub (2): server RSS per idle session (VmRSS after ${HUB_PING_INTERVAL_MS / 1000 + 2} s idle with every session open, minus before, / sessions; 1 KB = 1000 bytes)`);
    console.log(line('cloud RSS per idle session', perCloud / 1000, 'KB', { value: perBare / 1000, name: 'bare TLS 1.3 ws server' }, `target <= ${TARGET_BYTES_PER_SESSION / 1000} KB: ${verdict(memOk)}`));
    console.log(
      `  cloud VmRSS ${mib(cloudBefore.rssKiB)} -> ${mib(cloudIdle.rssKiB)} with ${cloudStats0.open} idle sessions -> ${mib(memEnd.rss)} after the fan-out rounds -> ${mib(cloudAfter.rssKiB)} after the sessions closed; peak VmHWM ${mib(memEnd.hwm)}`,
    );
    console.log(`  (with every session open minus after they closed, / sessions: ${f2(kb(cloudIdle.rssKiB - cloudAfter.rssKiB) / Math.max(1, cloudStats0.open))} KB)`);
    console.log(`  bare  VmRSS ${mib(bareBefore.rssKiB)} -> ${mib(bareIdle.rssKiB)} with ${bareStats.open} sessions`);
    console.log(line('idle CPU with every session open (pings)', cloudIdle.cpuMsPerSec, 'ms/s', { value: bareIdle.cpuMsPerSec, name: 'bare ws server' }));

    console.log(`\nhub (3): fan-out of one update (ConfigMap, nodes ['*']) to ${cloudStats0.open} sessions, ${ROUNDS} updates`);
    console.log(line('last node acked (sent), p50', median(fan), 'ms', { value: median(bareFan), name: 'bare: same frame, same ack' }));
    console.log(line('last node acked (sent), max', Math.max(...fan), 'ms', { value: Math.max(...bareFan), name: 'bare: same frame, same ack' }));
    console.log(
      line('cloud recorded every ack (resource.get), p50', median(recorded), 'ms', { value: median(bareRead), name: 'bare: server read the last ack' }),
    );
    console.log(
      line('cloud recorded every ack, max', Math.max(...recorded), 'ms', { value: Math.max(...bareRead), name: 'bare: server read the last ack' }, `target <= ${TARGET_FANOUT_MS} ms: ${verdict(fanOk)}`),
    );
    console.log(line('first node acked, p50', median(cloudRounds.map((r) => r.firstAckMs)), 'ms', { value: median(bareRounds.map((r) => r.firstAckMs)), name: 'bare' }));
    console.log(line('server CPU per update', median(cloudRounds.map((r) => r.cpuMs)), 'ms', { value: median(bareRounds.map((r) => r.cpuMs)), name: 'bare: send + read acks' }));
    console.log(
      `  per round (ms, last ack sent / recorded): cloud ${cloudRounds.map((r) => `${f2(r.lastAckMs)}/${f2(r.serverMs)}`).join(', ')}; bare ${bareRounds.map((r) => `${f2(r.lastAckMs)}/${f2(r.serverMs)}`).join(', ')}; versions ${versions.join(', ')}`,
    );
    if (ackConfirmError !== undefined) console.log(`  cloud acks not confirmed: ${ackConfirmError}`);
    console.log(`  puts acked by the nodes ${cloudStats1.putsAcked}, deletes ${cloudStats1.deletesAcked}, pings sent ${cloudStats1.pingsSent}; nodes process RSS ${mib(cloudStats1.rssKiB)}; closing every session took ${f2(disc.ms)} ms`);
    console.log(`cloud warn/error log lines: ${c.warnLines().length}${c.warnLines().length > 0 ? ` (first: ${c.warnLines()[0]})` : ''}`);
    if (snapshot !== '') console.log(`${snapshot}\n${bareSnapshot}`);

    const errors = cloudConn.errors.length + cloudStats1.errors.length + (ackConfirmError === undefined ? 0 : 1) + Object.values(cloudStats1.closes).reduce((a, x) => a + x, 0);
    console.log(
      JSON.stringify({
        bench: 'hub',
        pinning: PINNING,
        nodes: N,
        setup: { tokensMs, joinsMs: joined.ms, joinsPerSec: (joined.ok * 1000) / joined.ms, cloudCpuMsPerJoin: joinCpuMs / Math.max(1, joined.ok) },
        sessions: { held, baseline: bareStats.open, openMs: cloudConn.ms, baselineOpenMs: bareConn.ms, target: TARGET_SESSIONS, ok: sessionsOk },
        rssPerSession: {
          cloudBytes: perCloud,
          bareBytes: perBare,
          ratio: perCloud / perBare,
          cloudKiB: { before: cloudBefore.rssKiB, idle: cloudIdle.rssKiB, afterFanout: memEnd.rss, afterClose: cloudAfter.rssKiB, peak: memEnd.hwm },
          bareKiB: { before: bareBefore.rssKiB, idle: bareIdle.rssKiB },
          target: TARGET_BYTES_PER_SESSION,
          ok: memOk,
        },
        idleCpuMsPerSec: { cloud: cloudIdle.cpuMsPerSec, bare: bareIdle.cpuMsPerSec },
        fanout: {
          lastAckMs: fan,
          recordedMs: recorded,
          baselineLastAckMs: bareFan,
          baselineServerReadMs: bareRead,
          p50: median(fan),
          max: Math.max(...fan),
          baselineP50: median(bareFan),
          ratioP50: median(fan) / median(bareFan),
          cpuMs: cloudRounds.map((r) => r.cpuMs),
          baselineCpuMs: bareRounds.map((r) => r.cpuMs),
          target: TARGET_FANOUT_MS,
          ok: fanOk,
          confirmError: ackConfirmError ?? null,
        },
        errors,
      }),
    );
    if (errors > 0) process.exitCode = 1;
  } finally {
    if (nodes !== undefined) await nodes.stop().catch(() => undefined);
    if (bare !== undefined) await bare.stop().catch(() => undefined);
    if (cloud !== undefined) await stopCloud(cloud);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
