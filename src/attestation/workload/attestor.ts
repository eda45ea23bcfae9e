/**
 * The workload-attestor port (SPIRE `workloadattestor` plugins: `Attest(pid) -> selectors`; reference §3)
 * and the pure combinator that runs several of them for one caller.
 *
 * A caller is described by what the kernel recorded at connect() time (SO_PEERCRED, SO_PEERGROUPS) plus a
 * liveness handle opened at accept time (the PID-reuse defence). The shape is structural: the edge's
 * `UnixPeer` (src/edge/peercred) is a `WorkloadCaller` as is, without an adapter. Attestors may do I/O
 * (they live in src/edge); this file only defines the port and combines results.
 */
import { EdgewardError } from '../../identity/index.js';
import { normalizeSelectors, selectorKey, toSelector, type Selector } from './selector.js';

/**
 * - `workload-attestation/process-gone`: the caller exited, or its pid now names another process.
 * - `workload-attestation/credentials-changed`: the caller's current ids differ from those the kernel
 *   recorded at connect() (it called setuid/setgid/setgroups since): it gets no identity.
 * - `workload-attestation/failed`: evidence could not be collected or an attestor misbehaved.
 * - `workload-attestation/aborted`: the caller's request was cancelled.
 */
export const WORKLOAD_ATTESTATION_ERROR_CODES = [
  'workload-attestation/process-gone',
  'workload-attestation/credentials-changed',
  'workload-attestation/failed',
  'workload-attestation/aborted',
] as const;
export type WorkloadAttestationErrorCode = (typeof WORKLOAD_ATTESTATION_ERROR_CODES)[number];
export class WorkloadAttestationError extends EdgewardError<WorkloadAttestationErrorCode> {}

/** Liveness handle for the caller's process (the edge's `ProcWatch` satisfies it). */
export interface ProcessLiveness {
  /**
   * True iff the process observed at accept time is still alive (same start time, not a zombie) and, when
   * `expected` is given, still runs with those effective ids. Throws only for unexpected I/O failures.
   */
  isAlive(expected?: { uid: number; gid: number }): boolean;
}

/** Kernel-verified description of a connected workload. */
export interface WorkloadCaller {
  /** SO_PEERCRED: pid and effective uid/gid at connect() time. */
  readonly cred: { readonly pid: number; readonly uid: number; readonly gid: number };
  /** SO_PEERGROUPS supplementary gids at connect() time; undefined when the kernel cannot tell. */
  readonly groups: readonly number[] | undefined;
  /** Opened when the connection was accepted; undefined if no watch was opened. */
  readonly watch: ProcessLiveness | undefined;
}

/** One source of selectors (unix today; docker, systemd, k8s later). */
export interface WorkloadAttestor {
  /** Short stable name, e.g. `unix` (used in logs and error detail). */
  readonly name: string;
  /**
   * Selectors for `caller`. Rejects with `WorkloadAttestationError` when the evidence cannot be trusted;
   * resolves with [] when this attestor has nothing to say about the caller (e.g. not a container).
   */
  attest(caller: WorkloadCaller, signal?: AbortSignal): Promise<readonly Selector[]>;
}

/** Union of several attestors' outputs: validated, de-duplicated, sorted by key. */
export function combineSelectors(lists: Iterable<readonly Selector[]>): Selector[] {
  const all: Selector[] = [];
  for (const list of lists) for (const s of list) all.push(toSelector({ type: s.type, value: s.value }));
  return normalizeSelectors(all);
}

export interface AttestWorkloadOptions {
  signal?: AbortSignal;
  /** Most selectors accepted from one attestor (bounded output; default 1024). */
  maxSelectorsPerAttestor?: number;
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) {
    throw new WorkloadAttestationError('workload-attestation/aborted', 'workload attestation was cancelled', {
      cause: signal.reason,
    });
  }
}

/**
 * Run every attestor for `caller` (concurrently), fail closed if ANY of them fails (as SPIRE does), and
 * return the combined selectors. Afterwards the caller's liveness is checked once more with the
 * connect-time uid/gid, so that no selector outlives the process it describes (reference §3 PID-reuse
 * defence; attestors may also check on their own).
 */
export async function attestWorkload(
  attestors: readonly WorkloadAttestor[],
  caller: WorkloadCaller,
  opts: AttestWorkloadOptions = {},
): Promise<Selector[]> {
  const signal = opts.signal;
  const max = opts.maxSelectorsPerAttestor ?? 1024;
  if (attestors.length === 0) throw new WorkloadAttestationError('workload-attestation/failed', 'no workload attestors configured');
  aborted(signal);
  const results = await Promise.allSettled(attestors.map((a) => a.attest(caller, signal)));
  aborted(signal);
  const lists: (readonly Selector[])[] = [];
  for (const [i, r] of results.entries()) {
    const name = (attestors[i] as WorkloadAttestor).name;
    if (r.status === 'rejected') {
      if (r.reason instanceof WorkloadAttestationError) throw r.reason;
      throw new WorkloadAttestationError('workload-attestation/failed', `workload attestor "${name}" failed`, {
        cause: r.reason,
        detail: { attestor: name },
      });
    }
    if (!Array.isArray(r.value) || r.value.length > max) {
      throw new WorkloadAttestationError('workload-attestation/failed', `workload attestor "${name}" returned a bad selector list`, {
        detail: { attestor: name },
      });
    }
    lists.push(r.value);
  }
  let selectors: Selector[];
  try {
    selectors = combineSelectors(lists);
  } catch (cause) {
    throw new WorkloadAttestationError('workload-attestation/failed', 'a workload attestor returned an invalid selector', { cause });
  }
  checkStillAlive(caller);
  return selectors;
}

/**
 * Throw `workload-attestation/process-gone` unless the caller's process is still the one that connected,
 * with the connect-time ids; `failed` if there is no watch to ask (deny by default) or asking failed.
 */
export function checkStillAlive(caller: WorkloadCaller): void {
  const { pid, uid, gid } = caller.cred;
  if (caller.watch === undefined) {
    throw new WorkloadAttestationError('workload-attestation/failed', 'caller has no process watch (PID-reuse defence unavailable)', {
      detail: { pid },
    });
  }
  let alive: boolean;
  try {
    alive = caller.watch.isAlive({ uid, gid });
  } catch (cause) {
    throw new WorkloadAttestationError('workload-attestation/failed', 'cannot check the caller process', { cause, detail: { pid } });
  }
  if (!alive) {
    throw new WorkloadAttestationError('workload-attestation/process-gone', 'caller process exited or was replaced during attestation', {
      detail: { pid },
    });
  }
}

/** Key set of a selector list (for subset tests). */
export function selectorKeySet(list: Iterable<Selector>): Set<string> {
  const out = new Set<string>();
  for (const s of list) out.add(selectorKey(s));
  return out;
}
