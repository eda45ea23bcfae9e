/**
 * The installed entry point: `node bin/edgeward.js` over the compiled dist/ (`npm test` builds first).
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CLI_PATH, REPO_ROOT, runCli, tempDir } from '../../helpers/index.js';

const noStack = /\n\s+at /;

describe('bin/edgeward.js', () => {
  it('prints the version (exit 0)', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: `edgeward ${pkg.version}\n`, stderr: '' });
  });

  it('exits 2 with a one-line typed usage error', async () => {
    const r = await runCli(['x509', 'inspect', 'a.pem', '--nope']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('edgeward: cli/usage: unknown flag --nope');
    expect(r.stderr).not.toMatch(noStack);
  });

  it('exits 1 with the error code and no stack for a failing command; the stack only with EDGEWARD_DEBUG=1', async () => {
    const r = await runCli(['x509', 'inspect', 'does-not-exist.pem']);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'edgeward: cli/file-not-found: does-not-exist.pem: no such file\n' });
    const d = await runCli(['x509', 'inspect', 'does-not-exist.pem'], { env: { EDGEWARD_DEBUG: '1' } });
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(noStack);
  });

  it('says to run the build when dist/ is missing', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'bin'));
    await copyFile(CLI_PATH, join(dir, 'bin', 'edgeward.js'));
    await writeFile(join(dir, 'package.json'), '{"type":"module"}');
    const r = await promisify(execFile)(process.execPath, [join(dir, 'bin', 'edgeward.js'), '--version']).catch((e: unknown) => e);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'edgeward: cli/not-built: dist/ is missing; run `npm run build` first\n' });
  });

  it('runs the demo (what `npm start` runs)', async () => {
    const r = await runCli(['demo']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ {2}validation +valid for spiffe:\/\/demo\.edgeward\.test\/demo\/workload/m);
  });
});
