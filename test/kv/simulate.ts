/**
 * Test support: simulated KV caches filled the way vLLM lays them out, and an in-memory executor
 * for descriptor lists. Layout math here is written out independently of lib/kv on purpose.
 */
import { expect } from 'vitest';
import type { DescriptorList, KvLayout, PairedDescriptors } from '../../lib/kv/index.js';

/** One deterministic byte of the full model's KV cache. `part`: 0 = K (or latent), 1 = V. */
export function kvByte(layer: number, part: number, head: number, token: number, byte: number): number {
  let h = 0x811c9dc5;
  for (const v of [layer, part, head, token, byte]) {
    h = Math.imul(h ^ (v + 0x9e37), 0x01000193);
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995);
    h ^= h >>> 15;
  }
  return h & 0xff;
}

/** Global KV heads rank `rank` of `tp` holds, as vLLM's QKVParallelLinear assigns them. */
export function vllmHeads(kvHeads: number, tp: number, rank: number): number[] {
  if (tp <= kvHeads) {
    const n = kvHeads / tp;
    return Array.from({ length: n }, (_, i) => rank * n + i);
  }
  return [Math.floor(rank / (tp / kvHeads))];
}

/** A rank's simulated memory: one buffer per region, and a view per tensor. */
export interface RankMemory {
  readonly regions: Uint8Array[];
  readonly tensors: Uint8Array[];
}

/** Allocates a rank's memory for `layout` under `addressing`, every byte set to `fill`. */
export function allocate(layout: KvLayout, addressing: 'tensor' | 'arena' = 'tensor', fill = 0): RankMemory {
  if (addressing === 'arena') {
    const arena = new Uint8Array(layout.arenaBytes).fill(fill);
    return {
      regions: [arena],
      tensors: layout.tensors.map((t) => arena.subarray(t.arenaOffset, t.arenaOffset + t.bytes)),
    };
  }
  const regions = layout.tensors.map((t) => new Uint8Array(t.bytes).fill(fill));
  return { regions, tensors: regions };
}

/**
 * Writes logical block i (tokens i·T .. i·T+T-1 of the sequence) of the heads `heads` into
 * physical block `blockIds[i]`, as vLLM's cache kernels would: K/V split or joint, HND or NHD,
 * or the MLA latent.
 */
export function writeBlocks(
  layout: KvLayout,
  mem: RankMemory,
  blockIds: readonly number[],
  heads: readonly number[],
): void {
  const T = layout.blockTokens;
  const hb = layout.headDim * layout.elementBytes;
  const H = heads.length;
  const mla = layout.kv === 'latent';
  const parts = mla ? 1 : 2;
  const half = H * T * hb; // one K (or V) block
  for (let layer = 0; layer < layout.model.layers; layer++) {
    for (let part = 0; part < parts; part++) {
      let tensor: Uint8Array;
      let within = 0;
      if (mla) tensor = mem.tensors[layer]!;
      else if (layout.kv === 'joint') {
        tensor = mem.tensors[layer]!;
        within = part * half;
      } else tensor = mem.tensors[2 * layer + part]!;
      const blockBytes = mla ? T * hb : layout.kv === 'joint' ? 2 * half : half;
      blockIds.forEach((block, i) => {
        for (let lh = 0; lh < H; lh++) {
          for (let t = 0; t < T; t++) {
            const vec = layout.order === 'HND' && !mla ? lh * T + t : t * H + lh;
            const at = block * blockBytes + within + vec * hb;
            for (let b = 0; b < hb; b++) tensor[at + b] = kvByte(layer, part, mla ? 0 : heads[lh]!, i * T + t, b);
          }
        }
      });
    }
  }
}

function checkBounds(list: DescriptorList, regions: Uint8Array[], side: string): void {
  for (let i = 0; i < list.count; i++) {
    const r = list.region[i]!;
    const off = list.offset[i]!;
    const len = list.length[i]!;
    if (
      r >= regions.length ||
      off < 0 ||
      len <= 0 ||
      off + len > regions[r]!.length ||
      !Number.isInteger(off) ||
      !Number.isInteger(len)
    ) {
      throw new Error(`${side} descriptor ${i} (${r}, ${off}, ${len}) is outside its region`);
    }
  }
}

/**
 * Executes paired descriptors as a READ (remote → local) with plain Uint8Array.set, after
 * checking every descriptor against its region. Returns, per local region, how many times each
 * byte was written.
 */
export function executeRead(
  pairs: PairedDescriptors,
  local: Uint8Array[],
  remote: Uint8Array[],
  writes?: Uint8Array[],
): Uint8Array[] {
  expect(pairs.local.count).toBe(pairs.count);
  expect(pairs.remote.count).toBe(pairs.count);
  checkBounds(pairs.local, local, 'local');
  checkBounds(pairs.remote, remote, 'remote');
  const counts = writes ?? local.map((r) => new Uint8Array(r.length));
  for (let i = 0; i < pairs.count; i++) {
    const lr = pairs.local.region[i]!;
    const lo = pairs.local.offset[i]!;
    const ro = pairs.remote.offset[i]!;
    const len = pairs.local.length[i]!;
    local[lr]!.set(remote[pairs.remote.region[i]!]!.subarray(ro, ro + len), lo);
    const c = counts[lr]!;
    for (let b = lo; b < lo + len; b++) c[b]!++;
  }
  return counts;
}

/** Per region, how many times each byte is covered by `list` (after checking bounds). */
export function coverage(list: DescriptorList, regions: readonly { bytes: number }[]): Uint8Array[] {
  const buffers = regions.map((r) => new Uint8Array(r.bytes));
  checkBounds(list, buffers, 'list');
  for (let i = 0; i < list.count; i++) {
    const c = buffers[list.region[i]!]!;
    for (let b = list.offset[i]!; b < list.offset[i]! + list.length[i]!; b++) c[b]!++;
  }
  return buffers;
}

/** Bytes `list` moves. */
export function totalBytes(list: DescriptorList): number {
  let s = 0;
  for (let i = 0; i < list.count; i++) s += list.length[i]!;
  return s;
}
