/**
 * This machine's memory copy speed, measured in the demo's own run: the ceiling for a KV hand-off
 * between two processes on one host (shared memory makes a READ a copy), quoted beside the
 * hand-offs' speed so the ratio holds on a busy machine where absolute numbers do not.
 *
 * Two yardsticks: a copy between buffers whose pages are already mapped, and a copy into memory
 * touched for the first time, where every 4 KiB page faults in on the way. A READ into KV-cache
 * blocks that were never used before is the second kind, and in a short run most blocks are.
 *
 * @packageDocumentation
 */

/** The copy speeds of this machine, GB/s. */
export interface CopySpeeds {
  /** Into memory already mapped. */
  readonly warm: number;
  /** Into memory touched for the first time (page faults included). */
  readonly fresh: number;
}

/** GB/s of the best of `rounds` copies of `bytes` (default 64 MiB, 5 rounds) between mapped buffers. */
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

/**
 * GB/s of the best of `rounds` copies of `bytes` into a buffer allocated just before (large
 * allocations are fresh anonymous mappings: the copy faults every page in, as a READ into blocks
 * never used before does).
 */
export function measureFreshCopyGbps(bytes = 64 * 1024 * 1024, rounds = 3): number {
  const from = Buffer.alloc(bytes, 1);
  let best = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const to = Buffer.allocUnsafeSlow(bytes);
    from.copy(to);
    best = Math.min(best, performance.now() - t);
  }
  return bytes / (best / 1000) / 1e9;
}

/** Both yardsticks. */
export function measureCopySpeeds(): CopySpeeds {
  return { warm: measureCopyGbps(), fresh: measureFreshCopyGbps() };
}
