/**
 * Typed errors with stable codes (architecture.md convention 1).
 *
 * Every failure in Edgeward is an `EdgewardError` subclass whose `code` is a member of a closed string
 * union. Codes are part of the public interface: they are never reused for another meaning. The
 * `cause` is for logs only and is never sent to a peer.
 */
export class EdgewardError<C extends string = string> extends Error {
  readonly code: C;
  /** Extra structured, non-secret detail for logs (e.g. the rule that was violated). */
  readonly detail: Readonly<Record<string, string | number | boolean>> | undefined;

  constructor(
    code: C,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, string | number | boolean> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options?.detail === undefined ? undefined : Object.freeze({ ...options.detail });
    this.name = new.target.name;
  }
}
