/**
 * The cloud <-> edge node API (issue #4): node attestation, renewal of the node SVID and signing of
 * workload SVIDs. Messages are JSON objects tagged by `kind`, all carrying `v: 1`; bytes travel as strict
 * base64 (RFC 4648 4) and are `Buffer`s once decoded.
 *
 * Flow (SPIRE `Agent.AttestAgent`, reference spiffe.md §3 "Node attestation"):
 *
 *   edge -> cloud  attest.begin     {method, nodeName, payload, csr}
 *   cloud -> edge  attest.challenge {sessionId, challenge}        (zero or more rounds)
 *   edge -> cloud  attest.response  {sessionId, response}
 *   cloud -> edge  attest.result    {svidChainDer, bundle, reattestable}  or  error {code, message}
 *
 *   edge -> cloud  renew.request {csr}                  cloud -> edge  renew.result {svidChainDer, bundle}
 *   edge -> cloud  svids.request {csrs: [{entryId, csr}]}  cloud -> edge  svids.result {svids: [{entryId, svidChainDer}]}
 *   edge -> cloud  entries.request {}                   cloud -> edge  entries.result {entries: NodeEntry[]}
 *   edge -> cloud  jwt.request {entryId, audience, ttlMs?}  cloud -> edge  jwt.result {token, expiresAt}
 *   edge -> cloud  device.enroll {device?, csr, token? | factoryChainDer?}   cloud -> edge  device.svid {device, svidChainDer, expiresAt}
 *   edge -> cloud  device.renew {device, csr, svidChainDer}                  cloud -> edge  device.svid
 *
 * Devices (issue #6): the edge's enrolment endpoint relays a device's CSR with its proof: a one-time bootstrap
 * token (checked and consumed by the cloud), or the device's manufacturer certificate chain (the edge saw the
 * device prove possession of its key in the TLS handshake; the cloud checks the chain against the model's
 * factory CAs), or, to renew, the device's current SVID (presented to the edge over mTLS). The cloud signs
 * only for a device assigned to the calling node.
 *
 * Size bounds (architecture.md 9): what an edge sends is at most 64 KiB (`MAX_NODE_API_MESSAGE_BYTES`);
 * what the cloud sends may be up to 4 MiB (`MAX_NODE_API_RESULT_BYTES`: 64 SVID chains, or the entries
 * delegated to a node). `error` is small in both directions.
 *
 * The CSR only proves possession of a key: the cloud decides the SPIFFE ID from the attested node name and
 * ignores the CSR's subject and extensions (unlike KubeEdge, which copies CN/O/SANs from the CSR,
 * kubeedge.md §4). `error` carries a stable code and a short message, never a cause.
 */
import { NodeApiError } from './errors.js';

export const NODE_API_VERSION = 1;
/** Largest encoded message an edge sends (UTF-8 bytes); also the default bound of `decodeNodeApiMessage`. */
export const MAX_NODE_API_MESSAGE_BYTES = 64 * 1024;
/** Largest encoded message the cloud sends (UTF-8 bytes). */
export const MAX_NODE_API_RESULT_BYTES = 4 * 1024 * 1024;
/** Most entries in one entries.result. */
export const MAX_NODE_API_ENTRIES = 4096;
/** Most selectors per entry (src/attestation MAX_ENTRY_SELECTORS). */
export const MAX_NODE_API_ENTRY_SELECTORS = 64;
/** Most DNS names per entry (src/attestation MAX_ENTRY_DNS_NAMES). */
export const MAX_NODE_API_ENTRY_DNS_NAMES = 32;
/** Longest selector text `type:value` (src/attestation MAX_SELECTOR_LENGTH). */
export const MAX_NODE_API_SELECTOR_LENGTH = 1024;
/** Largest entry hint in UTF-8 bytes (src/attestation MAX_ENTRY_HINT_BYTES). */
export const MAX_NODE_API_HINT_BYTES = 1024;
/** jwt.request: 1..16 audiences of 1..256 characters each. */
export const MAX_NODE_API_JWT_AUDIENCES = 16;
export const MAX_NODE_API_JWT_AUDIENCE_LENGTH = 256;
/** Bounds of jwt.request ttlMs (the cloud caps it further at its configured maximum). */
export const MIN_NODE_API_JWT_TTL_MS = 1000;
export const MAX_NODE_API_JWT_TTL_MS = 7 * 24 * 3_600_000;
/** Longest JWT-SVID in jwt.result (src/identity MAX_JWT_SVID_BYTES). */
export const MAX_NODE_API_JWT_BYTES = 16 * 1024;
/** Largest decoded challenge or challenge response. */
export const MAX_NODE_API_CHALLENGE_BYTES = 16 * 1024;
/** Most certificates in an SVID chain on the wire (leaf + intermediates). */
export const MAX_NODE_API_CHAIN_CERTS = 8;
/** Most CSRs in one svids.request (and SVIDs in one svids.result). */
export const MAX_NODE_API_SVIDS = 64;
export const MAX_NODE_API_ERROR_MESSAGE = 1024;
export const MAX_NODE_API_ERROR_CODE = 64;
/** Session ids are opaque: 16-64 characters of base64url's alphabet (e.g. 16 random bytes, base64url). */
export const NODE_API_SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
/** Same rule as the attestation layer's parseNodeName (a lower-case DNS label); checked here to refuse early. */
export const NODE_API_NODE_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Same rule as registration entry ids (src/attestation ENTRY_ID_PATTERN). */
export const NODE_API_ENTRY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Error codes look like `join-token/expired`: lower-case words separated by '/'. */
export const NODE_API_ERROR_CODE_PATTERN = /^[a-z0-9][a-z0-9_.-]*(?:\/[a-z0-9][a-z0-9_.-]*)*$/;

export const NODE_API_METHODS = ['join_token', 'x509pop', 'tpm'] as const;
export type NodeApiMethod = (typeof NODE_API_METHODS)[number];

export const NODE_API_KINDS = [
  'attest.begin',
  'attest.challenge',
  'attest.response',
  'attest.result',
  'renew.request',
  'renew.result',
  'svids.request',
  'svids.result',
  'entries.request',
  'entries.result',
  'jwt.request',
  'jwt.result',
  'device.enroll',
  'device.renew',
  'device.svid',
  'error',
] as const;
export type NodeApiKind = (typeof NODE_API_KINDS)[number];

type V = typeof NODE_API_VERSION;

export interface AttestBeginMessage {
  v: V;
  kind: 'attest.begin';
  method: NodeApiMethod;
  /** The node name the edge claims; the attestor must prove it. */
  nodeName: string;
  /** Method-specific evidence (a JSON object). */
  payload: Record<string, unknown>;
  /** PKCS#10 DER (at most 8 KiB) for the node SVID. */
  csr: Buffer;
}

export interface AttestChallengeMessage {
  v: V;
  kind: 'attest.challenge';
  sessionId: string;
  challenge: Buffer;
}

export interface AttestResponseMessage {
  v: V;
  kind: 'attest.response';
  sessionId: string;
  response: Buffer;
}

export interface AttestResultMessage {
  v: V;
  kind: 'attest.result';
  /** The node X509-SVID, leaf first, DER. */
  svidChainDer: Buffer[];
  /** The trust domain's SPIFFE bundle (JSON text, Trust Domain and Bundle 4). */
  bundle: string;
  reattestable: boolean;
}

export interface RenewRequestMessage {
  v: V;
  kind: 'renew.request';
  csr: Buffer;
}

export interface RenewResultMessage {
  v: V;
  kind: 'renew.result';
  svidChainDer: Buffer[];
  bundle: string;
}

export interface SvidCsr {
  entryId: string;
  csr: Buffer;
}

export interface SvidsRequestMessage {
  v: V;
  kind: 'svids.request';
  csrs: SvidCsr[];
}

export interface IssuedSvid {
  entryId: string;
  svidChainDer: Buffer[];
}

export interface SvidsResultMessage {
  v: V;
  kind: 'svids.result';
  svids: IssuedSvid[];
}

export interface EntriesRequestMessage {
  v: V;
  kind: 'entries.request';
}

/** A registration entry delegated to the calling node (SPIRE `spire.api.types.Entry`, subset). */
export interface NodeEntry {
  id: string;
  /** SPIFFE ID of the workload. */
  spiffeId: string;
  parentId: string;
  /** `type:value`, 1..64, sorted and unique. */
  selectors: string[];
  x509SvidTtlMs?: number;
  jwtSvidTtlMs?: number;
  dnsNames?: string[];
  hint?: string;
  /** Store revision at which the entry was last written. */
  revision: number;
}

export interface EntriesResultMessage {
  v: V;
  kind: 'entries.result';
  entries: NodeEntry[];
}

export interface JwtRequestMessage {
  v: V;
  kind: 'jwt.request';
  entryId: string;
  /** 1..16 audiences, each 1..256 characters. */
  audience: string[];
  /** Requested lifetime; the cloud uses the entry's (or its default) TTL when absent and caps it. */
  ttlMs?: number;
}

export interface JwtResultMessage {
  v: V;
  kind: 'jwt.result';
  /** The JWT-SVID (JWS compact serialisation). */
  token: string;
  /** Its `exp`, epoch ms. */
  expiresAt: number;
}

/** Longest bootstrap token text (`ewdt_` + base64url of 32 bytes is 48). */
export const MAX_NODE_API_DEVICE_TOKEN_LENGTH = 128;
/** Bootstrap tokens: printable, no spaces (the cloud decides what is valid). */
export const NODE_API_DEVICE_TOKEN_PATTERN = /^[A-Za-z0-9_.~-]{16,128}$/;

/**
 * The refusals of device.enroll / device.renew and their HTTP status: the cloud answers the node with them, and
 * the node's enrolment endpoint passes them on to the device unchanged.
 */
export const DEVICE_REFUSAL_HTTP_STATUS: Readonly<Record<string, number>> = Object.freeze({
  'device-token/invalid': 403,
  'device/unknown': 404,
  'device/wrong-node': 403,
  'device/revoked': 403,
  'device/factory-refused': 403,
  'device/renew-refused': 403,
  'device/not-served': 403,
});

export interface DeviceEnrollMessage {
  v: V;
  kind: 'device.enroll';
  /** `NAMESPACE/NAME`; required with factoryChainDer, optional with a token (the token names its device). */
  device?: string;
  /** PKCS#10 DER of the device's new key (the key never leaves the device). */
  csr: Buffer;
  /** A one-time bootstrap token (`edgeward device token`). Exactly one of token / factoryChainDer. */
  token?: string;
  /** The manufacturer certificate chain the device presented in the TLS handshake, leaf first. */
  factoryChainDer?: Buffer[];
}

export interface DeviceRenewMessage {
  v: V;
  kind: 'device.renew';
  device: string;
  csr: Buffer;
  /** The device's current X509-SVID (leaf first), presented to the edge over mTLS. */
  svidChainDer: Buffer[];
}

export interface DeviceSvidMessage {
  v: V;
  kind: 'device.svid';
  device: string;
  svidChainDer: Buffer[];
  /** The SVID's NotAfter, epoch ms. */
  expiresAt: number;
}

export interface NodeApiErrorMessage {
  v: V;
  kind: 'error';
  /** Stable code, e.g. `join-token/expired`. */
  code: string;
  message: string;
}

export type NodeApiMessage =
  | AttestBeginMessage
  | AttestChallengeMessage
  | AttestResponseMessage
  | AttestResultMessage
  | RenewRequestMessage
  | RenewResultMessage
  | SvidsRequestMessage
  | SvidsResultMessage
  | EntriesRequestMessage
  | EntriesResultMessage
  | JwtRequestMessage
  | JwtResultMessage
  | DeviceEnrollMessage
  | DeviceRenewMessage
  | DeviceSvidMessage
  | NodeApiErrorMessage;

/** What an edge sends. */
export type EdgeToCloudMessage =
  | AttestBeginMessage
  | AttestResponseMessage
  | RenewRequestMessage
  | SvidsRequestMessage
  | EntriesRequestMessage
  | JwtRequestMessage
  | DeviceEnrollMessage
  | DeviceRenewMessage
  | NodeApiErrorMessage;
/** What the cloud sends. */
export type CloudToEdgeMessage =
  | AttestChallengeMessage
  | AttestResultMessage
  | RenewResultMessage
  | SvidsResultMessage
  | EntriesResultMessage
  | JwtResultMessage
  | DeviceSvidMessage
  | NodeApiErrorMessage;

export const EDGE_TO_CLOUD_KINDS: readonly EdgeToCloudMessage['kind'][] = [
  'attest.begin',
  'attest.response',
  'renew.request',
  'svids.request',
  'entries.request',
  'jwt.request',
  'device.enroll',
  'device.renew',
  'error',
];
export const CLOUD_TO_EDGE_KINDS: readonly CloudToEdgeMessage['kind'][] = [
  'attest.challenge',
  'attest.result',
  'renew.result',
  'svids.result',
  'entries.result',
  'jwt.result',
  'device.svid',
  'error',
];

/** One handler per kind of `M`: the compiler rejects a missing kind (exhaustive by construction). */
export type NodeApiHandlers<R, M extends NodeApiMessage = NodeApiMessage> = {
  [K in M['kind']]: (message: Extract<M, { kind: K }>) => R;
};

/** Dispatch on `kind` with a complete handler table. */
export function matchNodeApiMessage<R, M extends NodeApiMessage = NodeApiMessage>(message: M, handlers: NodeApiHandlers<R, M>): R {
  const h = (handlers as unknown as Record<string, ((m: M) => R) | undefined>)[message.kind];
  if (h === undefined) return assertNeverKind(message as never);
  return h(message);
}

/** For the `default` branch of an exhaustive `switch (m.kind)`. */
export function assertNeverKind(x: never): never {
  const kind = typeof x === 'object' && x !== null ? String((x as { kind?: unknown }).kind).slice(0, 40) : typeof x;
  throw new NodeApiError('node-api/unknown-kind', `unhandled node API message kind ${kind}`);
}
