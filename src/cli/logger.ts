/**
 * Structured logging (architecture.md convention 6), shared by the processes until it gets a neutral home.
 *
 * - Messages are constants; everything variable goes in fields.
 * - Field names are fixed: `spiffe_id`, `node`, `peer`, `code`, `event` (see LogFields).
 * - Security decisions (deny, ban, attestation failure) carry a stable `event` so that tests and
 *   operators can find them: `log.warn({ event: 'mtls.deny', peer, code }, 'connection refused')`.
 * - Keys, tokens and credentials are redacted wherever they appear under the names in REDACT_PATHS.
 * - Error causes are logged (`errorFields`), never sent to a peer.
 */
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import { EdgewardError } from '../identity/index.js';

/** The fixed field names. Add a field here before logging it under a new name. */
export interface LogFields {
  spiffe_id?: string;
  node?: string;
  peer?: string;
  code?: string;
  event?: string;
  err?: unknown;
}

export type EdgewardLogger = Logger;

const SECRET_KEYS = [
  'key',
  'privateKey',
  'private_key',
  'pkcs8',
  'token',
  'jwt',
  'svid_key',
  'password',
  'secret',
  'authorization',
  'cookie',
] as const;

/** pino redact paths: the secret names at the top level and one or two levels down (`*.key`, `*.*.key`). */
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

export interface LoggerOptions {
  /** Component name, e.g. `cloud`, `edge`, `cli`. */
  name: string;
  level?: LevelWithSilent;
  /** Where JSON lines go; default stderr (stdout belongs to command output). */
  destination?: DestinationStream;
  /** Fields bound to every line (e.g. `{ node: 'edge-1' }`). */
  bindings?: LogFields;
}

export function createLogger(options: LoggerOptions): EdgewardLogger {
  const logger = pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      base: { pid: process.pid },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 2, sync: true }),
  );
  return options.bindings === undefined ? logger : logger.child(options.bindings);
}

/** Fields for a failure: its stable `code` (for EdgewardErrors) and the error itself (cause chain). */
export function errorFields(e: unknown): Pick<LogFields, 'code' | 'err'> {
  return { code: e instanceof EdgewardError ? e.code : 'internal', err: e };
}
