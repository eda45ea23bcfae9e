/**
 * The edge agent's composition root (architecture.md "Shape"): builds every part from one config, starts
 * them in order, and stops them in reverse. Standalone mode: the agent's own CA signs SVIDs; joined mode
 * (joined/agent.ts): the cloud signs them; SPIRE mode (spire/agent.ts): the node identity comes from an
 * external SPIFFE Workload API and no Workload API is served.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import {
  bundleToJson,
  SpiffeId,
  TrustBundle,
  type Clock,
  type StateFiles,
} from '../identity/index.js';
import { entryToDocument } from '../attestation/index.js';
import type { OpenAdminSocket } from '../protocol/index.js';
import { createClosers, errFields, startAgentWorkloadApi } from './compose.js';
import { createEntryStore, loadEntriesPolicy, type EntryStore } from './registration/index.js';
import { LocalCa } from './local-ca/local-ca.js';
import { localCaIssuer } from './local-ca/local-issuer.js';
import { realTimers, type Timers } from './svid/timers.js';
import type { EntryCatalog, TrustSource } from './workload-api/agent-source.js';
import type { EdgeConfig } from './config.js';

export { runEdgeJoined } from './joined/agent.js';
export { runEdgeSpire } from './spire/index.js';

/** pino-compatible logger subset the agent needs. */
export interface EdgeLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface EdgeDeps {
  logger: EdgeLogger;
  /** Key files, atomic writes and SQLite files (src/cli/host supplies them). */
  files: StateFiles;
  /** The private admin socket server with its SO_PEERCRED check (src/cli/host supplies it). */
  openAdminSocket: OpenAdminSocket;
  clock?: Clock;
  timers?: Timers;
}

export interface RunningEdge {
  /**
   * `unix:///abs/path` for SPIFFE_ENDPOINT_SOCKET: the agent's Workload API (standalone, joined), or in
   * SPIRE mode the SPIRE agent's, which workloads use directly.
   */
  readonly endpoint: string;
  /** SPIRE mode: the node's SPIFFE ID (from the SPIRE-issued SVID). */
  readonly spiffeId?: string;
  /** Joined agent: where the EventBus (MQTT over TLS) and the device enrolment endpoint listen (issue #6). */
  readonly mqtt?: { host: string; port: number };
  readonly enroll?: { host: string; port: number };
  close(): Promise<void>;
}

/** CA rotation is checked this often (SPIRE: every 10 s). */
const CA_TICK_MS = 5_000;

function localTrust(ca: LocalCa, clock: Clock, jwtTtl: number, logger: EdgeLogger, timers: Timers): TrustSource & { close(): void } {
  const listeners = new Set<() => void>();
  let cached: TrustBundle | undefined;
  let cachedSeq = -1;
  let timer: unknown;
  const tick = (): void => {
    try {
      const events = ca.tick();
      for (const ev of events) logger.info({ event: `ca.${ev.kind}`, serial: ev.serial }, 'CA rotation');
      if (events.length > 0) for (const l of listeners) l();
    } catch (e) {
      logger.error({ event: 'ca.tick_failed', ...errFields(e) }, 'CA rotation failed');
    }
    timer = timers.setTimeout(tick, CA_TICK_MS);
  };
  timer = timers.setTimeout(tick, CA_TICK_MS);
  return {
    defaultJwtSvidTtlMs: jwtTtl,
    bundle() {
      if (cached === undefined || cachedSeq !== ca.manager.sequence) {
        cached = ca.manager.bundle();
        cachedSeq = ca.manager.sequence;
      }
      return cached;
    },
    mintJwtSvid(req) {
      const now = clock.now();
      const token = ca.manager.mintJwtSvid({ ...req, now });
      const expiresAt = Math.min(now + req.ttlMs, ca.manager.activeIssuer(now).cert.notAfter);
      return { token, issuedAt: now, expiresAt };
    },
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close() {
      timers.clearTimeout(timer);
      listeners.clear();
    },
  };
}

function entryCatalog(store: EntryStore): EntryCatalog {
  return {
    all: () => store.list(),
    match: (selectors) => store.index().match(selectors),
    onChange: (l) => store.onChange(() => l()),
  };
}

/** Start a standalone edge agent. Rejects (never exits) when a part cannot start. */
export async function runEdgeStandalone(config: EdgeConfig, deps: EdgeDeps): Promise<RunningEdge> {
  const clock = deps.clock ?? { now: () => Date.now() };
  const timers = deps.timers ?? realTimers;
  const log = deps.logger;
  // The data dir must be traversable by workloads (for public/api.sock); everything secret below it is 0700/0600.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
  chmodSync(config.dataDir, 0o755);
  const closers = createClosers(log);
  const closeAll = closers.closeAll;
  try {
    const { ca, events } = LocalCa.open({
      dir: config.caDir,
      clock,
      files: deps.files,
      trustDomain: config.trustDomain,
      caTtlMs: config.caTtlMs,
      maxX509SvidTtlMs: config.x509SvidTtlMs,
      maxJwtSvidTtlMs: config.jwtSvidTtlMs,
    });
    for (const ev of events) log.info({ event: `ca.${ev.kind}`, serial: ev.serial }, 'CA rotation');
    const trust = localTrust(ca, clock, config.jwtSvidTtlMs, log, timers);
    closers.push(() => trust.close());

    const store = createEntryStore(config.dbPath, {
      files: deps.files,
      trustDomain: config.trustDomain,
      clock,
      maxX509SvidTtlMs: config.x509SvidTtlMs,
      maxJwtSvidTtlMs: config.jwtSvidTtlMs,
    });
    closers.push(() => store.close());
    if (config.policyFile !== undefined) {
      const policy = loadEntriesPolicy(config.policyFile, config.trustDomain);
      const r = store.replaceFromPolicy(policy.entries.map(entryToDocument));
      log.info({ event: 'entries.policy_loaded', added: r.added, updated: r.updated, removed: r.removed }, 'registration entries loaded');
    }

    const { server } = await startAgentWorkloadApi(closers, {
      config,
      clock,
      timers,
      entries: entryCatalog(store),
      issuer: localCaIssuer(ca, clock, config.x509SvidTtlMs),
      trust,
      onIssueFailed: (entryId, e) => log.error({ event: 'svid.issue_failed', entry_id: entryId, ...errFields(e) }, 'SVID issuance failed'),
      logger: log,
    });

    const admin = deps.openAdminSocket({
      socketPath: config.adminSocketPath,
      logger: log,
      handlers: {
        'entry.create': (p) => entryView(store.create(p)),
        'entry.list': () => store.list().map(entryView),
        'entry.delete': (p) => {
          const id = typeof p['id'] === 'string' ? p['id'] : '';
          return { deleted: store.delete(id) };
        },
        'bundle.show': () => ({ trustDomain: config.trustDomain.name, bundle: JSON.parse(bundleToJson(trust.bundle())) as unknown }),
        'agent.status': () => ({
          mode: config.mode,
          trustDomain: config.trustDomain.name,
          endpoint: `unix://${config.socketPath}`,
          entries: store.list().length,
          caSlots: ca.manager.slots.map((s) => ({ state: s.state, serial: s.cert.serialHex, notAfter: s.cert.notAfter })),
          workloadApi: server.stats(),
        }),
      },
    });
    await admin.start();
    closers.push(() => admin.close());
    log.info({ event: 'edge.started', spiffe_id: SpiffeId.fromSegments(config.trustDomain).toString(), socket: config.socketPath }, 'edge agent started');
    return { endpoint: `unix://${config.socketPath}`, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

function entryView(e: ReturnType<EntryStore['list']>[number]): Record<string, unknown> {
  return { id: e.id, source: e.source, ...entryToDocument(e), createdAt: e.createdAt, revision: e.revision };
}
