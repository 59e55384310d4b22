import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { metric, post, prompts } from './helpers.js';

// The synthetic runtime at Llama-3-8B's KV shape (4 of its 32 layers to keep CI's memory small;
// the block layout per layer is the real one): P/D output equals --role both, every byte of every
// pulled or cached block is checked on the decode side, and a decode that discards the KV fails
// its check instead of answering.
const PROMPTS = prompts(20, 11);
const synthetic = (extra: string[] = []): string[] => [
  '--runtime',
  'synthetic',
  '--layers',
  '4',
  '--num-blocks',
  '256',
  '--transports',
  'tcp',
  ...extra,
];

describe('synthetic runtime, P/D', () => {
  let both: EngineProcess;
  let prefill: EngineProcess;
  let decode: EngineProcess;
  let blind: EngineProcess;
  beforeAll(async () => {
    [both, prefill, decode, blind] = await Promise.all([
      startEngine({ role: 'both', model: 'llama-3-8b', args: synthetic() }),
      startEngine({ role: 'prefill', model: 'llama-3-8b', args: synthetic() }),
      startEngine({ role: 'decode', model: 'llama-3-8b', args: synthetic() }),
      startEngine({
        role: 'decode',
        model: 'llama-3-8b',
        args: synthetic(['--debug-discard-pulled-kv', '--kv-load-failure-policy', 'fail']),
      }),
    ]);
  }, 120_000);
  afterAll(async () => {
    expect(await Promise.all([both, prefill, decode, blind].map((e) => e.stop()))).toEqual([0, 0, 0, 0]);
  });

  it('equals --role both token for token, every byte checked', async () => {
    const body = (prompt: string) => ({
      model: 'llama-3-8b',
      prompt,
      max_tokens: 8,
      temperature: 0,
      return_token_ids: true,
    });
    for (const prompt of PROMPTS) {
      const ref = await post(`${both.url}/v1/completions`, body(prompt));
      const p = await post(`${prefill.url}/v1/completions`, {
        ...body(prompt),
        max_tokens: 1,
        kv_transfer_params: { do_remote_decode: true },
      });
      const d = await post(`${decode.url}/v1/completions`, {
        ...body(prompt),
        kv_transfer_params: p.body.kv_transfer_params,
      });
      expect(d.status, JSON.stringify(d.body)).toBe(200);
      expect(d.body.choices[0].token_ids).toEqual(ref.body.choices[0].token_ids);
      const n = await post(`${prefill.url}/v1/completions`, {
        ...body(prompt),
        max_tokens: 1,
        kv_transfer_params: { do_remote_decode: true },
      });
      const bad = await post(`${blind.url}/v1/completions`, {
        ...body(prompt),
        kv_transfer_params: n.body.kv_transfer_params,
      });
      expect(bad.status).toBe(500);
      expect(bad.body.error.message).toMatch(/discarded|does not hold the bytes/);
    }
    // 2 MiB per block at 32 layers; here 4 layers: 256 KiB per block moved per remote block.
    const bytes = await metric(decode.url, 'kvwire_pd_transfer_bytes_total');
    const blocks = await metric(decode.url, 'kvwire_pd_blocks_total', { source: 'remote' });
    expect(bytes).toBe(blocks * 16 * 8 * 128 * 2 * 2 * 4);
    expect(await metric(prefill.url, 'kvwire_pd_leases_held')).toBe(0);
    expect(await metric(blind.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
    expect(await metric(decode.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
  }, 300_000);
});
