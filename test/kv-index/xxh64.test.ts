import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { xxh64, xxh64Halves } from '../../lib/kv-index/xxh64.js';

const seedArb = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

describe('xxh64', () => {
  it('matches the published XXH64 test vectors', () => {
    const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
    expect(xxh64(enc('')).toString(16)).toBe('ef46db3751d8e999');
    expect(xxh64(enc('a')).toString(16)).toBe('d24ec4f1a98c6e5b');
    expect(xxh64(enc('abc')).toString(16)).toBe('44bc2cf5ad770999');
    expect(xxh64(enc('abc'), 1n << 64n)).toBe(xxh64(enc('abc'))); // the seed is taken mod 2^64
  });

  it('the halves are the high and low 32 bits of the hash, for any bytes and seed', () => {
    const out = new Uint32Array(2);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), seedArb, (bytes, seed) => {
        xxh64Halves(bytes, seed, out);
        expect((BigInt(out[0]!) << 32n) | BigInt(out[1]!)).toBe(xxh64(bytes, seed));
      }),
      { numRuns: 500 },
    );
  });
});
