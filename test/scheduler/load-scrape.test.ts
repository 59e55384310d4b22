import { describe, expect, it } from 'vitest';
import { parseLoad, VLLM_LOAD_METRICS } from '../../lib/scheduler/load-scrape.js';
import { sumSamples } from '../../lib/scheduler/prom-text.js';

describe("load samples from an engine's /metrics (vLLM names)", () => {
  it("sums a metric over its series and reads vLLM's queue, running and KV usage gauges", () => {
    const text = [
      '# HELP vllm:num_requests_waiting Number of requests waiting.',
      '# TYPE vllm:num_requests_waiting gauge',
      'vllm:num_requests_waiting{engine="0",model_name="a"} 3',
      'vllm:num_requests_waiting{engine="1",model_name="b} tricky"} 2 1712345678000',
      'vllm:num_requests_running{model_name="a"} 4.0',
      'vllm:gpu_cache_usage_perc{model_name="a"} 0.25',
      'vllm:num_requests_waiting_total 99',
      'garbage line',
      'vllm:num_requests_running{model_name="a"} NaN',
    ].join('\n');
    expect(sumSamples(text, new Set([VLLM_LOAD_METRICS.waiting])).get(VLLM_LOAD_METRICS.waiting)).toBe(5);
    expect(parseLoad(text, 7)).toEqual({ waiting: 5, running: 4, kvUsage: 0.25, at: 7, source: 'scraped' });
    // The newer name wins over the older one; values are clamped.
    expect(
      parseLoad('vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 1.5\nvllm:gpu_cache_usage_perc 0.1\n', 1)
        ?.kvUsage,
    ).toBe(1);
    expect(parseLoad('process_cpu_seconds_total 3\n', 1)).toBeUndefined();
  });
});
