/**
 * The node's enrolment endpoint (issue #6) with real HTTPS on 127.0.0.1: hostile input is refused with stable
 * codes before anything reaches the cloud; what the cloud signs is checked before it is handed out; renewals
 * need the current SVID over mTLS and stop at a revocation. The cloud is a relay port of ours that signs with
 * the test CA (the real cloud is covered by test/e2e/device-flow.e2e.test.ts); the device registry is the real
 * one over a fake store.
 */
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnrollServer, type EnrollServer } from '../../src/edge/devices/enroll-server.js';
import { createDeviceRegistry } from '../../src/edge/devices/registry.js';
import {
  buildCsr,
  certsFromPem,
  certToPem,
  derToPem,
  generateP256,
  mintX509SvidFromCsr,
  signerFromPrivateKey,
  SpiffeId,
  TrustDomain,
  x509AuthoritiesPem,
} from '../../src/identity/index.js';
import { NodeApiError, type DeviceEnrollMessage, type DeviceRenewMessage, type NodeApiMessage } from '../../src/protocol/index.js';
import type { LocalResource, StoreChange } from '../../src/edge/hub/store.js';
import { authority, leaf, nodeIdentity, TD, type Authority } from './eventbus-fixture.js';

const NODE = 'bus-node';
let ca: Authority;
let server: EnrollServer;
let port = 0;
const relayed: Array<DeviceEnrollMessage | DeviceRenewMessage> = [];
let refuseWith: string | undefined;
const resources = new Map<string, LocalResource>();
const logs: Record<string, unknown>[] = [];
const logger = { debug: () => {}, info: (o: Record<string, unknown>) => logs.push(o), warn: (o: Record<string, unknown>) => logs.push(o), error: (o: Record<string, unknown>) => logs.push(o) };
const registry = createDeviceRegistry({
  store: { list: (kind) => [...resources.values()].filter((r) => kind === undefined || r.kind === kind), get: (kind, name) => resources.get(`${kind}|${name}`) },
  nodeName: NODE,
  trustDomain: TD,
  logger,
});

function putDevice(name: string, extra: Record<string, unknown> = {}, spec: Record<string, unknown> = {}): void {
  const r: LocalResource = { kind: 'Device', name, version: resources.size + 1, data: { spec: { deviceModelRef: { name: 'm' }, nodeName: NODE, ...spec }, ...extra }, updatedAt: 0 };
  resources.set(`Device|${name}`, r);
  registry.applyChanges([{ op: 'put', resource: r } as StoreChange]);
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

function call(method: string, path: string, body?: string, o: { contentType?: string; cert?: string; key?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        ca: x509AuthoritiesPem(ca.bundle),
        checkServerIdentity: () => undefined,
        agent: false,
        headers: body === undefined ? {} : { 'content-type': o.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) },
        ...(o.cert === undefined ? {} : { cert: o.cert, key: o.key }),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (s: string) => (text += s));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const csr = (): { pem: string; key: ReturnType<typeof generateP256> } => {
  const key = generateP256();
  return { pem: derToPem(buildCsr(key), 'CERTIFICATE REQUEST'), key };
};
const code = (r: Reply): unknown => (r.body['error'] as { code?: string } | undefined)?.code;

beforeAll(async () => {
  ca = authority();
  putDevice('default/a');
  putDevice('default/f', {}, { factoryIdentity: { serialNumber: 'SN-1' } });
  server = createEnrollServer({
    listen: { host: '127.0.0.1', port: 0 },
    trustDomain: TD,
    identity: nodeIdentity(ca, NODE),
    devices: registry,
    clock: { now: () => Date.now() },
    logger,
    limits: { perAddressBurst: 40, perAddressPerSecond: 1 },
    async relay(m): Promise<NodeApiMessage> {
      relayed.push(m);
      if (refuseWith !== undefined) throw new NodeApiError(refuseWith as never, 'refused by the test cloud');
      const device = m.device ?? 'default/a';
      const issued = mintX509SvidFromCsr({ spiffeId: SpiffeId.parse(`spiffe://${TD.name}/edgeward/device/${device}`), csr: m.csr, issuer: { cert: ca.root.parsed, signer: signerFromPrivateKey(ca.key) }, now: Date.now(), ttlMs: 3_600_000 });
      return { v: 1, kind: 'device.svid', device, svidChainDer: [issued.der], expiresAt: issued.notAfter };
    },
  });
  port = (await server.start()).port;
});

afterAll(async () => {
  await server.close();
});

describe('enrolment endpoint', () => {
  it('serves the bundle and enrols with a token: the answer is the device SVID for the CSR key', async () => {
    const b = await call('GET', '/v1/device/bundle');
    expect(b.status).toBe(200);
    expect(b.body['keys']).toBeDefined();
    const c = csr();
    const r = await call('POST', '/v1/device/enroll', JSON.stringify({ token: 'ewdt_abcdefghijklmnopqrstuvwxyz0123456789', csr: c.pem }));
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body['spiffeId']).toBe(`spiffe://${TD.name}/edgeward/device/default/a`);
    const chain = certsFromPem(r.body['svidPem'] as string);
    expect(chain).toHaveLength(1);
    expect(logs.some((l) => l['event'] === 'device.enrolled' && JSON.stringify(l).includes('ewdt_') === false)).toBe(true);
  });

  it('refuses hostile input with stable codes before relaying anything', async () => {
    const before = relayed.length;
    const c = csr().pem;
    expect(code(await call('POST', '/v1/device/enroll', '{"token":', {}))).toBe('device-enroll/bad-request');
    expect(code(await call('POST', '/v1/device/enroll', JSON.stringify({ token: 'ewdt_abcdefghijklmnopqrstuvwxyz0123456789', csr: c, extra: 1 })))).toBe('device-enroll/bad-request');
    expect(code(await call('POST', '/v1/device/enroll', '{"a":1,"a":2}'))).toBe('device-enroll/bad-request');
    expect(code(await call('POST', '/v1/device/enroll', JSON.stringify({ token: 'short', csr: c })))).toBe('device-enroll/bad-request');
    expect(code(await call('POST', '/v1/device/enroll', JSON.stringify({ token: 'ewdt_abcdefghijklmnopqrstuvwxyz0123456789', csr: 'not a csr' })))).toBe('device-enroll/bad-request');
    expect((await call('POST', '/v1/device/enroll', 'x'.repeat(20_000))).status).toBe(413);
    expect((await call('POST', '/v1/device/enroll', '{}', { contentType: 'text/plain' })).status).toBe(415);
    expect((await call('GET', '/v1/device/enroll')).status).toBe(405);
    expect((await call('GET', '/nope')).status).toBe(404);
    // factory: an unknown device, a device without a factory identity, no client certificate
    expect(code(await call('POST', '/v1/device/enroll', JSON.stringify({ device: 'default/nobody', csr: c })))).toBe('device-enroll/no-client-certificate');
    expect(relayed.length).toBe(before);
    expect(logs.filter((l) => l['event'] === 'security.device_enroll_refused').length).toBeGreaterThanOrEqual(10);
  });

  it("passes the cloud's refusal code on (a used or foreign token is device-token/invalid)", async () => {
    refuseWith = 'device-token/invalid';
    try {
      const r = await call('POST', '/v1/device/enroll', JSON.stringify({ token: 'ewdt_abcdefghijklmnopqrstuvwxyz0123456789', csr: csr().pem }));
      expect(r.status).toBe(403);
      expect(code(r)).toBe('device-token/invalid');
    } finally {
      refuseWith = undefined;
    }
  });

  it('renews over mTLS with the current SVID; not after a revocation; not with another trust domain', async () => {
    const dev = leaf(ca, `spiffe://${TD.name}/edgeward/device/default/a`, { now: Date.now() - 60_000 });
    const mtls = { cert: certToPem(dev.cert.der), key: dev.key.export({ type: 'pkcs8', format: 'pem' }) as string };
    const ok = await call('POST', '/v1/device/renew', JSON.stringify({ csr: csr().pem }), mtls);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(relayed.at(-1)?.kind).toBe('device.renew');
    expect((await call('POST', '/v1/device/renew', JSON.stringify({ csr: csr().pem }))).status).toBe(401);
    const other = authority(undefined);
    const stranger = leaf(other, `spiffe://${TD.name}/edgeward/device/default/a`);
    expect(code(await call('POST', '/v1/device/renew', JSON.stringify({ csr: csr().pem }), { cert: certToPem(stranger.cert.der), key: stranger.key.export({ type: 'pkcs8', format: 'pem' }) as string }))).toBe('device/renew-refused');
    putDevice('default/a', { revokedBefore: Date.now() - 1000 });
    const revoked = await call('POST', '/v1/device/renew', JSON.stringify({ csr: csr().pem }), mtls);
    expect(revoked.status).toBe(403);
    expect(code(revoked)).toBe('device/revoked');
  });

  it('relays a factory enrolment with the manufacturer chain the handshake proved', async () => {
    const maker = authority(TrustDomain.parse('maker.example'));
    const idevid = leaf(maker, 'spiffe://maker.example/idevid/SN-1');
    const r = await call('POST', '/v1/device/enroll', JSON.stringify({ device: 'default/f', csr: csr().pem }), { cert: certToPem(idevid.cert.der), key: idevid.key.export({ type: 'pkcs8', format: 'pem' }) as string });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const m = relayed.at(-1) as DeviceEnrollMessage;
    expect(m.device).toBe('default/f');
    expect(m.factoryChainDer?.[0]?.equals(idevid.cert.der)).toBe(true);
    // a device without a factory identity cannot be enrolled this way
    expect(code(await call('POST', '/v1/device/enroll', JSON.stringify({ device: 'default/a', csr: csr().pem }), { cert: certToPem(idevid.cert.der), key: idevid.key.export({ type: 'pkcs8', format: 'pem' }) as string }))).toBe('device/factory-refused');
  });

  it('rate-limits a source address (429)', async () => {
    let limited = 0;
    for (let i = 0; i < 60 && limited === 0; i++) if ((await call('GET', '/v1/device/bundle')).status === 429) limited++;
    expect(limited).toBe(1);
  });
});

describe('device registry', () => {
  it('holds only devices of this node; a move to another node is a delete; a model change touches its devices', () => {
    const seen: string[] = [];
    const off = registry.onChange((c) => seen.push(`${c.op}:${c.fullName}`));
    putDevice('default/mover');
    expect(registry.get('default/mover')).toBeDefined();
    putDevice('default/mover', {}, { nodeName: 'other-node' });
    expect(registry.get('default/mover')).toBeUndefined();
    const model: LocalResource = { kind: 'DeviceModel', name: 'default/m', version: 99, data: { spec: { properties: [{ name: 't', type: 'FLOAT', accessMode: 'ReadOnly' }] } }, updatedAt: 0 };
    registry.applyChanges([{ op: 'put', resource: model } as StoreChange]);
    expect(registry.get('default/f')?.model?.properties[0]?.name).toBe('t');
    // invalid data is left out with a security event
    registry.applyChanges([{ op: 'put', resource: { kind: 'Device', name: 'default/bad', version: 100, data: { spec: { nodeName: NODE } }, updatedAt: 0 } } as StoreChange]);
    expect(registry.get('default/bad')).toBeUndefined();
    off();
    expect(seen).toContain('put:default/mover');
    expect(seen).toContain('delete:default/mover');
    expect(seen).toContain('put:default/f');
    expect(logs.some((l) => l['event'] === 'security.device_resource_invalid')).toBe(true);
  });
});
