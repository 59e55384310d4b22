import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode } from '../../lib/errors.js';
import { kvHeadsOfRank, ranksHoldingHead } from '../../lib/kv/index.js';

describe('KV heads of a tensor-parallel rank (vLLM QKVParallelLinear)', () => {
  it('splits heads evenly when there are at least as many heads as ranks', () => {
    expect([0, 1, 2, 3].map((r) => kvHeadsOfRank(8, 4, r))).toEqual([
      { first: 0, count: 2, replicas: 1 },
      { first: 2, count: 2, replicas: 1 },
      { first: 4, count: 2, replicas: 1 },
      { first: 6, count: 2, replicas: 1 },
    ]);
  });

  it('replicates heads when there are more ranks than heads: rank r holds head r // (tp / heads)', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((r) => kvHeadsOfRank(4, 8, r).first)).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(kvHeadsOfRank(4, 8, 5)).toEqual({ first: 2, count: 1, replicas: 2 });
  });

  it('rejects what vLLM cannot shard and ranks outside the group', () => {
    expect(() => kvHeadsOfRank(8, 3, 0)).toThrowError(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        details: expect.objectContaining({ field: 'tp.size' }),
      }),
    );
    expect(() => kvHeadsOfRank(8, 12, 0)).toThrowError(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => kvHeadsOfRank(8, 4, 4)).toThrowError(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        details: expect.objectContaining({ field: 'tp.rank' }),
      }),
    );
    expect(() => kvHeadsOfRank(8, 4, -1)).toThrowError(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => kvHeadsOfRank(8, 0, 0)).toThrowError(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });

  it('ranksHoldingHead names exactly the ranks whose range contains the head (property)', () => {
    const group = fc
      .tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 }))
      .map(([h, t]) => ({ heads: 2 ** h, tp: 2 ** t }));
    fc.assert(
      fc.property(group, ({ heads, tp }) => {
        for (let h = 0; h < heads; h++) {
          const holders = ranksHoldingHead(heads, tp, h);
          for (let r = 0; r < tp; r++) {
            const range = kvHeadsOfRank(heads, tp, r);
            const holds = h >= range.first && h < range.first + range.count;
            expect(holds).toBe(r >= holders.first && r < holders.first + holders.count);
          }
        }
      }),
    );
  });
});
