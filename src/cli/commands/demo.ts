/**
 * `edgeward demo`: what `npm start` runs. It exercises only what exists today, for real, in memory:
 * a trust domain CA (root + rotating signing CA) from the identity core, an X509-SVID and a JWT-SVID
 * issued by it, both validated against the trust domain's bundle.
 *
 * TODO: replace with the three user flows (attested node join, mTLS-only device provisioning, signed
 * release verification) as cloud, edge and the supply chain appear.
 */
import {
  bundleToJson,
  CaManager,
  certToPem,
  generateP256,
  MemoryKeyStore,
  SpiffeId,
  spkiFromPublicKey,
  TrustDomain,
  validateJwtSvidSync,
  validateX509Svid,
  x509AuthoritiesPem,
} from '../../identity/index.js';
import { defineCommand } from '../command.js';

const DEMO_TRUST_DOMAIN = 'demo.edgeward.test';
const X509_SVID_TTL_MS = 60 * 60 * 1000;
const JWT_SVID_TTL_MS = 5 * 60 * 1000;
const JWT_AUDIENCE = 'spiffe://demo.edgeward.test/demo/api';

const iso = (ms: number): string => new Date(ms).toISOString();

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'mint an in-memory CA, an X509-SVID and a JWT-SVID, validate both, print a summary',
  operands: '',
  args: {
    flags: {
      show: { type: 'boolean', description: 'also print the bundle (PEM and SPIFFE JSON), the SVID chain and the JWT-SVID' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const now = io.now();
    const td = TrustDomain.parse(DEMO_TRUST_DOMAIN);
    const ca = new CaManager({ trustDomain: td }, new MemoryKeyStore());
    ca.tick(now);
    const bundle = ca.bundle();
    const workload = SpiffeId.fromSegments(td, 'demo', 'workload');

    // X509-SVID for a key generated here (the workload's key never leaves it in a real deployment).
    const key = generateP256();
    const svid = ca.issueX509Svid({ spiffeId: workload, spki: spkiFromPublicKey(key.publicKey), ttlMs: X509_SVID_TTL_MS, now });
    const chain = [svid.der, ...ca.intermediates(now)];
    const x509 = validateX509Svid(chain, bundle, now);

    // JWT-SVID for one audience, signed with the CA's active JWT key.
    const token = ca.mintJwtSvid({ spiffeId: workload, audience: [JWT_AUDIENCE], ttlMs: JWT_SVID_TTL_MS, now });
    const jwt = validateJwtSvidSync(token, { audience: JWT_AUDIENCE, bundles: bundle, now });

    const signing = ca.slots.find((s) => s.state === 'active');
    const lines = [
      'Edgeward demo: everything below was created and checked in this process, in memory.',
      '',
      `trust domain   ${td.name}`,
      `root CA        serial ${ca.root.serialHex}, valid until ${iso(ca.root.notAfter)}`,
      `signing CA     serial ${signing?.cert.serialHex ?? '?'}, valid until ${signing === undefined ? '?' : iso(signing.cert.notAfter)}`,
      `bundle         ${bundle.x509Authorities.length} X.509 authorities, ${bundle.jwtAuthorities.size} JWT authority, sequence ${String(bundle.sequence)}`,
      '',
      `X509-SVID      ${svid.parsed.uris[0] ?? '?'}`,
      `               serial ${svid.parsed.serialHex}, valid until ${iso(svid.parsed.notAfter)}`,
      `  validation   valid for ${x509.spiffeId.toString()} (path: ${x509.path.length} certificates up to the bundle)`,
      `JWT-SVID       sub ${jwt.spiffeId.toString()}, aud ${jwt.audience.join(', ')}, expires ${iso(jwt.expiresAt)}`,
      `  validation   valid for audience ${JWT_AUDIENCE}`,
      '',
      'Inspect a chain yourself: edgeward x509 inspect CHAIN.pem --bundle BUNDLE.pem (or a SPIFFE bundle .json)',
      'Not in the demo yet: attested node join, mTLS-only device provisioning, signed release verification.',
    ];
    io.stdout(`${lines.join('\n')}\n`);
    if (flags.show) {
      io.stdout(
        [
          '',
          '# bundle (X.509 authorities, PEM)',
          x509AuthoritiesPem(bundle).trimEnd(),
          '# bundle (SPIFFE bundle JSON)',
          bundleToJson(bundle),
          '# X509-SVID chain (leaf, signing CA)',
          chain.map(certToPem).join('').trimEnd(),
          '# JWT-SVID',
          token,
          '',
        ].join('\n'),
      );
    }
    return 0;
  },
});
