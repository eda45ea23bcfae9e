/**
 * Composition pieces shared by the edge's three roots (standalone `runEdgeStandalone`, joined
 * `runEdgeJoined`, SPIRE mode `runEdgeSpire`): the stack of things to close, log fields for an error, and
 * the agent-side Workload API (unix workload attestor + SVID source + socket server).
 */
import { EdgewardError, type Clock } from '../identity/index.js';
import { AccountDb } from './peercred/index.js';
import { createUnixAttestor } from './attestor/index.js';
import type { Timers } from './svid/timers.js';
import { createAgentSource, type AgentSource, type AgentSourceDeps } from './workload-api/agent-source.js';
import { createWorkloadApiServer, type WorkloadApiServer } from './workload-api/server.js';
import type { EdgeLogger } from './main.js';

/** `code` and `err` log fields of an error (its message only: causes stay out of logs). */
export function errFields(e: unknown): Record<string, unknown> {
  return e instanceof EdgewardError ? { code: e.code, err: e.message } : { err: String(e) };
}

export interface Closers {
  push(close: () => Promise<void> | void): void;
  /** Close everything pushed so far, last first; a failure is logged (`edge.close_failed`) and the rest still close. Idempotent. */
  closeAll(): Promise<void>;
}

export function createClosers(log: EdgeLogger): Closers {
  const stack: Array<() => Promise<void> | void> = [];
  return {
    push: (close) => {
      stack.push(close);
    },
    closeAll: async () => {
      for (let c = stack.pop(); c !== undefined; c = stack.pop()) {
        try {
          await c();
        } catch (e) {
          log.warn({ event: 'edge.close_failed', ...errFields(e) }, 'a component failed to close');
        }
      }
    },
  };
}

export interface AgentWorkloadApiOptions extends Omit<AgentSourceDeps, 'attestors' | 'clock' | 'timers'> {
  clock: Clock;
  timers: Timers;
  logger: EdgeLogger;
  /** The agent's config (standalone or joined): socket path and unix attestor settings. */
  config: { readonly socketPath: string; readonly discoverWorkloadPath: boolean; readonly workloadSizeLimit: number };
}

/** Start the agent's SVID source and its Workload API socket (closed through `closers`). */
export async function startAgentWorkloadApi(closers: Closers, o: AgentWorkloadApiOptions): Promise<{ source: AgentSource; server: WorkloadApiServer }> {
  const source = createAgentSource({
    clock: o.clock,
    timers: o.timers,
    attestors: [createUnixAttestor({ accounts: AccountDb.load(), discoverWorkloadPath: o.config.discoverWorkloadPath, workloadSizeLimit: o.config.workloadSizeLimit })],
    entries: o.entries,
    issuer: o.issuer,
    trust: o.trust,
    ...(o.onIssueFailed === undefined ? {} : { onIssueFailed: o.onIssueFailed }),
  });
  await source.start();
  closers.push(() => source.close());
  const server = createWorkloadApiServer({ source, socketPath: o.config.socketPath, logger: o.logger });
  await server.start();
  closers.push(() => server.close());
  return { source, server };
}
