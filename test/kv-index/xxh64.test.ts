import fc from 'fast-check';
import xxhash from 'xxhash-wasm';
import { describe, expect, it } from 'vitest';
import { xxh64, xxh64Words } from '../../lib/kv-index/xxh64.js';

const { h64Raw } = await xxhash();
const seedArb = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

describe('xxh64', () => {
  it('matches the published XXH64 test vectors', () => {
    const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
    expect(xxh64(enc('')).toString(16)).toBe('ef46db3751d8e999');
    expect(xxh64(enc('a')).toString(16)).toBe('d24ec4f1a98c6e5b');
    expect(xxh64(enc('abc')).toString(16)).toBe('44bc2cf5ad770999');
  });

  it('the reference agrees with xxhash-wasm (the C implementation) on any bytes and seed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), seedArb, (bytes, seed) => {
        expect(xxh64(bytes, seed)).toBe(h64Raw(bytes, seed));
      }),
      { numRuns: 2000 },
    );
  });

  it('the fast path agrees with the reference on any whole words and seed', () => {
    const out = new Uint32Array(2);
    fc.assert(
      fc.property(fc.uint32Array({ maxLength: 80 }), seedArb, (words, seed) => {
        xxh64Words(words, words.length, Number(seed >> 32n), Number(seed & 0xffffffffn), out);
        const bytes = new Uint8Array(words.length * 4);
        const view = new DataView(bytes.buffer);
        words.forEach((w, i) => view.setUint32(i * 4, w, true));
        expect((BigInt(out[0]!) << 32n) | BigInt(out[1]!)).toBe(xxh64(bytes, seed));
      }),
      { numRuns: 2000 },
    );
  });
});
