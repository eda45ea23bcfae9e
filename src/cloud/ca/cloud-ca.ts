/**
 * The cloud's CA and its own identity (issue #4 "Cloud core").
 *
 * - The CA is the pure `CaManager` (src/identity): keys in the host key store (`StateFiles.openKeyStore`,
 *   DIR/keys, 0700 with 0600 key files), the rotation snapshot in the CloudStore (`ca_state`). `tick()`
 *   advances rotation to now and persists the snapshot whenever anything changed; the composition root
 *   calls it every few seconds (`start()`), as SPIRE checks every 10 s (spiffe.md 3 "CA rotation").
 * - The cloud SVID `spiffe://TD/edgeward/cloud`: its key lives only in memory, a fresh one at each start
 *   and at each rotation; re-issued at half-life (±10 %, `shouldRotate`). It is the node API's TLS server
 *   certificate; `onChange` tells the server to swap its secure context.
 */
import {
  BundleSet,
  CaManager,
  EdgewardError,
  generateP256,
  shouldRotate,
  SpiffeId,
  type CaEvent,
  type Clock,
  type IdentitySource,
  type SvidWithKey,
  type StateFiles,
  type TrustBundle,
  type TrustDomain,
} from '../../identity/index.js';
import { cloudSpiffeId, type CloudStore } from '../store/index.js';

/** CA rotation and cloud SVID rotation are checked this often. */
export const CLOUD_CA_TICK_MS = 5_000;

/** The cloud SVID: chain leaf first, then the signing CA (the root is in the bundle); key in memory only. */
export interface CloudSvid extends SvidWithKey {
  readonly notBefore: number;
}

/**
 * What the node API server needs: the identity port of src/identity (so a SPIRE-backed source can replace
 * the embedded CA) plus the own trust domain's bundle.
 */
export interface CloudIdentity extends IdentitySource {
  svid(): CloudSvid;
  bundle(): TrustBundle;
}

export interface CloudCaLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface CloudCaOptions {
  trustDomain: TrustDomain;
  store: CloudStore;
  files: StateFiles;
  /** DIR/keys. */
  keysDir: string;
  caTtlMs: number;
  /** The longest X509-SVID the CA signs (node, workload and the cloud's own). */
  maxX509SvidTtlMs: number;
  maxJwtSvidTtlMs: number;
  /** Lifetime of the cloud's own SVID (at most maxX509SvidTtlMs). */
  cloudSvidTtlMs: number;
  clock: Clock;
  logger: CloudCaLogger;
}

export interface CloudCa extends CloudIdentity {
  readonly manager: CaManager;
  readonly spiffeId: SpiffeId;
  /** Advance CA rotation and the cloud SVID to now; persists on change; notifies listeners. */
  tick(): CaEvent[];
  /** Tick every CLOUD_CA_TICK_MS (unref'd timer). */
  start(): void;
  close(): void;
}

export type CloudCaErrorCode = 'cloud-ca/bad-config';
export class CloudCaError extends EdgewardError<CloudCaErrorCode> {}

function errFields(e: unknown): Record<string, unknown> {
  return e instanceof EdgewardError ? { code: e.code, err: e.message } : { code: 'internal', err: String(e) };
}

/** Restore the CA from the store (or create it), tick once, persist, and issue the cloud SVID. */
export function openCloudCa(opts: CloudCaOptions): CloudCa {
  if (opts.cloudSvidTtlMs > opts.maxX509SvidTtlMs) {
    throw new CloudCaError('cloud-ca/bad-config', 'the cloud SVID TTL exceeds the longest X509-SVID TTL of the CA');
  }
  const { clock, logger, store } = opts;
  const keys = opts.files.openKeyStore(opts.keysDir);
  const caConfig = {
    trustDomain: opts.trustDomain,
    caTtlMs: opts.caTtlMs,
    maxX509SvidTtlMs: opts.maxX509SvidTtlMs,
    maxJwtSvidTtlMs: opts.maxJwtSvidTtlMs,
  };
  const snap = store.loadCaSnapshot();
  const manager = snap === undefined ? new CaManager(caConfig, keys) : CaManager.restore(caConfig, keys, snap);
  const spiffeId = cloudSpiffeId(opts.trustDomain);
  const listeners = new Set<() => void>();
  let svid: CloudSvid | undefined;
  let cachedBundle: TrustBundle | undefined;
  let cachedSeq = -1;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const persist = (): void => store.saveCaSnapshot(manager.snapshot());
  const logEvents = (events: readonly CaEvent[]): void => {
    for (const ev of events) logger.info({ event: `ca.${ev.kind}`, serial: ev.serial }, 'CA rotation');
  };
  const issueSvid = (now: number): CloudSvid => {
    const kp = generateP256();
    const issued = manager.issueX509Svid({ spiffeId, spki: kp.spki, ttlMs: opts.cloudSvidTtlMs, now });
    const s: CloudSvid = Object.freeze({
      spiffeId,
      chainDer: Object.freeze([issued.der, ...manager.intermediates(now)]),
      privateKey: kp.privateKey,
      serialHex: issued.serialHex,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
    });
    logger.info({ event: 'cloud.svid_issued', spiffe_id: spiffeId.toString(), serial: s.serialHex, not_after: s.notAfter }, 'cloud SVID issued');
    return s;
  };
  const notify = (): void => {
    for (const l of [...listeners]) {
      try {
        l();
      } catch (e) {
        logger.error({ event: 'cloud.identity_listener_failed', ...errFields(e) }, 'identity change listener failed');
      }
    }
  };

  const step = (): { events: CaEvent[]; changed: boolean } => {
    const now = clock.now();
    const events = manager.tick(now);
    logEvents(events);
    if (events.length > 0) persist();
    let changed = events.length > 0;
    if (svid === undefined || shouldRotate(now, svid)) {
      svid = issueSvid(now);
      changed = true;
    }
    return { events, changed };
  };

  const first = step();
  if (snap === undefined && first.events.length === 0) persist();

  const ca: CloudCa = {
    manager,
    spiffeId,
    svid() {
      if (svid === undefined) throw new CloudCaError('cloud-ca/bad-config', 'no cloud SVID');
      return svid;
    },
    bundles() {
      return BundleSet.of([ca.bundle()]);
    },
    bundle() {
      if (cachedBundle === undefined || cachedSeq !== manager.sequence) {
        cachedBundle = manager.bundle();
        cachedSeq = manager.sequence;
      }
      return cachedBundle;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    tick() {
      const { events, changed } = step();
      if (changed) notify();
      return events;
    },
    start() {
      if (timer !== undefined || closed) return;
      const loop = (): void => {
        try {
          ca.tick();
        } catch (e) {
          logger.error({ event: 'ca.tick_failed', ...errFields(e) }, 'CA rotation failed');
        }
        if (!closed) {
          timer = setTimeout(loop, CLOUD_CA_TICK_MS);
          timer.unref();
        }
      };
      timer = setTimeout(loop, CLOUD_CA_TICK_MS);
      timer.unref();
    },
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      listeners.clear();
    },
  };
  return ca;
}
