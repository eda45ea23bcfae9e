/**
 * The devices of this node (issue #6): the port the EventBus, the enrolment endpoint and the twins read. The
 * implementation (registry.ts) is built from the Device and DeviceModel resources the hub stored; only devices
 * whose `spec.nodeName` is this node are in it ("a device SVID is valid only on its node").
 */
import type { DeviceModelSpec, DeviceSpec } from '../../protocol/index.js';

export interface LocalDevice {
  /** `NAMESPACE/NAME`. */
  readonly fullName: string;
  readonly namespace: string;
  readonly name: string;
  /** `spiffe://TD/edgeward/device/NAMESPACE/NAME`. */
  readonly spiffeId: string;
  /** The Device resource version held here. */
  readonly version: number;
  readonly spec: DeviceSpec;
  /** The device's model, when it is on this node too. */
  readonly model: DeviceModelSpec | undefined;
  /** SVIDs of this device issued (notBefore) before this time (epoch ms) are revoked. */
  readonly revokedBefore: number | undefined;
}

export interface DeviceDirectoryChange {
  readonly fullName: string;
  /** `delete`: the device is gone from this node (deleted, or moved to another node). */
  readonly op: 'put' | 'delete';
}

export interface DeviceDirectory {
  get(fullName: string): LocalDevice | undefined;
  list(): LocalDevice[];
  /** A device, or the model it uses, changed. Returns the unsubscribe function. */
  onChange(listener: (c: DeviceDirectoryChange) => void): () => void;
}
