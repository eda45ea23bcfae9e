/**
 * The MQTT load generator of bench/eventbus.ts (a library: scripts/bench.mjs skips imported files): raw MQTT
 * 3.1.1 packets over TLS with client certificates, so that the generator costs little next to the broker
 * (mqtt.md §3: mqtt.js as a generator is client-bound). N publishers -> one subscriber; QoS 0 or 1 (QoS 1
 * publishers keep a window of unacknowledged PUBLISHes; the subscriber PUBACKs what it receives).
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface TlsIdentity {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export interface MqttConn {
  readonly socket: TLSSocket;
  /** Called for every complete packet: first byte and body (without the fixed header). */
  onPacket: (type: number, flags: number, body: Buffer) => void;
  close(): void;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const l = Buffer.alloc(2);
  l.writeUInt16BE(b.length);
  return Buffer.concat([l, b]);
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), varint(body.length), body]);
}

export function connectPacket(clientId: string, keepalive = 120): Buffer {
  // MQTT 3.1.1 3.1: protocol name, level 4, flags (clean session), keepalive, client id
  return packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, keepalive >> 8, keepalive & 0xff]), str(clientId)]));
}

export function subscribePacket(id: number, filter: string, qos: 0 | 1): Buffer {
  return packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), str(filter), Buffer.from([qos])]));
}

/** A PUBLISH with a patchable message id (QoS 1: bytes at `idOffset`). */
export function publishPacket(topic: string, payload: Buffer, qos: 0 | 1): { buf: Buffer; idOffset: number } {
  const t = str(topic);
  const body = qos === 0 ? Buffer.concat([t, payload]) : Buffer.concat([t, Buffer.from([0, 1]), payload]);
  const head = Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(body.length)]);
  return { buf: Buffer.concat([head, body]), idOffset: head.length + t.length };
}

export function pubackPacket(id: number): Buffer {
  return Buffer.from([0x40, 2, id >> 8, id & 0xff]);
}

/** TLS connect, CONNECT, wait for CONNACK 0. */
export function mqttConnect(host: string, port: number, id: TlsIdentity, clientId: string, timeoutMs = 15_000): Promise<MqttConn> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, cert: id.cert, key: id.key, ca: id.ca, rejectUnauthorized: true, checkServerIdentity: () => undefined });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${clientId}: no CONNACK within ${timeoutMs} ms`));
    }, timeoutMs);
    let buf: Buffer = Buffer.alloc(0);
    let connected = false;
    const conn: MqttConn = { socket, onPacket: () => {}, close: () => socket.destroy() };
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let off = 0;
      for (;;) {
        if (buf.length - off < 2) break;
        let len = 0;
        let mult = 1;
        let i = off + 1;
        let done = false;
        for (; i < buf.length && i < off + 5; i++) {
          len += (buf[i]! & 0x7f) * mult;
          mult *= 128;
          if ((buf[i]! & 0x80) === 0) {
            done = true;
            i++;
            break;
          }
        }
        if (!done || buf.length - i < len) break;
        const first = buf[off]!;
        const body = buf.subarray(i, i + len);
        off = i + len;
        if (!connected) {
          if (first >> 4 !== 2 || body[1] !== 0) {
            clearTimeout(timer);
            socket.destroy();
            reject(new Error(`${clientId}: CONNACK refused (${body[1] ?? '?'})`));
            return;
          }
          connected = true;
          clearTimeout(timer);
          resolve(conn);
          continue;
        }
        conn.onPacket(first >> 4, first & 0x0f, body);
      }
      buf = off >= buf.length ? Buffer.alloc(0) : buf.subarray(off);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      if (!connected) reject(e);
    });
    socket.once('secureConnect', () => socket.write(connectPacket(clientId)));
  });
}

/** Write, waiting for 'drain' when the socket buffer is full. */
export function write(socket: TLSSocket, b: Buffer): Promise<void> {
  return socket.write(b) ? Promise.resolve() : new Promise((r) => socket.once('drain', () => r()));
}

export interface FloodResult {
  received: number;
  elapsedMs: number;
}

/**
 * `publishers` each send `perPublisher` messages on their topic; the subscriber counts them. QoS 1: a window of
 * `window` unacknowledged messages per publisher. Resolves when the subscriber has all (or the deadline passes).
 */
export async function flood(o: {
  sub: MqttConn;
  pubs: readonly { conn: MqttConn; topic: string }[];
  perPublisher: number;
  qos: 0 | 1;
  payload: Buffer;
  window: number;
  deadlineMs: number;
}): Promise<FloodResult> {
  const total = o.pubs.length * o.perPublisher;
  let received = 0;
  const start = performance.now();
  // The subscriber's PUBACKs of one read go out in one write (a microtask runs after the 'data' handler has parsed
  // the whole chunk): one TLS record and syscall per chunk instead of per message, so the generator costs little.
  let acks: Buffer[] = [];
  const flushAcks = (): void => {
    const b = acks.length === 1 ? acks[0]! : Buffer.concat(acks);
    acks = [];
    o.sub.socket.write(b);
  };
  const done = new Promise<void>((resolve) => {
    o.sub.onPacket = (type, flags, body) => {
      if (type !== 3) return;
      received++;
      const qos = (flags >> 1) & 3;
      if (qos === 1) {
        const tl = body.readUInt16BE(0);
        if (acks.length === 0) queueMicrotask(flushAcks);
        acks.push(pubackPacket(body.readUInt16BE(2 + tl)));
      }
      if (received >= total) resolve();
    };
  });
  const senders = o.pubs.map(async ({ conn, topic }) => {
    const { buf, idOffset } = publishPacket(topic, o.payload, o.qos);
    if (o.qos === 0) {
      const batch = 64;
      const chunk = Buffer.concat(Array.from({ length: batch }, () => buf));
      let sent = 0;
      while (sent < o.perPublisher) {
        const n = Math.min(batch, o.perPublisher - sent);
        await write(conn.socket, n === batch ? chunk : chunk.subarray(0, n * buf.length));
        sent += n;
      }
      return;
    }
    let inflight = 0;
    let sent = 0;
    let nextId = 1;
    let wake: (() => void) | undefined;
    conn.onPacket = (type) => {
      if (type === 4) {
        inflight--;
        wake?.();
      }
    };
    while (sent < o.perPublisher) {
      if (inflight >= o.window) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      const n = Math.min(o.window - inflight, o.perPublisher - sent);
      const parts: Buffer[] = [];
      for (let k = 0; k < n; k++) {
        const p = Buffer.from(buf);
        p.writeUInt16BE(nextId, idOffset);
        nextId = nextId === 65535 ? 1 : nextId + 1;
        parts.push(p);
      }
      inflight += n;
      sent += n;
      await write(conn.socket, Buffer.concat(parts));
    }
  });
  await Promise.all(senders);
  let deadline: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((r) => (deadline = setTimeout(r, o.deadlineMs)))]);
  clearTimeout(deadline); // a pending deadline would keep the bench process alive after its report
  return { received, elapsedMs: performance.now() - start };
}
