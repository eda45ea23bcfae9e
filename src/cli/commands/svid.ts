/**
 * The X509-SVID commands of a workload (client side of the SPIFFE Workload API, FetchX509SVID):
 *   edgeward svid fetch [--socket URI] [--write DIR] [--json]
 *   edgeward svid watch [--socket URI] [--write DIR] [--json]
 *
 * The response is parsed strictly by WorkloadApiClient (X509-SVID 2/4, Workload API 5.2) before anything
 * is shown or written. The default identity is the first SVID (Workload API 5.2); `--write DIR` writes
 * its material as
 *   svid.pem    leaf then intermediates, PEM CERTIFICATE blocks (0644)
 *   svid.key    its private key, PKCS#8 PEM "PRIVATE KEY" (created 0600)
 *   bundle.pem  the X.509 authorities of the SVID's own trust domain, PEM (0644)
 * with crash-safe atomic replacement (src/cli/write-files.ts), bundle first, then key, then certificate.
 * The private key never appears in any output or log line.
 *
 * `svid watch` keeps the stream open: every message is the complete state (Workload API 5.2), printed
 * as one line (or one JSON object per line) and, with --write, written out again. It ends with exit 0 on
 * SIGINT/SIGTERM, and with exit 1 when the agent ends the stream with PermissionDenied (the caller lost
 * every identity: spiffe.md 1 "Stream semantics") or with an error the spec says not to retry.
 * Transient errors (Unavailable, a malformed message) are reported on stderr and the client reconnects
 * with go-spiffe's backoff.
 */
import { certToPem, derToPem, x509AuthoritiesPem } from '../../identity/index.js';
import { WorkloadApiClient, type Watch, type WorkloadApiClientError, type X509Context } from '../../protocol/index.js';
import { printable } from '../args.js';
import { defineCommand, type CliIo } from '../command.js';
import { CliError } from '../errors.js';
import { prepareOutputDir, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, writeFilesAtomic, type OutputFile } from '../write-files.js';
import { socketFlag, workloadEndpoint, withWorkloadClient } from '../workload-client.js';

export const SVID_CERT_FILE = 'svid.pem';
export const SVID_KEY_FILE = 'svid.key';
export const SVID_BUNDLE_FILE = 'bundle.pem';

interface SvidSummary {
  spiffe_id: string;
  serial: string;
  not_before: string;
  not_after: string;
  hint: string;
  /** Certificates after the leaf. */
  intermediates: number;
}

interface ContextReport {
  /** In server order; the first is the default identity. */
  svids: SvidSummary[];
  /** Every trust domain with an X.509 bundle (own and federated), sorted. */
  trust_domains: string[];
  federated_trust_domains: string[];
  written?: string[];
}

const iso = (ms: number): string => new Date(ms).toISOString();

function contextReport(ctx: X509Context): ContextReport {
  return {
    svids: ctx.svids.map((s) => ({
      spiffe_id: s.spiffeId.toString(),
      serial: s.leaf.serialHex,
      not_before: iso(s.leaf.notBefore),
      not_after: iso(s.leaf.notAfter),
      hint: s.hint,
      intermediates: s.chainDer.length - 1,
    })),
    trust_domains: ctx.bundles.trustDomains().map((t) => t.name).sort(),
    federated_trust_domains: ctx.federatedTrustDomains.map((t) => t.name).sort(),
  };
}

/** The files `--write` produces for the default SVID of `ctx`. */
function svidFiles(ctx: X509Context): OutputFile[] {
  const svid = ctx.defaultSvid;
  const bundle = ctx.bundles.get(svid.spiffeId.trustDomain);
  if (bundle === undefined || bundle.x509Authorities.length === 0) {
    throw new CliError('cli/bad-bundle', `the response has no X.509 bundle for ${svid.spiffeId.trustDomain.name}`);
  }
  return [
    { name: SVID_BUNDLE_FILE, data: x509AuthoritiesPem(bundle), mode: PUBLIC_FILE_MODE },
    // Workload API 5.2: x509_svid_key is unencrypted PKCS#8 DER; written as PEM "PRIVATE KEY" (RFC 7468 10).
    { name: SVID_KEY_FILE, data: derToPem(svid.keyPkcs8, 'PRIVATE KEY'), mode: PRIVATE_FILE_MODE },
    { name: SVID_CERT_FILE, data: svid.chainDer.map((d) => certToPem(d)).join(''), mode: PUBLIC_FILE_MODE },
  ];
}

function formatText(r: ContextReport): string {
  const blocks = r.svids.map((s, i) => {
    const rows: [string, string][] = [
      ['spiffe_id', `${printable(s.spiffe_id)}${i === 0 && r.svids.length > 1 ? ' (default)' : ''}`],
      ['serial', s.serial],
      ['not_after', s.not_after],
      ['hint', s.hint === '' ? '(none)' : printable(s.hint)],
    ];
    return rows;
  });
  const tail: [string, string][] = [['trust_domains', r.trust_domains.length === 0 ? '(none)' : r.trust_domains.map((t) => printable(t)).join(' ')]];
  if (r.federated_trust_domains.length > 0) tail.push(['federated', r.federated_trust_domains.map((t) => printable(t)).join(' ')]);
  if (r.written !== undefined) tail.push(['wrote', r.written.map((p) => printable(p)).join(' ')]);
  const all = [...blocks.flat(), ...tail];
  const width = Math.max(...all.map(([k]) => k.length)) + 1;
  const fmt = (rows: [string, string][]): string => rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
  return [...blocks.map(fmt), fmt(tail)].join('\n\n') + '\n';
}

/** One line per watch update. */
function formatUpdateLine(n: number, at: number, r: ContextReport): string {
  const d = r.svids[0];
  const parts = [`${iso(at)} update ${n}:`];
  if (d !== undefined) parts.push(printable(d.spiffe_id), `serial=${d.serial}`, `not_after=${d.not_after}`);
  if (r.svids.length > 1) parts.push(`svids=${r.svids.length}`);
  parts.push(`trust_domains=${r.trust_domains.map((t) => printable(t)).join(',')}`);
  if (r.written !== undefined) parts.push(`wrote=${r.written.map((p) => printable(p)).join(',')}`);
  return parts.join(' ') + '\n';
}

const sharedFlags = {
  socket: socketFlag,
  write: { type: 'string', value: 'DIR', description: `write ${SVID_CERT_FILE}, ${SVID_KEY_FILE} (0600) and ${SVID_BUNDLE_FILE} of the default SVID into DIR (created 0700)` },
  json: { type: 'boolean', description: 'print JSON (never the private key)' },
} as const;

const FILES_HELP = [
  `--write DIR writes the default (first) SVID: ${SVID_CERT_FILE} (leaf + intermediates, PEM), ${SVID_KEY_FILE}`,
  `(PKCS#8 PEM, created with mode 0600) and ${SVID_BUNDLE_FILE} (the CA certificates of its trust domain), each`,
  'replaced atomically. DIR is created with mode 0700 if missing; a symlink or non-directory is refused.',
].join('\n');

export const svidFetchCommand = defineCommand({
  name: 'svid fetch',
  summary: 'fetch this workload\'s X509-SVIDs and bundles from the Workload API',
  operands: '',
  description: [
    'Fetches the X.509 context once (FetchX509SVID) and prints, per SVID, the SPIFFE ID, serial, expiry',
    'and hint, then the trust domains of the bundles.',
    '',
    FILES_HELP,
    '',
    'Exit status: 0 fetched, 1 the Workload API refused or failed (e.g. workload-api/permission-denied),',
    '2 usage error.',
  ].join('\n'),
  args: { flags: sharedFlags, positionals: { min: 0, max: 0 } },
  async run({ flags }, io) {
    const dir = flags.write === undefined ? undefined : await prepareOutputDir(flags.write, { create: false });
    const ctx = await withWorkloadClient(flags.socket, io, 'svid fetch', (c) => c.fetchX509Svid());
    const report = contextReport(ctx);
    if (dir !== undefined) report.written = await writeFilesAtomic(dir, svidFiles(ctx));
    io.stdout(flags.json ? `${JSON.stringify(report)}\n` : formatText(report));
    return 0;
  },
});

/** Follow FetchX509SVID until a signal (0) or a terminal error (rejects). */
function watchUntilStopped(
  client: WorkloadApiClient,
  io: CliIo,
  onContext: (ctx: X509Context) => Promise<void>,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let done = false;
    let watch: Watch | undefined;
    // Updates are handled one at a time, in order (file writes must not interleave).
    let queue: Promise<void> = Promise.resolve();
    const finish = (outcome: () => void): void => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      watch?.close();
      client.close();
      // Let an update being written finish before the command returns.
      void queue.then(outcome, outcome);
    };
    const onSignal = (): void => finish(() => resolve(0));
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const onError = (e: WorkloadApiClientError, info: { retrying: boolean; delayMs?: number }): void => {
      if (done) return;
      // Losing every identity ends the stream with PermissionDenied: stop (spiffe.md 1, Stream semantics).
      if (e.code === 'workload-api/permission-denied' || !info.retrying) {
        finish(() => reject(e));
        return;
      }
      io.stderr(`edgeward: ${e.code}: ${printable(e.message, 500)} (retrying in ${info.delayMs ?? 0} ms)\n`);
    };
    try {
      watch = client.watchX509Svid(
        (ctx) => {
          queue = queue.then(async () => {
            if (done) return;
            try {
              await onContext(ctx);
            } catch (e) {
              finish(() => reject(e));
            }
          });
        },
        onError,
      );
    } catch (e) {
      finish(() => reject(e));
    }
  });
}

export const svidWatchCommand = defineCommand({
  name: 'svid watch',
  summary: 'follow this workload\'s X509-SVID updates (rotation, bundle changes) until interrupted',
  operands: '',
  description: [
    'Keeps FetchX509SVID open and prints one line per update (with --json, one JSON object per line):',
    'the default SVID\'s SPIFFE ID, serial and expiry and the bundles\' trust domains. Transient errors are',
    'reported on stderr while the client reconnects.',
    '',
    FILES_HELP,
    'The files are rewritten on every update.',
    '',
    'Exit status: 0 after SIGINT or SIGTERM; 1 when the agent ends the stream with PermissionDenied (no',
    'identity left for this caller), on a non-retryable error or a failed write; 2 usage error.',
  ].join('\n'),
  args: { flags: sharedFlags, positionals: { min: 0, max: 0 } },
  async run({ flags }, io) {
    const endpoint = workloadEndpoint(flags.socket, io, 'svid watch');
    const dir = flags.write === undefined ? undefined : await prepareOutputDir(flags.write, { create: false });
    const client = new WorkloadApiClient(endpoint);
    let n = 0;
    return watchUntilStopped(client, io, async (ctx) => {
      const report = contextReport(ctx);
      if (dir !== undefined) report.written = await writeFilesAtomic(dir, svidFiles(ctx));
      n++;
      const at = io.now();
      io.stdout(flags.json ? `${JSON.stringify({ update: n, time: iso(at), ...report })}\n` : formatUpdateLine(n, at, report));
    });
  },
});
