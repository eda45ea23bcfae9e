import { describe, expect, it } from 'vitest';
import { collectProblems, isLogLevel } from '../../../src/identity/index.js';

describe('config parsing helpers', () => {
  it('collectProblems records every failure with its label and keeps going', () => {
    const { problems, take } = collectProblems();
    expect(take(() => 42, 'a')).toBe(42);
    expect(
      take(() => {
        throw new Error('bad value');
      }, '--flag'),
    ).toBeUndefined();
    problems.push('other');
    expect(problems).toEqual(['--flag: bad value', 'other']);
  });
  it('isLogLevel accepts exactly the four levels', () => {
    for (const l of ['debug', 'info', 'warn', 'error']) expect(isLogLevel(l)).toBe(true);
    for (const l of ['trace', 'INFO', '', undefined, 1]) expect(isLogLevel(l)).toBe(false);
  });
});
