/**
 * `edgeward edge start --standalone --trust-domain TD --data-dir DIR [--socket PATH] [--policy FILE]`
 * `edgeward edge start --data-dir DIR [--socket PATH]`  (joined: DIR holds a join from `edgeward edge join`)
 *
 * Runs the edge agent in the foreground until SIGINT/SIGTERM. Prints `SPIFFE_ENDPOINT_SOCKET=unix:///...`
 * once the Workload API is listening. Logs are JSON lines on stderr.
 */
import { parseEdgeConfig, parseJoinedEdgeConfig, runEdgeJoined, runEdgeStandalone, type RunningEdge } from '../../edge/index.js';
import { CliUsageError } from '../errors.js';
import { defineCommand } from '../command.js';
import { createLogger } from '../logger.js';
import { hostStateFiles } from '../host/index.js';

export const edgeStartCommand = defineCommand({
  name: 'edge start',
  summary: 'run the edge agent (joined to a cloud, or --standalone with its own CA) and serve the SPIFFE Workload API',
  operands: '',
  args: {
    flags: {
      standalone: { type: 'boolean', description: 'run with the agent\'s own CA (no cloud)' },
      'trust-domain': { type: 'string', value: 'TD', description: 'trust domain of the standalone CA' },
      'data-dir': { type: 'string', value: 'DIR', description: 'state directory (CA keys 0600, SQLite, sockets)' },
      socket: { type: 'string', value: 'PATH', description: 'Workload API socket path (default DIR/public/api.sock)' },
      policy: { type: 'string', value: 'FILE', description: 'registration entries policy to load at start (policies/registration-entries.yaml)' },
      'ca-ttl': { type: 'string', value: 'DURATION', description: 'signing CA lifetime (default 24h; at least 6x the SVID TTLs)' },
      'x509-ttl': { type: 'string', value: 'DURATION', description: 'default and maximum X509-SVID TTL (default 1h)' },
      'jwt-ttl': { type: 'string', value: 'DURATION', description: 'default and maximum JWT-SVID TTL (default 5m)' },
      'workload-sha256-limit': {
        type: 'string',
        value: 'BYTES',
        description: 'emit unix:sha256 selectors, hashing workload binaries up to this size (larger ones fail attestation); off by default',
      },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    let edge: RunningEdge;
    if (flags.standalone) {
      const config = parseEdgeConfig({
        standalone: true,
        trustDomain: flags['trust-domain'],
        dataDir: flags['data-dir'],
        socket: flags.socket,
        policy: flags.policy,
        caTtl: flags['ca-ttl'],
        x509Ttl: flags['x509-ttl'],
        jwtTtl: flags['jwt-ttl'],
        workloadSha256Limit: flags['workload-sha256-limit'],
        env: io.env,
      });
      const logger = createLogger({ name: 'edgeward-edge', level: config.logLevel });
      edge = await runEdgeStandalone(config, { logger, files: hostStateFiles });
    } else {
      const standaloneOnly = (['trust-domain', 'policy', 'ca-ttl', 'x509-ttl', 'jwt-ttl'] as const).filter((f) => flags[f] !== undefined);
      if (standaloneOnly.length > 0) {
        throw new CliUsageError(`${standaloneOnly.map((f) => `--${f}`).join(', ')} only apply with --standalone (a joined agent takes its identity from the cloud)`, {
          command: 'edge start',
        });
      }
      if (flags['data-dir'] === undefined) throw new CliUsageError('--data-dir is required (a directory prepared by edgeward edge join), or use --standalone', { command: 'edge start' });
      const config = parseJoinedEdgeConfig({ dataDir: flags['data-dir'], socket: flags.socket, workloadSha256Limit: flags['workload-sha256-limit'], env: io.env });
      const logger = createLogger({ name: 'edgeward-edge', level: config.logLevel });
      edge = await runEdgeJoined(config, { logger, files: hostStateFiles });
    }
    io.stdout(`SPIFFE_ENDPOINT_SOCKET=${edge.endpoint}\n`);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await edge.close();
    return 0;
  },
});
