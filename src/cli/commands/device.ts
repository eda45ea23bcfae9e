/**
 * Device administration over the cloud's private admin socket (issue #6):
 *   edgeward device token NAMESPACE/NAME [--ttl 1h] [--data-dir DIR] [--json]
 *     a one-time bootstrap token for an existing Device (bound to it and to its node), printed with the
 *     bundle digest to pin and the `edgeward device enroll` command to run on the device;
 *   edgeward device revoke NAMESPACE/NAME [--data-dir DIR] [--json]
 *     every SVID of the device issued before now is refused from then on (it may enrol again with a new token).
 * `NAME` alone means the namespace `default`.
 */
import { parseDuration } from '../../identity/index.js';
import { adminCall } from '../../protocol/index.js';
import { MAX_DEVICE_TOKEN_TTL_MS, MIN_DEVICE_TOKEN_TTL_MS, type DeviceRevokeResult, type DeviceTokenResult } from '../../cloud/index.js';
import { printable } from '../args.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';
import { cloudAdminSocket, cloudDataDirFlag } from './node.js';

/** The edge's device enrolment port (`edge start --enroll-listen`, default 127.0.0.1:8884). */
export const DEFAULT_ENROLL_PORT = 8884;
const jsonFlag = { type: 'boolean', description: 'print JSON' } as const;

/** The `edgeward device enroll` command a device runs with this token. */
export function enrollCommand(t: Pick<DeviceTokenResult, 'token' | 'bundleDigest' | 'node' | 'device'>): string {
  const local = t.device.slice(t.device.indexOf('/') + 1);
  return `edgeward device enroll --edge ${t.node}:${DEFAULT_ENROLL_PORT} --token ${t.token} --bundle-digest ${t.bundleDigest} --out ./${local}`;
}

export const deviceTokenCommand = defineCommand({
  name: 'device token',
  summary: 'create a one-time enrolment token for a device and print the device enroll command',
  operands: 'NAMESPACE/NAME',
  args: {
    flags: {
      ttl: { type: 'string', value: 'DURATION', description: 'token lifetime (default 1h, at most 24h)' },
      'data-dir': cloudDataDirFlag,
      json: jsonFlag,
    },
    positionals: { min: 1, max: 1 },
  },
  async run({ flags, positionals }, io) {
    let ttlMs: number | undefined;
    if (flags.ttl !== undefined) {
      try {
        ttlMs = parseDuration(flags.ttl, { min: MIN_DEVICE_TOKEN_TTL_MS, max: MAX_DEVICE_TOKEN_TTL_MS });
      } catch (e) {
        throw new CliUsageError(`--ttl: ${(e as Error).message}`, { command: 'device token', cause: e });
      }
    }
    const params: Record<string, unknown> = { device: positionals[0] };
    if (ttlMs !== undefined) params['ttlMs'] = ttlMs;
    const socket = cloudAdminSocket(flags['data-dir'], io, 'device token');
    const t = (await adminCall(socket, 'device.token', params)) as DeviceTokenResult;
    const command = enrollCommand(t);
    if (flags.json) {
      io.stdout(JSON.stringify({ ...t, enrollCommand: command }) + '\n');
    } else {
      io.stdout(
        [
          t.token,
          `device:         ${printable(t.device)}`,
          `node:           ${printable(t.node)}`,
          `expires:        ${new Date(t.expiresAt).toISOString()}`,
          `bundle digest:  ${t.bundleDigest}`,
          '',
          `enrol (on the device, single use; --edge is ${printable(t.node)}'s enrolment address):`,
          `  ${command}`,
          '',
        ].join('\n'),
      );
    }
    return 0;
  },
});

export const deviceRevokeCommand = defineCommand({
  name: 'device revoke',
  summary: 'revoke every SVID of a device issued until now (it may enrol again with a new token)',
  operands: 'NAMESPACE/NAME',
  args: { flags: { 'data-dir': cloudDataDirFlag, json: jsonFlag }, positionals: { min: 1, max: 1 } },
  async run({ flags, positionals }, io) {
    const socket = cloudAdminSocket(flags['data-dir'], io, 'device revoke');
    const r = (await adminCall(socket, 'device.revoke', { device: positionals[0] })) as DeviceRevokeResult;
    io.stdout(
      flags.json
        ? JSON.stringify(r) + '\n'
        : `revoked ${printable(r.device)}: SVIDs issued before ${new Date(r.revokedBefore).toISOString()} are refused (version ${r.version})\n`,
    );
    return 0;
  },
});
