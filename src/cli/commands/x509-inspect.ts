/**
 * `edgeward x509 inspect FILE [--bundle FILE] [--trust-domain TD] [--json]`
 *
 * Shows the leaf of a PEM or DER certificate chain and, given a bundle, whether the chain is a valid
 * X509-SVID now (X509-SVID 5: path validation against the bundle of the leaf's trust domain, then the
 * leaf rules). The verdict comes from the identity core's `validateX509Svid`; this file only reads
 * files, picks the trust domain and formats.
 */
import {
  certsFromPem,
  EdgewardError,
  OID,
  parseBundleJson,
  parseCertificate,
  SpiffeId,
  splitDerCerts,
  TrustDomain,
  validateX509Svid,
  X509Error,
  type ParsedCertificate,
  type X509BundleSource,
} from '../../identity/index.js';
import { printable } from '../args.js';
import { defineCommand, type CliIo } from '../command.js';
import { CliError, CliUsageError } from '../errors.js';
import { readBoundedFile } from '../files.js';

const NAME = 'x509 inspect';

const EKU_NAMES: Readonly<Record<string, string>> = {
  [OID.serverAuth]: 'serverAuth',
  [OID.clientAuth]: 'clientAuth',
  [OID.codeSigning]: 'codeSigning',
  [OID.timeStamping]: 'timeStamping',
};

const isPem = (bytes: Buffer): boolean => bytes.includes('-----BEGIN');

const KEY_USAGE_NAMES = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
] as const;

/** Certificates of a PEM file (CERTIFICATE blocks) or of a DER file (one or more concatenated). */
function decodeCertificates(bytes: Buffer, path: string, what: string): Buffer[] {
  const ders = isPem(bytes) ? certsFromPem(bytes.toString('utf8')) : splitDerCerts(bytes);
  if (ders.length === 0) {
    throw new CliError('cli/no-certificates', `${printable(path)}: no certificates in this ${what} file`);
  }
  return ders;
}

function parseAll(ders: readonly Buffer[], path: string): ParsedCertificate[] {
  return ders.map((der, i) => {
    try {
      return parseCertificate(der);
    } catch (e) {
      if (e instanceof X509Error) {
        throw new X509Error(e.code, `${printable(path)}: certificate ${i + 1}: ${e.message}`, { cause: e });
      }
      throw e;
    }
  });
}

/** The leaf's SPIFFE ID if it has exactly one URI SAN that is a SPIFFE ID (X509-SVID 2), else undefined. */
function leafSpiffeId(leaf: ParsedCertificate): SpiffeId | undefined {
  if (leaf.uris.length !== 1) return undefined;
  try {
    return SpiffeId.parse(leaf.uris[0]);
  } catch {
    return undefined;
  }
}

function parseTrustDomainFlag(value: string | undefined): TrustDomain | undefined {
  if (value === undefined) return undefined;
  try {
    return TrustDomain.parse(value.startsWith('spiffe://') ? value.slice('spiffe://'.length) : value);
  } catch (e) {
    const detail = e instanceof EdgewardError ? `${e.code}: ${e.message}` : 'invalid';
    throw new CliUsageError(`--trust-domain ${printable(value)}: ${detail}`, { command: NAME, cause: e });
  }
}

interface LeafReport {
  spiffe_id: string | null;
  uris: string[];
  serial: string;
  not_before: string;
  not_after: string;
  is_ca: boolean;
  path_len: number | null;
  key_usage: { critical: boolean; usages: string[] } | null;
  ext_key_usage: { critical: boolean; usages: string[] } | null;
  dns_names: string[];
}

interface BundleReport {
  format: 'pem' | 'der' | 'spiffe-json';
  x509_authorities: number;
}

type SvidReport =
  | { valid: true; spiffe_id: string; trust_domain: string; path_length: number; bundle: BundleReport }
  | { valid: false; trust_domain: string | null; code: string; message: string; bundle: BundleReport };

interface InspectReport {
  file: string;
  certificates: number;
  leaf: LeafReport;
  svid?: SvidReport;
}

function leafReport(leaf: ParsedCertificate): LeafReport {
  const id = leafSpiffeId(leaf);
  return {
    spiffe_id: id === undefined ? null : id.toString(),
    uris: [...leaf.uris],
    serial: leaf.serialHex,
    not_before: new Date(leaf.notBefore).toISOString(),
    not_after: new Date(leaf.notAfter).toISOString(),
    is_ca: leaf.isCA,
    path_len: leaf.pathLen ?? null,
    key_usage: leaf.keyUsage.present
      ? { critical: leaf.keyUsage.critical, usages: KEY_USAGE_NAMES.filter((u) => leaf.keyUsage[u]) }
      : null,
    ext_key_usage:
      leaf.extKeyUsage === undefined
        ? null
        : { critical: leaf.extKeyUsageCritical, usages: leaf.extKeyUsage.map((o) => EKU_NAMES[o] ?? o) },
    dns_names: [...leaf.dnsNames],
  };
}

/** A SPIFFE bundle JSON document starts with `{` (after an optional BOM and white space). */
function looksLikeJson(bytes: Buffer): boolean {
  for (let i = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x7b;
  }
  return false;
}

/**
 * The bundle file as an X509BundleSource for trust domain `td`. A SPIFFE bundle (JSON) never names its
 * trust domain (SPIFFE Trust Domain and Bundle 3), so it is given one here; PEM or DER CA certificates
 * likewise. Without a trust domain nothing is trusted.
 */
async function readBundle(
  path: string,
  td: TrustDomain | undefined,
): Promise<{ source: X509BundleSource; format: BundleReport['format']; authorities: number }> {
  const bytes = await readBoundedFile(path);
  if (looksLikeJson(bytes)) {
    if (td === undefined) return { source: { x509AuthoritiesFor: () => undefined }, format: 'spiffe-json', authorities: 0 };
    const bundle = parseBundleJson(td, bytes);
    return { source: bundle, format: 'spiffe-json', authorities: bundle.x509Authorities.length };
  }
  const authorities = decodeCertificates(bytes, path, 'bundle');
  parseAll(authorities, path); // report a broken bundle as such, not as an invalid SVID
  return {
    source: { x509AuthoritiesFor: (t) => (td !== undefined && t.equals(td) ? authorities : undefined) },
    format: isPem(bytes) ? 'pem' : 'der',
    authorities: authorities.length,
  };
}

async function checkSvid(
  chain: readonly Buffer[],
  leaf: ParsedCertificate,
  bundlePath: string,
  flagTd: TrustDomain | undefined,
  now: number,
): Promise<SvidReport> {
  // The bundle belongs to --trust-domain, or else to the trust domain the leaf names (X509-SVID 5.1:
  // the leaf is validated only against the bundle of its own trust domain).
  const bundleTd = flagTd ?? leafSpiffeId(leaf)?.trustDomain;
  const { source, format, authorities } = await readBundle(bundlePath, bundleTd);
  const bundle = { format, x509_authorities: authorities };
  try {
    const v = validateX509Svid(chain, source, now, flagTd === undefined ? {} : { trustDomain: flagTd });
    return {
      valid: true,
      spiffe_id: v.spiffeId.toString(),
      trust_domain: v.spiffeId.trustDomain.name,
      path_length: v.path.length,
      bundle,
    };
  } catch (e) {
    if (!(e instanceof EdgewardError)) throw e;
    return { valid: false, trust_domain: bundleTd?.name ?? null, code: e.code, message: e.message, bundle };
  }
}

function formatText(r: InspectReport): string {
  const l = r.leaf;
  const list = (xs: readonly string[]): string => (xs.length === 0 ? '(none)' : xs.map((x) => printable(x)).join(', '));
  const rows: [string, string][] = [
    ['file', `${printable(r.file)} (${r.certificates} certificate${r.certificates === 1 ? '' : 's'})`],
    ['spiffe_id', l.spiffe_id === null ? '(none)' : printable(l.spiffe_id)],
  ];
  if (l.spiffe_id === null || l.uris.length !== 1) rows.push(['uris', list(l.uris)]);
  rows.push(
    ['serial', l.serial],
    ['not_before', l.not_before],
    ['not_after', l.not_after],
    ['ca', l.is_ca ? `true${l.path_len === null ? '' : ` (path length ${l.path_len})`}` : 'false'],
    ['key_usage', l.key_usage === null ? '(absent)' : `${list(l.key_usage.usages)}${l.key_usage.critical ? ' (critical)' : ''}`],
    [
      'ext_key_usage',
      l.ext_key_usage === null
        ? '(absent)'
        : `${list(l.ext_key_usage.usages)}${l.ext_key_usage.critical ? ' (critical)' : ''}`,
    ],
    ['dns_names', list(l.dns_names)],
  );
  if (r.svid !== undefined) {
    const s = r.svid;
    rows.push([
      'x509_svid',
      s.valid
        ? `valid for trust domain ${s.trust_domain}`
        : `INVALID ${s.code}: ${printable(s.message, 500)}`,
    ]);
    rows.push(['bundle', `${s.bundle.format}, ${s.bundle.x509_authorities} X.509 authorit${s.bundle.x509_authorities === 1 ? 'y' : 'ies'}`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`).join('\n') + '\n';
}

export const x509InspectCommand = defineCommand({
  name: NAME,
  summary: 'show a certificate chain and check it as an X509-SVID',
  operands: 'FILE',
  description: [
    'FILE holds a certificate chain, leaf first: PEM CERTIFICATE blocks or concatenated DER (at most 1 MiB).',
    'Prints the leaf: SPIFFE ID (URI SAN), serial, validity, CA flag, key usages, extended key usages, DNS names.',
    '',
    'With --bundle, also validates the chain as an X509-SVID at the current time against the X.509',
    'authorities in that file: CA certificates (PEM or DER) or a SPIFFE bundle (JSON). The bundle is taken',
    "to be the bundle of --trust-domain, or, without that flag, of the leaf's own trust domain.",
    '',
    'Exit status: 0 inspected (and valid), 1 not a valid X509-SVID or unreadable input, 2 usage error.',
  ].join('\n'),
  args: {
    flags: {
      bundle: { type: 'string', value: 'FILE', description: 'CA certificates (PEM or DER) or SPIFFE bundle (JSON) to validate against' },
      'trust-domain': { type: 'string', value: 'TD', description: 'trust domain the bundle belongs to (requires --bundle)' },
      json: { type: 'boolean', description: 'print one JSON object instead of text' },
    },
    positionals: { min: 1, max: 1 },
  },
  async run({ flags, positionals }, io: CliIo) {
    const file = positionals[0] as string;
    if (flags['trust-domain'] !== undefined && flags.bundle === undefined) {
      throw new CliUsageError('--trust-domain requires --bundle', { command: NAME });
    }
    const flagTd = parseTrustDomainFlag(flags['trust-domain']);
    const chain = decodeCertificates(await readBoundedFile(file), file, 'certificate');
    const certs = parseAll(chain, file);
    const leaf = certs[0] as ParsedCertificate;
    const report: InspectReport = { file, certificates: certs.length, leaf: leafReport(leaf) };
    if (flags.bundle !== undefined) report.svid = await checkSvid(chain, leaf, flags.bundle, flagTd, io.now());

    io.stdout(flags.json ? `${JSON.stringify(report)}\n` : formatText(report));
    return report.svid === undefined || report.svid.valid ? 0 : 1;
  },
});
