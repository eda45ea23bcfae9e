/**
 * Workload API endpoint addresses (`SPIFFE_ENDPOINT_SOCKET`, `--socket`): SPIFFE Workload Endpoint 4
 * ("Locating the endpoint"), reference spiffe.md section 1 "Endpoint".
 *
 * The value is an RFC 3986 URI of one of two forms, and nothing else is accepted:
 * - `unix:///abs/path.sock`: scheme and absolute path only. No authority (`unix://host/...` is refused),
 *   no userinfo, query or fragment. `unix:/abs/path.sock` (the same URI without the empty authority)
 *   is accepted too, as RFC 3986 gives it the same components. The path is percent-decoded; it must not
 *   contain empty, `.` or `..` segments, a trailing `/`, or NUL, and must fit in `sun_path` (107 bytes).
 * - `tcp://<IP>:<port>`: an IP literal (dotted-quad IPv4, or IPv6 in brackets without a zone) and a
 *   decimal port 1-65535 without leading zeros; no userinfo, path (not even `/`), query or fragment
 *   (`tcp://127.0.0.1:8000/foo` is invalid). Host names are refused: the server must be able to
 *   authenticate the caller by its source address, which a name does not pin down.
 * Clients use an explicit value first, then the environment variable (`resolveEndpoint`).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { EdgewardError } from '../../identity/index.js';

export const ENDPOINT_ERROR_CODES = [
  /** The value is not a valid Workload API endpoint URI (the message says which rule). */
  'endpoint/invalid',
  /** Neither an explicit endpoint nor SPIFFE_ENDPOINT_SOCKET was given. */
  'endpoint/missing',
] as const;
export type EndpointErrorCode = (typeof ENDPOINT_ERROR_CODES)[number];
export class EndpointError extends EdgewardError<EndpointErrorCode> {}

/** The environment variable that names the Workload API endpoint (Workload Endpoint 4). */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';
/** Longest accepted endpoint string (bounded input). */
export const MAX_ENDPOINT_LENGTH = 1024;
/** Longest Unix socket path: Linux `sun_path` is 108 bytes including the terminating NUL. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;

export type WorkloadEndpoint =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

function invalid(message: string, value: string): never {
  throw new EndpointError('endpoint/invalid', `invalid Workload API endpoint: ${message}`, {
    detail: { value: value.slice(0, 128) },
  });
}

// RFC 3986 3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"; "/" separates segments.
const PATH_CHARS = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

function decodePath(raw: string, value: string): string {
  if (!PATH_CHARS.test(raw)) invalid('the socket path contains characters that must be percent-encoded (RFC 3986 3.3)', value);
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    invalid('the socket path is not valid percent-encoded UTF-8', value);
  }
  if (path.includes('\0')) invalid('the socket path contains NUL', value);
  return path;
}

function parseUnix(rest: string, value: string): WorkloadEndpoint {
  // rest is everything after "unix:". "//" starts an authority (RFC 3986 3.2), which must be empty.
  let raw: string;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const authority = slash === -1 ? rest.slice(2) : rest.slice(2, slash);
    if (authority.length > 0) {
      invalid(authority.includes('@') ? 'unix URI must not include userinfo' : 'unix URI must not have an authority (use unix:///abs/path)', value);
    }
    raw = slash === -1 ? '' : rest.slice(slash);
  } else {
    raw = rest;
  }
  if (raw.length === 0) invalid('unix URI must include an absolute socket path', value);
  if (!raw.startsWith('/')) invalid('unix socket path must be absolute (unix:///abs/path)', value);
  const path = decodePath(raw, value);
  if (path === '/' || path.endsWith('/')) invalid('unix socket path must name a file, not a directory', value);
  const segments = path.slice(1).split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    invalid('unix socket path must not contain empty, "." or ".." segments', value);
  }
  if (Buffer.byteLength(path) > MAX_UNIX_SOCKET_PATH_BYTES) {
    invalid(`unix socket path is longer than ${MAX_UNIX_SOCKET_PATH_BYTES} bytes`, value);
  }
  return Object.freeze({ kind: 'unix', path });
}

function parsePort(raw: string, value: string): number {
  if (!/^[1-9][0-9]{0,4}$/.test(raw)) invalid('tcp URI must include a decimal port 1-65535 without leading zeros', value);
  const port = Number(raw);
  if (port < 1 || port > 65535) invalid('tcp port must be 1-65535', value);
  return port;
}

function parseTcp(rest: string, value: string): WorkloadEndpoint {
  if (!rest.startsWith('//')) invalid('tcp URI must be tcp://<IP>:<port>', value);
  const authority = rest.slice(2);
  // Anything after the authority (path, even "/") is refused; query and fragment were refused earlier.
  if (authority.includes('/')) invalid('tcp URI must not include a path', value);
  if (authority.includes('@')) invalid('tcp URI must not include userinfo', value);
  let host: string;
  let portRaw: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) invalid('unterminated IPv6 literal', value);
    host = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (!after.startsWith(':')) invalid('tcp URI must include a port', value);
    portRaw = after.slice(1);
    if (host.includes('%')) invalid('IPv6 zone identifiers are not accepted', value);
    if (!isIPv6(host)) invalid('tcp URI host must be an IP address literal', value);
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon === -1) invalid('tcp URI must include a port', value);
    host = authority.slice(0, colon);
    portRaw = authority.slice(colon + 1);
    if (!isIPv4(host)) {
      invalid(isIPv6(host) ? 'an IPv6 address must be in brackets (tcp://[::1]:port)' : 'tcp URI host must be an IP address literal', value);
    }
  }
  const port = parsePort(portRaw, value);
  return Object.freeze({ kind: 'tcp', host: host.toLowerCase(), port });
}

/** Parse and validate a Workload API endpoint URI. Throws EndpointError('endpoint/invalid'). */
export function parseEndpoint(value: string): WorkloadEndpoint {
  if (typeof value !== 'string') throw new EndpointError('endpoint/invalid', 'invalid Workload API endpoint: not a string');
  if (value.length === 0) invalid('empty value', value);
  if (value.length > MAX_ENDPOINT_LENGTH) invalid(`longer than ${MAX_ENDPOINT_LENGTH} characters`, value);
  if (/[\s\x00-\x1f\x7f]/.test(value)) invalid('contains whitespace or control characters', value);
  const m = SCHEME.exec(value);
  if (m === null) invalid('not a URI with a scheme (expected unix:///path or tcp://IP:port)', value);
  const scheme = m[1]!.toLowerCase(); // RFC 3986 3.1: schemes are case-insensitive
  const rest = value.slice(m[0].length);
  if (rest.includes('?')) invalid(`${scheme} URI must not include a query`, value);
  if (rest.includes('#')) invalid(`${scheme} URI must not include a fragment`, value);
  if (scheme === 'unix') return parseUnix(rest, value);
  if (scheme === 'tcp') return parseTcp(rest, value);
  return invalid(`unsupported scheme "${scheme.slice(0, 16)}" (expected unix or tcp)`, value);
}

/**
 * The endpoint to use: `explicit` (a flag or config value) when given, else `SPIFFE_ENDPOINT_SOCKET` from
 * `env`. Throws EndpointError('endpoint/missing') when neither is set, 'endpoint/invalid' when malformed.
 */
export function resolveEndpoint(explicit?: string, env: Readonly<Record<string, string | undefined>> = process.env): WorkloadEndpoint {
  if (explicit !== undefined && explicit !== '') return parseEndpoint(explicit);
  const fromEnv = env[SPIFFE_ENDPOINT_SOCKET];
  if (fromEnv === undefined || fromEnv === '') {
    throw new EndpointError('endpoint/missing', `no Workload API endpoint: pass one explicitly or set ${SPIFFE_ENDPOINT_SOCKET}`);
  }
  return parseEndpoint(fromEnv);
}

/** The grpc-js target for an endpoint: `unix:/abs/path`, `ipv4:1.2.3.4:port` or `ipv6:[::1]:port`. */
export function grpcTarget(ep: WorkloadEndpoint): string {
  switch (ep.kind) {
    case 'unix':
      return `unix:${ep.path}`;
    case 'tcp':
      return isIPv6(ep.host) ? `ipv6:[${ep.host}]:${ep.port}` : `ipv4:${ep.host}:${ep.port}`;
  }
}

/** The canonical URI of an endpoint (for logs and messages). */
export function endpointToString(ep: WorkloadEndpoint): string {
  switch (ep.kind) {
    case 'unix':
      return `unix://${ep.path.split('/').map((s) => encodeURIComponent(s)).join('/')}`;
    case 'tcp':
      return isIPv6(ep.host) ? `tcp://[${ep.host}]:${ep.port}` : `tcp://${ep.host}:${ep.port}`;
  }
}
