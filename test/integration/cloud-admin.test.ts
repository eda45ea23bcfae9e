/**
 * The cloud's private admin socket: deny by default. The file is 0600 in a 0700 directory, and even a
 * peer that gets through the file permissions is checked by its kernel-verified uid (SO_PEERCRED).
 */
import { spawn } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openAdminSocket } from '../../src/cli/host/index.js';
import { adminCall } from '../../src/protocol/index.js';
import { tempDir } from '../helpers/index.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const silent = { info: () => {}, warn: () => {} };

/** A plain-JS client run under another uid: sends one admin request line, prints the reply line. */
const CLIENT = `
const net = require('node:net');
const s = net.connect(process.argv[1], () => s.write(JSON.stringify({ v: 1, method: 'cloud.status', params: {} }) + '\\n'));
let buf = '';
s.on('data', (d) => { buf += d; });
s.on('end', () => { process.stdout.write(buf); });
s.on('error', (e) => { process.stdout.write(JSON.stringify({ clientError: e.code })); });
`;

describe('cloud admin socket', () => {
  it('is 0600 in a 0700 directory and serves the owner', async () => {
    const dir = await tempDir();
    const sock = join(dir, 'admin', 'admin.sock');
    const server = openAdminSocket({ socketPath: sock, logger: silent, handlers: { 'cloud.status': () => ({ ok: 'yes' }) } });
    await server.start();
    try {
      expect(statSync(join(dir, 'admin')).mode & 0o777).toBe(0o700);
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      expect(await adminCall(sock, 'cloud.status')).toEqual({ ok: 'yes' });
      await expect(adminCall(sock, 'node.list')).rejects.toMatchObject({ code: 'admin/unknown-method' });
    } finally {
      await server.close();
    }
  });

  it.runIf(isRoot)('refuses a peer of another uid even when the file permissions would let it in (SO_PEERCRED)', async () => {
    const dir = await tempDir();
    const sock = join(dir, 'admin', 'admin.sock');
    let called = false;
    const server = openAdminSocket({
      socketPath: sock,
      logger: silent,
      handlers: {
        'cloud.status': () => {
          called = true;
          return {};
        },
      },
    });
    await server.start();
    try {
      // Open the file permissions on purpose: only the uid check is left.
      chmodSync(dir, 0o755);
      chmodSync(join(dir, 'admin'), 0o755);
      chmodSync(sock, 0o666);
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', CLIENT, sock], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'inherit'] });
        let text = '';
        child.stdout.on('data', (d: Buffer) => (text += d.toString()));
        child.on('error', reject);
        child.on('close', () => resolve(text));
      });
      expect(JSON.parse(out)).toMatchObject({ ok: false, error: { code: 'admin/permission-denied' } });
      expect(called).toBe(false);
    } finally {
      await server.close();
    }
  });
});
