/**
 * `edgeward token create --node NAME [--ttl 10m] [--json] [--data-dir DIR]`: a one-time join token for one
 * node name (stored only as a hash by the running cloud), with the complete `edgeward edge join` command.
 */
import { parseDuration } from '../../identity/index.js';
import { MAX_JOIN_TOKEN_TTL_MS, MIN_JOIN_TOKEN_TTL_MS } from '../../attestation/index.js';
import { adminCall } from '../../protocol/index.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';
import { cloudAdminSocket, cloudDataDirFlag } from './node.js';

/** Where the printed join command puts the edge's state. */
export const DEFAULT_EDGE_DATA_DIR = '/var/lib/edgeward/edge';

interface TokenOut {
  token: string;
  node: string;
  expiresAt: number;
  bundleDigest: string;
  cloud: string;
  trustDomain: string;
}

export function joinCommand(t: Pick<TokenOut, 'cloud' | 'token' | 'bundleDigest' | 'node'>, dataDir = DEFAULT_EDGE_DATA_DIR): string {
  return `edgeward edge join --cloud ${t.cloud} --token ${t.token} --bundle-digest ${t.bundleDigest} --node ${t.node} --data-dir ${dataDir}`;
}

export const tokenCreateCommand = defineCommand({
  name: 'token create',
  summary: 'create a one-time join token for a node and print the edge join command',
  operands: '',
  args: {
    flags: {
      node: { type: 'string', value: 'NAME', description: 'the node name the token is bound to' },
      ttl: { type: 'string', value: 'DURATION', description: 'token lifetime (default 10m, at most 24h)' },
      'data-dir': cloudDataDirFlag,
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    if (flags.node === undefined) throw new CliUsageError('--node is required', { command: 'token create' });
    let ttlMs: number | undefined;
    if (flags.ttl !== undefined) {
      try {
        ttlMs = parseDuration(flags.ttl, { min: MIN_JOIN_TOKEN_TTL_MS, max: MAX_JOIN_TOKEN_TTL_MS });
      } catch (e) {
        throw new CliUsageError(`--ttl: ${(e as Error).message}`, { command: 'token create', cause: e });
      }
    }
    const params: Record<string, unknown> = { node: flags.node };
    if (ttlMs !== undefined) params['ttlMs'] = ttlMs;
    const t = (await adminCall(cloudAdminSocket(flags['data-dir'], io, 'token create'), 'token.create', params)) as TokenOut;
    const command = joinCommand(t);
    if (flags.json) {
      io.stdout(JSON.stringify({ ...t, joinCommand: command }) + '\n');
    } else {
      io.stdout(
        [
          `token:          ${t.token}`,
          `node:           ${t.node}`,
          `expires:        ${new Date(t.expiresAt).toISOString()}`,
          `bundle digest:  ${t.bundleDigest}`,
          '',
          'join command (run on the edge node; single use):',
          `  ${command}`,
          '',
        ].join('\n'),
      );
    }
    return 0;
  },
});
