/**
 * The sidecar's Prometheus metrics (prom-client), served on its own path so the decode worker's
 * `/metrics` passes through unchanged.
 *
 * @packageDocumentation
 */
import type client from 'prom-client';
import { counter, histogram, LATENCY_BUCKETS_S, type MetricsRegistry } from '../metrics.js';

/** Which way a request went. */
export type SidecarRoute =
  | 'pd' // prefill leg, then decode with its parameters
  | 'decode_only' // a P/D route without x-prefiller-host-port, or a fallback
  | 'passthrough'; // any other path or method, relayed to the decode worker

/** How a request ended, as far as the sidecar is concerned. */
export type RequestOutcome =
  | 'ok'
  | 'fallback_ok' // the prefill failed, decode-only succeeded
  | 'decode_error' // the decode worker answered non-2xx (relayed)
  | 'refused' // 403: the prefill target failed the SSRF check
  | 'bad_request' // 400/413: the body was not JSON, or too large
  | 'prefill_rejected' // the prefill answered 4xx (relayed)
  | 'prefill_failed' // the prefill failed for good and the policy is 'fail'
  | 'decode_unreachable'
  | 'timeout'
  | 'broken'
  | 'client_closed';

/** The sidecar's metrics. Several sidecars on one registry share the series. */
export class SidecarMetrics {
  /** `kvwire_sidecar_requests_total{route, outcome}`. */
  readonly requests: client.Counter<'route' | 'outcome'>;
  /** `kvwire_sidecar_prefill_seconds{outcome}`: the whole prefill leg, retries included. */
  readonly prefillSeconds: client.Histogram<'outcome'>;
  /** `kvwire_sidecar_decode_first_byte_seconds{route}`: decode request sent to answer started. */
  readonly decodeFirstByteSeconds: client.Histogram<'route'>;
  /**
   * `kvwire_sidecar_overhead_seconds{route}`: from the request's arrival to the decode request
   * being sent, minus the prefill leg: the sidecar's own time (target check, reading and
   * rewriting the body).
   */
  readonly overheadSeconds: client.Histogram<'route'>;
  /** `kvwire_sidecar_ssrf_refusals_total{reason}`. */
  readonly ssrfRefusals: client.Counter<'reason'>;
  /** `kvwire_sidecar_prefill_retries_total{reason}`: `unavailable` (502/503/504) or `unreachable`. */
  readonly prefillRetries: client.Counter<'reason'>;
  /** `kvwire_sidecar_decode_only_fallbacks_total{reason}`: P/D requests run decode-only. */
  readonly fallbacks: client.Counter<'reason'>;
  /** `kvwire_sidecar_client_kv_params_stripped_total`: client-sent kv_transfer_params removed. */
  readonly clientParamsStripped: client.Counter<string>;

  constructor(
    /** The registry the metrics live in. */
    readonly registry: MetricsRegistry,
  ) {
    this.requests = counter(
      registry,
      'kvwire_sidecar_requests_total',
      'Requests through the sidecar by route and outcome',
      ['route', 'outcome'],
    );
    this.prefillSeconds = histogram(
      registry,
      'kvwire_sidecar_prefill_seconds',
      'Prefill leg time, retries included, by outcome',
      LATENCY_BUCKETS_S,
      ['outcome'],
    );
    this.decodeFirstByteSeconds = histogram(
      registry,
      'kvwire_sidecar_decode_first_byte_seconds',
      'Decode request sent to the decode worker answering',
      LATENCY_BUCKETS_S,
      ['route'],
    );
    this.overheadSeconds = histogram(
      registry,
      'kvwire_sidecar_overhead_seconds',
      "Sidecar's own time per request: arrival to decode request sent, minus the prefill leg",
      LATENCY_BUCKETS_S,
      ['route'],
    );
    this.ssrfRefusals = counter(
      registry,
      'kvwire_sidecar_ssrf_refusals_total',
      'Prefill targets refused by the allowlist check, by reason',
      ['reason'],
    );
    this.prefillRetries = counter(
      registry,
      'kvwire_sidecar_prefill_retries_total',
      'Prefill attempts retried, by why the previous one failed',
      ['reason'],
    );
    this.fallbacks = counter(
      registry,
      'kvwire_sidecar_decode_only_fallbacks_total',
      'P/D requests run decode-only after the prefill leg failed, by reason',
      ['reason'],
    );
    this.clientParamsStripped = counter(
      registry,
      'kvwire_sidecar_client_kv_params_stripped_total',
      'kv_transfer_params sent by clients and removed before the decode worker',
    );
  }
}
