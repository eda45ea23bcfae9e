/**
 * Device X509-SVID issuance for the node API (issue #6, contract "Cloud"): `device.enroll` (a one-time
 * bootstrap token, or the device's manufacturer certificate chain) and `device.renew` (the device's current
 * SVID). The edge relays the device's CSR and its proof; the cloud CA signs an X509-SVID for
 * `spiffe://TD/edgeward/device/NAMESPACE/NAME` with the CSR's key only (verifyCsr: the CSR contributes its
 * public key, nothing else; no DNS SANs), lifetime `devices.svidTtl` capped by the CA.
 *
 * Deny by default, for every path: the Device must exist in the resource store and be assigned to the
 * calling node (`spec.nodeName`). Revocation (`revokedBefore`, epoch ms, set by `edgeward device revoke`)
 * kills every SVID whose NotBefore is earlier, every token made before it, and factory enrolment. A new SVID
 * for a revoked device is signed so that its NotBefore is not before `revokedBefore` (the CA backdates
 * NotBefore by BACKDATE_MS, so the signing time is moved forward by at most that much when needed).
 *
 * Factory path (factory.ts): the chain (leaf first) must verify at `now` to one of the model's `factoryCAs`
 * (RFC 5280 6.1 path checks), the leaf must not be a CA, and the leaf subject's serialNumber (OID 2.5.4.5,
 * read from the DER name) must equal the Device's `spec.factoryIdentity.serialNumber`. The edge sends the
 * chain only after the TLS handshake proved the device holds the leaf's key.
 *
 * Renew path: the presented chain must validate as an X509-SVID of the current bundle at `now` (X509-SVID 5)
 * whose ID is exactly the device's, with NotBefore >= `revokedBefore`.
 *
 * Tokens are never logged (only `token_id`, the first 8 hex digits of their SHA-256).
 */
import { deviceSpiffeId, isDeviceName } from '../../attestation/index.js';
import {
  BACKDATE_MS,
  verifyCsr,
  validateX509Svid,
  X509SvidError,
  type CaManager,
  type SpiffeId,
  type TrustDomain,
  type X509BundleSource,
} from '../../identity/index.js';
import { deviceModelOf, deviceOf, type DeviceEnrollMessage, type DeviceRecord, type DeviceRenewMessage, type DeviceSvidMessage } from '../../protocol/index.js';
import type { ResourceStore } from '../resources/index.js';
import { DeviceError } from './errors.js';
import { factoryChainProblem } from './factory.js';
import type { DeviceTokenStore } from './tokens.js';

/** Default device SVID lifetime (contract: `devices.svidTtl`, 24 h). */
export const DEFAULT_DEVICE_SVID_TTL_MS = 24 * 3_600_000;

export interface DeviceIssuerLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface DeviceIssuerDeps {
  trustDomain: TrustDomain;
  /** Devices and device models (the hub's resource store). */
  resources: Pick<ResourceStore, 'get'>;
  tokens: DeviceTokenStore;
  /** The embedded CA (signs, and its bundle validates presented SVIDs). */
  ca: CaManager;
  /** Device SVID lifetime; capped by the CA's maxX509SvidTtlMs. */
  svidTtlMs: number;
  logger: DeviceIssuerLogger;
}

export interface DeviceIssuer {
  /** Throws DeviceError / CsrError refusals (peer-facing); never signs on a refusal. */
  enroll(m: DeviceEnrollMessage, node: string, now: number): DeviceSvidMessage;
  renew(m: DeviceRenewMessage, node: string, now: number): DeviceSvidMessage;
}

export function createDeviceIssuer(deps: DeviceIssuerDeps): DeviceIssuer {
  const { trustDomain: td, resources, tokens, ca, logger } = deps;
  if (!Number.isSafeInteger(deps.svidTtlMs) || deps.svidTtlMs < 60_000) throw new TypeError('svidTtlMs must be an integer >= 60000');
  const bundle: X509BundleSource = { x509AuthoritiesFor: (t) => (t.equals(td) ? ca.x509Authorities() : undefined) };

  const lookup = (name: string | undefined, node: string): DeviceRecord => {
    const r = name !== undefined && isDeviceName(name) ? resources.get('Device', name) : undefined;
    if (r === undefined) throw new DeviceError('device/unknown', 'no such device', name === undefined ? undefined : { detail: { device: name.slice(0, 317) } });
    const dev = deviceOf(r);
    if (dev.spec.nodeName !== node) {
      throw new DeviceError('device/wrong-node', 'the device is not assigned to this node', { detail: { device: dev.fullName, assigned: dev.spec.nodeName } });
    }
    return dev;
  };

  const sign = (dev: DeviceRecord, csr: Buffer, now: number): { msg: DeviceSvidMessage; serial: string; spiffeId: SpiffeId } => {
    const spiffeId = deviceSpiffeId(td, dev.fullName);
    const ttlMs = Math.min(deps.svidTtlMs, ca.maxX509SvidTtlMs);
    // The CA backdates NotBefore (BACKDATE_MS, whole seconds): sign late enough that a new SVID of a revoked
    // device does not itself look revoked (NotBefore >= revokedBefore; revokedBefore is a whole second).
    const at = dev.revokedBefore === undefined ? now : Math.max(now, dev.revokedBefore + BACKDATE_MS);
    const leaf = ca.issueX509SvidFromCsr({ spiffeId, csr, ttlMs, dnsNames: [], now: at });
    if (dev.revokedBefore !== undefined && leaf.notBefore < dev.revokedBefore) {
      throw new DeviceError('device/revoked', 'the device was revoked moments ago; retry in a few seconds');
    }
    return {
      msg: { v: 1, kind: 'device.svid', device: dev.fullName, svidChainDer: [leaf.der, ...ca.intermediates(now)], expiresAt: leaf.notAfter },
      serial: leaf.serialHex,
      spiffeId,
    };
  };

  const enrollWithToken = (m: DeviceEnrollMessage, token: string, node: string, now: number): DeviceSvidMessage => {
    const r = tokens.consume(token, m.device, node, now);
    if (!r.ok) {
      logger.warn(
        { event: 'security.device_token_refused', reason: r.reason, token_id: r.tokenId, device: m.device ?? r.device, node },
        'device token refused',
      );
      throw new DeviceError('device-token/invalid', 'the device token is unknown, expired, used, or not for this device and node', { detail: { reason: r.reason } });
    }
    const dev = lookup(r.device, node);
    // Tokens made before a revocation are dead (revoke also drops them; this covers a token made in the
    // same second as the revocation, revokedBefore being a whole second).
    if (dev.revokedBefore !== undefined && r.createdAt < dev.revokedBefore) {
      throw new DeviceError('device/revoked', 'the device was revoked after this token was made; make a new token', { detail: { device: dev.fullName } });
    }
    const out = sign(dev, m.csr, now);
    logger.info({ event: 'device.enrolled', device: dev.fullName, node, method: 'token', serial: out.serial, token_id: r.tokenId }, 'device enrolled');
    return out.msg;
  };

  const enrollWithFactory = (m: DeviceEnrollMessage, chain: Buffer[], node: string, now: number): DeviceSvidMessage => {
    const dev = lookup(m.device, node);
    if (dev.revokedBefore !== undefined) {
      throw new DeviceError('device/revoked', 'the device is revoked: it may enrol again only with a new token', { detail: { device: dev.fullName } });
    }
    const refuse = (reason: string): DeviceError =>
      new DeviceError('device/factory-refused', 'factory enrolment refused', { detail: { device: dev.fullName, reason } });
    const serial = dev.spec.factoryIdentity?.serialNumber;
    if (serial === undefined) throw refuse('the device has no factoryIdentity');
    const modelRes = resources.get('DeviceModel', dev.modelName);
    if (modelRes === undefined) throw refuse('the device model does not exist');
    const model = deviceModelOf(modelRes);
    const problem = factoryChainProblem(chain, model.spec.factoryCAs, serial, now);
    if (problem !== undefined) throw refuse(problem);
    const out = sign(dev, m.csr, now);
    logger.info({ event: 'device.enrolled', device: dev.fullName, node, method: 'factory', serial: out.serial, factory_serial: serial }, 'device enrolled');
    return out.msg;
  };

  return {
    enroll(m, node, now) {
      // A bad CSR is refused before a token is spent.
      verifyCsr(m.csr);
      const hasToken = m.token !== undefined;
      const hasChain = m.factoryChainDer !== undefined;
      if (hasToken === hasChain) throw new DeviceError('device-token/invalid', 'exactly one of a token or a factory chain is required');
      if (hasToken) return enrollWithToken(m, m.token!, node, now);
      return enrollWithFactory(m, m.factoryChainDer!, node, now);
    },

    renew(m, node, now) {
      verifyCsr(m.csr);
      const dev = lookup(m.device, node);
      const expected = deviceSpiffeId(td, dev.fullName);
      const refuse = (reason: string, cause?: unknown): DeviceError =>
        new DeviceError('device/renew-refused', 'the presented SVID is not a valid SVID of this device', {
          ...(cause === undefined ? {} : { cause }),
          detail: { device: dev.fullName, reason },
        });
      let notBefore: number;
      try {
        const v = validateX509Svid(m.svidChainDer, bundle, now, { trustDomain: td });
        if (!v.spiffeId.equals(expected)) throw refuse('the SVID is for another ID');
        notBefore = v.leaf.notBefore;
      } catch (e) {
        if (e instanceof X509SvidError) throw refuse(e.code, e);
        throw e;
      }
      if (dev.revokedBefore !== undefined && notBefore < dev.revokedBefore) {
        throw new DeviceError('device/revoked', 'the presented SVID was issued before the device was revoked', { detail: { device: dev.fullName } });
      }
      const out = sign(dev, m.csr, now);
      logger.info({ event: 'device.renewed', device: dev.fullName, node, serial: out.serial }, 'device SVID renewed');
      return out.msg;
    },
  };
}
