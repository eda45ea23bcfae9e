/**
 * Per-connection caller identity for a gRPC server fed by our own `net.Server` through
 * `grpc.Server#createConnectionInjector(...).injectConnection(socket)` (grpc-js >= 1.10).
 *
 * Why this is needed: Node's `net` exposes no peer credentials, and grpc-js's `call.getPeer()` for an
 * injected Unix socket is just `socket.remoteAddress` (plus `:remotePort` when set), which for AF_UNIX is
 * undefined, so grpc-js answers "unknown". Handlers cannot reach the socket through public API, and the
 * socket grpc-js does see is `http2session.socket`, a Proxy whose identity differs from the `net.Socket`, so
 * a WeakMap keyed by the accepted socket cannot be consulted from a call either.
 *
 * Mechanism (race-free by construction):
 * 1. In the 'connection' handler, synchronously, before any byte is read and before the socket is injected:
 *    read SO_PEERCRED (+ SO_PEERGROUPS, + SO_PEERPIDFD when available) from the accepted fd and open a
 *    `ProcWatch` on the pid (SPIRE: "immediately opens /proc/<pid> and records its starttime").
 * 2. Give the socket a fresh, never-reused token as an own, read-only, non-configurable `remoteAddress`
 *    property and store token -> credentials in a Map; then inject the socket.
 * 3. grpc-js evaluates `call.getPeer()` from the call's own `stream.session.socket.remoteAddress` (the
 *    Proxy forwards property reads to our socket), i.e. from the connection that carried the request. The
 *    handler looks the token up in the Map.
 * No state is shared between connections (no "current connection" variable, no ordering assumption), the
 * token is set before the HTTP/2 session exists, and the client cannot influence it (a Unix peer has no
 * address; nothing is taken from metadata). The entry is removed when the socket closes. If a future
 * grpc-js stopped deriving getPeer() from remoteAddress, lookups would find nothing and fail closed
 * (`peercred/unknown-call`), never return another connection's identity, because tokens are unique.
 * Resolve the identity synchronously at the start of a handler (a call whose connection is gone finds no
 * entry).
 */
import { randomBytes } from 'node:crypto';
import type { Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { PeerCredError } from './errors.js';
import { ProcWatch } from './proc.js';
import { peerCredOf, peerGroupsOfOptional, peerPidfdOfOptional, type PeerCred } from './socket.js';

/** Everything the kernel told us about one accepted Unix connection. */
export interface UnixPeer {
  /** What `call.getPeer()` returns for calls on this connection. */
  readonly token: string;
  /** SO_PEERCRED: pid and effective uid/gid of the connecting process at connect() time. */
  readonly cred: PeerCred;
  /** SO_PEERGROUPS supplementary gids (sorted), or undefined on kernels < 4.13. */
  readonly groups: readonly number[] | undefined;
  /** PID-reuse defence, opened at accept time; undefined if `watchProcess` was false. Closed with the socket. */
  readonly watch: ProcWatch | undefined;
}

export interface UnixPeerRegistryOptions {
  /** Open a ProcWatch for each connection (default true). */
  watchProcess?: boolean;
  /** Anchor the ProcWatch with SO_PEERPIDFD when the kernel supports it (default true). */
  usePidfd?: boolean;
  /** procfs mount point (default /proc). */
  procRoot?: string;
}

/** Minimal view of a grpc-js server call (ServerUnaryCall, ServerWritableStream, ... all have it). */
export interface CallWithPeer {
  getPeer(): string;
}

/** Minimal view of grpc-js's `ConnectionInjector`. */
export interface ConnectionInjectorLike {
  injectConnection(connection: Duplex): void;
}

const TOKEN_PREFIX = 'peercred:';

export class UnixPeerRegistry {
  readonly #id = randomBytes(8).toString('hex');
  #seq = 0;
  readonly #byToken = new Map<string, UnixPeer>();
  readonly #bySocket = new WeakMap<Socket, UnixPeer>();
  readonly #opts: Required<Omit<UnixPeerRegistryOptions, 'procRoot'>> & { procRoot: string | undefined };

  constructor(opts: UnixPeerRegistryOptions = {}) {
    this.#opts = {
      watchProcess: opts.watchProcess ?? true,
      usePidfd: opts.usePidfd ?? true,
      procRoot: opts.procRoot,
    };
  }

  /** Number of live registered connections. */
  get size(): number {
    return this.#byToken.size;
  }

  /**
   * Record the kernel credentials of a freshly accepted Unix socket and tag it. Call synchronously from the
   * `net.Server` 'connection' handler, before `injectConnection`. Throws a PeerCredError (the caller should
   * destroy the socket) if the socket is not AF_UNIX, the peer is not visible, or it already exited.
   */
  register(socket: Socket): UnixPeer {
    if (this.#bySocket.has(socket) || Object.prototype.hasOwnProperty.call(socket, 'remoteAddress')) {
      throw new PeerCredError('peercred/already-registered', 'socket is already registered');
    }
    const cred = peerCredOf(socket);
    const groups = peerGroupsOfOptional(socket);
    let watch: ProcWatch | undefined;
    if (this.#opts.watchProcess) {
      const pidfd = this.#opts.usePidfd ? peerPidfdOfOptional(socket) : undefined;
      const watchOpts = {
        ...(pidfd === undefined ? {} : { pidfd }),
        ...(this.#opts.procRoot === undefined ? {} : { procRoot: this.#opts.procRoot }),
      };
      watch = ProcWatch.open(cred.pid, watchOpts); // closes the pidfd itself on failure
    }
    const token = `${TOKEN_PREFIX}${this.#id}:${++this.#seq}`;
    const peer: UnixPeer = Object.freeze({ token, cred, groups, watch });
    try {
      Object.defineProperty(socket, 'remoteAddress', {
        value: token,
        writable: false,
        configurable: false,
        enumerable: true,
      });
    } catch (cause) {
      watch?.close();
      throw new PeerCredError('peercred/already-registered', 'cannot tag socket', { cause });
    }
    this.#byToken.set(token, peer);
    this.#bySocket.set(socket, peer);
    socket.once('close', () => {
      this.#byToken.delete(token);
      watch?.close();
    });
    return peer;
  }

  /** The registered peer whose token is `peer` (a `call.getPeer()` value), if its connection is still open. */
  lookup(peer: string): UnixPeer | undefined {
    return peer.startsWith(TOKEN_PREFIX) ? this.#byToken.get(peer) : undefined;
  }

  /** The peer of an accepted socket (for non-gRPC use). */
  peerOfSocket(socket: Socket): UnixPeer | undefined {
    const p = this.#bySocket.get(socket);
    return p !== undefined && this.#byToken.has(p.token) ? p : undefined;
  }

  /** The peer a gRPC call arrived from. Throws `peercred/unknown-call` (fail closed) if unknown. */
  peerOf(call: CallWithPeer): UnixPeer {
    let token: string;
    try {
      token = call.getPeer();
    } catch (cause) {
      throw new PeerCredError('peercred/unknown-call', 'call has no connection', { cause });
    }
    const p = this.lookup(token);
    if (p === undefined) {
      throw new PeerCredError('peercred/unknown-call', 'call did not arrive on a registered Unix connection', {
        detail: { peer: token.slice(0, 128) },
      });
    }
    return p;
  }
}

export interface AttachOptions {
  /** Called for connections refused because their credentials could not be established (socket destroyed). */
  onRejected?: (error: PeerCredError, socket: Socket) => void;
  /** Called after a connection was registered and injected. */
  onAccepted?: (peer: UnixPeer, socket: Socket) => void;
}

/**
 * Wire a listening (or about-to-listen) `net.Server` to a grpc-js connection injector through `registry`:
 * each accepted socket is registered (credentials read synchronously) and then injected; sockets whose
 * credentials cannot be established are destroyed (fail closed). Returns a function that detaches the
 * handler.
 */
export function attachUnixPeerServer(
  server: Server,
  injector: ConnectionInjectorLike,
  registry: UnixPeerRegistry,
  opts: AttachOptions = {},
): () => void {
  const onConnection = (socket: Socket): void => {
    let peer: UnixPeer;
    try {
      peer = registry.register(socket);
    } catch (e) {
      socket.destroy();
      const err = e instanceof PeerCredError ? e : new PeerCredError('peercred/syscall', 'register failed', { cause: e });
      opts.onRejected?.(err, socket);
      return;
    }
    injector.injectConnection(socket);
    opts.onAccepted?.(peer, socket);
  };
  server.on('connection', onConnection);
  return () => {
    server.off('connection', onConnection);
  };
}
