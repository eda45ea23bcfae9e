/**
 * parseCloudConfig, `attestors.tpm` enrolment: `enrolled: { NAME: sha256:HEX }` (deny by default) and the
 * explicit, unsafe `allowAnyEk: true`, every problem reported together (architecture.md convention 7).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CloudConfigError, parseCloudConfig } from '../../../src/cloud/index.js';
import { certToPem, generateP256, mintRootCa, signerFromPrivateKey, TrustDomain } from '../../../src/identity/index.js';
import { tempDir } from '../../helpers/index.js';

const H1 = `sha256:${'1a'.repeat(32)}`;
const H2 = `sha256:${'2b'.repeat(32)}`;

function problemsOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CloudConfigError);
    return (e as CloudConfigError).problems.join('\n');
  }
  throw new Error('expected cloud-config/invalid');
}

async function withFile(tpmLines: string[]): Promise<string> {
  const dir = await tempDir();
  const k = generateP256();
  const root = mintRootCa({ trustDomain: TrustDomain.parse('ca.example'), signer: signerFromPrivateKey(k.privateKey, k.spki), now: Date.now(), ttlMs: 86_400_000 });
  writeFileSync(join(dir, 'ek.pem'), certToPem(root.der));
  const file = join(dir, 'cloud.yaml');
  writeFileSync(file, ['dataDir: /d', 'attestors:', '  tpm:', '    ekCaBundle: ek.pem', ...tpmLines.map((l) => `    ${l}`), ''].join('\n'));
  return file;
}

describe('parseCloudConfig attestors.tpm enrolment', () => {
  it('reads enrolled node name -> EK hash (upper-case hex stored in lower case); allowAnyEk defaults to false', async () => {
    const file = await withFile(['enrolled:', `  edge-1: "${H1}"`, `  edge-2: ${H2.toUpperCase().replace('SHA256', 'sha256')}`]);
    const tpm = parseCloudConfig({ configFile: file, env: {} }).attestors.tpm;
    expect(tpm?.allowAnyEk).toBe(false);
    expect([...(tpm?.enrolled ?? [])]).toEqual([
      ['edge-1', H1],
      ['edge-2', H2],
    ]);
  });

  it('with no enrolment (file without enrolled, or --tpm-ek-ca-bundle alone) nothing is enrolled: every TPM is refused', async () => {
    const file = await withFile([]);
    const c = parseCloudConfig({ configFile: file, env: {} });
    expect(c.attestors.tpm?.enrolled.size).toBe(0);
    expect(c.attestors.tpm?.allowAnyEk).toBe(false);
    const flagOnly = parseCloudConfig({ dataDir: '/d', tpmEkCaBundle: c.attestors.tpm!.ekCaBundlePath, env: {} });
    expect(flagOnly.attestors.tpm?.enrolled.size).toBe(0);
    expect(flagOnly.attestors.tpm?.allowAnyEk).toBe(false);
  });

  it('takes the explicit opt-out allowAnyEk: true', async () => {
    const tpm = parseCloudConfig({ configFile: await withFile(['allowAnyEk: true']), env: {} }).attestors.tpm;
    expect(tpm?.allowAnyEk).toBe(true);
    expect(tpm?.enrolled.size).toBe(0);
  });

  it('reports bad names, bad hashes, a shared EK, a non-boolean allowAnyEk, and allowAnyEk with enrolled, together', async () => {
    const file = await withFile([
      'allowAnyEk: yes-please',
      'enrolled:',
      `  Bad_Name: "${H1}"`,
      `  edge-1: "${H1.slice('sha256:'.length)}"`,
      `  edge-2: "sha256:${'z'.repeat(64)}"`,
      `  edge-3: "${H2}"`,
      `  edge-4: "${H2}"`,
      '  edge-5: 12',
    ]);
    const p = problemsOf(() => parseCloudConfig({ configFile: file, env: {} }));
    expect(p).toContain('allowAnyEk must be true or false');
    expect(p).toContain('"Bad_Name" is not a valid node name');
    expect(p).toContain('enrolled.edge-1 must be sha256:');
    expect(p).toContain('enrolled.edge-2 must be sha256:');
    expect(p).toContain('the same EK is enrolled for edge-3 and edge-4');
    expect(p).toContain('enrolled.edge-5 must be sha256:');

    const both = await withFile(['allowAnyEk: true', 'enrolled:', `  edge-1: "${H1}"`]);
    expect(problemsOf(() => parseCloudConfig({ configFile: both, env: {} }))).toContain('allowAnyEk: true and enrolled exclude each other');
    const notMap = await withFile([`enrolled: ["${H1}"]`]);
    expect(problemsOf(() => parseCloudConfig({ configFile: notMap, env: {} }))).toContain('enrolled must be a mapping');
    const unknown = await withFile(['enroled: {}']);
    expect(problemsOf(() => parseCloudConfig({ configFile: unknown, env: {} }))).toContain('unknown key "enroled"');
  });
});
