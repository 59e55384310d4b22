import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { BlockHasher, BlockKeyList, ROOT_LABEL, isBlockKey } from '../../lib/kv-index/hash.js';
import { xxh64 } from '../../lib/kv-index/xxh64.js';

// Fixed inputs and their keys. These values are the hash definition: if this test fails, keys
// changed and every index and engine that compares them must change together (a new ROOT_LABEL
// version). Never "fix" the expected values.
const T = Array.from({ length: 40 }, (_, i) => i * 1000 + 7);
const VECTORS: [
  string,
  ConstructorParameters<typeof BlockHasher>[0],
  Parameters<BlockHasher['keys']>[1],
  string,
  string[],
][] = [
  ['defaults', {}, undefined, 'd32daf4edea69f04', ['e7c536a3dc67ca91', '78df8d6ff37c75f1']],
  ['hashSeed 42', { hashSeed: 42 }, undefined, '2e5b8c9e026ae26a', ['0bf5c18465a7c514', '50539daa3212ab21']],
  [
    'blockSize 4',
    { blockSize: 4 },
    undefined,
    'd32daf4edea69f04',
    [
      '0d13cc02605812e3',
      'e5d5997936cbc358',
      '4d1f9b3ec6285a51',
      '988e22ec54d70167',
      'e57152c532b3d120',
      '8f25f8409aad5b44',
      '1ecd2f22d80cd3b5',
      '415de91f8602b314',
      '91abb4fc98c6baa7',
      '0c55c5c74ec6d24a',
    ],
  ],
  ['LoRA id 7', {}, { lora: 7 }, '3168584c5a4d82df', ['617409e9e18779ef', 'b34302bf89114319']],
  ['LoRA name', {}, { lora: 'sql-adapter' }, 'c3da67c89536bab6', ['ead4bc8094cd5382', 'caee7a17dfc2f4a0']],
  ['cache salt', {}, { salt: 'tenant-a' }, 'b8e76ca15e05f69d', ['8febdf01ce7bc878', 'd5fad2dc3f6a781d']],
];

const le64 = (hex: string): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(`0x${hex}`));
  return b;
};
const hex = (x: bigint): string => x.toString(16).padStart(16, '0');

describe('block keys', () => {
  it.each(VECTORS)('are fixed for known inputs (%s)', (_, options, extra, root, keys) => {
    const h = new BlockHasher(options);
    expect(h.rootFor(extra)).toBe(root);
    expect(h.keys(T, extra)).toEqual(keys);
    expect(h.keys(Uint32Array.from(T), extra)).toEqual(keys);
  });

  it('follow the documented definition byte for byte', () => {
    const h = new BlockHasher();
    const root = hex(xxh64(Buffer.from(ROOT_LABEL, 'utf8')));
    expect(h.root).toBe(root);
    let parent = root;
    const want: string[] = [];
    for (let b = 0; b < 2; b++) {
      const tokens = Buffer.alloc(64);
      for (let j = 0; j < 16; j++) tokens.writeUInt32LE(T[b * 16 + j]!, j * 4);
      parent = hex(xxh64(Buffer.concat([le64(parent), tokens])));
      want.push(parent);
    }
    expect(h.keys(T)).toEqual(want);
    // Extra keys: LE64(ROOT) ‖ 'L' 0x01 LE64(7) ‖ 'S' 0x02 LE32(len) utf8.
    const lora = Buffer.concat([Buffer.from([0x4c, 0x01]), le64('0000000000000007')]);
    const salt = Buffer.concat([Buffer.from([0x53, 0x02, 2, 0, 0, 0]), Buffer.from('ab')]);
    expect(h.rootFor({ lora: 7, salt: 'ab' })).toBe(hex(xxh64(Buffer.concat([le64(root), lora, salt]))));
    expect(h.rootFor({ lora: null, salt: undefined })).toBe(root);
  });

  it('are equal exactly up to the first block that differs', () => {
    const h = new BlockHasher({ blockSize: 4 });
    const toks = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 40 });
    fc.assert(
      fc.property(toks, toks, (a, b) => {
        const ka = h.keys(a),
          kb = h.keys(b);
        for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
          const same = a.slice(0, (i + 1) * 4).join() === b.slice(0, (i + 1) * 4).join();
          expect(ka[i] === kb[i]).toBe(same);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('continue a chain from its last key', () => {
    const h = new BlockHasher();
    const all = h.keys(T.slice(0, 32));
    expect(h.chain(all[0]!, T.slice(16, 32))).toEqual([all[1]]);
  });

  it('ignore a trailing partial block', () => {
    const h = new BlockHasher();
    expect(h.keys(T.slice(0, 39))).toEqual(h.keys(T.slice(0, 32)));
    expect(h.keys(T.slice(0, 15))).toEqual([]);
  });

  it.each([
    [[1, -1], /tokens\[1\] is -1/],
    [[1.5], /tokens\[0\] is 1.5/],
    [[2 ** 32], /tokens\[0\] is 4294967296/],
    [[Number.NaN], /tokens\[0\] is NaN/],
    [Array.from({ length: 17 }, (_, i) => (i === 16 ? -5 : i)), /tokens\[16\]/],
  ])('reject bad token ids with ERR_KVWIRE_INVALID_ARGUMENT (%#)', (tokens, message) => {
    const e = (() => {
      try {
        new BlockHasher().keys(tokens);
      } catch (x) {
        return x;
      }
      return undefined;
    })();
    expect(KvwireError.is(e, 'ERR_KVWIRE_INVALID_ARGUMENT')).toBe(true);
    expect((e as Error).message).toMatch(message);
  });

  it('reject bad settings, extras and parents with ERR_KVWIRE_INVALID_ARGUMENT', () => {
    const bad = [
      () => new BlockHasher({ blockSize: 0 }),
      () => new BlockHasher({ blockSize: 1.5 }),
      () => new BlockHasher({ hashSeed: -1 }),
      () => new BlockHasher({ hashSeed: 1n << 64n }),
      () => new BlockHasher().rootFor({ lora: -1 }),
      () => new BlockHasher().rootFor({ salt: 3 as never }),
      () => new BlockHasher().rootFor({ lora: true as never }),
      () => new BlockHasher().rootFor('x' as never),
      () => new BlockHasher().chain('xyz', T),
      () => new BlockHasher().keys(null as never),
    ];
    for (const f of bad) expect(f).toThrow(expect.objectContaining({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' }));
  });

  it('parse back from hex, refusing anything but 16 lowercase hex digits', () => {
    const keys = new BlockHasher().keys(T);
    const list = BlockKeyList.fromHex(keys);
    expect(list.hex).toEqual(keys);
    expect(new BlockKeyList(list.hi, list.lo).hex).toEqual(keys);
    for (const k of ['E7C536A3DC67CA91', 'e7c536a3dc67ca9', 'e7c536a3dc67ca911', 12, null]) {
      expect(isBlockKey(k)).toBe(false);
      expect(() => BlockKeyList.fromHex([keys[0]!, k as string])).toThrow(/keys\[1\] is .*not a block key/);
    }
  });
});
