/**
 * `edgeward apply -f FILE.yaml` / `get KIND [NAME]` / `delete KIND NAME` (issue #5) against a real admin
 * socket (openAdminSocket, the SO_PEERCRED-checked socket of the cloud) serving the real resource admin
 * methods over a real SQLite store. The commands run in-process (main with an in-memory CliIo); `-f -`
 * runs the built CLI as a child process to read a real standard input.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostStateFiles, openAdminSocket } from '../../src/cli/host/index.js';
import { main } from '../../src/cli/index.js';
import { createResourceAdminHandlers, createResourceStore, type ResourceStore } from '../../src/cloud/index.js';
import { ManualClock } from '../../src/identity/index.js';
import { resourceView, type AdminSocketServer } from '../../src/protocol/index.js';
import { runCli, tempDir } from '../helpers/index.js';
import { fakeIo } from '../unit/cli/fake-io.js';

const T0 = Date.UTC(2026, 0, 1);
const silent = { info: () => {}, warn: () => {} };

const FILE = `# two resources and an empty trailing document
apiVersion: edgeward.io/v1
kind: ConfigMap
metadata:
  name: app-config
  nodes: [edge-1, edge-2]
data:
  LOG_LEVEL: info
  GREETING: "hello\\u001b[31m"
---
apiVersion: edgeward.io/v1
kind: Secret
metadata: {name: db, nodes: ["*"]}
stringData:
  password: hunter22
---
`;

let dir: string;
let store: ResourceStore;
let server: AdminSocketServer;
let edgeDir: string;
let edgeServer: AdminSocketServer;

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const io = fakeIo({ env, now: T0 });
  const code = await main(args, io);
  return { code, out: io.stdoutText(), err: io.stderrText() };
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

beforeAll(async () => {
  dir = await tempDir('edgeward-cli-res-');
  const clock = new ManualClock(T0);
  store = createResourceStore(join(dir, 'resources.db'), { files: hostStateFiles, clock });
  server = openAdminSocket({ socketPath: join(dir, 'admin', 'admin.sock'), logger: silent, handlers: createResourceAdminHandlers({ store, clock, logger: silent }) });
  await server.start();
  // An edge's admin socket answers resource.get from its local copy: source 'edge', no acks.
  edgeDir = await tempDir('edgeward-cli-edge-');
  edgeServer = openAdminSocket({
    socketPath: join(edgeDir, 'admin', 'admin.sock'),
    logger: silent,
    handlers: {
      'resource.get': () => ({
        items: [resourceView({ kind: 'Secret', name: 'db', version: 2, nodes: ['*'], data: { data: { password: Buffer.from('hunter22').toString('base64') } }, updatedAt: T0, source: 'edge' })],
      }),
    },
  });
  await edgeServer.start();
});

afterAll(async () => {
  await server?.close();
  await edgeServer?.close();
  store?.close();
});

describe('edgeward apply / get / delete', () => {
  it('apply -f creates every document, then reports them unchanged', async () => {
    const p = file('app.yaml', FILE);
    const r = await cli(['apply', '-f', p, '--data-dir', dir]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe('configmap/app-config created (version 1)\nsecret/db created (version 2)\n');
    const again = await cli(['apply', '--file', p, '--data-dir', dir]);
    expect(again.out).toBe('configmap/app-config unchanged (version 1)\nsecret/db unchanged (version 2)\n');
    const json = await cli(['apply', `--file=${p}`, '--json'], { EDGEWARD_DATA_DIR: dir });
    expect(JSON.parse(json.out)).toEqual({
      results: [
        { kind: 'ConfigMap', name: 'app-config', version: 1, action: 'unchanged' },
        { kind: 'Secret', name: 'db', version: 2, action: 'unchanged' },
      ],
    });
  });

  it('get KIND: a table with the nodes that acknowledged each version (old ones marked)', async () => {
    store.recordAcks('edge-1', [{ kind: 'ConfigMap', name: 'app-config', version: 1 }], T0 + 1000);
    const p = file('update.yaml', FILE.replace('LOG_LEVEL: info', 'LOG_LEVEL: debug'));
    expect((await cli(['apply', '-f', p, '--data-dir', dir])).out).toMatch(/^configmap\/app-config configured \(version 3\)$/m);
    store.recordAcks('edge-2', [{ kind: 'ConfigMap', name: 'app-config', version: 3 }], T0 + 2000);
    store.recordStatus('edge-2', [{ seq: 1, kind: 'ConfigMap', name: 'app-config', phase: 'Stored', observedVersion: 3, at: T0 + 2000, message: 'ok\u001b[2J' }], T0 + 2000);

    const r = await cli(['get', 'configmaps', '--data-dir', dir]);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^KIND\s+NAME\s+VERSION\s+NODES\s+ACKED$/);
    expect(lines[1]).toMatch(/^ConfigMap\s+app-config\s+3\s+edge-1,edge-2\s+edge-1@1\(old\) edge-2@3$/);
    const secrets = await cli(['get', 'SECRET', '--data-dir', dir]);
    expect(secrets.out).toMatch(/^Secret\s+db\s+2\s+\*\s+-$/m);
    expect((await cli(['get', 'wl', '--data-dir', dir])).out).toBe('no workload resources\n');
  });

  it('get KIND NAME: details with per-node acks and status; control characters never reach the terminal', async () => {
    const r = await cli(['get', 'cm', 'app-config', '--data-dir', dir]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^version:\s+3$/m);
    expect(r.out).toMatch(/^ {2}LOG_LEVEL: debug$/m);
    expect(r.out).toMatch(/^acks:\s+1 of 2 at the current version$/m);
    expect(r.out).toMatch(/^ {2}edge-1\s+version 1\s+old/m);
    expect(r.out).toMatch(/^ {2}edge-2\s+version 3\s+current/m);
    expect(r.out).toMatch(/^ {2}edge-2\s+Stored \(version 3\) at 2026-01-01T00:00:02\.000Z: ok\?\[2J$/m);
    expect(r.out).not.toContain('\u001b');
    const json = JSON.parse((await cli(['get', 'cm', 'app-config', '--data-dir', dir, '--json'])).out) as { items: Array<{ acks: unknown[] }> };
    expect(json.items[0]?.acks).toHaveLength(2);
  });

  it('never prints a secret value, from the cloud or from an edge', async () => {
    const secretB64 = Buffer.from('hunter22').toString('base64');
    for (const d of [dir, edgeDir]) {
      for (const args of [['get', 'secret', 'db'], ['get', 'secrets'], ['get', 'secret', 'db', '--json'], ['get', 'secrets', '--json']]) {
        const r = await cli([...args, '--data-dir', d]);
        expect(r.code, `${args.join(' ')} ${r.err}`).toBe(0);
        expect(r.out).not.toContain('hunter22');
        expect(r.out).not.toContain(secretB64);
      }
    }
    expect((await cli(['get', 'secret', 'db', '--data-dir', dir])).out).toMatch(/^ {2}password: <redacted 8 bytes>$/m);
    // The edge's local copy: no acks column.
    const edge = await cli(['get', 'secret', '--data-dir', edgeDir]);
    expect(edge.out.split('\n')[0]).toMatch(/^KIND\s+NAME\s+VERSION\s+NODES$/);
    expect((await cli(['get', 'secret', 'db', '--data-dir', edgeDir])).out).toMatch(/^source:\s+edge$/m);
  });

  it('apply refuses the whole file and lists every problem with its document number; nothing is applied', async () => {
    const before = store.currentVersion();
    const bad = file(
      'bad.yaml',
      [
        'apiVersion: edgeward.io/v1\nkind: ConfigMap\nmetadata: {name: fine, nodes: [edge-1]}\ndata: {a: b}',
        'apiVersion: edgeward.io/v1\nkind: Pod\nmetadata: {name: p, nodes: [edge-1]}',
        'apiVersion: edgeward.io/v1\nkind: ConfigMap\nmetadata: {name: dup, nodes: [edge-1]}\ndata: {a: b, a: c}',
        'apiVersion: edgeward.io/v1\nkind: Secret\nmetadata: {name: s, nodes: [edge-1]}\ndata: {k: "not base64"}\nextra: 1',
        'apiVersion: edgeward.io/v1\nkind: Workload\nmetadata: {name: w, nodes: [edge-1]}\nspec: !!binary aGk=',
      ].join('\n---\n'),
    );
    const r = await cli(['apply', '-f', bad, '--data-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^ {2}document 2 \(line \d+\): .*kind: must be one of/m);
    expect(r.err).toMatch(/^ {2}document 3 \(line \d+\): not valid YAML: DUPLICATE_KEY/m);
    expect(r.err).toMatch(/^ {2}document 4 \(line \d+\): .*unknown field "extra"/m);
    expect(r.err).toMatch(/^ {2}document 4 \(line \d+\): .*canonical base64/m);
    expect(r.err).toMatch(/^ {2}document 5 \(line \d+\): not valid YAML/m);
    expect(r.err).toMatch(/^edgeward: resource\/invalid: \d+ problems in .*bad\.yaml \(listed above\); nothing was applied$/m);
    expect(store.currentVersion()).toBe(before);
    expect(store.get('ConfigMap', 'fine')).toBeUndefined();
  });

  it('apply: YAML syntax errors, empty files, alias bombs, JSON input, huge files', async () => {
    const syntax = await cli(['apply', '-f', file('syntax.yaml', 'apiVersion: [unclosed\n'), '--data-dir', dir]);
    expect(syntax.code).toBe(1);
    expect(syntax.err).toMatch(/resource\/invalid: document 1 \(line \d+\): not valid YAML/);
    const empty = await cli(['apply', '-f', file('empty.yaml', '# nothing\n---\n'), '--data-dir', dir]);
    expect(empty.err).toMatch(/resource\/invalid: no resource documents/);
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`);
    const bombFile = file('bomb.yaml', `apiVersion: edgeward.io/v1\nkind: Workload\nmetadata: {name: w, nodes: [edge-1]}\nspec:\n${bomb.map((l) => `  ${l}`).join('\n')}\n`);
    const b = await cli(['apply', '-f', bombFile, '--data-dir', dir]);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/resource\/invalid: document 1.*alias/i);
    const json = file('w.json', JSON.stringify({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'web', nodes: ['edge-1'] }, spec: { image: 'nginx' } }));
    expect((await cli(['apply', '-f', json, '--data-dir', dir])).out).toMatch(/^workload\/web created \(version \d+\)\n$/);
    const huge = await cli(['apply', '-f', file('huge.yaml', `# ${'x'.repeat(1024 * 1024)}\n`), '--data-dir', dir]);
    expect(huge.code).toBe(1);
    expect(huge.err).toMatch(/cli\/file-too-large/);
    const missing = await cli(['apply', '-f', join(dir, 'nope.yaml'), '--data-dir', dir]);
    expect(missing.err).toMatch(/cli\/file-not-found/);
  });

  it('delete KIND NAME; deleting again is resource/not-found', async () => {
    const r = await cli(['delete', 'workload', 'web', '--data-dir', dir]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^workload\/web deleted \(version \d+\)\n$/);
    const again = await cli(['delete', 'workload', 'web', '--data-dir', dir]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^edgeward: resource\/not-found: no Workload named "web"$/m);
    expect((await cli(['get', 'wl', 'web', '--data-dir', dir])).err).toMatch(/resource\/not-found/);
  });

  it('usage errors: unknown kind (with the list of kinds), bad name, missing -f or data dir', async () => {
    const kind = await cli(['get', 'pods', '--data-dir', dir]);
    expect(kind.code).toBe(2);
    expect(kind.err).toMatch(/unknown resource kind "pods": use one of workload \(wl\), configmap \(cm\), secret, device \(dev\), devicemodel \(dm\)/);
    expect(kind.err).toMatch(/usage: edgeward get KIND \[NAME\]/);
    expect((await cli(['delete', 'cm', 'Bad_Name', '--data-dir', dir])).code).toBe(2);
    expect((await cli(['delete', 'cm', '--data-dir', dir])).code).toBe(2);
    const noFile = await cli(['apply', '--data-dir', dir]);
    expect(noFile.code).toBe(2);
    expect(noFile.err).toMatch(/-f FILE/);
    expect(noFile.err).toMatch(/usage: edgeward apply -f FILE\|-/);
    expect((await cli(['get', 'cm'])).err).toMatch(/--data-dir \(or EDGEWARD_DATA_DIR\) is required/);
    const down = await cli(['get', 'cm', '--data-dir', join(dir, 'elsewhere')]);
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/admin\/unreachable/);
    expect((await cli(['apply', '--help'])).out).toMatch(/apiVersion: edgeward\.io\/v1/);
  });

  it('apply -f - reads standard input (the built CLI, a real pipe)', async () => {
    const doc = 'apiVersion: edgeward.io/v1\nkind: DeviceModel\nmetadata: {name: thermo, nodes: ["*"]}\nspec: {properties: [{name: t, type: FLOAT, accessMode: ReadOnly, unit: C}]}\n';
    const r = await runCli(['apply', '-f', '-', '--data-dir', dir], { input: doc });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^devicemodel\/default\/thermo created \(version \d+\)\n$/);
    const g = await runCli(['get', 'dm', '--data-dir', dir]);
    expect(g.stdout).toMatch(/^DeviceModel\s+default\/thermo\s+\d+\s+\*\s+-$/m);
    // A namespaced kind named without its namespace is in "default".
    const one = await runCli(['get', 'dm', 'thermo', '--data-dir', dir, '--json']);
    expect((JSON.parse(one.stdout) as { items: { name: string }[] }).items[0]?.name).toBe('default/thermo');
  });
});
