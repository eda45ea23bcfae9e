/**
 * The hub's configuration (issue #5): `hub.maxSessions` and the node API listener's `server.maxConnections`,
 * which counts hub WebSockets too (architecture.md convention 7: one typed config, problems reported together).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CloudConfigError, parseCloudConfig } from '../../../src/cloud/index.js';
import { tempDir } from '../../helpers/index.js';

async function withFile(lines: string[]): Promise<string> {
  const dir = await tempDir();
  const file = join(dir, 'cloud.yaml');
  writeFileSync(file, [`dataDir: ${join(dir, 'state')}`, ...lines, ''].join('\n'));
  return file;
}

function problemsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CloudConfigError);
    return [...(e as CloudConfigError).problems];
  }
  throw new Error('expected cloud-config/invalid');
}

describe('hub configuration', () => {
  it('defaults to 20,000 hub sessions on a listener that admits 25,000 connections', () => {
    const c = parseCloudConfig({ dataDir: '/var/lib/edgeward/cloud', env: {} });
    expect(c.hub).toEqual({ maxSessions: 20_000 });
    expect(c.server.maxConnections).toBe(25_000);
    expect(Object.isFrozen(c.hub)).toBe(true);
  });

  it('takes hub.maxSessions from the file, and keeps the default within a smaller server.maxConnections', async () => {
    expect(parseCloudConfig({ configFile: await withFile(['hub: { maxSessions: 100 }']), env: {} }).hub.maxSessions).toBe(100);
    const small = parseCloudConfig({ configFile: await withFile(['server: { maxConnections: 500 }']), env: {} });
    expect(small.hub.maxSessions).toBe(500);
  });

  it('refuses more hub sessions than connections, a bad number and unknown keys, all together', async () => {
    const file = await withFile(['server: { maxConnections: 500 }', 'hub: { maxSessions: 1000, sessions: 3 }']);
    const problems = problemsOf(() => parseCloudConfig({ configFile: file, env: {} }));
    expect(problems).toEqual(expect.arrayContaining([expect.stringContaining('hub.maxSessions must not exceed server.maxConnections'), expect.stringContaining('config file hub: unknown key "sessions"')]));
    const zero = await withFile(['hub: { maxSessions: 0 }']);
    expect(problemsOf(() => parseCloudConfig({ configFile: zero, env: {} }))).toEqual([expect.stringContaining('hub.maxSessions must be an integer from 1 to 1000000')]);
  });
});
