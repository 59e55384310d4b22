/**
 * KV cache shapes of well-known models, as their Hugging Face configs give them.
 *
 * The dtype is the one the model ships in (`torch_dtype`); to store the cache in another type
 * (e.g. vLLM's `--kv-cache-dtype fp8`), spread the preset and override it:
 * `{ ...kvPreset('llama-3-8b'), dtype: 'fp8-e4m3' }`.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { ModelShape } from './model.js';

/** Names of the built-in model presets. */
export type KvPresetName = 'llama-2-7b' | 'llama-3-8b' | 'llama-3-70b' | 'mistral-7b' | 'qwen3-8b' | 'deepseek-v3';

const PRESETS: Readonly<Record<KvPresetName, ModelShape>> = {
  // Llama-2-7B: full multi-head attention (32 KV heads), shipped in fp16.
  'llama-2-7b': { name: 'llama-2-7b', attention: 'mha', layers: 32, kvHeads: 32, headDim: 128, dtype: 'fp16' },
  // Llama-3-8B: GQA with 8 KV heads; 128 KiB of KV per token in bf16.
  'llama-3-8b': { name: 'llama-3-8b', attention: 'mha', layers: 32, kvHeads: 8, headDim: 128, dtype: 'bf16' },
  'llama-3-70b': { name: 'llama-3-70b', attention: 'mha', layers: 80, kvHeads: 8, headDim: 128, dtype: 'bf16' },
  'mistral-7b': { name: 'mistral-7b', attention: 'mha', layers: 32, kvHeads: 8, headDim: 128, dtype: 'bf16' },
  'qwen3-8b': { name: 'qwen3-8b', attention: 'mha', layers: 36, kvHeads: 8, headDim: 128, dtype: 'bf16' },
  // DeepSeek-V3: MLA, 61 layers, one latent of kv_lora_rank 512 + qk_rope_head_dim 64 per token.
  'deepseek-v3': {
    name: 'deepseek-v3',
    attention: 'mla',
    layers: 61,
    kvLoraRank: 512,
    qkRopeHeadDim: 64,
    dtype: 'bf16',
  },
};

for (const shape of Object.values(PRESETS)) Object.freeze(shape);

/** Names of every built-in preset, in a stable order. */
export const KV_PRESET_NAMES: readonly KvPresetName[] = Object.freeze(Object.keys(PRESETS) as KvPresetName[]);

/**
 * The KV cache shape of a well-known model (a frozen object).
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for an unknown name.
 */
export function kvPreset(name: KvPresetName): ModelShape {
  const shape = Object.prototype.hasOwnProperty.call(PRESETS, name) ? PRESETS[name] : undefined;
  if (shape === undefined) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `no KV preset named ${JSON.stringify(name)}; known presets are ${KV_PRESET_NAMES.join(', ')}, or pass a ModelShape { layers, kvHeads, headDim, dtype }`,
      { field: 'model' },
    );
  }
  return shape;
}
