/**
 * What the engine needs from a model runtime (llama.cpp, synthetic): a tokenizer, compute slots
 * ("sequences"), and a way for a sequence's KV to enter and leave kvwire's block cache.
 *
 * The KV of a prompt of n tokens lives in `ceil(n / blockTokens)` blocks of the engine's
 * registered cache, block i holding positions `i×blockTokens ..`. A sequence's first generated
 * token always comes from evaluating the prompt's last token on its own, after the KV of the
 * tokens before it — computed here or loaded from blocks — as vLLM's decode recomputes the last
 * prompt token: so a P/D decode and a single worker do the same arithmetic, token for token.
 *
 * @packageDocumentation
 */
import type { KvLayout, ModelShape } from '../../kv/index.js';

/** Sampling parameters of one request. */
export interface Sampling {
  /** 0 = greedy. */
  readonly temperature: number;
  /** Nucleus sampling; 1 = off. */
  readonly topP: number;
  /** Top-k; 0 = off. */
  readonly topK: number;
  /** Seed for temperature > 0. */
  readonly seed?: number;
}

/** Views of the engine's block cache that a runtime reads and writes KV through. */
export interface KvBlockViews {
  /** The cache's layout (rank 0). */
  readonly layout: KvLayout;
  /** One view per tensor of the layout (`numBlocks × blockBytes`). */
  readonly tensors: readonly Uint8Array[];
}

/** A compute slot holding one request's KV and generating its tokens. */
export interface RuntimeSequence {
  /**
   * Makes the sequence hold the KV of `prompt[0..count)` read from `blockIds` (block i =
   * positions i×blockTokens..), replacing whatever it held.
   *
   * @throws KvwireError `ERR_KVWIRE_CORRUPTED` (synthetic) when a block does not hold the bytes its prefill wrote.
   */
  loadKv(prompt: readonly number[], count: number, blockIds: readonly number[]): Promise<void>;
  /** Forgets everything the sequence holds. */
  reset(): Promise<void>;
  /**
   * Evaluates `prompt[from .. n-1)` (the sequence holds the KV of `prompt[0..from)`), then the
   * last prompt token alone, and returns the first generated token.
   */
  computePrompt(prompt: readonly number[], from: number, sampling: Sampling, signal?: AbortSignal): Promise<number>;
  /** Writes the KV of `prompt[fromBlock×blockTokens .. prompt.length)` into `blockIds[fromBlock..]`. */
  storeKv(prompt: readonly number[], fromBlock: number, blockIds: readonly number[]): Promise<void>;
  /** Evaluates the last generated token and returns the next one. */
  next(signal?: AbortSignal): Promise<number>;
  /** Gives the slot back (the sequence's KV is dropped). */
  close(): Promise<void>;
}

/** A model runtime. */
export interface Runtime {
  /** `'llama'` or `'synthetic'`. */
  readonly kind: 'llama' | 'synthetic';
  /** The model name it serves (`tiny`, `small`, `llama-3-8b`). */
  readonly model: string;
  /** KV shape (for the block cache's layout and the P/D compatibility check). */
  readonly shape: ModelShape;
  /** Longest prompt + completion. */
  readonly maxModelLen: number;
  /** Begin-of-sequence token. */
  readonly bos: number;
  /** End-of-sequence token. */
  readonly eos: number;
  /** Compute slots. */
  readonly slots: number;
  /** Text -> token ids, without special tokens. */
  tokenize(text: string): number[];
  /** Token ids -> text (special tokens dropped). */
  detokenize(tokens: readonly number[]): string;
  /** Binds the runtime to the engine's block cache (called once, before any sequence). */
  attach(views: KvBlockViews): Promise<void>;
  /** Takes a free slot (the engine's admission guarantees one is free). */
  openSequence(): RuntimeSequence;
  /** Frees everything. */
  close(): Promise<void>;
}
