/**
 * The EventBus under load (issue #6): a real cloud and a real joined edge (child processes), devices enrolled
 * through the real flow (`edgeward device token` + the reference client `edgeward device enroll`), then
 *
 * 1. QoS 0 and QoS 1 throughput, 10 publishers -> 1 subscriber, 64-byte payloads, through the edge's broker
 *    (mTLS, SVID checks and topic ACLs on), and in the same run through Debian's `mosquitto` with
 *    `require_certificate true` and the SAME device certificates, CA file and client load (mqtt-load.ts: raw
 *    pre-encoded MQTT 3.1.1 over TLS). Broker CPU per message from /proc/PID/stat. Target: QoS 1 >= 80 % of
 *    mosquitto's.
 *    Each round runs both brokers back to back (the order alternates per round); the best round of each broker
 *    is compared, so that a burst of other load on the machine during one broker's run does not decide the
 *    ratio. The wall-clock ratio decides the target only when both brokers were saturated (>= 90 % of their CPU)
 *    in those runs; otherwise the ratio of messages per broker CPU-second does (on two CPUs the load generator,
 *    one Node process, is often what limits mosquitto: mosquitto writes one TLS record per packet, which costs
 *    the generator about 3x the edge's coalesced writes). Broker and generator CPU are printed for each.
 * 2. The edge process's RSS idle and with 100 idle devices connected over mTLS, next to mosquitto's with the
 *    same 100 connections. Target: <= 70 MB with 100 idle devices (KubeEdge's published edgecore figure is about
 *    70 MB, kubeedge.md). Idle is read twice: in the process that just enrolled the devices, and after a restart
 *    of the edge (the steady state of a node whose devices enrolled earlier); the 100 devices connect to the
 *    restarted process.
 *
 * Enrolment is the real flow: a one-time token per device from the cloud (`device.token`, what `edgeward device
 * token` calls) and the reference client `edgeward device enroll`, run in this process through the CLI's
 * `main()` (the same code as the binary, without a Node start per device).
 *
 * Knobs: EVENTBUS_BENCH_MESSAGES (per QoS, broker and round, default 200000), EVENTBUS_BENCH_ROUNDS (default 5),
 * EVENTBUS_BENCH_DEVICES (default 100), EVENTBUS_BENCH_SETTLE_MS (wait before an edge RSS reading, default 16000),
 * EVENTBUS_BENCH_EDGE_NODE_FLAGS (V8/Node flags for the edge process), EVENTBUS_BENCH_TRACE=1 (every run, RSS series).
 * Run: `npm run bench -- eventbus`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { adminCall } from '../src/protocol/index.js';
import { main as cliMain } from '../src/cli/main.js';
import { pool, errorSummary } from './harness.js';
import { BIN, cpuMs, pinnedSpawn, PIN, ROOT, startBenchCloud, stopBenchCloud } from './cloud-process.js';
import { flood, mqttConnect, subscribePacket, write, type MqttConn, type TlsIdentity } from './mqtt-load.js';

const TD = 'bench.edgeward.test';
const NODE = 'bench-node';
const MESSAGES = Number(process.env['EVENTBUS_BENCH_MESSAGES'] ?? 200_000);
const DEVICES = Number(process.env['EVENTBUS_BENCH_DEVICES'] ?? 100);
/** EVENTBUS_BENCH_TRACE=1: print every throughput run, and the RSS once a second while a process settles. */
const TRACE = process.env['EVENTBUS_BENCH_TRACE'] === '1';
/** How long a process is left alone before its RSS is read (V8's memory reducer runs some seconds after activity). */
const SETTLE_MS = Number(process.env['EVENTBUS_BENCH_SETTLE_MS'] ?? 16_000);
const ROUNDS = Math.max(1, Number(process.env['EVENTBUS_BENCH_ROUNDS'] ?? 5));
const PUBLISHERS = 10;
const PAYLOAD = Buffer.alloc(64, 0x61);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** A `kB` field of /proc/PID/status (VmRSS, RssAnon, RssFile, ...). */
function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]);
}

function rssKb(pid: number): number {
  return statusKb(pid, 'VmRSS');
}

function cli(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, EDGEWARD_DEBUG: undefined } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** `edgeward ARGS` in this process (the CLI's main(), output captured). */
async function cliInProcess(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await cliMain(args, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: { ...process.env, EDGEWARD_DEBUG: undefined }, now: () => Date.now() });
  return { code, out, err };
}

/** Collect a child's stdout; `wait(re)` resolves with the first group of the first match, printed before or after. */
function outputOf(child: ChildProcess): { wait(re: RegExp, timeoutMs: number): Promise<string> } {
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    for (const w of [...waiters]) w();
  });
  return {
    wait: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = re.exec(out);
          if (m === null) return;
          clearTimeout(t);
          waiters.delete(check);
          resolve(m[1]!);
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${re} within ${timeoutMs} ms: ${out.slice(-400)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  process.kill(child.pid, 'SIGTERM');
  const t = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

interface Throughput {
  qos: 0 | 1;
  msgsPerSec: number;
  cpuUsPerMsg: number;
  /** The broker's CPU time over the wall-clock time of the run: near 1, the broker was the bottleneck. */
  brokerBusy: number;
  /** The load generator's (this process's) CPU per message, and its share of the wall-clock time. */
  genUsPerMsg: number;
  genBusy: number;
  received: number;
}

async function throughput(host: string, port: number, pid: number, ids: TlsIdentity[], sinkId: TlsIdentity, sinkClient: string, pubClients: string[], qos: 0 | 1): Promise<Throughput> {
  const sub = await mqttConnect(host, port, sinkId, sinkClient);
  const subAck = new Promise<void>((resolve) => (sub.onPacket = (type) => type === 9 && resolve()));
  await write(sub.socket, subscribePacket(1, 'bench/#', qos));
  await subAck;
  const pubs: { conn: MqttConn; topic: string }[] = [];
  for (let i = 0; i < PUBLISHERS; i++) pubs.push({ conn: await mqttConnect(host, port, ids[i]!, pubClients[i]!), topic: `bench/bench/pub-${i}` });
  const perPublisher = Math.floor(MESSAGES / PUBLISHERS);
  const cpu0 = cpuMs(pid);
  const gen0 = process.cpuUsage();
  const r = await flood({ sub, pubs, perPublisher, qos, payload: PAYLOAD, window: 100, deadlineMs: 120_000 });
  const gen = process.cpuUsage(gen0);
  const cpu = cpuMs(pid) - cpu0;
  for (const p of pubs) p.conn.close();
  sub.close();
  await new Promise((res) => setTimeout(res, 300));
  const n = Math.max(1, r.received);
  if (TRACE) console.log(`run: port ${port} QoS ${qos}: ${r.received} in ${r.elapsedMs.toFixed(0)} ms, broker ${((cpu * 1000) / n).toFixed(1)} us/msg (${((cpu / r.elapsedMs) * 100).toFixed(0)} % busy), generator ${((gen.user + gen.system) / n).toFixed(1)} us/msg (${((gen.user + gen.system) / 10 / r.elapsedMs).toFixed(0)} % busy)`);
  return {
    qos,
    msgsPerSec: (r.received / r.elapsedMs) * 1000,
    cpuUsPerMsg: (cpu * 1000) / n,
    brokerBusy: cpu / r.elapsedMs,
    genUsPerMsg: (gen.user + gen.system) / n,
    genBusy: (gen.user + gen.system) / 1000 / r.elapsedMs,
    received: r.received,
  };
}

async function connectIdle(host: string, port: number, ids: TlsIdentity[], clientIds: string[]): Promise<MqttConn[]> {
  const r = await pool(ids.length, 16, (i) => mqttConnect(host, port, ids[i]!, clientIds[i]!));
  if (r.errors.length > 0) throw new Error(`idle connects failed: ${errorSummary(r.errors)}`);
  return r.ok;
}

/** RSS after the process has been left alone for `ms`. */
async function settledRss(pid: number, ms: number): Promise<number> {
  if (!TRACE) {
    await new Promise((r) => setTimeout(r, ms));
    return rssKb(pid) / 1024;
  }
  const samples: string[] = [];
  for (let t = 0; t < ms; t += 1000) {
    await new Promise((r) => setTimeout(r, 1000));
    samples.push((rssKb(pid) / 1024).toFixed(1));
  }
  console.log(`rss trace (pid ${pid}, 1 s apart): ${samples.join(' ')}`);
  return rssKb(pid) / 1024;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-bench-eventbus-'));
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  let lapT = performance.now();
  const laps: string[] = [];
  const lap = (name: string): void => {
    const t = performance.now();
    laps.push(`${name} ${((t - lapT) / 1000).toFixed(1)} s`);
    lapT = t;
  };
  const cloud = await startBenchCloud({ dir, config: [`trustDomain: ${TD}`] });
  try {
    console.log(`EventBus bench: ${PUBLISHERS} publishers -> 1 subscriber, ${MESSAGES} messages of ${PAYLOAD.length} B per QoS, broker and round, ${ROUNDS} rounds; ${DEVICES} idle devices for RSS; ${cloud.pinning}`);
    // ---- join a node, devices on the cloud
    const tok = JSON.parse(cli(['token', 'create', '--node', NODE, '--data-dir', join(dir, 'cloud'), '--json']).out) as { token: string };
    const j = cli(['edge', 'join', '--cloud', cloud.address, '--bundle-digest', cloud.digest, '--token', tok.token, '--node', NODE, '--data-dir', join(dir, 'edge')]);
    if (j.code !== 0) throw new Error(`join failed: ${j.err}`);
    const names = [...Array.from({ length: Math.max(DEVICES, PUBLISHERS) }, (_, i) => `pub-${i}`), 'sink'];
    const docs = [
      `apiVersion: edgeward.io/v1\nkind: DeviceModel\nmetadata: {name: bench, namespace: bench, nodes: ["${NODE}"]}\nspec: {}\n`,
      ...names.map((n) => `apiVersion: edgeward.io/v1\nkind: Device\nmetadata: {name: ${n}, namespace: bench}\nspec: {deviceModelRef: {name: bench}, nodeName: ${NODE}}\n`),
    ];
    writeFileSync(join(dir, 'devices.yaml'), docs.join('---\n'));
    const a = cli(['apply', '-f', join(dir, 'devices.yaml'), '--data-dir', join(dir, 'cloud')]);
    if (a.code !== 0) throw new Error(`apply failed: ${a.err}`);
    const acl = join(dir, 'acl.yaml');
    writeFileSync(
      acl,
      [
        'apiVersion: edgeward.io/v1',
        'kind: MqttAclPolicy',
        'devices:',
        '  publish: ["bench/{namespace}/{name}"]',
        'identities:',
        `  - spiffeId: spiffe://${TD}/edgeward/device/bench/sink`,
        '    subscribe: ["bench/#"]',
        '',
      ].join('\n'),
    );
    const edgeArgs = [BIN, 'edge', 'start', '--data-dir', join(dir, 'edge'), '--secrets-key-file', join(dir, 'kek', 'k.key'), '--mqtt-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0', '--mqtt-acl', acl, '--mqtt-publish-rate', '1000000', '--enroll-rate', '1000'];
    // EVENTBUS_BENCH_EDGE_NODE_FLAGS: V8/Node flags for the edge process (e.g. "--max-semi-space-size=1"), to explore memory settings
    const edgeFlags = (process.env['EVENTBUS_BENCH_EDGE_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
    if (edgeFlags.length > 0) console.log(`edge node flags: ${edgeFlags.join(' ')}`);
    const startEdge = async (): Promise<{ child: ChildProcess; pid: number; mqttPort: number; enrollAddr: string }> => {
      const child = pinnedSpawn([...edgeFlags, ...edgeArgs], { cwd: ROOT, env: { ...process.env, EDGEWARD_LOG_LEVEL: 'warn', EDGEWARD_DEBUG: undefined }, stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      const out = outputOf(child);
      const mqttAddr = await out.wait(/^EDGEWARD_MQTT=(\S+)$/m, 60_000);
      const enrollAddr = await out.wait(/^EDGEWARD_ENROLL=(\S+)$/m, 60_000);
      return { child, pid: child.pid!, mqttPort: Number(mqttAddr.slice(mqttAddr.lastIndexOf(':') + 1)), enrollAddr };
    };
    lap('cloud, join, apply');
    let edge = await startEdge();
    lap('edge start');
    // the devices reach the node through the hub
    const edgeAdmin = join(dir, 'edge', 'admin', 'admin.sock');
    for (let i = 0; ; i++) {
      const r = (await adminCall(edgeAdmin, 'resource.get', { kind: 'Device' })) as { items: unknown[]; total?: number };
      if ((r.total ?? r.items.length) >= names.length) break;
      if (i > 600) throw new Error('devices did not reach the node');
      await new Promise((res) => setTimeout(res, 100));
    }
    lap('devices synced');
    // ---- enrol every device with the real flow (one-time token + reference client)
    const t0 = performance.now();
    const enrolled = await pool(names.length, 8, async (i) => {
      const n = names[i]!;
      const t = (await adminCall(cloud.adminSocket, 'device.token', { device: `bench/${n}` })) as { token: string };
      const r = await cliInProcess(['device', 'enroll', '--edge', edge.enrollAddr, '--token', t.token, '--bundle-digest', cloud.digest, '--out', join(dir, 'devices', n)]);
      if (r.code !== 0) throw new Error(`enrol ${n}: ${r.err.trim()}`);
      return n;
    });
    if (enrolled.errors.length > 0) throw new Error(`enrolment failed: ${errorSummary(enrolled.errors)}`);
    const enrolMs = performance.now() - t0;
    lap('enrolment');
    const id = (n: string): TlsIdentity => ({
      cert: readFileSync(join(dir, 'devices', n, 'svid.pem'), 'utf8'),
      key: readFileSync(join(dir, 'devices', n, 'svid.key'), 'utf8'),
      ca: readFileSync(join(dir, 'devices', n, 'bundle.pem'), 'utf8'),
    });
    const pubIds = names.slice(0, PUBLISHERS).map(id);
    const sink = id('sink');
    const pubClientIds = names.slice(0, PUBLISHERS).map((n) => `bench/${n}`);
    const idleAfterEnrol = await settledRss(edge.pid, SETTLE_MS);
    // ---- restart the edge: the steady state of a node whose devices enrolled earlier
    await stop(edge.child);
    lap('idle RSS');
    edge = await startEdge();
    lap('edge restart');
    const idleEdge = await settledRss(edge.pid, SETTLE_MS);

    // ---- mosquitto with the same certificates (its own server certificate, added to the clients' CA file)
    const mdir = join(dir, 'mosquitto');
    spawnSync('mkdir', ['-p', mdir]);
    chmodSync(mdir, 0o755);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const serverKey = join(mdir, 'server.key');
    writeFileSync(serverKey, ec.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o644 });
    const serverCrt = join(mdir, 'server.pem');
    const req = spawnSync('openssl', ['req', '-new', '-x509', '-key', serverKey, '-out', serverCrt, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    if (req.status !== 0) throw new Error(`openssl: ${req.stderr}`);
    const mPort = await freePort();
    const bundlePem = sink.ca;
    writeFileSync(join(mdir, 'clients-ca.pem'), bundlePem);
    const conf = join(mdir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        'per_listener_settings false',
        'allow_anonymous true',
        'persistence false',
        'log_dest stderr',
        'log_type error',
        'max_inflight_messages 0',
        'max_queued_messages 0',
        `user ${userInfo().username}`,
        `listener ${mPort} 127.0.0.1`,
        `cafile ${join(mdir, 'clients-ca.pem')}`,
        `certfile ${serverCrt}`,
        `keyfile ${serverKey}`,
        'require_certificate true',
        '',
      ].join('\n'),
    );
    const withServerCa = (t: TlsIdentity): TlsIdentity => ({ ...t, ca: t.ca + readFileSync(serverCrt, 'utf8') });
    const mosq = PIN ? spawn('taskset', ['-c', '1', 'mosquitto', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(mosq);
    await new Promise((r) => setTimeout(r, 500));
    if (mosq.exitCode !== null) throw new Error('mosquitto did not start');
    const mosqPid = mosq.pid!;
    const mosqVersion = /mosquitto version (\S+)/.exec(spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? '?';

    // ---- RSS with idle devices
    const idleIds = names.slice(0, DEVICES).map(id);
    const idleClientIds = names.slice(0, DEVICES).map((n) => `bench/${n}`);
    const conns = await connectIdle('127.0.0.1', edge.mqttPort, idleIds, idleClientIds);
    const edgeWithDevices = await settledRss(edge.pid, SETTLE_MS);
    const stillOpen = conns.filter((c) => !c.socket.destroyed).length;
    // file-backed pages are mostly the node binary's code; anonymous ones the heaps and OpenSSL's state
    const split = { anon: statusKb(edge.pid, 'RssAnon') / 1024, file: statusKb(edge.pid, 'RssFile') / 1024 };
    for (const c of conns) c.close();
    if (TRACE) {
      console.log(`edge RSS after its ${DEVICES} devices disconnect:`);
      await settledRss(edge.pid, SETTLE_MS);
    }
    const mConns = await connectIdle('127.0.0.1', mPort, idleIds.map(withServerCa), idleClientIds);
    const mosqRss = await settledRss(mosqPid, 3_000); // no garbage collector to wait for
    for (const c of mConns) c.close();
    lap('RSS');

    // ---- throughput: ROUNDS rounds, both brokers per QoS in each, the order alternating
    const runs: Record<'edge' | 'mosq', Throughput[][]> = { edge: [[], []], mosq: [[], []] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const qos of [0, 1] as const) {
        const order: Array<'edge' | 'mosq'> = round % 2 === 0 ? ['edge', 'mosq'] : ['mosq', 'edge'];
        for (const b of order) {
          runs[b][qos]!.push(
            b === 'edge'
              ? await throughput('127.0.0.1', edge.mqttPort, edge.pid, pubIds, sink, 'bench/sink', pubClientIds, qos)
              : await throughput('127.0.0.1', mPort, mosqPid, pubIds.map(withServerCa), withServerCa(sink), 'bench/sink', pubClientIds, qos),
          );
        }
      }
    }
    lap('throughput');
    const best = (xs: Throughput[]): Throughput => xs.reduce((a, x) => (x.msgsPerSec > a.msgsPerSec ? x : a));

    const fmt = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));
    const pct = (x: number): string => `${(x * 100).toFixed(0)} %`;
    console.log(`\nenrolment: ${names.length} devices (one-time token + reference client, in-process, 8 at a time) in ${(enrolMs / 1000).toFixed(1)} s`);
    console.log(`\nthroughput (10 publishers -> 1 subscriber, mTLS, ${PAYLOAD.length} B, best of ${ROUNDS})   edge EventBus        mosquitto ${mosqVersion.padEnd(8)} ratio (edge / mosquitto)`);
    for (const qos of [0, 1] as const) {
      const e = best(runs.edge[qos]!);
      const m = best(runs.mosq[qos]!);
      const wall = e.msgsPerSec / m.msgsPerSec;
      // Messages per second of broker CPU: what each broker would carry on a core of its own.
      const perCpu = m.cpuUsPerMsg / e.cpuUsPerMsg;
      // The wall-clock ratio compares the brokers only when both were their run's bottleneck. On two CPUs the load
      // generator shares its CPU with whatever else runs, and mosquitto's per-message TLS records cost the
      // generator about 3x what the edge's coalesced writes do: a mosquitto run the generator could not saturate
      // says more about the generator than about mosquitto.
      const bothBound = e.brokerBusy >= 0.9 && m.brokerBusy >= 0.9;
      const judged = bothBound ? wall : perCpu;
      console.log(`  QoS ${qos}  msg/s                                          ${fmt(e.msgsPerSec).padEnd(20)} ${fmt(m.msgsPerSec).padEnd(17)} x${wall.toFixed(2)}`);
      console.log(`  QoS ${qos}  broker CPU per message (busy)                   ${`${e.cpuUsPerMsg.toFixed(1)} us (${pct(e.brokerBusy)})`.padEnd(21)}${`${m.cpuUsPerMsg.toFixed(1)} us (${pct(m.brokerBusy)})`.padEnd(18)}x${perCpu.toFixed(2)} in msg per broker CPU-second`);
      console.log(`  QoS ${qos}  load generator CPU per message (busy)           ${`${e.genUsPerMsg.toFixed(1)} us (${pct(e.genBusy)})`.padEnd(21)}${`${m.genUsPerMsg.toFixed(1)} us (${pct(m.genBusy)})`}`);
      const edgeRounds = runs.edge[qos]!.map((r) => fmt(r.msgsPerSec)).join(' ');
      console.log(`  QoS ${qos}  msg/s per round                                 ${edgeRounds.padEnd(Math.max(20, edgeRounds.length))} ${runs.mosq[qos]!.map((r) => fmt(r.msgsPerSec)).join(' ')}`);
      if (!bothBound) console.log(`         (${e.brokerBusy < 0.9 ? 'the edge' : 'mosquitto'} was < 90 % busy in its best run, so msg/s is not its capacity: the ratio judged is the per-CPU one)`);
      if (qos === 1) console.log(`  QoS 1  target: edge >= x0.80 of mosquitto: ${judged >= 0.8 ? 'met' : 'NOT met'} (x${judged.toFixed(2)}, ${bothBound ? 'wall clock, both brokers saturated' : 'per broker CPU'})`);
      const short = [...runs.edge[qos]!, ...runs.mosq[qos]!].filter((r) => r.received < MESSAGES - (MESSAGES % PUBLISHERS));
      if (short.length > 0) console.log(`  (QoS ${qos}: ${short.length} run(s) delivered fewer than ${MESSAGES - (MESSAGES % PUBLISHERS)} messages: ${short.map((r) => r.received).join(', ')})`);
    }
    console.log('\nmemory (RSS, after the process settled)');
    console.log(`  edge process, idle, right after enrolling ${names.length} devices   ${idleAfterEnrol.toFixed(1)} MB`);
    console.log(`  edge process, idle, restarted (nothing connected)      ${idleEdge.toFixed(1)} MB`);
    console.log(`  edge process, ${DEVICES} idle devices connected            ${edgeWithDevices.toFixed(1)} MB   (target <= 70 MB: ${edgeWithDevices <= 70 ? 'met' : 'NOT met'}; ${(((edgeWithDevices - idleEdge) * 1024) / DEVICES).toFixed(0)} KB per device)`);
    console.log(`    of which anonymous ${split.anon.toFixed(1)} MB, file-backed ${split.file.toFixed(1)} MB (mostly the node binary's code)`);
    console.log(`  mosquitto, the same ${DEVICES} connections                ${mosqRss.toFixed(1)} MB   (reference; x${(edgeWithDevices / mosqRss).toFixed(1)})`);
    if (stillOpen < conns.length) console.log(`  (${conns.length - stillOpen} of the ${conns.length} idle device connections were closed by the edge before the reading)`);
    console.log(`\nphases: ${laps.join(', ')}`);
    const warns = cloud.warnLines().filter((l) => !/security\.device_token/.test(l));
    if (warns.length > 0) console.log(`\ncloud warnings: ${warns.length} (first: ${warns[0]})`);
  } finally {
    for (const c of children.reverse()) await stop(c);
    await stopBenchCloud(cloud, 5000);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exitCode = 1;
});
