/**
 * mTLS-only device provisioning, end to end (issue #6 "What it must show"): a real cloud, a real joined edge
 * (child processes), the real CLI (`edgeward apply`, `device token`, `device enroll`, `device revoke`,
 * `delete`, `get device`), Debian's `mosquitto_pub`/`mosquitto_sub` and mqtt.js against the edge's EventBus.
 *
 * - enrol with a one-time token (the key never leaves the "device": the reference client makes it), publish a
 *   twin update with mosquitto_pub and see it on the cloud (`edgeward get device`);
 * - refused: no certificate, a self-signed certificate, another trust domain, an expired SVID, a reused or
 *   foreign bootstrap token, a client id that is not the device;
 * - device A publishing or subscribing on device B's topics: refused (MQTT 3.1.1 3.9.3: SUBACK 0x80; a denied
 *   PUBLISH closes the connection, 3.3.5 has no negative PUBACK);
 * - a deleted device's open connection is closed within 1 s of the change reaching the edge; a revoked one too,
 *   and its renewal is refused.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { adminCall } from '../../src/protocol/index.js';
import { certsFromPem, certToPem, generateP256, mintX509Svid, parseCertificate, signerFromPrivateKey, SpiffeId } from '../../src/identity/index.js';
import { eventually, openssl, runCli, startDaemon, tempDir, type Daemon, type RunResult } from '../helpers/index.js';

const TD = 'devices.e2e.test';
const NODE = 'dev-node';
const MODEL_YAML = (desired: string, withGone = true): string => `apiVersion: edgeward.io/v1
kind: DeviceModel
metadata: {name: sensor, nodes: ["*"]}
spec:
  properties:
    - {name: temperature, type: FLOAT, accessMode: ReadOnly, minimum: -40, maximum: 125}
    - {name: setpoint, type: FLOAT, accessMode: ReadWrite}
---
apiVersion: edgeward.io/v1
kind: Device
metadata: {name: t-a}
spec: {deviceModelRef: {name: sensor}, nodeName: ${NODE}, properties: [{name: setpoint, desired: {value: "${desired}"}}]}
---
apiVersion: edgeward.io/v1
kind: Device
metadata: {name: t-b}
spec: {deviceModelRef: {name: sensor}, nodeName: ${NODE}}
${withGone ? `---
apiVersion: edgeward.io/v1
kind: Device
metadata: {name: t-gone}
spec: {deviceModelRef: {name: sensor}, nodeName: ${NODE}}
` : ''}---
apiVersion: edgeward.io/v1
kind: Device
metadata: {name: far}
spec: {deviceModelRef: {name: sensor}, nodeName: far-node}
`;

let work = '';
let cloud: Daemon | undefined;
let edge: Daemon | undefined;
let digest = '';
let mqttHost = '';
let mqttPort = 0;
let enrollAddr = '';
const clients: MqttClient[] = [];

const cloudDir = (): string => join(work, 'cloud');
const cloudAdmin = (): string => join(work, 'cloud', 'admin', 'admin.sock');
const edgeAdmin = (): string => join(work, 'edge', 'admin', 'admin.sock');
const topic = (dev: string, rest: string): string => `$hw/events/device/default/${dev}/${rest}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A mosquitto client, bounded in time; the child (only it) is killed at the timeout. */
function mosquitto(cmd: 'mosquitto_pub' | 'mosquitto_sub', args: readonly string[], timeoutMs = 10_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `--cafile --cert --key` of an enrolled device dir. mosquitto's clients check the host name, which a SPIFFE
 *  certificate does not carry: `--insecure` turns off that check only (the chain is still verified: see the
 *  wrong-CA case below). */
const tlsArgs = (dir: string): string[] => ['--cafile', join(dir, 'bundle.pem'), '--cert', join(dir, 'svid.pem'), '--key', join(dir, 'svid.key'), '--insecure'];
const hostArgs = (): string[] => ['-h', mqttHost, '-p', String(mqttPort)];

async function token(device: string): Promise<string> {
  const r = await runCli(['device', 'token', device, '--data-dir', cloudDir(), '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { token: string }).token;
}

async function enroll(tok: string, out: string): Promise<RunResult> {
  return runCli(['device', 'enroll', '--edge', enrollAddr, '--token', tok, '--bundle-digest', digest, '--out', out]);
}

async function mqttClient(dir: string, clientId: string): Promise<MqttClient> {
  const options: IClientOptions & { checkServerIdentity: () => undefined } = {
    protocol: 'mqtts',
    host: mqttHost,
    port: mqttPort,
    clientId,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ca: readFileSync(join(dir, 'bundle.pem')),
    cert: readFileSync(join(dir, 'svid.pem')),
    key: readFileSync(join(dir, 'svid.key')),
    rejectUnauthorized: true,
    // the SPIFFE ID is checked by the tests themselves (the server is the node); no host name check
    checkServerIdentity: () => undefined,
  };
  const c = await connectAsync(options);
  clients.push(c);
  return c;
}

const closed = (c: MqttClient): Promise<number> => new Promise((resolve) => (c.connected ? c.once('close', () => resolve(Date.now())) : resolve(Date.now())));

beforeAll(async () => {
  work = await tempDir('edgeward-devices-e2e-');
  cloud = startDaemon(['cloud', 'start', '--data-dir', cloudDir(), '--trust-domain', TD, '--listen', '127.0.0.1:0'], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  const addr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
  digest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/, 30_000)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
  const tok = await runCli(['token', 'create', '--node', NODE, '--data-dir', cloudDir(), '--json']);
  expect(tok.code, tok.stderr).toBe(0);
  const j = await runCli(['edge', 'join', '--cloud', addr, '--bundle-digest', digest, '--token', (JSON.parse(tok.stdout) as { token: string }).token, '--node', NODE, '--data-dir', join(work, 'edge')]);
  expect(j.code, j.stderr).toBe(0);
  writeFileSync(join(work, 'devices.yaml'), MODEL_YAML('20'));
  const a = await runCli(['apply', '-f', join(work, 'devices.yaml'), '--data-dir', cloudDir()]);
  expect(a.code, a.stderr).toBe(0);
  edge = startDaemon(
    ['edge', 'start', '--data-dir', join(work, 'edge'), '--secrets-key-file', join(work, 'kek', 'secrets.key'), '--mqtt-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0'],
    { env: { EDGEWARD_LOG_LEVEL: 'info' } },
  );
  const mqtt = (await edge.waitForLine(/^EDGEWARD_MQTT=/, 30_000)).slice('EDGEWARD_MQTT='.length);
  mqttHost = mqtt.slice(0, mqtt.lastIndexOf(':'));
  mqttPort = Number(mqtt.slice(mqtt.lastIndexOf(':') + 1));
  enrollAddr = (await edge.waitForLine(/^EDGEWARD_ENROLL=/, 30_000)).slice('EDGEWARD_ENROLL='.length);
  // The devices reach the node through the hub.
  await eventually('the devices on the node', async () => {
    const r = (await adminCall(edgeAdmin(), 'resource.get', { kind: 'Device' })) as { items: { name: string }[] };
    return r.items.map((i) => i.name).sort().join() === 'default/t-a,default/t-b,default/t-gone';
  }, { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined);
  await edge?.stop();
  await cloud?.stop();
});

describe('provisioning', () => {
  it('enrols with a one-time token: the key is made by the device, the SVID verifies with openssl against the bundle', async () => {
    const dir = join(work, 'dev-a');
    const r = await enroll(await token('default/t-a'), dir);
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(join(dir, 'svid.key')).mode & 0o777).toBe(0o600);
    const chain = certsFromPem(readFileSync(join(dir, 'svid.pem'), 'utf8'));
    const leaf = parseCertificate(chain[0]!);
    expect(leaf.uris).toEqual([`spiffe://${TD}/edgeward/device/default/t-a`]);
    expect(leaf.isCA).toBe(false);
    // The key in svid.key is the certificate's (made here, never sent).
    expect(createPublicKey(createPrivateKey(readFileSync(join(dir, 'svid.key')))).export({ type: 'spki', format: 'der' }).equals(leaf.spki)).toBe(true);
    // X509-SVID 5: an independent verifier (openssl) accepts the chain up to the bundle.
    writeFileSync(join(work, 'a-chain.pem'), chain.slice(1).map(certToPem).join(''));
    const v = await openssl(['verify', '-CAfile', join(dir, 'bundle.pem'), '-untrusted', join(work, 'a-chain.pem'), join(dir, 'svid.pem')]);
    expect(v.stdout + v.stderr).toMatch(/: OK/);
    // The node's log names the enrolment; the cloud's too. No token in any log line.
    await edge!.waitForLog((l) => l.event === 'device.enrolled' && l['device'] === 'default/t-a', 10_000);
  });

  it('a reused token, a token of a device on another node and a wrong bundle digest are refused', async () => {
    const tok = await token('default/t-b');
    expect((await enroll(tok, join(work, 'dev-b'))).code).toBe(0);
    const again = await enroll(tok, join(work, 'dev-b-again'));
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/device-token\/invalid/);
    const foreign = await enroll(await token('default/far'), join(work, 'dev-far'));
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(/device-token\/invalid|device\/wrong-node|device\/unknown/);
    const pin = await runCli(['device', 'enroll', '--edge', enrollAddr, '--token', await token('default/t-gone'), '--bundle-digest', `sha256:${'0'.repeat(64)}`, '--out', join(work, 'dev-pin')]);
    expect(pin.code).toBe(1);
    expect(cloud!.logs.some((l) => JSON.stringify(l).includes(tok))).toBe(false);
    expect(edge!.logs.some((l) => JSON.stringify(l).includes(tok))).toBe(false);
  });
});

describe('EventBus and twins', () => {
  it('a twin update published with mosquitto_pub reaches the cloud; a desired change arrives as a delta (mqtt.js)', async () => {
    const dir = join(work, 'dev-a');
    const update = JSON.stringify({ event_id: 'e2e-1', timestamp: Date.now(), twin: { temperature: { actual: { value: '20.5' }, metadata: { type: 'Updated' } } } });
    const pub = await mosquitto('mosquitto_pub', [...hostArgs(), ...tlsArgs(dir), '-i', 'default/t-a', '-q', '1', '-t', topic('t-a', 'twin/update'), '-m', update]);
    expect(pub.code, pub.stderr).toBe(0);
    await eventually('the reported temperature on the cloud', async () => {
      const v = ((await adminCall(cloudAdmin(), 'resource.get', { kind: 'Device', name: 'default/t-a' })) as { items: { status?: { node: string; detail?: { twins?: Record<string, { value: string }> } }[] }[] }).items[0];
      return v?.status?.find((s) => s.node === NODE)?.detail?.twins?.['temperature']?.value === '20.5';
    }, { timeoutMs: 30_000 });
    const shown = await runCli(['get', 'device', 't-a', '--data-dir', cloudDir()]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/temperature/);
    expect(shown.stdout).toMatch(/20\.5/);

    const c = await mqttClient(dir, 'default/t-a');
    const deltas: string[] = [];
    c.on('message', (t, p) => {
      if (t === topic('t-a', 'twin/update/delta')) deltas.push(p.toString('utf8'));
    });
    const granted = await c.subscribeAsync(topic('t-a', 'twin/update/delta'), { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    writeFileSync(join(work, 'devices.yaml'), MODEL_YAML('22.5'));
    expect((await runCli(['apply', '-f', join(work, 'devices.yaml'), '--data-dir', cloudDir()])).code).toBe(0);
    await eventually('the delta with the new desired setpoint', () => deltas.some((d) => (JSON.parse(d) as { delta?: Record<string, string> }).delta?.['setpoint'] === '22.5'), { timeoutMs: 30_000 });
    await c.endAsync();
  });

  it('refuses no certificate, a self-signed one, another trust domain, an expired SVID, a wrong client id, and a wrong CA', async () => {
    const dir = join(work, 'dev-a');
    const base = [...hostArgs(), '-q', '1', '-t', topic('t-a', 'twin/update'), '-m', '{}'];
    // no client certificate: the TLS handshake fails (no plaintext, no username/password path)
    const none = await mosquitto('mosquitto_pub', [...base, '--cafile', join(dir, 'bundle.pem'), '--insecure', '-i', 'default/t-a']);
    expect(none.code).not.toBe(0);
    // a self-signed certificate with the device's SPIFFE ID
    const selfKey = join(work, 'self.key');
    const selfCrt = join(work, 'self.pem');
    const self = await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', selfKey, '-out', selfCrt, '-days', '1', '-subj', '/O=x', '-addext', `subjectAltName=URI:spiffe://${TD}/edgeward/device/default/t-a`]);
    expect(self.code, self.stderr).toBe(0);
    expect((await mosquitto('mosquitto_pub', [...base, '--cafile', join(dir, 'bundle.pem'), '--cert', selfCrt, '--key', selfKey, '--insecure', '-i', 'default/t-a'])).code).not.toBe(0);
    // another trust domain: its own CA and a leaf for the same path
    const otherCaKey = join(work, 'other-ca.key');
    const otherCa = join(work, 'other-ca.pem');
    expect((await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', otherCaKey, '-out', otherCa, '-days', '1', '-subj', '/O=other', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-addext', 'subjectAltName=URI:spiffe://other.test'])).code).toBe(0);
    const otherKey = join(work, 'other.key');
    const otherCsr = join(work, 'other.csr');
    const otherCrt = join(work, 'other.pem');
    expect((await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', otherKey, '-out', otherCsr, '-subj', '/O=x'])).code).toBe(0);
    writeFileSync(join(work, 'other.ext'), 'subjectAltName=URI:spiffe://other.test/edgeward/device/default/t-a\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    expect((await openssl(['x509', '-req', '-in', otherCsr, '-CA', otherCa, '-CAkey', otherCaKey, '-CAcreateserial', '-out', otherCrt, '-days', '1', '-extfile', join(work, 'other.ext')])).code).toBe(0);
    expect((await mosquitto('mosquitto_pub', [...base, '--cafile', join(dir, 'bundle.pem'), '--cert', otherCrt, '--key', otherKey, '--insecure', '-i', 'default/t-a'])).code).not.toBe(0);
    // an expired SVID signed by the trust domain's real signing CA (its key from the cloud's key store)
    const chain = certsFromPem(readFileSync(join(dir, 'svid.pem'), 'utf8'));
    const signing = parseCertificate(chain[1]!);
    const keysDir = join(cloudDir(), 'keys');
    const caKey = readdirSync(keysDir)
      .map((f) => {
        try {
          return createPrivateKey(readFileSync(join(keysDir, f)));
        } catch {
          return undefined;
        }
      })
      .find((k) => k !== undefined && createPublicKey(k).export({ type: 'spki', format: 'der' }).equals(signing.spki));
    expect(caKey).toBeDefined();
    const { privateKey, spki } = generateP256();
    const expired = mintX509Svid({
      spiffeId: SpiffeId.parse(`spiffe://${TD}/edgeward/device/default/t-a`),
      spki,
      issuer: { cert: signing, signer: signerFromPrivateKey(caKey!) },
      // a leaf cannot start before its issuer (mint clamps NotBefore): the shortest SVID right after it
      now: signing.notBefore + 11_000,
      ttlMs: 1_000,
    });
    // wait (bounded) until it has expired
    while (Date.now() <= expired.notAfter + 1000) await new Promise((r) => setTimeout(r, 250));
    writeFileSync(join(work, 'expired.pem'), certToPem(expired.der) + certToPem(chain[1]!));
    writeFileSync(join(work, 'expired.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    expect((await mosquitto('mosquitto_pub', [...base, '--cafile', join(dir, 'bundle.pem'), '--cert', join(work, 'expired.pem'), '--key', join(work, 'expired.key'), '--insecure', '-i', 'default/t-a'])).code).not.toBe(0);
    // a client id that is not the device (MQTT 3.1.1 3.2.2.3: CONNACK 2, identifier rejected)
    const wrongId = await mosquitto('mosquitto_pub', [...base, ...tlsArgs(dir), '-i', 'default/t-b']);
    expect(wrongId.code).not.toBe(0);
    // --insecure skips only the host name check: a client that does not trust the edge's bundle fails
    expect((await mosquitto('mosquitto_pub', [...base, '--cafile', otherCa, '--cert', join(dir, 'svid.pem'), '--key', join(dir, 'svid.key'), '--insecure', '-i', 'default/t-a'])).code).not.toBe(0);
    // and the real device still gets in
    expect((await mosquitto('mosquitto_pub', [...base.slice(0, -2), '-m', JSON.stringify({ twin: { temperature: { actual: { value: '20.6' } } } }), ...tlsArgs(dir), '-i', 'default/t-a'])).code).toBe(0);
  });

  it("device A cannot subscribe to or publish on device B's topics", async () => {
    const dir = join(work, 'dev-a');
    const sub = await mosquitto('mosquitto_sub', [...hostArgs(), ...tlsArgs(dir), '-i', 'default/t-a', '-d', '-t', topic('t-b', 'twin/update/delta'), '-t', topic('t-a', 'twin/update/delta'), '-W', '2'], 10_000);
    // MQTT 3.1.1 3.9.3: one return code per filter; 0x80 for B's, the granted QoS for A's own.
    expect(sub.stdout + sub.stderr).toMatch(/Subscribed \(mid: \d+\): 128, 0/);
    const c = await mqttClient(dir, 'default/t-a');
    const gone = closed(c);
    // no PUBACK comes (MQTT 3.1.1 has no negative one): the broker closes the connection
    c.publish(topic('t-b', 'twin/update'), '{}', { qos: 1 });
    await gone;
    expect(c.connected).toBe(false);
    await edge!.waitForLog((l) => l.event === 'security.mqtt_publish_denied', 10_000);
  });
});

describe('deletion and revocation take effect at the edge', () => {
  it("a deleted device's open connection is closed within 1 s of the change reaching the edge", async () => {
    const dir = join(work, 'dev-gone');
    expect((await enroll(await token('default/t-gone'), dir)).code).toBe(0);
    const c = await mqttClient(dir, 'default/t-gone');
    const gone = closed(c);
    const del = await runCli(['delete', 'device', 't-gone', '--data-dir', cloudDir()]);
    expect(del.code, del.stderr).toBe(0);
    const closedAt = await gone;
    const removed = await edge!.waitForLog((l) => l.event === 'devices.removed' && l['device'] === 'default/t-gone', 30_000);
    // Both clocks are this machine's: the edge's log time of the change and this process's close time.
    expect(closedAt - Number(removed['time'])).toBeLessThan(1000);
  });

  it('a revoked device is disconnected at once and can no longer renew', async () => {
    const dir = join(work, 'dev-b');
    const c = await mqttClient(dir, 'default/t-b');
    const gone = closed(c);
    const rev = await runCli(['device', 'revoke', 'default/t-b', '--data-dir', cloudDir()]);
    expect(rev.code, rev.stderr).toBe(0);
    await gone;
    const renew = await runCli(['device', 'renew', '--edge', enrollAddr, '--dir', dir]);
    expect(renew.code).toBe(1);
    expect(renew.stderr).toMatch(/revoked/);
    // a new connection with the revoked SVID is refused too
    expect((await mosquitto('mosquitto_pub', [...hostArgs(), ...tlsArgs(dir), '-i', 'default/t-b', '-q', '1', '-t', topic('t-b', 'twin/update'), '-m', '{}'])).code).not.toBe(0);
  });
});
