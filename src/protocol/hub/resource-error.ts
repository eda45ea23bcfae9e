/** The error of the resource rules (resources.ts, devices.ts): every problem of a document or of resource data, together. */
import { EdgewardError } from '../../identity/index.js';

/** Most problems listed in one ResourceError (the count says how many there were). */
export const MAX_RESOURCE_PROBLEMS = 20;

/** `resource/invalid`: a document, a resource's data or a kind name does not satisfy the resource rules. */
export type ResourceErrorCode = 'resource/invalid';
export class ResourceError extends EdgewardError<ResourceErrorCode> {
  /** Every problem found (`field: what is wrong`), in document order. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[], options?: { prefix?: string; cause?: unknown }) {
    const shown = problems.slice(0, MAX_RESOURCE_PROBLEMS);
    const more = problems.length > shown.length ? `; and ${problems.length - shown.length} more` : '';
    const head = options?.prefix === undefined ? '' : `${options.prefix}: `;
    super('resource/invalid', `${head}${shown.join('; ')}${more}`, {
      ...(options?.cause === undefined ? {} : { cause: options.cause }),
      detail: { problems: problems.length },
    });
    this.problems = Object.freeze([...problems]);
  }
}

