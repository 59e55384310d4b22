import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { BlockPool, PrefixCache } from '../../lib/engine/kv/block-pool.js';

describe('block pool', () => {
  it('hands out contiguous runs first, refuses over-allocation and double frees', () => {
    const pool = new BlockPool(8);
    const a = pool.allocate(3);
    expect(a).toEqual([0, 1, 2]);
    expect(() => pool.allocate(6)).toThrow(expect.objectContaining({ code: ErrorCode.CAPACITY }));
    pool.release(a);
    expect(() => pool.release([1])).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => pool.release([99])).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(pool.allocate(3)).toEqual([0, 1, 2]);
    expect([pool.free, pool.used]).toEqual([5, 3]);
  });

  it('keeps prefix blocks, pins matches, evicts the least recently used unpinned ones', () => {
    const pool = new BlockPool(4);
    const cache = new PrefixCache(pool);
    const [b0, b1, b2] = pool.allocate(3);
    cache.insert('k0', b0!);
    cache.insert('k1', b1!);
    expect(cache.insert('k1', b2!)).toBe(false);
    pool.release([b2!]);
    expect(cache.match(['k0', 'k1', 'k9'])).toEqual([b0, b1]);
    cache.evictFor(4);
    expect(pool.free).toBe(2); // both pinned
    cache.unpin(['k0']);
    cache.evictFor(4);
    expect(pool.free).toBe(3);
    expect(cache.clear()).toBe(1);
    cache.unpin(['k1']);
    expect(cache.clear()).toBe(0);
    expect(pool.free).toBe(4);
  });
});
