import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyTable } from '../../lib/kv-index/key-table.js';

/** Reads the LRU order, oldest first. */
function order(t: KeyTable): string[] {
  const out: string[] = [];
  for (let e = t.oldest(); e >= 0; e = t.newer(e)) out.push(`${t.keyHi(e)}:${t.keyLo(e)}`);
  return out;
}

describe('KeyTable', () => {
  it('finds, touches and removes like a Map in insertion order, through growth and heavy churn', () => {
    // Keys from a small space so that inserts, hits and deletes mix; up to ~3,000 live keys make
    // the table grow twice and form long probe runs that backward-shift deletion must repair.
    const key = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 4000 }));
    const op = fc.tuple(fc.constantFrom('insert', 'insert', 'insert', 'remove', 'touch'), key);
    fc.assert(
      fc.property(fc.array(op, { minLength: 4000, maxLength: 6000 }), (ops) => {
        const t = new KeyTable();
        const model = new Map<string, number>();
        let next = 0,
          most = 0;
        for (const [kind, [hi, lo]] of ops) {
          const name = `${hi}:${lo}`;
          const e = t.find(hi, lo);
          if (e >= 0 !== model.has(name))
            throw new Error(`find(${name}) is ${e} but the key is ${model.has(name) ? '' : 'not '}there`);
          if (kind === 'insert' && e < 0) {
            const n = t.insert(hi, lo);
            t.setHolders(n, [next, next + 1, next + 2].slice(0, next % 4), next % 4);
            model.set(name, next++);
            most = Math.max(most, model.size);
          } else if (kind === 'remove' && e >= 0) {
            t.remove(e);
            model.delete(name);
          } else if (kind === 'touch' && e >= 0) {
            t.touch(e);
            const v = model.get(name)!;
            model.delete(name);
            model.set(name, v);
          }
        }
        expect(most).toBeGreaterThan(1024); // the table grew at least once
        expect(t.size).toBe(model.size);
        expect(order(t)).toEqual([...model.keys()]);
        const buf: number[] = [];
        for (const [name, v] of model) {
          const [hi, lo] = name.split(':').map(Number) as [number, number];
          const e = t.find(hi, lo);
          expect(e).toBeGreaterThanOrEqual(0);
          const n = t.holders(e, buf);
          expect(buf.slice(0, n)).toEqual([v, v + 1, v + 2].slice(0, v % 4));
        }
      }),
      { numRuns: 25 },
    );
  });

  it('reuses freed entries and keeps long holder lists apart from short ones', () => {
    const t = new KeyTable();
    const a = t.insert(1, 1);
    t.setHolders(a, [10, 11, 12, 13], 4);
    t.setHolders(a, [10], 1);
    t.remove(a);
    const b = t.insert(2, 2);
    expect(b).toBe(a);
    expect(t.holderCount(b)).toBe(0);
    t.setHolders(b, [7, 8, 9], 3);
    const buf: number[] = [];
    expect(buf.slice(0, t.holders(b, buf))).toEqual([7, 8, 9]);
    expect(t.find(1, 1)).toBe(-1);
  });
});
