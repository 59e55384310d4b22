import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { metric, post } from './helpers.js';

// A decode whose prefill was SIGKILLed after answering follows --kv-load-failure-policy
// (vLLM's flag): recompute gives the right tokens, fail answers 5xx; no block is left pinned.
const PROMPT = 'The prefill worker that computed this prompt was killed before the decode pulled it.';
const body = { model: 'tiny', prompt: PROMPT, max_tokens: 10, temperature: 0, return_token_ids: true };

describe('--kv-load-failure-policy', () => {
  let both: EngineProcess;
  let recompute: EngineProcess;
  let fail: EngineProcess;
  beforeAll(async () => {
    [both, recompute, fail] = await Promise.all([
      startEngine({ role: 'both' }),
      startEngine({ role: 'decode', args: ['--kv-load-failure-policy', 'recompute'] }),
      startEngine({ role: 'decode', args: ['--kv-load-failure-policy', 'fail'] }),
    ]);
  });
  afterAll(async () => {
    expect(await Promise.all([both, recompute, fail].map((e) => e.stop()))).toEqual([0, 0, 0]);
  });

  async function paramsFromKilledPrefill(): Promise<unknown> {
    const prefill = await startEngine({ role: 'prefill' });
    const r = await post(`${prefill.url}/v1/completions`, {
      ...body,
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(r.status).toBe(200);
    expect(await prefill.stop('SIGKILL')).toBe('SIGKILL');
    return r.body.kv_transfer_params;
  }

  it('recompute: the right tokens, counted, nothing pinned', async () => {
    const ref = await post(`${both.url}/v1/completions`, body);
    const params = await paramsFromKilledPrefill();
    const r = await post(`${recompute.url}/v1/completions`, { ...body, kv_transfer_params: params });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.choices[0].token_ids).toEqual(ref.body.choices[0].token_ids);
    expect(r.body.usage.prompt_tokens_details.cached_tokens).toBe(0);
    expect(await metric(recompute.url, 'kvwire_engine_kv_load_failures_total', { policy: 'recompute' })).toBe(1);
    expect(await metric(recompute.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
  });

  it('fail: 500 with OpenAI error JSON, counted, nothing pinned, and the worker keeps serving', async () => {
    const params = await paramsFromKilledPrefill();
    const r = await post(`${fail.url}/v1/completions`, { ...body, kv_transfer_params: params });
    expect(r.status).toBe(500);
    expect(r.body.error.message).toMatch(/--kv-load-failure-policy is 'fail'/);
    expect(r.body.error.code).toBe(500);
    expect(await metric(fail.url, 'kvwire_engine_kv_load_failures_total', { policy: 'fail' })).toBe(1);
    expect(await metric(fail.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
    expect(await metric(fail.url, 'vllm:num_requests_running')).toBe(0);
    expect((await post(`${fail.url}/v1/completions`, body)).status).toBe(200);
  });

  it('a decode worker refuses to prefill, a prefill worker refuses to decode', async () => {
    const a = await post(`${recompute.url}/v1/completions`, {
      ...body,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(a.status).toBe(400);
    expect(a.body.error.message).toMatch(/--role decode/);
    const prefill = await startEngine({ role: 'prefill' });
    try {
      const params = (
        await post(`${prefill.url}/v1/completions`, {
          ...body,
          max_tokens: 1,
          kv_transfer_params: { do_remote_decode: true },
        })
      ).body.kv_transfer_params;
      const b = await post(`${prefill.url}/v1/completions`, { ...body, kv_transfer_params: params });
      expect(b.status).toBe(400);
      expect(b.body.error.message).toMatch(/--role prefill/);
      // The lease it holds is freed when it stops (SIGTERM drains and frees every lease).
      expect(await metric(prefill.url, 'kvwire_pd_leases_held')).toBe(1);
    } finally {
      expect(await prefill.stop()).toBe(0);
    }
  });
});
