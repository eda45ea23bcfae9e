import { describe, expect, it } from 'vitest';
import { EdgeConfigError, parseEdgeConfig } from '../../../src/edge/index.js';

const base = { standalone: true, trustDomain: 'example.org', dataDir: '/var/lib/edgeward', env: {} };

describe('parseEdgeConfig (one typed config, every problem reported together)', () => {
  it('builds a frozen config with defaults and the data-dir layout', () => {
    const c = parseEdgeConfig(base);
    expect(Object.isFrozen(c)).toBe(true);
    expect(c.socketPath).toBe('/var/lib/edgeward/public/api.sock');
    expect(c.adminSocketPath).toBe('/var/lib/edgeward/admin/admin.sock');
    expect(c.x509SvidTtlMs).toBe(3_600_000);
    expect(c.workloadSizeLimit).toBe(-1); // unix:sha256 off by default
  });
  it('turns unix:sha256 on with --workload-sha256-limit', () => {
    expect(parseEdgeConfig({ ...base, workloadSha256Limit: '268435456' }).workloadSizeLimit).toBe(268_435_456);
  });
  it('reports all problems at once', () => {
    try {
      parseEdgeConfig({ standalone: false, trustDomain: 'Bad.Domain', dataDir: undefined, x509Ttl: 'forever', workloadSha256Limit: '-5', env: { EDGEWARD_LOG_LEVEL: 'loud' } });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(EdgeConfigError);
      const m = (e as EdgeConfigError).message;
      for (const part of ['--standalone', '--trust-domain', '--data-dir', '--x509-ttl', '--workload-sha256-limit', 'EDGEWARD_LOG_LEVEL']) expect(m).toContain(part);
    }
  });
  it('refuses a CA lifetime under 6x the SVID lifetime (spiffe.md 3)', () => {
    expect(() => parseEdgeConfig({ ...base, caTtl: '5h', x509Ttl: '1h' })).toThrow(/6x/);
  });
  it('refuses a socket path longer than a Unix socket allows', () => {
    expect(() => parseEdgeConfig({ ...base, socket: '/' + 'a'.repeat(120) })).toThrow(/107 bytes/);
  });
});
