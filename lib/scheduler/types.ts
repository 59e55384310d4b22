/**
 * Types shared by the decision (scorers, filters, P/D decider) and its two front ends.
 *
 * @packageDocumentation
 */
import { destinationUrl, hostPort, type EndpointSpec } from './endpoint.js';

/** A worker's load as last seen: scraped from its `/metrics`, or reported to the scheduler. */
export interface LoadSample {
  /** Requests waiting in the engine's queue (vLLM `vllm:num_requests_waiting`). */
  readonly waiting: number;
  /** Requests running (vLLM `vllm:num_requests_running`). */
  readonly running: number;
  /** KV cache utilization in [0, 1] (vLLM `vllm:kv_cache_usage_perc`), when known. */
  readonly kvUsage?: number;
  /** When it was taken (`Date.now()`). */
  readonly at: number;
  /** Where it came from. */
  readonly source: 'scraped' | 'reported';
}

/** An endpoint with what the scheduler knows about it now. */
export interface Candidate {
  /** The endpoint. */
  readonly spec: EndpointSpec;
  /** False while health checks have it ejected. */
  readonly healthy: boolean;
  /** Its last load sample if still fresh (younger than the staleness bound), else undefined. */
  readonly load: LoadSample | undefined;
  /** Requests this scheduler has sent it that have not finished. */
  readonly inflight: number;
  /**
   * Where its requests go as `ip:port` (the destination's host resolved at health-check time), for
   * gateways that route by address (Envoy's ORIGINAL_DST, the subset hint); undefined until resolved.
   */
  readonly address?: string;
}

/** The `ip:port` (IPv6 in brackets) requests to a candidate go to: resolved when known, else its URL's host:port. */
export function addressOf(c: Candidate): string {
  return c.address ?? hostPort(destinationUrl(c.spec));
}

/** What the scheduler is asked to place. */
export interface ScheduleRequest {
  /** The model the request names. */
  readonly model: string;
  /** The prompt's token ids as the engine's tokenizer makes them; undefined when they could not be had. */
  readonly tokens?: ArrayLike<number>;
  /** Why `tokens` is missing (for the explanation). */
  readonly tokensError?: string;
  /** Request headers, lower-case names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Envoy's subset hint: only decode endpoints whose destination `host:port` is in it may be chosen. */
  readonly subset?: ReadonlySet<string>;
  /** Decode endpoints (by name) not to choose, e.g. one a connection to has just failed. */
  readonly exclude?: ReadonlySet<string>;
}

/** The scorers' names, as weights, explanations and metric labels spell them. */
export type ScorerName = 'prefix-cache' | 'load' | 'kv-utilization' | 'session-affinity';

/** Every scorer name. */
export const SCORER_NAMES: readonly ScorerName[] = ['prefix-cache', 'load', 'kv-utilization', 'session-affinity'];

/** What every scorer may read. */
export interface ScoringContext {
  /** The request. */
  readonly request: ScheduleRequest;
  /** Full KV blocks in the prompt (0 when tokens are unknown). */
  readonly blocks: number;
  /** Per candidate, its tier-weighted count of leading prompt blocks cached (from the KV block index). */
  readonly prefixBlocks: ReadonlyMap<string, number>;
}

/**
 * One scoring dimension. Scores are in [0, 1], higher is better; a candidate left out of the
 * returned map is one this scorer knows nothing about (it counts as a neutral 0.5 and is shown as
 * `n/a` in explanations), so that missing data neither wins nor loses a choice.
 */
export interface Scorer {
  /** Its name (weights are keyed by it). */
  readonly name: ScorerName;
  /** Scores the candidates. */
  score(ctx: ScoringContext, candidates: readonly Candidate[]): Map<string, number>;
}

/** The load the scorers use: the fresh sample's queue + running, or at least what this scheduler has in flight there. */
export function loadOf(c: Candidate): number {
  const sampled = c.load === undefined ? 0 : c.load.waiting + c.load.running;
  return Math.max(sampled, c.inflight);
}
