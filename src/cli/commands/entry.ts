/**
 * Registration entry administration over the agent's private admin socket (DIR/admin/admin.sock, 0600):
 *   edgeward entry create --spiffe-id ID --parent ID --selector unix:uid:1000 [--x509-ttl 1h] [--jwt-ttl 5m] [--dns NAME] [--hint H]
 *   edgeward entry list [--json]
 *   edgeward entry delete ID
 * The agent validates every field (src/attestation entry rules); the CLI only shapes the request.
 */
import { join, resolve } from 'node:path';
import { formatDuration } from '../../identity/index.js';
import { adminCall } from '../../protocol/index.js';
import { defineCommand, type CliIo } from '../command.js';
import { CliUsageError } from '../errors.js';

const dataDirFlag = { type: 'string', value: 'DIR', description: 'the agent data dir (or EDGEWARD_DATA_DIR)' } as const;

function adminSocket(dataDir: string | undefined, io: CliIo, command: string): string {
  const dir = dataDir ?? io.env['EDGEWARD_DATA_DIR'];
  if (dir === undefined || dir === '') throw new CliUsageError('--data-dir (or EDGEWARD_DATA_DIR) is required', { command });
  return join(resolve(dir), 'admin', 'admin.sock');
}

interface EntryOut {
  id: string;
  spiffeId: string;
  parentId?: string;
  selectors: string[];
  x509SvidTtlMs?: number;
  jwtSvidTtlMs?: number;
  dnsNames?: string[];
  hint?: string;
  source?: string;
}

function line(e: EntryOut): string {
  return [
    `${e.id}  ${e.spiffeId}`,
    ...(e.parentId !== undefined ? [`    parent: ${e.parentId}`] : []),
    `    selectors: ${e.selectors.join(' ')}`,
    ...(e.x509SvidTtlMs !== undefined ? [`    x509 ttl: ${formatDuration(e.x509SvidTtlMs)}`] : []),
    ...(e.jwtSvidTtlMs !== undefined ? [`    jwt ttl: ${formatDuration(e.jwtSvidTtlMs)}`] : []),
    ...(e.dnsNames && e.dnsNames.length > 0 ? [`    dns: ${e.dnsNames.join(' ')}`] : []),
    ...(e.hint ? [`    hint: ${e.hint}`] : []),
    ...(e.source ? [`    source: ${e.source}`] : []),
  ].join('\n');
}

export const entryCreateCommand = defineCommand({
  name: 'entry create',
  summary: 'create a registration entry on the local agent',
  operands: '',
  args: {
    flags: {
      'spiffe-id': { type: 'string', value: 'ID', description: 'the SPIFFE ID to issue' },
      parent: { type: 'string', value: 'ID', description: 'the parent ID (the agent or node)' },
      selector: { type: 'string', value: 'TYPE:VALUE', description: 'a selector, e.g. unix:uid:1000 (repeatable; all must match)', multiple: true },
      'x509-ttl': { type: 'string', value: 'DURATION', description: 'X509-SVID TTL, e.g. 1h' },
      'jwt-ttl': { type: 'string', value: 'DURATION', description: 'JWT-SVID TTL, e.g. 5m' },
      dns: { type: 'string', value: 'NAME', description: 'DNS SAN (repeatable)', multiple: true },
      hint: { type: 'string', value: 'TEXT', description: 'hint delivered with the SVID' },
      'data-dir': dataDirFlag,
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    if (flags['spiffe-id'] === undefined || flags.parent === undefined || flags.selector.length === 0) {
      throw new CliUsageError('--spiffe-id, --parent and at least one --selector are required', { command: 'entry create' });
    }
    const params: Record<string, unknown> = { spiffeId: flags['spiffe-id'], parentId: flags.parent, selectors: flags.selector };
    if (flags['x509-ttl'] !== undefined) params['x509SvidTtl'] = flags['x509-ttl'];
    if (flags['jwt-ttl'] !== undefined) params['jwtSvidTtl'] = flags['jwt-ttl'];
    if (flags.dns.length > 0) params['dnsNames'] = flags.dns;
    if (flags.hint !== undefined) params['hint'] = flags.hint;
    const e = (await adminCall(adminSocket(flags['data-dir'], io, 'entry create'), 'entry.create', params)) as EntryOut;
    io.stdout(flags.json ? JSON.stringify(e) + '\n' : line(e) + '\n');
    return 0;
  },
});

export const entryListCommand = defineCommand({
  name: 'entry list',
  summary: 'list the registration entries of the local agent',
  operands: '',
  args: { flags: { 'data-dir': dataDirFlag, json: { type: 'boolean', description: 'print JSON' } }, positionals: { min: 0, max: 0 } },
  async run({ flags }, io) {
    const list = (await adminCall(adminSocket(flags['data-dir'], io, 'entry list'), 'entry.list')) as EntryOut[];
    io.stdout(flags.json ? JSON.stringify(list) + '\n' : list.length === 0 ? 'no entries\n' : list.map(line).join('\n') + '\n');
    return 0;
  },
});

export const entryDeleteCommand = defineCommand({
  name: 'entry delete',
  summary: 'delete a registration entry of the local agent',
  operands: 'ID',
  args: { flags: { 'data-dir': dataDirFlag, json: { type: 'boolean', description: 'print JSON' } }, positionals: { min: 1, max: 1 } },
  async run({ flags, positionals }, io) {
    const r = (await adminCall(adminSocket(flags['data-dir'], io, 'entry delete'), 'entry.delete', { id: positionals[0] })) as { deleted: boolean };
    io.stdout(flags.json ? JSON.stringify(r) + '\n' : r.deleted ? `deleted ${positionals[0]}\n` : `no entry ${positionals[0]}\n`);
    return r.deleted ? 0 : 1;
  },
});
