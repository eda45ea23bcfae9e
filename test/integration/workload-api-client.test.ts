/**
 * WorkloadApiClient against (a) our Workload API server over a real Unix socket and (b) a hostile gRPC
 * server that sends malformed responses, which the client must refuse (strict parsing with the identity
 * core: X509-SVID 2/4, Workload API 5.2/6, JWT-SVID 3), and error statuses it must map and retry or not
 * (Workload Endpoint App. A; go-spiffe linear backoff 1 s .. 30 s).
 */
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { certToPem, SpiffeId, validateJwtSvidSync, validateX509Svid } from '../../src/identity/index.js';
import { createWorkloadApiServer, type WorkloadApiServer } from '../../src/edge/workload-api/server.js';
import {
  parseX509SvidResponse,
  WorkloadApiClient,
  WorkloadApiClientError,
  workloadApiServiceDefinition,
  type ClientTimers,
  type JWTSVIDResponse,
  type WatchErrorInfo,
  type X509Context,
  type X509SVIDMessage,
  type X509SVIDResponse,
} from '../../src/protocol/index.js';
import { tempDir } from '../helpers/index.js';
import { FakeSource, sleep, TD } from './workload-api-fixture.js';

const isLinux = process.platform === 'linux';
const WEB = 'spiffe://example.org/web';
const DB = 'spiffe://example.org/db';

class FakeTimers implements ClientTimers {
  pending: Array<{ fn: () => void; ms: number; id: number }> = [];
  delays: number[] = [];
  #next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.pending.push({ fn, ms, id });
    this.delays.push(ms);
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending = this.pending.filter((p) => p.id !== h);
  }
  /** Run every pending timer. */
  fire(): void {
    const p = this.pending;
    this.pending = [];
    for (const t of p) t.fn();
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function ourServer(withEntry = true): Promise<{ source: FakeSource; server: WorkloadApiServer; uri: string }> {
  const dir = await tempDir('edgeward-wapic-');
  const socketPath = join(dir, 'api.sock');
  const source = new FakeSource();
  if (withEntry) source.addEntry({ id: 'web', spiffeId: WEB, hint: 'web' }, false);
  const server = createWorkloadApiServer({ source, socketPath });
  await server.start();
  cleanups.push(() => server.close());
  return { source, server, uri: `unix://${socketPath}` };
}

function client(uri: string, timers?: ClientTimers, backoff?: { initialMs?: number; maxMs?: number }): WorkloadApiClient {
  const c = new WorkloadApiClient(uri, { ...(timers ? { timers } : {}), ...(backoff ? { backoff } : {}), callTimeoutMs: 5000 });
  cleanups.push(() => c.close());
  return c;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timeout');
    await sleep(5);
  }
}

async function rejection(p: Promise<unknown>): Promise<WorkloadApiClientError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WorkloadApiClientError);
    return e as WorkloadApiClientError;
  }
  throw new Error('expected a rejection');
}

describe.runIf(isLinux)('WorkloadApiClient against the Workload API server', () => {
  it('fetchX509Svid: a strictly parsed context whose SVID validates against its bundle', async () => {
    const { source, uri } = await ourServer();
    source.addEntry({ id: 'db', spiffeId: DB, hint: 'db' });
    const c = client(uri);
    const ctx = await c.fetchX509Svid();
    expect(ctx.svids.map((s) => s.spiffeId.toString())).toEqual([WEB, DB]);
    expect(ctx.defaultSvid.spiffeId.toString()).toBe(WEB);
    expect(ctx.defaultSvid.hint).toBe('web');
    expect(ctx.defaultSvid.privateKey.type).toBe('private');
    expect(ctx.bundles.has(TD)).toBe(true);
    expect(ctx.federatedTrustDomains).toEqual([]);
    const v = validateX509Svid(ctx.defaultSvid.chainDer, ctx.bundles, Date.now());
    expect(v.spiffeId.toString()).toBe(WEB);
  });

  it('fetchX509Bundles and fetchJwtBundles give bundle sets with the own trust domain', async () => {
    const { uri } = await ourServer();
    const c = client(uri);
    const x = await c.fetchX509Bundles();
    expect(x.get(TD)?.x509Authorities.length).toBeGreaterThan(0);
    const j = await c.fetchJwtBundles();
    expect(j.get(TD)?.jwtAuthorities.size).toBeGreaterThan(0);
    expect(j.get(TD)?.x509Authorities.length).toBe(0);
  });

  it('fetchJwtSvid / validateJwtSvid round trip; local validation with the fetched JWT bundle agrees', async () => {
    const { source, uri } = await ourServer();
    source.addEntry({ id: 'db', spiffeId: DB, hint: 'db' });
    const c = client(uri);
    const all = await c.fetchJwtSvid(['svc']);
    expect(all.map((s) => s.spiffeId.toString())).toEqual([WEB, DB]);
    const [db] = await c.fetchJwtSvid(['svc'], DB);
    expect(db?.spiffeId.toString()).toBe(DB);
    expect(db?.audience).toEqual(['svc']);
    expect(db!.expiresAt).toBeGreaterThan(Date.now());
    const v = await c.validateJwtSvid(db!.token, 'svc');
    expect(v.spiffeId.toString()).toBe(DB);
    expect(v.claims['aud']).toEqual(['svc']);
    expect(v.claims['sub']).toBe(DB);
    const bundles = await c.fetchJwtBundles();
    expect(validateJwtSvidSync(db!.token, { audience: 'svc', bundles, now: Date.now() }).spiffeId.toString()).toBe(DB);

    expect((await rejection(c.validateJwtSvid(db!.token, 'other'))).code).toBe('workload-api/invalid-argument');
    expect((await rejection(c.fetchJwtSvid(['svc'], 'spiffe://example.org/admin'))).code).toBe('workload-api/permission-denied');
    expect((await rejection(c.fetchJwtSvid([]))).code).toBe('workload-api/bad-request');
    expect((await rejection(c.fetchJwtSvid(['svc'], 'nope'))).code).toBe('workload-api/bad-request');
    expect((await rejection(c.validateJwtSvid('', 'svc'))).code).toBe('workload-api/bad-request');
  });

  it('a caller without identity gets typed permission-denied errors', async () => {
    const { uri } = await ourServer(false);
    const c = client(uri);
    const e = await rejection(c.fetchX509Svid());
    expect(e.code).toBe('workload-api/permission-denied');
    expect(e.message).toContain('no identity issued');
    expect(e.detail).toMatchObject({ grpc_code: grpc.status.PERMISSION_DENIED, method: 'FetchX509SVID' });
    expect((await rejection(c.fetchX509Bundles())).code).toBe('workload-api/permission-denied');
    expect((await rejection(c.fetchJwtBundles())).code).toBe('workload-api/permission-denied');
  });

  it('watchX509Svid: updates on change, PermissionDenied retried with linear backoff, recovers', async () => {
    const { source, uri } = await ourServer();
    const timers = new FakeTimers();
    const c = client(uri, timers);
    const updates: X509Context[] = [];
    const errors: Array<[string, WatchErrorInfo]> = [];
    const w = c.watchX509Svid(
      (ctx) => updates.push(ctx),
      (e, info) => errors.push([e.code, info]),
    );
    await waitFor(() => updates.length === 1);
    source.addEntry({ id: 'db', spiffeId: DB, hint: 'db' });
    await waitFor(() => updates.length === 2);
    expect(updates[1]!.svids.map((s) => s.spiffeId.toString())).toEqual([WEB, DB]);

    source.clearEntries(); // stream ends with PermissionDenied
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toEqual(['workload-api/permission-denied', { retrying: true, delayMs: 1000 }]);
    timers.fire(); // reconnect: still no identity
    await waitFor(() => errors.length === 2);
    expect(errors[1]![1].delayMs).toBe(2000);
    source.addEntry({ id: 'web', spiffeId: WEB, hint: 'web' });
    timers.fire();
    await waitFor(() => updates.length === 3);
    expect(updates[2]!.svids.map((s) => s.spiffeId.toString())).toEqual([WEB]);
    // after a good update the backoff starts again at 1 s
    source.clearEntries();
    await waitFor(() => errors.length === 3);
    expect(errors[2]![1].delayMs).toBe(1000);
    w.close();
    expect(timers.pending).toEqual([]);
  });

  it('watch backoff is linear and capped; close() stops everything', async () => {
    const { uri } = await ourServer(false);
    const timers = new FakeTimers();
    const c = client(uri, timers, { initialMs: 1000, maxMs: 2500 });
    const errors: WatchErrorInfo[] = [];
    c.watchJwtBundles(
      () => {},
      (_e, info) => errors.push(info),
    );
    for (let i = 1; i <= 4; i++) {
      await waitFor(() => errors.length === i);
      timers.fire();
    }
    expect(errors.map((e) => e.delayMs)).toEqual([1000, 2000, 2500, 2500]);
    c.close();
    expect(timers.pending).toEqual([]);
    expect((await rejection(c.fetchX509Svid())).code).toBe('workload-api/closed');
    expect(() => c.watchX509Svid(() => {}, () => {})).toThrow(expect.objectContaining({ code: 'workload-api/closed' }));
  });

  it('fromEnv uses SPIFFE_ENDPOINT_SOCKET when no explicit endpoint is given', async () => {
    const { uri } = await ourServer();
    const c = WorkloadApiClient.fromEnv(undefined, {}, { SPIFFE_ENDPOINT_SOCKET: uri });
    cleanups.push(() => c.close());
    expect((await c.fetchX509Svid()).defaultSvid.spiffeId.toString()).toBe(WEB);
    expect(() => WorkloadApiClient.fromEnv(undefined, {}, {})).toThrow(expect.objectContaining({ code: 'endpoint/missing' }));
  });
});

// ---------------------------------------------------------------------------------------------------
// A hostile server: whatever `behave` says.

type Behaviour = {
  x509?: (call: grpc.ServerWritableStream<unknown, X509SVIDResponse>) => void;
  jwt?: (cb: grpc.sendUnaryData<JWTSVIDResponse>) => void;
  seenMetadata: grpc.Metadata[];
};

async function hostileServer(): Promise<{ uri: string; behave: Behaviour }> {
  const dir = await tempDir('edgeward-wapih-');
  const path = join(dir, 'evil.sock');
  const behave: Behaviour = { seenMetadata: [] };
  const server = new grpc.Server();
  const status = (code: grpc.status) => (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code, details: 'nope' });
  server.addService(workloadApiServiceDefinition(), {
    FetchX509SVID: (call: grpc.ServerWritableStream<unknown, X509SVIDResponse>) => {
      behave.seenMetadata.push(call.metadata);
      (behave.x509 ?? status(grpc.status.UNAVAILABLE))(call);
    },
    FetchX509Bundles: status(grpc.status.INVALID_ARGUMENT),
    FetchJWTBundles: status(grpc.status.UNIMPLEMENTED),
    FetchJWTSVID: (call: grpc.ServerUnaryCall<unknown, JWTSVIDResponse>, cb: grpc.sendUnaryData<JWTSVIDResponse>) => {
      behave.seenMetadata.push(call.metadata);
      behave.jwt?.(cb);
    },
    ValidateJWTSVID: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.INTERNAL, details: 'boom' }),
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
  );
  cleanups.push(() => server.forceShutdown());
  return { uri: `unix://${path}`, behave };
}

function goodMessage(source: FakeSource, ids: string[]): X509SVIDResponse {
  ids.forEach((id, i) => source.addEntry({ id: `e${i}`, spiffeId: id, hint: `h${i}` }, false));
  return {
    svids: ids.map((_, i) => {
      const v = source.svidOf(`e${i}`)!;
      return { spiffe_id: v.spiffeId, x509_svid: Buffer.concat(v.chainDer), x509_svid_key: v.keyPkcs8, bundle: Buffer.concat(v.bundleDer), hint: v.hint };
    }),
    crl: [],
    federated_bundles: {},
  };
}

describe('strict response parsing (parseX509SvidResponse)', () => {
  const source = new FakeSource();
  const good = goodMessage(source, [WEB, DB]);
  const mutate = (f: (m: X509SVIDResponse) => void): X509SVIDResponse => {
    const m: X509SVIDResponse = { ...good, svids: good.svids.map((s) => ({ ...s })), federated_bundles: { ...good.federated_bundles } };
    f(m);
    return m;
  };
  const sv = (m: X509SVIDResponse, i: number): X509SVIDMessage => m.svids[i]!;
  const refused = (m: X509SVIDResponse): string => {
    try {
      parseX509SvidResponse(m);
    } catch (e) {
      expect(e).toBeInstanceOf(WorkloadApiClientError);
      expect((e as WorkloadApiClientError).code).toBe('workload-api/bad-response');
      return (e as Error).message;
    }
    throw new Error('accepted');
  };

  it('accepts the well-formed response', () => {
    expect(parseX509SvidResponse(good).svids.length).toBe(2);
  });

  it('refuses every broken rule (X509-SVID 2/4, Workload API 5.2)', () => {
    const key = createPrivateKey({ key: good.svids[0]!.x509_svid_key, format: 'der', type: 'pkcs8' });
    const other = new FakeSource();
    other.addEntry({ id: 'x', spiffeId: WEB, hint: '' }, false);
    expect(refused(mutate((m) => (m.svids = [])))).toContain('svids is empty');
    expect(refused(mutate((m) => (sv(m, 0).spiffe_id = DB)))).toContain("URI SAN");
    expect(refused(mutate((m) => (sv(m, 0).spiffe_id = 'spiffe://example.org')))).toContain('URI SAN');
    expect(refused(mutate((m) => (sv(m, 0).spiffe_id = 'not a uri')))).toContain('spiffe_id');
    expect(refused(mutate((m) => (sv(m, 0).x509_svid_key = good.svids[1]!.x509_svid_key)))).toContain('does not match');
    expect(refused(mutate((m) => (sv(m, 0).x509_svid_key = key.export({ type: 'sec1', format: 'der' }))))).toContain('PKCS#8');
    expect(
      refused(mutate((m) => (sv(m, 0).x509_svid_key = key.export({ type: 'pkcs8', format: 'der', cipher: 'aes-256-cbc', passphrase: 'x' })))),
    ).toContain('PKCS#8');
    expect(refused(mutate((m) => (sv(m, 0).x509_svid_key = Buffer.alloc(0))))).toContain('empty');
    const pem = Buffer.from(certToPem(good.svids[0]!.x509_svid.subarray(0, 0x400)));
    expect(refused(mutate((m) => (sv(m, 0).x509_svid = pem)))).toContain('DER');
    expect(refused(mutate((m) => (sv(m, 0).x509_svid = Buffer.concat([good.svids[0]!.x509_svid, Buffer.from([0x30])]))))).toContain('DER');
    // leaf not first: the CA certificate first
    const [leafLen] = [parseX509SvidResponse(good).svids[0]!.chainDer[0]!.length];
    const swapped = Buffer.concat([good.svids[0]!.x509_svid.subarray(leafLen), good.svids[0]!.x509_svid.subarray(0, leafLen)]);
    expect(refused(mutate((m) => (sv(m, 0).x509_svid = swapped)))).toContain('not an X509-SVID');
    // the bundle holds a leaf, not CA certificates
    expect(refused(mutate((m) => (sv(m, 0).bundle = good.svids[1]!.x509_svid.subarray(0, parseX509SvidResponse(good).svids[1]!.chainDer[0]!.length))))).toContain('not a CA');
    expect(refused(mutate((m) => (sv(m, 0).bundle = Buffer.alloc(0))))).toContain('empty');
    expect(refused(mutate((m) => (sv(m, 1).hint = sv(m, 0).hint)))).toContain('hint');
    expect(refused(mutate((m) => (m.federated_bundles = { 'other.org': good.svids[0]!.bundle })))).toContain('canonical');
    expect(refused(mutate((m) => (m.federated_bundles = { 'spiffe://Other.org': good.svids[0]!.bundle })))).toContain('trust domain');
    expect(refused(mutate((m) => (m.federated_bundles = { [TD.idString]: good.svids[0]!.bundle })))).toContain('own trust domain');
    // an SVID whose chain and key come from a foreign CA still parses (trust is the relying party's job) ...
    const foreign = other.svidOf('x')!;
    const fm = mutate((m) => {
      sv(m, 0).x509_svid = Buffer.concat(foreign.chainDer);
      sv(m, 0).x509_svid_key = foreign.keyPkcs8;
    });
    const ctx = parseX509SvidResponse(fm);
    // ... but does not validate against the bundle the response carries
    expect(() => validateX509Svid(ctx.svids[0]!.chainDer, ctx.bundles, Date.now())).toThrow();
    // federated bundles are accepted when canonical
    const ok = parseX509SvidResponse(mutate((m) => (m.federated_bundles = { 'spiffe://other.org': Buffer.concat(other.ca.x509Authorities()) })));
    expect(ok.federatedTrustDomains.map((t) => t.name)).toEqual(['other.org']);
    expect(ok.bundles.has('other.org')).toBe(true);
  });
});

describe.runIf(isLinux)('WorkloadApiClient against a hostile server', () => {
  it('sends the security header on every call', async () => {
    const { uri, behave } = await hostileServer();
    const c = client(uri);
    await rejection(c.fetchX509Svid());
    behave.jwt = (cb) => cb({ code: grpc.status.UNAVAILABLE, details: 'x' });
    await rejection(c.fetchJwtSvid(['a']));
    expect(behave.seenMetadata.map((m) => m.get('workload.spiffe.io'))).toEqual([['true'], ['true']]);
  });

  it('maps gRPC codes to typed errors', async () => {
    const { uri } = await hostileServer();
    const c = client(uri);
    expect((await rejection(c.fetchX509Svid())).code).toBe('workload-api/unavailable');
    expect((await rejection(c.fetchX509Bundles())).code).toBe('workload-api/invalid-argument');
    expect((await rejection(c.fetchJwtBundles())).code).toBe('workload-api/unimplemented');
    const e = await rejection(c.validateJwtSvid('a.b.c', 'x'));
    expect(e.code).toBe('workload-api/rpc-failed');
    expect(e.detail).toMatchObject({ grpc_code: grpc.status.INTERNAL });
  });

  it('refuses malformed messages and a stream that ends without one', async () => {
    const { uri, behave } = await hostileServer();
    const source = new FakeSource();
    const good = goodMessage(source, [WEB]);
    const c = client(uri);
    behave.x509 = (call) => {
      call.write({ ...good, svids: [{ ...good.svids[0]!, spiffe_id: DB }] });
      call.end();
    };
    const e = await rejection(c.fetchX509Svid());
    expect(e.code).toBe('workload-api/bad-response');
    expect(e.message).toContain('URI SAN');
    behave.x509 = (call) => call.end();
    expect((await rejection(c.fetchX509Svid())).code).toBe('workload-api/bad-response');
    behave.x509 = (call) => {
      call.write(good);
    };
    expect((await c.fetchX509Svid()).defaultSvid.spiffeId.toString()).toBe(WEB);

    // JWT-SVID responses: sub must equal spiffe_id, aud must contain the audience
    const token = source.ca.mintJwtSvid({ spiffeId: SpiffeId.parse(WEB), audience: ['a'], ttlMs: 60_000, now: Date.now() });
    behave.jwt = (cb) => cb(null, { svids: [{ spiffe_id: DB, svid: token, hint: '' }] });
    expect((await rejection(c.fetchJwtSvid(['a']))).message).toContain('sub');
    behave.jwt = (cb) => cb(null, { svids: [{ spiffe_id: WEB, svid: token, hint: '' }] });
    expect((await rejection(c.fetchJwtSvid(['b']))).message).toContain('aud');
    expect((await rejection(c.fetchJwtSvid(['a'], DB))).code).toBe('workload-api/bad-response');
    behave.jwt = (cb) => cb(null, { svids: [{ spiffe_id: WEB, svid: 'x.y', hint: '' }] });
    expect((await rejection(c.fetchJwtSvid(['a']))).code).toBe('workload-api/bad-response');
    behave.jwt = (cb) => cb(null, { svids: [] });
    expect((await rejection(c.fetchJwtSvid(['a']))).code).toBe('workload-api/bad-response');
    behave.jwt = (cb) => cb(null, { svids: [{ spiffe_id: WEB, svid: token, hint: 'h' }] });
    expect((await c.fetchJwtSvid(['a']))[0]?.hint).toBe('h');
  });

  it('a watch stops for good on InvalidArgument and Unimplemented (not retried)', async () => {
    const { uri } = await hostileServer();
    const timers = new FakeTimers();
    const c = client(uri, timers);
    const errors: Array<[string, WatchErrorInfo]> = [];
    c.watchX509Bundles(
      () => {},
      (e, info) => errors.push([e.code, info]),
    );
    c.watchJwtBundles(
      () => {},
      (e, info) => errors.push([e.code, info]),
    );
    await waitFor(() => errors.length === 2);
    expect(errors.sort()).toEqual([
      ['workload-api/invalid-argument', { retrying: false }],
      ['workload-api/unimplemented', { retrying: false }],
    ]);
    expect(timers.pending).toEqual([]);
  });

  it('a watch reports a bad message, keeps the stream, and delivers the next good one', async () => {
    const { uri, behave } = await hostileServer();
    const good = goodMessage(new FakeSource(), [WEB]);
    behave.x509 = (call) => {
      call.write({ ...good, svids: [] });
      setTimeout(() => call.write(good), 20);
    };
    const c = client(uri, new FakeTimers());
    const updates: X509Context[] = [];
    const errors: string[] = [];
    const w = c.watchX509Svid(
      (u) => updates.push(u),
      (e) => errors.push(e.code),
    );
    await waitFor(() => updates.length === 1);
    expect(errors).toEqual(['workload-api/bad-response']);
    w.close();
  });
});
