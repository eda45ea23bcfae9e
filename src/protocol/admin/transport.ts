/**
 * Reading one bounded line from a stream socket, shared by the admin server and client.
 */
import type { Socket } from 'node:net';
import { AdminProtocolError, MAX_ADMIN_MESSAGE_BYTES } from './codec.js';

/** Resolve with the first line (without the newline); reject when it exceeds the limit or times out. */
export function readLine(socket: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (d: Buffer): void => {
      const nl = d.indexOf(0x0a);
      if (nl >= 0) {
        chunks.push(d.subarray(0, nl));
        size += nl;
      } else {
        chunks.push(d);
        size += d.length;
      }
      if (size > MAX_ADMIN_MESSAGE_BYTES) return done(new AdminProtocolError('admin/too-large', 'admin message too large'));
      if (nl >= 0) done(undefined, Buffer.concat(chunks).toString('utf8'));
    };
    const onEnd = (): void => done(new AdminProtocolError('admin/malformed', 'connection closed before a full message'));
    const onError = (e: Error): void => done(e);
    const timer = setTimeout(() => done(new AdminProtocolError('admin/malformed', 'timed out waiting for a message')), timeoutMs);
    timer.unref();
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
  });
}
