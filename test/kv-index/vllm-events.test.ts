import { describe, expect, it } from 'vitest';
import { BlockHasher } from '../../lib/kv-index/hash.js';
import { VllmEventTranslator } from '../../lib/kv-index/vllm-events.js';
import { tokens } from './behaviour.js';

const hasher = new BlockHasher();
const t = tokens(4);
const stored = (o: Record<string, unknown>): Record<string, unknown> => ({
  type: 'BlockStored',
  parent_block_hash: null,
  block_size: 16,
  lora_id: null,
  medium: 'GPU',
  ...o,
});

describe('VllmEventTranslator', () => {
  it('keys stored blocks from their tokens, chaining from the parent it saw before', () => {
    const v = new VllmEventTranslator(hasher);
    const all = hasher.keys(t);
    expect(v.translate('w', stored({ block_hashes: [11, 12], token_ids: t.slice(0, 32) }), 'e')).toEqual({
      events: [{ type: 'stored', keys: all.slice(0, 2), tier: 'gpu' }],
      unresolved: 0,
      ignored: 0,
    });
    // The parent as a decimal string is the same hash as the integer.
    expect(
      v.translate(
        'w',
        stored({ block_hashes: ['13', 14], parent_block_hash: '12', token_ids: t.slice(32), medium: 'CPU' }),
        'e',
      ).events,
    ).toEqual([{ type: 'stored', keys: all.slice(2), tier: 'cpu' }]);
    expect(v.remembered('w')).toBe(4);
    expect(v.translate('w', { type: 'BlockRemoved', block_hashes: [14, 99], medium: null }, 'e')).toEqual({
      events: [{ type: 'removed', keys: [all[3]] }],
      unresolved: 1,
      ignored: 0,
    });
  });

  it('uses lora_name (else lora_id) as the LoRA extra key of a chain without parent', () => {
    const v = new VllmEventTranslator(hasher);
    const byName = v.translate(
      'w',
      stored({ block_hashes: ['a'], token_ids: t.slice(0, 16), lora_id: 3, lora_name: 'sql' }),
      'e',
    );
    expect(byName.events).toEqual([
      { type: 'stored', keys: hasher.keys(t.slice(0, 16), { lora: 'sql' }), tier: 'gpu' },
    ]);
    const byId = v.translate('w', stored({ block_hashes: ['b'], token_ids: t.slice(0, 16), lora_id: 3 }), 'e');
    expect(byId.events).toEqual([{ type: 'stored', keys: hasher.keys(t.slice(0, 16), { lora: 3 }), tier: 'gpu' }]);
  });

  it('keeps a block known until it is removed from every medium it was stored in', () => {
    const v = new VllmEventTranslator(hasher);
    v.translate('w', stored({ block_hashes: [1], token_ids: t.slice(0, 16) }), 'e');
    v.translate('w', stored({ block_hashes: [1], token_ids: t.slice(0, 16), medium: 'cpu' }), 'e');
    expect(v.translate('w', { type: 'BlockRemoved', block_hashes: [1], medium: 'GPU' }, 'e').events).toEqual([
      { type: 'removed', keys: [hasher.keys(t)[0]], tier: 'gpu' },
    ]);
    expect(v.translate('w', { type: 'BlockRemoved', block_hashes: [1], medium: 'CPU' }, 'e').unresolved).toBe(0);
    expect(v.translate('w', { type: 'BlockRemoved', block_hashes: [1], medium: 'CPU' }, 'e').unresolved).toBe(1);
  });

  it('skips what it cannot key: unknown parents, per-block extra keys, other KV cache groups', () => {
    const v = new VllmEventTranslator(hasher);
    expect(
      v.translate('w', stored({ block_hashes: [5], parent_block_hash: 4, token_ids: t.slice(0, 16) }), 'e'),
    ).toEqual({ events: [], unresolved: 1, ignored: 0 });
    expect(
      v.translate(
        'w',
        stored({ block_hashes: [1, 2, 3], token_ids: t.slice(0, 48), extra_keys: [null, ['mm-hash'], null] }),
        'e',
      ),
    ).toEqual({
      events: [{ type: 'stored', keys: hasher.keys(t).slice(0, 1), tier: 'gpu' }],
      unresolved: 0,
      ignored: 2,
    });
    expect(v.translate('w', stored({ block_hashes: [7], token_ids: t.slice(0, 16), group_idx: 1 }), 'e')).toEqual({
      events: [],
      unresolved: 0,
      ignored: 1,
    });
  });

  it('accepts the older array form', () => {
    const v = new VllmEventTranslator(hasher);
    expect(v.translate('w', ['BlockStored', [1], null, t.slice(0, 16), 16, null, 'GPU'], 'e').events).toEqual([
      { type: 'stored', keys: hasher.keys(t).slice(0, 1), tier: 'gpu' },
    ]);
    expect(v.translate('w', ['BlockRemoved', [1], 'GPU'], 'e').events).toHaveLength(1);
    expect(v.translate('w', ['AllBlocksCleared'], 'e').events).toEqual([{ type: 'cleared' }]);
  });

  it('forgets a worker on AllBlocksCleared', () => {
    const v = new VllmEventTranslator(hasher);
    v.translate('w', stored({ block_hashes: [1, 2, 3], token_ids: t.slice(0, 48) }), 'e');
    v.translate('x', stored({ block_hashes: [1], token_ids: t.slice(0, 16) }), 'e');
    v.translate('w', { type: 'AllBlocksCleared' }, 'e');
    expect(v.remembered('w')).toBe(0);
    expect(v.remembered()).toBe(1);
  });

  it('bounds what it remembers over all workers, forgetting the least recently active worker first', () => {
    const v = new VllmEventTranslator(hasher, 4);
    v.translate('gone', stored({ block_hashes: [1, 2, 3], token_ids: t.slice(0, 48) }), 'e');
    v.translate('live', stored({ block_hashes: [1, 2], token_ids: t.slice(0, 32) }), 'e');
    expect(v.remembered()).toBe(4);
    expect(v.remembered('gone')).toBe(2);
    // The oldest hash of the idle worker went: a child of it is unresolved, its younger ones are not.
    expect(v.translate('gone', { type: 'BlockRemoved', block_hashes: [1, 2] }, 'e').unresolved).toBe(1);
    v.translate('live', stored({ block_hashes: [3, 4], parent_block_hash: 2, token_ids: t.slice(32) }), 'e');
    expect(v.remembered('live')).toBe(4);
    expect(v.remembered('gone')).toBe(0);
    expect(v.remembered()).toBe(4);
  });

  it.each<[string, unknown, RegExp]>([
    [
      'another block size',
      stored({ block_hashes: [1], token_ids: t.slice(0, 32), block_size: 32 }),
      /e\.block_size is 32 but the index's block size is 16: create the index with blockSize: 32/,
    ],
    [
      'too few tokens',
      stored({ block_hashes: [1, 2], token_ids: t.slice(0, 20) }),
      /e\.token_ids has 20 tokens: expected block_hashes.length × block_size = 32/,
    ],
    [
      'a hash beyond 2^53',
      stored({ block_hashes: [2 ** 60], token_ids: t.slice(0, 16) }),
      /e\.block_hashes\[0\] is .* beyond 2\^53.*send 64-bit block hashes as strings/,
    ],
    [
      'an unknown medium',
      stored({ block_hashes: [1], token_ids: t.slice(0, 16), medium: 'DISK' }),
      /e\.medium is "DISK"/,
    ],
    ['an unknown type', ['BlockMoved', [1]], /e\[0\] is "BlockMoved"/],
    ['a bad token', stored({ block_hashes: [1], token_ids: [...t.slice(0, 15), -1] }), /tokens\[15\] is -1/],
  ])('rejects %s with a message naming the field', (_, ev, message) => {
    expect(() => new VllmEventTranslator(hasher).translate('w', ev, 'e')).toThrow(message);
  });
});
