/**
 * The fault-test TCP proxy (test/helpers/tcp-proxy.ts) against a real TCP echo server on 127.0.0.1:
 * it forwards both ways with back-pressure and passes half-closes on; `stall()` is a black hole (nothing
 * forwarded, no close passed on, sockets kept open, new connections held away from the target) that
 * `resume()` ends without losing what was held; `cut()` resets every connection on both sides;
 * `refuse(true)` resets new connections only; `close()` stops listening.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../helpers/index.js';

interface Echo {
  server: Server;
  port: number;
  /** Server-side sockets, in accept order. */
  sockets: Socket[];
  /** Bytes the server received, over all connections. */
  received: () => number;
  /** Server-side sockets that saw 'close'. */
  closed: () => number;
  /** Server-side sockets that saw an error (ECONNRESET on a reset). */
  errors: string[];
  close: () => Promise<void>;
}

/** A TCP echo server; with `echo: false` it only counts (and ends its side when the client does). */
async function startEcho(o: { echo?: boolean } = {}): Promise<Echo> {
  const sockets: Socket[] = [];
  const errors: string[] = [];
  let received = 0;
  let closed = 0;
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    s.on('close', () => closed++);
    s.on('data', (d: Buffer) => {
      received += d.length;
      if (o.echo !== false) s.write(d);
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    received: () => received,
    closed: () => closed,
    errors,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

interface Client {
  socket: Socket;
  data: () => Buffer;
  /** Resolves with the first `n` bytes received. */
  read: (n: number) => Promise<Buffer>;
  ended: Promise<void>;
  closed: Promise<{ error: string | undefined }>;
}

function client(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let size = 0;
    let waiters: Array<{ n: number; resolve: (b: Buffer) => void }> = [];
    let error: string | undefined;
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      const all = Buffer.concat(chunks);
      waiters = waiters.filter((w) => (size >= w.n ? (w.resolve(all.subarray(0, w.n)), false) : true));
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    const closed = new Promise<{ error: string | undefined }>((r) => socket.once('close', () => r({ error })));
    socket.once('connect', () =>
      resolve({
        socket,
        data: () => Buffer.concat(chunks),
        read: (n) => (size >= n ? Promise.resolve(Buffer.concat(chunks).subarray(0, n)) : new Promise((r) => waiters.push({ n, resolve: r }))),
        ended,
        closed,
      }),
    );
    socket.once('error', reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` (real time) until it holds; fails the test after `ms`. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

let echo: Echo | undefined;
let proxy: TcpProxy | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  await proxy?.close();
  await echo?.close();
  proxy = undefined;
  echo = undefined;
});

async function setup(o: { echo?: boolean } = {}): Promise<{ echo: Echo; proxy: TcpProxy; connect: () => Promise<Client> }> {
  echo = await startEcho(o);
  proxy = await startTcpProxy({ target: { host: '127.0.0.1', port: echo.port } });
  const p = proxy;
  return {
    echo,
    proxy: p,
    connect: async () => {
      const c = await client(p.port);
      clients.push(c);
      return c;
    },
  };
}

describe('tcp proxy', () => {
  it('forwards both ways, with back-pressure, and counts its connections', async () => {
    const { proxy: p, echo: e, connect: open } = await setup();
    expect(p.port).toBeGreaterThan(0);
    const a = await open();
    const b = await open();
    await until(() => p.connections() === 2 && e.sockets.length === 2, 'two connections');
    a.socket.write('hello');
    expect((await a.read(5)).toString()).toBe('hello');
    // 8 MiB each way: more than every socket buffer on the path, so the proxy has to pause and resume.
    const big = randomBytes(8 * 1024 * 1024);
    b.socket.write(big);
    expect((await b.read(big.length)).equals(big)).toBe(true);
    expect(a.data().toString()).toBe('hello');
    expect(p.accepted()).toBe(2);
  });

  it('passes a half-close on in both directions', async () => {
    const { echo: e, connect: open } = await setup();
    const a = await open();
    a.socket.end('last words');
    // The echo server echoes, sees the end, ends its side: the client gets the echo, then its end.
    await a.ended;
    expect(a.data().toString()).toBe('last words');
    await a.closed;
    await until(() => e.closed() === 1, 'the server socket closed');
  });

  it('stall() is a black hole that resume() ends without losing what was held', async () => {
    const { proxy: p, echo: e, connect: open } = await setup();
    const a = await open();
    a.socket.write('before');
    expect((await a.read(6)).toString()).toBe('before');

    p.stall();
    a.socket.write('during');
    await sleep(300);
    // Nothing reached the server, and the client's socket is still open.
    expect(e.received()).toBe(6);
    expect(a.socket.destroyed).toBe(false);
    expect(p.connections()).toBe(1);
    // A new connection is accepted but not connected to the target while stalled.
    const late = await open();
    late.socket.write('late');
    await sleep(200);
    expect(e.sockets.length).toBe(1);
    expect(p.connections()).toBe(2);

    p.resume();
    expect((await a.read(12)).toString()).toBe('beforeduring');
    expect((await late.read(4)).toString()).toBe('late');
    expect(e.sockets.length).toBe(2);
  });

  it('does not pass a close on while stalled; passes it at resume()', async () => {
    const { proxy: p, echo: e, connect: open } = await setup();
    const a = await open();
    a.socket.write('x');
    await a.read(1);
    p.stall();
    let ended = false;
    void a.ended.then(() => (ended = true));
    e.sockets[0]!.destroy(); // the server goes away behind the black hole
    await sleep(300);
    expect(ended).toBe(false);
    expect(a.socket.destroyed).toBe(false);
    p.resume();
    // The server's FIN arrives now; the client ends its side too and the connection is gone.
    await a.ended;
    a.socket.end();
    await a.closed;
    await until(() => p.connections() === 0, 'the proxy forgot the connection');
  });

  it('cut() resets every connection on both sides, including stalled ones, and new ones still work', async () => {
    const { proxy: p, echo: e, connect: open } = await setup();
    const a = await open();
    const b = await open();
    await until(() => e.sockets.length === 2, 'two server connections');
    p.stall();
    p.cut();
    expect((await a.closed).error).toBe('ECONNRESET');
    expect((await b.closed).error).toBe('ECONNRESET');
    await until(() => e.closed() === 2, 'both server sockets closed');
    expect(e.errors.filter((x) => x === 'ECONNRESET').length).toBe(2);
    expect(p.connections()).toBe(0);
    p.resume();
    const c = await open();
    c.socket.write('again');
    expect((await c.read(5)).toString()).toBe('again');
  });

  it('refuse(true) resets new connections only; refuse(false) lets them in again', async () => {
    const { proxy: p, echo: e, connect: open } = await setup();
    const a = await open();
    p.refuse(true);
    const r = await client(p.port).catch((err: NodeJS.ErrnoException) => err);
    if (!(r instanceof Error)) {
      clients.push(r);
      const { error } = await r.closed;
      expect(error).toBe('ECONNRESET');
    }
    // The established connection keeps working, and the target never saw the refused one.
    a.socket.write('still');
    expect((await a.read(5)).toString()).toBe('still');
    expect(e.sockets.length).toBe(1);
    p.refuse(false);
    const b = await open();
    b.socket.write('in');
    expect((await b.read(2)).toString()).toBe('in');
    expect(p.accepted()).toBe(3);
  });

  it('resets the client when the target is down, and close() stops listening', async () => {
    const { proxy: p, echo: e, connect: open } = await setup();
    await e.close();
    echo = undefined;
    const a = await open();
    expect((await a.closed).error).toBe('ECONNRESET');
    await p.close();
    const err = await client(p.port).then(
      () => undefined,
      (x: NodeJS.ErrnoException) => x.code,
    );
    expect(err).toBe('ECONNREFUSED');
  });
});
