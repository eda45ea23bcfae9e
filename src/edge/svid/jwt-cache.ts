/**
 * JWT-SVIDs cached per (entry, audience set) and re-minted after half their lifetime (SPIRE's agent
 * behaviour, spiffe.md 3), bounded in size (LRU).
 */
import type { Clock } from '../../identity/index.js';

interface Cached {
  token: string;
  issuedAt: number;
  expiresAt: number;
}

export const JWT_CACHE_MAX = 1000;

export class JwtSvidCache {
  readonly #clock: Clock;
  readonly #max: number;
  readonly #items = new Map<string, Cached>();

  constructor(clock: Clock, max = JWT_CACHE_MAX) {
    this.#clock = clock;
    this.#max = max;
  }

  static key(entryId: string, audience: readonly string[]): string {
    return JSON.stringify([entryId, [...new Set(audience)].sort()]);
  }

  /** The cached token if it is still before half-life, else a new one from `mint`. */
  get(key: string, mint: () => { token: string; issuedAt: number; expiresAt: number }): string {
    const now = this.#clock.now();
    const hit = this.#items.get(key);
    if (hit !== undefined) {
      this.#items.delete(key);
      if (now < hit.issuedAt + (hit.expiresAt - hit.issuedAt) / 2) {
        this.#items.set(key, hit); // refresh LRU position
        return hit.token;
      }
    }
    const fresh = mint();
    if (this.#items.size >= this.#max) this.#items.delete(this.#items.keys().next().value!);
    this.#items.set(key, fresh);
    return fresh.token;
  }

  /**
   * As `get`, for a mint that may be asynchronous (joined mode asks the cloud). When minting fails, a
   * cached token that has not expired yet is returned instead (SPIRE's agent serves cached JWT-SVIDs
   * while its server is unreachable, spiffe.md 3); with none, the failure is passed on.
   */
  async getAsync(key: string, mint: () => Cached | Promise<Cached>): Promise<string> {
    const hit = this.#items.get(key);
    const now = this.#clock.now();
    if (hit !== undefined && now < hit.issuedAt + (hit.expiresAt - hit.issuedAt) / 2) return this.get(key, () => hit);
    let fresh: Cached;
    try {
      fresh = await mint();
    } catch (e) {
      if (hit !== undefined && this.#clock.now() < hit.expiresAt) return hit.token;
      throw e;
    }
    return this.get(key, () => fresh);
  }

  /** Forget every token (e.g. after the JWT signing key changed). */
  clear(): void {
    this.#items.clear();
  }
}
