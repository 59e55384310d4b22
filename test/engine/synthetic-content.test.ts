import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { KvLayout, type ModelShape } from '../../lib/kv/index.js';
import { blockHashes, generateTokens, verifyBlock, writeBlock } from '../../lib/engine/runtimes/synthetic/content.js';

const model: ModelShape = { name: 'm', attention: 'mha', layers: 2, kvHeads: 4, headDim: 8, dtype: 'fp16' };

function views(layout: KvLayout): Uint8Array[] {
  return layout.tensors.map((t) => new Uint8Array(t.bytes));
}

describe('fake KV content', () => {
  it('chains block hashes: a shared prefix has the same hashes, a different token changes every later one', () => {
    const a = blockHashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4);
    const b = blockHashes([1, 2, 3, 4, 5, 6, 7, 8, 10], 4);
    const c = blockHashes([1, 2, 3, 0, 5, 6, 7, 8, 9], 4);
    expect(a.map((h) => h.full)).toEqual([true, true, false]);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(b[2]!.key).not.toBe(a[2]!.key);
    expect(c.every((h, i) => h.key !== a[i]!.key)).toBe(true);
    // A partial block never hashes like a full one holding the same tokens.
    expect(blockHashes([1, 2, 3], 4)[0]!.key).not.toBe(blockHashes([1, 2, 3, 0], 4)[0]!.key);
  });

  it('writes the same bytes for a head whatever the TP layout, and verifies them', () => {
    const whole = new KvLayout({ model, numBlocks: 4 });
    const half = new KvLayout({ model, numBlocks: 4, tp: { size: 2, rank: 1 } });
    const w = views(whole);
    const h = views(half);
    writeBlock(whole, w, 2, 1234);
    writeBlock(half, h, 3, 1234);
    // Heads 2..3 of the whole block (HND: contiguous) equal rank 1's block.
    const slice = whole.blockBytes / 2;
    expect(
      Buffer.compare(
        w[0]!.subarray(2 * whole.blockBytes + slice, 3 * whole.blockBytes),
        h[0]!.subarray(3 * half.blockBytes, 4 * half.blockBytes),
      ),
    ).toBe(0);
    expect(verifyBlock(whole, w, 2, 1234, 't')).toBe(whole.bytesPerBlock);
    expect(verifyBlock(half, h, 3, 1234, 't')).toBe(half.bytesPerBlock);
  });

  it('detects one flipped byte, and the wrong content', () => {
    const layout = new KvLayout({ model, numBlocks: 2, order: 'NHD', kv: 'joint' });
    const v = views(layout);
    writeBlock(layout, v, 1, 99);
    expect(() => verifyBlock(layout, v, 1, 98, 't')).toThrow(KvwireError);
    v[1]![layout.blockBytes + 77]! ^= 1;
    try {
      verifyBlock(layout, v, 1, 99, 'request x');
      throw new Error('expected a throw');
    } catch (e) {
      expect(KvwireError.is(e, ErrorCode.CORRUPTED)).toBe(true);
      expect((e as Error).message).toMatch(/request x: block 1 of kv-L1 \(rank 0\), head 0, token 1 /);
    }
  });

  it('generates deterministic tokens', () => {
    expect(generateTokens(7, 4)).toEqual(generateTokens(7, 4));
    expect(generateTokens(7, 4)).not.toEqual(generateTokens(8, 4));
    expect(generateTokens(7, 4).every((t) => t >= 0 && t < 32_000)).toBe(true);
  });
});
