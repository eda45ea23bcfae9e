/** join.json is read back on every `edge start`: a hand-edited or damaged record is refused at once. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultNodeName, readJoinRecord } from '../../../src/edge/join/index.js';
import { tempDir } from '../../helpers/index.js';

const good = { v: 1, trustDomain: 'example.org', nodeName: 'n1', cloud: '127.0.0.1:8443', method: 'join_token', bundleDigest: `sha256:${'a'.repeat(64)}` };

async function recordDir(rec: Record<string, unknown>): Promise<string> {
  const dir = await tempDir('edgeward-join-record-');
  writeFileSync(join(dir, 'join.json'), JSON.stringify(rec), { mode: 0o600 });
  return dir;
}

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'no error';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

describe('readJoinRecord', () => {
  it('reads a well-formed record', async () => {
    expect(readJoinRecord(await recordDir(good))).toMatchObject({ nodeName: 'n1', cloud: '127.0.0.1:8443' });
  });

  it.each([
    ['a cloud that is not HOST:PORT', { cloud: 'http://evil/' }],
    ['a malformed bundle digest', { bundleDigest: 'sha256:xyz' }],
    ['a tpm address that is not one', { method: 'tpm', tpm: 'tcp:whatever' }],
    ['an invalid node name', { nodeName: 'Bad_Name' }],
  ])('refuses %s (join/not-joined)', async (_what, patch) => {
    const dir = await recordDir({ ...good, ...patch });
    expect(codeOf(() => readJoinRecord(dir))).toBe('join/not-joined');
  });
});

describe('defaultNodeName', () => {
  it('refuses an x509pop CN that is not a node name before any network call', () => {
    expect(codeOf(() => defaultNodeName({ x509popCn: 'Not A Name', hostname: 'host' }))).toBe('join/node-name-required');
    expect(defaultNodeName({ x509popCn: 'edge-7', hostname: 'host' })).toBe('edge-7');
  });
});
