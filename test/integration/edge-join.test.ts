/**
 * The attested node join end to end with real processes (issue #4 "Edge side"): `edgeward cloud start`,
 * `edgeward token create`, `edgeward entry create` on the cloud, `edgeward edge join`, `edgeward edge start`
 * (joined), then a workload fetching its SVID over the Workload API with `edgeward svid fetch` / `jwt fetch`.
 * Failures: a bundle digest that does not match is refused before any attestation (the token stays
 * unused), a token bound to another node, a second join over a joined data dir. Finally the cloud is
 * stopped and a restarted edge still serves the cached (unexpired) SVID from its encrypted cache.
 *
 * Everything listens on 127.0.0.1 port 0 / Unix sockets in temp dirs; only PIDs started here are stopped.
 */
import { lstat, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certsFromPem,
  parseBundleJson,
  parseCertificate,
  TrustDomain,
  validateJwtSvidSync,
  validateX509Svid,
} from '../../src/identity/index.js';
import { adminCall } from '../../src/protocol/index.js';
import { buildProject, openssl, runCli, startDaemon, tempDir, type Daemon, type RunResult } from '../helpers/index.js';

const TD = 'edgeward.local';
const myUid = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/w/join-test`;

let cloud: Daemon | undefined;
let edge: Daemon | undefined;
let cloudDir = '';
let cloudAddr = '';
let digest = '';
/** Made in beforeAll: temp dirs made inside a test are removed when that test ends. */
let edgeDir = '';

async function token(node: string): Promise<{ token: string; joinCommand: string }> {
  const r = await runCli(['token', 'create', '--node', node, '--data-dir', cloudDir, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { token: string; joinCommand: string };
}

function join_(args: readonly string[]): Promise<RunResult> {
  return runCli(['edge', 'join', ...args], { timeoutMs: 30_000 });
}

async function startEdge(dataDir: string): Promise<{ d: Daemon; endpoint: string }> {
  const d = startDaemon(['edge', 'start', '--data-dir', dataDir], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  const line = await d.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=unix:\/\/\/\S+$/, 30_000);
  return { d, endpoint: line.slice('SPIFFE_ENDPOINT_SOCKET='.length) };
}

beforeAll(async () => {
  const build = await buildProject();
  expect(build.code, build.out).toBe(0);
  cloudDir = await tempDir('edgeward-join-cloud-');
  edgeDir = await tempDir('edgeward-join-edge-');
  cloud = startDaemon(['cloud', 'start', '--data-dir', cloudDir, '--listen', '127.0.0.1:0'], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  cloudAddr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
  digest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/, 30_000)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
  expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
}, 90_000);

afterAll(async () => {
  await edge?.stop();
  await cloud?.stop();
}, 30_000);

describe('edgeward edge join + edge start (joined) against a real cloud', () => {

  it('refuses a cloud whose bundle does not have the pinned digest, before any attestation (the token stays unused)', async () => {
    const dir = await tempDir('edgeward-join-mismatch-');
    const t = await token('mismatch');
    const wrong = 'sha256:' + (digest.endsWith('0') ? '1' : '0').repeat(64);
    const r = await join_(['--cloud', cloudAddr, '--token', t.token, '--bundle-digest', wrong, '--data-dir', dir, '--node', 'mismatch']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('join/bundle-digest-mismatch');
    await expect(lstat(join(dir, 'join.json'))).rejects.toThrow();
    // Nothing was attested: the cloud logged no attestation, and the very same token still joins.
    expect(cloud!.logs.filter((l) => String(l.event ?? '').includes('attest') && JSON.stringify(l).includes('mismatch'))).toEqual([]);
    const ok = await join_(['--cloud', cloudAddr, '--token', t.token, '--bundle-digest', digest, '--data-dir', dir, '--node', 'mismatch']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
  });

  it('refuses a token bound to another node (typed error from the cloud)', async () => {
    const dir = await tempDir('edgeward-join-wrong-');
    const t = await token('node-a');
    const r = await join_(['--cloud', cloudAddr, '--token', t.token, '--bundle-digest', digest, '--data-dir', dir, '--node', 'node-b']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/edgeward: join-token\/wrong-node: /);
    await expect(lstat(join(dir, 'join.json'))).rejects.toThrow();
  });

  it('takes the token from --token-file or EDGEWARD_JOIN_TOKEN (kept out of the process list)', async () => {
    const t1 = await token('node-tf');
    const dir1 = await tempDir('edgeward-join-tf-');
    const file = join(dir1, 'token');
    await writeFile(file, `${t1.token}\n`, { mode: 0o600 });
    const r1 = await join_(['--cloud', cloudAddr, '--token-file', file, '--bundle-digest', digest, '--data-dir', join(dir1, 'edge'), '--node', 'node-tf']);
    expect(r1.stderr).toBe('');
    expect(r1.code).toBe(0);
    expect(r1.stdout).toContain(`spiffe://${TD}/edgeward/node/node-tf`);

    const t2 = await token('node-env');
    const dir2 = await tempDir('edgeward-join-env-');
    const r2 = await runCli(['edge', 'join', '--cloud', cloudAddr, '--bundle-digest', digest, '--data-dir', dir2, '--node', 'node-env'], { env: { EDGEWARD_JOIN_TOKEN: t2.token } });
    expect(r2.stderr).toBe('');
    expect(r2.code).toBe(0);
    // Both at once is ambiguous: a usage error.
    const r3 = await join_(['--cloud', cloudAddr, '--token', t2.token, '--token-file', file, '--bundle-digest', digest, '--data-dir', dir2, '--node', 'node-env']);
    expect(r3.code).toBe(2);
  });

  it('joins with the printed join command, writes the data dir layout, and refuses a second join without --force', async () => {
    const create = await runCli([
      'entry', 'create', '--data-dir', cloudDir, '--parent', `spiffe://${TD}/edgeward/node/n1`,
      '--spiffe-id', WORKLOAD, '--selector', `unix:uid:${myUid}`, '--hint', 'joined', '--json',
    ]);
    expect(create.stderr).toBe('');
    expect(create.code).toBe(0);

    const t = await token('n1');
    // The command exactly as `token create` printed it, with the data dir swapped for a temp dir.
    const words = t.joinCommand.split(' ');
    expect(words.slice(0, 3)).toEqual(['edgeward', 'edge', 'join']);
    const args = words.slice(3);
    args[args.indexOf('--data-dir') + 1] = edgeDir;
    const r = await join_(args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`spiffe://${TD}/edgeward/node/n1`);
    const expiry = /node SVID expires: (\S+)/.exec(r.stdout)?.[1];
    expect(Date.parse(expiry ?? '')).toBeGreaterThan(Date.now());

    const rec = JSON.parse(await readFile(join(edgeDir, 'join.json'), 'utf8')) as Record<string, unknown>;
    expect(rec).toMatchObject({ v: 1, trustDomain: TD, nodeName: 'n1', cloud: cloudAddr, method: 'join_token', bundleDigest: digest });
    expect(JSON.stringify(rec)).not.toContain(t.token); // the token is not kept
    expect((await stat(join(edgeDir, 'join.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(edgeDir, 'keys'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(edgeDir, 'keys', 'node.key'))).mode & 0o777).toBe(0o600);
    const chain = certsFromPem(await readFile(join(edgeDir, 'node', 'svid.pem'), 'utf8'));
    const bundle = parseBundleJson(TrustDomain.parse(TD), await readFile(join(edgeDir, 'node', 'bundle.json'), 'utf8'));
    expect(validateX509Svid(chain, bundle, Date.now()).spiffeId.toString()).toBe(`spiffe://${TD}/edgeward/node/n1`);
    // The node key never left the node: the certificate certifies the key in DIR/keys.
    const { createPrivateKey, createPublicKey } = await import('node:crypto');
    const pub = createPublicKey(createPrivateKey(await readFile(join(edgeDir, 'keys', 'node.key'), 'utf8'))).export({ type: 'spki', format: 'der' });
    expect(parseCertificate(chain[0]!).spki.equals(pub)).toBe(true);

    const again = await join_(['--cloud', cloudAddr, '--token', (await token('n1')).token, '--bundle-digest', digest, '--data-dir', edgeDir, '--node', 'n1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('join/already-joined');
  });

  let firstSerial = '';

  it('edge start serves cloud-signed X509- and JWT-SVIDs to a workload over the Workload API', async () => {
    const started = await startEdge(edgeDir);
    edge = started.d;
    const out = join(await tempDir('edgeward-join-out-'), 'svid');
    const r = await runCli(['svid', 'fetch', '--json', '--write', out], { env: { SPIFFE_ENDPOINT_SOCKET: started.endpoint } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { svids: Array<{ spiffe_id: string; hint: string; serial: string }> };
    expect(j.svids).toHaveLength(1);
    expect(j.svids[0]).toMatchObject({ spiffe_id: WORKLOAD, hint: 'joined' });
    firstSerial = j.svids[0]!.serial;
    // Signed by the cloud's CA: it validates against the bundle pinned at join (X509-SVID 5).
    const bundle = parseBundleJson(TrustDomain.parse(TD), await readFile(join(edgeDir, 'node', 'bundle.json'), 'utf8'));
    const chain = certsFromPem(await readFile(join(out, 'svid.pem'), 'utf8'));
    expect(validateX509Svid(chain, bundle, Date.now()).spiffeId.toString()).toBe(WORKLOAD);

    const jr = await runCli(['jwt', 'fetch', '--audience', 'svc-a', '--socket', started.endpoint]);
    expect(jr.stderr).toBe('');
    expect(jr.code).toBe(0);
    const tok = jr.stdout.trim().split('\n')[0]!;
    expect(validateJwtSvidSync(tok, { audience: 'svc-a', bundles: bundle, now: Date.now() }).spiffeId.toString()).toBe(WORKLOAD);

    const st = (await adminCall(join(edgeDir, 'admin', 'admin.sock'), 'agent.status')) as {
      mode: string;
      node: { spiffeId: string; notAfter: number; expired: boolean };
      cloud: { reachable: boolean };
      entries: number;
    };
    expect(st.mode).toBe('joined');
    expect(st.node.spiffeId).toBe(`spiffe://${TD}/edgeward/node/n1`);
    expect(st.node.expired).toBe(false);
    expect(st.node.notAfter).toBeGreaterThan(Date.now());
    expect(st.cloud.reachable).toBe(true);
    expect(st.entries).toBe(1);
    // The joined edge lists the delegated entry with its parent, the node (what `entry list` prints).
    const el = await runCli(['entry', 'list', '--data-dir', edgeDir]);
    expect(el.code).toBe(0);
    expect(el.stdout).toContain(`parent: spiffe://${TD}/edgeward/node/n1`);
    expect(el.stdout).not.toContain('undefined');
    expect((await stat(join(edgeDir, 'cache.db'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(edgeDir, 'keys', 'cache.key'))).mode & 0o777).toBe(0o600);
  }, 60_000);

  it('with the cloud stopped, a restarted edge still serves the cached SVID', async () => {
    expect(firstSerial).not.toBe('');
    await edge!.stop();
    edge = undefined;
    await cloud!.stop();
    cloud = undefined;
    const started = await startEdge(edgeDir);
    edge = started.d;
    const r = await runCli(['svid', 'fetch', '--json'], { env: { SPIFFE_ENDPOINT_SOCKET: started.endpoint } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { svids: Array<{ spiffe_id: string; serial: string }> };
    expect(j.svids.map((s) => [s.spiffe_id, s.serial])).toEqual([[WORKLOAD, firstSerial]]);
    expect(started.d.logs.some((l) => l.event === 'svid.restored')).toBe(true);
    const st = (await adminCall(join(edgeDir, 'admin', 'admin.sock'), 'agent.status')) as { cloud: { reachable: boolean | null } };
    expect(st.cloud.reachable).toBe(false);
  }, 60_000);
});

describe('x509pop join and automatic re-attestation (re-attestable method)', () => {
  let dir = '';
  let popCloud: Daemon | undefined;
  let popEdge: Daemon | undefined;

  beforeAll(async () => {
    dir = await tempDir('edgeward-join-x509pop-');
    const ext = join(dir, 'ext');
    await writeFile(ext, 'keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n');
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    await openssl(['req', '-x509', ...ec, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=node-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    await openssl(['req', ...ec, '-keyout', join(dir, 'node.key'), '-out', join(dir, 'node.csr'), '-subj', '/CN=pop-node']);
    await openssl(['x509', '-req', '-in', join(dir, 'node.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial',
      '-out', join(dir, 'node.pem'), '-days', '1', '-extfile', ext]);
    popCloud = startDaemon(['cloud', 'start', '--data-dir', join(dir, 'cloud'), '--listen', '127.0.0.1:0', '--x509pop-ca-bundle', join(dir, 'ca.pem')]);
  }, 60_000);

  afterAll(async () => {
    await popEdge?.stop();
    await popCloud?.stop();
  }, 30_000);

  it('joins as the certificate CN without --node or token, and re-attests by itself after an eviction', async () => {
    const addr = (await popCloud!.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
    const pin = (await popCloud!.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/, 30_000)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
    const edgeData = join(dir, 'edge');
    const r = await join_(['--cloud', addr, '--bundle-digest', pin, '--x509pop-cert', join(dir, 'node.pem'), '--x509pop-key', join(dir, 'node.key'), '--data-dir', edgeData]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`spiffe://${TD}/edgeward/node/pop-node`);
    const before = certsFromPem(await readFile(join(edgeData, 'node', 'svid.pem'), 'utf8'));

    const ev = await runCli(['node', 'evict', 'pop-node', '--data-dir', join(dir, 'cloud')]);
    expect(ev.code).toBe(0);
    popEdge = startDaemon(['edge', 'start', '--data-dir', edgeData], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
    await popEdge.waitForLog((l) => l.event === 'edge.node_reattested', 30_000);
    const after = certsFromPem(await readFile(join(edgeData, 'node', 'svid.pem'), 'utf8'));
    expect(parseCertificate(after[0]!).serialHex).not.toBe(parseCertificate(before[0]!).serialHex);
    const bundle = parseBundleJson(TrustDomain.parse(TD), await readFile(join(edgeData, 'node', 'bundle.json'), 'utf8'));
    expect(validateX509Svid(after, bundle, Date.now()).spiffeId.toString()).toBe(`spiffe://${TD}/edgeward/node/pop-node`);
    const st = (await adminCall(join(edgeData, 'admin', 'admin.sock'), 'agent.status')) as { node: { serial: string; expired: boolean } };
    expect(st.node.serial).toBe(parseCertificate(after[0]!).serialHex);
  }, 60_000);
});
