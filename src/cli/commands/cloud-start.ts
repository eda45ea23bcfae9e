/**
 * `edgeward cloud start --data-dir DIR [--trust-domain TD] [--listen HOST:PORT] [--config FILE] [--spiffe-socket unix:///PATH]`
 *
 * Runs the cloud core in the foreground until SIGINT/SIGTERM. Once the node API listens it prints
 * `EDGEWARD_CLOUD=HOST:PORT` and `EDGEWARD_BUNDLE_DIGEST=sha256:HEX` on stdout (for scripts and tests);
 * logs are JSON lines on stderr.
 */
import { parseCloudConfig, runCloud } from '../../cloud/index.js';
import { defineCommand } from '../command.js';
import { createLogger } from '../logger.js';
import { hostPorts } from '../host/index.js';
import { waitForStopSignal } from '../signals.js';

export const cloudStartCommand = defineCommand({
  name: 'cloud start',
  summary: 'run the cloud core: CA, node attestation and the node API (HTTPS), admin socket for the CLI',
  operands: '',
  description: [
    'Prints EDGEWARD_CLOUD=HOST:PORT and EDGEWARD_BUNDLE_DIGEST=sha256:HEX once listening.',
    'Settings: flags override the environment (EDGEWARD_DATA_DIR, EDGEWARD_TRUST_DOMAIN, EDGEWARD_LOG_LEVEL,',
    'SPIFFE_ENDPOINT_SOCKET), which overrides the --config YAML file.',
    'With --spiffe-socket (or SPIFFE_ENDPOINT_SOCKET) the cloud runs in SPIRE mode: no CA, no join tokens;',
    'nodes authenticate with SPIRE-issued SVIDs spiffe://TD/edgeward/node/NAME (docs/spire.md).',
  ].join('\n'),
  args: {
    flags: {
      'data-dir': { type: 'string', value: 'DIR', description: 'state directory (0700): cloud.db, keys/, admin/admin.sock' },
      'trust-domain': { type: 'string', value: 'TD', description: 'trust domain (default edgeward.local)' },
      listen: { type: 'string', value: 'HOST:PORT', description: 'node API address (default 127.0.0.1:8443; port 0 = any free port)' },
      config: { type: 'string', value: 'FILE', description: 'YAML configuration file (strict: unknown keys are refused)' },
      'spiffe-socket': { type: 'string', value: 'unix:///PATH', description: 'SPIRE mode: take the cloud SVID and bundle from this SPIFFE Workload API (a SPIRE agent); SPIRE attests the nodes (docs/spire.md)' },
      'ca-ttl': { type: 'string', value: 'DURATION', description: 'signing CA lifetime (default 7d; at least 6x every SVID TTL)' },
      'node-svid-ttl': { type: 'string', value: 'DURATION', description: 'node SVID lifetime (default 1h)' },
      'device-svid-ttl': { type: 'string', value: 'DURATION', description: 'device SVID lifetime (default 24h, at most a sixth of --ca-ttl)' },
      'x509pop-ca-bundle': { type: 'string', value: 'FILE', description: 'PEM CA certificates for the x509pop attestor (enables it)' },
      'tpm-ek-ca-bundle': { type: 'string', value: 'FILE', description: 'PEM TPM manufacturer CA certificates for the tpm attestor; each TPM must also be enrolled (attestors.tpm.enrolled in --config)' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const config = parseCloudConfig({
      dataDir: flags['data-dir'],
      trustDomain: flags['trust-domain'],
      listen: flags.listen,
      configFile: flags.config,
      spiffeSocket: flags['spiffe-socket'],
      caTtl: flags['ca-ttl'],
      nodeSvidTtl: flags['node-svid-ttl'],
      deviceSvidTtl: flags['device-svid-ttl'],
      x509popCaBundle: flags['x509pop-ca-bundle'],
      tpmEkCaBundle: flags['tpm-ek-ca-bundle'],
      env: io.env,
    });
    const logger = createLogger({ name: 'edgeward-cloud', level: config.logLevel });
    const cloud = await runCloud(config, { logger, ...hostPorts });
    io.stdout(`EDGEWARD_CLOUD=${cloud.cloudAddress}\nEDGEWARD_BUNDLE_DIGEST=${cloud.bundleDigest()}\n`);
    await waitForStopSignal();
    await cloud.close();
    return 0;
  },
});
