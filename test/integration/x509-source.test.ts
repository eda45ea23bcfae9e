/**
 * "Bring your own SPIRE" (issue 4): WorkloadApiX509Source against a REAL external SPIFFE provider, a
 * standalone Edgeward agent started as a child process (`edgeward edge start --standalone`), over its
 * Unix socket, with this test process attested by the kernel (entries select `unix:uid:<our uid>`).
 *
 * Checks: the source delivers spiffe://TD/edgeward/cloud (explicit endpoint and SPIFFE_ENDPOINT_SOCKET);
 * a wrong expected ID is refused with a typed error; two sources authenticate each other in a real TLS
 * 1.3 mutual-auth connection on 127.0.0.1 by SPIFFE ID against the bundle (strangers and missing client
 * certificates refused); a short-lived SVID rotates, onChange fires with a new serial and a TLS server
 * swaps its certificate in place; when the agent stops the source keeps serving the last SVID (and reports
 * expiry once it has expired), and after the agent restarts it reconnects by itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certToPem,
  generateP256,
  mintRootCa,
  mintX509Svid,
  parseCertificate,
  signerFromPrivateKey,
  SpiffeId,
  TrustDomain,
  validateX509Svid,
  type BundleSet,
  type IdentitySource,
} from '../../src/identity/index.js';
import { WorkloadApiX509Source, X509SourceError, type X509SourceOptions } from '../../src/protocol/index.js';
import { CLI_PATH, REPO_ROOT, runCli, tempDir } from '../helpers/index.js';

const TD = 'byo.example';
const CLOUD = SpiffeId.parse(`spiffe://${TD}/edgeward/cloud`);
const EDGE = SpiffeId.parse(`spiffe://${TD}/edgeward/node/edge-1`);
const ROT = SpiffeId.parse(`spiffe://${TD}/edgeward/node/rot`);
const PARENT = `spiffe://${TD}/spire/agent/test`;
const NODE_PREFIX = `spiffe://${TD}/edgeward/node/`;
const myUid = process.getuid?.() ?? 0;

interface Agent {
  child: ChildProcess;
  pid: number;
  endpoint: string;
  stderr: () => string;
}

let dataDir = '';
let agent: Agent | undefined;
const sources: WorkloadApiX509Source[] = [];
let cloudSrc: WorkloadApiX509Source;

function startAgent(dir: string): Promise<Agent> {
  const child = spawn(process.execPath, [CLI_PATH, 'edge', 'start', '--standalone', '--trust-domain', TD, '--data-dir', dir], {
    cwd: REPO_ROOT,
    env: { ...process.env, EDGEWARD_DEBUG: '', EDGEWARD_LOG_LEVEL: 'warn', SPIFFE_ENDPOINT_SOCKET: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += b.toString('utf8');
  });
  return new Promise<Agent>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent did not start in 20 s; stderr: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^SPIFFE_ENDPOINT_SOCKET=(unix:\/\/\/\S+)$/.exec(line);
      if (m !== null && child.pid !== undefined) {
        clearTimeout(t);
        resolve({ child, pid: child.pid, endpoint: m[1]!, stderr: () => stderr });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      reject(new Error(`agent exited early (${String(code ?? signal)}); stderr: ${stderr}`));
    });
  });
}

/** SIGTERM the agent (only its PID), SIGKILL after 5 s. */
async function stopAgent(a: Agent): Promise<void> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return;
  const gone = once(a.child, 'exit');
  a.child.kill('SIGTERM');
  const t = setTimeout(() => {
    if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
  }, 5_000);
  await gone;
  clearTimeout(t);
}

async function createEntry(spiffeId: SpiffeId, extra: string[]): Promise<void> {
  const r = await runCli(['entry', 'create', '--data-dir', dataDir, '--spiffe-id', spiffeId.toString(), '--parent', PARENT, '--selector', `unix:uid:${myUid}`, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
}

async function source(o: X509SourceOptions): Promise<WorkloadApiX509Source> {
  const s = await WorkloadApiX509Source.create({ endpoint: agent!.endpoint, timeoutMs: 20_000, backoff: { initialMs: 200, maxMs: 2000 }, ...o });
  sources.push(s);
  return s;
}

/** Poll `cond` every 50 ms until true or `ms` passed (then throw with `what`). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** TLS material from the identity port: the SVID chain and its key. */
function tlsIdentity(src: IdentitySource): { cert: string; key: string } {
  const s = src.svid();
  return { cert: s.chainDer.map((d) => certToPem(Buffer.from(d))).join(''), key: s.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** The chain the peer sent (leaf first), as DER. */
function peerChain(sock: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  while (c !== undefined && c.raw !== undefined && out.length < 8) {
    if (out.some((d) => d.equals(c!.raw))) break; // a self-signed certificate is its own issuer
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

/** Validate the peer by SPIFFE ID against our bundle (X509-SVID 5); returns the ID or throws. */
function verifyPeer(sock: tls.TLSSocket, bundles: BundleSet, accept: (id: SpiffeId) => boolean): SpiffeId {
  const chain = peerChain(sock);
  if (chain.length === 0) throw new Error('the peer sent no certificate');
  const { spiffeId } = validateX509Svid(chain, bundles, Date.now(), { trustDomain: TrustDomain.parse(TD) });
  if (!accept(spiffeId)) throw new Error(`peer ${spiffeId.toString()} is not authorized`);
  return spiffeId;
}

interface MtlsServer {
  port: number;
  server: tls.Server;
  refused: string[];
  close(): Promise<void>;
}

/** A TLS 1.3 server with the source's SVID that admits only node SVIDs of the trust domain. */
async function mtlsServer(src: IdentitySource): Promise<MtlsServer> {
  const refused: string[] = [];
  const server = tls.createServer({ ...tlsIdentity(src), minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false });
  server.on('secureConnection', (sock) => {
    sock.on('error', () => {});
    try {
      const id = verifyPeer(sock, src.bundles(), (i) => i.toString().startsWith(NODE_PREFIX) && i.path.split('/').length === 4);
      sock.end(`hello ${id.toString()} over ${String(sock.getProtocol())}\n`);
    } catch (e) {
      refused.push(e instanceof Error ? e.message : String(e));
      sock.destroy();
    }
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    server,
    refused,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface ClientResult {
  serverId?: string;
  serverSerial?: string;
  data: string;
  error?: string;
}

/** Connect with `identity` (or none), verify the server by SPIFFE ID against `bundles`, read until EOF. */
function mtlsClient(port: number, identity: { cert: string; key: string } | undefined, bundles: BundleSet, expectServer: SpiffeId): Promise<ClientResult> {
  return new Promise((resolve) => {
    const result: ClientResult = { data: '' };
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      ...(identity ?? {}),
      minVersion: 'TLSv1.3',
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined, // identity is checked by SPIFFE ID below, not by host name
    });
    sock.on('secureConnect', () => {
      try {
        result.serverId = verifyPeer(sock, bundles, (i) => i.equals(expectServer)).toString();
        result.serverSerial = parseCertificate(sock.getPeerCertificate().raw).serialHex;
      } catch (e) {
        result.error = e instanceof Error ? e.message : String(e);
        sock.destroy();
      }
    });
    sock.on('data', (b: Buffer) => (result.data += b.toString('utf8')));
    sock.on('error', (e) => (result.error ??= e.message));
    sock.on('close', () => resolve(result));
  });
}

beforeAll(async () => {
  // dist/ is normally fresh (`npm test` builds first); build anyway so that a direct vitest run works.
  const build = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'build.mjs')], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (out += b.toString()));
    c.once('close', (code) => resolve({ code, out }));
  });
  expect(build.code, build.out).toBe(0);
  dataDir = await tempDir('edgeward-x509src-');
  agent = await startAgent(dataDir);
  await createEntry(CLOUD, ['--hint', 'cloud']);
  await createEntry(EDGE, ['--hint', 'edge']);
  await createEntry(ROT, ['--hint', 'rotating', '--x509-ttl', '6s']);
  cloudSrc = await source({ expectedId: CLOUD });
}, 90_000);

afterAll(async () => {
  for (const s of sources.splice(0)) s.close();
  const a = agent;
  agent = undefined;
  if (a !== undefined) await stopAgent(a);
}, 20_000);

describe('WorkloadApiX509Source against a real external Workload API', () => {
  it('delivers spiffe://TD/edgeward/cloud with a key, a chain that validates against the delivered bundle', () => {
    const s = cloudSrc.svid();
    expect(s.spiffeId.toString()).toBe(CLOUD.toString());
    const v = validateX509Svid(s.chainDer, cloudSrc.bundles(), Date.now());
    expect(v.spiffeId.toString()).toBe(CLOUD.toString());
    expect(v.leaf.serialHex).toBe(s.serialHex);
    expect(s.notAfter).toBeGreaterThan(Date.now());
    expect(cloudSrc.bundles().trustDomains().map((t) => t.name)).toEqual([TD]);
    expect(cloudSrc.status()).toMatchObject({ connected: true, refused: 0 });
  });

  it('finds the agent through SPIFFE_ENDPOINT_SOCKET when no endpoint is given', async () => {
    const s = await WorkloadApiX509Source.create({ env: { SPIFFE_ENDPOINT_SOCKET: agent!.endpoint }, expectedId: EDGE, timeoutMs: 20_000 });
    sources.push(s);
    expect(s.svid().spiffeId.toString()).toBe(EDGE.toString());
  });

  it('refuses a wrong expected ID with x509-source/unexpected-id (exact and predicate forms)', async () => {
    const wrong = SpiffeId.parse(`spiffe://${TD}/edgeward/node/someone-else`);
    const e1 = await source({ expectedId: wrong }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(X509SourceError);
    expect((e1 as X509SourceError).code).toBe('x509-source/unexpected-id');
    expect((e1 as X509SourceError).message).toContain(wrong.toString());
    // The cloud SVID is picked by hint, but only node IDs are acceptable.
    const e2 = await source({ pickSvid: 'cloud', expectedId: (id) => id.toString().startsWith(NODE_PREFIX) }).catch((e: unknown) => e);
    expect((e2 as X509SourceError).code).toBe('x509-source/unexpected-id');
    // A hint the agent does not serve.
    const e3 = await source({ pickSvid: 'no-such-hint' }).catch((e: unknown) => e);
    expect((e3 as X509SourceError).code).toBe('x509-source/no-matching-svid');
  });

  it('two sources authenticate each other in TLS 1.3 mutual auth by SPIFFE ID against the bundle', async () => {
    const edgeSrc = await source({ expectedId: EDGE });
    const srv = await mtlsServer(cloudSrc);
    try {
      const ok = await mtlsClient(srv.port, tlsIdentity(edgeSrc), edgeSrc.bundles(), CLOUD);
      expect(ok.error).toBeUndefined();
      expect(ok.serverId).toBe(CLOUD.toString());
      expect(ok.data).toBe(`hello ${EDGE.toString()} over TLSv1.3\n`);

      // The client refuses a server that is not the expected ID (pinning by SPIFFE ID, not host name).
      const wrongServer = await mtlsClient(srv.port, tlsIdentity(edgeSrc), edgeSrc.bundles(), EDGE);
      expect(wrongServer.error).toContain('is not authorized');
      expect(wrongServer.data).toBe('');

      // No client certificate: refused by the server.
      const anon = await mtlsClient(srv.port, undefined, edgeSrc.bundles(), CLOUD);
      expect(anon.data).toBe('');
      // A node ID from a CA outside the bundle: refused (X509-SVID 5).
      const signer = signerFromPrivateKey(generateP256().privateKey);
      const rogueCa = mintRootCa({ trustDomain: TrustDomain.parse(TD), signer, now: Date.now(), ttlMs: 3_600_000 });
      const key = generateP256();
      const rogue = mintX509Svid({ spiffeId: EDGE, spki: key.spki, issuer: { cert: rogueCa.parsed, signer }, now: Date.now(), ttlMs: 600_000 });
      const stranger = await mtlsClient(
        srv.port,
        { cert: certToPem(rogue.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
        edgeSrc.bundles(),
        CLOUD,
      );
      expect(stranger.data).toBe('');
      // A client that is in the bundle but not a node (the cloud itself) is refused by the authorizer.
      const notNode = await mtlsClient(srv.port, tlsIdentity(cloudSrc), cloudSrc.bundles(), CLOUD);
      expect(notNode.data).toBe('');
      await until(() => srv.refused.length === 3, 5000, 'three refusals');
      expect(srv.refused[0]).toContain('no certificate');
      expect(srv.refused[1]).toContain('does not chain');
      expect(srv.refused[2]).toContain('is not authorized');
    } finally {
      await srv.close();
    }
  });

  it('a short-lived SVID rotates: onChange fires with a new serial and a TLS server swaps its certificate in place', async () => {
    const rot = await source({ pickSvid: 'rotating', expectedId: ROT });
    const edgeSrc = await source({ expectedId: EDGE });
    const first = rot.svid();
    expect(first.spiffeId.toString()).toBe(ROT.toString());
    expect(first.notAfter - Date.now()).toBeLessThanOrEqual(6_000); // entry --x509-ttl 6s
    const srv = await mtlsServer(rot);
    const serials: string[] = [];
    rot.onChange(() => {
      serials.push(rot.svid().serialHex);
      srv.server.setSecureContext({ ...tlsIdentity(rot), minVersion: 'TLSv1.3' }); // the cloud's rotation recipe
    });
    try {
      const before = await mtlsClient(srv.port, tlsIdentity(edgeSrc), edgeSrc.bundles(), ROT);
      expect(before.serverId).toBe(ROT.toString());
      await until(() => serials.length > 0, 25_000, 'a rotation');
      expect(serials[0]).not.toBe(first.serialHex);
      const current = rot.svid().serialHex;
      expect(current).not.toBe(first.serialHex);
      const after = await mtlsClient(srv.port, tlsIdentity(edgeSrc), edgeSrc.bundles(), ROT);
      expect(after.error).toBeUndefined();
      expect(after.serverId).toBe(ROT.toString());
      // The server presents a rotated certificate (the rotation may have advanced once more meanwhile).
      expect(after.serverSerial).not.toBe(before.serverSerial);
      expect(serials).toContain(after.serverSerial);
    } finally {
      await srv.close();
    }
  }, 40_000);

  it('keeps serving the last SVID while the agent is down, reports expiry, and reconnects when it is back', async () => {
    const rot = await source({ pickSvid: 'rotating', expectedId: ROT });
    const before = cloudSrc.svid();
    const updatesBefore = cloudSrc.status().updates;

    await stopAgent(agent!);
    await until(() => !cloudSrc.status().connected && !rot.status().connected, 15_000, 'the sources to notice the agent is gone');
    expect(cloudSrc.status().lastError?.code).toMatch(/^workload-api\//);
    // The last SVID is still served, and it still validates.
    const during = cloudSrc.svid();
    expect(during.serialHex).toBe(before.serialHex);
    expect(validateX509Svid(during.chainDer, cloudSrc.bundles(), Date.now()).spiffeId.toString()).toBe(CLOUD.toString());
    // The short-lived one expires while nobody can renew it.
    const lastRot = rot.svid();
    await until(() => Date.now() > lastRot.notAfter + 50, 10_000, 'the rotating SVID to expire');
    let expired: unknown;
    try {
      rot.svid();
    } catch (e) {
      expired = e;
    }
    expect(expired).toBeInstanceOf(X509SourceError);
    expect((expired as X509SourceError).code).toBe('x509-source/expired');

    // The agent comes back on the same socket; both sources reconnect by themselves.
    agent = await startAgent(dataDir);
    await until(() => cloudSrc.status().connected && cloudSrc.status().updates > updatesBefore, 30_000, 'the cloud source to reconnect');
    expect(cloudSrc.svid().spiffeId.toString()).toBe(CLOUD.toString());
    expect(validateX509Svid(cloudSrc.svid().chainDer, cloudSrc.bundles(), Date.now()).spiffeId.toString()).toBe(CLOUD.toString());
    await until(() => rot.status().connected, 30_000, 'the rotating source to reconnect');
    const healed = rot.svid();
    expect(healed.serialHex).not.toBe(lastRot.serialHex);
    expect(healed.notAfter).toBeGreaterThan(Date.now());
  }, 60_000);
});
