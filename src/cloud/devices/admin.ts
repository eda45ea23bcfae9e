/**
 * The cloud's device admin methods (issue #6), served on its private admin socket:
 *   device.token  {device, ttlMs?} -> {token, device, node, expiresAt, bundleDigest}
 *   device.revoke {device}         -> {device, revokedBefore, version}
 *
 * `device.token` makes a one-time bootstrap token for an existing Device, bound to the node it is assigned
 * to now (`spec.nodeName`); TTL `ttlMs`, else the cloud's `devices.tokenTtl` (default 1 h), 1 min .. 24 h.
 * The token is returned once and never logged (the log has `token_id`, the first 8 hex digits of its hash).
 *
 * `device.revoke` re-applies the Device with `revokedBefore` = now (rounded down to the whole second:
 * X.509 times have whole seconds) through the resource store, so the hub syncs it to the edge; every SVID of
 * the device with an earlier NotBefore is refused from then on (EventBus, renewals), and its unused tokens
 * are dropped. `resource.apply` keeps a stored `revokedBefore` (src/cloud/resources/admin.ts).
 *
 * There is no un-revoke: a revocation is a cut-off time, not a state. To use the device again, make a new token
 * (`edgeward device token`) and enrol it: its new SVID is issued after the cut-off and is accepted everywhere.
 * Factory (manufacturer certificate) enrolment stays refused while `revokedBefore` is set, since the factory
 * certificate is what may have been stolen; to clear `revokedBefore`, delete the Device and apply it again.
 * That also re-admits its SVIDs issued before the revocation that have not expired yet (at most
 * `devices.svidTtl` old): delete and re-create only after that lifetime has passed.
 */
import { isDeviceName, parseDeviceName, formatDeviceName, DeviceNameError } from '../../attestation/index.js';
import type { Clock } from '../../identity/index.js';
import { deviceOf, type AdminSocketLogger } from '../../protocol/index.js';
import { CloudAdminError } from '../admin/index.js';
import type { ResourceStore } from '../resources/index.js';
import { DeviceError } from './errors.js';
import { DEFAULT_DEVICE_TOKEN_TTL_MS, deviceTokenId, type DeviceTokenStore } from './tokens.js';

export interface DeviceAdminDeps {
  resources: Pick<ResourceStore, 'get' | 'apply'>;
  tokens: DeviceTokenStore;
  clock: Clock;
  logger: AdminSocketLogger;
  /** `sha256:HEX` of the current bundle (what the device enrolment client pins). */
  bundleDigest(): string;
  /** Lifetime of a token made without `ttlMs` (config `devices.tokenTtl`; default 1 h). */
  defaultTokenTtlMs?: number;
}

export interface DeviceTokenResult {
  token: string;
  device: string;
  node: string;
  expiresAt: number;
  bundleDigest: string;
}

export interface DeviceRevokeResult {
  device: string;
  revokedBefore: number;
  version: number;
}

function badRequest(message: string): CloudAdminError {
  return new CloudAdminError('cloud-admin/bad-request', message);
}

function members(p: Record<string, unknown>, allowed: readonly string[], method: string): void {
  for (const k of Object.keys(p)) if (!allowed.includes(k)) throw badRequest(`${method}: unknown parameter ${JSON.stringify(k.slice(0, 40))}`);
}

/** `NAMESPACE/NAME` (or `NAME` in the namespace default) as the full name. */
function deviceParam(p: Record<string, unknown>): string {
  try {
    const full = formatDeviceName(parseDeviceName(p['device']));
    if (!isDeviceName(full)) throw badRequest('device must be NAMESPACE/NAME');
    return full;
  } catch (e) {
    if (e instanceof DeviceNameError) throw badRequest(`device: ${e.message}`);
    throw e;
  }
}

/** The admin method names served here (the admin codec's ADMIN_METHODS must list them). */
export const DEVICE_ADMIN_METHODS = ['device.token', 'device.revoke'] as const;
export type DeviceAdminHandlers = Record<(typeof DEVICE_ADMIN_METHODS)[number], (params: Record<string, unknown>) => unknown>;

export function createDeviceAdminHandlers(deps: DeviceAdminDeps): DeviceAdminHandlers {
  const { resources, tokens, clock, logger } = deps;

  const mustGet = (name: string) => {
    const r = resources.get('Device', name);
    if (r === undefined) throw new DeviceError('device/unknown', `no Device named ${JSON.stringify(name)}`);
    return r;
  };

  return {
    'device.token': (p): DeviceTokenResult => {
      members(p, ['device', 'ttlMs'], 'device.token');
      const name = deviceParam(p);
      const ttl = p['ttlMs'] ?? deps.defaultTokenTtlMs ?? DEFAULT_DEVICE_TOKEN_TTL_MS;
      if (typeof ttl !== 'number') throw badRequest('ttlMs must be a number of milliseconds');
      const dev = deviceOf(mustGet(name));
      const now = clock.now();
      const t = tokens.issue(dev.fullName, dev.spec.nodeName, ttl, now);
      // Never the token itself.
      logger.info(
        { event: 'device.token_created', device: t.device, node: t.node, expires_at: t.expiresAt, token_id: deviceTokenId(t.token).slice(0, 8) },
        'device token created',
      );
      return { token: t.token, device: t.device, node: t.node, expiresAt: t.expiresAt, bundleDigest: deps.bundleDigest() };
    },

    'device.revoke': (p): DeviceRevokeResult => {
      members(p, ['device'], 'device.revoke');
      const name = deviceParam(p);
      const r = mustGet(name);
      deviceOf(r); // a stored Device that does not validate is not re-applied
      const revokedBefore = Math.floor(clock.now() / 1000) * 1000;
      const [outcome] = resources.apply([{ kind: 'Device', name, nodes: [...r.nodes], data: { ...r.data, revokedBefore } }]);
      if (outcome === undefined) throw new Error('resource store returned no outcome');
      const dropped = tokens.dropDevice(name);
      logger.info({ event: 'device.revoked', device: name, revoked_before: revokedBefore, version: outcome.version, tokens_dropped: dropped }, 'device revoked');
      return { device: name, revokedBefore, version: outcome.version };
    },
  };
}
