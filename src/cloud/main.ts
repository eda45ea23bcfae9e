/**
 * The cloud core's composition root (architecture.md "Shape"): builds every part from one config, starts
 * them in order (store, CA and cloud SVID, node service, node API listener, admin socket, timers), stops
 * them in reverse. Rejects (never exits) when a part cannot start.
 *
 * Data dir layout (DIR, 0700): `cloud.db` (0600), `resources.db` (0600, the resource store of the hub),
 * `devices.db` (0600, device bootstrap tokens, issue #6),
 * `keys/` (0700, CA and JWT keys 0600), `admin/admin.sock` (0600 in a 0700 dir). The cloud SVID key is in
 * memory only.
 *
 * The hub (issue #5) rides on the node API listener (`/v1/hub`). Ban/evict close the node's connections
 * and its hub session at once (evict also forgets the node's acks and status); any other change of a
 * node's record re-checks them; a change of the cloud's identity or bundle re-checks every hub session;
 * a registration entry created or deleted nudges the node(s) it is delegated to. Shutdown closes the hub
 * first (1001 to every session), then the listener, then the stores.
 */
import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { bundleDigest, EdgewardError, type Clock, type StateFiles } from '../identity/index.js';
import { WorkloadApiX509Source, type AdminHandlers, type OpenAdminSocket } from '../protocol/index.js';
import {
  entryToDocument,
  createJoinTokenAttestor,
  createTpmAttestor,
  createX509PopAttestor,
  createX509PopTrust,
  nodeNameFromSpiffeId,
  RateLimiter,
  type NodeAttestorPlugin,
  type RegistrationEntry,
} from '../attestation/index.js';
import { cloudSpiffeId, createCloudStore, type CloudStore } from './store/index.js';
import { openCloudCa } from './ca/index.js';
import { createNodeApiServer, identityFromSource } from './server/index.js';
import { createCloudAdminHandlers } from './admin/index.js';
import { createResourceAdminHandlers, createResourceStore } from './resources/index.js';
import { createCloudHub } from './hub/index.js';
import { createNodeService, createSpireNodeService, type NodeService } from './node-service/index.js';
import { createDeviceAdminHandlers, createDeviceIssuer, DeviceError, openDeviceTokenStore, type DeviceAdminHandlers } from './devices/index.js';
import type { CloudCa, CloudIdentity } from './ca/index.js';
import { formatListenAddress, type CloudConfig } from './config.js';

/** pino-compatible logger subset the cloud needs. */
export interface CloudLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface CloudDeps {
  logger: CloudLogger;
  /** Key files, atomic writes and SQLite files (src/cli/host supplies them). */
  files: StateFiles;
  /** The private admin socket server with its SO_PEERCRED check (src/cli/host supplies it). */
  openAdminSocket: OpenAdminSocket;
  clock?: Clock;
}

export interface RunningCloud {
  /** `spire` when the cloud's identity comes from an external Workload API (`--spiffe-socket`). */
  readonly mode: 'embedded' | 'spire';
  /** The bound node API address (the real port when `listen` asked for port 0). */
  readonly address: { readonly host: string; readonly port: number };
  /** `HOST:PORT` for `edge join --cloud` (the host name when listening on every interface). */
  readonly cloudAddress: string;
  /** `sha256:HEX` of the current bundle (what `edge join --bundle-digest` pins). */
  bundleDigest(): string;
  close(): Promise<void>;
}

/**
 * - `cloud/unsafe-data-dir`: the data dir is a symlink or not a directory.
 * - `cloud/trust-domain-mismatch`: SPIRE mode: the Workload API issued the cloud SVID in another trust
 *   domain than the configured one (`--trust-domain` must be SPIRE's trust domain).
 * - `cloud/unsupported`: reserved (was: SPIRE mode not wired yet).
 */
export type CloudErrorCode = 'cloud/unsupported' | 'cloud/unsafe-data-dir' | 'cloud/trust-domain-mismatch';
export class CloudError extends EdgewardError<CloudErrorCode> {}

/** Expired attestation sessions are dropped, and expired join tokens pruned, this often. */
const SWEEP_MS = 5_000;
const TOKEN_PRUNE_MS = 60_000;

function errFields(e: unknown): Record<string, unknown> {
  return e instanceof EdgewardError ? { code: e.code, err: e.message } : { code: 'internal', err: String(e) };
}

/** Create DIR (0700) or tighten it; refuse a symlink or a non-directory. */
function prepareDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new CloudError('cloud/unsafe-data-dir', `${dir} is not a directory (symlinks are refused)`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

function buildAttestors(config: CloudConfig, store: CloudStore, log: CloudDeps['logger']): NodeAttestorPlugin[] {
  const list: NodeAttestorPlugin[] = [createJoinTokenAttestor(store)];
  if (config.attestors.x509pop !== undefined) list.push(createX509PopAttestor(createX509PopTrust([...config.attestors.x509pop.caCertsDer])));
  const tpm = config.attestors.tpm;
  // Deny by default: only enrolled EKs, unless the operator opted out (allowAnyEk, unsafe).
  if (tpm?.allowAnyEk === true) {
    log.warn({ event: 'security.tpm_any_ek_allowed' }, 'attestors.tpm.allowAnyEk is true: any TPM of the configured manufacturers may join under any unused node name');
  }
  if (tpm !== undefined) list.push(createTpmAttestor({ manufacturerCas: [...tpm.manufacturerCasDer] }, tpm.allowAnyEk ? { allowAnyEk: true } : { enrolled: tpm.enrolled }));
  return list;
}

/** Start the cloud core. */
export async function runCloud(config: CloudConfig, deps: CloudDeps): Promise<RunningCloud> {
  const clock = deps.clock ?? { now: () => Date.now() };
  const log = deps.logger;
  const spire = config.spiffeSocket !== undefined;
  const closers: Array<() => Promise<void> | void> = [];
  const timers: NodeJS.Timeout[] = [];
  const closeAll = async (): Promise<void> => {
    for (const t of timers) clearInterval(t);
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (e) {
        log.warn({ event: 'cloud.close_failed', ...errFields(e) }, 'a component failed to close');
      }
    }
    closers.length = 0;
  };
  try {
    prepareDataDir(config.dataDir);
    const store = createCloudStore(config.dbPath, {
      files: deps.files,
      trustDomain: config.trustDomain,
      clock,
      maxX509SvidTtlMs: config.maxWorkloadSvidTtlMs,
      maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
      onListenerError: (e) => log.error({ event: 'cloud.store_listener_failed', ...errFields(e) }, 'store change listener failed'),
    });
    closers.push(() => store.close());
    const resources = createResourceStore(join(config.dataDir, 'resources.db'), {
      files: deps.files,
      clock,
      onListenerError: (e) => log.error({ event: 'cloud.resource_listener_failed', ...errFields(e) }, 'resource change listener failed'),
    });
    closers.push(() => resources.close());
    const deviceTokens = openDeviceTokenStore(join(config.dataDir, 'devices.db'), { files: deps.files });
    closers.push(() => deviceTokens.close());

    let ca: CloudCa | undefined;
    let identity: CloudIdentity;
    let service: NodeService;
    if (spire) {
      // SPIRE mode (issue #4 "Bring your own SPIRE"): the cloud SVID and the bundle come from the SPIRE
      // agent's Workload API; SPIRE attests nodes and issues every SVID, so no CA runs here.
      identity = await openSpireIdentity(config, clock, log);
      closers.push(() => identity.close());
      const source = identity;
      service = createSpireNodeService({ trustDomain: config.trustDomain, store, bundles: () => source.bundles(), clock, logger: log });
    } else {
      // Device SVIDs (issue #6) live devices.svidTtl (24 h by default): the CA must allow it (config keeps caTtl >= 6x).
      const maxX509 = Math.max(config.nodeSvidTtlMs, config.maxWorkloadSvidTtlMs, config.devices.svidTtlMs);
      const embedded = openCloudCa({
        trustDomain: config.trustDomain,
        store,
        files: deps.files,
        keysDir: config.keysDir,
        caTtlMs: config.caTtlMs,
        maxX509SvidTtlMs: maxX509,
        maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
        cloudSvidTtlMs: config.nodeSvidTtlMs,
        clock,
        logger: log,
      });
      closers.push(() => embedded.close());
      ca = embedded;
      identity = embedded;
      service = createNodeService({
        trustDomain: config.trustDomain,
        store,
        ca: embedded.manager,
        clock,
        attestors: buildAttestors(config, store, log),
        nodeSvidTtlMs: config.nodeSvidTtlMs,
        maxWorkloadSvidTtlMs: config.maxWorkloadSvidTtlMs,
        maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
        logger: log,
        rateLimiter: new RateLimiter({
          capacity: config.rateLimit.attestBurst,
          refillPerSecond: config.rateLimit.attestPerSecond,
          maxKeys: config.rateLimit.maxSources,
        }),
        devices: createDeviceIssuer({
          trustDomain: config.trustDomain,
          resources,
          tokens: deviceTokens,
          ca: embedded.manager,
          svidTtlMs: config.devices.svidTtlMs,
          logger: log,
        }),
      });
    }

    const hub = createCloudHub({
      store: resources,
      logger: log,
      clock,
      authenticate: (chain, source) => service.authenticate(chain, source),
      limits: { maxSessions: config.hub.maxSessions },
    });
    const server = createNodeApiServer({
      host: config.listen.host,
      port: config.listen.port,
      identity,
      backend: service,
      limits: config.server,
      logger: log,
      clock,
      hub,
    });
    // Ban and evict close the node's open connections and its hub session at once (evict also forgets
    // what the node acknowledged and reported); any other change of its record makes the next request on
    // its connections authenticate again, and re-checks its hub session now.
    const unsubscribe = store.onChange((change) => {
      if (change.kind === 'banned' || change.kind === 'evicted') {
        hub.closeNode(change.name, change.kind);
        server.closeNode(change.name, change.kind);
        if (change.kind === 'evicted') {
          try {
            resources.forgetNode(change.name);
          } catch (e) {
            log.error({ event: 'cloud.forget_node_failed', node: change.name, ...errFields(e) }, 'cannot forget the acks and status of an evicted node');
          }
        }
      } else {
        server.reauthenticate(change.name);
        hub.reauthenticate(change.name);
      }
    });
    closers.push(unsubscribe);
    // The cloud SVID or the bundle changed (an authority may be gone): every hub session is checked again.
    const unsubscribeIdentity = identity.onChange(() => hub.recheckAll());
    closers.push(unsubscribeIdentity);
    const bound = await server.start();
    closers.push(() => server.close());
    // Runs before server.close (closers run in reverse): every session gets 1001 first.
    closers.push(() => hub.close());
    const reachableHost = bound.host === '0.0.0.0' || bound.host === '::' ? hostname().toLowerCase() : bound.host;
    const cloudAddress = formatListenAddress({ host: reachableHost, port: bound.port });
    const startedAt = clock.now();

    /** The node an entry is delegated to by its parent, or every node (an alias, or an entry under one). */
    const nudgeFor = (e: RegistrationEntry | undefined): void => {
      if (e === undefined) return;
      let node: string | undefined;
      try {
        node = nodeNameFromSpiffeId(e.parentId, config.trustDomain);
      } catch {
        node = undefined;
      }
      hub.nudgeEntries(node);
    };
    // Device tokens and revocation (issue #6). SPIRE mode issues no device SVIDs, so it makes no tokens.
    const deviceAdmin: DeviceAdminHandlers = spire
      ? {
          'device.token': () => {
            throw new DeviceError('device/not-served', 'this cloud runs in SPIRE mode (--spiffe-socket): it does not issue device SVIDs');
          },
          'device.revoke': () => {
            throw new DeviceError('device/not-served', 'this cloud runs in SPIRE mode (--spiffe-socket): it does not issue device SVIDs');
          },
        }
      : createDeviceAdminHandlers({
          resources,
          tokens: deviceTokens,
          clock,
          logger: log,
          bundleDigest: () => bundleDigest(identity.bundle()),
          defaultTokenTtlMs: config.devices.tokenTtlMs,
        });
    const admin = deps.openAdminSocket({
      socketPath: config.adminSocketPath,
      logger: log,
      handlers: {
        ...createResourceAdminHandlers({ store: resources, clock, logger: log }),
        // The admin codec's ADMIN_METHODS must list device.token and device.revoke for these to be reachable.
        ...deviceAdmin,
        ...createCloudAdminHandlers({
          trustDomain: config.trustDomain,
          store,
          ca,
          identity,
          mode: spire ? 'spire' : 'embedded',
          clock,
          logger: log,
          cloudAddress: () => cloudAddress,
          status: () => ({
            startedAt,
            listen: formatListenAddress(bound),
            sessions: service.stats.sessions,
            nodeApi: server.stats(),
            hub: hub.stats(),
            ...(spire ? { spiffeSocket: config.spiffeSocket } : {}),
          }),
          entries: {
            create: (p) => {
              const e = store.createEntry(p);
              nudgeFor(e);
              return entryView(e);
            },
            list: () => store.listEntries().map(entryView),
            delete: (id) => {
              const e = store.getEntry(id);
              const deleted = store.deleteEntry(id);
              if (deleted) nudgeFor(e);
              return deleted;
            },
          },
        }),
      },
    });
    await admin.start();
    closers.push(() => admin.close());

    ca?.start();
    const sweep = setInterval(() => {
      try {
        service.sweep(clock.now());
      } catch (e) {
        log.error({ event: 'cloud.sweep_failed', ...errFields(e) }, 'session sweep failed');
      }
    }, SWEEP_MS);
    sweep.unref();
    timers.push(sweep);
    const prune = setInterval(() => {
      try {
        store.pruneExpiredTokens(clock.now());
        deviceTokens.prune(clock.now());
      } catch (e) {
        log.error({ event: 'cloud.prune_failed', ...errFields(e) }, 'token pruning failed');
      }
    }, TOKEN_PRUNE_MS);
    prune.unref();
    timers.push(prune);

    log.info(
      {
        event: 'cloud.started',
        mode: spire ? 'spire' : 'embedded',
        spiffe_id: identity.svid().spiffeId.toString(),
        listen: formatListenAddress(bound),
        bundle_digest: bundleDigest(identity.bundle()),
        attestors: spire ? ['spire'] : buildAttestorNames(config),
        ...(spire ? { spiffe_socket: config.spiffeSocket } : {}),
      },
      'cloud core started',
    );
    let closed = false;
    return {
      mode: spire ? 'spire' : 'embedded',
      address: Object.freeze({ host: bound.host, port: bound.port }),
      cloudAddress,
      bundleDigest: () => bundleDigest(identity.bundle()),
      async close() {
        if (closed) return;
        closed = true;
        await closeAll();
        log.info({ event: 'cloud.stopped' }, 'cloud core stopped');
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/**
 * SPIRE mode: follow the Workload API at `config.spiffeSocket` for `spiffe://TD/edgeward/cloud`. The SVID
 * is picked by its path (`/edgeward/cloud`) so that a SPIRE agent of another trust domain gives a clear
 * `cloud/trust-domain-mismatch` instead of a bare "unexpected ID".
 */
async function openSpireIdentity(config: CloudConfig, clock: Clock, log: CloudLogger): Promise<CloudIdentity> {
  const expected = cloudSpiffeId(config.trustDomain);
  const isCloudPath = (id: { segments: readonly string[] }): boolean => id.segments.length === 2 && id.segments[0] === 'edgeward' && id.segments[1] === 'cloud';
  const source = await WorkloadApiX509Source.create({
    endpoint: config.spiffeSocket,
    // Exactly the cloud ID of the configured trust domain if SPIRE serves it; else any /edgeward/cloud (checked below).
    pickSvid: (svids) => svids.find((s) => s.spiffeId.equals(expected)) ?? svids.find((s) => isCloudPath(s.spiffeId)) ?? svids[0],
    expectedId: (id) => isCloudPath(id),
    clock,
    logger: log,
  });
  const got = source.svid().spiffeId;
  if (!got.trustDomain.equals(config.trustDomain)) {
    source.close();
    throw new CloudError(
      'cloud/trust-domain-mismatch',
      `the Workload API at ${config.spiffeSocket ?? ''} issued ${got.toString()}, but the configured trust domain is ${config.trustDomain.name} (set --trust-domain to SPIRE's trust domain)`,
      { detail: { spiffe_id: got.toString(), trust_domain: config.trustDomain.name } },
    );
  }
  log.info({ event: 'cloud.spire_identity', spiffe_id: got.toString(), serial: source.svid().serialHex, endpoint: config.spiffeSocket }, 'cloud identity taken from the SPIFFE Workload API');
  return identityFromSource(source, config.trustDomain);
}

function buildAttestorNames(config: CloudConfig): string[] {
  return ['join_token', ...(config.attestors.x509pop ? ['x509pop'] : []), ...(config.attestors.tpm ? ['tpm'] : [])];
}

/** An entry as the admin socket returns it (same shape as the edge agent's, so `edgeward entry` prints both). */
function entryView(e: RegistrationEntry): Record<string, unknown> {
  return { id: e.id, source: 'cloud', ...entryToDocument(e), createdAt: e.createdAt, revision: e.revision };
}
