import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { KvIndex, type KvIndexOptions } from '../../lib/kv-index/index.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../../tools/redis-server.js';
import { createRegistry } from '../../lib/metrics.js';
import { describeBehaviour, tokens } from './behaviour.js';
import { describeProperties } from './properties.js';

// A real redis-server, started here. If it is not installed this fails (CI installs it): the Redis
// backend is never silently untested.
let server: RedisServerHandle;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

let n = 0;
/** Each index gets its own key prefix: independent indexes on one server. */
const make = (o: KvIndexOptions = {}): Promise<KvIndex> =>
  KvIndex.create({ backend: 'redis', ...o, redis: { url: server.url, prefix: `t${process.pid}-${n++}:`, ...o.redis } });

describeBehaviour('redis', make);
// KVWIRE_PROPERTY_RUNS=1000 npx vitest run test/kv-index for a deeper search.
describeProperties('redis', make, Number(process.env.KVWIRE_PROPERTY_RUNS ?? 25));

describe('redis backend', () => {
  it('shares one index between replicas: events through one are scores through the other', async () => {
    const prefix = `shared-${n++}:`;
    const a = await make({ redis: { prefix } });
    const b = await make({ redis: { prefix } });
    const t = tokens(4);
    await a.stored('decode-0', a.blockKeys(t));
    expect(Object.fromEntries(await b.score(t))).toEqual({ 'decode-0': 4 });
    // Sequence numbers are shared too: a replay through the other replica is a duplicate.
    expect((await a.cleared('decode-1', { seq: 1 })).status).toBe('applied');
    expect((await b.cleared('decode-1', { seq: 1 })).status).toBe('duplicate');
    await b.removeWorker('decode-0');
    expect(await a.score(t)).toEqual(new Map());
    await a.close();
    await b.close();
  });

  it('refuses to share a prefix with an index of other settings', async () => {
    const prefix = `settings-${n++}:`;
    const a = await make({ redis: { prefix }, blockSize: 16 });
    const err = await make({ redis: { prefix }, blockSize: 32 }).catch((e: unknown) => e);
    expect(KvwireError.is(err, 'ERR_KVWIRE_INCOMPATIBLE')).toBe(true);
    expect((err as Error).message).toMatch(/blockSize 16, this one has 32/);
    await a.close();
  });

  it('closes its connection when Redis refuses the settings check (here: out of memory)', async () => {
    const probe = new Redis(server.url);
    const clients = async (): Promise<number> =>
      Number(/connected_clients:(\d+)/.exec(await probe.info('clients'))![1]);
    const before = await clients();
    await probe.config('SET', 'maxmemory', '1');
    try {
      const err = await make().catch((e: unknown) => e);
      expect(KvwireError.is(err, 'ERR_KVWIRE_BACKEND_UNAVAILABLE')).toBe(true);
      expect((err as Error).message).toMatch(/failed to check the index settings: OOM/);
      await new Promise((r) => setTimeout(r, 50));
      expect(await clients()).toBe(before);
    } finally {
      await probe.config('SET', 'maxmemory', '0');
      probe.disconnect();
    }
  });

  it('reports an unreachable Redis as ERR_KVWIRE_BACKEND_UNAVAILABLE, and the memory default carries on', async () => {
    const memory = await KvIndex.create({ registry: createRegistry() });
    await memory.stored('w', memory.blockKeys(tokens(2)));
    const port = await freePort();
    const err = await KvIndex.create({
      backend: 'redis',
      registry: createRegistry(),
      redis: { url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 1_000 },
    }).catch((e: unknown) => e);
    expect(KvwireError.is(err, 'ERR_KVWIRE_BACKEND_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toMatch(
      new RegExp(`could not connect to Redis at redis://127\\.0\\.0\\.1:${port}.*ECONNREFUSED.*backend: 'memory'`),
    );
    expect(Object.fromEntries(await memory.score(tokens(2)))).toEqual({ w: 2 });
    await memory.close();
  }, 10_000);

  it('turns a Redis that dies under it into ERR_KVWIRE_BACKEND_UNAVAILABLE, without hanging', async () => {
    const own = await startRedisServer();
    const ix = await KvIndex.create({
      backend: 'redis',
      registry: createRegistry(),
      redis: { url: own.url, commandTimeoutMs: 500 },
    });
    await ix.stored('w', ix.blockKeys(tokens(2)));
    await own.stop();
    for (const call of [() => ix.score(tokens(2)), () => ix.stored('w', ix.blockKeys(tokens(1))), () => ix.stats()]) {
      const e = await call().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(KvwireError.is(e, 'ERR_KVWIRE_BACKEND_UNAVAILABLE')).toBe(true);
      expect((e as Error).message).toMatch(/Redis at redis:\/\/127\.0\.0\.1:\d+\/? failed to/);
    }
    await ix.close();
  }, 20_000);

  it('scores a 256-block prompt with one script call (one round trip)', async () => {
    const ix = await make();
    const t = tokens(256);
    await ix.stored('w', ix.blockKeys(t));
    const probe = new Redis(server.url);
    const calls = async (): Promise<number> => {
      const m = /cmdstat_evalsha:calls=(\d+)/.exec(await probe.info('commandstats'));
      return Number(m?.[1] ?? 0);
    };
    const before = await calls();
    expect((await ix.score(t)).get('w')).toBe(256);
    expect(await calls()).toBe(before + 1);
    probe.disconnect();
    await ix.close();
  });
});
