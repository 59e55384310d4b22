/**
 * The P/D decider (llm-d's prefix-based decider): run a separate prefill only when the part of the
 * prompt the chosen decode worker does not hold is long enough to be worth a hand-off.
 *
 * `uncached = prompt tokens - leading blocks cached on the decode worker × block size`; disaggregate
 * when `uncached >= threshold` and a prefill endpoint is available, else decode-only (the decode
 * worker computes the short rest itself, or the whole prompt). When the prompt's tokens are unknown
 * (the engine's tokenizer could not be reached) the decider does not guess: decode-only.
 *
 * @packageDocumentation
 */

/** Why a request runs disaggregated or decode-only (a metric label; a closed set). */
export type PdReason =
  'uncached_at_least_threshold' | 'uncached_below_threshold' | 'no_prefill_endpoint' | 'tokens_unknown';

/** The decider's answer. */
export interface PdVerdict {
  /** True: prefill on a prefill worker, then decode. */
  readonly disaggregate: boolean;
  /** Why. */
  readonly reason: PdReason;
  /** Prompt tokens not cached on the decode worker (undefined when tokens are unknown). */
  readonly uncachedTokens: number | undefined;
}

/**
 * Decides P/D for one request.
 *
 * @param promptTokens - tokens in the prompt, undefined when unknown.
 * @param cachedTokens - leading tokens the chosen decode worker holds.
 * @param threshold - the `--pd-threshold` in tokens.
 * @param prefillAvailable - whether a healthy prefill endpoint serves the model.
 */
export function decidePd(
  promptTokens: number | undefined,
  cachedTokens: number,
  threshold: number,
  prefillAvailable: boolean,
): PdVerdict {
  if (promptTokens === undefined) return { disaggregate: false, reason: 'tokens_unknown', uncachedTokens: undefined };
  const uncachedTokens = Math.max(0, promptTokens - cachedTokens);
  if (uncachedTokens < threshold) return { disaggregate: false, reason: 'uncached_below_threshold', uncachedTokens };
  if (!prefillAvailable) return { disaggregate: false, reason: 'no_prefill_endpoint', uncachedTokens };
  return { disaggregate: true, reason: 'uncached_at_least_threshold', uncachedTokens };
}
