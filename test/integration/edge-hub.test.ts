/**
 * The hub end to end with real processes (issue #5): `edgeward cloud start` and a joined `edgeward edge
 * start` keep one WebSocket session over mutual TLS; resources applied on the cloud's admin socket
 * (`resource.apply`) reach the edge's sealed SQLite store and are acknowledged back; Stored status flows up;
 * the Secret's plaintext is never in the edge's database files; with the cloud stopped, a restarted edge
 * still serves everything (`resource.get` on its admin socket), and a status reported while the cloud is
 * down (`edgeward edge report-status`) reaches it once it is back. A secrets key file inside the data dir is
 * refused. SPIRE mode: the same hub with the node identity from a Workload API (a standalone Edgeward
 * agent stands in for SPIRE, as in test/e2e/spire-mode.e2e.test.ts).
 *
 * Everything listens on 127.0.0.1 / Unix sockets in temp dirs; secrets key files live in temp dirs too
 * (EDGEWARD_SECRETS_KEY_FILE), never under $HOME. Only PIDs started here are stopped. No timing asserts:
 * waits are for outcomes, with generous limits (the edge reconnects with backoff of up to 60 s).
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, AdminRemoteError } from '../../src/protocol/index.js';
import { buildProject, eventually as poll, freePort, runCli, startDaemon, tempDir, type Daemon } from '../helpers/index.js';

const TD = 'edgeward.local';
const NODE = 'hub-1';
const SECRET_TEXT = 'correct-horse-battery-staple-7c1f';
const CONFIG_TEXT = 'plain-config-value-42';

interface View {
  kind: string;
  name: string;
  version: number;
  nodes: string[];
  source: string;
  data: Record<string, unknown>;
  acks?: Array<{ node: string; version: number; current: boolean }>;
  status?: Array<{ node: string; phase: string; message?: string; observedVersion?: number }>;
}

let cloud: Daemon | undefined;
let edge: Daemon | undefined;
let cloudDir = '';
let edgeDir = '';
let keyDir = '';
let cloudAddr = '';
let digest = '';
let listen = '';

const cloudSock = (): string => join(cloudDir, 'admin', 'admin.sock');
const edgeSock = (): string => join(edgeDir, 'admin', 'admin.sock');
const edgeEnv = (): Record<string, string> => ({ EDGEWARD_LOG_LEVEL: 'info', EDGEWARD_SECRETS_KEY_FILE: join(keyDir, 'hub.key') });

async function get(sock: string, kind: string, name?: string): Promise<View[]> {
  const r = (await adminCall(sock, 'resource.get', name === undefined ? { kind } : { kind, name })) as { items: View[] };
  return r.items;
}

const eventually = <T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> => poll(what, f, { timeoutMs, intervalMs: 200 });

function startCloud(): Daemon {
  return startDaemon(['cloud', 'start', '--data-dir', cloudDir, '--listen', listen], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
}

async function startEdge(): Promise<Daemon> {
  const d = startDaemon(['edge', 'start', '--data-dir', edgeDir], { env: edgeEnv() });
  await d.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=unix:\/\/\/\S+$/, 30_000);
  return d;
}

const configMap = { apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: 'app-config', nodes: [NODE] }, data: { LOG_LEVEL: 'info', NOTE: CONFIG_TEXT } };
const secret = { apiVersion: 'edgeward.io/v1', kind: 'Secret', metadata: { name: 'db-password', nodes: ['*'] }, stringData: { password: SECRET_TEXT } };

beforeAll(async () => {
  const build = await buildProject();
  expect(build.code, build.out).toBe(0);
  cloudDir = await tempDir('edgeward-hub-cloud-');
  edgeDir = await tempDir('edgeward-hub-edge-');
  keyDir = await tempDir('edgeward-hub-keys-');
  listen = `127.0.0.1:${await freePort()}`;
  cloud = startCloud();
  cloudAddr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
  digest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/, 30_000)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
  const t = await runCli(['token', 'create', '--node', NODE, '--data-dir', cloudDir, '--json']);
  expect(t.code, t.stderr).toBe(0);
  const token = (JSON.parse(t.stdout) as { token: string }).token;
  const j = await runCli(['edge', 'join', '--cloud', cloudAddr, '--token', token, '--bundle-digest', digest, '--data-dir', edgeDir, '--node', NODE], { timeoutMs: 30_000 });
  expect(j.code, j.stderr).toBe(0);
  edge = await startEdge();
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  await cloud?.stop();
}, 30_000);

describe('CloudHub <-> EdgeHub with a real cloud and a real joined edge', () => {
  let cmVersion = 0;

  it('the edge opens its sealed store and a hub session with the cloud', async () => {
    await edge!.waitForLog((l) => l.event === 'edge.hub_connected', 60_000);
    const opened = await edge!.waitForLog((l) => l.event === 'edge.hub_store_opened');
    expect(opened['provider']).toBe('file');
    expect(opened['key_file']).toBe(join(keyDir, 'hub.key'));
    const st = (await adminCall(edgeSock(), 'agent.status')) as { hub: { connected: boolean; cloud: string } };
    expect(st.hub).toMatchObject({ connected: true, cloud: cloudAddr });
    // The key-encryption key is outside the data dir; only the wrapped data key is beside the database.
    expect((await stat(join(keyDir, 'hub.key'))).mode & 0o777).toBe(0o600);
    expect((await readdir(join(edgeDir, 'hub'))).sort()).toEqual(expect.arrayContaining(['dek.sealed', 'state.db']));
  }, 90_000);

  it('a ConfigMap and a Secret applied on the cloud are stored on the edge and acknowledged at the cloud', async () => {
    const applied = (await adminCall(cloudSock(), 'resource.apply', { documents: [configMap, secret] })) as { results: Array<{ kind: string; name: string; version: number; action: string }> };
    expect(applied.results.map((r) => [r.kind, r.name, r.action])).toEqual([
      ['ConfigMap', 'app-config', 'created'],
      ['Secret', 'db-password', 'created'],
    ]);
    cmVersion = applied.results[0]!.version;
    const secretVersion = applied.results[1]!.version;

    // At the edge, from its own store (source 'edge'), the Secret redacted.
    const cm = await eventually('the ConfigMap on the edge', async () => (await get(edgeSock(), 'configmap', 'app-config')).find((v) => v.version === cmVersion));
    expect(cm).toMatchObject({ kind: 'ConfigMap', name: 'app-config', source: 'edge', data: { data: { LOG_LEVEL: 'info', NOTE: CONFIG_TEXT } } });
    const sec = await eventually('the Secret on the edge', async () => (await get(edgeSock(), 'secret')).find((v) => v.name === 'db-password'));
    expect(sec.version).toBe(secretVersion);
    expect(JSON.stringify(sec)).not.toContain(SECRET_TEXT);
    expect(JSON.stringify(sec)).not.toContain(Buffer.from(SECRET_TEXT).toString('base64'));
    expect(sec.data).toEqual({ data: { password: `<redacted ${SECRET_TEXT.length} bytes>` } });

    // At the cloud: acknowledged by the node at the current version.
    for (const [kind, name, version] of [['ConfigMap', 'app-config', cmVersion], ['Secret', 'db-password', secretVersion]] as const) {
      const v = await eventually(`the ack of ${kind}/${name}`, async () => {
        const [x] = await get(cloudSock(), kind, name);
        return x?.acks?.some((a) => a.node === NODE && a.version === version && a.current) === true ? x : undefined;
      });
      expect(v.source).toBe('cloud');
    }
  }, 120_000);

  it('the edge reports Stored for each resource through its outbox', async () => {
    const v = await eventually('the Stored status at the cloud', async () => {
      const [x] = await get(cloudSock(), 'configmap', 'app-config');
      return x?.status?.find((s) => s.node === NODE && s.phase === 'Stored' && s.observedVersion === cmVersion);
    });
    expect(v).toMatchObject({ node: NODE, phase: 'Stored', observedVersion: cmVersion });
  }, 90_000);

  it("the Secret's plaintext (and its base64) is not in the bytes of DATA/hub/state.db or its WAL", async () => {
    const files = (await readdir(join(edgeDir, 'hub'))).filter((f) => f.startsWith('state.db'));
    expect(files).toContain('state.db');
    for (const f of files) {
      const bytes = await readFile(join(edgeDir, 'hub', f));
      expect(bytes.includes(Buffer.from(SECRET_TEXT)), f).toBe(false);
      expect(bytes.includes(Buffer.from(Buffer.from(SECRET_TEXT).toString('base64'))), f).toBe(false);
      // Not a Secret-only property: every body is sealed.
      expect(bytes.includes(Buffer.from(CONFIG_TEXT)), f).toBe(false);
    }
    expect((await stat(join(edgeDir, 'hub', 'state.db'))).mode & 0o777).toBe(0o600);
  });

  it('refuses a secrets key file inside the data dir (a key beside the data protects nothing)', async () => {
    const r = await runCli(['edge', 'start', '--data-dir', edgeDir, '--secrets-key-file', join(edgeDir, 'keys', 'hub.key')], { env: edgeEnv() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/outside the data dir/);
    const viaEnv = await runCli(['edge', 'start', '--data-dir', edgeDir], { env: { ...edgeEnv(), EDGEWARD_SECRETS_KEY_FILE: join(edgeDir, 'hub', 'k.key') } });
    expect(viaEnv.code).not.toBe(0);
    expect(viaEnv.stderr).toMatch(/outside the data dir/);
  });

  it('with the cloud stopped, a restarted edge serves everything from its store and keeps status in its outbox', async () => {
    await cloud!.stop();
    cloud = undefined;
    await edge!.stop();
    edge = await startEdge();
    const cms = await get(edgeSock(), 'cm');
    expect(cms.map((v) => [v.name, v.version])).toEqual([['app-config', cmVersion]]);
    expect(cms[0]!.data).toEqual({ data: { LOG_LEVEL: 'info', NOTE: CONFIG_TEXT } });
    const secs = await get(edgeSock(), 'secrets');
    expect(secs.map((v) => v.name)).toEqual(['db-password']);
    expect(JSON.stringify(secs)).not.toContain(SECRET_TEXT);

    const r = await runCli(['edge', 'report-status', '--data-dir', edgeDir, '--kind', 'cm', '--name', 'app-config', '--phase', 'Running', '--message', 'offline report', '--observed-version', String(cmVersion), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { seq: number }).seq).toBeGreaterThan(0);
    const bad = await runCli(['edge', 'report-status', '--data-dir', edgeDir, '--kind', 'cm', '--name', 'app-config', '--phase', 'not camel']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('edge-hub/invalid-status');
    const st = (await adminCall(edgeSock(), 'agent.status')) as { hub: { connected: boolean; outbox: number } };
    expect(st.hub.connected).toBe(false);
    expect(st.hub.outbox).toBeGreaterThanOrEqual(1);
    await expect(adminCall(edgeSock(), 'resource.get', { kind: 'cm', name: 'nope' })).rejects.toThrow(AdminRemoteError);
  }, 90_000);

  it('once the cloud is back, the status reported offline reaches it and the outbox drains', async () => {
    cloud = startCloud();
    await cloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000);
    const s = await eventually('the offline status at the cloud', async () => {
      const [x] = await get(cloudSock(), 'configmap', 'app-config');
      return x?.status?.find((e) => e.node === NODE && e.phase === 'Running');
    }, 120_000);
    expect(s).toMatchObject({ node: NODE, phase: 'Running', message: 'offline report', observedVersion: cmVersion });
    await eventually('an empty outbox', async () => {
      const st = (await adminCall(edgeSock(), 'agent.status')) as { hub: { connected: boolean; outbox: number } };
      return st.hub.connected && st.hub.outbox === 0 ? true : undefined;
    });
  }, 150_000);

  it('a delete on the cloud reaches the edge; an update reaches it in its final state', async () => {
    const del = (await adminCall(cloudSock(), 'resource.delete', { kind: 'Secret', name: 'db-password' })) as { version: number };
    expect(del.version).toBeGreaterThan(cmVersion);
    await eventually('the Secret gone from the edge', async () => ((await get(edgeSock(), 'secret')).length === 0 ? true : undefined));
    for (let i = 0; i < 5; i++) {
      await adminCall(cloudSock(), 'resource.apply', { documents: [{ ...configMap, data: { ...configMap.data, STEP: String(i) } }] });
    }
    const v = await eventually('the last update on the edge', async () => (await get(edgeSock(), 'cm', 'app-config')).find((x) => (x.data['data'] as Record<string, string>)['STEP'] === '4'));
    const [atCloud] = await get(cloudSock(), 'cm', 'app-config');
    expect(v.version).toBe(atCloud!.version);
  }, 90_000);
});

describe('SPIRE mode: the hub with the node identity from a Workload API', () => {
  const STD = 'spire-hub.example';
  const myUid = process.getuid?.() ?? 0;
  let provider: Daemon | undefined;
  let spCloud: Daemon | undefined;
  let spEdge: Daemon | undefined;
  let spCloudDir = '';
  let spEdgeDir = '';
  const env = { SPIFFE_ENDPOINT_SOCKET: undefined, EDGEWARD_LOG_LEVEL: 'info' };

  beforeAll(async () => {
    const providerDir = await tempDir('edgeward-hub-provider-');
    spCloudDir = await tempDir('edgeward-hub-spcloud-');
    spEdgeDir = await tempDir('edgeward-hub-spedge-');
    const spKeys = await tempDir('edgeward-hub-spkeys-');
    provider = startDaemon(['edge', 'start', '--standalone', '--trust-domain', STD, '--data-dir', providerDir], { env });
    const endpoint = (await provider.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=unix:\/\/\//)).slice('SPIFFE_ENDPOINT_SOCKET='.length);
    for (const id of [`spiffe://${STD}/edgeward/cloud`, `spiffe://${STD}/edgeward/node/spire-1`]) {
      const r = await runCli(['entry', 'create', '--data-dir', providerDir, '--spiffe-id', id, '--parent', `spiffe://${STD}/spire/agent/test`, '--selector', `unix:uid:${myUid}`, '--json']);
      expect(r.code, r.stderr).toBe(0);
    }
    spCloud = startDaemon(['cloud', 'start', '--data-dir', spCloudDir, '--trust-domain', STD, '--listen', '127.0.0.1:0', '--spiffe-socket', endpoint], { env });
    const addr = (await spCloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
    spEdge = startDaemon(['edge', 'start', '--spiffe-socket', endpoint, '--cloud', addr, '--data-dir', spEdgeDir], {
      env: { ...env, EDGEWARD_SECRETS_KEY_FILE: join(spKeys, 'spire.key') },
    });
    await spEdge.waitForLine(/^EDGEWARD_NODE_ID=/, 30_000);
  }, 120_000);

  afterAll(async () => {
    await spEdge?.stop();
    await spCloud?.stop();
    await provider?.stop();
  }, 30_000);

  it('connects with the SPIRE-issued node SVID, stores what the cloud assigns, and the cloud records the ack', async () => {
    await spEdge!.waitForLog((l) => l.event === 'edge.hub_connected', 60_000);
    const r = (await adminCall(join(spCloudDir, 'admin', 'admin.sock'), 'resource.apply', {
      documents: [{ apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: 'spire-config', nodes: ['spire-1'] }, data: { MODE: 'spire' } }],
    })) as { results: Array<{ version: number }> };
    const version = r.results[0]!.version;
    const onEdge = await eventually('the ConfigMap on the SPIRE-mode edge', async () =>
      (await get(join(spEdgeDir, 'admin', 'admin.sock'), 'configmap', 'spire-config')).find((v) => v.version === version),
    );
    expect(onEdge).toMatchObject({ source: 'edge', data: { data: { MODE: 'spire' } } });
    await eventually('the ack at the cloud', async () => {
      const [x] = await get(join(spCloudDir, 'admin', 'admin.sock'), 'configmap', 'spire-config');
      return x?.acks?.some((a) => a.node === 'spire-1' && a.current) === true ? true : undefined;
    });
    const st = (await adminCall(join(spEdgeDir, 'admin', 'admin.sock'), 'agent.status')) as { mode: string; hub: { connected: boolean } };
    expect(st).toMatchObject({ mode: 'spire', hub: { connected: true } });
  }, 120_000);

  it('without --data-dir the hub is off and the agent says why', async () => {
    const endpointLine = provider!.stdout.find((l) => l.startsWith('SPIFFE_ENDPOINT_SOCKET='))!;
    const addrLine = spCloud!.stdout.find((l) => l.startsWith('EDGEWARD_CLOUD='))!;
    const d = startDaemon(['edge', 'start', '--spiffe-socket', endpointLine.slice('SPIFFE_ENDPOINT_SOCKET='.length), '--cloud', addrLine.slice('EDGEWARD_CLOUD='.length)], { env });
    try {
      const w = await d.waitForLog((l) => l.event === 'edge.hub_disabled', 30_000);
      expect(w.msg).toMatch(/--data-dir/);
    } finally {
      await d.stop();
    }
  }, 60_000);
});
