/**
 * What the engine tells a client about a request besides the tokens: a Server-Timing header (the
 * prefill's queue, compute and KV store; the decode's queue, KV pull with its bytes, KV load and
 * compute) and, with `return_token_ids` on a stream, the token ids chunk by chunk (vLLM's shape).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverTimingHeader } from '../../lib/engine/http/server-timing.js';
import { parseServerTiming } from '../../lib/system/server-timing.js';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { post, prompts } from './helpers.js';

describe('the Server-Timing header value', () => {
  it('names entries by the mode the request ran in and carries the pull', () => {
    expect(serverTimingHeader({})).toBeUndefined();
    expect(serverTimingHeader({ mode: 'plain', queueMs: 0.123, computeMs: 12.345 })).toBe(
      'queue;dur=0.12, compute;dur=12.35',
    );
    expect(serverTimingHeader({ mode: 'prefill', queueMs: 1, computeMs: 20, storeMs: 3 })).toBe(
      'prefill-queue;dur=1, prefill-compute;dur=20, prefill-kv-store;dur=3',
    );
    expect(
      serverTimingHeader({
        mode: 'decode',
        queueMs: 0,
        pullMs: 4.5,
        pullBytes: 8192,
        pullBlocks: 2,
        transport: 'sm',
        handshakeMs: 30,
        transferMs: 2.25,
        pullQueueMs: 0,
        loadMs: 2,
        computeMs: 1,
      }),
    ).toBe(
      'decode-queue;dur=0, decode-kv-pull;dur=4.5;bytes=8192;blocks=2;transfer=2.25;transport=sm;handshake=30, decode-kv-load;dur=2, decode-compute;dur=1',
    );
    expect(serverTimingHeader({ mode: 'decode', pullMs: 9, recompute: 'ERR_KVWIRE_PEER_LOST', computeMs: 5 })).toBe(
      'decode-kv-pull;dur=9, decode-recompute;desc="ERR_KVWIRE_PEER_LOST", decode-compute;dur=5',
    );
  });
});

describe('an engine answer', () => {
  let both: EngineProcess;
  let prefill: EngineProcess;
  let decode: EngineProcess;
  beforeAll(async () => {
    [both, prefill, decode] = await Promise.all([
      startEngine({ role: 'both' }),
      startEngine({ role: 'prefill' }),
      startEngine({ role: 'decode' }),
    ]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([both, prefill, decode].filter(Boolean).map((e) => e.stop()));
  });

  it("P/D: the prefill and the decode time their stages; the streamed token ids equal the single worker's", async () => {
    const prompt = prompts(1)[0]!;
    const body = { model: 'tiny', prompt, max_tokens: 12, temperature: 0, return_token_ids: true };
    const p = await post(`${prefill.url}/v1/completions`, {
      ...body,
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(p.status).toBe(200);
    expect(parseServerTiming(p.headers.get('server-timing')).map((e) => e.name)).toEqual([
      'prefill-queue',
      'prefill-compute',
      'prefill-kv-store',
    ]);
    const r = await fetch(`${decode.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, stream: true, kv_transfer_params: p.body.kv_transfer_params }),
    });
    const t = parseServerTiming(r.headers.get('server-timing'));
    expect(t.map((e) => e.name)).toEqual(['decode-queue', 'decode-kv-pull', 'decode-kv-load', 'decode-compute']);
    const pull = t[1]!;
    expect(pull.dur).toBeGreaterThan(0);
    expect(Number(pull.params['blocks'])).toBe(Math.ceil(p.body.prompt_token_ids.length / 16));
    expect(Number(pull.params['bytes'])).toBe(Number(pull.params['blocks']) * 16 * 256); // tiny: 256 B per token
    const chunks = (await r.text())
      .split('\n\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as { prompt_token_ids?: number[]; choices: { token_ids: number[] }[] });
    expect(chunks[0]!.prompt_token_ids).toEqual(p.body.prompt_token_ids);
    expect(chunks.slice(1).every((c) => c.prompt_token_ids === undefined)).toBe(true);
    const streamed = chunks.flatMap((c) => c.choices[0]!.token_ids);
    const reference = await post(`${both.url}/v1/completions`, body);
    expect(reference.body.choices[0]!.token_ids).toHaveLength(12);
    expect(streamed).toEqual(reference.body.choices[0]!.token_ids);
    expect(parseServerTiming(reference.headers.get('server-timing')).map((e) => e.name)).toEqual(['queue', 'compute']);
  });

  it('a stream without return_token_ids carries no ids', async () => {
    const r = await fetch(`${both.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: 'hello there', max_tokens: 3, temperature: 0, stream: true }),
    });
    const text = await r.text();
    expect(text).not.toContain('token_ids');
    expect(r.headers.get('server-timing')).toMatch(/^queue;dur=[\d.]+, (kv-load;dur=[\d.]+, )?compute;dur=[\d.]+$/);
  });
});
