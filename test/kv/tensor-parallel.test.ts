import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import {
  KvLayout,
  kvPreset,
  planTensorParallelReads,
  tensorParallelLayouts,
  type KvOrder,
  type KvSplit,
  type ModelShape,
} from '../../lib/kv/index.js';
import { allocate, executeRead, vllmHeads, writeBlocks } from './simulate.js';

const gqa: ModelShape = { name: 'tiny-gqa', layers: 2, kvHeads: 4, headDim: 4, dtype: 'fp16' };
const mla: ModelShape = {
  name: 'tiny-mla',
  attention: 'mla',
  layers: 2,
  kvLoraRank: 6,
  qkRopeHeadDim: 2,
  dtype: 'bf16',
};

interface Case {
  model: ModelShape;
  p: number;
  d: number;
  order?: KvOrder;
  kv?: KvSplit;
  prefillIds: number[];
  decodeIds: number[];
  addressing?: 'tensor' | 'arena';
}

/**
 * Prefill ranks hold the full model's KV split by rank at `prefillIds`; every decode rank runs
 * its reads; each decode rank's memory must then equal exactly what vLLM would have computed
 * for its heads at `decodeIds` — every target byte written once, nothing else touched.
 */
function assembleAndCompare(c: Case): { descriptors: number; before: number } {
  const common = {
    model: c.model,
    blockTokens: 4,
    ...(c.kv ? { kv: c.kv } : {}),
    ...(c.order ? { order: c.order } : {}),
  };
  const addressing = c.addressing ?? 'tensor';
  const prefill = tensorParallelLayouts({ ...common, numBlocks: 9 }, c.p);
  const totalHeads = c.model.attention === 'mla' ? 1 : c.model.kvHeads;
  const headsOf = (tp: number, rank: number) => (c.model.attention === 'mla' ? [0] : vllmHeads(totalHeads, tp, rank));
  const prefillMem = prefill.map((layout, r) => {
    const mem = allocate(layout, addressing, 0xa5);
    writeBlocks(layout, mem, c.prefillIds, headsOf(c.p, r));
    return mem;
  });
  let descriptors = 0;
  let before = 0;
  for (let j = 0; j < c.d; j++) {
    const decode = new KvLayout({ ...common, numBlocks: 11, tp: { size: c.d, rank: j } });
    if (c.model.attention !== 'mla') expect(decode.heads.first).toBe(headsOf(c.d, j)[0]);
    const plan = planTensorParallelReads(decode, prefill);
    const reads = plan.reads(c.decodeIds, c.prefillIds, { localAddressing: addressing, remoteAddressing: addressing });
    const actual = allocate(decode, addressing, 0x5a);
    let writes: Uint8Array[] | undefined;
    for (const read of reads) {
      expect(read.after).toBe(read.count);
      writes = executeRead(read, actual.regions, prefillMem[read.prefillRank]!.regions, writes);
      descriptors += read.count;
      before += read.before;
    }
    const expected = allocate(decode, addressing, 0x5a);
    writeBlocks(decode, expected, c.decodeIds, headsOf(c.d, j));
    expect(Buffer.compare(Buffer.concat(actual.regions), Buffer.concat(expected.regions))).toBe(0);
    // Every byte of every target block written exactly once, every other byte untouched.
    const want = allocate(decode, addressing, 0);
    for (const t of want.tensors)
      for (const b of c.decodeIds) t.fill(1, b * decode.blockBytes, (b + 1) * decode.blockBytes);
    expect(Buffer.compare(Buffer.concat(writes!), Buffer.concat(want.regions))).toBe(0);
  }
  return { descriptors, before };
}

const sizes = [1, 2, 4, 8]; // 8 > 4 KV heads: vLLM replicates heads
const prefillIds = [3, 4, 5, 0, 8];
const decodeIds = [7, 8, 9, 2, 3]; // 2,3 contiguous here but not on the prefill side (0, 8)

describe('heterogeneous tensor-parallel reads are byte-exact', () => {
  for (const order of ['HND', 'NHD'] as const) {
    for (const kv of ['split', 'joint'] as const) {
      for (const p of sizes) {
        for (const d of sizes) {
          const rel = p < d ? 'p<d' : p > d ? 'p>d' : 'p=d';
          it(`${rel}: prefill TP ${p} → decode TP ${d}, ${order}, ${kv} K/V`, () => {
            assembleAndCompare({ model: gqa, p, d, order, kv, prefillIds, decodeIds });
          });
        }
      }
    }
  }

  for (const p of [1, 2, 3, 4]) {
    for (const d of [1, 2, 3, 4]) {
      it(`MLA: prefill TP ${p} → decode TP ${d}: each decode rank reads the whole latent from one prefill rank`, () => {
        const prefill = tensorParallelLayouts({ model: mla, numBlocks: 9, blockTokens: 4 }, p);
        for (let j = 0; j < d; j++) {
          const plan = planTensorParallelReads(
            new KvLayout({ model: mla, numBlocks: 11, blockTokens: 4, tp: { size: d, rank: j } }),
            prefill,
          );
          expect(plan.sources).toHaveLength(1);
          expect(plan.sources[0]!.prefillRank).toBe(Math.floor((j * p) / d));
        }
        assembleAndCompare({ model: mla, p, d, prefillIds, decodeIds });
      });
    }
  }

  it('works the same with arena addressing on both sides', () => {
    assembleAndCompare({
      model: gqa,
      p: 2,
      d: 4,
      order: 'HND',
      kv: 'joint',
      prefillIds,
      decodeIds,
      addressing: 'arena',
    });
    assembleAndCompare({
      model: gqa,
      p: 4,
      d: 1,
      order: 'NHD',
      kv: 'split',
      prefillIds,
      decodeIds,
      addressing: 'arena',
    });
  });

  it('holds for random models, TP sizes, layouts and block lists (property)', () => {
    const shapes = fc.record({
      kvHeads: fc.constantFrom(1, 2, 4, 8),
      headDim: fc.integer({ min: 1, max: 5 }),
      dtype: fc.constantFrom('fp16' as const, 'fp32' as const, 'fp8-e4m3' as const),
      pExp: fc.integer({ min: 0, max: 4 }),
      dExp: fc.integer({ min: 0, max: 4 }),
      order: fc.constantFrom('HND' as const, 'NHD' as const),
      kv: fc.constantFrom('split' as const, 'joint' as const),
      ids: fc
        .integer({ min: 1, max: 6 })
        .chain((n) =>
          fc.tuple(
            fc.uniqueArray(fc.integer({ min: 0, max: 8 }), { minLength: n, maxLength: n }),
            fc.uniqueArray(fc.integer({ min: 0, max: 10 }), { minLength: n, maxLength: n }),
          ),
        ),
    });
    fc.assert(
      fc.property(shapes, (s) => {
        const model: ModelShape = { layers: 1, kvHeads: s.kvHeads, headDim: s.headDim, dtype: s.dtype };
        assembleAndCompare({
          model,
          p: 2 ** s.pExp,
          d: 2 ** s.dExp,
          order: s.order,
          kv: s.kv,
          prefillIds: s.ids[0],
          decodeIds: s.ids[1],
        });
      }),
      { numRuns: 150 },
    );
  });
});

describe('choosing what each decode rank reads', () => {
  const model = kvPreset('llama-3-8b'); // 8 KV heads

  it('decode TP > prefill TP: each decode rank reads its slice of one prefill rank (vLLM: rank j // (d/p))', () => {
    const prefill = tensorParallelLayouts({ model, numBlocks: 64 }, 2);
    const plans = [0, 1, 2, 3].map((j) =>
      planTensorParallelReads(new KvLayout({ model, numBlocks: 64, tp: { size: 4, rank: j } }), prefill),
    );
    expect(
      plans.map((pl) => pl.sources.map((s) => [s.prefillRank, s.firstHead, s.headCount, s.prefillHeadOffset])),
    ).toEqual([[[0, 0, 2, 0]], [[0, 2, 2, 2]], [[1, 4, 2, 0]], [[1, 6, 2, 2]]]);
  });

  it('decode TP < prefill TP: a decode rank reads from several prefill ranks', () => {
    const prefill = tensorParallelLayouts({ model, numBlocks: 64 }, 8);
    const plan = planTensorParallelReads(new KvLayout({ model, numBlocks: 64, tp: { size: 2, rank: 1 } }), prefill);
    expect(plan.sources.map((s) => [s.prefillRank, s.firstHead, s.decodeHeadOffset])).toEqual([
      [4, 4, 0],
      [5, 5, 1],
      [6, 6, 2],
      [7, 7, 3],
    ]);
  });

  it('replicated prefill heads (TP 16 > 8 heads) are read from a single replica each', () => {
    const prefill = tensorParallelLayouts({ model, numBlocks: 64 }, 16);
    const plan = planTensorParallelReads(new KvLayout({ model, numBlocks: 64, tp: { size: 4, rank: 1 } }), prefill);
    // Decode rank 1 holds heads 2 and 3; head h lives on prefill ranks 2h and 2h+1.
    expect(plan.sources.map((s) => [s.prefillRank, s.firstHead])).toEqual([
      [4, 2],
      [7, 3],
    ]);
  });

  it('HND reads one descriptor per block and tensor; NHD one per token (16x more for a head slice)', () => {
    const ids = [1, 5, 9, 13];
    const count = (order: KvOrder) => {
      const prefill = tensorParallelLayouts({ model, numBlocks: 64, order }, 1);
      const reads = planTensorParallelReads(
        new KvLayout({ model, numBlocks: 64, order, tp: { size: 2, rank: 0 } }),
        prefill,
      ).reads(ids, ids);
      return reads.reduce((n, r) => n + r.count, 0);
    };
    expect(count('HND')).toBe(4 * 64);
    expect(count('NHD')).toBe(4 * 64 * 16);
  });

  it('equal TP sizes read whole blocks, coalescing runs contiguous on both sides, in either order', () => {
    for (const order of ['HND', 'NHD'] as const) {
      const prefill = tensorParallelLayouts({ model, numBlocks: 64, order }, 2);
      const [read] = planTensorParallelReads(
        new KvLayout({ model, numBlocks: 64, order, tp: { size: 2, rank: 1 } }),
        prefill,
      ).reads([10, 11, 12, 13], [0, 1, 2, 3]);
      expect(read!.prefillRank).toBe(1);
      expect(read!.before).toBe(4 * 64);
      expect(read!.after).toBe(64);
    }
  });
});

describe('planTensorParallelReads rejects what it cannot assemble', () => {
  const model = kvPreset('llama-3-8b');

  it('rejects prefill layouts that are not one per rank in rank order', () => {
    const decode = new KvLayout({ model, numBlocks: 8 });
    const prefill = tensorParallelLayouts({ model, numBlocks: 8 }, 2);
    for (const bad of [[prefill[1]!, prefill[0]!], [prefill[0]!], []]) {
      expect(() => planTensorParallelReads(decode, bad)).toThrowError(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
      );
    }
  });

  it('rejects a prefill cache of another shape with ERR_KVWIRE_INCOMPATIBLE naming the field', () => {
    const decode = new KvLayout({ model, numBlocks: 8 });
    const cases: [Partial<ConstructorParameters<typeof KvLayout>[0]>, string][] = [
      [{ model: { ...model, dtype: 'fp16' } }, 'dtype'],
      [{ blockTokens: 32 }, 'blockTokens'],
      [{ order: 'NHD' }, 'order'],
      [{ kv: 'joint' }, 'kv'],
      [{ model: kvPreset('mistral-7b') }, 'model'],
    ];
    for (const [override, field] of cases) {
      const prefill = tensorParallelLayouts({ model, numBlocks: 8, ...override }, 1);
      try {
        planTensorParallelReads(decode, prefill);
        expect.unreachable();
      } catch (e) {
        expect(KvwireError.is(e, ErrorCode.INCOMPATIBLE)).toBe(true);
        expect((e as KvwireError).details.field).toBe(field);
        expect((e as Error).message).toMatch(new RegExp(`^incompatible: ${field} differs`));
      }
    }
  });

  it('validates block ids against each side', () => {
    const plan = planTensorParallelReads(
      new KvLayout({ model, numBlocks: 8, tp: { size: 2, rank: 0 } }),
      tensorParallelLayouts({ model, numBlocks: 4 }, 1),
    );
    expect(() => plan.reads([0, 1], [0])).toThrowError(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => plan.reads([8], [0])).toThrowError(expect.objectContaining({ code: ErrorCode.OUT_OF_BOUNDS }));
    expect(() => plan.reads([7], [4])).toThrowError(expect.objectContaining({ code: ErrorCode.OUT_OF_BOUNDS }));
    expect(() => plan.reads([7], [-1])).toThrowError(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });
});
