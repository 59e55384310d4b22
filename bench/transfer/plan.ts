/**
 * The sweep plan: which rows run, how many iterations each gets, how big the regions are, and
 * which transports exist here.
 *
 * Iteration budget: without `--iters` or `--duration`, a row moves about `budgetBytes` (64 MiB by
 * default): `iterations = clamp(budget / bytesPerTransfer, 5, 1000)`; warmup is a tenth of that,
 * from 1 to 10. That keeps the default grid (2 ops × 2 transports × 6 sizes × 3 batches) within
 * two minutes on two cores while every row still averages over at least 5 transfers.
 *
 * Memory: each side registers one region big enough for the largest row (`inflight` disjoint
 * slots of `size × batch`). The largest default row, 16 MiB × 64, needs 1 GiB per side: that is
 * registered when free memory allows (it needs about 4× that free: two regions, page cache and
 * headroom); otherwise `--max-region` shrinks and rows that no longer fit are skipped and listed.
 *
 * @packageDocumentation
 */
import { freemem } from 'node:os';
import { capabilities } from '../../lib/transport/capabilities.js';
import type { TransferOp } from '../../lib/transport/types.js';
import type { BenchOptions } from './options.js';
import { fmtBinary, fmtSize } from './units.js';

/** The largest region a side registers by default. */
export const DEFAULT_MAX_REGION = 1 << 30;

/** One planned row. */
export interface PlannedRow {
  readonly op: TransferOp;
  readonly transport: string;
  readonly size: number;
  readonly batch: number;
  /** Measured iterations (`undefined` with `--duration`). */
  readonly iterations: number | undefined;
  readonly warmup: number;
  /** Why the row will not run (it needs more memory than `--max-region`). */
  readonly skip: string | undefined;
}

/** Bytes one transfer of a row moves. */
export function transferBytes(size: number, batch: number): number {
  return size * batch;
}

/** Iterations for a transfer of `bytes` within the byte budget. */
export function budgetIterations(bytes: number, budgetBytes: number): number {
  return Math.max(5, Math.min(1000, Math.round(budgetBytes / bytes)));
}

/** Warmup iterations for a row of `iterations` (or of a duration). */
export function autoWarmup(iterations: number | undefined): number {
  if (iterations === undefined) return 5;
  return Math.max(1, Math.min(10, Math.floor(iterations / 10)));
}

/** The largest region per side: `--max-region`, else 1 GiB if a quarter of free memory holds it. */
export function maxRegionBytes(opts: Pick<BenchOptions, 'maxRegionBytes'>, free = freemem()): number {
  if (opts.maxRegionBytes !== undefined) return opts.maxRegionBytes;
  let cap = DEFAULT_MAX_REGION;
  while (cap > 64 << 20 && cap * 4 > free) cap /= 2;
  return cap;
}

/** The UCX_TLS value for a transport name: categories map to UCX's aliases, anything else is used as given. */
export function ucxTlsOf(name: string): string {
  switch (name) {
    case 'sm':
    case 'shm':
      return 'sm';
    case 'tcp':
      return 'tcp';
    case 'rdma':
      return 'ib';
    default:
      return name;
  }
}

/** The transports to measure: as asked, else every category UCX reaches peers with here. */
export function defaultTransports(engine: 'ucx' | 'loopback'): string[] {
  if (engine === 'loopback') return ['loopback'];
  const cats = capabilities().engines.ucx.categories;
  const order = ['tcp', 'sm', 'rdma'];
  return order.filter((c) => cats.includes(c as never));
}

/** The rows of one transport, in run order: by size, then op, then batch. */
export function planRows(opts: BenchOptions, transport: string, regionCap: number): PlannedRow[] {
  const rows: PlannedRow[] = [];
  for (const size of opts.sizes) {
    for (const op of opts.ops) {
      for (const batch of opts.batches) {
        const bytes = transferBytes(size, batch);
        const iterations =
          opts.durationS !== undefined ? undefined : (opts.iters ?? budgetIterations(bytes, opts.budgetBytes));
        const warmup = opts.warmup ?? autoWarmup(iterations);
        const need = bytes * (opts.check ? opts.inflight : 1);
        const skip =
          need > regionCap
            ? `needs ${fmtBinary(need)} per side (${fmtSize(size)} × ${batch}${opts.check && opts.inflight > 1 ? ` × ${opts.inflight} in flight` : ''}), over the ${fmtBinary(regionCap)} region limit (--max-region)`
            : undefined;
        rows.push({ op, transport, size, batch, iterations, warmup, skip });
      }
    }
  }
  return rows;
}

/**
 * Bytes each side registers for `rows`: enough for every row that runs, with `inflight` disjoint
 * slots where they fit (else in-flight transfers share the destination bytes, which only
 * `--check` would mind, and `planRows` skips those rows under `--check`).
 */
export function regionBytesFor(rows: readonly PlannedRow[], inflight: number, regionCap: number): number {
  let need = 4096;
  for (const r of rows) {
    if (r.skip !== undefined) continue;
    need = Math.max(need, Math.min(regionCap, transferBytes(r.size, r.batch) * inflight));
  }
  return need;
}

/** Slots of disjoint ranges a row's in-flight transfers use within a region of `regionBytes`. */
export function slotsFor(size: number, batch: number, inflight: number, regionBytes: number): number {
  return Math.max(1, Math.min(inflight, Math.floor(regionBytes / transferBytes(size, batch))));
}
