/**
 * Step 8 of `edgeward demo` (issue #6): mTLS-only device provisioning and device twins, for real.
 *
 * 1. A DeviceModel and a Device are applied to the cloud with the real `edgeward apply -f`; the hub syncs
 *    them to the node.
 * 2. A one-time bootstrap token for the device is made with the real `edgeward device token`.
 * 3. The simulated device enrols with the real reference client `edgeward device enroll` (bundle pinned by
 *    digest, key made on the device, only a CSR sent): it gets its X509-SVID
 *    `spiffe://TD/edgeward/device/default/demo-sensor`.
 * 4. This process then acts as the device: an MQTT client (mqtt.js) connects to the node's EventBus over
 *    mTLS with that SVID (the broker's certificate is checked as the node's SVID, not by host name), reports
 *    a reading on its KubeEdge twin topic, applies the desired value the edge sends on `twin/update/delta`,
 *    and the reported values reach the cloud (`edgeward get device`). The operator then changes the desired
 *    value on the cloud; the device receives it and reports it back.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionOptions, PeerCertificate } from 'node:tls';
import type { IClientOptions, MqttClient } from 'mqtt';
import { adminCall } from '../../protocol/index.js';
import { DemoError, READY_TIMEOUT_MS, startChild, type Child } from './demo-child.js';

export interface DeviceDemoContext {
  readonly bin: string;
  readonly env: NodeJS.ProcessEnv;
  /** The demo's work dir. */
  readonly dir: string;
  readonly cloudDir: string;
  readonly cloudAdmin: string;
  readonly edgeAdmin: string;
  readonly edgeDir: string;
  readonly trustDomain: string;
  readonly nodeName: string;
  /** HOST:PORT of the node's EventBus and enrolment endpoint (printed by `edge start`). */
  readonly mqttAddress: string;
  readonly enrollAddress: string;
  readonly bundleDigest: string;
  readonly children: Child[];
  step<T>(p: Promise<T>): Promise<T>;
  out(lines: readonly string[]): void;
}

const DEVICE = 'default/demo-sensor';
const MODEL = 'demo-thermostat';
const READING = '21.7';
const DESIRED_FIRST = '21.0';
const DESIRED_NEXT = '23.5';

const documents = (node: string, setpoint: string): string => `apiVersion: edgeward.io/v1
kind: DeviceModel
metadata:
  name: ${MODEL}
  nodes: [${node}]
spec:
  protocol: mqtt
  properties:
    - {name: temperature, type: FLOAT, accessMode: ReadOnly, unit: C, minimum: -40, maximum: 125}
    - {name: setpoint, type: FLOAT, accessMode: ReadWrite, unit: C, minimum: 5, maximum: 30}
---
apiVersion: edgeward.io/v1
kind: Device
metadata:
  name: demo-sensor
spec:
  deviceModelRef: {name: ${MODEL}}
  nodeName: ${node}
  protocol: {protocolName: mqtt}
  properties:
    - {name: setpoint, desired: {value: "${setpoint}"}}
`;

interface DeviceViewOut {
  version: number;
  status?: Array<{ node: string; phase: string; detail?: { twins?: Record<string, { value: string; at: number }>; lastSeen?: number } }>;
}

async function runToEnd(ctx: DeviceDemoContext, what: string, args: string[]): Promise<Child> {
  const c = startChild(what, ctx.bin, args, ctx.env);
  ctx.children.push(c);
  const r = await ctx.step(c.exit);
  if (r.code !== 0) throw new DemoError('demo/step-failed', `${what} exited with ${r.code ?? r.signal}: ${c.failure()}`);
  return c;
}

async function until<T>(ctx: DeviceDemoContext, what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const v = await ctx.step(probe());
    if (v !== undefined) return v;
    if (Date.now() > end) throw new DemoError('demo/step-failed', `${what} did not happen within ${READY_TIMEOUT_MS / 1000} s`);
    await ctx.step(new Promise((r) => setTimeout(r, 200)));
  }
}

/** The reported twins of the demo device as the cloud shows them, once `ready` says they are there. */
async function cloudTwins(ctx: DeviceDemoContext, ready: (t: Record<string, { value: string }>) => boolean): Promise<{ twins: Record<string, { value: string; at: number }>; lastSeen: number; phase: string }> {
  return until(ctx, 'the reported values reaching the cloud', async () => {
    const v = ((await adminCall(ctx.cloudAdmin, 'resource.get', { kind: 'Device', name: DEVICE })) as { items: DeviceViewOut[] }).items[0];
    const s = v?.status?.find((x) => x.node === ctx.nodeName);
    const twins = s?.detail?.twins;
    if (s === undefined || twins === undefined || !ready(twins)) return undefined;
    return { twins, lastSeen: s.detail?.lastSeen ?? 0, phase: s.phase };
  });
}

/** `URI:spiffe://...` of a peer certificate's subjectaltname, if it has exactly one URI SAN. */
function uriSan(san: string | undefined): string | undefined {
  const uris = (san ?? '').split(', ').filter((x) => x.startsWith('URI:'));
  return uris.length === 1 ? uris[0]!.slice(4) : undefined;
}

export async function runDeviceDemo(ctx: DeviceDemoContext): Promise<void> {
  const cli = 'edgeward';
  // 8a. model and device on the cloud
  const yamlPath = join(ctx.dir, 'device.yaml');
  writeFileSync(yamlPath, documents(ctx.nodeName, DESIRED_FIRST), { mode: 0o600 });
  const applyArgs = ['apply', '-f', yamlPath, '--data-dir', ctx.cloudDir];
  const applier = await runToEnd(ctx, 'edgeward apply (device)', applyArgs);
  await until(ctx, `${DEVICE} reaching ${ctx.nodeName}`, async () => {
    try {
      const r = (await adminCall(ctx.edgeAdmin, 'resource.get', { kind: 'Device', name: DEVICE })) as { items: unknown[] };
      return r.items.length === 1 ? true : undefined;
    } catch {
      return undefined;
    }
  });

  // 8b. a bootstrap token, 8c. the enrolment with the reference client
  const tokenRun = await runToEnd(ctx, 'edgeward device token', ['device', 'token', DEVICE, '--data-dir', ctx.cloudDir, '--json']);
  const tok = JSON.parse(tokenRun.stdout.join('\n')) as { token: string; node: string; expiresAt: number };
  const deviceDir = join(ctx.dir, 'device');
  const enrolArgs = ['device', 'enroll', '--edge', ctx.enrollAddress, '--token', tok.token, '--bundle-digest', ctx.bundleDigest, '--out', deviceDir];
  const enroller = await runToEnd(ctx, 'edgeward device enroll', enrolArgs);
  const info = JSON.parse(readFileSync(join(deviceDir, 'device.json'), 'utf8')) as { spiffeId: string; expiresAt: number };
  ctx.out([
    '',
    `8. device      ${cli} ${applyArgs.join(' ')}`,
    `               pid ${applier.pid} (exited 0):`,
    ...applier.stdout.map((l) => `               ${l}`),
    `   token       ${cli} device token ${DEVICE} --data-dir ${ctx.cloudDir}`,
    `               pid ${tokenRun.pid} (exited 0): one-time, bound to ${DEVICE} on node ${tok.node}, expires ${new Date(tok.expiresAt).toISOString()}`,
    `   enrol       ${cli} ${enrolArgs.map((a) => (a === tok.token ? '<token>' : a)).join(' ')}`,
    `               pid ${enroller.pid} (exited 0): bundle pinned by digest, the edge's certificate checked as ${ctx.nodeName}'s SVID, key made here, only a CSR sent`,
    `device SVID    ${info.spiffeId}, valid until ${new Date(info.expiresAt).toISOString()} (renewed with \`edgeward device renew\` before half-life)`,
  ]);

  // 8d. the simulated device over MQTT with mTLS (mqtt.js is loaded only here: the edge agent never loads it)
  const { connectAsync } = await import('mqtt');
  const expectedServer = `spiffe://${ctx.trustDomain}/edgeward/node/${ctx.nodeName}`;
  const [host, port] = [ctx.mqttAddress.slice(0, ctx.mqttAddress.lastIndexOf(':')), Number(ctx.mqttAddress.slice(ctx.mqttAddress.lastIndexOf(':') + 1))];
  const topics = {
    update: `$hw/events/device/${DEVICE}/twin/update`,
    delta: `$hw/events/device/${DEVICE}/twin/update/delta`,
  };
  const deltas: Array<Record<string, string>> = [];
  const waiters = new Set<() => void>();
  let client: MqttClient | undefined;
  try {
    // mqtt.js hands these options to tls.connect: checkServerIdentity is a TLS option its types leave out.
    const options: IClientOptions & Pick<ConnectionOptions, 'checkServerIdentity'> = {
        protocol: 'mqtts' as const,
        host,
        port,
        clientId: DEVICE,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        ca: readFileSync(join(deviceDir, 'bundle.pem')),
        cert: readFileSync(join(deviceDir, 'svid.pem')),
        key: readFileSync(join(deviceDir, 'svid.key')),
        rejectUnauthorized: true,
        // SPIFFE: the broker is authenticated by its SPIFFE ID (the node's SVID), not by a host name.
        checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined =>
          uriSan(cert.subjectaltname) === expectedServer ? undefined : new Error(`the broker is not ${expectedServer}`),
    };
    client = await ctx.step(connectAsync(options));
    const c = client;
    c.on('message', (topic, payload) => {
      if (topic !== topics.delta) return;
      try {
        const m = JSON.parse(payload.toString('utf8')) as { delta?: Record<string, string> };
        if (m.delta !== undefined) deltas.push(m.delta);
      } catch {
        // not JSON: ignored by the device
      }
      for (const w of [...waiters]) w();
    });
    const nextDelta = (want: string): Promise<Record<string, string>> =>
      ctx.step(
        new Promise((resolve, reject) => {
          const check = (): void => {
            const hit = deltas.find((d) => d['setpoint'] === want);
            if (hit !== undefined) {
              cleanup();
              resolve(hit);
            }
          };
          const timer = setTimeout(() => {
            cleanup();
            reject(new DemoError('demo/step-failed', `the device did not receive the desired setpoint ${want} within ${READY_TIMEOUT_MS / 1000} s`));
          }, READY_TIMEOUT_MS);
          const cleanup = (): void => {
            clearTimeout(timer);
            waiters.delete(check);
          };
          waiters.add(check);
          check();
        }),
      );
    const report = (twin: Record<string, string>): Promise<unknown> =>
      ctx.step(
        c.publishAsync(
          topics.update,
          JSON.stringify({
            event_id: `demo-${Date.now()}`,
            timestamp: Date.now(),
            twin: Object.fromEntries(Object.entries(twin).map(([k, v]) => [k, { actual: { value: v }, metadata: { type: 'Updated' } }])),
          }),
          { qos: 1 },
        ),
      );
    const granted = await ctx.step(c.subscribeAsync(topics.delta, { qos: 1 }));
    if (granted[0]?.qos === 128) throw new DemoError('demo/step-failed', 'the EventBus refused the device its own delta topic');
    await report({ temperature: READING });
    const first = await nextDelta(DESIRED_FIRST);
    await report({ setpoint: first['setpoint']! });
    const seen = await cloudTwins(ctx, (t) => t['temperature']?.value === READING && t['setpoint']?.value === DESIRED_FIRST);
    ctx.out([
      `   MQTT        mqtts://${ctx.mqttAddress} as ${DEVICE} with the device SVID (no password; the EventBus has no plaintext listener)`,
      `               published ${topics.update} temperature=${READING}; received ${topics.delta} setpoint=${first['setpoint']} (desired on the cloud), applied and reported it`,
      `cloud view     ${cli} get device ${DEVICE} --data-dir ${ctx.cloudDir}: ${seen.phase}, reported temperature ${seen.twins['temperature']?.value}, setpoint ${seen.twins['setpoint']?.value}, last seen ${new Date(seen.lastSeen).toISOString()}`,
    ]);

    // 8e. the operator changes the desired value; the device gets it and reports it back
    writeFileSync(yamlPath, documents(ctx.nodeName, DESIRED_NEXT), { mode: 0o600 });
    const reapply = await runToEnd(ctx, 'edgeward apply (desired value)', applyArgs);
    const next = await nextDelta(DESIRED_NEXT);
    await report({ setpoint: next['setpoint']! });
    const after = await cloudTwins(ctx, (t) => t['setpoint']?.value === DESIRED_NEXT);
    ctx.out([
      `desired value  setpoint ${DESIRED_FIRST} -> ${DESIRED_NEXT} applied on the cloud (${cli} apply, pid ${reapply.pid}); the device received the delta over MQTT and reported setpoint ${after.twins['setpoint']?.value}`,
    ]);
  } finally {
    await client?.endAsync(true).catch(() => undefined);
  }
}
