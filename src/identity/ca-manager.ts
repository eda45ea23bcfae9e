/**
 * The CA manager: a long-lived root plus rotating signing CAs (and JWT signing keys) that move through
 * prepared -> active -> old, after SPIRE's server CA rotation (spiffe.md 3 "CA rotation"):
 *
 * - a new signing CA is *prepared* at 1/2 of the active CA's lifetime and enters the bundle at once,
 *   before it signs anything (so relying parties learn it ahead of use);
 * - it is *activated* at 5/6 of the active CA's lifetime; the previous one becomes *old*;
 * - an old CA stays in the bundle until every SVID it signed has expired, then it is retired.
 *
 * The active CA's remaining life therefore stays between 2/3 and 1/6 of the CA lifetime; SVIDs are capped
 * by their CA's NotAfter, so a configuration whose CA lifetime is under 6x the SVID lifetime would
 * silently shorten SVIDs (SPIRE issues #1266, #7199) and is refused.
 *
 * Pure: no I/O, no timers. `tick(now)` advances the state machine; the caller persists `snapshot()` and
 * keeps keys wherever its KeyStore puts them.
 */
import { randomBytes } from 'node:crypto';
import { TrustBundle } from './bundle.js';
import { EdgewardError } from './errors.js';
import { mintJwtSvidSync } from './jwt-svid.js';
import type { SpiffeId, TrustDomain } from './spiffe-id.js';
import { parseCertificate, type ParsedCertificate } from './x509/certificate.js';
import {
  mintRootCa,
  mintSigningCa,
  mintX509Svid,
  mintX509SvidFromCsr,
  mintCodeSigningCert,
  type CertIssuer,
  type IssuedCert,
} from './x509/mint.js';
import type { KeyStore, Signer } from './x509/signer.js';

export type CaManagerErrorCode = 'ca/bad-config' | 'ca/no-active-ca' | 'ca/bad-state' | 'ca/missing-key' | 'ca/ttl-too-long';
export class CaManagerError extends EdgewardError<CaManagerErrorCode> {}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export interface CaManagerConfig {
  trustDomain: TrustDomain;
  /** Lifetime of the root CA (default 10 years). Root rotation is an operator action. */
  rootTtlMs?: number;
  /** Lifetime of each signing CA (default 24 h, as SPIRE's ca_ttl). */
  caTtlMs?: number;
  /** The longest X509-SVID lifetime this CA will be asked for (default 1 h). */
  maxX509SvidTtlMs?: number;
  /** The longest JWT-SVID lifetime (default 5 min). */
  maxJwtSvidTtlMs?: number;
}

export type SlotState = 'prepared' | 'active' | 'old';

export interface CaSlot {
  id: string;
  state: SlotState;
  cert: ParsedCertificate;
  /** KeyStore id of the CA key. */
  keyId: string;
  /** JWT signing key: `kid` published in the bundle and KeyStore id. */
  jwtKid: string;
  jwtKeyId: string;
  /** When the slot stopped signing (became old). Everything it signed expires by oldSince + the longest TTL. */
  oldSince: number | undefined;
}

export interface CaSnapshot {
  version: 1;
  trustDomain: string;
  root: { certDer: string; keyId: string };
  slots: Array<{ id: string; state: SlotState; certDer: string; keyId: string; jwtKid: string; jwtKeyId: string; oldSince?: number }>;
  sequence: number;
}

export type CaEvent =
  | { kind: 'root-created'; serial: string }
  | { kind: 'prepared'; slot: string; serial: string }
  | { kind: 'activated'; slot: string; serial: string }
  | { kind: 'retired'; slot: string; serial: string };

export interface JwtSigningKey {
  kid: string;
  signer: Signer;
}

function randomId(): string {
  return randomBytes(16).toString('hex');
}

export class CaManager {
  readonly trustDomain: TrustDomain;
  readonly rootTtlMs: number;
  readonly caTtlMs: number;
  readonly maxX509SvidTtlMs: number;
  readonly maxJwtSvidTtlMs: number;
  readonly #keys: KeyStore;
  #root: { cert: ParsedCertificate; keyId: string } | undefined;
  #slots: CaSlot[] = [];
  #sequence = 0;

  constructor(config: CaManagerConfig, keys: KeyStore) {
    this.trustDomain = config.trustDomain;
    this.rootTtlMs = config.rootTtlMs ?? 3650 * DAY;
    this.caTtlMs = config.caTtlMs ?? DAY;
    this.maxX509SvidTtlMs = config.maxX509SvidTtlMs ?? HOUR;
    this.maxJwtSvidTtlMs = config.maxJwtSvidTtlMs ?? 5 * 60_000;
    this.#keys = keys;
    const problems: string[] = [];
    for (const [name, v] of [
      ['rootTtlMs', this.rootTtlMs],
      ['caTtlMs', this.caTtlMs],
      ['maxX509SvidTtlMs', this.maxX509SvidTtlMs],
      ['maxJwtSvidTtlMs', this.maxJwtSvidTtlMs],
    ] as const) {
      if (!Number.isFinite(v) || v < 1000) problems.push(`${name} must be at least one second`);
    }
    const longest = Math.max(this.maxX509SvidTtlMs, this.maxJwtSvidTtlMs);
    if (this.caTtlMs < 6 * longest) {
      problems.push(`CA lifetime (${this.caTtlMs} ms) must be at least 6x the longest SVID lifetime (${longest} ms)`);
    }
    if (this.rootTtlMs < 2 * this.caTtlMs) problems.push('root lifetime must be at least twice the CA lifetime');
    if (problems.length > 0) throw new CaManagerError('ca/bad-config', problems.join('; '));
  }

  /** Restore from a snapshot; keys must be in `keys` under the recorded ids. */
  static restore(config: CaManagerConfig, keys: KeyStore, snap: CaSnapshot): CaManager {
    const m = new CaManager(config, keys);
    if (snap.version !== 1 || snap.trustDomain !== config.trustDomain.name) {
      throw new CaManagerError('ca/bad-state', 'CA state is for another trust domain or version');
    }
    const load = (b64: string): ParsedCertificate => parseCertificate(Buffer.from(b64, 'base64'));
    m.#root = { cert: load(snap.root.certDer), keyId: snap.root.keyId };
    m.#slots = snap.slots.map((s) => ({ ...s, oldSince: s.oldSince, cert: load(s.certDer) }));
    m.#sequence = snap.sequence;
    for (const id of [snap.root.keyId, ...snap.slots.flatMap((s) => [s.keyId, s.jwtKeyId])]) {
      if (keys.get(id) === undefined) throw new CaManagerError('ca/missing-key', `CA key ${id} is missing from the key store`);
    }
    if (m.#slots.filter((s) => s.state === 'active').length > 1) throw new CaManagerError('ca/bad-state', 'two active CAs');
    return m;
  }

  snapshot(): CaSnapshot {
    if (this.#root === undefined) throw new CaManagerError('ca/no-active-ca', 'CA not initialised');
    return {
      version: 1,
      trustDomain: this.trustDomain.name,
      root: { certDer: this.#root.cert.raw.toString('base64'), keyId: this.#root.keyId },
      slots: this.#slots.map((s) => ({
        id: s.id,
        state: s.state,
        certDer: s.cert.raw.toString('base64'),
        keyId: s.keyId,
        jwtKid: s.jwtKid,
        jwtKeyId: s.jwtKeyId,
        ...(s.oldSince === undefined ? {} : { oldSince: s.oldSince }),
      })),
      sequence: this.#sequence,
    };
  }

  /** Bundle sequence number: changes whenever the set of published authorities changes. */
  get sequence(): number {
    return this.#sequence;
  }

  get root(): ParsedCertificate {
    if (this.#root === undefined) throw new CaManagerError('ca/no-active-ca', 'CA not initialised');
    return this.#root.cert;
  }

  get slots(): readonly Readonly<CaSlot>[] {
    return this.#slots;
  }

  /** Advance the rotation state machine to `now`. Returns what happened, in order. */
  tick(now: number): CaEvent[] {
    const events: CaEvent[] = [];
    if (this.#root === undefined || this.#root.cert.notAfter <= now) {
      if (this.#root !== undefined) throw new CaManagerError('ca/bad-state', 'the root CA has expired; rotate the root');
      const keyId = `root-${randomId()}`;
      const root = mintRootCa({ trustDomain: this.trustDomain, signer: this.#keys.generate(keyId), now, ttlMs: this.rootTtlMs });
      this.#root = { cert: root.parsed, keyId };
      this.#sequence++;
      events.push({ kind: 'root-created', serial: root.parsed.serialHex });
    }
    // Retire old slots once everything they signed has expired: an old slot signs nothing, and what it
    // signed before lived at most the longest TTL (and never past the CA's own NotAfter).
    const longest = Math.max(this.maxX509SvidTtlMs, this.maxJwtSvidTtlMs);
    for (const s of this.#slots.filter((x) => x.state === 'old')) {
      if (now > Math.min(s.cert.notAfter, (s.oldSince ?? now) + longest)) this.#retire(s, events);
    }
    let active = this.#slots.find((s) => s.state === 'active');
    if (active !== undefined && active.cert.notAfter <= now) {
      // The active CA expired (the manager was not ticked in time): it can no longer sign.
      this.#retire(active, events);
      active = undefined;
    }
    if (active === undefined) {
      let prepared = this.#slots.find((s) => s.state === 'prepared');
      if (prepared === undefined || prepared.cert.notAfter <= now) prepared = this.#prepare(now, events);
      prepared.state = 'active';
      this.#sequence++;
      events.push({ kind: 'activated', slot: prepared.id, serial: prepared.cert.serialHex });
      return events;
    }
    const lifetime = active.cert.notAfter - active.cert.notBefore;
    const age = now - active.cert.notBefore;
    let prepared = this.#slots.find((s) => s.state === 'prepared');
    if (prepared === undefined && age >= lifetime / 2) prepared = this.#prepare(now, events);
    if (prepared !== undefined && age >= (lifetime * 5) / 6) {
      active.state = 'old';
      active.oldSince = now;
      prepared.state = 'active';
      this.#sequence++;
      events.push({ kind: 'activated', slot: prepared.id, serial: prepared.cert.serialHex });
    }
    return events;
  }

  #prepare(now: number, events: CaEvent[]): CaSlot {
    const id = randomId();
    const keyId = `ca-${id}`;
    const jwtKeyId = `jwt-${id}`;
    const signer = this.#keys.generate(keyId);
    this.#keys.generate(jwtKeyId);
    const cert = mintSigningCa({ trustDomain: this.trustDomain, spki: signer.spki, issuer: this.#rootIssuer(), now, ttlMs: this.caTtlMs });
    const slot: CaSlot = { id, state: 'prepared', cert: cert.parsed, keyId, jwtKid: randomId(), jwtKeyId, oldSince: undefined };
    this.#slots.push(slot);
    this.#sequence++;
    events.push({ kind: 'prepared', slot: id, serial: cert.parsed.serialHex });
    return slot;
  }

  #retire(s: CaSlot, events: CaEvent[]): void {
    this.#slots = this.#slots.filter((x) => x !== s);
    this.#keys.delete(s.keyId);
    this.#keys.delete(s.jwtKeyId);
    this.#sequence++;
    events.push({ kind: 'retired', slot: s.id, serial: s.cert.serialHex });
  }

  #rootIssuer(): CertIssuer {
    const r = this.#root;
    if (r === undefined) throw new CaManagerError('ca/no-active-ca', 'CA not initialised');
    return { cert: r.cert, signer: this.#signer(r.keyId) };
  }

  #signer(keyId: string): Signer {
    const s = this.#keys.get(keyId);
    if (s === undefined) throw new CaManagerError('ca/missing-key', `CA key ${keyId} is missing from the key store`);
    return s;
  }

  #active(now: number): CaSlot {
    const a = this.#slots.find((s) => s.state === 'active');
    if (a === undefined || a.cert.notAfter <= now) throw new CaManagerError('ca/no-active-ca', 'no active signing CA; call tick()');
    return a;
  }

  /** The issuer for X509-SVIDs at `now` (the active signing CA). */
  activeIssuer(now: number): CertIssuer {
    return this.#issuerOf(this.#active(now));
  }

  #issuerOf(slot: CaSlot): CertIssuer {
    return { cert: slot.cert, signer: this.#signer(slot.keyId) };
  }

  /** The JWT-SVID signing key at `now`. */
  activeJwtKey(now: number): JwtSigningKey {
    const a = this.#active(now);
    return { kid: a.jwtKid, signer: this.#signer(a.jwtKeyId) };
  }

  /** The X.509 chain a leaf signed now should carry: the signing CA (the root is in the bundle). */
  intermediates(now: number): Buffer[] {
    return [this.#active(now).cert.raw];
  }

  #checkTtl(ttlMs: number, max: number, what: string): void {
    if (!Number.isFinite(ttlMs) || ttlMs < 1000 || ttlMs > max) {
      throw new CaManagerError('ca/ttl-too-long', `${what} TTL must be between 1 s and ${max} ms`);
    }
  }

  issueX509SvidFromCsr(r: { spiffeId: SpiffeId; csr: Buffer; ttlMs: number; dnsNames?: readonly string[]; now: number }): IssuedCert {
    this.#checkTtl(r.ttlMs, this.maxX509SvidTtlMs, 'X509-SVID');
    const slot = this.#active(r.now);
    return mintX509SvidFromCsr({ ...r, issuer: this.#issuerOf(slot) });
  }

  /** Issue for a public key already proven to belong to the subject (e.g. generated in-process). */
  issueX509Svid(r: { spiffeId: SpiffeId; spki: Buffer; ttlMs: number; dnsNames?: readonly string[]; now: number }): IssuedCert {
    this.#checkTtl(r.ttlMs, this.maxX509SvidTtlMs, 'X509-SVID');
    const slot = this.#active(r.now);
    return mintX509Svid({ ...r, issuer: this.#issuerOf(slot) });
  }

  issueCodeSigningCert(r: { spiffeId: SpiffeId; spki: Buffer; ttlMs: number; now: number }): IssuedCert {
    this.#checkTtl(r.ttlMs, this.maxX509SvidTtlMs, 'code-signing');
    const slot = this.#active(r.now);
    return mintCodeSigningCert({ ...r, issuer: this.#issuerOf(slot) });
  }

  /** X.509 authorities to publish: the root, then every prepared, active and old signing CA. */
  x509Authorities(): Buffer[] {
    return [this.root.raw, ...this.#slots.map((s) => s.cert.raw)];
  }

  /** JWT authorities to publish: kid -> public key, for every prepared, active and old slot. */
  jwtAuthorities(): Map<string, import('node:crypto').KeyObject> {
    return new Map(this.#slots.map((s) => [s.jwtKid, this.#signer(s.jwtKeyId).publicKey]));
  }

  /** The trust domain's bundle: every published X.509 and JWT authority, with the current sequence. */
  bundle(refreshHintSeconds?: number): TrustBundle {
    // The published authorities change only with `sequence`: one bundle object per sequence (callers may
    // memoise on the object, e.g. bundleToJson).
    if (refreshHintSeconds === undefined && this.#bundleCache?.sequence === this.sequence) return this.#bundleCache.bundle;
    const b = TrustBundle.create({
      trustDomain: this.trustDomain,
      x509Authorities: this.x509Authorities(),
      jwtAuthorities: this.jwtAuthorities(),
      sequence: this.sequence,
      ...(refreshHintSeconds === undefined ? {} : { refreshHintSeconds }),
    });
    if (refreshHintSeconds === undefined) this.#bundleCache = { sequence: this.sequence, bundle: b };
    return b;
  }
  #bundleCache: { sequence: number; bundle: TrustBundle } | undefined;

  /** Mint a JWT-SVID with the active JWT key; `exp` never passes the active CA's NotAfter. */
  mintJwtSvid(r: { spiffeId: SpiffeId; audience: readonly string[]; ttlMs: number; now: number }): string {
    this.#checkTtl(r.ttlMs, this.maxJwtSvidTtlMs, 'JWT-SVID');
    const slot = this.#active(r.now);
    return mintJwtSvidSync({ ...r, key: { kid: slot.jwtKid, privateKey: this.#signer(slot.jwtKeyId).privateKey }, notAfter: slot.cert.notAfter });
  }
}
