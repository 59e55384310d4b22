import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import {
  KV_COMPATIBILITY_FIELD_NAMES,
  KvLayout,
  assertCompatible,
  canonicalCompatibilityJson,
  compatHash,
  compatibilityFields,
  firstDifferingField,
  kvPreset,
} from '../../lib/kv/index.js';

const llama3 = kvPreset('llama-3-8b');
const fieldsOf = (o: Partial<ConstructorParameters<typeof KvLayout>[0]> = {}, protocolVersion?: number) =>
  compatibilityFields(
    new KvLayout({ model: llama3, numBlocks: 64, ...o }),
    protocolVersion === undefined ? {} : { protocolVersion },
  );

describe('compatibility fields', () => {
  it('are the model shape, dtype, layout, block size and protocol version', () => {
    expect(fieldsOf()).toEqual({
      protocolVersion: 1,
      model: 'llama-3-8b',
      attention: 'mha',
      layers: 32,
      kvHeads: 8,
      headDim: 128,
      kvLoraRank: 0,
      qkRopeHeadDim: 0,
      dtype: 'bf16',
      kv: 'split',
      order: 'HND',
      blockTokens: 16,
    });
    expect(Object.keys(fieldsOf())).toEqual(KV_COMPATIBILITY_FIELD_NAMES);
    expect(compatibilityFields(new KvLayout({ model: kvPreset('deepseek-v3'), numBlocks: 4 }))).toMatchObject({
      attention: 'mla',
      kvHeads: 1,
      headDim: 576,
      kvLoraRank: 512,
      qkRopeHeadDim: 64,
      kv: 'latent',
    });
  });

  it('leave out what may differ between prefill and decode: TP size and rank, block count, arena alignment', () => {
    const base = compatHash(fieldsOf());
    expect(compatHash(fieldsOf({ tp: { size: 4, rank: 3 } }))).toBe(base);
    expect(compatHash(fieldsOf({ numBlocks: 9999 }))).toBe(base);
    expect(compatHash(fieldsOf({ arenaAlignment: 4096 }))).toBe(base);
  });

  it('hash as sha256 hex of canonical JSON: sorted keys, no whitespace', () => {
    const json = canonicalCompatibilityJson(fieldsOf());
    expect(json).toBe(
      '{"attention":"mha","blockTokens":16,"dtype":"bf16","headDim":128,"kv":"split","kvHeads":8,"kvLoraRank":0,' +
        '"layers":32,"model":"llama-3-8b","order":"HND","protocolVersion":1,"qkRopeHeadDim":0}',
    );
    expect(compatHash(fieldsOf())).toBe(createHash('sha256').update(json).digest('hex'));
    expect(compatHash(fieldsOf())).toMatch(/^[0-9a-f]{64}$/);
  });

  it('hash the same however the object was built, ignoring extra keys', () => {
    const f = fieldsOf();
    const shuffled = Object.fromEntries(
      Object.entries(f)
        .reverse()
        .concat([['extra', 1]]),
    ) as unknown as typeof f;
    expect(compatHash(shuffled)).toBe(compatHash(f));
  });

  it('hash differently when any field differs', () => {
    const variants = [
      fieldsOf({ model: { ...llama3, dtype: 'fp16' } }),
      fieldsOf({ blockTokens: 32 }),
      fieldsOf({ order: 'NHD' }),
      fieldsOf({ kv: 'joint' }),
      fieldsOf({ model: kvPreset('mistral-7b') }),
      fieldsOf({}, 2),
      fieldsOf({ model: { ...llama3, name: undefined } }),
    ];
    const hashes = new Set([fieldsOf(), ...variants].map(compatHash));
    expect(hashes.size).toBe(variants.length + 1);
  });
});

describe('comparing prefill and decode', () => {
  it('names the first field that differs, most fundamental first', () => {
    expect(firstDifferingField(fieldsOf(), fieldsOf())).toBeUndefined();
    expect(firstDifferingField(fieldsOf(), fieldsOf({ model: { ...llama3, dtype: 'fp16' } }))).toBe('dtype');
    expect(firstDifferingField(fieldsOf({}, 2), fieldsOf({ blockTokens: 8 }))).toBe('protocolVersion');
    expect(firstDifferingField(fieldsOf(), { ...fieldsOf(), kvHeads: undefined } as never)).toBe('kvHeads');
  });

  it('throws ERR_KVWIRE_INCOMPATIBLE saying what differs on each side', () => {
    try {
      assertCompatible(fieldsOf(), fieldsOf({ model: { ...llama3, dtype: 'fp16' } }));
      expect.unreachable();
    } catch (e) {
      expect(KvwireError.is(e, ErrorCode.INCOMPATIBLE)).toBe(true);
      expect((e as Error).message).toMatch(/^incompatible: dtype differs \(prefill bf16, decode fp16\)/);
      expect((e as KvwireError).details).toMatchObject({ field: 'dtype', prefill: 'bf16', decode: 'fp16' });
    }
    expect(() => assertCompatible(fieldsOf(), fieldsOf({ model: { ...llama3, name: undefined } }))).toThrowError(
      /model differs \(prefill llama-3-8b, decode <unnamed>\)/,
    );
    expect(() => assertCompatible(fieldsOf(), fieldsOf({ tp: { size: 2, rank: 1 } }))).not.toThrow();
  });
});
