/**
 * A GGUF (version 3) writer: the file format llama.cpp loads models from. Only what kvwire's
 * generated models need: scalar, string and array metadata, and F32 tensors.
 *
 * Layout (all little-endian): magic `GGUF`, version, tensor count, metadata count; the metadata
 * key/value pairs; one info record per tensor (name, dimensions innermost first, type, offset into
 * the data section); padding to `general.alignment` (32); the tensor data, each tensor aligned.
 * The bytes are a pure function of the input, so a model written from the same seed is
 * byte-identical on every machine.
 *
 * @packageDocumentation
 */

/** GGUF metadata value types (gguf.h `gguf_type`). */
export const GgufType = {
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
} as const;

/** ggml tensor types used here (ggml.h `ggml_type`). */
export const GgmlType = { F32: 0 } as const;

/** One metadata value. */
export type GgufValue =
  | { readonly type: 'u32'; readonly value: number }
  | { readonly type: 'i32'; readonly value: number }
  | { readonly type: 'f32'; readonly value: number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'string[]'; readonly value: readonly string[] }
  | { readonly type: 'f32[]'; readonly value: readonly number[] }
  | { readonly type: 'i32[]'; readonly value: readonly number[] };

/** One F32 tensor: `dims` innermost first (ggml's `ne`), `data.length` their product. */
export interface GgufTensor {
  /** Tensor name as llama.cpp expects it (`blk.0.attn_q.weight`). */
  readonly name: string;
  /** Dimensions, innermost first. */
  readonly dims: readonly number[];
  /** Values, row-major over `dims` (innermost fastest). */
  readonly data: Float32Array;
}

const ALIGNMENT = 32;

/** Accumulates little-endian chunks. */
class ByteSink {
  readonly chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32LE(v | 0);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  pad(): void {
    const n = (ALIGNMENT - (this.length % ALIGNMENT)) % ALIGNMENT;
    if (n > 0) this.push(Buffer.alloc(n));
  }
}

function writeValue(out: ByteSink, v: GgufValue): void {
  switch (v.type) {
    case 'u32':
      out.u32(GgufType.UINT32);
      out.u32(v.value);
      return;
    case 'i32':
      out.u32(GgufType.INT32);
      out.i32(v.value);
      return;
    case 'f32':
      out.u32(GgufType.FLOAT32);
      out.f32(v.value);
      return;
    case 'bool':
      out.u32(GgufType.BOOL);
      out.push(Buffer.from([v.value ? 1 : 0]));
      return;
    case 'string':
      out.u32(GgufType.STRING);
      out.str(v.value);
      return;
    case 'string[]':
      out.u32(GgufType.ARRAY);
      out.u32(GgufType.STRING);
      out.u64(v.value.length);
      for (const s of v.value) out.str(s);
      return;
    case 'f32[]':
      out.u32(GgufType.ARRAY);
      out.u32(GgufType.FLOAT32);
      out.u64(v.value.length);
      for (const x of v.value) out.f32(x);
      return;
    case 'i32[]':
      out.u32(GgufType.ARRAY);
      out.u32(GgufType.INT32);
      out.u64(v.value.length);
      for (const x of v.value) out.i32(x);
      return;
  }
}

/**
 * Serializes a GGUF v3 file.
 *
 * @param metadata - key/value pairs, written in insertion order.
 * @param tensors - F32 tensors, written in order.
 */
export function writeGguf(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[]): Buffer {
  const out = new ByteSink();
  out.push(Buffer.from('GGUF', 'ascii'));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(metadata.size);
  for (const [key, value] of metadata) {
    out.str(key);
    writeValue(out, value);
  }
  let offset = 0;
  for (const t of tensors) {
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new Error(`tensor ${t.name}: dims ${t.dims.join('x')} hold ${count} values, data has ${t.data.length}`);
    }
    out.str(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(GgmlType.F32);
    out.u64(offset);
    offset += Math.ceil(t.data.byteLength / ALIGNMENT) * ALIGNMENT;
  }
  out.pad();
  for (const t of tensors) {
    // Float32Array bytes are little-endian on every platform Node runs on (x86-64, arm64).
    out.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    out.pad();
  }
  return Buffer.concat(out.chunks, out.length);
}
