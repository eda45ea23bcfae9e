/**
 * The cloud's node API logic (issue #4) with real parts: a CaManager, a SQLite CloudStore in a temp dir,
 * the real join_token and x509pop attestors (certificates and CSRs made by openssl), a ManualClock.
 *
 * Spec: reference spiffe.md §3 "Node attestation" (join_token single use, x509pop chain + nonce
 * signature, re-attestable), "Agent rotation" (pending serial promoted on first use), "Ban/evict",
 * "Registration entries" (delegation through node aliases), "Default rate limits"; X509-SVID 4.1-4.4 (the
 * issued certificate carries only what the issuer decided); architecture.md 9 (bounded input).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createJoinTokenAttestor,
  createX509PopAttestor,
  createX509PopTrust,
  encodeX509PopResponse,
  generateJoinToken,
  RateLimiter,
  x509popPayload,
  x509popRespond,
  type NodeAttestorPlugin,
} from '../../src/attestation/index.js';
import {
  createCloudStore,
  createNodeService,
  MAX_ATTEST_SESSIONS,
  nodeErrorReply,
  NodeServiceError,
  type AuthenticatedNode,
  type CloudStore,
  type NodeReply,
  type NodeService,
  type NodeServiceDeps,
} from '../../src/cloud/index.js';
import {
  BundleSet,
  CaManager,
  certsFromPem,
  certToPem,
  ManualClock,
  MemoryKeyStore,
  OID,
  parseBundleJson,
  parseCertificate,
  TrustDomain,
  validateJwtSvidSync,
  validateX509Svid,
} from '../../src/identity/index.js';
import { encodeNodeApiMessage, MAX_NODE_API_MESSAGE_BYTES, type CloudToEdgeMessage, type NodeApiMessage } from '../../src/protocol/index.js';
import { openssl, tempDir } from '../helpers/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';

const td = TrustDomain.parse('example.org');
const HOUR = 3_600_000;
const SRC = '10.0.0.1';
const SRC2 = '10.0.0.2';

// ------------------------------------------------------------------ openssl material (made once)

const CNF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[evil]
basicConstraints = critical,CA:TRUE,pathlen:5
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
extendedKeyUsage = codeSigning,OCSPSigning,serverAuth,clientAuth
subjectAltName = URI:spiffe://example.org/admin,URI:spiffe://example.org/edgeward/cloud,DNS:evil.example.com
`;

interface Pem {
  der: Buffer;
  key: KeyObject;
}

let dir = '';
let serial = 1;
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const csrs: Buffer[] = [];
let evilCsr: Buffer;
let nodeRoot: Pem;
let nodeLeaf: Pem; // CN=edge-x, chains to nodeRoot
let nodeLeaf2: Pem; // CN=edge-x too, another key
let otherRoot: Pem;
let otherLeaf: Pem; // CN=edge-x, chains to otherRoot (untrusted)

async function loadPem(name: string): Promise<Pem> {
  return {
    der: certsFromPem(await readFile(join(dir, `${name}.pem`), 'utf8'))[0]!,
    key: createPrivateKey(await readFile(join(dir, `${name}.key`), 'utf8')),
  };
}
async function selfSigned(name: string, subj: string): Promise<Pem> {
  await openssl(['req', '-x509', '-config', join(dir, 'cnf'), '-extensions', 'ca', ...EC, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-days', '30', '-subj', subj]);
  return loadPem(name);
}
async function issue(name: string, subj: string, issuer: string): Promise<Pem> {
  const csr = join(dir, `${name}.csr`);
  await openssl(['req', '-new', '-config', join(dir, 'cnf'), ...EC, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', csr, '-subj', subj]);
  await openssl([
    'x509', '-req', '-in', csr, '-CA', join(dir, `${issuer}.pem`), '-CAkey', join(dir, `${issuer}.key`), '-set_serial', String(serial++),
    '-days', '30', '-extfile', join(dir, 'cnf'), '-extensions', 'leaf', '-out', join(dir, `${name}.pem`),
  ]);
  return loadPem(name);
}
async function newCsr(extra: string[] = ['-subj', '/CN=whatever']): Promise<Buffer> {
  const key = join(dir, `csr-${serial++}.key`);
  return (await openssl(['req', '-new', ...EC, '-nodes', '-keyout', key, ...extra, '-outform', 'DER'])).stdoutBytes;
}

beforeAll(async () => {
  dir = await tempDir('edgeward-node-service-');
  await writeFile(join(dir, 'cnf'), CNF);
  for (let i = 0; i < 4; i++) csrs.push(await newCsr());
  // A CSR asking for CA=true, codeSigning/OCSPSigning, other URI SANs and a DNS name (all to be ignored).
  evilCsr = await newCsr(['-config', join(dir, 'cnf'), '-reqexts', 'evil', '-subj', '/CN=evil-admin/O=Evil']);
  nodeRoot = await selfSigned('nodeRoot', '/CN=Test Node CA');
  nodeLeaf = await issue('nodeLeaf', '/CN=edge-x', 'nodeRoot');
  nodeLeaf2 = await issue('nodeLeaf2', '/CN=edge-x', 'nodeRoot');
  otherRoot = await selfSigned('otherRoot', '/CN=Test Node CA');
  otherLeaf = await issue('otherLeaf', '/CN=edge-x', 'otherRoot');
});

// ------------------------------------------------------------------ harness

interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

interface Harness {
  service: NodeService;
  store: CloudStore;
  ca: CaManager;
  clock: ManualClock;
  logs: LogLine[];
  token(node: string, ttlMs?: number): string;
}

async function harness(over: Partial<NodeServiceDeps> & { x509pop?: boolean } = {}): Promise<Harness> {
  const d = await tempDir('edgeward-node-service-db-');
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const store = createCloudStore(join(d, 'cloud.db'), { files: hostStateFiles, trustDomain: td, clock });
  const ca = new CaManager({ trustDomain: td }, new MemoryKeyStore());
  ca.tick(clock.now());
  const logs: LogLine[] = [];
  const logger = {
    info: (obj: Record<string, unknown>, msg: string) => logs.push({ level: 'info', obj, msg }),
    warn: (obj: Record<string, unknown>, msg: string) => logs.push({ level: 'warn', obj, msg }),
    error: (obj: Record<string, unknown>, msg: string) => logs.push({ level: 'error', obj, msg }),
  };
  const attestors: NodeAttestorPlugin[] = [createJoinTokenAttestor(store)];
  if (over.x509pop !== false) attestors.push(createX509PopAttestor(createX509PopTrust([nodeRoot.der])));
  const service = createNodeService({
    trustDomain: td,
    store,
    ca,
    clock,
    attestors,
    nodeSvidTtlMs: HOUR,
    maxWorkloadSvidTtlMs: HOUR,
    maxJwtSvidTtlMs: 300_000,
    logger,
    rateLimiter: new RateLimiter({ capacity: 1000, refillPerSecond: 1000, maxKeys: 100 }),
    ...over,
  });
  return {
    service,
    store,
    ca,
    clock,
    logs,
    token(node: string, ttlMs = 600_000): string {
      const g = generateJoinToken(node, ttlMs, clock.now());
      store.addJoinToken(g.record);
      return g.token;
    },
  };
}

const body = (m: NodeApiMessage | Record<string, unknown>): Buffer =>
  Buffer.from('kind' in m && typeof m.kind === 'string' && (m as { v?: unknown }).v === 1 ? encodeNodeApiMessage(m as NodeApiMessage) : JSON.stringify(m));

function joinBody(token: string, nodeName: string, csr: Buffer): Buffer {
  return body({ v: 1, kind: 'attest.begin', method: 'join_token', nodeName, payload: { token }, csr });
}

function expectOk<K extends CloudToEdgeMessage['kind']>(r: NodeReply, kind: K): Extract<CloudToEdgeMessage, { kind: K }> {
  expect(r.message.kind === 'error' ? `${r.message.code}: ${r.message.message}` : r.message.kind).toBe(kind);
  expect(r.status).toBe(200);
  return r.message as Extract<CloudToEdgeMessage, { kind: K }>;
}

function expectError(r: NodeReply, status: number, code: string): void {
  expect(r.message.kind).toBe('error');
  const m = r.message as Extract<CloudToEdgeMessage, { kind: 'error' }>;
  expect({ status: r.status, code: m.code }).toEqual({ status, code });
  // Short and causeless: no stack, no file paths, and it encodes on the wire.
  expect(m.message.length).toBeLessThanOrEqual(256);
  expect(m.message).not.toMatch(/\n\s+at |\/tmp\/|cloud\.db/);
  expect(() => encodeNodeApiMessage(m)).not.toThrow();
}

function lastSecurityEvent(h: Harness): Record<string, unknown> {
  const l = [...h.logs].reverse().find((x) => typeof x.obj['event'] === 'string' && (x.obj['event'] as string).startsWith('security.'));
  expect(l, 'a security event').toBeDefined();
  expect(l!.level).toBe('warn');
  return l!.obj;
}

function joinNode(h: Harness, name: string, csr = csrs[0]!, source = SRC): Extract<CloudToEdgeMessage, { kind: 'attest.result' }> {
  return expectOk(h.service.attest(joinBody(h.token(name), name, csr), source), 'attest.result');
}

/** x509pop: begin, answer the nonce with `key`; returns both replies. */
function x509pop(h: Harness, chain: Buffer[], key: KeyObject, opts: { csr?: Buffer; source?: string; respondFrom?: string } = {}): { first: NodeReply; second?: NodeReply } {
  const first = h.service.attest(
    body({ v: 1, kind: 'attest.begin', method: 'x509pop', nodeName: 'edge-x', payload: x509popPayload(chain), csr: opts.csr ?? csrs[1]! }),
    opts.source ?? SRC,
  );
  if (first.message.kind !== 'attest.challenge') return { first };
  const response = encodeX509PopResponse(x509popRespond({ nonce: first.message.challenge }, key));
  const second = h.service.attest(body({ v: 1, kind: 'attest.response', sessionId: first.message.sessionId, response }), opts.respondFrom ?? opts.source ?? SRC);
  return { first, second };
}

function auth(h: Harness, chain: Buffer[], source = SRC): AuthenticatedNode {
  return h.service.authenticate(chain, source);
}

function authCode(h: Harness, chain: Buffer[]): { code: string; status: number } {
  try {
    auth(h, chain);
  } catch (e) {
    expect(e).toBeInstanceOf(NodeServiceError);
    return { code: (e as NodeServiceError).code, status: nodeErrorReply(e).status };
  }
  throw new Error('authenticate accepted the chain');
}

// ------------------------------------------------------------------ attestation: join_token

describe('node attestation: join_token (reference §3: single use, bound to one node, expiring)', () => {
  it('a join issues a 1 h node SVID for spiffe://TD/edgeward/node/NAME with the bundle; openssl verifies it', async () => {
    const h = await harness();
    const r = joinNode(h, 'edge-1');
    expect(r.reattestable).toBe(false);
    const leaf = parseCertificate(r.svidChainDer[0]!);
    expect(leaf.uris).toEqual(['spiffe://example.org/edgeward/node/edge-1']);
    expect(leaf.notAfter).toBe(h.clock.now() + HOUR);
    const bundle = parseBundleJson(td, r.bundle);
    const v = validateX509Svid(r.svidChainDer, BundleSet.of([bundle]), h.clock.now());
    expect(v.spiffeId.toString()).toBe('spiffe://example.org/edgeward/node/edge-1');
    const node = h.store.getNode('edge-1')!;
    expect(node).toMatchObject({ method: 'join_token', serialHex: leaf.serialHex, reattestable: false, banned: false });
    expect(node.selectors).toEqual(['node:method:join_token', 'node:name:edge-1']);
    expect(h.logs.find((l) => l.obj['event'] === 'node.attested')?.obj).toMatchObject({ node: 'edge-1', method: 'join_token', source: SRC });
    // Independent check: openssl accepts it as a TLS client certificate of the trust domain's CA.
    const roots = join(dir, 'roots-1.pem');
    const chain = join(dir, 'chain-1.pem');
    const leafPem = join(dir, 'leaf-1.pem');
    await writeFile(roots, h.ca.x509Authorities().slice(0, 1).map(certToPem).join(''));
    await writeFile(chain, r.svidChainDer.slice(1).map(certToPem).join(''));
    await writeFile(leafPem, certToPem(r.svidChainDer[0]!));
    const at = String(Math.floor(h.clock.now() / 1000) + 5);
    const ok = await openssl(['verify', '-x509_strict', '-attime', at, '-purpose', 'sslclient', '-CAfile', roots, '-untrusted', chain, leafPem]);
    expect(ok.stdout).toContain(': OK');
    const bad = await openssl(['verify', '-x509_strict', '-attime', at, '-CAfile', join(dir, 'nodeRoot.pem'), '-untrusted', chain, leafPem], undefined, { allowFailure: true });
    expect(bad.code).not.toBe(0);
  });

  it('a reused token is refused (join-token/used, 403) and logged as a security event', async () => {
    const h = await harness();
    const token = h.token('edge-1');
    expectOk(h.service.attest(joinBody(token, 'edge-1', csrs[0]!), SRC), 'attest.result');
    const r = h.service.attest(joinBody(token, 'edge-1', csrs[1]!), SRC2);
    expectError(r, 403, 'join-token/used');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.attestation_failed', code: 'join-token/used', node: 'edge-1', source: SRC2 });
    expect(JSON.stringify(h.logs)).not.toContain(token); // the secret never reaches the log
  });

  it('an expired token is refused (join-token/expired)', async () => {
    const h = await harness();
    const token = h.token('edge-1', 60_000);
    h.clock.advance(60_000);
    expectError(h.service.attest(joinBody(token, 'edge-1', csrs[0]!), SRC), 403, 'join-token/expired');
    expect(lastSecurityEvent(h)).toMatchObject({ code: 'join-token/expired', node: 'edge-1' });
    expect(h.store.getNode('edge-1')).toBeUndefined();
  });

  it('a token for node A presented as node B is refused (join-token/wrong-node) and burned', async () => {
    const h = await harness();
    const token = h.token('edge-a');
    expectError(h.service.attest(joinBody(token, 'edge-b', csrs[0]!), SRC), 403, 'join-token/wrong-node');
    expect(h.store.getNode('edge-b')).toBeUndefined();
    expectError(h.service.attest(joinBody(token, 'edge-a', csrs[0]!), SRC), 403, 'join-token/used');
  });

  it('a CSR asking for another SPIFFE ID, CA=true and extra EKUs gets only what the cloud decided (X509-SVID 4.1-4.4)', async () => {
    const h = await harness();
    const req = (await openssl(['req', '-inform', 'DER', '-noout', '-text'], evilCsr)).stdout;
    expect(req).toContain('CA:TRUE'); // sanity: the CSR really asks for it
    expect(req).toContain('URI:spiffe://example.org/admin');
    const r = joinNode(h, 'edge-1', evilCsr);
    const leaf = parseCertificate(r.svidChainDer[0]!);
    expect(leaf.uris).toEqual(['spiffe://example.org/edgeward/node/edge-1']);
    expect(leaf.dnsNames).toEqual([]);
    expect(leaf.otherSanTags).toEqual([]);
    expect(leaf.isCA).toBe(false);
    expect(leaf.pathLen).toBeUndefined();
    expect(leaf.keyUsage).toMatchObject({ digitalSignature: true, keyCertSign: false, cRLSign: false });
    expect(leaf.extKeyUsage).toEqual([OID.serverAuth, OID.clientAuth]);
    const text = (await openssl(['x509', '-inform', 'DER', '-noout', '-text'], r.svidChainDer[0]!)).stdout;
    expect(text).not.toContain('evil');
    expect(text).not.toContain('Code Signing');
    expect(text).not.toMatch(/edgeward\/cloud|\/admin/);
  });

  it('a malformed or oversized body gets a 4xx error with a clear code; the service keeps working', async () => {
    const h = await harness({ x509pop: false });
    expectError(h.service.attest(Buffer.from('not json'), SRC), 400, 'node-api/malformed');
    expectError(h.service.attest(Buffer.alloc(MAX_NODE_API_MESSAGE_BYTES + 1, 0x20), SRC), 413, 'node-api/too-large');
    expectError(h.service.attest(body({ v: 2, kind: 'attest.begin' }), SRC), 400, 'node-api/unsupported-version');
    expectError(h.service.attest(body({ v: 1, kind: 'renew.request', csr: csrs[0]! }), SRC), 400, 'node-api/unexpected-kind');
    expectError(h.service.attest(body({ v: 1, kind: 'attest.result', svidChainDer: [csrs[0]!], bundle: '{}', reattestable: true }), SRC), 400, 'node-api/unexpected-kind');
    // x509pop is not configured here: deny by default.
    expectError(h.service.attest(body({ v: 1, kind: 'attest.begin', method: 'x509pop', nodeName: 'edge-x', payload: x509popPayload([nodeLeaf.der]), csr: csrs[0]! }), SRC), 400, 'node-attestation/unsupported-method');
    expectError(h.service.attest(body({ v: 1, kind: 'attest.begin', method: 'join_token', nodeName: 'edge-1', payload: { token: 'x' }, csr: csrs[0]! }), SRC), 400, 'join-token/malformed');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.attestation_failed', code: 'join-token/malformed', source: SRC });
    // A bad CSR is refused before the token is spent.
    const token = h.token('edge-1');
    expectError(h.service.attest(joinBody(token, 'edge-1', Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])), SRC), 400, 'csr/malformed');
    expectOk(h.service.attest(joinBody(token, 'edge-1', csrs[0]!), SRC), 'attest.result');
    expect(h.logs.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('an internal failure is 500 internal with a generic message, logged as an error, never thrown', async () => {
    const h = await harness();
    const joinChain = joinNode(h, 'edge-0').svidChainDer;
    const token = h.token('edge-1');
    h.store.close();
    const r = h.service.attest(joinBody(token, 'edge-1', csrs[0]!), SRC);
    expect(r).toEqual({ status: 500, message: { v: 1, kind: 'error', code: 'internal', message: 'internal error' } });
    expect(h.logs.at(-1)).toMatchObject({ level: 'error', obj: { event: 'node_api.internal_error', code: 'cloud-store/closed', source: SRC } });
    // authenticate throws only NodeServiceError; an unexpected failure is `internal` (500), cause not exposed
    let err: unknown;
    try {
      h.service.authenticate(joinChain, SRC);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NodeServiceError);
    expect(err).toMatchObject({ code: 'internal', message: 'internal error' });
    expect(nodeErrorReply(err)).toEqual({ status: 500, message: { v: 1, kind: 'error', code: 'internal', message: 'internal error' } });
  });

  it('bad configuration is refused at construction', async () => {
    await expect(harness({ nodeSvidTtlMs: 2 * HOUR })).rejects.toMatchObject({ code: 'node-service/bad-config' });
    await expect(harness({ maxJwtSvidTtlMs: 0 })).rejects.toMatchObject({ code: 'node-service/bad-config' });
  });
});

// ------------------------------------------------------------------ attestation: x509pop and sessions

describe('node attestation: x509pop (reference §3: chain to the configured CA, nonce signature, re-attestable)', () => {
  it('succeeds in two steps; the node gets the x509pop:subject:cn selector and is re-attestable', async () => {
    const h = await harness();
    const { first, second } = x509pop(h, [nodeLeaf.der], nodeLeaf.key);
    const ch = expectOk(first, 'attest.challenge');
    expect(ch.sessionId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(ch.challenge).toHaveLength(32);
    const r = expectOk(second!, 'attest.result');
    expect(r.reattestable).toBe(true);
    expect(parseCertificate(r.svidChainDer[0]!).uris).toEqual(['spiffe://example.org/edgeward/node/edge-x']);
    expect(h.store.getNode('edge-x')?.selectors).toEqual(['node:method:x509pop', 'node:name:edge-x', 'x509pop:subject:cn:edge-x']);
    expect(h.service.stats.sessions).toBe(0);
  });

  it('a signature made with the wrong key is refused (x509pop/bad-signature)', async () => {
    const h = await harness();
    const { second } = x509pop(h, [nodeLeaf.der], nodeLeaf2.key);
    expectError(second!, 403, 'x509pop/bad-signature');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.attestation_failed', code: 'x509pop/bad-signature', node: 'edge-x' });
    expect(h.store.getNode('edge-x')).toBeUndefined();
  });

  it('a certificate chaining to an untrusted CA is refused before any challenge (x509pop/untrusted)', async () => {
    const h = await harness();
    const { first, second } = x509pop(h, [otherLeaf.der], otherLeaf.key);
    expect(second).toBeUndefined();
    expectError(first, 403, 'x509pop/untrusted');
    expect(h.service.stats.sessions).toBe(0);
  });

  it('a node back with an expired SVID re-attests with the same certificate; another certificate for the name is refused', async () => {
    const h = await harness();
    const r1 = expectOk(x509pop(h, [nodeLeaf.der], nodeLeaf.key).second!, 'attest.result');
    h.clock.advance(HOUR + 1000);
    h.ca.tick(h.clock.now());
    expect(authCode(h, r1.svidChainDer)).toEqual({ code: 'node-api/unauthenticated', status: 401 });
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.authentication_failed', code: 'node-api/unauthenticated', detail: { reason: 'x509-svid/expired' } });
    const r2 = expectOk(x509pop(h, [nodeLeaf.der], nodeLeaf.key, { csr: csrs[2]! }).second!, 'attest.result');
    expect(auth(h, r2.svidChainDer).nodeName).toBe('edge-x');
    // Same CN, another key: the name is pinned to the first credential until evicted.
    expectError(x509pop(h, [nodeLeaf2.der], nodeLeaf2.key).second!, 403, 'node/credential-mismatch');
    h.store.evict('edge-x');
    expectOk(x509pop(h, [nodeLeaf2.der], nodeLeaf2.key).second!, 'attest.result');
  });

  it('sessions are single use, bound to the source address, and expire after 60 s', async () => {
    const h = await harness();
    // wrong source: refused, and the session is spent
    const a = x509pop(h, [nodeLeaf.der], nodeLeaf.key, { respondFrom: SRC2 });
    expectError(a.second!, 400, 'node-api/unknown-session');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.attestation_session_refused', source: SRC2, detail: { reason: 'wrong-source' } });
    expect(h.service.stats.sessions).toBe(0);
    // reuse after success
    const b = x509pop(h, [nodeLeaf.der], nodeLeaf.key);
    expectOk(b.second!, 'attest.result');
    const sessionId = (b.first.message as { sessionId: string }).sessionId;
    const replay = encodeX509PopResponse(x509popRespond({ nonce: (b.first.message as { challenge: Buffer }).challenge }, nodeLeaf.key));
    expectError(h.service.attest(body({ v: 1, kind: 'attest.response', sessionId, response: replay }), SRC), 400, 'node-api/unknown-session');
    // expiry
    const c = h.service.attest(body({ v: 1, kind: 'attest.begin', method: 'x509pop', nodeName: 'edge-x', payload: x509popPayload([nodeLeaf.der]), csr: csrs[1]! }), SRC);
    const ch = expectOk(c, 'attest.challenge');
    h.clock.advance(60_000);
    const late = encodeX509PopResponse(x509popRespond({ nonce: ch.challenge }, nodeLeaf.key));
    expectError(h.service.attest(body({ v: 1, kind: 'attest.response', sessionId: ch.sessionId, response: late }), SRC), 400, 'node-api/unknown-session');
    expect(lastSecurityEvent(h)).toMatchObject({ detail: { reason: 'expired' } });
    // sweep drops expired sessions
    expectOk(h.service.attest(body({ v: 1, kind: 'attest.begin', method: 'x509pop', nodeName: 'edge-x', payload: x509popPayload([nodeLeaf.der]), csr: csrs[1]! }), SRC), 'attest.challenge');
    expect(h.service.stats.sessions).toBe(1);
    h.service.sweep(h.clock.now() + 59_999);
    expect(h.service.stats.sessions).toBe(1);
    h.service.sweep(h.clock.now() + 60_000);
    expect(h.service.stats.sessions).toBe(0);
  });

  it(`at most ${MAX_ATTEST_SESSIONS} open sessions: then node-api/busy (503) until sessions expire`, async () => {
    // A cheap always-challenging attestor, so that filling the table costs little.
    const challenger: NodeAttestorPlugin = {
      method: 'tpm',
      begin: () => ({ step: () => ({ kind: 'challenge', challenge: Buffer.from('c') }) }),
    };
    const h = await harness({ attestors: [challenger], rateLimiter: new RateLimiter({ capacity: 2 * MAX_ATTEST_SESSIONS, refillPerSecond: 1, maxKeys: 10 }) });
    const begin = body({ v: 1, kind: 'attest.begin', method: 'tpm', nodeName: 'edge-t', payload: {}, csr: csrs[0]! });
    for (let i = 0; i < MAX_ATTEST_SESSIONS; i++) {
      const r = h.service.attest(begin, SRC);
      if (r.status !== 200) expectOk(r, 'attest.challenge');
    }
    expect(h.service.stats.sessions).toBe(MAX_ATTEST_SESSIONS);
    expectError(h.service.attest(begin, SRC), 503, 'node-api/busy');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.attestation_busy', code: 'node-api/busy' });
    h.clock.advance(60_000);
    expectOk(h.service.attest(begin, SRC), 'attest.challenge');
    expect(h.service.stats.sessions).toBe(1);
  });

  it('attestation attempts are rate-limited per source address (429 rate-limit/exceeded)', async () => {
    const h = await harness({ rateLimiter: new RateLimiter({ capacity: 3, refillPerSecond: 1, maxKeys: 100 }) });
    const garbage = Buffer.from('{}');
    for (let i = 0; i < 3; i++) expectError(h.service.attest(garbage, SRC), 400, 'node-api/unsupported-version');
    expectError(h.service.attest(garbage, SRC), 429, 'rate-limit/exceeded');
    expectError(h.service.attest(joinBody(h.token('edge-1'), 'edge-1', csrs[0]!), SRC), 429, 'rate-limit/exceeded');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.rate_limited', code: 'rate-limit/exceeded', source: SRC });
    joinNode(h, 'edge-2', csrs[0]!, SRC2); // another source is not affected
    h.clock.advance(1000);
    joinNode(h, 'edge-3', csrs[0]!, SRC);
  });
});

// ------------------------------------------------------------------ authenticated node requests

describe('authenticated node requests: renewal, ban, delegated SVIDs, entries, JWT-SVIDs', () => {
  it('a node has a signing budget: past it, requests that make the CA sign are refused (429) and logged', async () => {
    const h = await harness({ signingRateLimiter: new RateLimiter({ capacity: 2, refillPerSecond: 0.001, maxKeys: 10 }) });
    const node = auth(h, joinNode(h, 'edge-budget').svidChainDer);
    expectOk(h.service.handle(body({ v: 1, kind: 'renew.request', csr: csrs[0]! }), node, SRC), 'renew.result');
    expectOk(h.service.handle(body({ v: 1, kind: 'renew.request', csr: csrs[0]! }), node, SRC), 'renew.result');
    expectError(h.service.handle(body({ v: 1, kind: 'renew.request', csr: csrs[0]! }), node, SRC), 429, 'rate-limit/exceeded');
    // Requests that sign nothing are not charged.
    expectOk(h.service.handle(body({ v: 1, kind: 'entries.request' }), node, SRC), 'entries.result');
    expect(h.logs.some((l) => l.obj['event'] === 'security.rate_limited' && l.obj['node'] === 'edge-budget')).toBe(true);
  });

  it('renewal: the old serial stays valid until the new one is used, then only the new one (reference §3 "Agent rotation")', async () => {
    const h = await harness();
    const old = joinNode(h, 'edge-1').svidChainDer;
    const node = auth(h, old);
    expect(node).toMatchObject({ nodeName: 'edge-1', serialHex: parseCertificate(old[0]!).serialHex });
    expect(node.spiffeId.toString()).toBe('spiffe://example.org/edgeward/node/edge-1');
    h.clock.advance(HOUR / 2);
    const r = expectOk(h.service.handle(body({ v: 1, kind: 'renew.request', csr: evilCsr }), node, SRC), 'renew.result');
    const leaf = parseCertificate(r.svidChainDer[0]!);
    expect(leaf.uris).toEqual(['spiffe://example.org/edgeward/node/edge-1']);
    expect(leaf.isCA).toBe(false);
    expect(leaf.notAfter).toBe(h.clock.now() + HOUR);
    expect(parseBundleJson(td, r.bundle).trustDomain.name).toBe('example.org');
    expect(h.store.getNode('edge-1')?.pendingSerialHex).toBe(leaf.serialHex);
    expect(auth(h, old).serialHex).toBe(node.serialHex); // still valid
    const renewed = auth(h, r.svidChainDer); // first use promotes
    expect(renewed.serialHex).toBe(leaf.serialHex);
    expect(h.store.getNode('edge-1')?.serialHex).toBe(leaf.serialHex);
    expect(authCode(h, old)).toEqual({ code: 'node-api/unauthenticated', status: 401 });
    // a connection that authenticated with the old serial is refused from now on as well
    expectError(h.service.handle(body({ v: 1, kind: 'entries.request' }), node, SRC), 401, 'node-api/unauthenticated');
    expectOk(h.service.handle(body({ v: 1, kind: 'entries.request' }), renewed, SRC), 'entries.result');
  });

  it('authentication refuses foreign chains, non-node IDs and empty chains', async () => {
    const h = await harness();
    expect(authCode(h, [])).toEqual({ code: 'node-api/unauthenticated', status: 401 });
    expect(authCode(h, [nodeLeaf.der])).toEqual({ code: 'node-api/unauthenticated', status: 401 }); // not an SVID at all
    const other = await harness();
    expect(authCode(h, joinNode(other, 'edge-1').svidChainDer)).toEqual({ code: 'node-api/unauthenticated', status: 401 }); // another CA
    // A workload SVID of this trust domain is not a node ID.
    const n = auth(h, joinNode(h, 'edge-1').svidChainDer);
    h.store.createEntry({ id: 'web', spiffeId: 'spiffe://example.org/web', parentId: 'spiffe://example.org/edgeward/node/edge-1', selectors: ['unix:uid:1'] });
    const w = expectOk(h.service.handle(body({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'web', csr: csrs[2]! }] }), n, SRC), 'svids.result');
    expect(authCode(h, w.svids[0]!.svidChainDer)).toEqual({ code: 'node-api/unauthenticated', status: 401 });
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.authentication_failed', detail: { reason: 'node-name/not-a-node-id' } });
    // an evicted node: node/unknown (attest again)
    h.store.evict('edge-1');
    expect(authCode(h, w.svids[0]!.svidChainDer).code).toBe('node-api/unauthenticated');
    const again = joinNode(h, 'edge-2').svidChainDer;
    h.store.evict('edge-2');
    expect(authCode(h, again)).toEqual({ code: 'node/unknown', status: 401 });
  });

  it('a banned node cannot authenticate, attest, renew or fetch anything (reference §3 "Ban/evict")', async () => {
    const h = await harness();
    const chain = joinNode(h, 'edge-1').svidChainDer;
    const node = auth(h, chain);
    h.store.ban('edge-1');
    expect(authCode(h, chain)).toEqual({ code: 'node/banned', status: 403 });
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.node_banned', code: 'node/banned', node: 'edge-1', source: SRC });
    expectError(h.service.handle(body({ v: 1, kind: 'renew.request', csr: csrs[1]! }), node, SRC), 403, 'node/banned');
    expectError(h.service.handle(body({ v: 1, kind: 'entries.request' }), node, SRC), 403, 'node/banned');
    const token = h.token('edge-1');
    expectError(h.service.attest(joinBody(token, 'edge-1', csrs[1]!), SRC), 403, 'node/banned');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.node_banned', node: 'edge-1' });
    h.store.unban('edge-1');
    expectOk(h.service.attest(joinBody(token, 'edge-1', csrs[1]!), SRC), 'attest.result'); // the ban check did not burn the token
  });

  it('svids/entries/jwt: only entries delegated to the node (direct or via a node alias); one foreign entry refuses the whole request', async () => {
    const h = await harness();
    const n1 = auth(h, joinNode(h, 'edge-1').svidChainDer);
    const n2 = auth(h, joinNode(h, 'edge-2').svidChainDer);
    const CLOUD = 'spiffe://example.org/edgeward/cloud';
    h.store.createEntry({
      id: 'web',
      spiffeId: 'spiffe://example.org/web',
      parentId: 'spiffe://example.org/edgeward/node/edge-1',
      selectors: ['unix:uid:1000'],
      x509SvidTtlMs: 600_000,
      jwtSvidTtlMs: 120_000,
      dnsNames: ['web.example.org'],
    });
    h.store.createEntry({ id: 'db', spiffeId: 'spiffe://example.org/db', parentId: 'spiffe://example.org/edgeward/node/edge-2', selectors: ['unix:uid:1001'] });
    h.store.createEntry({ id: 'alias', spiffeId: 'spiffe://example.org/group/edge1', parentId: CLOUD, selectors: ['node:name:edge-1'] });
    h.store.createEntry({ id: 'metrics', spiffeId: 'spiffe://example.org/metrics', parentId: 'spiffe://example.org/group/edge1', selectors: ['unix:uid:1002'] });

    const ok = expectOk(
      h.service.handle(body({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'web', csr: evilCsr }, { entryId: 'metrics', csr: csrs[3]! }] }), n1, SRC),
      'svids.result',
    );
    const web = parseCertificate(ok.svids[0]!.svidChainDer[0]!);
    expect(ok.svids.map((s) => s.entryId)).toEqual(['web', 'metrics']);
    expect(web.uris).toEqual(['spiffe://example.org/web']);
    expect(web.dnsNames).toEqual(['web.example.org']); // from the entry, not the CSR's evil.example.com
    expect(web.isCA).toBe(false);
    expect(web.extKeyUsage).toEqual([OID.serverAuth, OID.clientAuth]);
    expect(web.notAfter).toBe(h.clock.now() + 600_000); // the entry's TTL
    const metrics = parseCertificate(ok.svids[1]!.svidChainDer[0]!);
    expect(metrics.uris).toEqual(['spiffe://example.org/metrics']);
    expect(metrics.notAfter).toBe(h.clock.now() + HOUR); // default = the cap
    expect(validateX509Svid(ok.svids[1]!.svidChainDer, BundleSet.of([h.ca.bundle()]), h.clock.now()).spiffeId.toString()).toBe('spiffe://example.org/metrics');

    // edge-2 asks for web (edge-1's) along with its own db: the whole request is refused, nothing issued
    const refused = h.service.handle(body({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'db', csr: csrs[0]! }, { entryId: 'web', csr: csrs[1]! }] }), n2, SRC2);
    expectError(refused, 403, 'node/entry-not-delegated');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.entry_not_delegated', code: 'node/entry-not-delegated', node: 'edge-2', source: SRC2 });
    expectError(h.service.handle(body({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'alias', csr: csrs[0]! }] }), n1, SRC), 403, 'node/entry-not-delegated');
    expectError(h.service.handle(body({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'nope', csr: csrs[0]! }] }), n1, SRC), 403, 'node/entry-not-delegated');
    expectError(h.service.handle(body({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'web', csr: Buffer.from([0x30, 0x00]) }] }), n1, SRC), 400, 'csr/malformed');

    const e1 = expectOk(h.service.handle(body({ v: 1, kind: 'entries.request' }), n1, SRC), 'entries.result');
    expect(e1.entries).toEqual([
      {
        id: 'web',
        spiffeId: 'spiffe://example.org/web',
        parentId: 'spiffe://example.org/edgeward/node/edge-1',
        selectors: ['unix:uid:1000'],
        x509SvidTtlMs: 600_000,
        jwtSvidTtlMs: 120_000,
        dnsNames: ['web.example.org'],
        revision: 1,
      },
      { id: 'metrics', spiffeId: 'spiffe://example.org/metrics', parentId: 'spiffe://example.org/group/edge1', selectors: ['unix:uid:1002'], revision: 4 },
    ]);
    expect(encodeNodeApiMessage(e1).length).toBeGreaterThan(0);
    expect(expectOk(h.service.handle(body({ v: 1, kind: 'entries.request' }), n2, SRC), 'entries.result').entries.map((e) => e.id)).toEqual(['db']);

    // JWT-SVIDs: TTL capped by the entry's jwtSvidTtlMs; validates with the bundle's JWT authorities
    const j = expectOk(h.service.handle(body({ v: 1, kind: 'jwt.request', entryId: 'web', audience: ['https://api.example.org'], ttlMs: 300_000 }), n1, SRC), 'jwt.result');
    expect(j.expiresAt).toBe(Math.floor((h.clock.now() + 120_000) / 1000) * 1000);
    const v = validateJwtSvidSync(j.token, { audience: 'https://api.example.org', bundles: BundleSet.of([h.ca.bundle()]), now: h.clock.now() });
    expect(v.spiffeId.toString()).toBe('spiffe://example.org/web');
    const j2 = expectOk(h.service.handle(body({ v: 1, kind: 'jwt.request', entryId: 'metrics', audience: ['a', 'b'] }), n1, SRC), 'jwt.result');
    expect(j2.expiresAt).toBe(Math.floor((h.clock.now() + 300_000) / 1000) * 1000); // the service's JWT cap
    expectError(h.service.handle(body({ v: 1, kind: 'jwt.request', entryId: 'web', audience: ['a'] }), n2, SRC), 403, 'node/entry-not-delegated');

    // wrong kinds and garbage on the node endpoint
    expectError(h.service.handle(joinBody(h.token('edge-1'), 'edge-1', csrs[0]!), n1, SRC), 400, 'node-api/unexpected-kind');
    expectError(h.service.handle(Buffer.from('\u00ff'), n1, SRC), 400, 'node-api/malformed');
    expectError(h.service.handle(Buffer.alloc(MAX_NODE_API_MESSAGE_BYTES + 1, 0x20), n1, SRC), 413, 'node-api/too-large');
    expect(lastSecurityEvent(h)).toMatchObject({ event: 'security.malformed_request', code: 'node-api/too-large', node: 'edge-1' });
    expectOk(h.service.handle(body({ v: 1, kind: 'entries.request' }), n1, SRC), 'entries.result'); // still serving
  });
});
