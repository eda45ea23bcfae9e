/**
 * Small pure helpers for the processes' config parsers (architecture.md convention 7: one typed config
 * per process, every problem reported together): a problem collector, the log levels, and the strict
 * YAML parse options used for config and policy files.
 */

export interface ProblemCollector {
  /** Every problem found so far, in order; append with `problems.push(...)`. */
  readonly problems: string[];
  /** Run `f`; if it throws, record `${what}: ${message}` and return undefined. */
  take<T>(f: () => T, what: string): T | undefined;
}

export function collectProblems(): ProblemCollector {
  const problems: string[] = [];
  return {
    problems,
    take: <T>(f: () => T, what: string): T | undefined => {
      try {
        return f();
      } catch (e) {
        problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
        return undefined;
      }
    },
  };
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(s: unknown): s is LogLevel {
  return typeof s === 'string' && (LOG_LEVELS as readonly string[]).includes(s);
}

/**
 * Options for the `yaml` package's `parseAllDocuments` that make it strict: YAML 1.2 core schema, no
 * duplicate or non-string keys, no merge keys, no custom tags. Pair with `toJS({ maxAliasCount })`.
 */
export const STRICT_YAML_OPTIONS = Object.freeze({
  version: '1.2',
  schema: 'core',
  uniqueKeys: true,
  stringKeys: true,
  merge: false,
  strict: true,
  resolveKnownTags: false,
} as const);
