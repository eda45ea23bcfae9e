/**
 * Errors of the command-line front end (architecture.md convention 1: one class per meaning, closed codes).
 * A usage error (exit 2) is not the same thing as a failed operation (exit 1).
 */
import { EdgewardError } from '../identity/index.js';

/** The command line itself is wrong: unknown flag or command, missing or extra argument, bad flag value. */
export class CliUsageError extends EdgewardError<'cli/usage'> {
  /** Name of the command whose usage should be shown (e.g. `x509 inspect`), if known. */
  readonly command: string | undefined;
  constructor(message: string, options?: { command?: string; cause?: unknown }) {
    super('cli/usage', message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.command = options?.command;
  }
}

export const CLI_ERROR_CODES = [
  'cli/file-not-found',
  'cli/file-unreadable',
  'cli/file-too-large',
  'cli/no-certificates',
  'cli/bad-bundle',
  /** An output directory (`--write DIR`) is a symlink, not a directory, or cannot be created. */
  'cli/unsafe-output-dir',
  /** Writing an output file failed (the previous file, if any, is left in place). */
  'cli/write-failed',
  'cli/internal',
] as const;
export type CliErrorCode = (typeof CLI_ERROR_CODES)[number];

/** A command could not do its work because of its input files or environment. */
export class CliError extends EdgewardError<CliErrorCode> {}
