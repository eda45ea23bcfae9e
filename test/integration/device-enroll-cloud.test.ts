/**
 * Device provisioning through the node with the REAL cloud (issue #6, contract "Enrolment", "Node API", "Cloud"),
 * all in this process, every hop real: the cloud's node API server (TLS 1.3 on 127.0.0.1) over the embedded CA,
 * the SQLite node registry, resource store and device token store; a node joined with a join token over that API
 * (the edge's CloudClient); the node's sealed hub store fed with what the cloud syncs to it
 * (ResourceStore.pendingFor -> EdgeHubStore.apply -> DeviceRegistry.applyChanges, as the hub does); the node's
 * enrolment endpoint relaying with CloudClient.node over mTLS; and the reference client `edgeward device enroll`
 * / `device renew` run in-process through the CLI entry point. openssl checks the result independently.
 *
 * - a token enrolment writes DIR (0700) with svid.pem (X509-SVID 5: verifies with openssl against bundle.pem),
 *   svid.key (0600, the key the SVID certifies: made by the client, never sent), bundle.pem, bundle.json and
 *   device.json; a used token is refused by the cloud and that refusal reaches the device;
 * - no trust on first use: a wrong --bundle-digest, or an endpoint whose SVID is not a node's, is refused before
 *   the token leaves the client (the token still works afterwards);
 * - renewal over mTLS with the current SVID (RFC 7030 4.2.2 in spirit) gives a new key and SVID; after
 *   `device.revoke` reaches the node it is refused there (no call to the cloud), and so after a delete;
 * - factory enrolment (RFC 7030 3.3.2: TLS client authentication with a manufacturer certificate): a chain to the
 *   model's factory CA with the device's serialNumber works; another serial is refused by the cloud.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJoinTokenAttestor, generateJoinToken, RateLimiter } from '../../src/attestation/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { main } from '../../src/cli/index.js';
import {
  createCloudStore,
  createNodeApiServer,
  createNodeService,
  createResourceAdminHandlers,
  createResourceStore,
  openCloudCa,
  type CloudCa,
  type CloudStore,
  type NodeApiServer,
  type ResourceStore,
} from '../../src/cloud/index.js';
import { createDeviceAdminHandlers, createDeviceIssuer, openDeviceTokenStore, type DeviceRevokeResult, type DeviceTokenResult, type DeviceTokenStore } from '../../src/cloud/devices/index.js';
import { CloudClient, parseCloudAddress } from '../../src/edge/index.js';
import { createDeviceRegistry, type DeviceRegistry } from '../../src/edge/devices/registry.js';
import { createEnrollServer, type EnrollServer } from '../../src/edge/devices/enroll-server.js';
import { openEdgeHubStore, type EdgeHubStore, type HubItem } from '../../src/edge/hub/store.js';
import {
  BundleSet,
  bundleDigest,
  buildCsr,
  certsFromPem,
  generateP256,
  parseBundleJson,
  parseCertificate,
  SpiffeId,
  TrustDomain,
  type IdentitySource,
  type SvidWithKey,
} from '../../src/identity/index.js';
import { NODE_API_VERSION, type DeviceEnrollMessage, type DeviceRenewMessage } from '../../src/protocol/index.js';
import { openssl, tempDir } from '../helpers/index.js';
import { fakeIo } from '../unit/cli/fake-io.js';

const td = TrustDomain.parse('enrol.example.org');
const NODE = 'edge-e';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const clock = { now: () => Date.now() };

type Log = Record<string, unknown> & { level: string; msg: string };
const cloudLogs: Log[] = [];
const edgeLogs: Log[] = [];
const logTo = (logs: Log[]) => ({
  debug: (o: Record<string, unknown>, msg: string) => void logs.push({ ...o, level: 'debug', msg }),
  info: (o: Record<string, unknown>, msg: string) => void logs.push({ ...o, level: 'info', msg }),
  warn: (o: Record<string, unknown>, msg: string) => void logs.push({ ...o, level: 'warn', msg }),
  error: (o: Record<string, unknown>, msg: string) => void logs.push({ ...o, level: 'error', msg }),
});

// certificates of a device maker (openssl), for the factory path
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
`;
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

let dir = '';
let cloudStore: CloudStore;
let ca: CloudCa;
let resources: ResourceStore;
let tokens: DeviceTokenStore;
let server: NodeApiServer;
let client: CloudClient;
let edgeStore: EdgeHubStore;
let registry: DeviceRegistry;
let enroll: EnrollServer;
let edgeAddr = '';
let digest = '';
let handlers: Record<string, (p: Record<string, unknown>) => unknown>;
const relayed: Array<DeviceEnrollMessage | DeviceRenewMessage> = [];
let makerRoot = '';

/** What the hub does for this node: the cloud's pending items stored at the edge, the registry told, acks recorded. */
function syncEdge(): void {
  const items: HubItem[] = resources.pendingFor(NODE).map((i) =>
    i.op === 'put' ? { op: 'put', resource: { kind: i.resource.kind, name: i.resource.name, version: i.resource.version, data: i.resource.data } } : i,
  );
  if (items.length === 0) return;
  const r = edgeStore.apply(items);
  registry.applyChanges(r.changed);
  resources.recordAcks(NODE, r.acks, clock.now());
}

function apply(...documents: Record<string, unknown>[]): void {
  handlers['resource.apply']!({ documents });
  syncEdge();
}

const token = (device: string): DeviceTokenResult => handlers['device.token']!({ device }) as DeviceTokenResult;

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = fakeIo({ env: {} });
  const code = await main(argv, io);
  return { code, out: io.stdoutText(), err: io.stderrText() };
}

const enrolWithToken = (tok: string, out: string, pin = digest, edge = edgeAddr): Promise<{ code: number; out: string; err: string }> =>
  cli('device', 'enroll', '--edge', edge, '--token', tok, '--bundle-digest', pin, '--out', out);

async function makerCert(name: string, subj: string, issuer: string | undefined): Promise<void> {
  if (issuer === undefined) {
    await openssl(['req', '-x509', '-config', join(dir, 'cnf'), '-extensions', 'ca', ...EC, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-days', '30', '-subj', subj]);
    return;
  }
  const csr = join(dir, `${name}.csr`);
  await openssl(['req', '-new', '-config', join(dir, 'cnf'), ...EC, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', csr, '-subj', subj]);
  await openssl(['x509', '-req', '-in', csr, '-CA', join(dir, `${issuer}.pem`), '-CAkey', join(dir, `${issuer}.key`), '-set_serial', String(Date.now()), '-days', '30', '-extfile', join(dir, 'cnf'), '-extensions', 'leaf', '-out', join(dir, `${name}.pem`)]);
}

/** An IdentitySource over a fixed SVID and the cloud CA's current bundle. */
function identityOf(svid: SvidWithKey): IdentitySource {
  return { svid: () => svid, bundles: () => BundleSet.of([ca.manager.bundle()]), onChange: () => () => undefined, close: () => undefined };
}

function startEnroll(identity: IdentitySource): EnrollServer {
  return createEnrollServer({
    listen: { host: '127.0.0.1', port: 0 },
    trustDomain: td,
    identity,
    devices: registry,
    relay: (m) => {
      relayed.push(m);
      return client.node(m);
    },
    clock,
    logger: logTo(edgeLogs),
    // every client here is 127.0.0.1 (the rate limit has its own test: device-enroll-server.test.ts)
    limits: { perAddressBurst: 1000, globalBurst: 1000 },
  });
}

const MODEL = (factoryCAs?: string[]) => ({ apiVersion: 'edgeward.io/v1', kind: 'DeviceModel', metadata: { name: 'thermometer', nodes: ['*'] }, spec: { properties: [{ name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly' }], ...(factoryCAs === undefined ? {} : { factoryCAs }) } });
const DEVICE = (name: string, o: { node?: string; serial?: string } = {}) => ({
  apiVersion: 'edgeward.io/v1',
  kind: 'Device',
  metadata: { name, namespace: 'default' },
  spec: { deviceModelRef: { name: 'thermometer' }, nodeName: o.node ?? NODE, ...(o.serial === undefined ? {} : { factoryIdentity: { serialNumber: o.serial } }) },
});

beforeAll(async () => {
  dir = await tempDir('edgeward-device-enroll-');
  writeFileSync(join(dir, 'cnf'), CNF);
  await makerCert('maker', '/O=Maker/CN=Maker Root', undefined);
  await makerCert('fac-leaf', '/O=Maker/CN=thermo/serialNumber=SN-0001', 'maker');
  await makerCert('fac-other', '/O=Maker/CN=thermo/serialNumber=SN-0002', 'maker');
  makerRoot = readFileSync(join(dir, 'maker.pem'), 'utf8');

  // ---- the cloud, as src/cloud/main.ts wires it (node API server, CA, node service with the device issuer)
  const logger = logTo(cloudLogs);
  cloudStore = createCloudStore(join(dir, 'cloud.db'), { files: hostStateFiles, trustDomain: td, clock });
  ca = openCloudCa({ trustDomain: td, store: cloudStore, files: hostStateFiles, keysDir: join(dir, 'keys'), caTtlMs: 7 * DAY, maxX509SvidTtlMs: DAY, maxJwtSvidTtlMs: 300_000, cloudSvidTtlMs: HOUR, clock, logger });
  resources = createResourceStore(join(dir, 'resources.db'), { files: hostStateFiles, clock });
  tokens = openDeviceTokenStore(join(dir, 'devices.db'), { files: hostStateFiles });
  const service = createNodeService({
    trustDomain: td,
    store: cloudStore,
    ca: ca.manager,
    clock,
    attestors: [createJoinTokenAttestor(cloudStore)],
    nodeSvidTtlMs: HOUR,
    maxWorkloadSvidTtlMs: HOUR,
    maxJwtSvidTtlMs: 300_000,
    logger,
    rateLimiter: new RateLimiter({ capacity: 1000, refillPerSecond: 1000, maxKeys: 100 }),
    devices: createDeviceIssuer({ trustDomain: td, resources, tokens, ca: ca.manager, svidTtlMs: DAY, logger }),
  });
  server = createNodeApiServer({ host: '127.0.0.1', port: 0, identity: ca, backend: service, limits: { maxConnections: 100, headersTimeoutMs: 5000, requestTimeoutMs: 5000, keepAliveTimeoutMs: 5000 }, logger, clock });
  const cloudPort = (await server.start()).port;
  digest = bundleDigest(ca.manager.bundle());
  handlers = {
    ...(createResourceAdminHandlers({ store: resources, clock, logger }) as Record<string, (p: Record<string, unknown>) => unknown>),
    ...(createDeviceAdminHandlers({ resources, tokens, clock, logger, bundleDigest: () => bundleDigest(ca.manager.bundle()) }) as Record<string, (p: Record<string, unknown>) => unknown>),
  };

  // ---- the node joins over the node API (pinned bundle, join token) and keeps its SVID for mTLS
  const g = generateJoinToken(NODE, 600_000, clock.now());
  cloudStore.addJoinToken(g.record);
  client = new CloudClient({ address: parseCloudAddress(`127.0.0.1:${cloudPort}`), clock });
  await client.fetchBundle(digest);
  const nodeKey = generateP256();
  const joined = await client.attest({ v: NODE_API_VERSION, kind: 'attest.begin', method: 'join_token', nodeName: NODE, payload: { token: g.token }, csr: buildCsr(nodeKey) });
  if (joined.kind !== 'attest.result') throw new Error(`join: ${joined.kind}`);
  client.setBundle(parseBundleJson(td, joined.bundle));
  client.setCredentials({ chainDer: joined.svidChainDer, privateKey: nodeKey.privateKey });
  const leaf = parseCertificate(joined.svidChainDer[0]!);
  const nodeSvid: SvidWithKey = { spiffeId: SpiffeId.parse(leaf.uris[0]!), chainDer: joined.svidChainDer, privateKey: nodeKey.privateKey, notAfter: leaf.notAfter, serialHex: leaf.serialHex };

  // ---- the node: sealed hub store, device registry, enrolment endpoint
  edgeStore = openEdgeHubStore({ dir: join(dir, 'edge', 'hub'), files: hostStateFiles, dek: randomBytes(32), clock, logger: logTo(edgeLogs) });
  registry = createDeviceRegistry({ store: edgeStore, nodeName: NODE, trustDomain: td, logger: logTo(edgeLogs) });
  registry.load();
  enroll = startEnroll(identityOf(nodeSvid));
  edgeAddr = `127.0.0.1:${(await enroll.start()).port}`;

  apply(MODEL([makerRoot]), DEVICE('t-1'), DEVICE('t-2'), DEVICE('t-3'), DEVICE('fac', { serial: 'SN-0001' }), DEVICE('far', { node: 'edge-far' }));
  expect(registry.list().map((d) => d.fullName).sort()).toEqual(['default/fac', 'default/t-1', 'default/t-2', 'default/t-3']);
}, 60_000);

afterAll(async () => {
  await enroll?.close();
  client?.close();
  await server?.close();
  edgeStore?.close();
  tokens?.close();
  resources?.close();
  ca?.close();
  cloudStore?.close();
});

describe('device enrolment through the node, with the real cloud', () => {
  it('enrols with a one-time token: DIR 0700, svid.key 0600 is the key of svid.pem, which openssl verifies against bundle.pem', async () => {
    const out = join(dir, 'dev-1');
    const t = token('default/t-1');
    expect(t.bundleDigest).toBe(digest);
    const r = await enrolWithToken(t.token, out);
    expect(r.code, r.err).toBe(0);
    // one line per result
    expect(r.out).toMatch(new RegExp(`^enrolled spiffe://${td.name}/edgeward/device/default/t-1 expires \\S+Z ${out}\\n$`));
    expect(statSync(out).mode & 0o777).toBe(0o700);
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    const chain = certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'));
    const leaf = parseCertificate(chain[0]!);
    expect(leaf.uris).toEqual([`spiffe://${td.name}/edgeward/device/default/t-1`]);
    expect(leaf.isCA).toBe(false);
    expect(createPublicKey(createPrivateKey(readFileSync(join(out, 'svid.key')))).export({ type: 'spki', format: 'der' }).equals(leaf.spki)).toBe(true);
    // the key never left: what went to the cloud is a CSR, and nothing in any log names the key or the token
    expect(relayed.at(-1)).toMatchObject({ kind: 'device.enroll', token: t.token });
    writeFileSync(join(dir, 'dev-1-untrusted.pem'), chain.slice(1).map((d) => `-----BEGIN CERTIFICATE-----\n${d.toString('base64')}\n-----END CERTIFICATE-----\n`).join(''));
    const v = await openssl(['verify', '-CAfile', join(out, 'bundle.pem'), '-untrusted', join(dir, 'dev-1-untrusted.pem'), join(out, 'svid.pem')]);
    expect(v.stdout + v.stderr).toMatch(/: OK/);
    const info = JSON.parse(readFileSync(join(out, 'device.json'), 'utf8')) as Record<string, unknown>;
    expect(info).toEqual({ device: 'default/t-1', spiffeId: `spiffe://${td.name}/edgeward/device/default/t-1`, expiresAt: leaf.notAfter, edge: edgeAddr, bundleDigest: digest });
    expect(bundleDigest(parseBundleJson(td, readFileSync(join(out, 'bundle.json'), 'utf8')))).toBe(digest);
    expect(edgeLogs.find((l) => l['event'] === 'device.enrolled')).toMatchObject({ device: 'default/t-1', method: 'token', serial: leaf.serialHex });
    expect(cloudLogs.find((l) => l['event'] === 'device.enrolled')).toMatchObject({ device: 'default/t-1', node: NODE, method: 'token' });
    const everything = JSON.stringify([...edgeLogs, ...cloudLogs]);
    expect(everything).not.toContain(t.token);
    expect(everything).not.toContain('PRIVATE KEY');
    expect(enroll.stats().enrolled).toBe(1);
  });

  it("a used token is refused by the cloud and the device hears the cloud's code", async () => {
    const t = token('default/t-2');
    expect((await enrolWithToken(t.token, join(dir, 'dev-2'))).code).toBe(0);
    const again = await enrolWithToken(t.token, join(dir, 'dev-2-again'));
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/device-enroll\/refused: device-token\/invalid/);
    expect(edgeLogs.filter((l) => l['event'] === 'security.device_enroll_refused').at(-1)).toMatchObject({ code: 'device-token/invalid', reason: 'cloud:device-token/invalid', status: 403 });
    // a token for a device of another node: refused too (the cloud binds tokens to the node)
    const far = await enrolWithToken(token('default/far').token, join(dir, 'dev-far'));
    expect(far.code).toBe(1);
    expect(far.err).toMatch(/device-token\/invalid|device\/unknown|device\/wrong-node/);
  });

  it('refuses a wrong bundle digest and an endpoint that is not a node, before the token is sent (it still works afterwards)', async () => {
    const t = token('default/t-3');
    const before = relayed.length;
    const posts = (): number => edgeLogs.filter((l) => String(l['path'] ?? '').startsWith('/v1/device/enroll')).length;
    const postsBefore = posts();
    const wrong = await enrolWithToken(t.token, join(dir, 'dev-3-pin'), `sha256:${'0'.repeat(64)}`);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/device-enroll\/bundle-mismatch/);
    // an endpoint of the right trust domain whose SVID is not a node's (here: a workload's)
    const k = generateP256();
    const issued = ca.manager.issueX509Svid({ spiffeId: SpiffeId.parse(`spiffe://${td.name}/workload/impostor`), spki: k.spki, ttlMs: HOUR, now: clock.now() });
    const impostor = startEnroll(identityOf({ spiffeId: SpiffeId.parse(`spiffe://${td.name}/workload/impostor`), chainDer: [issued.der, ...ca.manager.intermediates(clock.now())], privateKey: k.privateKey, notAfter: issued.notAfter, serialHex: issued.serialHex }));
    try {
      const port = (await impostor.start()).port;
      const r = await enrolWithToken(t.token, join(dir, 'dev-3-impostor'), digest, `127.0.0.1:${port}`);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/device-enroll\/untrusted-server/);
    } finally {
      await impostor.close();
    }
    expect(relayed.length).toBe(before);
    expect(posts()).toBe(postsBefore);
    expect(() => statSync(join(dir, 'dev-3-pin'))).toThrow();
    const ok = await enrolWithToken(t.token, join(dir, 'dev-3'));
    expect(ok.code, ok.err).toBe(0);
  });

  it('renews over mTLS with the current SVID: a new key and SVID, files replaced; --json prints device.json', async () => {
    const out = join(dir, 'dev-1');
    const oldKey = readFileSync(join(out, 'svid.key'), 'utf8');
    const oldSerial = parseCertificate(certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'))[0]!).serialHex;
    const r = await cli('device', 'renew', '--dir', out, '--json');
    expect(r.code, r.err).toBe(0);
    const printed = JSON.parse(r.out) as Record<string, unknown>;
    expect(printed).toEqual(JSON.parse(readFileSync(join(out, 'device.json'), 'utf8')));
    expect(relayed.at(-1)).toMatchObject({ kind: 'device.renew', device: 'default/t-1' });
    const leaf = parseCertificate(certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'))[0]!);
    expect(leaf.serialHex).not.toBe(oldSerial);
    const newKey = readFileSync(join(out, 'svid.key'), 'utf8');
    expect(newKey).not.toBe(oldKey);
    expect(createPublicKey(createPrivateKey(newKey)).export({ type: 'spki', format: 'der' }).equals(leaf.spki)).toBe(true);
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    expect(printed['expiresAt']).toBe(leaf.notAfter);
    expect(edgeLogs.find((l) => l['event'] === 'device.renewed')).toMatchObject({ device: 'default/t-1', serial: leaf.serialHex });
    expect(enroll.stats().renewed).toBe(1);
  });

  it('refuses a renewal at the node once a revocation has reached it, and once the device is deleted', async () => {
    const out = join(dir, 'dev-1');
    const rev = handlers['device.revoke']!({ device: 'default/t-1' }) as DeviceRevokeResult;
    syncEdge();
    expect(registry.get('default/t-1')?.revokedBefore).toBe(rev.revokedBefore);
    const before = relayed.length;
    const r = await cli('device', 'renew', '--dir', out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/device-enroll\/refused: device\/revoked/);
    expect(relayed.length).toBe(before); // refused at the node: the cloud was not asked
    // a new token enrols it again
    const again = await enrolWithToken(token('default/t-1').token, out);
    expect(again.code, again.err).toBe(0);
    expect((await cli('device', 'renew', '--dir', out)).code).toBe(0);
    // deleted: unknown at the node
    handlers['resource.delete']!({ kind: 'Device', name: 'default/t-1' });
    syncEdge();
    expect(registry.get('default/t-1')).toBeUndefined();
    const gone = await cli('device', 'renew', '--dir', out);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/device\/unknown/);
    expect(relayed.length).toBe(before + 2);
  });

  it("enrols with a manufacturer certificate that chains to the model's factory CA and names the device's serial", async () => {
    const out = join(dir, 'dev-fac');
    const r = await cli('device', 'enroll', '--edge', edgeAddr, '--device', 'default/fac', '--factory-cert', join(dir, 'fac-leaf.pem'), '--factory-key', join(dir, 'fac-leaf.key'), '--bundle-digest', digest, '--out', out);
    expect(r.code, r.err).toBe(0);
    const m = relayed.at(-1) as DeviceEnrollMessage;
    expect(m.device).toBe('default/fac');
    expect(m.token).toBeUndefined();
    expect(m.factoryChainDer?.[0]?.equals(certsFromPem(readFileSync(join(dir, 'fac-leaf.pem'), 'utf8'))[0]!)).toBe(true);
    expect(parseCertificate(certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'))[0]!).uris).toEqual([`spiffe://${td.name}/edgeward/device/default/fac`]);
    expect(cloudLogs.filter((l) => l['event'] === 'device.enrolled').at(-1)).toMatchObject({ device: 'default/fac', method: 'factory' });
    // the maker's certificate of another unit (another serial) is not this device's
    const other = await cli('device', 'enroll', '--edge', edgeAddr, '--device', 'default/fac', '--factory-cert', join(dir, 'fac-other.pem'), '--factory-key', join(dir, 'fac-other.key'), '--bundle-digest', digest, '--out', join(dir, 'dev-fac-other'));
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/device\/factory-refused/);
    // a device without a factory identity cannot be enrolled this way (refused at the node)
    const before = relayed.length;
    const noFactory = await cli('device', 'enroll', '--edge', edgeAddr, '--device', 'default/t-2', '--factory-cert', join(dir, 'fac-leaf.pem'), '--factory-key', join(dir, 'fac-leaf.key'), '--bundle-digest', digest, '--out', join(dir, 'dev-t2-fac'));
    expect(noFactory.code).toBe(1);
    expect(noFactory.err).toMatch(/device\/factory-refused/);
    expect(relayed.length).toBe(before);
  });

  it('usage errors: no pin, both a token and a factory certificate, a renew without an enrolled dir', async () => {
    expect((await cli('device', 'enroll', '--edge', edgeAddr, '--token', 'x'.repeat(20), '--out', join(dir, 'u1'))).err).toMatch(/--bundle-digest/);
    const both = await cli('device', 'enroll', '--edge', edgeAddr, '--token', 'x'.repeat(20), '--device', 'default/fac', '--bundle-digest', digest, '--out', join(dir, 'u2'));
    expect(both.code).toBe(2);
    expect((await cli('device', 'enroll', '--edge', 'nope', '--token', 'x'.repeat(20), '--bundle-digest', digest, '--out', join(dir, 'u3'))).err).toMatch(/--edge must be HOST:PORT/);
    const empty = await tempDir('edgeward-device-empty-');
    const r = await cli('device', 'renew', '--dir', empty);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/device\.json is missing/);
    writeFileSync(join(empty, 'device.json'), JSON.stringify({ device: 'default/x', spiffeId: `spiffe://${td.name}/edgeward/device/default/y`, expiresAt: 1, edge: edgeAddr, bundleDigest: digest }));
    expect((await cli('device', 'renew', '--dir', empty)).err).toMatch(/not what device enroll writes/);
  });
});
