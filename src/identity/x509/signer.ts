/**
 * The signing port. CA and builder keys live behind it, so that the identity core never needs to hold
 * a private key itself: a caller decides where keys live (memory, a 0600 file, an HSM) by providing a
 * KeyStore (issue: "Keys are handed to a KeyStore port so that callers decide where they live").
 */
import { createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { EdgewardError } from '../errors.js';
import { generateP256, spkiFromPublicKey } from './keys.js';
import { OID } from './oids.js';
import type { StateDatabase, StateDatabaseOptions } from '../state-database.js';

export interface Signer {
  /** SubjectPublicKeyInfo DER of the signing key. */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  /** The X.509 signature algorithm this signer produces (OID). */
  readonly signatureAlgorithm: string;
  /** Sign `data`; ECDSA signatures are DER-encoded (as X.509 and CMS need). */
  sign(data: Buffer): Buffer;
  /** ECDSA signature in IEEE P1363 form (r||s), as JWS needs (RFC 7518 3.4). */
  signP1363(data: Buffer): Buffer;
  /** The private key, for libraries that need a KeyObject (jose). Never serialise it. */
  readonly privateKey: KeyObject;
}

export interface KeyStore {
  /** Create and keep a new P-256 key under `id` (replacing none: ids are unique). */
  generate(id: string): Signer;
  get(id: string): Signer | undefined;
  delete(id: string): void;
}

/**
 * The host's persistent state files, as the cores need them (a port: the cores do no file I/O of their
 * own for secrets; the composition root in src/cli supplies the implementation, src/cli/host).
 */
export interface StateFiles {
  /** A KeyStore keeping each key as a 0600 file in `dir` (created 0700). */
  openKeyStore(dir: string): KeyStore;
  /** Replace `path` atomically (crash-safe) with `data`, created with `mode`. */
  writeFileAtomic(path: string, data: string | Buffer, mode: number): void;
  /**
   * Open (creating it 0600) the SQLite state file at `path`: symlinks refused, -wal/-shm kept 0600, WAL,
   * migrations applied and `init` run in one IMMEDIATE transaction (see StateDatabaseOptions).
   */
  openDatabase(path: string, options: StateDatabaseOptions): StateDatabase;
}

/** A Signer over an in-process P-256 KeyObject. */
export function signerFromPrivateKey(privateKey: KeyObject, spki?: Buffer): Signer {
  const publicKey = createPublicKey(privateKey);
  return {
    spki: spki ?? spkiFromPublicKey(publicKey),
    publicKey,
    signatureAlgorithm: OID.ecdsaWithSha256,
    privateKey,
    sign: (data) => cryptoSign('sha256', data, privateKey),
    signP1363: (data) => cryptoSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
  };
}

/** Keys kept only in this process's memory. */
export class MemoryKeyStore implements KeyStore {
  readonly #keys = new Map<string, Signer>();
  generate(id: string): Signer {
    if (this.#keys.has(id)) throw new EdgewardError('keystore/exists', `key ${id} already exists`);
    const k = generateP256();
    const s = signerFromPrivateKey(k.privateKey, k.spki);
    this.#keys.set(id, s);
    return s;
  }
  get(id: string): Signer | undefined {
    return this.#keys.get(id);
  }
  delete(id: string): void {
    this.#keys.delete(id);
  }
}
