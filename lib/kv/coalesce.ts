/**
 * Emitting descriptor lists with run coalescing — the hot path of every KV transfer.
 *
 * Rules: a descriptor that starts where the previous one ended, in the same region (paired lists:
 * on both sides at once), extends it. For whole-block copies that is done up front: ids are cut
 * into maximal runs (contiguous on both sides for pairs), and each run becomes one descriptor per
 * tensor — then rows of one tensor can never touch each other, only the first row of a tensor
 * can continue the last row of the previous one (arena addressing, tensors back to back), and
 * each tensor's rows are written with typed-array `set`/`fill`. Plans that copy slices of blocks
 * (tensor-parallel reads) first merge pieces adjacent on both sides, then emit piece-major (that
 * piece of every block), where no two rows can touch on both sides.
 *
 * Allocation: one ArrayBuffer per list plus a few small arrays per call; never an object per
 * descriptor.
 *
 * The rule is the transport's (appendRow in lib/transport/descriptors.ts, which coalesces flat rows
 * as a list is posted); here it is applied to block ids, before any row exists, so that a KV list
 * reaches the transport coalesced already and can be posted with `coalesce: false`.
 *
 * @packageDocumentation
 */
import type { BlockAddressing, BlockCopyPlan, BlockDescriptors, PairedDescriptors } from './block-descriptors.js';

/**
 * Columns of a descriptor list under construction, carved out of one ArrayBuffer. Single-side
 * lists leave the remote columns empty.
 */
class ListColumns {
  readonly offset: Float64Array;
  readonly length: Float64Array;
  readonly region: Uint32Array;
  readonly remoteOffset: Float64Array;
  readonly remoteRegion: Uint32Array;

  /** `capacity` rows; with `viewOf`, views of the first `capacity` rows of that list instead. */
  constructor(
    readonly capacity: number,
    readonly paired: boolean,
    viewOf?: ListColumns,
  ) {
    const remote = paired ? capacity : 0;
    if (viewOf !== undefined) {
      this.offset = viewOf.offset.subarray(0, capacity);
      this.length = viewOf.length.subarray(0, capacity);
      this.region = viewOf.region.subarray(0, capacity);
      this.remoteOffset = viewOf.remoteOffset.subarray(0, remote);
      this.remoteRegion = viewOf.remoteRegion.subarray(0, remote);
      return;
    }
    const buffer = new ArrayBuffer(capacity * (16 + 4) + remote * (8 + 4));
    this.offset = new Float64Array(buffer, 0, capacity);
    this.length = new Float64Array(buffer, 8 * capacity, capacity);
    this.remoteOffset = new Float64Array(buffer, 16 * capacity, remote);
    this.region = new Uint32Array(buffer, 16 * capacity + 8 * remote, capacity);
    this.remoteRegion = new Uint32Array(buffer, 20 * capacity + 8 * remote, remote);
  }

  /**
   * The first `count` rows: views when most of the capacity was used, else a compact copy, so
   * that a retained list of a few coalesced descriptors does not pin a buffer sized for thousands.
   */
  trimmed(count: number): ListColumns {
    if (count === this.capacity) return this;
    if (count * 2 >= this.capacity) return new ListColumns(count, this.paired, this);
    const out = new ListColumns(count, this.paired);
    out.offset.set(this.offset.subarray(0, count));
    out.length.set(this.length.subarray(0, count));
    out.region.set(this.region.subarray(0, count));
    out.remoteOffset.set(this.remoteOffset.subarray(0, out.remoteOffset.length));
    out.remoteRegion.set(this.remoteRegion.subarray(0, out.remoteRegion.length));
    return out;
  }
}

// The loops live in small functions that return right after looping: V8 compiles a long loop
// on-stack (OSR) before the code after it has ever run, and code after an OSR'd loop that has no
// type feedback yet deoptimizes — on every call, as measured here.

/**
 * Cuts `ids` into maximal runs of contiguous ids, as byte offsets and lengths for blocks of
 * `stride` bytes (without coalescing: one run per id). Returns the run count.
 */
function findRuns(
  ids: Float64Array,
  stride: number,
  coalesce: boolean,
  runOff: Float64Array,
  runLen: Float64Array,
): number {
  let runs = 0;
  let next = -1;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (coalesce && id === next) {
      runLen[runs - 1] = runLen[runs - 1]! + stride;
    } else {
      runOff[runs] = id * stride;
      runLen[runs] = stride;
      runs++;
    }
    next = id + 1;
  }
  return runs;
}

/** As {@link findRuns}, for runs contiguous on both sides at once. */
function findPairedRuns(
  localIds: Float64Array,
  remoteIds: Float64Array,
  stride: number,
  coalesce: boolean,
  runL: Float64Array,
  runR: Float64Array,
  runLen: Float64Array,
): number {
  let runs = 0;
  let nextL = -1;
  let nextR = -1;
  for (let i = 0; i < localIds.length; i++) {
    const l = localIds[i]!;
    const r = remoteIds[i]!;
    if (coalesce && l === nextL && r === nextR) {
      runLen[runs - 1] = runLen[runs - 1]! + stride;
    } else {
      runL[runs] = l * stride;
      runR[runs] = r * stride;
      runLen[runs] = stride;
      runs++;
    }
    nextL = l + 1;
    nextR = r + 1;
  }
  return runs;
}

/** Writes `offset[k + i] = base + source[from + i]` for `count` rows. */
function writeOffsets(
  offset: Float64Array,
  k: number,
  base: number,
  source: Float64Array,
  from: number,
  count: number,
): void {
  if (base === 0) {
    offset.set(source.subarray(from, from + count), k);
    return;
  }
  for (let i = 0; i < count; i++) offset[k + i] = base + source[from + i]!;
}

/**
 * Descriptors of every tensor of a layout for `ids` (validated), tensor-major: all blocks of
 * tensor 0, then of tensor 1, ... Internal to lib/kv; `KvLayout.descriptors` is the API.
 */
export function emitBlockDescriptors(
  addr: BlockAddressing,
  tensorCount: number,
  ids: Float64Array,
  coalesce: boolean,
): BlockDescriptors {
  const n = ids.length;
  const runOff = new Float64Array(n);
  const runLen = new Float64Array(n);
  const runs = findRuns(ids, addr.blockStride, coalesce, runOff, runLen);
  const c = new ListColumns(runs * tensorCount, false);
  let k = 0;
  let lastRegion = -1;
  let lastEnd = -1;
  for (let t = 0; t < tensorCount && runs > 0; t++) {
    const r = addr.regionOf[t]!;
    const base = addr.baseOf[t]!;
    let first = 0;
    if (coalesce && r === lastRegion && base + runOff[0]! === lastEnd) {
      c.length[k - 1] = c.length[k - 1]! + runLen[0]!;
      first = 1;
    }
    const m = runs - first;
    c.region.fill(r, k, k + m);
    c.length.set(runLen.subarray(first, runs), k);
    writeOffsets(c.offset, k, base, runOff, first, m);
    k += m;
    lastRegion = r;
    lastEnd = base + runOff[runs - 1]! + runLen[runs - 1]!;
  }
  const out = c.trimmed(k);
  return { count: k, region: out.region, offset: out.offset, length: out.length, before: n * tensorCount, after: k };
}

/** Rows of a whole-block plan: one per (tensor pair, run). Returns the row count. */
function writeWholeBlockRows(
  plan: BlockCopyPlan,
  local: BlockAddressing,
  remote: BlockAddressing,
  runL: Float64Array,
  runR: Float64Array,
  runLen: Float64Array,
  runs: number,
  coalesce: boolean,
  c: ListColumns,
): number {
  let k = 0;
  let lastL = -1;
  let lastR = -1;
  let lEnd = -1;
  let rEnd = -1;
  for (let p = 0; p < plan.localTensor.length && runs > 0; p++) {
    const lt = plan.localTensor[p]!;
    const rt = plan.remoteTensor[p]!;
    const lr = local.regionOf[lt]!;
    const rr = remote.regionOf[rt]!;
    const lBase = local.baseOf[lt]!;
    const rBase = remote.baseOf[rt]!;
    let first = 0;
    if (coalesce && lr === lastL && rr === lastR && lBase + runL[0]! === lEnd && rBase + runR[0]! === rEnd) {
      c.length[k - 1] = c.length[k - 1]! + runLen[0]!;
      first = 1;
    }
    const m = runs - first;
    c.region.fill(lr, k, k + m);
    c.remoteRegion.fill(rr, k, k + m);
    c.length.set(runLen.subarray(first, runs), k);
    writeOffsets(c.offset, k, lBase, runL, first, m);
    writeOffsets(c.remoteOffset, k, rBase, runR, first, m);
    k += m;
    lastL = lr;
    lastR = rr;
    lEnd = lBase + runL[runs - 1]! + runLen[runs - 1]!;
    rEnd = rBase + runR[runs - 1]! + runLen[runs - 1]!;
  }
  return k;
}

/** Writes `out[k + i] = base + ids[i] × stride` for every id. */
function writeScaled(out: Float64Array, k: number, base: number, ids: Float64Array, stride: number): void {
  for (let i = 0; i < ids.length; i++) out[k + i] = base + ids[i]! * stride;
}

/**
 * Rows of a slicing plan, piece-major: for each tensor pair and each piece, that piece of every
 * block. Returns the row count. No adjacency check is needed: a piece shorter than its block on
 * one side leaves a gap there between any two blocks, and adjacent pieces of one block were
 * merged into the plan beforehand.
 */
function writeSliceRows(
  plan: BlockCopyPlan,
  pieces: Pieces,
  local: BlockAddressing,
  remote: BlockAddressing,
  localIds: Float64Array,
  remoteIds: Float64Array,
  c: ListColumns,
): number {
  const n = localIds.length;
  let k = 0;
  for (let p = 0; p < plan.localTensor.length; p++) {
    const lt = plan.localTensor[p]!;
    const rt = plan.remoteTensor[p]!;
    const lr = local.regionOf[lt]!;
    const rr = remote.regionOf[rt]!;
    for (let q = 0; q < pieces.length.length; q++) {
      c.region.fill(lr, k, k + n);
      c.remoteRegion.fill(rr, k, k + n);
      c.length.fill(pieces.length[q]!, k, k + n);
      writeScaled(c.offset, k, local.baseOf[lt]! + pieces.local[q]!, localIds, local.blockStride);
      writeScaled(c.remoteOffset, k, remote.baseOf[rt]! + pieces.remote[q]!, remoteIds, remote.blockStride);
      k += n;
    }
  }
  return k;
}

/** The pieces of a plan. */
interface Pieces {
  readonly local: Float64Array;
  readonly remote: Float64Array;
  readonly length: Float64Array;
}

/** Merges consecutive pieces of `plan` that are adjacent on both sides. */
function mergedPieces(plan: BlockCopyPlan): Pieces {
  const m = plan.pieceLength.length;
  const local = new Float64Array(m);
  const remote = new Float64Array(m);
  const length = new Float64Array(m);
  let k = 0;
  for (let q = 0; q < m; q++) {
    const lo = plan.pieceLocal[q]!;
    const ro = plan.pieceRemote[q]!;
    const len = plan.pieceLength[q]!;
    if (k > 0 && local[k - 1]! + length[k - 1]! === lo && remote[k - 1]! + length[k - 1]! === ro) {
      length[k - 1] = length[k - 1]! + len;
    } else {
      local[k] = lo;
      remote[k] = ro;
      length[k] = len;
      k++;
    }
  }
  return { local: local.subarray(0, k), remote: remote.subarray(0, k), length: length.subarray(0, k) };
}

/**
 * Paired descriptors for copying, per `plan`, local block `localIds[i]` ⇄ remote block
 * `remoteIds[i]` (both validated, equal length), tensor pair by tensor pair. Coalesces only where
 * both sides are contiguous. Internal to lib/kv; `pairBlockDescriptors` and
 * `TensorParallelReadPlan.reads` are the API.
 */
export function emitPairedDescriptors(
  plan: BlockCopyPlan,
  local: BlockAddressing,
  remote: BlockAddressing,
  localIds: Float64Array,
  remoteIds: Float64Array,
  coalesce: boolean,
): PairedDescriptors {
  const n = localIds.length;
  const pairs = plan.localTensor.length;
  const pieces: Pieces = coalesce
    ? mergedPieces(plan)
    : { local: plan.pieceLocal, remote: plan.pieceRemote, length: plan.pieceLength };
  const stride = local.blockStride;
  const whole =
    pieces.length.length === 1 &&
    pieces.local[0] === 0 &&
    pieces.remote[0] === 0 &&
    pieces.length[0] === stride &&
    remote.blockStride === stride;
  let c: ListColumns;
  let k: number;
  if (whole) {
    const runL = new Float64Array(n);
    const runR = new Float64Array(n);
    const runLen = new Float64Array(n);
    const runs = findPairedRuns(localIds, remoteIds, stride, coalesce, runL, runR, runLen);
    c = new ListColumns(runs * pairs, true);
    k = writeWholeBlockRows(plan, local, remote, runL, runR, runLen, runs, coalesce, c);
  } else {
    c = new ListColumns(n * pairs * pieces.length.length, true);
    k = writeSliceRows(plan, pieces, local, remote, localIds, remoteIds, c);
  }
  const out = c.trimmed(k);
  return {
    count: k,
    local: { count: k, region: out.region, offset: out.offset, length: out.length },
    remote: { count: k, region: out.remoteRegion, offset: out.remoteOffset, length: out.length },
    before: n * pairs * plan.pieceLength.length,
    after: k,
  };
}
