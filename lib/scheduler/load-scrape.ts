/**
 * Load samples from an engine's `/metrics`, by vLLM's metric names (kvwire's engine serves the same
 * names): `vllm:num_requests_waiting`, `vllm:num_requests_running`, and `vllm:kv_cache_usage_perc`
 * (older vLLM: `vllm:gpu_cache_usage_perc`), a fraction in [0, 1].
 *
 * @packageDocumentation
 */
import { sumSamples } from './prom-text.js';
import type { LoadSample } from './types.js';

/** vLLM's metric names the scheduler reads. */
export const VLLM_LOAD_METRICS = {
  waiting: 'vllm:num_requests_waiting',
  running: 'vllm:num_requests_running',
  kvUsage: 'vllm:kv_cache_usage_perc',
  kvUsageOld: 'vllm:gpu_cache_usage_perc',
} as const;

const NAMES = new Set<string>(Object.values(VLLM_LOAD_METRICS));

/**
 * A load sample from a `/metrics` text, or undefined when it has neither queue metric (not a vLLM
 * compatible engine).
 */
export function parseLoad(text: string, at: number): LoadSample | undefined {
  const m = sumSamples(text, NAMES);
  const waiting = m.get(VLLM_LOAD_METRICS.waiting);
  const running = m.get(VLLM_LOAD_METRICS.running);
  if (waiting === undefined && running === undefined) return undefined;
  const kv = m.get(VLLM_LOAD_METRICS.kvUsage) ?? m.get(VLLM_LOAD_METRICS.kvUsageOld);
  return {
    waiting: Math.max(0, waiting ?? 0),
    running: Math.max(0, running ?? 0),
    ...(kv !== undefined ? { kvUsage: Math.min(1, Math.max(0, kv)) } : {}),
    at,
    source: 'scraped',
  };
}

/**
 * GETs `<url>/metrics` and reads a sample.
 *
 * @throws Error on a connection failure, a non-200 answer, a timeout, or metrics without vLLM's queue gauges.
 */
export async function scrapeLoad(url: string, timeoutMs: number): Promise<LoadSample> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}/metrics answered ${res.status}`);
  const s = parseLoad(text, Date.now());
  if (s === undefined)
    throw new Error(`${url}/metrics has no ${VLLM_LOAD_METRICS.waiting} or ${VLLM_LOAD_METRICS.running}`);
  return s;
}
