import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the registration-entry store (closed union; never reused for another meaning).
 * Invalid entry content is `EntryValidationError` ('entry/invalid', src/attestation), not one of these.
 *
 * - `entry/duplicate`: another entry has the same spiffeId, parentId and selector set (SPIRE's rule).
 * - `entry/id-exists`: the caller-given id is taken by an entry with different content or another source.
 * - `entry/store-io`: the database file cannot be created, opened, read or written.
 * - `entry/store-version`: the database was written by a newer schema version than this code knows.
 * - `entry/store-trust-domain`: the database belongs to another trust domain.
 * - `entry/store-corrupt`: a stored row does not validate (tampering, or a bug in an older writer).
 * - `entry/store-closed`: the store was used after `close()`.
 */
export const ENTRY_STORE_ERROR_CODES = [
  'entry/duplicate',
  'entry/id-exists',
  'entry/store-io',
  'entry/store-version',
  'entry/store-trust-domain',
  'entry/store-corrupt',
  'entry/store-closed',
] as const;
export type EntryStoreErrorCode = (typeof ENTRY_STORE_ERROR_CODES)[number];
export class EntryStoreError extends EdgewardError<EntryStoreErrorCode> {}

/**
 * Failure codes of the registration-entries policy file loader.
 *
 * - `policy/io`: the file cannot be read (missing, not a regular file, permission).
 * - `policy/too-large`: the file exceeds the size bound (1 MiB by default).
 * - `policy/syntax`: not UTF-8, not exactly one well-formed YAML document, duplicate keys, or too many aliases.
 * - `policy/invalid`: well-formed YAML that breaks the schema or the entry rules (`problems` lists all).
 */
export const POLICY_ERROR_CODES = ['policy/io', 'policy/too-large', 'policy/syntax', 'policy/invalid'] as const;
export type PolicyErrorCode = (typeof POLICY_ERROR_CODES)[number];

export interface PolicyProblem {
  /** Location in the document, e.g. `entries[2].selectors[0]`. */
  readonly path: string;
  readonly message: string;
}

export class PolicyError extends EdgewardError<PolicyErrorCode> {
  readonly problems: readonly PolicyProblem[];
  constructor(
    code: PolicyErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, string | number | boolean>; problems?: readonly PolicyProblem[] },
  ) {
    super(code, message, options);
    this.problems = Object.freeze((options?.problems ?? []).map((p) => Object.freeze({ ...p })));
  }
}
