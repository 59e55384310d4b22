/**
 * mulberry32: a small, fast, seedable PRNG, uniform in [0, 1). The same sequence for a seed in
 * every run and on every machine, which is what the bench and demo data sets need.
 *
 * @packageDocumentation
 */

/** A generator of numbers in [0, 1), deterministic for `seed`. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
