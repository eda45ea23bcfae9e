/**
 * A token-bucket rate limiter keyed by source (e.g. the peer address of an attestation attempt), with an
 * injected clock and a bounded number of keys (architecture.md 9 "Bounded everything").
 *
 * SPIRE limits `AttestAgent` to 1 call per second per IP (reference §3 "Default rate limits"); the
 * defaults below keep that sustained rate and allow a burst of 5 so that an agent retrying after a dropped
 * connection is not locked out.
 *
 * Each key has a bucket of `capacity` tokens that refills continuously at `refillPerSecond`; a request
 * costs one token (or `cost`) and is refused when the bucket holds fewer. When `maxKeys` buckets exist and
 * a new key arrives, the least recently used bucket is evicted (a Map in access order, O(1)). The LRU
 * bucket is the one idle longest and so the one most likely to have refilled completely, i.e. whose
 * eviction loses no state; an attacker who cycles through more than `maxKeys` sources can still reset other
 * sources' buckets, which is why the bound should be well above the number of sources a legitimate burst
 * produces, and why rate limiting is a cost control here, not the security boundary (tokens have 256 bits
 * and nonces are fresh).
 *
 * Pure: no timers; time only comes in as `now` (epoch ms). A clock that goes backwards refills nothing.
 */
import { EdgewardError } from '../../identity/index.js';

export type RateLimitErrorCode = 'rate-limit/bad-config';
export class RateLimitError extends EdgewardError<RateLimitErrorCode> {}

export interface RateLimitOptions {
  /** Bucket size: the largest burst (>= 1). */
  capacity: number;
  /** Tokens added per second (> 0). */
  refillPerSecond: number;
  /** Most keys tracked at once (>= 1); beyond that the least recently used key is evicted. */
  maxKeys: number;
}

/** 1/s sustained per source as in SPIRE, burst 5, at most 10 000 sources tracked. */
export const DEFAULT_ATTEST_RATE_LIMIT: Readonly<RateLimitOptions> = Object.freeze({
  capacity: 5,
  refillPerSecond: 1,
  maxKeys: 10_000,
});

export interface RateLimitDecision {
  readonly allowed: boolean;
  /** Whole tokens left after this request. */
  readonly remaining: number;
  /** 0 when allowed; otherwise the wait (ms, rounded up) until `cost` tokens are available. */
  readonly retryAfterMs: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly capacity: number;
  readonly refillPerSecond: number;
  readonly maxKeys: number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(options: RateLimitOptions = DEFAULT_ATTEST_RATE_LIMIT) {
    const { capacity, refillPerSecond, maxKeys } = options;
    if (!Number.isFinite(capacity) || capacity < 1) throw new RateLimitError('rate-limit/bad-config', 'capacity must be a finite number >= 1');
    if (!Number.isFinite(refillPerSecond) || refillPerSecond <= 0) {
      throw new RateLimitError('rate-limit/bad-config', 'refillPerSecond must be a finite number > 0');
    }
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new RateLimitError('rate-limit/bad-config', 'maxKeys must be an integer >= 1');
    this.capacity = capacity;
    this.refillPerSecond = refillPerSecond;
    this.maxKeys = maxKeys;
  }

  /** Number of keys currently tracked (never more than `maxKeys`). */
  get size(): number {
    return this.buckets.size;
  }

  private refill(b: Bucket, now: number): void {
    if (now > b.at) {
      b.tokens = Math.min(this.capacity, b.tokens + ((now - b.at) * this.refillPerSecond) / 1000);
      b.at = now;
    }
  }

  private checkCost(cost: number): void {
    if (!Number.isFinite(cost) || cost <= 0 || cost > this.capacity) {
      throw new RateLimitError('rate-limit/bad-config', 'cost must be a finite number > 0 and at most the capacity');
    }
  }

  private decision(allowed: boolean, tokens: number, cost: number): RateLimitDecision {
    const retryAfterMs = allowed ? 0 : Math.ceil(((cost - tokens) * 1000) / this.refillPerSecond);
    return { allowed, remaining: Math.floor(tokens), retryAfterMs };
  }

  /** Spend `cost` tokens of `key`'s bucket at `now` if it holds that many. */
  take(key: string, now: number, cost = 1): RateLimitDecision {
    this.checkCost(cost);
    if (!Number.isFinite(now)) throw new RateLimitError('rate-limit/bad-config', 'now must be a finite number (epoch ms)');
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) {
        const lru = this.buckets.keys().next();
        if (lru.done !== true) this.buckets.delete(lru.value);
      }
      b = { tokens: this.capacity, at: now };
    } else {
      this.buckets.delete(key); // re-inserted below: Map order is access order (LRU first)
      this.refill(b, now);
    }
    this.buckets.set(key, b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return this.decision(true, b.tokens, cost);
    }
    return this.decision(false, b.tokens, cost);
  }

  /** What `take(key, now, cost)` would decide, without spending or touching the LRU order. */
  peek(key: string, now: number, cost = 1): RateLimitDecision {
    this.checkCost(cost);
    const b = this.buckets.get(key);
    const copy = b === undefined ? { tokens: this.capacity, at: now } : { ...b };
    this.refill(copy, now);
    const ok = copy.tokens >= cost;
    return this.decision(ok, ok ? copy.tokens - cost : copy.tokens, cost);
  }

  /** Forget `key` (e.g. after a successful attestation, if the caller wants that). */
  delete(key: string): boolean {
    return this.buckets.delete(key);
  }

  clear(): void {
    this.buckets.clear();
  }
}
