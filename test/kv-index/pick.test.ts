import { describe, expect, it } from 'vitest';
import { DEFAULT_PICK_WEIGHTS, choose, parseLoads, type Loads } from '../../lib/kv-index/pick.js';

const scores = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));

describe('pick', () => {
  it('computes value = prefix - 0.5 queue/maxQueue - 0.5 tokens/maxTokens by default', () => {
    const r = choose(
      10,
      scores({ a: 10, b: 5 }),
      parseLoads({ a: { queue: 4, inflightTokens: 100 }, b: { queue: 2, inflightTokens: 400 } }),
      DEFAULT_PICK_WEIGHTS,
    );
    const byWorker = Object.fromEntries(r.candidates.map((c) => [c.worker, c]));
    expect(byWorker.a!.value).toBeCloseTo(1 - 0.5 - 0.5 * 0.25);
    expect(byWorker.b!.value).toBeCloseTo(0.5 - 0.25 - 0.5);
    expect(r.worker).toBe('a');
    expect(r.candidates.map((c) => c.worker)).toEqual(['a', 'b']);
  });

  it('prefers the longest prefix at equal load, and the least loaded at equal prefix', () => {
    const loads = parseLoads(
      new Map([
        ['a', 1],
        ['b', 1],
        ['c', 1],
      ]),
    );
    expect(choose(8, scores({ a: 2, b: 7, c: 0 }), loads, DEFAULT_PICK_WEIGHTS).worker).toBe('b');
    expect(choose(8, scores({}), parseLoads({ a: 3, b: 1, c: 2 }), DEFAULT_PICK_WEIGHTS).worker).toBe('b');
    expect(
      choose(8, scores({}), parseLoads({ a: { inflightTokens: 9 }, b: { inflightTokens: 3 } }), DEFAULT_PICK_WEIGHTS)
        .worker,
    ).toBe('b');
  });

  it('trades prefix against load through the weights', () => {
    const loads = parseLoads({ cached: { queue: 10 }, idle: { queue: 0 } });
    const s = scores({ cached: 4 }); // 4 of 8 blocks: prefix 0.5
    expect(choose(8, s, loads, DEFAULT_PICK_WEIGHTS).worker).toBe('cached'); // 0.5 - 0.5 = 0 vs 0: a tie, the longer prefix wins
    expect(choose(8, s, loads, { ...DEFAULT_PICK_WEIGHTS, queue: 0.6 }).worker).toBe('idle');
    expect(choose(8, s, loads, { ...DEFAULT_PICK_WEIGHTS, queue: 0.4 }).worker).toBe('cached');
  });

  it('breaks exact ties deterministically: longer prefix, shorter queue, fewer tokens, then name', () => {
    expect(choose(4, scores({}), parseLoads({ zed: 0, amy: 0, bob: 0 }), DEFAULT_PICK_WEIGHTS).worker).toBe('amy');
    expect(
      choose(4, scores({ a: 4, b: 4 }), parseLoads({ a: 2, b: 2 }), { prefix: 1, queue: 0, inflightTokens: 0 }).worker,
    ).toBe('a');
    expect(
      choose(4, scores({ a: 1, b: 2 }), parseLoads({ a: 0, b: 0 }), { prefix: 0, queue: 0, inflightTokens: 0 }).worker,
    ).toBe('b');
  });

  it('explains the choice', () => {
    const hit = choose(
      256,
      scores({ d2: 250, d1: 10 }),
      parseLoads({ d1: { queue: 1, inflightTokens: 2000 }, d2: { queue: 3, inflightTokens: 1000 } }),
      DEFAULT_PICK_WEIGHTS,
    );
    expect(hit.reason).toBe(
      'd2: 250/256 leading blocks cached (97.7%), queue 3 (max 3), 1,000 in-flight tokens (max 2,000); value 0.227; next d1 (10 blocks cached, queue 1) value -0.628',
    );
    const cold = choose(4, scores({}), parseLoads({ only: 0 }), DEFAULT_PICK_WEIGHTS);
    expect(cold.reason).toMatch(
      /^only: no candidate holds this prompt's first block, least loaded, queue 0 \(max 0\), .*; the only candidate$/,
    );
    const load = choose(4, scores({ busy: 1 }), parseLoads({ busy: 9, free: 0 }), DEFAULT_PICK_WEIGHTS);
    expect(load.reason).toMatch(/^free: nothing cached, chosen for its load over cached candidates/);
    expect(choose(0, scores({}), parseLoads({ a: 0 }), DEFAULT_PICK_WEIGHTS).reason).toMatch(/it has no full block/);
  });

  it('rejects empty or malformed loads', () => {
    const bads: unknown[] = [
      {},
      new Map(),
      [],
      null,
      { a: -1 },
      { a: { queue: Number.NaN } },
      { a: { inflightTokens: '3' } },
      { a: 'x' },
    ];
    for (const bad of bads as Loads[]) {
      expect(() => parseLoads(bad)).toThrow(expect.objectContaining({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' }));
    }
  });
});
