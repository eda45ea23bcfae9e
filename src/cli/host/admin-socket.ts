/**
 * The private admin socket server behind the `OpenAdminSocket` port (src/protocol), shared by the cloud
 * and the edge agent: the CLI's way to reach a running process. Deny by default: the socket is 0600 in a
 * 0700 directory (a symlinked directory is refused), and every connection's kernel-verified uid
 * (SO_PEERCRED, through the edge's peercred addon loader) must be root or the allowed uid (default: this
 * process's). One request, one response per connection (src/protocol/admin), bounded and timed out.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { peerCredOf } from '../../edge/index.js';
import { EdgewardError } from '../../identity/index.js';
import {
  ADMIN_PROTOCOL_VERSION,
  decodeAdminRequest,
  encodeAdminMessage,
  readLine,
  type AdminMethod,
  type AdminResponse,
  type AdminSocketOptions,
  type AdminSocketServer,
} from '../../protocol/index.js';

/**
 * - `admin/socket-path-not-socket`: something other than a socket is at the socket path (never removed).
 * - `admin/unsafe-dir`: the socket's directory is not a directory (symlinks are refused).
 */
export type AdminSocketErrorCode = 'admin/socket-path-not-socket' | 'admin/unsafe-dir';
export class AdminSocketError extends EdgewardError<AdminSocketErrorCode> {}

const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 32;

export function openAdminSocket(opts: AdminSocketOptions): AdminSocketServer {
  const own = opts.allowedUid ?? process.getuid?.() ?? 0;
  let server: Server | undefined;
  const sockets = new Set<Socket>();

  type Body = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };
  const reply = (socket: Socket, body: Body): void => {
    socket.end(encodeAdminMessage({ v: ADMIN_PROTOCOL_VERSION, ...body } as AdminResponse));
  };

  const handle = async (socket: Socket): Promise<void> => {
    let uid: number;
    try {
      uid = peerCredOf(socket).uid;
    } catch (e) {
      opts.logger.warn({ event: 'security.admin_peer_unknown', code: (e as EdgewardError).code }, 'admin connection without peer credentials refused');
      socket.destroy();
      return;
    }
    if (uid !== 0 && uid !== own) {
      opts.logger.warn({ event: 'security.admin_denied', code: 'admin/permission-denied', peer_uid: uid }, 'admin connection from another user refused');
      reply(socket, { ok: false, error: { code: 'admin/permission-denied', message: 'not allowed' } });
      return;
    }
    let method: AdminMethod | undefined;
    try {
      const req = decodeAdminRequest(await readLine(socket, REQUEST_TIMEOUT_MS));
      method = req.method;
      const h = opts.handlers[req.method];
      if (h === undefined) {
        reply(socket, { ok: false, error: { code: 'admin/unknown-method', message: `method ${req.method} is not served here` } });
        return;
      }
      const result = await h(req.params);
      opts.logger.info({ event: 'admin.call', method: req.method, peer_uid: uid }, 'admin call');
      reply(socket, { ok: true, result: result ?? null });
    } catch (e) {
      if (e instanceof EdgewardError) {
        opts.logger.warn({ event: 'admin.refused', method, code: e.code, peer_uid: uid }, 'admin request refused');
        reply(socket, { ok: false, error: { code: e.code, message: e.message } });
      } else {
        opts.logger.warn({ event: 'admin.error', method, code: 'internal', peer_uid: uid, err: String(e) }, 'admin request failed');
        reply(socket, { ok: false, error: { code: 'admin/internal', message: 'internal error' } });
      }
    }
  };

  return {
    async start() {
      const dir = dirname(opts.socketPath);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = lstatSync(dir);
      if (!st.isDirectory()) throw new AdminSocketError('admin/unsafe-dir', `${dir} is not a directory (symlinks are refused)`);
      chmodSync(dir, 0o700);
      let existing;
      try {
        existing = lstatSync(opts.socketPath);
      } catch {
        existing = undefined;
      }
      if (existing !== undefined) {
        if (!existing.isSocket()) {
          throw new AdminSocketError('admin/socket-path-not-socket', `${opts.socketPath} exists and is not a socket (never removed)`);
        }
        unlinkSync(opts.socketPath);
      }
      const srv = createServer((s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => s.destroy());
        void handle(s);
      });
      srv.maxConnections = MAX_CONNECTIONS;
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(opts.socketPath, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      chmodSync(opts.socketPath, 0o600);
      server = srv;
    },
    async close() {
      const srv = server;
      if (srv === undefined) return;
      server = undefined;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
      try {
        if (lstatSync(opts.socketPath).isSocket()) unlinkSync(opts.socketPath);
      } catch {
        // already gone
      }
    },
  };
}
