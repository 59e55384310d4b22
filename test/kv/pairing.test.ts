import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { KvLayout, kvPreset, pairBlockDescriptors, type KvLayoutOptions } from '../../lib/kv/index.js';
import { allocate, coverage, executeRead, totalBytes, writeBlocks } from './simulate.js';

const llama3 = kvPreset('llama-3-8b');
const prefill = new KvLayout({ model: llama3, numBlocks: 512 });
const decode = new KvLayout({ model: llama3, numBlocks: 300 });
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('pairing local and remote blocks of the same logical KV', () => {
  it('emits equal-length lists: local block ids[i] ⇄ remote block ids[i] for every tensor', () => {
    const pairs = pairBlockDescriptors(decode, [9, 4], prefill, [100, 7]);
    expect(pairs.count).toBe(128);
    expect(pairs.local.count).toBe(128);
    expect(pairs.remote.count).toBe(128);
    expect(pairs.local.length).toBe(pairs.remote.length);
    expect([...pairs.local.offset.slice(0, 2)]).toEqual([9 * 32_768, 4 * 32_768]);
    expect([...pairs.remote.offset.slice(0, 2)]).toEqual([100 * 32_768, 7 * 32_768]);
    expect([...pairs.local.region.slice(0, 4)]).toEqual([0, 0, 1, 1]);
  });

  it('coalesces only where both sides are contiguous', () => {
    // local 0..3 contiguous; remote 10,11 then 20,21: two runs per tensor.
    const pairs = pairBlockDescriptors(decode, [0, 1, 2, 3], prefill, [10, 11, 20, 21]);
    expect([pairs.before, pairs.after]).toEqual([4 * 64, 2 * 64]);
    expect([...pairs.local.offset.slice(0, 2)].map((o) => o / 32_768)).toEqual([0, 2]);
    expect([...pairs.remote.offset.slice(0, 2)].map((o) => o / 32_768)).toEqual([10, 20]);
    expect([...pairs.local.length.slice(0, 2)]).toEqual([65_536, 65_536]);
  });

  it('in arenas, merges across tensors only where both arenas continue', () => {
    const all = range(0, 4);
    const local = new KvLayout({ model: llama3, numBlocks: 4 });
    // Remote tensors have a fifth block, so remote tensor t+1 does not start where block 3 of t ends.
    const remote = new KvLayout({ model: llama3, numBlocks: 5 });
    const arenas = { localAddressing: 'arena', remoteAddressing: 'arena' } as const;
    expect(pairBlockDescriptors(local, all, remote, all, arenas).after).toBe(64);
    const same = pairBlockDescriptors(local, all, new KvLayout({ model: llama3, numBlocks: 4 }), all, arenas);
    expect(same.after).toBe(1);
    expect(same.local.length[0]).toBe(local.arenaBytes);
  });

  it('a 4,096-token request: 16,384 descriptors, 64 when both sides are contiguous', () => {
    expect(pairBlockDescriptors(decode, range(0, 256), prefill, range(256, 256)).after).toBe(64);
    const scattered = pairBlockDescriptors(
      decode,
      range(0, 256),
      prefill,
      range(0, 256).map((i) => 511 - 2 * i),
    );
    expect([scattered.before, scattered.after]).toEqual([16_384, 16_384]);
  });

  it('copies exactly the paired blocks, byte for byte, across addressing modes', () => {
    const model = { layers: 2, kvHeads: 2, headDim: 3, dtype: 'fp16' as const };
    for (const [la, ra] of [
      ['tensor', 'arena'],
      ['arena', 'tensor'],
      ['arena', 'arena'],
    ] as const) {
      const local = new KvLayout({ model, numBlocks: 6, blockTokens: 2, order: 'NHD' });
      const remote = new KvLayout({ model, numBlocks: 9, blockTokens: 2, order: 'NHD' });
      const src = allocate(remote, ra, 1);
      writeBlocks(remote, src, [8, 2, 3], [0, 1]);
      const dst = allocate(local, la, 2);
      executeRead(
        pairBlockDescriptors(local, [0, 1, 5], remote, [8, 2, 3], { localAddressing: la, remoteAddressing: ra }),
        dst.regions,
        src.regions,
      );
      const want = allocate(local, la, 2);
      writeBlocks(local, want, [0, 1, 5], [0, 1]);
      expect(Buffer.compare(Buffer.concat(dst.regions), Buffer.concat(want.regions))).toBe(0);
    }
  });
});

describe('pairing properties', () => {
  const arb = fc
    .record({
      kvHeads: fc.constantFrom(1, 4),
      blockTokens: fc.integer({ min: 1, max: 4 }),
      kv: fc.constantFrom('split' as const, 'joint' as const),
      localBlocks: fc.integer({ min: 1, max: 24 }),
      remoteBlocks: fc.integer({ min: 1, max: 24 }),
      arenaAlignment: fc.constantFrom(1, 256),
    })
    .chain((o) => {
      const options = (numBlocks: number): KvLayoutOptions => ({
        model: { layers: 2, kvHeads: o.kvHeads, headDim: 2, dtype: 'fp16' },
        numBlocks,
        blockTokens: o.blockTokens,
        kv: o.kv,
        arenaAlignment: o.arenaAlignment,
      });
      const n = Math.min(o.localBlocks, o.remoteBlocks);
      return fc.tuple(
        fc.constant(new KvLayout(options(o.localBlocks))),
        fc.constant(new KvLayout(options(o.remoteBlocks))),
        fc
          .integer({ min: 0, max: n })
          .chain((len) =>
            fc.tuple(
              fc.uniqueArray(fc.integer({ min: 0, max: o.localBlocks - 1 }), { minLength: len, maxLength: len }),
              fc.uniqueArray(fc.integer({ min: 0, max: o.remoteBlocks - 1 }), { minLength: len, maxLength: len }),
            ),
          ),
        fc.constantFrom('tensor' as const, 'arena' as const),
      );
    });

  it('coalescing never changes the bytes moved, and no descriptor leaves its region (property)', () => {
    fc.assert(
      fc.property(arb, ([local, remote, [lids, rids], addressing]) => {
        const opts = { localAddressing: addressing, remoteAddressing: addressing };
        const merged = pairBlockDescriptors(local, lids, remote, rids, opts);
        const plain = pairBlockDescriptors(local, lids, remote, rids, { ...opts, coalesce: false });
        expect(plain.count).toBe(lids.length * local.tensors.length);
        expect(merged.before).toBe(plain.count);
        expect(totalBytes(merged.local)).toBe(totalBytes(plain.local));
        expect(coverage(merged.remote, remote.regions(addressing))).toEqual(
          coverage(plain.remote, remote.regions(addressing)),
        );
        const src = allocate(remote, addressing);
        src.regions.forEach((r, i) =>
          r.forEach((_, b) => {
            r[b] = (b * 31 + i * 7) & 0xff;
          }),
        );
        const a = allocate(local, addressing, 0xee);
        const b = allocate(local, addressing, 0xee);
        executeRead(merged, a.regions, src.regions); // throws on any out-of-region descriptor
        executeRead(plain, b.regions, src.regions);
        expect(Buffer.compare(Buffer.concat(a.regions), Buffer.concat(b.regions))).toBe(0);
      }),
    );
  });
});

describe('pairing rejects what cannot be paired', () => {
  it('lists of different lengths', () => {
    expect(() => pairBlockDescriptors(decode, [1, 2], prefill, [1])).toThrowError(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringContaining('same length') }),
    );
  });

  it('an id beyond either cache, naming the side', () => {
    expect(() => pairBlockDescriptors(decode, [300], prefill, [0])).toThrowError(
      expect.objectContaining({
        code: ErrorCode.OUT_OF_BOUNDS,
        message: expect.stringContaining('local block ids[0]'),
      }),
    );
    expect(() => pairBlockDescriptors(decode, [0], prefill, [512])).toThrowError(
      expect.objectContaining({
        code: ErrorCode.OUT_OF_BOUNDS,
        message: expect.stringContaining('remote block ids[0]'),
      }),
    );
  });

  it('layouts of different shapes, with ERR_KVWIRE_INCOMPATIBLE naming the field', () => {
    const fp16 = new KvLayout({ model: { ...llama3, dtype: 'fp16' }, numBlocks: 8 });
    try {
      pairBlockDescriptors(decode, [0], fp16, [0]);
      expect.unreachable();
    } catch (e) {
      expect(KvwireError.is(e, ErrorCode.INCOMPATIBLE)).toBe(true);
      expect((e as Error).message).toMatch(/^incompatible: dtype differs \(local bf16, remote fp16\)/);
    }
  });

  it('ranks holding different heads, pointing at planTensorParallelReads', () => {
    const r0 = new KvLayout({ model: llama3, numBlocks: 8, tp: { size: 2, rank: 0 } });
    const r1 = new KvLayout({ model: llama3, numBlocks: 8, tp: { size: 2, rank: 1 } });
    const tp4 = new KvLayout({ model: llama3, numBlocks: 8, tp: { size: 4, rank: 0 } });
    expect(() => pairBlockDescriptors(r0, [0], r1, [0])).toThrowError(
      expect.objectContaining({
        code: ErrorCode.INCOMPATIBLE,
        message: expect.stringContaining('planTensorParallelReads'),
      }),
    );
    expect(() => pairBlockDescriptors(r0, [0], tp4, [0])).toThrowError(
      expect.objectContaining({ code: ErrorCode.INCOMPATIBLE }),
    );
    // TP 16 rank 1 and TP 8 rank 0 hold the same single head: pairing is fine.
    const a = new KvLayout({ model: llama3, numBlocks: 8, tp: { size: 16, rank: 1 } });
    const b = new KvLayout({ model: llama3, numBlocks: 8, tp: { size: 8, rank: 0 } });
    expect(pairBlockDescriptors(a, [0], b, [1]).count).toBe(64);
  });
});
