/**
 * The edge agent's one typed configuration object (architecture.md convention 7): built from CLI flags
 * and environment in one place, every problem reported together, frozen afterwards.
 */
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectProblems, EdgewardError, isLogLevel, parseDuration, TrustDomain, type LogLevel } from '../identity/index.js';
import { parseEndpoint } from '../protocol/index.js';
import { readJoinRecord, type JoinRecord } from './join/layout.js';
import { parseCloudAddress } from './cloud-client/client.js';
import { defaultSecretsKeyFile, SECRETS_KEY_FILE_ENV } from './hub/sealing.js';

export type EdgeConfigErrorCode = 'edge-config/invalid';
export class EdgeConfigError extends EdgewardError<EdgeConfigErrorCode> {}

export interface EdgeConfig {
  readonly mode: 'standalone';
  readonly trustDomain: TrustDomain;
  readonly dataDir: string;
  /** The public Workload API socket (any local process may connect; attestation decides). */
  readonly socketPath: string;
  /** The private admin socket (0600, in a 0700 directory). */
  readonly adminSocketPath: string;
  readonly dbPath: string;
  readonly caDir: string;
  /** Registration entries loaded from a policy file at start (policies/registration-entries.yaml). */
  readonly policyFile: string | undefined;
  readonly caTtlMs: number;
  readonly x509SvidTtlMs: number;
  readonly jwtSvidTtlMs: number;
  readonly discoverWorkloadPath: boolean;
  /** Largest binary hashed for unix:sha256; negative = emit unix:path without hashing. */
  readonly workloadSizeLimit: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export interface EdgeConfigInput {
  standalone: boolean;
  trustDomain?: string | undefined;
  dataDir?: string | undefined;
  socket?: string | undefined;
  policy?: string | undefined;
  caTtl?: string | undefined;
  x509Ttl?: string | undefined;
  jwtTtl?: string | undefined;
  /** Largest workload binary hashed for unix:sha256, in bytes; absent = no hashing. */
  workloadSha256Limit?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
}

const MAX_UNIX_PATH = 107;

/** DIR/admin/admin.sock, if DIR is known and the path fits a Unix socket address. */
function adminSocketPathOf(dataDir: string | undefined, problems: string[]): string | undefined {
  const path = dataDir === undefined ? undefined : join(dataDir, 'admin', 'admin.sock');
  if (path !== undefined && Buffer.byteLength(path) > MAX_UNIX_PATH) problems.push('--data-dir is too long for a Unix socket path');
  return path;
}

/** The Workload API socket: --socket, else DIR/public/api.sock. */
function workloadSocketPathOf(socket: string | undefined, dataDir: string | undefined, problems: string[]): string | undefined {
  const path = socket !== undefined ? resolve(socket) : dataDir !== undefined ? join(dataDir, 'public', 'api.sock') : undefined;
  if (path !== undefined && Buffer.byteLength(path) > MAX_UNIX_PATH) problems.push(`socket path is longer than ${MAX_UNIX_PATH} bytes`);
  return path;
}

/** --workload-sha256-limit in bytes; absent = -1 (unix:path, no hashing). */
function workloadSizeLimitOf(text: string | undefined, problems: string[]): number {
  if (text === undefined) return -1;
  const n = /^[1-9][0-9]{0,11}$/.test(text) ? Number(text) : NaN;
  if (Number.isSafeInteger(n) && n <= 4 * 1024 ** 3) return n;
  problems.push('--workload-sha256-limit must be a whole number of bytes from 1 to 4294967296');
  return -1;
}

function logLevelOf(env: Readonly<Record<string, string | undefined>>, problems: string[]): LogLevel {
  const level = env['EDGEWARD_LOG_LEVEL'] ?? 'info';
  if (isLogLevel(level)) return level;
  problems.push('EDGEWARD_LOG_LEVEL must be debug, info, warn or error');
  return 'info';
}

/**
 * The hub store's secrets key file (the `file` key-encryption key, contract "Edge store and sealing"):
 * `--secrets-key-file`, else EDGEWARD_SECRETS_KEY_FILE, resolved to an absolute path; undefined when neither
 * is given. It must lie outside the data dir (checked again, on the real paths, when the key is opened).
 */
function secretsKeyFileOf(flag: string | undefined, env: Readonly<Record<string, string | undefined>>, dataDir: string | undefined, problems: string[]): string | undefined {
  const fromEnv = env[SECRETS_KEY_FILE_ENV];
  const given = flag ?? (fromEnv === '' ? undefined : fromEnv);
  if (given === undefined) return undefined;
  const what = flag !== undefined ? '--secrets-key-file' : SECRETS_KEY_FILE_ENV;
  if (given === '' || given.includes('\0')) {
    problems.push(`${what} must be a file path`);
    return undefined;
  }
  const path = resolve(given);
  if (dataDir !== undefined) {
    const rel = relative(dataDir, path);
    if (rel === '' || (!isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${sep}`))) {
      problems.push(`${what} must be outside the data directory (a key beside the data it protects protects nothing)`);
      return undefined;
    }
  }
  return path;
}

/** The default secrets key file of a data dir (sealing.ts `defaultSecretsKeyFile`); a problem if it cannot be found. */
function defaultSecretsKeyFileOf(dataDir: string | undefined, env: Readonly<Record<string, string | undefined>>, problems: string[]): string | undefined {
  if (dataDir === undefined) return undefined;
  try {
    return defaultSecretsKeyFile(dataDir, env);
  } catch (e) {
    problems.push(e instanceof Error ? e.message : String(e));
    return undefined;
  }
}

export function parseEdgeConfig(input: EdgeConfigInput): EdgeConfig {
  const { problems, take } = collectProblems();
  if (!input.standalone) problems.push('this configuration is for --standalone (a joined agent is configured from DIR/join.json: parseJoinedEdgeConfig)');
  const td = input.trustDomain === undefined ? (problems.push('--trust-domain is required'), undefined) : take(() => TrustDomain.parse(input.trustDomain), '--trust-domain');
  const dataDir = input.dataDir === undefined ? (problems.push('--data-dir is required'), undefined) : resolve(input.dataDir);
  const socketPath = workloadSocketPathOf(input.socket, dataDir, problems);
  const adminSocketPath = adminSocketPathOf(dataDir, problems);
  const policyFile = input.policy === undefined ? undefined : isAbsolute(input.policy) ? input.policy : resolve(input.policy);
  const dur = (v: string | undefined, dflt: number, what: string, min: number, max: number): number =>
    v === undefined ? dflt : (take(() => parseDuration(v, { min, max }), what) ?? dflt);
  const caTtlMs = dur(input.caTtl, 24 * 3_600_000, '--ca-ttl', 60_000, 365 * 24 * 3_600_000);
  const x509SvidTtlMs = dur(input.x509Ttl, 3_600_000, '--x509-ttl', 1000, 7 * 24 * 3_600_000);
  const jwtSvidTtlMs = dur(input.jwtTtl, 5 * 60_000, '--jwt-ttl', 1000, 24 * 3_600_000);
  if (caTtlMs < 6 * Math.max(x509SvidTtlMs, jwtSvidTtlMs)) problems.push('--ca-ttl must be at least 6x the longest SVID TTL');
  const workloadSizeLimit = workloadSizeLimitOf(input.workloadSha256Limit, problems);
  const level = logLevelOf(input.env, problems);
  if (problems.length > 0 || td === undefined || dataDir === undefined || socketPath === undefined || adminSocketPath === undefined) {
    throw new EdgeConfigError('edge-config/invalid', problems.join('; '));
  }
  return Object.freeze({
    mode: 'standalone',
    trustDomain: td,
    dataDir,
    socketPath,
    adminSocketPath,
    dbPath: join(dataDir, 'state.db'),
    caDir: join(dataDir, 'ca'),
    policyFile,
    caTtlMs,
    x509SvidTtlMs,
    jwtSvidTtlMs,
    discoverWorkloadPath: true,
    // Default: unix:path only; hashing the binary (unix:sha256) on every attestation costs ~0.3 s for a
    // 100 MB runtime such as node. A negative limit means "path, no hash" (src/edge/attestor/unix.ts);
    // a binary larger than a positive limit fails attestation (as SPIRE's workload_size_limit).
    workloadSizeLimit,
    logLevel: level,
  });
}

/** The joined agent's configuration (`edgeward edge start --data-dir DIR`, DIR holding a join). */
export interface JoinedEdgeConfig {
  readonly mode: 'joined';
  readonly trustDomain: TrustDomain;
  readonly dataDir: string;
  readonly join: Readonly<JoinRecord>;
  readonly socketPath: string;
  readonly adminSocketPath: string;
  /** The TTL asked for when an entry names none (the cloud decides and caps). */
  readonly x509SvidTtlMs: number;
  readonly jwtSvidTtlMs: number;
  /** How often the delegated entries are fetched (the hub pushes changes in a later issue). */
  readonly entriesSyncMs: number;
  /** Timeout of one node-API call. */
  readonly cloudTimeoutMs: number;
  /**
   * The hub store's secrets key file as given (`--secrets-key-file` / EDGEWARD_SECRETS_KEY_FILE), absolute;
   * undefined: TPM-joined nodes seal the data key into their TPM, others use `defaultSecretsKeyFile`.
   */
  readonly secretsKeyFile: string | undefined;
  /** `${XDG_CONFIG_HOME:-$HOME/.config}/edgeward/secrets-keys/<id>.key` for this data dir. */
  readonly defaultSecretsKeyFile: string;
  readonly discoverWorkloadPath: boolean;
  readonly workloadSizeLimit: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** The EventBus (MQTT over TLS) listener, `--mqtt-listen` (default 127.0.0.1:8883); undefined: `off`. */
  readonly mqttListen: ListenAddress | undefined;
  /** The device enrolment endpoint (HTTPS), `--enroll-listen` (default 127.0.0.1:8884); undefined: `off`. */
  readonly enrollListen: ListenAddress | undefined;
  /** The EventBus topic ACL policy, `--mqtt-acl` (default: the packaged policies/mqtt-acl.yaml). */
  readonly mqttAclFile: string;
  /** PUBLISH packets per second one client may send (burst: twice as many), `--mqtt-publish-rate` (default 1000). */
  readonly mqttPublishRate: number;
  /** Enrolment requests per second from one source address (burst: 10 or twice as many), `--enroll-rate` (default 2). */
  readonly enrollRate: number;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface JoinedEdgeConfigInput {
  dataDir?: string | undefined;
  socket?: string | undefined;
  secretsKeyFile?: string | undefined;
  workloadSha256Limit?: string | undefined;
  mqttListen?: string | undefined;
  enrollListen?: string | undefined;
  mqttAcl?: string | undefined;
  mqttPublishRate?: string | undefined;
  enrollRate?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
}

export const DEFAULT_MQTT_PUBLISH_RATE = 1000;
export const DEFAULT_ENROLL_RATE = 2;

/** A whole number of events per second from 1 to `max`, or a problem. */
function rateOf(text: string | undefined, fallback: number, max: number, flag: string, problems: string[]): number {
  if (text === undefined) return fallback;
  const n = /^[1-9][0-9]{0,6}$/.test(text) ? Number(text) : NaN;
  if (Number.isSafeInteger(n) && n <= max) return n;
  problems.push(`${flag} must be a whole number per second from 1 to ${max}`);
  return fallback;
}
export const DEFAULT_MQTT_LISTEN = '127.0.0.1:8883';
export const DEFAULT_ENROLL_LISTEN = '127.0.0.1:8884';
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** `HOST:PORT` (`[v6]:PORT` for IPv6) with port 0-65535 (0: any free port), or `off`. */
function listenAddressOf(text: string, flag: string, problems: string[]): ListenAddress | undefined {
  if (text === 'off') return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (m === null || host === undefined || !Number.isInteger(port) || port > 65535 || !(isIP(host) !== 0 || DNS_NAME.test(host))) {
    problems.push(`${flag} must be HOST:PORT (port 0-65535; [IPv6]:PORT) or off`);
    return undefined;
  }
  return Object.freeze({ host, port });
}

/** A file of this package's policies/ directory (found upwards from this module: works from src/ and dist/src/). */
export function packagedPolicyFile(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'policies', name);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'policies', name);
}

export const DEFAULT_ENTRIES_SYNC_MS = 30_000;

/** Build the joined agent's config from DIR/join.json and the flags; every problem reported together. */
export function parseJoinedEdgeConfig(input: JoinedEdgeConfigInput): JoinedEdgeConfig {
  const problems: string[] = [];
  const dataDir = input.dataDir === undefined ? (problems.push('--data-dir is required'), undefined) : resolve(input.dataDir);
  let rec: JoinRecord | undefined;
  if (dataDir !== undefined) {
    try {
      rec = readJoinRecord(dataDir);
    } catch (e) {
      problems.push(e instanceof Error ? e.message : String(e));
    }
  }
  const socketPath = workloadSocketPathOf(input.socket, dataDir, problems);
  const adminSocketPath = adminSocketPathOf(dataDir, problems);
  const workloadSizeLimit = workloadSizeLimitOf(input.workloadSha256Limit, problems);
  const secretsKeyFile = secretsKeyFileOf(input.secretsKeyFile, input.env, dataDir, problems);
  const defaultKeyFile = defaultSecretsKeyFileOf(dataDir, input.env, problems);
  const level = logLevelOf(input.env, problems);
  const mqttListen = listenAddressOf(input.mqttListen ?? DEFAULT_MQTT_LISTEN, '--mqtt-listen', problems);
  const enrollListen = listenAddressOf(input.enrollListen ?? DEFAULT_ENROLL_LISTEN, '--enroll-listen', problems);
  if (input.mqttAcl !== undefined && (input.mqttAcl === '' || input.mqttAcl.includes('\0'))) problems.push('--mqtt-acl must be a file path');
  const mqttAclFile = input.mqttAcl !== undefined ? resolve(input.mqttAcl) : packagedPolicyFile('mqtt-acl.yaml');
  const mqttPublishRate = rateOf(input.mqttPublishRate, DEFAULT_MQTT_PUBLISH_RATE, 1_000_000, '--mqtt-publish-rate', problems);
  const enrollRate = rateOf(input.enrollRate, DEFAULT_ENROLL_RATE, 10_000, '--enroll-rate', problems);
  if (problems.length > 0 || rec === undefined || dataDir === undefined || socketPath === undefined || adminSocketPath === undefined || defaultKeyFile === undefined) {
    throw new EdgeConfigError('edge-config/invalid', problems.join('; '));
  }
  return Object.freeze({
    mode: 'joined',
    trustDomain: TrustDomain.parse(rec.trustDomain),
    dataDir,
    join: Object.freeze({ ...rec }),
    socketPath,
    adminSocketPath,
    x509SvidTtlMs: 3_600_000,
    jwtSvidTtlMs: 5 * 60_000,
    entriesSyncMs: DEFAULT_ENTRIES_SYNC_MS,
    cloudTimeoutMs: 10_000,
    secretsKeyFile,
    defaultSecretsKeyFile: defaultKeyFile,
    discoverWorkloadPath: true,
    workloadSizeLimit,
    logLevel: level,
    mqttListen,
    enrollListen,
    mqttAclFile,
    mqttPublishRate,
    enrollRate,
  });
}

/**
 * SPIRE mode (`edgeward edge start --spiffe-socket unix:///PATH --cloud HOST:PORT [--data-dir DIR]`, issue
 * #4 "Bring your own SPIRE"): the agent's node identity is the SVID `spiffe://TD/edgeward/node/NAME` from
 * an external SPIFFE Workload API (a SPIRE agent); the trust domain and node name come from that SVID. The
 * agent serves no Workload API of its own (workloads talk to SPIRE directly).
 */
export interface SpireEdgeConfig {
  readonly mode: 'spire';
  /** The SPIRE agent's Workload API endpoint (`unix:///PATH` or `tcp://IP:PORT`), as given. */
  readonly spiffeSocket: string;
  /** `HOST:PORT` of the cloud node API. */
  readonly cloud: string;
  /** If given, the node SVID must belong to this trust domain. */
  readonly trustDomain: TrustDomain | undefined;
  /** State dir for the admin socket (DIR/admin/admin.sock) and the hub store (DIR/hub); without it the hub is off. */
  readonly dataDir: string | undefined;
  readonly adminSocketPath: string | undefined;
  /** The hub store's secrets key file (`--secrets-key-file` / EDGEWARD_SECRETS_KEY_FILE), absolute; undefined: the default. */
  readonly secretsKeyFile: string | undefined;
  /** The default secrets key file of the data dir (undefined without --data-dir). */
  readonly defaultSecretsKeyFile: string | undefined;
  /** How often the session with the cloud is exercised (`entries.request`). */
  readonly entriesSyncMs: number;
  readonly cloudTimeoutMs: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export interface SpireEdgeConfigInput {
  spiffeSocket?: string | undefined;
  cloud?: string | undefined;
  trustDomain?: string | undefined;
  dataDir?: string | undefined;
  secretsKeyFile?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
}

/** Build the SPIRE-mode config; every problem reported together. */
export function parseSpireEdgeConfig(input: SpireEdgeConfigInput): SpireEdgeConfig {
  const { problems, take } = collectProblems();
  const envSocket = input.env['SPIFFE_ENDPOINT_SOCKET'];
  const spiffeSocket = input.spiffeSocket ?? (envSocket === '' ? undefined : envSocket);
  if (spiffeSocket === undefined) problems.push('--spiffe-socket (or SPIFFE_ENDPOINT_SOCKET) is required in SPIRE mode');
  else take(() => parseEndpoint(spiffeSocket), '--spiffe-socket');
  const cloud = input.cloud;
  if (cloud === undefined) problems.push('--cloud HOST:PORT is required in SPIRE mode');
  else take(() => parseCloudAddress(cloud), '--cloud');
  const tdText = input.trustDomain;
  const trustDomain = tdText === undefined ? undefined : take(() => TrustDomain.parse(tdText), '--trust-domain');
  const dataDir = input.dataDir === undefined ? undefined : resolve(input.dataDir);
  const adminSocketPath = adminSocketPathOf(dataDir, problems);
  if (dataDir === undefined && input.secretsKeyFile !== undefined) problems.push('--secrets-key-file needs --data-dir (the hub store lives there)');
  const secretsKeyFile = dataDir === undefined ? undefined : secretsKeyFileOf(input.secretsKeyFile, input.env, dataDir, problems);
  const defaultKeyFile = dataDir === undefined ? undefined : defaultSecretsKeyFileOf(dataDir, input.env, problems);
  const level = logLevelOf(input.env, problems);
  if (problems.length > 0 || spiffeSocket === undefined || cloud === undefined) throw new EdgeConfigError('edge-config/invalid', problems.join('; '));
  return Object.freeze({
    mode: 'spire',
    spiffeSocket,
    cloud,
    trustDomain,
    dataDir,
    adminSocketPath,
    secretsKeyFile,
    defaultSecretsKeyFile: defaultKeyFile,
    entriesSyncMs: DEFAULT_ENTRIES_SYNC_MS,
    cloudTimeoutMs: 10_000,
    logLevel: level,
  });
}
