/**
 * `edgeward bundle show [--socket URI] [--json] [--format pem|spiffe]`: the trust bundles this workload
 * receives from the Workload API (FetchX509Bundles; for `--format spiffe` also FetchJWTBundles).
 *
 * Output, per trust domain in name order, after a header comment line `# spiffe://<td>`:
 * - `pem` (default): the X.509 authorities as PEM CERTIFICATE blocks (openssl skips the comment lines);
 * - `spiffe`: the SPIFFE bundle (TDB 4: JWK Set with x509-svid and jwt-svid keys) on one line, the X.509
 *   authorities combined with the JWT authorities of the same trust domain (an agent that does not offer
 *   FetchJWTBundles, i.e. answers Unimplemented, gives X.509-only bundles).
 * With --json: pem -> {"format":"pem","bundles":{"<td>":"<PEM>"}}; spiffe -> a SPIFFE bundle map
 * (TDB 5) {"trust_domains":{"<td>":<bundle>}}.
 */
import { BundleSet, bundleMapToJson, bundleToJson, TrustBundle, x509AuthoritiesPem } from '../../identity/index.js';
import { WorkloadApiClientError } from '../../protocol/index.js';
import { printable } from '../args.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';
import { socketFlag, withWorkloadClient } from '../workload-client.js';

const FORMATS = ['pem', 'spiffe'] as const;
type Format = (typeof FORMATS)[number];

/** X.509 and JWT bundles of the same trust domain as one TrustBundle each (union of trust domains). */
function combine(x509: BundleSet, jwt: BundleSet | undefined): BundleSet {
  const names = new Set([...x509.trustDomains(), ...(jwt?.trustDomains() ?? [])].map((t) => t.name));
  return BundleSet.of(
    [...names].map((name) => {
      const x = x509.get(name);
      const j = jwt?.get(name);
      const td = (x ?? j)!.trustDomain;
      return TrustBundle.create({ trustDomain: td, x509Authorities: x?.x509Authorities ?? [], jwtAuthorities: j?.jwtAuthorities ?? [] });
    }),
  );
}

export const bundleShowCommand = defineCommand({
  name: 'bundle show',
  summary: 'show the trust bundles this workload receives from the Workload API',
  operands: '',
  description: [
    'Prints, per trust domain, a `# spiffe://<td>` line and then the X.509 authorities as PEM (--format pem,',
    'the default) or the SPIFFE bundle JSON with the X.509 and JWT authorities (--format spiffe).',
    'With --json: {"format":"pem","bundles":{"<td>":"<PEM>"}}, or for spiffe a SPIFFE bundle map',
    '{"trust_domains":{"<td>":<bundle>}}.',
    '',
    'Exit status: 0 shown, 1 the Workload API refused or failed, 2 usage error.',
  ].join('\n'),
  args: {
    flags: {
      socket: socketFlag,
      json: { type: 'boolean', description: 'print JSON' },
      format: { type: 'string', value: 'pem|spiffe', description: 'output format (default pem)' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const format = (flags.format ?? 'pem') as Format;
    if (!FORMATS.includes(format)) {
      throw new CliUsageError(`--format ${printable(flags.format ?? '')}: expected pem or spiffe`, { command: 'bundle show' });
    }
    const bundles = await withWorkloadClient(flags.socket, io, 'bundle show', async (c) => {
      const x509 = await c.fetchX509Bundles();
      if (format === 'pem') return x509;
      let jwt: BundleSet | undefined;
      try {
        jwt = await c.fetchJwtBundles();
      } catch (e) {
        if (!(e instanceof WorkloadApiClientError && e.code === 'workload-api/unimplemented')) throw e;
      }
      return combine(x509, jwt);
    });
    const list = bundles.bundles(); // trust-domain name order
    if (format === 'pem') {
      if (flags.json) {
        io.stdout(`${JSON.stringify({ format: 'pem', bundles: Object.fromEntries(list.map((b) => [b.trustDomain.name, x509AuthoritiesPem(b)])) })}\n`);
      } else {
        io.stdout(list.map((b) => `# ${b.trustDomain.idString}\n${x509AuthoritiesPem(b)}`).join(''));
      }
    } else if (flags.json) {
      io.stdout(`${bundleMapToJson(bundles)}\n`);
    } else {
      io.stdout(list.map((b) => `# ${b.trustDomain.idString}\n${bundleToJson(b)}\n`).join(''));
    }
    return 0;
  },
});
