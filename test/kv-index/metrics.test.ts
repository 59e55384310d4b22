import { describe, expect, it } from 'vitest';
import { KvIndex } from '../../lib/kv-index/index.js';
import { createRegistry } from '../../lib/metrics.js';
import { tokens } from './behaviour.js';

describe('index metrics', () => {
  it('counts lookups, hit blocks, keys, evictions, events and batches', async () => {
    const registry = createRegistry();
    const ix = await KvIndex.create({ registry, name: 'routing', maxKeys: 3, maxWorkersPerKey: 1 });
    const t = tokens(4);
    await ix.stored('a', ix.blockKeys(t).slice(0, 2), { seq: 1 }); // 2 keys
    await ix.stored('b', ix.blockKeys(t).slice(0, 1)); // holder of key 0 evicted (1 per key)
    await ix.stored('a', ix.blockKeys(tokens(2, 50))); // 4 keys > 3: one evicted
    await ix.stored('a', [], { seq: 1 }); // duplicate
    await ix.removed('a', [], { seq: 3 }); // buffered
    await ix.cleared('c');
    await ix.score(t); // 4 blocks, 1 hit
    await ix.score(tokens(2, 50)); // 2 blocks, 2 hits
    const text = await registry.metrics();
    const l = 'backend="memory",index="routing"';
    expect(text).toContain(`kvwire_index_lookups_total{${l}} 2`);
    expect(text).toContain(`kvwire_index_lookup_blocks_total{${l},result="hit"} 3`);
    expect(text).toContain(`kvwire_index_lookup_blocks_total{${l},result="miss"} 3`);
    expect(text).toContain(`kvwire_index_hit_ratio{${l}} 0.5`);
    expect(text).toContain(`kvwire_index_lookup_seconds_count{${l}} 2`);
    expect(text).toContain(`kvwire_index_keys{${l}} 3`);
    expect(text).toContain(`kvwire_index_evictions_total{${l},kind="key"} 1`);
    expect(text).toContain(`kvwire_index_evictions_total{${l},kind="holder"} 1`);
    expect(text).toContain(`kvwire_index_events_total{${l},type="stored"} 3`);
    expect(text).toContain(`kvwire_index_events_total{${l},type="cleared"} 1`);
    expect(text).toContain(`kvwire_index_event_batches_total{${l},status="applied"} 4`);
    expect(text).toContain(`kvwire_index_event_batches_total{${l},status="duplicate"} 1`);
    expect(text).toContain(`kvwire_index_event_batches_total{${l},status="buffered"} 1`);
    await ix.close();
    expect(await registry.metrics()).toContain(`kvwire_index_event_batches_total{${l},status="dropped"} 1`);
  });

  it('lets two indexes share a registry, told apart by their labels', async () => {
    const registry = createRegistry();
    const a = await KvIndex.create({ registry, name: 'a' });
    const b = await KvIndex.create({ registry, name: 'b' });
    await a.score(tokens(1));
    const text = await registry.metrics();
    expect(text).toContain('kvwire_index_lookups_total{backend="memory",index="a"} 1');
    expect(text).not.toContain('kvwire_index_lookups_total{backend="memory",index="b"}');
    await a.close();
    await b.close();
  });
});
