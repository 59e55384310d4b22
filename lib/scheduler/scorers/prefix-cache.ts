/**
 * The precise prefix cache scorer: the fraction of the prompt's leading KV blocks a candidate
 * already holds, from the KV block index that the engines' KV events keep (llm-d's
 * precise-prefix-cache-scorer). Tier-weighted: a block held only in CPU memory counts less.
 *
 * No data when the prompt's tokens are unknown or it has no full block.
 *
 * @packageDocumentation
 */
import type { Candidate, Scorer, ScoringContext } from '../types.js';

/** See the module documentation. */
export const prefixCacheScorer: Scorer = {
  name: 'prefix-cache',
  score(ctx: ScoringContext, candidates: readonly Candidate[]): Map<string, number> {
    const out = new Map<string, number>();
    if (ctx.blocks === 0) return out;
    for (const c of candidates)
      out.set(c.spec.name, Math.min(1, (ctx.prefixBlocks.get(c.spec.name) ?? 0) / ctx.blocks));
    return out;
  },
};
