/**
 * Capped exponential backoff with full jitter (the AWS "full jitter" scheme): retry `attempt` (0 = the
 * first retry) waits a uniform time in [0, min(capMs, baseMs * 2^attempt)), so that a fleet that failed at
 * the same moment does not retry at the same moment. Pure: the randomness comes in as a parameter.
 */
export function fullJitterBackoff(attempt: number, o: { readonly baseMs: number; readonly capMs: number }, random: () => number): number {
  const ceiling = Math.min(o.capMs, o.baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}
