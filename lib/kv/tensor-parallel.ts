/**
 * Heterogeneous tensor parallelism: which prefill ranks a decode rank reads, and what.
 *
 * Prefill runs with TP size p and decode with TP size d. Each decode rank needs exactly the KV
 * heads it holds (see `kvHeadsOfRank`); this module finds, for each of those heads, a prefill rank
 * holding it, groups consecutive heads read from the same prefill rank, and emits descriptor
 * pairs that copy those head slices of every block, byte-exact.
 *
 * Choice of source rank: the "aligned" prefill rank `floor(j·p/d)` of decode rank j when it holds
 * the head (this is vLLM's NixlConnector choice `j // (d/p)` when d ≥ p, and spreads reads over
 * the prefill ranks); otherwise, when a head is replicated on several prefill ranks (p > heads),
 * replica `j mod replicas` of it.
 *
 * Cost: with `order: 'HND'` a head slice of a block is contiguous — one descriptor per block per
 * tensor (per half for joint KV). With `'NHD'` it is strided — one descriptor per token, i.e.
 * `blockTokens` times as many (16× by default) whenever a decode rank reads a partial slice.
 * Prefer HND for heterogeneous TP. When both ranks hold the same heads, whole blocks are copied
 * in either order. MLA latents are not split by heads: each decode rank reads the whole latent
 * cache from one prefill rank.
 *
 * Block ids: all ranks of one engine share its block table, so one list of prefill block ids
 * serves every prefill rank.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { emitPairedDescriptors } from './coalesce.js';
import { blockIdArray, validateBlockIds, type BlockCopyPlan, type PairedDescriptors } from './block-descriptors.js';
import { ranksHoldingHead } from './heads.js';
import { KvLayout, type KvLayoutOptions } from './layout.js';
import { isMla } from './model.js';
import { assertSameCacheShape, assertSameLength, type PairOptions } from './pairing.js';

/** A run of heads a decode rank reads from one prefill rank. */
export interface TensorParallelSource {
  /** The prefill rank read from. */
  readonly prefillRank: number;
  /** Global index of the first head read. */
  readonly firstHead: number;
  /** Number of consecutive heads read. */
  readonly headCount: number;
  /** Index of the first head among the decode rank's own heads. */
  readonly decodeHeadOffset: number;
  /** Index of the first head among the prefill rank's own heads. */
  readonly prefillHeadOffset: number;
}

/** The descriptor pairs of one read, from one prefill rank, for one list of blocks. */
export interface TensorParallelRead extends PairedDescriptors {
  /** The prefill rank to read from (remote descriptors address its regions). */
  readonly prefillRank: number;
  /** The heads this read assembles. */
  readonly source: TensorParallelSource;
}

/** For one decode rank and one prefill group: the fixed part of every read. Build once per peer. */
export class TensorParallelReadPlan {
  /** The decode rank's layout (local side). */
  readonly decode: KvLayout;
  /** The prefill layouts, index = prefill rank (remote side). */
  readonly prefill: readonly KvLayout[];
  /** Head runs, in the decode rank's head order; together they cover all its heads once. */
  readonly sources: readonly TensorParallelSource[];
  readonly #plans: readonly BlockCopyPlan[];

  /** Use {@link planTensorParallelReads}. */
  constructor(decode: KvLayout, prefill: readonly KvLayout[], sources: readonly TensorParallelSource[]) {
    this.decode = decode;
    this.prefill = Object.freeze([...prefill]);
    this.sources = Object.freeze(sources.map((s) => Object.freeze({ ...s })));
    this.#plans = this.sources.map((s) => copyPlan(decode, prefill[s.prefillRank]!, s));
  }

  /**
   * One read per source: descriptor pairs that copy, for every tensor, this decode rank's slice of
   * prefill block `prefillBlockIds[i]` into decode block `decodeBlockIds[i]`.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for lists of different lengths or a bad
   *   id; `ERR_KVWIRE_OUT_OF_BOUNDS` for an id beyond its cache.
   */
  reads(
    decodeBlockIds: ArrayLike<number>,
    prefillBlockIds: ArrayLike<number>,
    options: PairOptions = {},
  ): TensorParallelRead[] {
    assertSameLength(decodeBlockIds, prefillBlockIds);
    const localIds = blockIdArray(decodeBlockIds, this.decode.numBlocks, 'decode block ids');
    for (const source of this.sources) {
      validateBlockIds(
        prefillBlockIds,
        this.prefill[source.prefillRank]!.numBlocks,
        `prefill block ids (rank ${source.prefillRank})`,
      );
    }
    const remoteIds = Float64Array.from(prefillBlockIds);
    const local = this.decode.blockAddressing(options.localAddressing);
    const coalesce = options.coalesce ?? true;
    const out: TensorParallelRead[] = [];
    for (let s = 0; s < this.sources.length; s++) {
      const source = this.sources[s]!;
      const remoteLayout = this.prefill[source.prefillRank]!;
      const pairs = emitPairedDescriptors(
        this.#plans[s]!,
        local,
        remoteLayout.blockAddressing(options.remoteAddressing),
        localIds,
        remoteIds,
        coalesce,
      );
      out.push({ prefillRank: source.prefillRank, source, ...pairs });
    }
    return out;
  }
}

// Pieces of one block to copy for one source: whole blocks when both ranks hold exactly these
// heads; else one piece per K/V half (HND) or per token per half (NHD).
function copyPlan(decode: KvLayout, prefill: KvLayout, s: TensorParallelSource): BlockCopyPlan {
  const tensors = decode.tensors.length;
  const identity = new Uint32Array(tensors);
  for (let t = 0; t < tensors; t++) identity[t] = t;
  const lo: number[] = [];
  const ro: number[] = [];
  const len: number[] = [];
  const hb = decode.headBytes;
  const T = decode.blockTokens;
  const hd = decode.heads.count;
  const hp = prefill.heads.count;
  if (s.headCount === hd && s.headCount === hp) {
    lo.push(0);
    ro.push(0);
    len.push(decode.blockBytes);
  } else {
    const halves = decode.kv === 'joint' ? 2 : 1;
    const lHalf = decode.blockBytes / halves;
    const rHalf = prefill.blockBytes / halves;
    for (let h = 0; h < halves; h++) {
      if (decode.order === 'HND') {
        lo.push(h * lHalf + s.decodeHeadOffset * T * hb);
        ro.push(h * rHalf + s.prefillHeadOffset * T * hb);
        len.push(s.headCount * T * hb);
      } else {
        for (let t = 0; t < T; t++) {
          lo.push(h * lHalf + (t * hd + s.decodeHeadOffset) * hb);
          ro.push(h * rHalf + (t * hp + s.prefillHeadOffset) * hb);
          len.push(s.headCount * hb);
        }
      }
    }
  }
  return {
    localTensor: identity,
    remoteTensor: identity,
    pieceLocal: Float64Array.from(lo),
    pieceRemote: Float64Array.from(ro),
    pieceLength: Float64Array.from(len),
  };
}

/**
 * Plans how decode rank `decode.tp.rank` assembles its KV heads from the prefill group whose
 * layouts are `prefill` (one per prefill rank, index = rank). Works for decode TP larger,
 * smaller or equal to prefill TP, with replicated heads on either side, and for MLA.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when `prefill` is not one layout per rank
 *   of one group in rank order; `ERR_KVWIRE_INCOMPATIBLE` when a prefill layout's cache shape
 *   (model, dtype, block size, K/V storage, order) differs from the decode layout's.
 */
export function planTensorParallelReads(decode: KvLayout, prefill: readonly KvLayout[]): TensorParallelReadPlan {
  if (!Array.isArray(prefill) || prefill.length === 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'prefill must be a non-empty array of KvLayout, one per prefill TP rank (see tensorParallelLayouts)',
      { field: 'prefill' },
    );
  }
  const p = prefill.length;
  for (let r = 0; r < p; r++) {
    const layout = prefill[r]!;
    assertSameCacheShape(decode, 'decode', layout, `prefill rank ${r}`);
    if (layout.tp.size !== p || layout.tp.rank !== r) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `prefill[${r}] is rank ${layout.tp.rank} of a TP group of ${layout.tp.size}, but ${p} prefill layouts were given; pass exactly one layout per prefill rank, in rank order`,
        { field: 'prefill', index: r },
      );
    }
  }
  const d = decode.tp.size;
  const j = decode.tp.rank;
  const model = decode.model;
  // MLA: the latent is one "head" that every rank holds.
  const totalHeads = isMla(model) ? 1 : model.kvHeads;
  const aligned = Math.floor((j * p) / d);
  const sources: TensorParallelSource[] = [];
  const { first, count } = decode.heads;
  for (let h = first; h < first + count; h++) {
    const holders = isMla(model) ? { first: 0, count: p } : ranksHoldingHead(totalHeads, p, h);
    const rank =
      aligned >= holders.first && aligned < holders.first + holders.count
        ? aligned
        : holders.first + (j % holders.count);
    const prefillHeadOffset = h - prefill[rank]!.heads.first;
    const last = sources[sources.length - 1];
    if (
      last !== undefined &&
      last.prefillRank === rank &&
      last.prefillHeadOffset + last.headCount === prefillHeadOffset
    ) {
      sources[sources.length - 1] = { ...last, headCount: last.headCount + 1 };
    } else {
      sources.push({ prefillRank: rank, firstHead: h, headCount: 1, decodeHeadOffset: h - first, prefillHeadOffset });
    }
  }
  return new TensorParallelReadPlan(decode, prefill, sources);
}

/** The layouts of every rank of a TP group of `size` (index = rank), e.g. to describe a remote prefill group. */
export function tensorParallelLayouts(options: Omit<KvLayoutOptions, 'tp'>, size: number): KvLayout[] {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `tensor-parallel size must be a positive integer, got ${String(size)}`,
      { field: 'tp.size' },
    );
  }
  const out: KvLayout[] = [];
  for (let rank = 0; rank < size; rank++) out.push(new KvLayout({ ...options, tp: { size, rank } }));
  return out;
}
