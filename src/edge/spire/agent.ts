/**
 * The edge agent in SPIRE mode (`edgeward edge start --spiffe-socket unix:///PATH --cloud HOST:PORT
 * [--data-dir DIR]`; issue #4 "Bring your own SPIRE").
 *
 * - The node identity is the X509-SVID `spiffe://TD/edgeward/node/NAME` that the local SPIRE agent's
 *   Workload API gives this process (WorkloadApiX509Source, src/protocol): the trust domain and the node
 *   name come from that SVID (`--trust-domain` pins the trust domain). Once known, the ID is pinned: a
 *   later update with another ID is refused by the source and the previous SVID stays.
 * - The cloud is verified by SPIFFE ID `spiffe://TD/edgeward/cloud` against the SPIRE bundle; on rotation
 *   (source `onChange`) the client credentials are rebuilt and the cloud contacted again at once.
 * - The session with the cloud: an `entries.request` at start and every `entriesSyncMs` (30 s; the hub of
 *   the next issue replaces this), and at once (bounded) when the cloud closes an authenticated connection
 *   (a ban closes them). Logs `edge.cloud_connected`, `edge.cloud_unreachable` and `edge.cloud_refused`
 *   (with the cloud's code, e.g. `node/banned`) on each change of state.
 * - `agent.status` and `bundle.show` on DIR/admin/admin.sock (with `--data-dir`).
 * - No Workload API is served in this mode: workloads talk to the SPIRE agent directly.
 * - The hub (issue #5) with `--data-dir`: the same EdgeHub as a joined agent, its client certificate and
 *   trust taken from the same Workload API source (the identity port), its store in DIR/hub sealed with a
 *   data key wrapped by the secrets key file (`--secrets-key-file`, else the default outside DIR);
 *   `resource.get` and `status.report` on the admin socket. Without `--data-dir` there is nowhere to keep
 *   the resources: the hub is off and `edge.hub_disabled` says so.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { nodeNameFromSpiffeId } from '../../attestation/index.js';
import { bundleDigest, bundleToJson, EdgewardError, type Clock, type SpiffeId, type TrustDomain } from '../../identity/index.js';
import { NODE_API_VERSION, WorkloadApiX509Source, type X509Svid } from '../../protocol/index.js';
import { createClosers, errFields } from '../compose.js';
import { parseCloudAddress } from '../cloud-client/client.js';
import { CloudClientError, CloudRefusedError } from '../cloud-client/errors.js';
import { realTimers, type Timers } from '../svid/timers.js';
import type { SpireEdgeConfig } from '../config.js';
import type { EdgeDeps, RunningEdge } from '../main.js';
import { SpireCloudClient } from './session.js';
import { createEdgeHub, type EdgeHub } from '../hub/client.js';
import { createEdgeHubAdminHandlers } from '../hub/admin.js';
import { openDataKey } from '../hub/sealing.js';
import { openEdgeHubStore, type EdgeHubStore } from '../hub/store.js';

/** After the cloud closed an authenticated connection, contact it again after this long (plus jitter)... */
export const SPIRE_RECONTACT_MIN_MS = 250;
/** ...but never more often than this (a cloud with a short keep-alive timeout must not be hammered). */
export const SPIRE_RECONTACT_SPACING_MS = 5_000;

/** True iff `id` is a node ID (`spiffe://TD/edgeward/node/NAME`) of `td` (or of its own trust domain). */
function isNodeId(id: SpiffeId, td: TrustDomain | undefined): boolean {
  try {
    nodeNameFromSpiffeId(id, td ?? id.trustDomain);
    return true;
  } catch {
    return false;
  }
}

export interface SpireSessionState {
  /** The last request succeeded (authenticated session with the cloud). */
  connected: boolean;
  /** The cloud answered the last request (success or refusal); null before the first attempt. */
  reachable: boolean | null;
  lastContactAt: number | null;
  /** The code of the last failure (the cloud's refusal code, or the client's transport code). */
  lastErrorCode: string | null;
  entries: number;
}

/** Start the SPIRE-mode edge agent. Rejects (never exits) when it cannot start. */
export async function runEdgeSpire(config: SpireEdgeConfig, deps: EdgeDeps): Promise<RunningEdge & { readonly spiffeId: string }> {
  const clock: Clock = deps.clock ?? { now: () => Date.now() };
  const timers: Timers = deps.timers ?? realTimers;
  const log = deps.logger;
  const closers = createClosers(log);
  const closeAll = closers.closeAll;
  try {
    const address = parseCloudAddress(config.cloud);
    let pinned: SpiffeId | undefined;
    const pick = (svids: readonly X509Svid[]): X509Svid | undefined =>
      svids.find((s) => (pinned !== undefined ? s.spiffeId.equals(pinned) : isNodeId(s.spiffeId, config.trustDomain))) ?? svids[0];
    const source = await WorkloadApiX509Source.create({
      endpoint: config.spiffeSocket,
      pickSvid: pick,
      expectedId: (id) => (pinned !== undefined ? id.equals(pinned) : isNodeId(id, config.trustDomain)),
      clock,
      logger: log,
    });
    closers.push(() => source.close());
    const first = source.svid();
    pinned = first.spiffeId;
    const td = first.spiffeId.trustDomain;
    const nodeName = nodeNameFromSpiffeId(first.spiffeId, td);
    const spiffeId = first.spiffeId.toString();

    // ---- the hub store (with --data-dir): opened before the cloud is contacted, served without it
    let hubStore: EdgeHubStore | undefined;
    if (config.dataDir !== undefined && config.defaultSecretsKeyFile !== undefined) {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
      chmodSync(config.dataDir, 0o700);
      const hubDir = join(config.dataDir, 'hub');
      const keyFile = config.secretsKeyFile ?? config.defaultSecretsKeyFile;
      const dek = await openDataKey({ hubDir, dataDir: config.dataDir, provider: { kind: 'file', path: keyFile }, files: deps.files });
      try {
        hubStore = openEdgeHubStore({ dir: hubDir, files: deps.files, dek, clock, logger: log });
      } finally {
        dek.fill(0);
      }
      const opened = hubStore;
      closers.push(() => opened.close());
      log.info({ event: 'edge.hub_store_opened', store_id: opened.storeId, provider: 'file', key_file: keyFile, outbox: opened.outboxSize() }, 'hub store opened');
    } else {
      log.warn({ event: 'edge.hub_disabled', reason: 'no-data-dir' }, 'the hub is off: it needs --data-dir for its store (resources from the cloud are not kept on this node)');
    }

    const state: SpireSessionState = { connected: false, reachable: null, lastContactAt: null, lastErrorCode: null, entries: 0 };
    let stopped = false;
    let syncTimer: unknown;
    let recontactTimer: unknown;
    let lastRecontactAt = -Infinity;

    const client = new SpireCloudClient({
      address,
      source,
      trustDomain: td,
      clock,
      timeoutMs: config.cloudTimeoutMs,
      onSessionClosed: () => {
        if (stopped || recontactTimer !== undefined) return;
        log.info({ event: 'edge.cloud_session_closed', cloud: config.cloud }, 'the cloud closed the session; contacting it again');
        const now = clock.now();
        const wait = Math.max(SPIRE_RECONTACT_MIN_MS + Math.floor(Math.random() * SPIRE_RECONTACT_MIN_MS), lastRecontactAt + SPIRE_RECONTACT_SPACING_MS - now);
        recontactTimer = timers.setTimeout(() => {
          recontactTimer = undefined;
          lastRecontactAt = clock.now();
          void sync();
        }, wait);
      },
    });
    closers.push(() => client.close());

    let syncing: Promise<void> | undefined;
    const sync = (): Promise<void> => {
      if (syncing !== undefined) return syncing;
      syncing = (async () => {
        try {
          const reply = await client.node({ v: NODE_API_VERSION, kind: 'entries.request' });
          if (reply.kind !== 'entries.result') throw new CloudClientError('cloud-client/bad-response', `unexpected ${reply.kind} to entries.request`);
          const wasConnected = state.connected;
          state.connected = true;
          state.reachable = true;
          state.lastContactAt = clock.now();
          state.lastErrorCode = null;
          state.entries = reply.entries.length;
          if (!wasConnected) {
            log.info({ event: 'edge.cloud_connected', cloud: config.cloud, spiffe_id: spiffeId, entries: reply.entries.length }, 'authenticated session with the cloud');
          }
        } catch (e) {
          const code = e instanceof EdgewardError ? e.code : 'unknown';
          const changed = state.connected || state.lastErrorCode !== code;
          state.connected = false;
          state.lastErrorCode = code;
          if (e instanceof CloudRefusedError) {
            // A refusal is an answer: the cloud is reachable, and said no (banned, unknown...).
            state.reachable = true;
            state.lastContactAt = clock.now();
            if (changed) {
              log.warn({ event: 'edge.cloud_refused', code: e.code, status: e.status, cloud: config.cloud, spiffe_id: spiffeId, err: e.message }, 'the cloud refused this node');
            }
          } else {
            if (state.reachable !== false || changed) log.warn({ event: 'edge.cloud_unreachable', cloud: config.cloud, ...errFields(e) }, 'the cloud cannot be reached');
            state.reachable = false;
          }
        } finally {
          syncing = undefined;
        }
      })();
      return syncing;
    };

    const periodic = (): void => {
      syncTimer = timers.setTimeout(() => {
        if (stopped) return;
        void sync().finally(periodic);
      }, config.entriesSyncMs);
    };

    // Rotation: new client credentials (and bundle), and show the cloud the new SVID at once.
    const unsubscribe = source.onChange(() => {
      let serial = 'unknown';
      try {
        serial = source.svid().serialHex;
      } catch {
        // expired: the next request reports it
      }
      log.info({ event: 'edge.node_svid_rotated', spiffe_id: spiffeId, serial }, 'node SVID or bundle updated by SPIRE; client credentials rebuilt');
      client.rebuild();
      void sync();
    });
    closers.push(unsubscribe);
    closers.push(() => {
      stopped = true;
      timers.clearTimeout(syncTimer);
      if (recontactTimer !== undefined) timers.clearTimeout(recontactTimer);
    });

    let hub: EdgeHub | undefined;
    if (hubStore !== undefined) {
      const h = createEdgeHub({
        address,
        trustDomain: td,
        identity: source,
        store: hubStore,
        clock,
        timers,
        logger: log,
        onNudge: (topic) => {
          if (topic === 'entries') void sync();
        },
      });
      hub = h;
      closers.push(() => h.close());
      h.start();
    }

    await sync();
    periodic();

    if (config.dataDir !== undefined && config.adminSocketPath !== undefined) {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
      chmodSync(config.dataDir, 0o700);
      const admin = deps.openAdminSocket({
        socketPath: config.adminSocketPath,
        logger: log,
        handlers: {
          ...(hubStore === undefined ? {} : createEdgeHubAdminHandlers({ store: hubStore, hub, nodeName })),
          'bundle.show': () => {
            const b = source.bundles().get(td);
            return { trustDomain: td.name, ...(b === undefined ? {} : { digest: bundleDigest(b), bundle: JSON.parse(bundleToJson(b)) as unknown }) };
          },
          'agent.status': () => {
            let svid: { serial: string; notAfter: number; expired: boolean } | { error: string };
            try {
              const s = source.svid();
              svid = { serial: s.serialHex, notAfter: s.notAfter, expired: false };
            } catch (e) {
              svid = { error: e instanceof EdgewardError ? e.code : 'unknown' };
            }
            return {
              mode: 'spire',
              trustDomain: td.name,
              spiffeSocket: config.spiffeSocket,
              workloadApi: null,
              node: { name: nodeName, spiffeId, ...svid },
              cloud: { address: config.cloud, ...state },
              source: source.status(),
              hub: hub === undefined ? null : hub.status(),
            };
          },
        },
      });
      await admin.start();
      closers.push(() => admin.close());
    }

    log.info(
      { event: 'edge.started', mode: 'spire', spiffe_id: spiffeId, node: nodeName, spiffe_socket: config.spiffeSocket, cloud: config.cloud, cloud_connected: state.connected },
      'edge agent started (SPIRE mode: workloads use the SPIRE agent\'s Workload API)',
    );
    return { endpoint: config.spiffeSocket, spiffeId, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
