/**
 * The EventBus (issue #6) with real TLS on 127.0.0.1, Debian's mosquitto_pub/mosquitto_sub and mqtt.js: only
 * SVID-holding clients get in, each only on its own topics, and a client goes away when its SVID expires or its
 * device is deleted or revoked. The directory and the node identity are in-memory ports (eventbus-fixture.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { createEventBus, validateMqttAclPolicy, type EventBus, type EventBusMessage } from '../../src/edge/eventbus/index.js';
import { realTimers } from '../../src/edge/svid/timers.js';
import { TrustDomain } from '../../src/identity/index.js';
import { openssl } from '../helpers/index.js';
import { authority, leaf, memoryDirectory, mosquitto, mqttClient, nodeIdentity, pemFiles, TD, type Authority, type Leaf } from './eventbus-fixture.js';

const dev = (name: string): string => `spiffe://${TD.name}/edgeward/device/default/${name}`;
const topic = (name: string, rest: string): string => `$hw/events/device/default/${name}/${rest}`;
const COLLECTOR = `spiffe://${TD.name}/apps/collector`;

interface Logged {
  level: string;
  obj: Record<string, unknown>;
}

let dir = '';
let ca: Authority;
let identity: ReturnType<typeof nodeIdentity>;
let directory: ReturnType<typeof memoryDirectory>;
let bus: EventBus;
let port = 0;
const logs: Logged[] = [];
const clients: MqttClient[] = [];
let a: Leaf;
let b: Leaf;

const logger = {
  debug: (obj: Record<string, unknown>) => logs.push({ level: 'debug', obj }),
  info: (obj: Record<string, unknown>) => logs.push({ level: 'info', obj }),
  warn: (obj: Record<string, unknown>) => logs.push({ level: 'warn', obj }),
  error: (obj: Record<string, unknown>) => logs.push({ level: 'error', obj }),
};

async function client(l: Leaf, id: string, extra = {}): Promise<MqttClient> {
  const c = await mqttClient(port, l, ca, id, extra);
  clients.push(c);
  return c;
}

/** Resolves with the close time once the client's connection has closed. */
const closed = (c: MqttClient): Promise<number> => new Promise((resolve) => (c.connected ? c.once('close', () => resolve(Date.now())) : resolve(Date.now())));

/** mosquitto client TLS args for a leaf (`--insecure`: a SPIFFE SVID names no host; the chain is still verified). */
function tls(l: Leaf, name: string, auth: Authority = ca): string[] {
  const f = pemFiles(dir, name, l, auth);
  return ['--cafile', f.ca, '--cert', f.cert, '--key', f.key, '--insecure'];
}
const host = (): string[] => ['-h', '127.0.0.1', '-p', String(port)];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-eventbus-'));
  ca = authority();
  identity = nodeIdentity(ca);
  directory = memoryDirectory();
  directory.put('default/a');
  directory.put('default/b');
  a = leaf(ca, dev('a'));
  b = leaf(ca, dev('b'));
  bus = createEventBus({
    listen: { host: '127.0.0.1', port: 0 },
    trustDomain: TD,
    identity,
    devices: directory,
    acl: validateMqttAclPolicy(
      {
        apiVersion: 'edgeward.io/v1',
        kind: 'MqttAclPolicy',
        devices: { publish: ['telemetry/{namespace}/{name}'] },
        identities: [{ spiffeId: COLLECTOR, subscribe: ['telemetry/#', '$hw/events/device/+/+/twin/update'] }],
      },
      TD,
    ),
    limits: { publishBurst: 50, publishesPerSecond: 20, maxPacketBytes: 32 * 1024 },
    clock: { now: () => Date.now() },
    timers: realTimers,
    logger,
  });
  port = (await bus.start()).port;
}, 30_000);

afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
});

afterAll(async () => {
  await bus.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('who gets in', () => {
  it('a device of this node with its SVID; what it publishes reaches the internal side with its identity', async () => {
    const seen: EventBusMessage[] = [];
    const off = bus.subscribe('$hw/events/device/+/+/twin/update', (m) => seen.push(m));
    const c = await client(a, 'default/a');
    await c.publishAsync(topic('a', 'twin/update'), '{"twin":{}}', { qos: 1 });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ topic: topic('a', 'twin/update'), device: 'default/a', spiffeId: dev('a'), clientId: 'default/a' });
    off();
    // the edge's own publishes reach the device on its delta topic, and do not loop back as client messages
    const got = new Promise<string>((resolve) => c.on('message', (_t, p) => resolve(p.toString())));
    expect((await c.subscribeAsync(topic('a', 'twin/update/delta'), { qos: 1 }))[0]?.qos).toBe(1);
    await bus.publish(topic('a', 'twin/update/delta'), Buffer.from('{"delta":{}}'), 1);
    expect(await got).toBe('{"delta":{}}');
    // the SPIFFE ID is also a valid client id
    await client(a, dev('a'));
  });

  it('mosquitto_pub with the device SVID gets in; with a CA that is not the bundle it does not, even with --insecure', async () => {
    const ok = await mosquitto('mosquitto_pub', [...host(), ...tls(a, 'a'), '-i', 'default/a', '-q', '1', '-t', topic('a', 'twin/update'), '-m', '{}']);
    expect(ok.code, ok.stderr).toBe(0);
    const other = authority(TrustDomain.parse('other.test'));
    const f = pemFiles(dir, 'a-wrongca', a, other);
    const wrong = await mosquitto('mosquitto_pub', [...host(), '--cafile', f.ca, '--cert', join(dir, 'a.pem'), '--key', join(dir, 'a.key'), '--insecure', '-i', 'default/a', '-q', '1', '-t', topic('a', 'twin/update'), '-m', '{}']);
    expect(wrong.code).not.toBe(0);
  });

  it('refuses: no certificate, self-signed, another trust domain, expired, unknown device, revoked, wrong client id, password, persistent session', async () => {
    const pub = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      mosquitto('mosquitto_pub', [...host(), ...args, '-q', '1', '-t', topic('a', 'twin/update'), '-m', '{}', '-d']);
    const caFile = pemFiles(dir, 'bundle', a, ca).ca;
    const before = { ...bus.stats().refused };
    // no client certificate: TLS refuses the handshake (there is no other way in)
    expect((await pub(['--cafile', caFile, '--insecure', '-i', 'default/a'])).code).not.toBe(0);
    // self-signed with the device's SPIFFE ID
    const selfKey = join(dir, 'self.key');
    const selfCrt = join(dir, 'self.pem');
    expect((await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', selfKey, '-out', selfCrt, '-days', '1', '-subj', '/O=x', '-addext', `subjectAltName=URI:${dev('a')}`])).code).toBe(0);
    expect((await pub(['--cafile', caFile, '--cert', selfCrt, '--key', selfKey, '--insecure', '-i', 'default/a'])).code).not.toBe(0);
    // another trust domain's CA and SVID for the same path
    const other = authority(TrustDomain.parse('other.test'));
    expect((await pub([...tls(leaf(other, 'spiffe://other.test/edgeward/device/default/a'), 'other', other).slice(2), '--cafile', caFile, '-i', 'default/a'])).code).not.toBe(0);
    // expired (issued by the right CA)
    const expired = leaf(ca, dev('a'), { now: Date.now() - 120_000, ttlMs: 30_000 });
    expect((await pub([...tls(expired, 'expired'), '-i', 'default/a'])).code).not.toBe(0);
    // valid SVIDs that must still be refused, with their CONNACK codes (MQTT 3.1.1 3.2.2.3)
    const unknown = await pub([...tls(leaf(ca, dev('nobody')), 'nobody'), '-i', 'default/nobody']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stdout + unknown.stderr).toMatch(/not authori[sz]ed|Connection Refused: not authorised|CONNACK.*5/i);
    const wrongId = await pub([...tls(a, 'a'), '-i', 'default/b']);
    expect(wrongId.code).not.toBe(0);
    expect(wrongId.stdout + wrongId.stderr).toMatch(/identifier rejected|CONNACK.*2/i);
    const password = await pub([...tls(a, 'a'), '-i', 'default/a', '-u', 'user', '-P', 'secret']);
    expect(password.code).not.toBe(0);
    const persistent = await pub([...tls(a, 'a'), '-i', 'default/a', '-c']);
    expect(persistent.code).not.toBe(0);
    const stranger = await pub([...tls(leaf(ca, `spiffe://${TD.name}/apps/stranger`), 'stranger'), '-i', `spiffe://${TD.name}/apps/stranger`]);
    expect(stranger.code).not.toBe(0);
    directory.put('default/r', { revokedBefore: Date.now() + 60_000 });
    const revoked = await pub([...tls(leaf(ca, dev('r')), 'r'), '-i', 'default/r']);
    expect(revoked.code).not.toBe(0);
    const after = bus.stats().refused;
    for (const reason of ['device-unknown', 'client-id-mismatch', 'password-not-accepted', 'persistent-session', 'not-granted', 'device-revoked']) {
      expect(after[reason] ?? 0, reason).toBeGreaterThan(before[reason] ?? 0);
    }
    expect(logs.some((l) => l.obj['event'] === 'security.mqtt_connect_refused' && l.obj['reason'] === 'device-unknown')).toBe(true);
  });

  it('an identity named by the policy gets in with its SPIFFE ID as client id, and receives what it is granted', async () => {
    const collector = await client(leaf(ca, COLLECTOR), COLLECTOR);
    const got: string[] = [];
    collector.on('message', (t) => got.push(t));
    const g = await collector.subscribeAsync(['telemetry/#', '$hw/events/device/+/+/twin/update']);
    expect(g.map((x) => x.qos)).toEqual([0, 0]);
    // not granted: SUBACK 0x80 (mqtt.js reports it as an error)
    await expect(collector.subscribeAsync('$hw/events/device/+/+/twin/update/delta')).rejects.toThrow();
    const c = await client(a, 'default/a');
    await c.publishAsync('telemetry/default/a', '1', { qos: 1 });
    await c.publishAsync(topic('a', 'twin/update'), '{}', { qos: 1 });
    await new Promise((r) => setTimeout(r, 200));
    expect(got.sort()).toEqual([topic('a', 'twin/update'), 'telemetry/default/a']);
  });
});

describe('topics', () => {
  it("device A can neither subscribe to nor publish on device B's topics; $SYS is closed", async () => {
    const sub = await mosquitto('mosquitto_sub', [...host(), ...tls(a, 'a'), '-i', 'default/a', '-d', '-t', topic('b', 'twin/update/delta'), '-t', topic('a', 'twin/update/delta'), '-t', '$SYS/#', '-W', '2']);
    // MQTT 3.1.1 3.9.3: one return code per filter, 0x80 for each refused one
    expect(sub.stdout + sub.stderr).toMatch(/Subscribed \(mid: \d+\): 128, 0, 128/);
    const c = await client(a, 'default/a');
    const gone = closed(c);
    c.publish(topic('b', 'twin/update'), '{}', { qos: 1 });
    await gone;
    expect(logs.some((l) => l.obj['event'] === 'security.mqtt_publish_denied' && l.obj['topic'] === topic('b', 'twin/update'))).toBe(true);
    const d = await client(a, 'default/a');
    const gone2 = closed(d);
    d.publish('$SYS/broker/x', '1', { qos: 0 });
    await gone2;
    // B itself was never disturbed: B's own topics still work for B
    const cb = await client(b, 'default/b');
    expect((await cb.subscribeAsync(topic('b', 'twin/update/delta')))[0]?.qos).toBe(0);
  });

  it('a packet over the size limit closes the connection before it is buffered', async () => {
    const c = await client(a, 'default/a');
    const gone = closed(c);
    c.publish(topic('a', 'twin/update'), Buffer.alloc(64 * 1024, 1), { qos: 0 });
    await gone;
    expect(bus.stats().refused['packet-too-large']).toBeGreaterThan(0);
  });

  it('a client over its publish rate is disconnected', async () => {
    const c = await client(a, 'default/a');
    const gone = closed(c);
    for (let i = 0; i < 200 && c.connected; i++) c.publish(topic('a', 'twin/update'), '{}', { qos: 0 });
    await gone;
    expect(bus.stats().disconnected['publish-rate']).toBeGreaterThan(0);
  });
});

describe('leaving', () => {
  it("a deleted device's open connection is closed within 1 s of the change", async () => {
    directory.put('default/gone');
    const c = await client(leaf(ca, dev('gone')), 'default/gone');
    const gone = closed(c);
    const at = Date.now();
    directory.remove('default/gone');
    const closedAt = await gone;
    expect(closedAt - at).toBeLessThan(1000);
    expect(logs.some((l) => l.obj['event'] === 'security.mqtt_client_disconnected' && l.obj['reason'] === 'device-deleted')).toBe(true);
  });

  it('a revoked device is disconnected; an SVID issued after the revocation gets in again', async () => {
    directory.put('default/rv');
    const old = leaf(ca, dev('rv'), { now: Date.now() - 60_000 });
    const c = await client(old, 'default/rv');
    const gone = closed(c);
    directory.put('default/rv', { revokedBefore: Date.now() - 30_000 });
    await gone;
    await expect(mqttClient(port, old, ca, 'default/rv')).rejects.toThrow();
    await client(leaf(ca, dev('rv')), 'default/rv');
  });

  it('a client is disconnected when its SVID expires (an open TLS connection outlives its certificate)', async () => {
    directory.put('default/short');
    const short = leaf(ca, dev('short'), { ttlMs: 3_000 });
    const c = await client(short, 'default/short');
    const closedAt = await closed(c);
    expect(closedAt).toBeGreaterThanOrEqual(short.cert.notAfter - 50);
    expect(logs.some((l) => l.obj['event'] === 'eventbus.client_disconnected' && l.obj['reason'] === 'expired')).toBe(true);
  }, 15_000);

  it('a node SVID rotation keeps connected devices and serves the new certificate to new ones', async () => {
    const c = await client(a, 'default/a');
    await c.subscribeAsync(topic('a', 'twin/update/delta'), { qos: 1 });
    const before = identity.current().cert.serialHex;
    const after = identity.rotate().cert.serialHex;
    expect(after).not.toBe(before);
    const got = new Promise<string>((resolve) => c.on('message', (_t, p) => resolve(p.toString())));
    await bus.publish(topic('a', 'twin/update/delta'), Buffer.from('after-rotation'), 1);
    expect(await got).toBe('after-rotation');
    expect(c.connected).toBe(true);
    const n = await client(b, 'default/b');
    const peer = (n.stream as unknown as { getPeerCertificate(): { serialNumber: string } }).getPeerCertificate();
    expect(peer.serialNumber.toLowerCase().replace(/^0+/, '')).toBe(after.replace(/^0+/, ''));
  });
});
