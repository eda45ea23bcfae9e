/**
 * parseCloudConfig: one typed, frozen config from flags, environment and a strict YAML file, every problem
 * reported together (architecture.md convention 7).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CloudConfigError, parseCloudConfig, parseListenAddress, formatListenAddress } from '../../../src/cloud/index.js';
import { certToPem, generateP256, mintRootCa, signerFromPrivateKey, TrustDomain } from '../../../src/identity/index.js';
import { tempDir } from '../../helpers/index.js';

function problemsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CloudConfigError);
    expect((e as CloudConfigError).code).toBe('cloud-config/invalid');
    return [...(e as CloudConfigError).problems];
  }
  throw new Error('expected cloud-config/invalid');
}

function caPem(): string {
  const k = generateP256();
  const root = mintRootCa({ trustDomain: TrustDomain.parse('ca.example'), signer: signerFromPrivateKey(k.privateKey, k.spki), now: Date.now(), ttlMs: 86_400_000 });
  return certToPem(root.der);
}

describe('parseCloudConfig', () => {
  it('builds a frozen config with the documented defaults and data-dir layout', () => {
    const c = parseCloudConfig({ dataDir: '/var/lib/edgeward/cloud', env: {} });
    expect(Object.isFrozen(c)).toBe(true);
    expect(c.trustDomain.name).toBe('edgeward.local');
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8443 });
    expect(c.dbPath).toBe('/var/lib/edgeward/cloud/cloud.db');
    expect(c.keysDir).toBe('/var/lib/edgeward/cloud/keys');
    expect(c.adminSocketPath).toBe('/var/lib/edgeward/cloud/admin/admin.sock');
    expect(c.nodeSvidTtlMs).toBe(3_600_000);
    expect(c.maxJwtSvidTtlMs).toBe(300_000);
    // spiffe.md 3: ca_ttl >= 6 x the longest SVID TTL.
    expect(c.caTtlMs).toBeGreaterThanOrEqual(6 * Math.max(c.nodeSvidTtlMs, c.maxWorkloadSvidTtlMs, c.maxJwtSvidTtlMs));
    expect(c.attestors.x509pop).toBeUndefined();
    expect(c.attestors.tpm).toBeUndefined();
    expect(c.rateLimit).toEqual({ attestBurst: 5, attestPerSecond: 1, maxSources: 10_000 });
    expect(c.logLevel).toBe('info');
  });

  it('accepts port 0 and IPv6 listen addresses', () => {
    expect(parseCloudConfig({ dataDir: '/d', listen: '127.0.0.1:0', env: {} }).listen.port).toBe(0);
    expect(parseListenAddress('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
    expect(formatListenAddress({ host: '::1', port: 1 })).toBe('[::1]:1');
  });

  it('takes the data dir from EDGEWARD_DATA_DIR and the log level from EDGEWARD_LOG_LEVEL', () => {
    const c = parseCloudConfig({ env: { EDGEWARD_DATA_DIR: '/srv/cloud', EDGEWARD_LOG_LEVEL: 'debug' } });
    expect(c.dataDir).toBe('/srv/cloud');
    expect(c.logLevel).toBe('debug');
  });

  it('reports every problem together', () => {
    const p = problemsOf(() =>
      parseCloudConfig({ trustDomain: 'Bad Domain', listen: 'nowhere', caTtl: 'forever', env: { EDGEWARD_LOG_LEVEL: 'loud' } }),
    );
    const text = p.join('\n');
    for (const part of ['--trust-domain', '--data-dir', '--listen', '--ca-ttl', 'EDGEWARD_LOG_LEVEL']) expect(text).toContain(part);
    expect(p.length).toBeGreaterThanOrEqual(5);
  });

  it('refuses a CA lifetime under 6x the longest SVID TTL (spiffe.md 3, SPIRE #1266)', () => {
    expect(problemsOf(() => parseCloudConfig({ dataDir: '/d', caTtl: '5h', env: {} })).join()).toMatch(/6x/);
    expect(parseCloudConfig({ dataDir: '/d', caTtl: '6h', env: {} }).caTtlMs).toBe(6 * 3_600_000);
  });

  it('reads a strict YAML file; flags override the environment, which overrides the file', async () => {
    const dir = await tempDir();
    writeFileSync(join(dir, 'x509pop.pem'), caPem());
    writeFileSync(join(dir, 'ek.pem'), caPem());
    const file = join(dir, 'cloud.yaml');
    writeFileSync(
      file,
      [
        'trustDomain: file.example',
        'dataDir: state',
        'listen: 0.0.0.0:9443',
        'caTtl: 2d',
        'nodeSvidTtl: 30m',
        'maxJwtSvidTtl: 10m',
        'logLevel: warn',
        'attestors:',
        '  join_token: {}',
        '  x509pop: { caBundle: x509pop.pem }',
        '  tpm: { ekCaBundle: ek.pem }',
        'rateLimit: { attestBurst: 100, attestPerSecond: 50 }',
        'server: { maxConnections: 500, headersTimeout: 5s, requestTimeout: 20s }',
        '',
      ].join('\n'),
    );
    const c = parseCloudConfig({ configFile: file, trustDomain: 'flag.example', env: { EDGEWARD_LOG_LEVEL: 'error' } });
    expect(c.trustDomain.name).toBe('flag.example');
    expect(c.dataDir).toBe(join(dir, 'state')); // relative to the file
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 9443 });
    expect(c.caTtlMs).toBe(2 * 86_400_000);
    expect(c.nodeSvidTtlMs).toBe(30 * 60_000);
    expect(c.maxJwtSvidTtlMs).toBe(10 * 60_000);
    expect(c.logLevel).toBe('error');
    expect(c.attestors.x509pop?.caCertsDer).toHaveLength(1);
    expect(c.attestors.tpm?.manufacturerCasDer).toHaveLength(1);
    expect(c.rateLimit).toEqual({ attestBurst: 100, attestPerSecond: 50, maxSources: 10_000 });
    expect(c.server).toMatchObject({ maxConnections: 500, headersTimeoutMs: 5000, requestTimeoutMs: 20_000 });
    expect(c.configFile).toBe(file);
  });

  it('refuses unknown keys, wrong types, duplicate keys and aliases in the file, all reported together', async () => {
    const dir = await tempDir();
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, ['dataDir: /d', 'listne: 1.2.3.4:1', 'caTtl: 5', 'attestors: { sshpop: {} }', 'rateLimit: { attestBurst: -1 }', 'server: { extra: 1 }', ''].join('\n'));
    const p = problemsOf(() => parseCloudConfig({ configFile: file, env: {} })).join('\n');
    expect(p).toContain('unknown key "listne"');
    expect(p).toContain('caTtl');
    expect(p).toContain('unknown key "sshpop"');
    expect(p).toContain('rateLimit.attestBurst');
    expect(p).toContain('unknown key "extra"');
    writeFileSync(file, 'dataDir: /a\ndataDir: /b\n');
    expect(problemsOf(() => parseCloudConfig({ configFile: file, env: {} })).join()).toMatch(/YAML/);
    writeFileSync(file, 'x: &a /d\ndataDir: *a\n');
    expect(problemsOf(() => parseCloudConfig({ configFile: file, env: {} })).join()).toMatch(/alias|unknown key/);
  });

  it('reports a missing config file and unusable CA bundles', async () => {
    const dir = await tempDir();
    expect(problemsOf(() => parseCloudConfig({ dataDir: '/d', configFile: join(dir, 'none.yaml'), env: {} })).join()).toMatch(/ENOENT/);
    writeFileSync(join(dir, 'empty.pem'), 'no certificates here\n');
    const p = problemsOf(() =>
      parseCloudConfig({ dataDir: '/d', x509popCaBundle: join(dir, 'empty.pem'), tpmEkCaBundle: join(dir, 'missing.pem'), env: {} }),
    ).join('\n');
    expect(p).toContain('x509pop caBundle');
    expect(p).toContain('tpm ekCaBundle');
  });

  it('parses --spiffe-socket (and SPIFFE_ENDPOINT_SOCKET) as a unix URI', () => {
    expect(parseCloudConfig({ dataDir: '/d', spiffeSocket: 'unix:///run/spire/agent.sock', env: {} }).spiffeSocket).toBe('unix:///run/spire/agent.sock');
    expect(parseCloudConfig({ dataDir: '/d', env: { SPIFFE_ENDPOINT_SOCKET: 'unix:///x.sock' } }).spiffeSocket).toBe('unix:///x.sock');
    expect(problemsOf(() => parseCloudConfig({ dataDir: '/d', spiffeSocket: 'tcp://1.2.3.4:1', env: {} })).join()).toContain('--spiffe-socket');
  });

  it('refuses a data dir too long for the admin socket path', () => {
    expect(problemsOf(() => parseCloudConfig({ dataDir: '/' + 'a'.repeat(120), env: {} })).join()).toMatch(/Unix socket/);
  });
});
