/**
 * lib/kv — KV cache layout: which tensors a rank registers, block ids → flat memory descriptors,
 * run coalescing, heterogeneous tensor-parallel slicing, model presets and the compatibility
 * fields a prefill/decode handshake compares. Knows nothing about transports.
 *
 * @packageDocumentation
 */
export { KV_DTYPES, dtypeBytes, isKvDtype, parseKvDtype, type KvDtype } from './dtype.js';
export {
  isMla,
  latentWidth,
  modelBytesPerToken,
  validateModelShape,
  type MhaModelShape,
  type MlaModelShape,
  type ModelShape,
} from './model.js';
export { KV_PRESET_NAMES, kvPreset, type KvPresetName } from './presets.js';
export { kvHeadsOfRank, ranksHoldingHead, type KvHeadRange } from './heads.js';
export {
  validateBlockIds,
  type Addressing,
  type BlockDescriptors,
  type DescriptorList,
  type DescriptorOptions,
  type PairedDescriptors,
} from './block-descriptors.js';
export {
  KV_ARENA_LABEL,
  KvLayout,
  type KvLayoutOptions,
  type KvOrder,
  type KvRegionSpec,
  type KvSplit,
  type KvTensor,
  type KvTensorPart,
  type TensorParallelRank,
} from './layout.js';
export { pairBlockDescriptors, type PairOptions } from './pairing.js';
export {
  TensorParallelReadPlan,
  planTensorParallelReads,
  tensorParallelLayouts,
  type TensorParallelRead,
  type TensorParallelSource,
} from './tensor-parallel.js';
export {
  KV_COMPATIBILITY_FIELD_NAMES,
  KV_LAYOUT_PROTOCOL_VERSION,
  assertCompatible,
  canonicalCompatibilityJson,
  compatHash,
  compatibilityFields,
  firstDifferingField,
  type CompatibilityOptions,
  type KvCompatibilityFields,
} from './compat.js';
