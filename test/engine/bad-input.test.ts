import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { metric, post, type ApiAnswer } from './helpers.js';

// Malformed requests get 4xx with OpenAI's error JSON and the worker keeps serving; a client that
// goes away mid-stream frees its sequence; a full queue answers 429 with Retry-After.
const ok = { model: 'tiny', prompt: 'hello there', max_tokens: 4, temperature: 0 };

const BAD_COMPLETIONS: [string, unknown][] = [
  ['not an object', [1, 2, 3]],
  ['a string body', 'hello'],
  ['null body', null],
  ['no prompt', { model: 'tiny', max_tokens: 4 }],
  ['prompt is a number', { ...ok, prompt: 42 }],
  ['prompt is an object', { ...ok, prompt: { text: 'x' } }],
  ['empty prompt', { ...ok, prompt: '' }],
  ['empty prompt array', { ...ok, prompt: [] }],
  ['two prompts', { ...ok, prompt: ['a', 'b'] }],
  ['negative token id', { ...ok, prompt: [1, -5, 3] }],
  ['fractional token id', { ...ok, prompt: [1, 2.5] }],
  ['max_tokens negative', { ...ok, max_tokens: -1 }],
  ['max_tokens zero', { ...ok, max_tokens: 0 }],
  ['max_tokens huge', { ...ok, max_tokens: 1e12 }],
  ['max_tokens a string', { ...ok, max_tokens: '10' }],
  ['max_tokens fractional', { ...ok, max_tokens: 2.5 }],
  ['max_tokens beyond the context', { ...ok, max_tokens: 4095 }],
  ['temperature a string', { ...ok, temperature: 'hot' }],
  ['temperature negative', { ...ok, temperature: -1 }],
  ['temperature too high', { ...ok, temperature: 9 }],
  ['top_p zero', { ...ok, top_p: 0 }],
  ['top_k fractional', { ...ok, top_k: 1.5 }],
  ['stream a string', { ...ok, stream: 'yes' }],
  ['stream_options without stream', { ...ok, stream_options: { include_usage: true } }],
  ['stop a number', { ...ok, stop: 7 }],
  ['stop empty string', { ...ok, stop: [''] }],
  ['n = 2', { ...ok, n: 2 }],
  ['logprobs', { ...ok, logprobs: 3 }],
  ['presence_penalty', { ...ok, presence_penalty: 0.5 }],
  ['model a number', { ...ok, model: 7 }],
  ['kv_transfer_params a string', { ...ok, kv_transfer_params: 'pull' }],
  ['kv_transfer_params flag a string', { ...ok, kv_transfer_params: { do_remote_prefill: 'true' } }],
  ['kv_transfer_params both flags', { ...ok, kv_transfer_params: { do_remote_prefill: true, do_remote_decode: true } }],
  ['do_remote_prefill without fields', { ...ok, kv_transfer_params: { do_remote_prefill: true } }],
  [
    'do_remote_prefill with bad block ids',
    {
      ...ok,
      kv_transfer_params: {
        do_remote_prefill: true,
        do_remote_decode: false,
        remote_engine_id: 'p',
        remote_request_id: 'r',
        remote_block_ids: [-1, 'x'],
        remote_host: '127.0.0.1',
        remote_port: 1,
        tp_size: 1,
      },
    },
  ],
  [
    'do_remote_prefill with the wrong block count',
    {
      ...ok,
      kv_transfer_params: {
        do_remote_prefill: true,
        do_remote_decode: false,
        remote_engine_id: 'p',
        remote_request_id: 'r',
        remote_block_ids: [0, 1, 2, 3, 4, 5, 6],
        remote_host: '127.0.0.1',
        remote_port: 1,
        tp_size: 1,
        remote_lease_slot: 0,
        remote_lease_token: 1,
      },
    },
  ],
];

const BAD_CHAT: [string, unknown][] = [
  ['no messages', { model: 'tiny', max_tokens: 4 }],
  ['empty messages', { model: 'tiny', messages: [] }],
  ['message not an object', { model: 'tiny', messages: ['hi'] }],
  ['unknown role', { model: 'tiny', messages: [{ role: 'wizard', content: 'hi' }] }],
  ['content a number', { model: 'tiny', messages: [{ role: 'user', content: 5 }] }],
  [
    'image content',
    { model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
  ],
  [
    'max_completion_tokens negative',
    { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: -3 },
  ],
];

describe('bad input', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngine({ role: 'both', args: ['--max-batch-size', '1', '--max-queue', '1'] });
  });
  afterAll(async () => expect(await engine.stop()).toBe(0));

  const expectOpenAiError = (r: { status: number; body: ApiAnswer }, status: number): void => {
    expect(r.status).toBe(status);
    expect(r.body).toMatchObject({ error: { message: expect.any(String), type: expect.any(String), code: status } });
    expect(r.body.error).toHaveProperty('param');
  };

  it(`${BAD_COMPLETIONS.length + BAD_CHAT.length} malformed bodies get 400 with OpenAI error JSON, and the worker keeps serving`, async () => {
    expect(BAD_COMPLETIONS.length + BAD_CHAT.length).toBeGreaterThanOrEqual(30);
    for (const [what, body] of BAD_COMPLETIONS) {
      const r = await post(`${engine.url}/v1/completions`, typeof body === 'string' ? JSON.stringify(body) : body);
      expect(r.status, what).toBe(400);
      expectOpenAiError(r, 400);
    }
    for (const [what, body] of BAD_CHAT) {
      const r = await post(`${engine.url}/v1/chat/completions`, body);
      expect(r.status, `${what}: ${JSON.stringify(r.body)}`).toBe(400);
      expectOpenAiError(r, 400);
    }
    const good = await post(`${engine.url}/v1/completions`, ok);
    expect(good.status).toBe(200);
  });

  it('bodies that are not JSON or not UTF-8, other models, methods and paths', async () => {
    expectOpenAiError(await post(`${engine.url}/v1/completions`, '{"model": "tiny", "prompt": '), 400);
    const latin1 = Buffer.concat([
      Buffer.from('{"model":"tiny","prompt":"caf'),
      Buffer.from([0xe9, 0xff]),
      Buffer.from('"}'),
    ]);
    const r = await fetch(`${engine.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: latin1,
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as ApiAnswer).error.message).toMatch(/UTF-8/);
    expectOpenAiError(await post(`${engine.url}/v1/completions`, { ...ok, model: 'other' }), 404);
    expectOpenAiError(await post(`${engine.url}/v1/nothing`, ok), 404);
    const get = await fetch(`${engine.url}/v1/completions`);
    expect(get.status).toBe(405);
    expect(((await get.json()) as ApiAnswer).error.code).toBe(405);
    const text = await fetch(`${engine.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'x',
    });
    expect(text.status).toBe(415);
    expect((await post(`${engine.url}/v1/completions`, ok)).status).toBe(200);
  });

  it('a 10 MB body gets 413 and the worker keeps serving', async () => {
    const big = JSON.stringify({ ...ok, prompt: 'x'.repeat(10 * 1024 * 1024) });
    const r = await post(`${engine.url}/v1/completions`, big);
    expectOpenAiError(r, 413);
    expect((await post(`${engine.url}/v1/completions`, ok)).status).toBe(200);
    // Streamed in chunks, with no content-length: refused once past the limit, answered after the body.
    const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 64) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const chunked = await fetch(`${engine.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as ApiAnswer).error.code).toBe(413);
    expect((await post(`${engine.url}/v1/completions`, ok)).status).toBe(200);
  });

  it('bad kv_transfer_params are refused naming the field', async () => {
    const r = await post(`${engine.url}/v1/completions`, {
      ...ok,
      kv_transfer_params: { do_remote_prefill: true, remote_engine_id: 5 },
    });
    expectOpenAiError(r, 400);
    expect(r.body.error.param).toMatch(/kv_transfer_params/);
  });

  it('a client that disconnects mid-stream frees its sequence', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = request(
        `${engine.url}/v1/completions`,
        { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          res.once('data', () => {
            req.destroy(); // gone after the first chunk
            resolve();
          });
        },
      );
      req.on('error', () => undefined);
      req.end(JSON.stringify({ ...ok, max_tokens: 3000, stream: true }));
      setTimeout(() => reject(new Error('no chunk')), 30_000);
    });
    for (let i = 0; i < 200; i++) {
      if ((await metric(engine.url, 'vllm:num_requests_running')) === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await metric(engine.url, 'vllm:num_requests_running')).toBe(0);
    expect(await metric(engine.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
    expect(await metric(engine.url, 'vllm:request_success_total', { finished_reason: 'abort' })).toBe(1);
    expect((await post(`${engine.url}/v1/completions`, ok)).status).toBe(200);
  });

  it('a full queue answers 429 with Retry-After, never an unbounded queue', async () => {
    // One slot, one queue place: of three long requests at once, one waits, one is refused.
    const long = { ...ok, max_tokens: 4000 };
    const results = await Promise.all([0, 1, 2].map(() => post(`${engine.url}/v1/completions`, long)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 429]);
    const refused = results.find((r) => r.status === 429)!;
    expect(refused.headers.get('retry-after')).toBe('1');
    expectOpenAiError(refused, 429);
    expect(await metric(engine.url, 'kvwire_engine_requests_rejected_total', { reason: 'queue_full' })).toBe(1);
  });
});
