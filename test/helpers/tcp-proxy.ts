/**
 * A real TCP proxy on a free 127.0.0.1 port, for fault tests: every byte between a client and `target`
 * crosses it, and the test can break the link the ways a network breaks:
 *
 * - `stall()`: a black hole. Nothing is forwarded in either direction and no close is passed on, but every
 *   socket stays open. The proxy stops reading (the sockets are paused), so what the peers send waits in
 *   kernel buffers and their TCP windows close, as over a link that lost every packet; new connections
 *   are accepted but not connected upstream. Heartbeats sent meanwhile never arrive: each side must find
 *   the dead peer by itself.
 * - `resume()`: the link is back. What was held is delivered (TCP retransmits after a partition heals),
 *   closes that happened meanwhile are passed on, held new connections are connected upstream.
 * - `cut()`: every connection is reset (RST) on both sides at once.
 * - `refuse(true)`: new connections are reset as soon as they are accepted (until `refuse(false)`).
 *
 * Data is forwarded with back-pressure (a side that cannot keep up pauses the other), so the proxy's
 * memory stays bounded. Upstream failures (target down) reset the client connection.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TcpProxyOptions {
  /** Where connections are forwarded. */
  target: { host: string; port: number };
  /** Listening address; default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
}

export interface TcpProxy {
  /** The proxy's port (on `host`, default 127.0.0.1). */
  readonly port: number;
  readonly host: string;
  /** Stop forwarding in both directions but keep every socket open (a black hole). Idempotent. */
  stall(): void;
  /** Forward again (held data and closes are passed on). Idempotent. */
  resume(): void;
  /** Reset (RST) every connection, both the client's and the upstream one. */
  cut(): void;
  /** While on, new connections are reset as soon as they are accepted. */
  refuse(on: boolean): void;
  /** Client connections currently open through the proxy. */
  connections(): number;
  /** Connections accepted since the start (refused ones included). */
  accepted(): number;
  /** Stop listening and reset every connection. */
  close(): Promise<void>;
}

/** RST where the socket supports it, a plain destroy otherwise; never throws. */
function reset(s: Socket | undefined): void {
  if (s === undefined || s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

class Pair {
  readonly client: Socket;
  upstream: Socket | undefined;
  /** The upstream connection was established (a failed connect resets the client). */
  #upConnected = false;
  /** Closes seen while stalled, passed on at resume. */
  #pendingClose = false;
  /** Half-closes seen while stalled (the socket to end), passed on at resume. */
  #heldEnds: Socket[] = [];
  /** Per direction: the writer is full, the reader waits for 'drain'. */
  #waitDownstream = false;
  #waitUpstream = false;
  #done = false;
  readonly #proxy: ProxyState;

  constructor(proxy: ProxyState, client: Socket) {
    this.#proxy = proxy;
    this.client = client;
    client.on('error', () => undefined);
    client.pause();
    client.on('close', () => this.#closed());
  }

  connectUpstream(): void {
    if (this.#done || this.upstream !== undefined) return;
    const { host, port } = this.#proxy.target;
    const up = connect({ host, port, allowHalfOpen: true, noDelay: true });
    this.upstream = up;
    up.pause();
    up.on('error', () => undefined);
    up.on('close', () => this.#closed());
    up.once('connect', () => {
      this.#upConnected = true;
      this.#wire(this.client, up, 'up');
      this.#wire(up, this.client, 'down');
      this.flow();
    });
  }

  /** from -> to, with back-pressure; 'end' is passed on as a half-close. */
  #wire(from: Socket, to: Socket, dir: 'up' | 'down'): void {
    from.on('data', (chunk: Buffer) => {
      if (to.destroyed) return;
      if (!to.write(chunk)) {
        if (dir === 'up') this.#waitUpstream = true;
        else this.#waitDownstream = true;
        from.pause();
        to.once('drain', () => {
          if (dir === 'up') this.#waitUpstream = false;
          else this.#waitDownstream = false;
          this.flow();
        });
      }
    });
    from.on('end', () => {
      // A paused socket still reads its peer's FIN (once its buffer is empty): hold it while stalled.
      if (this.#proxy.stalled) this.#heldEnds.push(to);
      else if (!to.destroyed) to.end();
    });
  }

  /** Read from each side unless stalled or its writer is full. */
  flow(): void {
    if (this.#done || this.#proxy.stalled) return;
    const up = this.upstream;
    if (up === undefined || up.connecting) return;
    if (!this.#waitUpstream) this.client.resume();
    if (!this.#waitDownstream) up.resume();
  }

  stall(): void {
    this.client.pause();
    this.upstream?.pause();
  }

  /** The link is back: pass on a close that happened while stalled, connect a held client, read again. */
  resume(): void {
    if (this.#pendingClose) {
      this.#pendingClose = false;
      this.#finish();
      return;
    }
    if (this.upstream === undefined) {
      this.connectUpstream();
      return;
    }
    for (const s of this.#heldEnds.splice(0)) if (!s.destroyed) s.end();
    this.flow();
  }

  #closed(): void {
    if (this.#done) return;
    if (this.#proxy.stalled) {
      this.#pendingClose = true; // a black hole carries no FIN or RST either
      return;
    }
    this.#finish();
  }

  /** One side is gone: end the other after what it was sent is flushed (a reset side is reset in turn by the kernel). */
  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#proxy.pairs.delete(this);
    if (!this.#upConnected) {
      // The target refused or is down (or the client left before it was reached): reset, like a refused connect.
      reset(this.client);
      reset(this.upstream);
      return;
    }
    for (const s of [this.client, this.upstream]) {
      if (s === undefined || s.destroyed) continue;
      // What was already written is flushed, then the socket closes; a peer that stopped reading is reset.
      s.end(() => s.destroy());
      setTimeout(() => reset(s), 2000).unref();
    }
  }

  cut(): void {
    if (this.#done) return;
    this.#done = true;
    this.#proxy.pairs.delete(this);
    reset(this.client);
    reset(this.upstream);
  }
}

interface ProxyState {
  target: { host: string; port: number };
  stalled: boolean;
  refusing: boolean;
  pairs: Set<Pair>;
}

/** Start a proxy to `target` on a free 127.0.0.1 port (real sockets; see the header). */
export async function startTcpProxy(opts: TcpProxyOptions): Promise<TcpProxy> {
  const state: ProxyState = { target: { ...opts.target }, stalled: false, refusing: false, pairs: new Set() };
  let accepted = 0;
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (client) => {
    accepted++;
    if (state.refusing) {
      client.on('error', () => undefined);
      reset(client);
      return;
    }
    const pair = new Pair(state, client);
    state.pairs.add(pair);
    // While stalled the client is held (accepted, paused) and nothing reaches the target until resume().
    if (!state.stalled) pair.connectUpstream();
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closed = false;

  return {
    port,
    host,
    stall() {
      state.stalled = true;
      for (const p of state.pairs) p.stall();
    },
    resume() {
      if (!state.stalled) return;
      state.stalled = false;
      for (const p of [...state.pairs]) p.resume();
    },
    cut() {
      for (const p of [...state.pairs]) p.cut();
    },
    refuse(on: boolean) {
      state.refusing = on;
    },
    connections() {
      return state.pairs.size;
    },
    accepted() {
      return accepted;
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      for (const p of [...state.pairs]) p.cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
