import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  KvIndex,
  startKvEventsServer,
  type KvEventsServer,
  type KvEventsServerOptions,
} from '../../lib/kv-index/index.js';
import { createRegistry } from '../../lib/metrics.js';
import { tokens } from './behaviour.js';

const open: { index: KvIndex; server: KvEventsServer }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.server.close();
    await o.index.close();
  }
});

async function serve(options: KvEventsServerOptions = {}): Promise<{ index: KvIndex; server: KvEventsServer }> {
  const index = await KvIndex.create({ registry: createRegistry() });
  const server = await startKvEventsServer(index, options);
  open.push({ index, server });
  return { index, server };
}

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

describe('KV events over HTTP', () => {
  it('applies posted events to the index', async () => {
    const { index, server } = await serve();
    const k = index.blockKeys(tokens(3));
    const r = await post(server.url, {
      worker: 'decode-0',
      events: [
        { type: 'stored', keys: k },
        { type: 'removed', keys: [k[2]], tier: 'gpu' },
      ],
    });
    expect(r).toMatchObject({ status: 200, body: { status: 'applied', events: 2, unresolved: 0, ignored: 0 } });
    expect(Object.fromEntries(await index.score(tokens(3)))).toEqual({ 'decode-0': 2 });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/kv-events$/);
  });

  it('orders numbered batches: 202 while one is missing, 200 duplicate on replay', async () => {
    const { index, server } = await serve();
    const k = index.blockKeys(tokens(1));
    expect((await post(server.url, { worker: 'w', seq: 1, events: [{ type: 'cleared' }] })).status).toBe(200);
    expect(await post(server.url, { worker: 'w', seq: 3, events: [{ type: 'removed', keys: k }] })).toMatchObject({
      status: 202,
      body: { status: 'buffered' },
    });
    expect((await post(server.url, { worker: 'w', seq: 2, events: [{ type: 'stored', keys: k }] })).status).toBe(200);
    expect(await index.holders(k[0]!)).toEqual([]);
    expect(await post(server.url, { worker: 'w', seq: 2, events: [{ type: 'stored', keys: k }] })).toMatchObject({
      status: 200,
      body: { status: 'duplicate' },
    });
  });

  it("accepts vLLM's KV events (a KVEventBatch), keyed from their tokens", async () => {
    const { index, server } = await serve();
    const t = tokens(3);
    const batch = {
      worker: 'vllm-0',
      seq: 0,
      ts: 1712.5,
      data_parallel_rank: 0,
      events: [
        {
          type: 'BlockStored',
          block_hashes: ['h1', 'h2'],
          parent_block_hash: null,
          token_ids: t.slice(0, 32),
          block_size: 16,
          lora_id: null,
          medium: 'GPU',
        },
        ['BlockStored', ['h3'], 'h2', t.slice(32), 16, null, 'GPU'],
        { type: 'BlockRemoved', block_hashes: ['h3', 'unknown'], medium: 'GPU' },
      ],
    };
    expect(await post(server.url, batch)).toMatchObject({
      status: 200,
      body: { status: 'applied', events: 3, unresolved: 1, ignored: 0 },
    });
    expect(Object.fromEntries(await index.score(t))).toEqual({ 'vllm-0': 2 });
    await post(server.url, { worker: 'vllm-0', seq: 1, events: [{ type: 'AllBlocksCleared' }] });
    expect(await index.score(t)).toEqual(new Map());
  });

  it.each<[string, unknown, RegExp]>([
    ['not JSON', '{"worker": ', /body is not valid JSON/],
    ['not an object', '[1,2]', /body is an array/],
    ['an unknown top-level field', { worker: 'w', events: [], sequence: 1 }, /unknown field 'sequence'/],
    ['no worker', { events: [] }, /worker is undefined/],
    ['events not a list', { worker: 'w', events: {} }, /events is an object/],
    [
      'a bad key',
      { worker: 'w', events: [{ type: 'stored', keys: ['00000000000000aa', 'zz'] }] },
      /events\[0\]\.keys\[1\] is "zz"/,
    ],
    [
      'an unknown event field',
      { worker: 'w', events: [{ type: 'stored', keys: [], tiers: 'gpu' }] },
      /events\[0\] has an unknown field 'tiers'/,
    ],
    ['an unknown tier', { worker: 'w', events: [{ type: 'stored', keys: [], tier: 'hbm' }] }, /tier is "hbm"/],
    ['a bad seq', { worker: 'w', seq: '3', events: [] }, /seq is "3"/],
    [
      'a vLLM event of another block size',
      {
        worker: 'w',
        events: [{ type: 'BlockStored', block_hashes: [1], parent_block_hash: null, token_ids: [], block_size: 64 }],
      },
      /block_size is 64/,
    ],
  ])('answers 400 to %s, applying nothing', async (_, body, message) => {
    const { index, server } = await serve();
    const r = await post(server.url, body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('ERR_KVWIRE_INVALID_ARGUMENT');
    expect(r.body.error.message).toMatch(message);
    expect((await index.stats()).keys).toBe(0);
  });

  it('answers 404, 405 and 415 to other paths, methods and content types', async () => {
    const { server } = await serve();
    const base = server.url.replace('/v1/kv-events', '');
    expect((await post(`${base}/v1/other`, { worker: 'w', events: [] })).status).toBe(404);
    const get = await fetch(server.url);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const text = await post(server.url, 'worker=w', { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.body.error.message).toMatch(/send application\/json/);
  });

  it('answers 413 to a body over the limit, declared or streamed', async () => {
    const { server } = await serve({ maxBodyBytes: 1000 });
    const big = { worker: 'w', events: [{ type: 'stored', keys: Array(100).fill('0000000000000000') }] };
    const declared = await post(server.url, big);
    expect(declared.status).toBe(413);
    expect(declared.body.error.code).toBe('ERR_KVWIRE_CAPACITY');
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = request(
        server.url,
        { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write(' '.repeat(100));
      req.end();
    });
    expect(streamed).toBe(413);
  });

  it('requires the bearer token when one is set', async () => {
    const { server } = await serve({ authToken: 's3cret' });
    const body = { worker: 'w', events: [] };
    const none = await post(server.url, body);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect((await post(server.url, body, { authorization: 'Bearer wrong!' })).status).toBe(401);
    expect((await post(server.url, body, { authorization: 'Bearer s3cret' })).status).toBe(200);
  });

  it('answers 503 with Retry-After once the index is closed', async () => {
    const { index, server } = await serve();
    await index.close();
    const r = await post(server.url, { worker: 'w', events: [] });
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.body.error.code).toBe('ERR_KVWIRE_CLOSED');
  });
});
