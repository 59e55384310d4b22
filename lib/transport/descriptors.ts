/**
 * Descriptor lists: validation against registered regions, flattening into the Float64Array of
 * {@link STRIDE} numbers per descriptor the engines take, and coalescing of contiguous runs.
 *
 * Both engines receive only lists that passed {@link flattenDescriptors}: this is where every
 * offset and length is checked against its region before anything is posted, with messages that
 * name the descriptor, the byte and the region.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { invalid } from './arguments.js';
import { Region, RemoteRegion } from './region.js';
import type { DescriptorColumns, DescriptorInput, TransferOp } from './types.js';
import { formatCount } from '../util/format.js';

/** Stride of the flat layout: local region, local offset, remote region, remote offset, length. */
export const STRIDE = 5;

/** A validated, flattened descriptor list. */
export interface FlatDescriptors {
  /** Stride-5 rows: [localRegionId, localOffset, remoteRegionId, remoteOffset, length]. */
  readonly flat: Float64Array;
  /** Rows in `flat`. */
  readonly count: number;
  /** Total bytes. */
  readonly bytes: number;
  /** Descriptors as given (before coalescing). */
  readonly given: number;
}

/**
 * Appends the row (local region, local offset, remote region, remote offset, length) to `flat`,
 * which holds `rows` rows, and returns the new row count. With `coalesce`, a row that starts where
 * the last one ended, in the same regions, on both sides at once, extends the last one instead.
 * The one implementation of the coalescing rule for flat lists (every path of this file appends
 * through it); lib/kv/coalesce.ts applies the same rule to block ids before rows exist.
 */
function appendRow(
  flat: Float64Array,
  rows: number,
  localRegion: number,
  localOffset: number,
  remoteRegion: number,
  remoteOffset: number,
  length: number,
  coalesce: boolean,
): number {
  if (coalesce && rows > 0) {
    const p = (rows - 1) * STRIDE;
    const last = flat[p + 4]!;
    if (
      flat[p] === localRegion &&
      flat[p + 1]! + last === localOffset &&
      flat[p + 2] === remoteRegion &&
      flat[p + 3]! + last === remoteOffset
    ) {
      flat[p + 4] = last + length;
      return rows;
    }
  }
  const q = rows * STRIDE;
  flat[q] = localRegion;
  flat[q + 1] = localOffset;
  flat[q + 2] = remoteRegion;
  flat[q + 3] = remoteOffset;
  flat[q + 4] = length;
  return rows + 1;
}

/** Column view of either input form, so one loop handles both. */
interface Columns<R> {
  n: number;
  region(i: number): R;
  offset(i: number): number;
  length(i: number): number;
}

function columnsOf<R>(input: DescriptorInput<R>, side: string): Columns<R> {
  if (Array.isArray(input)) {
    const arr = input as readonly { region: R; offset: number; length: number }[];
    // Checked as it is read: a hole, null or a number in the list is a typed error, not a TypeError.
    const at = (i: number) => {
      const d = arr[i];
      if (d === null || typeof d !== 'object') {
        invalid(`${side} descriptor ${i}`, 'an object { region, offset, length }', d, { index: i });
      }
      return d;
    };
    return {
      n: arr.length,
      region: (i) => at(i).region,
      offset: (i) => at(i).offset,
      length: (i) => at(i).length,
    };
  }
  const c = input as DescriptorColumns<R>;
  if (
    c === null ||
    typeof c !== 'object' ||
    !Array.isArray(c.regions) ||
    !(c.region instanceof Uint32Array) ||
    !(c.offset instanceof Float64Array) ||
    !(c.length instanceof Float64Array)
  ) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${side} descriptors must be an array of { region, offset, length } or columns { regions, region: Uint32Array, offset: Float64Array, length: Float64Array }`,
    );
  }
  if (c.count !== undefined && (typeof c.count !== 'number' || !Number.isSafeInteger(c.count) || c.count < 0)) {
    invalid(`${side} descriptor columns' count`, 'a non-negative integer', c.count);
  }
  const n = c.count ?? c.region.length;
  if (n > c.region.length || n > c.offset.length || n > c.length.length) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${side} descriptor columns are shorter than count ${n}`);
  }
  return {
    n,
    region: (i) => c.regions[c.region[i]!] as R,
    offset: (i) => c.offset[i]!,
    length: (i) => c.length[i]!,
  };
}

/** Checks one range; `what` describes the region and is only built when the check fails. */
function checkRange(
  side: string,
  i: number,
  offset: number,
  length: number,
  regionLength: number,
  what: () => string,
): void {
  if (
    Number.isSafeInteger(offset) &&
    offset >= 0 &&
    Number.isSafeInteger(length) &&
    length > 0 &&
    offset + length <= regionLength
  )
    return;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `descriptor ${i}: ${side} offset ${describeValue(offset)} is not a non-negative integer`,
      { index: i },
    );
  }
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `descriptor ${i}: length ${describeValue(length)} is not a positive integer`,
      {
        index: i,
      },
    );
  }
  if (offset + length > regionLength) {
    throw new KvwireError(
      ErrorCode.OUT_OF_BOUNDS,
      `descriptor ${i} reaches byte ${formatCount(offset + length)} of ${what()} which has ${formatCount(regionLength)} bytes; ` +
        'shorten it or register a larger region',
      { index: i },
    );
  }
}

/**
 * Validates `local` against this agent's regions and `remote` against the peer's, for `op` (no
 * access check when `op` is undefined: prepared lists check access per post), and returns them
 * flattened (and coalesced when asked), into `scratch` when given and large enough (columns only). Throws a KvwireError naming the first bad descriptor;
 * nothing is posted then.
 */
export function flattenDescriptors(
  op: TransferOp | undefined,
  owner: object,
  peer: object,
  peerName: string,
  localInput: DescriptorInput<Region>,
  remoteInput: DescriptorInput<RemoteRegion>,
  coalesce: boolean,
  scratch?: Float64Array,
): FlatDescriptors {
  if (!Array.isArray(localInput) && !Array.isArray(remoteInput)) {
    return flattenColumns(
      op,
      owner,
      peer,
      peerName,
      localInput as DescriptorColumns<Region>,
      remoteInput as DescriptorColumns<RemoteRegion>,
      coalesce,
      scratch,
    );
  }
  const local = columnsOf(localInput, 'local');
  const remote = columnsOf(remoteInput, 'remote');
  if (local.n !== remote.n) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `local and remote descriptor lists differ in length (${local.n} and ${remote.n}); pair each local range with one remote range`,
    );
  }
  if (local.n === 0) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'a transfer needs at least one descriptor');
  const flat = new Float64Array(local.n * STRIDE);
  let rows = 0;
  let bytes = 0;
  let lastL: Region | undefined;
  let lastR: RemoteRegion | undefined;
  for (let i = 0; i < local.n; i++) {
    const lr = local.region(i);
    const rr = remote.region(i);
    // (Checked while undefined too: a descriptor without a region must not pass as "the same region".)
    if (lr !== lastL || lastL === undefined) lastL = checkLocalRegion(lr, owner, i);
    if (rr !== lastR || lastR === undefined) lastR = checkRemoteRegion(rr, peer, peerName, op, i);
    const lo = local.offset(i);
    const ro = remote.offset(i);
    const len = local.length(i);
    const rlen = remote.length(i);
    if (len !== rlen) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `descriptor ${i}: local length ${describeValue(len)} differs from remote length ${describeValue(rlen)}`,
        { index: i },
      );
    }
    checkRange('local', i, lo, len, lastL.length, () => `local ${lastL}`);
    checkRange('remote', i, ro, len, lastR.length, () => `${lastR} of peer '${peerName}'`);
    bytes += len;
    rows = appendRow(flat, rows, lastL.id, lo, lastR.id, ro, len, coalesce);
  }
  return {
    flat: rows * STRIDE === flat.length ? flat : flat.slice(0, rows * STRIDE),
    count: rows,
    bytes,
    given: local.n,
  };
}

function checkLocalRegion(lr: unknown, owner: object, i: number): Region {
  if (!(lr instanceof Region) || lr.owner !== owner) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `descriptor ${i}: the local region is not a Region of this agent`,
      { index: i },
    );
  }
  if (!lr.registered) {
    throw new KvwireError(
      ErrorCode.DEREGISTERED,
      `descriptor ${i}: ${lr} was deregistered; register the memory again`,
      { index: i },
    );
  }
  if (lr.detached) {
    throw new KvwireError(
      ErrorCode.DEREGISTERED,
      `descriptor ${i}: the memory of ${lr} was detached from its ArrayBuffer after it was registered; deregister it and register live memory`,
      { index: i },
    );
  }
  return lr;
}

function checkRemoteRegion(
  rr: unknown,
  peer: object,
  peerName: string,
  op: TransferOp | undefined,
  i: number,
): RemoteRegion {
  if (!(rr instanceof RemoteRegion) || rr.peer !== peer) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `descriptor ${i}: the remote region is not a region of peer '${peerName}' (use peer.region(label))`,
      { index: i },
    );
  }
  if (rr.revoked) {
    throw new KvwireError(
      ErrorCode.DEREGISTERED,
      `descriptor ${i}: peer '${peerName}' deregistered ${rr}; fetch its metadata again`,
      { index: i },
    );
  }
  const need = op === 'read' ? 'read' : 'write';
  if (op !== undefined && rr.access !== 'readwrite' && rr.access !== need) {
    throw new KvwireError(
      ErrorCode.ACCESS_DENIED,
      `descriptor ${i}: ${rr} of peer '${peerName}' allows ${rr.access === 'none' ? 'no remote' : rr.access} access, so it cannot be ${op === 'read' ? 'read' : 'written'}; ` +
        `the peer must register it with access '${need}' or 'readwrite'`,
      { index: i },
    );
  }
  return rr;
}

/**
 * The fast path for columns on both sides (thousands of descriptors from a KV layout): every
 * region of the two region tables is validated once, then one tight loop over typed arrays checks
 * bounds and coalesces. Writes into `out` when it is large enough (the agent reuses one scratch
 * array per call: engines copy the list before post() returns).
 */
function flattenColumns(
  op: TransferOp | undefined,
  owner: object,
  peer: object,
  peerName: string,
  lc: DescriptorColumns<Region>,
  rc: DescriptorColumns<RemoteRegion>,
  coalesce: boolean,
  out?: Float64Array,
): FlatDescriptors {
  columnsOf(lc, 'local'); // shape checks
  columnsOf(rc, 'remote');
  const n = lc.count ?? lc.region.length;
  const rn = rc.count ?? rc.region.length;
  if (n !== rn) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `local and remote descriptor lists differ in length (${n} and ${rn}); pair each local range with one remote range`,
    );
  }
  if (n === 0) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'a transfer needs at least one descriptor');
  const lId = new Float64Array(lc.regions.length);
  const lLen = new Float64Array(lc.regions.length);
  for (let k = 0; k < lc.regions.length; k++) {
    const r = checkTableRegion((i) => checkLocalRegion(lc.regions[k], owner, i), lc.region, n, k);
    lId[k] = r.id;
    lLen[k] = r.length;
  }
  const rId = new Float64Array(rc.regions.length);
  const rLen = new Float64Array(rc.regions.length);
  for (let k = 0; k < rc.regions.length; k++) {
    const r = checkTableRegion((i) => checkRemoteRegion(rc.regions[k], peer, peerName, op, i), rc.region, n, k);
    rId[k] = r.id;
    rLen[k] = r.length;
  }
  const flat = out !== undefined && out.length >= n * STRIDE ? out : new Float64Array(n * STRIDE);
  const res = flattenLoop(n, lc, rc, lId, lLen, rId, rLen, coalesce, flat);
  if (res < 0) {
    // A bad descriptor: find it again, slowly, for the message.
    const i = -res - 1;
    const li = lc.region[i]!;
    const ri = rc.region[i]!;
    if (li >= lc.regions.length || ri >= rc.regions.length) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `descriptor ${i}: region index ${li >= lc.regions.length ? li : ri} is outside the columns' region table`,
        { index: i },
      );
    }
    const len = lc.length[i]!;
    if (len !== rc.length[i]) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `descriptor ${i}: local length ${len} differs from remote length ${rc.length[i]}`,
        { index: i },
      );
    }
    checkRange('local', i, lc.offset[i]!, len, lLen[li]!, () => `local ${lc.regions[li]}`);
    checkRange('remote', i, rc.offset[i]!, len, rLen[ri]!, () => `${rc.regions[ri]} of peer '${peerName}'`);
  }
  let bytes = 0;
  const rows = res;
  for (let q = 4; q < rows * STRIDE; q += STRIDE) bytes += flat[q]!;
  return { flat: rows * STRIDE === flat.length ? flat : flat.subarray(0, rows * STRIDE), count: rows, bytes, given: n };
}

/**
 * Validates entry `k` of a columns region table. The descriptor index its error names is the first
 * descriptor using that entry, searched only when the check fails: the search is O(n) per entry, so
 * doing it up front cost ~1 ms per 16k-descriptor call whose columns run region by region.
 */
function checkTableRegion<T>(check: (index: number) => T, region: Uint32Array, n: number, k: number): T {
  try {
    return check(0);
  } catch {
    return check(firstUse(region, n, k));
  }
}

/** Index of the first descriptor naming region `k` (for messages), or 0. */
function firstUse(region: Uint32Array, n: number, k: number): number {
  for (let i = 0; i < n; i++) if (region[i] === k) return i;
  return 0;
}

/** The hot loop: rows written, or -(i + 1) for the first bad descriptor i. */
function flattenLoop(
  n: number,
  lc: DescriptorColumns<Region>,
  rc: DescriptorColumns<RemoteRegion>,
  lId: Float64Array,
  lLen: Float64Array,
  rId: Float64Array,
  rLen: Float64Array,
  coalesce: boolean,
  flat: Float64Array,
): number {
  const lreg = lc.region;
  const loff = lc.offset;
  const llen = lc.length;
  const rreg = rc.region;
  const roff = rc.offset;
  const rlen = rc.length;
  const nl = lId.length;
  const nr = rId.length;
  let rows = 0;
  for (let i = 0; i < n; i++) {
    const li = lreg[i]!;
    const ri = rreg[i]!;
    const lo = loff[i]!;
    const ro = roff[i]!;
    const len = llen[i]!;
    if (
      li >= nl ||
      ri >= nr ||
      len !== rlen[i] ||
      !(lo >= 0 && ro >= 0 && len > 0) ||
      lo + len > lLen[li]! ||
      ro + len > rLen[ri]! ||
      Math.floor(lo) !== lo ||
      Math.floor(ro) !== ro ||
      Math.floor(len) !== len
    ) {
      return -(i + 1);
    }
    rows = appendRow(flat, rows, lId[li]!, lo, rId[ri]!, ro, len, coalesce);
  }
  return rows;
}

/**
 * Rows `indices` of a validated flat list, coalesced where contiguous. Indices are checked.
 * Used by prepared lists to post a subset without validating the regions again.
 */
export function selectRows(
  flat: Float64Array,
  indices: ArrayLike<number>,
  coalesce: boolean,
  scratch?: RowScratch,
): FlatDescriptors {
  const total = flat.length / STRIDE;
  const n = indices.length;
  if (n === 0) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'a transfer needs at least one descriptor index');
  if (n === 1 && scratch !== undefined) {
    // One descriptor (a batch of one): nothing to coalesce, one row copied.
    const i = indices[0]!;
    if (!Number.isInteger(i) || i < 0 || i >= total) outsideList(i, 0, total);
    const s = i * STRIDE;
    const row = scratch.rows(1);
    row[0] = flat[s]!;
    row[1] = flat[s + 1]!;
    row[2] = flat[s + 2]!;
    row[3] = flat[s + 3]!;
    row[4] = flat[s + 4]!;
    return scratch.oneRow(row[4]);
  }
  const out = scratch !== undefined ? scratch.rows(n) : new Float64Array(n * STRIDE);
  let rows = 0;
  let bytes = 0;
  for (let k = 0; k < n; k++) {
    const i = indices[k]!;
    if (!Number.isInteger(i) || i < 0 || i >= total) outsideList(i, k, total);
    const s = i * STRIDE;
    const len = flat[s + 4]!;
    bytes += len;
    rows = appendRow(out, rows, flat[s]!, flat[s + 1]!, flat[s + 2]!, flat[s + 3]!, len, coalesce);
  }
  const rowsOut = scratch !== undefined ? scratch.view(rows) : rows === n ? out : out.slice(0, rows * STRIDE);
  return { flat: rowsOut, count: rows, bytes, given: n };
}

function outsideList(i: unknown, position: number, total: number): never {
  throw new KvwireError(
    ErrorCode.OUT_OF_BOUNDS,
    `index ${describeValue(i)} (position ${position}) is outside the prepared list of ${total} descriptors`,
    { index: position },
  );
}

/**
 * One reusable array for the rows of the transfer being posted, with a cached view per row count:
 * posting the same number of rows again allocates nothing. A fresh small typed array per post was
 * a malloc, a free and a sweep each time: V8 keeps arrays of at most 64 bytes on its heap and
 * moves each to a malloc'd buffer when the addon asks for its memory (allocator calls were ~10% of
 * a 4 KiB post's CPU in `perf`, ~3% after).
 *
 * Hazard: a view (and {@link oneRow}'s object) is valid only until the next post (the engines copy
 * the list before `post()` returns; nothing may keep it).
 */
export class RowScratch {
  #buffer = new Float64Array(64 * STRIDE);
  #views: Float64Array[] = [];
  #one: { flat: Float64Array; count: number; bytes: number; given: number } | undefined;

  /** The whole array, at least `n` rows long (its first `n` rows are written by the caller). */
  rows(n: number): Float64Array {
    if (n * STRIDE > this.#buffer.length) {
      this.#buffer = new Float64Array(2 ** Math.ceil(Math.log2(n * STRIDE)));
      this.#views = [];
    }
    return this.#buffer;
  }

  /** The first `n` rows of the array {@link rows} returned. */
  view(n: number): Float64Array {
    if (n <= 64) return (this.#views[n] ??= this.#buffer.subarray(0, n * STRIDE));
    return this.#buffer.subarray(0, n * STRIDE);
  }

  /** The one row written at the array's start, of `bytes` bytes (one object, reused by every post). */
  oneRow(bytes: number): FlatDescriptors {
    const one = (this.#one ??= { flat: this.view(1), count: 1, bytes: 0, given: 1 });
    one.flat = this.view(1); // the array grows (and its views are made again) for a longer list
    one.bytes = bytes;
    return one;
  }
}
