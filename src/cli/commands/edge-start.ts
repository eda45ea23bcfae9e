/**
 * `edgeward edge start --standalone --trust-domain TD --data-dir DIR [--socket PATH] [--policy FILE]`
 * `edgeward edge start --data-dir DIR [--socket PATH]`  (joined: DIR holds a join from `edgeward edge join`)
 * `edgeward edge start --spiffe-socket unix:///PATH --cloud HOST:PORT [--data-dir DIR] [--trust-domain TD]`
 *   (SPIRE mode: the node SVID comes from a SPIRE agent; `SPIFFE_ENDPOINT_SOCKET` works too when `--cloud`
 *   is given; no Workload API is served, workloads use the SPIRE agent's. Prints `EDGEWARD_NODE_ID=...`.)
 * Joined and SPIRE mode (with --data-dir) keep the hub store in DIR/hub, its secrets sealed with a data key
 * that `--secrets-key-file PATH` (env EDGEWARD_SECRETS_KEY_FILE; outside DIR) wraps; TPM-joined nodes seal
 * it into their TPM by default.
 *
 * Runs the edge agent in the foreground until SIGINT/SIGTERM. Prints `SPIFFE_ENDPOINT_SOCKET=unix:///...`
 * once the Workload API is listening. Logs are JSON lines on stderr.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  parseEdgeConfig,
  parseJoinedEdgeConfig,
  parseSpireEdgeConfig,
  runEdgeJoined,
  runEdgeSpire,
  runEdgeStandalone,
  type RunningEdge,
} from '../../edge/index.js';
import { CliUsageError } from '../errors.js';
import { defineCommand } from '../command.js';
import { createLogger } from '../logger.js';
import { hostPorts } from '../host/index.js';
import { waitForStopSignal } from '../signals.js';

const hostPort = (a: { host: string; port: number }): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

export const edgeStartCommand = defineCommand({
  name: 'edge start',
  summary: 'run the edge agent (joined to a cloud, --standalone with its own CA, or with a SPIRE agent\'s identity: --spiffe-socket --cloud)',
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
      'spiffe-socket': {
        type: 'string',
        value: 'unix:///PATH',
        description: 'SPIRE mode (with --cloud): the node SVID spiffe://TD/edgeward/node/NAME comes from this Workload API (default SPIFFE_ENDPOINT_SOCKET)',
      },
      cloud: { type: 'string', value: 'HOST:PORT', description: 'SPIRE mode: the cloud node API to keep a session with' },
      'secrets-key-file': {
        type: 'string',
        value: 'PATH',
        description:
          'key file (outside --data-dir, 0600; created if absent) that wraps the hub store\'s data key (default ~/.config/edgeward/secrets-keys/ID.key, or the TPM for TPM-joined nodes; env EDGEWARD_SECRETS_KEY_FILE)',
      },
      'mqtt-listen': { type: 'string', value: 'HOST:PORT', description: 'joined agent: the EventBus (MQTT over TLS, device SVIDs only) listener, or off (default 127.0.0.1:8883)' },
      'enroll-listen': { type: 'string', value: 'HOST:PORT', description: 'joined agent: the device enrolment endpoint (HTTPS), or off (default 127.0.0.1:8884)' },
      'mqtt-acl': { type: 'string', value: 'FILE', description: 'joined agent: the EventBus topic ACL policy (default: the packaged policies/mqtt-acl.yaml)' },
      'enroll-rate': { type: 'string', value: 'N', description: 'joined agent: device enrolment requests per second from one address, burst 10 or twice N (default 2); 429 beyond' },
      'mqtt-publish-rate': { type: 'string', value: 'N', description: 'joined agent: PUBLISH packets per second one MQTT client may send, burst twice that; beyond it the client is disconnected (default 1000)' },
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
    const spireFlags = (['spiffe-socket', 'cloud'] as const).filter((f) => flags[f] !== undefined);
    if (flags.standalone && flags['secrets-key-file'] !== undefined) {
      throw new CliUsageError('--secrets-key-file applies to a joined or SPIRE-mode agent (the hub store), not to --standalone', { command: 'edge start' });
    }
    if (flags.standalone && spireFlags.length > 0) {
      throw new CliUsageError(`${spireFlags.map((f) => `--${f}`).join(', ')} select SPIRE mode and do not apply with --standalone`, { command: 'edge start' });
    }
    if (!flags.standalone && spireFlags.length > 0) {
      if (flags.cloud === undefined) throw new CliUsageError('SPIRE mode (--spiffe-socket) needs --cloud HOST:PORT', { command: 'edge start' });
      const other = (['policy', 'ca-ttl', 'x509-ttl', 'jwt-ttl', 'socket', 'workload-sha256-limit', 'mqtt-listen', 'enroll-listen', 'mqtt-acl', 'mqtt-publish-rate', 'enroll-rate'] as const).filter((f) => flags[f] !== undefined);
      if (other.length > 0) {
        throw new CliUsageError(`${other.map((f) => `--${f}`).join(', ')} do not apply in SPIRE mode (SPIRE serves the workloads; no Workload API here)`, {
          command: 'edge start',
        });
      }
      if (flags['data-dir'] !== undefined && existsSync(join(resolve(flags['data-dir']), 'join.json'))) {
        throw new CliUsageError('--data-dir holds a join (join.json): a joined agent takes its identity from the cloud; use another directory for SPIRE mode', {
          command: 'edge start',
        });
      }
      const config = parseSpireEdgeConfig({
        spiffeSocket: flags['spiffe-socket'],
        cloud: flags.cloud,
        trustDomain: flags['trust-domain'],
        dataDir: flags['data-dir'],
        secretsKeyFile: flags['secrets-key-file'],
        env: io.env,
      });
      const logger = createLogger({ name: 'edgeward-edge', level: config.logLevel });
      edge = await runEdgeSpire(config, { logger, ...hostPorts });
    } else if (flags.standalone) {
      const joinedOnly = (['mqtt-listen', 'enroll-listen', 'mqtt-acl', 'mqtt-publish-rate', 'enroll-rate'] as const).filter((f) => flags[f] !== undefined);
      if (joinedOnly.length > 0) throw new CliUsageError(`${joinedOnly.map((f) => `--${f}`).join(', ')} apply to a joined agent (the cloud signs device SVIDs)`, { command: 'edge start' });
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
      edge = await runEdgeStandalone(config, { logger, ...hostPorts });
    } else {
      const standaloneOnly = (['trust-domain', 'policy', 'ca-ttl', 'x509-ttl', 'jwt-ttl'] as const).filter((f) => flags[f] !== undefined);
      // (devices, the EventBus and the enrolment endpoint need a cloud to sign device SVIDs: joined mode only)
      if (standaloneOnly.length > 0) {
        throw new CliUsageError(`${standaloneOnly.map((f) => `--${f}`).join(', ')} only apply with --standalone (a joined agent takes its identity from the cloud)`, {
          command: 'edge start',
        });
      }
      if (flags['data-dir'] === undefined) throw new CliUsageError('--data-dir is required (a directory prepared by edgeward edge join), or use --standalone', { command: 'edge start' });
      const config = parseJoinedEdgeConfig({
        dataDir: flags['data-dir'],
        socket: flags.socket,
        workloadSha256Limit: flags['workload-sha256-limit'],
        secretsKeyFile: flags['secrets-key-file'],
        mqttListen: flags['mqtt-listen'],
        enrollListen: flags['enroll-listen'],
        mqttAcl: flags['mqtt-acl'],
        mqttPublishRate: flags['mqtt-publish-rate'],
        enrollRate: flags['enroll-rate'],
        env: io.env,
      });
      const logger = createLogger({ name: 'edgeward-edge', level: config.logLevel });
      edge = await runEdgeJoined(config, { logger, ...hostPorts });
    }
    if (edge.spiffeId !== undefined) io.stdout(`EDGEWARD_NODE_ID=${edge.spiffeId}\n`);
    io.stdout(`SPIFFE_ENDPOINT_SOCKET=${edge.endpoint}\n`);
    if (edge.mqtt !== undefined) io.stdout(`EDGEWARD_MQTT=${hostPort(edge.mqtt)}\n`);
    if (edge.enroll !== undefined) io.stdout(`EDGEWARD_ENROLL=${hostPort(edge.enroll)}\n`);
    await waitForStopSignal();
    await edge.close();
    return 0;
  },
});
