/**
 * The joined agent's device flags (issue #6): `--enroll-listen`, `--mqtt-listen` (HOST:PORT, [IPv6]:PORT, port
 * 0-65535, or `off`), `--mqtt-acl` (default: the packaged policies/mqtt-acl.yaml, found from the module, which
 * must exist), `--enroll-rate`, `--mqtt-publish-rate`; every problem reported together (architecture.md
 * convention 7); refused in the modes they do not apply to (standalone, SPIRE), before anything starts.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/index.js';
import { DEFAULT_ENROLL_RATE, DEFAULT_MQTT_PUBLISH_RATE, packagedPolicyFile, parseJoinedEdgeConfig } from '../../src/edge/config.js';
import { REPO_ROOT, tempDir } from '../helpers/index.js';
import { fakeIo } from '../unit/cli/fake-io.js';

const record = { v: 1, trustDomain: 'example.org', nodeName: 'n1', cloud: '127.0.0.1:8443', method: 'join_token', bundleDigest: `sha256:${'a'.repeat(64)}` };

async function joinedDir(): Promise<string> {
  const dir = await tempDir('edgeward-device-flags-');
  writeFileSync(join(dir, 'join.json'), JSON.stringify(record), { mode: 0o600 });
  return dir;
}

function problems(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return `${(e as { code?: string }).code}: ${(e as Error).message}`;
  }
  return '';
}

describe('joined agent device flags', () => {
  it('defaults: enrolment on 127.0.0.1:8884, EventBus on 127.0.0.1:8883, the packaged ACL policy, default rates', async () => {
    const c = parseJoinedEdgeConfig({ dataDir: await joinedDir(), env: {} });
    expect(c.enrollListen).toEqual({ host: '127.0.0.1', port: 8884 });
    expect(c.mqttListen).toEqual({ host: '127.0.0.1', port: 8883 });
    expect(c.mqttAclFile).toBe(join(REPO_ROOT, 'policies', 'mqtt-acl.yaml'));
    expect(existsSync(c.mqttAclFile)).toBe(true);
    expect(packagedPolicyFile('mqtt-acl.yaml')).toBe(c.mqttAclFile);
    expect(c.enrollRate).toBe(DEFAULT_ENROLL_RATE);
    expect(c.mqttPublishRate).toBe(DEFAULT_MQTT_PUBLISH_RATE);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('takes HOST:PORT, [IPv6]:PORT, a host name, port 0, and off; a relative ACL path is resolved', async () => {
    const dir = await joinedDir();
    const c = parseJoinedEdgeConfig({ dataDir: dir, enrollListen: '[::1]:0', mqttListen: 'off', mqttAcl: 'policies/x.yaml', enrollRate: '5', mqttPublishRate: '20', env: {} });
    expect(c.enrollListen).toEqual({ host: '::1', port: 0 });
    expect(c.mqttListen).toBeUndefined();
    expect(c.mqttAclFile).toBe(resolve('policies/x.yaml'));
    expect([c.enrollRate, c.mqttPublishRate]).toEqual([5, 20]);
    expect(parseJoinedEdgeConfig({ dataDir: dir, enrollListen: 'off', mqttListen: 'edge-1.example.org:65535', env: {} })).toMatchObject({ enrollListen: undefined, mqttListen: { host: 'edge-1.example.org', port: 65535 } });
  });

  it('refuses bad addresses and rates, every problem together', async () => {
    const dir = await joinedDir();
    for (const bad of ['127.0.0.1', '127.0.0.1:65536', ':8884', '127.0.0.1:-1', '127.0.0.1:88a4', 'a b:1', '::1:8884', '[zz]:1', 'OFF', '']) {
      expect(problems(() => parseJoinedEdgeConfig({ dataDir: dir, enrollListen: bad, env: {} })), bad).toMatch(/^edge-config\/invalid: .*--enroll-listen must be HOST:PORT/);
    }
    const all = problems(() => parseJoinedEdgeConfig({ dataDir: dir, enrollListen: 'x', mqttListen: 'y', mqttAcl: '', enrollRate: '0', mqttPublishRate: '1.5', env: {} }));
    for (const flag of ['--enroll-listen', '--mqtt-listen', '--mqtt-acl', '--enroll-rate', '--mqtt-publish-rate']) expect(all).toContain(flag);
  });

  it('edge start refuses them in standalone and SPIRE mode before starting anything', async () => {
    const io = fakeIo();
    expect(await main(['edge', 'start', '--standalone', '--data-dir', await tempDir('edgeward-device-flags-sa-'), '--enroll-listen', '127.0.0.1:0'], io)).toBe(2);
    expect(io.stderrText()).toMatch(/--enroll-listen apply to a joined agent/);
    const spire = fakeIo();
    expect(await main(['edge', 'start', '--spiffe-socket', 'unix:///nonexistent/agent.sock', '--cloud', '127.0.0.1:1', '--mqtt-listen', 'off', '--mqtt-acl', 'x.yaml'], spire)).toBe(2);
    expect(spire.stderrText()).toMatch(/--mqtt-listen, --mqtt-acl do not apply in SPIRE mode/);
  });
});
