import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { metric, post, prompts, type ApiAnswer } from './helpers.js';

// Greedy output through a prefill worker and a decode worker (separate processes, KV pulled over
// UCX) equals a single --role both worker's, token for token; a decode that ignores the pulled KV
// differs. Requests run one at a time so every worker evaluates the same batch shapes.
const PROMPTS = prompts(50);
const MAX_TOKENS = 12;

async function complete(url: string, prompt: string, extra: Record<string, unknown> = {}): Promise<ApiAnswer> {
  const r = await post(`${url}/v1/completions`, {
    model: 'tiny',
    prompt,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    return_token_ids: true,
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

async function disaggregated(prefill: string, decode: string, prompt: string): Promise<ApiAnswer> {
  const p = await complete(prefill, prompt, {
    max_tokens: 1,
    stream: false,
    kv_transfer_params: {
      do_remote_decode: true,
      do_remote_prefill: false,
      remote_engine_id: null,
      remote_block_ids: null,
    },
  });
  expect(p.kv_transfer_params.do_remote_prefill).toBe(true);
  return complete(decode, prompt, { kv_transfer_params: p.kv_transfer_params });
}

for (const transports of ['tcp', 'sm']) {
  describe(`P/D over UCX ${transports}`, () => {
    let both: EngineProcess;
    let prefill: EngineProcess;
    let decode: EngineProcess;
    let blind: EngineProcess;
    beforeAll(async () => {
      const t = ['--transports', transports];
      [both, prefill, decode, blind] = await Promise.all([
        startEngine({ role: 'both', args: t }),
        startEngine({ role: 'prefill', args: t }),
        startEngine({ role: 'decode', args: t }),
        startEngine({ role: 'decode', args: [...t, '--debug-discard-pulled-kv'] }),
      ]);
    }, 120_000);
    afterAll(async () => {
      const codes = await Promise.all([both, prefill, decode, blind].filter(Boolean).map((e) => e.stop()));
      expect(codes).toEqual([0, 0, 0, 0]);
    });

    it('50 prompts: prefill -> decode equals --role both token for token; ignoring the pulled KV differs', async () => {
      let differs = 0;
      expect((await complete(both.url, PROMPTS[0]!)).choices[0].token_ids).toHaveLength(MAX_TOKENS);
      for (const prompt of PROMPTS) {
        const ref = await complete(both.url, prompt);
        const pd = await disaggregated(prefill.url, decode.url, prompt);
        expect(pd.choices[0].token_ids, prompt).toEqual(ref.choices[0].token_ids);
        expect(pd.choices[0].text).toBe(ref.choices[0].text);
        expect(pd.usage.prompt_tokens).toBe(ref.usage.prompt_tokens);
        const neg = await disaggregated(prefill.url, blind.url, prompt);
        if (JSON.stringify(neg.choices[0].token_ids) !== JSON.stringify(ref.choices[0].token_ids)) differs++;
      }
      expect(differs).toBeGreaterThanOrEqual(45);
      // Outputs are not degenerate: the prompts' continuations differ from one another.
      const outs = new Set<string>();
      for (const prompt of PROMPTS.slice(0, 10)) outs.add((await complete(both.url, prompt)).choices[0].text);
      expect(outs.size).toBeGreaterThanOrEqual(8);
      // Every pull landed (none recomputed) and nothing is left held or pinned.
      expect(await metric(decode.url, 'kvwire_pd_blocks_total', { source: 'remote' })).toBeGreaterThan(0);
      await expect(metric(decode.url, 'kvwire_engine_kv_load_failures_total')).rejects.toThrow(/not found/);
      expect(await metric(prefill.url, 'kvwire_pd_leases_held')).toBe(0);
      expect(await metric(prefill.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
      expect(await metric(decode.url, 'kvwire_engine_kv_cache_pinned_blocks')).toBe(0);
    }, 300_000);
  });
}
