/**
 * Strict, dependency-free flag parsing for the `edgeward` CLI.
 *
 * - Long flags only (`--name VALUE`, `--name=VALUE`), plus `-h` for `--help`.
 * - Unknown flags, missing values, values given to boolean flags, repeated single-valued flags and a wrong
 *   number of positional arguments are all `CliUsageError`s (exit code 2): nothing is silently ignored.
 * - `--` ends flag parsing; everything after it is positional.
 * - `--help` / `-h` anywhere before `--` wins: the caller prints the command's help.
 */
import { CliUsageError } from './errors.js';

export type FlagSpec =
  | { readonly type: 'boolean'; readonly description: string }
  | {
      readonly type: 'string';
      /** Placeholder shown in help, e.g. `FILE`. */
      readonly value: string;
      readonly description: string;
      /** May be given more than once; the values are collected in order. */
      readonly multiple?: boolean;
    };

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

export type FlagValues<S extends FlagSpecs> = {
  -readonly [K in keyof S]: S[K] extends { type: 'boolean' }
    ? boolean
    : S[K] extends { multiple: true }
      ? string[]
      : string | undefined;
};

export interface ArgsSpec<S extends FlagSpecs> {
  readonly flags: S;
  /** Allowed number of positional arguments. */
  readonly positionals: { readonly min: number; readonly max: number };
}

export interface ParsedArgs<S extends FlagSpecs> {
  readonly flags: FlagValues<S>;
  readonly positionals: readonly string[];
  /** `--help` or `-h` was given; flags and positionals were not validated. */
  readonly help: boolean;
}

export interface ParseOptions {
  /** Command name for the usage message attached to errors. */
  readonly command?: string;
}

/** Flag names: lowercase words separated by `-`. */
const FLAG_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

export function parseArgs<S extends FlagSpecs>(
  argv: readonly string[],
  spec: ArgsSpec<S>,
  options: ParseOptions = {},
): ParsedArgs<S> {
  const usage = (message: string): CliUsageError =>
    new CliUsageError(message, options.command === undefined ? undefined : { command: options.command });

  const values: Record<string, boolean | string | string[] | undefined> = {};
  for (const [name, flag] of Object.entries(spec.flags)) {
    values[name] = flag.type === 'boolean' ? false : flag.multiple === true ? [] : undefined;
  }
  const seen = new Set<string>();
  const positionals: string[] = [];

  // Help wins over everything else, so `cmd --bogus --help` still shows the help.
  const end = argv.indexOf('--');
  const flagPart = end === -1 ? argv : argv.slice(0, end);
  if (flagPart.includes('--help') || flagPart.includes('-h')) {
    return { flags: values as FlagValues<S>, positionals: [], help: true };
  }

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw usage(`unknown flag ${printable(arg)}`);

    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const flag = FLAG_NAME.test(name) && Object.hasOwn(spec.flags, name) ? spec.flags[name] : undefined;
    if (flag === undefined) throw usage(`unknown flag --${printable(name)}`);
    if (seen.has(name) && !(flag.type === 'string' && flag.multiple === true)) {
      throw usage(`flag --${name} is given more than once`);
    }
    seen.add(name);

    if (flag.type === 'boolean') {
      if (eq !== -1) throw usage(`flag --${name} takes no value`);
      values[name] = true;
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      // A following flag is not a value: `--bundle --json` is a mistake, not a file called "--json".
      if (next !== undefined && !next.startsWith('-')) {
        value = next;
        i++;
      }
    }
    if (value === undefined || value === '') throw usage(`flag --${name} needs a value (${flag.value})`);
    if (flag.multiple === true) (values[name] as string[]).push(value);
    else values[name] = value;
  }

  const { min, max } = spec.positionals;
  if (positionals.length < min) {
    throw usage(min === 1 && max === 1 ? 'missing argument' : `expected at least ${min} argument(s)`);
  }
  if (positionals.length > max) {
    throw usage(
      max === 0
        ? `unexpected argument ${printable(positionals[0] as string)}`
        : `unexpected argument ${printable(positionals[max] as string)} (at most ${max} allowed)`,
    );
  }
  return { flags: values as FlagValues<S>, positionals, help: false };
}

/** Render a flag list for `--help`. */
export function formatFlags(flags: FlagSpecs): string {
  const rows = Object.entries(flags).map(([name, f]) => [
    f.type === 'boolean' ? `--${name}` : `--${name} ${f.value}`,
    f.type === 'string' && f.multiple === true ? `${f.description} (repeatable)` : f.description,
  ]);
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([l]) => (l as string).length));
  return rows.map(([l, d]) => `  ${(l as string).padEnd(width)}  ${d as string}`).join('\n');
}

/** Make a user-supplied string safe to echo on a terminal: no control characters, bounded length. */
export function printable(s: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}
