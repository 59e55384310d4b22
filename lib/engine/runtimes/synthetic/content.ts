/**
 * Deterministic "KV" for the fake engine: no ML, just bytes that are a pure function of the
 * prompt prefix, the layer, the K/V part, the global head and the token position — so any rank
 * layout (any TP size, HND or NHD, split or joint K/V, MLA) can write or check them, and the blocks
 * of a shared prefix hold the same bytes in every request (prefix hits are verifiable).
 *
 * Block hashes chain like vLLM's prefix-caching hashes: block i's hash covers block i-1's hash and
 * block i's tokens. A partial last block hashes its token count too, so it never matches a full
 * block of another prompt.
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import { ErrorCode, KvwireError } from '../../../errors.js';
import type { KvLayout } from '../../../kv/index.js';

/** The hash of each block of a prompt: `key` (hex, the prefix-cache key) and `seed` (32 bits, the content seed). */
export interface BlockHash {
  /** sha256 chain hash, hex: identifies the prefix up to the end of this block. */
  readonly key: string;
  /** First 32 bits of the hash: seeds the block's bytes. */
  readonly seed: number;
  /** True when the block holds `blockTokens` tokens. */
  readonly full: boolean;
}

/** Blocks a prompt of `tokens` tokens occupies. */
export function blockCount(tokens: number, blockTokens: number): number {
  return Math.ceil(tokens / blockTokens);
}

/** The chained hashes of every block of `tokens`. */
export function blockHashes(tokens: readonly number[], blockTokens: number): BlockHash[] {
  const out: BlockHash[] = [];
  let parent = Buffer.alloc(32);
  for (let start = 0; start < tokens.length; start += blockTokens) {
    const end = Math.min(tokens.length, start + blockTokens);
    const words = new Uint32Array(end - start + 1);
    for (let i = start; i < end; i++) words[i - start] = tokens[i]!;
    words[end - start] = end - start; // token count: a partial block never equals a full one
    const h = createHash('sha256').update(parent).update(new Uint8Array(words.buffer)).digest();
    out.push({ key: h.toString('hex'), seed: h.readUInt32LE(0) >>> 0 || 1, full: end - start === blockTokens });
    parent = h;
  }
  return out;
}

function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Seed of one (head, token) vector of one tensor part of a block. */
function vectorSeed(blockSeed: number, layer: number, part: number, head: number, token: number): number {
  return mix(mix(mix(mix(blockSeed, layer + 1), part + 0x51), head + 0x1000), token + 0x30000) || 0x9e3779b9;
}

/** Byte offsets of one block's vectors: calls `f(offset, layer, part, head, token)` for each. */
function forEachVector(
  layout: KvLayout,
  tensor: number,
  f: (offset: number, part: number, head: number, token: number) => void,
): void {
  const t = layout.tensors[tensor]!;
  const halves = layout.kv === 'joint' ? 2 : 1;
  const halfBytes = layout.blockBytes / halves;
  const H = layout.heads.count;
  const T = layout.blockTokens;
  const hb = layout.headBytes;
  const basePart = t.part === 'V' ? 1 : 0;
  for (let half = 0; half < halves; half++) {
    const part = basePart + half;
    for (let h = 0; h < H; h++) {
      const head = layout.kv === 'latent' ? 0 : layout.heads.first + h;
      for (let k = 0; k < T; k++) {
        const local = layout.order === 'HND' ? h * T + k : k * H + h;
        f(half * halfBytes + local * hb, part, head, k);
      }
    }
  }
}

// xorshift32 stream of one vector, written (or compared) as words when aligned.
function fillVector(dst: Uint8Array, at: number, bytes: number, seed: number): void {
  let x = seed;
  if ((dst.byteOffset + at) % 4 === 0 && bytes % 4 === 0) {
    const w = new Uint32Array(dst.buffer, dst.byteOffset + at, bytes / 4);
    for (let i = 0; i < w.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      w[i] = x;
    }
    return;
  }
  for (let i = 0; i < bytes; i++) {
    if ((i & 3) === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
    }
    dst[at + i] = (x >>> ((i & 3) * 8)) & 0xff;
  }
}

function vectorMatches(src: Uint8Array, at: number, bytes: number, seed: number): boolean {
  let x = seed;
  if ((src.byteOffset + at) % 4 === 0 && bytes % 4 === 0) {
    const w = new Uint32Array(src.buffer, src.byteOffset + at, bytes / 4);
    for (let i = 0; i < w.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      if (w[i] !== x >>> 0) return false;
    }
    return true;
  }
  for (let i = 0; i < bytes; i++) {
    if ((i & 3) === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
    }
    if (src[at + i] !== ((x >>> ((i & 3) * 8)) & 0xff)) return false;
  }
  return true;
}

/**
 * Writes block `blockId`'s bytes for content seed `seed` into every tensor of a rank.
 *
 * @param tensors - one view per tensor of `layout` (the whole tensor, `numBlocks × blockBytes`).
 */
export function writeBlock(layout: KvLayout, tensors: readonly Uint8Array[], blockId: number, seed: number): void {
  for (let t = 0; t < layout.tensors.length; t++) {
    const view = tensors[t]!;
    const base = blockId * layout.blockBytes;
    const layer = layout.tensors[t]!.layer;
    forEachVector(layout, t, (off, part, head, token) =>
      fillVector(view, base + off, layout.headBytes, vectorSeed(seed, layer, part, head, token)),
    );
  }
}

/**
 * Checks every byte of block `blockId` of every tensor of a rank against content seed `seed`.
 *
 * @throws KvwireError `ERR_KVWIRE_CORRUPTED` naming the first (tensor, head, token) that differs.
 */
export function verifyBlock(
  layout: KvLayout,
  tensors: readonly Uint8Array[],
  blockId: number,
  seed: number,
  what: string,
): number {
  let verified = 0;
  for (let t = 0; t < layout.tensors.length; t++) {
    const view = tensors[t]!;
    const base = blockId * layout.blockBytes;
    const tensor = layout.tensors[t]!;
    forEachVector(layout, t, (off, part, head, token) => {
      if (!vectorMatches(view, base + off, layout.headBytes, vectorSeed(seed, tensor.layer, part, head, token))) {
        throw new KvwireError(
          ErrorCode.CORRUPTED,
          `${what}: block ${blockId} of ${tensor.label} (rank ${layout.tp.rank}), head ${head}, token ${token} does not hold the bytes prefill wrote`,
          { field: tensor.label, index: blockId },
        );
      }
      verified += layout.headBytes;
    });
  }
  return verified;
}

/** The `n` "tokens" a fake decode generates from the KV of a prompt whose last block has content seed `seed`. */
export function generateTokens(seed: number, n: number): number[] {
  const out: number[] = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = mix(x, i + 0x7f4a7c15);
    out.push(x % 32_000);
  }
  return out;
}

/** Views of each tensor of a rank's registered regions (tensor or arena addressing). */
export function tensorViews(
  layout: KvLayout,
  regions: readonly { bytes: Uint8Array }[],
  addressing: 'tensor' | 'arena',
): Uint8Array[] {
  return layout.tensors.map((t, i) => {
    if (addressing === 'arena') return regions[0]!.bytes.subarray(t.arenaOffset, t.arenaOffset + t.bytes);
    return regions[i]!.bytes.subarray(0, t.bytes);
  });
}
