/**
 * The KV cache utilization scorer: `1 - utilization` (vLLM's `vllm:kv_cache_usage_perc`, a fraction
 * in [0, 1]), so a worker with free KV memory scores higher (llm-d's kv-cache-utilization-scorer).
 * No data for a candidate without a fresh sample that carries it.
 *
 * @packageDocumentation
 */
import type { Candidate, Scorer } from '../types.js';

/** See the module documentation. */
export const kvUtilizationScorer: Scorer = {
  name: 'kv-utilization',
  score(_ctx, candidates: readonly Candidate[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of candidates) {
      const u = c.load?.kvUsage;
      if (u !== undefined) out.set(c.spec.name, 1 - Math.min(1, Math.max(0, u)));
    }
    return out;
  },
};
