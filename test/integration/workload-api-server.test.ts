/**
 * The Workload API server over a real Unix socket, called by a real grpc-js client built from
 * workload.proto with @grpc/proto-loader (method paths /SpiffeWorkloadAPI/...), against a fake identity
 * source that mints real SVIDs with the identity core's CaManager.
 *
 * Covers the conformance checklist of spiffe.md 5 that belongs to the transport: 1-4, 6-11, 13-15, 23,
 * 28 (through the real validator), and 12 with real processes of different uids (root only).
 */
import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  certToPem,
  parseCertificate,
  SpiffeId,
  splitDerCerts,
} from '../../src/identity/index.js';
import { createWorkloadApiServer, type WorkloadApiServer, type WorkloadApiServerOptions } from '../../src/edge/workload-api/server.js';
import { NO_IDENTITY_ISSUED, SECURITY_HEADER_MISSING, WorkloadEndpointError } from '../../src/edge/workload-api/status.js';
import { fromStruct } from '../../src/protocol/index.js';
import type { X509SVIDResponse, X509BundlesResponse, JWTBundlesResponse, JWTSVIDResponse, ValidateJWTSVIDResponse } from '../../src/protocol/index.js';
import { openssl, REPO_ROOT, tempDir } from '../helpers/index.js';
import {
  collectStream,
  FakeSource,
  GOOD,
  headerMd,
  loadRawService,
  MemoryLogger,
  OpenStream,
  rawClient,
  sleep,
  TD,
  unary,
  type RawClient,
} from './workload-api-fixture.js';

const isLinux = process.platform === 'linux';
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const S = grpc.status;
const WEB = 'spiffe://example.org/web';
const DB = 'spiffe://example.org/db';

const STREAMS = ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles'] as const;
const UNARY = [
  ['FetchJWTSVID', { audience: ['aud'], spiffe_id: '' }],
  ['ValidateJWTSVID', { audience: 'aud', svid: 'a.b.c' }],
] as const;

interface Harness {
  dir: string;
  socketPath: string;
  source: FakeSource;
  logger: MemoryLogger;
  server: WorkloadApiServer;
  client: RawClient;
}

const open: Array<{ server: WorkloadApiServer; client?: RawClient }> = [];

/** A started server with a raw client; closed after the current test unless `keep` (then by the caller). */
async function harness(opts: Partial<WorkloadApiServerOptions> = {}, entries = true, keep = false): Promise<Harness> {
  const dir = await tempDir('edgeward-wapi-');
  chmodSync(dir, 0o755); // other uids must reach the socket
  const socketPath = join(dir, 'agent', 'public', 'api.sock');
  const source = new FakeSource();
  if (entries) {
    source.addEntry({ id: 'web', spiffeId: WEB, hint: 'web' }, false);
  }
  const logger = new MemoryLogger();
  const server = createWorkloadApiServer({ source, socketPath, logger, ...opts });
  await server.start();
  const client = rawClient(socketPath);
  if (!keep) open.push({ server, client });
  return { dir, socketPath, source, logger, server, client };
}

afterEach(async () => {
  for (const h of open.splice(0)) {
    h.client?.close();
    await h.server.close();
  }
});

function statusOf(r: { err: grpc.ServiceError | null }): { code: number | undefined; details: string | undefined } {
  return { code: r.err?.code, details: r.err?.details };
}

describe.runIf(isLinux)('Workload API server: service identity and security header', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({}, true, true);
  });
  afterAll(async () => {
    h.client.close();
    await h.server.close();
  });

  it('serves /SpiffeWorkloadAPI/<Method> (no package; spiffe.md 1, checklist 1)', () => {
    const svc = loadRawService().service;
    const paths = Object.fromEntries(Object.entries(svc).map(([k, v]) => [k, v.path]));
    expect(paths).toMatchObject({
      FetchX509SVID: '/SpiffeWorkloadAPI/FetchX509SVID',
      FetchX509Bundles: '/SpiffeWorkloadAPI/FetchX509Bundles',
      FetchJWTSVID: '/SpiffeWorkloadAPI/FetchJWTSVID',
      FetchJWTBundles: '/SpiffeWorkloadAPI/FetchJWTBundles',
      ValidateJWTSVID: '/SpiffeWorkloadAPI/ValidateJWTSVID',
      FetchWITSVID: '/SpiffeWorkloadAPI/FetchWITSVID',
      FetchWITBundles: '/SpiffeWorkloadAPI/FetchWITBundles',
    });
    expect(svc['FetchX509SVID']?.responseStream).toBe(true);
    expect(svc['FetchJWTSVID']?.responseStream).toBe(false);
  });

  it('every RPC without the header -> InvalidArgument before any message (Workload Endpoint 5, checklist 3)', async () => {
    for (const m of [...STREAMS, 'FetchWITSVID', 'FetchWITBundles']) {
      const r = await collectStream(h.client, m, new grpc.Metadata());
      expect(r.messages, m).toEqual([]);
      expect(r.status.code, m).toBe(S.INVALID_ARGUMENT);
      expect(r.status.details, m).toBe(SECURITY_HEADER_MISSING);
    }
    for (const [m, req] of UNARY) {
      const r = await unary(h.client, m, req, new grpc.Metadata());
      expect(statusOf(r), m).toEqual({ code: S.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING });
    }
    const events = h.logger.events('workload_api.header_missing');
    expect(events.length).toBeGreaterThanOrEqual(7);
    expect(events[0]).toMatchObject({ pid: process.pid, uid: process.getuid?.() });
    expect(h.source.attestCalls).toBe(0); // rejected before any handler ran
  });

  it('header "True", "false", empty, or sent twice -> InvalidArgument on all five RPCs (checklist 4)', async () => {
    const bad: Array<[string, grpc.Metadata]> = [
      ['True', headerMd('True')],
      ['false', headerMd('false')],
      ['empty', headerMd('')],
      ['twice', headerMd('true', 'true')],
      ['TRUE', headerMd('TRUE')],
      ['padded', headerMd(' true')],
    ];
    for (const [label, md] of bad) {
      for (const m of STREAMS) {
        const r = await collectStream(h.client, m, md);
        expect(r.messages, `${m} ${label}`).toEqual([]);
        expect(r.status.code, `${m} ${label}`).toBe(S.INVALID_ARGUMENT);
      }
      for (const [m, req] of UNARY) {
        const r = await unary(h.client, m, req, md);
        expect(r.err?.code, `${m} ${label}`).toBe(S.INVALID_ARGUMENT);
      }
    }
    expect(h.source.attestCalls).toBe(0);
  });

  it('WIT RPCs -> Unimplemented (spiffe.md 1, checklist 10)', async () => {
    for (const m of ['FetchWITSVID', 'FetchWITBundles']) {
      const r = await collectStream(h.client, m, GOOD());
      expect(r.messages).toEqual([]);
      expect(r.status.code).toBe(S.UNIMPLEMENTED);
    }
  });

  it('an unknown method is Unimplemented', async () => {
    const c = new grpc.Client(`unix://${h.socketPath}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.makeUnaryRequest('/SpiffeWorkloadAPI/Nope', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), GOOD(), (e) => resolve(e)),
    );
    c.close();
    expect(err?.code).toBe(S.UNIMPLEMENTED);
  });
});

describe.runIf(isLinux)('Workload API server: callers without identity', () => {
  it('PermissionDenied "no identity issued" for all five RPCs, no message first (checklist 6, 7)', async () => {
    const h = await harness({}, false);
    for (const m of STREAMS) {
      const r = await collectStream(h.client, m, GOOD());
      expect(r.messages, m).toEqual([]);
      expect(r.status.code, m).toBe(S.PERMISSION_DENIED);
      expect(r.status.details, m).toBe(NO_IDENTITY_ISSUED);
    }
    const jwt = await unary(h.client, 'FetchJWTSVID', { audience: ['aud'], spiffe_id: '' }, GOOD());
    expect(statusOf(jwt)).toEqual({ code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED });
    const val = await unary(h.client, 'ValidateJWTSVID', { audience: 'aud', svid: 'a.b.c' }, GOOD());
    expect(statusOf(val)).toEqual({ code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED });
    expect(h.logger.events('workload_api.no_identity').length).toBe(5);
    expect(h.logger.events('workload_api.no_identity')[0]).toMatchObject({ pid: process.pid, method: 'FetchX509SVID' });
  });

  it('attestation failure -> Unavailable and an attestation_failed event; nothing is served', async () => {
    const h = await harness();
    h.source.attestError = new WorkloadEndpointError('workload-endpoint/attestation-failed', 'no such process');
    for (const m of STREAMS) {
      const r = await collectStream(h.client, m, GOOD());
      expect(r.messages).toEqual([]);
      expect(r.status.code).toBe(S.UNAVAILABLE);
    }
    const jwt = await unary(h.client, 'FetchJWTSVID', { audience: ['aud'], spiffe_id: '' }, GOOD());
    expect(jwt.err?.code).toBe(S.UNAVAILABLE);
    expect(h.source.jwtCalls).toBe(0);
    const ev = h.logger.events('workload_api.attestation_failed');
    expect(ev.length).toBe(4);
    expect(ev[0]).toMatchObject({ code: 'workload-endpoint/attestation-failed', pid: process.pid });
  });
});

describe.runIf(isLinux)('Workload API server: FetchX509SVID', () => {
  it('first message well under a second, complete and well-formed (checklist 11, 13-15)', async () => {
    const h = await harness();
    h.source.addEntry({ id: 'db', spiffeId: DB, hint: 'db' });
    const r = await collectStream<X509SVIDResponse>(h.client, 'FetchX509SVID', GOOD(), { stopAfter: 1 });
    expect(r.firstAt).toBeLessThan(500);
    const msg = r.messages[0]!;
    expect(msg.svids.map((s) => s.spiffe_id)).toEqual([WEB, DB]);
    const hints = msg.svids.map((s) => s.hint);
    expect(new Set(hints).size).toBe(hints.length); // Workload API 5.2: hints unique
    for (const s of msg.svids) {
      // x509_svid is concatenated DER (no PEM), leaf first; the leaf's one URI SAN is spiffe_id.
      expect(s.x509_svid[0]).toBe(0x30);
      expect(s.x509_svid.includes(Buffer.from('-----BEGIN'))).toBe(false);
      const chain = splitDerCerts(s.x509_svid);
      expect(chain.length).toBe(2);
      const leaf = parseCertificate(chain[0]!);
      expect(leaf.uris).toEqual([s.spiffe_id]);
      expect(leaf.isCA).toBe(false);
      // x509_svid_key: unencrypted PKCS#8 DER matching the leaf public key
      const key = createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' });
      expect(createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(leaf.publicKey().export({ type: 'spki', format: 'der' }))).toBe(true);
      // bundle: concatenated DER CA certificates of the SVID's trust domain
      const bundle = splitDerCerts(s.bundle).map(parseCertificate);
      expect(bundle.length).toBeGreaterThan(0);
      expect(bundle.every((c) => c.isCA && c.uris[0] === TD.idString)).toBe(true);
    }
    expect(msg.federated_bundles).toEqual({});
  });

  it('the SVID received verifies with openssl against the bundle received (checklist 14)', async () => {
    const h = await harness();
    const r = await collectStream<X509SVIDResponse>(h.client, 'FetchX509SVID', GOOD(), { stopAfter: 1 });
    const s = r.messages[0]!.svids[0]!;
    const chain = splitDerCerts(s.x509_svid);
    const dir = await tempDir('edgeward-wapi-pem-');
    writeFileSync(join(dir, 'leaf.pem'), certToPem(chain[0]!));
    writeFileSync(join(dir, 'untrusted.pem'), chain.slice(1).map(certToPem).join(''));
    writeFileSync(join(dir, 'bundle.pem'), splitDerCerts(s.bundle).map(certToPem).join(''));
    const key = createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' });
    writeFileSync(join(dir, 'key.pem'), key.export({ type: 'pkcs8', format: 'pem' }));
    const v = await openssl(['verify', '-CAfile', 'bundle.pem', '-untrusted', 'untrusted.pem', '-purpose', 'sslclient', 'leaf.pem'], undefined, { cwd: dir });
    expect(v.stdout).toContain('leaf.pem: OK');
    // the key is the leaf's key (openssl agrees)
    const fromCert = await openssl(['x509', '-in', 'leaf.pem', '-noout', '-pubkey'], undefined, { cwd: dir });
    const fromKey = await openssl(['pkey', '-in', 'key.pem', '-pubout'], undefined, { cwd: dir });
    expect(fromKey.stdout).toBe(fromCert.stdout);
    // and a foreign bundle does not verify it
    const other = new FakeSource();
    writeFileSync(join(dir, 'other.pem'), other.ca.x509Authorities().map(certToPem).join(''));
    const bad = await openssl(['verify', '-CAfile', 'other.pem', '-untrusted', 'untrusted.pem', 'leaf.pem'], undefined, { cwd: dir, allowFailure: true });
    expect(bad.code).not.toBe(0);
  });

  it('pushes the complete state on change; identical states are suppressed (checklist 21, 23)', async () => {
    const h = await harness();
    const st = new OpenStream<X509SVIDResponse>(h.client, 'FetchX509SVID');
    const first = await st.nth(1);
    expect(first.svids.map((s) => s.spiffe_id)).toEqual([WEB]);
    await sleep(20);
    expect(h.source.listenerCount).toBe(1);

    // a change that does not alter this caller's state sends nothing
    h.source.emit('svids');
    h.source.emit('bundles');
    await sleep(100);
    expect(st.messages.length).toBe(1);

    // entry added -> new complete message
    h.source.addEntry({ id: 'db', spiffeId: DB, hint: 'db' });
    const second = await st.nth(2);
    expect(second.svids.map((s) => s.spiffe_id)).toEqual([WEB, DB]);

    // rotation -> new serials and keys for every SVID, pushed without client action
    const before = second.svids.map((s) => parseCertificate(splitDerCerts(s.x509_svid)[0]!).serialHex);
    h.source.rotate();
    const third = await st.nth(3);
    const after = third.svids.map((s) => parseCertificate(splitDerCerts(s.x509_svid)[0]!).serialHex);
    expect(after.every((x, i) => x !== before[i])).toBe(true);
    expect(third.svids[0]!.x509_svid_key.equals(second.svids[0]!.x509_svid_key)).toBe(false);

    // entry removed -> the next message omits it (absence = redaction)
    h.source.removeEntry('web');
    const fourth = await st.nth(4);
    expect(fourth.svids.map((s) => s.spiffe_id)).toEqual([DB]);

    // every entry removed -> the stream ends with PermissionDenied
    h.source.removeEntry('db');
    const status = await st.ended();
    expect(status.code).toBe(S.PERMISSION_DENIED);
    expect(status.details).toBe(NO_IDENTITY_ISSUED);
    expect(st.messages.length).toBe(4);
    await sleep(20);
    expect(h.source.listenerCount).toBe(0);
    expect(h.server.stats().streams).toBe(0);
  });

  it('a bundle change (CA rotation) is pushed to open X509-SVID streams', async () => {
    const h = await harness();
    const st = new OpenStream<X509SVIDResponse>(h.client, 'FetchX509SVID');
    const first = await st.nth(1);
    h.source.advanceCa(13 * 3_600_000); // past half of the 24 h CA: a new CA is prepared and published
    h.source.rotate();
    const next = await st.nth(2);
    expect(splitDerCerts(next.svids[0]!.bundle).length).toBe(splitDerCerts(first.svids[0]!.bundle).length + 1);
    st.cancel();
  });

  it('client cancel releases the stream and the change listener', async () => {
    const h = await harness();
    const st = new OpenStream<X509SVIDResponse>(h.client, 'FetchX509SVID');
    await st.nth(1);
    await sleep(20);
    expect(h.server.stats().streams).toBe(1);
    expect(h.source.listenerCount).toBe(1);
    st.cancel();
    await st.ended();
    for (let i = 0; i < 50 && h.server.stats().streams > 0; i++) await sleep(10);
    expect(h.server.stats().streams).toBe(0);
    expect(h.source.listenerCount).toBe(0);
  });

  it('a slow attestation does not block other calls; a call cancelled during attestation is not served', async () => {
    const h = await harness();
    h.source.attestDelayMs = 200;
    const st = new OpenStream<X509SVIDResponse>(h.client, 'FetchX509SVID');
    await sleep(50);
    st.cancel();
    await st.ended();
    await sleep(250);
    expect(st.messages).toEqual([]);
    expect(h.source.listenerCount).toBe(0);
    expect(h.server.stats().streams).toBe(0);
  });
});

describe.runIf(isLinux)('Workload API server: bundle streams', () => {
  it('FetchX509Bundles: own trust domain present, DER CA certs, pushed on change, duplicates suppressed', async () => {
    const h = await harness();
    const st = new OpenStream<X509BundlesResponse>(h.client, 'FetchX509Bundles');
    const first = await st.nth(1);
    expect(Object.keys(first.bundles)).toEqual([TD.idString]);
    const certs = splitDerCerts(first.bundles[TD.idString]!).map(parseCertificate);
    expect(certs.every((c) => c.isCA)).toBe(true);
    h.source.emit('bundles'); // nothing changed
    h.source.rotate(); // SVIDs changed, bundle did not
    await sleep(100);
    expect(st.messages.length).toBe(1);
    h.source.advanceCa(13 * 3_600_000);
    const second = await st.nth(2);
    expect(splitDerCerts(second.bundles[TD.idString]!).length).toBe(certs.length + 1);
    h.source.clearEntries();
    expect((await st.ended()).code).toBe(S.PERMISSION_DENIED);
  });

  it('FetchJWTBundles: JWK Set per trust domain, every key with a kid, no X.509 keys (checklist 27)', async () => {
    const h = await harness();
    const st = new OpenStream<JWTBundlesResponse>(h.client, 'FetchJWTBundles');
    const first = await st.nth(1);
    const jwks = JSON.parse(first.bundles[TD.idString]!.toString('utf8')) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const k of jwks.keys) {
      expect(typeof k['kid']).toBe('string');
      expect(k['x5c']).toBeUndefined();
    }
    h.source.advanceCa(13 * 3_600_000);
    const second = await st.nth(2);
    const jwks2 = JSON.parse(second.bundles[TD.idString]!.toString('utf8')) as { keys: unknown[] };
    expect(jwks2.keys.length).toBe(jwks.keys.length + 1);
    st.cancel();
  });

  it('a bundle map without the own trust domain -> Unavailable, logged as a source error', async () => {
    const h = await harness();
    h.source.x509Bundles = () => new Map([['spiffe://other.org', h.source.ca.x509Authorities()]]);
    const r = await collectStream(h.client, 'FetchX509Bundles', GOOD());
    expect(r.messages).toEqual([]);
    expect(r.status.code).toBe(S.UNAVAILABLE);
    expect(h.logger.events('workload_api.source_error')[0]).toMatchObject({ code: 'workload-endpoint/bundle-missing' });
  });
});

describe.runIf(isLinux)('Workload API server: JWT-SVIDs', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({}, true, true);
    h.source.addEntry({ id: 'db', spiffeId: DB, hint: 'db' });
  });
  afterAll(async () => {
    h.client.close();
    await h.server.close();
  });

  it('FetchJWTSVID validates its request (checklist 8)', async () => {
    const empty = await unary(h.client, 'FetchJWTSVID', { audience: [], spiffe_id: '' }, GOOD());
    expect(statusOf(empty)).toEqual({ code: S.INVALID_ARGUMENT, details: 'audience must be specified' });
    const blank = await unary(h.client, 'FetchJWTSVID', { audience: [''], spiffe_id: '' }, GOOD());
    expect(blank.err?.code).toBe(S.INVALID_ARGUMENT);
    for (const bad of ['not-an-id', 'spiffe://EXAMPLE.org/web', 'spiffe://example.org/a/', 'spiffe://example.org']) {
      const r = await unary(h.client, 'FetchJWTSVID', { audience: ['aud'], spiffe_id: bad }, GOOD());
      expect(r.err?.code, bad).toBe(S.INVALID_ARGUMENT);
    }
    const other = await unary(h.client, 'FetchJWTSVID', { audience: ['aud'], spiffe_id: 'spiffe://example.org/admin' }, GOOD());
    expect(statusOf(other)).toEqual({ code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED });
    expect(h.logger.events('workload_api.not_entitled').length).toBe(1);
  });

  it('FetchJWTSVID returns one JWT-SVID per identity (or the requested one), claims as requested (checklist 26)', async () => {
    const all = await unary<JWTSVIDResponse>(h.client, 'FetchJWTSVID', { audience: ['svc-a', 'svc-b'], spiffe_id: '' }, GOOD());
    expect(all.err).toBeNull();
    expect(all.res?.svids.map((s) => [s.spiffe_id, s.hint])).toEqual([
      [WEB, 'web'],
      [DB, 'db'],
    ]);
    const claims = JSON.parse(Buffer.from(all.res!.svids[0]!.svid.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    expect(claims['sub']).toBe(WEB);
    expect(claims['aud']).toEqual(['svc-a', 'svc-b']);
    const one = await unary<JWTSVIDResponse>(h.client, 'FetchJWTSVID', { audience: ['svc-a'], spiffe_id: DB }, GOOD());
    expect(one.res?.svids.map((s) => s.spiffe_id)).toEqual([DB]);
  });

  it('JWT fetch/validate round trip; aud always a list; wrong audience and garbage rejected (checklist 9, 28)', async () => {
    const got = await unary<JWTSVIDResponse>(h.client, 'FetchJWTSVID', { audience: ['svc-a'], spiffe_id: WEB }, GOOD());
    const token = got.res!.svids[0]!.svid;
    const ok = await unary<ValidateJWTSVIDResponse>(h.client, 'ValidateJWTSVID', { audience: 'svc-a', svid: token }, GOOD());
    expect(ok.err).toBeNull();
    expect(ok.res?.spiffe_id).toBe(WEB);
    const fields = ok.res!.claims!.fields;
    expect(fields['sub']).toMatchObject({ stringValue: WEB, kind: 'stringValue' });
    expect(fields['aud']).toMatchObject({ kind: 'listValue', listValue: { values: [{ stringValue: 'svc-a' }] } });
    expect(fields['exp']?.kind).toBe('numberValue');
    expect(fromStruct(ok.res!.claims)).toMatchObject({ sub: WEB, aud: ['svc-a'] });

    const wrong = await unary(h.client, 'ValidateJWTSVID', { audience: 'svc-b', svid: token }, GOOD());
    expect(wrong.err?.code).toBe(S.INVALID_ARGUMENT);
    expect(wrong.err?.details).toContain('jwt-svid/wrong-audience');
    const garbage = await unary(h.client, 'ValidateJWTSVID', { audience: 'svc-a', svid: 'garbage' }, GOOD());
    expect(garbage.err?.code).toBe(S.INVALID_ARGUMENT);
    expect(garbage.err?.details).toContain('jwt-svid/malformed');
    const [hd, body, sig] = token.split('.') as [string, string, string];
    const tampered = `${hd}.${body}.${sig.slice(0, -4)}AAAA`;
    const bad = await unary(h.client, 'ValidateJWTSVID', { audience: 'svc-a', svid: tampered }, GOOD());
    expect(bad.err?.details).toContain('jwt-svid/bad-signature');
    const noneAlg = `${Buffer.from('{"alg":"none","kid":"x"}').toString('base64url')}.${body}.`;
    const none = await unary(h.client, 'ValidateJWTSVID', { audience: 'svc-a', svid: noneAlg }, GOOD());
    expect(none.err?.code).toBe(S.INVALID_ARGUMENT);
    // a token of another trust domain's CA for our subject
    const foreign = new FakeSource().ca.mintJwtSvid({ spiffeId: SpiffeId.parse(WEB), audience: ['svc-a'], ttlMs: 60_000, now: Date.now() });
    const f = await unary(h.client, 'ValidateJWTSVID', { audience: 'svc-a', svid: foreign }, GOOD());
    expect(f.err?.details).toContain('jwt-svid/unknown-kid');
    expect(h.logger.events('workload_api.invalid_token').length).toBeGreaterThanOrEqual(4);

    const noAud = await unary(h.client, 'ValidateJWTSVID', { audience: '', svid: token }, GOOD());
    expect(statusOf(noAud)).toEqual({ code: S.INVALID_ARGUMENT, details: 'audience must be specified' });
    const noSvid = await unary(h.client, 'ValidateJWTSVID', { audience: 'svc-a', svid: '' }, GOOD());
    expect(statusOf(noSvid)).toEqual({ code: S.INVALID_ARGUMENT, details: 'svid must be specified' });
  });
});

describe.runIf(isLinux)('Workload API server: limits', () => {
  it('per-caller FetchJWTSVID rate limit -> Unavailable (load shedding), refilled over time', async () => {
    let t = 0;
    const h = await harness({ limits: { jwtSvidBurst: 2, jwtSvidRatePerSecond: 1 }, now: () => t });
    const call = (): Promise<{ err: grpc.ServiceError | null }> => unary(h.client, 'FetchJWTSVID', { audience: ['a'], spiffe_id: '' }, GOOD());
    expect((await call()).err).toBeNull();
    expect((await call()).err).toBeNull();
    const third = await call();
    expect(statusOf(third)).toEqual({ code: S.UNAVAILABLE, details: 'rate limit exceeded' });
    expect(h.logger.events('workload_api.rate_limited')[0]).toMatchObject({ pid: process.pid });
    t += 1000;
    expect((await call()).err).toBeNull();
  });

  it('per-caller and overall stream limits -> Unavailable', async () => {
    const h = await harness({ limits: { maxStreamsPerCaller: 2 } });
    const a = new OpenStream(h.client, 'FetchX509SVID');
    const b = new OpenStream(h.client, 'FetchJWTBundles');
    await a.nth(1);
    await b.nth(1);
    const c = await collectStream(h.client, 'FetchX509Bundles', GOOD());
    expect(c.status.code).toBe(S.UNAVAILABLE);
    expect(c.status.details).toBe('too many open streams');
    a.cancel();
    await a.ended();
    for (let i = 0; i < 50 && h.server.stats().streams > 1; i++) await sleep(10);
    const d = new OpenStream(h.client, 'FetchX509Bundles');
    await d.nth(1);
    d.cancel();
    b.cancel();

    const h2 = await harness({ limits: { maxStreams: 1 } });
    const e = new OpenStream(h2.client, 'FetchX509SVID');
    await e.nth(1);
    const f = await collectStream(h2.client, 'FetchX509SVID', GOOD());
    expect(f.status.code).toBe(S.UNAVAILABLE);
    e.cancel();
  });

  it('oversized requests are refused (bounded input)', async () => {
    const h = await harness({ limits: { maxReceiveMessageBytes: 1024 } });
    const r = await unary(h.client, 'ValidateJWTSVID', { audience: 'a', svid: 'x'.repeat(4096) }, GOOD());
    expect(r.err?.code).toBe(S.RESOURCE_EXHAUSTED);
  });
});

/** A fake procfs with a stat file for our own pid (PID-reuse simulation; format as /proc/<pid>/stat). */
async function fakeProc(starttime: string): Promise<{ root: string; set(start: string): void }> {
  const root = await tempDir('edgeward-wapi-proc-');
  mkdirSync(join(root, String(process.pid)), { recursive: true });
  const set = (start: string): void => {
    const tail = Array.from({ length: 49 }, (_, i) => (i === 18 ? start : String(i + 4))).join(' ');
    writeFileSync(join(root, String(process.pid), 'stat'), `${process.pid} (node) S ${tail}\n`);
  };
  set(starttime);
  return { root, set };
}

describe.runIf(isLinux)('Workload API server: PID reuse and vanished callers', () => {
  it('a stream whose caller process was replaced is ended with Unavailable (caller_gone)', async () => {
    const proc = await fakeProc('5000');
    const h = await harness({ peerCredentials: { procRoot: proc.root, usePidfd: false } });
    const st = new OpenStream<X509SVIDResponse>(h.client, 'FetchX509SVID');
    await st.nth(1);
    proc.set('6000'); // same pid, another process
    h.source.rotate();
    const status = await st.ended();
    expect(status.code).toBe(S.UNAVAILABLE);
    expect(st.messages.length).toBe(1); // the rotated SVID was never sent to the impostor
    expect(h.logger.events('workload_api.caller_gone')[0]).toMatchObject({ pid: process.pid, method: 'FetchX509SVID' });
    // and the next call on that connection fails attestation
    const r = await unary(h.client, 'FetchJWTSVID', { audience: ['a'], spiffe_id: '' }, GOOD());
    expect(r.err?.code).toBe(S.UNAVAILABLE);
    expect(h.source.jwtCalls).toBe(0);
    expect(h.logger.events('workload_api.attestation_failed').length).toBe(1);
  });

  it('a connection whose peer cannot be watched is refused (fail closed)', async () => {
    const empty = await tempDir('edgeward-wapi-noproc-');
    const h = await harness({ peerCredentials: { procRoot: empty, usePidfd: false } });
    const r = await collectStream(h.client, 'FetchX509SVID', GOOD());
    expect(r.messages).toEqual([]);
    expect(r.status.code).toBe(S.UNAVAILABLE);
    expect(h.logger.events('workload_api.connection_rejected')[0]).toMatchObject({ code: 'peercred/proc-gone' });
    expect(h.source.attestCalls).toBe(0);
  });
});

describe.runIf(isLinux)('Workload API server: socket lifecycle', () => {
  it('creates the parent directory 0755 and the socket 0777, removes it on close', async () => {
    const h = await harness();
    expect(statSync(join(h.dir, 'agent', 'public')).mode & 0o777).toBe(0o755);
    const st = lstatSync(h.socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o777);
    h.client.close();
    await h.server.close();
    expect(() => lstatSync(h.socketPath)).toThrow();
    await h.server.close(); // idempotent
  });

  it('replaces a stale socket, refuses a live one and a non-socket file', async () => {
    const dir = await tempDir('edgeward-wapi-sock-');
    const path = join(dir, 'api.sock');
    // stale socket: a process that listened and was killed (the file stays behind)
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise<void>((r) => child.stdout.once('data', () => r()));
    child.kill('SIGKILL');
    await new Promise<void>((r) => child.once('exit', () => r()));
    expect(lstatSync(path).isSocket()).toBe(true);
    const s1 = createWorkloadApiServer({ source: new FakeSource(), socketPath: path });
    await s1.start();
    open.push({ server: s1 });
    // live socket: refused
    const s2 = createWorkloadApiServer({ source: new FakeSource(), socketPath: path });
    await expect(s2.start()).rejects.toMatchObject({ code: 'workload-endpoint/socket-in-use' });
    await expect(s2.start()).rejects.toMatchObject({ code: 'workload-endpoint/bad-state' });
    // a regular file is never removed
    const file = join(dir, 'file.sock');
    writeFileSync(file, 'x');
    const s3 = createWorkloadApiServer({ source: new FakeSource(), socketPath: file });
    await expect(s3.start()).rejects.toMatchObject({ code: 'workload-endpoint/socket-path-not-socket' });
    expect(statSync(file).isFile()).toBe(true);
    mkdirSync(join(dir, 'long'), { recursive: true });
    const s4 = createWorkloadApiServer({ source: new FakeSource(), socketPath: join(dir, 'x'.repeat(120)) });
    await expect(s4.start()).rejects.toMatchObject({ code: 'workload-endpoint/listen-failed' });
    expect(() => createWorkloadApiServer({ source: new FakeSource(), socketPath: path, limits: { maxStreams: 0 } })).toThrow(WorkloadEndpointError);
  });

  it('close() ends open streams with Unavailable', async () => {
    const h = await harness();
    const st = new OpenStream(h.client, 'FetchX509SVID');
    await st.nth(1);
    await h.server.close();
    const status = await st.ended();
    expect([S.UNAVAILABLE, S.CANCELLED]).toContain(status.code);
    expect(h.source.listenerCount).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------
// Real processes with different uids (checklist 12): the kernel decides who the caller is.

const CHILD = `
import { createRequire } from 'node:module';
const [root, sock, proto] = process.argv.slice(2);
const req = createRequire(root + '/package.json');
const grpc = req('@grpc/grpc-js');
const loader = req('@grpc/proto-loader');
const def = loader.loadSync(proto, { keepCase: true, bytes: Buffer, defaults: true, oneofs: true });
const Svc = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
const c = new Svc('unix://' + sock, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
md.set('workload.spiffe.io', 'true');
const call = c.FetchX509SVID({}, md);
const out = { ids: [], code: null, details: null };
call.on('data', (m) => { out.ids = m.svids.map((s) => s.spiffe_id); call.cancel(); });
call.on('error', () => {});
call.on('status', (s) => { out.code = s.code; out.details = s.details; process.stdout.write(JSON.stringify(out) + '\\n'); c.close(); });
`;

function runChild(script: string, args: string[], uid?: number): Promise<{ ids: string[]; code: number; details: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
      ...(uid === undefined ? {} : { uid, gid: uid }),
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n')[0] ?? '') as { ids: string[]; code: number; details: string });
      } catch {
        reject(new Error(`child failed: ${out} ${err}`));
      }
    });
  });
}

describe.runIf(isLinux && isRoot)('Workload API server: callers are told apart by kernel uid', () => {
  it('a uid-65534 process gets only its own entry; an unentitled uid gets PermissionDenied', async () => {
    const h = await harness({}, false);
    h.source.addEntry({ id: 'root-web', spiffeId: WEB, hint: '', uid: 0 });
    h.source.addEntry({ id: 'nobody-db', spiffeId: DB, hint: '', uid: NOBODY });
    const script = join(h.dir, 'child.mjs');
    writeFileSync(script, CHILD, { mode: 0o644 });
    const proto = join(REPO_ROOT, 'src', 'protocol', 'workload-api', 'workload.proto');
    const [asRoot, asNobody, asOther] = await Promise.all([
      runChild(script, [REPO_ROOT, h.socketPath, proto]),
      runChild(script, [REPO_ROOT, h.socketPath, proto], NOBODY),
      runChild(script, [REPO_ROOT, h.socketPath, proto], 65533),
    ]);
    expect(asRoot.ids).toEqual([WEB]);
    expect(asNobody.ids).toEqual([DB]);
    expect(asOther).toMatchObject({ ids: [], code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED });
    const denied = h.logger.events('workload_api.no_identity');
    expect(denied.some((e) => e['uid'] === 65533)).toBe(true);
  });
});
