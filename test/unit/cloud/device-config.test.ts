/**
 * parseCloudConfig `devices` (issue #6): `svidTtl` (device X509-SVID lifetime, default 24 h, at most
 * caTtl/6, `--device-svid-ttl`) and `tokenTtl` (default lifetime of `edgeward device token`, 1 h, 1 min ..
 * 24 h, `deviceTokenTtl` input for a `--device-token-ttl` flag); flag > file > default, every problem reported
 * together (architecture.md convention 7).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CloudConfigError, parseCloudConfig } from '../../../src/cloud/index.js';
import { tempDir } from '../../helpers/index.js';

const HOUR = 3_600_000;

function problemsOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CloudConfigError);
    return (e as CloudConfigError).problems.join('\n');
  }
  throw new Error('expected cloud-config/invalid');
}

async function withFile(lines: string[]): Promise<string> {
  const file = join(await tempDir(), 'cloud.yaml');
  writeFileSync(file, ['dataDir: /d', ...lines, ''].join('\n'));
  return file;
}

describe('parseCloudConfig devices', () => {
  it('defaults: device SVIDs live 24 h, tokens 1 h', () => {
    expect(parseCloudConfig({ dataDir: '/d', env: {} }).devices).toEqual({ svidTtlMs: 24 * HOUR, tokenTtlMs: HOUR });
    // A short CA lifetime shortens the default device SVID TTL to caTtl/6.
    expect(parseCloudConfig({ dataDir: '/d', caTtl: '60h', env: {} }).devices.svidTtlMs).toBe(10 * HOUR);
  });

  it('reads devices.svidTtl and devices.tokenTtl from the file; flags win', async () => {
    const file = await withFile(['devices:', '  svidTtl: 12h', '  tokenTtl: 15m']);
    expect(parseCloudConfig({ configFile: file, env: {} }).devices).toEqual({ svidTtlMs: 12 * HOUR, tokenTtlMs: 15 * 60_000 });
    expect(parseCloudConfig({ configFile: file, deviceSvidTtl: '2h', deviceTokenTtl: '24h', env: {} }).devices).toEqual({
      svidTtlMs: 2 * HOUR,
      tokenTtlMs: 24 * HOUR,
    });
  });

  it('refuses a token TTL outside 1 min .. 24 h, an unknown key and a device SVID TTL above caTtl/6, all together', async () => {
    const file = await withFile(['devices:', '  tokenTtl: 25h', '  svidTtl: 2d', '  ttl: 1h']);
    const p = problemsOf(() => parseCloudConfig({ configFile: file, env: {} }));
    expect(p).toContain('config file devices.tokenTtl');
    expect(p).toContain('config file devices: unknown key "ttl"');
    expect(p).toContain('caTtl must be at least 6x the device SVID TTL');
    expect(problemsOf(() => parseCloudConfig({ dataDir: '/d', deviceTokenTtl: '30s', env: {} }))).toContain('--device-token-ttl');
    const notText = await withFile(['devices: {tokenTtl: 3}']);
    expect(problemsOf(() => parseCloudConfig({ configFile: notText, env: {} }))).toContain('tokenTtl must be a non-empty string');
  });
});
