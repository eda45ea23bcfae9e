/**
 * Attested node join end to end (issue #4 "What it must show"): one real `edgeward cloud start` process
 * (config file: x509pop with an openssl-made CA, tpm with the swtpm manufacturer CA and the test TPM's EK
 * enrolled, a generous attestation rate limit for 127.0.0.1), real `edgeward edge join` / `edge start`
 * processes, and a workload `edgeward svid fetch` through each joined edge's Workload API.
 *
 * - For each attestor (join_token, x509pop, tpm): join, start the joined edge, fetch a cloud-signed SVID.
 * - The failure matrix, each asserting BOTH the typed error code the failing client reports (CLI stderr,
 *   HTTP reply, or the typed error of the in-process client) AND the security event in the cloud's JSON
 *   log: reused token, expired token, a token for node A presented as B, x509pop signed with the wrong key
 *   or chaining to an untrusted CA, a TPM quote over a stale nonce (in-process TpmAgentSession against the
 *   real cloud), a TPM whose EK is not enrolled for the name, a CSR asking for another SPIFFE ID, CA=true
 *   and extra EKUs (the issued certificate carries only what the server decided), an oversized and a
 *   malformed request (clear error, the cloud serves the next join), and a banned node's open keep-alive
 *   connection closed (the measured time is printed, not asserted), then renew/attest refused with
 *   `node/banned`, and unban + re-attest working for x509pop.
 * - The cloud process never crashes: checked at the end.
 *
 * The tpm cases need swtpm + tpm2-tools (CI installs them) and are skipped without. Everything listens on
 * 127.0.0.1 (port 0 / free ports) and Unix sockets in temp dirs; only PIDs started here are stopped.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTpmChallenge, encodeTpmChallengeResponse, tpmPayload } from '../../src/attestation/index.js';
import {
  attestNode,
  CloudClient,
  CloudRefusedError,
  loadX509PopEvidence,
  parseCloudAddress,
  TpmAgentSession,
  type NodeEvidence,
} from '../../src/edge/index.js';
import {
  buildCsr,
  bundleDigest,
  certsFromPem,
  derToPem,
  parseBundleJson,
  parseCertificate,
  pkcs8FromPrivateKey,
  TrustDomain,
  validateX509Svid,
  type CsrKey,
} from '../../src/identity/index.js';
import { decodeCloudToEdge, encodeNodeApiMessage, NODE_API_VERSION, type CloudToEdgeMessage } from '../../src/protocol/index.js';
import { openssl, runCli, startDaemon, tempDir, type Daemon, type LogLine, type RunResult } from '../helpers/index.js';
import { HAVE_SWTPM, startSwtpm, type Swtpm } from '../helpers/swtpm.js';

const TD = 'edgeward.local';
const td = TrustDomain.parse(TD);
const myUid = process.getuid?.() ?? 0;
const clock = { now: () => Date.now() };
const nodeId = (name: string): string => `spiffe://${TD}/edgeward/node/${name}`;

let cloud: Daemon;
let cloudDir = '';
let cloudAddr = '';
let digest = '';
let work = '';
let tpm: Swtpm | undefined;
let enrolledEkHash = '';
const edges: Daemon[] = [];

// ------------------------------------------------------------------------------------------ helpers

function cli(args: readonly string[], env?: Record<string, string>): Promise<RunResult> {
  return runCli(args, { timeoutMs: 60_000, ...(env === undefined ? {} : { env }) });
}

async function tokenFor(node: string, ttl?: string): Promise<{ token: string; expiresAt: number }> {
  const r = await cli(['token', 'create', '--node', node, '--data-dir', cloudDir, '--json', ...(ttl === undefined ? [] : ['--ttl', ttl])]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { token: string; expiresAt: number };
}

/** `edgeward edge join` against the shared cloud into a fresh data dir. */
async function joinCli(args: readonly string[], dataDir?: string): Promise<RunResult & { dataDir: string }> {
  const dir = dataDir ?? (await tempDir('edgeward-e2e-edge-'));
  const r = await cli(['edge', 'join', '--cloud', cloudAddr, '--bundle-digest', digest, '--data-dir', dir, ...args]);
  return { ...r, dataDir: dir };
}

/** The client reported `code` as `edgeward: CODE: message` (exit 1). */
function expectRefused(r: RunResult, code: string): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^edgeward: ${code.replace(/[/-]/g, '\\$&')}: `, 'm'));
}

/** A security event of the cloud's JSON log with these fields (waits for the log line to arrive). */
function securityEvent(fields: Record<string, unknown>, after?: ReadonlySet<LogLine>): Promise<LogLine> {
  return cloud.waitForLog(
    (l) =>
      typeof l.event === 'string' &&
      l.event.startsWith('security.') &&
      (after === undefined || !after.has(l)) &&
      Object.entries(fields).every(([k, v]) => l[k] === v),
    10_000,
  );
}

function nodeKey(): CsrKey & { privateKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

async function inProcessClient(): Promise<CloudClient> {
  const client = new CloudClient({ address: parseCloudAddress(cloudAddr), clock });
  await client.fetchBundle(digest);
  return client;
}

interface RawReply {
  status: number;
  message: CloudToEdgeMessage;
}

/** A raw HTTPS request to the cloud (no edge code involved); the reply must be a node API message. */
function rawPost(path: string, body: Buffer | string, opts: { agent?: Agent; onSocket?: (s: Socket) => void } = {}): Promise<RawReply> {
  const [host, port] = [cloudAddr.slice(0, cloudAddr.lastIndexOf(':')), Number(cloudAddr.slice(cloudAddr.lastIndexOf(':') + 1))];
  const data = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host,
        port,
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json', 'content-length': String(data.length) },
        minVersion: 'TLSv1.3',
        ...(opts.agent === undefined ? { agent: false, rejectUnauthorized: false } : { agent: opts.agent }),
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, message: decodeCloudToEdge(Buffer.concat(parts)) });
          } catch (e) {
            reject(e);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('socket', (s) => opts.onSocket?.(s));
    req.on('error', reject);
    req.end(data);
  });
}

function errorOf(m: CloudToEdgeMessage): { code: string; message: string } {
  if (m.kind !== 'error') throw new Error(`expected an error, got ${m.kind}`);
  return { code: m.code, message: m.message };
}

async function refusedCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CloudRefusedError) return e.code;
    throw e;
  }
  throw new Error('expected the cloud to refuse');
}

/** Entry for a workload (this uid) under node NAME, join, start the edge, fetch the SVID over its Workload API. */
async function joinStartFetch(name: string, joinArgs: readonly string[]): Promise<void> {
  const workload = `spiffe://${TD}/e2e/${name}/workload`;
  const entry = await cli(['entry', 'create', '--data-dir', cloudDir, '--parent', nodeId(name), '--selector', `unix:uid:${myUid}`, '--spiffe-id', workload]);
  expect(entry.stderr).toBe('');
  expect(entry.code).toBe(0);

  const j = await joinCli(joinArgs);
  expect(j.stderr).toBe('');
  expect(j.code).toBe(0);
  expect(j.stdout).toContain(`joined: ${nodeId(name)}`);

  const edge = startDaemon(['edge', 'start', '--data-dir', j.dataDir], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  edges.push(edge);
  const line = await edge.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=unix:\/\/\/\S+$/, 30_000);
  const out = join(await tempDir('edgeward-e2e-out-'), 'svid');
  const r = await cli(['svid', 'fetch', '--json', '--write', out], { SPIFFE_ENDPOINT_SOCKET: line.slice('SPIFFE_ENDPOINT_SOCKET='.length) });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const fetched = JSON.parse(r.stdout) as { svids: Array<{ spiffe_id: string }> };
  expect(fetched.svids.map((s) => s.spiffe_id)).toEqual([workload]);
  // Cloud-signed: it validates against the bundle the edge pinned by the cloud's digest (X509-SVID 5).
  const bundle = parseBundleJson(td, await readFile(join(j.dataDir, 'node', 'bundle.json'), 'utf8'));
  expect(bundleDigest(bundle)).toBe(digest);
  const chain = certsFromPem(await readFile(join(out, 'svid.pem'), 'utf8'));
  expect(validateX509Svid(chain, bundle, Date.now()).spiffeId.toString()).toBe(workload);
}

// ------------------------------------------------------------------------------------------ setup

beforeAll(async () => {
  const b = await cli(['--version']);
  expect(b.code, 'build first: npm run build').toBe(0);
  work = await tempDir('edgeward-e2e-join-');
  cloudDir = join(work, 'cloud');

  // x509pop material: a trusted CA, an untrusted one, and node certificates (CN = node name).
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ext = join(work, 'leaf.ext');
  await writeFile(ext, 'keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n');
  const ca = async (name: string): Promise<void> => {
    await openssl(['req', '-x509', ...ec, '-keyout', join(work, `${name}.key`), '-out', join(work, `${name}.pem`), '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  };
  const leaf = async (cn: string, caName: string): Promise<void> => {
    await openssl(['req', ...ec, '-keyout', join(work, `${cn}.key`), '-out', join(work, `${cn}.csr`), '-subj', `/CN=${cn}`]);
    await openssl(['x509', '-req', '-in', join(work, `${cn}.csr`), '-CA', join(work, `${caName}.pem`), '-CAkey', join(work, `${caName}.key`),
      '-CAcreateserial', '-out', join(work, `${cn}.pem`), '-days', '1', '-extfile', ext]);
  };
  await Promise.all([ca('pop-ca'), ca('rogue-ca')]);
  await Promise.all([leaf('pop-node', 'pop-ca'), leaf('pop-wrongkey', 'pop-ca'), leaf('pop-ban', 'pop-ca'), leaf('pop-untrusted', 'rogue-ca')]);
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(work, 'unrelated.key')]);

  const tpmLines: string[] = [];
  if (HAVE_SWTPM) {
    tpm = await startSwtpm();
    // The operator reads the EK hash off the device before the join, and enrols it for the node name.
    const h = await cli(['edge', 'tpm-ek-hash', '--tpm', tpm.tcti]);
    expect(h.stderr).toBe('');
    expect(h.code).toBe(0);
    enrolledEkHash = h.stdout.trim();
    expect(enrolledEkHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    // The edge sends no intermediates: the issuing CA is the anchor.
    tpmLines.push('  tpm:', `    ekCaBundle: ${tpm.issuerPemFile}`, '    enrolled:', `      tpm-node: "${enrolledEkHash}"`);
  }
  const config = join(work, 'cloud.yaml');
  await writeFile(
    config,
    [
      `trustDomain: ${TD}`,
      'attestors:',
      '  join_token: {}',
      `  x509pop: { caBundle: ${join(work, 'pop-ca.pem')} }`,
      ...tpmLines,
      // Every attempt of this file comes from 127.0.0.1.
      'rateLimit: { attestBurst: 1000, attestPerSecond: 1000 }',
      '',
    ].join('\n'),
  );
  cloud = startDaemon(['cloud', 'start', '--data-dir', cloudDir, '--listen', '127.0.0.1:0', '--config', config], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  cloudAddr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
  digest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/, 30_000)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
  expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  const started = await cloud.waitForLog((l) => l.event === 'cloud.started');
  expect(started['attestors']).toEqual(['join_token', 'x509pop', ...(HAVE_SWTPM ? ['tpm'] : [])]);
}, 90_000);

afterAll(async () => {
  for (const e of edges) await e.stop();
  await cloud?.stop();
  await tpm?.stop();
}, 30_000);

// ------------------------------------------------------------------------------------------ joins

describe('each attestor joins a real edge, which serves a cloud-signed SVID to a workload', () => {
  it('join_token', async () => {
    const t = await tokenFor('jt-node');
    await joinStartFetch('jt-node', ['--token', t.token, '--node', 'jt-node']);
  }, 60_000);

  it('x509pop (node name from the certificate CN)', async () => {
    await joinStartFetch('pop-node', ['--x509pop-cert', join(work, 'pop-node.pem'), '--x509pop-key', join(work, 'pop-node.key')]);
  }, 60_000);

  it.skipIf(!HAVE_SWTPM)('tpm (EK enrolled with the hash `edge tpm-ek-hash` printed)', async () => {
    await joinStartFetch('tpm-node', ['--tpm', tpm!.tcti, '--node', 'tpm-node']);
    const show = await cli(['node', 'show', 'tpm-node', '--data-dir', cloudDir, '--json']);
    expect(show.code).toBe(0);
    // The recorded fingerprint is the enrolled EK hash.
    expect(`sha256:${(JSON.parse(show.stdout) as { fingerprint: string }).fingerprint}`).toBe(enrolledEkHash);
  }, 90_000);
});

// ------------------------------------------------------------------------------------------ failures

describe('failures: a typed error for the client and a security event in the cloud log', () => {
  it('a reused join token: join-token/used', async () => {
    const t = await tokenFor('reuse-node');
    const first = await joinCli(['--token', t.token, '--node', 'reuse-node']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expectRefused(await joinCli(['--token', t.token, '--node', 'reuse-node']), 'join-token/used');
    await securityEvent({ event: 'security.attestation_failed', code: 'join-token/used', node: 'reuse-node' });
  });

  it('an expired join token (smallest TTL, 1s): join-token/expired', async () => {
    // The cloud deletes expired tokens every 60 s from its start (a deleted token is join-token/unknown):
    // keep expiry and use inside one such period. Waiting here is setup, nothing is timed.
    const startedAt = Number((await cloud.waitForLog((l) => l.event === 'cloud.started'))['time']); // pino: epoch ms
    expect(Number.isFinite(startedAt)).toBe(true);
    const phase = (Date.now() - startedAt) % 60_000;
    if (phase > 50_000) await new Promise((r) => setTimeout(r, 61_000 - phase));
    const t = await tokenFor('expired-node', '1s');
    const wait = t.expiresAt - Date.now() + 200;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    expectRefused(await joinCli(['--token', t.token, '--node', 'expired-node']), 'join-token/expired');
    await securityEvent({ event: 'security.attestation_failed', code: 'join-token/expired', node: 'expired-node' });
  }, 90_000);

  it('a token for node A presented as node B: join-token/wrong-node', async () => {
    const t = await tokenFor('node-a');
    expectRefused(await joinCli(['--token', t.token, '--node', 'node-b']), 'join-token/wrong-node');
    await securityEvent({ event: 'security.attestation_failed', code: 'join-token/wrong-node', node: 'node-b' });
  });

  it('x509pop signed with the wrong key (certificate and key do not match): x509pop/bad-signature', async () => {
    const r = await joinCli(['--x509pop-cert', join(work, 'pop-wrongkey.pem'), '--x509pop-key', join(work, 'unrelated.key')]);
    expectRefused(r, 'x509pop/bad-signature');
    await securityEvent({ event: 'security.attestation_failed', code: 'x509pop/bad-signature', node: 'pop-wrongkey' });
  });

  it('x509pop chaining to an untrusted CA: x509pop/untrusted', async () => {
    const r = await joinCli(['--x509pop-cert', join(work, 'pop-untrusted.pem'), '--x509pop-key', join(work, 'pop-untrusted.key')]);
    expectRefused(r, 'x509pop/untrusted');
    await securityEvent({ event: 'security.attestation_failed', code: 'x509pop/untrusted', node: 'pop-untrusted' });
  });

  it.skipIf(!HAVE_SWTPM)('a TPM quote over a stale nonce (valid quote of one session replayed in another): tpm/stale-nonce', async () => {
    const client = await inProcessClient();
    const session = await TpmAgentSession.open({ tcti: tpm!.tcti });
    try {
      const ev = await session.collect();
      const payload = tpmPayload({ ekCert: ev.ekCert, ekPublic: ev.ekPublic, akPublic: ev.akPublic });
      const begin = async (): Promise<{ sessionId: string; challenge: Buffer }> => {
        const m = await client.attest({ v: NODE_API_VERSION, kind: 'attest.begin', method: 'tpm', nodeName: 'tpm-node', payload, csr: buildCsr(nodeKey()) });
        if (m.kind !== 'attest.challenge') throw new Error(`expected a challenge, got ${m.kind}`);
        return m;
      };
      const first = await begin();
      const captured = await session.respond(decodeTpmChallenge(first.challenge)); // a valid quote over the first nonce
      const second = await begin();
      const fresh = await session.respond(decodeTpmChallenge(second.challenge));
      expect(decodeTpmChallenge(second.challenge).nonce.equals(decodeTpmChallenge(first.challenge).nonce)).toBe(false);
      // The credential of the second session is activated correctly; only the quote is the old one.
      const replay = encodeTpmChallengeResponse({ activatedSecret: fresh.activatedSecret, quote: captured.quote, quoteSignature: captured.quoteSignature });
      const seen = new Set(cloud.logs);
      const code = await refusedCode(client.attest({ v: NODE_API_VERSION, kind: 'attest.response', sessionId: second.sessionId, response: replay }));
      expect(code).toBe('tpm/stale-nonce');
      await securityEvent({ event: 'security.attestation_failed', code: 'tpm/stale-nonce', node: 'tpm-node' }, seen);
    } finally {
      await session.close();
      client.close();
    }
  }, 60_000);

  it.skipIf(!HAVE_SWTPM)('a TPM whose EK is not enrolled for the claimed name: tpm/ek-not-enrolled, naming the EK hash', async () => {
    const r = await joinCli(['--tpm', tpm!.tcti, '--node', 'tpm-stranger']);
    expectRefused(r, 'tpm/ek-not-enrolled');
    expect(r.stderr).toContain(enrolledEkHash); // what the operator enrols
    const ev = await securityEvent({ event: 'security.attestation_failed', code: 'tpm/ek-not-enrolled', node: 'tpm-stranger' });
    expect(ev['detail']).toMatchObject({ ek_hash: enrolledEkHash });
  }, 60_000);

  it('a CSR asking for another SPIFFE ID, CA=true and extra EKUs gets only what the server decided', async () => {
    const dir = await tempDir('edgeward-e2e-csr-');
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-subj', '/CN=evil',
      '-addext', `subjectAltName=URI:spiffe://${TD}/edgeward/cloud,DNS:evil.example`,
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:1',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
      '-addext', 'extendedKeyUsage=serverAuth,clientAuth,codeSigning,OCSPSigning',
      '-outform', 'DER', '-out', join(dir, 'csr.der')]);
    const csrText = (await openssl(['req', '-inform', 'DER', '-in', join(dir, 'csr.der'), '-noout', '-text'])).stdout;
    expect(csrText).toContain('CA:TRUE'); // the request really asks for all of it
    expect(csrText).toContain('Code Signing');
    const t = await tokenFor('csr-node');
    const body = encodeNodeApiMessage({ v: NODE_API_VERSION, kind: 'attest.begin', method: 'join_token', nodeName: 'csr-node', payload: { token: t.token }, csr: await readFile(join(dir, 'csr.der')) });
    const reply = await rawPost('/v1/attest', body);
    expect(reply.status).toBe(200);
    if (reply.message.kind !== 'attest.result') throw new Error(`expected attest.result, got ${JSON.stringify(reply.message).slice(0, 300)}`);
    await writeFile(join(dir, 'leaf.pem'), derToPem(reply.message.svidChainDer[0]!, 'CERTIFICATE'));
    const text = (await openssl(['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'])).stdout;
    const after = (header: string): string => {
      const lines = text.split('\n');
      const i = lines.findIndex((l) => l.trim().startsWith(header));
      expect(i, `${header} in\n${text}`).toBeGreaterThanOrEqual(0);
      return lines[i + 1]!.trim();
    };
    expect(after('X509v3 Subject Alternative Name')).toBe(`URI:${nodeId('csr-node')}`); // X509-SVID 2: exactly one URI SAN
    expect(after('X509v3 Basic Constraints')).toBe('CA:FALSE'); // X509-SVID 4.1
    expect(after('X509v3 Extended Key Usage')).toBe('TLS Web Server Authentication, TLS Web Client Authentication'); // our leaf profile
    expect(after('X509v3 Key Usage')).not.toMatch(/Certificate Sign|CRL Sign/); // X509-SVID 4.3
    for (const banned of ['evil.example', '/edgeward/cloud', 'Code Signing', 'OCSP Signing', 'CA:TRUE']) expect(text).not.toContain(banned);
    // The only thing taken from the CSR: its public key.
    const certKey = (await openssl(['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-pubkey'])).stdout;
    const csrKey = (await openssl(['req', '-inform', 'DER', '-in', join(dir, 'csr.der'), '-noout', '-pubkey'])).stdout;
    expect(certKey).toBe(csrKey);
  });

  it('an oversized (> 64 KiB) and a malformed JSON request: clear errors, and the cloud serves the next join', async () => {
    const big = await rawPost('/v1/attest', Buffer.alloc(70 * 1024, 0x20));
    expect(big.status).toBe(413);
    expect(errorOf(big.message).code).toBe('node-api/too-large');
    await securityEvent({ event: 'security.request_too_large', code: 'node-api/too-large' });

    const bad = await rawPost('/v1/attest', '{"v":1,"kind":"attest.begin","method":');
    expect(bad.status).toBe(400);
    expect(errorOf(bad.message)).toEqual({ code: 'node-api/malformed', message: 'node API message is not valid JSON' });
    await securityEvent({ event: 'security.malformed_request', code: 'node-api/malformed' });

    const t = await tokenFor('after-garbage');
    const ok = await joinCli(['--token', t.token, '--node', 'after-garbage']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
  });

  it("a banned node's open connection is closed at once; renew and attest are refused (node/banned); unban + re-attest works (x509pop)", async () => {
    const client = await inProcessClient();
    const agents: Agent[] = [];
    try {
      // Join in-process (x509pop) so that the test owns the node key.
      const pop = loadX509PopEvidence(join(work, 'pop-ban.pem'), join(work, 'pop-ban.key'));
      const evidence: NodeEvidence = { method: 'x509pop', chainDer: pop.chainDer, privateKey: pop.privateKey };
      const key = nodeKey();
      const attested = await attestNode(client, evidence, 'pop-ban', key, td, clock);
      expect(validateX509Svid(attested.chainDer, attested.bundle, Date.now()).spiffeId.toString()).toBe(nodeId('pop-ban'));

      // A keep-alive mTLS connection as the node, authenticated by one request.
      const agent = new Agent({
        keepAlive: true,
        maxSockets: 1,
        cert: attested.chainDer.map((d) => derToPem(d, 'CERTIFICATE')).join(''),
        key: derToPem(pkcs8FromPrivateKey(key.privateKey), 'PRIVATE KEY'),
        ca: attested.bundle.x509Authorities.map((d) => derToPem(d, 'CERTIFICATE')).join(''),
        checkServerIdentity: () => undefined, // the cloud is checked by SPIFFE ID by the edge's client; here only the cloud's side matters
      });
      agents.push(agent);
      let socket: Socket | undefined;
      const entries = await rawPost('/v1/node', encodeNodeApiMessage({ v: NODE_API_VERSION, kind: 'entries.request' }), { agent, onSocket: (s) => (socket = s) });
      expect(entries.status).toBe(200);
      expect(entries.message.kind).toBe('entries.result');
      expect(socket).toBeDefined();
      expect(socket!.destroyed).toBe(false); // kept open (keep-alive)
      const closed = new Promise<{ perf: number; wall: number }>((resolve) => socket!.once('close', () => resolve({ perf: performance.now(), wall: Date.now() })));

      const seen = new Set(cloud.logs);
      const t0 = performance.now();
      const ban = await cli(['node', 'ban', 'pop-ban', '--data-dir', cloudDir]);
      const tCli = performance.now();
      expect(ban.stderr).toBe('');
      expect(ban.code).toBe(0);
      const tClosed = await closed;
      const ev = await securityEvent({ event: 'security.node_banned_connection_closed', node: 'pop-ban', code: 'node/banned' }, seen);
      expect(ev['connections']).toBeGreaterThanOrEqual(1);
      // Measured, printed, not asserted (no timing asserts): from the cloud applying the ban (its log time,
      // epoch ms, same host clock) to the node seeing its connection closed, and from starting the CLI.
      console.log(
        `[node-join e2e] banned node's keep-alive connection closed ${tClosed.wall - Number(ev['time'])} ms after the cloud applied the ban ` +
          `(${(tClosed.perf - t0).toFixed(1)} ms after \`edgeward node ban\` was started; the CLI, with its process start-up, exited after ${(tCli - t0).toFixed(1)} ms)`,
      );

      // Renewal with its (still unexpired) SVID over a new connection: refused.
      client.setCredentials({ chainDer: attested.chainDer, privateKey: key.privateKey });
      const seenRenew = new Set(cloud.logs);
      expect(await refusedCode(client.node({ v: NODE_API_VERSION, kind: 'renew.request', csr: buildCsr(nodeKey()) }))).toBe('node/banned');
      await securityEvent({ event: 'security.node_banned', code: 'node/banned', node: 'pop-ban' }, seenRenew);
      // Attestation with the same valid evidence: refused.
      const seenAttest = new Set(cloud.logs);
      expect(await refusedCode(attestNode(client, evidence, 'pop-ban', nodeKey(), td, clock))).toBe('node/banned');
      await securityEvent({ event: 'security.node_banned', code: 'node/banned', node: 'pop-ban' }, seenAttest);

      // Unban: the node attests again with the same certificate.
      const unban = await cli(['node', 'unban', 'pop-ban', '--data-dir', cloudDir]);
      expect(unban.code).toBe(0);
      const again = await attestNode(client, evidence, 'pop-ban', nodeKey(), td, clock);
      expect(validateX509Svid(again.chainDer, again.bundle, Date.now()).spiffeId.toString()).toBe(nodeId('pop-ban'));
      expect(parseCertificate(again.chainDer[0]!).serialHex).not.toBe(parseCertificate(attested.chainDer[0]!).serialHex);
      const show = JSON.parse((await cli(['node', 'show', 'pop-ban', '--data-dir', cloudDir, '--json'])).stdout) as { banned: boolean; serial: string };
      expect(show.banned).toBe(false);
      expect(show.serial).toBe(parseCertificate(again.chainDer[0]!).serialHex);
    } finally {
      for (const a of agents) a.destroy();
      client.close();
    }
  }, 60_000);
});

describe('the cloud', () => {
  it('never crashed during the file, logged no internal error, and still serves', async () => {
    expect(cloud.child.exitCode).toBeNull();
    expect(cloud.child.signalCode).toBeNull();
    expect(cloud.logs.filter((l) => l.event === 'node_api.internal_error')).toEqual([]);
    const client = await inProcessClient(); // GET /v1/bundle still matches the pinned digest
    client.close();
  });
});
