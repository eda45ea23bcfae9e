/**
 * The hub's configuration on the edge (contract #5 "Edge store and sealing", "CLI"): the secrets key file
 * (`--secrets-key-file`, env EDGEWARD_SECRETS_KEY_FILE) of joined and SPIRE-mode agents, resolved to an
 * absolute path, refused inside the data dir, with the default path under XDG_CONFIG_HOME/HOME; and the
 * edge's admin methods `resource.get` / `status.report`.
 */
import { writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseJoinedEdgeConfig, parseSpireEdgeConfig } from '../../../src/edge/index.js';
import { createEdgeHubAdminHandlers, EdgeHubError, type LocalResource, type StatusReport } from '../../../src/edge/hub/index.js';
import { tempDir } from '../../helpers/index.js';

const record = { v: 1, trustDomain: 'example.org', nodeName: 'n1', cloud: '127.0.0.1:8443', method: 'join_token', bundleDigest: `sha256:${'a'.repeat(64)}` };

async function joinedDir(): Promise<string> {
  const dir = await tempDir('edgeward-hub-config-');
  writeFileSync(join(dir, 'join.json'), JSON.stringify(record), { mode: 0o600 });
  return dir;
}

function problems(f: () => unknown): string {
  try {
    f();
    return 'no error';
  } catch (e) {
    return `${(e as { code?: string }).code}: ${(e as Error).message}`;
  }
}

describe('secrets key file of the hub store (joined agent)', () => {
  it('is undefined unless given; the default lives under XDG_CONFIG_HOME, named by the data dir', async () => {
    const dir = await joinedDir();
    const c = parseJoinedEdgeConfig({ dataDir: dir, env: { XDG_CONFIG_HOME: '/cfg' } });
    expect(c.secretsKeyFile).toBeUndefined();
    const id = createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 16);
    expect(c.defaultSecretsKeyFile).toBe(`/cfg/edgeward/secrets-keys/${id}.key`);
    // Without XDG_CONFIG_HOME: $HOME/.config.
    expect(parseJoinedEdgeConfig({ dataDir: dir, env: { HOME: '/home/edge' } }).defaultSecretsKeyFile).toBe(`/home/edge/.config/edgeward/secrets-keys/${id}.key`);
  });

  it('takes --secrets-key-file over EDGEWARD_SECRETS_KEY_FILE, resolved to an absolute path', async () => {
    const dir = await joinedDir();
    expect(parseJoinedEdgeConfig({ dataDir: dir, secretsKeyFile: '/keys/a.key', env: { EDGEWARD_SECRETS_KEY_FILE: '/keys/b.key' } }).secretsKeyFile).toBe('/keys/a.key');
    expect(parseJoinedEdgeConfig({ dataDir: dir, env: { EDGEWARD_SECRETS_KEY_FILE: '/keys/b.key' } }).secretsKeyFile).toBe('/keys/b.key');
    expect(parseJoinedEdgeConfig({ dataDir: dir, env: { EDGEWARD_SECRETS_KEY_FILE: '' } }).secretsKeyFile).toBeUndefined();
    expect(parseJoinedEdgeConfig({ dataDir: dir, secretsKeyFile: 'rel/k.key', env: {} }).secretsKeyFile).toBe(resolve('rel/k.key'));
  });

  it('refuses a key file inside the data dir, with every other problem', async () => {
    const dir = await joinedDir();
    expect(problems(() => parseJoinedEdgeConfig({ dataDir: dir, secretsKeyFile: join(dir, 'keys', 'hub.key'), env: {} }))).toMatch(/edge-config\/invalid: --secrets-key-file must be outside the data directory/);
    expect(problems(() => parseJoinedEdgeConfig({ dataDir: dir, env: { EDGEWARD_SECRETS_KEY_FILE: join(dir, 'x', '..', 'k.key') } }))).toMatch(/EDGEWARD_SECRETS_KEY_FILE must be outside/);
    expect(problems(() => parseJoinedEdgeConfig({ dataDir: dir, secretsKeyFile: dir, env: {} }))).toMatch(/outside the data directory/);
    const both = problems(() => parseJoinedEdgeConfig({ dataDir: dir, secretsKeyFile: join(dir, 'k'), workloadSha256Limit: 'x', env: {} }));
    expect(both).toMatch(/outside/);
    expect(both).toMatch(/workload-sha256-limit/);
    // A sibling whose name starts like the data dir is outside it.
    expect(parseJoinedEdgeConfig({ dataDir: dir, secretsKeyFile: `${dir}-keys/k.key`, env: {} }).secretsKeyFile).toBe(`${dir}-keys/k.key`);
  });
});

describe('secrets key file of the hub store (SPIRE mode)', () => {
  const base = { spiffeSocket: 'unix:///tmp/spire.sock', cloud: '127.0.0.1:8443' };
  it('needs --data-dir (the hub is off without it)', () => {
    expect(parseSpireEdgeConfig({ ...base, env: {} })).toMatchObject({ dataDir: undefined, secretsKeyFile: undefined, defaultSecretsKeyFile: undefined });
    expect(problems(() => parseSpireEdgeConfig({ ...base, secretsKeyFile: '/keys/k.key', env: {} }))).toMatch(/--secrets-key-file needs --data-dir/);
    // The env variable alone is ignored without a data dir (nothing to seal).
    expect(parseSpireEdgeConfig({ ...base, env: { EDGEWARD_SECRETS_KEY_FILE: '/keys/k.key' } }).secretsKeyFile).toBeUndefined();
  });
  it('with --data-dir: the given file (outside it) or the default', async () => {
    const dir = await tempDir('edgeward-hub-spire-config-');
    expect(parseSpireEdgeConfig({ ...base, dataDir: dir, secretsKeyFile: '/keys/k.key', env: {} }).secretsKeyFile).toBe('/keys/k.key');
    expect(parseSpireEdgeConfig({ ...base, dataDir: dir, env: { XDG_CONFIG_HOME: '/cfg' } }).defaultSecretsKeyFile).toMatch(/^\/cfg\/edgeward\/secrets-keys\/[0-9a-f]{16}\.key$/);
    expect(problems(() => parseSpireEdgeConfig({ ...base, dataDir: dir, secretsKeyFile: join(dir, 'k.key'), env: {} }))).toMatch(/outside the data directory/);
  });
});

describe('edge admin methods resource.get and status.report', () => {
  const resources: LocalResource[] = [
    { kind: 'ConfigMap', name: 'app', version: 3, data: { data: { A: '1' } }, updatedAt: 10 },
    { kind: 'Secret', name: 'db', version: 4, data: { data: { password: Buffer.from('hunter2').toString('base64') } }, updatedAt: 11 },
  ];
  const store = {
    get: (kind: string, name: string) => resources.find((r) => r.kind === kind && r.name === name),
    list: (kind?: string) => resources.filter((r) => kind === undefined || r.kind === kind),
  };
  const reports: StatusReport[] = [];
  const h = createEdgeHubAdminHandlers({ store, hub: { reportStatus: (r) => (reports.push(r), { seq: reports.length }) }, nodeName: 'n1' });

  it('resource.get answers from the local store (source edge), secrets redacted, aliases accepted', async () => {
    expect(await h['resource.get']!({ kind: 'cm' })).toEqual({
      items: [{ kind: 'ConfigMap', name: 'app', version: 3, nodes: ['n1'], source: 'edge', data: { data: { A: '1' } }, updatedAt: 10 }],
      total: 1,
    });
    const s = (await h['resource.get']!({ kind: 'Secret', name: 'db' })) as { items: Array<{ data: unknown }> };
    expect(s.items[0]!.data).toEqual({ data: { password: '<redacted 7 bytes>' } });
    expect(JSON.stringify(s)).not.toContain(Buffer.from('hunter2').toString('base64'));
    expect(() => h['resource.get']!({ kind: 'Secret', name: 'nope' })).toThrow(expect.objectContaining({ code: 'resource/not-found' }));
    expect(() => h['resource.get']!({ kind: 'Secret', extra: 1 })).toThrow(EdgeHubError);
    expect(() => h['resource.get']!({ kind: 'Pod' })).toThrow(expect.objectContaining({ code: 'resource/invalid' }));
    expect(() => h['resource.get']!({ kind: 'cm', name: 'Bad_Name' })).toThrow(expect.objectContaining({ code: 'edge-hub/invalid-request' }));
  });

  it('status.report passes a typed report to the hub (node or resource kinds), refuses unknown fields', async () => {
    expect(await h['status.report']!({ kind: 'configmaps', name: 'app', phase: 'Running', message: 'ok', observedVersion: 3 })).toEqual({ seq: 1 });
    expect(await h['status.report']!({ kind: 'Node', name: 'n1', phase: 'Ready' })).toEqual({ seq: 2 });
    expect(reports).toEqual([
      { kind: 'ConfigMap', name: 'app', phase: 'Running', message: 'ok', observedVersion: 3 },
      { kind: 'Node', name: 'n1', phase: 'Ready' },
    ]);
    expect(() => h['status.report']!({ kind: 'cm', name: 'app', phase: 'Running', node: 'other' })).toThrow(expect.objectContaining({ code: 'edge-hub/invalid-request' }));
    expect(() => h['status.report']!({ kind: 'cm', name: 'app', phase: 'Running', observedVersion: '3' })).toThrow(expect.objectContaining({ code: 'edge-hub/invalid-status' }));
    const off = createEdgeHubAdminHandlers({ store, hub: undefined, nodeName: 'n1' });
    expect(() => off['status.report']!({ kind: 'cm', name: 'app', phase: 'Running' })).toThrow(expect.objectContaining({ code: 'edge-hub/closed' }));
  });
});
