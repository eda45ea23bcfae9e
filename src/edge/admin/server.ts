/**
 * The agent's private admin socket: the CLI's only way to change the agent (entries). Deny by default:
 * the socket file is 0600 in a 0700 directory, and every connection's kernel-verified uid (SO_PEERCRED)
 * must be root or the agent's own uid.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import {
  ADMIN_PROTOCOL_VERSION,
  decodeAdminRequest,
  encodeAdminMessage,
  readLine,
  type AdminMethod,
} from '../../protocol/index.js';
import { EdgewardError } from '../../identity/index.js';
import { peerCredOf } from '../peercred/index.js';

export type AdminServerErrorCode = 'admin/socket-path-not-socket';
export class AdminServerError extends EdgewardError<AdminServerErrorCode> {}

export type AdminHandler = (params: Record<string, unknown>) => Promise<unknown> | unknown;

export interface AdminServerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface AdminServer {
  start(): Promise<void>;
  close(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 32;

export function createAdminServer(opts: {
  socketPath: string;
  handlers: Partial<Record<AdminMethod, AdminHandler>>;
  logger: AdminServerLogger;
}): AdminServer {
  const own = process.getuid?.() ?? 0;
  let server: Server | undefined;

  const reply = (socket: Socket, body: object): void => {
    socket.end(encodeAdminMessage({ v: ADMIN_PROTOCOL_VERSION, ...body } as never));
  };

  const handle = async (socket: Socket): Promise<void> => {
    let uid: number;
    try {
      uid = peerCredOf(socket).uid;
    } catch (e) {
      opts.logger.warn({ event: 'admin.peer_unknown', code: (e as EdgewardError).code }, 'admin connection without peer credentials refused');
      socket.destroy();
      return;
    }
    if (uid !== 0 && uid !== own) {
      opts.logger.warn({ event: 'admin.denied', peer_uid: uid }, 'admin connection from another user refused');
      reply(socket, { ok: false, error: { code: 'admin/permission-denied', message: 'not allowed' } });
      return;
    }
    try {
      const req = decodeAdminRequest(await readLine(socket, REQUEST_TIMEOUT_MS));
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
        opts.logger.warn({ event: 'admin.refused', code: e.code, peer_uid: uid }, 'admin request refused');
        reply(socket, { ok: false, error: { code: e.code, message: e.message } });
      } else {
        opts.logger.warn({ event: 'admin.error', peer_uid: uid, err: String(e) }, 'admin request failed');
        reply(socket, { ok: false, error: { code: 'admin/internal', message: 'internal error' } });
      }
    }
  };

  return {
    async start() {
      mkdirSync(dirname(opts.socketPath), { recursive: true, mode: 0o700 });
      chmodSync(dirname(opts.socketPath), 0o700);
      if (existsSync(opts.socketPath)) {
        if (!lstatSync(opts.socketPath).isSocket()) {
          throw new AdminServerError('admin/socket-path-not-socket', `${opts.socketPath} exists and is not a socket (never removed)`);
        }
        unlinkSync(opts.socketPath);
      }
      server = createServer((s) => {
        s.on('error', () => s.destroy());
        void handle(s);
      });
      server.maxConnections = MAX_CONNECTIONS;
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(opts.socketPath, () => resolve());
      });
      chmodSync(opts.socketPath, 0o600);
    },
    async close() {
      if (server === undefined) return;
      await new Promise<void>((resolve) => server!.close(() => resolve()));
      if (existsSync(opts.socketPath)) unlinkSync(opts.socketPath);
    },
  };
}
