/**
 * The load scorer: requests waiting plus running on a candidate (vLLM's
 * `vllm:num_requests_waiting` + `vllm:num_requests_running`, scraped or reported), or at least the
 * requests this scheduler has in flight there when the sample is missing, stale or behind.
 *
 * `score = 1 - load / max load among candidates` (all idle: 1 each), so the least loaded scores
 * highest and the busiest 0 (llm-d's queue-scorer and running-requests scorer in one).
 *
 * @packageDocumentation
 */
import { loadOf, type Candidate, type Scorer } from '../types.js';

/** See the module documentation. */
export const loadScorer: Scorer = {
  name: 'load',
  score(_ctx, candidates: readonly Candidate[]): Map<string, number> {
    let max = 0;
    for (const c of candidates) max = Math.max(max, loadOf(c));
    const out = new Map<string, number>();
    for (const c of candidates) out.set(c.spec.name, max === 0 ? 1 : 1 - loadOf(c) / max);
    return out;
  },
};
