/**
 * The device registry (issue #6, contract "Edge": the DeviceDirectory port) over the REAL edge hub store (sealed
 * SQLite in a temp dir): what the hub stores is what the registry holds. Only Devices whose spec.nodeName is this
 * node are in it (a device SVID is valid only on its node); the model is the DeviceModel `NS/MODEL` of the
 * device's namespace; listeners hear, synchronously, of every put and delete of a device here and of every device
 * of a changed model; a listener that throws does not stop the others; a Device whose data does not read is left
 * out with a `security.device_resource_invalid` event.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostStateFiles } from '../../../src/cli/host/index.js';
import { createDeviceRegistry, type DeviceRegistry } from '../../../src/edge/devices/registry.js';
import type { DeviceDirectoryChange } from '../../../src/edge/devices/directory.js';
import { openEdgeHubStore, type EdgeHubStore, type HubItem, type StoreChange } from '../../../src/edge/hub/store.js';
import { TrustDomain } from '../../../src/identity/index.js';
import { tempDir } from '../../helpers/index.js';

const TD = TrustDomain.parse('registry.example.org');
const NODE = 'edge-7';

type Log = Record<string, unknown> & { level: string };
let logs: Log[] = [];
const logger = {
  debug: (o: Record<string, unknown>) => void logs.push({ ...o, level: 'debug' }),
  info: (o: Record<string, unknown>) => void logs.push({ ...o, level: 'info' }),
  warn: (o: Record<string, unknown>) => void logs.push({ ...o, level: 'warn' }),
  error: (o: Record<string, unknown>) => void logs.push({ ...o, level: 'error' }),
};

let store: EdgeHubStore;
let registry: DeviceRegistry;
let version = 0;

const model = (name: string, props: string[], factoryCAs?: string[]): HubItem => ({
  op: 'put',
  resource: {
    kind: 'DeviceModel',
    name,
    version: ++version,
    data: { spec: { properties: props.map((p) => ({ name: p, type: 'FLOAT', accessMode: 'ReadWrite' })), ...(factoryCAs === undefined ? {} : { factoryCAs }) } },
  },
});
const device = (name: string, o: { node?: string; model?: string; revokedBefore?: number; serial?: string } = {}): HubItem => ({
  op: 'put',
  resource: {
    kind: 'Device',
    name,
    version: ++version,
    data: {
      spec: {
        deviceModelRef: { name: o.model ?? 'thermometer' },
        nodeName: o.node ?? NODE,
        properties: [{ name: 'setpoint', desired: { value: '21.5' } }],
        ...(o.serial === undefined ? {} : { factoryIdentity: { serialNumber: o.serial } }),
      },
      ...(o.revokedBefore === undefined ? {} : { revokedBefore: o.revokedBefore }),
    },
  },
});
const del = (kind: 'Device' | 'DeviceModel', name: string): HubItem => ({ op: 'delete', kind, name, version: ++version });

/** What the hub does: store a batch, then hand the registry what was written (createEdgeHub onResourcesChanged). */
function sync(...items: HubItem[]): StoreChange[] {
  const r = store.apply(items);
  registry.applyChanges(r.changed);
  return r.changed;
}

function listen(r: DeviceRegistry = registry): { seen: string[]; off: () => void } {
  const seen: string[] = [];
  const off = r.onChange((c: DeviceDirectoryChange) => seen.push(`${c.op}:${c.fullName}`));
  return { seen, off };
}

beforeEach(async () => {
  logs = [];
  const dir = await tempDir('edgeward-device-registry-');
  store = openEdgeHubStore({ dir: join(dir, 'hub'), files: hostStateFiles, dek: randomBytes(32), clock: { now: () => Date.now() }, logger });
  registry = createDeviceRegistry({ store, nodeName: NODE, trustDomain: TD, logger });
  registry.load();
});

afterEach(() => {
  store.close();
});

describe('device registry over the edge hub store', () => {
  it('loads the stored devices of this node at start, with their models, SPIFFE IDs, versions and revocation', () => {
    store.apply([
      model('default/thermometer', ['temperature', 'setpoint']),
      model('plant/thermometer', ['other']),
      device('default/t-1', { revokedBefore: 1_700_000_000_000 }),
      device('plant/t-2', { serial: 'SN-9' }),
      device('default/far', { node: 'edge-8' }),
      device('default/orphan', { model: 'missing' }),
    ]);
    const fresh = createDeviceRegistry({ store, nodeName: NODE, trustDomain: TD, logger });
    fresh.load();
    expect(fresh.list().map((d) => d.fullName).sort()).toEqual(['default/orphan', 'default/t-1', 'plant/t-2']);
    expect(fresh.size()).toBe(3);
    const t1 = fresh.get('default/t-1')!;
    expect(t1).toMatchObject({ namespace: 'default', name: 't-1', spiffeId: `spiffe://${TD.name}/edgeward/device/default/t-1`, revokedBefore: 1_700_000_000_000 });
    expect(t1.version).toBe(store.get('Device', 'default/t-1')!.version);
    expect(t1.spec.properties[0]).toEqual({ name: 'setpoint', desired: { value: '21.5' } });
    expect(t1.model?.properties.map((p) => p.name)).toEqual(['temperature', 'setpoint']);
    // the model of a device is the one of its own namespace
    expect(fresh.get('plant/t-2')!.model?.properties.map((p) => p.name)).toEqual(['other']);
    expect(fresh.get('plant/t-2')!.spec.factoryIdentity).toEqual({ serialNumber: 'SN-9' });
    expect(fresh.get('plant/t-2')!.revokedBefore).toBeUndefined();
    // a model that is not here (yet): the device is, without a model
    expect(fresh.get('default/orphan')!.model).toBeUndefined();
    // a device of another node is not
    expect(fresh.get('default/far')).toBeUndefined();
    expect(logs.filter((l) => l['event'] === 'devices.loaded').at(-1)).toMatchObject({ devices: 3, models: 2 });
  });

  it('tells listeners synchronously of a put, a delete, and a move to another node (a delete here)', () => {
    const { seen, off } = listen();
    sync(device('default/a'));
    // synchronous: already heard when applyChanges returned
    expect(seen).toEqual(['put:default/a']);
    expect(registry.get('default/a')).toBeDefined();
    sync(device('default/a', { revokedBefore: 1_800_000_000_000 }));
    expect(seen).toEqual(['put:default/a', 'put:default/a']);
    expect(registry.get('default/a')!.revokedBefore).toBe(1_800_000_000_000);
    sync(device('default/a', { node: 'edge-8' }));
    expect(seen.at(-1)).toBe('delete:default/a');
    expect(registry.get('default/a')).toBeUndefined();
    sync(device('default/a'));
    sync(del('Device', 'default/a'));
    expect(seen.slice(-2)).toEqual(['put:default/a', 'delete:default/a']);
    expect(registry.list()).toEqual([]);
    // devices of other nodes come and go unheard
    sync(device('default/far', { node: 'edge-8' }));
    sync(del('Device', 'default/far'));
    expect(seen).toHaveLength(5);
    expect(logs.filter((l) => l['event'] === 'devices.added')).toHaveLength(2);
    expect(logs.filter((l) => l['event'] === 'devices.removed')).toHaveLength(2);
    off();
    sync(device('default/b'));
    expect(seen).toHaveLength(5);
  });

  it('a changed or deleted model touches every device of this node that uses it, and only those', () => {
    sync(model('default/thermometer', ['temperature']), model('default/valve', ['open']), device('default/t-1'), device('default/t-2'), device('default/v-1', { model: 'valve' }), device('plant/t-3'), device('default/t-far', { node: 'edge-8' }));
    const { seen } = listen();
    sync(model('default/thermometer', ['temperature', 'setpoint']));
    expect(seen.sort()).toEqual(['put:default/t-1', 'put:default/t-2']);
    expect(registry.get('default/t-1')!.model?.properties.map((p) => p.name)).toEqual(['temperature', 'setpoint']);
    seen.length = 0;
    sync(del('DeviceModel', 'default/thermometer'));
    expect(seen.sort()).toEqual(['put:default/t-1', 'put:default/t-2']);
    expect(registry.get('default/t-1')!.model).toBeUndefined();
    expect(registry.get('default/v-1')!.model?.properties[0]?.name).toBe('open');
    // a device that changes model moves to the other model's set
    seen.length = 0;
    sync(device('default/t-1', { model: 'valve' }));
    expect(seen).toEqual(['put:default/t-1']);
    seen.length = 0;
    sync(model('default/valve', ['open', 'closed']));
    expect(seen.sort()).toEqual(['put:default/t-1', 'put:default/v-1']);
    seen.length = 0;
    sync(model('default/thermometer', ['temperature']));
    expect(seen).toEqual(['put:default/t-2']);
  });

  it('a listener that throws does not stop the others; it is logged', () => {
    const heard: string[] = [];
    registry.onChange(() => {
      throw new Error('boom');
    });
    registry.onChange((c) => heard.push(c.fullName));
    sync(device('default/a'), device('default/b'));
    expect(heard).toEqual(['default/a', 'default/b']);
    expect(logs.filter((l) => l['event'] === 'devices.listener_failed')).toHaveLength(2);
  });

  it('a listener may unsubscribe itself or another while being told', () => {
    const heard: string[] = [];
    const offA = registry.onChange((c) => {
      heard.push(`a:${c.fullName}`);
      offA();
    });
    registry.onChange((c) => heard.push(`b:${c.fullName}`));
    sync(device('default/a'), device('default/b'));
    expect(heard).toEqual(['a:default/a', 'b:default/a', 'b:default/b']);
  });

  it('a Device whose data does not read is left out with a security event (and one that was here is a delete)', () => {
    sync(device('default/a'));
    const { seen } = listen();
    const bad = (name: string, data: Record<string, unknown>): StoreChange => ({ op: 'put', resource: { kind: 'Device', name, version: ++version, data, updatedAt: Date.now() } });
    registry.applyChanges([bad('default/a', { spec: { nodeName: NODE } }), bad('default/b', { spec: { deviceModelRef: { name: 'm' }, nodeName: NODE }, extra: true }), bad('nonamespace', { spec: { deviceModelRef: { name: 'm' }, nodeName: NODE } })]);
    expect(registry.get('default/a')).toBeUndefined();
    expect(registry.get('default/b')).toBeUndefined();
    expect(seen).toEqual(['delete:default/a']);
    const events = logs.filter((l) => l['event'] === 'security.device_resource_invalid');
    expect(events.map((e) => e['name'])).toEqual(['default/a', 'default/b', 'nonamespace']);
    expect(events.every((e) => e.level === 'warn' && e['kind'] === 'Device')).toBe(true);
    // an unreadable model: its devices stay, without a model
    sync(model('default/thermometer', ['t']), device('default/c'));
    registry.applyChanges([{ op: 'put', resource: { kind: 'DeviceModel', name: 'default/thermometer', version: ++version, data: { spec: { properties: 'nope' } }, updatedAt: 0 } }]);
    expect(registry.get('default/c')!.model).toBeUndefined();
    expect(logs.filter((l) => l['event'] === 'security.device_resource_invalid').at(-1)).toMatchObject({ kind: 'DeviceModel', name: 'default/thermometer' });
  });

  it('resources of other kinds are ignored', () => {
    const { seen } = listen();
    const changed = sync({ op: 'put', resource: { kind: 'ConfigMap', name: 'settings', version: ++version, data: { data: { k: 'v' } } } });
    expect(changed).toHaveLength(1);
    expect(seen).toEqual([]);
    expect(registry.size()).toBe(0);
  });
});
