import { describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { BlockHasher, KvIndex, type KvIndexOptions } from '../../lib/kv-index/index.js';
import { createRegistry } from '../../lib/metrics.js';
import { tokens } from './behaviour.js';

describe('KvIndex.create', () => {
  it.each<[string, KvIndexOptions]>([
    ['an unknown backend', { backend: 'disk' as never }],
    ['maxKeys 0', { maxKeys: 0 }],
    ['maxWorkersPerKey 256', { maxWorkersPerKey: 256 }],
    ['a tier weight of 0', { tierWeights: { cpu: 0 } }],
    ['a tier weight above 1', { tierWeights: { gpu: 1.5 } }],
    ['a negative pick weight', { pickWeights: { queue: -1 } }],
    ['gapTimeoutMs 0.5', { gapTimeoutMs: 0.5 }],
    ['blockSize 0', { blockSize: 0 }],
    ['options that are not an object', 'memory' as never],
  ])('rejects %s with ERR_KVWIRE_INVALID_ARGUMENT', async (_, options) => {
    const e = await KvIndex.create(
      options === ('memory' as never) ? options : { registry: createRegistry(), ...options },
    ).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(KvwireError.is(e, 'ERR_KVWIRE_INVALID_ARGUMENT')).toBe(true);
  });

  it('hashes with its block size and seed', async () => {
    const ix = await KvIndex.create({ registry: createRegistry(), blockSize: 8, hashSeed: 7n });
    expect(ix.blockSize).toBe(8);
    expect(ix.blockKeys(tokens(2))).toEqual(new BlockHasher({ blockSize: 8, hashSeed: 7 }).keys(tokens(2)));
    expect(ix.blockKeys(tokens(2))).toHaveLength(4);
    await ix.close();
  });

  it('rejects a workers filter that is not a list of names', async () => {
    const ix = await KvIndex.create({ registry: createRegistry() });
    await expect(ix.score(tokens(1), 'w1' as never)).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
    await expect(ix.score(tokens(1), [''])).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
    expect(await ix.score(tokens(1), new Map([['w1', 1]]).keys())).toEqual(new Map([['w1', 0]]));
    await expect(ix.apply('w', 'stored' as never)).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
    await expect(ix.apply('w', [{ type: 'evicted' } as never])).rejects.toThrow(
      /events\[0\]\.type is "evicted": use 'stored', 'removed' or 'cleared'/,
    );
    await expect(ix.holders('nope')).rejects.toMatchObject({ code: 'ERR_KVWIRE_INVALID_ARGUMENT' });
    await ix.close();
  });

  it('scores with the LoRA of the request through pick too', async () => {
    const ix = await KvIndex.create({ registry: createRegistry() });
    const t = tokens(4);
    await ix.stored('lora-worker', ix.blockKeys(t, { lora: 'sql' }));
    expect((await ix.pick(t, { 'lora-worker': 5, other: 0 })).worker).toBe('other');
    expect((await ix.pick(t, { 'lora-worker': 5, other: 0 }, { extra: { lora: 'sql' } })).worker).toBe('lora-worker');
    await ix.close();
  });
});
