/**
 * Pairing a local layout's blocks with a remote layout's blocks of the same logical KV.
 *
 * The two sides allocate block ids independently (decode gets its own ids for the blocks prefill
 * computed), so a transfer pairs `localBlockIds[i]` with `remoteBlockIds[i]`. Descriptors are
 * emitted pair by pair and coalesced only where both sides continue contiguously.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { emitPairedDescriptors } from './coalesce.js';
import { compatibilityFields, firstDifferingField } from './compat.js';
import { blockIdArray, type Addressing, type BlockCopyPlan, type PairedDescriptors } from './block-descriptors.js';
import { KvLayout } from './layout.js';

/** Options of {@link pairBlockDescriptors} and tensor-parallel reads. */
export interface PairOptions {
  /** Addressing of the local regions; default `'tensor'`. */
  readonly localAddressing?: Addressing;
  /** Addressing of the remote regions; default `'tensor'`. */
  readonly remoteAddressing?: Addressing;
  /** Merge adjacent pairs; default true. */
  readonly coalesce?: boolean;
}

/**
 * Throws unless `a` and `b` hold the same kind of cache (model shape, dtype, K/V storage, order,
 * block size). Internal to lib/kv.
 *
 * @throws KvwireError `ERR_KVWIRE_INCOMPATIBLE` naming the first field that differs.
 */
export function assertSameCacheShape(a: KvLayout, aName: string, b: KvLayout, bName: string): void {
  if (!(a instanceof KvLayout) || !(b instanceof KvLayout)) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${aName} and ${bName} layouts must be KvLayout instances`, {
      field: 'layout',
    });
  }
  const fa = compatibilityFields(a);
  const fb = compatibilityFields(b);
  const field = firstDifferingField(fa, fb);
  if (field !== undefined) {
    throw new KvwireError(
      ErrorCode.INCOMPATIBLE,
      `incompatible: ${field} differs (${aName} ${String(fa[field])}, ${bName} ${String(fb[field])}); both layouts must describe the same model, dtype, block size and cache layout`,
      { field },
    );
  }
}

/** Checks that two block-id lists pair up one to one. Internal to lib/kv. */
export function assertSameLength(localIds: ArrayLike<number>, remoteIds: ArrayLike<number>): void {
  if (localIds?.length !== remoteIds?.length) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${String(localIds?.length)} local block ids and ${String(remoteIds?.length)} remote block ids: every local block pairs with exactly one remote block, so the lists must have the same length`,
      { field: 'blockIds' },
    );
  }
}

/**
 * Descriptor pairs that copy, for every tensor, remote block `remoteBlockIds[i]` ⇄ local block
 * `localBlockIds[i]`. Both layouts must hold the same cache shape and the same KV heads (equal
 * TP sizes, or ranks that hold the same heads); for different TP sizes use
 * `planTensorParallelReads`.
 *
 * @throws KvwireError `ERR_KVWIRE_INCOMPATIBLE` when the layouts differ in shape or heads;
 *   `ERR_KVWIRE_INVALID_ARGUMENT` for lists of different lengths or a bad id;
 *   `ERR_KVWIRE_OUT_OF_BOUNDS` for an id beyond its cache.
 */
export function pairBlockDescriptors(
  local: KvLayout,
  localBlockIds: ArrayLike<number>,
  remote: KvLayout,
  remoteBlockIds: ArrayLike<number>,
  options: PairOptions = {},
): PairedDescriptors {
  assertSameCacheShape(local, 'local', remote, 'remote');
  if (local.heads.first !== remote.heads.first || local.heads.count !== remote.heads.count) {
    throw new KvwireError(
      ErrorCode.INCOMPATIBLE,
      `incompatible: the local rank holds KV heads ${local.heads.first}..${local.heads.first + local.heads.count - 1} and the remote rank holds ${remote.heads.first}..${remote.heads.first + remote.heads.count - 1}; pair ranks that hold the same heads, or use planTensorParallelReads when TP sizes differ`,
      { field: 'heads' },
    );
  }
  assertSameLength(localBlockIds, remoteBlockIds);
  const localIds = blockIdArray(localBlockIds, local.numBlocks, 'local block ids');
  const remoteIds = blockIdArray(remoteBlockIds, remote.numBlocks, 'remote block ids');
  const count = local.tensors.length;
  const identity = new Uint32Array(count);
  for (let t = 0; t < count; t++) identity[t] = t;
  const plan: BlockCopyPlan = {
    localTensor: identity,
    remoteTensor: identity,
    pieceLocal: new Float64Array([0]),
    pieceRemote: new Float64Array([0]),
    pieceLength: new Float64Array([local.blockBytes]),
  };
  return emitPairedDescriptors(
    plan,
    local.blockAddressing(options.localAddressing),
    remote.blockAddressing(options.remoteAddressing),
    localIds,
    remoteIds,
    options.coalesce ?? true,
  );
}
