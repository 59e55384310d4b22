/**
 * Element types a KV cache can be stored in, and their sizes.
 *
 * The canonical names are the ones {@link KvDtype} lists; {@link parseKvDtype} also accepts the
 * spellings vLLM and PyTorch configs use (`bfloat16`, `half`, `fp8`, `fp8_e5m2`, ...), so a
 * caller can pass a model config's `torch_dtype` or vLLM's `--kv-cache-dtype` straight through.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';

/** A KV cache element type. Both fp8 formats and int8 are 1 byte; fp16 and bf16 are 2; fp32 is 4. */
export type KvDtype = 'fp16' | 'bf16' | 'fp32' | 'fp8-e4m3' | 'fp8-e5m2' | 'int8';

const DTYPE_BYTES: Readonly<Record<KvDtype, number>> = {
  fp16: 2,
  bf16: 2,
  fp32: 4,
  'fp8-e4m3': 1,
  'fp8-e5m2': 1,
  int8: 1,
};

/** Every canonical {@link KvDtype}, in a stable order. */
export const KV_DTYPES: readonly KvDtype[] = Object.freeze(Object.keys(DTYPE_BYTES) as KvDtype[]);

// vLLM's `--kv-cache-dtype fp8` means e4m3 (its default fp8 format on CUDA).
const ALIASES: Readonly<Record<string, KvDtype>> = {
  fp16: 'fp16',
  float16: 'fp16',
  half: 'fp16',
  'torch.float16': 'fp16',
  bf16: 'bf16',
  bfloat16: 'bf16',
  'torch.bfloat16': 'bf16',
  fp32: 'fp32',
  float32: 'fp32',
  float: 'fp32',
  'torch.float32': 'fp32',
  fp8: 'fp8-e4m3',
  'fp8-e4m3': 'fp8-e4m3',
  fp8_e4m3: 'fp8-e4m3',
  'torch.float8_e4m3fn': 'fp8-e4m3',
  'fp8-e5m2': 'fp8-e5m2',
  fp8_e5m2: 'fp8-e5m2',
  'torch.float8_e5m2': 'fp8-e5m2',
  int8: 'int8',
  'torch.int8': 'int8',
};

/** True when `value` is one of the canonical {@link KvDtype} names. */
export function isKvDtype(value: unknown): value is KvDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

/**
 * Bytes per element of `dtype`.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when `dtype` is not a {@link KvDtype}.
 */
export function dtypeBytes(dtype: KvDtype): number {
  if (!isKvDtype(dtype)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown KV dtype ${JSON.stringify(dtype)}; use one of ${KV_DTYPES.join(', ')} (parseKvDtype accepts vLLM/PyTorch spellings)`,
      { field: 'dtype' },
    );
  }
  return DTYPE_BYTES[dtype];
}

/**
 * Turns a dtype name as configs spell it (`bfloat16`, `torch.float16`, `fp8`, `fp8_e5m2`, ...)
 * into a canonical {@link KvDtype}. Matching is case-insensitive.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a name it does not know.
 */
export function parseKvDtype(name: string): KvDtype {
  const key = typeof name === 'string' ? name.trim().toLowerCase() : '';
  const dtype = Object.prototype.hasOwnProperty.call(ALIASES, key) ? ALIASES[key] : undefined;
  if (dtype === undefined) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown KV dtype name ${JSON.stringify(name)}; use one of ${KV_DTYPES.join(', ')} or a PyTorch/vLLM spelling such as bfloat16, float16, fp8, fp8_e5m2`,
      { field: 'dtype' },
    );
  }
  return dtype;
}
