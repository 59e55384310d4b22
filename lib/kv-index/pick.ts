/**
 * Choosing a worker for a prompt: cached prefix against load.
 *
 * For each candidate `w` (the workers named in `loads`):
 *
 * ```
 * prefix(w) = score(w) / blocks                (tier-weighted leading blocks held; 0 if no blocks)
 * queue(w)  = queue depth / the largest queue depth among candidates          (0 if all are 0)
 * tokens(w) = in-flight tokens / the largest in-flight tokens among candidates (0 if all are 0)
 * value(w)  = weights.prefix * prefix(w) - weights.queue * queue(w) - weights.inflightTokens * tokens(w)
 * ```
 *
 * The candidate with the highest value wins; ties go to the longer prefix, then the shorter
 * queue, then fewer in-flight tokens, then the name that sorts first (so the choice is
 * deterministic). With the default weights (prefix 1, queue 0.5, tokens 0.5) a full prefix hit
 * outweighs being the most loaded worker on either measure, and among workers with equal hits the
 * least loaded wins: the llm-d scheduler's "longest prefix, else least loaded" as one formula.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';

/** A worker's load, as the router sees it. */
export interface WorkerLoad {
  /** Requests waiting or running on the worker. Default 0. */
  readonly queue?: number;
  /** Tokens in flight on the worker (prompt + generated, of unfinished requests). Default 0. */
  readonly inflightTokens?: number;
}

/** Candidates and their loads: a number is shorthand for `{ queue: n }`. */
export type Loads = ReadonlyMap<string, WorkerLoad | number> | Readonly<Record<string, WorkerLoad | number>>;

/** Weights of the terms of the pick formula (see the module documentation). */
export interface PickWeights {
  /** Weight of the cached prefix fraction. Default 1. */
  readonly prefix: number;
  /** Weight of the normalized queue depth. Default 0.5. */
  readonly queue: number;
  /** Weight of the normalized in-flight tokens. Default 0.5. */
  readonly inflightTokens: number;
}

/** The default {@link PickWeights}. */
export const DEFAULT_PICK_WEIGHTS: PickWeights = Object.freeze({ prefix: 1, queue: 0.5, inflightTokens: 0.5 });

/** One candidate, as {@link choose} scored it. */
export interface PickCandidate {
  /** The worker. */
  readonly worker: string;
  /** Tier-weighted leading blocks it holds. */
  readonly score: number;
  /** `score / blocks`. */
  readonly prefix: number;
  /** Its queue depth. */
  readonly queue: number;
  /** Its in-flight tokens. */
  readonly inflightTokens: number;
  /** The formula's value (higher is better). */
  readonly value: number;
}

/** A choice and why. */
export interface PickResult {
  /** The chosen worker. */
  readonly worker: string;
  /** Full blocks in the prompt. */
  readonly blocks: number;
  /** Every candidate, best first. */
  readonly candidates: readonly PickCandidate[];
  /** One line for logs and response headers, e.g. "decode-2: 250/256 leading blocks cached …". */
  readonly reason: string;
}

/**
 * Checks and completes pick weights.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a weight that is not a finite number ≥ 0.
 */
export function pickWeights(w: Partial<PickWeights> | undefined): PickWeights {
  const out = { ...DEFAULT_PICK_WEIGHTS, ...(w ?? {}) };
  for (const k of ['prefix', 'queue', 'inflightTokens'] as const) {
    if (typeof out[k] !== 'number' || !Number.isFinite(out[k]) || out[k] < 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `pickWeights.${k} is ${String(out[k])}: weights are finite numbers ≥ 0`,
        { field: `pickWeights.${k}` },
      );
    }
  }
  return out;
}

function loadEntries(loads: Loads): [string, WorkerLoad | number][] {
  if (loads instanceof Map) return [...loads.entries()];
  if (loads !== null && typeof loads === 'object' && !Array.isArray(loads)) return Object.entries(loads);
  throw new KvwireError(
    ErrorCode.INVALID_ARGUMENT,
    'loads must be a Map or an object from worker to { queue, inflightTokens } (or a queue depth)',
    { field: 'loads' },
  );
}

function count(v: unknown, where: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${where} is ${String(v)}: loads are finite numbers ≥ 0`, {
      field: where,
    });
  }
  return v;
}

/**
 * Parses `loads` into candidates (name, queue, in-flight tokens).
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when `loads` is empty or malformed.
 */
export function parseLoads(loads: Loads): { worker: string; queue: number; inflightTokens: number }[] {
  const entries = loadEntries(loads);
  if (entries.length === 0) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'pick needs at least one candidate worker in loads', {
      field: 'loads',
    });
  }
  return entries.map(([worker, l]) => {
    if (typeof l === 'number') return { worker, queue: count(l, `loads['${worker}']`), inflightTokens: 0 };
    if (l === null || typeof l !== 'object') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `loads['${worker}'] must be { queue?, inflightTokens? } or a queue depth`,
        { field: `loads['${worker}']` },
      );
    }
    return {
      worker,
      queue: count(l.queue, `loads['${worker}'].queue`),
      inflightTokens: count(l.inflightTokens, `loads['${worker}'].inflightTokens`),
    };
  });
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const num = (x: number): string => x.toLocaleString('en-US', { maximumFractionDigits: 2 });

/**
 * Applies the formula of the module documentation.
 *
 * @param blocks - full blocks in the prompt.
 * @param scores - tier-weighted leading blocks per worker (missing: 0).
 * @param candidates - the workers to choose from, with their loads ({@link parseLoads}).
 * @param weights - the formula's weights.
 */
export function choose(
  blocks: number,
  scores: ReadonlyMap<string, number>,
  candidates: readonly { worker: string; queue: number; inflightTokens: number }[],
  weights: PickWeights,
): PickResult {
  let maxQ = 0,
    maxT = 0;
  for (const c of candidates) {
    maxQ = Math.max(maxQ, c.queue);
    maxT = Math.max(maxT, c.inflightTokens);
  }
  const scored: PickCandidate[] = candidates.map((c) => {
    const score = scores.get(c.worker) ?? 0;
    const prefix = blocks > 0 ? score / blocks : 0;
    const value =
      weights.prefix * prefix -
      weights.queue * (maxQ > 0 ? c.queue / maxQ : 0) -
      weights.inflightTokens * (maxT > 0 ? c.inflightTokens / maxT : 0);
    return { worker: c.worker, score, prefix, queue: c.queue, inflightTokens: c.inflightTokens, value };
  });
  scored.sort(
    (a, b) =>
      b.value - a.value ||
      b.prefix - a.prefix ||
      a.queue - b.queue ||
      a.inflightTokens - b.inflightTokens ||
      (a.worker < b.worker ? -1 : a.worker > b.worker ? 1 : 0),
  );
  const best = scored[0]!;
  const load = (c: PickCandidate): string =>
    `queue ${num(c.queue)} (max ${num(maxQ)}), ${num(c.inflightTokens)} in-flight tokens (max ${num(maxT)})`;
  const why =
    best.score > 0
      ? `${num(best.score)}/${blocks} leading blocks cached (${pct(best.prefix)})`
      : scored.some((c) => c.score > 0)
        ? 'nothing cached, chosen for its load over cached candidates'
        : `no candidate holds this prompt's first block${blocks === 0 ? ' (it has no full block)' : ''}, least loaded`;
  const head = `${best.worker}: ${why}, ${load(best)}; value ${best.value.toFixed(3)}`;
  const next = scored[1];
  const reason =
    next === undefined
      ? `${head}; the only candidate`
      : `${head}; next ${next.worker} (${num(next.score)} blocks cached, queue ${num(next.queue)}) value ${next.value.toFixed(3)}`;
  return { worker: best.worker, blocks, candidates: scored, reason };
}
