import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { KvLayout, kvPreset, validateBlockIds } from '../../lib/kv/index.js';

const layout = new KvLayout({ model: kvPreset('llama-3-8b'), numBlocks: 1000 });

describe('descriptor lists are flat typed arrays', () => {
  it('gives one (region, offset, length) row per tensor per block, tensor-major', () => {
    const d = layout.descriptors([5, 2]);
    expect(d.count).toBe(128);
    expect(d.region).toBeInstanceOf(Uint32Array);
    expect(d.offset).toBeInstanceOf(Float64Array);
    expect(d.length).toBeInstanceOf(Float64Array);
    expect([d.region.length, d.offset.length, d.length.length]).toEqual([128, 128, 128]);
    expect([...d.region.slice(0, 4)]).toEqual([0, 0, 1, 1]);
    expect([...d.offset.slice(0, 4)]).toEqual([5 * 32_768, 2 * 32_768, 5 * 32_768, 2 * 32_768]);
    expect(d.length.every((l) => l === 32_768)).toBe(true);
  });

  it('addresses the single arena at each tensor’s offset', () => {
    const d = layout.descriptors([5, 2], { addressing: 'arena' });
    expect(d.region.every((r) => r === 0)).toBe(true);
    expect(d.offset[2]).toBe(layout.tensor('kv-L0-V').arenaOffset + 5 * 32_768);
  });

  it('accepts ids as an array or any typed array, and an empty list', () => {
    const a = layout.descriptors([7, 8, 100]);
    for (const ids of [Uint32Array.of(7, 8, 100), Int32Array.of(7, 8, 100), Float64Array.of(7, 8, 100)]) {
      const b = layout.descriptors(ids);
      expect([...b.offset]).toEqual([...a.offset]);
      expect([...b.length]).toEqual([...a.length]);
    }
    expect(layout.descriptors([])).toMatchObject({ count: 0, before: 0, after: 0 });
  });

  it('handles offsets past 4 GiB exactly', () => {
    const big = new KvLayout({ model: kvPreset('llama-3-70b'), numBlocks: 200_000 });
    const d = big.descriptors([199_999]);
    expect(d.offset[0]).toBe(199_999 * 32_768);
    expect(d.offset[0]! + d.length[0]!).toBe(big.tensors[0]!.bytes);
  });
});

describe('block ids are checked before anything is emitted', () => {
  const fails = (ids: unknown, code: string, index?: number) => {
    try {
      layout.descriptors(ids as number[]);
      expect.unreachable();
    } catch (e) {
      expect(KvwireError.is(e)).toBe(true);
      expect((e as KvwireError).code).toBe(code);
      if (index !== undefined) expect((e as KvwireError).details.index).toBe(index);
      return (e as Error).message;
    }
  };

  it('an id at or past numBlocks is ERR_KVWIRE_OUT_OF_BOUNDS, naming it and the cache size', () => {
    expect(fails([0, 1000], ErrorCode.OUT_OF_BOUNDS, 1)).toBe(
      'block ids[1] is block 1,000, but this cache has 1,000 blocks (ids 0..999); pass ids the engine allocated from this cache',
    );
  });

  it('negative, fractional, NaN and non-number ids are ERR_KVWIRE_INVALID_ARGUMENT', () => {
    expect(fails([3, -1], ErrorCode.INVALID_ARGUMENT, 1)).toMatch(/block ids\[1\] is -1, not a block id/);
    fails([1.5], ErrorCode.INVALID_ARGUMENT, 0);
    fails([Number.NaN], ErrorCode.INVALID_ARGUMENT, 0);
    fails(['3'], ErrorCode.INVALID_ARGUMENT, 0);
    fails(Float64Array.of(Infinity), ErrorCode.INVALID_ARGUMENT, 0);
  });

  it('a list that is not an array is ERR_KVWIRE_INVALID_ARGUMENT', () => {
    fails(null, ErrorCode.INVALID_ARGUMENT);
    fails(7, ErrorCode.INVALID_ARGUMENT);
  });

  it('validateBlockIds accepts ids beyond 2^31 when the cache is that large', () => {
    expect(() => validateBlockIds([2 ** 31 + 5], 2 ** 32, 'ids')).not.toThrow();
    expect(() => validateBlockIds([2 ** 32], 2 ** 32, 'ids')).toThrowError(
      expect.objectContaining({ code: ErrorCode.OUT_OF_BOUNDS }),
    );
  });
});
