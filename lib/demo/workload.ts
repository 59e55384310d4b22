/**
 * The demo's requests: prompts of mixed lengths, most of them starting with one of a few shared
 * prefixes ("system prompts"), so the decode side's prefix cache gets partial hits. Deterministic
 * for a seed.
 *
 * @packageDocumentation
 */
import type { FakeRequest } from '../engine/runtimes/synthetic/fake-engine.js';
import { mulberry32 } from '../util/mulberry32.js';

/** Options of {@link demoWorkload}. */
export interface WorkloadOptions {
  /** Number of requests. */
  readonly requests: number;
  /** Shortest prompt (tokens); default 16. */
  readonly minTokens?: number;
  /** Longest prompt (tokens); default 1024. */
  readonly maxTokens?: number;
  /** Number of distinct shared prefixes; default 6. */
  readonly prefixes?: number;
  /** Share of requests that start with a shared prefix; default 0.7. */
  readonly sharedFraction?: number;
  /** Seed; default 1. */
  readonly seed?: number;
}

/** `requests` prompts with ids `req-0 .. req-(n-1)`. */
export function demoWorkload(o: WorkloadOptions): FakeRequest[] {
  const min = o.minTokens ?? 16;
  const max = Math.max(min, o.maxTokens ?? 1024);
  const random = mulberry32(o.seed ?? 1);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const tokens = (n: number) => Array.from({ length: n }, () => int(1, 31_999));
  const prefixes = Array.from({ length: o.prefixes ?? 6 }, () =>
    tokens(int(Math.min(min, max - 1), Math.max(min, Math.floor(max / 2)))),
  );
  const shared = o.sharedFraction ?? 0.7;
  const out: FakeRequest[] = [];
  for (let i = 0; i < o.requests; i++) {
    const length = int(min, max);
    const prefix = prefixes.length > 0 && random() < shared ? prefixes[int(0, prefixes.length - 1)]! : [];
    const head = prefix.slice(0, Math.min(prefix.length, length - 1));
    out.push({ id: `req-${i}`, tokens: [...head, ...tokens(length - head.length)] });
  }
  return out;
}
