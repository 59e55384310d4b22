/**
 * Prometheus metrics of a {@link Scheduler} (prom-client), all named `kvwire_scheduler_*`.
 *
 * | metric                                   | kind      | labels                      |
 * | ---------------------------------------- | --------- | --------------------------- |
 * | `kvwire_scheduler_decisions_total`       | counter   | `decision` (`disaggregated`, `decode_only`), `reason` (the P/D reason) |
 * | `kvwire_scheduler_picks_total`           | counter   | `endpoint`, `won_by` (the scorer that set the winner apart, `only_candidate` or `tie`) |
 * | `kvwire_scheduler_rejections_total`      | counter   | `status` (`400`, `404`, `429`, `503`) |
 * | `kvwire_scheduler_schedule_seconds`      | histogram | time to decide, index lookup included |
 * | `kvwire_scheduler_endpoint_healthy`      | gauge     | `endpoint`, `role`: 1 serving, 0 ejected |
 * | `kvwire_scheduler_tokenize_total`        | counter   | `result` (`hit`, `miss`, `error`) |
 *
 * @packageDocumentation
 */
import type client from 'prom-client';
import { counter, gauge, histogram, LATENCY_BUCKETS_S, type MetricsRegistry } from '../metrics.js';

/** The metrics of one scheduler; see the module documentation. */
export class SchedulerMetrics {
  readonly decisions: client.Counter<'decision' | 'reason'>;
  readonly picks: client.Counter<'endpoint' | 'won_by'>;
  readonly rejections: client.Counter<'status'>;
  readonly seconds: client.Histogram<string>;
  readonly healthy: client.Gauge<'endpoint' | 'role'>;
  readonly tokenize: client.Counter<'result'>;

  /** @param registry - where the metrics live. */
  constructor(registry: MetricsRegistry) {
    this.decisions = counter(
      registry,
      'kvwire_scheduler_decisions_total',
      'Scheduling decisions, by P/D decision and reason',
      ['decision', 'reason'],
    );
    this.picks = counter(
      registry,
      'kvwire_scheduler_picks_total',
      'Decode endpoints chosen, by endpoint and by the scorer that set the winner apart',
      ['endpoint', 'won_by'],
    );
    this.rejections = counter(
      registry,
      'kvwire_scheduler_rejections_total',
      'Requests the scheduler could not place, by the HTTP status answered',
      ['status'],
    );
    this.seconds = histogram(
      registry,
      'kvwire_scheduler_schedule_seconds',
      'Time to decide one request, KV index lookup included',
      LATENCY_BUCKETS_S,
    );
    this.healthy = gauge(
      registry,
      'kvwire_scheduler_endpoint_healthy',
      'Whether health checks have the endpoint serving (1) or ejected (0)',
      ['endpoint', 'role'],
    );
    this.tokenize = counter(
      registry,
      'kvwire_scheduler_tokenize_total',
      'Prompt tokenizations, by result (hit: from the cache)',
      ['result'],
    );
  }
}
