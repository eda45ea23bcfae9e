import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliUsageError, defineCommand, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main, type Command } from '../../../src/cli/index.js';
import { EdgewardError } from '../../../src/identity/index.js';
import { REPO_ROOT } from '../../helpers/index.js';
import { fakeIo } from './fake-io.js';

const calls: string[] = [];
const table: Command[] = [
  defineCommand({
    name: 'node',
    summary: 'the one-word command',
    operands: '',
    args: { flags: {}, positionals: { min: 0, max: 0 } },
    async run(_a, io) {
      calls.push('node');
      io.stdout('node ran\n');
      return EXIT_OK;
    },
  }),
  defineCommand({
    name: 'node join',
    summary: 'a two-word command sharing the first word',
    operands: 'TOKEN',
    args: { flags: { force: { type: 'boolean', description: 'force it' } }, positionals: { min: 1, max: 1 } },
    async run({ flags, positionals }, io) {
      calls.push(`join ${positionals[0] ?? ''} ${String(flags.force)}`);
      io.stdout('joined\n');
      return EXIT_OK;
    },
  }),
  defineCommand({
    name: 'fail typed',
    summary: 'throws a typed error',
    operands: '',
    args: { flags: {}, positionals: { min: 0, max: 0 } },
    async run() {
      throw new EdgewardError('demo/broken', 'it broke\u001b[2J', { cause: new Error('secret cause') });
    },
  }),
  defineCommand({
    name: 'fail plain',
    summary: 'throws an untyped error',
    operands: '',
    args: { flags: {}, positionals: { min: 0, max: 0 } },
    async run() {
      throw new TypeError('undefined is not a function');
    },
  }),
];

describe('main: dispatch', () => {
  it('runs the longest matching multi-word command with its flags', async () => {
    calls.length = 0;
    const io = fakeIo();
    expect(await main(['node', 'join', 'tok', '--force'], io, table)).toBe(EXIT_OK);
    expect(await main(['node'], io, table)).toBe(EXIT_OK);
    expect(calls).toEqual(['join tok true', 'node']);
    expect(io.stderrText()).toBe('');
  });

  it('prints the command list for --help (exit 0) and for no arguments (exit 2)', async () => {
    const io = fakeIo();
    expect(await main(['--help'], io, table)).toBe(EXIT_OK);
    expect(io.stdoutText()).toContain('node join');
    const io2 = fakeIo();
    expect(await main([], io2, table)).toBe(EXIT_USAGE);
    expect(io2.stderrText()).toContain('usage: edgeward <command>');
  });

  it('prints a command help with its usage line and flags', async () => {
    const io = fakeIo();
    expect(await main(['node', 'join', '--help'], io, table)).toBe(EXIT_OK);
    expect(io.stdoutText()).toContain('usage: edgeward node join TOKEN [--force]');
    expect(io.stdoutText()).toContain('--force');
  });

  it('prints the package version', async () => {
    const io = fakeIo();
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await main(['--version'], io)).toBe(EXIT_OK);
    expect(io.stdoutText()).toBe(`edgeward ${pkg.version}\n`);
  });
});

describe('main: usage errors (exit 2, code cli/usage)', () => {
  const cases: [string[], RegExp][] = [
    [['nope'], /^edgeward: cli\/usage: unknown command nope\n/],
    [['fail', 'other'], /^edgeward: cli\/usage: unknown command fail other; did you mean: fail typed, fail plain\n/],
    [['--bogus'], /^edgeward: cli\/usage: unknown flag --bogus\n/],
    [['node', 'join'], /^edgeward: cli\/usage: missing argument\nusage: edgeward node join TOKEN \[--force\]\n$/],
    [['node', 'join', 't', '--forse'], /^edgeward: cli\/usage: unknown flag --forse\nusage: edgeward node join/],
    [['node', 'extra'], /^edgeward: cli\/usage: unexpected argument extra\n/],
    [['--version', 'x'], /^edgeward: cli\/usage: unexpected argument x\n/],
  ];
  for (const [argv, expected] of cases) {
    it(argv.join(' '), async () => {
      const io = fakeIo();
      expect(await main(argv, io, table)).toBe(EXIT_USAGE);
      expect(io.stderrText()).toMatch(expected);
      expect(io.stdoutText()).toBe('');
    });
  }

  it('CliUsageError is a typed EdgewardError', () => {
    const e = new CliUsageError('x', { command: 'node join' });
    expect(e).toBeInstanceOf(EdgewardError);
    expect(e.code).toBe('cli/usage');
  });
});

describe('main: errors', () => {
  it('prints a typed error as one line with its code, no stack and no cause (exit 1)', async () => {
    const io = fakeIo();
    expect(await main(['fail', 'typed'], io, table)).toBe(EXIT_FAILURE);
    expect(io.stderrText()).toBe('edgeward: demo/broken: it broke?[2J\n');
  });

  it('reports an untyped error as cli/internal without a stack', async () => {
    const io = fakeIo();
    expect(await main(['fail', 'plain'], io, table)).toBe(EXIT_FAILURE);
    expect(io.stderrText()).toBe('edgeward: cli/internal: undefined is not a function\n');
  });

  it('adds the stack and the cause chain when EDGEWARD_DEBUG=1', async () => {
    const io = fakeIo({ env: { EDGEWARD_DEBUG: '1' } });
    expect(await main(['fail', 'typed'], io, table)).toBe(EXIT_FAILURE);
    const err = io.stderrText();
    expect(err.startsWith('edgeward: demo/broken: it broke')).toBe(true);
    expect(err).toMatch(/\n\s+at /);
    expect(err).toContain('caused by: Error: secret cause');
  });
});
