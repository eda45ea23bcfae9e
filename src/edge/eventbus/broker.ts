/**
 * The EventBus (issue #6): an aedes MQTT 3.1.1 broker on the edge node, reachable **only** over TLS with a
 * client certificate. There is no plaintext listener and no username/password path: a client's identity is the
 * SPIFFE ID of its verified X509-SVID.
 *
 * Accept (authenticate hook; refusals are CONNACK return codes, MQTT 3.1.1 3.2.2.3, and `security.*` events):
 * - the TLS handshake already required a client certificate chaining to the bundle (requestCert +
 *   rejectUnauthorized, ca = the bundle's X.509 authorities); the chain is then validated again as an X509-SVID of
 *   the node's trust domain (src/identity validateX509Svid: one URI SAN, leaf not a CA, validity, path);
 * - a device ID (`spiffe://TD/edgeward/device/NS/NAME`) must be a device of THIS node (the DeviceDirectory: a
 *   device SVID is valid only on its node) whose certificate was issued at or after its `revokedBefore`;
 * - any other SPIFFE ID must be named by the ACL policy (deny by default);
 * - the client id must be the device's `NAMESPACE/NAME` or its SPIFFE ID (others: the SPIFFE ID), else 2
 *   (identifier rejected); a username or password is refused (4); persistent sessions (clean = 0) are refused (5):
 *   the in-memory store would queue for absent clients without bound;
 * - a will is accepted only on a topic the client may publish to.
 *
 * Afterwards (mqtt.md "measured traps"): an open TLS connection outlives its certificate, so each client is
 * disconnected at its SVID's NotAfter; at once when its device is deleted from or revoked on this node
 * (DeviceDirectory.onChange: synchronous, well within the 1 s the issue asks); and when a bundle change means its
 * chain no longer validates. The server certificate is the node SVID from the identity port, swapped in place
 * with `setSecureContext({key, cert, ca})` (the CA passed every time: without it every new mTLS connect fails);
 * open connections are kept.
 *
 * Topics: per-client ACLs (acl.ts) checked on publish, subscribe (SUBACK 0x80 per refused filter, MQTT 3.1.1
 * 3.9.3) and on every delivery (authorizeForward: retained and queued messages too, so a revoked grant cannot
 * leak). A denied PUBLISH closes the connection (3.1.1 has no negative PUBACK). `$SYS` is closed both ways.
 *
 * Limits (EventBusLimits): connections, connect rate, packet size (checked on the raw stream before aedes
 * buffers a packet), per-client publish rate, subscriptions per client, inbound QoS 2 in flight, pre-CONNACK
 * queue, topic levels, client id length, keepalive, drain and handshake timeouts.
 */
import { TLSSocket, createServer as createTlsServer, type Server as TlsServer, type SecureContextOptions } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Aedes, type Client, type AedesPublishPacket, type PublishPacket, type Subscription, type AuthenticateError } from 'aedes';
import { deviceNameFromSpiffeId, formatDeviceName, type DeviceName } from '../../attestation/index.js';
import { derToPem, EdgewardError, validateX509Svid, x509AuthoritiesPem, type Clock, type IdentitySource, type TrustDomain, type ValidatedX509Svid } from '../../identity/index.js';
import type { Timers } from '../svid/timers.js';
import { peerChain } from '../cloud-client/client.js';
import type { DeviceDirectory } from '../devices/directory.js';
import type { EdgeLogger } from '../main.js';
import { compileAcl, deviceGrants, type ClientAcl } from './acl.js';
import type { MqttAclPolicy } from './acl-policy.js';
import { filterMatches, isTopicFilter } from './topics.js';
import { FrameScanner } from './frame-scanner.js';

export interface EventBusLimits {
  /** Most clients connected at once (further CONNECTs get CONNACK 3). */
  readonly maxConnections: number;
  /** Connect rate across all clients: a burst, then per second (the handshake and SVID validation cost CPU). */
  readonly connectBurst: number;
  readonly connectsPerSecond: number;
  /** Largest MQTT packet (fixed header included); a bigger one closes the connection before it is buffered. */
  readonly maxPacketBytes: number;
  /** Per-client PUBLISH rate: a burst, then per second; beyond it the client is disconnected. */
  readonly publishBurst: number;
  readonly publishesPerSecond: number;
  readonly maxSubscriptionsPerClient: number;
  /** aedes: inbound QoS 2 awaiting PUBREL per client; packets held before CONNACK; concurrent deliveries. */
  readonly maxInflightInbound: number;
  readonly queueLimit: number;
  readonly concurrency: number;
  /** A subscriber that does not drain within this long is disconnected (else it stalls delivery to others). */
  readonly drainTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /** Longest keepalive a client may ask for (seconds); 0 (no keepalive) is refused. */
  readonly keepaliveLimitSeconds: number;
  readonly maxTopicLevels: number;
  readonly maxClientIdLength: number;
}

export const DEFAULT_EVENTBUS_LIMITS: EventBusLimits = Object.freeze({
  maxConnections: 1000,
  connectBurst: 100,
  connectsPerSecond: 50,
  maxPacketBytes: 128 * 1024,
  publishBurst: 2000,
  publishesPerSecond: 1000,
  maxSubscriptionsPerClient: 64,
  maxInflightInbound: 100,
  queueLimit: 42,
  concurrency: 100,
  drainTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  keepaliveLimitSeconds: 3600,
  maxTopicLevels: 32,
  maxClientIdLength: 512,
});

export interface EventBusOptions {
  listen: { host: string; port: number };
  trustDomain: TrustDomain;
  /** The node SVID (server certificate) and the bundles (client verification). */
  identity: IdentitySource;
  devices: DeviceDirectory;
  acl: MqttAclPolicy;
  limits?: Partial<EventBusLimits>;
  clock: Clock;
  timers: Timers;
  logger: EdgeLogger;
  /** A device's first connection opened / its last one closed (the twins engine's online state). */
  onDeviceConnected?(device: string): void;
  onDeviceDisconnected?(device: string): void;
}

/** A message a client published, as the internal side sees it. */
export interface EventBusMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly clientId: string;
  readonly spiffeId: string;
  /** `NAMESPACE/NAME` when the publisher is a device. */
  readonly device?: string;
}

export interface EventBusStats {
  listening: { host: string; port: number } | null;
  connections: number;
  devicesConnected: number;
  messagesIn: number;
  messagesOut: number;
  refused: Record<string, number>;
  disconnected: Record<string, number>;
}

export interface EventBus {
  start(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  stats(): EventBusStats;
  /** Publish from the edge itself (trusted: no ACL; delivery to clients is still checked by authorizeForward). */
  publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<void>;
  /** Messages published by clients on topics matching `filter` (MQTT 3.1.1 4.7). Returns the unsubscribe function. */
  subscribe(filter: string, handler: (m: EventBusMessage) => void): () => void;
}

export type EventBusErrorCode = 'eventbus/bad-config' | 'eventbus/closed' | 'eventbus/listen-failed';
export class EventBusError extends EdgewardError<EventBusErrorCode> {}

interface ClientState {
  readonly spiffeId: string;
  readonly device: string | undefined;
  readonly acl: ClientAcl;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly serial: string;
  readonly chainDer: Buffer[];
  readonly peer: string;
  /** Exact publish grants: only these topics may carry retained messages (bounded by the policy). */
  readonly retainable: ReadonlySet<string>;
  subscriptions: Set<string>;
  tokens: number;
  tokensAt: number;
  timer: unknown;
  closing: boolean;
}

/** The longest a single timer may be (setTimeout's 32-bit limit); longer waits re-arm. */
const MAX_TIMER_MS = 2_147_483_647;

function authError(returnCode: 2 | 3 | 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export function createEventBus(o: EventBusOptions): EventBus {
  const limits: EventBusLimits = { ...DEFAULT_EVENTBUS_LIMITS, ...o.limits };
  for (const [k, v] of Object.entries(limits)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new EventBusError('eventbus/bad-config', `EventBus limit ${k} must be a positive number`);
  }
  const log = o.logger;
  const clock = o.clock;
  const states = new WeakMap<Client, ClientState>();
  const connected = new Set<Client>();
  const byDevice = new Map<string, Set<Client>>();
  const requested = new WeakMap<Client, { clientId: string; clean: boolean; will: PublishPacket | undefined }>();
  const internal = new Set<{ filter: string; handler: (m: EventBusMessage) => void }>();
  const refused: Record<string, number> = {};
  const disconnected: Record<string, number> = {};
  let messagesIn = 0;
  let messagesOut = 0;
  let connectTokens = limits.connectBurst;
  let connectTokensAt = clock.now();
  let broker: Aedes | undefined;
  let server: TlsServer | undefined;
  let listening: { host: string; port: number } | null = null;
  let closed = false;
  /** The literal first levels of the internal filters (`$hw/`...), or undefined when one starts with a wildcard. */
  let internalPrefixes: string[] | undefined = [];
  const refreshPrefixes = (): void => {
    const firsts = [...internal].map((x) => x.filter.split('/')[0]!);
    internalPrefixes = firsts.some((f) => f === '+' || f === '#') ? undefined : [...new Set(firsts)].map((f) => `${f}/`);
  };
  let unsubscribeDevices: (() => void) | undefined;
  let unsubscribeIdentity: (() => void) | undefined;

  const count = (m: Record<string, number>, k: string): void => {
    m[k] = (m[k] ?? 0) + 1;
  };

  const refuse = (client: Client, reason: string, returnCode: 2 | 3 | 4 | 5, fields: Record<string, unknown> = {}): AuthenticateError => {
    count(refused, reason);
    const sock = client.conn as Partial<TLSSocket>;
    log.warn(
      { event: 'security.mqtt_connect_refused', reason, code: `eventbus/${reason}`, return_code: returnCode, peer: `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'}`, ...fields },
      'MQTT connection refused',
    );
    return authError(returnCode, reason);
  };

  const secureContext = (): SecureContextOptions => {
    const svid = o.identity.svid();
    const bundle = o.identity.bundles().get(o.trustDomain);
    if (bundle === undefined) throw new EventBusError('eventbus/bad-config', `no bundle for trust domain ${o.trustDomain.name}`);
    return {
      key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      cert: svid.chainDer.map((d) => derToPem(d, 'CERTIFICATE')).join(''),
      // mqtt.md: setSecureContext() replaces `ca` too; leaving it out breaks every new mTLS connect.
      ca: x509AuthoritiesPem(bundle),
    };
  };

  const disconnect = (client: Client, reason: string, fields: Record<string, unknown> = {}): void => {
    const s = states.get(client);
    if (s === undefined || s.closing) return;
    s.closing = true;
    count(disconnected, reason);
    const security = reason !== 'expired';
    const line = { event: security ? 'security.mqtt_client_disconnected' : 'eventbus.client_disconnected', reason, spiffe_id: s.spiffeId, client_id: client.id, serial: s.serial, ...fields };
    if (security) log.warn(line, 'MQTT client disconnected');
    else log.info(line, 'MQTT client disconnected');
    client.close();
  };

  const armExpiry = (client: Client, s: ClientState): void => {
    const wait = Math.min(Math.max(0, s.notAfter - clock.now()), MAX_TIMER_MS);
    s.timer = o.timers.setTimeout(() => {
      if (clock.now() >= s.notAfter) disconnect(client, 'expired', { not_after: new Date(s.notAfter).toISOString() });
      else armExpiry(client, s);
    }, wait);
  };

  const forget = (client: Client): void => {
    const s = states.get(client);
    if (s === undefined) return;
    o.timers.clearTimeout(s.timer);
    s.closing = true;
    if (connected.delete(client) && s.device !== undefined) {
      const set = byDevice.get(s.device);
      set?.delete(client);
      if (set !== undefined && set.size === 0) {
        byDevice.delete(s.device);
        try {
          o.onDeviceDisconnected?.(s.device);
        } catch (e) {
          log.error({ event: 'eventbus.hook_failed', hook: 'disconnected', err: String(e) }, 'a device hook failed');
        }
      }
    }
  };

  /** Does this client's SVID still stand (device on this node, not revoked; chain valid for the bundle now)? */
  const stillValid = (s: ClientState, checkChain: boolean): string | undefined => {
    if (s.device !== undefined) {
      const d = o.devices.get(s.device);
      if (d === undefined) return 'device-deleted';
      if (d.revokedBefore !== undefined && s.notBefore < d.revokedBefore) return 'device-revoked';
    } else if (!o.acl.identities.has(s.spiffeId)) return 'not-granted';
    if (checkChain) {
      try {
        validateX509Svid(s.chainDer, o.identity.bundles(), clock.now());
      } catch {
        return 'bundle-changed';
      }
    }
    return undefined;
  };

  // ---- hooks

  const preConnect = (client: Client, packet: { clientId: string; clean: boolean; will?: PublishPacket | undefined }, cb: (e: Error | null, ok: boolean) => void): void => {
    requested.set(client, { clientId: packet.clientId, clean: packet.clean, will: packet.will });
    cb(null, !closed);
  };

  const authenticate = (client: Client, username: string | undefined, password: Buffer | undefined, done: (e: AuthenticateError | null, ok: boolean | null) => void): void => {
    const req = requested.get(client);
    const sock = client.conn;
    const peer = sock instanceof TLSSocket ? `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'}` : '?';
    try {
      // cheap checks first: capacity and the connect rate
      if (connected.size >= limits.maxConnections) return done(refuse(client, 'too-many-connections', 3, { max: limits.maxConnections }), null);
      const now = clock.now();
      connectTokens = Math.min(limits.connectBurst, connectTokens + ((now - connectTokensAt) * limits.connectsPerSecond) / 1000);
      connectTokensAt = now;
      if (connectTokens < 1) return done(refuse(client, 'connect-rate', 3), null);
      connectTokens -= 1;
      if (!(sock instanceof TLSSocket) || !sock.authorized) return done(refuse(client, 'no-client-certificate', 5), null);
      if (username !== undefined || password !== undefined) return done(refuse(client, 'password-not-accepted', 4), null);
      if (req === undefined || req.clientId === '') return done(refuse(client, 'empty-client-id', 2), null);
      const chainDer = peerChain(sock.getPeerCertificate(true));
      let v: ValidatedX509Svid;
      try {
        v = validateX509Svid(chainDer, o.identity.bundles(), now);
      } catch (e) {
        return done(refuse(client, 'invalid-svid', 5, { err_code: e instanceof EdgewardError ? e.code : 'unknown' }), null);
      }
      const spiffeId = v.spiffeId.toString();
      const leaf = v.leaf;
      if (!v.spiffeId.trustDomain.equals(o.trustDomain)) return done(refuse(client, 'foreign-trust-domain', 5, { spiffe_id: spiffeId }), null);
      let device: string | undefined;
      let acl: ClientAcl;
      let exact: string[];
      let dn: DeviceName | undefined;
      try {
        dn = deviceNameFromSpiffeId(v.spiffeId, o.trustDomain);
      } catch {
        dn = undefined;
      }
      if (dn !== undefined) {
        device = formatDeviceName(dn);
        const d = o.devices.get(device);
        if (d === undefined) return done(refuse(client, 'device-unknown', 5, { spiffe_id: spiffeId }), null);
        if (d.revokedBefore !== undefined && leaf.notBefore < d.revokedBefore) return done(refuse(client, 'device-revoked', 5, { spiffe_id: spiffeId }), null);
        if (req.clientId !== device && req.clientId !== spiffeId) return done(refuse(client, 'client-id-mismatch', 2, { spiffe_id: spiffeId, client_id: req.clientId.slice(0, 128) }), null);
        const g = deviceGrants(dn, spiffeId, o.acl);
        acl = compileAcl(g);
        exact = g.publish.filter((t) => !t.includes('+') && !t.includes('#'));
      } else {
        const g = o.acl.identities.get(spiffeId);
        if (g === undefined) return done(refuse(client, 'not-granted', 5, { spiffe_id: spiffeId }), null);
        if (req.clientId !== spiffeId) return done(refuse(client, 'client-id-mismatch', 2, { spiffe_id: spiffeId, client_id: req.clientId.slice(0, 128) }), null);
        acl = compileAcl(g);
        exact = g.publish.filter((t) => !t.includes('+') && !t.includes('#'));
      }
      if (!req.clean) return done(refuse(client, 'persistent-session', 5, { spiffe_id: spiffeId }), null);
      if (req.will !== undefined && !acl.canPublish(req.will.topic)) return done(refuse(client, 'will-not-granted', 5, { spiffe_id: spiffeId }), null);
      const s: ClientState = {
        spiffeId,
        device,
        acl,
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        serial: leaf.serialHex,
        chainDer,
        peer,
        retainable: new Set(exact),
        subscriptions: new Set(),
        tokens: limits.publishBurst,
        tokensAt: now,
        timer: undefined,
        closing: false,
      };
      states.set(client, s);
      armExpiry(client, s);
      sock.once('close', () => forget(client));
      done(null, true);
    } catch (e) {
      log.error({ event: 'eventbus.authenticate_failed', peer, err: String(e) }, 'MQTT authentication failed');
      done(authError(3, 'server error'), null);
    }
  };

  const authorizePublish = (client: Client | null, packet: PublishPacket, cb: (e?: Error | null) => void): void => {
    const s = client === null ? undefined : states.get(client);
    if (client === null || s === undefined || s.closing) return cb(new Error('not authorized'));
    const now = clock.now();
    s.tokens = Math.min(limits.publishBurst, s.tokens + ((now - s.tokensAt) * limits.publishesPerSecond) / 1000);
    s.tokensAt = now;
    if (s.tokens < 1) {
      count(refused, 'publish-rate');
      disconnect(client, 'publish-rate', { limit: limits.publishesPerSecond });
      return cb(new Error('rate limited'));
    }
    s.tokens -= 1;
    const topic = packet.topic;
    if (topic.startsWith('$SYS') || !s.acl.canPublish(topic)) {
      count(refused, 'publish-denied');
      log.warn({ event: 'security.mqtt_publish_denied', spiffe_id: s.spiffeId, client_id: client.id, topic: topic.slice(0, 256) }, 'MQTT publish denied; closing the connection');
      s.closing = true;
      return cb(new Error('not authorized')); // aedes closes the connection (MQTT 3.1.1 has no negative PUBACK)
    }
    // Retained messages only on exact grants: the retained store stays bounded by the policy.
    if (packet.retain && !s.retainable.has(topic)) packet.retain = false;
    messagesIn++;
    cb(null);
  };

  const authorizeSubscribe = (client: Client, sub: Subscription, cb: (e: Error | null, s?: Subscription | null) => void): void => {
    const s = states.get(client);
    if (s === undefined || s.closing) return cb(null, null);
    const filter = sub.topic;
    const ok =
      isTopicFilter(filter, limits.maxTopicLevels) &&
      !filter.startsWith('$SYS') &&
      (s.subscriptions.has(filter) || s.subscriptions.size < limits.maxSubscriptionsPerClient) &&
      s.acl.canSubscribe(filter);
    if (!ok) {
      count(refused, 'subscribe-denied');
      log.warn({ event: 'security.mqtt_subscribe_denied', spiffe_id: s.spiffeId, client_id: client.id, filter: filter.slice(0, 256) }, 'MQTT subscription refused (SUBACK 0x80)');
      return cb(null, null);
    }
    s.subscriptions.add(filter);
    cb(null, { ...sub, qos: Math.min(sub.qos, 1) as 0 | 1 });
  };

  const authorizeForward = (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const s = states.get(client);
    if (s === undefined || s.closing || !s.acl.canReceive(packet.topic)) return null;
    messagesOut++;
    return packet;
  };

  // ---- directory and identity changes

  const onDeviceChange = (c: { fullName: string }): void => {
    const set = byDevice.get(c.fullName);
    if (set === undefined) return;
    for (const client of [...set]) {
      const s = states.get(client);
      if (s === undefined) continue;
      const why = stillValid(s, false);
      if (why !== undefined) disconnect(client, why, { device: c.fullName });
    }
  };

  const onIdentityChange = (): void => {
    if (server === undefined) return;
    try {
      server.setSecureContext(secureContext());
      log.info({ event: 'eventbus.identity_rotated', serial: o.identity.svid().serialHex }, 'EventBus server certificate replaced (open connections kept)');
    } catch (e) {
      log.error({ event: 'eventbus.identity_rotation_failed', err: e instanceof Error ? e.message : String(e) }, 'the EventBus could not take the new node SVID');
    }
    // A bundle change can remove the authority a client chains to.
    for (const client of [...connected]) {
      const s = states.get(client);
      if (s === undefined) continue;
      const why = stillValid(s, true);
      if (why !== undefined) disconnect(client, why);
    }
  };

  return {
    async start() {
      if (closed) throw new EventBusError('eventbus/closed', 'the EventBus is closed');
      const b = await Aedes.createBroker({
        concurrency: limits.concurrency,
        queueLimit: limits.queueLimit,
        maxInflightInbound: limits.maxInflightInbound,
        maxTopicLevels: limits.maxTopicLevels,
        maxClientsIdLength: limits.maxClientIdLength,
        connectTimeout: limits.connectTimeoutMs,
        drainTimeout: limits.drainTimeoutMs,
        keepaliveLimit: limits.keepaliveLimitSeconds,
        preConnect: preConnect as never,
        authenticate: authenticate as never,
        authorizePublish,
        authorizeSubscribe,
        authorizeForward: authorizeForward as never,
      });
      broker = b;
      b.on('clientReady', (client: Client) => {
        const s = states.get(client);
        if (s === undefined || s.closing) return;
        connected.add(client);
        if (s.device !== undefined) {
          let set = byDevice.get(s.device);
          const first = set === undefined;
          if (set === undefined) byDevice.set(s.device, (set = new Set()));
          set.add(client);
          if (first) {
            try {
              o.onDeviceConnected?.(s.device);
            } catch (e) {
              log.error({ event: 'eventbus.hook_failed', hook: 'connected', err: String(e) }, 'a device hook failed');
            }
          }
        }
        log.info({ event: 'eventbus.client_connected', spiffe_id: s.spiffeId, client_id: client.id, serial: s.serial, peer: s.peer }, 'MQTT client connected');
      });
      b.on('clientDisconnect', (client: Client) => forget(client));
      b.on('unsubscribe', (filters: string[], client: Client) => {
        const s = states.get(client);
        if (s !== undefined) for (const f of filters) s.subscriptions.delete(f);
      });
      b.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
        if (client === null || internal.size === 0) return;
        // hot path: most traffic is not for an internal subscriber (the twins engine listens under $hw/)
        const topic = packet.topic;
        if (internalPrefixes !== undefined && !internalPrefixes.some((p) => topic.startsWith(p))) return;
        const s = states.get(client);
        if (s === undefined) return;
        for (const sub of internal) {
          if (!filterMatches(sub.filter, packet.topic)) continue;
          const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
          try {
            sub.handler({ topic: packet.topic, payload, qos: packet.qos, clientId: client.id, spiffeId: s.spiffeId, ...(s.device === undefined ? {} : { device: s.device }) });
          } catch (e) {
            log.error({ event: 'eventbus.subscriber_failed', err: String(e) }, 'an internal subscriber failed');
          }
        }
      });
      b.on('clientError', (client: Client, e: Error) => {
        const s = states.get(client);
        log.debug({ event: 'eventbus.client_error', spiffe_id: s?.spiffeId, err: e.message.slice(0, 200) }, 'MQTT client error');
      });

      const srv = createTlsServer(
        {
          ...secureContext(),
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.2',
          handshakeTimeout: limits.handshakeTimeoutMs,
        },
        (socket: TLSSocket) => {
          b.handle(socket);
          // The packet-size bound, on the raw stream: with aedes reading via 'readable', a 'data' listener sees
          // each chunk as it is read, before the MQTT parser buffers it (mqtt-packet has no size limit).
          const scanner = new FrameScanner(limits.maxPacketBytes);
          socket.on('data', (chunk: Buffer) => {
            if (scanner.feed(chunk)) return;
            count(refused, 'packet-too-large');
            log.warn({ event: 'security.mqtt_packet_too_large', peer: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, max: limits.maxPacketBytes }, 'MQTT packet larger than the limit; connection closed');
            socket.destroy();
          });
        },
      );
      srv.maxConnections = limits.maxConnections + 64;
      srv.on('tlsClientError', (e: Error & { code?: string }, socket: TLSSocket) => {
        count(refused, 'tls-handshake');
        log.warn({ event: 'security.mqtt_tls_refused', peer: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, code: e.code ?? 'tls', err: e.message.slice(0, 200) }, 'TLS handshake refused');
      });
      server = srv;
      await new Promise<void>((resolve, reject) => {
        const onError = (e: Error): void => reject(new EventBusError('eventbus/listen-failed', `the EventBus cannot listen on ${o.listen.host}:${o.listen.port}: ${e.message}`, { cause: e }));
        srv.once('error', onError);
        srv.listen(o.listen.port, o.listen.host, () => {
          srv.off('error', onError);
          resolve();
        });
      });
      const a = srv.address() as AddressInfo;
      listening = { host: o.listen.host, port: a.port };
      unsubscribeDevices = o.devices.onChange(onDeviceChange);
      unsubscribeIdentity = o.identity.onChange(onIdentityChange);
      log.info({ event: 'eventbus.started', host: listening.host, port: listening.port, max_connections: limits.maxConnections }, 'EventBus listening (MQTT over TLS, client certificates only)');
      return listening;
    },

    async close() {
      if (closed) return;
      closed = true;
      unsubscribeDevices?.();
      unsubscribeIdentity?.();
      internal.clear();
      const srv = server;
      const done = srv === undefined ? Promise.resolve() : new Promise<void>((r) => srv.close(() => r()));
      for (const client of [...connected]) {
        const s = states.get(client);
        if (s !== undefined) o.timers.clearTimeout(s.timer);
        client.close();
      }
      const b = broker;
      if (b !== undefined) await new Promise<void>((r) => b.close(() => r()));
      await done;
      listening = null;
    },

    stats() {
      return {
        listening,
        connections: connected.size,
        devicesConnected: byDevice.size,
        messagesIn,
        messagesOut,
        refused: { ...refused },
        disconnected: { ...disconnected },
      };
    },

    publish(topic, payload, qos) {
      const b = broker;
      if (b === undefined || closed) return Promise.reject(new EventBusError('eventbus/closed', 'the EventBus is not running'));
      return new Promise((resolve, reject) => {
        b.publish({ cmd: 'publish', topic, payload, qos, retain: false, dup: false } as PublishPacket, (e?: Error) => (e === undefined || e === null ? resolve() : reject(e)));
      });
    },

    subscribe(filter, handler) {
      if (!isTopicFilter(filter, limits.maxTopicLevels)) throw new EventBusError('eventbus/bad-config', `not a topic filter: ${filter.slice(0, 100)}`);
      const sub = { filter, handler };
      internal.add(sub);
      refreshPrefixes();
      return () => {
        internal.delete(sub);
        refreshPrefixes();
      };
    },
  };
}
