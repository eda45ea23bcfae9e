/**
 * The joined edge agent (`edgeward edge start --data-dir DIR`, DIR holding a join): the Workload API of
 * the standalone agent, backed by the cloud. The node SVID is renewed at half-life (node-svid.ts); the
 * entries delegated to the node are fetched at start, after every renewal and every 30 s; workload
 * X509-SVIDs are signed by the cloud for keys made here (issuer.ts) and JWT-SVIDs minted by the cloud.
 * Entries and workload SVIDs (with their keys) are kept in the encrypted cache, so a restart while the
 * cloud is unreachable keeps serving every SVID that has not expired; expired ones are never served.
 *
 * The hub (issue #5): the resources the cloud assigns to this node are kept in DATA/hub/state.db, sealed
 * with a data key that a key-encryption key wraps (the TPM for TPM-joined nodes, else a secrets key file
 * outside DATA), and kept in sync over one WebSocket session (src/edge/hub). The store opens and serves
 * (`resource.get`) without the cloud; `status.report` goes into its durable outbox. A `nudge` of the
 * delegated entries fetches them at once; an eviction seen by the hub makes a re-attestable node re-attest.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  bundleDigest,
  bundleToJson,
  EdgewardError,
  validateJwtSvidSync,
  type Clock,
  type IdentitySource,
  type StateFiles,
  type TrustBundle,
} from '../../identity/index.js';
import { NODE_API_VERSION, type NodeEntry } from '../../protocol/index.js';
import { createClosers, errFields, startAgentWorkloadApi, type Closers } from '../compose.js';
import { realTimers, type Timers } from '../svid/timers.js';
import type { JwtMint, TrustSource } from '../workload-api/agent-source.js';
import { CloudClient, parseCloudAddress } from '../cloud-client/client.js';
import { CloudClientError, CloudRefusedError } from '../cloud-client/errors.js';
import { layout, readNodeBundle, readNodeState } from '../join/layout.js';
import { isReattestable } from '../join/attest.js';
import type { JoinedEdgeConfig } from '../config.js';
import type { EdgeDeps, EdgeLogger, RunningEdge } from '../main.js';
import { EdgeCache, EdgeCacheError, loadOrCreateCacheKey } from './cache.js';
import { createCloudEntryCatalog } from './catalog.js';
import { createJoinedIssuer } from './issuer.js';
import { NodeSvidManager } from './node-svid.js';
import { createEdgeHub, type EdgeHub } from '../hub/client.js';
import { createEdgeHubAdminHandlers } from '../hub/admin.js';
import { nodeSvidIdentitySource } from '../hub/identity-adapter.js';
import { openDataKey, type DataKeyProvider } from '../hub/sealing.js';
import { openEdgeHubStore, type EdgeHubStore } from '../hub/store.js';
import { createDeviceRegistry, createEnrollServer, createTwinEngine, openTwinStore, type DeviceRegistry, type EnrollServer, type TwinEngine } from '../devices/index.js';
import { createEventBus, loadMqttAclPolicy, type EventBus } from '../eventbus/index.js';

function openCache(path: string, key: Buffer, files: StateFiles, log: EdgeLogger): EdgeCache {
  try {
    return EdgeCache.open(path, key, files);
  } catch (e) {
    if (!(e instanceof EdgeCacheError) || e.code !== 'edge-cache/wrong-key') throw e;
    // The cache is only a cache: one sealed with another key is unusable, never trusted; start afresh.
    log.warn({ event: 'security.edge_cache_wrong_key', code: e.code, path }, 'the SVID cache was sealed with another key; discarding it');
    for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
    return EdgeCache.open(path, key, files);
  }
}

export interface CloudReachability {
  reachable: boolean | null;
  lastContactAt: number | null;
  lastErrorCode: string | null;
}

/**
 * Open DATA/hub/state.db with its data key: sealed into the TPM for a TPM-joined node (its join record's
 * TCTI), else wrapped by the secrets key file (`--secrets-key-file`, else the default path outside DATA).
 * An explicit key file wins over the TPM. A key that cannot be had refuses the start (edge-store/key-unavailable).
 */
async function openHubStore(config: JoinedEdgeConfig, deps: EdgeDeps, clock: Clock, log: EdgeLogger): Promise<EdgeHubStore> {
  const hubDir = layout(config.dataDir).hubDir;
  const provider: DataKeyProvider =
    config.secretsKeyFile !== undefined
      ? { kind: 'file', path: config.secretsKeyFile }
      : config.join.method === 'tpm' && config.join.tpm !== undefined
        ? { kind: 'tpm', tcti: config.join.tpm }
        : { kind: 'file', path: config.defaultSecretsKeyFile };
  const dek = await openDataKey({ hubDir, dataDir: config.dataDir, provider, files: deps.files });
  try {
    const store = openEdgeHubStore({ dir: hubDir, files: deps.files, dek, clock, logger: log });
    log.info(
      { event: 'edge.hub_store_opened', store_id: store.storeId, provider: provider.kind, ...(provider.kind === 'file' ? { key_file: provider.path } : {}), resources: store.list().length, outbox: store.outboxSize() },
      'hub store opened',
    );
    return store;
  } finally {
    dek.fill(0);
  }
}

/** Start a joined edge agent. Rejects (never exits) when a part cannot start. */
export async function runEdgeJoined(config: JoinedEdgeConfig, deps: EdgeDeps): Promise<RunningEdge> {
  const clock: Clock = deps.clock ?? { now: () => Date.now() };
  const timers: Timers = deps.timers ?? realTimers;
  const log = deps.logger;
  const td = config.trustDomain;
  const l = layout(config.dataDir);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
  chmodSync(config.dataDir, 0o755);
  const closers = createClosers(log);
  const closeAll = closers.closeAll;
  try {
    const keys = deps.files.openKeyStore(l.keysDir);
    const state = readNodeState(config.dataDir);
    const initialBundle = readNodeBundle(config.dataDir, td);
    const client = new CloudClient({ address: parseCloudAddress(config.join.cloud), clock, bundle: initialBundle, timeoutMs: config.cloudTimeoutMs });
    closers.push(() => client.close());

    const cache = openCache(l.cacheDb, loadOrCreateCacheKey(l.cacheKey, deps.files), deps.files, log);
    closers.push(() => cache.close());

    // ---- the hub store: opened (and served) before anything talks to the cloud
    const hubStore = await openHubStore(config, deps, clock, log);
    closers.push(() => hubStore.close());
    // ---- the devices of this node (issue #6), from the stored Device/DeviceModel resources
    const registry = createDeviceRegistry({ store: hubStore, nodeName: config.join.nodeName, trustDomain: td, logger: log });
    registry.load();

    const reach: CloudReachability = { reachable: null, lastContactAt: null, lastErrorCode: null };
    const cloudResult = (ok: boolean, e?: unknown): void => {
      if (ok) {
        if (reach.reachable === false) log.info({ event: 'edge.cloud_reachable', cloud: config.join.cloud }, 'the cloud is reachable again');
        reach.reachable = true;
        reach.lastContactAt = clock.now();
        reach.lastErrorCode = null;
        return;
      }
      // A refusal is an answer: the cloud is reachable, it said no.
      if (e instanceof CloudRefusedError) {
        reach.reachable = true;
        reach.lastContactAt = clock.now();
        reach.lastErrorCode = e.code;
        return;
      }
      if (reach.reachable !== false) log.warn({ event: 'edge.cloud_unreachable', cloud: config.join.cloud, ...errFields(e) }, 'the cloud cannot be reached');
      reach.reachable = false;
      reach.lastErrorCode = e instanceof EdgewardError ? e.code : 'unknown';
    };

    // ---- trust: the bundle the node SVID came with (updated by renewals), JWTs minted by the cloud
    const trustListeners = new Set<() => void>();
    let trustDigest = bundleDigest(initialBundle);
    let node: NodeSvidManager | undefined;
    const currentBundle = (): TrustBundle => node?.bundle ?? initialBundle;
    const trust: TrustSource = {
      defaultJwtSvidTtlMs: config.jwtSvidTtlMs,
      bundle: currentBundle,
      async mintJwtSvid(req): Promise<JwtMint> {
        let reply;
        try {
          reply = await client.node({ v: NODE_API_VERSION, kind: 'jwt.request', entryId: req.entryId, audience: [...req.audience], ttlMs: req.ttlMs });
          cloudResult(true);
        } catch (e) {
          cloudResult(false, e);
          throw e;
        }
        if (reply.kind !== 'jwt.result') throw new CloudClientError('cloud-client/bad-response', `unexpected ${reply.kind} to jwt.request`);
        const now = clock.now();
        // Check what the cloud minted: a JWT-SVID of our bundle, for this entry's ID and audience.
        const v = validateJwtSvidSync(reply.token, { audience: req.audience[0]!, bundles: currentBundle(), now });
        if (!v.spiffeId.equals(req.spiffeId)) throw new CloudClientError('cloud-client/bad-response', 'the cloud minted a JWT-SVID for another SPIFFE ID');
        if (!req.audience.every((a) => v.audience.includes(a))) throw new CloudClientError('cloud-client/bad-response', 'the cloud minted a JWT-SVID for other audiences');
        // The token's own validated `exp`, not the reply's expiresAt field: the cache must never outlive the token.
        return { token: reply.token, issuedAt: now, expiresAt: Math.min(v.expiresAt, reply.expiresAt) };
      },
      onChange(listener) {
        trustListeners.add(listener);
        return () => trustListeners.delete(listener);
      },
    };

    // ---- entries: cached first (offline start), then the cloud's
    const catalog = createCloudEntryCatalog(td);
    const cached = cache.loadEntries();
    for (const id of cached.refused) log.warn({ event: 'security.edge_cache_row_refused', table: 'entries', entry_id: id }, 'a cached entry does not authenticate; dropped');
    catalog.replace(cached.entries);

    const issuer = createJoinedIssuer({
      clock,
      cache,
      defaultX509SvidTtlMs: config.x509SvidTtlMs,
      bundle: currentBundle,
      async request(csrs) {
        try {
          const reply = await client.node({ v: NODE_API_VERSION, kind: 'svids.request', csrs });
          cloudResult(true);
          if (reply.kind !== 'svids.result') throw new CloudClientError('cloud-client/bad-response', `unexpected ${reply.kind} to svids.request`);
          return reply.svids;
        } catch (e) {
          if (e instanceof CloudClientError || e instanceof CloudRefusedError) cloudResult(false, e);
          throw e;
        }
      },
      onRestored: (entryId, notAfter, reason) =>
        log.info({ event: 'svid.restored', entry_id: entryId, not_after: new Date(notAfter).toISOString(), reason }, 'workload SVID served from the encrypted cache'),
      onCacheRefused: (entryId, e) => log.warn({ event: 'security.edge_cache_row_refused', table: 'svids', entry_id: entryId, code: e.code }, 'a cached SVID does not authenticate; dropped'),
    });

    let syncing: Promise<void> | undefined;
    const syncEntries = (): Promise<void> => {
      if (syncing !== undefined) return syncing;
      syncing = (async () => {
        try {
          const reply = await client.node({ v: NODE_API_VERSION, kind: 'entries.request' });
          cloudResult(true);
          if (reply.kind !== 'entries.result') throw new CloudClientError('cloud-client/bad-response', `unexpected ${reply.kind} to entries.request`);
          const r = catalog.replace(reply.entries);
          for (const id of r.refused) log.warn({ event: 'security.entry_refused', entry_id: id }, 'a delegated entry is not valid for this trust domain; ignored');
          const accepted: NodeEntry[] = reply.entries.filter((e) => !r.refused.includes(e.id));
          cache.replaceEntries(accepted);
          cache.pruneSvids(new Set(accepted.map((e) => e.id)));
          if (r.changed) log.info({ event: 'entries.synced', entries: accepted.length }, 'delegated entries updated');
        } catch (e) {
          cloudResult(false, e);
          log.warn({ event: 'entries.sync_failed', ...errFields(e) }, 'fetching the delegated entries failed; serving the cached ones');
          // Evicted, or the SVID is no longer accepted: a re-attestable node proves itself again now
          // (the renewal is refused the same way and falls back to attestation, node-svid.ts).
          if (e instanceof CloudRefusedError && (e.code === 'node-api/unauthenticated' || e.code === 'node/unknown') && isReattestable(config.join.method)) {
            void node?.renewNow();
          }
        } finally {
          syncing = undefined;
        }
      })();
      return syncing;
    };

    node = new NodeSvidManager(
      {
        dataDir: config.dataDir,
        record: config.join,
        trustDomain: td,
        files: deps.files,
        keys,
        api: client,
        clock,
        timers,
        logger: log,
        onCloudResult: cloudResult,
        onRenewed: (b) => {
          const d = bundleDigest(b);
          if (d !== trustDigest) {
            trustDigest = d;
            for (const t of trustListeners) t();
          }
          void syncEntries();
        },
      },
      state,
      initialBundle,
    );
    closers.push(() => node?.close());
    const nodeSvid = node;

    const nodeIdentity = nodeSvidIdentitySource(nodeSvid, clock);
    const hub: EdgeHub = createEdgeHub({
      address: client.address,
      trustDomain: td,
      identity: nodeIdentity,
      onResourcesChanged: (changes) => registry.applyChanges(changes),
      store: hubStore,
      clock,
      timers,
      logger: log,
      onNudge: (topic) => {
        if (topic === 'entries' && !nodeSvid.expired()) void syncEntries();
      },
      onRefused: (code) => {
        // Evicted, or the SVID is no longer accepted: a re-attestable node proves itself again now; the
        // hub reconnects with the new SVID as soon as it is there (identity change).
        if ((code === 'hub/evicted' || code === 'node-api/unauthenticated' || code === 'node/unknown') && isReattestable(config.join.method)) {
          void nodeSvid.renewNow();
        }
      },
    });
    closers.push(() => hub.close());

    // First sync before serving, so that a fresh agent serves its SVIDs from the first call; with entries
    // already cached (a restart), serve them at once and sync in the background (the cloud may be down).
    if (!nodeSvid.expired()) {
      if (cached.entries.length === 0) await syncEntries();
      else void syncEntries();
    }
    nodeSvid.start();
    hub.start();

    let syncTimer: unknown;
    let stopped = false;
    const periodic = (): void => {
      if (stopped) return;
      syncTimer = timers.setTimeout(() => {
        if (!nodeSvid.expired()) void syncEntries().finally(periodic);
        else periodic();
      }, config.entriesSyncMs);
    };
    periodic();
    closers.push(() => {
      stopped = true;
      timers.clearTimeout(syncTimer);
    });

    const { server } = await startAgentWorkloadApi(closers, {
      config,
      clock,
      timers,
      entries: catalog,
      issuer,
      trust,
      onIssueFailed: (entryId, e) => log.warn({ event: 'svid.issue_failed', entry_id: entryId, ...errFields(e) }, 'SVID issuance failed'),
      logger: log,
    });

    const devices = await startDevices(config, { deps, clock, timers, log, registry, identity: nodeIdentity, nodeSvid, hub, client, closers });

    const admin = deps.openAdminSocket({
      socketPath: config.adminSocketPath,
      logger: log,
      handlers: {
        ...createEdgeHubAdminHandlers({ store: hubStore, hub, nodeName: config.join.nodeName }),
        'entry.list': () =>
          catalog.all().map((e) => ({
            id: e.id,
            spiffeId: e.spiffeId.toString(),
            ...(e.parentId === undefined ? {} : { parentId: e.parentId.toString() }),
            selectors: e.selectors.map((s) => `${s.type}:${s.value}`),
            ...(e.x509SvidTtlMs === undefined ? {} : { x509SvidTtlMs: e.x509SvidTtlMs }),
            ...(e.jwtSvidTtlMs === undefined ? {} : { jwtSvidTtlMs: e.jwtSvidTtlMs }),
            ...(e.dnsNames.length === 0 ? {} : { dnsNames: [...e.dnsNames] }),
            ...(e.hint === undefined ? {} : { hint: e.hint }),
            source: 'cloud',
          })),
        'bundle.show': () => ({ trustDomain: td.name, bundle: JSON.parse(bundleToJson(currentBundle())) as unknown }),
        'agent.status': () => ({
          mode: 'joined',
          trustDomain: td.name,
          endpoint: `unix://${config.socketPath}`,
          node: {
            name: config.join.nodeName,
            spiffeId: nodeSvid.spiffeId,
            method: config.join.method,
            serial: nodeSvid.serialHex,
            notAfter: nodeSvid.notAfter,
            expired: nodeSvid.expired(),
            nextRenewalAt: nodeSvid.nextAttemptAt ?? null,
          },
          cloud: { address: config.join.cloud, ...reach },
          entries: catalog.size,
          workloadApi: server.stats(),
          hub: hub.status(),
          devices: { count: registry.size(), twins: devices.twins.stats(), enroll: devices.enroll?.stats() ?? null },
          eventbus: devices.bus?.stats() ?? null,
        }),
      },
    });
    await admin.start();
    closers.push(() => admin.close());
    log.info(
      { event: 'edge.started', mode: 'joined', spiffe_id: nodeSvid.spiffeId, socket: config.socketPath, cloud: config.join.cloud, cloud_reachable: reach.reachable },
      'edge agent started',
    );
    return {
      endpoint: `unix://${config.socketPath}`,
      ...(devices.mqtt === undefined ? {} : { mqtt: devices.mqtt }),
      ...(devices.enrollAt === undefined ? {} : { enroll: devices.enrollAt }),
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

interface DevicesParts {
  deps: EdgeDeps;
  clock: Clock;
  timers: Timers;
  log: EdgeLogger;
  registry: DeviceRegistry;
  identity: IdentitySource;
  nodeSvid: NodeSvidManager;
  hub: EdgeHub;
  client: CloudClient;
  closers: Closers;
}

/**
 * Devices (issue #6): the twin store and engine, the EventBus (MQTT over TLS with device SVIDs) and the
 * enrolment endpoint. Both listeners present the node SVID: with an expired one (a start while the cloud has
 * been away too long) they start as soon as a new node SVID arrives.
 */
async function startDevices(
  config: JoinedEdgeConfig,
  p: DevicesParts,
): Promise<{ twins: TwinEngine; bus: EventBus | undefined; enroll: EnrollServer | undefined; mqtt: { host: string; port: number } | undefined; enrollAt: { host: string; port: number } | undefined }> {
  const { clock, timers, log, registry, identity, closers } = p;
  const td = config.trustDomain;
  const twinStore = openTwinStore({ dir: join(config.dataDir, 'devices'), files: p.deps.files, clock });
  closers.push(() => twinStore.close());
  let twins: TwinEngine | undefined;
  const bus =
    config.mqttListen === undefined
      ? undefined
      : createEventBus({
          listen: config.mqttListen,
          trustDomain: td,
          identity,
          devices: registry,
          acl: loadMqttAclPolicy(config.mqttAclFile, td),
          limits: { publishesPerSecond: config.mqttPublishRate, publishBurst: 2 * config.mqttPublishRate },
          clock,
          timers,
          logger: log,
          onDeviceConnected: (d) => twins?.deviceConnected(d),
          onDeviceDisconnected: (d) => twins?.deviceDisconnected(d),
        });
  const engine = createTwinEngine({
    bus: bus ?? { publish: () => undefined, subscribe: () => () => undefined },
    directory: registry,
    store: twinStore,
    report: (s, o) => p.hub.reportStatus(s, o),
    clock,
    timers,
    logger: log,
  });
  twins = engine;
  engine.start();
  closers.push(() => engine.close());
  const enroll =
    config.enrollListen === undefined
      ? undefined
      : createEnrollServer({
          listen: config.enrollListen,
          trustDomain: td,
          identity,
          devices: registry,
          relay: (m) => p.client.node(m),
          clock,
          logger: log,
          limits: {
            perAddressPerSecond: config.enrollRate,
            perAddressBurst: Math.max(10, 2 * config.enrollRate),
            globalPerSecond: Math.max(20, 10 * config.enrollRate),
            globalBurst: Math.max(50, 20 * config.enrollRate),
          },
        });
  let mqtt: { host: string; port: number } | undefined;
  let enrollAt: { host: string; port: number } | undefined;
  // A listener that cannot start (its port is taken) is reported and left off; the rest of the agent (Workload
  // API, hub, cached SVIDs) keeps serving: `agent.status` shows `eventbus: null` / no enrolment endpoint.
  const listen = async (): Promise<void> => {
    if (bus !== undefined) {
      closers.push(() => bus.close());
      try {
        mqtt = await bus.start();
      } catch (e) {
        log.error({ event: 'devices.listen_failed', listener: 'eventbus', address: `${config.mqttListen?.host}:${config.mqttListen?.port}`, ...errFields(e) }, 'the EventBus could not start; devices cannot connect');
      }
    }
    if (enroll !== undefined) {
      closers.push(() => enroll.close());
      try {
        enrollAt = await enroll.start();
      } catch (e) {
        log.error({ event: 'devices.listen_failed', listener: 'enroll', address: `${config.enrollListen?.host}:${config.enrollListen?.port}`, ...errFields(e) }, 'the device enrolment endpoint could not start');
      }
    }
  };
  if (!p.nodeSvid.expired()) await listen();
  else {
    log.warn({ event: 'devices.waiting_for_node_svid' }, 'the node SVID has expired: the EventBus and the enrolment endpoint start when a new one arrives');
    const off = p.nodeSvid.onChange(() => {
      off();
      listen().catch((e: unknown) => log.error({ event: 'devices.start_failed', ...errFields(e) }, 'the EventBus or the enrolment endpoint could not start'));
    });
    closers.push(() => off());
  }
  return { twins: engine, bus, enroll, mqtt, enrollAt };
}
