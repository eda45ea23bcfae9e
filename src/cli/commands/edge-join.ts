/**
 * `edgeward edge join --cloud HOST:PORT --token TOKEN --bundle-digest sha256:HEX --data-dir DIR [--node NAME]`
 * `    [--x509pop-cert FILE --x509pop-key FILE] [--tpm swtpm:host=H,port=P] [--force] [--json]`
 *
 * The token may also come from `--token-file FILE` or the EDGEWARD_JOIN_TOKEN environment variable, which
 * keeps it out of the process list (`/proc/PID/cmdline` is readable by every local user) and shell history.
 *
 * Joins this node to a cloud: the cloud's bundle is pinned by digest (no trust on first use), the node key
 * is made in DIR/keys and never leaves the node, and the node SVID is written to DIR/node. Prints the
 * node's SPIFFE ID and SVID expiry.
 */
import { hostname } from 'node:os';
import { readBoundedFile } from '../files.js';
import { joinCloud, JoinError } from '../../edge/index.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';
import { hostStateFiles } from '../host/index.js';

export const edgeJoinCommand = defineCommand({
  name: 'edge join',
  summary: 'join this node to a cloud (node attestation) and write the joined data dir',
  operands: '',
  args: {
    flags: {
      cloud: { type: 'string', value: 'HOST:PORT', description: 'the cloud node API address' },
      token: { type: 'string', value: 'TOKEN', description: 'join token (edgeward token create on the cloud); visible in the process list: prefer --token-file or EDGEWARD_JOIN_TOKEN' },
      'token-file': { type: 'string', value: 'FILE', description: 'read the join token from FILE (its first line)' },
      'bundle-digest': { type: 'string', value: 'sha256:HEX', description: 'digest of the cloud bundle to pin (printed by the cloud)' },
      'data-dir': { type: 'string', value: 'DIR', description: 'the edge data dir to create' },
      node: { type: 'string', value: 'NAME', description: 'node name (default: the x509pop certificate CN, else the host name)' },
      'x509pop-cert': { type: 'string', value: 'FILE', description: 'x509pop: the node certificate chain (PEM, leaf first)' },
      'x509pop-key': { type: 'string', value: 'FILE', description: 'x509pop: the node certificate private key (PEM)' },
      tpm: { type: 'string', value: 'TCTI', description: 'tpm: swtpm:host=IP,port=N or device:/dev/tpmrm0' },
      force: { type: 'boolean', description: 'replace an existing join in DIR' },
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const usage = (m: string): CliUsageError => new CliUsageError(m, { command: 'edge join' });
    if (flags.cloud === undefined) throw usage('--cloud HOST:PORT is required');
    if (flags['bundle-digest'] === undefined) throw usage('--bundle-digest sha256:HEX is required (no trust on first use)');
    const dataDir = flags['data-dir'] ?? io.env['EDGEWARD_DATA_DIR'];
    if (dataDir === undefined || dataDir === '') throw usage('--data-dir (or EDGEWARD_DATA_DIR) is required');
    if (flags.token !== undefined && flags['token-file'] !== undefined) throw usage('give --token or --token-file, not both');
    const envToken = io.env['EDGEWARD_JOIN_TOKEN'];
    // A token file holds the token on its first line (the rest is ignored); 4 KiB is far more than a token.
    const fromFile = flags['token-file'] !== undefined ? (await readBoundedFile(flags['token-file'], 4096)).toString('utf8').split(/\r?\n/, 1)[0]!.trim() : undefined;
    const otherMethod = flags['x509pop-cert'] !== undefined || flags['x509pop-key'] !== undefined || flags.tpm !== undefined;
    // The environment variable is a fallback for the token method only (a stale one must not break x509pop/tpm).
    const token = flags.token ?? fromFile ?? (!otherMethod && envToken !== undefined && envToken !== '' ? envToken : undefined);
    const methods = [token !== undefined, flags['x509pop-cert'] !== undefined || flags['x509pop-key'] !== undefined, flags.tpm !== undefined].filter(Boolean).length;
    if (methods !== 1) throw usage('give exactly one of --token (or --token-file, EDGEWARD_JOIN_TOKEN), --x509pop-cert with --x509pop-key, or --tpm');
    if ((flags['x509pop-cert'] === undefined) !== (flags['x509pop-key'] === undefined)) throw usage('--x509pop-cert and --x509pop-key go together');
    let r;
    try {
      r = await joinCloud(
        {
          cloud: flags.cloud,
          bundleDigest: flags['bundle-digest'],
          dataDir,
          token,
          nodeName: flags.node,
          x509popCert: flags['x509pop-cert'],
          x509popKey: flags['x509pop-key'],
          tpm: flags.tpm,
          force: flags.force,
        },
        { files: hostStateFiles, clock: { now: () => io.now() }, hostname },
      );
    } catch (e) {
      // No usable default node name is a usage problem: the operator must say which node this is.
      if (e instanceof JoinError && (e.code === 'join/node-name-required' || (e.code === 'join/bad-input' && /^--node/.test(e.message)))) throw usage(e.message);
      throw e;
    }
    const expires = new Date(r.notAfter).toISOString();
    if (flags.json) {
      io.stdout(JSON.stringify({ spiffe_id: r.spiffeId.toString(), node: r.nodeName, method: r.method, not_after: expires, data_dir: r.dataDir }) + '\n');
    } else {
      io.stdout(
        [
          `joined: ${r.spiffeId.toString()}`,
          `method: ${r.method}`,
          `node SVID expires: ${expires}`,
          `start the agent: edgeward edge start --data-dir ${r.dataDir}`,
          '',
        ].join('\n'),
      );
    }
    return 0;
  },
});
