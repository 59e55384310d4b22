/**
 * llama.cpp's sequence state file (`llama_state_seq_save_file`, what node-llama-cpp's
 * `saveStateToFile` writes) and how it maps onto kvwire's KV blocks.
 *
 * node-llama-cpp 3.21 exposes a sequence's KV only through files (its in-memory checkpoints are
 * opaque), so the engine writes the file on tmpfs, reads the K and V rows out of it into the
 * registered block cache, and for a load builds the file back from blocks.
 *
 * File (llama.cpp of node-llama-cpp 3.21.1; every integer little-endian):
 * ```
 * u32 magic 'ggsq' (0x67677371), u32 version (3), u32 n_tokens, i32 tokens[n_tokens]
 * u32 n_stream                                  (the context's KV streams: one per sequence)
 * per stream: u32 cell_count; when > 0:
 *   per cell: i32 pos, u32 n_seq_id (1), i32 seq_id
 *   u32 v_trans (0 with flash attention), u32 n_layer
 *   per layer: i32 k_type (1 = f16), u64 k_row_bytes, k rows (cell order)
 *   per layer: i32 v_type, u64 v_row_bytes, v rows (cell order)
 * ```
 * A K or V row is one token's `kv_heads × head_dim` f16 values, head-major: exactly one token of
 * a kvwire block in NHD order (`KvLayout { kv: 'split', order: 'NHD' }`), so block `b` of tensor
 * `kv-L{l}-K` holds the K rows of tokens `16b .. 16b+15` of layer `l`, back to back. Cells are
 * placed by their `pos`, not their order in the file (llama.cpp reuses free cells anywhere).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../../errors.js';
import type { KvLayout } from '../../../kv/index.js';

const MAGIC = 0x67677371;
const VERSION = 3;
const F16 = 1;

/** Where the K and V rows of a parsed state file are. */
export interface ParsedState {
  /** Tokens the file says the sequence holds. */
  readonly tokens: Uint32Array;
  /** Streams in the context that wrote it. */
  readonly nStream: number;
  /** Position of each cell, in file order. */
  readonly positions: Int32Array;
  /** Bytes of one row (K and V alike). */
  readonly rowBytes: number;
  /** Byte offset of layer l's first K row (`k[l]`) and V row (`v[l]`) in the file. */
  readonly k: readonly number[];
  /** See `k`. */
  readonly v: readonly number[];
}

function unsupported(msg: string): KvwireError {
  return new KvwireError(
    ErrorCode.INCOMPATIBLE,
    `llama.cpp sequence state: ${msg}; kvwire reads the format of node-llama-cpp 3.21.1 with flash attention and an f16 KV cache`,
  );
}

/** Row bytes of one token of one layer's K (or V): `kv_heads × head_dim × 2` (f16). */
export function rowBytesOf(layout: KvLayout): number {
  return layout.heads.count * layout.headDim * layout.elementBytes;
}

/**
 * Parses a state file written for a sequence of a model with `layers` layers.
 *
 * @throws KvwireError `ERR_KVWIRE_INCOMPATIBLE` for another format, `ERR_KVWIRE_CORRUPTED` when truncated.
 */
export function parseStateFile(buf: Buffer, layers: number, rowBytes: number): ParsedState {
  let o = 0;
  const need = (n: number): void => {
    if (o + n > buf.length) {
      throw new KvwireError(ErrorCode.CORRUPTED, `llama.cpp sequence state is truncated at byte ${o} of ${buf.length}`);
    }
  };
  const u32 = (): number => {
    need(4);
    const v = buf.readUInt32LE(o);
    o += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = Number(buf.readBigUInt64LE(o));
    o += 8;
    return v;
  };
  if (u32() !== MAGIC) throw unsupported('not a sequence state file (magic)');
  const version = u32();
  if (version !== VERSION) throw unsupported(`version ${version}, expected ${VERSION}`);
  const nTokens = u32();
  need(nTokens * 4);
  const tokens = new Uint32Array(nTokens);
  for (let i = 0; i < nTokens; i++) tokens[i] = buf.readUInt32LE(o + 4 * i);
  o += nTokens * 4;
  const nStream = u32();
  let parsed: Omit<ParsedState, 'tokens' | 'nStream'> | undefined;
  for (let s = 0; s < nStream; s++) {
    const cells = u32();
    if (cells === 0) continue;
    if (parsed !== undefined) throw unsupported('cells in more than one stream');
    const positions = new Int32Array(cells);
    need(cells * 12);
    for (let c = 0; c < cells; c++) {
      positions[c] = buf.readInt32LE(o);
      if (buf.readUInt32LE(o + 4) !== 1) throw unsupported(`cell ${c} belongs to several sequences`);
      o += 12;
    }
    if (u32() !== 0) throw unsupported('V is transposed (flash attention off)');
    const nLayer = u32();
    if (nLayer !== layers) throw unsupported(`${nLayer} layers, the model has ${layers}`);
    const k: number[] = [];
    const v: number[] = [];
    for (const list of [k, v]) {
      for (let l = 0; l < layers; l++) {
        const type = u32();
        const row = u64();
        if (type !== F16 || row !== rowBytes) {
          throw unsupported(`layer ${l} rows are type ${type} of ${row} bytes, expected f16 rows of ${rowBytes}`);
        }
        need(cells * row);
        list.push(o);
        o += cells * row;
      }
    }
    parsed = { positions, rowBytes, k, v };
  }
  if (o !== buf.length) throw unsupported(`${buf.length - o} bytes after the last stream`);
  return parsed === undefined
    ? { tokens, nStream, positions: new Int32Array(0), rowBytes, k: [], v: [] }
    : { tokens, nStream, ...parsed };
}

/**
 * A reusable buffer for state files: fresh multi-megabyte buffers cost page faults on every hand-off.
 * Safe to share between sequences as long as each use is synchronous (fill, then write or parse,
 * with no await in between).
 */
export class StateScratch {
  #buf = Buffer.alloc(0);

  /** A view of at least `bytes` bytes (its content is undefined). */
  take(bytes: number): Buffer {
    if (this.#buf.length < bytes) this.#buf = Buffer.allocUnsafeSlow(Math.max(bytes, this.#buf.length * 2));
    return this.#buf.subarray(0, bytes);
  }
}

/** The tensor index of layer `l`'s K or V in a split layout. */
function tensorIndex(layout: KvLayout, layer: number, part: 'K' | 'V'): number {
  const t = layout.tensors.findIndex((x) => x.layer === layer && x.part === part);
  if (t < 0) throw new KvwireError(ErrorCode.INCOMPATIBLE, `the KV layout has no ${part} tensor for layer ${layer}`);
  return t;
}

/** Checks that a layout stores llama.cpp rows as they are (split K/V, token-major blocks). */
export function checkRowLayout(layout: KvLayout): void {
  if (layout.kv !== 'split' || layout.order !== 'NHD' || layout.tp.size !== 1) {
    throw new KvwireError(
      ErrorCode.INCOMPATIBLE,
      `the llama runtime needs a KV layout with kv 'split', order 'NHD' and TP size 1 (got ${layout.kv}, ${layout.order}, TP ${layout.tp.size})`,
    );
  }
}

/**
 * Copies the rows of cells with `from <= pos < to` into the blocks (block i holds positions
 * `i×blockTokens ..`); rows outside `[from, to)` are skipped.
 *
 * @returns how many rows were copied per layer and part.
 */
export function scatterRows(
  file: Buffer,
  state: ParsedState,
  layout: KvLayout,
  views: readonly Uint8Array[],
  blockIds: readonly number[],
  from: number,
  to: number,
): number {
  const B = layout.blockTokens;
  const row = state.rowBytes;
  const kT = state.k.map((_, l) => views[tensorIndex(layout, l, 'K')]!);
  const vT = state.v.map((_, l) => views[tensorIndex(layout, l, 'V')]!);
  const pos = state.positions;
  let copied = 0;
  // Copy runs of consecutive positions that stay in one block with one call per tensor: llama.cpp
  // usually keeps a sequence's cells in order, so this is one copy per block instead of one per row.
  for (let c = 0; c < pos.length;) {
    const p = pos[c]!;
    if (p < from || p >= to) {
      c++;
      continue;
    }
    let run = 1;
    while (c + run < pos.length && pos[c + run] === p + run && p + run < to && (p + run) % B !== 0) run++;
    const block = blockIds[Math.floor(p / B)];
    if (block === undefined) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `no block for position ${p} (${blockIds.length} blocks given)`);
    }
    const at = block * layout.blockBytes + (p % B) * row;
    const bytes = run * row;
    for (let l = 0; l < state.k.length; l++) {
      const k = state.k[l]! + c * row;
      kT[l]!.set(file.subarray(k, k + bytes), at);
      const v = state.v[l]! + c * row;
      vT[l]!.set(file.subarray(v, v + bytes), at);
    }
    copied += run;
    c += run;
  }
  return copied;
}

/**
 * Builds a state file holding `tokens` (the sequence's first `tokens.length` positions) whose K and
 * V rows come from the blocks; for `loadStateFromFile` into a context with `nStream` streams.
 *
 * @param zeroRows - write zero rows instead of the blocks' bytes (the negative control of the
 *   token-exact tests: a decode that ignores the KV it pulled).
 */
export function buildStateFile(
  tokens: readonly number[],
  nStream: number,
  layout: KvLayout,
  views: readonly Uint8Array[],
  blockIds: readonly number[],
  zeroRows = false,
  scratch?: StateScratch,
): Buffer {
  const n = tokens.length;
  const layers = layout.model.layers;
  const row = rowBytesOf(layout);
  const B = layout.blockTokens;
  if (Math.ceil(n / B) > blockIds.length) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${n} tokens need ${Math.ceil(n / B)} blocks, ${blockIds.length} given`,
    );
  }
  const header = 12 + 4 * n + 4;
  const streamBytes = n === 0 ? 4 * nStream : 4 * nStream + 12 * n + 8 + 2 * layers * (12 + n * row);
  // Not zero-filled: every byte is written below (zero rows explicitly).
  const out = scratch === undefined ? Buffer.allocUnsafe(header + streamBytes) : scratch.take(header + streamBytes);
  let o = 0;
  const u32 = (v: number): void => {
    out.writeUInt32LE(v >>> 0, o);
    o += 4;
  };
  u32(MAGIC);
  u32(VERSION);
  u32(n);
  for (const t of tokens) u32(t);
  u32(nStream);
  u32(n); // stream 0 holds the cells; the reader places them in the target sequence's own stream
  if (n > 0) {
    for (let p = 0; p < n; p++) {
      out.writeInt32LE(p, o);
      out.writeUInt32LE(1, o + 4);
      out.writeInt32LE(0, o + 8);
      o += 12;
    }
    u32(0); // v_trans
    u32(layers);
    for (const part of ['K', 'V'] as const) {
      for (let l = 0; l < layers; l++) {
        u32(F16);
        out.writeBigUInt64LE(BigInt(row), o);
        o += 8;
        const view = views[tensorIndex(layout, l, part)]!;
        // One copy per block: its rows are contiguous in NHD order.
        for (let p = 0; p < n; p += B) {
          const rows = Math.min(B, n - p);
          if (zeroRows) out.fill(0, o, o + rows * row);
          else {
            const at = blockIds[p / B]! * layout.blockBytes;
            out.set(view.subarray(at, at + rows * row), o);
          }
          o += rows * row;
        }
      }
    }
  }
  for (let s = 1; s < nStream; s++) u32(0);
  if (o !== out.length) throw new Error(`state file size mismatch: wrote ${o} of ${out.length}`);
  return out;
}
