/**
 * The `edgeward` command dispatcher: a table of (possibly multi-word) commands, strict flags, typed errors.
 *
 * Exit codes: 0 success, 1 the operation failed or its verdict is negative, 2 usage error.
 * Every error is one line on stderr, `edgeward: <code>: <message>`; stack traces and causes only with
 * EDGEWARD_DEBUG=1.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgewardError } from '../identity/index.js';
import { formatFlags, printable } from './args.js';
import type { CliIo, Command } from './command.js';
import { demoCommand } from './commands/demo.js';
import { x509InspectCommand } from './commands/x509-inspect.js';
import { edgeStartCommand } from './commands/edge-start.js';
import { edgeReportStatusCommand } from './commands/edge-report.js';
import { edgeJoinCommand } from './commands/edge-join.js';
import { edgeTpmEkHashCommand } from './commands/edge-tpm.js';
import { entryCreateCommand, entryDeleteCommand, entryListCommand } from './commands/entry.js';
import { svidFetchCommand, svidWatchCommand } from './commands/svid.js';
import { jwtFetchCommand, jwtValidateCommand } from './commands/jwt.js';
import { bundleShowCommand } from './commands/bundle.js';
import { cloudStartCommand } from './commands/cloud-start.js';
import { tokenCreateCommand } from './commands/token.js';
import { deviceRevokeCommand, deviceTokenCommand } from './commands/device.js';
import { deviceEnrollCommand, deviceRenewCommand } from './commands/device-enroll.js';
import { nodeBanCommand, nodeEvictCommand, nodeListCommand, nodeShowCommand, nodeUnbanCommand } from './commands/node.js';
import { applyCommand, deleteCommand, getCommand } from './commands/resource.js';
import { CliUsageError } from './errors.js';

/** Every command, in the order `edgeward --help` lists them. */
export const COMMANDS: readonly Command[] = [
  demoCommand,
  x509InspectCommand,
  edgeJoinCommand,
  edgeTpmEkHashCommand,
  edgeStartCommand,
  edgeReportStatusCommand,
  entryCreateCommand,
  entryListCommand,
  entryDeleteCommand,
  svidFetchCommand,
  svidWatchCommand,
  jwtFetchCommand,
  jwtValidateCommand,
  bundleShowCommand,
  cloudStartCommand,
  tokenCreateCommand,
  deviceTokenCommand,
  deviceRevokeCommand,
  deviceEnrollCommand,
  deviceRenewCommand,
  nodeListCommand,
  nodeShowCommand,
  nodeBanCommand,
  nodeUnbanCommand,
  nodeEvictCommand,
  applyCommand,
  getCommand,
  deleteCommand,
];

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function processIo(): CliIo {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    env: process.env,
    now: () => Date.now(),
  };
}

/** The package version, from the nearest package.json named `edgeward` (works from src/ and dist/src/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'edgeward' && typeof pkg.version === 'string') return pkg.version;
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

function globalHelp(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'usage: edgeward <command> [flags]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `edgeward <command> --help` for the flags of one command; `edgeward --version` for the version.',
    '',
  ].join('\n');
}

function commandHelp(c: Command): string {
  const parts = [`usage: ${c.usage}`, '', c.summary];
  if (c.description !== undefined) parts.push('', c.description);
  parts.push('', 'flags:', formatFlags(c.flags), '');
  return parts.join('\n');
}

/** The command whose words are the longest prefix of argv. */
function findCommand(argv: readonly string[], commands: readonly Command[]): { command: Command; rest: string[] } | undefined {
  let best: { command: Command; rest: string[] } | undefined;
  for (const command of commands) {
    const words = command.name.split(' ');
    if (words.length > argv.length || !words.every((w, i) => argv[i] === w)) continue;
    if (best === undefined || words.length > best.command.name.split(' ').length) {
      best = { command, rest: argv.slice(words.length) };
    }
  }
  return best;
}

function reportError(e: unknown, io: CliIo, commands: readonly Command[]): number {
  const debug = io.env['EDGEWARD_DEBUG'] === '1';
  let code: string;
  let message: string;
  if (e instanceof EdgewardError) {
    code = e.code;
    message = e.message;
  } else {
    code = 'cli/internal';
    message = e instanceof Error ? e.message : String(e);
  }
  io.stderr(`edgeward: ${code}: ${printable(message, 1000)}\n`);
  if (e instanceof CliUsageError) {
    const c = commands.find((x) => x.name === e.command);
    io.stderr(c === undefined ? 'Run `edgeward --help` for usage.\n' : `usage: ${c.usage}\n`);
  }
  if (debug) {
    let cur: unknown = e;
    for (let depth = 0; cur !== undefined && depth < 8; depth++) {
      io.stderr(`${depth === 0 ? '' : 'caused by: '}${cur instanceof Error ? (cur.stack ?? cur.message) : String(cur)}\n`);
      cur = cur instanceof Error ? cur.cause : undefined;
    }
  }
  return e instanceof CliUsageError ? EXIT_USAGE : EXIT_FAILURE;
}

/** Run the CLI. Never throws; returns the process exit code. */
export async function main(
  argv: readonly string[],
  io: CliIo = processIo(),
  commands: readonly Command[] = COMMANDS,
): Promise<number> {
  try {
    const first = argv[0];
    if (first === undefined) {
      io.stderr(globalHelp(commands));
      return EXIT_USAGE;
    }
    if (first === '--help' || first === '-h' || first === 'help') {
      if (argv.length > 1) throw new CliUsageError(`unexpected argument ${printable(argv[1] as string)}`);
      io.stdout(globalHelp(commands));
      return EXIT_OK;
    }
    if (first === '--version') {
      if (argv.length > 1) throw new CliUsageError(`unexpected argument ${printable(argv[1] as string)}`);
      io.stdout(`edgeward ${packageVersion()}\n`);
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new CliUsageError(`unknown flag ${printable(first)}`);

    const found = findCommand(argv, commands);
    if (found === undefined) {
      const group = commands.filter((c) => c.name.split(' ')[0] === first).map((c) => c.name);
      throw new CliUsageError(
        group.length > 0
          ? `unknown command ${printable(argv.slice(0, 2).join(' '))}; did you mean: ${group.join(', ')}`
          : `unknown command ${printable(first)}`,
      );
    }
    const result = await found.command.run(found.rest, io);
    if (result === 'help') {
      io.stdout(commandHelp(found.command));
      return EXIT_OK;
    }
    return result;
  } catch (e) {
    return reportError(e, io, commands);
  }
}
