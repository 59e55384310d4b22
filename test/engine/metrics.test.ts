import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { metric, post } from './helpers.js';

// /metrics: vLLM's names where vLLM has one, the seed's list as kvwire_engine_*, lib/pd's, and
// Prometheus' own linter (Debian's promtool) accepts the exposition.
describe('/metrics', () => {
  let prefill: EngineProcess;
  let decode: EngineProcess;
  beforeAll(async () => {
    [prefill, decode] = await Promise.all([startEngine({ role: 'prefill' }), startEngine({ role: 'decode' })]);
    const body = {
      model: 'tiny',
      prompt: 'metrics are scraped by the scheduler to pick the least loaded worker',
      max_tokens: 4,
    };
    const p = await post(`${prefill.url}/v1/completions`, {
      ...body,
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(
      (await post(`${decode.url}/v1/completions`, { ...body, kv_transfer_params: p.body.kv_transfer_params })).status,
    ).toBe(200);
  });
  afterAll(async () => expect(await Promise.all([prefill.stop(), decode.stop()])).toEqual([0, 0]));

  it('has the series the scheduler and dashboards read', async () => {
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:kv_cache_usage_perc',
      'vllm:gpu_cache_usage_perc',
      'vllm:prompt_tokens_total',
      'vllm:generation_tokens_total',
      'vllm:time_to_first_token_seconds_count',
      'vllm:e2e_request_latency_seconds_count',
      'vllm:request_prefill_time_seconds_count',
      'vllm:prefix_cache_queries_total',
      'vllm:prefix_cache_hits_total',
      'kvwire_engine_batch_utilization',
      'kvwire_engine_busy_ratio',
      'kvwire_engine_generation_tokens_per_second',
      'kvwire_engine_kv_cache_hit_rate',
      'kvwire_engine_kv_cache_blocks',
      'kvwire_engine_kv_cache_evictions',
      'kvwire_pd_transfer_latency_seconds_count',
      'kvwire_pd_transfer_bytes_total',
    ]) {
      await expect(metric(decode.url, name), name).resolves.toBeGreaterThanOrEqual(0);
    }
    expect(await metric(decode.url, 'vllm:generation_tokens_total')).toBe(4);
    expect(await metric(decode.url, 'kvwire_pd_transfer_bytes_total')).toBeGreaterThan(0);
    expect(await metric(prefill.url, 'kvwire_pd_blocks_freed_total', { reason: 'notified' })).toBeGreaterThan(0);
    expect(await metric(prefill.url, 'vllm:kv_cache_usage_perc')).toBeGreaterThan(0);
  });

  it("promtool check metrics passes on kvwire's own metrics; vLLM's names fail only its colon rule", async () => {
    const promtool = (input: string): string => {
      try {
        execFileSync('promtool', ['check', 'metrics'], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
        return '';
      } catch (e) {
        return String((e as { stdout?: string }).stdout ?? '') + String((e as { stderr?: string }).stderr ?? '');
      }
    };
    for (const e of [prefill, decode]) {
      const text = await (await fetch(`${e.url}/metrics`)).text();
      const own = text
        .split('\n')
        .filter((l) => !/^(# (HELP|TYPE) )?vllm:/.test(l))
        .join('\n');
      expect(own).toMatch(/kvwire_engine_busy_ratio/);
      expect(promtool(own)).toBe('');
      // vLLM's metric names contain ':' (recording-rule style); promtool's linter flags exactly that, nothing else.
      const problems = promtool(text).trim().split('\n').filter(Boolean);
      expect(problems.length).toBeGreaterThan(0);
      for (const p of problems) expect(p).toMatch(/^vllm:\S+ metric names should not contain ':'$/);
    }
  });
});
