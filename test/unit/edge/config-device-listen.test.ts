/**
 * The joined agent's device flags in the one config parse (contract "Edge: Wiring"): `--mqtt-listen` and
 * `--enroll-listen` (IPv4/IPv6 literal or DNS name, port 0-65535, or `off`), `--mqtt-acl` (default: the packaged
 * policies/mqtt-acl.yaml); bad values are reported together with the config's other problems.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_ENROLL_LISTEN, DEFAULT_MQTT_LISTEN, parseJoinedEdgeConfig } from '../../../src/edge/config.js';

const record = { v: 1, trustDomain: 'example.org', nodeName: 'n1', cloud: '127.0.0.1:8443', method: 'join_token', bundleDigest: `sha256:${'a'.repeat(64)}` };

function joinedDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-config-listen-'));
  writeFileSync(join(dir, 'join.json'), JSON.stringify(record), { mode: 0o600 });
  return dir;
}

function failure(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return `${(e as { code?: string }).code}: ${(e as Error).message}`;
  }
  return '';
}

describe('parseJoinedEdgeConfig: --mqtt-listen, --enroll-listen, --mqtt-acl', () => {
  const dataDir = joinedDir();

  it('defaults to loopback 8883 (MQTT) and 8884 (enrolment) and the packaged ACL file', () => {
    expect([DEFAULT_MQTT_LISTEN, DEFAULT_ENROLL_LISTEN]).toEqual(['127.0.0.1:8883', '127.0.0.1:8884']);
    const c = parseJoinedEdgeConfig({ dataDir, env: {} });
    expect(c.mqttListen).toEqual({ host: '127.0.0.1', port: 8883 });
    expect(c.enrollListen).toEqual({ host: '127.0.0.1', port: 8884 });
    expect(isAbsolute(c.mqttAclFile)).toBe(true);
    expect(basename(c.mqttAclFile)).toBe('mqtt-acl.yaml');
    expect(basename(dirname(c.mqttAclFile))).toBe('policies');
    expect(Object.isFrozen(c.mqttListen)).toBe(true);
  });

  it.each([
    ['0.0.0.0:1883', { host: '0.0.0.0', port: 1883 }],
    ['[::]:8883', { host: '::', port: 8883 }],
    ['[fe80::1]:0', { host: 'fe80::1', port: 0 }],
    ['[::ffff:127.0.0.1]:9000', { host: '::ffff:127.0.0.1', port: 9000 }],
    ['localhost:65535', { host: 'localhost', port: 65535 }],
    ['edge-1.example.org:8884', { host: 'edge-1.example.org', port: 8884 }],
  ])('accepts %s', (text, want) => {
    const c = parseJoinedEdgeConfig({ dataDir, mqttListen: text, enrollListen: text, env: {} });
    expect(c.mqttListen).toEqual(want);
    expect(c.enrollListen).toEqual(want);
  });

  it('off turns either listener off independently', () => {
    expect(parseJoinedEdgeConfig({ dataDir, mqttListen: 'off', env: {} })).toMatchObject({ mqttListen: undefined, enrollListen: { host: '127.0.0.1', port: 8884 } });
    expect(parseJoinedEdgeConfig({ dataDir, enrollListen: 'off', env: {} })).toMatchObject({ enrollListen: undefined, mqttListen: { host: '127.0.0.1', port: 8883 } });
  });

  it.each([
    '8883',
    'host:',
    'host:70000',
    '[::1]',
    '::1:8883',
    '[not-v6]:1',
    '-lead.example:1',
    'under_score.example:1',
    `${'a'.repeat(64)}.example:1`,
    'a..b:1',
    'Off',
    ' 127.0.0.1:8883',
  ])('refuses %j', (bad) => {
    expect(failure(() => parseJoinedEdgeConfig({ dataDir, mqttListen: bad, env: {} }))).toMatch(/^edge-config\/invalid: .*--mqtt-listen must be HOST:PORT/);
  });

  it('--mqtt-acl: a relative path is made absolute; an empty one is refused', () => {
    expect(parseJoinedEdgeConfig({ dataDir, mqttAcl: 'acl/custom.yaml', env: {} }).mqttAclFile).toBe(join(process.cwd(), 'acl', 'custom.yaml'));
    expect(parseJoinedEdgeConfig({ dataDir, mqttAcl: '/etc/edgeward/acl.yaml', env: {} }).mqttAclFile).toBe('/etc/edgeward/acl.yaml');
    expect(failure(() => parseJoinedEdgeConfig({ dataDir, mqttAcl: '', env: {} }))).toMatch(/--mqtt-acl/);
  });

  it('reports the listener problems together with the rest of the config (missing join record, log level)', () => {
    const m = failure(() => parseJoinedEdgeConfig({ dataDir: join(dataDir, 'no-such-dir'), mqttListen: 'x', enrollListen: 'y:99999', mqttAcl: '', env: { EDGEWARD_LOG_LEVEL: 'loud' } }));
    expect(m).toMatch(/^edge-config\/invalid: /);
    for (const part of ['holds no join', '--mqtt-listen', '--enroll-listen', '--mqtt-acl', 'EDGEWARD_LOG_LEVEL']) expect(m).toContain(part);
  });
});
