/**
 * The EventBus under load (issue #6): a real cloud and a real joined edge (child processes), devices enrolled
 * through the real flow (`edgeward device token` + the reference client `edgeward device enroll`), then
 *
 * 1. QoS 0 and QoS 1 throughput, 10 publishers -> 1 subscriber, 64-byte payloads, through the edge's broker
 *    (mTLS, SVID checks and topic ACLs on), and in the same run through Debian's `mosquitto` with
 *    `require_certificate true` and the SAME device certificates, CA file and client load (mqtt-load.ts: raw
 *    pre-encoded MQTT 3.1.1 over TLS). Broker CPU per message from /proc/PID/stat. Target: QoS 1 >= 80 % of
 *    mosquitto's.
 * 2. The edge process's RSS idle (enrolled, nothing connected) and with 100 idle devices connected over mTLS,
 *    next to mosquitto's with the same 100 connections. Target: <= 70 MB with 100 idle devices (KubeEdge's
 *    published edgecore figure is about 70 MB, kubeedge.md).
 *
 * Knobs: EVENTBUS_BENCH_MESSAGES (per QoS and broker, default 200000), EVENTBUS_BENCH_DEVICES (default 100).
 * Run: `npm run bench -- eventbus`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { adminCall } from '../src/protocol/index.js';
import { pool, errorSummary } from './harness.js';
import { BIN, cpuMs, pinnedSpawn, PIN, ROOT, startBenchCloud, stopBenchCloud } from './cloud-process.js';
import { flood, mqttConnect, subscribePacket, write, type MqttConn, type TlsIdentity } from './mqtt-load.js';

const TD = 'bench.edgeward.test';
const NODE = 'bench-node';
const MESSAGES = Number(process.env['EVENTBUS_BENCH_MESSAGES'] ?? 200_000);
const DEVICES = Number(process.env['EVENTBUS_BENCH_DEVICES'] ?? 100);
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

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]);
}

function cli(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, EDGEWARD_DEBUG: undefined } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function cliAsync(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, EDGEWARD_DEBUG: undefined } });
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    c.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    c.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
  });
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
  const r = await flood({ sub, pubs, perPublisher, qos, payload: PAYLOAD, window: 100, deadlineMs: 120_000 });
  const cpu = cpuMs(pid) - cpu0;
  for (const p of pubs) p.conn.close();
  sub.close();
  await new Promise((res) => setTimeout(res, 300));
  return { qos, msgsPerSec: (r.received / r.elapsedMs) * 1000, cpuUsPerMsg: (cpu * 1000) / Math.max(1, r.received), received: r.received };
}

async function connectIdle(host: string, port: number, ids: TlsIdentity[], clientIds: string[]): Promise<MqttConn[]> {
  const r = await pool(ids.length, 16, (i) => mqttConnect(host, port, ids[i]!, clientIds[i]!));
  if (r.errors.length > 0) throw new Error(`idle connects failed: ${errorSummary(r.errors)}`);
  return r.ok;
}

/** RSS after the process has been idle a while (Node's memory reducer runs a few seconds after activity). */
async function settledRss(pid: number, ms = 12_000): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return rssKb(pid) / 1024;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-bench-eventbus-'));
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  const cloud = await startBenchCloud({ dir, config: [`trustDomain: ${TD}`] });
  try {
    console.log(`EventBus bench: ${PUBLISHERS} publishers -> 1 subscriber, ${MESSAGES} messages of ${PAYLOAD.length} B per QoS and broker; ${DEVICES} idle devices for RSS; ${cloud.pinning}`);
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
    const edge = pinnedSpawn([...edgeFlags, ...edgeArgs], { cwd: ROOT, env: { ...process.env, EDGEWARD_LOG_LEVEL: 'warn', EDGEWARD_DEBUG: undefined }, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(edge);
    const edgeOut = outputOf(edge);
    const mqttAddr = await edgeOut.wait(/^EDGEWARD_MQTT=(\S+)$/m, 60_000);
    const enrollAddr = await edgeOut.wait(/^EDGEWARD_ENROLL=(\S+)$/m, 60_000);
    const mqttPort = Number(mqttAddr.slice(mqttAddr.lastIndexOf(':') + 1));
    // the devices reach the node through the hub
    const edgeAdmin = join(dir, 'edge', 'admin', 'admin.sock');
    for (let i = 0; ; i++) {
      const r = (await adminCall(edgeAdmin, 'resource.get', { kind: 'Device' })) as { items: unknown[]; total?: number };
      if ((r.total ?? r.items.length) >= names.length) break;
      if (i > 600) throw new Error('devices did not reach the node');
      await new Promise((res) => setTimeout(res, 100));
    }
    // ---- enrol every device with the real flow (token + reference client)
    const t0 = performance.now();
    const enrolled = await pool(names.length, 8, async (i) => {
      const n = names[i]!;
      const t = (await adminCall(cloud.adminSocket, 'device.token', { device: `bench/${n}` })) as { token: string };
      const r = await cliAsync(['device', 'enroll', '--edge', enrollAddr, '--token', t.token, '--bundle-digest', cloud.digest, '--out', join(dir, 'devices', n)]);
      if (r.code !== 0) throw new Error(`enrol ${n}: ${r.err.trim()}`);
      return n;
    });
    if (enrolled.errors.length > 0) throw new Error(`enrolment failed: ${errorSummary(enrolled.errors)}`);
    const enrolMs = performance.now() - t0;
    const id = (n: string): TlsIdentity => ({
      cert: readFileSync(join(dir, 'devices', n, 'svid.pem'), 'utf8'),
      key: readFileSync(join(dir, 'devices', n, 'svid.key'), 'utf8'),
      ca: readFileSync(join(dir, 'devices', n, 'bundle.pem'), 'utf8'),
    });
    const pubIds = names.slice(0, PUBLISHERS).map(id);
    const sink = id('sink');
    const pubClientIds = names.slice(0, PUBLISHERS).map((n) => `bench/${n}`);
    const edgePid = edge.pid!;
    const idleEdge = await settledRss(edgePid, 8_000);

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

    // ---- RSS with idle devices
    const idleIds = names.slice(0, DEVICES).map(id);
    const idleClientIds = names.slice(0, DEVICES).map((n) => `bench/${n}`);
    const conns = await connectIdle('127.0.0.1', mqttPort, idleIds, idleClientIds);
    const edgeWithDevices = await settledRss(edgePid);
    for (const c of conns) c.close();
    const mConns = await connectIdle('127.0.0.1', mPort, idleIds.map(withServerCa), idleClientIds);
    const mosqRss = await settledRss(mosqPid, 3_000);
    for (const c of mConns) c.close();

    // ---- throughput, interleaved per QoS
    const rows: Array<{ qos: 0 | 1; edge: Throughput; mosq: Throughput }> = [];
    for (const qos of [0, 1] as const) {
      const e = await throughput('127.0.0.1', mqttPort, edgePid, pubIds, sink, 'bench/sink', pubClientIds, qos);
      const m = await throughput('127.0.0.1', mPort, mosqPid, pubIds.map(withServerCa), withServerCa(sink), 'bench/sink', pubClientIds, qos);
      rows.push({ qos, edge: e, mosq: m });
    }

    const fmt = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));
    console.log(`\nenrolment: ${names.length} devices (token + reference client process each, 8 at a time) in ${(enrolMs / 1000).toFixed(1)} s`);
    console.log('\nthroughput (10 publishers -> 1 subscriber, mTLS, 64 B)       edge EventBus        mosquitto 2.0     ratio (edge / mosquitto)');
    for (const r of rows) {
      console.log(
        `  QoS ${r.qos}  msg/s                                          ${fmt(r.edge.msgsPerSec).padEnd(20)} ${fmt(r.mosq.msgsPerSec).padEnd(17)} x${(r.edge.msgsPerSec / r.mosq.msgsPerSec).toFixed(2)}${r.qos === 1 ? `  (target >= x0.80: ${r.edge.msgsPerSec >= 0.8 * r.mosq.msgsPerSec ? 'met' : 'NOT met'})` : ''}`,
      );
      console.log(`  QoS ${r.qos}  broker CPU per message                          ${r.edge.cpuUsPerMsg.toFixed(1)} us`.padEnd(84) + `${r.mosq.cpuUsPerMsg.toFixed(1)} us`.padEnd(18) + `x${(r.edge.cpuUsPerMsg / r.mosq.cpuUsPerMsg).toFixed(2)}`);
      if (r.edge.received < MESSAGES - (MESSAGES % PUBLISHERS) || r.mosq.received < MESSAGES - (MESSAGES % PUBLISHERS)) console.log(`  (QoS ${r.qos}: delivered edge ${r.edge.received}, mosquitto ${r.mosq.received} of ${MESSAGES})`);
    }
    console.log('\nmemory (RSS, after the process settled)');
    console.log(`  edge process, idle (enrolled, nothing connected)   ${idleEdge.toFixed(1)} MB`);
    console.log(`  edge process, ${DEVICES} idle devices connected       ${edgeWithDevices.toFixed(1)} MB   (target <= 70 MB: ${edgeWithDevices <= 70 ? 'met' : 'NOT met'}; ${(((edgeWithDevices - idleEdge) * 1024) / DEVICES).toFixed(0)} KB per device)`);
    console.log(`  mosquitto, the same ${DEVICES} connections           ${mosqRss.toFixed(1)} MB   (reference; x${(edgeWithDevices / mosqRss).toFixed(1)})`);
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
