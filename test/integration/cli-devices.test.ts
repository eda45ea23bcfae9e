/**
 * `edgeward device token | revoke` and `edgeward get device` (issue #6) with the built CLI (bin/edgeward.js):
 * - against a real `edgeward cloud start` process (its admin socket, its resource and token stores), with a
 *   config file setting `devices.tokenTtl` (the default lifetime of a token made without `--ttl`);
 * - the twin view of `get device` against a real admin socket serving the resource admin methods over a real
 *   SQLite resource store holding a Device status with reported twins (what a node's outbox delivers).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostStateFiles, openAdminSocket } from '../../src/cli/host/index.js';
import { createResourceAdminHandlers, createResourceStore, type ResourceStore } from '../../src/cloud/index.js';
import { ManualClock } from '../../src/identity/index.js';
import type { AdminSocketServer } from '../../src/protocol/index.js';
import { buildProject, runCli, startDaemon, tempDir, type Daemon } from '../helpers/index.js';

const HOUR = 3_600_000;
const DEVICE = 'default/thermo-1';

const RESOURCES = `apiVersion: edgeward.io/v1
kind: DeviceModel
metadata: {name: thermometer, nodes: ["*"]}
spec:
  properties:
    - {name: temperature, type: FLOAT, accessMode: ReadOnly, unit: C}
    - {name: setpoint, type: FLOAT, accessMode: ReadWrite}
---
apiVersion: edgeward.io/v1
kind: Device
metadata: {name: thermo-1, namespace: default}
spec:
  deviceModelRef: {name: thermometer}
  nodeName: edge-1
  properties:
    - {name: setpoint, desired: {value: "21.5"}}
`;

let cdir = '';
let cloud: Daemon | undefined;
let bundleDigest = '';
let resourcesFile = '';

const cli = (args: string[]): ReturnType<typeof runCli> => runCli([...args, '--data-dir', cdir]);

beforeAll(async () => {
  const build = await buildProject();
  expect(build.code, build.out).toBe(0);
  cdir = await tempDir('edgeward-cli-devices-');
  const config = join(cdir, 'cloud.yaml');
  writeFileSync(config, 'devices:\n  tokenTtl: 2h\n');
  cloud = startDaemon(['cloud', 'start', '--data-dir', cdir, '--listen', '127.0.0.1:0', '--config', config], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  bundleDigest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/)).split('=')[1]!;
  resourcesFile = join(cdir, 'devices.yaml');
  writeFileSync(resourcesFile, RESOURCES);
  const applied = await cli(['apply', '-f', resourcesFile]);
  expect(applied.code, applied.stderr).toBe(0);
});

afterAll(async () => {
  await cloud?.stop();
});

describe('edgeward device token | revoke (built CLI, real cloud)', () => {
  it('device token: the token first, then device, node, expiry (devices.tokenTtl), the digest to pin and the enrol command', async () => {
    const before = Date.now();
    const r = await cli(['device', 'token', 'default/thermo-1']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const token = lines[0]!;
    expect(token).toMatch(/^ewdt_[A-Za-z0-9_-]{43}$/);
    expect(lines[1]).toBe(`device:         ${DEVICE}`);
    expect(lines[2]).toBe('node:           edge-1');
    const expires = Date.parse(lines[3]!.replace(/^expires:\s+/, ''));
    expect(expires).toBeGreaterThanOrEqual(before + 2 * HOUR - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 2 * HOUR);
    expect(lines[4]).toBe(`bundle digest:  ${bundleDigest}`);
    expect(r.stdout).toContain(`  edgeward device enroll --edge edge-1:8884 --token ${token} --bundle-digest ${bundleDigest} --out ./thermo-1\n`);
    // The cloud logs the creation with a token id, never the token.
    const created = await cloud!.waitForLog((l) => l.event === 'device.token_created');
    expect(created).toMatchObject({ device: DEVICE, node: 'edge-1' });
    expect(created['token_id']).toMatch(/^[0-9a-f]{8}$/);
    expect(cloud!.stderrText()).not.toContain(token.slice(5));
  });

  it('device token --ttl --json (bare NAME is namespace default)', async () => {
    const r = await cli(['device', 'token', 'thermo-1', '--ttl', '10m', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const t = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(t).sort()).toEqual(['bundleDigest', 'device', 'enrollCommand', 'expiresAt', 'node', 'token']);
    expect(t).toMatchObject({ device: DEVICE, node: 'edge-1', bundleDigest });
    expect((t['expiresAt'] as number) - Date.now()).toBeLessThanOrEqual(10 * 60_000);
    expect((t['expiresAt'] as number) - Date.now()).toBeGreaterThan(9 * 60_000);
  });

  it('refusals: an unknown device, a TTL over 24 h, a malformed name', async () => {
    const unknown = await cli(['device', 'token', 'default/ghost']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('device/unknown');
    const long = await cli(['device', 'token', DEVICE, '--ttl', '25h']);
    expect(long.code).not.toBe(0);
    expect(long.stderr).toContain('--ttl');
    const bad = await cli(['device', 'revoke', 'Default/Thermo_1']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('device');
  });

  it('device revoke re-applies the Device with revokedBefore (a new version); a re-apply of the YAML keeps it', async () => {
    const r = await cli(['device', 'revoke', DEVICE]);
    expect(r.code, r.stderr).toBe(0);
    const m = /^revoked default\/thermo-1: SVIDs issued before (\S+) are refused \(version (\d+)\)\n$/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const revokedBefore = Date.parse(m![1]!);
    expect(revokedBefore % 1000).toBe(0);
    await cloud!.waitForLog((l) => l.event === 'device.revoked' && l['device'] === DEVICE);

    const get = async (): Promise<{ version: number; data: Record<string, unknown> }> => {
      const g = await cli(['get', 'device', 'thermo-1', '--json']);
      expect(g.code, g.stderr).toBe(0);
      return (JSON.parse(g.stdout) as { items: Array<{ version: number; data: Record<string, unknown> }> }).items[0]!;
    };
    const after = await get();
    expect(after.version).toBe(Number(m![2]));
    expect(after.data['revokedBefore']).toBe(revokedBefore);

    // The operator's YAML has no revokedBefore: re-applying it (unchanged, or changed) keeps the revocation.
    expect((await cli(['apply', '-f', resourcesFile])).stdout).toContain('device/default/thermo-1 unchanged');
    writeFileSync(resourcesFile, RESOURCES.replace('value: "21.5"', 'value: "22"'));
    expect((await cli(['apply', '-f', resourcesFile])).stdout).toContain('device/default/thermo-1 configured');
    const reapplied = await get();
    expect(reapplied.data['revokedBefore']).toBe(revokedBefore);
    expect(reapplied.version).toBeGreaterThan(after.version);

    // JSON output of revoke.
    const j = await cli(['device', 'revoke', DEVICE, '--json']);
    expect(Object.keys(JSON.parse(j.stdout) as object).sort()).toEqual(['device', 'revokedBefore', 'version']);
  });

  it('get device NAME (nothing reported yet): the desired values from the spec', async () => {
    const r = await cli(['get', 'device', DEVICE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^twin:\n {2}\(nothing reported yet\)\n {2}setpoint\s+desired 22\n$/m);
  });
});

describe('edgeward get device NAME: the twin table per node status (built CLI)', () => {
  const T0 = Date.UTC(2026, 0, 1);
  let dir = '';
  let store: ResourceStore;
  let server: AdminSocketServer;
  const silent = { info: () => {}, warn: () => {} };

  beforeAll(async () => {
    dir = await tempDir('edgeward-cli-twins-');
    const clock = new ManualClock(T0);
    store = createResourceStore(join(dir, 'resources.db'), { files: hostStateFiles, clock });
    const handlers = createResourceAdminHandlers({ store, clock, logger: silent });
    server = openAdminSocket({ socketPath: join(dir, 'admin', 'admin.sock'), logger: silent, handlers });
    await server.start();
    await handlers['resource.apply']!({
      documents: [
        { apiVersion: 'edgeward.io/v1', kind: 'DeviceModel', metadata: { name: 'thermometer', nodes: ['*'] }, spec: { properties: [{ name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly' }, { name: 'setpoint', type: 'FLOAT', accessMode: 'ReadWrite' }] } },
        { apiVersion: 'edgeward.io/v1', kind: 'Device', metadata: { name: 'thermo-1' }, spec: { deviceModelRef: { name: 'thermometer' }, nodeName: 'edge-1', properties: [{ name: 'setpoint', desired: { value: '21.5' } }] } },
      ],
    });
    const version = store.get('Device', DEVICE)!.version;
    store.recordStatus(
      'edge-1',
      [
        {
          seq: 1,
          kind: 'Device',
          name: DEVICE,
          phase: 'Online',
          observedVersion: version,
          at: T0 + 5000,
          detail: { twins: { temperature: { value: '20.25', at: T0 + 4000 }, setpoint: { value: '21.5', at: T0 + 3000 } }, lastSeen: T0 + 4500, state: 'online' },
        },
      ],
      T0 + 5000,
    );
  });

  afterAll(async () => {
    await server?.close();
    store?.close();
  });

  it('per node: phase, last seen, state; per property: desired (spec), reported and when; --json has the raw detail', async () => {
    const r = await runCli(['get', 'device', 'thermo-1', '--data-dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    const twin = r.stdout.slice(r.stdout.indexOf('twin:\n'));
    expect(twin.split('\n')).toEqual([
      'twin:',
      '  node edge-1: Online, last seen 2026-01-01T00:00:04.500Z, state online',
      expect.stringMatching(/^ {4}PROPERTY\s+DESIRED\s+REPORTED\s+REPORTED AT$/),
      expect.stringMatching(/^ {4}setpoint\s+21\.5\s+21\.5\s+2026-01-01T00:00:03\.000Z$/),
      expect.stringMatching(/^ {4}temperature\s+-\s+20\.25\s+2026-01-01T00:00:04\.000Z$/),
      '',
    ]);
    const j = await runCli(['get', 'device', 'default/thermo-1', '--data-dir', dir, '--json']);
    const item = (JSON.parse(j.stdout) as { items: Array<{ status: Array<{ node: string; detail: Record<string, unknown> }> }> }).items[0]!;
    expect(item.status[0]).toMatchObject({ node: 'edge-1', detail: { lastSeen: T0 + 4500, twins: { temperature: { value: '20.25' } } } });
  });
});
