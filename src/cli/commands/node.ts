/**
 * Node registry administration over the cloud's private admin socket (DIR/admin/admin.sock, 0600):
 *   edgeward node list [--json]
 *   edgeward node show NAME [--json]
 *   edgeward node ban NAME | unban NAME | evict NAME [--json]
 * A banned node cannot attest, renew or fetch SVIDs and its open connections are closed at once; an
 * evicted node's record is deleted and it may come back only by attesting again.
 */
import { join, resolve } from 'node:path';
import type { NodeView } from '../../cloud/index.js';
import { adminCall, type AdminMethod } from '../../protocol/index.js';
import { defineCommand, type CliIo } from '../command.js';
import { CliUsageError } from '../errors.js';
import { printable } from '../args.js';

export const cloudDataDirFlag = { type: 'string', value: 'DIR', description: 'the cloud data dir (or EDGEWARD_DATA_DIR)' } as const;
const jsonFlag = { type: 'boolean', description: 'print JSON' } as const;

/** DIR/admin/admin.sock of the cloud data dir given by --data-dir or EDGEWARD_DATA_DIR. */
export function cloudAdminSocket(dataDir: string | undefined, io: CliIo, command: string): string {
  const dir = dataDir ?? io.env['EDGEWARD_DATA_DIR'];
  if (dir === undefined || dir === '') throw new CliUsageError('--data-dir (or EDGEWARD_DATA_DIR) is required', { command });
  return join(resolve(dir), 'admin', 'admin.sock');
}

/** What the cloud's node.* admin methods return (src/cloud/admin `nodeView`). */
type NodeOut = NodeView;

const iso = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

function table(nodes: NodeOut[]): string {
  const rows = [['NAME', 'METHOD', 'STATUS', 'EXPIRES', 'SERIAL'], ...nodes.map((n) => [n.name, n.method, n.status, iso(n.notAfter), n.serial ?? '-'])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function details(n: NodeOut): string {
  return [
    `name:          ${n.name}`,
    `spiffe id:     ${n.spiffeId}`,
    `method:        ${n.method}`,
    `status:        ${n.status}`,
    `serial:        ${n.serial ?? '-'}`,
    `expires:       ${iso(n.notAfter)}`,
    `pending:       ${n.pendingSerial ?? '-'}`,
    `reattestable:  ${n.reattestable ? 'yes' : 'no'}`,
    `fingerprint:   ${n.fingerprint}`,
    `attested at:   ${iso(n.attestedAt)}`,
    `updated at:    ${iso(n.updatedAt)}`,
  ].join('\n') + '\n';
}

export const nodeListCommand = defineCommand({
  name: 'node list',
  summary: 'list the attested edge nodes of the cloud',
  operands: '',
  args: { flags: { 'data-dir': cloudDataDirFlag, json: jsonFlag }, positionals: { min: 0, max: 0 } },
  async run({ flags }, io) {
    const list = (await adminCall(cloudAdminSocket(flags['data-dir'], io, 'node list'), 'node.list')) as NodeOut[];
    io.stdout(flags.json ? JSON.stringify(list) + '\n' : list.length === 0 ? 'no nodes\n' : table(list));
    return 0;
  },
});

export const nodeShowCommand = defineCommand({
  name: 'node show',
  summary: 'show one attested node',
  operands: 'NAME',
  args: { flags: { 'data-dir': cloudDataDirFlag, json: jsonFlag }, positionals: { min: 1, max: 1 } },
  async run({ flags, positionals }, io) {
    const n = (await adminCall(cloudAdminSocket(flags['data-dir'], io, 'node show'), 'node.show', { name: positionals[0] })) as NodeOut;
    io.stdout(flags.json ? JSON.stringify(n) + '\n' : details(n));
    return 0;
  },
});

function nodeAction(name: 'ban' | 'unban', summary: string): ReturnType<typeof defineCommand> {
  const method: AdminMethod = name === 'ban' ? 'node.ban' : 'node.unban';
  return defineCommand({
    name: `node ${name}`,
    summary,
    operands: 'NAME',
    args: { flags: { 'data-dir': cloudDataDirFlag, json: jsonFlag }, positionals: { min: 1, max: 1 } },
    async run({ flags, positionals }, io) {
      const n = (await adminCall(cloudAdminSocket(flags['data-dir'], io, `node ${name}`), method, { name: positionals[0] })) as NodeOut;
      io.stdout(flags.json ? JSON.stringify(n) + '\n' : `${name === 'ban' ? 'banned' : 'unbanned'} ${printable(n.name)}\n`);
      return 0;
    },
  });
}

export const nodeBanCommand = nodeAction('ban', 'ban a node: it cannot attest, renew or fetch SVIDs; its open connections are closed');
export const nodeUnbanCommand = nodeAction('unban', 'lift a ban (the node must attest again)');

export const nodeEvictCommand = defineCommand({
  name: 'node evict',
  summary: 'delete a node record: it may come back only by attesting again',
  operands: 'NAME',
  args: { flags: { 'data-dir': cloudDataDirFlag, json: jsonFlag }, positionals: { min: 1, max: 1 } },
  async run({ flags, positionals }, io) {
    const r = (await adminCall(cloudAdminSocket(flags['data-dir'], io, 'node evict'), 'node.evict', { name: positionals[0] })) as { name: string; evicted: boolean };
    io.stdout(flags.json ? JSON.stringify(r) + '\n' : r.evicted ? `evicted ${printable(r.name)}\n` : `no node ${printable(positionals[0] ?? '')}\n`);
    return r.evicted ? 0 : 1;
  },
});
