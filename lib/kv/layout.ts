/**
 * `KvLayout`: where every KV block of one tensor-parallel rank lies in memory.
 *
 * A layout is built from a model's KV shape and the engine's cache configuration. It lists the
 * tensors (caches) this rank holds — the regions to register — and turns any list of block ids
 * into flat descriptors.
 *
 * Tensors, in this order (region index = tensor index under `'tensor'` addressing):
 * - `kv: 'split'` (vLLM FlashAttention; NixlConnector registers K and V apart): per layer L a K
 *   tensor `kv-L{L}-K` then a V tensor `kv-L{L}-V`, each `[numBlocks, block]`.
 * - `kv: 'joint'` (vLLM FlashInfer): per layer one tensor `kv-L{L}` of `[numBlocks, 2, block]`,
 *   K then V inside every block.
 * - MLA: per layer one latent tensor `mla-L{L}` of `[numBlocks, blockTokens, latent]`.
 *
 * A block (of K, of V, or of either half of a joint block) is `[heads, tokens, headDim]` for
 * `order: 'HND'` and `[tokens, heads, headDim]` for `'NHD'`. `heads` are this rank's heads only.
 *
 * Memory: register one region per tensor (`regions('tensor')`), or allocate one arena of
 * `arenaBytes` holding every tensor at its `arenaOffset` and register that (`regions('arena')`);
 * descriptors are produced for either.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { emitBlockDescriptors } from './coalesce.js';
import { dtypeBytes, type KvDtype } from './dtype.js';
import { kvHeadsOfRank, type KvHeadRange } from './heads.js';
import { isMla, latentWidth, validateModelShape, type ModelShape } from './model.js';
import {
  blockIdArray,
  type Addressing,
  type BlockAddressing,
  type BlockDescriptors,
  type DescriptorOptions,
} from './block-descriptors.js';
import { formatCount } from '../util/format.js';

/** Order of a block's dimensions: `'HND'` = [heads, tokens, headDim]; `'NHD'` = [tokens, heads, headDim]. */
export type KvOrder = 'HND' | 'NHD';

/** How K and V are stored: `'split'` — separate K and V tensors per layer; `'joint'` — one tensor per layer, K then V in every block. */
export type KvSplit = 'split' | 'joint';

/** Which part of the cache a tensor holds. */
export type KvTensorPart = 'K' | 'V' | 'KV' | 'latent';

/** A rank's position in its tensor-parallel group. */
export interface TensorParallelRank {
  /** Number of ranks in the group. */
  readonly size: number;
  /** This rank, in `[0, size)`. */
  readonly rank: number;
}

/** What a {@link KvLayout} is built from. */
export interface KvLayoutOptions {
  /** The model's KV shape (see `kvPreset`). */
  readonly model: ModelShape;
  /** Blocks in each tensor (vLLM's `num_gpu_blocks`). */
  readonly numBlocks: number;
  /** Tokens per block; default 16. */
  readonly blockTokens?: number;
  /** Tensor-parallel group and rank; default `{ size: 1, rank: 0 }`. */
  readonly tp?: TensorParallelRank;
  /** K/V storage for MHA models; default `'split'`. Must be omitted for MLA. */
  readonly kv?: KvSplit;
  /**
   * Block dimension order for MHA models; default `'HND'` (what vLLM selects when the
   * NixlConnector is in use, and the only order where a head slice of a block is contiguous).
   * Ignored for MLA, whose blocks have no heads (reported as `'NHD'`, token-major).
   */
  readonly order?: KvOrder;
  /** Alignment of each tensor's `arenaOffset`, a power of two; default 256. */
  readonly arenaAlignment?: number;
}

/** One tensor (cache) of a layout. */
export interface KvTensor {
  /** Position in `layout.tensors`; the region index under `'tensor'` addressing. */
  readonly index: number;
  /** Stable name: `kv-L3-K`, `kv-L3-V`, `kv-L3` (joint) or `mla-L3`. */
  readonly label: string;
  /** Layer index. */
  readonly layer: number;
  /** What the tensor holds. */
  readonly part: KvTensorPart;
  /** Size in bytes: `numBlocks × layout.blockBytes`. */
  readonly bytes: number;
  /** Byte offset of this tensor inside the single arena (`'arena'` addressing). */
  readonly arenaOffset: number;
}

/** A region to allocate and register: one per tensor, or one arena. */
export interface KvRegionSpec {
  /** Label to register the region under. */
  readonly label: string;
  /** Size in bytes. */
  readonly bytes: number;
}

/** Label of the single region under `'arena'` addressing. */
export const KV_ARENA_LABEL = 'kv-arena';

function positiveInt(value: unknown, field: string, hint: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${field} must be a positive integer, got ${String(value)}; ${hint}`,
      { field },
    );
  }
  return value;
}

/** The memory layout of one tensor-parallel rank's KV cache. Immutable. */
export class KvLayout {
  /** The model's KV shape (frozen copy). */
  readonly model: ModelShape;
  /** Element type. */
  readonly dtype: KvDtype;
  /** Bytes per element. */
  readonly elementBytes: number;
  /** Blocks per tensor. */
  readonly numBlocks: number;
  /** Tokens per block. */
  readonly blockTokens: number;
  /** Tensor-parallel group and rank. */
  readonly tp: TensorParallelRank;
  /** K/V storage: `'split'`, `'joint'`, or `'latent'` for MLA. */
  readonly kv: KvSplit | 'latent';
  /** Block dimension order (`'NHD'` for MLA). */
  readonly order: KvOrder;
  /** Global KV heads this rank holds; for MLA the single latent "head", held by every rank. */
  readonly heads: KvHeadRange;
  /** Elements per head per token (MLA: `kvLoraRank + qkRopeHeadDim`). */
  readonly headDim: number;
  /** Bytes of one block of one tensor (a joint block counts K and V). */
  readonly blockBytes: number;
  /** The tensors this rank holds, in region order. */
  readonly tensors: readonly KvTensor[];
  /** Alignment of `arenaOffset`s. */
  readonly arenaAlignment: number;
  /** Size of the single arena holding every tensor. */
  readonly arenaBytes: number;

  readonly #byLabel: ReadonlyMap<string, KvTensor>;
  readonly #tensorAddressing: BlockAddressing;
  readonly #arenaAddressing: BlockAddressing;

  /**
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a malformed model shape, a
   *   non-positive block count or block size, a rank outside its group, heads that cannot be
   *   split over the TP size, `kv` given for MLA, or an arena larger than 2^53 bytes.
   */
  constructor(options: KvLayoutOptions) {
    if (options === null || typeof options !== 'object') {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'KvLayout needs options { model, numBlocks, ... }', {
        field: 'options',
      });
    }
    const model = options.model;
    validateModelShape(model);
    this.model = Object.freeze({ ...model });
    this.dtype = model.dtype;
    this.elementBytes = dtypeBytes(model.dtype);
    this.numBlocks = positiveInt(
      options.numBlocks,
      'numBlocks',
      "pass the engine's number of KV blocks (vLLM's num_gpu_blocks)",
    );
    this.blockTokens = positiveInt(
      options.blockTokens ?? 16,
      'blockTokens',
      "pass the engine's block size in tokens (vLLM's --block-size)",
    );
    const tp = options.tp ?? { size: 1, rank: 0 };
    if (tp === null || typeof tp !== 'object') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        'tp must be { size, rank } (the tensor-parallel group size and this rank)',
        { field: 'tp' },
      );
    }
    this.tp = Object.freeze({ size: tp.size, rank: tp.rank });
    const alignment = positiveInt(options.arenaAlignment ?? 256, 'arenaAlignment', 'use a power of two such as 256');
    if ((alignment & (alignment - 1)) !== 0) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `arenaAlignment must be a power of two, got ${alignment}`, {
        field: 'arenaAlignment',
      });
    }
    this.arenaAlignment = alignment;
    if (options.order !== undefined && options.order !== 'HND' && options.order !== 'NHD') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `order must be 'HND' or 'NHD', got ${JSON.stringify(options.order)}`,
        { field: 'order' },
      );
    }
    if (options.kv !== undefined && options.kv !== 'split' && options.kv !== 'joint') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `kv must be 'split' or 'joint', got ${JSON.stringify(options.kv)}`,
        { field: 'kv' },
      );
    }

    const partsPerLayer: KvTensorPart[] = [];
    let halves: number;
    if (isMla(model)) {
      if (options.kv !== undefined) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          'an MLA model has one latent cache per layer and no K/V split; omit kv',
          { field: 'kv' },
        );
      }
      // Validates the TP rank; the latent is one "head" that every rank replicates.
      kvHeadsOfRank(1, this.tp.size, this.tp.rank);
      this.kv = 'latent';
      this.order = 'NHD';
      this.heads = Object.freeze({ first: 0, count: 1, replicas: this.tp.size });
      this.headDim = latentWidth(model);
      partsPerLayer.push('latent');
      halves = 1;
    } else {
      this.kv = options.kv ?? 'split';
      this.order = options.order ?? 'HND';
      this.heads = Object.freeze(kvHeadsOfRank(model.kvHeads, this.tp.size, this.tp.rank));
      this.headDim = model.headDim;
      if (this.kv === 'split') partsPerLayer.push('K', 'V');
      else partsPerLayer.push('KV');
      halves = this.kv === 'joint' ? 2 : 1;
    }
    this.blockBytes = halves * this.blockTokens * this.heads.count * this.headDim * this.elementBytes;
    const tensorBytes = this.numBlocks * this.blockBytes;

    const tensors: KvTensor[] = [];
    let cursor = 0;
    for (let layer = 0; layer < model.layers; layer++) {
      for (const part of partsPerLayer) {
        const label = part === 'latent' ? `mla-L${layer}` : part === 'KV' ? `kv-L${layer}` : `kv-L${layer}-${part}`;
        const arenaOffset = Math.ceil(cursor / alignment) * alignment;
        tensors.push(Object.freeze({ index: tensors.length, label, layer, part, bytes: tensorBytes, arenaOffset }));
        cursor = arenaOffset + tensorBytes;
      }
    }
    if (!Number.isSafeInteger(cursor)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `this layout needs ${formatCount(cursor)} bytes, more than offsets can address exactly (2^53); lower numBlocks`,
        { field: 'numBlocks' },
      );
    }
    this.tensors = Object.freeze(tensors);
    this.arenaBytes = cursor;
    this.#byLabel = new Map(tensors.map((t) => [t.label, t]));

    const count = tensors.length;
    const identity = new Uint32Array(count);
    const zeros = new Float64Array(count);
    const arenaBase = new Float64Array(count);
    for (let t = 0; t < count; t++) {
      identity[t] = t;
      arenaBase[t] = tensors[t]!.arenaOffset;
    }
    this.#tensorAddressing = { blockStride: this.blockBytes, regionOf: identity, baseOf: zeros };
    this.#arenaAddressing = { blockStride: this.blockBytes, regionOf: new Uint32Array(count), baseOf: arenaBase };
  }

  /** KV bytes one token occupies on this rank, all tensors together. */
  get bytesPerToken(): number {
    return (this.tensors.length * this.blockBytes) / this.blockTokens;
  }

  /** Bytes one block occupies on this rank, all tensors together. */
  get bytesPerBlock(): number {
    return this.tensors.length * this.blockBytes;
  }

  /** Bytes of one head's vector for one token (MLA: one latent vector). */
  get headBytes(): number {
    return this.headDim * this.elementBytes;
  }

  /**
   * The regions to allocate and register, in region-index order: every tensor
   * (`'tensor'`, the default), or one arena labelled {@link KV_ARENA_LABEL} (`'arena'`).
   */
  regions(addressing: Addressing = 'tensor'): readonly KvRegionSpec[] {
    if (addressing === 'arena') return [{ label: KV_ARENA_LABEL, bytes: this.arenaBytes }];
    checkAddressing(addressing);
    return this.tensors.map((t) => ({ label: t.label, bytes: t.bytes }));
  }

  /**
   * The tensor labelled `label`.
   *
   * @throws KvwireError `ERR_KVWIRE_UNKNOWN_REGION` when this layout has no such tensor.
   */
  tensor(label: string): KvTensor {
    const t = this.#byLabel.get(label);
    if (t === undefined) {
      const first = this.tensors[0]?.label ?? '';
      const last = this.tensors[this.tensors.length - 1]?.label ?? '';
      throw new KvwireError(
        ErrorCode.UNKNOWN_REGION,
        `this layout has no tensor labelled ${JSON.stringify(label)}; its tensors are ${first} .. ${last}`,
        { field: 'label' },
      );
    }
    return t;
  }

  /**
   * Where this layout's blocks lie under `addressing`: shared arrays, not copies — do not modify.
   *
   * @internal Used by the pairing and tensor-parallel planners; not part of the API.
   */
  blockAddressing(addressing: Addressing = 'tensor'): BlockAddressing {
    if (addressing === 'arena') return this.#arenaAddressing;
    checkAddressing(addressing);
    return this.#tensorAddressing;
  }

  /**
   * Descriptors that cover blocks `blockIds` of every tensor: tensor-major (all blocks of tensor
   * 0, then tensor 1, ...), each run of contiguous ids coalesced into one descriptor per tensor.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a non-integer or negative id,
   *   `ERR_KVWIRE_OUT_OF_BOUNDS` for an id ≥ `numBlocks`.
   */
  descriptors(blockIds: ArrayLike<number>, options: DescriptorOptions = {}): BlockDescriptors {
    const ids = blockIdArray(blockIds, this.numBlocks, 'block ids');
    return emitBlockDescriptors(
      this.blockAddressing(options.addressing),
      this.tensors.length,
      ids,
      options.coalesce ?? true,
    );
  }
}

function checkAddressing(addressing: unknown): void {
  if (addressing !== 'tensor' && addressing !== 'arena') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `addressing must be 'tensor' or 'arena', got ${JSON.stringify(addressing)}`,
      { field: 'addressing' },
    );
  }
}
