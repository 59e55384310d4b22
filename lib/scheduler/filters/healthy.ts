/**
 * The health filter: endpoints that health checks have ejected are not candidates until a check
 * brings them back.
 *
 * @packageDocumentation
 */
import type { Candidate } from '../types.js';

/** Keeps the healthy candidates. */
export function healthyFilter(candidates: readonly Candidate[]): Candidate[] {
  return candidates.filter((c) => c.healthy);
}
