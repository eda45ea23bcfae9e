/**
 * Devices and device models (issue #6, src/protocol/hub/devices.ts, status-detail.ts) and device names
 * (src/attestation/device/device-name.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  checkTwinValue,
  deviceModelOf,
  deviceOf,
  devicePublishTopics,
  deviceSubscribeTopics,
  MAX_HUB_STATUS_DETAIL_BYTES,
  ResourceError,
  statusDetailProblem,
  twinTopics,
  type ModelProperty,
} from '../../../src/protocol/index.js';
import { deviceNameFromSpiffeId, deviceSpiffeId, isDeviceName, parseDeviceName, DeviceNameError } from '../../../src/attestation/index.js';
import { SpiffeId, TrustDomain } from '../../../src/identity/index.js';

const td = TrustDomain.parse('example.org');

describe('device names and SPIFFE IDs', () => {
  it('a device is spiffe://TD/edgeward/device/NAMESPACE/NAME; a bare name is in "default"', () => {
    expect(parseDeviceName('t-1')).toEqual({ namespace: 'default', name: 't-1' });
    expect(deviceSpiffeId(td, 'plant-a/t.1').toString()).toBe('spiffe://example.org/edgeward/device/plant-a/t.1');
    expect(deviceNameFromSpiffeId(SpiffeId.parse('spiffe://example.org/edgeward/device/plant-a/t.1'), td)).toEqual({ namespace: 'plant-a', name: 't.1' });
  });

  it('anything else is refused (exact shape, no prefix matching; SPIFFE-ID 2.2 dot segments cannot occur)', () => {
    for (const bad of ['', '/x', 'x/', 'A/b', 'a/B', 'a/b/c', 'a/..', '../a', 'a/-b', `${'a'.repeat(64)}/b`, 'a/b c']) {
      expect(isDeviceName(bad), bad).toBe(false);
    }
    expect(() => parseDeviceName('a/b/c')).toThrow(DeviceNameError);
    for (const id of [
      'spiffe://other.org/edgeward/device/a/b',
      'spiffe://example.org/edgeward/device/a',
      'spiffe://example.org/edgeward/device/a/b/c',
      'spiffe://example.org/edgeward/node/a',
      'spiffe://example.org/x/edgeward/device/a/b',
      'spiffe://example.org/edgeward/device/A/b',
    ]) {
      expect(() => deviceNameFromSpiffeId(SpiffeId.parse(id), td), id).toThrow(DeviceNameError);
    }
  });
});

describe('deviceOf / deviceModelOf', () => {
  const spec = { deviceModelRef: { name: 'thermo' }, nodeName: 'edge-1', properties: [{ name: 'sp', desired: { value: '20' } }] };

  it('reads a stored Device: names, model reference in its namespace, revokedBefore', () => {
    const d = deviceOf({ name: 'plant-a/t-1', data: { spec, revokedBefore: 1_700_000_000_000 } });
    expect(d.fullName).toBe('plant-a/t-1');
    expect(d.modelName).toBe('plant-a/thermo');
    expect(d.revokedBefore).toBe(1_700_000_000_000);
    expect(deviceOf({ name: 'a/b', data: { spec: { deviceModelRef: { name: 'm' }, nodeName: 'n' } } }).spec.properties).toEqual([]);
  });

  it('refuses a name without a namespace, bad data, unknown members', () => {
    expect(() => deviceOf({ name: 't-1', data: { spec } })).toThrow(ResourceError);
    expect(() => deviceOf({ name: 'a/b', data: { spec, other: 1 } })).toThrow(/unknown field/);
    expect(() => deviceOf({ name: 'a/b', data: { spec: { ...spec, nodeName: 'Bad' } } })).toThrow(/nodeName/);
    expect(() => deviceModelOf({ name: 'a/m', data: { spec: { properties: [{ name: 'x', type: 'STREAM', accessMode: 'ReadOnly' }] } } })).toThrow(/type/);
    expect(() => deviceModelOf({ name: 'a/m', data: { spec: { factoryCAs: ['not a pem'] } } })).toThrow(/factoryCAs/);
    expect(deviceModelOf({ name: 'a/m', data: { spec: {} } }).spec).toEqual({ properties: [], factoryCAs: [] });
  });
});

describe('checkTwinValue: twin values are strings typed by the model (KubeEdge v1beta1 ModelProperty.type)', () => {
  const p = (type: ModelProperty['type'], extra: Partial<ModelProperty> = {}): ModelProperty => ({ name: 'p', type, accessMode: 'ReadWrite', ...extra });
  it('accepts what the type says and refuses the rest', () => {
    expect(checkTwinValue(p('INT'), '-42')).toBeUndefined();
    expect(checkTwinValue(p('INT'), '4.2')).toMatch(/INT/);
    expect(checkTwinValue(p('INT'), '99999999999999999999')).toMatch(/INT/);
    expect(checkTwinValue(p('FLOAT'), '1e3')).toBeUndefined();
    expect(checkTwinValue(p('FLOAT'), 'NaN')).toMatch(/FLOAT/);
    expect(checkTwinValue(p('BOOLEAN'), 'true')).toBeUndefined();
    expect(checkTwinValue(p('BOOLEAN'), 'yes')).toMatch(/BOOLEAN/);
    expect(checkTwinValue(p('BYTES'), 'AAE=')).toBeUndefined();
    expect(checkTwinValue(p('BYTES'), 'AAF=')).toMatch(/BYTES/);
    expect(checkTwinValue(p('STRING'), 'x'.repeat(1025))).toMatch(/at most/);
    expect(checkTwinValue(p('STRING'), 3)).toMatch(/string/);
  });
  it('minimum and maximum bound numbers', () => {
    expect(checkTwinValue(p('DOUBLE', { minimum: 0, maximum: 10 }), '10')).toBeUndefined();
    expect(checkTwinValue(p('DOUBLE', { minimum: 0, maximum: 10 }), '10.5')).toMatch(/maximum/);
    expect(checkTwinValue(p('INT', { minimum: 0 }), '-1')).toMatch(/minimum/);
  });
});

describe('twin topics (kubeedge.md §6: $hw/events/device/<ns>/<name>/...)', () => {
  it('are per device; devices publish updates and read deltas', () => {
    const t = twinTopics({ namespace: 'plant-a', name: 't-1' });
    expect(t.update).toBe('$hw/events/device/plant-a/t-1/twin/update');
    expect(t.updateDelta).toBe('$hw/events/device/plant-a/t-1/twin/update/delta');
    expect(t.getResult).toBe('$hw/events/device/plant-a/t-1/twin/get/result');
    expect(t.stateUpdate).toBe('$hw/events/device/plant-a/t-1/state/update');
    expect(devicePublishTopics({ namespace: 'a', name: 'b' })).toEqual(['$hw/events/device/a/b/twin/update', '$hw/events/device/a/b/twin/get', '$hw/events/device/a/b/state/update']);
    expect(deviceSubscribeTopics({ namespace: 'a', name: 'b' })).toContain('$hw/events/device/a/b/twin/update/delta');
  });
});

describe('status detail', () => {
  it('is a bounded JSON object', () => {
    expect(statusDetailProblem({ twins: { t: { value: '1', at: 1 } }, lastSeen: 2 })).toBeUndefined();
    expect(statusDetailProblem([])).toMatch(/object/);
    expect(statusDetailProblem({ a: Number.NaN })).toMatch(/finite/);
    expect(statusDetailProblem({ a: 'x'.repeat(MAX_HUB_STATUS_DETAIL_BYTES) })).toMatch(/larger/);
    let deep: unknown = 1;
    for (let i = 0; i < 10; i++) deep = { d: deep };
    expect(statusDetailProblem(deep)).toMatch(/deeper/);
    expect(statusDetailProblem({ d: new Date() })).toMatch(/JSON values/);
  });
});
