/**
 * Byte sizes as people write them on a command line (`4K`, `64KiB`, `16M`, `1G`, `4096`) and as
 * the bench prints them back (`4K`, `16M`). K/M/G are binary (KiB, MiB, GiB), as block sizes are;
 * throughput is always GB/s, 10^9 bytes per second, as nixlbench reports it.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../lib/errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a byte size: a positive integer with an optional binary unit (`K`, `KiB`, `M`, `MiB`,
 * `G`, `GiB`, case-insensitive).
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the text when it is not a size.
 */
export function parseBytes(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  const value = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${what} '${text}' is not a byte size; write e.g. 4096, 4K, 64KiB, 16M or 1G`,
    );
  }
  return value;
}

/**
 * Parses a list of sizes: comma-separated sizes, where `A..B` stands for every power of two
 * from A to B (`4K..1M` = 4K,8K,...,1M). The result is sorted and without duplicates.
 */
export function parseByteList(text: string, what = 'sizes'): number[] {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const range = part.split('..');
    if (range.length === 2) {
      const lo = parseBytes(range[0]!, what);
      const hi = parseBytes(range[1]!, what);
      if (hi < lo)
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${what} range '${part}' runs backwards; write the smaller size first`,
        );
      for (let s = lo; s <= hi; s *= 2) out.add(s);
    } else {
      out.add(parseBytes(part, what));
    }
  }
  if (out.size === 0) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${what} is empty; give at least one size`);
  return [...out].sort((a, b) => a - b);
}

/** Formats a size the short binary way: 4096 → `4K`, 16777216 → `16M`, 1000 → `1000`. */
export function fmtSize(bytes: number): string {
  for (const [unit, f] of [
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (bytes >= f && bytes % f === 0) return `${bytes / f}${unit}`;
  }
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)}G`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)}M`;
  return String(bytes);
}

/** Formats a count of bytes for prose: `1.07 GB (1 GiB)`-style short form, `512 MiB`. */
export function fmtBinary(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${+(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${+(bytes / 1024 ** 2).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(2)} KiB`;
  return `${bytes} B`;
}

/**
 * Formats a number with about three significant digits for tables: 0.0123, 1.23, 12.3, 123,
 * 1234. `null` and non-finite values print as `-`.
 */
export function fmtNum(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a >= 0.01) return x.toFixed(3);
  return x.toPrecision(2);
}

/** Formats a ratio as `0.93x`, or `-` when there is none. */
export function fmtRatio(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  return `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`;
}
