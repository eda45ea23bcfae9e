/**
 * `edgeward edge report-status --data-dir DIR --kind KIND --name NAME --phase PHASE [--message M]
 *  [--observed-version N] [--json]`
 *
 * Appends a status entry to the edge agent's durable outbox over its private admin socket
 * (DIR/admin/admin.sock, method `status.report`). The agent sends the outbox to the cloud in order when its
 * hub session is up, so a report made while the cloud is down reaches it later (issue #5). KIND is a
 * resource kind or alias (configmap, cm, secret, workload, ...) or `node` for the node itself; PHASE is a
 * short CamelCase word (`Running`, `Failed`). The agent validates every field.
 */
import { join, resolve } from 'node:path';
import { adminCall } from '../../protocol/index.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';

export const edgeReportStatusCommand = defineCommand({
  name: 'edge report-status',
  summary: 'report the status of a resource (or of the node) to the cloud through the edge\'s durable outbox',
  operands: '',
  args: {
    flags: {
      'data-dir': { type: 'string', value: 'DIR', description: 'the edge agent data dir (or EDGEWARD_DATA_DIR)' },
      kind: { type: 'string', value: 'KIND', description: 'resource kind (workload, configmap, secret, device, devicemodel; aliases) or node' },
      name: { type: 'string', value: 'NAME', description: 'the resource (or node) name' },
      phase: { type: 'string', value: 'PHASE', description: 'a CamelCase word, e.g. Running, Failed' },
      message: { type: 'string', value: 'TEXT', description: 'a short message (at most 1024 characters)' },
      'observed-version': { type: 'string', value: 'N', description: 'the resource version this status is about' },
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const command = 'edge report-status';
    const dir = flags['data-dir'] ?? io.env['EDGEWARD_DATA_DIR'];
    if (dir === undefined || dir === '') throw new CliUsageError('--data-dir (or EDGEWARD_DATA_DIR) is required', { command });
    const missing = (['kind', 'name', 'phase'] as const).filter((f) => flags[f] === undefined);
    if (missing.length > 0) throw new CliUsageError(`${missing.map((f) => `--${f}`).join(', ')} ${missing.length === 1 ? 'is' : 'are'} required`, { command });
    const params: Record<string, unknown> = { kind: flags.kind, name: flags.name, phase: flags.phase };
    if (flags.message !== undefined) params['message'] = flags.message;
    const ov = flags['observed-version'];
    if (ov !== undefined) {
      const n = /^[1-9][0-9]{0,15}$/.test(ov) ? Number(ov) : NaN;
      if (!Number.isSafeInteger(n)) throw new CliUsageError('--observed-version must be a whole number >= 1', { command });
      params['observedVersion'] = n;
    }
    const r = (await adminCall(join(resolve(dir), 'admin', 'admin.sock'), 'status.report', params)) as { seq: number };
    io.stdout(flags.json ? JSON.stringify(r) + '\n' : `status recorded (seq ${r.seq}); it is sent to the cloud when the hub is connected\n`);
    return 0;
  },
});
