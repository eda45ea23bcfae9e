/** SPIRE-mode edge configuration (issue #4 "Bring your own SPIRE"): one place, every problem reported together. */
import { describe, expect, it } from 'vitest';
import { EdgeConfigError, parseSpireEdgeConfig } from '../../../src/edge/index.js';

function problems(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EdgeConfigError);
    expect((e as EdgeConfigError).code).toBe('edge-config/invalid');
    return (e as Error).message;
  }
  throw new Error('expected edge-config/invalid');
}

describe('parseSpireEdgeConfig', () => {
  it('takes the flag, else SPIFFE_ENDPOINT_SOCKET; the data dir (admin socket) is optional', () => {
    const c = parseSpireEdgeConfig({ spiffeSocket: 'unix:///run/spire/agent.sock', cloud: '10.0.0.5:8443', dataDir: '/var/lib/ew', env: { SPIFFE_ENDPOINT_SOCKET: 'unix:///other.sock' } });
    expect(c).toMatchObject({ mode: 'spire', spiffeSocket: 'unix:///run/spire/agent.sock', cloud: '10.0.0.5:8443', adminSocketPath: '/var/lib/ew/admin/admin.sock', entriesSyncMs: 30_000 });
    expect(Object.isFrozen(c)).toBe(true);
    const e = parseSpireEdgeConfig({ cloud: '[::1]:8443', trustDomain: 'example.org', env: { SPIFFE_ENDPOINT_SOCKET: 'unix:///run/spire/agent.sock' } });
    expect(e.spiffeSocket).toBe('unix:///run/spire/agent.sock');
    expect(e.trustDomain?.name).toBe('example.org');
    expect(e.dataDir).toBeUndefined();
    expect(e.adminSocketPath).toBeUndefined();
  });

  it('reports every problem at once', () => {
    const m = problems(() => parseSpireEdgeConfig({ trustDomain: 'Not A TD', env: { EDGEWARD_LOG_LEVEL: 'loud' } }));
    expect(m).toContain('--spiffe-socket (or SPIFFE_ENDPOINT_SOCKET) is required');
    expect(m).toContain('--cloud HOST:PORT is required');
    expect(m).toContain('--trust-domain');
    expect(m).toContain('EDGEWARD_LOG_LEVEL');
    const bad = problems(() => parseSpireEdgeConfig({ spiffeSocket: 'http://x', cloud: 'no-port', env: {} }));
    expect(bad).toContain('--spiffe-socket');
    expect(bad).toContain('--cloud');
  });
});
