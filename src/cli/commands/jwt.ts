/**
 * JWT-SVID commands of a workload (client side of the SPIFFE Workload API):
 *   edgeward jwt fetch --audience A [--audience B] [--spiffe-id ID] [--socket URI] [--json]
 *   edgeward jwt validate --audience A TOKEN [--socket URI] [--json]
 *
 * `jwt fetch` prints just the token(s), one per line, so that `TOKEN=$(edgeward jwt fetch --audience x)`
 * works; every requested audience must be in the token's `aud` (JWT-SVID 3.2, checked by the client).
 * `jwt validate` asks the agent (ValidateJWTSVID): signature against the trust domain's JWT bundle,
 * expiry and audience (JWT-SVID 4). A rejected token is exit 1 with the typed code on stderr; TOKEN `-`
 * reads the token from standard input (keeps it out of the process list).
 */
import { EdgewardError, MAX_JWT_SVID_BYTES, SpiffeId } from '../../identity/index.js';
import { WorkloadApiClientError } from '../../protocol/index.js';
import { printable } from '../args.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';
import { readBoundedStdin } from '../files.js';
import { socketFlag, withWorkloadClient } from '../workload-client.js';

export const jwtFetchCommand = defineCommand({
  name: 'jwt fetch',
  summary: 'fetch JWT-SVIDs for one or more audiences from the Workload API',
  operands: '',
  description: [
    'Prints each JWT-SVID on a line of its own, nothing else (for TOKEN=$(edgeward jwt fetch --audience x)).',
    'Without --spiffe-id the agent returns one token per identity of this workload, the default first.',
    'With --json: {"svids":[{"spiffe_id","hint","audience","expires_at","token"}]}.',
    '',
    'Exit status: 0 fetched, 1 the Workload API refused or failed, 2 usage error.',
  ].join('\n'),
  args: {
    flags: {
      audience: { type: 'string', value: 'AUD', description: 'audience the token is for (at least one)', multiple: true },
      'spiffe-id': { type: 'string', value: 'ID', description: 'only the token for this SPIFFE ID of the workload' },
      socket: socketFlag,
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    if (flags.audience.length === 0) throw new CliUsageError('at least one --audience is required (JWT-SVID 3.2)', { command: 'jwt fetch' });
    let id: SpiffeId | undefined;
    if (flags['spiffe-id'] !== undefined) {
      try {
        id = SpiffeId.parse(flags['spiffe-id']);
      } catch (e) {
        const detail = e instanceof EdgewardError ? `${e.code}: ${e.message}` : 'invalid';
        throw new CliUsageError(`--spiffe-id ${printable(flags['spiffe-id'])}: ${detail}`, { command: 'jwt fetch', cause: e });
      }
    }
    const svids = await withWorkloadClient(flags.socket, io, 'jwt fetch', (c) => c.fetchJwtSvid(flags.audience, id));
    if (flags.json) {
      const out = svids.map((s) => ({
        spiffe_id: s.spiffeId.toString(),
        hint: s.hint,
        audience: s.audience,
        expires_at: new Date(s.expiresAt).toISOString(),
        token: s.token,
      }));
      io.stdout(`${JSON.stringify({ svids: out })}\n`);
    } else {
      // The client checked each token is three base64url segments: nothing to sanitise.
      io.stdout(svids.map((s) => `${s.token}\n`).join(''));
    }
    return 0;
  },
});

/** `could not validate JWT-SVID: jwt-svid/wrong-audience` -> `jwt-svid/wrong-audience` (our agent's detail). */
function reasonOf(message: string): string | undefined {
  return /: ([a-z0-9-]+\/[a-z0-9-]+)$/.exec(message)?.[1];
}

async function readToken(arg: string): Promise<string> {
  if (arg !== '-') return arg;
  const text = (await readBoundedStdin(MAX_JWT_SVID_BYTES + 2)).toString('utf8').trim();
  if (text === '') throw new CliUsageError('no token on standard input', { command: 'jwt validate' });
  return text;
}

export const jwtValidateCommand = defineCommand({
  name: 'jwt validate',
  summary: 'have the Workload API validate a JWT-SVID for an audience',
  operands: 'TOKEN',
  description: [
    'Sends TOKEN (or, for -, the token read from standard input) to ValidateJWTSVID and prints the SPIFFE ID',
    'and claims the agent verified. A rejected token prints `edgeward: <code>: <message>` on stderr',
    '(with --json also {"valid":false,...} on stdout).',
    '',
    'Exit status: 0 valid, 1 invalid or the Workload API failed, 2 usage error.',
  ].join('\n'),
  args: {
    flags: {
      audience: { type: 'string', value: 'AUD', description: 'the audience the token must be for (required)' },
      socket: socketFlag,
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 1, max: 1 },
  },
  async run({ flags, positionals }, io) {
    if (flags.audience === undefined) throw new CliUsageError('--audience is required', { command: 'jwt validate' });
    const audience = flags.audience;
    const token = await readToken(positionals[0] as string);
    let result;
    try {
      result = await withWorkloadClient(flags.socket, io, 'jwt validate', (c) => c.validateJwtSvid(token, audience));
    } catch (e) {
      // ValidateJWTSVID answers InvalidArgument for a token it rejects (spiffe.md 1, Error codes).
      if (e instanceof WorkloadApiClientError && e.code === 'workload-api/invalid-argument') {
        const reason = reasonOf(e.message);
        if (flags.json) {
          io.stdout(`${JSON.stringify({ valid: false, code: e.code, ...(reason === undefined ? {} : { reason }), message: e.message })}\n`);
        }
        io.stderr(`edgeward: ${e.code}: ${printable(e.message, 1000)}\n`);
        return 1;
      }
      throw e;
    }
    const spiffeId = result.spiffeId.toString();
    if (flags.json) {
      io.stdout(`${JSON.stringify({ valid: true, spiffe_id: spiffeId, claims: result.claims })}\n`);
    } else {
      const names = Object.keys(result.claims).sort();
      const lines = [`spiffe_id: ${printable(spiffeId)}`, 'claims:', ...names.map((k) => `  ${printable(k)}: ${printable(JSON.stringify(result.claims[k]), 1000)}`)];
      io.stdout(lines.join('\n') + '\n');
    }
    return 0;
  },
});
