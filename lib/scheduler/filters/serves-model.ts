/**
 * The model filter: an endpoint that lists its models is a candidate only for those; one that
 * lists none serves any model.
 *
 * @packageDocumentation
 */
import type { Candidate } from '../types.js';

/** True when `c` serves `model`. */
export function servesModel(c: Candidate, model: string): boolean {
  return c.spec.models.length === 0 || c.spec.models.includes(model);
}

/** Keeps the candidates that serve `model`. */
export function servesModelFilter(candidates: readonly Candidate[], model: string): Candidate[] {
  return candidates.filter((c) => servesModel(c, model));
}
