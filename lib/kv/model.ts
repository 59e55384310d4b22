/**
 * The shape of a model's KV cache: what a layout needs to know about the model, and nothing else.
 *
 * Two attention kinds lay out their cache differently:
 * - `'mha'` (multi-head, grouped-query and multi-query attention alike): every layer stores a K
 *   and a V vector of `headDim` elements for each of `kvHeads` heads, per token. Tensor
 *   parallelism splits the heads across ranks.
 * - `'mla'` (multi-head latent attention, DeepSeek-V2/V3): every layer stores one latent vector of
 *   `kvLoraRank + qkRopeHeadDim` elements per token, with no K/V split and no heads; every
 *   tensor-parallel rank holds the whole latent cache.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { dtypeBytes, type KvDtype } from './dtype.js';

/** KV cache shape of a model with multi-head, grouped-query or multi-query attention. */
export interface MhaModelShape {
  /** Attention kind; omitted means `'mha'`. */
  readonly attention?: 'mha';
  /** Model name, part of the compatibility fields (e.g. `'llama-3-8b'`). */
  readonly name?: string;
  /** Number of attention layers that keep a KV cache. */
  readonly layers: number;
  /** Total number of KV heads (before tensor-parallel splitting). */
  readonly kvHeads: number;
  /** Elements per head per token, for K and for V alike. */
  readonly headDim: number;
  /** Element type of the cache. */
  readonly dtype: KvDtype;
}

/** KV cache shape of a model with multi-head latent attention (one latent cache per layer). */
export interface MlaModelShape {
  /** Attention kind. */
  readonly attention: 'mla';
  /** Model name, part of the compatibility fields (e.g. `'deepseek-v3'`). */
  readonly name?: string;
  /** Number of attention layers that keep a latent cache. */
  readonly layers: number;
  /** Compressed KV width per token (`kv_lora_rank`, 512 for DeepSeek-V3). */
  readonly kvLoraRank: number;
  /** Decoupled RoPE key width per token (`qk_rope_head_dim`, 64 for DeepSeek-V3). */
  readonly qkRopeHeadDim: number;
  /** Element type of the cache. */
  readonly dtype: KvDtype;
}

/** A model's KV cache shape: {@link MhaModelShape} or {@link MlaModelShape}. */
export type ModelShape = MhaModelShape | MlaModelShape;

/** True when `model` uses multi-head latent attention. */
export function isMla(model: ModelShape): model is MlaModelShape {
  return model.attention === 'mla';
}

/** Elements of one MLA latent vector: `kvLoraRank + qkRopeHeadDim`. */
export function latentWidth(model: MlaModelShape): number {
  return model.kvLoraRank + model.qkRopeHeadDim;
}

/**
 * KV cache bytes one token occupies across the whole model (all layers, all heads, every
 * tensor-parallel rank together, replicas not counted twice).
 *
 * - MHA/GQA: `2 × layers × kvHeads × headDim × dtypeBytes` (K and V).
 * - MLA: `layers × (kvLoraRank + qkRopeHeadDim) × dtypeBytes` (one latent, no K/V split).
 */
export function modelBytesPerToken(model: ModelShape): number {
  const b = dtypeBytes(model.dtype);
  if (isMla(model)) return model.layers * latentWidth(model) * b;
  return 2 * model.layers * model.kvHeads * model.headDim * b;
}

function positiveInteger(value: unknown, field: string, what: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `model.${field} must be a positive integer (${what}), got ${String(value)}`,
      { field: `model.${field}` },
    );
  }
}

/**
 * Checks that `model` is a well-formed {@link ModelShape}.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the first bad field.
 */
export function validateModelShape(model: ModelShape): void {
  if (model === null || typeof model !== 'object') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'model must be a ModelShape object; use a preset (kvPreset("llama-3-8b")) or spell out layers, kvHeads, headDim and dtype',
      { field: 'model' },
    );
  }
  const attention = (model as { attention?: unknown }).attention;
  if (attention !== undefined && attention !== 'mha' && attention !== 'mla') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `model.attention must be 'mha' or 'mla', got ${JSON.stringify(attention)}`,
      { field: 'model.attention' },
    );
  }
  if (model.name !== undefined && typeof model.name !== 'string') {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'model.name must be a string when given', {
      field: 'model.name',
    });
  }
  positiveInteger(model.layers, 'layers', 'attention layers with a KV cache');
  if (isMla(model)) {
    positiveInteger(model.kvLoraRank, 'kvLoraRank', "the model config's kv_lora_rank");
    positiveInteger(model.qkRopeHeadDim, 'qkRopeHeadDim', "the model config's qk_rope_head_dim");
  } else {
    positiveInteger(model.kvHeads, 'kvHeads', "the model config's num_key_value_heads");
    positiveInteger(model.headDim, 'headDim', "the model config's head_dim");
  }
  dtypeBytes(model.dtype);
}
