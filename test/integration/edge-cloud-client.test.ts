/**
 * The edge's node-API client against real HTTPS servers on 127.0.0.1 (contract "Node API transport"):
 * the bundle is accepted only with the pinned digest; afterwards the server must present an X509-SVID of
 * that bundle whose SPIFFE ID is exactly spiffe://TD/edgeward/cloud (checked by ID, not host name), and
 * no request reaches a server that fails that check. Server `error` messages become CloudRefusedError
 * with the server's code.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bundleDigest,
  bundleToJson,
  CaManager,
  certToPem,
  derToPem,
  generateP256,
  ManualClock,
  MemoryKeyStore,
  SpiffeId,
  TrustDomain,
} from '../../src/identity/index.js';
import { CloudClient, CloudClientError, CloudRefusedError, JoinError, parseCloudAddress } from '../../src/edge/index.js';
import { NODE_API_VERSION } from '../../src/protocol/index.js';

const TD = TrustDomain.parse('example.org');
const clock = new ManualClock(Date.now());

function makeCa(): CaManager {
  const ca = new CaManager({ trustDomain: TD, caTtlMs: 24 * 3_600_000 }, new MemoryKeyStore());
  ca.tick(clock.now());
  return ca;
}

interface TestServer {
  server: Server;
  address: string;
  requests: Array<{ method: string; url: string; body: string }>;
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r())))));
});

async function serve(ca: CaManager, id: string, reply: (url: string) => { status: number; body: string }): Promise<TestServer> {
  const key = generateP256();
  const svid = ca.issueX509Svid({ spiffeId: SpiffeId.parse(id), spki: key.spki, ttlMs: 3_600_000, now: clock.now() });
  const requests: TestServer['requests'] = [];
  const server = createServer(
    {
      minVersion: 'TLSv1.3',
      cert: [svid.der, ...ca.intermediates(clock.now())].map((d) => certToPem(d)).join(''),
      key: derToPem(key.pkcs8(), 'PRIVATE KEY'),
    },
    (req, res) => {
      let body = '';
      req.on('data', (b: Buffer) => (body += b.toString()));
      req.on('end', () => {
        requests.push({ method: req.method ?? '', url: req.url ?? '', body });
        const r = reply(req.url ?? '');
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(r.body);
      });
    },
  );
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

const refusal = JSON.stringify({ v: 1, kind: 'error', code: 'join-token/used', message: 'join token was already used' });
const begin = { v: NODE_API_VERSION, kind: 'attest.begin', method: 'join_token', nodeName: 'n1', payload: { token: 'x' }, csr: Buffer.from([0x30, 0x00]) } as const;

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure');
}

describe('CloudClient', () => {
  it('accepts the bundle only with the pinned digest (constant-time compare), else join/bundle-digest-mismatch', async () => {
    const ca = makeCa();
    const s = await serve(ca, `spiffe://${TD.name}/edgeward/cloud`, () => ({ status: 200, body: bundleToJson(ca.bundle()) }));
    const good = new CloudClient({ address: parseCloudAddress(s.address), clock });
    expect(bundleDigest(await good.fetchBundle(bundleDigest(ca.bundle())))).toBe(bundleDigest(ca.bundle()));
    good.close();
    const bad = new CloudClient({ address: parseCloudAddress(s.address), clock });
    const e = await failure(bad.fetchBundle('sha256:' + 'a'.repeat(64)));
    expect(e).toBeInstanceOf(JoinError);
    expect((e as JoinError).code).toBe('join/bundle-digest-mismatch');
    bad.close();
    expect(s.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/bundle', 'GET /v1/bundle']);
  });

  it('sends to the cloud SVID and maps a server error to CloudRefusedError with the server code', async () => {
    const ca = makeCa();
    const s = await serve(ca, `spiffe://${TD.name}/edgeward/cloud`, () => ({ status: 403, body: refusal }));
    const c = new CloudClient({ address: parseCloudAddress(s.address), clock, bundle: ca.bundle() });
    const e = await failure(c.attest(begin));
    c.close();
    expect(e).toBeInstanceOf(CloudRefusedError);
    expect((e as CloudRefusedError).code).toBe('join-token/used');
    expect((e as CloudRefusedError).status).toBe(403);
    expect(s.requests).toHaveLength(1);
  });

  it('never sends a request to a server whose SVID is not the cloud ID, or not of the pinned bundle', async () => {
    const ca = makeCa();
    // A valid SVID of the same trust domain, but a workload's, not the cloud's (checked by ID).
    const other = await serve(ca, `spiffe://${TD.name}/edgeward/node/n1`, () => ({ status: 403, body: refusal }));
    // The cloud's ID, signed by a CA that is not in the pinned bundle.
    const rogue = await serve(makeCa(), `spiffe://${TD.name}/edgeward/cloud`, () => ({ status: 403, body: refusal }));
    for (const s of [other, rogue]) {
      const c = new CloudClient({ address: parseCloudAddress(s.address), clock, bundle: ca.bundle() });
      const e = await failure(c.attest(begin));
      c.close();
      expect(e).toBeInstanceOf(CloudClientError);
      expect((e as CloudClientError).code).toBe('cloud-client/untrusted-server');
      expect(s.requests).toEqual([]);
    }
  });

  it('refuses an mTLS call before it has node credentials, and bad addresses', async () => {
    const c = new CloudClient({ address: parseCloudAddress('127.0.0.1:1'), clock, bundle: makeCa().bundle() });
    expect(((await failure(c.node({ v: 1, kind: 'entries.request' }))) as CloudClientError).code).toBe('cloud-client/not-ready');
    c.close();
    for (const bad of ['host', 'host:0', 'host:70000', '[zz]:1', 'a b:1']) expect(() => parseCloudAddress(bad)).toThrow(CloudClientError);
    expect(parseCloudAddress('[::1]:8443')).toMatchObject({ host: '::1', port: 8443 });
  });
});
