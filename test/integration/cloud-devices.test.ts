/**
 * Device enrolment and renewal through the cloud's real node-service dispatch (issue #6, contract "Node API"
 * and "Cloud"): a real CaManager, SQLite cloud, resource and token stores in a temp dir, a node joined with a
 * join token and authenticated by its node X509-SVID, device CSRs made by openssl, a ManualClock. The Device
 * and its model are applied through the resource admin methods, tokens and revocation through the device
 * admin methods; `edgeward device token|revoke` run against a real admin socket.
 *
 * Spec: X509-SVID 5 (the issued and the presented SVIDs validate against the trust domain's bundle), the
 * contract's refusal codes (`device-token/invalid` for every token reason, only logged as
 * `security.device_token_refused {reason}`), revocation by NotBefore (`revokedBefore`).
 */
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
import { bundleDigest, CaManager, ManualClock, MemoryKeyStore, TrustDomain, validateX509Svid } from '../../src/identity/index.js';
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

