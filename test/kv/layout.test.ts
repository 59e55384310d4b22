import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { KV_ARENA_LABEL, KvLayout, kvPreset, modelBytesPerToken, type KvLayoutOptions } from '../../lib/kv/index.js';

const llama3 = kvPreset('llama-3-8b');

describe('KvLayout tensors', () => {
  it('lists per-layer K and V tensors, K first, with stable labels', () => {
    const layout = new KvLayout({ model: llama3, numBlocks: 100 });
    expect(layout.tensors.slice(0, 4).map((t) => [t.index, t.label, t.layer, t.part])).toEqual([
      [0, 'kv-L0-K', 0, 'K'],
      [1, 'kv-L0-V', 0, 'V'],
      [2, 'kv-L1-K', 1, 'K'],
      [3, 'kv-L1-V', 1, 'V'],
    ]);
    expect(layout.tensors.at(-1)!.label).toBe('kv-L31-V');
    expect(layout.tensors.every((t) => t.bytes === 100 * 32_768)).toBe(true);
    expect(layout.kv).toBe('split');
    expect(layout.order).toBe('HND');
    expect(layout.blockTokens).toBe(16);
  });

  it('holds K then V in every block of a joint tensor', () => {
    const layout = new KvLayout({ model: llama3, numBlocks: 10, kv: 'joint' });
    expect(layout.tensors.map((t) => t.label).slice(0, 2)).toEqual(['kv-L0', 'kv-L1']);
    expect(layout.tensors[0]!.part).toBe('KV');
    expect(layout.blockBytes).toBe(2 * 32_768);
    expect(layout.bytesPerToken).toBe(131_072);
  });

  it('gives each rank its share of the heads and bytes', () => {
    const ranks = [0, 1].map((rank) => new KvLayout({ model: llama3, numBlocks: 10, tp: { size: 2, rank } }));
    expect(ranks.map((l) => l.heads)).toEqual([
      { first: 0, count: 4, replicas: 1 },
      { first: 4, count: 4, replicas: 1 },
    ]);
    expect(ranks[0]!.blockBytes).toBe(16_384);
    expect(ranks[0]!.bytesPerToken * 2).toBe(modelBytesPerToken(llama3));
  });

  it('replicates heads when TP exceeds the KV heads, so per-rank bytes stop shrinking', () => {
    const layout = new KvLayout({ model: llama3, numBlocks: 10, tp: { size: 16, rank: 5 } });
    expect(layout.heads).toEqual({ first: 2, count: 1, replicas: 2 });
    expect(layout.bytesPerToken).toBe(modelBytesPerToken(llama3) / 8);
  });

  it('replicates the MLA latent on every rank', () => {
    const layout = new KvLayout({ model: kvPreset('deepseek-v3'), numBlocks: 10, tp: { size: 8, rank: 3 } });
    expect(layout.kv).toBe('latent');
    expect(layout.headDim).toBe(576);
    expect(layout.bytesPerToken).toBe(modelBytesPerToken(kvPreset('deepseek-v3')));
  });

  it('offers the regions to register: one per tensor, or one arena', () => {
    const layout = new KvLayout({
      model: { layers: 3, kvHeads: 1, headDim: 3, dtype: 'fp16' },
      numBlocks: 5,
      blockTokens: 3,
    });
    // 5 blocks x 3 tokens x 3 x 2 bytes = 90 bytes per tensor; offsets aligned to 256.
    expect(layout.regions()).toEqual(layout.tensors.map((t) => ({ label: t.label, bytes: 90 })));
    expect(layout.tensors.map((t) => t.arenaOffset)).toEqual([0, 256, 512, 768, 1024, 1280]);
    expect(layout.regions('arena')).toEqual([{ label: KV_ARENA_LABEL, bytes: 1280 + 90 }]);
    const packed = new KvLayout({
      model: { layers: 3, kvHeads: 1, headDim: 3, dtype: 'fp16' },
      numBlocks: 5,
      blockTokens: 3,
      arenaAlignment: 2,
    });
    expect(packed.arenaBytes).toBe(6 * 90);
  });

  it('finds a tensor by label, and says which exist when there is none', () => {
    const layout = new KvLayout({ model: llama3, numBlocks: 4 });
    expect(layout.tensor('kv-L3-V').index).toBe(7);
    expect(() => layout.tensor('kv-L32-K')).toThrowError(
      expect.objectContaining({
        code: ErrorCode.UNKNOWN_REGION,
        message: expect.stringContaining('kv-L0-K .. kv-L31-V'),
      }),
    );
  });

  it('is immutable', () => {
    const layout = new KvLayout({ model: llama3, numBlocks: 4 });
    expect(Object.isFrozen(layout.tensors)).toBe(true);
    expect(Object.isFrozen(layout.tensors[0])).toBe(true);
    expect(Object.isFrozen(layout.model)).toBe(true);
  });
});

describe('KvLayout rejects bad configuration', () => {
  const cases: [string, Partial<KvLayoutOptions>, string][] = [
    ['zero blocks', { numBlocks: 0 }, 'numBlocks'],
    ['fractional blocks', { numBlocks: 2.5 }, 'numBlocks'],
    ['zero-token blocks', { blockTokens: 0 }, 'blockTokens'],
    ['a rank outside its group', { tp: { size: 2, rank: 2 } }, 'tp.rank'],
    ['heads that do not split over TP', { tp: { size: 3, rank: 0 } }, 'tp.size'],
    ['an unknown order', { order: 'NDH' as never }, 'order'],
    ['an unknown K/V storage', { kv: 'fused' as never }, 'kv'],
    ['an arena alignment that is not a power of two', { arenaAlignment: 48 }, 'arenaAlignment'],
    ['K/V storage for an MLA model', { model: kvPreset('deepseek-v3'), kv: 'joint' }, 'kv'],
    ['more bytes than offsets address exactly', { numBlocks: 2 ** 40 }, 'numBlocks'],
  ];
  for (const [what, override, field] of cases) {
    it(`rejects ${what} with ERR_KVWIRE_INVALID_ARGUMENT`, () => {
      try {
        new KvLayout({ model: llama3, numBlocks: 8, ...override });
        expect.unreachable();
      } catch (e) {
        expect(KvwireError.is(e, ErrorCode.INVALID_ARGUMENT)).toBe(true);
        expect((e as KvwireError).details.field).toBe(field);
      }
    });
  }
});
