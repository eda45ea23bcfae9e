/**
 * Registration entries (SPIRE `spire.api.types.Entry`, reference §3 "Registration entries"): which SPIFFE
 * ID a workload gets, under which parent, when its attested selectors include ALL of the entry's selectors
 * ("A workload matches an entry when entry selectors ⊆ workload selectors").
 *
 * Pure: validation of untrusted input (admin API, policy files, rows read back from the store) reports
 * every problem at once in one `EntryValidationError`; matching uses a precomputed index.
 *
 * Field mapping to SPIRE's Entry: id=1, spiffe_id=2, parent_id=3, selectors=4, x509_svid_ttl=5 (here in
 * ms), dns_names=10, revision_number=11, jwt_svid_ttl=13 (ms), hint=14, created_at=15 (here epoch ms).
 * Not (yet) modelled: federates_with, admin, downstream, expires_at, store_svid, additional_attributes.
 */
import { createHash } from 'node:crypto';
import { DurationError, EdgewardError, parseDuration, SpiffeId, SpiffeIdError, type TrustDomain } from '../../identity/index.js';
import { normalizeSelectors, selectorKey, SelectorError, toSelector, type Selector } from './selector.js';

export const ENTRY_VALIDATION_ERROR_CODES = ['entry/invalid'] as const;
export type EntryValidationErrorCode = (typeof ENTRY_VALIDATION_ERROR_CODES)[number];

/** One reason an entry was refused; `path` names the field (`selectors[2]`, `dnsNames[0]`, ...). */
export interface EntryProblem {
  readonly path: string;
  readonly message: string;
}

/** Every problem of one (or, with prefixed paths, several) entry inputs. */
export class EntryValidationError extends EdgewardError<EntryValidationErrorCode> {
  readonly problems: readonly EntryProblem[];
  constructor(problems: readonly EntryProblem[], message?: string) {
    const shown = problems.slice(0, 5).map((p) => `${p.path}: ${p.message}`).join('; ');
    super('entry/invalid', message ?? `invalid registration entry (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${shown}${problems.length > 5 ? '; ...' : ''}`, {
      detail: { problems: problems.length },
    });
    this.problems = Object.freeze(problems.map((p) => Object.freeze({ ...p })));
  }
}

/** A validated entry before it is stored. */
export interface EntryInput {
  /** Caller-chosen id (idempotent policy loading); otherwise the store assigns a random one. */
  readonly id?: string | undefined;
  readonly spiffeId: SpiffeId;
  readonly parentId: SpiffeId;
  /** >= 1, de-duplicated, sorted by key. */
  readonly selectors: readonly Selector[];
  readonly x509SvidTtlMs?: number | undefined;
  readonly jwtSvidTtlMs?: number | undefined;
  /** In the given order (the first one becomes the leaf's CN), no duplicates. */
  readonly dnsNames: readonly string[];
  readonly hint?: string | undefined;
}

/** A stored entry. */
export interface RegistrationEntry extends EntryInput {
  readonly id: string;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Store revision at which this entry was (last) written. */
  readonly revision: number;
}

/** JSON form of an entry (programmatic ms TTLs; what `validateEntryInput` accepts back). */
export interface EntryDocument {
  id?: string;
  spiffeId: string;
  parentId: string;
  selectors: string[];
  x509SvidTtlMs?: number;
  jwtSvidTtlMs?: number;
  dnsNames: string[];
  hint?: string;
}

export const MAX_ENTRY_SELECTORS = 64;
/** Same bound as the X509-SVID minter (src/identity/x509/mint.ts MAX_DNS_NAMES). */
export const MAX_ENTRY_DNS_NAMES = 32;
/** Workload API hint: "≤1024 bytes SHOULD" (reference §1, X509SVID.hint). */
export const MAX_ENTRY_HINT_BYTES = 1024;
export const MIN_SVID_TTL_MS = 1000;
/** Defaults equal CaManager's defaults; the composition root passes the CA's configured maxima. */
export const DEFAULT_MAX_X509_SVID_TTL_MS = 3_600_000;
export const DEFAULT_MAX_JWT_SVID_TTL_MS = 300_000;
/** `[A-Za-z0-9]` then up to 127 of `[A-Za-z0-9._-]`; random ids are 32 lower-case hex digits. */
export const ENTRY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Field names accepted by `validateEntryInput`. */
export const ENTRY_INPUT_FIELDS = [
  'id',
  'spiffeId',
  'parentId',
  'selectors',
  'x509SvidTtl',
  'x509SvidTtlMs',
  'jwtSvidTtl',
  'jwtSvidTtlMs',
  'dnsNames',
  'hint',
] as const;

export interface EntryValidationOptions {
  /** Entries (spiffeId and parentId) must be in this trust domain. */
  trustDomain: TrustDomain;
  /** Largest X509-SVID TTL (default DEFAULT_MAX_X509_SVID_TTL_MS). */
  maxX509SvidTtlMs?: number;
  /** Largest JWT-SVID TTL (default DEFAULT_MAX_JWT_SVID_TTL_MS). */
  maxJwtSvidTtlMs?: number;
}

// RFC 1035/5280 preferred name syntax, lowercase, optional leading "*." label: the same rule as the
// X509-SVID minter (src/identity/x509/mint.ts checkDnsNames), so that a valid entry never fails minting.
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const MAX_DNS_NAME_LENGTH = 253;
const FIELD_SET: ReadonlySet<string> = new Set(ENTRY_INPUT_FIELDS);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

/** Control characters or a lone UTF-16 surrogate (which has no UTF-8 encoding). */
function hasControlOrLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/**
 * Validate untrusted entry input (a plain object) and normalise it. Throws `EntryValidationError` listing
 * every problem. Accepted fields: `ENTRY_INPUT_FIELDS`; unknown fields are refused. TTLs may be given as
 * duration strings (`x509SvidTtl: "1h"`, policy form) or as integer ms (`x509SvidTtlMs`), not both.
 */
export function validateEntryInput(raw: unknown, opts: EntryValidationOptions): EntryInput {
  const problems: EntryProblem[] = [];
  const bad = (path: string, message: string): void => {
    problems.push({ path, message });
  };
  if (!isPlainObject(raw)) throw new EntryValidationError([{ path: '', message: `an entry must be an object (got ${show(raw)})` }]);
  const td = opts.trustDomain;
  const maxX509 = opts.maxX509SvidTtlMs ?? DEFAULT_MAX_X509_SVID_TTL_MS;
  const maxJwt = opts.maxJwtSvidTtlMs ?? DEFAULT_MAX_JWT_SVID_TTL_MS;

  for (const k of Object.keys(raw)) if (!FIELD_SET.has(k)) bad(k.slice(0, 64), 'unknown field');
  const field = (k: (typeof ENTRY_INPUT_FIELDS)[number]): unknown => raw[k];

  // id
  let id: string | undefined;
  const rawId = field('id');
  if (rawId !== undefined) {
    if (typeof rawId !== 'string' || !ENTRY_ID_PATTERN.test(rawId)) {
      bad('id', `must match ${ENTRY_ID_PATTERN.source} (got ${show(rawId)})`);
    } else id = rawId;
  }

  // spiffeId, parentId: SPIFFE-ID 2, in our trust domain, with a path (a trust domain ID names no workload)
  const spiffeIdField = (name: 'spiffeId' | 'parentId'): SpiffeId | undefined => {
    const v = field(name);
    if (v === undefined) {
      bad(name, 'is required');
      return undefined;
    }
    let parsed: SpiffeId;
    try {
      parsed = SpiffeId.parse(v instanceof SpiffeId ? v.toString() : v);
    } catch (e) {
      if (!(e instanceof SpiffeIdError)) throw e;
      bad(name, `${e.message} (${e.code})`);
      return undefined;
    }
    if (!parsed.trustDomain.equals(td)) {
      bad(name, `must be in trust domain "${td.name}" (got "${parsed.trustDomain.name}")`);
      return undefined;
    }
    if (parsed.isTrustDomainId) {
      bad(name, 'must have a path (a trust domain ID is not a workload or agent identity)');
      return undefined;
    }
    return parsed;
  };
  const spiffeId = spiffeIdField('spiffeId');
  const parentId = spiffeIdField('parentId');

  // selectors: 1..64, each valid; duplicates are merged
  let selectors: Selector[] = [];
  const rawSelectors = field('selectors');
  if (rawSelectors === undefined) bad('selectors', 'is required (at least one selector)');
  else if (!Array.isArray(rawSelectors)) bad('selectors', `must be an array (got ${show(rawSelectors)})`);
  else if (rawSelectors.length === 0) bad('selectors', 'needs at least one selector (an entry without selectors would match every workload)');
  else if (rawSelectors.length > MAX_ENTRY_SELECTORS) bad('selectors', `at most ${MAX_ENTRY_SELECTORS} selectors (got ${rawSelectors.length})`);
  else {
    const ok: Selector[] = [];
    rawSelectors.forEach((s: unknown, i: number) => {
      try {
        ok.push(toSelector(s));
      } catch (e) {
        if (!(e instanceof SelectorError)) throw e;
        bad(`selectors[${i}]`, `${e.message} (${e.code})`);
      }
    });
    selectors = normalizeSelectors(ok);
  }

  // TTLs
  const ttl = (textKey: 'x509SvidTtl' | 'jwtSvidTtl', msKey: 'x509SvidTtlMs' | 'jwtSvidTtlMs', max: number): number | undefined => {
    const text = field(textKey);
    const ms = field(msKey);
    if (text !== undefined && ms !== undefined) {
      bad(textKey, `give either ${textKey} or ${msKey}, not both`);
      return undefined;
    }
    if (text !== undefined) {
      try {
        return parseDuration(text, { min: MIN_SVID_TTL_MS, max });
      } catch (e) {
        if (!(e instanceof DurationError)) throw e;
        bad(textKey, `${e.message} (${e.code})`);
        return undefined;
      }
    }
    if (ms !== undefined) {
      if (typeof ms !== 'number' || !Number.isSafeInteger(ms)) bad(msKey, `must be an integer number of milliseconds (got ${show(ms)})`);
      else if (ms < MIN_SVID_TTL_MS || ms > max) bad(msKey, `must be between ${MIN_SVID_TTL_MS} and ${max} ms (got ${ms})`);
      else return ms;
    }
    return undefined;
  };
  const x509SvidTtlMs = ttl('x509SvidTtl', 'x509SvidTtlMs', maxX509);
  const jwtSvidTtlMs = ttl('jwtSvidTtl', 'jwtSvidTtlMs', maxJwt);

  // dnsNames
  const dnsNames: string[] = [];
  const rawDns = field('dnsNames');
  if (rawDns !== undefined) {
    if (!Array.isArray(rawDns)) bad('dnsNames', `must be an array (got ${show(rawDns)})`);
    else if (rawDns.length > MAX_ENTRY_DNS_NAMES) bad('dnsNames', `at most ${MAX_ENTRY_DNS_NAMES} DNS names (got ${rawDns.length})`);
    else {
      const seen = new Set<string>();
      rawDns.forEach((n: unknown, i: number) => {
        if (typeof n !== 'string' || n.length > MAX_DNS_NAME_LENGTH || !DNS_NAME.test(n)) {
          bad(`dnsNames[${i}]`, `not a valid lower-case DNS name (got ${show(n)})`);
        } else if (seen.has(n)) bad(`dnsNames[${i}]`, `duplicate DNS name "${n}"`);
        else {
          seen.add(n);
          dnsNames.push(n);
        }
      });
    }
  }

  // hint: Workload API hint, 1..1024 bytes, no control characters
  let hint: string | undefined;
  const rawHint = field('hint');
  if (rawHint !== undefined) {
    if (typeof rawHint !== 'string') bad('hint', `must be a string (got ${show(rawHint)})`);
    else if (rawHint.length === 0) bad('hint', 'must not be empty (omit it instead)');
    else if (Buffer.byteLength(rawHint, 'utf8') > MAX_ENTRY_HINT_BYTES) bad('hint', `must be at most ${MAX_ENTRY_HINT_BYTES} bytes`);
    else if (hasControlOrLoneSurrogate(rawHint)) bad('hint', 'must not contain control characters or lone surrogates');
    else hint = rawHint;
  }

  if (problems.length > 0 || spiffeId === undefined || parentId === undefined) throw new EntryValidationError(problems);
  return Object.freeze({
    ...(id === undefined ? {} : { id }),
    spiffeId,
    parentId,
    selectors: Object.freeze(selectors),
    ...(x509SvidTtlMs === undefined ? {} : { x509SvidTtlMs }),
    ...(jwtSvidTtlMs === undefined ? {} : { jwtSvidTtlMs }),
    dnsNames: Object.freeze(dnsNames),
    ...(hint === undefined ? {} : { hint }),
  });
}

/** JSON form of an entry's content (the inverse of `validateEntryInput`). */
export function entryToDocument(e: EntryInput): EntryDocument {
  const doc: EntryDocument = {
    spiffeId: e.spiffeId.toString(),
    parentId: e.parentId.toString(),
    selectors: e.selectors.map(selectorKey),
    dnsNames: [...e.dnsNames],
  };
  if (e.id !== undefined) doc.id = e.id;
  if (e.x509SvidTtlMs !== undefined) doc.x509SvidTtlMs = e.x509SvidTtlMs;
  if (e.jwtSvidTtlMs !== undefined) doc.jwtSvidTtlMs = e.jwtSvidTtlMs;
  if (e.hint !== undefined) doc.hint = e.hint;
  return doc;
}

/**
 * The columns in which the entry stores (the cloud's and the edge's SQLite `entries` tables) keep an
 * entry: selectors and DNS names as JSON arrays, absent optional fields as NULL.
 */
export interface EntryColumns {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: string;
  dedupe_key: string;
  x509_svid_ttl_ms: number | null;
  jwt_svid_ttl_ms: number | null;
  dns_names: string;
  hint: string | null;
  created_at: number;
  revision: number;
}

export function entryToColumns(e: RegistrationEntry): EntryColumns {
  return {
    id: e.id,
    spiffe_id: e.spiffeId.toString(),
    parent_id: e.parentId.toString(),
    selectors: JSON.stringify(e.selectors.map(selectorKey)),
    dedupe_key: entryDedupeKey(e),
    x509_svid_ttl_ms: e.x509SvidTtlMs ?? null,
    jwt_svid_ttl_ms: e.jwtSvidTtlMs ?? null,
    dns_names: JSON.stringify(e.dnsNames),
    hint: e.hint ?? null,
    created_at: e.createdAt,
    revision: e.revision,
  };
}

/** The raw entry document stored in `row`, for `validateEntryInput` (throws SyntaxError on malformed JSON). */
export function entryDocumentFromColumns(row: EntryColumns): Record<string, unknown> {
  return {
    id: row.id,
    spiffeId: row.spiffe_id,
    parentId: row.parent_id,
    selectors: JSON.parse(row.selectors) as unknown,
    ...(row.x509_svid_ttl_ms === null ? {} : { x509SvidTtlMs: row.x509_svid_ttl_ms }),
    ...(row.jwt_svid_ttl_ms === null ? {} : { jwtSvidTtlMs: row.jwt_svid_ttl_ms }),
    dnsNames: JSON.parse(row.dns_names) as unknown,
    ...(row.hint === null ? {} : { hint: row.hint }),
  };
}

/**
 * What makes two entries "the same registration" (SPIRE's uniqueness rule: same spiffeId, parentId and
 * selector set): sha256 hex of a canonical encoding. TTLs, DNS names and hint are not part of it.
 */
export function entryDedupeKey(e: Pick<EntryInput, 'spiffeId' | 'parentId' | 'selectors'>): string {
  const keys = normalizeSelectors(e.selectors).map(selectorKey);
  return createHash('sha256')
    .update(JSON.stringify([e.spiffeId.toString(), e.parentId.toString(), keys]))
    .digest('hex');
}

/** A stable id for an entry without one (policy files): 32 hex digits derived from `entryDedupeKey`. */
export function derivedEntryId(e: Pick<EntryInput, 'spiffeId' | 'parentId' | 'selectors'>): string {
  return entryDedupeKey(e).slice(0, 32);
}

/** Same content (all fields except id, createdAt and revision)? */
export function sameEntryContent(a: EntryInput, b: EntryInput): boolean {
  const da = entryToDocument(a);
  const db = entryToDocument(b);
  delete da.id;
  delete db.id;
  return JSON.stringify(da) === JSON.stringify(db);
}

// ---------------------------------------------------------------------------------------------------------
// Matching

/** Anything with selectors can be matched (RegistrationEntry, or a caller's own entry type). */
export interface MatchableEntry {
  readonly selectors: readonly Selector[];
}

interface Indexed<E> {
  readonly entry: E;
  readonly keys: readonly string[];
  readonly order: number;
}

/**
 * Subset-matching index (reference §3: entry selectors ⊆ workload selectors). Each entry is filed under
 * its RAREST selector key (fewest entries share it), so a lookup visits only entries whose rarest
 * selector the caller has, and every entry is visited at most once. Entries without selectors never
 * match (deny by default). Immutable: build a new index when the entry set changes.
 */
export class EntryIndex<E extends MatchableEntry = RegistrationEntry> {
  readonly size: number;
  readonly #buckets = new Map<string, Indexed<E>[]>();

  constructor(entries: Iterable<E>) {
    const list: { entry: E; keys: string[] }[] = [];
    const freq = new Map<string, number>();
    for (const entry of entries) {
      const keys = [...new Set(entry.selectors.map(selectorKey))];
      list.push({ entry, keys });
      for (const k of keys) freq.set(k, (freq.get(k) ?? 0) + 1);
    }
    this.size = list.length;
    list.forEach(({ entry, keys }, order) => {
      if (keys.length === 0) return;
      let anchor = keys[0] as string;
      let best = freq.get(anchor) ?? 0;
      for (const k of keys) {
        const f = freq.get(k) ?? 0;
        if (f < best || (f === best && k < anchor)) {
          anchor = k;
          best = f;
        }
      }
      let bucket = this.#buckets.get(anchor);
      if (bucket === undefined) this.#buckets.set(anchor, (bucket = []));
      bucket.push({ entry, keys, order });
    });
  }

  /** Entries all of whose selectors are among `selectors`, in the order they were given to the constructor. */
  match(selectors: Iterable<Selector>): E[] {
    return this.matchKeys(keySet(selectors));
  }

  /** Like `match`, with the caller's selectors given as a set of `selectorKey`s. */
  matchKeys(have: ReadonlySet<string>): E[] {
    const hits: Indexed<E>[] = [];
    for (const k of have) {
      const bucket = this.#buckets.get(k);
      if (bucket === undefined) continue;
      for (const c of bucket) if (c.keys.every((x) => have.has(x))) hits.push(c);
    }
    if (hits.length > 1) hits.sort((a, b) => a.order - b.order);
    return hits.map((h) => h.entry);
  }
}

function keySet(list: Iterable<Selector>): Set<string> {
  const out = new Set<string>();
  for (const s of list) out.add(selectorKey(s));
  return out;
}

/**
 * Entries whose selectors are ALL among the caller's (subset rule, reference §3), in input order. Pass an
 * `EntryIndex` for repeated lookups over the same entries; an iterable is scanned linearly.
 */
export function matchEntries<E extends MatchableEntry>(entries: EntryIndex<E> | Iterable<E>, selectors: Iterable<Selector>): E[] {
  if (entries instanceof EntryIndex) return entries.match(selectors);
  const have = keySet(selectors);
  const out: E[] = [];
  for (const e of entries) {
    if (e.selectors.length > 0 && e.selectors.every((s) => have.has(selectorKey(s)))) out.push(e);
  }
  return out;
}
