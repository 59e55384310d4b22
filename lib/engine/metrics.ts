/**
 * The engine's Prometheus metrics: vLLM's names where vLLM has one (so dashboards and the llm-d
 * scheduler's scrapers work unchanged), `kvwire_engine_*` for the rest of the seed's list. Every
 * series is labelled `model_name` like vLLM's. lib/pd's `kvwire_pd_*` (transfer latency, bytes,
 * failures, leases) share the registry.
 *
 * @packageDocumentation
 */
import client from 'prom-client';
import { LATENCY_BUCKETS_S, counter, histogram, type MetricsRegistry } from '../metrics.js';

const REQUEST_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160];

/** What the gauges read at scrape time. */
export interface EngineGaugeSource {
  /** Requests holding a compute slot. */
  running(): number;
  /** Requests waiting for one. */
  waiting(): number;
  /** Slots in all (MAX_BATCH_SIZE). */
  slots(): number;
  /** Blocks: total, used (owned or cached), cached, pinned (owned by a request or lease). */
  blocks(): { total: number; used: number; cached: number; pinned: number };
  /** Blocks evicted since start. */
  evictions(): number;
}

/** The engine's metrics on one registry. */
export class EngineMetrics {
  /** vllm:time_to_first_token_seconds. */
  readonly ttft: client.Histogram<'model_name'>;
  /** vllm:e2e_request_latency_seconds. */
  readonly e2e: client.Histogram<'model_name'>;
  /** vllm:request_prefill_time_seconds: prompt compute (or KV load) to first token. */
  readonly prefillTime: client.Histogram<'model_name'>;
  /** vllm:time_per_output_token_seconds. */
  readonly tpot: client.Histogram<'model_name'>;
  /** vllm:prompt_tokens_total. */
  readonly promptTokens: client.Counter<'model_name'>;
  /** vllm:generation_tokens_total. */
  readonly generationTokens: client.Counter<'model_name'>;
  /** vllm:request_success_total{finished_reason}. */
  readonly success: client.Counter<'model_name' | 'finished_reason'>;
  /** vllm:prefix_cache_queries_total (tokens looked up). */
  readonly prefixQueries: client.Counter<'model_name'>;
  /** vllm:prefix_cache_hits_total (tokens found). */
  readonly prefixHits: client.Counter<'model_name'>;
  /** kvwire_engine_kv_load_failures_total{policy, reason}: P/D loads that failed (recomputed or answered 5xx). */
  readonly kvLoadFailures: client.Counter<'model_name' | 'policy' | 'reason'>;
  /** kvwire_engine_kv_handoff_seconds{stage}: KV out of the runtime into blocks ("store"), blocks into the runtime ("load"). */
  readonly handoff: client.Histogram<'model_name' | 'stage'>;
  /** kvwire_engine_requests_rejected_total{reason}. */
  readonly rejected: client.Counter<'model_name' | 'reason'>;
  /** kvwire_engine_busy_seconds_total: time with at least one request running. */
  readonly busySeconds: client.Counter<'model_name'>;
  readonly #model: string;
  #busySince: number | undefined;
  readonly #started = Date.now();
  #busyMs = 0;
  readonly #recent: { t: number; n: number }[] = [];
  #queried = 0;
  #hit = 0;

  constructor(registry: MetricsRegistry, model: string, source: EngineGaugeSource) {
    this.#model = model;
    const m = ['model_name'] as const;
    this.ttft = histogram(
      registry,
      'vllm:time_to_first_token_seconds',
      'Time to first token (s).',
      REQUEST_BUCKETS_S,
      m,
    );
    this.e2e = histogram(
      registry,
      'vllm:e2e_request_latency_seconds',
      'End-to-end request latency (s).',
      REQUEST_BUCKETS_S,
      m,
    );
    this.prefillTime = histogram(
      registry,
      'vllm:request_prefill_time_seconds',
      'Prefill latency: prompt compute or KV load up to the first token (s).',
      REQUEST_BUCKETS_S,
      m,
    );
    this.tpot = histogram(
      registry,
      'vllm:time_per_output_token_seconds',
      'Time per output token after the first (s).',
      LATENCY_BUCKETS_S,
      m,
    );
    this.promptTokens = counter(registry, 'vllm:prompt_tokens_total', 'Prompt tokens processed.', m);
    this.generationTokens = counter(registry, 'vllm:generation_tokens_total', 'Tokens generated.', m);
    this.success = counter(registry, 'vllm:request_success_total', 'Finished requests by finish reason.', [
      'model_name',
      'finished_reason',
    ]);
    this.prefixQueries = counter(
      registry,
      'vllm:prefix_cache_queries_total',
      'Prompt tokens looked up in the prefix cache.',
      m,
    );
    this.prefixHits = counter(registry, 'vllm:prefix_cache_hits_total', 'Prompt tokens found in the prefix cache.', m);
    this.kvLoadFailures = counter(
      registry,
      'kvwire_engine_kv_load_failures_total',
      'P/D KV loads that failed, by --kv-load-failure-policy and reason.',
      ['model_name', 'policy', 'reason'],
    );
    this.handoff = histogram(
      registry,
      'kvwire_engine_kv_handoff_seconds',
      'KV between the runtime and the block cache: store (runtime -> blocks), load (blocks -> runtime) (s).',
      LATENCY_BUCKETS_S,
      ['model_name', 'stage'],
    );
    this.rejected = counter(
      registry,
      'kvwire_engine_requests_rejected_total',
      'Requests refused before running, by reason.',
      ['model_name', 'reason'],
    );
    this.busySeconds = counter(
      registry,
      'kvwire_engine_busy_seconds_total',
      'Seconds with at least one request running.',
      m,
    );
    const labels = { model_name: model };
    const g = (name: string, help: string, read: () => number): void => {
      if (registry.getSingleMetric(name) !== undefined) registry.removeSingleMetric(name);
      // prom-client calls collect() at scrape time: the gauge reads the live value then.
      new client.Gauge({
        name,
        help,
        labelNames: m,
        registers: [registry],
        collect() {
          this.set(labels, read());
        },
      });
    };
    g('vllm:num_requests_running', 'Requests running (holding a compute slot): active sessions.', () =>
      source.running(),
    );
    g('vllm:num_requests_waiting', 'Requests waiting for a compute slot: queue depth.', () => source.waiting());
    const usage = (): number => {
      const b = source.blocks();
      return b.total === 0 ? 0 : b.used / b.total;
    };
    g('vllm:kv_cache_usage_perc', 'KV block cache usage, 0..1 (blocks owned or cached).', usage);
    g('vllm:gpu_cache_usage_perc', 'Older name of vllm:kv_cache_usage_perc (same value).', usage);
    g('kvwire_engine_batch_utilization', 'Running requests / MAX_BATCH_SIZE (prefill batch utilization).', () =>
      source.slots() === 0 ? 0 : source.running() / source.slots(),
    );
    g('kvwire_engine_kv_cache_blocks', 'KV blocks in the cache.', () => source.blocks().total);
    g(
      'kvwire_engine_kv_cache_pinned_blocks',
      'KV blocks owned by a running request or a lease.',
      () => source.blocks().pinned,
    );
    g('kvwire_engine_kv_cache_cached_blocks', 'KV blocks kept by the prefix cache.', () => source.blocks().cached);
    g('kvwire_engine_kv_cache_evictions', 'KV blocks evicted from the prefix cache since start.', () =>
      source.evictions(),
    );
    g(
      'kvwire_engine_busy_ratio',
      'Share of the time since start with at least one request running (engine utilization).',
      () => {
        const busy = this.#busyMs + (this.#busySince === undefined ? 0 : Date.now() - this.#busySince);
        return busy / Math.max(1, Date.now() - this.#started);
      },
    );
    g('kvwire_engine_generation_tokens_per_second', 'Tokens generated per second over the last 10 s.', () => {
      const now = Date.now();
      while (this.#recent.length > 0 && this.#recent[0]!.t < now - 10_000) this.#recent.shift();
      return this.#recent.reduce((a, r) => a + r.n, 0) / 10;
    });
    g('kvwire_engine_kv_cache_hit_rate', 'Prefix cache hits / queries (tokens) since start.', () => {
      return this.#queried === 0 ? 0 : this.#hit / this.#queried;
    });
  }

  /** The label set of every series. */
  get labels(): { model_name: string } {
    return { model_name: this.#model };
  }

  /** Counts generated tokens (for the tokens/s gauge too). */
  generated(n: number): void {
    this.generationTokens.inc(this.labels, n);
    this.#recent.push({ t: Date.now(), n });
  }

  /** Counts a prefix cache lookup of `queried` prompt tokens of which `hit` were cached. */
  prefixLookup(queried: number, hit: number): void {
    this.#queried += queried;
    this.#hit += hit;
    this.prefixQueries.inc(this.labels, queried);
    this.prefixHits.inc(this.labels, hit);
  }

  /** Marks the number of running requests changing, for the busy ratio. */
  running(n: number): void {
    const now = Date.now();
    if (n > 0 && this.#busySince === undefined) this.#busySince = now;
    if (n === 0 && this.#busySince !== undefined) {
      this.#busyMs += now - this.#busySince;
      this.busySeconds.inc(this.labels, (now - this.#busySince) / 1000);
      this.#busySince = undefined;
    }
  }
}
