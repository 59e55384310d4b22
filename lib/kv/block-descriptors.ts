/**
 * Flat descriptor lists for lists of KV blocks, with run coalescing.
 *
 * A descriptor is (region index, byte offset, byte length). Lists are three parallel typed
 * arrays, never arrays of objects: they cross to the transport (and its native addon) as they
 * are, and building them allocates a constant number of objects whatever the descriptor count.
 *
 * Coalescing (see `coalesce.ts`) merges a descriptor that starts exactly where the previous one
 * ended, in the same region (for paired lists: on both sides at once). Every list reports
 * `before` (descriptors without coalescing) and `after` (emitted).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { formatCount } from '../util/format.js';

/** A flat list of `count` descriptors: element i is (`region[i]`, `offset[i]`, `length[i]`). */
export interface DescriptorList {
  /** Number of descriptors; every array below has exactly this length. */
  readonly count: number;
  /** Index of the region each descriptor addresses, into `layout.regions(addressing)`. */
  readonly region: Uint32Array;
  /** Byte offset of each descriptor inside its region (exact up to 2^53). */
  readonly offset: Float64Array;
  /** Byte length of each descriptor (always > 0). */
  readonly length: Float64Array;
}

/** Descriptors of one layout for a list of blocks, with coalescing counts. */
export interface BlockDescriptors extends DescriptorList {
  /** Descriptors the list would have without coalescing (blocks × tensors). */
  readonly before: number;
  /** Descriptors after coalescing (equals `count`). */
  readonly after: number;
}

/**
 * Equal-length local and remote descriptor lists: descriptor i moves `local.length[i]` bytes
 * between local (`region[i]`, `offset[i]`) and remote (`region[i]`, `offset[i]`).
 * `local.length` and `remote.length` are the same array.
 */
export interface PairedDescriptors {
  /** Number of descriptor pairs. */
  readonly count: number;
  /** Descriptors on this side (for a READ: the destination). */
  readonly local: DescriptorList;
  /** Descriptors on the peer's side (for a READ: the source). */
  readonly remote: DescriptorList;
  /** Pairs without coalescing. */
  readonly before: number;
  /** Pairs after coalescing (equals `count`). */
  readonly after: number;
}

/**
 * How descriptors address memory: `'tensor'` — one region per tensor, region index = tensor
 * index; `'arena'` — one region holding every tensor at its `arenaOffset`, region index 0.
 */
export type Addressing = 'tensor' | 'arena';

/** Options of `KvLayout.descriptors`. */
export interface DescriptorOptions {
  /** Region addressing; default `'tensor'`. */
  readonly addressing?: Addressing;
  /** Merge adjacent descriptors; default true. Turning it off is for tests and diagnosis. */
  readonly coalesce?: boolean;
}

/**
 * Where a layout's blocks lie under one addressing: block b of tensor t is
 * (`regionOf[t]`, `baseOf[t] + b × blockStride`). Internal to lib/kv.
 */
export interface BlockAddressing {
  /** Bytes between block b and block b+1 of one tensor. */
  readonly blockStride: number;
  /** Region index of each tensor. */
  readonly regionOf: Uint32Array;
  /** Byte offset of each tensor's block 0 inside its region. */
  readonly baseOf: Float64Array;
}

/**
 * What to copy for each block: for every tensor pair (local tensor, remote tensor), every piece
 * (local offset in block, remote offset in block, length). Internal to lib/kv.
 */
export interface BlockCopyPlan {
  /** Local tensor index of each tensor pair. */
  readonly localTensor: Uint32Array;
  /** Remote tensor index of each tensor pair. */
  readonly remoteTensor: Uint32Array;
  /** Byte offset of each piece inside a local block, ascending. */
  readonly pieceLocal: Float64Array;
  /** Byte offset of each piece inside a remote block. */
  readonly pieceRemote: Float64Array;
  /** Byte length of each piece. */
  readonly pieceLength: Float64Array;
}

/**
 * Checks that every id is an integer block index in `[0, numBlocks)`.
 *
 * @param which - how messages name the list, e.g. `'local block ids'`.
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a non-integer or negative id or a
 *   non-array; `ERR_KVWIRE_OUT_OF_BOUNDS` for an id ≥ `numBlocks`.
 */
export function validateBlockIds(ids: ArrayLike<number>, numBlocks: number, which: string): void {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${which} must be an array or typed array of block ids`, {
      field: which,
    });
  }
  const n = ids.length;
  for (let i = 0; i < n; i++) {
    const id = ids[i] as number;
    // One comparison chain for the common case; the slow diagnosis only runs on failure.
    if (id >= 0 && id < numBlocks && (id | 0) === id) continue;
    if (typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < numBlocks) continue; // ids ≥ 2^31
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${which}[${i}] is ${String(id)}, not a block id; block ids are non-negative integers that index the cache's blocks`,
        { index: i, field: which },
      );
    }
    throw new KvwireError(
      ErrorCode.OUT_OF_BOUNDS,
      `${which}[${i}] is block ${formatCount(id)}, but this cache has ${formatCount(numBlocks)} blocks (ids 0..${formatCount(numBlocks - 1)}); pass ids the engine allocated from this cache`,
      { index: i, field: which },
    );
  }
}

/**
 * Validates `ids` (as {@link validateBlockIds}) and copies them into a Float64Array, so the
 * emitters in `coalesce.ts` always index one array type (a monomorphic hot loop). Internal to lib/kv.
 */
export function blockIdArray(ids: ArrayLike<number>, numBlocks: number, which: string): Float64Array {
  validateBlockIds(ids, numBlocks, which);
  return ids instanceof Float64Array ? ids : Float64Array.from(ids);
}
