/**
 * The cloud core's composition root (architecture.md "Shape"): builds every part from one config, starts
 * them in order (store, CA and cloud SVID, node service, node API listener, admin socket, timers), stops
 * them in reverse. Rejects (never exits) when a part cannot start.
 *
 * Data dir layout (DIR, 0700): `cloud.db` (0600), `keys/` (0700, CA and JWT keys 0600),
 * `admin/admin.sock` (0600 in a 0700 dir). The cloud SVID key is in memory only.
 */
import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { bundleDigest, EdgewardError, type Clock, type StateFiles } from '../identity/index.js';
import {
  entryToDocument,
  createJoinTokenAttestor,
  createTpmAttestor,
  createX509PopAttestor,
  createX509PopTrust,
  RateLimiter,
  type NodeAttestorPlugin,
  type RegistrationEntry,
} from '../attestation/index.js';
import { createCloudStore, type CloudStore } from './store/index.js';
import { openCloudCa } from './ca/index.js';
import { createNodeApiServer } from './server/index.js';
import { createCloudAdminHandlers, createCloudAdminServer } from './admin/index.js';
import { createNodeService } from './node-service/index.js';
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
  /** Key files and atomic writes (src/cli/host supplies them). */
  files: StateFiles;
  clock?: Clock;
}

export interface RunningCloud {
  /** The bound node API address (the real port when `listen` asked for port 0). */
  readonly address: { readonly host: string; readonly port: number };
  /** `HOST:PORT` for `edge join --cloud` (the host name when listening on every interface). */
  readonly cloudAddress: string;
  /** `sha256:HEX` of the current bundle (what `edge join --bundle-digest` pins). */
  bundleDigest(): string;
  close(): Promise<void>;
}

export type CloudErrorCode = 'cloud/unsupported' | 'cloud/unsafe-data-dir';
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

function buildAttestors(config: CloudConfig, store: CloudStore): NodeAttestorPlugin[] {
  const list: NodeAttestorPlugin[] = [createJoinTokenAttestor(store)];
  if (config.attestors.x509pop !== undefined) list.push(createX509PopAttestor(createX509PopTrust([...config.attestors.x509pop.caCertsDer])));
  if (config.attestors.tpm !== undefined) list.push(createTpmAttestor({ manufacturerCas: [...config.attestors.tpm.manufacturerCasDer] }));
  return list;
}

/** Start the cloud core. */
export async function runCloud(config: CloudConfig, deps: CloudDeps): Promise<RunningCloud> {
  const clock = deps.clock ?? { now: () => Date.now() };
  const log = deps.logger;
  if (config.spiffeSocket !== undefined) {
    throw new CloudError('cloud/unsupported', 'taking the cloud identity from an external SPIFFE Workload API (--spiffe-socket) is not supported yet');
  }
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
      trustDomain: config.trustDomain,
      clock,
      maxX509SvidTtlMs: config.maxWorkloadSvidTtlMs,
      maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
      onListenerError: (e) => log.error({ event: 'cloud.store_listener_failed', ...errFields(e) }, 'store change listener failed'),
    });
    closers.push(() => store.close());

    const maxX509 = Math.max(config.nodeSvidTtlMs, config.maxWorkloadSvidTtlMs);
    const ca = openCloudCa({
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
    closers.push(() => ca.close());

    const service = createNodeService({
      trustDomain: config.trustDomain,
      store,
      ca: ca.manager,
      clock,
      attestors: buildAttestors(config, store),
      nodeSvidTtlMs: config.nodeSvidTtlMs,
      maxWorkloadSvidTtlMs: config.maxWorkloadSvidTtlMs,
      maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
      logger: log,
      rateLimiter: new RateLimiter({
        capacity: config.rateLimit.attestBurst,
        refillPerSecond: config.rateLimit.attestPerSecond,
        maxKeys: config.rateLimit.maxSources,
      }),
    });

    const server = createNodeApiServer({
      host: config.listen.host,
      port: config.listen.port,
      identity: ca,
      backend: service,
      limits: config.server,
      logger: log,
      clock,
    });
    // Ban and evict close the node's open connections at once; any other change of its record makes the
    // next request on them authenticate again.
    const unsubscribe = store.onChange((change) => {
      if (change.kind === 'banned' || change.kind === 'evicted') server.closeNode(change.name, change.kind);
      else server.reauthenticate(change.name);
    });
    closers.push(unsubscribe);
    const bound = await server.start();
    closers.push(() => server.close());
    const reachableHost = bound.host === '0.0.0.0' || bound.host === '::' ? hostname().toLowerCase() : bound.host;
    const cloudAddress = formatListenAddress({ host: reachableHost, port: bound.port });
    const startedAt = clock.now();

    const admin = createCloudAdminServer({
      socketPath: config.adminSocketPath,
      logger: log,
      handlers: createCloudAdminHandlers({
        trustDomain: config.trustDomain,
        store,
        ca,
        clock,
        logger: log,
        cloudAddress: () => cloudAddress,
        status: () => ({ startedAt, listen: formatListenAddress(bound), sessions: service.stats.sessions, nodeApi: server.stats() }),
        entries: {
          create: (p) => entryView(store.createEntry(p)),
          list: () => store.listEntries().map(entryView),
          delete: (id) => store.deleteEntry(id),
        },
      }),
    });
    await admin.start();
    closers.push(() => admin.close());

    ca.start();
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
      } catch (e) {
        log.error({ event: 'cloud.prune_failed', ...errFields(e) }, 'token pruning failed');
      }
    }, TOKEN_PRUNE_MS);
    prune.unref();
    timers.push(prune);

    log.info(
      {
        event: 'cloud.started',
        spiffe_id: ca.spiffeId.toString(),
        listen: formatListenAddress(bound),
        bundle_digest: bundleDigest(ca.bundle()),
        attestors: buildAttestorNames(config),
      },
      'cloud core started',
    );
    let closed = false;
    return {
      address: Object.freeze({ host: bound.host, port: bound.port }),
      cloudAddress,
      bundleDigest: () => bundleDigest(ca.bundle()),
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

function buildAttestorNames(config: CloudConfig): string[] {
  return ['join_token', ...(config.attestors.x509pop ? ['x509pop'] : []), ...(config.attestors.tpm ? ['tpm'] : [])];
}

/** An entry as the admin socket returns it (same shape as the edge agent's, so `edgeward entry` prints both). */
function entryView(e: RegistrationEntry): Record<string, unknown> {
  return { id: e.id, source: 'cloud', ...entryToDocument(e), createdAt: e.createdAt, revision: e.revision };
}
