import { describe, expect, it } from 'vitest';
import { KvIndex } from '../../lib/kv-index/index.js';
import { createRegistry } from '../../lib/metrics.js';
import { describeBehaviour, tokens } from './behaviour.js';
import { describeProperties } from './properties.js';

const make = (o = {}): Promise<KvIndex> => KvIndex.create({ backend: 'memory', ...o });

describeBehaviour('memory', make);
// KVWIRE_PROPERTY_RUNS=5000 npx vitest run test/kv-index for a deeper search.
describeProperties('memory', make, Number(process.env.KVWIRE_PROPERTY_RUNS ?? 150));

describe('memory backend', () => {
  it('is the default backend', async () => {
    const ix = await KvIndex.create({ registry: createRegistry() });
    expect(ix.backend).toBe('memory');
    await ix.close();
  });

  it('holds a large index (growth and rehashing keep every key findable)', async () => {
    const ix = await KvIndex.create({ registry: createRegistry(), maxKeys: 50_000 });
    const prompts = Array.from({ length: 300 }, (_, i) => tokens(200, i * 1000));
    for (const [i, p] of prompts.entries()) await ix.stored(`w${i % 7}`, ix.blockKeys(p));
    expect((await ix.stats()).keys).toBe(50_000);
    // The newest prompts are whole; the oldest were evicted, tails first.
    expect((await ix.score(prompts[299]!)).get('w5')).toBe(200);
    expect((await ix.score(prompts[0]!)).size).toBe(0);
    await ix.close();
  });
});
