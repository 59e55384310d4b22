// Property tests (fast-check) every backend must pass: run by memory.test.ts and redis.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockHasher, type KvIndex, type KvIndexOptions } from '../../lib/kv-index/index.js';
import { createRegistry } from '../../lib/metrics.js';
import type { MakeIndex } from './behaviour.js';
import { IndexModel, type Tier } from './model.js';

const WORKERS = ['w0', 'w1', 'w2', 'w3'];
const hasher = new BlockHasher({ blockSize: 2 });

/** A prompt: 1 to 5 blocks, each one of three contents, so prompts share prefixes often. */
const promptArb = fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 5 });
const keysOf = (p: number[]): string[] => hasher.keys(p.flatMap((b) => [b, b]));

const workerArb = fc.constantFrom(...WORKERS);
const tierArb = fc.constantFrom<Tier>('gpu', 'cpu');
/** Which blocks of a prompt an event names: all, a suffix, or with holes (engines report any set). */
const pickArb = fc.array(fc.boolean(), { minLength: 5, maxLength: 5 });

type Op =
  | { op: 'stored'; w: string; p: number[]; pick: boolean[]; tier: Tier }
  | { op: 'removed'; w: string; p: number[]; pick: boolean[]; tier: Tier | undefined }
  | { op: 'cleared'; w: string }
  | { op: 'removeWorker'; w: string }
  | { op: 'acquire'; w: string; p: number[] }
  | { op: 'release'; w: string; p: number[] }
  | { op: 'score'; p: number[]; filter: string[] | undefined }
  | { op: 'compact' };

const opArb = (withPins: boolean): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        op: fc.constant('stored' as const),
        w: workerArb,
        p: promptArb,
        pick: pickArb,
        tier: tierArb,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant('removed' as const),
        w: workerArb,
        p: promptArb,
        pick: pickArb,
        tier: fc.option(tierArb, { nil: undefined }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('cleared' as const), w: workerArb }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('removeWorker' as const), w: workerArb }) },
    {
      weight: withPins ? 2 : 0,
      arbitrary: fc.record({ op: fc.constant('acquire' as const), w: workerArb, p: promptArb }),
    },
    {
      weight: withPins ? 2 : 0,
      arbitrary: fc.record({ op: fc.constant('release' as const), w: workerArb, p: promptArb }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('score' as const),
        p: promptArb,
        filter: fc.option(fc.subarray(WORKERS), { nil: undefined }),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ op: 'compact' as const }) },
  );

const chosen = (p: number[], pick: boolean[]): string[] => keysOf(p).filter((_, i) => pick[i]);

async function run(ix: KvIndex, o: Op): Promise<Map<string, number> | undefined> {
  switch (o.op) {
    case 'stored':
      await ix.stored(o.w, chosen(o.p, o.pick), { tier: o.tier });
      return undefined;
    case 'removed':
      await ix.removed(o.w, chosen(o.p, o.pick), o.tier === undefined ? {} : { tier: o.tier });
      return undefined;
    case 'cleared':
      await ix.cleared(o.w);
      return undefined;
    case 'removeWorker':
      await ix.removeWorker(o.w);
      return undefined;
    case 'acquire':
      await ix.acquire(o.w, keysOf(o.p));
      return undefined;
    case 'release':
      await ix.release(o.w, keysOf(o.p));
      return undefined;
    case 'score':
      return ix.scoreKeys(keysOf(o.p), o.filter);
    case 'compact':
      await ix.compact();
      return undefined;
  }
}

function runModel(m: IndexModel, o: Op, weights: Record<Tier, number>): Map<string, number> | undefined {
  switch (o.op) {
    case 'stored':
      m.apply(o.w, undefined, [{ type: 'stored', keys: chosen(o.p, o.pick), tier: o.tier }]);
      return undefined;
    case 'removed':
      m.apply(o.w, undefined, [
        { type: 'removed', keys: chosen(o.p, o.pick), ...(o.tier === undefined ? {} : { tier: o.tier }) },
      ]);
      return undefined;
    case 'cleared':
      m.apply(o.w, undefined, [{ type: 'cleared' }]);
      return undefined;
    case 'removeWorker':
      m.removeWorker(o.w);
      return undefined;
    case 'acquire':
      m.acquire(o.w, keysOf(o.p));
      return undefined;
    case 'release':
      m.release(o.w, keysOf(o.p));
      return undefined;
    case 'score':
      return m.score(keysOf(o.p), o.filter, weights);
    case 'compact':
      m.compact();
      return undefined;
  }
}

/** Every key the ops can name. */
function universe(ops: Op[]): string[] {
  const all = new Set<string>();
  for (const o of ops) if ('p' in o) for (const k of keysOf(o.p)) all.add(k);
  return [...all].sort();
}

export function describeProperties(name: string, make: MakeIndex, numRuns: number): void {
  describe(`KvIndex properties (${name})`, () => {
    const fresh = (o: KvIndexOptions): Promise<KvIndex> => make({ registry: createRegistry(), blockSize: 2, ...o });

    it('behaves exactly like the reference model, operation by operation', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(true), { minLength: 1, maxLength: 40 }),
          fc.integer({ min: 1, max: 12 }),
          fc.integer({ min: 1, max: 3 }),
          async (ops, maxKeys, maxWorkersPerKey) => {
            const weights = { gpu: 1, cpu: 0.5 };
            const ix = await fresh({ maxKeys, maxWorkersPerKey, tierWeights: weights });
            const model = new IndexModel(maxKeys, maxWorkersPerKey);
            try {
              for (const o of ops) {
                const got = await run(ix, o);
                const want = runModel(model, o, weights);
                if (want !== undefined) expect(Object.fromEntries(got!)).toEqual(Object.fromEntries(want));
                expect(await ix.stats()).toEqual({ ...model.stats(), pendingBatches: 0 });
              }
              for (const k of universe(ops)) expect(await ix.holders(k)).toEqual(model.holders(k));
            } finally {
              await ix.close();
            }
          },
        ),
        { numRuns },
      );
    });

    it('never holds more than maxKeys keys nor maxWorkersPerKey workers per key (no pins)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(false), { minLength: 1, maxLength: 40 }),
          fc.integer({ min: 1, max: 10 }),
          fc.integer({ min: 1, max: 3 }),
          async (ops, maxKeys, maxWorkersPerKey) => {
            const ix = await fresh({ maxKeys, maxWorkersPerKey });
            try {
              for (const o of ops) {
                await run(ix, o);
                expect((await ix.stats()).keys).toBeLessThanOrEqual(maxKeys);
              }
              for (const k of universe(ops)) expect((await ix.holders(k)).length).toBeLessThanOrEqual(maxWorkersPerKey);
            } finally {
              await ix.close();
            }
          },
        ),
        { numRuns },
      );
    });

    it('never scores a worker above the real length of its cached prefix', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(true), { minLength: 1, maxLength: 40 }),
          promptArb,
          fc.integer({ min: 1, max: 12 }),
          async (ops, probe, maxKeys) => {
            const ix = await fresh({ maxKeys, maxWorkersPerKey: 2 });
            // Ground truth: what each worker holds according to its events, with no bound at all.
            const truth = new Map<string, Set<string>>(WORKERS.map((w) => [w, new Set()]));
            try {
              for (const o of ops) {
                await run(ix, o);
                if (o.op === 'stored') for (const k of chosen(o.p, o.pick)) truth.get(o.w)!.add(k);
                if (o.op === 'removed' && o.tier === undefined)
                  for (const k of chosen(o.p, o.pick)) truth.get(o.w)!.delete(k);
                if (o.op === 'cleared' || o.op === 'removeWorker') truth.get(o.w)!.clear();
              }
              const keys = keysOf(probe);
              const scores = await ix.scoreKeys(keys);
              for (const [w, s] of scores) {
                let real = 0;
                while (real < keys.length && truth.get(w)!.has(keys[real]!)) real++;
                expect(s).toBeLessThanOrEqual(real);
                expect(s).toBeGreaterThan(0);
              }
            } finally {
              await ix.close();
            }
          },
        ),
        { numRuns },
      );
    });

    it('scores exactly the cached prefix length when nothing is evicted (GPU only)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ w: workerArb, p: promptArb, pick: pickArb }), { minLength: 1, maxLength: 20 }),
          promptArb,
          async (stores, probe) => {
            const ix = await fresh({});
            try {
              const truth = new Map<string, Set<string>>(WORKERS.map((w) => [w, new Set()]));
              for (const s of stores) {
                await ix.stored(s.w, chosen(s.p, s.pick));
                for (const k of chosen(s.p, s.pick)) truth.get(s.w)!.add(k);
              }
              const keys = keysOf(probe);
              const scores = await ix.scoreKeys(keys, WORKERS);
              for (const w of WORKERS) {
                let real = 0;
                while (real < keys.length && truth.get(w)!.has(keys[real]!)) real++;
                expect(scores.get(w)).toBe(real);
              }
            } finally {
              await ix.close();
            }
          },
        ),
        { numRuns },
      );
    });

    it('removeWorker removes the worker from every key and every score', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb(true), { minLength: 1, maxLength: 30 }), workerArb, async (ops, gone) => {
          const ix = await fresh({ maxKeys: 1000 });
          try {
            for (const o of ops) await run(ix, o);
            await ix.removeWorker(gone);
            for (const k of universe(ops)) {
              expect((await ix.holders(k)).map((h) => h.worker)).not.toContain(gone);
            }
            for (const o of ops) {
              if ('p' in o) expect((await ix.scoreKeys(keysOf(o.p))).has(gone)).toBe(false);
            }
            expect((await ix.scoreKeys(keysOf([0, 1, 2]), [gone])).get(gone)).toBe(0);
          } finally {
            await ix.close();
          }
        }),
        { numRuns },
      );
    });
  });
}
