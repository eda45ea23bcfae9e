/**
 * EventBus topic rules (issue #6): MQTT 3.1.1 §4.7 matching and filter containment, the ACL policy loader, the
 * compiled per-client ACL and the packet-size scanner (MQTT 3.1.1 2.2.3).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileAcl, deviceGrants, filterCovers, filterMatches, FrameScanner, isTopicFilter, loadMqttAclPolicy, validateMqttAclPolicy } from '../../../src/edge/eventbus/index.js';
import { TrustDomain } from '../../../src/identity/index.js';
import { PolicyError } from '../../../src/edge/registration/errors.js';

const TD = TrustDomain.parse('example.org');

describe('topic filters (MQTT 3.1.1 4.7)', () => {
  it('match: + is one level, # the parent and any children; a wildcard first level never matches $ topics (4.7.2)', () => {
    expect(filterMatches('a/+/c', 'a/b/c')).toBe(true);
    expect(filterMatches('a/+/c', 'a/b/d')).toBe(false);
    expect(filterMatches('a/#', 'a')).toBe(true);
    expect(filterMatches('a/#', 'a/b/c')).toBe(true);
    expect(filterMatches('+', 'a/b')).toBe(false);
    expect(filterMatches('#', '$SYS/x')).toBe(false);
    expect(filterMatches('+/x', '$hw/x')).toBe(false);
    expect(filterMatches('$hw/events/device/+/+/twin/update', '$hw/events/device/a/b/twin/update')).toBe(true);
  });
  it('cover: a grant covers a requested filter only if it covers everything the filter can match', () => {
    expect(filterCovers('a/#', 'a/+/c')).toBe(true);
    expect(filterCovers('a/+', 'a/#')).toBe(false);
    expect(filterCovers('a/+/c', 'a/+/c')).toBe(true);
    expect(filterCovers('a/b/c', 'a/+/c')).toBe(false);
    expect(filterCovers('#', '$SYS/#')).toBe(false);
    expect(filterCovers('+/b', '$x/b')).toBe(false);
    expect(filterCovers('$hw/#', '#')).toBe(false);
  });
  it('valid filters: + and # alone in their level, # last (4.7.1)', () => {
    for (const f of ['a/+/b', '#', 'a/#', '+']) expect(isTopicFilter(f, 32), f).toBe(true);
    for (const f of ['a+/b', 'a/#/b', 'a#', '', 'a\u0000b']) expect(isTopicFilter(f, 32), f).toBe(false);
    expect(isTopicFilter('a/'.repeat(40) + 'a', 32)).toBe(false);
  });
});

describe('ACL policy', () => {
  const base = { apiVersion: 'edgeward.io/v1', kind: 'MqttAclPolicy' };
  it('grants devices (placeholders as whole levels) and exact SPIFFE IDs of the trust domain', () => {
    const p = validateMqttAclPolicy({ ...base, devices: { publish: ['t/{namespace}/{name}'] }, identities: [{ spiffeId: 'spiffe://example.org/c', subscribe: ['t/#'] }] }, TD);
    const g = deviceGrants({ namespace: 'ns', name: 'd1' }, 'spiffe://example.org/edgeward/device/ns/d1', p);
    expect(g.publish).toContain('t/ns/d1');
    expect(g.publish).toContain('$hw/events/device/ns/d1/twin/update');
    expect(g.subscribe).toContain('$hw/events/device/ns/d1/twin/update/delta');
    const acl = compileAcl(g);
    expect(acl.canPublish('t/ns/d1')).toBe(true);
    expect(acl.canPublish('t/ns/d2')).toBe(false);
    expect(acl.canPublish('$hw/events/device/ns/d2/twin/update')).toBe(false);
    expect(acl.canSubscribe('$hw/events/device/ns/d1/twin/update/delta')).toBe(true);
    expect(acl.canSubscribe('$hw/events/device/ns/+/twin/update/delta')).toBe(false);
    expect(acl.canReceive('$hw/events/device/ns/d1/twin/get/result')).toBe(true);
    expect(p.identities.get('spiffe://example.org/c')?.subscribe).toEqual(['t/#']);
  });
  it('refuses $SYS, other $ topics, a bare # to publish, bad placeholders, other trust domains, unknown fields; all problems at once', () => {
    try {
      validateMqttAclPolicy(
        {
          ...base,
          devices: { publish: ['#', '$SYS/x', 'a/{name}x', 'a/{other}'], subscribe: ['$share/x'] },
          identities: [{ spiffeId: 'spiffe://other.org/x', publish: ['a/{name}'] }, { spiffeId: 'not-an-id' }, { spiffeId: 'spiffe://example.org/c', extra: 1 }],
          more: true,
        },
        TD,
      );
      throw new Error('expected a refusal');
    } catch (e) {
      expect(e).toBeInstanceOf(PolicyError);
      const all = (e as PolicyError).problems.map((p) => `${p.path}: ${p.message}`).join('\n');
      expect(all).toMatch(/devices\.publish\[0\].*bare "#"/);
      expect(all).toMatch(/devices\.publish\[1\].*reserved/);
      expect(all).toMatch(/devices\.publish\[2\].*whole level/);
      expect(all).toMatch(/devices\.publish\[3\].*whole level/);
      expect(all).toMatch(/devices\.subscribe\[0\].*reserved/);
      expect(all).toMatch(/identities\[0\]\.spiffeId.*trust domain/);
      expect(all).toMatch(/identities\[0\]\.publish\[0\].*only for device grants/);
      expect(all).toMatch(/identities\[1\]\.spiffeId/);
      expect(all).toMatch(/identities\[2\].*unknown field/);
      expect(all).toMatch(/more: unknown field/);
    }
  });
  it('the packaged default policy loads and grants nothing extra', () => {
    const p = loadMqttAclPolicy(join(import.meta.dirname, '../../../policies/mqtt-acl.yaml'), TD);
    expect(p.devices).toEqual({ publish: [], subscribe: [] });
    expect(p.identities.size).toBe(0);
  });
  it('a file that is not one strict YAML document is refused (policy/syntax)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'acl-'));
    writeFileSync(join(dir, 'p.yaml'), 'apiVersion: edgeward.io/v1\napiVersion: again\n');
    expect(() => loadMqttAclPolicy(join(dir, 'p.yaml'), TD)).toThrow(PolicyError);
  });
});

describe('FrameScanner (MQTT 3.1.1 2.2.3 remaining length)', () => {
  const packet = (len: number): Buffer => {
    const l: number[] = [];
    let x = len;
    do {
      let b = x % 128;
      x = Math.floor(x / 128);
      if (x > 0) b |= 0x80;
      l.push(b);
    } while (x > 0);
    return Buffer.concat([Buffer.from([0x30, ...l]), Buffer.alloc(len)]);
  };
  it('passes packets up to the limit, split anywhere across chunks', () => {
    const s = new FrameScanner(1000);
    const stream = Buffer.concat([packet(10), packet(995), packet(0), packet(300)]);
    for (let i = 0; i < stream.length; i += 7) expect(s.feed(stream.subarray(i, i + 7))).toBe(true);
  });
  it('refuses a packet announcing more than the limit as soon as its length is read, and a five-byte length', () => {
    const s = new FrameScanner(1000);
    expect(s.feed(packet(10))).toBe(true);
    expect(s.feed(packet(2000).subarray(0, 3))).toBe(false);
    expect(s.feed(Buffer.from([0x30]))).toBe(false);
    expect(new FrameScanner(1 << 30).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(false);
  });
});
