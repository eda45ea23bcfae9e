/**
 * Attested node join against one real cloud process (issue #4): `npm run bench -- join`.
 *
 * The bench starts ONE `node bin/edgeward.js cloud start` child (temp data dir, `--listen 127.0.0.1:0`, a
 * config file whose attestation rate limit lets 1000+ joins come from 127.0.0.1), pinned to CPU 1 with
 * `taskset -c 1` when the machine has >= 2 CPUs and taskset works (scripts/bench.mjs pins this process, the
 * simulated nodes, to CPU 0), and stops only that PID at the end.
 *
 * Outside the timed parts, through the admin socket (adminCall): one join token per node and one
 * registration entry delegated to it (parentId = the node's SPIFFE ID).
 *
 * A simulated node (in this process, its own CloudClient, so its own connections) runs the product's edge
 * path: GET /v1/bundle + digest check (CloudClient.fetchBundle), node key + CSR + join_token attestation
 * (attestNode, which checks the node SVID), then over mTLS with the new SVID `entries.request` and
 * `svids.request` for its entry, and checks the workload SVID as the joined edge's issuer does (chain to
 * the bundle, exactly the entry's SPIFFE ID, our key): the first Workload API response the edge could serve.
 * Not included: `edge join`'s data-dir writes (keys, state.json, join.json) and the edge process start.
 *
 * 1. Open loop at 50 joins/s, 500 nodes (one start every 20 ms whatever completes): p50/p99/max join
 *    latency measured from each node's scheduled start, achieved joins/s, the cloud's CPU per join, its
 *    RSS (VmRSS, peak VmHWM), and a phase breakdown. Baseline: a bare HTTPS GET /v1/bundle on a fresh TLS
 *    1.3 connection, paced the same way against the same cloud, interleaved with the joins (half a period
 *    apart) so both see the same machine; also shown alone. Target: p99 < 250 ms.
 *    Every section also prints how busy the cloud and the nodes were and how much CPU other processes on the
 *    machine took meanwhile (/proc/stat), since the simulated nodes cost more CPU than the cloud does.
 * 2. Burst: 500 more nodes, 64 in flight: joins/s and p50/p99. Baseline: bare GETs, 64 in flight.
 * 3. Renewal CPU: 300 `renew.request`s, each over a NEW mTLS connection (as a node renewing every 30 min
 *    does: the keep-alive timeout is long gone), and 300 over kept-alive, already authenticated connections;
 *    the cloud's utime+stime (/proc/PID/stat, CLK_TCK) per renewal. Baselines: the cloud's CPU per bare
 *    fresh-connection GET /v1/bundle, and one in-process CaManager.issueX509SvidFromCsr (this process).
 *    Target: < 2 ms of cloud CPU per renewal (new connection).
 *
 * BENCH_JOIN_CPU_PROF=DIR runs the cloud with `--cpu-prof --cpu-prof-dir DIR` (profile written at its exit).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  buildCsr,
  CaManager,
  generateP256,
  MemoryKeyStore,
  SpiffeId,
  TrustDomain,
  validateX509Svid,
  type KeyPair,
  type TrustBundle,
} from '../src/identity/index.js';
import { adminCall, NODE_API_VERSION, type CloudToEdgeMessage } from '../src/protocol/index.js';
import { CloudClient, parseCloudAddress, type CloudAddress } from '../src/edge/cloud-client/index.js';
import { attestNode, checkNodeSvid } from '../src/edge/join/index.js';
import { errorSummary, errorText, measure, pool, type PoolResult } from './harness.js';
import { CLK_TCK, cpuMs, startBenchCloud, stopBenchCloud, type BenchCloud } from './cloud-process.js';

/** dist/bench/join.js -> repository root. */

const TD = 'bench.example';
const NODES = 500;
const RATE = 50; // joins/s offered in scenario 1
const BURST_IN_FLIGHT = 64;
const RENEWALS = 300;
const RENEW_IN_FLIGHT = 8;
const P99_TARGET_MS = 250;
const RENEW_CPU_TARGET_MS = 2;
const WARMUP_JOINS = 20;

const clock = { now: () => Date.now() };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------
// Statistics and printing (harness.ts's report() prints rates; these are latencies and CPU times).

interface Stats {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function stats(xs: readonly number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN, n: s.length };
}

const f2 = (n: number): string => (Number.isNaN(n) ? 'n/a' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? `x${(a / b).toFixed(1)}` : 'n/a');

function latencyLine(name: string, x: Stats, base?: Stats): string {
  return (
    `  ${name.padEnd(44)} p50 ${f2(x.p50).padStart(7)}  p99 ${f2(x.p99).padStart(7)}  max ${f2(x.max).padStart(7)} ms (n=${x.n})` +
    (base === undefined ? '' : `   ratio to baseline: p50 ${ratio(x.p50, base.p50)}, p99 ${ratio(x.p99, base.p99)}`)
  );
}

function valueLine(name: string, value: number, unit: string, base?: { value: number; name: string }): string {
  return (
    `  ${name.padEnd(44)} ${f2(value).padStart(9)} ${unit.padEnd(8)}` +
    (base === undefined ? '' : `   baseline ${f2(base.value).padStart(8)} ${unit} (${base.name})   ratio ${ratio(value, base.value)}`)
  );
}

// ---------------------------------------------------------------------------------------------------
// The cloud process.

interface Cloud extends Omit<BenchCloud, 'address'> {
  address: CloudAddress;
}

/** The cloud process (bench/cloud-process.ts) with a config that lets every simulated node join. */
async function startCloud(dir: string): Promise<Cloud> {
  const prof = process.env['BENCH_JOIN_CPU_PROF'];
  const c = await startBenchCloud({
    dir,
    // Every simulated node comes from 127.0.0.1: the per-source attestation limiter must allow them all.
    config: [`trustDomain: ${TD}`, 'rateLimit: { attestBurst: 100000, attestPerSecond: 100000, maxSources: 10000 }', 'server: { maxConnections: 100000 }'],
    nodeOptions: prof === undefined || prof === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', prof],
  });
  return { ...c, address: parseCloudAddress(c.address) };
}

/** SIGTERM the cloud (its PID only), SIGKILL after 10 s (a --cpu-prof profile is written at a clean exit). */
const stopCloud = (c: Cloud): Promise<void> => stopBenchCloud(c, 10_000);

/** Busy CPU time of the whole machine in ms (/proc/stat: everything but idle and iowait). */
function machineBusyMs(): number {
  const f = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').trim().split(/\s+/).map(Number);
  const busy = f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0);
  return (busy * 1000) / CLK_TCK;
}

function memKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)\\s+kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

// ---------------------------------------------------------------------------------------------------
// Nodes.

interface Prepared {
  name: string;
  token: string;
  entryId: string;
  spiffeId: string;
}

interface Joined {
  name: string;
  key: KeyPair;
  chainDer: Buffer[];
  bundle: TrustBundle;
  /** ms spent in: GET /v1/bundle + digest check, key + CSR + attestation, entries.request + svids.request + checks. */
  phases: [number, number, number];
}

async function prepare(cloud: Cloud, prefix: string, n: number): Promise<Prepared[]> {
  const out: Prepared[] = [];
  for (let i = 0; i < n; i++) {
    const name = `${prefix}-${i}`;
    const t = (await adminCall(cloud.adminSocket, 'token.create', { node: name, ttlMs: 3_600_000 })) as { token: string };
    const spiffeId = `spiffe://${TD}/bench/${name}/app`;
    const e = (await adminCall(cloud.adminSocket, 'entry.create', {
      spiffeId,
      parentId: `spiffe://${TD}/edgeward/node/${name}`,
      selectors: ['unix:uid:1000'],
    })) as { id: string };
    out.push({ name, token: t.token, entryId: e.id, spiffeId });
  }
  return out;
}

function expect<K extends CloudToEdgeMessage['kind']>(m: CloudToEdgeMessage, kind: K): Extract<CloudToEdgeMessage, { kind: K }> {
  if (m.kind !== kind) throw new Error(`expected ${kind}, got ${m.kind}`);
  return m as Extract<CloudToEdgeMessage, { kind: K }>;
}

/** One node's join, up to the first workload SVID (see the header). */
async function joinNode(address: CloudAddress, digest: string, p: Prepared): Promise<Joined> {
  const client = new CloudClient({ address, clock });
  try {
    const t0 = performance.now();
    const pinned = await client.fetchBundle(digest);
    const t1 = performance.now();
    const td = pinned.trustDomain;
    const key = generateP256();
    const attested = await attestNode(client, { method: 'join_token', token: p.token }, p.name, key, td, clock);
    const t2 = performance.now();
    client.setBundle(attested.bundle);
    client.setCredentials({ chainDer: attested.chainDer, privateKey: key.privateKey });
    const entries = expect(await client.node({ v: NODE_API_VERSION, kind: 'entries.request' }), 'entries.result').entries;
    const entry = entries.find((e) => e.id === p.entryId);
    if (entry === undefined) throw new Error(`entry ${p.entryId} is not delegated to ${p.name} (${entries.length} entries)`);
    const wkey = generateP256();
    const res = expect(
      await client.node({ v: NODE_API_VERSION, kind: 'svids.request', csrs: [{ entryId: entry.id, csr: buildCsr(wkey) }] }),
      'svids.result',
    );
    const chain = res.svids.find((s) => s.entryId === entry.id)?.svidChainDer;
    if (chain === undefined) throw new Error('no workload SVID in svids.result');
    // What the joined edge's issuer checks before it serves the SVID.
    const v = validateX509Svid(chain, attested.bundle, clock.now(), { trustDomain: td });
    if (v.spiffeId.toString() !== entry.spiffeId || !v.leaf.spki.equals(wkey.spki)) throw new Error('the workload SVID is not for this entry and key');
    return { name: p.name, key, chainDer: attested.chainDer, bundle: attested.bundle, phases: [t1 - t0, t2 - t1, performance.now() - t2] };
  } finally {
    client.close();
  }
}

/** renew.request over a new mTLS connection (a new CloudClient), checked as the edge does; returns the renewed node. */
async function renewNode(address: CloudAddress, td: TrustDomain, n: Joined): Promise<Joined> {
  const client = new CloudClient({ address, clock, bundle: n.bundle });
  try {
    client.setCredentials({ chainDer: n.chainDer, privateKey: n.key.privateKey });
    const k = generateP256();
    const r = expect(await client.node({ v: NODE_API_VERSION, kind: 'renew.request', csr: buildCsr(k) }), 'renew.result');
    const bundle = checkNodeSvid(r.svidChainDer, r.bundle, td, n.name, k.spki, clock.now());
    return { ...n, key: k, chainDer: r.svidChainDer, bundle };
  } finally {
    client.close();
  }
}

/** A bare HTTPS GET /v1/bundle on a fresh TLS 1.3 connection (no client certificate). */
function bareGet(address: CloudAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: address.host,
        port: address.port,
        path: '/v1/bundle',
        method: 'GET',
        agent: false,
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
        rejectUnauthorized: false,
        headers: { accept: 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET /v1/bundle: HTTP ${res.statusCode}`))));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

interface RunResult<T> extends PoolResult<T> {
  maxStartLagMs: number;
}

/** Open loop: operation i starts at t0 + i * intervalMs whatever completed; latency from the scheduled start. */
async function openLoop<T>(n: number, intervalMs: number, fn: (i: number) => Promise<T>): Promise<RunResult<T>> {
  const ms: number[] = [];
  const ok: T[] = [];
  const errors: string[] = [];
  const all: Promise<void>[] = [];
  let maxLag = 0;
  let lastEnd = 0;
  const t0 = performance.now() + 20;
  for (let i = 0; i < n; i++) {
    const due = t0 + i * intervalMs;
    const wait = due - performance.now();
    if (wait > 0.5) await sleep(wait);
    maxLag = Math.max(maxLag, performance.now() - due);
    all.push(
      fn(i).then(
        (v) => {
          lastEnd = performance.now();
          ms.push(lastEnd - due);
          ok.push(v);
        },
        (e: unknown) => {
          lastEnd = performance.now();
          errors.push(errorText(e));
        },
      ),
    );
  }
  await Promise.all(all);
  return { ms, ok, errors, wallMs: lastEnd - t0, maxStartLagMs: maxLag };
}

/**
 * Cloud CPU (ms) and this process's CPU (ms) spent while `fn` runs, and the CPU every other process on the
 * machine used meanwhile (other sessions' builds and tests make these machines noisy).
 */
async function withCpu<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; cloudCpuMs: number; benchCpuMs: number; otherCpuMs: number; wallMs: number }> {
  const c0 = cpuMs(pid);
  const m0 = machineBusyMs();
  const b0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const b = process.cpuUsage(b0);
  const cloudCpuMs = cpuMs(pid) - c0;
  const benchCpuMs = (b.user + b.system) / 1000;
  return { value, cloudCpuMs, benchCpuMs, otherCpuMs: Math.max(0, machineBusyMs() - m0 - cloudCpuMs - benchCpuMs), wallMs: performance.now() - t0 };
}

const otherLoad = (x: { otherCpuMs: number; wallMs: number }): string => `${((100 * x.otherCpuMs) / x.wallMs).toFixed(0)}% of one CPU`;

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-join-'));
  let cloud: Cloud | undefined;
  try {
    cloud = await startCloud(dir);
    const c = cloud;
    const selfCpus = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '?';
    const cloudCpus = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${c.pid}/status`, 'utf8'))?.[1] ?? '?';
    console.log(
      `cloud pid ${c.pid} at ${c.address.text}; ${c.pinning} (cloud cpus ${cloudCpus}, bench/nodes cpus ${selfCpus}); ${cpus().length} CPUs; CLK_TCK ${CLK_TCK}`,
    );
    const memBoot = memKiB(c.pid);

    // ---- setup (not timed): tokens + one delegated entry per node
    const tSetup = performance.now();
    const warm = await prepare(c, 'warm', WARMUP_JOINS);
    const open = await prepare(c, 'open', NODES);
    const burst = await prepare(c, 'burst', NODES);
    console.log(`setup: ${WARMUP_JOINS + 2 * NODES} join tokens + ${WARMUP_JOINS + 2 * NODES} delegated entries over the admin socket in ${((performance.now() - tSetup) / 1000).toFixed(1)} s`);

    // ---- warm-up (code paths hot in both processes), not reported
    const td = TrustDomain.parse(TD);
    const w = await pool(WARMUP_JOINS, 4, (i) => joinNode(c.address, c.digest, warm[i]!));
    if (w.errors.length > 0) throw new Error(`warm-up joins failed: ${errorSummary(w.errors)}`);
    await pool(100, 4, () => bareGet(c.address));
    // Renewal paths too (each warm node renews a few times with its newest SVID, as a real node does).
    const warmNodes = w.ok;
    for (let r = 0; r < 5; r++) {
      const wr = await pool(warmNodes.length, 4, (i) => renewNode(c.address, td, warmNodes[i]!));
      if (wr.errors.length > 0) throw new Error(`warm-up renewals failed: ${errorSummary(wr.errors)}`);
      wr.ok.forEach((n) => (warmNodes[warmNodes.findIndex((x) => x.name === n.name)] = n));
    }

    // ---- idle CPU check (the cloud's timers while nothing happens)
    const idle0 = cpuMs(c.pid);
    await sleep(1000);
    const idleCpuMsPerSec = cpuMs(c.pid) - idle0;

    // ---- (1) open loop at 50/s: baseline (bare GETs, same pacing), then the joins
    const interval = 1000 / RATE;
    // The baseline runs alone first (its cloud CPU per GET), then interleaved with the joins (offset by half a
    // period) so that both see the same machine: the latency ratio is taken against the interleaved one.
    const baseOpen = await withCpu(c.pid, () => openLoop(NODES, interval, () => bareGet(c.address)));
    let baseMixedP: Promise<RunResult<void>> | undefined;
    const joinOpen = await withCpu(c.pid, async () => {
      baseMixedP = sleep(interval / 2).then(() => openLoop(NODES, interval, () => bareGet(c.address)));
      const r = await openLoop(NODES, interval, (i) => joinNode(c.address, c.digest, open[i]!));
      await baseMixedP;
      return r;
    });
    const baseMixed = await baseMixedP!;
    const mem1 = memKiB(c.pid);
    const o = joinOpen.value;
    const bo = baseOpen.value;
    const openStats = stats(o.ms);
    const baseOpenStats = stats(baseMixed.ms);
    const baseAloneStats = stats(bo.ms);
    const openRate = (o.ok.length * 1000) / o.wallMs;

    // ---- (2) burst: 500 more nodes, 64 in flight; baseline: bare GETs, 64 in flight
    const baseBurst = await withCpu(c.pid, () => pool(NODES, BURST_IN_FLIGHT, () => bareGet(c.address)));
    const joinBurst = await withCpu(c.pid, () => pool(NODES, BURST_IN_FLIGHT, (i) => joinNode(c.address, c.digest, burst[i]!)));
    const mem2 = memKiB(c.pid);
    const b = joinBurst.value;
    const bb = baseBurst.value;
    const burstStats = stats(b.ms);
    const baseBurstStats = stats(bb.ms);
    const burstRate = (b.ok.length * 1000) / b.wallMs;
    const baseBurstRate = (bb.ok.length * 1000) / bb.wallMs;

    // ---- (3) renewal CPU
    // Baseline: the cloud's CPU per bare GET /v1/bundle on a fresh connection.
    const getCpu = await withCpu(c.pid, () => pool(RENEWALS, RENEW_IN_FLIGHT, () => bareGet(c.address)));
    // New mTLS connection per renewal (nodes of scenario 1, each renewing once with its current SVID).
    const renewNodes = o.ok.slice(0, RENEWALS);
    const renewFresh = await withCpu(c.pid, () => pool(renewNodes.length, RENEW_IN_FLIGHT, (i) => renewNode(c.address, td, renewNodes[i]!)));
    // Kept-alive connections: each node (scenario 2) first authenticates its connection (entries.request,
    // not measured), then renews over it.
    const kaNodes = b.ok.slice(0, RENEWALS);
    const kaClients = kaNodes.map((n) => {
      const client = new CloudClient({ address: c.address, clock, bundle: n.bundle });
      client.setCredentials({ chainDer: n.chainDer, privateKey: n.key.privateKey });
      return client;
    });
    const kaWarm = await pool(kaClients.length, RENEW_IN_FLIGHT, (i) => kaClients[i]!.node({ v: NODE_API_VERSION, kind: 'entries.request' }));
    const connsBefore = ((await adminCall(c.adminSocket, 'cloud.status')) as { nodeApi?: { connections?: number } }).nodeApi?.connections;
    const renewKa = await withCpu(c.pid, () =>
      pool(kaNodes.length, RENEW_IN_FLIGHT, async (i) => {
        const n = kaNodes[i]!;
        const k = generateP256();
        const r = expect(await kaClients[i]!.node({ v: NODE_API_VERSION, kind: 'renew.request', csr: buildCsr(k) }), 'renew.result');
        checkNodeSvid(r.svidChainDer, r.bundle, td, n.name, k.spki, clock.now());
      }),
    );
    const connsAfter = ((await adminCall(c.adminSocket, 'cloud.status')) as { nodeApi?: { connections?: number } }).nodeApi?.connections;
    for (const cl of kaClients) cl.close();
    const memEnd = memKiB(c.pid);

    // In-process baseline: one CaManager.issueX509SvidFromCsr in this process (distinct CSRs).
    const ca = new CaManager({ trustDomain: td }, new MemoryKeyStore());
    const now = Date.now();
    ca.tick(now);
    const csrs = Array.from({ length: 64 }, () => buildCsr(generateP256()));
    const sid = SpiffeId.parse(`spiffe://${TD}/edgeward/node/x`);
    let k = 0;
    const issueRate = measure(() => ca.issueX509SvidFromCsr({ spiffeId: sid, csr: csrs[k++ & 63]!, ttlMs: 3_600_000, now }), 1500).opsPerSec;
    const issueMs = 1000 / issueRate;

    // ---- report
    const getCpuMs = getCpu.cloudCpuMs / getCpu.value.ok.length;
    const freshMs = renewFresh.cloudCpuMs / renewFresh.value.ok.length;
    const kaMs = renewKa.cloudCpuMs / renewKa.value.ok.length;
    const joinCpuOpen = joinOpen.cloudCpuMs / o.ok.length;
    const joinCpuBurst = joinBurst.cloudCpuMs / b.ok.length;
    const baseCpuOpen = baseOpen.cloudCpuMs / bo.ok.length;
    const clientCpuOpen = joinOpen.benchCpuMs / o.ok.length;
    const allErrors = [...baseMixed.errors, ...o.errors, ...b.errors, ...renewFresh.value.errors, ...renewKa.value.errors, ...kaWarm.errors, ...bo.errors, ...bb.errors, ...getCpu.value.errors];
    const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

    console.log(`\njoin (1): open loop, ${RATE} joins/s offered, ${NODES} nodes (latency from each node's scheduled start)`);
    console.log(latencyLine('join (bundle+attest+entries+svids)', openStats, baseOpenStats));
    console.log(latencyLine('baseline: bare GET /v1/bundle, fresh TLS 1.3', baseOpenStats));
    console.log(latencyLine('  (same GETs, alone, before the joins)', baseAloneStats));
    console.log(valueLine('achieved rate', openRate, 'joins/s', { value: (bo.ok.length * 1000) / bo.wallMs, name: 'bare GETs, same pacing' }));
    console.log(valueLine('cloud CPU per join', joinCpuOpen, 'ms', { value: baseCpuOpen, name: 'per bare GET, same pacing' }));
    console.log(valueLine('node-side CPU per join (this process)', clientCpuOpen, 'ms'));
    const ph = (k: 0 | 1 | 2): Stats => stats(o.ok.map((j) => j.phases[k]));
    console.log(latencyLine('  phase: GET /v1/bundle + digest check', ph(0)));
    console.log(latencyLine('  phase: key, CSR, attest (join_token)', ph(1)));
    console.log(latencyLine('  phase: mTLS entries + svids requests', ph(2)));
    console.log(
      `  busy: cloud ${((100 * joinOpen.cloudCpuMs) / o.wallMs).toFixed(0)}% of its CPU, nodes (this process) ${((100 * joinOpen.benchCpuMs) / o.wallMs).toFixed(0)}% of theirs; cloud CPU-bound ceiling ~${f2(1000 / joinCpuOpen)} joins/s per core`,
    );
    console.log(`  max start lag of the pacer ${f2(o.maxStartLagMs)} ms; other processes on the machine meanwhile: ${otherLoad(joinOpen)}; errors ${errorSummary([...o.errors, ...baseMixed.errors])}`);
    console.log(`  target p99 < ${P99_TARGET_MS} ms at ${RATE} joins/s: ${o.errors.length === 0 && openStats.p99 < P99_TARGET_MS ? 'ok' : 'MISSED'} (p99 ${f2(openStats.p99)} ms)`);

    console.log(`\njoin (2): burst, ${NODES} nodes, ${BURST_IN_FLIGHT} in flight`);
    console.log(latencyLine('join (bundle+attest+entries+svids)', burstStats, baseBurstStats));
    console.log(latencyLine(`baseline: bare GET /v1/bundle, ${BURST_IN_FLIGHT} in flight`, baseBurstStats));
    console.log(valueLine('max join rate', burstRate, 'joins/s', { value: baseBurstRate, name: `bare GETs/s, ${BURST_IN_FLIGHT} in flight` }));
    console.log(valueLine('cloud CPU per join', joinCpuBurst, 'ms', { value: baseBurst.cloudCpuMs / bb.ok.length, name: 'per bare GET' }));
    console.log(valueLine('node-side CPU per join (this process)', joinBurst.benchCpuMs / b.ok.length, 'ms'));
    console.log(
      `  busy: cloud ${((100 * joinBurst.cloudCpuMs) / b.wallMs).toFixed(0)}% of its CPU, nodes (this process) ${((100 * joinBurst.benchCpuMs) / b.wallMs).toFixed(0)}% of theirs (the busier side bounds the rate); other processes on the machine: ${otherLoad(joinBurst)}`,
    );
    console.log(`  errors ${errorSummary(b.errors)}`);

    console.log(`\nrenewal: cloud CPU (utime+stime of pid ${c.pid}) per renew.request, ${RENEWALS} renewals, ${RENEW_IN_FLIGHT} in flight`);
    console.log(valueLine('renewal, new mTLS connection each', freshMs, 'ms CPU', { value: getCpuMs, name: 'bare GET, new connection' }));
    console.log(valueLine('  (same, vs in-process CSR issuance)', freshMs, 'ms CPU', { value: issueMs, name: 'issueX509SvidFromCsr here' }));
    console.log(valueLine('renewal, kept-alive authenticated conn.', kaMs, 'ms CPU', { value: issueMs, name: 'issueX509SvidFromCsr here' }));
    console.log(valueLine('baseline: bare GET /v1/bundle, new conn.', getCpuMs, 'ms CPU'));
    console.log(valueLine('baseline: issueX509SvidFromCsr in-process', issueMs, 'ms CPU'));
    console.log(
      `  cloud idle CPU ${f2(idleCpuMsPerSec)} ms/s; CPU clock resolution ${f2(1000 / CLK_TCK)} ms over ${f2(renewFresh.cloudCpuMs)} ms measured; open node-API connections during the kept-alive round: ${connsBefore ?? '?'} before, ${connsAfter ?? '?'} after`,
    );
    console.log(`  other processes on the machine during the new-connection renewals: ${otherLoad(renewFresh)}`);
    console.log(`  errors ${errorSummary([...renewFresh.value.errors, ...renewKa.value.errors, ...kaWarm.errors])}`);
    console.log(`  target renewal < ${RENEW_CPU_TARGET_MS} ms of cloud CPU (new connection, as a node renewing every 30 min): ${renewFresh.value.errors.length === 0 && freshMs < RENEW_CPU_TARGET_MS ? 'ok' : 'MISSED'} (${f2(freshMs)} ms)`);

    console.log(`\ncloud memory (pid ${c.pid}): VmRSS after start ${mib(memBoot.rss)}; after (1) ${mib(mem1.rss)}; after (2) ${mib(mem2.rss)}; at the end ${mib(memEnd.rss)}; peak VmHWM ${mib(memEnd.hwm)}`);
    console.log(`cloud warn/error log lines: ${c.warnLines().length}${c.warnLines().length > 0 ? ` (first: ${c.warnLines()[0]})` : ''}; errors in total: ${allErrors.length}`);

    console.log(
      JSON.stringify({
        bench: 'join',
        pinning: c.pinning,
        nodes: NODES,
        openLoop: {
          offeredPerSec: RATE,
          achievedPerSec: openRate,
          latencyMs: openStats,
          baselineBareGetMs: baseOpenStats,
          baselineBareGetAloneMs: baseAloneStats,
          otherProcessesCpuPct: (100 * joinOpen.otherCpuMs) / joinOpen.wallMs,
          ratioP50: openStats.p50 / baseOpenStats.p50,
          ratioP99: openStats.p99 / baseOpenStats.p99,
          cloudCpuMsPerJoin: joinCpuOpen,
          baselineCloudCpuMsPerGet: baseCpuOpen,
          nodeCpuMsPerJoin: clientCpuOpen,
          errors: o.errors.length,
          target: { p99Ms: P99_TARGET_MS, ok: o.errors.length === 0 && openStats.p99 < P99_TARGET_MS },
        },
        burst: {
          inFlight: BURST_IN_FLIGHT,
          joinsPerSec: burstRate,
          baselineGetsPerSec: baseBurstRate,
          ratio: burstRate / baseBurstRate,
          latencyMs: burstStats,
          baselineBareGetMs: baseBurstStats,
          cloudCpuMsPerJoin: joinCpuBurst,
          errors: b.errors.length,
        },
        renewal: {
          n: RENEWALS,
          cloudCpuMsFreshConnection: freshMs,
          cloudCpuMsKeepAlive: kaMs,
          baselineCloudCpuMsBareGet: getCpuMs,
          baselineIssueFromCsrMs: issueMs,
          ratioToBareGet: freshMs / getCpuMs,
          ratioToIssue: freshMs / issueMs,
          errors: renewFresh.value.errors.length + renewKa.value.errors.length,
          target: { cpuMs: RENEW_CPU_TARGET_MS, ok: renewFresh.value.errors.length === 0 && freshMs < RENEW_CPU_TARGET_MS },
        },
        cloudMemKiB: { boot: memBoot.rss, afterOpenLoop: mem1.rss, afterBurst: mem2.rss, end: memEnd.rss, peak: memEnd.hwm },
        errors: allErrors.length,
      }),
    );
    if (allErrors.length > 0) process.exitCode = 1;
  } finally {
    if (cloud !== undefined) await stopCloud(cloud);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
