/**
 * Loader for registration-entries policy files (policies/registration-entries.yaml; schema:
 * policies/schema/registration-entries.schema.json, JSON Schema 2020-12).
 *
 *   apiVersion: edgeward.io/v1
 *   kind: RegistrationEntries
 *   entries:
 *     - spiffeId: spiffe://example.org/workload/web
 *       parentId: spiffe://example.org/edge/node-1
 *       selectors: ["unix:uid:1000"]
 *       x509SvidTtl: 1h          # optional, duration (ms|s|m|h|d)
 *       jwtSvidTtl: 5m           # optional
 *       dnsNames: [web.local]    # optional
 *       hint: web                # optional
 *       id: web                  # optional; default: derived from spiffeId+parentId+selectors
 *
 * Hand-validated (no JSON-Schema engine at run time) with the schema's rules plus what a schema cannot
 * say: the configured trust domain, the configured TTL maxima, hint length in UTF-8 bytes, uniqueness of
 * ids and of spiffeId+parentId+selector sets. test/integration/entry-store.test.ts checks that schema
 * and loader agree. Bounded input: 1 MiB file, exactly one YAML 1.2 document (core schema), unique keys,
 * string keys only, no unknown tags, no aliases (configurable limit), every problem reported together.
 */
import {
  derivedEntryId,
  entryDedupeKey,
  EntryValidationError,
  validateEntryInput,
  type EntryInput,
  type EntryValidationOptions,
} from '../../attestation/index.js';
import { type TrustDomain } from '../../identity/index.js';
import { PolicyError, type PolicyProblem } from './errors.js';
import { parseYaml, readBounded } from '../policy-file.js';

export const ENTRIES_POLICY_API_VERSION = 'edgeward.io/v1';
export const ENTRIES_POLICY_KIND = 'RegistrationEntries';
export const DEFAULT_MAX_POLICY_BYTES = 1024 * 1024;
/** Most entries in one file (SPIRE agents handle ~10k entries; bounded input). */
export const MAX_POLICY_ENTRIES = 10_000;
/** Top-level fields of the document (all required). */
export const POLICY_DOCUMENT_FIELDS = ['apiVersion', 'kind', 'entries'] as const;
/** Fields of one entry in a policy file (TTLs only as duration strings; no `*Ms` fields here). */
export const POLICY_ENTRY_FIELDS = ['id', 'spiffeId', 'parentId', 'selectors', 'x509SvidTtl', 'jwtSvidTtl', 'dnsNames', 'hint'] as const;
export const POLICY_ENTRY_REQUIRED_FIELDS = ['spiffeId', 'parentId', 'selectors'] as const;

export interface EntriesPolicyOptions {
  maxX509SvidTtlMs?: number;
  maxJwtSvidTtlMs?: number;
  /** File size bound in bytes (default 1 MiB). */
  maxBytes?: number;
  /** YAML alias resolutions allowed (default 0: anchors/aliases are refused). */
  maxAliasCount?: number;
}

export interface EntriesPolicy {
  /** Validated entries, each with an id (given, or `derivedEntryId`), in file order. */
  readonly entries: readonly EntryInput[];
}

const ENTRY_FIELD_SET: ReadonlySet<string> = new Set(POLICY_ENTRY_FIELDS);
const DOC_FIELD_SET: ReadonlySet<string> = new Set(POLICY_DOCUMENT_FIELDS);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}...` : v);
  return typeof v;
}

/**
 * Validate a parsed policy document (plain JS value) and return its entries. Throws `policy/invalid` with
 * every problem.
 */
export function validateEntriesPolicy(doc: unknown, trustDomain: TrustDomain, opts: EntriesPolicyOptions = {}): EntriesPolicy {
  const problems: PolicyProblem[] = [];
  const bad = (path: string, message: string): void => {
    problems.push({ path, message });
  };
  const entries: EntryInput[] = [];
  const validation: EntryValidationOptions = {
    trustDomain,
    ...(opts.maxX509SvidTtlMs === undefined ? {} : { maxX509SvidTtlMs: opts.maxX509SvidTtlMs }),
    ...(opts.maxJwtSvidTtlMs === undefined ? {} : { maxJwtSvidTtlMs: opts.maxJwtSvidTtlMs }),
  };
  if (!isPlainObject(doc)) {
    bad('', `the policy must be a mapping (got ${describe(doc)})`);
  } else {
    for (const k of Object.keys(doc)) if (!DOC_FIELD_SET.has(k)) bad(k.slice(0, 64), 'unknown field');
    for (const k of POLICY_DOCUMENT_FIELDS) if (!(k in doc)) bad(k, 'is required');
    if ('apiVersion' in doc && doc['apiVersion'] !== ENTRIES_POLICY_API_VERSION) {
      bad('apiVersion', `must be "${ENTRIES_POLICY_API_VERSION}" (got ${describe(doc['apiVersion'])})`);
    }
    if ('kind' in doc && doc['kind'] !== ENTRIES_POLICY_KIND) bad('kind', `must be "${ENTRIES_POLICY_KIND}" (got ${describe(doc['kind'])})`);
    const list = doc['entries'];
    if ('entries' in doc && !Array.isArray(list)) bad('entries', `must be a list (got ${describe(list)})`);
    else if (Array.isArray(list) && list.length > MAX_POLICY_ENTRIES) bad('entries', `at most ${MAX_POLICY_ENTRIES} entries (got ${list.length})`);
    else if (Array.isArray(list)) {
      const ids = new Map<string, number>();
      const keys = new Map<string, number>();
      list.forEach((raw: unknown, i: number) => {
        const at = `entries[${i}]`;
        if (!isPlainObject(raw)) {
          bad(at, `must be a mapping (got ${describe(raw)})`);
          return;
        }
        const before = problems.length;
        const known: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(raw)) {
          if (ENTRY_FIELD_SET.has(k)) known[k] = v;
          else bad(`${at}.${k.slice(0, 64)}`, 'unknown field');
        }
        // validateEntryInput also takes {type, value} objects; a policy file spells selectors as strings.
        const sel = known['selectors'];
        if (Array.isArray(sel)) {
          sel.forEach((s: unknown, j: number) => {
            if (isPlainObject(s)) bad(`${at}.selectors[${j}]`, 'must be a "type:value" string (got an object)');
          });
        }
        let input: EntryInput | undefined;
        try {
          input = validateEntryInput(known, validation);
        } catch (e) {
          if (!(e instanceof EntryValidationError)) throw e;
          for (const p of e.problems) bad(p.path === '' ? at : `${at}.${p.path}`, p.message);
        }
        if (input === undefined || problems.length > before) return;
        const key = entryDedupeKey(input);
        const prevKey = keys.get(key);
        if (prevKey !== undefined) {
          bad(at, `same spiffeId, parentId and selectors as entries[${prevKey}]`);
          return;
        }
        keys.set(key, i);
        const id = input.id ?? derivedEntryId(input);
        const prevId = ids.get(id);
        if (prevId !== undefined) {
          bad(`${at}.id`, `same id "${id}" as entries[${prevId}]`);
          return;
        }
        ids.set(id, i);
        entries.push(input.id === undefined ? Object.freeze({ ...input, id }) : input);
      });
    }
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 3).map((p) => `${p.path === '' ? '(document)' : p.path}: ${p.message}`).join('; ');
    throw new PolicyError('policy/invalid', `invalid registration-entries policy (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${shown}`, {
      problems,
      detail: { problems: problems.length },
    });
  }
  return Object.freeze({ entries: Object.freeze(entries) });
}

/** Parse and validate policy text (UTF-8 already decoded). Throws `policy/syntax` or `policy/invalid`. */
export function parseEntriesPolicy(text: string, trustDomain: TrustDomain, opts: EntriesPolicyOptions = {}): EntriesPolicy {
  const max = opts.maxBytes ?? DEFAULT_MAX_POLICY_BYTES;
  if (Buffer.byteLength(text, 'utf8') > max) throw new PolicyError('policy/too-large', `policy is larger than ${max} bytes`, { detail: { maxBytes: max } });
  return validateEntriesPolicy(parseYaml(text, opts.maxAliasCount ?? 0), trustDomain, opts);
}

/** Read (bounded), decode (strict UTF-8), parse and validate a policy file. */
export function loadEntriesPolicy(path: string, trustDomain: TrustDomain, opts: EntriesPolicyOptions = {}): EntriesPolicy {
  const bytes = readBounded(path, opts.maxBytes ?? DEFAULT_MAX_POLICY_BYTES);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch (e) {
    throw new PolicyError('policy/syntax', `policy file ${path} is not valid UTF-8`, { cause: e });
  }
  return parseEntriesPolicy(text, trustDomain, opts);
}
