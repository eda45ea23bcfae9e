import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CaManager,
  CaManagerError,
  certToPem,
  generateP256,
  ManualClock,
  MemoryKeyStore,
  SpiffeId,
  spkiFromPublicKey,
  TrustDomain,
  validateX509Svid,
  type CaManager as CaManagerT,
} from '../../../src/identity/index.js';

const HOUR = 3_600_000;
const td = TrustDomain.parse('example.org');
const T0 = Date.UTC(2026, 0, 1);

function bundleOf(m: CaManagerT) {
  const auth = m.x509Authorities();
  return { x509AuthoritiesFor: (t: TrustDomain) => (t.equals(td) ? auth : undefined) };
}
function issue(m: CaManagerT, now: number, ttlMs = HOUR) {
  return m.issueX509Svid({
    spiffeId: SpiffeId.parse('spiffe://example.org/w'),
    spki: spkiFromPublicKey(generateP256().publicKey),
    ttlMs,
    now,
  });
}

describe('CaManager configuration', () => {
  it('refuses a CA lifetime under 6x the SVID lifetime (spiffe.md 3: ca_ttl >= 6 x SVID TTL)', () => {
    expect(() => new CaManager({ trustDomain: td, caTtlMs: 5 * HOUR, maxX509SvidTtlMs: HOUR }, new MemoryKeyStore())).toThrow(CaManagerError);
    try {
      new CaManager({ trustDomain: td, caTtlMs: 5 * HOUR, maxX509SvidTtlMs: HOUR }, new MemoryKeyStore());
    } catch (e) {
      expect((e as CaManagerError).code).toBe('ca/bad-config');
    }
    expect(() => new CaManager({ trustDomain: td, caTtlMs: 6 * HOUR, maxX509SvidTtlMs: HOUR }, new MemoryKeyStore())).not.toThrow();
  });
  it('reports every configuration problem at once', () => {
    try {
      new CaManager({ trustDomain: td, caTtlMs: 10, maxX509SvidTtlMs: 0, rootTtlMs: 5 }, new MemoryKeyStore());
      expect.unreachable();
    } catch (e) {
      const msg = (e as Error).message;
      expect(msg).toMatch(/caTtlMs/);
      expect(msg).toMatch(/maxX509SvidTtlMs/);
      expect(msg).toMatch(/rootTtlMs/);
    }
  });
  it('refuses SVID TTLs over the configured maximum', () => {
    const m = new CaManager({ trustDomain: td }, new MemoryKeyStore());
    m.tick(T0);
    expect(() => issue(m, T0, 2 * HOUR)).toThrow(/TTL/);
  });
});

describe('CaManager rotation (spiffe.md 3 "CA rotation": prepared -> active -> old)', () => {
  it('walks through the phases at 1/2 and 5/6 of the CA lifetime', () => {
    const clock = new ManualClock(T0);
    const m = new CaManager({ trustDomain: td, caTtlMs: 24 * HOUR }, new MemoryKeyStore());
    const first = m.tick(clock.now());
    expect(first.map((e) => e.kind)).toEqual(['root-created', 'prepared', 'activated']);
    expect(m.slots.map((s) => s.state)).toEqual(['active']);
    const a = m.slots[0]!;
    const life = a.cert.notAfter - a.cert.notBefore;

    clock.set(a.cert.notBefore + life / 2 - 1000);
    expect(m.tick(clock.now())).toEqual([]);
    clock.set(a.cert.notBefore + life / 2);
    expect(m.tick(clock.now()).map((e) => e.kind)).toEqual(['prepared']);
    expect(m.slots.map((s) => s.state)).toEqual(['active', 'prepared']);
    // The prepared CA is published before it signs anything.
    const prepared = m.slots[1]!;
    expect(m.x509Authorities().some((d) => d.equals(prepared.cert.raw))).toBe(true);
    expect(m.activeIssuer(clock.now()).cert.serialHex).toBe(a.cert.serialHex);

    clock.set(a.cert.notBefore + Math.ceil((life * 5) / 6));
    expect(m.tick(clock.now()).map((e) => e.kind)).toEqual(['activated']);
    expect(m.slots.map((s) => s.state)).toEqual(['old', 'active']);
    expect(m.activeIssuer(clock.now()).cert.serialHex).toBe(prepared.cert.serialHex);
  });

  it('keeps the old CA in the bundle until every SVID it signed has expired', () => {
    const clock = new ManualClock(T0);
    const m = new CaManager({ trustDomain: td, caTtlMs: 24 * HOUR }, new MemoryKeyStore());
    m.tick(clock.now());
    const a = m.slots[0]!;
    const life = a.cert.notAfter - a.cert.notBefore;
    clock.set(a.cert.notBefore + life / 2);
    m.tick(clock.now());
    // Last SVID of the old CA, issued just before activation of the next.
    clock.set(a.cert.notBefore + Math.ceil((life * 5) / 6) - 1000);
    const svid = issue(m, clock.now());
    const chain = [svid.der, ...[a.cert.raw]];
    clock.advance(1000);
    m.tick(clock.now());
    // After the switch, the SVID of the old CA still validates against the current bundle.
    clock.advance(HOUR / 2);
    expect(m.tick(clock.now())).toEqual([]);
    expect(validateX509Svid(chain, bundleOf(m), clock.now()).spiffeId.toString()).toBe('spiffe://example.org/w');
    // Once the longest SVID lifetime has passed since the switch, the old CA is retired.
    clock.advance(HOUR / 2 + 1);
    expect(m.tick(clock.now()).map((e) => e.kind)).toEqual(['retired']);
    expect(m.x509Authorities().some((d) => d.equals(a.cert.raw))).toBe(false);
    expect(svid.parsed.notAfter).toBeLessThan(clock.now());
  });

  it('SVIDs never outlive their CA and every issued SVID passes openssl verify', () => {
    const clock = new ManualClock(Date.now());
    const m = new CaManager({ trustDomain: td, caTtlMs: 6 * HOUR }, new MemoryKeyStore());
    m.tick(clock.now());
    const svid = issue(m, clock.now());
    expect(svid.parsed.notAfter).toBeLessThanOrEqual(m.slots[0]!.cert.notAfter);
    const dir = mkdtempSync(join(tmpdir(), 'ew-ca-'));
    writeFileSync(join(dir, 'root.pem'), certToPem(m.root.raw));
    writeFileSync(join(dir, 'chain.pem'), m.intermediates(clock.now()).map(certToPem).join(''));
    writeFileSync(join(dir, 'svid.pem'), certToPem(svid.der));
    const out = execFileSync('openssl', ['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'chain.pem'), join(dir, 'svid.pem')]);
    expect(out.toString()).toMatch(/svid.pem: OK/);
  });

  it('bumps the bundle sequence on every change of the published authorities', () => {
    const clock = new ManualClock(T0);
    const m = new CaManager({ trustDomain: td }, new MemoryKeyStore());
    m.tick(clock.now());
    const s0 = m.sequence;
    const life = m.slots[0]!.cert.notAfter - m.slots[0]!.cert.notBefore;
    clock.advance(life / 2 + 20_000);
    m.tick(clock.now());
    expect(m.sequence).toBeGreaterThan(s0);
    expect(m.jwtAuthorities().size).toBe(2);
  });

  it('recovers after missing ticks: an expired active CA is replaced, never used', () => {
    const clock = new ManualClock(T0);
    const m = new CaManager({ trustDomain: td }, new MemoryKeyStore());
    m.tick(clock.now());
    const a = m.slots[0]!;
    clock.set(a.cert.notAfter + 1);
    expect(() => m.activeIssuer(clock.now())).toThrow(/no active signing CA/);
    const ev = m.tick(clock.now()).map((e) => e.kind);
    expect(ev).toContain('activated');
    expect(m.activeIssuer(clock.now()).cert.serialHex).not.toBe(a.cert.serialHex);
  });

  it('restores from a snapshot with keys from the key store, and refuses one with a missing key', () => {
    const keys = new MemoryKeyStore();
    const m = new CaManager({ trustDomain: td }, keys);
    m.tick(T0);
    const snap = JSON.parse(JSON.stringify(m.snapshot()));
    const r = CaManager.restore({ trustDomain: td }, keys, snap);
    expect(r.activeIssuer(T0).cert.serialHex).toBe(m.activeIssuer(T0).cert.serialHex);
    expect(() => CaManager.restore({ trustDomain: td }, new MemoryKeyStore(), snap)).toThrow(/missing/);
    expect(() => CaManager.restore({ trustDomain: TrustDomain.parse('other.org') }, keys, snap)).toThrow(/another trust domain/);
  });
});
