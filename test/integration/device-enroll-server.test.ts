/**
 * The node's enrolment endpoint (issue #6) with real HTTPS on 127.0.0.1: hostile input is refused with stable
 * codes before anything reaches the cloud; what the cloud signs is checked before it is handed out; renewals
 * need the current SVID over mTLS and stop at a revocation. The cloud is a relay port of ours that signs with
 * the test CA (the real cloud is covered by test/e2e/device-flow.e2e.test.ts); the device registry is the real
 * one over a fake store.
 */
import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnrollServer, type EnrollServer } from '../../src/edge/devices/enroll-server.js';
import { createDeviceRegistry } from '../../src/edge/devices/registry.js';
import {
  buildCsr,
  certsFromPem,
  certToPem,
  derToPem,
  generateP256,
  ManualClock,
  mintX509SvidFromCsr,
  signerFromPrivateKey,
  SpiffeId,
  TrustDomain,
  x509AuthoritiesPem,
} from '../../src/identity/index.js';
import { NodeApiError, type DeviceEnrollMessage, type DeviceRenewMessage, type NodeApiMessage } from '../../src/protocol/index.js';
import type { LocalResource, StoreChange } from '../../src/edge/hub/store.js';
import { CloudClientError, CloudRefusedError } from '../../src/edge/cloud-client/errors.js';
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
  headers: Record<string, string | string[] | undefined>;
}

function call(method: string, path: string, body?: string, o: { contentType?: string; cert?: string; key?: string; port?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: o.port ?? port,
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
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers }));
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

describe('enrolment endpoint: what the cloud answers, limits, rotation', () => {
  const TOKEN = 'ewdt_abcdefghijklmnopqrstuvwxyz0123456789';
  let other: EnrollServer;
  let otherPort = 0;
  const clock = new ManualClock(Date.now());
  let answer: (m: DeviceEnrollMessage | DeviceRenewMessage) => Promise<NodeApiMessage>;
  let identity: ReturnType<typeof nodeIdentity>;
  const sign = (m: DeviceEnrollMessage | DeviceRenewMessage, o: { device?: string; csr?: Buffer; by?: Authority } = {}): NodeApiMessage => {
    const by = o.by ?? ca;
    const device = o.device ?? m.device ?? 'default/a';
    const issued = mintX509SvidFromCsr({ spiffeId: SpiffeId.parse(`spiffe://${TD.name}/edgeward/device/${device}`), csr: o.csr ?? m.csr, issuer: { cert: by.root.parsed, signer: signerFromPrivateKey(by.key) }, now: Date.now(), ttlMs: 3_600_000 });
    return { v: 1, kind: 'device.svid', device, svidChainDer: [issued.der], expiresAt: issued.notAfter };
  };
  const enrol = (o: { port?: number } = {}): Promise<Reply> => call('POST', '/v1/device/enroll', JSON.stringify({ token: TOKEN, csr: csr().pem }), { port: o.port ?? otherPort });

  beforeAll(async () => {
    identity = nodeIdentity(ca, NODE);
    other = createEnrollServer({
      listen: { host: '127.0.0.1', port: 0 },
      trustDomain: TD,
      identity,
      devices: registry,
      clock,
      logger,
      limits: { perAddressBurst: 3, perAddressPerSecond: 1, globalBurst: 1000, globalPerSecond: 1000, timeoutMs: 600 },
      relay: (m) => answer(m),
    });
    otherPort = (await other.start()).port;
  });
  afterAll(async () => {
    await other.close();
  });
  const fresh = (): void => clock.advance(10_000); // refills the per-address bucket

  it("checks what the cloud signed before handing it out: another key, another device, another CA are 502", async () => {
    const wrong: Array<[string, (m: DeviceEnrollMessage | DeviceRenewMessage) => NodeApiMessage, number, string]> = [
      ['another key', (m) => sign(m, { csr: buildCsr(generateP256()) }), 502, 'device-enroll/bad-cloud-reply'],
      // the reply names default/f (a device here) but the SVID is default/a's
      ['another SPIFFE ID', (m) => ({ ...sign(m, { device: 'default/a' }), device: 'default/f' }) as NodeApiMessage, 502, 'device-enroll/bad-cloud-reply'],
      ['another CA', (m) => sign(m, { by: authority() }), 502, 'device-enroll/bad-cloud-reply'],
      ['a device not on this node', (m) => sign(m, { device: 'default/elsewhere' }), 404, 'device/unknown'],
    ];
    for (const [what, f, status, c] of wrong) {
      fresh();
      answer = async (m) => f(m);
      const r = await enrol();
      expect({ what, status: r.status, code: code(r) }).toEqual({ what, status, code: c });
      expect(r.body['svidPem']).toBeUndefined();
    }
    fresh();
    answer = async () => ({ v: 1, kind: 'renew.result' } as unknown as NodeApiMessage);
    expect(code(await enrol())).toBe('device-enroll/bad-cloud-reply');
  });

  it('maps what the cloud refused: its device codes as they are, CSR codes 400, busy and unreachable 503 (Retry-After), the node refused 502', async () => {
    const cases: Array<[CloudRefusedError | CloudClientError, number, string]> = [
      [new CloudRefusedError('device/wrong-node', 'not your device', 403), 403, 'device/wrong-node'],
      [new CloudRefusedError('device/factory-refused', 'no', 403), 403, 'device/factory-refused'],
      [new CloudRefusedError('csr/bad-signature', 'bad', 400), 400, 'csr/bad-signature'],
      [new CloudRefusedError('rate-limit/exceeded', 'slow down', 429), 503, 'device-enroll/cloud-busy'],
      [new CloudRefusedError('node/banned', 'banned', 403), 502, 'device-enroll/cloud-refused'],
      [new CloudClientError('cloud-client/unreachable', 'ECONNREFUSED'), 503, 'device-enroll/cloud-unreachable'],
      [new CloudClientError('cloud-client/timeout', 'late'), 503, 'device-enroll/cloud-unreachable'],
    ];
    for (const [e, status, c] of cases) {
      fresh();
      answer = () => Promise.reject(e);
      const r = await enrol();
      expect({ status: r.status, code: code(r) }).toEqual({ status, code: c });
      if (status === 503) expect(r.headers['retry-after']).toBe('1');
      expect(logs.filter((l) => l['event'] === 'security.device_enroll_refused').at(-1)).toMatchObject({ code: c, reason: `cloud:${e.code}` });
    }
    expect(other.stats().refused['device-enroll/cloud-unreachable']).toBe(2);
  });

  it('rate limits per source address on the injected clock: 429 with Retry-After, refilled as time passes', async () => {
    fresh();
    answer = async (m) => sign(m);
    for (let i = 0; i < 3; i++) expect((await call('GET', '/v1/device/bundle', undefined, { port: otherPort })).status).toBe(200);
    const limited = await enrol();
    expect(limited.status).toBe(429);
    expect(code(limited)).toBe('device-enroll/rate-limited');
    expect(limited.headers['retry-after']).toBe('1');
    clock.advance(1000); // one token back
    expect((await enrol()).status).toBe(200);
    expect((await enrol()).status).toBe(429);
  });

  it('a chunked body over 16 KiB is answered 413 (read and discarded, not buffered)', async () => {
    fresh();
    const r = await new Promise<Reply>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: otherPort, method: 'POST', path: '/v1/device/enroll', ca: x509AuthoritiesPem(ca.bundle), checkServerIdentity: () => undefined, agent: false, headers: { 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (t: string) => (text += t));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, headers: res.headers }));
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('{"token":"' + 'x'.repeat(4000));
      req.end();
    });
    expect(r.status).toBe(413);
    expect(code(r)).toBe('device-enroll/too-large');
  });

  it('closes a connection that sends nothing after the handshake (timeouts)', async () => {
    const closedAfter = await new Promise<number>((resolve, reject) => {
      const started = Date.now();
      const s = tlsConnect({ host: '127.0.0.1', port: otherPort, ca: x509AuthoritiesPem(ca.bundle), checkServerIdentity: () => undefined });
      s.on('error', () => undefined);
      s.on('close', () => resolve(Date.now() - started));
      setTimeout(() => reject(new Error('the idle connection was not closed')), 5000).unref();
    });
    expect(closedAfter).toBeLessThan(5000);
  });

  it('serves the rotated node SVID to new connections (setSecureContext on identity change)', async () => {
    const served = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: otherPort, ca: x509AuthoritiesPem(ca.bundle), checkServerIdentity: () => undefined }, () => {
          resolve(s.getPeerCertificate().serialNumber.toLowerCase());
          s.destroy();
        });
        s.on('error', reject);
      });
    const norm = (hex: string): string => hex.toLowerCase().replace(/^0+/, '');
    const before = await served();
    expect(norm(before)).toBe(norm(identity.current().cert.serialHex));
    const next = identity.rotate();
    const after = await served();
    expect(norm(after)).toBe(norm(next.cert.serialHex));
    expect(after).not.toBe(before);
  });
});
