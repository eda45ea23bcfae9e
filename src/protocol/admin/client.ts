/** The admin client used by the CLI: one request, one response, bounded and timed out. */
import { connect } from 'node:net';
import { EdgewardError } from '../../identity/index.js';
import { decodeAdminResponse, encodeAdminMessage, ADMIN_PROTOCOL_VERSION, type AdminMethod } from './codec.js';
import { readLine } from './transport.js';

export type AdminCallErrorCode = 'admin/unreachable';
export class AdminCallError extends EdgewardError<AdminCallErrorCode> {}

/** A failure reported by the remote side, with its own stable code. */
export class AdminRemoteError extends EdgewardError<string> {}

export async function adminCall(socketPath: string, method: AdminMethod, params: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<unknown> {
  const socket = connect(socketPath);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (e) => reject(new AdminCallError('admin/unreachable', `cannot reach the admin socket ${socketPath}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { cause: e })));
    });
    socket.write(encodeAdminMessage({ v: ADMIN_PROTOCOL_VERSION, method, params }));
    const res = decodeAdminResponse(await readLine(socket, timeoutMs));
    if (!res.ok) throw new AdminRemoteError(res.error.code, res.error.message);
    return res.result;
  } finally {
    socket.destroy();
  }
}
