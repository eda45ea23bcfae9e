/**
 * One-time device bootstrap tokens (issue #6, contract "Cloud"): `DATA/devices.db` (SQLite, 0600, opened
 * through the StateFiles port like the other cloud stores). A token is `ewdt_` + base64url(32 random bytes);
 * only its SHA-256 (hex) is stored, so the file never holds a usable token. Bound to one device and the
 * node the device is assigned to when the token is made; single use (consumed in one IMMEDIATE transaction:
 * two edges racing with the same token get one success); TTL default 1 h, at most 24 h; expired rows are
 * pruned. Tokens are never logged: log `tokenId` (the first 8 hex digits of the hash) instead.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { StateFiles } from '../../identity/index.js';
import { DeviceError } from './errors.js';

export const DEVICE_TOKEN_PREFIX = 'ewdt_';
export const DEVICE_TOKEN_RANDOM_BYTES = 32;
/** `ewdt_` + 43 base64url characters. */
export const DEVICE_TOKEN_PATTERN = /^ewdt_[A-Za-z0-9_-]{43}$/;
export const DEFAULT_DEVICE_TOKEN_TTL_MS = 3_600_000;
export const MIN_DEVICE_TOKEN_TTL_MS = 60_000;
export const MAX_DEVICE_TOKEN_TTL_MS = 24 * 3_600_000;
/** Most unexpired tokens held at once (bounded store). */
export const MAX_DEVICE_TOKENS = 100_000;

export type TokenRefusal = 'unknown' | 'expired' | 'used' | 'wrong-device' | 'wrong-node';

export type ConsumeResult =
  | { readonly ok: true; readonly device: string; readonly node: string; readonly createdAt: number; readonly tokenId: string }
  | { readonly ok: false; readonly reason: TokenRefusal; readonly tokenId: string; readonly device?: string };

export interface IssuedDeviceToken {
  readonly token: string;
  readonly device: string;
  readonly node: string;
  readonly expiresAt: number;
  readonly createdAt: number;
}

export interface DeviceTokenStore {
  /** A new token for `device` on `node`. Throws `device-token/bad-ttl` | `device-token/too-many`. */
  issue(device: string, node: string, ttlMs: number, now: number): IssuedDeviceToken;
  /**
   * Atomically check and spend a token presented by `node` (for `device`, when the caller names one).
   * Marks it used only when the result is ok.
   */
  consume(token: string, device: string | undefined, node: string, now: number): ConsumeResult;
  /** Drop every unused token of `device` (on revocation); returns how many. */
  dropDevice(device: string): number;
  /** Delete expired rows (used or not); returns how many. */
  prune(now: number): number;
  close(): void;
}

export interface DeviceTokenStoreDeps {
  files: StateFiles;
  /** Random bytes (default crypto.randomBytes). */
  random?: (n: number) => Buffer;
  busyTimeoutMs?: number;
}

/** Schema migrations; index i migrates from version i to i+1. Never edit a released step: append. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY CHECK (length(id) = 64),
    device     TEXT    NOT NULL CHECK (length(device) BETWEEN 3 AND 317),
    node       TEXT    NOT NULL CHECK (length(node) BETWEEN 1 AND 253),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
  ) STRICT;
  CREATE INDEX tokens_expiry ON tokens (expires_at);
  CREATE INDEX tokens_device ON tokens (device);
  `,
];

const FAILURE_CODES = { io: 'device-store/io', version: 'device-store/version', corrupt: 'device-store/corrupt' } as const;

/** The stored id of a token: SHA-256 of its text, hex. */
export function deviceTokenId(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

interface TokenRow {
  device: string;
  node: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export function openDeviceTokenStore(path: string, deps: DeviceTokenStoreDeps): DeviceTokenStore {
  const random = deps.random ?? randomBytes;
  const db = deps.files.openDatabase(path, {
    label: 'device token store',
    migrations: MIGRATIONS,
    ...(deps.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: deps.busyTimeoutMs }),
    synchronous: 'FULL',
    // Spent tokens must not be recoverable from free pages.
    pragmas: ['secure_delete = ON'],
    error: (failure, message, o) => new DeviceError(FAILURE_CODES[failure], message, o),
  });
  const stmt = {
    get: db.prepare('SELECT device, node, created_at, expires_at, used_at FROM tokens WHERE id = ?'),
    insert: db.prepare('INSERT INTO tokens (id, device, node, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, NULL)'),
    markUsed: db.prepare('UPDATE tokens SET used_at = ? WHERE id = ? AND used_at IS NULL'),
    live: db.prepare('SELECT count(*) FROM tokens WHERE expires_at > ?').pluck(),
    prune: db.prepare('DELETE FROM tokens WHERE expires_at <= ?'),
    dropDevice: db.prepare('DELETE FROM tokens WHERE device = ? AND used_at IS NULL'),
  };
  const immediate = <T>(fn: () => T): T => db.transaction(fn).immediate();
  let closed = false;
  const open = (): void => {
    if (closed) throw new DeviceError('device-store/io', 'the device token store is closed');
  };

  return {
    issue(device, node, ttlMs, now) {
      open();
      if (!Number.isSafeInteger(ttlMs) || ttlMs < MIN_DEVICE_TOKEN_TTL_MS || ttlMs > MAX_DEVICE_TOKEN_TTL_MS) {
        throw new DeviceError('device-token/bad-ttl', `a device token lives from ${MIN_DEVICE_TOKEN_TTL_MS / 1000} s to ${MAX_DEVICE_TOKEN_TTL_MS / 3_600_000} h`);
      }
      const bytes = random(DEVICE_TOKEN_RANDOM_BYTES);
      if (!Buffer.isBuffer(bytes) || bytes.length !== DEVICE_TOKEN_RANDOM_BYTES) throw new Error('random source returned the wrong number of bytes');
      const token = DEVICE_TOKEN_PREFIX + bytes.toString('base64url');
      const expiresAt = now + ttlMs;
      immediate(() => {
        stmt.prune.run(now);
        if ((stmt.live.get(now) as number) >= MAX_DEVICE_TOKENS) {
          throw new DeviceError('device-token/too-many', `at most ${MAX_DEVICE_TOKENS} unexpired device tokens may be outstanding`);
        }
        stmt.insert.run(deviceTokenId(token), device, node, now, expiresAt);
      });
      return Object.freeze({ token, device, node, expiresAt, createdAt: now });
    },

    consume(token, device, node, now) {
      open();
      const id = deviceTokenId(typeof token === 'string' ? token : '');
      const tokenId = id.slice(0, 8);
      if (typeof token !== 'string' || !DEVICE_TOKEN_PATTERN.test(token)) return { ok: false, reason: 'unknown', tokenId };
      return immediate((): ConsumeResult => {
        const row = stmt.get.get(id) as TokenRow | undefined;
        if (row === undefined) return { ok: false, reason: 'unknown', tokenId };
        const refuse = (reason: TokenRefusal): ConsumeResult => ({ ok: false, reason, tokenId, device: row.device });
        if (row.used_at !== null) return refuse('used');
        if (row.expires_at <= now) return refuse('expired');
        if (device !== undefined && row.device !== device) return refuse('wrong-device');
        if (row.node !== node) return refuse('wrong-node');
        if (stmt.markUsed.run(now, id).changes !== 1) return refuse('used');
        return { ok: true, device: row.device, node: row.node, createdAt: row.created_at, tokenId };
      });
    },

    dropDevice(device) {
      open();
      return immediate(() => stmt.dropDevice.run(device).changes);
    },

    prune(now) {
      open();
      return immediate(() => stmt.prune.run(now).changes);
    },

    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
