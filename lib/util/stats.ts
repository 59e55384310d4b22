/**
 * Samples and their summaries: average, nearest-rank percentiles, min and max (the benchmarks' and
 * the system demo's; bench/stats.ts re-exports it).
 *
 * @packageDocumentation
 */

/** The summary of a set of samples, in the samples' unit. */
export interface Distribution {
  /** Arithmetic mean. */
  readonly avg: number;
  /** Median (nearest rank). */
  readonly p50: number;
  /** 99th percentile (nearest rank). */
  readonly p99: number;
  /** Smallest sample. */
  readonly min: number;
  /** Largest sample. */
  readonly max: number;
}

/** The summary of no samples: all zeros. */
export const EMPTY_DISTRIBUTION: Distribution = Object.freeze({ avg: 0, p50: 0, p99: 0, min: 0, max: 0 });

/**
 * The nearest-rank percentile `p` (0..100) of samples sorted ascending: the smallest sample with
 * at least p% of the samples at or below it. Returns 0 for no samples.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sorted[rank - 1]!;
}

/** Summarizes `samples` (any order; not modified). */
export function summarize(samples: ArrayLike<number>): Distribution {
  const n = samples.length;
  if (n === 0) return EMPTY_DISTRIBUTION;
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  return {
    avg: sum / n,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted[0]!,
    max: sorted[n - 1]!,
  };
}

/** Multiplies every field of a distribution by `f` (e.g. ms → µs). */
export function scaleDistribution(d: Distribution, f: number): Distribution {
  return { avg: d.avg * f, p50: d.p50 * f, p99: d.p99 * f, min: d.min * f, max: d.max * f };
}

/**
 * A growable column of samples in a Float64Array: adding a sample allocates nothing until the
 * capacity doubles, so recording never disturbs the measured loop.
 */
export class Samples {
  #data: Float64Array;
  #n = 0;

  /** @param capacity - initial capacity (grows as needed). */
  constructor(capacity = 1024) {
    this.#data = new Float64Array(Math.max(16, capacity));
  }

  /** Number of samples. */
  get length(): number {
    return this.#n;
  }

  /** Appends a sample. */
  add(x: number): void {
    if (this.#n === this.#data.length) {
      const next = new Float64Array(this.#data.length * 2);
      next.set(this.#data);
      this.#data = next;
    }
    this.#data[this.#n++] = x;
  }

  /** The samples (a view, valid until the next add). */
  values(): Float64Array {
    return this.#data.subarray(0, this.#n);
  }

  /** Their summary. */
  summary(): Distribution {
    return summarize(this.values());
  }
}
