/**
 * Identity-core throughput against the raw node:crypto cost of the same public-key operations, measured
 * in the same run (issue #2). Run pinned to one core: `npm run bench -- identity`.
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CaManager,
  MemoryKeyStore,
  SpiffeId,
  TrustDomain,
  generateP256,
  validateJwtSvidSync,
  validateX509Svid,
} from '../src/identity/index.js';
import { measure, report, type Row } from './harness.js';

const TARGET = 0.6;
const td = TrustDomain.parse('example.org');
const id = SpiffeId.parse('spiffe://example.org/ns/default/workload/bench');
const now = Date.now();
const ca = new CaManager({ trustDomain: td }, new MemoryKeyStore());
ca.tick(now);

// A real PKCS#10 CSR made by openssl, so that parsing and verification see what clients send.
const dir = mkdtempSync(join(tmpdir(), 'ew-bench-'));
execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=bench',
  '-keyout', join(dir, 'k.pem'), '-outform', 'DER', '-out', join(dir, 'csr.der')], { stdio: 'ignore' });
const csr = readFileSync(join(dir, 'csr.der'));
rmSync(dir, { recursive: true, force: true });

// ---- baselines: raw node:crypto P-256 operations (the physical limit)
// (Never JWK-export a key from generateKeyPairSync on Node 20: see generateP256. The JWK below comes
// from an ECDH-generated key.)
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const tbsLike = Buffer.alloc(400, 7);
const sig = sign('sha256', tbsLike, privateKey);
const probe = generateP256();
const jwk = probe.publicKey.export({ format: 'jwk' });
const probeSig = sign('sha256', tbsLike, probe.privateKey);
const signRate = measure(() => sign('sha256', tbsLike, privateKey)).opsPerSec;
const verifyRate = measure(() => verify('sha256', tbsLike, publicKey, sig)).opsPerSec;
const keygenRate = measure(() => generateKeyPairSync('ec', { namedCurve: 'P-256' })).opsPerSec;
const importVerifyRate = measure(() => verify('sha256', tbsLike, createPublicKey({ key: jwk, format: 'jwk' }), probeSig)).opsPerSec;
const combine = (...rates: number[]): number => 1 / rates.reduce((s, r) => s + 1 / r, 0);

// ---- figures
const csrRate = measure(() => ca.issueX509SvidFromCsr({ spiffeId: id, csr, ttlMs: 3_600_000, now })).opsPerSec;
// Full issuance as the Workload API needs it: a new key, its PKCS#8 for delivery, and the signed SVID.
const fullRate = measure(() => {
  const k = generateP256();
  k.pkcs8();
  return ca.issueX509Svid({ spiffeId: id, spki: k.spki, ttlMs: 3_600_000, now });
}).opsPerSec;

const svid = ca.issueX509Svid({ spiffeId: id, spki: generateP256().spki, ttlMs: 3_600_000, now });
const chain = [svid.der, ...ca.intermediates(now)];
const fullBundle = ca.x509Authorities(); // root + signing CAs: the leaf's issuer is an anchor
const rootOnly = [ca.root.raw]; // only the root: leaf -> intermediate -> root
const src = (auth: Buffer[]) => ({ x509AuthoritiesFor: (t: TrustDomain) => (t.equals(td) ? auth : undefined) });
const valRate = measure(() => validateX509Svid(chain, src(fullBundle), now)).opsPerSec;
const valRootRate = measure(() => validateX509Svid(chain, src(rootOnly), now)).opsPerSec;
// A chain whose bytes are new every time (no parse cache hit for the intermediate), to show the cold cost.
const valColdRate = measure(() => validateX509Svid([Buffer.from(svid.der), Buffer.from(chain[1]!)], src(rootOnly), now)).opsPerSec;

const rows: Row[] = [
  { figure: 'X509-SVID issuance from CSR', value: csrRate, baseline: combine(verifyRate, signRate), baselineName: '1 verify + 1 sign', target: TARGET },
  { figure: '  (same, vs key import + verify + sign)', value: csrRate, baseline: combine(importVerifyRate, signRate), baselineName: 'import+verify + sign' },
  { figure: 'X509-SVID full issuance (keygen + mint)', value: fullRate, baseline: combine(keygenRate, signRate), baselineName: '1 keygen + 1 sign', target: TARGET },
  { figure: 'chain validation, issuer in bundle', value: valRate, baseline: verifyRate, baselineName: '1 verify', target: TARGET },
  { figure: 'chain validation, root-only bundle', value: valRootRate, baseline: verifyRate / 2, baselineName: '2 verifies', target: TARGET },
  { figure: '  (same, intermediate bytes never seen)', value: valColdRate, baseline: verifyRate / 2, baselineName: '2 verifies' },
];

// ---- JWT-SVIDs: ES256 mint and validate, against one raw sign / one raw verify (P1363, as JWS uses).
const bundle = ca.bundle();
const jwtSig = sign('sha256', tbsLike, { key: privateKey, dsaEncoding: 'ieee-p1363' });
const jwsSignRate = measure(() => sign('sha256', tbsLike, { key: privateKey, dsaEncoding: 'ieee-p1363' })).opsPerSec;
const jwsVerifyRate = measure(() => verify('sha256', tbsLike, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jwtSig)).opsPerSec;
const jwtMintRate = measure(() => ca.mintJwtSvid({ spiffeId: id, audience: ['spiffe://example.org/api'], ttlMs: 300_000, now })).opsPerSec;
const token = ca.mintJwtSvid({ spiffeId: id, audience: ['spiffe://example.org/api'], ttlMs: 300_000, now });
const jwtValRate = measure(() => validateJwtSvidSync(token, { audience: 'spiffe://example.org/api', bundles: bundle, now })).opsPerSec;
rows.push(
  { figure: 'JWT-SVID mint (ES256)', value: jwtMintRate, baseline: jwsSignRate, baselineName: '1 sign', target: TARGET },
  { figure: 'JWT-SVID validate', value: jwtValRate, baseline: jwsVerifyRate, baselineName: '1 verify', target: TARGET },
);

report('identity (one core, P-256)', rows);
