/**
 * End to end, "Bring your own SPIRE" (issue 4): a standalone Edgeward agent (`edgeward edge start
 * --standalone`) plays the external SPIRE agent, i.e. the SPIFFE Workload API provider of another
 * cloud/edge pair: `edgeward cloud start --spiffe-socket` and `edgeward edge start --spiffe-socket --cloud`.
 *
 * Both SPIFFE IDs (`spiffe://TD/edgeward/cloud`, `spiffe://TD/edgeward/node/spire-1`) are registered for
 * this test's uid, so the Workload API gives both SVIDs to both processes (Workload API 5.2: every
 * matching SVID): each process must pick its own by ID (the cloud exactly its cloud ID, the edge a node ID).
 *
 * Checks: the cloud serves the SPIRE-issued cloud SVID (URI SAN, chains to the provider's bundle) and
 * the provider's bundle on /v1/bundle; the edge keeps an authenticated session (edge.cloud_connected,
 * agent.status mode spire); the node is recorded with method `spire` (`node list --json`); attestation,
 * join tokens and CA-backed requests are refused with typed codes and security events; `entries.request`
 * works; `node ban spire-1` closes the edge's open connection and the edge logs the refusal; unban lets it
 * back in; a cloud configured for another trust domain refuses to start. Real processes on 127.0.0.1, real
 * TLS; only outcomes are asserted (generous timeouts), never speed.
 */
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleDigest,
  derToPem,
  parseBundleJson,
  pkcs8FromPrivateKey,
  SpiffeId,
  TrustDomain,
  validateX509Svid,
} from '../../src/identity/index.js';
import { adminCall, WorkloadApiX509Source } from '../../src/protocol/index.js';
import { runCli, startDaemon, tempDir, type Daemon, type LogLine } from '../helpers/index.js';

const TD = 'spire-mode.example';
const td = TrustDomain.parse(TD);
const CLOUD_ID = SpiffeId.parse(`spiffe://${TD}/edgeward/cloud`);
const NODE_ID = SpiffeId.parse(`spiffe://${TD}/edgeward/node/spire-1`);
const PARENT = `spiffe://${TD}/spire/agent/e2e`;
const myUid = process.getuid?.() ?? 0;

let providerDir = '';
let cloudDir = '';
let edgeDir = '';
let provider: Daemon | undefined;
let cloud: Daemon | undefined;
let edge: Daemon | undefined;
let endpoint = '';
let cloudAddr = '';
let nodeSource: WorkloadApiX509Source | undefined;

const env = { SPIFFE_ENDPOINT_SOCKET: undefined, EDGEWARD_LOG_LEVEL: 'info' };

function hostPort(): { host: string; port: number } {
  const i = cloudAddr.lastIndexOf(':');
  return { host: cloudAddr.slice(0, i), port: Number(cloudAddr.slice(i + 1)) };
}

/** One HTTPS request to the cloud; `tlsId` = client certificate from a source (mTLS), no keep-alive. */
function call(method: 'GET' | 'POST', path: string, body?: string, withNodeSvid = false): Promise<{ status: number; json: Record<string, unknown>; chain: Buffer[] }> {
  const { host, port } = hostPort();
  const cred: { cert?: string; key?: string } = {};
  if (withNodeSvid) {
    const s = nodeSource!.svid();
    cred.cert = s.chainDer.map((d) => derToPem(Buffer.from(d), 'CERTIFICATE')).join('');
    cred.key = derToPem(pkcs8FromPrivateKey(s.privateKey), 'PRIVATE KEY');
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host,
        port,
        method,
        path,
        agent: false,
        rejectUnauthorized: false, // the chain is checked below, by SPIFFE ID against the provider's bundle
        minVersion: 'TLSv1.3',
        ...cred,
        headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        const chain = peerChain(res.socket as TLSSocket);
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>, chain });
          } catch (e) {
            reject(e as Error);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function peerChain(sock: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  while (c !== undefined && c.raw !== undefined && out.length < 8) {
    if (out.some((d) => d.equals(c!.raw))) break;
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

const hasEvent = (d: Daemon | undefined, pred: (l: LogLine) => boolean): boolean => (d?.logs ?? []).some(pred);

beforeAll(async () => {
  providerDir = await tempDir('ew-spire-provider-');
  cloudDir = await tempDir('ew-spire-cloud-');
  edgeDir = await tempDir('ew-spire-edge-');
  provider = startDaemon(['edge', 'start', '--standalone', '--trust-domain', TD, '--data-dir', providerDir], { env });
  endpoint = (await provider.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=unix:\/\/\//)).slice('SPIFFE_ENDPOINT_SOCKET='.length);
  for (const id of [CLOUD_ID, NODE_ID]) {
    const r = await runCli(['entry', 'create', '--data-dir', providerDir, '--spiffe-id', id.toString(), '--parent', PARENT, '--selector', `unix:uid:${myUid}`, '--json']);
    expect(r.code, r.stderr).toBe(0);
  }
  cloud = startDaemon(['cloud', 'start', '--data-dir', cloudDir, '--trust-domain', TD, '--listen', '127.0.0.1:0', '--spiffe-socket', endpoint], { env });
  cloudAddr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/)).slice('EDGEWARD_CLOUD='.length);
  edge = startDaemon(['edge', 'start', '--spiffe-socket', endpoint, '--cloud', cloudAddr, '--data-dir', edgeDir], { env });
  await edge.waitForLine(/^EDGEWARD_NODE_ID=/);
  // The test's own view of the provider (same uid): the node SVID and the provider's bundle.
  nodeSource = await WorkloadApiX509Source.create({ endpoint, expectedId: NODE_ID, timeoutMs: 20_000 });
}, 90_000);

afterAll(async () => {
  nodeSource?.close();
  // Only the processes this file started, by PID (startDaemon).
  await edge?.stop();
  await cloud?.stop();
  await provider?.stop();
});

describe('SPIRE mode: cloud and edge take their identities from an external Workload API', () => {
  it('the cloud serves the SPIRE-issued SVID spiffe://TD/edgeward/cloud and the provider bundle', async () => {
    const started = await cloud!.waitForLog((l) => l.event === 'cloud.started');
    expect(started['mode']).toBe('spire');
    expect(started['spiffe_id']).toBe(CLOUD_ID.toString());

    // The TLS server certificate: exactly one URI SAN, the cloud ID, chaining to the provider's bundle (X509-SVID 5).
    const { host, port } = hostPort();
    const chain = await new Promise<Buffer[]>((resolve, reject) => {
      const s = tlsConnect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
        const c = peerChain(s);
        s.end();
        resolve(c);
      });
      s.on('error', reject);
    });
    const v = validateX509Svid(chain, nodeSource!.bundles(), Date.now(), { trustDomain: td });
    expect(v.spiffeId.toString()).toBe(CLOUD_ID.toString());
    expect(v.leaf.uris).toEqual([CLOUD_ID.toString()]);
    // ...and it is the SVID the provider issues to the cloud's uid for that ID, not one of a CA of the cloud's own.
    const viaCloud = await WorkloadApiX509Source.create({ endpoint, expectedId: CLOUD_ID, timeoutMs: 20_000 });
    try {
      // The provider caches one SVID per entry: the cloud's TLS certificate is that very certificate.
      expect(viaCloud.svid().chainDer[0]!.equals(chain[0]!)).toBe(true);
    } finally {
      viaCloud.close();
    }

    // GET /v1/bundle serves the provider's bundle of the trust domain.
    const r = await call('GET', '/v1/bundle');
    expect(r.status).toBe(200);
    const served = parseBundleJson(td, Buffer.from(JSON.stringify(r.json)));
    expect(bundleDigest(served)).toBe(bundleDigest(nodeSource!.bundles().get(td)!));
    const digestLine = cloud!.stdout.find((l) => l.startsWith('EDGEWARD_BUNDLE_DIGEST='));
    expect(digestLine).toBe(`EDGEWARD_BUNDLE_DIGEST=${bundleDigest(nodeSource!.bundles().get(td)!)}`);
  });

  it('the edge keeps an authenticated session; the node is recorded with method spire', async () => {
    const connected = await edge!.waitForLog((l) => l.event === 'edge.cloud_connected');
    expect(connected['spiffe_id']).toBe(NODE_ID.toString());
    expect(edge!.stdout).toContain(`EDGEWARD_NODE_ID=${NODE_ID.toString()}`);
    expect(edge!.stdout).toContain(`SPIFFE_ENDPOINT_SOCKET=${endpoint}`);

    const status = (await adminCall(join(edgeDir, 'admin', 'admin.sock'), 'agent.status')) as Record<string, any>;
    expect(status['mode']).toBe('spire');
    expect(status['trustDomain']).toBe(TD);
    expect(status['workloadApi']).toBeNull();
    expect(status['node']['name']).toBe('spire-1');
    expect(status['node']['spiffeId']).toBe(NODE_ID.toString());
    expect(status['node']['notAfter']).toBeGreaterThan(Date.now());
    expect(status['cloud']['address']).toBe(cloudAddr);
    expect(status['cloud']['connected']).toBe(true);
    expect(status['cloud']['reachable']).toBe(true);

    const list = await runCli(['node', 'list', '--json', '--data-dir', cloudDir]);
    expect(list.code, list.stderr).toBe(0);
    const nodes = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
    const n = nodes.find((x) => x['name'] === 'spire-1');
    expect(n).toMatchObject({ name: 'spire-1', method: 'spire', status: 'active', spiffeId: NODE_ID.toString(), banned: false });
    expect(hasEvent(cloud, (l) => l.event === 'node.attested' && l['node'] === 'spire-1' && l['method'] === 'spire')).toBe(true);

    const cs = await runCli(['node', 'show', 'spire-1', '--json', '--data-dir', cloudDir]);
    expect(cs.code, cs.stderr).toBe(0);
    expect(JSON.parse(cs.stdout)).toMatchObject({ method: 'spire', serial: nodeSource!.svid().serialHex });
  });

  it('refuses join tokens and attestation with typed codes (SPIRE attests the nodes)', async () => {
    const t = await runCli(['token', 'create', '--node', 'other-1', '--data-dir', cloudDir]);
    expect(t.code).not.toBe(0);
    expect(t.stderr).toContain('cloud-admin/attestation-external');
    await cloud!.waitForLog((l) => l.event === 'security.token_refused' && l.code === 'cloud-admin/attestation-external');

    const a = await call('POST', '/v1/attest', JSON.stringify({ v: 1, kind: 'attest.begin', method: 'join_token', nodeName: 'other-1' }));
    expect(a.status).toBe(403);
    expect(a.json).toMatchObject({ kind: 'error', code: 'node-api/attestation-external' });
    await cloud!.waitForLog((l) => l.event === 'security.attestation_external' && l.code === 'node-api/attestation-external');
  });

  it('an SPIRE node SVID gets its entries; CA-backed requests are refused; a stranger is unauthenticated', async () => {
    const e = await call('POST', '/v1/node', JSON.stringify({ v: 1, kind: 'entries.request' }), true);
    expect(e.status).toBe(200);
    expect(e.json).toMatchObject({ kind: 'entries.result', entries: [] });

    const j = await call('POST', '/v1/node', JSON.stringify({ v: 1, kind: 'jwt.request', entryId: 'x', audience: ['a'] }), true);
    expect(j.status).toBe(403);
    expect(j.json).toMatchObject({ kind: 'error', code: 'node-api/external-identity' });
    await cloud!.waitForLog((l) => l.event === 'security.external_identity_refused' && l['node'] === 'spire-1');

    const anon = await call('POST', '/v1/node', JSON.stringify({ v: 1, kind: 'entries.request' }));
    expect(anon.status).toBe(401);
    expect(anon.json).toMatchObject({ kind: 'error', code: 'node-api/unauthenticated' });
  });

  it('node ban closes the edge connection at once, the edge logs the refusal; unban lets the node back in', async () => {
    const before = edge!.logs.length;
    const ban = await runCli(['node', 'ban', 'spire-1', '--data-dir', cloudDir]);
    expect(ban.code, ban.stderr).toBe(0);
    const closed = await cloud!.waitForLog((l) => l.event === 'security.node_banned_connection_closed' && l['node'] === 'spire-1');
    expect(closed['connections']).toBeGreaterThanOrEqual(1);
    // The edge noticed its session closing and contacted the cloud again: refused, banned.
    const refused = await edge!.waitForLog((l) => edge!.logs.indexOf(l) >= before && l.event === 'edge.cloud_refused');
    expect(refused.code).toBe('node/banned');
    expect(hasEvent(edge, (l) => edge!.logs.indexOf(l) >= before && l.event === 'edge.cloud_session_closed')).toBe(true);
    await cloud!.waitForLog((l) => l.event === 'security.node_banned' && l['node'] === 'spire-1' && l.code === 'node/banned');
    const status = (await adminCall(join(edgeDir, 'admin', 'admin.sock'), 'agent.status')) as Record<string, any>;
    expect(status['cloud']).toMatchObject({ connected: false, reachable: true, lastErrorCode: 'node/banned' });

    const banned = await call('POST', '/v1/node', JSON.stringify({ v: 1, kind: 'entries.request' }), true);
    expect(banned.status).toBe(403);
    expect(banned.json).toMatchObject({ kind: 'error', code: 'node/banned' });
    const shown = JSON.parse((await runCli(['node', 'show', 'spire-1', '--json', '--data-dir', cloudDir])).stdout) as Record<string, unknown>;
    expect(shown).toMatchObject({ method: 'spire', status: 'banned', banned: true });

    expect((await runCli(['node', 'unban', 'spire-1', '--data-dir', cloudDir])).code).toBe(0);
    const back = await call('POST', '/v1/node', JSON.stringify({ v: 1, kind: 'entries.request' }), true);
    expect(back.status).toBe(200);
  });

  it('edge start: SPIRE mode needs --cloud, is not combined with --standalone or a joined data dir', async () => {
    const noCloud = await runCli(['edge', 'start', '--spiffe-socket', endpoint], { env });
    expect(noCloud.code).toBe(2);
    expect(noCloud.stderr).toContain('--cloud');
    const both = await runCli(['edge', 'start', '--standalone', '--trust-domain', TD, '--data-dir', edgeDir, '--cloud', cloudAddr], { env });
    expect(both.code).toBe(2);
    const socket = await runCli(['edge', 'start', '--cloud', cloudAddr, '--spiffe-socket', endpoint, '--socket', '/tmp/x.sock'], { env });
    expect(socket.code).toBe(2);
    expect(socket.stderr).toContain('do not apply in SPIRE mode');
  });

  it('a cloud configured for another trust domain than the SPIRE SVID refuses to start (typed error)', async () => {
    const dir = await tempDir('ew-spire-cloud-td-');
    const r = await runCli(['cloud', 'start', '--data-dir', dir, '--trust-domain', 'other.example', '--listen', '127.0.0.1:0', '--spiffe-socket', endpoint], {
      env,
      timeoutMs: 40_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cloud/trust-domain-mismatch');
  });
});
