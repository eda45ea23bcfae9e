/**
 * The Workload API endpoint and client for the workload-side commands (`svid`, `jwt`, `bundle`).
 *
 * The endpoint is `--socket` first, then SPIFFE_ENDPOINT_SOCKET (Workload Endpoint 4: explicit
 * configuration before the environment); both must be `unix:///abs/path` or `tcp://IP:port`
 * (`resolveEndpoint`). A bad `--socket` or no endpoint at all is a usage error (exit 2); a bad
 * SPIFFE_ENDPOINT_SOCKET is the typed `endpoint/invalid` error (exit 1), named as coming from the env.
 */
import {
  EndpointError,
  resolveEndpoint,
  SPIFFE_ENDPOINT_SOCKET,
  WorkloadApiClient,
  type WorkloadEndpoint,
} from '../protocol/index.js';
import { printable } from './args.js';
import type { CliIo } from './command.js';
import { CliUsageError } from './errors.js';

export const socketFlag = {
  type: 'string',
  value: 'URI',
  description: `Workload API endpoint, unix:///abs/path or tcp://IP:port (default: $${SPIFFE_ENDPOINT_SOCKET})`,
} as const;

/** The endpoint for `--socket` (or the environment). */
export function workloadEndpoint(socket: string | undefined, io: CliIo, command: string): WorkloadEndpoint {
  try {
    return resolveEndpoint(socket, io.env);
  } catch (e) {
    if (!(e instanceof EndpointError)) throw e;
    if (socket !== undefined) {
      throw new CliUsageError(`--socket ${printable(socket)}: ${e.code}: ${e.message}`, { command, cause: e });
    }
    if (e.code === 'endpoint/missing') {
      throw new CliUsageError(`no Workload API endpoint: pass --socket URI or set ${SPIFFE_ENDPOINT_SOCKET}`, { command, cause: e });
    }
    throw new EndpointError(e.code, `${SPIFFE_ENDPOINT_SOCKET}: ${e.message}`, { cause: e, ...(e.detail === undefined ? {} : { detail: { ...e.detail } }) });
  }
}

/** Run `fn` with a client for the resolved endpoint; the client is closed afterwards, whatever happens. */
export async function withWorkloadClient<T>(
  socket: string | undefined,
  io: CliIo,
  command: string,
  fn: (client: WorkloadApiClient) => Promise<T>,
): Promise<T> {
  const client = new WorkloadApiClient(workloadEndpoint(socket, io, command));
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}
