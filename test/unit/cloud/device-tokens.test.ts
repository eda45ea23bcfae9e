/**
 * Device bootstrap tokens (issue #6, contract "Cloud"): real SQLite in a temp dir, a fake clock. One-time
 * (consumed atomically, marked used only on success), expiring, bound to one device and one node, only the
 * SHA-256 stored, expired rows pruned, TTL 1 min .. 24 h.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  DEVICE_TOKEN_PATTERN,
  DeviceError,
  deviceTokenId,
  MAX_DEVICE_TOKEN_TTL_MS,
  openDeviceTokenStore,
  type DeviceTokenStore,
} from '../../../src/cloud/devices/index.js';
import { hostStateFiles } from '../../../src/cli/host/index.js';
import { tempDir } from '../../helpers/index.js';

const HOUR = 3_600_000;
const T0 = 1_700_000_000_000;

async function store(): Promise<{ s: DeviceTokenStore; path: string }> {
  const path = join(await tempDir('edgeward-device-tokens-'), 'devices.db');
  return { s: openDeviceTokenStore(path, { files: hostStateFiles }), path };
}

describe('device tokens', () => {
  it('issues ewdt_ + base64url(32 bytes); stores only the hash, in a 0600 file', async () => {
    const { s, path } = await store();
    const t = s.issue('default/thermo-1', 'edge-1', HOUR, T0);
    expect(t.token).toMatch(DEVICE_TOKEN_PATTERN);
    expect(Buffer.from(t.token.slice(5), 'base64url')).toHaveLength(32);
    expect(t).toMatchObject({ device: 'default/thermo-1', node: 'edge-1', expiresAt: T0 + HOUR });
    s.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const db = new Database(path, { readonly: true });
    const rows = db.prepare('SELECT * FROM tokens').all() as Array<Record<string, unknown>>;
    db.close();
    expect(rows).toEqual([{ id: deviceTokenId(t.token), device: 'default/thermo-1', node: 'edge-1', created_at: T0, expires_at: T0 + HOUR, used_at: null }]);
    expect(JSON.stringify(rows)).not.toContain(t.token.slice(5));
  });

  it('is one-time: the first consume wins, the second is "used"', async () => {
    const { s } = await store();
    const { token } = s.issue('default/thermo-1', 'edge-1', HOUR, T0);
    expect(s.consume(token, undefined, 'edge-1', T0 + 1)).toMatchObject({ ok: true, device: 'default/thermo-1', node: 'edge-1', createdAt: T0 });
    expect(s.consume(token, undefined, 'edge-1', T0 + 2)).toMatchObject({ ok: false, reason: 'used' });
    expect(s.consume(token, 'default/thermo-1', 'edge-1', T0 + 2)).toMatchObject({ ok: false, reason: 'used' });
  });

  it('expires at expiresAt', async () => {
    const { s } = await store();
    const { token } = s.issue('default/thermo-1', 'edge-1', HOUR, T0);
    expect(s.consume(token, undefined, 'edge-1', T0 + HOUR)).toMatchObject({ ok: false, reason: 'expired' });
    const b = s.issue('default/thermo-1', 'edge-1', HOUR, T0);
    expect(s.consume(b.token, undefined, 'edge-1', T0 + HOUR - 1).ok).toBe(true);
  });

  it('refuses another device or another node without spending the token', async () => {
    const { s } = await store();
    const { token } = s.issue('default/thermo-1', 'edge-1', HOUR, T0);
    expect(s.consume(token, 'default/thermo-2', 'edge-1', T0)).toMatchObject({ ok: false, reason: 'wrong-device' });
    expect(s.consume(token, undefined, 'edge-2', T0)).toMatchObject({ ok: false, reason: 'wrong-node' });
    expect(s.consume(token, 'default/thermo-1', 'edge-1', T0).ok).toBe(true);
  });

  it('unknown and malformed tokens are "unknown"; token_id is the first 8 hex digits of the hash', async () => {
    const { s } = await store();
    const forged = 'ewdt_' + Buffer.alloc(32, 7).toString('base64url');
    expect(s.consume(forged, undefined, 'edge-1', T0)).toEqual({ ok: false, reason: 'unknown', tokenId: deviceTokenId(forged).slice(0, 8) });
    expect(s.consume('not a token', undefined, 'edge-1', T0)).toMatchObject({ ok: false, reason: 'unknown' });
    expect(s.consume(undefined as unknown as string, undefined, 'edge-1', T0)).toMatchObject({ ok: false, reason: 'unknown' });
  });

  it('prunes expired rows (used or not) and keeps live ones', async () => {
    const { s } = await store();
    const a = s.issue('default/a', 'edge-1', HOUR, T0);
    s.issue('default/b', 'edge-1', 2 * HOUR, T0);
    s.consume(a.token, undefined, 'edge-1', T0);
    expect(s.prune(T0 + HOUR)).toBe(1);
    expect(s.prune(T0 + HOUR)).toBe(0);
    expect(s.prune(T0 + 2 * HOUR)).toBe(1);
  });

  it('dropDevice removes the unused tokens of a device (revocation)', async () => {
    const { s } = await store();
    const a = s.issue('default/a', 'edge-1', HOUR, T0);
    const b = s.issue('default/b', 'edge-1', HOUR, T0);
    expect(s.dropDevice('default/a')).toBe(1);
    expect(s.consume(a.token, undefined, 'edge-1', T0)).toMatchObject({ ok: false, reason: 'unknown' });
    expect(s.consume(b.token, undefined, 'edge-1', T0).ok).toBe(true);
  });

  it('TTL: 1 min .. 24 h', async () => {
    const { s } = await store();
    for (const ttl of [59_999, MAX_DEVICE_TOKEN_TTL_MS + 1, 1.5e6 + 0.5, Number.NaN]) {
      expect(() => s.issue('default/a', 'edge-1', ttl, T0)).toThrow(expect.objectContaining({ code: 'device-token/bad-ttl' }) as unknown as DeviceError);
    }
    expect(s.issue('default/a', 'edge-1', MAX_DEVICE_TOKEN_TTL_MS, T0).expiresAt).toBe(T0 + 24 * HOUR);
  });

  it('survives a reopen', async () => {
    const { s, path } = await store();
    const { token } = s.issue('default/a', 'edge-1', HOUR, T0);
    s.close();
    const again = openDeviceTokenStore(path, { files: hostStateFiles });
    expect(again.consume(token, undefined, 'edge-1', T0).ok).toBe(true);
    again.close();
  });
});
