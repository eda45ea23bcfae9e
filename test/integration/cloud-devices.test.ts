/**
 * Device enrolment and renewal through the cloud's real node-service dispatch (issue #6, contract "Node API"
 * and "Cloud"): a real CaManager, SQLite cloud, resource and token stores in a temp dir, a node joined with a
 * join token and authenticated by its node X509-SVID, device CSRs made by openssl, a ManualClock. The Device
 * and its model are applied through the resource admin methods, tokens and revocation through the device
 * admin methods; `edgeward device token|revoke` run against a real admin socket. Factory enrolment with a
 * manufacturer CA and device certificates made by openssl; one issued device SVID is read and verified by
 * `openssl x509 -text` / `openssl verify`.
 *
 * Spec: X509-SVID 5 (the issued and the presented SVIDs validate against the trust domain's bundle), the
 * contract's refusal codes (`device-token/invalid` for every token reason, only logged as
 * `security.device_token_refused {reason}`), revocation by NotBefore (`revokedBefore`).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJoinTokenAttestor, deviceSpiffeId, generateJoinToken, RateLimiter } from '../../src/attestation/index.js';
import { hostStateFiles, openAdminSocket } from '../../src/cli/host/index.js';
import { main } from '../../src/cli/index.js';
import {
  createCloudStore,
  createNodeService,
  createResourceAdminHandlers,
  createResourceStore,
  type AuthenticatedNode,
  type NodeReply,
  type NodeService,
  type ResourceStore,
} from '../../src/cloud/index.js';
import {
  createDeviceAdminHandlers,
  createDeviceIssuer,
  openDeviceTokenStore,
  type DeviceRevokeResult,
  type DeviceTokenResult,
  type DeviceTokenStore,
} from '../../src/cloud/devices/index.js';
import { bundleDigest, CaManager, certsFromPem, certToPem, ManualClock, MemoryKeyStore, TrustDomain, validateX509Svid } from '../../src/identity/index.js';
import { encodeNodeApiMessage, type AdminSocketServer, type CloudToEdgeMessage, type NodeApiMessage } from '../../src/protocol/index.js';
import { openssl, tempDir } from '../helpers/index.js';
import { fakeIo } from '../unit/cli/fake-io.js';

const td = TrustDomain.parse('example.org');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SRC = '10.0.0.1';
const DEVICE = 'default/thermo-1';

interface LogLine {
  level: string;
  obj: Record<string, unknown>;
}

let dir = '';
const csrs: Buffer[] = [];
let clock: ManualClock;
let ca: CaManager;
let resources: ResourceStore;
let tokens: DeviceTokenStore;
let service: NodeService;
const logs: LogLine[] = [];
let handlers: Record<string, (p: Record<string, unknown>) => unknown>;
let edge1: AuthenticatedNode;
let edge2: AuthenticatedNode;
let nodeStore: ReturnType<typeof createCloudStore>;

async function newCsr(): Promise<Buffer> {
  return (await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `k${csrs.length}.key`), '-subj', '/CN=dev', '-outform', 'DER'])).stdoutBytes;
}

const body = (m: NodeApiMessage): Buffer => Buffer.from(encodeNodeApiMessage(m));

function ok<K extends CloudToEdgeMessage['kind']>(r: NodeReply, kind: K): Extract<CloudToEdgeMessage, { kind: K }> {
  expect(r.message.kind === 'error' ? `${r.message.code}: ${r.message.message}` : r.message.kind).toBe(kind);
  expect(r.status).toBe(200);
  return r.message as Extract<CloudToEdgeMessage, { kind: K }>;
}

function refused(r: NodeReply, status: number, code: string): void {
  expect(r.message.kind).toBe('error');
  const m = r.message as Extract<CloudToEdgeMessage, { kind: 'error' }>;
  expect({ status: r.status, code: m.code }).toEqual({ status, code });
  expect(() => encodeNodeApiMessage(m)).not.toThrow();
}

function lastEvent(name: string): Record<string, unknown> {
  const l = [...logs].reverse().find((x) => x.obj['event'] === name);
  expect(l, name).toBeDefined();
  return l!.obj;
}

const enroll = (node: AuthenticatedNode, token: string, csr: Buffer, device?: string): NodeReply =>
  service.handle(body({ v: 1, kind: 'device.enroll', csr, token, ...(device === undefined ? {} : { device }) }), node, SRC);
const renew = (node: AuthenticatedNode, chain: Buffer[], csr: Buffer, device = DEVICE): NodeReply =>
  service.handle(body({ v: 1, kind: 'device.renew', device, csr, svidChainDer: chain }), node, SRC);
const token = (device = DEVICE, ttlMs?: number): DeviceTokenResult =>
  handlers['device.token']!({ device, ...(ttlMs === undefined ? {} : { ttlMs }) }) as DeviceTokenResult;

const MODEL = { apiVersion: 'edgeward.io/v1', kind: 'DeviceModel', metadata: { name: 'thermometer', nodes: ['*'] }, spec: { properties: [] } };
const deviceDoc = (name: string, node: string): Record<string, unknown> => ({
  apiVersion: 'edgeward.io/v1',
  kind: 'Device',
  metadata: { name, namespace: 'default' },
  spec: { deviceModelRef: { name: 'thermometer' }, nodeName: node },
});

function validate(chain: Buffer[], device = DEVICE): { notBefore: number; notAfter: number; dnsNames: string[] } {
  const v = validateX509Svid(chain, { x509AuthoritiesFor: (t) => (t.equals(td) ? ca.x509Authorities() : undefined) }, clock.now(), { trustDomain: td });
  expect(v.spiffeId.toString()).toBe(deviceSpiffeId(td, device).toString());
  return { notBefore: v.leaf.notBefore, notAfter: v.leaf.notAfter, dnsNames: v.leaf.dnsNames };
}

beforeAll(async () => {
  dir = await tempDir('edgeward-cloud-devices-');
  for (let i = 0; i < 10; i++) csrs.push(await newCsr());
  clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const store = createCloudStore(join(dir, 'cloud.db'), { files: hostStateFiles, trustDomain: td, clock });
  nodeStore = store;
  ca = new CaManager({ trustDomain: td, caTtlMs: 7 * DAY, maxX509SvidTtlMs: DAY }, new MemoryKeyStore());
  ca.tick(clock.now());
  resources = createResourceStore(join(dir, 'resources.db'), { files: hostStateFiles, clock });
  tokens = openDeviceTokenStore(join(dir, 'devices.db'), { files: hostStateFiles });
  const logger = {
    info: (obj: Record<string, unknown>) => logs.push({ level: 'info', obj }),
    warn: (obj: Record<string, unknown>) => logs.push({ level: 'warn', obj }),
    error: (obj: Record<string, unknown>) => logs.push({ level: 'error', obj }),
  };
  service = createNodeService({
    trustDomain: td,
    store,
    ca,
    clock,
    attestors: [createJoinTokenAttestor(store)],
    nodeSvidTtlMs: HOUR,
    maxWorkloadSvidTtlMs: HOUR,
    maxJwtSvidTtlMs: 300_000,
    logger,
    rateLimiter: new RateLimiter({ capacity: 1000, refillPerSecond: 1000, maxKeys: 100 }),
    devices: createDeviceIssuer({ trustDomain: td, resources, tokens, ca, svidTtlMs: DAY, logger }),
  });
  handlers = {
    ...(createResourceAdminHandlers({ store: resources, clock, logger }) as Record<string, (p: Record<string, unknown>) => unknown>),
    ...createDeviceAdminHandlers({ resources, tokens, clock, logger, bundleDigest: () => bundleDigest(ca.bundle()) }),
  };
  const join_ = async (name: string): Promise<AuthenticatedNode> => {
    const g = generateJoinToken(name, 600_000, clock.now());
    store.addJoinToken(g.record);
    const r = service.attest(body({ v: 1, kind: 'attest.begin', method: 'join_token', nodeName: name, payload: { token: g.token }, csr: await newCsr() }), SRC);
    return service.authenticate(ok(r, 'attest.result').svidChainDer, SRC);
  };
  edge1 = await join_('edge-1');
  edge2 = await join_('edge-2');
  handlers['resource.apply']!({ documents: [MODEL, deviceDoc('thermo-1', 'edge-1'), deviceDoc('thermo-2', 'edge-1')] });
});

afterAll(() => {
  tokens?.close();
  resources?.close();
});

let svid: Buffer[] = [];
/** The first device SVID issued (checked with openssl below). */
let issuedChain: Buffer[] = [];

describe('device enrolment and renewal through the node service', () => {
  it('device.token names the device, its node and the bundle digest', () => {
    const t = token();
    expect(t).toMatchObject({ device: DEVICE, node: 'edge-1', expiresAt: clock.now() + HOUR, bundleDigest: bundleDigest(ca.bundle()) });
    expect(t.token).toMatch(/^ewdt_[A-Za-z0-9_-]{43}$/);
    expect(() => token('default/nope')).toThrow(expect.objectContaining({ code: 'device/unknown' }) as unknown as Error);
  });

  it('token enrolment: a 24 h X509-SVID for spiffe://TD/edgeward/device/NS/NAME with the CSR key, no DNS SANs; logged without the token', () => {
    const t = token();
    const m = ok(enroll(edge1, t.token, csrs[0]!), 'device.svid');
    expect(m.device).toBe(DEVICE);
    issuedChain = m.svidChainDer;
    const v = validate(m.svidChainDer);
    expect(v.dnsNames).toEqual([]);
    expect(m.expiresAt).toBe(v.notAfter);
    expect(m.expiresAt - clock.now()).toBe(DAY);
    expect(lastEvent('device.enrolled')).toMatchObject({ device: DEVICE, node: 'edge-1', method: 'token' });
    expect(JSON.stringify(logs)).not.toContain(t.token.slice(5));
    svid = m.svidChainDer;
  });

  it('a used token is refused (device-token/invalid, reason only in the log)', () => {
    const t = token();
    ok(enroll(edge1, t.token, csrs[1]!), 'device.svid');
    const r = enroll(edge1, t.token, csrs[1]!);
    refused(r, 403, 'device-token/invalid');
    // One message for every reason: the edge (and a prober behind it) cannot tell them apart.
    expect((r.message as { message: string }).message).toBe('the device token is unknown, expired, used, or not for this device and node');
    expect(lastEvent('security.device_token_refused')).toMatchObject({ reason: 'used', device: DEVICE, node: 'edge-1' });
    expect(lastEvent('security.device_token_refused')['token_id']).toMatch(/^[0-9a-f]{8}$/);
    expect(lastEvent('security.device_enroll_refused')).toMatchObject({ code: 'device-token/invalid', node: 'edge-1' });
  });

  it('a token presented by another node, or for another device, is refused and not spent', () => {
    const t = token();
    refused(enroll(edge2, t.token, csrs[2]!), 403, 'device-token/invalid');
    expect(lastEvent('security.device_token_refused')).toMatchObject({ reason: 'wrong-node', node: 'edge-2' });
    refused(enroll(edge1, t.token, csrs[2]!, 'default/thermo-2'), 403, 'device-token/invalid');
    expect(lastEvent('security.device_token_refused')).toMatchObject({ reason: 'wrong-device' });
    ok(enroll(edge1, t.token, csrs[2]!, DEVICE), 'device.svid');
  });

  it('an expired or unknown token is refused', () => {
    const t = token(DEVICE, 60_000);
    clock.advance(60_000);
    refused(enroll(edge1, t.token, csrs[2]!), 403, 'device-token/invalid');
    expect(lastEvent('security.device_token_refused')).toMatchObject({ reason: 'expired' });
    refused(enroll(edge1, 'ewdt_' + Buffer.alloc(32).toString('base64url'), csrs[2]!), 403, 'device-token/invalid');
    expect(lastEvent('security.device_token_refused')).toMatchObject({ reason: 'unknown' });
  });

  it('renew: the current SVID buys a new one; from another node it is device/wrong-node', () => {
    clock.advance(HOUR);
    const m = ok(renew(edge1, svid, csrs[3]!), 'device.svid');
    validate(m.svidChainDer);
    expect(lastEvent('device.renewed')).toMatchObject({ device: DEVICE, node: 'edge-1' });
    refused(renew(edge2, svid, csrs[3]!), 403, 'device/wrong-node');
    // Another device's SVID, or a node SVID, is not this device's.
    refused(renew(edge1, svid, csrs[3]!, 'default/thermo-2'), 403, 'device/renew-refused');
    refused(renew(edge1, [Buffer.from('junk')], csrs[3]!), 403, 'device/renew-refused');
    refused(renew(edge1, svid, csrs[3]!, 'default/ghost'), 404, 'device/unknown');
    svid = m.svidChainDer;
  });

  it('revoke: renewal with an SVID issued before is refused, old tokens are dead, a re-apply keeps revokedBefore', () => {
    const before = token();
    clock.advance(1500);
    const r = handlers['device.revoke']!({ device: DEVICE }) as DeviceRevokeResult;
    expect(r.device).toBe(DEVICE);
    expect(r.revokedBefore).toBe(Math.floor(clock.now() / 1000) * 1000);
    expect(resources.get('Device', DEVICE)!.data['revokedBefore']).toBe(r.revokedBefore);
    expect(resources.get('Device', DEVICE)!.version).toBe(r.version);
    refused(renew(edge1, svid, csrs[4]!), 403, 'device/revoked');
    refused(enroll(edge1, before.token, csrs[4]!), 403, 'device-token/invalid');

    // The operator re-applies the Device document (no revokedBefore in it): the revocation stays.
    const applied = handlers['resource.apply']!({ documents: [deviceDoc('thermo-1', 'edge-1')] }) as { results: Array<{ action: string }> };
    expect(applied.results[0]!.action).toBe('unchanged');
    handlers['resource.apply']!({ documents: [{ ...deviceDoc('thermo-1', 'edge-1'), spec: { deviceModelRef: { name: 'thermometer' }, nodeName: 'edge-1', factoryIdentity: { serialNumber: 'SN-1' } } }] });
    expect(resources.get('Device', DEVICE)!.data['revokedBefore']).toBe(r.revokedBefore);
    refused(renew(edge1, svid, csrs[4]!), 403, 'device/revoked');

    // A token made after the revocation enrols again; the new SVID is not itself revoked and renews.
    const fresh = token();
    const m = ok(enroll(edge1, fresh.token, csrs[5]!), 'device.svid');
    expect(validate(m.svidChainDer).notBefore).toBeGreaterThanOrEqual(r.revokedBefore);
    ok(renew(edge1, m.svidChainDer, csrs[6]!), 'device.svid');
  });

  it('a device deleted after its token was made is device/unknown', () => {
    const t = token('default/thermo-2');
    handlers['resource.delete']!({ kind: 'Device', name: 'default/thermo-2' });
    refused(enroll(edge1, t.token, csrs[7]!), 404, 'device/unknown');
  });

  it('device.enroll and device.renew spend the per-node signing budget, refusals included (429 rate-limit/exceeded)', () => {
    const limited = createNodeService({
      trustDomain: td,
      store: nodeStore,
      ca,
      clock,
      attestors: [],
      nodeSvidTtlMs: HOUR,
      maxWorkloadSvidTtlMs: HOUR,
      maxJwtSvidTtlMs: 300_000,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
      signingRateLimiter: new RateLimiter({ capacity: 2, refillPerSecond: 0.001, maxKeys: 10 }),
      devices: createDeviceIssuer({ trustDomain: td, resources, tokens, ca, svidTtlMs: DAY, logger: { info: () => {}, warn: () => {} } }),
    });
    const junk = 'ewdt_' + Buffer.alloc(32, 1).toString('base64url');
    const send = (m: NodeApiMessage): NodeReply => limited.handle(body(m), edge1, SRC);
    refused(send({ v: 1, kind: 'device.enroll', csr: csrs[8]!, token: junk }), 403, 'device-token/invalid');
    refused(send({ v: 1, kind: 'device.renew', device: DEVICE, csr: csrs[8]!, svidChainDer: [Buffer.from('x')] }), 403, 'device/renew-refused');
    refused(send({ v: 1, kind: 'device.enroll', csr: csrs[8]!, token: token().token }), 429, 'rate-limit/exceeded');
  });

  it('a bad CSR is refused before the token is spent', () => {
    const t = token();
    refused(enroll(edge1, t.token, Buffer.from('not a csr')), 400, 'csr/malformed');
    ok(enroll(edge1, t.token, csrs[8]!), 'device.svid');
  });
});

describe('edgeward device token | revoke (real admin socket)', () => {
  let server: AdminSocketServer;
  let adminDir = '';
  beforeAll(async () => {
    adminDir = await tempDir('edgeward-cli-dev-');
    server = openAdminSocket({ socketPath: join(adminDir, 'admin', 'admin.sock'), logger: { info: () => {}, warn: () => {} }, handlers: handlers as never });
    await server.start();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('prints the token first, then the device, node, expiry, digest and the enrol command; revoke prints revokedBefore', async () => {
    const io = fakeIo({ env: {}, now: clock.now() });
    expect(await main(['device', 'token', 'thermo-1', '--ttl', '10m', '--data-dir', adminDir], io)).toBe(0);
    const lines = io.stdoutText().split('\n');
    expect(lines[0]).toMatch(/^ewdt_[A-Za-z0-9_-]{43}$/);
    expect(io.stdoutText()).toContain(`device:         ${DEVICE}`);
    expect(io.stdoutText()).toContain('node:           edge-1');
    expect(io.stdoutText()).toContain(`edgeward device enroll --edge edge-1:8884 --token ${lines[0]} --bundle-digest ${bundleDigest(ca.bundle())} --out ./thermo-1`);
    ok(enroll(edge1, lines[0]!, csrs[9]!), 'device.svid');

    const j = fakeIo({ env: {}, now: clock.now() });
    expect(await main(['device', 'revoke', DEVICE, '--data-dir', adminDir, '--json'], j)).toBe(0);
    const r = JSON.parse(j.stdoutText()) as DeviceRevokeResult;
    expect(r).toMatchObject({ device: DEVICE, revokedBefore: Math.floor(clock.now() / 1000) * 1000 });
  });
});


describe('an issued device SVID, as openssl sees it', () => {
  it('X509-SVID 4: one URI SAN (the device ID), no DNS SANs, not a CA, digitalSignature; verifies to the bundle', async () => {
    const leafPem = join(dir, 'device-svid.pem');
    const interPem = join(dir, 'device-svid-chain.pem');
    const rootsPem = join(dir, 'bundle-roots.pem');
    await writeFile(leafPem, certToPem(issuedChain[0]!));
    await writeFile(interPem, issuedChain.slice(1).map((d) => certToPem(d)).join(''));
    await writeFile(rootsPem, ca.x509Authorities().map((d) => certToPem(d)).join(''));
    const text = (await openssl(['x509', '-in', leafPem, '-noout', '-text'])).stdout;
    expect(text).toContain(`URI:${deviceSpiffeId(td, DEVICE).toString()}`);
    expect(text).not.toContain('DNS:');
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    // X509-SVID 4.3: digitalSignature set, keyCertSign and cRLSign not (keyEncipherment/keyAgreement are allowed).
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature/);
    expect(text).not.toMatch(/Certificate Sign|CRL Sign/);
    // The chain verifies with openssl at the real time (the manual clock started at the real time).
    const v = await openssl(['verify', '-CAfile', rootsPem, '-untrusted', interPem, '-purpose', 'sslclient', leafPem]);
    expect(v.stdout).toContain(': OK');
  });
});

describe('factory enrolment through the node service (manufacturer CA made with openssl)', () => {
  const CNF = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
`;
  const factory: Record<string, Buffer> = {};
  let makerPem = '';
  const SENSOR = 'default/sensor-1';

  const factoryEnroll = (node: AuthenticatedNode, device: string, chain: Buffer[], csr: Buffer): NodeReply =>
    service.handle(body({ v: 1, kind: 'device.enroll', device, csr, factoryChainDer: chain }), node, SRC);

  beforeAll(async () => {
    const cnf = join(dir, 'factory.cnf');
    await writeFile(cnf, CNF);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    const root = async (name: string, subj: string): Promise<void> => {
      await openssl(['req', '-x509', '-config', cnf, '-extensions', 'ca', ...ec, '-days', '30', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-subj', subj]);
    };
    const leaf = async (name: string, subj: string, issuer: string): Promise<void> => {
      await openssl(['req', '-new', '-config', cnf, ...ec, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', subj]);
      await openssl([
        'x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, `${issuer}.pem`), '-CAkey', join(dir, `${issuer}.key`),
        '-set_serial', String(Object.keys(factory).length + 10), '-days', '30', '-extfile', cnf, '-extensions', 'leaf', '-out', join(dir, `${name}.pem`),
      ]);
      factory[name] = certsFromPem(await readFile(join(dir, `${name}.pem`), 'utf8'))[0]!;
    };
    await root('maker', '/O=Maker Inc/CN=Maker Device CA');
    await root('other-maker', '/O=Maker Inc/CN=Maker Device CA'); // same name, another key
    await leaf('sensor-1', '/O=Maker Inc/CN=sensor/serialNumber=SN-1', 'maker');
    await leaf('sensor-1-wrong-serial', '/O=Maker Inc/CN=sensor/serialNumber=SN-2', 'maker');
    await leaf('sensor-1-other-ca', '/O=Maker Inc/CN=sensor/serialNumber=SN-1', 'other-maker');
    makerPem = await readFile(join(dir, 'maker.pem'), 'utf8');
    // The manual clock must be inside the manufacturer certificates' validity.
    clock.set(Math.max(clock.now(), Math.ceil((Date.now() + 2000) / 1000) * 1000));
    handlers['resource.apply']!({
      documents: [
        { apiVersion: 'edgeward.io/v1', kind: 'DeviceModel', metadata: { name: 'sensor', nodes: ['*'] }, spec: { properties: [], factoryCAs: [makerPem] } },
        { ...deviceDoc('sensor-1', 'edge-1'), spec: { deviceModelRef: { name: 'sensor' }, nodeName: 'edge-1', factoryIdentity: { serialNumber: 'SN-1' } } },
        { ...deviceDoc('sensor-2', 'edge-1'), spec: { deviceModelRef: { name: 'sensor' }, nodeName: 'edge-1' } },
      ],
    });
  });

  it('a chain to the model factory CA with the Device serialNumber gets the device SVID', () => {
    const m = ok(factoryEnroll(edge1, SENSOR, [factory['sensor-1']!], csrs[0]!), 'device.svid');
    expect(m.device).toBe(SENSOR);
    validate(m.svidChainDer, SENSOR);
    expect(lastEvent('device.enrolled')).toMatchObject({ device: SENSOR, node: 'edge-1', method: 'factory' });
  });

  it('refused (device/factory-refused, reason only logged): wrong serial, another CA, no factoryIdentity; other node: device/wrong-node', () => {
    const cases: Array<[string, Buffer, string]> = [
      [SENSOR, factory['sensor-1-wrong-serial']!, 'factory serialNumber does not match the device'],
      [SENSOR, factory['sensor-1-other-ca']!, 'factory chain does not verify to a factory CA of the model'],
      ['default/sensor-2', factory['sensor-1']!, 'the device has no factoryIdentity'],
    ];
    for (const [device, leaf, reason] of cases) {
      const r = factoryEnroll(edge1, device, [leaf], csrs[1]!);
      refused(r, 403, 'device/factory-refused');
      expect((r.message as { message: string }).message).toBe('factory enrolment refused');
      expect(lastEvent('security.device_enroll_refused')).toMatchObject({ code: 'device/factory-refused', device, node: 'edge-1', reason });
    }
    refused(factoryEnroll(edge2, SENSOR, [factory['sensor-1']!], csrs[1]!), 403, 'device/wrong-node');
  });

  it('the configured default token TTL (devices.tokenTtl) applies when device.token has no ttlMs', () => {
    const h = createDeviceAdminHandlers({ resources, tokens, clock, logger: { info: () => {}, warn: () => {} }, bundleDigest: () => 'sha256:x', defaultTokenTtlMs: 2 * HOUR });
    expect((h['device.token']({ device: SENSOR }) as DeviceTokenResult).expiresAt).toBe(clock.now() + 2 * HOUR);
    expect(() => h['device.token']({ device: SENSOR, ttlMs: DAY + 1 })).toThrow(expect.objectContaining({ code: 'device-token/bad-ttl' }) as unknown as Error);
    expect(() => h['device.token']({ device: SENSOR, extra: 1 })).toThrow(expect.objectContaining({ code: 'cloud-admin/bad-request' }) as unknown as Error);
  });
});
