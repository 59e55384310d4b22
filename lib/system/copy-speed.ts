/**
 * This machine's memory copy speed, measured in the demo's own run: the ceiling for a KV hand-off
 * between two processes on one host (shared memory makes a READ a copy), quoted beside the
 * hand-offs' speed so the ratio holds on a busy machine where absolute numbers do not.
 *
 * @packageDocumentation
 */

/** GB/s of the best of `rounds` copies of `bytes` (default 64 MiB, 5 rounds). */
export function measureCopyGbps(bytes = 64 * 1024 * 1024, rounds = 5): number {
  const from = Buffer.alloc(bytes, 1);
  const to = Buffer.alloc(bytes);
  from.copy(to); // fault the pages in before timing
  let best = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    from.copy(to);
    best = Math.min(best, performance.now() - t);
  }
  return bytes / (best / 1000) / 1e9;
}
