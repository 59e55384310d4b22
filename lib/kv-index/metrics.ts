/**
 * Prometheus metrics of a {@link KvIndex}, all named `kvwire_index_*` and labelled with the
 * index's `backend` and `index` name (so several indexes can share one registry).
 *
 * | metric                                   | kind      | meaning                                         |
 * | ---------------------------------------- | --------- | ----------------------------------------------- |
 * | `kvwire_index_lookups_total`             | counter   | `score`/`pick` calls                            |
 * | `kvwire_index_lookup_blocks_total`       | counter   | blocks looked up, `result` = `hit` or `miss`    |
 * | `kvwire_index_hit_ratio`                 | gauge     | hit blocks / looked-up blocks since start       |
 * | `kvwire_index_lookup_seconds`            | histogram | time to score one prompt (hashing included)     |
 * | `kvwire_index_keys`                      | gauge     | keys held after the last event                  |
 * | `kvwire_index_evictions_total`           | counter   | `kind` = `key` (key bound) or `holder`          |
 * | `kvwire_index_events_total`              | counter   | events applied, by `type`                       |
 * | `kvwire_index_event_batches_total`       | counter   | batches by `status`                             |
 *
 * A block is a hit when at least one candidate worker holds it as part of its leading run: the
 * hits of a lookup are its longest cached prefix.
 *
 * @packageDocumentation
 */
import type client from 'prom-client';
import { counter, gauge, histogram, LATENCY_BUCKETS_S, type MetricsRegistry } from '../metrics.js';
import type { BackendKind } from './types.js';

type L = 'backend' | 'index';

/** Status of an event batch as counted by `kvwire_index_event_batches_total`. */
export type BatchStatus = 'applied' | 'duplicate' | 'buffered' | 'gap_skipped' | 'dropped';

/** The metrics of one index; see the module documentation. */
export class IndexMetrics {
  private readonly labels: Record<L, string>;
  private readonly lookups: client.Counter<L>;
  private readonly lookupBlocks: client.Counter<L | 'result'>;
  private readonly hitRatio: client.Gauge<L>;
  private readonly lookupSeconds: client.Histogram<L>;
  private readonly keys: client.Gauge<L>;
  private readonly evictions: client.Counter<L | 'kind'>;
  private readonly events: client.Counter<L | 'type'>;
  private readonly batches: client.Counter<L | 'status'>;
  private hits = 0;
  private looked = 0;

  /**
   * @param registry - where the metrics live.
   * @param backend - label value `backend`.
   * @param index - label value `index` (the index's name).
   */
  constructor(registry: MetricsRegistry, backend: BackendKind, index: string) {
    this.labels = { backend, index };
    const l: L[] = ['backend', 'index'];
    this.lookups = counter(registry, 'kvwire_index_lookups_total', 'Prefix lookups (score and pick calls)', l);
    this.lookupBlocks = counter(
      registry,
      'kvwire_index_lookup_blocks_total',
      'Blocks looked up, by result (hit: within the longest cached prefix)',
      [...l, 'result'],
    );
    this.hitRatio = gauge(
      registry,
      'kvwire_index_hit_ratio',
      'Hit blocks / looked-up blocks since the index was created',
      l,
    );
    this.lookupSeconds = histogram(
      registry,
      'kvwire_index_lookup_seconds',
      'Time to score one prompt, hashing included',
      LATENCY_BUCKETS_S,
      l,
    );
    this.keys = gauge(registry, 'kvwire_index_keys', 'Block keys held by the index', l);
    this.evictions = counter(
      registry,
      'kvwire_index_evictions_total',
      'Evictions, by kind (key: key bound; holder: workers-per-key bound)',
      [...l, 'kind'],
    );
    this.events = counter(registry, 'kvwire_index_events_total', 'Events applied, by type', [...l, 'type']);
    this.batches = counter(registry, 'kvwire_index_event_batches_total', 'Event batches, by status', [...l, 'status']);
    this.keys.set(this.labels, 0);
  }

  /** Records one lookup of `blocks` blocks of which the first `hits` are cached somewhere. */
  lookup(blocks: number, hits: number, seconds: number): void {
    this.lookups.inc(this.labels);
    this.lookupBlocks.inc({ ...this.labels, result: 'hit' }, hits);
    this.lookupBlocks.inc({ ...this.labels, result: 'miss' }, blocks - hits);
    this.hits += hits;
    this.looked += blocks;
    if (this.looked > 0) this.hitRatio.set(this.labels, this.hits / this.looked);
    this.lookupSeconds.observe(this.labels, seconds);
  }

  /** Records the index size and the evictions an operation reported. */
  applied(keys: number, evictedKeys: number, evictedHolders: number): void {
    this.keys.set(this.labels, keys);
    if (evictedKeys > 0) this.evictions.inc({ ...this.labels, kind: 'key' }, evictedKeys);
    if (evictedHolders > 0) this.evictions.inc({ ...this.labels, kind: 'holder' }, evictedHolders);
  }

  /** Counts applied events of one type. */
  event(type: 'stored' | 'removed' | 'cleared', n = 1): void {
    this.events.inc({ ...this.labels, type }, n);
  }

  /** Counts one batch by status. */
  batch(status: BatchStatus): void {
    this.batches.inc({ ...this.labels, status });
  }
}
