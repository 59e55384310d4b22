import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KvLayout, kvPreset, type KvLayoutOptions } from '../../lib/kv/index.js';
import { coverage, totalBytes } from './simulate.js';

const llama3 = new KvLayout({ model: kvPreset('llama-3-8b'), numBlocks: 4096 });
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('coalescing runs of contiguous block ids', () => {
  it('4,096 tokens of Llama-3-8B in contiguous blocks: 16,384 descriptors become 64', () => {
    const d = llama3.descriptors(range(100, 256));
    expect(d.before).toBe(16_384);
    expect(d.after).toBe(64);
    expect(d.count).toBe(64);
    expect(d.length.every((l) => l === 256 * 32_768)).toBe(true);
  });

  it('scattered blocks stay one descriptor per tensor per block', () => {
    const d = llama3.descriptors(range(0, 256).map((i) => i * 2));
    expect([d.before, d.after]).toEqual([16_384, 16_384]);
  });

  it('each maximal run becomes one descriptor per tensor', () => {
    const d = llama3.descriptors([4, 5, 6, 9, 10, 3]);
    expect([d.before, d.after]).toEqual([6 * 64, 3 * 64]);
    expect([...d.offset.slice(0, 3)].map((o) => o / 32_768)).toEqual([4, 9, 3]);
    expect([...d.length.slice(0, 3)].map((l) => l / 32_768)).toEqual([3, 2, 1]);
  });

  it('turned off, it emits one row per tensor per block', () => {
    const d = llama3.descriptors(range(0, 8), { coalesce: false });
    expect([d.before, d.after, d.count]).toEqual([512, 512, 512]);
  });

  it('in an arena without padding, all blocks of all tensors become one descriptor', () => {
    const small = new KvLayout({ model: kvPreset('llama-3-8b'), numBlocks: 8 }); // 256 KiB tensors, 256-aligned
    const d = small.descriptors(range(0, 8), { addressing: 'arena' });
    expect(d.count).toBe(1);
    expect([d.region[0], d.offset[0], d.length[0]]).toEqual([0, 0, small.arenaBytes]);
  });

  it('a retained short list does not pin a buffer sized for the uncoalesced list', () => {
    const d = llama3.descriptors(range(0, 256));
    expect(d.offset.buffer.byteLength).toBeLessThan(64 * 64);
  });
});

const layoutArb = fc
  .record({
    kvHeads: fc.constantFrom(1, 2, 8),
    headDim: fc.integer({ min: 1, max: 8 }),
    layers: fc.integer({ min: 1, max: 3 }),
    blockTokens: fc.integer({ min: 1, max: 5 }),
    numBlocks: fc.integer({ min: 1, max: 40 }),
    kv: fc.constantFrom('split' as const, 'joint' as const),
    order: fc.constantFrom('HND' as const, 'NHD' as const),
    arenaAlignment: fc.constantFrom(1, 8, 256),
    dtype: fc.constantFrom('fp16' as const, 'int8' as const),
  })
  .map((o): KvLayoutOptions => ({
    model: { layers: o.layers, kvHeads: o.kvHeads, headDim: o.headDim, dtype: o.dtype },
    numBlocks: o.numBlocks,
    blockTokens: o.blockTokens,
    kv: o.kv,
    order: o.order,
    arenaAlignment: o.arenaAlignment,
  }));

const withIds = layoutArb.chain((options) =>
  fc.tuple(
    fc.constant(options),
    fc.array(fc.integer({ min: 0, max: options.numBlocks - 1 }), { maxLength: 30 }),
    fc.constantFrom('tensor' as const, 'arena' as const),
  ),
);

describe('coalescing properties', () => {
  it('never changes which bytes are covered, nor how often (property)', () => {
    fc.assert(
      fc.property(withIds, ([options, ids, addressing]) => {
        const layout = new KvLayout(options);
        const regions = layout.regions(addressing);
        const merged = layout.descriptors(ids, { addressing });
        const plain = layout.descriptors(ids, { addressing, coalesce: false });
        expect(plain.count).toBe(ids.length * layout.tensors.length);
        expect(merged.before).toBe(plain.count);
        expect(merged.count).toBeLessThanOrEqual(plain.count);
        expect(totalBytes(merged)).toBe(totalBytes(plain));
        expect(coverage(merged, regions)).toEqual(coverage(plain, regions));
      }),
    );
  });

  it('never reaches outside a region, and covers exactly the listed blocks of every tensor (property)', () => {
    fc.assert(
      fc.property(withIds, ([options, ids, addressing]) => {
        const layout = new KvLayout(options);
        // coverage() throws on any descriptor outside its region.
        const covered = coverage(layout.descriptors(ids, { addressing }), layout.regions(addressing));
        const want = layout.regions(addressing).map((r) => new Uint8Array(r.bytes));
        for (const t of layout.tensors) {
          const region = addressing === 'arena' ? 0 : t.index;
          const base = addressing === 'arena' ? t.arenaOffset : 0;
          for (const b of ids)
            for (let x = 0; x < layout.blockBytes; x++) want[region]![base + b * layout.blockBytes + x]!++;
        }
        expect(covered).toEqual(want);
      }),
    );
  });

  it('leaves no two consecutive descriptors touching in the same region (property)', () => {
    fc.assert(
      fc.property(withIds, ([options, ids, addressing]) => {
        const d = new KvLayout(options).descriptors(ids, { addressing });
        for (let i = 1; i < d.count; i++) {
          const touches = d.region[i] === d.region[i - 1] && d.offset[i - 1]! + d.length[i - 1]! === d.offset[i];
          expect(touches).toBe(false);
        }
      }),
    );
  });
});
