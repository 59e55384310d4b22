// The behaviour every backend must have: run by memory.test.ts and redis.test.ts, unchanged.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { KvIndex, type KvIndexOptions } from '../../lib/kv-index/index.js';
import { createRegistry } from '../../lib/metrics.js';

/** Creates an index of the backend under test; each call must return an empty, independent index. */
export type MakeIndex = (options?: KvIndexOptions) => Promise<KvIndex>;

/** Token ids of `blocks` blocks of 16 tokens, block i made of `base + i`. */
export function tokens(blocks: number, base = 0): number[] {
  return Array.from({ length: blocks * 16 }, (_, t) => base + Math.floor(t / 16));
}

export function describeBehaviour(name: string, make: MakeIndex): void {
  describe(`KvIndex behaviour (${name})`, () => {
    const open: KvIndex[] = [];
    const index = async (o: KvIndexOptions = {}): Promise<KvIndex> => {
      const i = await make({ registry: createRegistry(), ...o });
      open.push(i);
      return i;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((i) => i.close()));
    });

    it('scores each worker by the consecutive leading blocks it holds', async () => {
      const ix = await index();
      const t = tokens(4);
      const k = ix.blockKeys(t);
      await ix.stored('all', k);
      await ix.stored('half', k.slice(0, 2));
      await ix.stored('holey', [k[0]!, k[1]!, k[3]!]);
      await ix.stored('no-head', k.slice(1));
      const s = await ix.score(t);
      expect(Object.fromEntries(s)).toEqual({ all: 4, half: 2, holey: 2 });
      expect(Object.fromEntries(await ix.scoreKeys(k))).toEqual({ all: 4, half: 2, holey: 2 });
    });

    it('counts a block by the best tier the worker holds it in', async () => {
      const ix = await index({ tierWeights: { cpu: 0.5 } });
      const t = tokens(4);
      const k = ix.blockKeys(t);
      await ix.stored('w', k, { tier: 'cpu' });
      expect((await ix.score(t)).get('w')).toBe(2);
      await ix.stored('w', k.slice(0, 2), { tier: 'gpu' });
      expect((await ix.score(t)).get('w')).toBe(3);
      expect(await ix.holders(k[0]!)).toEqual([{ worker: 'w', tiers: ['gpu', 'cpu'] }]);
      await ix.removed('w', [k[0]!], { tier: 'cpu' });
      expect(await ix.holders(k[0]!)).toEqual([{ worker: 'w', tiers: ['gpu'] }]);
      await ix.removed('w', [k[1]!], { tier: 'gpu' });
      expect((await ix.score(t)).get('w')).toBe(2.5);
      await ix.removed('w', [k[0]!]);
      expect(await ix.score(t)).toEqual(new Map());
    });

    it('scores only the given workers, and reports each of them', async () => {
      const ix = await index();
      const t = tokens(3);
      await ix.stored('a', ix.blockKeys(t));
      await ix.stored('b', ix.blockKeys(t));
      expect(Object.fromEntries(await ix.score(t, ['b', 'z']))).toEqual({ b: 3, z: 0 });
      expect(Object.fromEntries(await ix.score(t, new Set(['a'])))).toEqual({ a: 3 });
      expect(await ix.score(tokens(3, 100))).toEqual(new Map());
      expect(await ix.score([])).toEqual(new Map());
    });

    it('keeps LoRA adapters and cache salts apart', async () => {
      const ix = await index();
      const t = tokens(2);
      await ix.stored('w', ix.blockKeys(t, { lora: 7 }));
      expect(await ix.score(t)).toEqual(new Map());
      expect((await ix.score(t, undefined, { lora: 7 })).get('w')).toBe(2);
      expect(await ix.score(t, undefined, { lora: 7, salt: 'tenant-b' })).toEqual(new Map());
    });

    it('cleared drops every block of the worker, which stays known', async () => {
      const ix = await index();
      const t = tokens(3);
      await ix.stored('a', ix.blockKeys(t));
      await ix.stored('b', ix.blockKeys(t).slice(0, 1));
      await ix.cleared('a');
      expect(Object.fromEntries(await ix.score(t))).toEqual({ b: 1 });
      expect((await ix.stats()).workers).toBe(2);
      await ix.stored('a', ix.blockKeys(t).slice(0, 2));
      expect(Object.fromEntries(await ix.score(t))).toEqual({ a: 2, b: 1 });
    });

    it('removeWorker forgets the worker everywhere: blocks, sequence numbers, pins', async () => {
      const ix = await index();
      const t = tokens(3);
      const k = ix.blockKeys(t);
      await ix.stored('a', k, { seq: 5 });
      await ix.stored('b', k);
      await ix.acquire('a', k);
      expect((await ix.stats()).pinnedKeys).toBe(3);
      await ix.removeWorker('a');
      expect(Object.fromEntries(await ix.score(t))).toEqual({ b: 3 });
      for (const key of k) expect((await ix.holders(key)).map((h) => h.worker)).toEqual(['b']);
      expect(await ix.stats()).toMatchObject({ workers: 1, pinnedKeys: 0 });
      // A restarted engine numbers its batches from scratch.
      expect((await ix.stored('a', k, { seq: 0 })).status).toBe('applied');
    });

    it('evicts least recently used keys beyond maxKeys, a chain losing its tail first', async () => {
      const ix = await index({ maxKeys: 4 });
      const a = tokens(4),
        b = tokens(2, 100);
      await ix.stored('w', ix.blockKeys(a));
      const r = await ix.stored('w', ix.blockKeys(b));
      expect(r).toEqual({ status: 'applied', evictedKeys: 2, evictedHolders: 0 });
      expect((await ix.stats()).keys).toBe(4);
      expect((await ix.score(a)).get('w')).toBe(2);
      expect((await ix.score(b)).get('w')).toBe(2);
    });

    it('a lookup refreshes the blocks it hits, so a hot prefix outlives a cold one', async () => {
      const ix = await index({ maxKeys: 4 });
      const hot = tokens(2),
        cold = tokens(2, 100),
        fresh = tokens(2, 200);
      await ix.stored('w', ix.blockKeys(hot));
      await ix.stored('w', ix.blockKeys(cold));
      await ix.score(hot);
      await ix.stored('w', ix.blockKeys(fresh));
      expect((await ix.score(hot)).get('w')).toBe(2);
      expect((await ix.score(cold)).get('w')).toBeUndefined();
    });

    it('bounds the workers recorded per key, dropping the least recently stored', async () => {
      const ix = await index({ maxWorkersPerKey: 2 });
      const k = ix.blockKeys(tokens(1));
      await ix.stored('a', k);
      await ix.stored('b', k);
      await ix.stored('a', k);
      const r = await ix.stored('c', k);
      expect(r.evictedHolders).toBe(1);
      expect((await ix.holders(k[0]!)).map((h) => h.worker)).toEqual(['a', 'c']);
    });

    it('never evicts a pinned block, until it is released', async () => {
      const ix = await index({ maxKeys: 2, maxWorkersPerKey: 1 });
      const leased = ix.blockKeys(tokens(1));
      await ix.stored('p', leased);
      await ix.acquire('p', leased);
      await ix.acquire('p', leased);
      for (let i = 1; i <= 5; i++) await ix.stored('p', ix.blockKeys(tokens(1, i * 10)));
      await ix.stored('q', leased);
      expect((await ix.holders(leased[0]!)).map((h) => h.worker)).toEqual(['p']);
      await ix.release('p', leased);
      await ix.stored('p', ix.blockKeys(tokens(1, 99)));
      expect(await ix.holders(leased[0]!)).toHaveLength(1);
      await ix.release('p', leased);
      await ix.release('p', leased); // one too many: ignored
      await ix.stored('p', ix.blockKeys(tokens(1, 98)));
      await ix.stored('p', ix.blockKeys(tokens(1, 97)));
      expect(await ix.holders(leased[0]!)).toEqual([]);
      expect((await ix.stats()).pinnedKeys).toBe(0);
    });

    it('applies numbered batches in order and once, waiting for a missing one', async () => {
      const ix = await index();
      const [k1, k2, k3] = [ix.blockKeys(tokens(1, 1)), ix.blockKeys(tokens(1, 2)), ix.blockKeys(tokens(1, 3))];
      expect((await ix.stored('w', k1, { seq: 1 })).status).toBe('applied');
      expect((await ix.stored('w', k1, { seq: 1 })).status).toBe('duplicate');
      expect((await ix.removed('w', k1, { seq: 3 })).status).toBe('buffered');
      expect((await ix.stats()).pendingBatches).toBe(1);
      expect(await ix.holders(k1[0]!)).toHaveLength(1);
      expect((await ix.stored('w', k2, { seq: 2 })).status).toBe('applied');
      // 3 ran right after 2: k1 is gone.
      expect(await ix.holders(k1[0]!)).toEqual([]);
      expect(await ix.holders(k2[0]!)).toHaveLength(1);
      expect((await ix.stats()).pendingBatches).toBe(0);
      expect((await ix.stored('w', k3, { seq: 3 })).status).toBe('duplicate');
      expect(await ix.holders(k3[0]!)).toEqual([]);
    });

    it('skips a gap that stays open longer than gapTimeoutMs', async () => {
      const ix = await index({ gapTimeoutMs: 20 });
      const k = ix.blockKeys(tokens(1));
      await ix.cleared('w', { seq: 10 });
      expect((await ix.stored('w', k, { seq: 12 })).status).toBe('buffered');
      await vi.waitFor(async () => expect(await ix.holders(k[0]!)).toHaveLength(1), { timeout: 5_000, interval: 10 });
      expect((await ix.cleared('w', { seq: 11 })).status).toBe('duplicate');
    });

    it('skips a gap when more than maxPendingBatches wait behind it', async () => {
      const ix = await index({ maxPendingBatches: 2, gapTimeoutMs: 3_600_000 });
      const k = [1, 2, 3].map((i) => ix.blockKeys(tokens(1, i)));
      await ix.cleared('w', { seq: 0 });
      expect((await ix.stored('w', k[0]!, { seq: 2 })).status).toBe('buffered');
      expect((await ix.stored('w', k[1]!, { seq: 3 })).status).toBe('buffered');
      expect(await ix.holders(k[0]![0]!)).toEqual([]);
      expect((await ix.stored('w', k[2]!, { seq: 5 })).status).toBe('buffered');
      // Three waiting > 2: 2 and 3 were applied (1 skipped); 5 still waits for 4.
      expect(await ix.holders(k[0]![0]!)).toHaveLength(1);
      expect(await ix.holders(k[1]![0]!)).toHaveLength(1);
      expect(await ix.holders(k[2]![0]!)).toEqual([]);
      expect((await ix.stats()).pendingBatches).toBe(1);
    });

    it('applies a batch in order: stored, cleared, stored leaves only the last', async () => {
      const ix = await index();
      const a = ix.blockKeys(tokens(1, 1)),
        b = ix.blockKeys(tokens(1, 2));
      await ix.apply('w', [{ type: 'stored', keys: a }, { type: 'cleared' }, { type: 'stored', keys: b, tier: 'cpu' }]);
      expect(await ix.holders(a[0]!)).toEqual([]);
      expect(await ix.holders(b[0]!)).toEqual([{ worker: 'w', tiers: ['cpu'] }]);
    });

    it('keeps call order for unnumbered events issued without waiting', async () => {
      const ix = await index();
      const k = ix.blockKeys(tokens(2));
      const done = [ix.stored('w', k), ix.removed('w', k.slice(1)), ix.stored('v', k), ix.cleared('v')];
      const score = ix.score(tokens(2));
      await Promise.all(done);
      expect(Object.fromEntries(await score)).toEqual({ w: 1 });
    });

    it('compact deletes what removed and cleared workers left behind', async () => {
      const ix = await index();
      const k = ix.blockKeys(tokens(3));
      await ix.stored('a', k);
      await ix.stored('b', k.slice(0, 1));
      await ix.removeWorker('a');
      expect((await ix.stats()).keys).toBe(3);
      expect(await ix.compact()).toBe(2);
      expect((await ix.stats()).keys).toBe(1);
      expect(await ix.holders(k[0]!)).toEqual([{ worker: 'b', tiers: ['gpu'] }]);
    });

    it('rejects a malformed batch whole, applying nothing', async () => {
      const ix = await index();
      const k = ix.blockKeys(tokens(1));
      const bad = ix.apply('w', [
        { type: 'stored', keys: k },
        { type: 'stored', keys: ['NOT-A-KEY'] },
      ]);
      await expect(bad).rejects.toMatchObject({
        code: 'ERR_KVWIRE_INVALID_ARGUMENT',
        message: expect.stringMatching(/events\[1\]\.keys\[0\]/),
      });
      expect(await ix.holders(k[0]!)).toEqual([]);
      await expect(ix.stored('', k)).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
      await expect(ix.stored('w', k, { tier: 'disk' as never })).rejects.toMatchObject({
        code: 'ERR_KVWIRE_INVALID_ARGUMENT',
      });
      await expect(ix.stored('w', k, { seq: -1 })).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
      await expect(ix.score([1, -2])).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
      await expect(ix.pick(tokens(1), {})).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
      expect((await ix.stats()).keys).toBe(0);
    });

    it('picks the cached worker unless it is much busier, and says why', async () => {
      const ix = await index();
      const t = tokens(8);
      await ix.stored('cached', ix.blockKeys(t));
      const p = await ix.pick(t, { cached: { queue: 4 }, idle: { queue: 0 } });
      expect(p.worker).toBe('cached');
      expect(p.reason).toMatch(/^cached: 8\/8 leading blocks cached/);
      const cold = await ix.pick(tokens(8, 50), { cached: { queue: 4 }, idle: { queue: 0 } });
      expect(cold.worker).toBe('idle');
      expect(cold.reason).toMatch(/no candidate holds/);
    });

    it('fails every call after close with ERR_KVWIRE_CLOSED', async () => {
      const ix = await index();
      const k = ix.blockKeys(tokens(1));
      await ix.close();
      await ix.close();
      for (const call of [
        () => ix.stored('w', k),
        () => ix.score(tokens(1)),
        () => ix.removeWorker('w'),
        () => ix.stats(),
        () => ix.pick(tokens(1), { w: 0 }),
      ]) {
        const e = await call().then(
          () => undefined,
          (x: unknown) => x,
        );
        expect(KvwireError.is(e, 'ERR_KVWIRE_CLOSED')).toBe(true);
      }
      expect(ix.blockKeys(tokens(1))).toEqual(k);
    });
  });
}
