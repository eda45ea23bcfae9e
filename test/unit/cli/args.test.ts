import { describe, expect, it } from 'vitest';
import { CliUsageError, formatFlags, parseArgs, printable } from '../../../src/cli/index.js';

const spec = {
  flags: {
    bundle: { type: 'string', value: 'FILE', description: 'bundle file' },
    'trust-domain': { type: 'string', value: 'TD', description: 'trust domain' },
    tag: { type: 'string', value: 'T', description: 'a tag', multiple: true },
    json: { type: 'boolean', description: 'json output' },
  },
  positionals: { min: 1, max: 2 },
} as const;

function usageError(argv: string[]): CliUsageError {
  try {
    parseArgs(argv, spec, { command: 'test cmd' });
  } catch (e) {
    expect(e).toBeInstanceOf(CliUsageError);
    const u = e as CliUsageError;
    expect(u.code).toBe('cli/usage');
    expect(u.command).toBe('test cmd');
    return u;
  }
  throw new Error(`expected a usage error for ${JSON.stringify(argv)}`);
}

describe('parseArgs', () => {
  it('parses positionals, string flags in both forms, booleans and repeatable flags', () => {
    const r = parseArgs(['a.pem', '--bundle', 'b.pem', '--trust-domain=example.org', '--json', '--tag', 'x', '--tag=y', 'c'], spec);
    expect(r.help).toBe(false);
    expect(r.positionals).toEqual(['a.pem', 'c']);
    expect(r.flags).toEqual({ bundle: 'b.pem', 'trust-domain': 'example.org', tag: ['x', 'y'], json: true });
  });

  it('gives defaults for absent flags', () => {
    expect(parseArgs(['a'], spec).flags).toEqual({ bundle: undefined, 'trust-domain': undefined, tag: [], json: false });
  });

  it('treats everything after -- as positional', () => {
    const r = parseArgs(['--json', '--', '--bundle', '-x'], spec);
    expect(r.positionals).toEqual(['--bundle', '-x']);
    expect(r.flags.bundle).toBeUndefined();
  });

  it('keeps "=" inside values', () => {
    expect(parseArgs(['a', '--bundle=x=y'], spec).flags.bundle).toBe('x=y');
  });

  it('rejects unknown flags, short flags and prototype names', () => {
    expect(usageError(['a', '--bogus']).message).toBe('unknown flag --bogus');
    expect(usageError(['a', '-x']).message).toBe('unknown flag -x');
    expect(usageError(['a', '--constructor']).message).toMatch(/unknown flag/);
    expect(usageError(['a', '--__proto__=1']).message).toMatch(/unknown flag/);
    expect(usageError(['a', '--JSON']).message).toMatch(/unknown flag/);
  });

  it('rejects a missing or empty value, and a flag in place of a value', () => {
    expect(usageError(['a', '--bundle']).message).toMatch(/--bundle needs a value/);
    expect(usageError(['a', '--bundle=']).message).toMatch(/--bundle needs a value/);
    expect(usageError(['a', '--bundle', '--json']).message).toMatch(/--bundle needs a value/);
  });

  it('rejects a value for a boolean flag', () => {
    expect(usageError(['a', '--json=true']).message).toBe('flag --json takes no value');
  });

  it('rejects a single-valued flag given twice', () => {
    expect(usageError(['a', '--bundle', 'x', '--bundle', 'y']).message).toMatch(/more than once/);
    expect(usageError(['a', '--json', '--json']).message).toMatch(/more than once/);
  });

  it('enforces the number of positionals', () => {
    expect(usageError([]).message).toMatch(/at least 1/);
    expect(usageError(['a', 'b', 'c']).message).toMatch(/unexpected argument c/);
    const none = { flags: {}, positionals: { min: 0, max: 0 } };
    expect(() => parseArgs(['x'], none)).toThrow(/unexpected argument x/);
    const one = { flags: {}, positionals: { min: 1, max: 1 } };
    expect(() => parseArgs([], one)).toThrow('missing argument');
  });

  it('returns help for --help or -h before --, without validating anything else', () => {
    expect(parseArgs(['--bogus', '--help'], spec).help).toBe(true);
    expect(parseArgs(['-h'], spec).help).toBe(true);
    expect(parseArgs(['a', '--', '--help'], spec)).toMatchObject({ help: false, positionals: ['a', '--help'] });
  });

  it('does not echo control characters from the command line', () => {
    expect(usageError(['a', '--\u001b[31mred']).message).not.toContain('\u001b');
  });
});

describe('formatFlags and printable', () => {
  it('lists every flag and --help', () => {
    const text = formatFlags(spec.flags);
    expect(text).toContain('--bundle FILE');
    expect(text).toContain('--json ');
    expect(text).toContain('a tag (repeatable)');
    expect(text).toContain('-h, --help');
  });

  it('replaces control and bidi characters and bounds the length', () => {
    expect(printable('a\u0000b\u001b[0m\u202ec\u0085')).toBe('a?b?[0m?c?');
    expect(printable('x'.repeat(300), 10)).toBe(`${'x'.repeat(10)}...`);
  });
});
