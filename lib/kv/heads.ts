/**
 * Which KV heads a tensor-parallel rank holds, the way vLLM splits them.
 *
 * vLLM's `QKVParallelLinear` splits the KV heads evenly when there are at least as many heads as
 * ranks (`kvHeads % tpSize == 0`; rank r holds heads `[r·H/tp, (r+1)·H/tp)`), and replicates them
 * when there are more ranks than heads (`tpSize % kvHeads == 0`; every rank holds exactly one head,
 * rank r holds head `r // (tp/H)`, so `tp/H` consecutive ranks hold the same head). Any other
 * combination is rejected by vLLM at load time, and by {@link kvHeadsOfRank} here.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';

/** The contiguous range of global KV head indices one tensor-parallel rank holds. */
export interface KvHeadRange {
  /** Global index of the first head this rank holds. */
  readonly first: number;
  /** Number of heads this rank holds (at least 1). */
  readonly count: number;
  /** How many ranks hold these same heads (1 unless tpSize > kvHeads). */
  readonly replicas: number;
}

function checkTp(tpSize: number, rank: number): void {
  if (!Number.isSafeInteger(tpSize) || tpSize <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `tensor-parallel size must be a positive integer, got ${String(tpSize)}`,
      { field: 'tp.size' },
    );
  }
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= tpSize) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `tensor-parallel rank ${String(rank)} is not a rank of a group of size ${tpSize}; ranks are 0..${tpSize - 1}`,
      { field: 'tp.rank' },
    );
  }
}

/**
 * The KV heads rank `rank` of a tensor-parallel group of `tpSize` holds, out of `kvHeads` in all.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when the rank is not in the group, or when
 *   neither `kvHeads % tpSize == 0` nor `tpSize % kvHeads == 0` (vLLM cannot shard that either).
 */
export function kvHeadsOfRank(kvHeads: number, tpSize: number, rank: number): KvHeadRange {
  if (!Number.isSafeInteger(kvHeads) || kvHeads <= 0) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `kvHeads must be a positive integer, got ${String(kvHeads)}`, {
      field: 'model.kvHeads',
    });
  }
  checkTp(tpSize, rank);
  if (tpSize <= kvHeads) {
    if (kvHeads % tpSize !== 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${kvHeads} KV heads cannot be split evenly over tensor-parallel size ${tpSize}; choose a TP size that divides ${kvHeads} (or a multiple of it), as vLLM requires`,
        { field: 'tp.size' },
      );
    }
    const count = kvHeads / tpSize;
    return { first: rank * count, count, replicas: 1 };
  }
  if (tpSize % kvHeads !== 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `tensor-parallel size ${tpSize} is larger than the ${kvHeads} KV heads but not a multiple of it, so heads cannot be replicated evenly; choose a multiple of ${kvHeads}, as vLLM requires`,
      { field: 'tp.size' },
    );
  }
  const replicas = tpSize / kvHeads;
  return { first: Math.floor(rank / replicas), count: 1, replicas };
}

/**
 * The tensor-parallel ranks (of a group of `tpSize`) that hold global head `head`: one rank when
 * heads are split, `tpSize / kvHeads` consecutive ranks when they are replicated.
 */
export function ranksHoldingHead(
  kvHeads: number,
  tpSize: number,
  head: number,
): { readonly first: number; readonly count: number } {
  if (tpSize <= kvHeads) return { first: Math.floor(head / (kvHeads / tpSize)), count: 1 };
  const replicas = tpSize / kvHeads;
  return { first: head * replicas, count: replicas };
}
