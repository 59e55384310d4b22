/**
 * The decision: for one request, which decode endpoint, which prefill endpoint (or none), and why.
 * Used by both front ends (the HTTP router and the Envoy endpoint picker).
 *
 * 1. Filters: serves the model, is healthy, is in Envoy's subset (when given).
 * 2. Scorers, each in [0, 1], summed with weights from the config: precise prefix cache (from the KV
 *    block index), load, KV cache utilization, session affinity. The highest total wins; exact ties
 *    go to the candidate with fewer requests in flight, then in turn (so equal workers share a burst).
 * 3. The P/D decider on the winner's cached prefix.
 * 4. The prefill endpoint: the least loaded healthy prefill endpoint serving the model.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { KvIndex } from '../kv-index/kv-index.js';
import { defaultRegistry, type MetricsRegistry } from '../metrics.js';
import { describeValue } from '../util/describe-value.js';
import type { EndpointSpec } from './endpoint.js';
import { explain } from './explain.js';
import { healthyFilter } from './filters/healthy.js';
import { servesModelFilter } from './filters/serves-model.js';
import { subsetFilter } from './filters/subset-hint.js';
import { SchedulerMetrics } from './metrics.js';
import { decidePd, type PdReason } from './pd-decider.js';
import { kvUtilizationScorer } from './scorers/kv-utilization.js';
import { loadScorer } from './scorers/load.js';
import { prefixCacheScorer } from './scorers/prefix-cache.js';
import { sessionAffinityScorer } from './scorers/session-affinity.js';
import {
  addressOf,
  loadOf,
  SCORER_NAMES,
  type Candidate,
  type ScheduleRequest,
  type Scorer,
  type ScorerName,
  type ScoringContext,
} from './types.js';

/** Where the scheduler reads the endpoints and their state (an {@link EndpointPool}). */
export interface CandidateSource {
  /** Every configured endpoint of a role, with its state now. */
  candidates(role: 'decode' | 'prefill'): Candidate[];
}

/** Weights of the scorers (each ≥ 0; 0 turns a scorer off). */
export type ScorerWeights = Readonly<Record<ScorerName, number>>;

/** Default weights: a cached prefix counts most, then a session's stickiness, then load. */
export const DEFAULT_WEIGHTS: ScorerWeights = Object.freeze({
  'prefix-cache': 3,
  load: 1,
  'kv-utilization': 1,
  'session-affinity': 2,
});

/** Options of {@link Scheduler}. */
export interface SchedulerOptions {
  /** The KV block index (its worker names are the decode endpoints' names). */
  readonly index: KvIndex;
  /** The endpoints. */
  readonly endpoints: CandidateSource;
  /** Scorer weights; missing ones take {@link DEFAULT_WEIGHTS}. */
  readonly weights?: Partial<Record<ScorerName, number>>;
  /** Disaggregate when at least this many prompt tokens are not cached on the decode worker. Default 256. */
  readonly pdThreshold?: number;
  /** Shed (429) when every candidate has at least this many requests waiting. Default: never shed. */
  readonly shedQueueDepth?: number;
  /** Metrics registry. Default prom-client's global registry. */
  readonly registry?: MetricsRegistry;
}

/** One decode candidate's scores. */
export interface CandidateScores {
  /** The endpoint's name. */
  readonly name: string;
  /** The weighted total. */
  readonly total: number;
  /** Each scorer's score in [0, 1], or undefined where it had no data. */
  readonly scores: Readonly<Record<ScorerName, number | undefined>>;
  /** Leading prompt blocks it holds (tier-weighted). */
  readonly prefixBlocks: number;
  /** Its load (queue + running, or in flight). */
  readonly load: number;
}

/** A decision. */
export interface Decision {
  /** Where the request goes. */
  readonly decode: EndpointSpec;
  /** The decode destination as `ip:port` (resolved by health checks; the configured host:port until then). */
  readonly destination: string;
  /** The prefill worker to name to the decode's sidecar; undefined for decode-only. */
  readonly prefill: EndpointSpec | undefined;
  /** `disaggregated` or `decode_only`. */
  readonly kind: 'disaggregated' | 'decode_only';
  /** Why (the P/D decider's reason). */
  readonly reason: PdReason;
  /** The scorer whose weighted score set the winner apart from the runner-up most, `only_candidate`, or `tie`. */
  readonly wonBy: ScorerName | 'only_candidate' | 'tie';
  /** Prompt tokens, when known. */
  readonly promptTokens: number | undefined;
  /** Leading prompt tokens cached on the chosen decode worker. */
  readonly cachedTokens: number;
  /** Prompt tokens the decode worker does not hold, when known. */
  readonly uncachedTokens: number | undefined;
  /** The best decode candidates' scores (at most 8), best first. */
  readonly candidates: readonly CandidateScores[];
  /** One header-safe line: the choice, the P/D decision and why, and the top candidates' scores. */
  readonly explanation: string;
}

/** Candidates a decision lists with their scores (the explanation shows four). */
const TOP_ROWS = 8;

const SCORERS: readonly Scorer[] = [prefixCacheScorer, loadScorer, kvUtilizationScorer, sessionAffinityScorer];

/** Checks and completes scorer weights. */
export function scorerWeights(w: Partial<Record<string, unknown>> | undefined): ScorerWeights {
  const out: Record<string, number> = { ...DEFAULT_WEIGHTS };
  for (const [k, v] of Object.entries(w ?? {})) {
    if (!(SCORER_NAMES as readonly string[]).includes(k)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `weights.${k} names no scorer: use ${SCORER_NAMES.join(', ')}`,
        { field: `weights.${k}` },
      );
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1000) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `weights.${k} is ${describeValue(v)}: a weight is a number from 0 to 1,000`,
        { field: `weights.${k}` },
      );
    }
    out[k] = v;
  }
  return out as ScorerWeights;
}

function failure(
  status: 404 | 429 | 503,
  code: (typeof ErrorCode)[keyof typeof ErrorCode],
  message: string,
): KvwireError {
  return new KvwireError(code, message, { status });
}

/** The HTTP status a scheduling error maps to (400 for anything unexpected from the caller's input). */
export function statusOf(e: unknown): number {
  if (e instanceof KvwireError) {
    const s = e.details.status;
    if (typeof s === 'number') return s;
    if (e.code === ErrorCode.INVALID_ARGUMENT) return 400;
    if (e.code === ErrorCode.BACKEND_UNAVAILABLE || e.code === ErrorCode.CLOSED) return 503;
  }
  return 500;
}

/** See the module documentation. */
export class Scheduler {
  /** The weights in use. */
  readonly weights: ScorerWeights;
  /** The P/D threshold in tokens. */
  readonly pdThreshold: number;
  private readonly index: KvIndex;
  private readonly endpoints: CandidateSource;
  private readonly shedQueueDepth: number | undefined;
  /** The scheduler's metrics. */
  readonly metrics: SchedulerMetrics;
  private turn = 0;

  /** @param options - see {@link SchedulerOptions}. */
  constructor(options: SchedulerOptions) {
    this.index = options.index;
    this.endpoints = options.endpoints;
    this.weights = scorerWeights(options.weights);
    const t = options.pdThreshold ?? 256;
    if (!Number.isSafeInteger(t) || t < 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `pdThreshold is ${describeValue(t)}: give a whole number of tokens ≥ 0 (--pd-threshold)`,
        { field: 'pdThreshold' },
      );
    }
    this.pdThreshold = t;
    const s = options.shedQueueDepth;
    if (s !== undefined && (!Number.isSafeInteger(s) || s < 1)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `shedQueueDepth is ${describeValue(s)}: give a whole number of waiting requests ≥ 1`,
        { field: 'shedQueueDepth' },
      );
    }
    this.shedQueueDepth = s;
    this.metrics = new SchedulerMetrics(options.registry ?? defaultRegistry());
  }

  /**
   * Decides where `request` goes.
   *
   * @throws KvwireError with `details.status`: 404 when no endpoint serves the model, 503 when none
   *   of those is healthy (or in Envoy's subset), 429 when all are saturated (shedding);
   *   `ERR_KVWIRE_BACKEND_UNAVAILABLE` when the index (Redis) cannot be read.
   */
  async schedule(request: ScheduleRequest): Promise<Decision> {
    const t0 = performance.now();
    try {
      const d = await this.decide(request);
      this.metrics.decisions.inc({ decision: d.kind, reason: d.reason });
      this.metrics.picks.inc({ endpoint: d.decode.name, won_by: d.wonBy });
      return d;
    } catch (e) {
      this.metrics.rejections.inc({ status: String(statusOf(e)) });
      throw e;
    } finally {
      this.metrics.seconds.observe((performance.now() - t0) / 1000);
    }
  }

  private async decide(request: ScheduleRequest): Promise<Decision> {
    const model = request.model;
    const serving = servesModelFilter(this.endpoints.candidates('decode'), model);
    if (serving.length === 0) {
      throw failure(
        404,
        ErrorCode.INVALID_ARGUMENT,
        `no decode endpoint serves model ${describeValue(model)}: send one of the models the endpoints list, or add an endpoint for it`,
      );
    }
    const healthy = healthyFilter(serving);
    if (healthy.length === 0) {
      throw failure(
        503,
        ErrorCode.BACKEND_UNAVAILABLE,
        `every decode endpoint serving ${describeValue(model)} is ejected by health checks (${serving.map((c) => c.spec.name).join(', ')}): retry later`,
      );
    }
    const candidates = subsetFilter(healthy, request.subset).filter((c) => request.exclude?.has(c.spec.name) !== true);
    if (candidates.length === 0) {
      throw failure(
        503,
        ErrorCode.BACKEND_UNAVAILABLE,
        `no healthy decode endpoint for ${describeValue(model)} is in the gateway's subset hint (${[...(request.subset ?? [])].join(', ') || 'empty'})`,
      );
    }
    if (this.shedQueueDepth !== undefined && candidates.every((c) => (c.load?.waiting ?? 0) >= this.shedQueueDepth!)) {
      throw failure(
        429,
        ErrorCode.CAPACITY,
        `every decode endpoint for ${describeValue(model)} has at least ${this.shedQueueDepth} requests waiting: shedding this one; retry later`,
      );
    }

    const tokens = request.tokens;
    const blocks = tokens === undefined ? 0 : Math.floor(tokens.length / this.index.blockSize);
    // Unfiltered: the index answers only the workers holding the prompt's first block, which is
    // cheaper than naming a thousand candidates; the scorers read the candidates' entries (0 if none).
    const prefixBlocks = blocks === 0 ? new Map<string, number>() : await this.index.score(tokens!);
    const ctx: ScoringContext = { request, blocks, prefixBlocks };
    const perScorer = new Map<ScorerName, Map<string, number>>();
    for (const s of SCORERS) if (this.weights[s.name] > 0) perScorer.set(s.name, s.score(ctx, candidates));

    // Totals in one pass; only the few best get a full row (the sort of 1,000 rows cost more than the rest).
    const n = candidates.length;
    const totals = new Float64Array(n);
    const maps = SCORER_NAMES.map((name) => perScorer.get(name));
    const weights = SCORER_NAMES.map((name) => this.weights[name]);
    for (let i = 0; i < n; i++) {
      const name = candidates[i]!.spec.name;
      let t = 0;
      for (let k = 0; k < maps.length; k++) t += weights[k]! * (maps[k]?.get(name) ?? 0.5);
      totals[i] = t;
    }
    const turn = this.turn++;
    // Exact ties: fewer in flight, then in turn, so equal workers share a burst before metrics catch up.
    const before = (a: number, b: number): boolean =>
      totals[a]! !== totals[b]!
        ? totals[a]! > totals[b]!
        : candidates[a]!.inflight !== candidates[b]!.inflight
          ? candidates[a]!.inflight < candidates[b]!.inflight
          : (((a - turn) % n) + n) % n < (((b - turn) % n) + n) % n;
    const top: number[] = [];
    for (let i = 0; i < n; i++) {
      if (top.length === TOP_ROWS && !before(i, top[TOP_ROWS - 1]!)) continue;
      let j = Math.min(top.length, TOP_ROWS - 1);
      top[j] = i;
      while (j > 0 && before(i, top[j - 1]!)) {
        top[j] = top[j - 1]!;
        top[j - 1] = i;
        j--;
      }
    }
    const row = (i: number): CandidateScores => {
      const c = candidates[i]!;
      const scores = {} as Record<ScorerName, number | undefined>;
      SCORER_NAMES.forEach((name, k) => (scores[name] = maps[k]?.get(c.spec.name)));
      return {
        name: c.spec.name,
        total: totals[i]!,
        scores,
        prefixBlocks: prefixBlocks.get(c.spec.name) ?? 0,
        load: loadOf(c),
      };
    };
    const scored = top.map((i) => ({ c: candidates[i]!, row: row(i) }));
    const best = scored[0]!;
    const next = scored[1];
    const wonBy: Decision['wonBy'] = next === undefined ? 'only_candidate' : this.wonBy(best.row, next.row);

    const cachedTokens = Math.floor(best.row.prefixBlocks) * this.index.blockSize;
    const prefills = healthyFilter(servesModelFilter(this.endpoints.candidates('prefill'), model));
    const verdict = decidePd(tokens?.length, cachedTokens, this.pdThreshold, prefills.length > 0);
    const prefill = verdict.disaggregate ? this.leastLoaded(prefills, turn) : undefined;

    const decision: Omit<Decision, 'explanation'> = {
      decode: best.c.spec,
      destination: addressOf(best.c),
      prefill: prefill?.spec,
      kind: verdict.disaggregate ? ('disaggregated' as const) : ('decode_only' as const),
      reason: verdict.reason,
      wonBy,
      promptTokens: tokens?.length,
      cachedTokens,
      uncachedTokens: verdict.uncachedTokens,
      candidates: scored.map((s) => s.row),
    };
    return { ...decision, explanation: explain(decision, request.tokensError) };
  }

  private wonBy(best: CandidateScores, next: CandidateScores): ScorerName | 'tie' {
    let top: ScorerName | 'tie' = 'tie';
    let margin = 0;
    for (const name of SCORER_NAMES) {
      const d = this.weights[name] * ((best.scores[name] ?? 0.5) - (next.scores[name] ?? 0.5));
      if (d > margin + 1e-12) {
        margin = d;
        top = name;
      }
    }
    return top;
  }

  private leastLoaded(prefills: readonly Candidate[], turn: number): Candidate {
    const n = prefills.length;
    const rank = (c: Candidate): number =>
      loadOf(c) + (1 - (c.load?.kvUsage === undefined ? 0.5 : 1 - c.load.kvUsage)) * 0.5;
    return prefills
      .map((c, i) => ({ c, r: rank(c), o: (((i - turn) % n) + n) % n }))
      .sort((a, b) => a.r - b.r || a.o - b.o)[0]!.c;
  }
}
