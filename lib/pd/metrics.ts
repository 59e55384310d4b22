/**
 * The P/D coordinators' Prometheus metrics: the transfer metrics the llm-d stack watches (latency,
 * throughput, failures), in-flight transfers, queue depth, lease expirations and handshake latency.
 * Every series carries the local `engine` id, so several coordinators can share one registry.
 *
 * @packageDocumentation
 */
import type client from 'prom-client';
import { ErrorCode } from '../errors.js';
import { LATENCY_BUCKETS_S, counter, defaultRegistry, gauge, histogram, type MetricsRegistry } from '../metrics.js';
import type { HeartbeatOutcome } from './heartbeat.js';
import type { HeartbeatResult } from './lease-keeper.js';
import type { FreeReason } from './protocol.js';

/** Why a pull failed, as the `reason` label of `kvwire_pd_transfer_failures_total` spells it. */
export type PullFailureReason =
  | 'timeout'
  | 'peer_lost'
  | 'lease_expired'
  | 'incompatible'
  | 'unauthorized'
  | 'cancelled'
  | 'unreachable'
  | 'capacity'
  | 'bad_metadata'
  | 'corrupted'
  | 'transport';

/** The failure reason label for an error code. */
export function failureReason(code: string): PullFailureReason {
  switch (code) {
    case ErrorCode.TIMEOUT:
      return 'timeout';
    case ErrorCode.PEER_LOST:
    case ErrorCode.CLOSED:
    case ErrorCode.DEREGISTERED:
      return 'peer_lost';
    case ErrorCode.LEASE_EXPIRED:
      return 'lease_expired';
    case ErrorCode.INCOMPATIBLE:
      return 'incompatible';
    case ErrorCode.UNAUTHORIZED:
      return 'unauthorized';
    case ErrorCode.CANCELLED:
      return 'cancelled';
    case ErrorCode.PEER_UNREACHABLE:
      return 'unreachable';
    case ErrorCode.CAPACITY:
      return 'capacity';
    case ErrorCode.BAD_METADATA:
      return 'bad_metadata';
    case ErrorCode.CORRUPTED:
      return 'corrupted';
    default:
      return 'transport';
  }
}

/** The metrics of one coordinator, bound to its engine id. */
export class PdMetrics {
  readonly #engine: string;
  readonly #latency: client.Histogram<'engine'>;
  readonly #bytes: client.Counter<'engine'>;
  readonly #failures: client.Counter<'engine' | 'reason'>;
  readonly #inflight: client.Gauge<'engine'>;
  readonly #queue: client.Gauge<'engine'>;
  readonly #expirations: client.Counter<'engine'>;
  readonly #handshake: client.Histogram<'engine'>;
  readonly #freed: client.Counter<'engine' | 'reason'>;
  readonly #leases: client.Gauge<'engine'>;
  readonly #descriptors: client.Counter<'engine' | 'stage'>;
  readonly #blocks: client.Counter<'engine' | 'source'>;
  readonly #extensions: client.Counter<'engine'>;
  readonly #notHeld: client.Counter<'engine'>;
  readonly #received: client.Counter<'engine' | 'result'>;
  readonly #sent: client.Counter<'engine' | 'result'>;
  readonly #keptAlive: client.Gauge<'engine'>;
  readonly #lost: client.Counter<'engine'>;

  /** @param registry - where to register (default: prom-client's global registry). */
  constructor(engineId: string, registry: MetricsRegistry = defaultRegistry()) {
    this.#engine = engineId;
    const e = ['engine'] as const;
    this.#latency = histogram(
      registry,
      'kvwire_pd_transfer_latency_seconds',
      'Time from posting the KV reads of a request until the blocks were in place and the prefill notified',
      LATENCY_BUCKETS_S,
      e,
    );
    this.#bytes = counter(registry, 'kvwire_pd_transfer_bytes_total', 'KV bytes pulled from prefill workers', e);
    this.#failures = counter(registry, 'kvwire_pd_transfer_failures_total', 'KV pulls that failed, by reason', [
      'engine',
      'reason',
    ] as const);
    this.#inflight = gauge(registry, 'kvwire_pd_inflight_transfers', 'KV pulls with transfers in flight', e);
    this.#queue = gauge(registry, 'kvwire_pd_queue_depth', 'KV pulls waiting for in-flight capacity', e);
    this.#expirations = counter(
      registry,
      'kvwire_pd_lease_expirations_total',
      'Prefill block leases that expired before the decode side released them',
      e,
    );
    this.#handshake = histogram(
      registry,
      'kvwire_pd_handshake_latency_seconds',
      'Side-channel handshake plus transport connect, per remote engine',
      LATENCY_BUCKETS_S,
      e,
    );
    this.#freed = counter(
      registry,
      'kvwire_pd_blocks_freed_total',
      'Prefill blocks returned to the engine, by reason',
      ['engine', 'reason'] as const,
    );
    this.#leases = gauge(registry, 'kvwire_pd_leases_held', 'Prefill block leases currently held', e);
    this.#descriptors = counter(
      registry,
      'kvwire_pd_descriptors_total',
      'Descriptors of KV pulls before coalescing (stage="uncoalesced") and posted (stage="posted")',
      ['engine', 'stage'] as const,
    );
    this.#blocks = counter(
      registry,
      'kvwire_pd_blocks_total',
      'Blocks of pulled requests, read from the prefill (source="remote") or already held (source="cached")',
      ['engine', 'source'] as const,
    );
    this.#extensions = counter(
      registry,
      'kvwire_pd_lease_extensions_total',
      'Prefill block leases extended by a decode worker heartbeat',
      e,
    );
    this.#notHeld = counter(
      registry,
      'kvwire_pd_lease_extensions_refused_total',
      'Leases named by authenticated heartbeats that were not held (ended already, or another token): nothing extended',
      e,
    );
    this.#received = counter(
      registry,
      'kvwire_pd_lease_heartbeats_received_total',
      'Lease heartbeats received by a prefill side channel, by result (accepted, unauthorized, malformed, replayed)',
      ['engine', 'result'] as const,
    );
    this.#sent = counter(
      registry,
      'kvwire_pd_lease_heartbeats_sent_total',
      'Lease heartbeats sent by a decode worker, by result (ok, unauthorized, unreachable, timeout, refused, bad_answer)',
      ['engine', 'result'] as const,
    );
    this.#keptAlive = gauge(
      registry,
      'kvwire_pd_leases_kept_alive',
      'Prefill leases a decode worker keeps alive with heartbeats (its pending pulls and queued requests)',
      e,
    );
    this.#lost = counter(
      registry,
      'kvwire_pd_leases_lost_total',
      'Pending pulls given up because a heartbeat answer said the prefill no longer held their lease',
      e,
    );
    // Start the gauges at zero so they are exported before the first request.
    this.#inflight.set({ engine: engineId }, 0);
    this.#queue.set({ engine: engineId }, 0);
    this.#keptAlive.set({ engine: engineId }, 0);
  }

  /** A completed pull. */
  pulled(
    seconds: number,
    bytes: number,
    uncoalesced: number,
    posted: number,
    remoteBlocks: number,
    cachedBlocks: number,
  ): void {
    const l = { engine: this.#engine };
    this.#latency.observe(l, seconds);
    this.#bytes.inc(l, bytes);
    this.#descriptors.inc({ ...l, stage: 'uncoalesced' }, uncoalesced);
    this.#descriptors.inc({ ...l, stage: 'posted' }, posted);
    this.#blocks.inc({ ...l, source: 'remote' }, remoteBlocks);
    this.#blocks.inc({ ...l, source: 'cached' }, cachedBlocks);
  }

  /** A failed pull. */
  failed(code: string): void {
    this.#failures.inc({ engine: this.#engine, reason: failureReason(code) });
  }

  /** Pulls with transfers in flight. */
  inflight(n: number): void {
    this.#inflight.set({ engine: this.#engine }, n);
  }

  /** Pulls waiting for capacity. */
  queueDepth(n: number): void {
    this.#queue.set({ engine: this.#engine }, n);
  }

  /** A finished handshake. */
  handshake(seconds: number): void {
    this.#handshake.observe({ engine: this.#engine }, seconds);
  }

  /** A lease ended. */
  freed(reason: FreeReason, blocks: number, held: number): void {
    const l = { engine: this.#engine };
    if (reason === 'expired') this.#expirations.inc(l);
    this.#freed.inc({ ...l, reason }, blocks);
    this.#leases.set(l, held);
  }

  /** A heartbeat arrived at the prefill side channel. */
  heartbeatReceived(o: HeartbeatOutcome): void {
    const l = { engine: this.#engine };
    this.#received.inc({ ...l, result: o.refused ?? 'accepted' });
    if (o.extended > 0) this.#extensions.inc(l, o.extended);
    if (o.unknown > 0) this.#notHeld.inc(l, o.unknown);
  }

  /** A heartbeat was sent by the decode side; `lost` of its leases were not held any more. */
  heartbeatSent(result: HeartbeatResult, lost: number): void {
    const l = { engine: this.#engine };
    this.#sent.inc({ ...l, result });
    if (lost > 0) this.#lost.inc(l, lost);
  }

  /** Leases the decode side keeps alive. */
  keptAlive(n: number): void {
    this.#keptAlive.set({ engine: this.#engine }, n);
  }

  /** A lease began. */
  held(n: number): void {
    this.#leases.set({ engine: this.#engine }, n);
  }
}
