/**
 * The node's own X509-SVID (spiffe.md 3 "Agent rotation"): renewed at about half its lifetime (+-10 %
 * jitter, src/identity rotationTime) with `renew.request` over mTLS with the current SVID, a new key
 * each time (the old key is deleted once the new SVID is stored). While the cloud cannot be reached,
 * attempts back off exponentially with full jitter, capped. Once the SVID has expired it can no longer
 * authenticate: x509pop and tpm nodes re-attest by themselves; a join_token node logs
 * `edge.node_svid_expired` and stays as it is (an operator evicts it and joins it again), while the agent
 * keeps serving the workload SVIDs it has until they expire.
 */
import {
  buildCsr,
  EdgewardError,
  fullJitterBackoff,
  parseCertificate,
  rotationTime,
  type Clock,
  type KeyStore,
  type ParsedCertificate,
  type Signer,
  type StateFiles,
  type TrustBundle,
  type TrustDomain,
} from '../../identity/index.js';
import { nodeSpiffeId } from '../../attestation/index.js';
import { NODE_API_VERSION, type CloudToEdgeMessage, type EdgeToCloudMessage } from '../../protocol/index.js';
import type { NodeCredentials } from '../cloud-client/client.js';
import { CloudClientError, CloudRefusedError } from '../cloud-client/errors.js';
import { attestNode, checkNodeSvid, isReattestable, loadX509PopEvidence, type NodeEvidence } from '../join/attest.js';
import { nextKeyId, writeNodeState, type JoinRecord, type NodeState } from '../join/layout.js';
import type { Timers } from '../svid/timers.js';
import type { EdgeLogger } from '../main.js';

export const RENEW_BACKOFF_BASE_MS = 1_000;
export const RENEW_BACKOFF_CAP_MS = 60_000;

/** What the manager needs of the cloud client (CloudClient satisfies it). */
export interface NodeApiPort {
  attest(m: EdgeToCloudMessage): Promise<CloudToEdgeMessage>;
  node(m: EdgeToCloudMessage): Promise<CloudToEdgeMessage>;
  setCredentials(c: NodeCredentials): void;
  setBundle(b: TrustBundle): void;
}

export interface NodeSvidDeps {
  dataDir: string;
  record: JoinRecord;
  trustDomain: TrustDomain;
  files: StateFiles;
  keys: KeyStore;
  api: NodeApiPort;
  clock: Clock;
  timers: Timers;
  logger: EdgeLogger;
  /** [0, 1) uniform; Math.random by default (jitter needs no CSPRNG). */
  random?: () => number;
  /** After every new node SVID (renewed or re-attested): the bundle may have changed. */
  onRenewed?(bundle: TrustBundle): void;
  /** Every call's outcome, for the cloud reachability status. */
  onCloudResult?(ok: boolean, error?: unknown): void;
}

/** Full-jitter exponential backoff of renewal attempts: uniform in [0, min(cap, base * 2^attempt)) (src/identity). */
export function backoffDelay(attempt: number, random: () => number, base = RENEW_BACKOFF_BASE_MS, cap = RENEW_BACKOFF_CAP_MS): number {
  return fullJitterBackoff(attempt, { baseMs: base, capMs: cap }, random);
}

function errFields(e: unknown): Record<string, unknown> {
  return e instanceof EdgewardError ? { code: e.code, err: e.message } : { err: String(e) };
}

/**
 * - `node-svid/key-missing` / `node-svid/key-mismatch`: the node key named by node/state.json is gone or does
 *   not match the recorded SVID (join again with --force).
 * - `node-svid/not-reattestable`: re-attestation asked of a join_token node (it cannot prove itself again).
 */
export const NODE_SVID_ERROR_CODES = ['node-svid/key-missing', 'node-svid/key-mismatch', 'node-svid/not-reattestable'] as const;
export type NodeSvidErrorCode = (typeof NODE_SVID_ERROR_CODES)[number];
export class NodeSvidError extends EdgewardError<NodeSvidErrorCode> {}

export class NodeSvidManager {
  readonly #d: NodeSvidDeps;
  readonly #random: () => number;
  #keyId: string;
  #signer: Signer;
  #chain: Buffer[];
  #leaf: ParsedCertificate;
  #receivedAt: number;
  #bundle: TrustBundle;
  #timer: unknown;
  #attempt = 0;
  #running: Promise<void> | undefined;
  #closed = false;
  #expiredLogged = false;
  /** The next time a renewal is planned (epoch ms), for status. */
  #nextAt: number | undefined;
  /** Called after every new node SVID (the hub's identity source reconnects with it). */
  readonly #listeners = new Set<() => void>();

  constructor(deps: NodeSvidDeps, state: NodeState, bundle: TrustBundle) {
    this.#d = deps;
    this.#random = deps.random ?? Math.random;
    const signer = deps.keys.get(state.keyId);
    if (signer === undefined) throw new NodeSvidError('node-svid/key-missing', `the node key ${state.keyId} is missing (join again with --force)`);
    const leaf = parseCertificate(state.chainDer[0]!);
    if (!leaf.spki.equals(signer.spki)) throw new NodeSvidError('node-svid/key-mismatch', 'the node key does not match the node SVID (join again with --force)');
    this.#keyId = state.keyId;
    this.#signer = signer;
    this.#chain = state.chainDer;
    this.#leaf = leaf;
    this.#receivedAt = state.receivedAt;
    this.#bundle = bundle;
    deps.api.setBundle(bundle);
    deps.api.setCredentials({ chainDer: this.#chain, privateKey: signer.privateKey });
  }

  get spiffeId(): string {
    return nodeSpiffeId(this.#d.trustDomain, this.#d.record.nodeName).toString();
  }
  get notAfter(): number {
    return this.#leaf.notAfter;
  }
  get serialHex(): string {
    return this.#leaf.serialHex;
  }
  get bundle(): TrustBundle {
    return this.#bundle;
  }
  get nextAttemptAt(): number | undefined {
    return this.#nextAt;
  }
  /** The current node SVID chain (leaf first) and its private key, as the mTLS client presents them. */
  get credentials(): NodeCredentials {
    return { chainDer: this.#chain, privateKey: this.#signer.privateKey };
  }
  /** Call `listener` after every new node SVID (renewed or re-attested). Returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  expired(now = this.#d.clock.now()): boolean {
    return now >= this.#leaf.notAfter;
  }

  /** When the current SVID is due (half-life measured from receipt, see svid-cache.ts). */
  dueAt(): number {
    return rotationTime({ notBefore: Math.max(this.#leaf.notBefore, this.#receivedAt), notAfter: this.#leaf.notAfter, serialHex: this.#leaf.serialHex });
  }

  start(): void {
    this.#schedule(this.dueAt());
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#d.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(at: number): void {
    if (this.#timer !== undefined) this.#d.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
    if (this.#closed) return;
    const now = this.#d.clock.now();
    if (this.expired(now) && !isReattestable(this.#d.record.method)) {
      if (!this.#expiredLogged) {
        this.#expiredLogged = true;
        this.#d.logger.error(
          { event: 'edge.node_svid_expired', node: this.#d.record.nodeName, not_after: new Date(this.#leaf.notAfter).toISOString(), method: this.#d.record.method },
          'node SVID expired; a join_token node cannot re-attest: evict it on the cloud and join again (cached workload SVIDs are served until they expire)',
        );
      }
      return;
    }
    this.#nextAt = at;
    this.#timer = this.#d.timers.setTimeout(() => {
      this.#timer = undefined;
      void this.renewNow();
    }, Math.max(0, at - now));
  }

  /** Renew (or re-attest) now; on failure the next attempt is scheduled with backoff. Never rejects. */
  renewNow(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    const run = this.#renewOnce().finally(() => {
      this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  async #renewOnce(): Promise<void> {
    const d = this.#d;
    const expired = this.expired();
    if (expired && !isReattestable(d.record.method)) {
      this.#schedule(Infinity);
      return;
    }
    const newId = nextKeyId(this.#keyId, (id) => d.keys.get(id) !== undefined);
    const signer = d.keys.generate(newId);
    try {
      let chain: Buffer[];
      let bundle: TrustBundle;
      let reattested = expired;
      if (expired) {
        ({ chain, bundle } = await this.#reattest(signer));
      } else {
        try {
          const reply = await d.api.node({ v: NODE_API_VERSION, kind: 'renew.request', csr: buildCsr(signer) });
          if (reply.kind !== 'renew.result') throw new CloudClientError('cloud-client/bad-response', `unexpected ${reply.kind} to renew.request`);
          bundle = checkNodeSvid(reply.svidChainDer, reply.bundle, d.trustDomain, d.record.nodeName, signer.spki, d.clock.now());
          chain = reply.svidChainDer;
        } catch (e) {
          // Evicted (unknown node) or no longer accepted: re-attestable nodes prove themselves again.
          const lost = e instanceof CloudRefusedError && (e.code === 'node-api/unauthenticated' || e.code === 'node/unknown');
          if (!(lost && isReattestable(d.record.method))) throw e;
          d.logger.warn({ event: 'edge.node_reattest', node: d.record.nodeName, code: e.code }, 'the cloud no longer accepts the node SVID; re-attesting');
          ({ chain, bundle } = await this.#reattest(signer));
          reattested = true;
        }
      }
      d.onCloudResult?.(true);
      const leaf = parseCertificate(chain[0]!);
      const receivedAt = Math.min(d.clock.now(), leaf.notAfter);
      writeNodeState(d.dataDir, { keyId: newId, chainDer: chain, receivedAt }, bundle, d.files);
      const oldId = this.#keyId;
      this.#keyId = newId; // from here on the new key is committed (see the catch below)
      this.#signer = signer;
      this.#chain = chain;
      this.#leaf = leaf;
      this.#receivedAt = receivedAt;
      this.#bundle = bundle;
      this.#attempt = 0;
      this.#expiredLogged = false;
      d.api.setBundle(bundle);
      d.api.setCredentials({ chainDer: chain, privateKey: signer.privateKey });
      if (oldId !== newId) d.keys.delete(oldId);
      d.logger.info(
        { event: reattested ? 'edge.node_reattested' : 'edge.node_svid_renewed', spiffe_id: this.spiffeId, serial: leaf.serialHex, not_after: new Date(leaf.notAfter).toISOString() },
        reattested ? 'node re-attested' : 'node SVID renewed',
      );
      d.onRenewed?.(bundle);
      for (const l of [...this.#listeners]) {
        try {
          l();
        } catch (e) {
          d.logger.warn({ event: 'edge.node_svid_listener_failed', ...errFields(e) }, 'a node SVID listener failed');
        }
      }
      this.#schedule(this.dueAt());
    } catch (e) {
      // Once state.json names the new key, it is the node's key: never delete it (the next start needs it).
      if (this.#keyId !== newId) d.keys.delete(newId);
      d.onCloudResult?.(false, e);
      const delay = backoffDelay(this.#attempt++, this.#random);
      d.logger.warn({ event: 'edge.node_renew_failed', node: d.record.nodeName, retry_in_ms: delay, ...errFields(e) }, 'node SVID renewal failed; retrying');
      const now = d.clock.now();
      // Retry no later than the expiry, so that an expired SVID switches to re-attestation at once.
      const at = this.expired(now) ? now + delay : Math.min(now + delay, this.#leaf.notAfter);
      this.#schedule(at);
    }
  }

  async #reattest(signer: Signer): Promise<{ chain: Buffer[]; bundle: TrustBundle }> {
    const d = this.#d;
    let evidence: NodeEvidence;
    if (d.record.method === 'x509pop' && d.record.x509pop !== undefined) {
      const x = loadX509PopEvidence(d.record.x509pop.cert, d.record.x509pop.key);
      evidence = { method: 'x509pop', chainDer: x.chainDer, privateKey: x.privateKey };
    } else if (d.record.method === 'tpm' && d.record.tpm !== undefined) {
      evidence = { method: 'tpm', tcti: d.record.tpm };
    } else {
      throw new NodeSvidError('node-svid/not-reattestable', `a ${d.record.method} node cannot re-attest`);
    }
    const r = await attestNode(d.api, evidence, d.record.nodeName, signer, d.trustDomain, d.clock);
    return { chain: r.chainDer, bundle: r.bundle };
  }
}
