/**
 * The edge side of node attestation (SPIRE AttestAgent, spiffe.md 3): `attest.begin` with the method's
 * evidence and a CSR for a key that never leaves the node, zero or more challenge rounds, then the node
 * X509-SVID, which is checked before it is kept: it must validate against the cloud's bundle, name
 * exactly `spiffe://TD/edgeward/node/NAME` and certify our own key.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import {
  buildCsr,
  certsFromPem,
  parseBundleJson,
  parseCertificate,
  validateX509Svid,
  type Clock,
  type CsrKey,
  type TrustBundle,
  type TrustDomain,
} from '../../identity/index.js';
import {
  decodeTpmChallenge,
  encodeTpmChallengeResponse,
  encodeX509PopResponse,
  nodeSpiffeId,
  tpmPayload,
  x509popNodeName,
  x509popPayload,
  x509popRespond,
} from '../../attestation/index.js';
import { NODE_API_VERSION, type CloudToEdgeMessage } from '../../protocol/index.js';
import { TpmAgentSession } from '../tpm/index.js';
import type { CloudClient } from '../cloud-client/client.js';
import { JoinError } from '../cloud-client/errors.js';
import { readSmallFile, type JoinMethod } from './layout.js';

const MAX_ROUNDS = 4;

export type NodeEvidence =
  | { method: 'join_token'; token: string }
  | { method: 'x509pop'; chainDer: Buffer[]; privateKey: KeyObject }
  | { method: 'tpm'; tcti: string };

export interface AttestedNode {
  chainDer: Buffer[];
  bundle: TrustBundle;
  reattestable: boolean;
}

/** Load an x509pop certificate chain (PEM, leaf first) and its private key (PEM). */
export function loadX509PopEvidence(certFile: string, keyFile: string): { chainDer: Buffer[]; privateKey: KeyObject; nodeName: string | undefined } {
  const cert = readSmallFile(certFile, 64 * 1024);
  const key = readSmallFile(keyFile, 64 * 1024);
  if (cert === undefined) throw new JoinError('join/bad-input', `x509pop certificate ${certFile} does not exist`);
  if (key === undefined) throw new JoinError('join/bad-input', `x509pop key ${keyFile} does not exist`);
  let chainDer: Buffer[];
  let privateKey: KeyObject;
  try {
    chainDer = certsFromPem(cert.toString('utf8'));
  } catch (e) {
    throw new JoinError('join/bad-input', `x509pop certificate ${certFile} is not PEM`, { cause: e });
  }
  if (chainDer.length === 0) throw new JoinError('join/bad-input', `x509pop certificate ${certFile} holds no certificate`);
  try {
    privateKey = createPrivateKey({ key: key.toString('utf8'), format: 'pem' });
  } catch (e) {
    throw new JoinError('join/bad-input', `x509pop key ${keyFile} is not a PEM private key`, { cause: e });
  }
  let nodeName: string | undefined;
  try {
    nodeName = x509popNodeName(parseCertificate(chainDer[0]!));
  } catch {
    nodeName = undefined;
  }
  return { chainDer, privateKey, nodeName };
}

/** Check an attestation or renewal result: a valid node SVID for `nodeName`, certifying `spki`. */
export function checkNodeSvid(chainDer: Buffer[], bundleText: string, td: TrustDomain, nodeName: string, spki: Buffer, now: number): TrustBundle {
  let bundle: TrustBundle;
  try {
    bundle = parseBundleJson(td, bundleText);
    const v = validateX509Svid(chainDer, bundle, now, { trustDomain: td });
    if (!v.spiffeId.equals(nodeSpiffeId(td, nodeName))) throw new Error(`the SVID names ${v.spiffeId.toString().slice(0, 200)}`);
    if (!v.leaf.spki.equals(spki)) throw new Error('the SVID certifies another key');
  } catch (e) {
    throw new JoinError('join/bad-result', `the cloud's node SVID is not acceptable: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return bundle;
}

/** Run the attestation conversation for `nodeName` with `key` (the node key) over `client`. */
export async function attestNode(
  client: Pick<CloudClient, 'attest'>,
  evidence: NodeEvidence,
  nodeName: string,
  key: CsrKey,
  td: TrustDomain,
  clock: Clock,
): Promise<AttestedNode> {
  const csr = buildCsr(key);
  let tpm: TpmAgentSession | undefined;
  try {
    let payload: Record<string, unknown>;
    let respond: (challenge: Buffer) => Promise<Buffer>;
    switch (evidence.method) {
      case 'join_token':
        payload = { token: evidence.token };
        respond = () => Promise.reject(new JoinError('join/bad-result', 'join_token has no challenge'));
        break;
      case 'x509pop':
        payload = x509popPayload(evidence.chainDer);
        respond = (c) => Promise.resolve(encodeX509PopResponse(x509popRespond({ nonce: c }, evidence.privateKey)));
        break;
      case 'tpm': {
        const session = await TpmAgentSession.open({ tcti: evidence.tcti });
        tpm = session;
        const ev = await session.collect();
        payload = tpmPayload({ ekCert: ev.ekCert, ekPublic: ev.ekPublic, akPublic: ev.akPublic });
        respond = async (c) => encodeTpmChallengeResponse(await session.respond(decodeTpmChallenge(c)));
        break;
      }
      default:
        throw new JoinError('join/bad-input', 'unknown attestation method');
    }
    let reply: CloudToEdgeMessage = await client.attest({ v: NODE_API_VERSION, kind: 'attest.begin', method: evidence.method, nodeName, payload, csr });
    for (let round = 0; ; round++) {
      if (reply.kind === 'attest.result') {
        const bundle = checkNodeSvid(reply.svidChainDer, reply.bundle, td, nodeName, key.spki, clock.now());
        return { chainDer: reply.svidChainDer, bundle, reattestable: reply.reattestable };
      }
      if (reply.kind !== 'attest.challenge') throw new JoinError('join/bad-result', `unexpected ${reply.kind} during attestation`);
      if (round >= MAX_ROUNDS) throw new JoinError('join/too-many-rounds', `attestation did not finish in ${MAX_ROUNDS} rounds`);
      const response = await respond(reply.challenge);
      reply = await client.attest({ v: NODE_API_VERSION, kind: 'attest.response', sessionId: reply.sessionId, response });
    }
  } finally {
    await tpm?.close();
  }
}

export function isReattestable(method: JoinMethod): boolean {
  return method === 'x509pop' || method === 'tpm';
}
