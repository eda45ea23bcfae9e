/**
 * Node names and node SPIFFE IDs (issue #4): a node is `spiffe://<td>/edgeward/node/<name>`.
 *
 * A node name is one DNS label in lower case (RFC 1123 2.1 host-name label, minus upper case): 1-63
 * characters from [a-z0-9-], not starting or ending with '-'. Every character is also a legal SPIFFE ID
 * path character (SPIFFE-ID 2.2), so the name is exactly one path segment, and names compare by plain
 * string equality (no case folding, no normalisation: one name, one spelling).
 */
import { EdgewardError, SpiffeId, type TrustDomain } from '../../identity/index.js';

export const NODE_NAME_ERROR_CODES = ['node-name/invalid', 'node-name/not-a-node-id'] as const;
export type NodeNameErrorCode = (typeof NODE_NAME_ERROR_CODES)[number];
export class NodeNameError extends EdgewardError<NodeNameErrorCode> {}

export const MAX_NODE_NAME_LENGTH = 63;
/** One lower-case DNS label: 1-63 of [a-z0-9-], no leading or trailing '-'. */
export const NODE_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** The path segments in front of the node name in a node SPIFFE ID. */
export const NODE_ID_PATH_PREFIX = ['edgeward', 'node'] as const;

export function isNodeName(input: unknown): boolean {
  return typeof input === 'string' && NODE_NAME_PATTERN.test(input);
}

/** Validate a node name. Throws `NodeNameError('node-name/invalid')`. */
export function parseNodeName(input: unknown): string {
  if (typeof input !== 'string') throw new NodeNameError('node-name/invalid', `node name must be a string (got ${typeof input})`);
  if (!NODE_NAME_PATTERN.test(input)) {
    throw new NodeNameError(
      'node-name/invalid',
      'node name must be 1-63 characters of [a-z0-9-] and must not start or end with "-"',
      { detail: { name: input.slice(0, 80) } },
    );
  }
  return input;
}

/** `spiffe://<td>/edgeward/node/<name>`. Throws `NodeNameError` for an invalid name. */
export function nodeSpiffeId(td: TrustDomain, name: string): SpiffeId {
  return SpiffeId.fromSegments(td, ...NODE_ID_PATH_PREFIX, parseNodeName(name));
}

/**
 * The node name of a node SPIFFE ID of trust domain `td` (exact shape, no prefix matching).
 * Throws `NodeNameError('node-name/not-a-node-id')` for any other ID.
 */
export function nodeNameFromSpiffeId(id: SpiffeId, td: TrustDomain): string {
  const segs = id.segments;
  const name = segs[2];
  if (
    !id.trustDomain.equals(td) ||
    segs.length !== NODE_ID_PATH_PREFIX.length + 1 ||
    segs[0] !== NODE_ID_PATH_PREFIX[0] ||
    segs[1] !== NODE_ID_PATH_PREFIX[1] ||
    name === undefined ||
    !isNodeName(name)
  ) {
    throw new NodeNameError('node-name/not-a-node-id', `${id.toString().slice(0, 200)} is not a node ID of trust domain ${td.name}`);
  }
  return name;
}
