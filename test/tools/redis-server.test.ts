import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { startRedisServer } from '../../tools/redis-server.js';

describe('startRedisServer', () => {
  it('starts a throwaway redis-server that answers, and stops it', async () => {
    const srv = await startRedisServer();
    const c = new Redis(srv.url);
    expect(await c.ping()).toBe('PONG');
    expect(await c.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
    c.disconnect();
    await srv.stop();
    expect(srv.child.exitCode !== null || srv.child.signalCode !== null).toBe(true);
  });

  it('says clearly when redis-server is not installed', async () => {
    const e = await startRedisServer({ bin: '/nonexistent/redis-server' }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(KvwireError.is(e, 'ERR_KVWIRE_UNSUPPORTED')).toBe(true);
    expect((e as Error).message).toMatch(/not installed .*apt-get install redis-server/);
  });
});
