/** The shape of a CLI command and the I/O it may use (injected, so commands are testable in-process). */
import { parseArgs, type ArgsSpec, type FlagSpecs, type ParsedArgs } from './args.js';

export interface CliIo {
  /** Write to standard output (text is written as given; add the newline yourself). */
  stdout(text: string): void;
  stderr(text: string): void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Wall-clock time in epoch ms; the CLI is the I/O edge that reads it and passes it to the pure core. */
  now(): number;
}

export interface CommandDefinition<S extends FlagSpecs> {
  /** One or more words, e.g. `x509 inspect`. */
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Positional part of the usage line, e.g. `FILE`. Flags are appended from `args.flags`. */
  readonly operands: string;
  /** Longer help text (optional). */
  readonly description?: string;
  readonly args: ArgsSpec<S>;
  /** Returns the process exit code: 0 success, 1 failure/invalid. Throws typed errors. */
  run(args: ParsedArgs<S>, io: CliIo): Promise<number>;
}

/** A registered command with its flag types erased, as kept in the command table. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly description: string | undefined;
  readonly flags: FlagSpecs;
  run(argv: readonly string[], io: CliIo): Promise<number | 'help'>;
}

export function defineCommand<S extends FlagSpecs>(def: CommandDefinition<S>): Command {
  const flagPart = Object.entries(def.args.flags)
    .map(([name, f]) => (f.type === 'boolean' ? `[--${name}]` : `[--${name} ${f.value}]`))
    .join(' ');
  const usage = ['edgeward', def.name, def.operands, flagPart].filter((s) => s !== '').join(' ');
  return {
    name: def.name,
    summary: def.summary,
    usage,
    description: def.description,
    flags: def.args.flags,
    async run(argv, io) {
      const parsed = parseArgs(argv, def.args, { command: def.name });
      if (parsed.help) return 'help';
      return def.run(parsed, io);
    },
  };
}
