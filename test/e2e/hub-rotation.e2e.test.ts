/**
 * SVID rotation on both sides of a live hub session loses nothing (issue #5 "Channel"): a real cloud with
 * `--node-svid-ttl 1m` (its own SVID has the same lifetime and is re-issued at half-life) and a real joined
 * edge (its node SVID is renewed at half-life), while a stream of updates flows for more than one SVID
 * lifetime.
 *
 * - The edge's node SVID rotates: the edge replaces its session with one that presents the new SVID
 *   (`edge.hub_rotating`), and the cloud sees the new serial.
 * - The cloud's SVID rotates: new connections get the new certificate; the live session is kept until the
 *   certificate the edge verified reaches NotAfter, then replaced (`edge.hub_cloud_svid_expired`).
 * - Nothing is lost: at the end the edge holds exactly the cloud's final objects, acknowledged at their
 *   current versions, and every Stored status the edge reported arrived.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { adminCall } from '../../src/protocol/index.js';
import { runCli, startDaemon, tempDir, type Daemon } from '../helpers/index.js';

const NODE = 'rotating-node';
const OBJECTS = 20;

interface View {
  name: string;
  version: number;
  data: Record<string, unknown>;
  acks?: Array<{ node: string; version: number; current: boolean }>;
}

let work = '';
let cloud: Daemon | undefined;
let edge: Daemon | undefined;

const cloudAdmin = (): string => join(work, 'cloud', 'admin', 'admin.sock');
const edgeAdmin = (): string => join(work, 'edge', 'admin', 'admin.sock');
const doc = (i: number, value: string): unknown => ({ apiVersion: 'edgeward.io/v1', kind: 'ConfigMap', metadata: { name: `rot-${i}`, nodes: [NODE] }, data: { value } });

beforeAll(async () => {
  work = await tempDir('edgeward-hub-rotation-');
  cloud = startDaemon(['cloud', 'start', '--data-dir', join(work, 'cloud'), '--listen', '127.0.0.1:0', '--node-svid-ttl', '1m'], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  const addr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/, 30_000)).slice('EDGEWARD_CLOUD='.length);
  const digest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/, 30_000)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
  const tok = await runCli(['token', 'create', '--node', NODE, '--data-dir', join(work, 'cloud'), '--json']);
  expect(tok.code, tok.stderr).toBe(0);
  const j = await runCli(['edge', 'join', '--cloud', addr, '--bundle-digest', digest, '--token', (JSON.parse(tok.stdout) as { token: string }).token, '--node', NODE, '--data-dir', join(work, 'edge')]);
  expect(j.code, j.stderr).toBe(0);
  edge = startDaemon(['edge', 'start', '--data-dir', join(work, 'edge'), '--secrets-key-file', join(work, 'kek', 'secrets.key')], { env: { EDGEWARD_LOG_LEVEL: 'info' } });
  await edge.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=/, 30_000);
}, 90_000);

afterAll(async () => {
  await edge?.stop();
  await cloud?.stop();
});

it('a stream of updates across node and cloud SVID rotations arrives complete', async () => {
  const firstSession = await edge!.waitForLog((l) => l.event === 'edge.hub_connected', 30_000);
  let round = 0;
  // Updates for 75 s: longer than one SVID lifetime (60 s), so both sides rotate at least once meanwhile.
  const end = Date.now() + 75_000;
  while (Date.now() < end) {
    round++;
    await adminCall(cloudAdmin(), 'resource.apply', { documents: Array.from({ length: OBJECTS }, (_, i) => doc(i, `round-${round}`)) });
    await new Promise((r) => setTimeout(r, 250));
  }

  // Both rotations happened during the stream.
  const rotating = edge!.logs.filter((l) => l.event === 'edge.hub_rotating');
  expect(rotating.length).toBeGreaterThan(0);
  expect(cloud!.logs.some((l) => l.event === 'node_api.identity_rotated')).toBe(true);
  const sessions = new Set(edge!.logs.filter((l) => l.event === 'edge.hub_connected').map((l) => l['session']));
  expect(sessions.size).toBeGreaterThan(1);
  expect(sessions.has(firstSession['session'])).toBe(true);

  // Nothing lost: the edge converges on the final round, acknowledged at the current versions.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const cloudItems = ((await adminCall(cloudAdmin(), 'resource.get', { kind: 'ConfigMap' })) as { items: View[] }).items;
    const edgeItems = ((await adminCall(edgeAdmin(), 'resource.get', { kind: 'ConfigMap' })) as { items: View[] }).items;
    const done =
      edgeItems.length === OBJECTS &&
      cloudItems.every((c) => {
        const e = edgeItems.find((x) => x.name === c.name);
        return e !== undefined && e.version === c.version && JSON.stringify(e.data) === JSON.stringify({ data: { value: `round-${round}` } }) && (c.acks ?? []).some((a) => a.node === NODE && a.current);
      });
    if (done) break;
    if (Date.now() > deadline) throw new Error(`not converged after the rotations: edge has ${edgeItems.length} objects`);
    await new Promise((r) => setTimeout(r, 250));
  }
  // The edge reported Stored for the final version of each object: its outbox reached the cloud.
  for (let i = 0; i < OBJECTS; i++) {
    const one = ((await adminCall(cloudAdmin(), 'resource.get', { kind: 'ConfigMap', name: `rot-${i}` })) as { items: Array<View & { status?: Array<{ node: string; phase: string; observedVersion?: number }> }> }).items[0]!;
    const deadlineStatus = Date.now() + 30_000;
    let s = one.status?.find((x) => x.node === NODE);
    while ((s === undefined || s.observedVersion !== one.version) && Date.now() < deadlineStatus) {
      await new Promise((r) => setTimeout(r, 250));
      const again = ((await adminCall(cloudAdmin(), 'resource.get', { kind: 'ConfigMap', name: `rot-${i}` })) as { items: Array<View & { status?: Array<{ node: string; phase: string; observedVersion?: number }> }> }).items[0]!;
      s = again.status?.find((x) => x.node === NODE);
    }
    expect(s?.observedVersion).toBe(one.version);
  }
  expect(cloud!.child.exitCode).toBeNull();
  expect(edge!.child.exitCode).toBeNull();
}, 180_000);
