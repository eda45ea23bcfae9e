/**
 * The devices of this node (issue #6), built from the Device and DeviceModel resources the hub stored: the
 * DeviceDirectory the EventBus, the enrolment endpoint and the twins read. Only Devices whose `spec.nodeName` is
 * this node are in it ("a device SVID is valid only on its node"); a Device whose data does not read is left out
 * with a security event. `applyChanges` takes the hub's stored batches (createEdgeHub `onResourcesChanged`) and
 * tells the listeners, synchronously, which devices changed: a Device put or delete, a Device moved to another
 * node (a delete here), and every device of a changed model.
 */
import { deviceSpiffeId, type DeviceName } from '../../attestation/index.js';
import { deviceModelOf, deviceOf, type DeviceModelSpec } from '../../protocol/index.js';
import type { TrustDomain } from '../../identity/index.js';
import type { EdgeLogger } from '../main.js';
import type { EdgeHubStore, StoreChange } from '../hub/store.js';
import type { DeviceDirectory, DeviceDirectoryChange, LocalDevice } from './directory.js';

export interface DeviceRegistryOptions {
  store: Pick<EdgeHubStore, 'list' | 'get'>;
  nodeName: string;
  trustDomain: TrustDomain;
  logger: EdgeLogger;
}

export interface DeviceRegistry extends DeviceDirectory {
  /** Read every Device and DeviceModel from the store (at start). */
  load(): void;
  /** What the hub stored; emits the changes. */
  applyChanges(changes: readonly StoreChange[]): void;
  size(): number;
}

export function createDeviceRegistry(o: DeviceRegistryOptions): DeviceRegistry {
  const devices = new Map<string, LocalDevice>();
  /** Device names by model name (`NS/MODEL`). */
  const byModel = new Map<string, Set<string>>();
  const models = new Map<string, DeviceModelSpec>();
  const listeners = new Set<(c: DeviceDirectoryChange) => void>();
  const log = o.logger;

  const emit = (c: DeviceDirectoryChange): void => {
    for (const l of [...listeners]) {
      try {
        l(c);
      } catch (e) {
        log.error({ event: 'devices.listener_failed', device: c.fullName, err: e instanceof Error ? e.message : String(e) }, 'a device change listener failed');
      }
    }
  };

  const readModel = (name: string, data: Record<string, unknown>): void => {
    try {
      models.set(name, deviceModelOf({ name, data }).spec);
    } catch (e) {
      models.delete(name);
      log.warn({ event: 'security.device_resource_invalid', kind: 'DeviceModel', name, err: e instanceof Error ? e.message.slice(0, 300) : String(e) }, 'a DeviceModel from the cloud does not read; ignored');
    }
  };

  const unindex = (fullName: string): void => {
    const d = devices.get(fullName);
    if (d === undefined) return;
    const key = `${d.namespace}/${d.spec.deviceModelRef.name}`;
    const set = byModel.get(key);
    set?.delete(fullName);
    if (set !== undefined && set.size === 0) byModel.delete(key);
    devices.delete(fullName);
  };

  /** Read one Device; returns whether it is (now) a device of this node. */
  const readDevice = (name: string, version: number, data: Record<string, unknown>): boolean => {
    unindex(name);
    let rec;
    try {
      rec = deviceOf({ name, data });
    } catch (e) {
      log.warn({ event: 'security.device_resource_invalid', kind: 'Device', name, err: e instanceof Error ? e.message.slice(0, 300) : String(e) }, 'a Device from the cloud does not read; ignored');
      return false;
    }
    if (rec.spec.nodeName !== o.nodeName) return false;
    const dn: DeviceName = { namespace: rec.namespace, name: rec.name };
    devices.set(rec.fullName, {
      fullName: rec.fullName,
      namespace: rec.namespace,
      name: rec.name,
      spiffeId: deviceSpiffeId(o.trustDomain, dn).toString(),
      version,
      spec: rec.spec,
      get model() {
        return models.get(rec.modelName);
      },
      revokedBefore: rec.revokedBefore,
    });
    let set = byModel.get(rec.modelName);
    if (set === undefined) byModel.set(rec.modelName, (set = new Set()));
    set.add(rec.fullName);
    return true;
  };

  return {
    get: (fullName) => devices.get(fullName),
    list: () => [...devices.values()],
    size: () => devices.size,
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    load() {
      for (const r of o.store.list('DeviceModel')) readModel(r.name, r.data);
      for (const r of o.store.list('Device')) readDevice(r.name, r.version, r.data);
      log.info({ event: 'devices.loaded', devices: devices.size, models: models.size }, 'devices of this node loaded');
    },
    applyChanges(changes) {
      const out: DeviceDirectoryChange[] = [];
      for (const c of changes) {
        const kind = c.op === 'put' ? c.resource.kind : c.kind;
        const name = c.op === 'put' ? c.resource.name : c.name;
        if (kind === 'DeviceModel') {
          if (c.op === 'put') readModel(name, c.resource.data);
          else models.delete(name);
          for (const d of byModel.get(name) ?? []) out.push({ fullName: d, op: 'put' });
        } else if (kind === 'Device') {
          const had = devices.has(name);
          const here = c.op === 'put' ? readDevice(name, c.resource.version, c.resource.data) : (unindex(name), false);
          if (here) {
            if (!had) log.info({ event: 'devices.added', device: name }, 'device assigned to this node');
            out.push({ fullName: name, op: 'put' });
          } else if (had) {
            log.info({ event: 'devices.removed', device: name }, 'device no longer on this node');
            out.push({ fullName: name, op: 'delete' });
          }
        }
      }
      for (const c of out) emit(c);
    },
  };
}
