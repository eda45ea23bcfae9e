/**
 * Device SVID issuance checks (issue #6, contract "Cloud"), unit level: createDeviceIssuer over a fake
 * resource store (a Map), a fake token store (records consume calls, answers what the test says), a real
 * in-memory CaManager and a ManualClock. CSRs come from the identity library (buildCsr), factory
 * certificates from openssl.
 *
 * Spec: X509-SVID 4.1 (URI SAN is the ID), 4.3 (leaf: not a CA, digitalSignature), 5 (validation of the
 * presented SVID against the bundle); the contract's refusal codes; revocation by NotBefore.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { deviceSpiffeId } from '../../../src/attestation/index.js';
import {
  createDeviceIssuer,
  DeviceError,
  type ConsumeResult,
  type DeviceIssuer,
  type DeviceTokenStore,
  type ResourceStore,
  type StoredResource,
} from '../../../src/cloud/index.js';
import {
  buildCsr,
  CaManager,
  certsFromPem,
  generateP256,
  ManualClock,
  MemoryKeyStore,
  parseCertificate,
  TrustDomain,
  validateX509Svid,
  type KeyPair,
} from '../../../src/identity/index.js';
import type { DeviceEnrollMessage, DeviceRenewMessage, DeviceSvidMessage } from '../../../src/protocol/index.js';
import { openssl, tempDir } from '../../helpers/index.js';

const td = TrustDomain.parse('example.org');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const DEVICE = 'default/thermo-1';
const TOKEN = 'ewdt_' + Buffer.alloc(32, 7).toString('base64url');

const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
let ca: CaManager;
let resources: Map<string, StoredResource>;
let consumeAnswer: ConsumeResult;
let consumed: Array<{ token: string; device: string | undefined; node: string }>;
let logs: Array<Record<string, unknown>>;
let issuer: DeviceIssuer;
let factoryCaPem = '';
let factoryLeafDer: Buffer = Buffer.alloc(0);

const fakeTokens: DeviceTokenStore = {
  issue: () => {
    throw new Error('not used');
  },
  consume(token, device, node) {
    consumed.push({ token, device, node });
    return consumeAnswer;
  },
  dropDevice: () => 0,
  prune: () => 0,
  close: () => {},
};

function put(kind: 'Device' | 'DeviceModel', name: string, data: Record<string, unknown>): void {
  resources.set(`${kind} ${name}`, { kind, name, version: 1, nodes: ['edge-1'], data, deleted: false, createdAt: 0, updatedAt: 0 });
}

function device(spec: Record<string, unknown> = {}, revokedBefore?: number): void {
  put('Device', DEVICE, {
    spec: { deviceModelRef: { name: 'thermometer' }, nodeName: 'edge-1', properties: [], ...spec },
    ...(revokedBefore === undefined ? {} : { revokedBefore }),
  });
}

const keys: KeyPair[] = [];
function csr(): Buffer {
  const k = generateP256();
  keys.push(k);
  return buildCsr(k);
}

const enrollMsg = (extra: Partial<DeviceEnrollMessage>): DeviceEnrollMessage => ({ v: 1, kind: 'device.enroll', csr: csr(), ...extra });
const renewMsg = (chain: Buffer[], extra: Partial<DeviceRenewMessage> = {}): DeviceRenewMessage => ({
  v: 1,
  kind: 'device.renew',
  device: DEVICE,
  csr: csr(),
  svidChainDer: chain,
  ...extra,
});
const okToken = (createdAt = clock.now() - 1000): ConsumeResult => ({ ok: true, device: DEVICE, node: 'edge-1', createdAt, tokenId: 'abcdef01' });

function refusal(fn: () => unknown): { code: string; detail: Record<string, unknown> | undefined } {
  try {
    fn();
  } catch (e) {
    const err = e as DeviceError;
    return { code: err.code, detail: err.detail as Record<string, unknown> | undefined };
  }
  throw new Error('expected a refusal');
}

function validate(m: DeviceSvidMessage): ReturnType<typeof validateX509Svid> {
  return validateX509Svid(m.svidChainDer, { x509AuthoritiesFor: (t) => (t.equals(td) ? ca.x509Authorities() : undefined) }, clock.now(), { trustDomain: td });
}

beforeAll(async () => {
  // A manufacturer CA and a device certificate with subject serialNumber SN-0001 (IEEE 802.1AR style).
  const dir = await tempDir('edgeward-device-issuance-');
  const cnf = join(dir, 'cnf');
  await writeFile(
    cnf,
    '[req]\ndistinguished_name = dn\n[dn]\n[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign\n[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n',
  );
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const days = ['-days', '3650'];
  await openssl(['req', '-x509', '-config', cnf, '-extensions', 'ca', ...ec, ...days, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-subj', '/O=Maker/CN=Maker Root']);
  await openssl(['req', '-new', '-config', cnf, ...ec, '-keyout', join(dir, 'leaf.key'), '-out', join(dir, 'leaf.csr'), '-subj', '/O=Maker/CN=thermo/serialNumber=SN-0001']);
  await openssl([
    'x509', '-req', '-in', join(dir, 'leaf.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-set_serial', '7',
    ...days, '-extfile', cnf, '-extensions', 'leaf', '-out', join(dir, 'leaf.pem'),
  ]);
  factoryCaPem = await readFile(join(dir, 'ca.pem'), 'utf8');
  factoryLeafDer = certsFromPem(await readFile(join(dir, 'leaf.pem'), 'utf8'))[0]!;
  // The manual clock must be inside the factory certificates' validity (openssl dates them from the real now).
  clock.set(Math.ceil((Date.now() + 5000) / 1000) * 1000); // whole seconds, as certificate times
});

beforeEach(() => {
  ca = new CaManager({ trustDomain: td, caTtlMs: 7 * DAY, maxX509SvidTtlMs: DAY }, new MemoryKeyStore());
  ca.tick(clock.now());
  resources = new Map();
  consumed = [];
  logs = [];
  consumeAnswer = okToken();
  const logger = { info: (o: Record<string, unknown>) => logs.push(o), warn: (o: Record<string, unknown>) => logs.push(o) };
  const store: Pick<ResourceStore, 'get'> = { get: (kind, name) => resources.get(`${kind} ${name}`) };
  // Asked for 48 h: capped by the CA's 24 h.
  issuer = createDeviceIssuer({ trustDomain: td, resources: store, tokens: fakeTokens, ca, svidTtlMs: 2 * DAY, logger });
  put('DeviceModel', 'default/thermometer', { spec: { properties: [], factoryCAs: [factoryCaPem] } });
  device();
});

describe('token enrolment', () => {
  it('signs an X509-SVID for spiffe://TD/edgeward/device/NS/NAME with the CSR key, TTL capped by the CA, no DNS SANs', () => {
    const m = issuer.enroll(enrollMsg({ token: TOKEN }), 'edge-1', clock.now());
    expect(m).toMatchObject({ kind: 'device.svid', device: DEVICE });
    const v = validate(m);
    expect(v.spiffeId.toString()).toBe(deviceSpiffeId(td, DEVICE).toString());
    expect(v.leaf.spki.equals(keys[keys.length - 1]!.spki)).toBe(true);
    expect(v.leaf.dnsNames).toEqual([]);
    expect(v.leaf.isCA).toBe(false); // X509-SVID 4.3
    expect(v.leaf.keyUsage.digitalSignature).toBe(true);
    expect(m.expiresAt).toBe(v.leaf.notAfter);
    expect(m.expiresAt - clock.now()).toBe(DAY);
    expect(consumed).toEqual([{ token: TOKEN, device: undefined, node: 'edge-1' }]);
    expect(logs.at(-1)).toMatchObject({ event: 'device.enrolled', device: DEVICE, node: 'edge-1', method: 'token', serial: v.leaf.serialHex });
  });

  it('any token refusal is device-token/invalid; the reason, token id, device and node are only logged, never the token', () => {
    for (const reason of ['unknown', 'expired', 'used', 'wrong-device', 'wrong-node'] as const) {
      consumeAnswer = { ok: false, reason, tokenId: '0123abcd', device: DEVICE };
      expect(refusal(() => issuer.enroll(enrollMsg({ token: TOKEN, device: DEVICE }), 'edge-2', clock.now())).code).toBe('device-token/invalid');
      expect(logs.at(-1)).toEqual({ event: 'security.device_token_refused', reason, token_id: '0123abcd', device: DEVICE, node: 'edge-2' });
    }
    expect(JSON.stringify(logs)).not.toContain(TOKEN.slice(5));
  });

  it('exactly one proof: a token and a factory chain together, or neither, is refused before anything is spent', () => {
    expect(refusal(() => issuer.enroll(enrollMsg({ token: TOKEN, device: DEVICE, factoryChainDer: [factoryLeafDer] }), 'edge-1', clock.now())).code).toBe('device-token/invalid');
    expect(refusal(() => issuer.enroll(enrollMsg({ device: DEVICE }), 'edge-1', clock.now())).code).toBe('device-token/invalid');
    expect(consumed).toEqual([]);
  });

  it('a bad CSR is refused before the token is consumed', () => {
    expect(() => issuer.enroll({ v: 1, kind: 'device.enroll', csr: Buffer.from('junk'), token: TOKEN }, 'edge-1', clock.now())).toThrow(
      expect.objectContaining({ code: 'csr/malformed' }) as unknown as Error,
    );
    expect(consumed).toEqual([]);
  });

  it('the device must still exist and be assigned to the calling node', () => {
    resources.delete(`Device ${DEVICE}`);
    expect(refusal(() => issuer.enroll(enrollMsg({ token: TOKEN }), 'edge-1', clock.now())).code).toBe('device/unknown');
    device({ nodeName: 'edge-9' });
    expect(refusal(() => issuer.enroll(enrollMsg({ token: TOKEN }), 'edge-1', clock.now())).code).toBe('device/wrong-node');
  });

  it('revocation: a token made before revokedBefore is dead; a later one gets an SVID that is not itself revoked', () => {
    const revokedBefore = Math.floor(clock.now() / 1000) * 1000;
    device({}, revokedBefore);
    consumeAnswer = okToken(revokedBefore - 1);
    expect(refusal(() => issuer.enroll(enrollMsg({ token: TOKEN }), 'edge-1', clock.now())).code).toBe('device/revoked');
    // Same second as the revocation: the CA backdates NotBefore, the issuer signs late enough that it is not before revokedBefore.
    consumeAnswer = okToken(revokedBefore);
    const m = issuer.enroll(enrollMsg({ token: TOKEN }), 'edge-1', revokedBefore);
    expect(validate(m).leaf.notBefore).toBeGreaterThanOrEqual(revokedBefore);
  });
});

describe('factory enrolment', () => {
  it('a manufacturer chain to the model factory CA with the Device serialNumber enrols', () => {
    device({ factoryIdentity: { serialNumber: 'SN-0001' } });
    const m = issuer.enroll(enrollMsg({ device: DEVICE, factoryChainDer: [factoryLeafDer] }), 'edge-1', clock.now());
    expect(validate(m).spiffeId.toString()).toBe(deviceSpiffeId(td, DEVICE).toString());
    expect(logs.at(-1)).toMatchObject({ event: 'device.enrolled', method: 'factory', device: DEVICE, node: 'edge-1', factory_serial: 'SN-0001' });
  });

  it('refused: no factoryIdentity, another serial, no model, model without factory CAs, expired certificate, revoked device, other node', () => {
    const tryIt = (node = 'edge-1', at = clock.now()): { code: string; detail: Record<string, unknown> | undefined } =>
      refusal(() => issuer.enroll(enrollMsg({ device: DEVICE, factoryChainDer: [factoryLeafDer] }), node, at));
    expect(tryIt()).toMatchObject({ code: 'device/factory-refused', detail: { reason: 'the device has no factoryIdentity' } });
    device({ factoryIdentity: { serialNumber: 'SN-0002' } });
    expect(tryIt()).toMatchObject({ code: 'device/factory-refused', detail: { reason: 'factory serialNumber does not match the device' } });
    device({ factoryIdentity: { serialNumber: 'SN-0001' } });
    expect(tryIt('edge-2').code).toBe('device/wrong-node');
    expect(tryIt(undefined, parseCertificate(factoryLeafDer).notAfter + 1000)).toMatchObject({ code: 'device/factory-refused', detail: { reason: 'factory leaf outside its validity period' } });
    put('DeviceModel', 'default/thermometer', { spec: { properties: [] } });
    expect(tryIt()).toMatchObject({ code: 'device/factory-refused', detail: { reason: 'the device model lists no factory CAs' } });
    resources.delete('DeviceModel default/thermometer');
    expect(tryIt()).toMatchObject({ code: 'device/factory-refused', detail: { reason: 'the device model does not exist' } });
    put('DeviceModel', 'default/thermometer', { spec: { properties: [], factoryCAs: [factoryCaPem] } });
    device({ factoryIdentity: { serialNumber: 'SN-0001' } }, clock.now() - 60_000);
    expect(tryIt().code).toBe('device/revoked');
    // The node-facing message never carries the reason.
    expect(() => issuer.enroll(enrollMsg({ device: 'default/ghost', factoryChainDer: [factoryLeafDer] }), 'edge-1', clock.now())).toThrow(
      expect.objectContaining({ code: 'device/unknown' }) as unknown as Error,
    );
  });
});

describe('renewal', () => {
  const enrolled = (): DeviceSvidMessage => issuer.enroll(enrollMsg({ token: TOKEN }), 'edge-1', clock.now());

  it('the current SVID of exactly this device buys a new one', () => {
    const first = enrolled();
    clock.advance(HOUR);
    const m = issuer.renew(renewMsg(first.svidChainDer), 'edge-1', clock.now());
    expect(validate(m).leaf.notBefore).toBeGreaterThan(validate(first).leaf.notBefore);
    expect(logs.at(-1)).toMatchObject({ event: 'device.renewed', device: DEVICE, node: 'edge-1' });
  });

  it('refused: another device ID, an expired SVID, another trust domain CA, garbage, another node', () => {
    const first = enrolled();
    put('Device', 'default/thermo-2', { spec: { deviceModelRef: { name: 'thermometer' }, nodeName: 'edge-1', properties: [] } });
    expect(refusal(() => issuer.renew(renewMsg(first.svidChainDer, { device: 'default/thermo-2' }), 'edge-1', clock.now()))).toMatchObject({
      code: 'device/renew-refused',
      detail: { reason: 'the SVID is for another ID' },
    });
    expect(refusal(() => issuer.renew(renewMsg(first.svidChainDer), 'edge-1', first.expiresAt + 1000)).code).toBe('device/renew-refused');
    const other = new CaManager({ trustDomain: td, caTtlMs: 7 * DAY, maxX509SvidTtlMs: DAY }, new MemoryKeyStore());
    other.tick(clock.now());
    const foreign = other.issueX509SvidFromCsr({ spiffeId: deviceSpiffeId(td, DEVICE), csr: csr(), ttlMs: HOUR, now: clock.now() });
    expect(refusal(() => issuer.renew(renewMsg([foreign.der, ...other.intermediates(clock.now())]), 'edge-1', clock.now())).code).toBe('device/renew-refused');
    expect(refusal(() => issuer.renew(renewMsg([Buffer.from('junk')]), 'edge-1', clock.now())).code).toBe('device/renew-refused');
    expect(refusal(() => issuer.renew(renewMsg([]), 'edge-1', clock.now())).code).toBe('device/renew-refused');
    expect(refusal(() => issuer.renew(renewMsg(first.svidChainDer), 'edge-2', clock.now())).code).toBe('device/wrong-node');
  });

  it('an SVID whose NotBefore is before revokedBefore is device/revoked; one issued after it renews', () => {
    const first = enrolled();
    clock.advance(5000);
    const revokedBefore = Math.floor(clock.now() / 1000) * 1000;
    device({}, revokedBefore);
    expect(refusal(() => issuer.renew(renewMsg(first.svidChainDer), 'edge-1', clock.now())).code).toBe('device/revoked');
    consumeAnswer = okToken(clock.now());
    const fresh = enrolled();
    expect(issuer.renew(renewMsg(fresh.svidChainDer), 'edge-1', clock.now()).device).toBe(DEVICE);
  });
});
