/**
 * The port through which the cloud and the edge serve their private admin socket (DIR/admin/admin.sock).
 * Both cores describe only their methods; the host (src/cli/host `openAdminSocket`) owns the socket:
 * 0600 in a 0700 directory, every connection's kernel-verified uid (SO_PEERCRED) must be root or the
 * process's own uid (deny by default), one bounded, timed-out request and one response per connection.
 * Type-only: nothing here runs.
 */
import type { AdminMethod } from './codec.js';

/** One admin method. A thrown `EdgewardError` is sent to the caller as `{code, message}`; anything else as `admin/internal`. */
export type AdminHandler = (params: Record<string, unknown>) => Promise<unknown> | unknown;
export type AdminHandlers = Partial<Record<AdminMethod, AdminHandler>>;

export interface AdminSocketLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface AdminSocketOptions {
  socketPath: string;
  handlers: AdminHandlers;
  logger: AdminSocketLogger;
  /** uid allowed besides root (default: this process's uid). */
  allowedUid?: number;
}

export interface AdminSocketServer {
  /** Create the directory (0700) and the socket (0600); an existing non-socket file is refused, never removed. */
  start(): Promise<void>;
  /** Stop listening, drop open connections, remove the socket file. */
  close(): Promise<void>;
}

export type OpenAdminSocket = (options: AdminSocketOptions) => AdminSocketServer;
