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
 *   u32 v_trans (1 without flash attention, 0 with it), u32 n_layer
 *   per layer: i32 k_type (1 = f16), u64 k_row_bytes, k rows (cell order)
 *   v_trans 0, per layer: i32 v_type, u64 v_row_bytes, v rows (cell order)
 *   v_trans 1, per layer: i32 v_type, u32 element bytes (2), u32 n_embd_v (kv_heads × head_dim),
 *              then element-major: for each of the n_embd_v elements, its value in every cell (cell order)
 * ```
 * A K or V row is one token's `kv_heads × head_dim` f16 values, head-major: exactly one token of
 * a kvwire block in NHD order (`KvLayout { kv: 'split', order: 'NHD' }`), so block `b` of tensor
 * `kv-L{l}-K` holds the K rows of tokens `16b .. 16b+15` of layer `l`, back to back. Transposed V
 * (llama.cpp without flash attention, the engine's default: see runtime.ts) is gathered into the
 * same rows and scattered back, so blocks have one layout whatever the context does. Cells are
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
  /** V stored element-major (llama.cpp without flash attention). */
  readonly vTrans: boolean;
  /** Byte offset of layer l's first K row (`k[l]`) and V row (`v[l]`) in the file. */
  readonly k: readonly number[];
  /** See `k`. */
  readonly v: readonly number[];
}

function unsupported(msg: string): KvwireError {
  return new KvwireError(
    ErrorCode.INCOMPATIBLE,
    `llama.cpp sequence state: ${msg}; kvwire reads the format of node-llama-cpp 3.21.1 with an f16 KV cache`,
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
    const vTransFlag = u32();
    if (vTransFlag > 1) throw unsupported(`v_trans is ${vTransFlag}`);
    const vTrans = vTransFlag === 1;
    const nLayer = u32();
    if (nLayer !== layers) throw unsupported(`${nLayer} layers, the model has ${layers}`);
    const k: number[] = [];
    const v: number[] = [];
    for (const list of [k, v]) {
      for (let l = 0; l < layers; l++) {
        const type = u32();
        if (list === v && vTrans) {
          const elementBytes = u32();
          const nEmbd = u32();
          if (type !== F16 || elementBytes !== 2 || nEmbd * 2 !== rowBytes) {
            throw unsupported(
              `layer ${l} V is type ${type}, ${elementBytes}-byte elements, ${nEmbd} per cell; expected f16, ${rowBytes / 2} per cell`,
            );
          }
        } else {
          const row = u64();
          if (type !== F16 || row !== rowBytes) {
            throw unsupported(`layer ${l} rows are type ${type} of ${row} bytes, expected f16 rows of ${rowBytes}`);
          }
        }
        need(cells * rowBytes);
        list.push(o);
        o += cells * rowBytes;
      }
    }
    parsed = { positions, rowBytes, vTrans, k, v };
  }
  if (o !== buf.length) throw unsupported(`${buf.length - o} bytes after the last stream`);
  return parsed === undefined
    ? { tokens, nStream, positions: new Int32Array(0), rowBytes, vTrans: false, k: [], v: [] }
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
      if (state.vTrans) gatherRows(file, state.v[l]!, pos.length, c, run, row, vT[l]!, at);
      else {
        const v = state.v[l]! + c * row;
        vT[l]!.set(file.subarray(v, v + bytes), at);
      }
    }
    copied += run;
    c += run;
  }
  return copied;
}

/**
 * 16-bit view of `bytes` bytes of `b` from `at`. f16 data sits at even offsets of the files and
 * blocks kvwire makes; an odd one (a caller's own buffer) is refused rather than misread.
 */
function u16(b: Uint8Array, at: number, bytes: number): Uint16Array {
  if ((b.byteOffset + at) % 2 !== 0)
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `f16 data at an odd byte offset (${b.byteOffset + at})`);
  return new Uint16Array(b.buffer, b.byteOffset + at, bytes / 2);
}

/**
 * Transposed V: copies cells `c .. c+run` (of `cells`, element-major from `from` in `file`) into
 * `run` token rows at `at` in `dest`.
 */
function gatherRows(
  file: Uint8Array,
  from: number,
  cells: number,
  c: number,
  run: number,
  row: number,
  dest: Uint8Array,
  at: number,
): void {
  const n = row / 2;
  const src = u16(file, from, cells * row);
  const out = u16(dest, at, run * row);
  for (let j = 0; j < n; j++) {
    const base = j * cells + c;
    for (let r = 0; r < run; r++) out[r * n + j] = src[base + r]!;
  }
}

/** Transposed V: writes `count` token rows from `src` at `at` as element-major columns `p ..` of `total` cells. */
function scatterColumns(
  src: Uint8Array,
  at: number,
  count: number,
  row: number,
  out: Uint8Array,
  from: number,
  total: number,
  p: number,
): void {
  const n = row / 2;
  const rows = u16(src, at, count * row);
  const dst = u16(out, from, total * row);
  for (let j = 0; j < n; j++) {
    const base = j * total + p;
    for (let r = 0; r < count; r++) dst[base + r] = rows[r * n + j]!;
  }
}

/** The file layout a context reads: its KV stream count and whether V is transposed. */
export interface StateFormat {
  /** Streams in the context (one per sequence unless llama.cpp unifies them). */
  readonly nStream: number;
  /** V element-major (flash attention off). */
  readonly vTrans: boolean;
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
  format: number | StateFormat,
  layout: KvLayout,
  views: readonly Uint8Array[],
  blockIds: readonly number[],
  zeroRows = false,
  scratch?: StateScratch,
): Buffer {
  const { nStream, vTrans } = typeof format === 'number' ? { nStream: format, vTrans: false } : format;
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
    u32(vTrans ? 1 : 0);
    u32(layers);
    for (const part of ['K', 'V'] as const) {
      for (let l = 0; l < layers; l++) {
        u32(F16);
        const transposed = part === 'V' && vTrans;
        if (transposed) {
          u32(2);
          u32(row / 2);
        } else {
          out.writeBigUInt64LE(BigInt(row), o);
          o += 8;
        }
        const view = views[tensorIndex(layout, l, part)]!;
        if (zeroRows) out.fill(0, o, o + n * row);
        else if (transposed) {
          for (let p = 0; p < n; p += B)
            scatterColumns(view, blockIds[p / B]! * layout.blockBytes, Math.min(B, n - p), row, out, o, n, p);
        } else {
          // One copy per block: its rows are contiguous in NHD order.
          for (let p = 0; p < n; p += B) {
            const rows = Math.min(B, n - p);
            const at = blockIds[p / B]! * layout.blockBytes;
            out.set(view.subarray(at, at + rows * row), o + p * row);
          }
        }
        o += n * row;
      }
    }
  }
  for (let s = 1; s < nStream; s++) u32(0);
  if (o !== out.length) throw new Error(`state file size mismatch: wrote ${o} of ${out.length}`);
  return out;
}
