import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { KvIndex, type KvIndexOptions } from '../../lib/kv-index/index.js';
import { startRedisCluster, type RedisClusterHandle } from '../../tools/redis-cluster.js';
import { createRegistry } from '../../lib/metrics.js';
import { describeBehaviour, tokens } from './behaviour.js';

// A real Redis Cluster of three masters (Debian's redis-server), started and stopped here. If
// redis-server is missing this fails (CI installs it): the cluster backend is never silently untested.
let cluster: RedisClusterHandle;
beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3 });
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

let n = 0;
/** Each index gets its own hash-tagged prefix, so indexes land on different masters. */
const make = (o: KvIndexOptions = {}): Promise<KvIndex> =>
  KvIndex.create({
    backend: 'redis-cluster',
    ...o,
    redis: { nodes: cluster.nodes, prefix: `{t${process.pid}-${n++}}:`, ...o.redis },
  });

describeBehaviour('redis-cluster', make);

describe('redis-cluster backend', () => {
  it("keeps an index in its hash tag's slot, spreads indexes over the masters, shares one between replicas", async () => {
    const prefixes = Array.from({ length: 12 }, (_, i) => `{spread-${process.pid}-${i}}:`);
    const indexes = await Promise.all(prefixes.map((prefix) => make({ redis: { prefix } })));
    await Promise.all(indexes.map((ix) => ix.stored('w', ix.blockKeys(tokens(2)))));
    const probe = new Cluster(cluster.nodes.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })));
    const owners = new Set<string>();
    for (const prefix of prefixes) {
      const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', `${prefix}meta`));
      const slots = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      owners.add(String(slots.find(([a, b]) => slot >= a && slot <= b)![2][1]));
    }
    expect(owners.size).toBeGreaterThan(1);
    // A second replica on the same prefix sees the first one's events.
    const a = indexes[0]!;
    const b = await make({ redis: { prefix: prefixes[0] } });
    expect(Object.fromEntries(await b.score(tokens(2)))).toEqual({ w: 2 });
    expect((await a.cleared('x', { seq: 1 })).status).toBe('applied');
    expect((await b.cleared('x', { seq: 1 })).status).toBe('duplicate');
    probe.disconnect();
    await Promise.all([...indexes, b].map((ix) => ix.close()));
  });

  it('refuses a prefix without a hash tag, and reports an unreachable cluster at once', async () => {
    const e1 = await make({ redis: { prefix: 'plain:' } }).catch((e: unknown) => e);
    expect(KvwireError.is(e1, 'ERR_KVWIRE_INVALID_ARGUMENT')).toBe(true);
    expect((e1 as Error).message).toMatch(/no hash tag/);
    const e2 = await KvIndex.create({
      backend: 'redis-cluster',
      registry: createRegistry(),
      redis: { nodes: ['redis://127.0.0.1:1'], connectTimeoutMs: 1_000 },
    }).catch((e: unknown) => e);
    expect(KvwireError.is(e2, 'ERR_KVWIRE_BACKEND_UNAVAILABLE')).toBe(true);
    expect((e2 as Error).message).toMatch(/could not connect to Redis Cluster/);
  }, 20_000);
});
